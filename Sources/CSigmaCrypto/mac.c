// Key-file integrity: GMAC per section (streamed while the dealer writes and while a party's verifier reads) and
// HMAC-SHA-256 to derive a per-file key from the deployment's dealer–party secret.
#include "CSigmaCrypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "ghash.h"

struct sigma_gmac_state {
    EVP_CIPHER_CTX *context;  // OpenSSL's GMAC, or NULL when our GHASH serves
    sigma_ghash ghash;
    uint8_t masked_j0[16];  // E_K(nonce || 0^31 || 1), added to GHASH for the tag
    int failed;
};

// AES-256 of one block under `key` (the hash key H = E_K(0) and the tag mask E_K(J0)).
static int encrypt_block(const uint8_t *key, const uint8_t in[16], uint8_t out[16]) {
    EVP_CIPHER_CTX *context = EVP_CIPHER_CTX_new();
    int written = 0;
    int ok = context != NULL && EVP_EncryptInit_ex(context, EVP_aes_256_ecb(), NULL, key, NULL) &&
             EVP_CIPHER_CTX_set_padding(context, 0) && EVP_EncryptUpdate(context, out, &written, in, 16) &&
             written == 16;
    EVP_CIPHER_CTX_free(context);
    return ok;
}

static sigma_gmac_state *begin(const uint8_t *key, const uint8_t *nonce, int use_openssl) {
    sigma_gmac_state *state = calloc(1, sizeof *state);
    if (state == NULL) return NULL;
    if (!use_openssl && sigma_ghash_supported()) {
        uint8_t zero[16] = {0}, h[16], j0[16] = {0};
        memcpy(j0, nonce, 12);
        j0[15] = 1;
        if (!encrypt_block(key, zero, h) || !encrypt_block(key, j0, state->masked_j0)) state->failed = 1;
        sigma_ghash_init(&state->ghash, h);
        OPENSSL_cleanse(h, sizeof h);
        return state;
    }
    state->context = EVP_CIPHER_CTX_new();
    if (state->context == NULL || !EVP_EncryptInit_ex(state->context, EVP_aes_256_gcm(), NULL, NULL, NULL) ||
        !EVP_CIPHER_CTX_ctrl(state->context, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) ||
        !EVP_EncryptInit_ex(state->context, NULL, NULL, key, nonce)) {
        state->failed = 1;
    }
    return state;
}

sigma_gmac_state *sigma_gmac_begin(const uint8_t *key, const uint8_t *nonce) { return begin(key, nonce, 0); }

void sigma_gmac_add(sigma_gmac_state *state, const void *data, size_t length) {
    if (state->context == NULL) {
        if (!state->failed) sigma_ghash_update(&state->ghash, data, length);
        return;
    }
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
    int ok;
    if (state->context == NULL) {
        ok = !state->failed;
        if (ok) {
            sigma_ghash_final(&state->ghash, tag);
            for (int i = 0; i < 16; i++) tag[i] ^= state->masked_j0[i];
        }
    } else {
        int final_length = 0;
        unsigned char none[16];
        ok = !state->failed && EVP_EncryptFinal_ex(state->context, none, &final_length) &&
             EVP_CIPHER_CTX_ctrl(state->context, EVP_CTRL_GCM_GET_TAG, 16, tag);
        EVP_CIPHER_CTX_free(state->context);
    }
    OPENSSL_cleanse(state, sizeof *state);
    free(state);
    return ok ? 0 : -1;
}

int sigma_gmac(const uint8_t *key, const uint8_t *nonce, const void *data, size_t length, uint8_t *tag) {
    sigma_gmac_state *state = sigma_gmac_begin(key, nonce);
    if (state == NULL) return -1;
    sigma_gmac_add(state, data, length);
    return sigma_gmac_end(state, tag);
}

int sigma_gmac_with(int use_openssl, const uint8_t *key, const uint8_t *nonce, const void *const *pieces,
                    const size_t *lengths, size_t count, uint8_t *tag) {
    sigma_gmac_state *state = begin(key, nonce, use_openssl);
    if (state == NULL) return -1;
    for (size_t i = 0; i < count; i++) sigma_gmac_add(state, pieces[i], lengths[i]);
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
