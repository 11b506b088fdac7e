// GHASH (NIST SP 800-38D §6.4) on VPCLMULQDQ, for the key files' GMAC: OpenSSL's GMAC hashes additional data at
// about 8.7 GB/s on one Zen 4 core (its fast AVX-512 GCM path covers the ciphertext only), and a party hashes its
// whole key file (8 GB for GPT-2) while it computes. Here S = GHASH_STEP blocks are hashed per step with one
// reduction, which is the only serial dependency:
//
//     Y ← (Y ⊕ X_1)·H^S ⊕ X_2·H^(S−1) ⊕ … ⊕ X_S·H
//
// four blocks to a zmm register, each lane against its own power of H, the 256-bit products summed unreduced
// (the shift and the reduction below are linear) and reduced once. The field arithmetic is the byte-reflected
// form of Gueron and Kounavis ("Intel carry-less multiplication instruction and its usage for computing the GCM
// mode", Algorithm 5): blocks are byte-reversed on load, the 256-bit product is shifted left by one bit and
// reduced modulo x^128 + x^7 + x^2 + x + 1. The tests check every tag against OpenSSL's.
#include "ghash.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#define TARGET_CLMUL __attribute__((target("pclmul,sse4.1,ssse3")))
#define TARGET_VCLMUL __attribute__((target("vpclmulqdq,avx512f,avx512bw,pclmul,sse4.1,ssse3")))

TARGET_CLMUL static inline __m128i byte_reverse(__m128i x) {
    return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

// Shift left by one and reduce: the 256-bit carry-less product hi:lo of two byte-reversed elements to their
// field product.
TARGET_CLMUL static inline __m128i shift_and_reduce(__m128i lo, __m128i hi) {
    __m128i carry_lo = _mm_srli_epi32(lo, 31), carry_hi = _mm_srli_epi32(hi, 31);
    lo = _mm_slli_epi32(lo, 1);
    hi = _mm_slli_epi32(hi, 1);
    __m128i across = _mm_srli_si128(carry_lo, 12);
    carry_hi = _mm_slli_si128(carry_hi, 4);
    carry_lo = _mm_slli_si128(carry_lo, 4);
    lo = _mm_or_si128(lo, carry_lo);
    hi = _mm_or_si128(_mm_or_si128(hi, carry_hi), across);
    __m128i a = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(lo, 31), _mm_slli_epi32(lo, 30)), _mm_slli_epi32(lo, 25));
    __m128i b = _mm_srli_si128(a, 4);
    lo = _mm_xor_si128(lo, _mm_slli_si128(a, 12));
    __m128i c = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(lo, 1), _mm_srli_epi32(lo, 2)), _mm_srli_epi32(lo, 7));
    lo = _mm_xor_si128(lo, _mm_xor_si128(c, b));
    return _mm_xor_si128(hi, lo);
}

// The unreduced product of two byte-reversed elements, added into lo and hi.
TARGET_CLMUL static inline void multiply_add(__m128i a, __m128i b, __m128i *lo, __m128i *hi) {
    __m128i middle = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
    *lo = _mm_xor_si128(*lo, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x00), _mm_slli_si128(middle, 8)));
    *hi = _mm_xor_si128(*hi, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x11), _mm_srli_si128(middle, 8)));
}

TARGET_CLMUL static __m128i field_multiply(__m128i a, __m128i b) {
    __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
    multiply_add(a, b, &lo, &hi);
    return shift_and_reduce(lo, hi);
}

int sigma_ghash_supported(void) {
    static int cached = -1;
    int known = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (known < 0) {
        unsigned a, b, c, d;
        known = 0;
        if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 10)) && (b & (1u << 16)) && (b & (1u << 30))) {
            // VPCLMULQDQ, AVX-512F, AVX-512BW; and the OS must save zmm and opmask state (XCR0 bits 1, 2, 5-7).
            unsigned lo, hi;
            __get_cpuid(1, &a, &b, &c, &d);
            if (c & (1u << 27)) {
                __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
                known = (lo & 0xe6) == 0xe6 && (c & (1u << 1));  // and PCLMULQDQ
            }
        }
        __atomic_store_n(&cached, known, __ATOMIC_RELAXED);
    }
    return known;
}

TARGET_CLMUL void sigma_ghash_init(sigma_ghash *g, const uint8_t h[16]) {
    memset(g, 0, sizeof *g);
    __m128i power = byte_reverse(_mm_loadu_si128((const __m128i *)h)), first = power;
    // powers[i] = H^(i+1)
    for (int i = 0; i < GHASH_STEP; i++) {
        _mm_storeu_si128((__m128i *)g->powers[i], power);
        power = field_multiply(power, first);
    }
}

// Whole blocks, one at a time (the tail of a piece, and the last partial block).
TARGET_CLMUL static void hash_blocks_one_by_one(sigma_ghash *g, const uint8_t *data, size_t blocks) {
    __m128i y = _mm_loadu_si128((const __m128i *)g->state), h = _mm_loadu_si128((const __m128i *)g->powers[0]);
    for (size_t i = 0; i < blocks; i++)
        y = field_multiply(_mm_xor_si128(y, byte_reverse(_mm_loadu_si128((const __m128i *)(data + 16 * i)))), h);
    _mm_storeu_si128((__m128i *)g->state, y);
}

// GHASH_STEP blocks a step; returns how many blocks it hashed.
TARGET_VCLMUL static size_t hash_blocks_wide(sigma_ghash *g, const uint8_t *data, size_t blocks) {
    const __m512i reverse = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    // Register r, lane l holds block 4r + l of the step, so it takes H^(S − 4r − l) for a step of S blocks.
    enum { REGISTERS = GHASH_STEP / 4 };
    __m512i powers[REGISTERS];
    for (int r = 0; r < REGISTERS; r++) {
        // H^(S−3−4r) ... H^(S−4r) in lanes 0 ... 3: reversed into place.
        powers[r] = _mm512_loadu_si512((const void *)g->powers[GHASH_STEP - 4 - 4 * r]);
        powers[r] = _mm512_shuffle_i64x2(powers[r], powers[r], _MM_SHUFFLE(0, 1, 2, 3));
    }
    __m128i y = _mm_loadu_si128((const __m128i *)g->state);
    size_t done = 0;
    for (; done + GHASH_STEP <= blocks; done += GHASH_STEP) {
        const uint8_t *p = data + 16 * done;
        __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512(), middle = _mm512_setzero_si512();
        for (int r = 0; r < REGISTERS; r++) {
            __m512i x = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(p + 64 * r)), reverse);
            if (r == 0) x = _mm512_xor_si512(x, _mm512_zextsi128_si512(y));
            lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(x, powers[r], 0x00));
            hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(x, powers[r], 0x11));
            middle = _mm512_ternarylogic_epi64(middle, _mm512_clmulepi64_epi128(x, powers[r], 0x10),
                                               _mm512_clmulepi64_epi128(x, powers[r], 0x01), 0x96);
        }
        lo = _mm512_xor_si512(lo, _mm512_bslli_epi128(middle, 8));
        hi = _mm512_xor_si512(hi, _mm512_bsrli_epi128(middle, 8));
        // The four lanes' sums to one.
        __m256i lo2 = _mm256_xor_si256(_mm512_castsi512_si256(lo), _mm512_extracti64x4_epi64(lo, 1));
        __m256i hi2 = _mm256_xor_si256(_mm512_castsi512_si256(hi), _mm512_extracti64x4_epi64(hi, 1));
        __m128i lo1 = _mm_xor_si128(_mm256_castsi256_si128(lo2), _mm256_extracti128_si256(lo2, 1));
        __m128i hi1 = _mm_xor_si128(_mm256_castsi256_si128(hi2), _mm256_extracti128_si256(hi2, 1));
        y = shift_and_reduce(lo1, hi1);
    }
    _mm_storeu_si128((__m128i *)g->state, y);
    return done;
}

void sigma_ghash_update(sigma_ghash *g, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    g->length += length;
    if (g->pending > 0) {
        size_t take = 16 - g->pending < length ? 16 - g->pending : length;
        memcpy(g->buffer + g->pending, p, take);
        g->pending += take;
        p += take;
        length -= take;
        if (g->pending < 16) return;
        hash_blocks_one_by_one(g, g->buffer, 1);
        g->pending = 0;
    }
    size_t blocks = length / 16;
    size_t done = hash_blocks_wide(g, p, blocks);
    hash_blocks_one_by_one(g, p + 16 * done, blocks - done);
    p += 16 * blocks;
    length -= 16 * blocks;
    memcpy(g->buffer, p, length);
    g->pending = length;
}

void sigma_ghash_final(sigma_ghash *g, uint8_t out[16]) {
    if (g->pending > 0) {
        memset(g->buffer + g->pending, 0, 16 - g->pending);
        hash_blocks_one_by_one(g, g->buffer, 1);
        g->pending = 0;
    }
    uint8_t lengths[16] = {0};  // len(A) in bits, big-endian, then len(C) = 0
    uint64_t bits = (uint64_t)g->length * 8;
    for (int i = 0; i < 8; i++) lengths[i] = (uint8_t)(bits >> (56 - 8 * i));
    hash_blocks_one_by_one(g, lengths, 1);
    _mm_storeu_si128((__m128i *)out, byte_reverse(_mm_loadu_si128((const __m128i *)g->state)));
}
#else
int sigma_ghash_supported(void) { return 0; }
void sigma_ghash_init(sigma_ghash *g, const uint8_t h[16]) { (void)g, (void)h; }
void sigma_ghash_update(sigma_ghash *g, const void *data, size_t length) { (void)g, (void)data, (void)length; }
void sigma_ghash_final(sigma_ghash *g, uint8_t out[16]) { (void)g, (void)out; }
#endif
