// Key-file integrity: GMAC per section (streamed while the dealer writes and while a party's verifier reads) and
// HMAC-SHA-256 to derive a per-file key from the deployment's dealer–party secret.
#include "CSigmaCrypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>

struct sigma_gmac_state {
    EVP_CIPHER_CTX *context;
    int failed;
};

sigma_gmac_state *sigma_gmac_begin(const uint8_t *key, const uint8_t *nonce) {
    sigma_gmac_state *state = calloc(1, sizeof *state);
    if (state == NULL) return NULL;
    state->context = EVP_CIPHER_CTX_new();
    if (state->context == NULL || !EVP_EncryptInit_ex(state->context, EVP_aes_256_gcm(), NULL, NULL, NULL) ||
        !EVP_CIPHER_CTX_ctrl(state->context, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) ||
        !EVP_EncryptInit_ex(state->context, NULL, NULL, key, nonce)) {
        state->failed = 1;
    }
    return state;
}

void sigma_gmac_add(sigma_gmac_state *state, const void *data, size_t length) {
    const unsigned char *cursor = data;
    while (!state->failed && length > 0) {
        int piece = length > (1 << 30) ? (1 << 30) : (int)length;
        int written = 0;
        if (!EVP_EncryptUpdate(state->context, NULL, &written, cursor, piece)) state->failed = 1;
        cursor += piece;
        length -= (size_t)piece;
    }
}

int sigma_gmac_end(sigma_gmac_state *state, uint8_t *tag) {
    int final_length = 0;
    unsigned char none[16];
    int ok = !state->failed && EVP_EncryptFinal_ex(state->context, none, &final_length) &&
             EVP_CIPHER_CTX_ctrl(state->context, EVP_CTRL_GCM_GET_TAG, 16, tag);
    EVP_CIPHER_CTX_free(state->context);
    free(state);
    return ok ? 0 : -1;
}

int sigma_gmac(const uint8_t *key, const uint8_t *nonce, const void *data, size_t length, uint8_t *tag) {
    sigma_gmac_state *state = sigma_gmac_begin(key, nonce);
    if (state == NULL) return -1;
    sigma_gmac_add(state, data, length);
    return sigma_gmac_end(state, tag);
}

int sigma_hmac_sha256(const uint8_t *key, size_t key_length, const void *data, size_t length, uint8_t *out) {
    unsigned int out_length = 0;
    return HMAC(EVP_sha256(), key, (int)key_length, data, length, out, &out_length) != NULL && out_length == 32 ? 0
                                                                                                               : -1;
}

int sigma_equal_constant_time(const void *a, const void *b, size_t length) {
    return CRYPTO_memcmp(a, b, length) == 0;
}
