// Shared between the kernel files of this target; not part of the public header.
#ifndef CSIGMA_INTERNAL_H
#define CSIGMA_INTERNAL_H

#include "CSigmaKernels.h"

void sigma_internal_ecb(sigma_aes_backend backend, const sigma_aes_key *key, const uint8_t *in, uint8_t *out,
                        size_t count);

#endif
