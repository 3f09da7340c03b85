// OpenSSL exposes many of its controls as macros, which Swift cannot call. These
// static inline wrappers give them a name Swift can see; nothing else lives here.
#ifndef MSTUNNEL_COPENSSL_SHIM_H
#define MSTUNNEL_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>
#include <openssl/rand.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

static inline long mst_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
static inline long mst_SSL_set_mode(SSL *ssl, long mode) { return SSL_set_mode(ssl, mode); }
static inline long mst_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int v) { return SSL_CTX_set_min_proto_version(ctx, v); }
static inline long mst_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int v) { return SSL_CTX_set_max_proto_version(ctx, v); }
static inline long mst_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long m) { return SSL_CTX_set_session_cache_mode(ctx, m); }
static inline long mst_SSL_CTX_add_extra_chain_cert(SSL_CTX *ctx, X509 *x) { return SSL_CTX_add_extra_chain_cert(ctx, x); }
static inline long mst_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *s) { return SSL_CTX_set1_groups_list(ctx, s); }
static inline long mst_DTLS_set_link_mtu(SSL *ssl, long mtu) { return DTLS_set_link_mtu(ssl, mtu); }
static inline long mst_DTLSv1_get_timeout(SSL *ssl, struct timeval *tv) { return DTLSv1_get_timeout(ssl, tv); }
static inline long mst_DTLSv1_handle_timeout(SSL *ssl) { return DTLSv1_handle_timeout(ssl); }
static inline int mst_OPENSSL_init_ssl(void) { return OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL); }
static inline int mst_sk_X509_num(const STACK_OF(X509) *sk) { return sk_X509_num(sk); }
static inline X509 *mst_sk_X509_value(const STACK_OF(X509) *sk, int i) { return sk_X509_value(sk, i); }
static inline void mst_sk_X509_pop_free(STACK_OF(X509) *sk) { sk_X509_pop_free(sk, X509_free); }
static inline long mst_BIO_get_mem_data(BIO *b, char **pp) { return BIO_get_mem_data(b, pp); }
static inline void mst_BIO_set_retry_read(BIO *b) { BIO_set_retry_read(b); }
static inline void mst_BIO_clear_retry_flags(BIO *b) { BIO_clear_retry_flags(b); }
static inline int mst_SSL_set_app_data(SSL *s, void *p) { return SSL_set_app_data(s, p); }
static inline void *mst_SSL_get_app_data(const SSL *s) { return SSL_get_app_data(s); }
static inline void mst_SSL_CTX_set_read_ahead(SSL_CTX *ctx, int yes) { SSL_CTX_set_read_ahead(ctx, yes); }
static inline int mst_ERR_GET_REASON(unsigned long e) { return ERR_GET_REASON(e); }

/* Constants that are macros of a shape Swift does not import. */
static const long MST_SSL_MODE_ENABLE_PARTIAL_WRITE = SSL_MODE_ENABLE_PARTIAL_WRITE;
static const long MST_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
static const long MST_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;
static const uint64_t MST_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t MST_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;
static const uint64_t MST_SSL_OP_NO_QUERY_MTU = SSL_OP_NO_QUERY_MTU;
static const uint64_t MST_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t MST_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const long MST_SSL_SESS_CACHE_OFF = SSL_SESS_CACHE_OFF;
#endif
