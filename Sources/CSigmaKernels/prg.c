// The fixed-key hash PRG and the DPF level kernels built on it.
//
// Security assumption (written where it is used). Tree-based FSS needs a length-doubling PRG
// G(s) = (G_0(s), G_1(s)). The reference code re-keys AES with the seed at every node (one key expansion per
// node). We use instead the fixed-key hash of Guo, Katz, Wang and Yu (S&P 2020, "Efficient and secure
// multiparty computation from fixed-key block ciphers"),
//
//     H(x) = pi(sigma(x)) ^ sigma(x),   sigma(x_hi || x_lo) = (x_hi ^ x_lo) || x_hi,
//
// with pi AES-128 under one fixed public key and sigma a linear orthomorphism, and separate the halves by a
// public tweak: G_c(s) = H(s ^ tau_c) with distinct constants tau_0 = 0, tau_1, tau_2, tau_3. Modelling pi as a
// random permutation, H is circular correlation robust (GKWY Thm. 6): H(x ^ R) for a secret uniform R looks
// random on distinct public x. A DPF or DCF seed s is such an R, so G_0(s), ..., G_3(s) are jointly pseudorandom
// and independent of every other seed's outputs. One child costs one AES call (the "half-PRG"), no key is ever
// expanded online, and all blocks share one key schedule, which the vector kernels keep in registers: a
// per-block choice between two keys needs round keys loaded from memory and halves VAES throughput on Zen 3
// (measured: 1.75 against 0.90 ns per block).
#include "CSigmaKernels.h"
#include "internal.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct {
    uint64_t lo, hi;
} block;

// Large enough to amortise the call overhead of the AES kernels, small enough to stay in L1.
#define CHUNK 128

static inline block sigma_of(block x) { return (block){x.hi, x.hi ^ x.lo}; }
static inline block load_block(const uint8_t *p) {
    block b;
    memcpy(&b, p, 16);
    return b;
}
static inline void store_block(uint8_t *p, block b) { memcpy(p, &b, 16); }

void sigma_prg_init(sigma_prg *prg, const void *key16, const void *tweaks64) {
    sigma_aes_expand_key(key16, &prg->key);
    const uint8_t *t = (const uint8_t *)tweaks64;
    for (int c = 0; c < 4; c++) {
        block tweak = sigma_of(load_block(t + 16 * c));
        prg->sigma_tweaks[c][0] = tweak.lo;
        prg->sigma_tweaks[c][1] = tweak.hi;
    }
}

// y = sigma(x ^ tau_c) = sigma(x) ^ sigma(tau_c), the AES input of G_c(x); G_c(x) = AES(y) ^ y.
static inline block tweaked(const sigma_prg *prg, block x, unsigned c) {
    block s = sigma_of(x);
    return (block){s.lo ^ prg->sigma_tweaks[c][0], s.hi ^ prg->sigma_tweaks[c][1]};
}

void sigma_aes_ctr_keystream(sigma_aes_backend backend, const sigma_aes_key *key, uint64_t counter_lo,
                             uint64_t counter_hi, void *out, size_t count) {
    uint8_t *o = (uint8_t *)out;
    block ctr[CHUNK];
    for (size_t done = 0; done < count;) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        for (size_t i = 0; i < n; i++) {
            ctr[i] = (block){counter_lo, counter_hi};
            counter_hi += (++counter_lo == 0);
        }
        sigma_internal_ecb(backend, key, (const uint8_t *)ctr, o + 16 * done, n);
        done += n;
    }
}

void sigma_crhash_select(sigma_aes_backend backend, const sigma_prg *prg, unsigned k0, const void *in,
                         const uint8_t *sel, void *out, size_t count) {
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst = (uint8_t *)out;
    block y[CHUNK], h[CHUNK];
    for (size_t done = 0; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        for (size_t i = 0; i < n; i++) y[i] = tweaked(prg, load_block(src + 16 * (done + i)), (k0 & 2) + (sel[done + i] & 1));
        sigma_internal_ecb(backend, &prg->key, (const uint8_t *)y, (uint8_t *)h, n);
        for (size_t i = 0; i < n; i++) store_block(dst + 16 * (done + i), (block){h[i].lo ^ y[i].lo, h[i].hi ^ y[i].hi});
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

// Both children of 8 seeds per iteration in one ymm each: [sigma(x) ^ sigma(tau_a) | sigma(x) ^ sigma(tau_b)], so
// 16 AES blocks are in flight with the round keys in registers; the halves go to out0 and out1.
__attribute__((target("aes,vaes,avx2"))) static size_t crhash_pair_vaes256(const sigma_prg *prg, unsigned k0,
                                                                           const uint8_t *src, uint8_t *out0,
                                                                           uint8_t *out1, size_t count) {
    const __m128i high_mask = _mm_set_epi64x(-1, 0);
    const __m256i tweaks = _mm256_set_epi64x(
        (long long)prg->sigma_tweaks[k0 + 1][1], (long long)prg->sigma_tweaks[k0 + 1][0],
        (long long)prg->sigma_tweaks[k0][1], (long long)prg->sigma_tweaks[k0][0]);
    __m256i rk[11];
    for (int r = 0; r < 11; r++)
        rk[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)prg->key.round_keys[r]));
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256i y[8], a[8];
        for (int u = 0; u < 8; u++) {
            __m128i x = _mm_loadu_si128((const __m128i *)(src + 16 * (i + u)));
            __m128i sx = _mm_xor_si128(_mm_shuffle_epi32(x, 0x4E), _mm_and_si128(x, high_mask));
            y[u] = _mm256_xor_si256(_mm256_broadcastsi128_si256(sx), tweaks);
            a[u] = _mm256_xor_si256(y[u], rk[0]);
        }
        for (int r = 1; r < 10; r++)
            for (int u = 0; u < 8; u++) a[u] = _mm256_aesenc_epi128(a[u], rk[r]);
        for (int u = 0; u < 8; u++) {
            __m256i h = _mm256_xor_si256(_mm256_aesenclast_epi128(a[u], rk[10]), y[u]);
            _mm_storeu_si128((__m128i *)(out0 + 16 * (i + u)), _mm256_castsi256_si128(h));
            _mm_storeu_si128((__m128i *)(out1 + 16 * (i + u)), _mm256_extracti128_si256(h, 1));
        }
    }
    return i;
}
#endif

void sigma_crhash_pair(sigma_aes_backend backend, const sigma_prg *prg, unsigned k0, const void *in, void *out0,
                       void *out1, size_t count) {
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst[2] = {(uint8_t *)out0, (uint8_t *)out1};
    size_t start = 0;
#if defined(__x86_64__)
    if (backend <= SIGMA_AES_VAES256 && sigma_aes_backend_supported(backend))
        start = crhash_pair_vaes256(prg, k0 & 2, src, dst[0], dst[1], count);
#endif
    block y[2 * CHUNK], h[2 * CHUNK];
    for (size_t done = start; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        for (size_t i = 0; i < n; i++) {
            block x = load_block(src + 16 * (done + i));
            y[2 * i] = tweaked(prg, x, k0 & 2);
            y[2 * i + 1] = tweaked(prg, x, (k0 & 2) + 1);
        }
        sigma_internal_ecb(backend, &prg->key, (const uint8_t *)y, (uint8_t *)h, 2 * n);
        for (size_t i = 0; i < 2 * n; i++)
            store_block(dst[i & 1] + 16 * (done + i / 2), (block){h[i].lo ^ y[i].lo, h[i].hi ^ y[i].hi});
    }
}

// The correction block C(k, d): with `deltas`, the stored level word (t_L in bit 0) with bit 0 flipped by
// delta = t_R ^ t_L when d = 1; without, the pair cw[2k], cw[2k + 1] (leaf words).
static inline block path_correction(const uint8_t *cws, const uint8_t *deltas, size_t first_key, size_t key,
                                    uint64_t dir) {
    if (!deltas) return load_block(cws + 16 * (2 * key + dir));
    block c = load_block(cws + 16 * key);
    size_t bit = first_key + key;
    c.lo ^= dir & (deltas[bit >> 3] >> (bit & 7));
    return c;
}

// The share bit of a point from its leaf, its last seed (control bit = the parent's share of being on alpha's
// path) and the comparison accumulator. Comparison: the right sibling at the leaf level (parent share XOR the
// leaf's parity) when x goes left there, plus the leaf bits 0 ... x's low 7 bits. Branch-free: the leaf bit
// positions are uniformly random, so branches on them would mispredict half the time.
static inline uint8_t finish_point(uint64_t x, block leaf, uint64_t last_seed_lo, uint64_t acc, int comparison) {
    const unsigned low = (unsigned)(x & 127);
    const uint64_t in_high = 0 - (uint64_t)(low >> 6);  // all ones when the bit lies in the high word
    if (!comparison) return (uint8_t)((((leaf.hi & in_high) | (leaf.lo & ~in_high)) >> (low & 63)) & 1);
    const uint64_t through = (2ull << (low & 63)) - 1;  // bits 0 ... low & 63 (all 64 when it is 63)
    const uint64_t upto = (leaf.lo & (through | in_high)) ^ (leaf.hi & through & in_high);
    const uint64_t goes_right = 0 - ((x >> 7) & 1);
    const uint64_t sibling = (goes_right & (uint64_t)__builtin_popcountll(leaf.lo ^ leaf.hi)) | (~goes_right & last_seed_lo);
    return (uint8_t)((acc ^ sibling ^ (uint64_t)__builtin_popcountll(upto)) & 1);
}

// Level-by-level evaluation of up to CHUNK points with the batched per-block-key AES: the portable and AES-NI
// backends, and the tail of the vector path.
// Point i uses key first_key + (phase + i) / points_per_key: a chunk may start inside a key's points.
static void eval_levels(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys,
                        const uint64_t *x, size_t first_key, size_t phase, size_t points_per_key, size_t count,
                        int comparison, uint8_t *out) {
    const unsigned depth = keys->input_bits - 7;
    block seed[CHUNK], s[CHUNK], h[CHUNK];
    uint8_t dir[CHUNK];
    uint64_t acc[CHUNK];
    size_t key_of[CHUNK];
    for (size_t i = 0; i < count; i++) {
        key_of[i] = (phase + i) / points_per_key;
        seed[i] = load_block((const uint8_t *)keys->roots + 16 * (first_key + key_of[i]));
        acc[i] = 0;
    }
    for (unsigned level = 1; level <= depth; level++) {
        unsigned shift = keys->input_bits - level;
        int leaf_level = level == depth;
        const uint8_t *words = leaf_level ? (const uint8_t *)keys->leaves + 32 * first_key
                                          : (const uint8_t *)keys->levels + (level - 1) * keys->level_stride +
                                                16 * first_key;
        const uint8_t *deltas = leaf_level ? NULL : keys->deltas + (level - 1) * keys->delta_stride;
        for (size_t i = 0; i < count; i++) {
            dir[i] = (uint8_t)((x[i] >> shift) & 1);
            s[i] = tweaked(prg, seed[i], dir[i]);
        }
        sigma_internal_ecb(backend, &prg->key, (const uint8_t *)s, (uint8_t *)h, count);
        for (size_t i = 0; i < count; i++) {
            uint64_t t = seed[i].lo & 1, mask = 0 - t;
            block c = path_correction(words, deltas, first_key, key_of[i], dir[i]);
            block o = {h[i].lo ^ s[i].lo ^ (c.lo & mask), h[i].hi ^ s[i].hi ^ (c.hi & mask)};
            if (leaf_level) {
                out[i] = finish_point(x[i], o, seed[i].lo, acc[i], comparison);
            } else {
                acc[i] ^= (dir[i] ^ 1u) & (t ^ (o.lo & 1));
                seed[i] = o;
            }
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

// Level-by-level evaluation with VAES, for a chunk of points whose seeds and state (17 bytes a point) stay in L2.
// Within a level, groups of 16 points are independent, so the out-of-order core overlaps one group's AES latency
// with the next group's work, and each level's correction words stream sequentially from the key, fetched a level
// ahead. Chunks of 4096 points rather than 2048 give those fetches twice the lead (keys streaming from memory:
// aes_efficiency_38 0.57 -> 0.61 on average over eight alternating runs; 1024 and 512 were slower). (A depth-first
// variant that kept 16 seeds in registers across all levels was latency-bound: 2.5 against 0.9 ns a block.) Two
// level passes share the drivers below: VAES on ymm (AVX2: 16 registers, so round keys and
// AES inputs spill) and VAES on zmm (AVX-512: 32 registers hold the round keys, four blocks a register, opmasks
// select tweaks and corrections, ternary logic folds sigma, the tweak and the first and last round keys, and the
// control bits are kept in general-purpose registers).
#define GROUP 16
#define EVAL_CHUNK 4096
#define TARGET_VAES256 __attribute__((target("aes,vaes,avx2")))
#define TARGET_VAES512 __attribute__((target("aes,vaes,avx512f,avx512bw,avx512vpopcntdq,bmi2")))

// Which key point i of a level pass uses: first_key + key_of[i] (any order), first_key + i, or first_key + i / 2
// (two points a key, as the extra points of a three-shift evaluation).
enum { LAYOUT_KEYED = 0, LAYOUT_SINGLE = 1, LAYOUT_PAIRS = 2 };

// One level for `count` points (a multiple of GROUP). Point i's seed is at seeds + 16i (a 64-byte aligned array)
// and its state a byte a point: for the ymm pass state[i], bit 0 the comparison accumulator (it reads the control
// bit from the seed); for the zmm pass one `zmm_state` record a group of GROUP points (see there). Point i uses key
// first_key + i when key_of is NULL, else first_key + key_of[i] (any order). At the leaf level point i's share goes
// to out[out_index ? out_index[i] : i].
typedef void (*level_pass_fn)(const sigma_prg *prg, const sigma_dpf_keys *keys, unsigned level, const uint64_t *x,
                              const uint32_t *key_of, size_t first_key, uint8_t *seeds, uint8_t *state, size_t count,
                              uint8_t *out, const uint32_t *out_index);

// The leaf level's last step for one group, from the leaves (two words a point) and, one bit a point, the last
// seeds' control bits and the accumulators.
static inline void finish_group(const uint64_t *x, const uint64_t *leaf_words, uint32_t control, uint32_t acc,
                                int comparison, uint8_t *out, const uint32_t *out_index) {
    for (int i = 0; i < GROUP; i++) {
        block leaf = {leaf_words[2 * i], leaf_words[2 * i + 1]};
        out[out_index ? out_index[i] : (size_t)i] =
            finish_point(x[i], leaf, (control >> i) & 1, (acc >> i) & 1, comparison);
    }
}

// The ymm pass: two points a register. `comparison` and `single` (key_of == NULL) are compile-time constants in
// each instantiation, so the per-pair loops unroll fully.
static inline __attribute__((always_inline)) TARGET_VAES256 void level_pass_vaes256(
    const sigma_prg *prg, const sigma_dpf_keys *keys, unsigned level, const uint64_t *x, const uint32_t *key_of,
    size_t first_key, uint8_t *seed_bytes, uint8_t *state, size_t count, uint8_t *out,
    const uint32_t *out_index, const int comparison, const int single) {
    const __m256i high_mask = _mm256_set_epi64x(-1, 0, -1, 0);
    // [d0, 0, d1, 0] for the four direction pairs of two blocks.
    static const int64_t direction_table[4][4] = {{0, 0, 0, 0}, {1, 0, 0, 0}, {0, 0, 1, 0}, {1, 0, 1, 0}};
    __m256i rk[11], tweak_table[4];  // sigma(tau_d0) | sigma(tau_d1) for the four direction pairs
    for (int combo = 0; combo < 4; combo++)
        tweak_table[combo] = _mm256_set_epi64x(
            (long long)prg->sigma_tweaks[combo >> 1][1], (long long)prg->sigma_tweaks[combo >> 1][0],
            (long long)prg->sigma_tweaks[combo & 1][1], (long long)prg->sigma_tweaks[combo & 1][0]);
    for (int r = 0; r < 11; r++)
        rk[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)prg->key.round_keys[r]));
    __m256i *seeds = (__m256i *)(void *)seed_bytes;
    const unsigned depth = keys->input_bits - 7;
    const int leaf_level = level == depth;
    const __m128i to_sign = _mm_cvtsi32_si128((int)(63 - (keys->input_bits - level)));
    const uint8_t *words = leaf_level ? (const uint8_t *)keys->leaves
                                      : (const uint8_t *)keys->levels + (level - 1) * keys->level_stride;
    const uint8_t *deltas = leaf_level ? NULL : keys->deltas + (level - 1) * keys->delta_stride;
    for (size_t j = 0; j < count; j += GROUP) {
        __m256i *v = seeds + j / 2;
        unsigned selectors = 0;
#pragma clang loop unroll(full)
        for (int q = 0; q < GROUP / 4; q++) {
            __m256i d = _mm256_sll_epi64(_mm256_loadu_si256((const __m256i *)(x + j + 4 * q)), to_sign);
            selectors |= (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(d)) << (4 * q);
        }
        __m256i y[GROUP / 2], a[GROUP / 2];  // y: the AES input sigma(v) ^ sigma(tau_d), kept for y ^ AES(y)
#pragma clang loop unroll(full)
        for (int u = 0; u < GROUP / 2; u++) {
            y[u] = _mm256_xor_si256(
                _mm256_xor_si256(_mm256_shuffle_epi32(v[u], 0x4E), _mm256_and_si256(v[u], high_mask)),
                tweak_table[(selectors >> (2 * u)) & 3]);
            a[u] = _mm256_xor_si256(y[u], rk[0]);
        }
        for (int r = 1; r < 10; r++)
#pragma clang loop unroll(full)
            for (int u = 0; u < GROUP / 2; u++) a[u] = _mm256_aesenc_epi128(a[u], rk[r]);
        if (!leaf_level) {
            // Consecutive keys: one 32-bit window holds the group's 16 delta bits.
            __m256i delta_bits = _mm256_setzero_si256();
            if (single) {
                const size_t first = first_key + j;
                uint32_t window;
                memcpy(&window, deltas + (first >> 3), 4);
                delta_bits = _mm256_set1_epi64x((long long)(window >> (first & 7)));
            }
#pragma clang loop unroll(full)
            for (int u = 0; u < GROUP / 2; u++) {
                __m256i h = _mm256_xor_si256(_mm256_aesenclast_epi128(a[u], rk[10]), y[u]);
                __m256i dirs = _mm256_loadu_si256((const __m256i *)direction_table[(selectors >> (2 * u)) & 3]);
                __m256i c, delta;
                if (single) {
                    c = _mm256_loadu_si256((const __m256i *)(words + 16 * (first_key + j + 2 * u)));
                    delta = _mm256_srlv_epi64(delta_bits, _mm256_set_epi64x(64, 2 * u + 1, 64, 2 * u));
                } else {
                    size_t k0 = first_key + key_of[j + 2 * u], k1 = first_key + key_of[j + 2 * u + 1];
                    c = _mm256_inserti128_si256(
                        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(words + 16 * k0))),
                        _mm_loadu_si128((const __m128i *)(words + 16 * k1)), 1);
                    delta = _mm256_set_epi64x(0, (long long)(deltas[k1 >> 3] >> (k1 & 7)), 0,
                                              (long long)(deltas[k0 >> 3] >> (k0 & 7)));
                }
                c = _mm256_xor_si256(c, _mm256_and_si256(delta, dirs));
                __m256i t = _mm256_shuffle_epi32(_mm256_slli_epi64(v[u], 63), 0x44);
                __m256i o = _mm256_xor_si256(
                    h, _mm256_castpd_si256(_mm256_blendv_pd(_mm256_setzero_pd(), _mm256_castsi256_pd(c),
                                                            _mm256_castsi256_pd(t))));
                if (comparison) {  // the right sibling of a left-going point: parent ^ child control bit
                    unsigned changed = (unsigned)(_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_slli_epi64(v[u], 63))) ^
                                                  _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_slli_epi64(o, 63))));
                    unsigned left = ~(selectors >> (2 * u));
                    state[j + 2 * u] ^= (uint8_t)(changed & left & 1);
                    state[j + 2 * u + 1] ^= (uint8_t)((changed >> 2) & (left >> 1) & 1);
                }
                v[u] = o;
            }
        } else {
            uint64_t leaf_words[2 * GROUP];
            uint32_t control = 0, accumulators = 0;
            for (int i = 0; i < GROUP; i++) accumulators |= (uint32_t)(state[j + i] & 1) << i;
#pragma clang loop unroll(full)
            for (int u = 0; u < GROUP / 2; u++) {
                unsigned bits = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_slli_epi64(v[u], 63)));
                control |= ((bits & 1) | ((bits >> 1) & 2)) << (2 * u);
                __m256i h = _mm256_xor_si256(_mm256_aesenclast_epi128(a[u], rk[10]), y[u]);
                unsigned d0 = (selectors >> (2 * u)) & 1, d1 = (selectors >> (2 * u + 1)) & 1;
                size_t k0 = first_key + (single ? j + 2 * u : key_of[j + 2 * u]);
                size_t k1 = single ? k0 + 1 : first_key + key_of[j + 2 * u + 1];
                __m256i c = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(words + 32 * k0 + 16 * d0))),
                    _mm_loadu_si128((const __m128i *)(words + 32 * k1 + 16 * d1)), 1);
                __m256i t = _mm256_shuffle_epi32(_mm256_slli_epi64(v[u], 63), 0x44);
                __m256i leaf = _mm256_xor_si256(
                    h, _mm256_castpd_si256(_mm256_blendv_pd(_mm256_setzero_pd(), _mm256_castsi256_pd(c),
                                                            _mm256_castsi256_pd(t))));
                _mm256_storeu_si256((__m256i *)(leaf_words + 4 * u), leaf);
            }
            finish_group(x + j, leaf_words, control, accumulators, comparison, out + (out_index ? 0 : j),
                         out_index ? out_index + j : NULL);
        }
    }
}

// The zmm pass: four points a register, four registers a step. Zen 4 retires one zmm aesenc per cycle (latency
// 4; batched ECB: 1.45 G blocks/s), so the AES unit is not what limits the pass: the other vector and opmask work
// per register is, and every operation taken out of it shows (C changes measured with `sigma bench fss`,
// aes_efficiency_38 with keys in L2). The control bits and the comparison accumulator therefore live in
// general-purpose registers, one bit a point (bit 4u + i for point i of register u), and in the group's state
// record between levels; per register the vector side is sigma, the tweak, the first and last round keys, the
// correction under the control mask and one test for the child's stored bit 0 (0.46 -> 0.54 with these and four
// registers a step instead of eight, whose 16 live AES registers spilled the last round keys; without the tweak's
// opmask 0.68, without the correction and the test 0.69 — the floor of that structure, which the group records
// below and the vector leaf finish then passed: 0.72-0.73).
//
// The right child's control-bit correction delta costs no vector operation: the stored seed is the child before
// it (bit 0 off by m = t·d·delta), and since tau_1 = e_0 (the unit in bit 0; checked where the pass is chosen),
// the next level's AES input sigma(v ^ m·e_0 ^ tau_d) = sigma(v ^ tau_{d^m}) only needs the
// tweak of direction d ^ m. So the keys and the seeds' meaning are those of every other evaluator; only the stored
// bit 0 lags by a level.
//
// The zmm pass keeps its state as one record a group of 16 points (the same 16 bytes as a byte a point), laid out
// for its use: the opmasks of the level's tweak (direction d ^ m) and of the control bit t come ready, two bits a
// point (both 64-bit lanes of its block, byte u for register u), written by the previous level's tail, so nothing
// is gathered from per-point bytes ahead of the AES rounds; the direction, control and accumulator bits one a point
// for the general-purpose side. Against a state byte a point (bit 0 acc, 1 t, 2 m, 4 d: eight pext at a group's
// start, eight pdep at its end), keys in L2 0.58 -> 0.66-0.68, streaming 0.47-0.49 -> 0.53-0.57.
typedef struct __attribute__((may_alias)) {
    uint32_t tweak_lanes, t_lanes;
    uint16_t right, t, acc, unused;
} zmm_state;
_Static_assert(sizeof(zmm_state) == GROUP, "the zmm state takes a byte a point");

// Bit i of `bits` at bits 2i and 2i + 1.
static inline uint32_t both_lanes(uint32_t bits) {
    uint32_t x = bits & 0xffff;
    x = (x | x << 8) & 0x00ff00ffu;
    x = (x | x << 4) & 0x0f0f0f0fu;
    x = (x | x << 2) & 0x33333333u;
    x = (x | x << 1) & 0x55555555u;
    return x * 3;
}

// both_lanes in one instruction, for the zmm pass (BMI2).
static inline __attribute__((always_inline)) TARGET_VAES512 uint32_t both_lanes_bmi2(uint32_t bits) {
    return _pdep_u32(bits, 0x55555555u) * 3;
}

// A point's state as the byte the other passes keep (bit 0 acc, bit 1 t, bit 2 the pending flip m, bit 4 the
// direction d), and back: for the shifted evaluation's copies between points.
static inline uint8_t zmm_point_state(const uint8_t *state, size_t i) {
    const zmm_state *g = (const zmm_state *)(const void *)(state + i / GROUP * GROUP);
    const unsigned b = i % GROUP, d = (g->right >> b) & 1u, m = ((g->tweak_lanes >> (2 * b)) & 1u) ^ d;
    return (uint8_t)(((g->acc >> b) & 1u) | ((g->t >> b) & 1u) << 1 | m << 2 | d << 4);
}

static inline void set_zmm_point_state(uint8_t *state, size_t i, uint8_t byte) {
    zmm_state *g = (zmm_state *)(void *)(state + i / GROUP * GROUP);
    const unsigned b = i % GROUP, acc = byte & 1u, t = (byte >> 1) & 1u, m = (byte >> 2) & 1u, d = (byte >> 4) & 1u;
    const uint16_t bit = (uint16_t)(1u << b);
    const uint32_t pair = 3u << (2 * b);
    g->acc = (uint16_t)((g->acc & ~bit) | acc << b);
    g->t = (uint16_t)((g->t & ~bit) | t << b);
    g->right = (uint16_t)((g->right & ~bit) | d << b);
    g->tweak_lanes = (g->tweak_lanes & ~pair) | ((d ^ m) ? pair : 0);
    g->t_lanes = (g->t_lanes & ~pair) | (t ? pair : 0);
}

// The fixed inputs of a zmm level pass, in registers.
typedef struct {
    __m512i rk[11], tweak1, high_lanes, low_one;
} zmm_constants;

// Bit i: point i of `points` (a multiple of 8) has the bit of `direction_bit` set in x.
static inline __attribute__((always_inline)) TARGET_VAES512 uint32_t x_bits(const uint64_t *x, int points,
                                                                           __m512i direction_bit) {
    uint32_t bits = 0;
    for (int q = 0; q < points / 8; q++)
        bits |= (uint32_t)_mm512_test_epi64_mask(_mm512_loadu_si512((const void *)(x + 8 * q)), direction_bit)
                << (8 * q);
    return bits;
}

// The output bits of 16 points (bit i: point i) from their leaves, four to a register, with their last control
// bits t and comparison accumulators: finish_point's arithmetic on vectors. The bit at x's low 7 bits (equality),
// or the parity of the leaf's bits 0 ... x mod 128 (comparison), is the parity of the leaf ANDed with a per-lane
// mask, summed over the block's two 64-bit lanes; the right sibling's bit is the parity of the whole leaf. (The
// scalar finish took 10 % of a 38-bit comparison and a third of a 12-bit one.)
static inline __attribute__((always_inline)) TARGET_VAES512 uint32_t leaf_bits_vaes512(const __m512i leaf[4],
                                                                                         const uint64_t *x,
                                                                                         uint32_t t, uint32_t acc,
                                                                                         const int comparison) {
    const __m512i one = _mm512_set1_epi64(1), low_bits = _mm512_set1_epi64(127), word_bits = _mm512_set1_epi64(63);
    const __m512i each_twice = _mm512_set_epi64(3, 3, 2, 2, 1, 1, 0, 0);
    uint32_t at_or_below = 0, sibling = 0;  // per register u, bits 8u + 2i: point 4u + i
#pragma clang loop unroll(full)
    for (int u = 0; u < 4; u++) {
        const __m512i xs = _mm512_permutexvar_epi64(
            each_twice, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 4 * u))));
        const __m512i low = _mm512_and_si512(xs, low_bits), shift = _mm512_and_si512(low, word_bits);
        const __mmask8 high = _mm512_cmpgt_epu64_mask(low, word_bits);  // the bit lies in the block's high word
        __m512i mask;
        if (comparison) {  // bits 0 ... low: the low word whole when the bit is in the high word
            const __m512i through = _mm512_sub_epi64(_mm512_sllv_epi64(_mm512_set1_epi64(2), shift), one);
            mask = _mm512_mask_mov_epi64(through, high & 0x55, _mm512_set1_epi64(-1));
            mask = _mm512_maskz_mov_epi64((__mmask8)(0x55 | (high & 0xaa)), mask);
        } else {  // the bit alone, in its word
            mask = _mm512_maskz_mov_epi64((__mmask8)((high & 0xaa) | (~high & 0x55)), _mm512_sllv_epi64(one, shift));
        }
        __m512i count = _mm512_popcnt_epi64(_mm512_and_si512(leaf[u], mask));
        count = _mm512_add_epi64(count, _mm512_shuffle_epi32(count, 0x4E));
        at_or_below |= (uint32_t)_mm512_mask_test_epi64_mask(0x55, count, one) << (8 * u);
        if (comparison) {
            __m512i whole = _mm512_popcnt_epi64(leaf[u]);
            whole = _mm512_add_epi64(whole, _mm512_shuffle_epi32(whole, 0x4E));
            sibling |= (uint32_t)_mm512_mask_test_epi64_mask(0x55, whole, one) << (8 * u);
        }
    }
    const uint32_t upto = _pext_u32(at_or_below, 0x55555555u);
    if (!comparison) return upto;
    const uint32_t right = x_bits(x, GROUP, _mm512_set1_epi64(1 << 7));  // the leaf level's direction
    return (acc ^ upto ^ ((right & _pext_u32(sibling, 0x55555555u)) | (~right & t))) & 0xffff;
}

// Points j ... j + 4Z − 1 of a zmm level pass (Z registers of four points).
static inline __attribute__((always_inline)) TARGET_VAES512 void group_vaes512(
    const zmm_constants *k, const uint8_t *roots, const uint8_t *words, const uint8_t *deltas, const int leaf_level,
    const uint64_t *x,
    const __m512i direction_bit, const __m512i next_direction_bit, const int first_level, const uint32_t *key_of,
    size_t first_key, __m512i *v, uint8_t *state, size_t j, uint8_t *out, const uint32_t *out_index,
    const int comparison, const int layout, const int Z) {
    const int single = layout == LAYOUT_SINGLE, pairs = layout == LAYOUT_PAIRS;
    // Bit i: point j + i goes right at this level. Past the first level the previous level's tail has read it from
    // x into the state record, with the tweak's opmasks, so the tweak does not wait on a test of x: that chain
    // ahead of the AES rounds cost 5-10 % of the pass.
    zmm_state *group = (zmm_state *)(void *)(state + j);
    const uint32_t right = first_level ? x_bits(x + j, 4 * Z, direction_bit) : group->right;
    const uint32_t tweak_lanes = first_level ? both_lanes_bmi2(right) : group->tweak_lanes;  // no flip at the root
    const uint32_t t = group->t, t_lanes = group->t_lanes;
    uint32_t acc = comparison ? group->acc : 0;
    __m512i a[8], last_key[8];
#pragma clang loop unroll(full)
    for (int u = 0; u < Z; u++) {
        // The first level of consecutive keys reads the roots where they are (the driver need not copy them).
        const __m512i seed = first_level && single
                                 ? _mm512_loadu_si512((const void *)(roots + 16 * (first_key + j + 4 * u)))
                                 : v[u];
        __m512i s = _mm512_ternarylogic_epi64(_mm512_shuffle_epi32(seed, 0x4E), seed, k->high_lanes, 0x78);
        __m512i tweak = _mm512_maskz_mov_epi64((__mmask8)(tweak_lanes >> (8 * u)), k->tweak1);  // tau_0 = 0
        a[u] = _mm512_ternarylogic_epi64(s, tweak, k->rk[0], 0x96);
        last_key[u] = _mm512_ternarylogic_epi64(s, tweak, k->rk[10], 0x96);
    }
#pragma clang loop unroll(full)
    for (int r = 1; r < 10; r++)
#pragma clang loop unroll(full)
        for (int u = 0; u < Z; u++) a[u] = _mm512_aesenc_epi128(a[u], k->rk[r]);
    if (!leaf_level) {
        uint32_t delta = 0;  // bit i: the key of point j + i has t_R ^ t_L set
        if (single) {
            const size_t first = first_key + j;
            uint64_t window;  // the group's 32 bits at most, shifted; within the readable bytes
            memcpy(&window, deltas + (first >> 3), 8);
            delta = (uint32_t)(window >> (first & 7));
        } else if (pairs) {
            const size_t first = first_key + j / 2;
            uint32_t window;
            memcpy(&window, deltas + (first >> 3), 4);  // 25 ... 32 bits: the group's 16 keys at most, shifted
            delta = both_lanes_bmi2((window >> (first & 7)) & 0xffff);  // each key's bit twice
        } else {
            for (int i = 0; i < 4 * Z; i++) {
                size_t key = first_key + key_of[j + i];
                delta |= (uint32_t)((deltas[key >> 3] >> (key & 7)) & 1) << i;
            }
        }
        uint64_t raw = 0;  // the children's stored bit 0, at the even bits of each register's byte
#pragma clang loop unroll(full)
        for (int u = 0; u < Z; u++) {
            __m512i h = _mm512_aesenclast_epi128(a[u], last_key[u]);
            __m512i c;
            if (single) {
                c = _mm512_loadu_si512((const void *)(words + 16 * (first_key + j + 4 * u)));
            } else if (pairs) {
                __m512i two = _mm512_castsi256_si512(
                    _mm256_loadu_si256((const __m256i *)(words + 16 * (first_key + (j + 4 * u) / 2))));
                c = _mm512_shuffle_i64x2(two, two, _MM_SHUFFLE(1, 1, 0, 0));
            } else {
                const uint32_t *key = key_of + j + 4 * u;
                c = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(words + 16 * (first_key + key[0]))));
                c = _mm512_inserti32x4(c, _mm_loadu_si128((const __m128i *)(words + 16 * (first_key + key[1]))), 1);
                c = _mm512_inserti32x4(c, _mm_loadu_si128((const __m128i *)(words + 16 * (first_key + key[2]))), 2);
                c = _mm512_inserti32x4(c, _mm_loadu_si128((const __m128i *)(words + 16 * (first_key + key[3]))), 3);
            }
            __m512i o = _mm512_mask_xor_epi64(h, (__mmask8)(t_lanes >> (8 * u)), h, c);
            raw |= (uint64_t)_mm512_test_epi64_mask(o, k->low_one) << (8 * u);
            v[u] = o;
        }
        const uint32_t child_flip = t & right & delta;
        const uint32_t child_t = (uint32_t)_pext_u64(raw, 0x5555555555555555ull) ^ child_flip;
        if (comparison) acc ^= (t ^ child_t) & ~right;  // the left-going points' right siblings
        const uint32_t next_right = x_bits(x + j, 4 * Z, next_direction_bit);
        group->right = (uint16_t)next_right;
        group->t = (uint16_t)child_t;
        group->acc = (uint16_t)acc;
        group->tweak_lanes = both_lanes_bmi2(next_right ^ child_flip);
        group->t_lanes = both_lanes_bmi2(child_t);
    } else {
        __m512i leaf[4];
#pragma clang loop unroll(full)
        for (int u = 0; u < 4; u++) {
            __m512i h = _mm512_aesenclast_epi128(a[u], last_key[u]);
            const uint8_t *leaf_at[4];
            for (int b = 0; b < 4; b++) {
                size_t key =
                    first_key + (single ? j + 4 * u + b : pairs ? (j + 4 * u + b) / 2 : key_of[j + 4 * u + b]);
                leaf_at[b] = words + 32 * key + 16 * ((right >> (4 * u + b)) & 1);
            }
            __m512i c = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)leaf_at[0]));
            c = _mm512_inserti32x4(c, _mm_loadu_si128((const __m128i *)leaf_at[1]), 1);
            c = _mm512_inserti32x4(c, _mm_loadu_si128((const __m128i *)leaf_at[2]), 2);
            c = _mm512_inserti32x4(c, _mm_loadu_si128((const __m128i *)leaf_at[3]), 3);
            leaf[u] = _mm512_mask_xor_epi64(h, (__mmask8)(t_lanes >> (8 * u)), h, c);
        }
        const uint32_t bits = leaf_bits_vaes512(leaf, x + j, t, acc, comparison);
        if (out_index) {
            for (int i = 0; i < GROUP; i++) out[out_index[j + i]] = (uint8_t)((bits >> i) & 1);
        } else {
            const uint64_t low = _pdep_u64(bits & 0xff, 0x0101010101010101ull);
            const uint64_t high = _pdep_u64((bits >> 8) & 0xff, 0x0101010101010101ull);
            memcpy(out + j, &low, 8);
            memcpy(out + j + 8, &high, 8);
        }
    }
}

// The zmm pass: 16 points a step.
static inline __attribute__((always_inline)) TARGET_VAES512 void level_pass_vaes512(
    const sigma_prg *prg, const sigma_dpf_keys *keys, unsigned level, const uint64_t *x, const uint32_t *key_of,
    size_t first_key, uint8_t *seed_bytes, uint8_t *state, size_t count, uint8_t *out, const uint32_t *out_index,
    const int comparison, const int layout) {
    zmm_constants k;
    for (int r = 0; r < 11; r++)
        k.rk[r] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)prg->key.round_keys[r]));
    k.tweak1 = _mm512_broadcast_i32x4(
        _mm_set_epi64x((long long)prg->sigma_tweaks[1][1], (long long)prg->sigma_tweaks[1][0]));
    k.high_lanes = _mm512_set_epi64(-1, 0, -1, 0, -1, 0, -1, 0);
    k.low_one = _mm512_set_epi64(0, 1, 0, 1, 0, 1, 0, 1);
    const unsigned depth = keys->input_bits - 7;
    const int leaf_level = level == depth;
    const __m512i direction_bit = _mm512_set1_epi64((long long)(1ull << (keys->input_bits - level)));
    const __m512i next_direction_bit =
        _mm512_set1_epi64(leaf_level ? 0 : (long long)(1ull << (keys->input_bits - level - 1)));
    const int first_level = level == 1;
    __m512i *seeds = (__m512i *)(void *)seed_bytes;
    const uint8_t *words = leaf_level ? (const uint8_t *)keys->leaves
                                      : (const uint8_t *)keys->levels + (level - 1) * keys->level_stride;
    const uint8_t *deltas = leaf_level ? NULL : keys->deltas + (level - 1) * keys->delta_stride;
    // The next level's corrections for the same consecutive keys, fetched while this level computes: each
    // level's words lie in another region of the key, where the hardware prefetcher starts cold.
    const uint8_t *next_words = NULL;
    size_t next_bytes = 0;
    if (layout != LAYOUT_KEYED && !leaf_level) {
        next_words = level + 1 == depth ? (const uint8_t *)keys->leaves + 32 * first_key
                                        : (const uint8_t *)keys->levels + level * keys->level_stride + 16 * first_key;
        next_bytes = level + 1 == depth ? 32 : 16;
    }
    // A loop for each kind of level, so that the group's tests of the level and the prefetch's stride are
    // constants (the passes' inner levels ran 2-4 % faster than with one loop testing them).
#define ZMM_GROUPS(leaf, first, stride)                                                                            \
    for (size_t j = 0; j < count; j += GROUP) {                                                                    \
        if (stride)                                                                                                \
            for (size_t line = 0; line < GROUP * (stride) / points_per_key; line += 64)                           \
                _mm_prefetch((const char *)(next_words + (stride) * (j / points_per_key) + line), _MM_HINT_T1);   \
        group_vaes512(&k, (const uint8_t *)keys->roots, words, deltas, leaf, x, direction_bit, next_direction_bit, \
                      first, key_of, first_key,                                                                    \
                      seeds + j / 4, state, j, out, out_index, comparison, layout, 4);                             \
    }
    const size_t points_per_key = layout == LAYOUT_PAIRS ? 2 : 1;
    if (next_words && level + 1 < depth) {  // and the next level's delta bits: a few lines, each a miss otherwise
        const uint8_t *next_deltas = keys->deltas + level * keys->delta_stride + first_key / 8;
        for (size_t line = 0; line < count / points_per_key / 8 + 1; line += 64)
            _mm_prefetch((const char *)(next_deltas + line), _MM_HINT_T1);
    }
    if (leaf_level && layout == LAYOUT_SINGLE && !first_level) {
        // The chunk's last pass fetches what the next chunk of consecutive keys starts with — its roots, points and
        // first level's words and delta bits — which no earlier pass does (past the keys' end the prefetches are
        // harmless).
        const uint8_t *next_roots = (const uint8_t *)keys->roots + 16 * (first_key + count);
        const uint8_t *first_words = (const uint8_t *)keys->levels + 16 * (first_key + count);
        for (size_t j = 0; j < count; j += GROUP) {
            for (size_t line = 0; line < 16 * GROUP; line += 64) {
                _mm_prefetch((const char *)(next_roots + 16 * j + line), _MM_HINT_T1);
                _mm_prefetch((const char *)(first_words + 16 * j + line), _MM_HINT_T1);
            }
            _mm_prefetch((const char *)(x + count + j), _MM_HINT_T1);
            _mm_prefetch((const char *)(x + count + j + 8), _MM_HINT_T1);
            if (j % 512 == 0) _mm_prefetch((const char *)(keys->deltas + (first_key + count + j) / 8), _MM_HINT_T1);
            group_vaes512(&k, (const uint8_t *)keys->roots, words, deltas, 1, x, direction_bit, next_direction_bit, 0,
                          key_of, first_key, seeds + j / 4, state, j, out, out_index, comparison, layout, 4);
        }
    } else if (leaf_level)
        ZMM_GROUPS(1, first_level, 0)
    else if (first_level || !next_words)
        ZMM_GROUPS(0, first_level, next_bytes)
    else if (next_bytes == 16)
        ZMM_GROUPS(0, 0, 16)
    else
        ZMM_GROUPS(0, 0, 32)
#undef ZMM_GROUPS
}

// One instantiation per (width, comparison, layout): the constants fold and the loops unroll.
#define LEVEL_PASS(name, impl, target, comparison, layout)                                                          \
    target static void name(const sigma_prg *prg, const sigma_dpf_keys *keys, unsigned level, const uint64_t *x,  \
                            const uint32_t *key_of, size_t first_key, uint8_t *seeds, uint8_t *state,             \
                            size_t count, uint8_t *out, const uint32_t *out_index) {                              \
        impl(prg, keys, level, x, key_of, first_key, seeds, state, count, out, out_index, comparison, layout);      \
    }
LEVEL_PASS(pass256_eq_keyed, level_pass_vaes256, TARGET_VAES256, 0, 0)
LEVEL_PASS(pass256_eq_single, level_pass_vaes256, TARGET_VAES256, 0, 1)
LEVEL_PASS(pass256_lt_keyed, level_pass_vaes256, TARGET_VAES256, 1, 0)
LEVEL_PASS(pass256_lt_single, level_pass_vaes256, TARGET_VAES256, 1, 1)
LEVEL_PASS(pass512_eq_keyed, level_pass_vaes512, TARGET_VAES512, 0, LAYOUT_KEYED)
LEVEL_PASS(pass512_eq_single, level_pass_vaes512, TARGET_VAES512, 0, LAYOUT_SINGLE)
LEVEL_PASS(pass512_eq_pairs, level_pass_vaes512, TARGET_VAES512, 0, LAYOUT_PAIRS)
LEVEL_PASS(pass512_lt_keyed, level_pass_vaes512, TARGET_VAES512, 1, LAYOUT_KEYED)
LEVEL_PASS(pass512_lt_single, level_pass_vaes512, TARGET_VAES512, 1, LAYOUT_SINGLE)
LEVEL_PASS(pass512_lt_pairs, level_pass_vaes512, TARGET_VAES512, 1, LAYOUT_PAIRS)

// The vector level pass for a backend and layout, or NULL when the backend has none (AES-NI, portable) or the CPU
// lacks it. The ymm pass has no pairs layout; it serves pairs with key_of (which the callers always fill).
static level_pass_fn vector_level_pass(const sigma_prg *prg, sigma_aes_backend backend, int comparison, int layout) {
    if (backend > SIGMA_AES_VAES256 || !sigma_aes_backend_supported(backend)) return NULL;
    // The zmm pass folds the right child's delta into the tweak: sigma(tau_0) = 0 and tau_1 = e_0.
    if (backend == SIGMA_AES_VAES512 && (prg->sigma_tweaks[0][0] | prg->sigma_tweaks[0][1] |
                                         prg->sigma_tweaks[1][0] | (prg->sigma_tweaks[1][1] ^ 1)) != 0)
        return NULL;
    static const level_pass_fn passes[2][2][3] = {
        {{pass512_eq_keyed, pass512_eq_single, pass512_eq_pairs}, {pass512_lt_keyed, pass512_lt_single, pass512_lt_pairs}},
        {{pass256_eq_keyed, pass256_eq_single, pass256_eq_keyed}, {pass256_lt_keyed, pass256_lt_single, pass256_lt_keyed}},
    };
    return passes[backend == SIGMA_AES_VAES256][comparison != 0][layout];
}

// The roots' seeds, and the state with the control bit from the root, no accumulator and no pending flip: a byte a
// point (bit 1), or for the zmm pass (`packed`) one record a group of GROUP points (count a multiple of GROUP).
// Without `copy`, the zmm pass reads consecutive keys' roots itself (key_of NULL): only the state is set.
static void load_roots(const sigma_dpf_keys *keys, const uint32_t *key_of, size_t first_key, uint8_t *seeds,
                       uint8_t *state, size_t count, int packed, int copy) {
    const uint8_t *roots = (const uint8_t *)keys->roots;
    for (size_t i = 0; i < count && (copy || !packed); i++) {
        memcpy(seeds + 16 * i, roots + 16 * (first_key + (key_of ? key_of[i] : i)), 16);
        if (!packed) state[i] = (uint8_t)((seeds[16 * i] & 1) << 1);
    }
    if (packed)
        for (size_t j = 0; j < count; j += GROUP) {
            uint32_t t = 0;
            for (int b = 0; b < GROUP; b++)
                t |= (uint32_t)(roots[16 * (first_key + (key_of ? key_of[j + b] : j + b))] & 1) << b;
            zmm_state *group = (zmm_state *)(void *)(state + j);
            *group = (zmm_state){.tweak_lanes = 0, .t_lanes = both_lanes(t), .right = 0, .t = (uint16_t)t, .acc = 0};
        }
}

// Bits 2i of `lanes` at bit i: both_lanes undone.
static inline uint32_t one_lane(uint32_t lanes) {
    uint32_t x = lanes & 0x55555555u;
    x = (x | x >> 1) & 0x33333333u;
    x = (x | x >> 2) & 0x0f0f0f0fu;
    x = (x | x >> 4) & 0x00ff00ffu;
    return (x | x >> 8) & 0xffffu;
}

// Points 2k and 2k + 1 of `pairs` (zmm group records, `count` points) take point k's state in `principal`, each
// with its own direction: bit `bit` of its x. A group at a time: the pairs' group g holds principal points
// 8g ... 8g + 7, each bit twice.
static void take_principal_states(const uint8_t *principal, uint8_t *pairs, const uint64_t *x, size_t count,
                                  unsigned bit) {
    for (size_t j = 0; j < count; j += GROUP) {
        const zmm_state *from = (const zmm_state *)(const void *)(principal + j / 2 / GROUP * GROUP);
        const unsigned half = (unsigned)(j / 2 % GROUP);  // 0 or 8
        const uint32_t d = (uint32_t)from->right >> half, m = (one_lane(from->tweak_lanes) >> half) ^ d;
        const uint32_t t = both_lanes(((uint32_t)from->t >> half) & 0xff) & 0xffff;
        uint32_t right = 0;
        for (int i = 0; i < GROUP; i++) right |= (uint32_t)((x[j + i] >> bit) & 1) << i;
        zmm_state *to = (zmm_state *)(void *)(pairs + j);
        *to = (zmm_state){
            .tweak_lanes = both_lanes(right ^ (both_lanes(m & 0xff) & 0xffff)),
            .t_lanes = both_lanes(t),
            .right = (uint16_t)right,
            .t = (uint16_t)t,
            .acc = (uint16_t)(both_lanes(((uint32_t)from->acc >> half) & 0xff) & 0xffff),
        };
    }
}

// A point's state byte, or its bits of the zmm pass's group record.
static inline uint8_t point_state(int packed, const uint8_t *state, size_t i) {
    return packed ? zmm_point_state(state, i) : state[i];
}

static inline void set_point_state(int packed, uint8_t *state, size_t i, uint8_t byte) {
    if (packed)
        set_zmm_point_state(state, i, byte);
    else
        state[i] = byte;
}

// Evaluates the first multiple of GROUP points in chunks of EVAL_CHUNK; returns how many it did.
static size_t eval_vector(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys,
                          const uint64_t *x, size_t first_key, size_t points_per_key, size_t count, int comparison,
                          uint8_t *out) {
    const int single = points_per_key == 1;
    level_pass_fn pass = vector_level_pass(prg, backend, comparison, single ? LAYOUT_SINGLE : LAYOUT_KEYED);
    if (!pass) return 0;
    const int packed = backend == SIGMA_AES_VAES512;
    _Alignas(64) uint8_t seeds[EVAL_CHUNK * 16], state[EVAL_CHUNK];
    uint32_t key_of[EVAL_CHUNK];  // relative to the chunk's first key
    const unsigned depth = keys->input_bits - 7;
    size_t done = 0;
    while (done + GROUP <= count) {
        size_t n = count - done < EVAL_CHUNK ? (count - done) / GROUP * GROUP : EVAL_CHUNK;
        size_t key = first_key + done / points_per_key, phase = done % points_per_key;
        if (!single)
            for (size_t i = 0; i < n; i++) key_of[i] = (uint32_t)((phase + i) / points_per_key);
        load_roots(keys, single ? NULL : key_of, key, seeds, state, n, packed, !single);
        for (unsigned level = 1; level <= depth; level++)
            pass(prg, keys, level, x + done, single ? NULL : key_of, key, seeds, state, n, out + done, NULL);
        done += n;
    }
    return done;
}

// A state byte taken over from another point at a level: its direction there (bit 4, which the zmm pass reads past
// the first level) is this point's own bit `bit` of x.
static inline uint8_t with_direction(uint8_t state, uint64_t x, unsigned bit) {
    return (uint8_t)((state & ~0x10u) | (unsigned)((x >> bit) & 1) << 4);
}

// Keys per chunk of the shifted evaluation: with two extra points a key, 3 × 1024 points' state (96 KiB) stays
// in L2.
#define SHIFTED_CHUNK 1024

// Scratch for one chunk of the shifted evaluation (heap: too large for a worker thread's stack).
typedef struct {
    uint8_t *seeds, *state, *extra_seeds, *extra_state, *dense_seeds, *dense_state;
    uint64_t *x, *extra_x, *dense_x;
    uint32_t *extra_key, *extra_out, *extra_level, *by_level, *dense_key, *dense_out;
} shifted_scratch;

// The passes of a shifted evaluation: the principal points (one a key), the extra points that left early (any
// keys) and, with two shifts besides the first, every key's two extra points from a common level on.
typedef struct {
    level_pass_fn principal, keyed, pairs;
    int packed;  // the zmm pass's group records (`zmm_state`) rather than a state byte a point
} shifted_passes;

// The keys first_key ... first_key + count − 1 (count a multiple of GROUP, at most SHIFTED_CHUNK), each at
// E = shift_count points x_k + shift_e. The principal points (e = 0) walk their whole paths together; an extra
// point shares its principal's path down to the level of the highest bit in which the two differ, so it starts
// there from a copy of the principal's state. With shifts much smaller than the domain (GeLU's ±2^14 in 38 bits)
// most extra points need only the last few levels.
//
// Extra points that leave at different levels are scattered over the keys, so their pass gathers key words one
// by one (about twice the cost of a pass over consecutive keys). With E = 3, from the level `dense_from` on every
// key's two extra points are evaluated side by side instead, reading each key's words once for both; points that
// have not left yet by then start from their principal's state and compute its path twice until they do. The level
// is chosen to minimise (point-levels gathered) × 2 + (point-levels side by side).
static void eval_shifted_chunk(const shifted_passes *passes, const sigma_prg *prg, const sigma_dpf_keys *keys,
                               const uint64_t *inputs, const uint64_t *shifts, size_t shift_count, size_t first_key,
                               size_t count, uint8_t *out, shifted_scratch *s) {
    const unsigned bits = keys->input_bits, depth = bits - 7;
    const uint64_t domain = bits == 64 ? ~0ull : (1ull << bits) - 1;
    const size_t per_key = shift_count - 1, extras = count * per_key;
    // The extra points sorted by the level at which they leave their principal's path (a counting sort).
    uint32_t level_start[66] = {0};
    for (size_t k = 0; k < count; k++) {
        s->x[k] = (inputs[k] + shifts[0]) & domain;
        for (size_t e = 1; e < shift_count; e++) {
            uint64_t point = (inputs[k] + shifts[e]) & domain, differ = (point ^ s->x[k]) >> 7;
            unsigned level = differ ? bits - (63 - (unsigned)__builtin_clzll(differ)) - 7 : depth;
            size_t i = k * per_key + e - 1;
            s->extra_level[i] = level;
            s->extra_x[i] = point;  // staged here, placed below
            level_start[level]++;
        }
    }
    for (unsigned level = 1, sum = 0; level <= depth + 1; level++) {
        unsigned n = level_start[level];
        level_start[level] = sum;
        sum += n;
    }
    for (size_t i = 0; i < extras; i++) s->by_level[level_start[s->extra_level[i]]++] = (uint32_t)i;
    // level_start[l] now ends level l's run: the count of points leaving by level l.
    unsigned dense_from = depth + 1;  // never
    if (shift_count == 3) {
        size_t best = SIZE_MAX, gathered = 0;
        for (unsigned level = 1; level <= depth + 1; level++) {
            size_t cost = 2 * gathered + (size_t)(depth + 1 - level) * extras;
            if (cost < best) best = cost, dense_from = level;
            if (level <= depth) gathered += level_start[level];
        }
    }
    // Only the points that leave before the pairs take over are evaluated from the sorted order.
    const size_t sorted = dense_from > depth ? extras : dense_from > 1 ? level_start[dense_from - 1] : 0;
    uint64_t *sorted_x = (uint64_t *)(void *)s->extra_seeds;  // borrowed until the seeds are first written
    for (size_t r = 0; r < sorted; r++) {
        uint32_t i = s->by_level[r];
        const size_t k = per_key == 2 ? i >> 1 : i / per_key, e = i - k * per_key;  // no division for GeLU's 3
        sorted_x[r] = s->extra_x[i];
        s->extra_key[r] = (uint32_t)k;
        s->extra_out[r] = (uint32_t)(k * shift_count + e + 1);
    }
    memcpy(s->extra_x, sorted_x, sorted * sizeof(uint64_t));
    // Padding up to a whole group: valid key and point, output to a sink past the real outputs.
    size_t padded = (sorted + GROUP - 1) / GROUP * GROUP;
    for (size_t r = sorted; r < padded; r++) {
        s->extra_x[r] = 0;
        s->extra_key[r] = 0;
        s->extra_out[r] = (uint32_t)(count * shift_count);
    }
    const int packed = passes->packed;
    load_roots(keys, NULL, first_key, s->seeds, s->state, count, packed, 1);  // extra points copy the seeds
    uint32_t principal_out[SHIFTED_CHUNK];
    for (size_t k = 0; k < count; k++) principal_out[k] = (uint32_t)(k * shift_count);
    size_t active = 0;
    for (unsigned level = 1; level <= depth; level++) {
        // State is taken before the principal's pass moves it past this level.
        if (level == dense_from) {
            // Every extra point side by side: those already on their own path bring their state, the others
            // take their principal's, which is theirs up to here.
            for (size_t k = 0; k < count; k++)
                for (size_t e = 0; e < 2; e++) {
                    size_t d = 2 * k + e;
                    memcpy(s->dense_seeds + 16 * d, s->seeds + 16 * k, 16);
                    s->dense_x[d] = (inputs[k] + shifts[e + 1]) & domain;
                    if (!packed) s->dense_state[d] = with_direction(s->state[k], s->dense_x[d], bits - level);
                    s->dense_key[d] = (uint32_t)k;
                    s->dense_out[d] = (uint32_t)(3 * k + e + 1);
                }
            if (packed) take_principal_states(s->state, s->dense_state, s->dense_x, 2 * count, bits - level);
            for (size_t r = 0; r < active; r++) {
                size_t d = s->extra_out[r] - s->extra_out[r] / 3 - 1;  // 3k + e + 1 -> 2k + e
                memcpy(s->dense_seeds + 16 * d, s->extra_seeds + 16 * r, 16);
                set_point_state(packed, s->dense_state, d, point_state(packed, s->extra_state, r));
            }
        } else if (level < dense_from) {
            // Points leaving at this level take their principal's state before it.
            for (size_t end = level_start[level]; active < end; active++) {
                size_t k = s->extra_key[active];
                memcpy(s->extra_seeds + 16 * active, s->seeds + 16 * k, 16);
                set_point_state(packed, s->extra_state, active,
                                with_direction(point_state(packed, s->state, k), s->extra_x[active], bits - level));
            }
        }
        passes->principal(prg, keys, level, s->x, NULL, first_key, s->seeds, s->state, count, out,
                          level == depth ? principal_out : NULL);
        if (level >= dense_from) {
            passes->pairs(prg, keys, level, s->dense_x, s->dense_key, first_key, s->dense_seeds, s->dense_state,
                          extras, out, level == depth ? s->dense_out : NULL);
        } else {
            size_t run = (active + GROUP - 1) / GROUP * GROUP;
            if (run)
                passes->keyed(prg, keys, level, s->extra_x, s->extra_key, first_key, s->extra_seeds, s->extra_state,
                              run, out, s->extra_out);
        }
    }
}

static size_t eval_shifted_vector(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys,
                                  const uint64_t *inputs, size_t first_key, const uint64_t *shifts,
                                  size_t shift_count, size_t count, int comparison, uint8_t *out) {
    size_t vector_keys = count / GROUP * GROUP;
    shifted_passes passes = {vector_level_pass(prg, backend, comparison, LAYOUT_SINGLE),
                             vector_level_pass(prg, backend, comparison, LAYOUT_KEYED),
                             vector_level_pass(prg, backend, comparison, LAYOUT_PAIRS), backend == SIGMA_AES_VAES512};
    if (vector_keys == 0 || !passes.principal) return 0;
    const size_t extras = SHIFTED_CHUNK * (shift_count - 1) + GROUP, dense = 2 * SHIFTED_CHUNK;
    shifted_scratch s;
    s.seeds = aligned_alloc(64, SHIFTED_CHUNK * 16);
    s.state = malloc(SHIFTED_CHUNK);
    s.extra_seeds = aligned_alloc(64, extras * 16);
    s.extra_state = malloc(extras);
    s.dense_seeds = aligned_alloc(64, dense * 16);
    s.dense_state = malloc(dense);
    s.x = malloc(SHIFTED_CHUNK * 8);
    s.extra_x = malloc(extras * 8);
    s.dense_x = malloc(dense * 8);
    s.extra_key = malloc(extras * 4);
    s.extra_out = malloc(extras * 4);
    s.extra_level = malloc(extras * 4);
    s.by_level = malloc(extras * 4);
    s.dense_key = malloc(dense * 4);
    s.dense_out = malloc(dense * 4);
    // The padding's outputs land one past each chunk's real outputs: a scratch row per chunk.
    uint8_t *chunk_out = malloc(SHIFTED_CHUNK * shift_count + 1);
    int ok = s.seeds && s.state && s.extra_seeds && s.extra_state && s.dense_seeds && s.dense_state && s.x && s.extra_x &&
             s.dense_x && s.extra_key && s.extra_out && s.extra_level && s.by_level && s.dense_key && s.dense_out &&
             chunk_out;
    size_t done = 0;
    while (ok && done < vector_keys) {
        size_t n = vector_keys - done < SHIFTED_CHUNK ? vector_keys - done : SHIFTED_CHUNK;
        eval_shifted_chunk(&passes, prg, keys, inputs + done, shifts, shift_count, first_key + done, n, chunk_out,
                           &s);
        memcpy(out + done * shift_count, chunk_out, n * shift_count);
        done += n;
    }
    free(s.seeds), free(s.state), free(s.extra_seeds), free(s.extra_state), free(s.dense_seeds), free(s.dense_state);
    free(s.x), free(s.extra_x), free(s.dense_x), free(s.extra_key), free(s.extra_out), free(s.extra_level);
    free(s.by_level), free(s.dense_key), free(s.dense_out), free(chunk_out);
    return done;
}
#endif

void sigma_dpf_eval(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys, const uint64_t *x,
                    size_t first_key, size_t points_per_key, size_t count, int comparison, uint8_t *out) {
    size_t done = 0;
#if defined(__x86_64__)
    done = eval_vector(backend, prg, keys, x, first_key, points_per_key, count, comparison, out);
#endif
    for (; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        eval_levels(backend, prg, keys, x + done, first_key + done / points_per_key, done % points_per_key,
                    points_per_key, n, comparison, out + done);
    }
}

void sigma_dpf_eval_shifted(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys,
                            const uint64_t *inputs, size_t first_key, const uint64_t *shifts, size_t shift_count,
                            size_t count, int comparison, uint8_t *out) {
    size_t done = 0;
#if defined(__x86_64__)
    if (shift_count > 1)
        done = eval_shifted_vector(backend, prg, keys, inputs, first_key, shifts, shift_count, count, comparison,
                                   out);
#endif
    uint64_t points[CHUNK];
    const size_t keys_per_chunk = CHUNK / shift_count;
    for (; done < count; done += keys_per_chunk) {
        size_t n = count - done < keys_per_chunk ? count - done : keys_per_chunk;
        for (size_t k = 0; k < n; k++)
            for (size_t e = 0; e < shift_count; e++) points[k * shift_count + e] = inputs[done + k] + shifts[e];
        eval_levels(backend, prg, keys, points, first_key + done, 0, shift_count, n * shift_count, comparison,
                    out + done * shift_count);
    }
}

#if defined(__x86_64__)
// One level of full-domain expansion on zmm: four nodes a step, both children of each, σ and the tweak, the AES
// rounds with the feed-forward folded into the last round key, and the correction under the parent's control bit
// in registers (the generic loop below hands each child to the batched ECB and back). Node j belongs to key
// j / nodes_per_key (a power of two); returns how many nodes it did (a multiple of four).
static TARGET_VAES512 size_t expand_level_vaes512(const sigma_prg *prg, const uint8_t *src, uint8_t *dst,
                                                  const uint8_t *cws, const uint8_t *deltas, size_t first_key,
                                                  size_t nodes_per_key, size_t count) {
    __m512i rk[11], tweak[2];
    for (int r = 0; r < 11; r++)
        rk[r] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)prg->key.round_keys[r]));
    for (int c = 0; c < 2; c++)
        tweak[c] = _mm512_broadcast_i32x4(
            _mm_set_epi64x((long long)prg->sigma_tweaks[c][1], (long long)prg->sigma_tweaks[c][0]));
    const __m512i high_lanes = _mm512_set_epi64(-1, 0, -1, 0, -1, 0, -1, 0);
    const __m512i low_one = _mm512_set_epi64(0, 1, 0, 1, 0, 1, 0, 1);
    // Children of nodes 0-3 from the left and right registers, in the output's order (node-major).
    const __m512i first_half = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    const __m512i second_half = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    const unsigned key_shift = (unsigned)__builtin_ctzll(nodes_per_key);
    size_t j = 0;
    for (; j + 4 <= count; j += 4) {
        const __m512i v = _mm512_loadu_si512((const void *)(src + 16 * j));
        const __m512i s = _mm512_ternarylogic_epi64(_mm512_shuffle_epi32(v, 0x4E), v, high_lanes, 0x78);
        __mmask8 control = _mm512_test_epi64_mask(v, low_one);  // the parents' control bits, low lanes
        control |= (__mmask8)(control << 1);
        __m512i child[2];
        for (int c = 0; c < 2; c++) {
            const __m512i y = _mm512_xor_si512(s, tweak[c]);
            __m512i a = _mm512_xor_si512(y, rk[0]);
            for (int r = 1; r < 10; r++) a = _mm512_aesenc_epi128(a, rk[r]);
            child[c] = _mm512_aesenclast_epi128(a, _mm512_xor_si512(rk[10], y));
            if (cws) {
                __m512i correction;
                if (nodes_per_key >= 4) {
                    const block b = path_correction(cws, deltas, first_key, j >> key_shift, (uint64_t)c);
                    correction = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)b.hi, (long long)b.lo));
                } else {
                    block b[4];
                    for (int i = 0; i < 4; i++)
                        b[i] = path_correction(cws, deltas, first_key, (j + i) >> key_shift, (uint64_t)c);
                    correction = _mm512_set_epi64((long long)b[3].hi, (long long)b[3].lo, (long long)b[2].hi,
                                                  (long long)b[2].lo, (long long)b[1].hi, (long long)b[1].lo,
                                                  (long long)b[0].hi, (long long)b[0].lo);
                }
                child[c] = _mm512_mask_xor_epi64(child[c], control, child[c], correction);
            }
        }
        _mm512_storeu_si512((void *)(dst + 32 * j), _mm512_permutex2var_epi64(child[0], first_half, child[1]));
        _mm512_storeu_si512((void *)(dst + 32 * j + 64), _mm512_permutex2var_epi64(child[0], second_half, child[1]));
    }
    return j;
}
#endif

void sigma_dpf_expand_level(sigma_aes_backend backend, const sigma_prg *prg, const void *in, void *out,
                            const void *cw, const uint8_t *deltas, size_t first_key, size_t nodes_per_key,
                            size_t count) {
    const uint8_t *src = (const uint8_t *)in, *cws = (const uint8_t *)cw;
    uint8_t *dst = (uint8_t *)out;
    block s[CHUNK], h[CHUNK];
    size_t key0 = 0, node0 = 0;
#if defined(__x86_64__)
    if (backend == SIGMA_AES_VAES512 && sigma_aes_backend_supported(backend) &&
        (nodes_per_key & (nodes_per_key - 1)) == 0) {
        const size_t done = expand_level_vaes512(prg, src, dst, cws, deltas, first_key, nodes_per_key, count);
        // The rest through the loop below, from node `done` (key done / nodes_per_key).
        src += 16 * done;
        dst += 32 * done;
        count -= done;
        key0 = done / nodes_per_key;
        node0 = done % nodes_per_key;
    }
#endif
    for (size_t done = 0; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        size_t key = key0, node = node0;
        for (unsigned c = 0; c < 2; c++) {
            for (size_t i = 0; i < n; i++) s[i] = tweaked(prg, load_block(src + 16 * (done + i)), c);
            sigma_internal_ecb(backend, &prg->key, (const uint8_t *)s, (uint8_t *)h, n);
            key = key0;
            node = node0;
            for (size_t i = 0; i < n; i++) {
                size_t j = done + i;
                block o = {h[i].lo ^ s[i].lo, h[i].hi ^ s[i].hi};
                if (cws) {
                    uint64_t mask = 0 - (uint64_t)(src[16 * j] & 1);
                    block corr = path_correction(cws, deltas, first_key, key, c);
                    o.lo ^= corr.lo & mask;
                    o.hi ^= corr.hi & mask;
                }
                store_block(dst + 16 * (2 * j + c), o);
                if (++node == nodes_per_key) {
                    node = 0;
                    key++;
                }
            }
        }
        key0 = key;
        node0 = node;
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t bits_dot_avx2(const uint64_t *words, const uint64_t *w, size_t nwords) {
    const __m256i select = _mm256_set_epi64x(8, 4, 2, 1);
    __m256i sum0 = _mm256_setzero_si256(), sum1 = _mm256_setzero_si256();
    for (size_t k = 0; k < nwords; k++) {
        uint64_t m = words[k];
        const uint64_t *row = w + 64 * k;
        for (int q = 0; q < 16; q += 2) {
            __m256i b0 = _mm256_set1_epi64x((long long)(m >> (4 * q)));
            __m256i b1 = _mm256_set1_epi64x((long long)(m >> (4 * q + 4)));
            __m256i m0 = _mm256_cmpeq_epi64(_mm256_and_si256(b0, select), select);
            __m256i m1 = _mm256_cmpeq_epi64(_mm256_and_si256(b1, select), select);
            sum0 = _mm256_add_epi64(sum0, _mm256_and_si256(m0, _mm256_loadu_si256((const __m256i *)(row + 4 * q))));
            sum1 = _mm256_add_epi64(sum1, _mm256_and_si256(m1, _mm256_loadu_si256((const __m256i *)(row + 4 * q + 4))));
        }
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(sum0, sum1));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// Eight table words per masked add: the bits of the leaf are the opmask, so a 64-bit word costs eight adds
// (the AVX2 version builds each mask from a broadcast, an and and a compare).
__attribute__((target("avx512f"))) static uint64_t bits_dot_avx512(const uint64_t *words, const uint64_t *w,
                                                                  size_t nwords) {
    __m512i sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
    for (size_t k = 0; k < nwords; k++) {
        uint64_t m = words[k];
        const uint64_t *row = w + 64 * k;
        for (int q = 0; q < 8; q += 2) {
            sum0 = _mm512_mask_add_epi64(sum0, (__mmask8)(m >> (8 * q)), sum0, _mm512_loadu_si512(row + 8 * q));
            sum1 = _mm512_mask_add_epi64(sum1, (__mmask8)(m >> (8 * q + 8)), sum1,
                                         _mm512_loadu_si512(row + 8 * q + 8));
        }
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(sum0, sum1));
}

static int have_avx512(void) {
    static int cached = -1;
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        known = sigma_aes_backend_supported(SIGMA_AES_VAES512);  // AVX-512F with the OS saving zmm state
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return known;
}

static int have_avx2(void) {
    static int cached = -1;
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return known;
}
#endif

// The scalar inner product over the set bits, for tables of 8-byte or 2-byte entries.
static uint64_t scalar_bits_dot(const uint8_t *b, const void *w, unsigned entry_bytes, size_t nbits) {
    uint64_t sum = 0;
    for (size_t k = 0; k < nbits / 64; k++) {
        uint64_t m;
        memcpy(&m, b + 8 * k, 8);
        while (m) {
            size_t i = 64 * k + (size_t)__builtin_ctzll(m);
            sum += entry_bytes == 2 ? ((const uint16_t *)w)[i] : ((const uint64_t *)w)[i];
            m &= m - 1;
        }
    }
    return sum;
}

uint64_t sigma_bits_dot_with(unsigned vector_bits, const void *bits, const uint64_t *w, size_t nbits) {
    size_t nwords = nbits / 64;
    const uint8_t *b = (const uint8_t *)bits;
#if defined(__x86_64__)
    // Leaves are unaligned 128-bit blocks; the vector paths need 8-byte alignment for their word reads.
    if (((uintptr_t)b & 7) == 0) {
        if (vector_bits >= 512 && have_avx512()) return bits_dot_avx512((const uint64_t *)(const void *)b, w, nwords);
        if (vector_bits >= 256 && have_avx2()) return bits_dot_avx2((const uint64_t *)(const void *)b, w, nwords);
    }
#endif
    return scalar_bits_dot(b, w, 8, nbits);
}

#if defined(__x86_64__)
// Thirty-two table entries per masked add, one opmask per 32 bits: four times fewer adds and opmask moves than
// the 64-bit lanes. Each 16-bit lane sums nbits/32 entries, which the caller keeps below 2^16.
__attribute__((target("avx512f,avx512bw"))) static uint64_t bits_dot16_avx512(const uint8_t *bits, const uint16_t *w,
                                                                              size_t nbits) {
    __m512i sum0 = _mm512_setzero_si512(), sum1 = _mm512_setzero_si512();
    size_t q = 0;
    for (; q + 64 <= nbits; q += 64) {
        uint32_t m0, m1;
        memcpy(&m0, bits + q / 8, 4);
        memcpy(&m1, bits + q / 8 + 4, 4);
        sum0 = _mm512_mask_add_epi16(sum0, m0, sum0, _mm512_loadu_si512(w + q));
        sum1 = _mm512_mask_add_epi16(sum1, m1, sum1, _mm512_loadu_si512(w + q + 32));
    }
    for (; q < nbits; q += 32) {
        uint32_t m;
        memcpy(&m, bits + q / 8, 4);
        sum0 = _mm512_mask_add_epi16(sum0, m, sum0, _mm512_loadu_si512(w + q));
    }
    // Widen to 32 bits before adding the two accumulators (each lane may be near 2^16).
    const __m512i ones = _mm512_set1_epi16(1);
    return (uint64_t)(uint32_t)_mm512_reduce_add_epi32(
        _mm512_add_epi32(_mm512_madd_epi16(sum0, ones), _mm512_madd_epi16(sum1, ones)));
}
#endif

uint64_t sigma_bits_dot16_with(unsigned vector_bits, const void *bits, const uint16_t *w, size_t nbits) {
    const uint8_t *b = (const uint8_t *)bits;
#if defined(__x86_64__)
    if (vector_bits >= 512 && have_avx512()) return bits_dot16_avx512(b, w, nbits);
#endif
    (void)vector_bits;
    return scalar_bits_dot(b, w, 2, nbits);
}

uint64_t sigma_bits_dot16(const void *bits, const uint16_t *w, size_t nbits) {
    return sigma_bits_dot16_with(512, bits, w, nbits);
}

uint64_t sigma_bits_dot(const void *bits, const uint64_t *w, size_t nbits) {
    return sigma_bits_dot_with(512, bits, w, nbits);
}

void sigma_dpf_keygen_level(sigma_aes_backend backend, const sigma_prg *prg, void *seeds0, void *seeds1,
                            const uint64_t *alphas, unsigned shift, void *words_out, uint8_t *delta_bits,
                            size_t first_key, size_t count) {
    uint8_t *s0 = (uint8_t *)seeds0, *s1 = (uint8_t *)seeds1, *words = (uint8_t *)words_out;
    block l0[CHUNK], r0[CHUNK], l1[CHUNK], r1[CHUNK];
    for (size_t done = 0; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        sigma_crhash_pair(backend, prg, 0, s0 + 16 * done, l0, r0, n);
        sigma_crhash_pair(backend, prg, 0, s1 + 16 * done, l1, r1, n);
        for (size_t i = 0; i < n; i++) {
            size_t k = done + i;
            uint64_t a = (alphas[k] >> shift) & 1, mask = 0 - a;
            // keep = a ? right : left; lose = the other child.
            block keep0 = {(r0[i].lo & mask) | (l0[i].lo & ~mask), (r0[i].hi & mask) | (l0[i].hi & ~mask)};
            block keep1 = {(r1[i].lo & mask) | (l1[i].lo & ~mask), (r1[i].hi & mask) | (l1[i].hi & ~mask)};
            block lose0 = {(l0[i].lo & mask) | (r0[i].lo & ~mask), (l0[i].hi & mask) | (r0[i].hi & ~mask)};
            block lose1 = {(l1[i].lo & mask) | (r1[i].lo & ~mask), (l1[i].hi & mask) | (r1[i].hi & ~mask)};
            block cw = {(lose0.lo ^ lose1.lo) & ~1ull, lose0.hi ^ lose1.hi};
            uint64_t t_left = (l0[i].lo ^ l1[i].lo ^ a ^ 1) & 1, t_right = (r0[i].lo ^ r1[i].lo ^ a) & 1;
            store_block(words + 16 * k, (block){cw.lo | t_left, cw.hi});
            size_t bit = first_key + k;
            delta_bits[bit >> 3] |= (uint8_t)((t_left ^ t_right) << (bit & 7));
            uint64_t t_keep = a ? t_right : t_left;
            block corr = {cw.lo | t_keep, cw.hi};
            block p0 = load_block(s0 + 16 * k), p1 = load_block(s1 + 16 * k);
            uint64_t m0 = 0 - (p0.lo & 1), m1 = 0 - (p1.lo & 1);
            store_block(s0 + 16 * k, (block){keep0.lo ^ (corr.lo & m0), keep0.hi ^ (corr.hi & m0)});
            store_block(s1 + 16 * k, (block){keep1.lo ^ (corr.lo & m1), keep1.hi ^ (corr.hi & m1)});
        }
    }
}

void sigma_dpf_keygen_leaf(sigma_aes_backend backend, const sigma_prg *prg, const void *seeds0, const void *seeds1,
                           const uint64_t *alphas, void *leaf_out, size_t count) {
    const uint8_t *s0 = (const uint8_t *)seeds0, *s1 = (const uint8_t *)seeds1;
    uint8_t *out = (uint8_t *)leaf_out;
    block a0[CHUNK], b0[CHUNK], a1[CHUNK], b1[CHUNK];
    for (size_t done = 0; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        sigma_crhash_pair(backend, prg, 0, s0 + 16 * done, a0, b0, n);
        sigma_crhash_pair(backend, prg, 0, s1 + 16 * done, a1, b1, n);
        for (size_t i = 0; i < n; i++) {
            size_t k = done + i;
            unsigned low = (unsigned)(alphas[k] & 127);
            block unit = {low < 64 ? 1ull << low : 0, low < 64 ? 0 : 1ull << (low - 64)};
            uint64_t right = 0 - ((alphas[k] >> 7) & 1);
            store_block(out + 32 * k, (block){a0[i].lo ^ a1[i].lo ^ (unit.lo & ~right), a0[i].hi ^ a1[i].hi ^ (unit.hi & ~right)});
            store_block(out + 32 * k + 16, (block){b0[i].lo ^ b1[i].lo ^ (unit.lo & right), b0[i].hi ^ b1[i].hi ^ (unit.hi & right)});
        }
    }
}

int sigma_os_random(void *out, size_t count) {
    uint8_t *p = (uint8_t *)out;
    while (count > 0) {
        ssize_t got = getrandom(p, count, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += got;
        count -= (size_t)got;
    }
    return 0;
}

void sigma_keep_freed_memory(void) {
    mallopt(M_ARENA_MAX, 1);  // threads' own arenas are mmapped heaps of at most 64 MiB, created and dropped as needed
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
}
