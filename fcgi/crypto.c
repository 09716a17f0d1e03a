/*
 * crypto.c - OpenSSL's libcrypto, loaded when SSE_AUTH first needs it (see crypto.h).
 *
 * It does what the dynamic linker did at start-up when the binary linked the library,
 * later and for these functions only: dlopen by soname (the same search, so the same file),
 * then dlsym each function. A failure leaves the table NULL and the reason in load_error.
 */
#include "crypto.h"

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#if !defined(OPENSSL_VERSION_MAJOR) || OPENSSL_VERSION_MAJOR != 3
#error "crypto.c loads libcrypto.so.3: build against the OpenSSL 3 headers (libssl-dev)"
#endif

/* Each table type is the header's prototype: _Generic reads only the type of &name, so
 * this refers to nothing in libcrypto and needs no linking. */
#define SAME_TYPE(name, type) \
    _Static_assert(_Generic(&name, type *: 1, default: 0), #name " changed type")
SAME_TYPE(EVP_sha256, crypto_sha256_fn);
SAME_TYPE(EVP_MD_CTX_new, crypto_md_ctx_new_fn);
SAME_TYPE(EVP_MD_CTX_free, crypto_md_ctx_free_fn);
SAME_TYPE(EVP_DigestInit_ex, crypto_digest_init_fn);
SAME_TYPE(EVP_DigestUpdate, crypto_digest_update_fn);
SAME_TYPE(EVP_DigestFinal_ex, crypto_digest_final_fn);
SAME_TYPE(HMAC, crypto_hmac_fn);
SAME_TYPE(EVP_DecodeBlock, crypto_block_fn);
SAME_TYPE(EVP_EncodeBlock, crypto_block_fn);
SAME_TYPE(CRYPTO_memcmp, crypto_memcmp_fn);
SAME_TYPE(OPENSSL_thread_stop, crypto_thread_stop_fn);

/* dlsym's object pointer is copied into a function pointer of the same size (POSIX). */
_Static_assert(sizeof(void *) == sizeof(crypto_sha256_fn *), "function pointers differ");

static const struct {
    const char *name;
    size_t offset;
} SYMBOLS[] = {
    {"EVP_sha256", offsetof(struct crypto, sha256)},
    {"EVP_MD_CTX_new", offsetof(struct crypto, md_ctx_new)},
    {"EVP_MD_CTX_free", offsetof(struct crypto, md_ctx_free)},
    {"EVP_DigestInit_ex", offsetof(struct crypto, digest_init)},
    {"EVP_DigestUpdate", offsetof(struct crypto, digest_update)},
    {"EVP_DigestFinal_ex", offsetof(struct crypto, digest_final)},
    {"HMAC", offsetof(struct crypto, hmac)},
    {"EVP_DecodeBlock", offsetof(struct crypto, decode_block)},
    {"EVP_EncodeBlock", offsetof(struct crypto, encode_block)},
    {"CRYPTO_memcmp", offsetof(struct crypto, memcmp_const_time)},
    {"OPENSSL_thread_stop", offsetof(struct crypto, thread_stop)},
};
_Static_assert(sizeof(SYMBOLS) / sizeof(SYMBOLS[0])
                   == sizeof(struct crypto) / sizeof(crypto_sha256_fn *),
               "every member of struct crypto has its symbol");

bool
crypto_load_from(const char *soname, struct crypto *out, char *err, size_t err_size)
{
    void *handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        snprintf(err, err_size, "cannot load %s: %s", soname, dlerror());
        return false;
    }
    for (size_t i = 0; i < sizeof(SYMBOLS) / sizeof(SYMBOLS[0]); i++) {
        void *symbol = dlsym(handle, SYMBOLS[i].name);
        if (symbol == NULL) {
            snprintf(err, err_size, "%s has no %s", soname, SYMBOLS[i].name);
            dlclose(handle);
            return false;
        }
        memcpy((char *)out + SYMBOLS[i].offset, &symbol, sizeof(symbol));
    }
    return true;
}

/* Written once, under load_once; read-only afterwards. */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct crypto table;
static const struct crypto *_Atomic loaded;
static char load_error[512];

static void
load_process_table(void)
{
    if (crypto_load_from(CRYPTO_SONAME, &table, load_error, sizeof(load_error)))
        loaded = &table;
}

const struct crypto *
crypto_load(void)
{
    pthread_once(&load_once, load_process_table);
    return loaded;
}

const struct crypto *
crypto_loaded(void)
{
    return loaded;
}

const char *
crypto_error(void)
{
    return crypto_loaded() == NULL ? load_error : "";  /* fixed once crypto_load returned */
}
