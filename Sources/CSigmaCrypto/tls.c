// TLS 1.3 with an external PSK over a socket shared by a reader thread and a writer thread.
//
// OpenSSL forbids concurrent calls on one SSL object, but Sigma's channel reads the peer's message while a sender
// thread writes its own (both directions of a round at once). So the socket is non-blocking, every SSL call is
// made under `lock` and returns at once, and the waiting (poll) happens outside the lock: the reader never blocks
// the writer for longer than one record.
#include "CSigmaCrypto.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sigma_tls {
    SSL_CTX *context;
    SSL *ssl;
    int fd;
    pthread_mutex_t lock;
    uint8_t psk[64];
    size_t psk_length;
    char identity[128];
    char error[256];
};

static const unsigned char aes128gcm_sha256[] = {0x13, 0x01};

static void record_error(sigma_tls *tls, const char *what) {
    unsigned long code = ERR_get_error();
    char detail[160] = "";
    if (code != 0) ERR_error_string_n(code, detail, sizeof detail);
    ERR_clear_error();
    snprintf(tls->error, sizeof tls->error, "%s%s%s", what, detail[0] ? ": " : "", detail);
}

static SSL_SESSION *psk_session(SSL *ssl, const sigma_tls *tls) {
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
    if (cipher == NULL) return NULL;
    SSL_SESSION *session = SSL_SESSION_new();
    if (session == NULL) return NULL;
    if (!SSL_SESSION_set1_master_key(session, tls->psk, tls->psk_length) || !SSL_SESSION_set_cipher(session, cipher) ||
        !SSL_SESSION_set_protocol_version(session, TLS1_3_VERSION)) {
        SSL_SESSION_free(session);
        return NULL;
    }
    return session;
}

// Client: offer the PSK under our identity.
static int use_psk(SSL *ssl, const EVP_MD *digest, const unsigned char **identity, size_t *identity_length,
                   SSL_SESSION **session) {
    sigma_tls *tls = SSL_get_app_data(ssl);
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm_sha256);
    if (cipher == NULL) return 0;
    if (digest != NULL && SSL_CIPHER_get_handshake_digest(cipher) != digest) {  // a HelloRetryRequest's digest
        *session = NULL;
        return 1;
    }
    *session = psk_session(ssl, tls);
    if (*session == NULL) return 0;
    *identity = (const unsigned char *)tls->identity;
    *identity_length = strlen(tls->identity);
    return 1;
}

// Server: accept only our identity; anything else gets no session, and with no certificate the handshake fails.
static int find_psk(SSL *ssl, const unsigned char *identity, size_t identity_length, SSL_SESSION **session) {
    sigma_tls *tls = SSL_get_app_data(ssl);
    *session = NULL;
    if (identity_length != strlen(tls->identity) || memcmp(identity, tls->identity, identity_length) != 0) return 1;
    *session = psk_session(ssl, tls);
    return *session != NULL;
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

// Waits for the socket to become readable or writable; SIGMA_TLS_OK, _TIMEOUT or _FAILED.
static int wait_for(sigma_tls *tls, short events, long long deadline) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return SIGMA_TLS_TIMEOUT;
        struct pollfd poller = {.fd = tls->fd, .events = events, .revents = 0};
        int ready = poll(&poller, 1, left > 1000000000 ? 1000000000 : (int)left);
        if (ready > 0) return SIGMA_TLS_OK;  // also on POLLHUP/POLLERR: the next SSL call reports it
        if (ready == 0) return SIGMA_TLS_TIMEOUT;
        if (errno != EINTR) {
            snprintf(tls->error, sizeof tls->error, "poll failed (errno %d)", errno);
            return SIGMA_TLS_FAILED;
        }
    }
}

// Classifies a non-positive SSL result: 0 = retry after waiting for `*events`, else a SIGMA_TLS_* code.
static int classify(sigma_tls *tls, int result, short *events, const char *what) {
    int reason = SSL_get_error(tls->ssl, result);
    switch (reason) {
    case SSL_ERROR_WANT_READ: *events = POLLIN; return 0;
    case SSL_ERROR_WANT_WRITE: *events = POLLOUT; return 0;
    case SSL_ERROR_ZERO_RETURN:
        snprintf(tls->error, sizeof tls->error, "the peer closed the connection");
        return SIGMA_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (errno == EPIPE || errno == ECONNRESET || errno == 0) {
            ERR_clear_error();
            snprintf(tls->error, sizeof tls->error, "the peer closed the connection");
            return SIGMA_TLS_CLOSED;
        }
        snprintf(tls->error, sizeof tls->error, "%s failed (errno %d)", what, errno);
        ERR_clear_error();
        return SIGMA_TLS_FAILED;
    default:
        // An EOF without close_notify is reported as an SSL error by OpenSSL 3; it is still the peer going away.
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            snprintf(tls->error, sizeof tls->error, "the peer closed the connection");
            return SIGMA_TLS_CLOSED;
        }
        record_error(tls, what);
        return SIGMA_TLS_FAILED;
    }
}

sigma_tls *sigma_tls_open(int fd, int is_server, const uint8_t *psk, size_t psk_length, const char *identity,
                          int timeout_ms, char *error, size_t error_capacity) {
    sigma_tls *tls = calloc(1, sizeof *tls);
    if (tls == NULL || psk_length == 0 || psk_length > sizeof tls->psk || strlen(identity) >= sizeof tls->identity) {
        snprintf(error, error_capacity, "invalid TLS parameters");
        free(tls);
        return NULL;
    }
    tls->fd = fd;
    pthread_mutex_init(&tls->lock, NULL);
    memcpy(tls->psk, psk, psk_length);
    tls->psk_length = psk_length;
    strcpy(tls->identity, identity);

    int flags = fcntl(fd, F_GETFL);
    tls->context = SSL_CTX_new(is_server ? TLS_server_method() : TLS_client_method());
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || tls->context == NULL ||
        !SSL_CTX_set_min_proto_version(tls->context, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(tls->context, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set_num_tickets(tls->context, 0)) {
        record_error(tls, "cannot set up TLS");
        goto fail;
    }
    SSL_CTX_set_mode(tls->context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (is_server) SSL_CTX_set_psk_find_session_callback(tls->context, find_psk);
    else SSL_CTX_set_psk_use_session_callback(tls->context, use_psk);
    tls->ssl = SSL_new(tls->context);
    if (tls->ssl == NULL || !SSL_set_fd(tls->ssl, fd)) {
        record_error(tls, "cannot set up TLS");
        goto fail;
    }
    SSL_set_app_data(tls->ssl, tls);

    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        int result = is_server ? SSL_accept(tls->ssl) : SSL_connect(tls->ssl);
        if (result == 1) break;
        short events = 0;
        int status = classify(tls, result, &events, "TLS handshake");
        if (status == SIGMA_TLS_CLOSED) {
            snprintf(tls->error, sizeof tls->error,
                     "the peer ended the TLS handshake (it does not hold this deployment's credentials, or does not "
                     "speak TLS)");
            goto fail;
        }
        if (status != 0) goto fail;
        status = wait_for(tls, events, deadline);
        if (status == SIGMA_TLS_TIMEOUT) {
            snprintf(tls->error, sizeof tls->error, "the TLS handshake timed out");
            goto fail;
        }
        if (status != SIGMA_TLS_OK) goto fail;
    }
    return tls;

fail:
    snprintf(error, error_capacity, "%s", tls->error);
    sigma_tls_free(tls);
    return NULL;
}

// Moves all `length` bytes in one direction. Each SSL call is made under the lock and returns at once (the socket is
// non-blocking); waiting happens outside it. The timeout bounds silence, not a whole large message.
static int transfer(sigma_tls *tls, char *cursor, size_t length, int timeout_ms, int writing) {
    long long deadline = now_ms() + timeout_ms;
    while (length > 0) {
        // At most 256 KiB per call under the lock: the other direction's calls wait for less (its records are
        // read while these are written), which lifted a full-duplex round from ~500 to ~600 MB/s each way.
        int piece = length > (1 << 18) ? (1 << 18) : (int)length;
        pthread_mutex_lock(&tls->lock);
        int result = writing ? SSL_write(tls->ssl, cursor, piece) : SSL_read(tls->ssl, cursor, piece);
        short events = 0;
        int status = result > 0 ? SIGMA_TLS_OK : classify(tls, result, &events, writing ? "TLS write" : "TLS read");
        pthread_mutex_unlock(&tls->lock);
        if (result > 0) {
            cursor += result;
            length -= (size_t)result;
            deadline = now_ms() + timeout_ms;
            continue;
        }
        if (status != 0) return status;
        status = wait_for(tls, events, deadline);
        if (status != SIGMA_TLS_OK) return status;
    }
    return SIGMA_TLS_OK;
}

int sigma_tls_write_all(sigma_tls *tls, const void *bytes, size_t length, int timeout_ms) {
    return transfer(tls, (char *)bytes, length, timeout_ms, 1);  // SSL_write only reads the buffer
}

int sigma_tls_read_all(sigma_tls *tls, void *bytes, size_t length, int timeout_ms) {
    return transfer(tls, bytes, length, timeout_ms, 0);
}

const char *sigma_tls_error(const sigma_tls *tls) { return tls->error; }

void sigma_tls_describe(const sigma_tls *tls, char *out, size_t capacity) {
    int group = SSL_get_negotiated_group(tls->ssl);
    const char *group_name = group > 0 ? OBJ_nid2sn(group) : NULL;
    snprintf(out, capacity, "%s %s, %s, %s", SSL_get_version(tls->ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(tls->ssl)),
             SSL_session_reused(tls->ssl) ? "pre-shared key" : "NO pre-shared key",
             group_name ? group_name : "no key exchange");
}

void sigma_tls_free(sigma_tls *tls) {
    if (tls == NULL) return;
    if (tls->ssl != NULL) SSL_free(tls->ssl);
    if (tls->context != NULL) SSL_CTX_free(tls->context);
    pthread_mutex_destroy(&tls->lock);
    OPENSSL_cleanse(tls->psk, sizeof tls->psk);
    free(tls);
}
