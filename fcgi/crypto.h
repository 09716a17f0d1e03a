/*
 * crypto.h - OpenSSL's libcrypto, loaded when SSE_AUTH first needs it (issue 12).
 *
 * Mapping libcrypto.so.3 costs a process about 400 KiB of memory of its own, whether it
 * hashes anything or not: the dynamic linker relocates the library's .data.rel.ro (363
 * KiB of pointers) in every process, so those pages are never shared. Behind Apache +
 * mod_fcgid (one process per stream) that was a quarter of each process. So sse-fcgi does
 * not link it: the first crypto_load() dlopen()s it and resolves the few functions auth.c
 * calls, and a process whose requests all run with SSE_AUTH=none never maps it. OpenSSL
 * still does all the crypto; this file only finds its functions.
 *
 * The table's types are checked against the OpenSSL 3 headers when this compiles. Every
 * function is thread-safe.
 */
#ifndef SSE_CRYPTO_H
#define SSE_CRYPTO_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

/* The soname the responder loads: what libssl3 (Debian 12) installs. */
#define CRYPTO_SONAME "libcrypto.so.3"

/* libcrypto's functions that auth.c calls, by their OpenSSL names. */
typedef const EVP_MD *crypto_sha256_fn(void);                     /* EVP_sha256 */
typedef EVP_MD_CTX *crypto_md_ctx_new_fn(void);                   /* EVP_MD_CTX_new */
typedef void crypto_md_ctx_free_fn(EVP_MD_CTX *ctx);              /* EVP_MD_CTX_free */
typedef int crypto_digest_init_fn(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl);
typedef int crypto_digest_update_fn(EVP_MD_CTX *ctx, const void *d, size_t cnt);
typedef int crypto_digest_final_fn(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);
typedef unsigned char *crypto_hmac_fn(const EVP_MD *evp_md, const void *key, int key_len,
                                      const unsigned char *data, size_t data_len,
                                      unsigned char *md, unsigned int *md_len);
typedef int crypto_block_fn(unsigned char *t, const unsigned char *f, int n);
typedef int crypto_memcmp_fn(const void *a, const void *b, size_t len);
typedef void crypto_thread_stop_fn(void);

struct crypto {
    crypto_sha256_fn *sha256;                   /* EVP_sha256 */
    crypto_md_ctx_new_fn *md_ctx_new;           /* EVP_MD_CTX_new */
    crypto_md_ctx_free_fn *md_ctx_free;         /* EVP_MD_CTX_free */
    crypto_digest_init_fn *digest_init;         /* EVP_DigestInit_ex */
    crypto_digest_update_fn *digest_update;     /* EVP_DigestUpdate */
    crypto_digest_final_fn *digest_final;       /* EVP_DigestFinal_ex */
    crypto_hmac_fn *hmac;                       /* HMAC */
    crypto_block_fn *decode_block;              /* EVP_DecodeBlock */
    crypto_block_fn *encode_block;              /* EVP_EncodeBlock */
    crypto_memcmp_fn *memcmp_const_time;        /* CRYPTO_memcmp */
    crypto_thread_stop_fn *thread_stop;         /* OPENSSL_thread_stop */
};

/* The functions, loading CRYPTO_SONAME at the first call of the process; NULL when it
 * cannot be loaded or lacks one of them (crypto_error says why), then and at every later
 * call: a process tries once. */
const struct crypto *crypto_load(void);

/* The functions when a crypto_load has loaded them, else NULL; never loads. */
const struct crypto *crypto_loaded(void);

/* Why crypto_load failed, once it has returned NULL ("" when it loaded the table). */
const char *crypto_error(void);

/* Loads soname into *out (not the process's table), for tests of a missing library.
 * Returns true, or false with the reason in err. The library stays loaded. */
bool crypto_load_from(const char *soname, struct crypto *out, char *err, size_t err_size);

#endif
