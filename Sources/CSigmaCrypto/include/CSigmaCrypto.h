// Thin shims over OpenSSL (libssl / libcrypto) for Sigma's transport: TLS 1.3 authenticated by an external
// pre-shared key, and the MAC and key derivation of key files. Swift sees only these functions and one opaque
// type; every OpenSSL object stays on the C side.
#ifndef SIGMA_CRYPTO_H
#define SIGMA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Results of the TLS calls.
enum {
    SIGMA_TLS_OK = 0,
    SIGMA_TLS_CLOSED = 1,    // the peer closed the connection (or it was shut down locally)
    SIGMA_TLS_TIMEOUT = 2,   // nothing arrived (or nothing could be sent) within the timeout
    SIGMA_TLS_FAILED = 3,    // a TLS or system error; sigma_tls_error() says which
};

typedef struct sigma_tls sigma_tls;

/// Runs a TLS 1.3 handshake on the connected socket `fd` (which becomes non-blocking) and returns the endpoint, or
/// NULL with a message in `error`. Both sides are authenticated by `psk` (an external PSK under `identity`, with
/// an ephemeral X25519 exchange for forward secrecy: psk_dhe_ke); there are no certificates, so a peer without
/// the key fails the handshake before any application byte. Cipher suite TLS_AES_128_GCM_SHA256 only.
sigma_tls *sigma_tls_open(int fd, int is_server, const uint8_t *psk, size_t psk_length, const char *identity,
                          int timeout_ms, char *error, size_t error_capacity);

/// Writes all `length` bytes. Safe to call from one thread while another thread is inside sigma_tls_read_all.
int sigma_tls_write_all(sigma_tls *tls, const void *bytes, size_t length, int timeout_ms);

/// Reads exactly `length` bytes. Safe to call from one thread while another thread is inside sigma_tls_write_all.
int sigma_tls_read_all(sigma_tls *tls, void *bytes, size_t length, int timeout_ms);

/// The last error's description (valid until the next call on `tls`).
const char *sigma_tls_error(const sigma_tls *tls);

/// The negotiated protocol and cipher suite, for reports ("TLSv1.3 TLS_AES_128_GCM_SHA256").
void sigma_tls_describe(const sigma_tls *tls, char *out, size_t capacity);

/// Frees the endpoint (does not close `fd`).
void sigma_tls_free(sigma_tls *tls);

/// GMAC (AES-256-GCM with `data` as additional data and no plaintext, NIST SP 800-38D) of `length` bytes under a
/// 32-byte `key` and 12-byte `nonce`, into 16 bytes of `tag`. A nonce must never repeat under one key.
/// Returns 0 on success.
int sigma_gmac(const uint8_t *key, const uint8_t *nonce, const void *data, size_t length, uint8_t *tag);

/// The same, streamed: begin (NULL only when out of memory), add any number of pieces, end (frees the state;
/// returns 0 on success).
typedef struct sigma_gmac_state sigma_gmac_state;
sigma_gmac_state *sigma_gmac_begin(const uint8_t *key, const uint8_t *nonce);
void sigma_gmac_add(sigma_gmac_state *state, const void *data, size_t length);
int sigma_gmac_end(sigma_gmac_state *state, uint8_t *tag);

/// The GMAC of the concatenated `pieces`, by OpenSSL's GCM (`use_openssl` = 1) or by the shim's own GHASH on
/// VPCLMULQDQ where the CPU has it (0; sigma_gmac uses it, ghash.c): for tests that compare the two.
int sigma_gmac_with(int use_openssl, const uint8_t *key, const uint8_t *nonce, const void *const *pieces,
                    const size_t *lengths, size_t count, uint8_t *tag);

/// HMAC-SHA-256 of `length` bytes under `key`, into 32 bytes of `out` (used as a key-derivation function:
/// HKDF-Expand with one block). Returns 0 on success.
int sigma_hmac_sha256(const uint8_t *key, size_t key_length, const void *data, size_t length, uint8_t *out);

/// Constant-time equality of two byte strings of `length` bytes (1 if equal).
int sigma_equal_constant_time(const void *a, const void *b, size_t length);

/// Starts writing back [offset, offset + length) of a file's dirty pages (sync_file_range), and with `wait` waits
/// for all of it to reach the disk, so the pages can then leave the page cache. Returns 0, or -1 with errno.
int sigma_write_back(int fd, long long offset, long long length, int wait);

#ifdef __cplusplus
}
#endif

#endif
