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

/// The fixed-key correlation-robust hash H(x) = AES_k(sigma(x)) ^ sigma(x) (Guo et al., S&P 2020) with its
/// tweaks: G_c(s) = H(s ^ tau_c). G_0, G_1 make a seed's two children; G_2, G_3 a DCF node's two values.
typedef struct {
    sigma_aes_key key;
    uint64_t sigma_tweaks[4][2];  ///< sigma(tau_c) as (lo, hi), so H(s ^ tau_c) = AES(y) ^ y with y = sigma(s) ^ it
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

/// Builds the PRG from a 16-byte fixed key and four 16-byte tweaks tau_0 ... tau_3 (tau_0 should be zero).
void sigma_prg_init(sigma_prg *prg, const void *key16, const void *tweaks64);

/// out[i] = G_{k0 + sel[i]}(in[i]) = H(in[i] ^ tau_{k0 + sel[i]}) with H(x) = AES_k(sigma(x)) ^ sigma(x) and
/// sigma(hi, lo) = (hi ^ lo, hi). `k0` is 0 or 2, `sel[i]` is 0 or 1. `in` may equal `out`.
void sigma_crhash_select(sigma_aes_backend backend, const sigma_prg *prg, unsigned k0, const void *in,
                         const uint8_t *sel, void *out, size_t count);

/// out0[i] = G_{k0}(in[i]), out1[i] = G_{k0+1}(in[i]): both halves of the length-doubling PRG.
void sigma_crhash_pair(sigma_aes_backend backend, const sigma_prg *prg, unsigned k0, const void *in,
                       void *out0, void *out1, size_t count);

/// Where one party's DPF key batch (b > 7, d = b − 7 levels) keeps its fields; see the Swift `DPFLayout`.
typedef struct {
    const void *roots;        ///< key k's root seed at roots + 16k (control bit in bit 0)
    const void *levels;       ///< level i (1 ... d−1), key k at levels + (i−1)·level_stride + 16k: seed
                              ///< correction with the left control-bit correction t_L in bit 0
    size_t level_stride;
    const uint8_t *deltas;    ///< level i, bit k of deltas + (i−1)·delta_stride: t_R ⊕ t_L for key k; readable
                              ///< for 4 bytes past the last used byte
    size_t delta_stride;
    const void *leaves;       ///< key k's leaf corrections L_0, L_1 at leaves + 32k
    unsigned input_bits;      ///< b, 8 ... 64
} sigma_dpf_keys;

/// Evaluates DPF keys along the paths of `count` points: point j uses key first_key + j / points_per_key.
/// With `comparison == 0`, out[j] is the party's share of 1{x[j] = α}; otherwise of 1{x[j] < α}
/// (x[j] taken mod 2^b). Each level's seed is H_d(s) ^ t(s)·C(k, d), where C(k, 0) is the stored level word
/// and C(k, 1) the same with bit 0 flipped by delta; the last level's is the leaf block. H_d is G_d.
void sigma_dpf_eval(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys, const uint64_t *x,
                    size_t first_key, size_t points_per_key, size_t count, int comparison, uint8_t *out);

/// The same at E = `shift_count` (1 ... 64) public shifts of one input per key: out[k·E + e] for the point
/// x = inputs[k] + shifts[e] under key first_key + k. An extra point (e > 0) shares the path of the point of
/// e = 0 down to the highest bit in which the two differ and is evaluated only from there, so small shifts cost
/// few AES calls.
void sigma_dpf_eval_shifted(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys,
                            const uint64_t *inputs, size_t first_key, const uint64_t *shifts, size_t shift_count,
                            size_t count, int comparison, uint8_t *out);

/// One level of full-domain DPF expansion: node j of key k = j / nodes_per_key gives children
///
///     out[2j + c] = H_c(in[j]) ^ (t(in[j]) ? C(k, c) : 0)           c in {0, 1}
///
/// where, with `deltas == NULL`, `cw` holds two blocks per key and C(k, c) = cw[2k + c] (the leaf level);
/// otherwise `cw` holds one block per key with t_L in bit 0, and C(k, 1) is that block with bit 0 flipped by
/// bit (first_key + k) of `deltas`. `cw == NULL` skips the correction. `in` and `out` must not overlap.
void sigma_dpf_expand_level(sigma_aes_backend backend, const sigma_prg *prg, const void *in, void *out,
                            const void *cw, const uint8_t *deltas, size_t first_key, size_t nodes_per_key,
                            size_t count);

/// The inner product of a bit vector with a table: sum of w[i] over the set bits i < nbits of `bits`,
/// mod 2^64. `nbits` is a multiple of 64.
uint64_t sigma_bits_dot(const void *bits, const uint64_t *w, size_t nbits);
/// The same on vectors of at most `vector_bits` (512: AVX-512, 256: AVX2, 0: scalar), where the CPU has them;
/// for tests that compare the paths.
uint64_t sigma_bits_dot_with(unsigned vector_bits, const void *bits, const uint64_t *w, size_t nbits);
/// The same for a table of 16-bit entries, summed exactly (not mod 2^16): the caller keeps (nbits / 32) × the
/// largest entry below 2^16, so that no 16-bit lane of the vector path overflows. `nbits` is a multiple of 64.
uint64_t sigma_bits_dot16(const void *bits, const uint16_t *w, size_t nbits);
uint64_t sigma_bits_dot16_with(unsigned vector_bits, const void *bits, const uint16_t *w, size_t nbits);

/// One level of DPF key generation for `count` keys (both parties' seeds advance in place). For key i with
/// a = bit `shift` of alphas[i]: writes the level word (seed correction, t_L in bit 0) to words_out[i], and sets bit
/// (first_key + i) of `delta_bits` when t_R ⊕ t_L = 1 (the caller zeroes the array).
void sigma_dpf_keygen_level(sigma_aes_backend backend, const sigma_prg *prg, void *seeds0, void *seeds1,
                            const uint64_t *alphas, unsigned shift, void *words_out, uint8_t *delta_bits,
                            size_t first_key, size_t count);

/// The last level of DPF key generation: the leaf words L_0, L_1 of each key (2 blocks per key in leaf_out), with
/// the unit vector e_{α mod 128} in the child that bit 7 of α picks.
void sigma_dpf_keygen_leaf(sigma_aes_backend backend, const sigma_prg *prg, const void *seeds0, const void *seeds1,
                           const uint64_t *alphas, void *leaf_out, size_t count);

/// Fills `out` with `count` bytes from the operating system's CSPRNG (getrandom). Returns 0 on success.
int sigma_os_random(void *out, size_t count);

/// Makes glibc keep freed memory for reuse instead of returning it to the kernel: blocks up to 32 MiB come from
/// the heap (not from fresh mmap()s) and the heap is never trimmed. For processes that allocate and free many
/// arrays of MBs (a party's gates), which otherwise pay a page fault and a page clear per 4 KiB each time.
void sigma_keep_freed_memory(void);

#ifdef __cplusplus
}
#endif

#endif
