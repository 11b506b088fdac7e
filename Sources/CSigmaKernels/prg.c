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

// Bit 0 ... `index` (inclusive) of a 128-bit leaf, XORed together.
static inline uint8_t parity_through(block leaf, unsigned index) {
    uint64_t low = index >= 63 ? ~0ull : (2ull << index) - 1;
    uint64_t high = index < 64 ? 0 : (index == 127 ? ~0ull : (2ull << (index - 64)) - 1);
    return (uint8_t)((__builtin_popcountll(leaf.lo & low) ^ __builtin_popcountll(leaf.hi & high)) & 1);
}

// The share bit of a point from its leaf, its last seed (control bit = the parent's share of being on alpha's
// path) and the comparison accumulator. Comparison: the right sibling at the leaf level (parent share XOR the
// leaf's parity) when x goes left there, plus the leaf bits above x's.
static inline uint8_t finish_point(uint64_t x, block leaf, uint64_t last_seed_lo, uint64_t acc, int comparison) {
    unsigned low = (unsigned)(x & 127);
    if (!comparison) return (uint8_t)((low < 64 ? leaf.lo >> low : leaf.hi >> (low - 64)) & 1);
    uint8_t above = parity_through(leaf, low);
    if ((x >> 7) & 1) {
        uint8_t all = (uint8_t)((__builtin_popcountll(leaf.lo) ^ __builtin_popcountll(leaf.hi)) & 1);
        return (uint8_t)((acc ^ all ^ above) & 1);
    }
    return (uint8_t)((acc ^ last_seed_lo ^ above) & 1);
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

// Level-by-level evaluation with VAES on ymm, for a chunk of points whose seeds and comparison accumulators
// (32 bytes a point) stay in L2. Within a level, groups of 16 points are independent, so the out-of-order core
// overlaps one group's AES latency with the next group's work, and each level's correction words stream
// sequentially from the key. Per pair of blocks a level costs sigma and the tweak, 10 AES rounds with the round
// keys in registers, one correction load and a few masks. (A depth-first variant that kept 16 seeds in
// registers across all levels was latency-bound: 2.5 against 0.9 ns a block.) It also serves the VAES-512
// backend: on Zen 4 a 512-bit aesenc is double-pumped, so a zmm version would gain little, and this is the path
// our machines test.
#define GROUP 16
#define EVAL_CHUNK 2048
#define TARGET_VAES256 __attribute__((target("aes,vaes,avx2")))

// What a level pass needs besides the points: the round keys and tweaks in registers, the key batch.
typedef struct {
    __m256i rk[11];
    __m256i tweak_table[4];  // sigma(tau_d0) | sigma(tau_d1) for the four direction pairs
    const sigma_dpf_keys *keys;
} vaes_context;

TARGET_VAES256 static void vaes_context_init(vaes_context *ctx, const sigma_prg *prg, const sigma_dpf_keys *keys) {
    for (int combo = 0; combo < 4; combo++)
        ctx->tweak_table[combo] = _mm256_set_epi64x(
            (long long)prg->sigma_tweaks[combo >> 1][1], (long long)prg->sigma_tweaks[combo >> 1][0],
            (long long)prg->sigma_tweaks[combo & 1][1], (long long)prg->sigma_tweaks[combo & 1][0]);
    for (int r = 0; r < 11; r++)
        ctx->rk[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)prg->key.round_keys[r]));
    ctx->keys = keys;
}

// One level for `count` points (a multiple of GROUP), two to a ymm in `seeds` and `acc`. Point i uses key
// first_key + i when `single`, else first_key + key_of[i] (any order). At the leaf level point i's share goes to
// out[out_index ? out_index[i] : i]. `comparison` and `single` are compile-time constants in each caller, so the
// per-pair loops unroll fully.
static inline __attribute__((always_inline)) TARGET_VAES256 void level_pass_vaes256(
    const vaes_context *ctx, unsigned level, const uint64_t *x, const uint32_t *key_of, size_t first_key,
    __m256i *seeds, __m256i *acc, size_t count, const int comparison, const int single, uint8_t *out,
    const uint32_t *out_index) {
    const __m256i high_mask = _mm256_set_epi64x(-1, 0, -1, 0);
    // [d0, 0, d1, 0] for the four direction pairs of two blocks.
    static const int64_t direction_table[4][4] = {{0, 0, 0, 0}, {1, 0, 0, 0}, {0, 0, 1, 0}, {1, 0, 1, 0}};
    const sigma_dpf_keys *keys = ctx->keys;
    // Local copies: stores through `seeds` could alias *ctx, which would reload the keys from memory every round.
    __m256i rk[11], tweak_table[4];
    for (int r = 0; r < 11; r++) rk[r] = ctx->rk[r];
    for (int c = 0; c < 4; c++) tweak_table[c] = ctx->tweak_table[c];
    const unsigned depth = keys->input_bits - 7;
    const int leaf_level = level == depth;
    const __m128i to_sign = _mm_cvtsi32_si128((int)(63 - (keys->input_bits - level)));
    const uint8_t *words = leaf_level ? (const uint8_t *)keys->leaves
                                      : (const uint8_t *)keys->levels + (level - 1) * keys->level_stride;
    const uint8_t *deltas = leaf_level ? NULL : keys->deltas + (level - 1) * keys->delta_stride;
    for (size_t j = 0; j < count; j += GROUP) {
        __m256i *v = seeds + j / 2, *accumulator = acc + j / 2;
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
                if (comparison)
                    accumulator[u] =
                        _mm256_xor_si256(accumulator[u], _mm256_andnot_si256(dirs, _mm256_xor_si256(v[u], o)));
                v[u] = o;
            }
        } else {
            uint64_t leaf_words[GROUP / 2][4], seed_words[GROUP / 2][4], acc_words[GROUP / 2][4];
#pragma clang loop unroll(full)
            for (int u = 0; u < GROUP / 2; u++) {
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
                _mm256_storeu_si256((__m256i *)leaf_words[u], leaf);
                _mm256_storeu_si256((__m256i *)seed_words[u], v[u]);
                _mm256_storeu_si256((__m256i *)acc_words[u], accumulator[u]);
            }
            for (int i = 0; i < GROUP; i++) {
                int u = i / 2, lane = 2 * (i & 1);
                block leaf = {leaf_words[u][lane], leaf_words[u][lane + 1]};
                out[out_index ? out_index[j + i] : j + i] =
                    finish_point(x[j + i], leaf, seed_words[u][lane], acc_words[u][lane], comparison);
            }
        }
    }
}

static inline __attribute__((always_inline)) TARGET_VAES256 void load_roots(const sigma_dpf_keys *keys,
                                                                            const uint32_t *key_of, size_t first_key,
                                                                            __m256i *seeds, __m256i *acc,
                                                                            size_t count) {
    const uint8_t *roots = (const uint8_t *)keys->roots;
    for (size_t u = 0; u < count / 2; u++) {
        size_t k0 = first_key + (key_of ? key_of[2 * u] : 2 * u), k1 = first_key + (key_of ? key_of[2 * u + 1] : 2 * u + 1);
        seeds[u] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(roots + 16 * k0))),
                                           _mm_loadu_si128((const __m128i *)(roots + 16 * k1)), 1);
        acc[u] = _mm256_setzero_si256();
    }
}

static inline __attribute__((always_inline)) TARGET_VAES256 void eval_chunk_vaes256_impl(
    const vaes_context *ctx, const uint64_t *x, size_t first_key, size_t phase, size_t points_per_key, size_t count,
    const int comparison, const int single, uint8_t *out) {
    __m256i seeds[EVAL_CHUNK / 2], acc[EVAL_CHUNK / 2];
    uint32_t key_of[EVAL_CHUNK];  // relative to first_key
    if (!single)
        for (size_t i = 0; i < count; i++) key_of[i] = (uint32_t)((phase + i) / points_per_key);
    load_roots(ctx->keys, single ? NULL : key_of, first_key, seeds, acc, count);
    const unsigned depth = ctx->keys->input_bits - 7;
    for (unsigned level = 1; level <= depth; level++)
        level_pass_vaes256(ctx, level, x, key_of, first_key, seeds, acc, count, comparison, single, out, NULL);
}

// Evaluates the first multiple of GROUP points in chunks; returns how many it did.
TARGET_VAES256 static size_t eval_vaes256(const sigma_prg *prg, const sigma_dpf_keys *keys, const uint64_t *x,
                                          size_t first_key, size_t points_per_key, size_t count, int comparison,
                                          uint8_t *out) {
    vaes_context ctx;
    vaes_context_init(&ctx, prg, keys);
    size_t done = 0;
    for (; done + GROUP <= count; ) {
        size_t n = count - done < EVAL_CHUNK ? (count - done) / GROUP * GROUP : EVAL_CHUNK;
        size_t key = done / points_per_key, phase = done % points_per_key;
        const uint64_t *xs = x + done;
        uint8_t *o = out + done;
        if (points_per_key == 1) {
            if (comparison) eval_chunk_vaes256_impl(&ctx, xs, first_key + key, 0, 1, n, 1, 1, o);
            else eval_chunk_vaes256_impl(&ctx, xs, first_key + key, 0, 1, n, 0, 1, o);
        } else {
            if (comparison) eval_chunk_vaes256_impl(&ctx, xs, first_key + key, phase, points_per_key, n, 1, 0, o);
            else eval_chunk_vaes256_impl(&ctx, xs, first_key + key, phase, points_per_key, n, 0, 0, o);
        }
        done += n;
    }
    return done;
}

// Keys per chunk of the shifted evaluation: with two extra points a key, 3 × 1024 points' state (96 KiB) stays
// in L2.
#define SHIFTED_CHUNK 1024

// Scratch for one chunk of the shifted evaluation (heap: too large for a worker thread's stack).
typedef struct {
    __m256i *seeds, *acc, *extra_seeds, *extra_acc;
    uint64_t *x, *extra_x;
    uint32_t *extra_key, *extra_out, *extra_level, *by_level;
} shifted_scratch;

// The keys first_key ... first_key + count − 1 (count a multiple of GROUP, at most SHIFTED_CHUNK), each at
// E = shift_count points x_k + shift_e. The principal points (e = 0) walk their whole paths together; an extra
// point shares its principal's path down to the level of the highest bit in which the two differ, so it starts
// there from a copy of the principal's state. With shifts much smaller than the domain (GeLU's ±2^14 in 38 bits)
// most extra points need only the last few levels.
static inline __attribute__((always_inline)) TARGET_VAES256 void eval_shifted_chunk_vaes256(
    const vaes_context *ctx, const uint64_t *inputs, const uint64_t *shifts, size_t shift_count, size_t first_key,
    size_t count, const int comparison, uint8_t *out, shifted_scratch *s) {
    const sigma_dpf_keys *keys = ctx->keys;
    const unsigned bits = keys->input_bits, depth = bits - 7;
    const uint64_t domain = bits == 64 ? ~0ull : (1ull << bits) - 1;
    const size_t extras = count * (shift_count - 1);
    // The extra points sorted by the level at which they leave their principal's path (a counting sort).
    uint32_t level_start[65] = {0};
    for (size_t k = 0; k < count; k++) {
        s->x[k] = (inputs[k] + shifts[0]) & domain;
        for (size_t e = 1; e < shift_count; e++) {
            uint64_t point = (inputs[k] + shifts[e]) & domain, differ = (point ^ s->x[k]) >> 7;
            unsigned level = differ ? bits - (63 - (unsigned)__builtin_clzll(differ)) - 7 : depth;
            size_t i = k * (shift_count - 1) + e - 1;
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
    // level_start[l] now ends level l's run; rebuild starts as the count of points leaving by level l.
    uint64_t *sorted_x = (uint64_t *)(void *)s->extra_seeds;  // borrowed until the seeds are first written
    for (size_t r = 0; r < extras; r++) {
        uint32_t i = s->by_level[r];
        sorted_x[r] = s->extra_x[i];
        s->extra_key[r] = (uint32_t)(i / (shift_count - 1));
        s->extra_out[r] = (uint32_t)((i / (shift_count - 1)) * shift_count + i % (shift_count - 1) + 1);
    }
    memcpy(s->extra_x, sorted_x, extras * sizeof(uint64_t));
    // Padding up to a whole group: valid key and point, output to a sink past the real outputs.
    size_t padded = (extras + GROUP - 1) / GROUP * GROUP;
    for (size_t r = extras; r < padded; r++) {
        s->extra_x[r] = 0;
        s->extra_key[r] = 0;
        s->extra_out[r] = (uint32_t)(count * shift_count);
    }
    load_roots(keys, NULL, first_key, s->seeds, s->acc, count);
    uint64_t *acc_words = (uint64_t *)(void *)s->acc, *seed_words = (uint64_t *)(void *)s->seeds;
    uint64_t *extra_acc_words = (uint64_t *)(void *)s->extra_acc, *extra_seed_words = (uint64_t *)(void *)s->extra_seeds;
    size_t active = 0;
    for (unsigned level = 1; level <= depth; level++) {
        // Points leaving at this level take their principal's state before it.
        size_t end = level_start[level];
        for (; active < end; active++) {
            size_t k = s->extra_key[active];
            memcpy(extra_seed_words + 2 * active, seed_words + 2 * k, 16);
            memcpy(extra_acc_words + 2 * active, acc_words + 2 * k, 16);
        }
        size_t run = (active + GROUP - 1) / GROUP * GROUP;
        uint32_t principal_out[SHIFTED_CHUNK];
        const uint32_t *principal_index = NULL;
        if (level == depth) {
            for (size_t k = 0; k < count; k++) principal_out[k] = (uint32_t)(k * shift_count);
            principal_index = principal_out;
        }
        level_pass_vaes256(ctx, level, s->x, NULL, first_key, s->seeds, s->acc, count, comparison, 1, out,
                           principal_index);
        if (run)
            level_pass_vaes256(ctx, level, s->extra_x, s->extra_key, first_key, s->extra_seeds, s->extra_acc, run,
                               comparison, 0, out, s->extra_out);
    }
}

TARGET_VAES256 static size_t eval_shifted_vaes256(const sigma_prg *prg, const sigma_dpf_keys *keys,
                                                  const uint64_t *inputs, size_t first_key, const uint64_t *shifts,
                                                  size_t shift_count, size_t count, int comparison, uint8_t *out) {
    size_t vector_keys = count / GROUP * GROUP;
    if (vector_keys == 0) return 0;
    vaes_context ctx;
    vaes_context_init(&ctx, prg, keys);
    const size_t extras = SHIFTED_CHUNK * (shift_count - 1) + GROUP;
    shifted_scratch s;
    s.seeds = aligned_alloc(32, SHIFTED_CHUNK * 16);
    s.acc = aligned_alloc(32, SHIFTED_CHUNK * 16);
    s.extra_seeds = aligned_alloc(32, extras * 16);
    s.extra_acc = aligned_alloc(32, extras * 16);
    s.x = malloc(SHIFTED_CHUNK * 8);
    s.extra_x = malloc(extras * 8);
    s.extra_key = malloc(extras * 4);
    s.extra_out = malloc(extras * 4);
    s.extra_level = malloc(extras * 4);
    s.by_level = malloc(extras * 4);
    // The padding's outputs land one past each chunk's real outputs: a scratch row per chunk.
    uint8_t *chunk_out = malloc(SHIFTED_CHUNK * shift_count + 1);
    int ok = s.seeds && s.acc && s.extra_seeds && s.extra_acc && s.x && s.extra_x && s.extra_key && s.extra_out &&
             s.extra_level && s.by_level && chunk_out;
    size_t done = 0;
    while (ok && done < vector_keys) {
        size_t n = vector_keys - done < SHIFTED_CHUNK ? vector_keys - done : SHIFTED_CHUNK;
        if (comparison)
            eval_shifted_chunk_vaes256(&ctx, inputs + done, shifts, shift_count, first_key + done, n, 1, chunk_out,
                                       &s);
        else
            eval_shifted_chunk_vaes256(&ctx, inputs + done, shifts, shift_count, first_key + done, n, 0, chunk_out,
                                       &s);
        memcpy(out + done * shift_count, chunk_out, n * shift_count);
        done += n;
    }
    free(s.seeds), free(s.acc), free(s.extra_seeds), free(s.extra_acc), free(s.x), free(s.extra_x);
    free(s.extra_key), free(s.extra_out), free(s.extra_level), free(s.by_level), free(chunk_out);
    return done;
}
#endif

void sigma_dpf_eval(sigma_aes_backend backend, const sigma_prg *prg, const sigma_dpf_keys *keys, const uint64_t *x,
                    size_t first_key, size_t points_per_key, size_t count, int comparison, uint8_t *out) {
    size_t done = 0;
#if defined(__x86_64__)
    if (backend <= SIGMA_AES_VAES256 && sigma_aes_backend_supported(backend))
        done = eval_vaes256(prg, keys, x, first_key, points_per_key, count, comparison, out);
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
    if (shift_count > 1 && backend <= SIGMA_AES_VAES256 && sigma_aes_backend_supported(backend))
        done = eval_shifted_vaes256(prg, keys, inputs, first_key, shifts, shift_count, count, comparison, out);
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

void sigma_dpf_expand_level(sigma_aes_backend backend, const sigma_prg *prg, const void *in, void *out,
                            const void *cw, const uint8_t *deltas, size_t first_key, size_t nodes_per_key,
                            size_t count) {
    const uint8_t *src = (const uint8_t *)in, *cws = (const uint8_t *)cw;
    uint8_t *dst = (uint8_t *)out;
    block s[CHUNK], h[CHUNK];
    size_t key0 = 0, node0 = 0;
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

uint64_t sigma_bits_dot(const void *bits, const uint64_t *w, size_t nbits) {
    size_t nwords = nbits / 64;
    const uint8_t *b = (const uint8_t *)bits;
#if defined(__x86_64__)
    if (have_avx2()) {
        // Leaves are unaligned 128-bit blocks; copy words out only if the pointer is misaligned.
        if (((uintptr_t)b & 7) == 0) return bits_dot_avx2((const uint64_t *)(const void *)b, w, nwords);
    }
#endif
    uint64_t sum = 0;
    for (size_t k = 0; k < nwords; k++) {
        uint64_t m;
        memcpy(&m, b + 8 * k, 8);
        while (m) {
            sum += w[64 * k + (size_t)__builtin_ctzll(m)];
            m &= m - 1;
        }
    }
    return sum;
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
