// GHASH on VPCLMULQDQ (ghash.c): internal to the GMAC shim.
#ifndef SIGMA_GHASH_H
#define SIGMA_GHASH_H

#include <stddef.h>
#include <stdint.h>

/// Blocks per step of the vector loop (a multiple of 4).
#define GHASH_STEP 32

typedef struct {
    uint8_t powers[GHASH_STEP][16];  // H^1 ... H^GHASH_STEP, byte-reversed
    uint8_t state[16];       // Y, byte-reversed
    uint8_t buffer[16];      // a partial block
    size_t pending;          // bytes in `buffer`
    uint64_t length;         // bytes hashed
} sigma_ghash;

/// Whether this CPU (and OS) runs the VPCLMULQDQ code.
int sigma_ghash_supported(void);
/// Starts GHASH under the hash key h = E_K(0^128).
void sigma_ghash_init(sigma_ghash *g, const uint8_t h[16]);
/// Hashes `length` more bytes of the additional data (any piece sizes; the data is one string).
void sigma_ghash_update(sigma_ghash *g, const void *data, size_t length);
/// GHASH(A, C = empty) with the length block, into `out`.
void sigma_ghash_final(sigma_ghash *g, uint8_t out[16]);

#endif
