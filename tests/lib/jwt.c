/*
 * jwt.c - HS256 JWTs for the tests (see jwt.h).
 */
#include "tests/lib/jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "tests/lib/diag.h"

/* base64url without padding of bytes[0..len) appended at out[*used]. */
static void
append_base64url(const unsigned char *bytes, size_t len, char *out, size_t size, size_t *used)
{
    DIAG_CHECK(*used + (len + 2) / 3 * 4 + 1 < size, "JWT too long for its buffer");
    int n = EVP_EncodeBlock((unsigned char *)out + *used, bytes, (int)len);
    for (int i = 0; i < n; i++) {
        char *c = out + *used + i;
        *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    }
    while (n > 0 && out[*used + n - 1] == '=')
        n--;
    *used += (size_t)n;
    out[*used] = '\0';
}

char *
jwt_sign(const char *secret, const char *signing_input, char *out, size_t size)
{
    size_t used = strlen(signing_input);
    DIAG_CHECK(used + 1 < size, "JWT too long for its buffer");
    memmove(out, signing_input, used);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    DIAG_CHECK(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)out,
                    used, mac, &mac_len) != NULL, "HMAC failed");
    out[used++] = '.';
    append_base64url(mac, mac_len, out, size, &used);
    return out;
}

char *
jwt_make(const char *secret, const char *header_json, const char *claims_json, char *out,
         size_t size)
{
    size_t used = 0;
    append_base64url((const unsigned char *)header_json, strlen(header_json), out, size, &used);
    out[used++] = '.';
    append_base64url((const unsigned char *)claims_json, strlen(claims_json), out, size, &used);
    return jwt_sign(secret, out, out, size);
}

char *
jwt_hs256(const char *secret, const char *claims_json, char *out, size_t size)
{
    return jwt_make(secret, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims_json, out, size);
}

void
token_hash_hex(const char *salt, const char *token, char out[65])
{
    char joined[1024];
    int len = snprintf(joined, sizeof(joined), "%s%s", salt, token);
    DIAG_CHECK(len > 0 && (size_t)len < sizeof(joined), "salt and token too long");
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    DIAG_CHECK(EVP_Digest(joined, (size_t)len, digest, &digest_len, EVP_sha256(), NULL) == 1,
               "SHA-256 failed");
    for (unsigned int i = 0; i < digest_len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}
