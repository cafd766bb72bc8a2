/* tls: OpenSSL driven by the server's own read and write path through a
 * custom BIO (see tls.h). */
#include "net/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* TLS 1.2 suites: ECDHE with an AEAD only (no CBC, RC4, 3DES, no static RSA
 * key exchange). TLS 1.3 suites are all AEAD: OpenSSL's defaults. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

#define SEAL_CHUNK 16384 /* one full TLS record of plaintext */

/* A TLS connection: the conn first, so a conn* (and a uv_handle_t*) is a
 * tls_conn*. 8 bytes more than a conn. */
typedef struct tls_conn {
    conn c;
    SSL *ssl;
} tls_conn;

static SSL_CTX *ctx; /* for new connections; NULL = plain */
static BIO_METHOD *bio_method;

/* The ciphertext being fed to SSL_read, the records SSL writes, and the
 * plaintext coalesced for one SSL_write: one connection at a time. */
static const uint8_t *feed_ptr;
static size_t feed_len;
static sbuf *wire;
static uint8_t seal_buf[SEAL_CHUNK];
static size_t seal_len;

/* ---- the BIO ----------------------------------------------------------- */

static int bio_write_cb(BIO *b, const char *data, int len)
{
    (void)b;
    if (len <= 0)
        return 0;
    size_t have = wire ? wire->len : 0, need = have + (size_t)len;
    if (!wire || need > wire->cap) {
        size_t cap = wire ? wire->cap * 2 : 0;
        if (cap < need)
            cap = need;
        if (cap > UINT32_MAX)
            return -1;
        /* the wire is ours alone (one reference, no alternates) until taken */
        sbuf *w = wire ? realloc(wire, sizeof(*w) + cap) : sbuf_new(cap);
        if (!w)
            return -1;
        w->cap = (uint32_t)cap;
        wire = w;
    }
    memcpy(wire->data + wire->len, data, (size_t)len);
    wire->len = (uint32_t)need;
    return len;
}

static int bio_read_cb(BIO *b, char *out, int len)
{
    BIO_clear_retry_flags(b);
    if (feed_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < feed_len ? (size_t)len : feed_len;
    memcpy(out, feed_ptr, n);
    feed_ptr += n;
    feed_len -= n;
    return (int)n;
}

static long bio_ctrl_cb(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create_cb(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy_cb(BIO *b)
{
    (void)b;
    return 1;
}

static int bio_method_init(void)
{
    if (bio_method)
        return 0;
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "chatd");
    if (!bio_method || !BIO_meth_set_write(bio_method, bio_write_cb) ||
        !BIO_meth_set_read(bio_method, bio_read_cb) ||
        !BIO_meth_set_ctrl(bio_method, bio_ctrl_cb) ||
        !BIO_meth_set_create(bio_method, bio_create_cb) ||
        !BIO_meth_set_destroy(bio_method, bio_destroy_cb))
        return -1;
    return 0;
}

/* ---- the context ------------------------------------------------------- */

/* The newest OpenSSL error as text (empties the error queue). */
static const char *ssl_error_text(char *buf, size_t size)
{
    unsigned long e = ERR_get_error(), next;
    while ((next = ERR_get_error()) != 0) /* the first is the cause; drain the rest */
        ;
    if (e == 0)
        return "unknown error";
    ERR_error_string_n(e, buf, size);
    return buf;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no protocol in common */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Logs the loaded certificate's subject, serial and expiry. */
static void log_cert(SSL_CTX *c, const char *path)
{
    X509 *x = SSL_CTX_get0_certificate(c);
    if (!x) {
        return;
    }
    char subject[256] = "?", serial[80] = "?", expiry[64] = "?";
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex)
        snprintf(serial, sizeof(serial), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    BIO *m = BIO_new(BIO_s_mem());
    if (m && ASN1_TIME_print(m, X509_get0_notAfter(x))) {
        int n = BIO_read(m, expiry, sizeof(expiry) - 1);
        expiry[n > 0 ? n : 0] = '\0';
    }
    BIO_free(m);
    log_info("TLS: certificate %s loaded (subject %s, serial %s, expires %s)", path, subject,
             serial, expiry);
}

/* A new context for cert/key, or NULL after logging why. */
static SSL_CTX *ctx_new(const char *cert, const char *key)
{
    char err[256];
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c) {
        log_error("TLS: cannot create a context: %s", ssl_error_text(err, sizeof(err)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* idle connections hold no record buffers */
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    /* no per-session memory on the server: resumption uses stateless tickets */
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(c, alpn_select_cb, NULL);
    if (!SSL_CTX_set_cipher_list(c, TLS12_CIPHERS)) {
        log_error("TLS: cipher list rejected: %s", ssl_error_text(err, sizeof(err)));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
        log_error("TLS: cannot load the certificate chain %s: %s", cert,
                  ssl_error_text(err, sizeof(err)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
        log_error("TLS: cannot load the private key %s: %s", key, ssl_error_text(err, sizeof(err)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        log_error("TLS: the key %s does not match the certificate %s: %s", key, cert,
                  ssl_error_text(err, sizeof(err)));
        goto fail;
    }
    log_cert(c, cert);
    return c;
fail:
    SSL_CTX_free(c);
    return NULL;
}

int tls_init(const config *cfg)
{
    if (!cfg->tls_cert[0] && !cfg->tls_key[0])
        return 0;
    if (!cfg->tls_cert[0] || !cfg->tls_key[0]) {
        log_error("TLS: --tls-cert and --tls-key go together");
        return -1;
    }
    if (bio_method_init() < 0) {
        log_error("TLS: cannot create the BIO method");
        return -1;
    }
    ctx = ctx_new(cfg->tls_cert, cfg->tls_key);
    return ctx ? 0 : -1;
}

bool tls_enabled(void)
{
    return ctx != NULL;
}

void tls_shutdown(void)
{
    SSL_CTX_free(ctx);
    ctx = NULL;
    BIO_meth_free(bio_method);
    bio_method = NULL;
    sbuf_unref(wire);
    wire = NULL;
}

int tls_reload(const config *old_cfg, const config *new_cfg)
{
    (void)old_cfg;
    bool want = new_cfg->tls_cert[0] || new_cfg->tls_key[0];
    if (!ctx) {
        if (want)
            log_warn("TLS: --tls-cert/--tls-key set: turning TLS on needs a restart");
        return 0;
    }
    if (!want) {
        log_warn("TLS: --tls-cert/--tls-key removed: turning TLS off needs a restart; "
                 "keeping the loaded certificate");
        return 0;
    }
    if (!new_cfg->tls_cert[0] || !new_cfg->tls_key[0]) {
        log_error("TLS: --tls-cert and --tls-key go together; keeping the loaded certificate");
        return -1;
    }
    SSL_CTX *fresh = ctx_new(new_cfg->tls_cert, new_cfg->tls_key);
    if (!fresh) {
        log_error("TLS: keeping the certificate loaded before");
        return -1;
    }
    SSL_CTX_free(ctx); /* open connections keep their own reference */
    ctx = fresh;
    return 0;
}

/* ---- connections ------------------------------------------------------- */

size_t tls_conn_size(void)
{
    return sizeof(tls_conn);
}

int tls_conn_start(conn *c)
{
    tls_conn *t = (tls_conn *)c;
    t->ssl = SSL_new(ctx);
    if (!t->ssl)
        return -1;
    BIO *b = BIO_new(bio_method);
    if (!b) {
        SSL_free(t->ssl);
        t->ssl = NULL;
        return -1;
    }
    SSL_set_bio(t->ssl, b, b); /* one BIO both ways; the SSL owns it */
    SSL_set_accept_state(t->ssl);
    c->flags |= CONN_TLS;
    return 0;
}

void tls_conn_free(conn *c)
{
    tls_conn *t = (tls_conn *)c;
    SSL_free(t->ssl);
    t->ssl = NULL;
}

void tls_feed(const uint8_t *data, size_t len)
{
    feed_ptr = data;
    feed_len = len;
}

bool tls_handshake_done(conn *c)
{
    return SSL_is_init_finished(((tls_conn *)c)->ssl);
}

long tls_read(conn *c, uint8_t *out, size_t cap)
{
    SSL *ssl = ((tls_conn *)c)->ssl;
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(ssl, out, cap > INT32_MAX ? INT32_MAX : (int)cap);
        if (n > 0)
            return n;
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            if (feed_len > 0)
                continue; /* a record without application data (a ticket, a key update) */
            return TLS_READ_AGAIN;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return TLS_READ_EOF;
        unsigned long err = ERR_peek_error();
        if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_HTTP_REQUEST) {
            ERR_clear_error();
            return TLS_READ_HTTP;
        }
        if (log_enabled(LOG_DEBUG)) {
            char buf[256];
            log_debug("TLS: %s failed: %s", SSL_is_init_finished(ssl) ? "connection" : "handshake",
                      e == SSL_ERROR_SSL ? ssl_error_text(buf, sizeof(buf)) : "I/O error");
        }
        ERR_clear_error();
        return TLS_READ_ERR;
    }
}

static int seal_write(SSL *ssl, const uint8_t *data, size_t len)
{
    while (len > 0) {
        int n = len > INT32_MAX ? INT32_MAX : (int)len;
        ERR_clear_error();
        /* the BIO takes every byte, so SSL_write writes all or fails */
        int w = SSL_write(ssl, data, n);
        if (w <= 0) {
            ERR_clear_error();
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

int tls_seal(conn *c, const uint8_t *data, size_t len)
{
    SSL *ssl = ((tls_conn *)c)->ssl;
    if (seal_len > 0) {
        size_t n = SEAL_CHUNK - seal_len < len ? SEAL_CHUNK - seal_len : len;
        memcpy(seal_buf + seal_len, data, n);
        seal_len += n;
        data += n;
        len -= n;
        if (seal_len < SEAL_CHUNK)
            return 0;
        seal_len = 0;
        if (seal_write(ssl, seal_buf, SEAL_CHUNK) < 0)
            return -1;
    }
    /* whole records straight from the caller's buffer; the tail waits */
    size_t whole = len - len % SEAL_CHUNK;
    if (whole > 0 && seal_write(ssl, data, whole) < 0)
        return -1;
    memcpy(seal_buf, data + whole, len - whole);
    seal_len = len - whole;
    return 0;
}

int tls_seal_end(conn *c)
{
    size_t n = seal_len;
    seal_len = 0;
    return n > 0 ? seal_write(((tls_conn *)c)->ssl, seal_buf, n) : 0;
}

void tls_close_notify(conn *c)
{
    SSL *ssl = ((tls_conn *)c)->ssl;
    if (!SSL_is_init_finished(ssl) || (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN))
        return;
    ERR_clear_error();
    SSL_shutdown(ssl);
    ERR_clear_error();
}

sbuf *tls_take_wire(void)
{
    sbuf *w = wire;
    wire = NULL;
    return w;
}
