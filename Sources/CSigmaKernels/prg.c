// The fixed-key hash PRG and the DPF level kernels built on it.
//
// Security assumption (written where it is used). Tree-based FSS needs a length-doubling PRG
// G(s) = (G_0(s), G_1(s)). The reference code re-keys AES with the seed at every node (one key expansion per
// node). We instead use the fixed-key construction of Guo, Katz, Wang and Yu (S&P 2020, "Efficient and
// secure multiparty computation from fixed-key block ciphers"):
//
//     H_j(x) = pi_j(sigma(x)) ^ sigma(x),   sigma(x_hi || x_lo) = (x_hi ^ x_lo) || x_hi,
//
// where pi_j is AES-128 under a fixed, public key k_j and sigma is a linear orthomorphism. Modelling each pi_j
// as an independent random permutation, H_j is circular correlation robust, so G_j(s) = H_j(s) is a PRG for
// seeds s of min-entropy 127 bits, and the two halves are independent because they use distinct keys.
// Evaluating one child costs one AES call (the "half-PRG"); keys are never expanded online.
#include "CSigmaKernels.h"
#include "internal.h"

#include <errno.h>
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

void sigma_prg_init(sigma_prg *prg, const void *keys64) {
    const uint8_t *k = (const uint8_t *)keys64;
    for (int j = 0; j < 4; j++) sigma_aes_expand_key(k + 16 * j, &prg->keys[j]);
    for (int pair = 0; pair < 2; pair++) {
        const sigma_aes_key *a = &prg->keys[2 * pair], *b = &prg->keys[2 * pair + 1];
        sigma_prg_lanes *lanes = &prg->lanes[pair];
        for (int combo = 0; combo < 4; combo++)
            for (int r = 0; r < 11; r++)
                for (int lane = 0; lane < 2; lane++)
                    memcpy(lanes->lanes2[combo][r] + 16 * lane, ((combo >> lane) & 1 ? b : a)->round_keys[r], 16);
        for (int combo = 0; combo < 16; combo++)
            for (int r = 0; r < 11; r++)
                for (int lane = 0; lane < 4; lane++)
                    memcpy(lanes->lanes4[combo][r] + 16 * lane, ((combo >> lane) & 1 ? b : a)->round_keys[r], 16);
    }
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
    block s[CHUNK], h[CHUNK];
    for (size_t done = 0; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        for (size_t i = 0; i < n; i++) s[i] = sigma_of(load_block(src + 16 * (done + i)));
        sigma_internal_ecb_select(backend, prg, k0 & 2, (const uint8_t *)s, sel + done, (uint8_t *)h, n);
        for (size_t i = 0; i < n; i++) store_block(dst + 16 * (done + i), (block){h[i].lo ^ s[i].lo, h[i].hi ^ s[i].hi});
    }
}

void sigma_crhash_pair(sigma_aes_backend backend, const sigma_prg *prg, unsigned k0, const void *in, void *out0,
                       void *out1, size_t count) {
    const uint8_t *src = (const uint8_t *)in;
    uint8_t *dst[2] = {(uint8_t *)out0, (uint8_t *)out1};
    block s[CHUNK], h[CHUNK];
    for (size_t done = 0; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        for (size_t i = 0; i < n; i++) s[i] = sigma_of(load_block(src + 16 * (done + i)));
        for (unsigned c = 0; c < 2; c++) {
            sigma_internal_ecb(backend, &prg->keys[(k0 & 2) + c], (const uint8_t *)s, (uint8_t *)h, n);
            for (size_t i = 0; i < n; i++)
                store_block(dst[c] + 16 * (done + i), (block){h[i].lo ^ s[i].lo, h[i].hi ^ s[i].hi});
        }
    }
}

// The correction block C(k, d) of sigma_dpf_path_step.
static inline block path_correction(const uint8_t *cws, const uint8_t *right_bits, size_t first_key, size_t key,
                                    uint64_t dir) {
    if (!right_bits) return load_block(cws + 16 * (2 * key + dir));
    block c = load_block(cws + 16 * key);
    size_t bit = first_key + key;
    uint64_t right = (right_bits[bit >> 3] >> (bit & 7)) & 1;
    c.lo ^= dir & ((c.lo ^ right) & 1);
    return c;
}

#if defined(__x86_64__)
#include <immintrin.h>

// The fused VAES-256 path step for seed levels with one point per key (the common case: DReLU, truncations,
// max). Everything stays in vector registers: directions from four x values at once, two keys' correction words
// per 256-bit load, right control bits by variable shifts, sigma, per-lane key choice, the feed-forward XOR, the
// masked correction and the comparison accumulator; 16 blocks (8 ymm) are in flight to cover the 4-cycle aesenc
// latency. It serves the VAES-512 backend too: on Zen 4 a 512-bit aesenc is double-pumped, so a zmm version
// would gain little, and this path is the one our machines test.
__attribute__((target("aes,vaes,avx2"))) static size_t path_step_vaes256(
    const sigma_prg *prg, const uint8_t *src, uint8_t *dst, const uint64_t *x, unsigned shift, const uint8_t *cws,
    const uint8_t *right_bits, size_t first_key, size_t count, uint8_t *acc) {
    const __m256i high_mask = _mm256_set_epi64x(-1, 0, -1, 0);
    const __m256i low_bit = _mm256_set_epi64x(0, 1, 0, 1);
    const __m256i one = _mm256_set1_epi64x(1);
    const __m128i shift_count = _mm_cvtsi32_si128((int)shift);
    const sigma_prg_lanes *lanes = &prg->lanes[0];
    size_t j = 0;
    for (; j + 16 <= count; j += 16) {
        // Directions of the 16 points, as [d0, 0, d1, 0] per pair of blocks.
        __m256i dirs[8];
        unsigned selectors = 0;
        for (int q = 0; q < 4; q++) {
            __m256i d = _mm256_and_si256(_mm256_srl_epi64(_mm256_loadu_si256((const __m256i *)(x + j + 4 * q)),
                                                          shift_count), one);
            selectors |= (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_slli_epi64(d, 63))) << (4 * q);
            dirs[2 * q] = _mm256_and_si256(_mm256_permute4x64_epi64(d, 0x50), low_bit);
            dirs[2 * q + 1] = _mm256_and_si256(_mm256_permute4x64_epi64(d, 0xFA), low_bit);
        }
        size_t bit = first_key + j;
        uint32_t word;
        memcpy(&word, right_bits + (bit >> 3), 4);  // bits bit ... bit+15 (the section is padded by the caller)
        const __m256i rights = _mm256_set1_epi64x((long long)(word >> (bit & 7)));
        __m256i v[8], s[8], a[8];
        const uint8_t(*rk[8])[32];
        for (int u = 0; u < 8; u++) {
            v[u] = _mm256_loadu_si256((const __m256i *)(src + 16 * (j + 2 * u)));
            s[u] = _mm256_xor_si256(_mm256_shuffle_epi32(v[u], 0x4E), _mm256_and_si256(v[u], high_mask));
            rk[u] = lanes->lanes2[(selectors >> (2 * u)) & 3];
            a[u] = _mm256_xor_si256(s[u], _mm256_loadu_si256((const __m256i *)rk[u][0]));
        }
        for (int r = 1; r < 10; r++)
            for (int u = 0; u < 8; u++) a[u] = _mm256_aesenc_epi128(a[u], _mm256_loadu_si256((const __m256i *)rk[u][r]));
        for (int u = 0; u < 8; u++) {
            __m256i h = _mm256_xor_si256(_mm256_aesenclast_epi128(a[u], _mm256_loadu_si256((const __m256i *)rk[u][10])), s[u]);
            __m256i t = _mm256_shuffle_epi32(_mm256_sub_epi64(_mm256_setzero_si256(), _mm256_and_si256(v[u], low_bit)), 0x44);
            // Correction: the stored word (left control bit in bit 0), its bit 0 replaced by the right bit when d = 1.
            __m256i c = _mm256_loadu_si256((const __m256i *)(cws + 16 * (j + 2 * u)));
            __m256i r = _mm256_and_si256(_mm256_srlv_epi64(rights, _mm256_set_epi64x(64, 2 * u + 1, 64, 2 * u)), one);
            c = _mm256_xor_si256(c, _mm256_and_si256(dirs[u], _mm256_xor_si256(_mm256_and_si256(c, low_bit), r)));
            __m256i o = _mm256_xor_si256(h, _mm256_and_si256(t, c));
            _mm256_storeu_si256((__m256i *)(dst + 16 * (j + 2 * u)), o);
            if (acc) {
                __m256i *slot = (__m256i *)(acc + 16 * (j + 2 * u));
                __m256i changed = _mm256_and_si256(_mm256_xor_si256(v[u], o), low_bit);
                _mm256_storeu_si256(slot, _mm256_xor_si256(_mm256_loadu_si256(slot), _mm256_andnot_si256(dirs[u], changed)));
            }
        }
    }
    return j;
}
#endif

void sigma_dpf_path_step(sigma_aes_backend backend, const sigma_prg *prg, const void *in, void *out,
                         const uint64_t *x, unsigned shift, const void *cw, const uint8_t *right_bits,
                         size_t first_key, size_t points_per_key, size_t count, uint8_t *acc) {
    const uint8_t *src = (const uint8_t *)in, *cws = (const uint8_t *)cw;
    uint8_t *dst = (uint8_t *)out;
    size_t key = 0, point = 0;  // key index and point within the key, advanced incrementally (no division)
    size_t done = 0;
#if defined(__x86_64__)
    if (right_bits && points_per_key == 1 && backend <= SIGMA_AES_VAES256 && sigma_aes_backend_supported(backend)) {
        done = path_step_vaes256(prg, src, dst, x, shift, cws, right_bits, first_key, count, acc);
        key = done;
    }
#endif
    block s[CHUNK], h[CHUNK];
    uint8_t dir[CHUNK];
    for (; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        for (size_t i = 0; i < n; i++) {
            dir[i] = (uint8_t)((x[done + i] >> shift) & 1);
            s[i] = sigma_of(load_block(src + 16 * (done + i)));
        }
        sigma_internal_ecb_select(backend, prg, 0, (const uint8_t *)s, dir, (uint8_t *)h, n);
        for (size_t i = 0; i < n; i++) {
            size_t j = done + i;
            uint64_t t = src[16 * j] & 1;  // read before the store: in may equal out
            block c = path_correction(cws, right_bits, first_key, key, dir[i]);
            uint64_t mask = 0 - t;
            block o = {h[i].lo ^ s[i].lo ^ (c.lo & mask), h[i].hi ^ s[i].hi ^ (c.hi & mask)};
            store_block(dst + 16 * j, o);
            if (acc) acc[16 * j] ^= (uint8_t)((dir[i] ^ 1) & (t ^ (o.lo & 1)));
            if (++point == points_per_key) {
                point = 0;
                key++;
            }
        }
    }
}

void sigma_dpf_expand_level(sigma_aes_backend backend, const sigma_prg *prg, const void *in, void *out,
                            const void *cw, const uint8_t *right_bits, size_t first_key, size_t nodes_per_key,
                            size_t count) {
    const uint8_t *src = (const uint8_t *)in, *cws = (const uint8_t *)cw;
    uint8_t *dst = (uint8_t *)out;
    block s[CHUNK], h[CHUNK];
    size_t key0 = 0, node0 = 0;
    for (size_t done = 0; done < count; done += CHUNK) {
        size_t n = count - done < CHUNK ? count - done : CHUNK;
        for (size_t i = 0; i < n; i++) s[i] = sigma_of(load_block(src + 16 * (done + i)));
        size_t key = key0, node = node0;
        for (unsigned c = 0; c < 2; c++) {
            sigma_internal_ecb(backend, &prg->keys[c], (const uint8_t *)s, (uint8_t *)h, n);
            key = key0;
            node = node0;
            for (size_t i = 0; i < n; i++) {
                size_t j = done + i;
                block o = {h[i].lo ^ s[i].lo, h[i].hi ^ s[i].hi};
                if (cws) {
                    uint64_t mask = 0 - (uint64_t)(src[16 * j] & 1);
                    block corr = path_correction(cws, right_bits, first_key, key, c);
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
