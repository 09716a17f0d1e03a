/*
 * auth.c - read tokens and HS256 JWTs (see auth.h).
 *
 * Every comparison of secret-derived bytes is CRYPTO_memcmp (constant time). A JWT is
 * refused unless its header says HS256: "none" and every other algorithm are malformed
 * here, so a token cannot choose how it is checked. libcrypto's functions come from
 * crypto_load (crypto.h), at the first check that needs them; without them every check
 * is AUTH_UNAVAILABLE.
 */
#include "auth.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"

enum { JWT_PART_MAX = 3072 };   /* decoded bytes of one JWT part we accept */

int
auth_parse_mode(const char *text, enum auth_mode *out)
{
    if (text == NULL || text[0] == '\0' || strcmp(text, "none") == 0)
        *out = AUTH_MODE_NONE;
    else if (strcmp(text, "token") == 0)
        *out = AUTH_MODE_TOKEN;
    else if (strcmp(text, "jwt") == 0)
        *out = AUTH_MODE_JWT;
    else
        return -1;
    return 0;
}

int
auth_status(enum auth_verdict v)
{
    return v == AUTH_ALLOW ? 200 : v == AUTH_DENIED ? 403 : v == AUTH_UNAVAILABLE ? 503 : 401;
}

const char *
auth_reason(enum auth_verdict v)
{
    switch (v) {
    case AUTH_ALLOW:
        return "allowed";
    case AUTH_NO_CREDENTIAL:
        return "credential required";
    case AUTH_BAD_CREDENTIAL:
        return "invalid credential";
    case AUTH_UNAVAILABLE:
        return "authentication unavailable: " CRYPTO_SONAME " cannot be loaded";
    default:
        return "access denied";
    }
}

/* Copies len bytes of text into out as a string; NULL when empty or too long. */
static const char *
copy_credential(const char *text, size_t len, char *out, size_t size)
{
    if (len == 0 || len >= size)
        return NULL;
    memcpy(out, text, len);
    out[len] = '\0';
    return out;
}

/* The value of cookie name in a Cookie header ("a=1; name=value; b=2"), or NULL. */
static const char *
cookie_value(const char *header, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    for (const char *p = header; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t pair_len = strcspn(p, ";");
        if (pair_len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            *len = pair_len - name_len - 1;
            return p + name_len + 1;
        }
        p += pair_len;
    }
    return NULL;
}

const char *
auth_credential(const char *query_token, const char *cookie_header, const char *authorization,
                char *out, size_t size)
{
    if (query_token != NULL && query_token[0] != '\0')
        return copy_credential(query_token, strlen(query_token), out, size);
    size_t len = 0;
    const char *cookie = cookie_value(cookie_header, "sse_token", &len);
    if (cookie != NULL && len > 0)
        return copy_credential(cookie, len, out, size);
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *token = authorization + 7;
        while (*token == ' ')
            token++;
        return copy_credential(token, strcspn(token, " "), out, size);
    }
    return NULL;
}

void
auth_release_thread(void)
{
    const struct crypto *c = crypto_loaded();  /* a process that never loaded it has none */
    if (c != NULL)
        c->thread_stop();
}

/* memset called through a volatile pointer, which the compiler cannot prove is memset and
 * so cannot drop as a dead store: OPENSSL_cleanse's own way (crypto/mem_clr.c), here so
 * that a secret is wiped also when libcrypto could not be loaded. */
static void *(*const volatile wipe_memset)(void *, int, size_t) = memset;

void
auth_wipe(void *p, size_t n)
{
    wipe_memset(p, 0, n);
}

void
auth_hash_token(const char *salt, const char *token, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    unsigned int digest_len = 0;
    const struct crypto *c = crypto_load();
    EVP_MD_CTX *ctx = c != NULL ? c->md_ctx_new() : NULL;
    bool is_ok = ctx != NULL && c->digest_init(ctx, c->sha256(), NULL)
                 && c->digest_update(ctx, salt, strlen(salt))
                 && c->digest_update(ctx, token, strlen(token))
                 && c->digest_final(ctx, digest, &digest_len);
    if (ctx != NULL)
        c->md_ctx_free(ctx);
    if (!is_ok)
        memset(digest, 0, sizeof(digest));  /* then it matches no stored hash */
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

enum auth_verdict
auth_check_token(const char *token, const struct stored_token *stored, size_t count)
{
    if (token == NULL)
        return AUTH_NO_CREDENTIAL;
    const struct crypto *c = crypto_load();
    if (c == NULL)
        return AUTH_UNAVAILABLE;
    static const struct stored_token DUMMY = {
        .salt = "00000000000000000000000000000000",
        .hash_hex = "0000000000000000000000000000000000000000000000000000000000000000",
    };
    bool is_match = false;
    for (size_t i = 0; i < (count > 0 ? count : 1); i++) {
        const struct stored_token *t = count > 0 ? &stored[i] : &DUMMY;
        char hash[65];
        auth_hash_token(t->salt, token, hash);
        /* | not ||: every stored token is compared, whichever matches */
        is_match |= count > 0 && strlen(t->hash_hex) == 64
                    && c->memcmp_const_time(hash, t->hash_hex, 64) == 0;
    }
    return is_match ? AUTH_ALLOW : AUTH_DENIED;
}

/* Writes base64url text[0..len) into std in standard base64 with its '=' padding and
 * returns that length, or -1 when text holds a character outside the url-safe alphabet
 * ('=' included: RFC 7515 §2 encodes without padding). */
static long
translate_base64url(const char *text, size_t len, char *std)
{
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return -1;
        std[i] = c;
    }
    size_t padding = (4 - len % 4) % 4;
    memset(std + len, '=', padding);
    return (long)(len + padding);
}

/* Decodes canonical base64url text[0..len) into out (size bytes). Returns the decoded
 * length, or -1 when it is not base64url, not canonical or does not fit. */
static long
base64url_decode(const struct crypto *c, const char *text, size_t len, unsigned char *out,
                 size_t size)
{
    if (len == 0 || len % 4 == 1 || len + 3 > JWT_PART_MAX * 4 / 3 || (len + 3) / 4 * 3 > size)
        return -1;
    char std[JWT_PART_MAX * 4 / 3 + 4];
    unsigned char again[sizeof(std)];
    long std_len = translate_base64url(text, len, std);
    int n = std_len < 0 ? -1 : c->decode_block(out, (const unsigned char *)std, (int)std_len);
    if (n < 0)
        return -1;
    n -= (int)(std_len - (long)len);    /* DecodeBlock counts padding as zero bytes */
    /* Canonical: the bytes encode back to the text. A last character whose unused low bits
     * are set decodes to the same bytes, and a token must have one spelling (issue 11). */
    if (c->encode_block(again, out, n) != (int)std_len
        || memcmp(again, std, (size_t)std_len) != 0)
        return -1;
    return n;
}

/* True when JSON text holds a NUL, raw or as the escape \u0000: cJSON's strings end at the
 * first NUL, so "HS256\u0000x" would read as "HS256" (issue 11). In JSON a backslash only
 * starts an escape, so skipping the escaped character finds each \u0000 and no "\\u0000". */
static bool
has_nul(const char *text, size_t len)
{
    if (memchr(text, '\0', len) != NULL)
        return true;
    for (size_t i = 0; i + 1 < len; i++) {
        if (text[i] != '\\')
            continue;
        if (text[i + 1] == 'u' && len - i >= 6 && memcmp(text + i + 2, "0000", 4) == 0)
            return true;
        i++;
    }
    return false;
}

/* True when object has two members of one name. cJSON keeps both and finds the first,
 * while other readers take the last: {"alg":"HS256","alg":"none"} must mean nothing.
 * Quadratic, but a part of JWT_PART_MAX bytes holds at most a few hundred members. */
static bool
has_duplicate_key(const cJSON *object)
{
    for (const cJSON *a = object->child; a != NULL; a = a->next) {
        for (const cJSON *b = a->next; b != NULL; b = b->next) {
            if (strcmp(a->string, b->string) == 0)
                return true;
        }
    }
    return false;
}

/* Decodes one JWT part as a JSON object with no NUL in it and no duplicate key among its
 * members (cJSON_Delete it), or NULL. */
static cJSON *
decode_json_part(const struct crypto *c, const char *text, size_t len)
{
    unsigned char decoded[JWT_PART_MAX + 1];
    long n = base64url_decode(c, text, len, decoded, JWT_PART_MAX);
    if (n <= 0 || has_nul((const char *)decoded, (size_t)n))
        return NULL;
    cJSON *json = cJSON_ParseWithLength((const char *)decoded, (size_t)n);
    if (!cJSON_IsObject(json) || has_duplicate_key(json)) {
        cJSON_Delete(json);
        return NULL;
    }
    return json;
}

/* A member by its exact name, or NULL (also when object is NULL). */
static const cJSON *
get_member(const cJSON *object, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(object, name);
}

/* True when item is absent or an array of strings only. (The loop also walks an object's
 * members, harmlessly: an object fails the last test.) */
static bool
is_string_array_or_absent(const cJSON *item)
{
    const cJSON *element;
    cJSON_ArrayForEach(element, item) {
        if (!cJSON_IsString(element))
            return false;
    }
    return item == NULL || cJSON_IsArray(item);
}

/* True when the "sse" claim is absent (it grants nothing) or an object without duplicate
 * keys whose "sessions" and "workers" are arrays of strings and "global" a boolean, each
 * optional. Any other shape is a malformed token, not a narrower grant (issue 11). */
static bool
is_sse_claim_well_formed(const cJSON *sse)
{
    if (sse == NULL)
        return true;
    if (!cJSON_IsObject(sse) || has_duplicate_key(sse))
        return false;
    const cJSON *global = get_member(sse, "global");
    return is_string_array_or_absent(get_member(sse, "sessions"))
           && is_string_array_or_absent(get_member(sse, "workers"))
           && (global == NULL || cJSON_IsBool(global));
}

/* True when array (of strings) holds id or "*". */
static bool
list_grants(const cJSON *array, const char *id)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, array) {
        if (strcmp(item->valuestring, "*") == 0 || strcmp(item->valuestring, id) == 0)
            return true;
    }
    return false;
}

/* True when a well-formed "sse" claim grants channel/id. */
static bool
claims_grant(const cJSON *sse, enum auth_channel channel, const char *id)
{
    switch (channel) {
    case AUTH_CHANNEL_SESSION:
        return list_grants(get_member(sse, "sessions"), id);
    case AUTH_CHANNEL_WORKER:
        return list_grants(get_member(sse, "workers"), id);
    default:
        return cJSON_IsTrue(get_member(sse, "global"));
    }
}

/* The verdict of a signed token's claims (NULL when they did not decode): malformed or
 * outside [nbf, exp) is AUTH_BAD_CREDENTIAL, else the "sse" claim allows or denies. */
static enum auth_verdict
check_claims(const cJSON *claims, int64_t now_s, enum auth_channel channel, const char *id)
{
    const cJSON *exp = get_member(claims, "exp"), *nbf = get_member(claims, "nbf");
    const cJSON *sse = get_member(claims, "sse");
    if (!cJSON_IsNumber(exp) || (nbf != NULL && !cJSON_IsNumber(nbf))
        || !is_sse_claim_well_formed(sse))
        return AUTH_BAD_CREDENTIAL;
    if (exp->valuedouble <= (double)now_s || (nbf != NULL && nbf->valuedouble > (double)now_s))
        return AUTH_BAD_CREDENTIAL;
    return claims_grant(sse, channel, id) ? AUTH_ALLOW : AUTH_DENIED;
}

static bool
is_signature_valid(const struct crypto *c, const char *jwt, size_t signed_len,
                   const char *signature, size_t sig_len, const unsigned char *secret,
                   size_t secret_len)
{
    unsigned char given[64], expected[EVP_MAX_MD_SIZE];
    unsigned int expected_len = 0;
    long n = base64url_decode(c, signature, sig_len, given, sizeof(given));
    if (c->hmac(c->sha256(), secret, (int)secret_len, (const unsigned char *)jwt, signed_len,
                expected, &expected_len) == NULL)
        return false;
    return n == (long)expected_len && c->memcmp_const_time(given, expected, expected_len) == 0;
}

/* The header must say HS256; anything else (notably "none") is refused. "typ", which
 * nothing here needs, must still be a string when present. */
static bool
is_header_hs256(const struct crypto *c, const char *text, size_t len)
{
    cJSON *header = decode_json_part(c, text, len);
    const cJSON *alg = get_member(header, "alg"), *typ = get_member(header, "typ");
    bool is_ok = cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0
                 && (typ == NULL || cJSON_IsString(typ));
    cJSON_Delete(header);
    return is_ok;
}

enum auth_verdict
auth_check_jwt(const char *jwt, const unsigned char *secret, size_t secret_len, int64_t now_s,
               enum auth_channel channel, const char *id)
{
    if (jwt == NULL)
        return AUTH_NO_CREDENTIAL;
    const struct crypto *c = crypto_load();
    if (c == NULL)
        return AUTH_UNAVAILABLE;
    const char *dot1 = strchr(jwt, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL || secret_len == 0)
        return AUTH_BAD_CREDENTIAL;
    if (!is_header_hs256(c, jwt, (size_t)(dot1 - jwt))
        || !is_signature_valid(c, jwt, (size_t)(dot2 - jwt), dot2 + 1, strlen(dot2 + 1),
                               secret, secret_len))
        return AUTH_BAD_CREDENTIAL;
    cJSON *claims = decode_json_part(c, dot1 + 1, (size_t)(dot2 - dot1 - 1));
    enum auth_verdict v = check_claims(claims, now_s, channel, id);
    cJSON_Delete(claims);
    return v;
}
