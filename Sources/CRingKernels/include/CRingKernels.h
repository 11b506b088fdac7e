// Matrix products over Z_{2^64} for the ring protocols (Beaver matmuls and the dealer's mask products).
#ifndef CRING_KERNELS_H
#define CRING_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SIGMA_MATMUL_AVX512 = 0,  ///< vpmullq, 4 × 32 register tile (needs AVX-512F/DQ)
    SIGMA_MATMUL_AVX2 = 1,    ///< 64-bit products from three vpmuludq, 4 × 8 tile (needs AVX2)
    SIGMA_MATMUL_SCALAR = 2   ///< portable C
} sigma_matmul_kernel;

/// Whether `kernel` can run on this CPU (and OS).
int sigma_matmul_supported(sigma_matmul_kernel kernel);
/// The fastest supported kernel, detected once.
sigma_matmul_kernel sigma_matmul_best(void);

/// Past this many terms B outgrows the caches (the one-hot embedding: k = 50257), so callers give each thread one
/// block of rows and each thread streams B once. (The kernels walk sums in cache-sized blocks from fewer terms on:
/// see matmul.c.)
#define SIGMA_MATMUL_BLOCK_FROM 4096

/// Rows [row_begin, row_end) of C = A·B mod 2^64 (A m×k, B k×n, C m×n, row-major, C overwritten).
void sigma_matmul_rows(sigma_matmul_kernel kernel, const uint64_t *a, const uint64_t *b, uint64_t *c, size_t k,
                       size_t n, size_t row_begin, size_t row_end);

/// Columns [col_begin, col_end) of C = A·Bᵀ mod 2^64 for B stored n×k (A m×k, C m×n, row-major, those columns of
/// C overwritten): a transposed operand without the transposition — each entry is a dot product of two rows.
void sigma_matmul_transposed_columns(const uint64_t *a, const uint64_t *b, uint64_t *c, size_t m, size_t k, size_t n,
                                     size_t col_begin, size_t col_end);

/// Unpacks `count` values of `bits` (1 ... 64) bits from `bytes` (at least ⌈count·bits/8⌉ of `byte_count` bytes), the
/// wire format of BitPacking: value i at bits [i·bits, (i+1)·bits) of a little-endian bit stream.
void sigma_unpack(const uint8_t *bytes, size_t byte_count, size_t count, unsigned bits, uint64_t *out);

/// For each i, value i·candidates + choices[i] of `bytes` packed as above (choices[i] < candidates; the caller checks
/// that the buffer holds count·candidates values): one of several candidates per element, read in place.
void sigma_unpack_chosen(const uint8_t *bytes, size_t byte_count, size_t count, unsigned candidates, unsigned bits,
                         const uint8_t *choices, uint64_t *out);

/// The inverse: packs the low `bits` bits of each of `count` values into `bytes` (exactly ⌈count·bits/8⌉ =
/// `byte_count` bytes, overwritten).
void sigma_pack(const uint64_t *values, size_t count, unsigned bits, uint8_t *bytes, size_t byte_count);

#ifdef __cplusplus
}
#endif

#endif
