// Ring matrix products: C = A·B mod 2^64. Each vector kernel carries its own target attribute and is chosen at
// run time, so one binary runs on every x86-64 CPU. Loop order: a column tile of B (k × tile, which stays in L2
// for k up to a few thousand) is swept by every group of four rows of A.
#include "CRingKernels.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

// Every kernel computes rows [r0, r1) of C (+)= A·B over k terms, A with row stride lda, B with row stride n; with
// `accumulate` it adds to C, so the dispatcher can walk k in cache-sized blocks.
static void scalar_rows(const uint64_t *a, size_t lda, const uint64_t *b, uint64_t *c, size_t k, size_t n, size_t r0,
                        size_t r1, size_t col0, int accumulate) {
    for (size_t i = r0; i < r1; i++) {
        uint64_t *row = c + i * n;
        if (!accumulate)
            for (size_t j = col0; j < n; j++) row[j] = 0;
        for (size_t kk = 0; kk < k; kk++) {
            uint64_t x = a[i * lda + kk];
            const uint64_t *brow = b + kk * n;
            for (size_t j = col0; j < n; j++) row[j] += x * brow[j];
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512dq"))) static void avx512_rows(const uint64_t *a, size_t lda, const uint64_t *b,
                                                                    uint64_t *c, size_t k, size_t n, size_t r0,
                                                                    size_t r1, int accumulate) {
    size_t tiles = n / 32 * 32;
    for (size_t j = 0; j < tiles; j += 32) {
        size_t i = r0;
        for (; i + 4 <= r1; i += 4) {
            __m512i acc[4][4];
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 4; v++)
                    acc[r][v] = accumulate ? _mm512_loadu_si512((const void *)(c + (i + r) * n + j + 8 * v))
                                           : _mm512_setzero_si512();
            for (size_t kk = 0; kk < k; kk++) {
                const uint64_t *brow = b + kk * n + j;
                __m512i bv[4];
                for (int v = 0; v < 4; v++) bv[v] = _mm512_loadu_si512((const void *)(brow + 8 * v));
                for (int r = 0; r < 4; r++) {
                    __m512i x = _mm512_set1_epi64((long long)a[(i + r) * lda + kk]);
                    for (int v = 0; v < 4; v++) acc[r][v] = _mm512_add_epi64(acc[r][v], _mm512_mullo_epi64(x, bv[v]));
                }
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 4; v++) _mm512_storeu_si512((void *)(c + (i + r) * n + j + 8 * v), acc[r][v]);
        }
        for (; i < r1; i++) {
            __m512i acc[4];
            for (int v = 0; v < 4; v++)
                acc[v] = accumulate ? _mm512_loadu_si512((const void *)(c + i * n + j + 8 * v)) : _mm512_setzero_si512();
            for (size_t kk = 0; kk < k; kk++) {
                __m512i x = _mm512_set1_epi64((long long)a[i * lda + kk]);
                for (int v = 0; v < 4; v++)
                    acc[v] = _mm512_add_epi64(acc[v], _mm512_mullo_epi64(x, _mm512_loadu_si512((const void *)(b + kk * n + j + 8 * v))));
            }
            for (int v = 0; v < 4; v++) _mm512_storeu_si512((void *)(c + i * n + j + 8 * v), acc[v]);
        }
    }
    if (tiles < n) scalar_rows(a, lda, b, c, k, n, r0, r1, tiles, accumulate);
}

// 64-bit products without a 64-bit multiply: x·y = x_lo·y_lo + ((x_hi·y_lo + x_lo·y_hi) << 32) mod 2^64, and the
// shift is linear mod 2^64, so the low products and the cross products accumulate separately and meet once at
// the end: three vpmuludq and three adds per four products.
__attribute__((target("avx2"))) static void avx2_rows(const uint64_t *a, size_t lda, const uint64_t *b, uint64_t *c,
                                                      size_t k, size_t n, size_t r0, size_t r1, int accumulate) {
    size_t tiles = n / 8 * 8;
    for (size_t j = 0; j < tiles; j += 8) {
        size_t i = r0;
        for (; i + 4 <= r1; i += 4) {
            __m256i low[4][2], cross[4][2];
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 2; v++) {
                    low[r][v] = accumulate ? _mm256_loadu_si256((const __m256i *)(c + (i + r) * n + j + 4 * v))
                                           : _mm256_setzero_si256();
                    cross[r][v] = _mm256_setzero_si256();
                }
            for (size_t kk = 0; kk < k; kk++) {
                const uint64_t *brow = b + kk * n + j;
                __m256i bv[2], bh[2];
                for (int v = 0; v < 2; v++) {
                    bv[v] = _mm256_loadu_si256((const __m256i *)(brow + 4 * v));
                    bh[v] = _mm256_srli_epi64(bv[v], 32);
                }
                for (int r = 0; r < 4; r++) {
                    uint64_t s = a[(i + r) * lda + kk];
                    __m256i x = _mm256_set1_epi64x((long long)s), xh = _mm256_set1_epi64x((long long)(s >> 32));
                    for (int v = 0; v < 2; v++) {
                        low[r][v] = _mm256_add_epi64(low[r][v], _mm256_mul_epu32(x, bv[v]));
                        cross[r][v] = _mm256_add_epi64(
                            cross[r][v], _mm256_add_epi64(_mm256_mul_epu32(xh, bv[v]), _mm256_mul_epu32(x, bh[v])));
                    }
                }
            }
            for (int r = 0; r < 4; r++)
                for (int v = 0; v < 2; v++)
                    _mm256_storeu_si256((__m256i *)(c + (i + r) * n + j + 4 * v),
                                        _mm256_add_epi64(low[r][v], _mm256_slli_epi64(cross[r][v], 32)));
        }
        if (i < r1) {
            // Leftover rows of this tile, one at a time.
            for (; i < r1; i++) {
                __m256i low[2], cross[2];
                for (int v = 0; v < 2; v++) {
                    low[v] = accumulate ? _mm256_loadu_si256((const __m256i *)(c + i * n + j + 4 * v))
                                        : _mm256_setzero_si256();
                    cross[v] = _mm256_setzero_si256();
                }
                for (size_t kk = 0; kk < k; kk++) {
                    uint64_t s = a[i * lda + kk];
                    __m256i x = _mm256_set1_epi64x((long long)s), xh = _mm256_set1_epi64x((long long)(s >> 32));
                    for (int v = 0; v < 2; v++) {
                        __m256i bv = _mm256_loadu_si256((const __m256i *)(b + kk * n + j + 4 * v));
                        low[v] = _mm256_add_epi64(low[v], _mm256_mul_epu32(x, bv));
                        cross[v] = _mm256_add_epi64(cross[v], _mm256_add_epi64(_mm256_mul_epu32(xh, bv),
                                                                                _mm256_mul_epu32(x, _mm256_srli_epi64(bv, 32))));
                    }
                }
                for (int v = 0; v < 2; v++)
                    _mm256_storeu_si256((__m256i *)(c + i * n + j + 4 * v), _mm256_add_epi64(low[v], _mm256_slli_epi64(cross[v], 32)));
            }
        }
    }
    if (tiles < n) scalar_rows(a, lda, b, c, k, n, r0, r1, tiles, accumulate);
}

static int cpu_bit(unsigned leaf, unsigned sub, int reg, unsigned bit) {
    unsigned r[4];
    if (!__get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3])) return 0;
    return (int)((r[reg] >> bit) & 1u);
}

static int xcr0_has(uint64_t mask) {
    if (!cpu_bit(1, 0, 2, 27)) return 0;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((((uint64_t)hi << 32) | lo) & mask) == mask;
}
#endif

// CPUID traps to the hypervisor in a VM: detect once. -1 unknown, 0 no, 1 yes.
static int support[3] = {-1, -1, -1};

int sigma_matmul_supported(sigma_matmul_kernel kernel) {
    if ((unsigned)kernel > SIGMA_MATMUL_SCALAR) return 0;
    int known = __atomic_load_n(&support[kernel], __ATOMIC_RELAXED);
    if (known < 0) {
        known = kernel == SIGMA_MATMUL_SCALAR;
#if defined(__x86_64__)
        if (kernel == SIGMA_MATMUL_AVX2) known = cpu_bit(7, 0, 1, 5) && xcr0_has(0x6);
        if (kernel == SIGMA_MATMUL_AVX512) known = cpu_bit(7, 0, 1, 16) && cpu_bit(7, 0, 1, 17) && xcr0_has(0xe6);
#endif
        __atomic_store_n(&support[kernel], known, __ATOMIC_RELAXED);
    }
    return known;
}

sigma_matmul_kernel sigma_matmul_best(void) {
    for (int kernel = SIGMA_MATMUL_AVX512; kernel < SIGMA_MATMUL_SCALAR; kernel++)
        if (sigma_matmul_supported((sigma_matmul_kernel)kernel)) return (sigma_matmul_kernel)kernel;
    return SIGMA_MATMUL_SCALAR;
}

// The k dimension is walked in blocks of SIGMA_MATMUL_KC terms: within a block, each 8- or 32-column panel of B
// (KC rows, 16-64 KB) stays in L1/L2 while every row block of A passes over it, and the rows of A stay in L2 across
// panels. Without it a long k (the one-hot embedding: k = 50257) streamed all of B, from DRAM and with a TLB miss
// per row, once per 4 rows of A (0.35 GMAC/s on one core here, 1.5 with the blocks). Short sums run unblocked (the
// B panel of the whole k stays in L2, and C is written once). Where the two meet depends on the cache: on a Zen 3
// machine the unblocked loop won for 128×768×3072 (2.8 against 1.6 GMAC/s, AVX2); on Zen 4 (1 MiB L2) a 3072-term
// panel of 32 columns (768 KiB) no longer fits and blocking wins for every kernel (AVX-512 18.2 against 9.4, AVX2
// 4.7 against 4.1 GMAC/s, one core, /tmp microbenchmark of sigma_matmul_rows); 768 terms stay unblocked on both.
#define SIGMA_MATMUL_KC 256
#define SIGMA_MATMUL_BLOCKED_FROM_K 1536

void sigma_matmul_rows(sigma_matmul_kernel kernel, const uint64_t *a, const uint64_t *b, uint64_t *c, size_t k,
                       size_t n, size_t row_begin, size_t row_end) {
    if (!sigma_matmul_supported(kernel)) kernel = sigma_matmul_best();
    if (k == 0) {
        for (size_t i = row_begin; i < row_end; i++) memset(c + i * n, 0, n * sizeof(uint64_t));
        return;
    }
    size_t block = k > SIGMA_MATMUL_BLOCKED_FROM_K ? SIGMA_MATMUL_KC : k;
    for (size_t k0 = 0; k0 < k; k0 += block) {
        size_t kc = k - k0 < block ? k - k0 : block;
        int accumulate = k0 > 0;
#if defined(__x86_64__)
        if (kernel == SIGMA_MATMUL_AVX512) {
            avx512_rows(a + k0, k, b + k0 * n, c, kc, n, row_begin, row_end, accumulate);
            continue;
        }
        if (kernel == SIGMA_MATMUL_AVX2) {
            avx2_rows(a + k0, k, b + k0 * n, c, kc, n, row_begin, row_end, accumulate);
            continue;
        }
#endif
        scalar_rows(a + k0, k, b + k0 * n, c, kc, n, row_begin, row_end, 0, accumulate);
    }
}

void sigma_matmul_transposed_columns(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m, size_t k, size_t n,
                                     size_t col_begin, size_t col_end) {
    // Four rows of B against each row of A: A's row stays in L1, B streams once per block of A's rows.
    enum { ROWS_OF_A = 8 };
    for (size_t i0 = 0; i0 < m; i0 += ROWS_OF_A) {
        size_t i1 = i0 + ROWS_OF_A < m ? i0 + ROWS_OF_A : m;
        size_t j = col_begin;
        for (; j + 4 <= col_end; j += 4) {
            const uint64_t *b0 = b + j * k, *b1 = b0 + k, *b2 = b1 + k, *b3 = b2 + k;
            for (size_t i = i0; i < i1; i++) {
                const uint64_t *row = a + i * k;
                uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (size_t l = 0; l < k; l++) {
                    uint64_t x = row[l];
                    s0 += x * b0[l];
                    s1 += x * b1[l];
                    s2 += x * b2[l];
                    s3 += x * b3[l];
                }
                c[i * n + j] = s0;
                c[i * n + j + 1] = s1;
                c[i * n + j + 2] = s2;
                c[i * n + j + 3] = s3;
            }
        }
        for (; j < col_end; j++) {
            for (size_t i = i0; i < i1; i++) {
                uint64_t s0 = 0;
                for (size_t l = 0; l < k; l++) s0 += a[i * k + l] * b[j * k + l];
                c[i * n + j] = s0;
            }
        }
    }
}
