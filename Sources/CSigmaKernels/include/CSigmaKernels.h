// Batched AES-128 kernels for Sigma's FSS layer.
//
// The Swift side calls these with whole arrays (a tree level of many keys at once), never single blocks:
// one Swift -> C call costs about as much as three AES blocks.
//
// Pointers are `void *` where they carry 128-bit blocks, so Swift can pass raw buffers without binding
// memory (Swift has no "uint8_t may alias anything" rule). Blocks need no alignment.
#ifndef CSIGMA_KERNELS_H
#define CSIGMA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Implementations, fastest first. `sigma_aes_best_backend` picks the first one the CPU supports.
typedef enum {
    SIGMA_AES_VAES512 = 0,  ///< VAES on zmm: 16 blocks in flight (needs AVX-512F/BW + VAES)
    SIGMA_AES_VAES256 = 1,  ///< VAES on ymm: 16 blocks in flight (needs AVX2 + VAES)
    SIGMA_AES_AESNI = 2,    ///< AES-NI on xmm: 8 blocks in flight
    SIGMA_AES_PORTABLE = 3  ///< byte-oriented C; not constant time, for machines without AES instructions
} sigma_aes_backend;

/// An expanded AES-128 encryption key: 11 round keys.
typedef struct {
    uint8_t round_keys[11][16];
} sigma_aes_key;

/// Per-lane round-key tables for one pair of keys {a, b}: for every combination of key choices across the
/// 128-bit lanes of a vector register, the round keys laid out lane by lane, so one
/// `vaesenc reg, reg, [table]` applies a different key to each lane at no extra cost.
typedef struct {
    uint8_t lanes2[4][11][32];   ///< ymm: 2 lanes, 4 combinations
    uint8_t lanes4[16][11][64];  ///< zmm: 4 lanes, 16 combinations
} sigma_prg_lanes;

/// The fixed-key correlation-robust hashes H_0 ... H_3 used as the length-doubling PRG of DPF and DCF trees
/// (see `sigma_crhash_select`): H_0, H_1 make a seed's two children, H_2, H_3 a DCF node's two values.
typedef struct {
    sigma_aes_key keys[4];
    sigma_prg_lanes lanes[2];  ///< lanes[0] for {H_0, H_1}, lanes[1] for {H_2, H_3}
} sigma_prg;

/// Whether `backend` can run on this CPU (and under this emulator: valgrind reports no AVX-512/VAES).
int sigma_aes_backend_supported(sigma_aes_backend backend);
/// The fastest supported backend, detected once.
sigma_aes_backend sigma_aes_best_backend(void);

/// Expands a 16-byte AES-128 key (FIPS-197 key schedule).
void sigma_aes_expand_key(const void *key16, sigma_aes_key *out);

/// ECB encryption of `count` blocks: out[i] = AES_k(in[i]). `in` and `out` may be the same buffer.
void sigma_aes_ecb(sigma_aes_backend backend, const sigma_aes_key *key, const void *in, void *out, size_t count);

/// Counter-mode keystream: out[i] = AES_k(counter + i), the counter a 128-bit little-endian integer.
void sigma_aes_ctr_keystream(sigma_aes_backend backend, const sigma_aes_key *key, uint64_t counter_lo,
                             uint64_t counter_hi, void *out, size_t count);

/// Builds the PRG from four 16-byte keys (H_0, H_1 for seeds; H_2, H_3 for DCF values).
void sigma_prg_init(sigma_prg *prg, const void *keys64);

/// out[i] = H_{k0 + sel[i]}(in[i]) with H_j(x) = AES_{k_j}(sigma(x)) ^ sigma(x) and
/// sigma(hi, lo) = (hi ^ lo, hi), the Guo et al. (S&P 2020) fixed-key construction. `k0` is 0 or 2,
/// `sel[i]` is 0 or 1. `in` may equal `out`.
void sigma_crhash_select(sigma_aes_backend backend, const sigma_prg *prg, unsigned k0, const void *in,
                         const uint8_t *sel, void *out, size_t count);

/// out0[i] = H_{k0}(in[i]), out1[i] = H_{k0+1}(in[i]): both halves of the length-doubling PRG.
void sigma_crhash_pair(sigma_aes_backend backend, const sigma_prg *prg, unsigned k0, const void *in,
                       void *out0, void *out1, size_t count);

/// One level of DPF evaluation along input paths, fused with the seed correction and the comparison
/// accumulator. For point j (key k = j / points_per_key, direction d = (x[j] >> shift) & 1):
///
///     out[j] = H_d(in[j]) ^ (t(in[j]) ? C(k, d) : 0)                t(b) = lowest bit of block b
///     bit 0 of acc[16 j] ^= (d == 0) & (t(in[j]) ^ t(out[j]))      (only if acc != NULL)
///
/// With `right_bits == NULL`, `cw` holds two blocks per key and C(k, d) = cw[2k + d] (the leaf level).
/// Otherwise `cw` holds one block per key with the left control-bit correction in bit 0, and C(k, 1) is that
/// block with bit 0 replaced by bit (first_key + k) of `right_bits`; that array must be readable for 4 bytes
/// past its last used byte. `acc` has a 16-byte slot per point (only byte 0 is used, the rest must be zero).
/// `in` may equal `out`.
void sigma_dpf_path_step(sigma_aes_backend backend, const sigma_prg *prg, const void *in, void *out,
                         const uint64_t *x, unsigned shift, const void *cw, const uint8_t *right_bits,
                         size_t first_key, size_t points_per_key, size_t count, uint8_t *acc);

/// One level of full-domain DPF expansion: node j of key k = j / nodes_per_key gives children
///
///     out[2j + c] = H_c(in[j]) ^ (t(in[j]) ? C(k, c) : 0)           c in {0, 1}
///
/// with C as in `sigma_dpf_path_step` (`cw == NULL` skips the correction). `in` and `out` must not overlap.
void sigma_dpf_expand_level(sigma_aes_backend backend, const sigma_prg *prg, const void *in, void *out,
                            const void *cw, const uint8_t *right_bits, size_t first_key, size_t nodes_per_key,
                            size_t count);

/// The inner product of a bit vector with a table: sum of w[i] over the set bits i < nbits of `bits`,
/// mod 2^64. `nbits` is a multiple of 64.
uint64_t sigma_bits_dot(const void *bits, const uint64_t *w, size_t nbits);

/// Fills `out` with `count` bytes from the operating system's CSPRNG (getrandom). Returns 0 on success.
int sigma_os_random(void *out, size_t count);

#ifdef __cplusplus
}
#endif

#endif
