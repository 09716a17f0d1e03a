/*
 * fuzz_auth.c - libFuzzer target for the auth parser (fcgi/auth.h, issue 11).
 *
 * Feeds: byte 0 picks the mode, the channel and the id (layout above read_input); the rest
 * is a credential's three sources for auth_credential, or one JWT as a client shows it, or
 * a header and claims that are encoded and signed here with SECRET, so that auth_check_jwt
 * parses the claims past its signature check. Each part gets an exact-size allocation, so
 * ASan sees a read past its end.
 * Checks: auth_credential takes the query token first, else a cookie or Bearer value that
 * the input holds, and the room it is given changes only whether it fits; a verdict is
 * allow, deny or a bad credential, allow only for three base64url parts that no other
 * secret opens, whose claims (read here with cJSON's own lookups) grant the channel and
 * keep auth.h's shapes; a signed token spelt another way (unused low bits set, '=' after
 * it) is refused. A broken invariant aborts through CHECK (check.h).
 */
#include <cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fcgi/auth.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    MODE_CREDENTIAL,                    /* parts: query token, Cookie, Authorization */
    MODE_JWT,                           /* the rest is one token */
    MODE_SIGNED,                        /* parts: header and claims JSON, signed here */
    MODE_SIGNED_CLAIMS,                 /* the rest is claims JSON under DEFAULT_HEADER */
    PARTS_MAX = 3,
    PART_SEPARATOR = 0x1F,              /* ASCII unit separator: JSON parts may hold NUL */
    NOW_S = 1800000000,
    SIGNATURE_CHARS = 43,               /* base64url of 32 bytes: 2 low bits unused */
};

static const char SECRET[] = "fuzz-secret-0123456789abcdef0123";
static const char OTHER_SECRET[] = "fuzz-secret-0123456789abcdef0124";
static const char DEFAULT_HEADER[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char BASE64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const enum auth_channel CHANNELS[4] = {
    AUTH_CHANNEL_SESSION, AUTH_CHANNEL_WORKER, AUTH_CHANNEL_GLOBAL, AUTH_CHANNEL_SESSION,
};
static const char *const IDS[4] = {"s1", "w1", "worker:w1", "*"};

/* One part of the input: NULL when the input does not reach it, else len bytes and a NUL. */
struct part {
    char *text;
    size_t len;
};

struct input {
    unsigned mode;                      /* MODE_* */
    enum auth_channel channel;
    const char *id;
    size_t small_size;                  /* bytes of auth_credential's small out buffer */
    struct part parts[PARTS_MAX];
};

/* An exact-size, NUL-terminated copy of bytes[0..len). */
static struct part
copy_part(const uint8_t *bytes, size_t len)
{
    struct part p = {malloc(len + 1), len};
    CHECK(p.text != NULL);
    memcpy(p.text, bytes, len);
    p.text[len] = '\0';
    return p;
}

/* Input layout: byte 0 bits 0-1 the mode, bits 2-3 the channel (CHANNELS), bits 4-5 the id
 * (IDS). The rest splits on PART_SEPARATOR into at most `count` parts; parts the input does
 * not reach stay NULL, and the last one takes the rest, separators and all. */
static void
read_input(const uint8_t *data, size_t size, struct input *in)
{
    memset(in, 0, sizeof(*in));
    in->mode = data[0] & 3;
    in->channel = CHANNELS[(data[0] >> 2) & 3];
    in->id = IDS[(data[0] >> 4) & 3];
    in->small_size = 1 + size % 48;
    int count = in->mode == MODE_CREDENTIAL ? 3 : in->mode == MODE_SIGNED ? 2 : 1;
    const uint8_t *at = data + 1, *end = data + size;
    for (int i = 0; i < count; i++) {
        const uint8_t *sep = i + 1 < count ? memchr(at, PART_SEPARATOR, (size_t)(end - at))
                                           : NULL;
        in->parts[i] = copy_part(at, sep ? (size_t)(sep - at) : (size_t)(end - at));
        if (sep == NULL)
            break;
        at = sep + 1;
    }
}

/* True when got is a value the cookie header or the Bearer header holds, as auth.h says
 * they are read: "sse_token=<got>" ending at ';' or the end, or "Bearer" then got. */
static bool
is_from_cookie_or_bearer(const char *got, const char *cookie, const char *authorization)
{
    size_t len = strlen(got);
    for (const char *p = cookie; p != NULL && (p = strstr(p, "sse_token=")) != NULL; p++) {
        if (strncmp(p + 10, got, len) == 0 && (p[10 + len] == ';' || p[10 + len] == '\0'))
            return true;
    }
    return authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0
           && strchr(got, ' ') == NULL && strstr(authorization + 7, got) != NULL;
}

/* auth_credential into AUTH_CREDENTIAL_MAX bytes and into small_size bytes: the source does
 * not depend on the room, so the small buffer gets the same credential or, when it does
 * not fit, none. */
static void
check_credential(const struct input *in)
{
    const char *query = in->parts[0].text, *cookie = in->parts[1].text;
    const char *authorization = in->parts[2].text;
    char big[AUTH_CREDENTIAL_MAX];
    char *small = malloc(in->small_size);
    CHECK(small != NULL);
    const char *got = auth_credential(query, cookie, authorization, big, sizeof(big));
    const char *got_small = auth_credential(query, cookie, authorization, small,
                                            in->small_size);
    CHECK(got == NULL || got == big);
    CHECK(got_small == NULL || got_small == small);
    size_t len = got ? strlen(got) : 0;
    CHECK(got == NULL || (len > 0 && len < sizeof(big)));
    CHECK(len > 0 && len < in->small_size ? got_small != NULL && strcmp(got_small, got) == 0
                                          : got_small == NULL);
    if (query != NULL && query[0] != '\0')
        CHECK(strlen(query) < sizeof(big) ? got != NULL && strcmp(got, query) == 0
                                          : got == NULL);
    else if (got != NULL)
        CHECK(is_from_cookie_or_bearer(got, cookie, authorization));
    free(small);
}

/* True when every member of object is the one its name finds: no key repeats. */
static bool
has_unique_keys(const cJSON *object)
{
    for (const cJSON *m = object ? object->child : NULL; m != NULL; m = m->next) {
        if (cJSON_GetObjectItemCaseSensitive(object, m->string) != m)
            return false;
    }
    return true;
}

/* Whether the claims grant channel/id, read by index with cJSON's lookups (not auth.c's
 * walk). Only called on claims auth.c took as well formed, so every list must hold
 * strings and "global" must be a boolean. */
static bool
is_granted_here(const cJSON *claims, enum auth_channel channel, const char *id)
{
    const cJSON *sse = cJSON_GetObjectItemCaseSensitive(claims, "sse");
    CHECK(sse == NULL || (cJSON_IsObject(sse) && has_unique_keys(sse)));
    const cJSON *global = cJSON_GetObjectItemCaseSensitive(sse, "global");
    CHECK(global == NULL || cJSON_IsBool(global));
    if (channel == AUTH_CHANNEL_GLOBAL)
        return cJSON_IsTrue(global);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(
        sse, channel == AUTH_CHANNEL_SESSION ? "sessions" : "workers");
    CHECK(list == NULL || cJSON_IsArray(list));
    bool is_granted = false;
    for (int i = 0; i < cJSON_GetArraySize(list); i++) {
        const cJSON *item = cJSON_GetArrayItem(list, i);
        CHECK(cJSON_IsString(item));
        is_granted |= strcmp(item->valuestring, "*") == 0 || strcmp(item->valuestring, id) == 0;
    }
    return is_granted;
}

/* A signed token that got ALLOW or DENIED: its header and claims are objects without NUL
 * bytes or repeated keys, alg HS256, inside [nbf, exp), and the grant agrees. */
static void
check_accepted_parts(const struct part *header, const struct part *claims,
                     const struct input *in, enum auth_verdict v)
{
    CHECK(memchr(header->text, '\0', header->len) == NULL);
    CHECK(memchr(claims->text, '\0', claims->len) == NULL);
    cJSON *h = cJSON_ParseWithLength(header->text, header->len);
    cJSON *c = cJSON_ParseWithLength(claims->text, claims->len);
    CHECK(cJSON_IsObject(h) && has_unique_keys(h) && cJSON_IsObject(c) && has_unique_keys(c));
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    CHECK(cJSON_IsString(alg) && strcmp(alg->valuestring, "HS256") == 0);
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "exp");
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(c, "nbf");
    CHECK(cJSON_IsNumber(exp) && exp->valuedouble > NOW_S);
    CHECK(nbf == NULL || (cJSON_IsNumber(nbf) && nbf->valuedouble <= NOW_S));
    CHECK(is_granted_here(c, in->channel, in->id) == (v == AUTH_ALLOW));
    cJSON_Delete(h);
    cJSON_Delete(c);
}

/* True when jwt is three non-empty parts of the base64url alphabet. */
static bool
is_three_base64url_parts(const char *jwt)
{
    const char *dot1 = strchr(jwt, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    return dot2 != NULL && dot1 > jwt && dot2 > dot1 + 1 && dot2[1] != '\0'
           && strchr(dot2 + 1, '.') == NULL
           && strspn(jwt, BASE64URL) == (size_t)(dot1 - jwt)
           && strspn(dot1 + 1, BASE64URL) == (size_t)(dot2 - dot1 - 1)
           && strspn(dot2 + 1, BASE64URL) == strlen(dot2 + 1);
}

static enum auth_verdict
judge(const char *jwt, const char *secret, const struct input *in)
{
    return auth_check_jwt(jwt, (const unsigned char *)secret, strlen(secret), NOW_S,
                          in->channel, in->id);
}

/* auth_check_jwt on any token: never "no credential" for a token shown, and an allowed
 * token has the JWT shape and is refused under another secret. */
static enum auth_verdict
check_jwt(const char *jwt, const struct input *in)
{
    enum auth_verdict v = judge(jwt, SECRET, in);
    CHECK(v == AUTH_ALLOW || v == AUTH_DENIED || v == AUTH_BAD_CREDENTIAL);
    CHECK(auth_status(v) == (v == AUTH_ALLOW ? 200 : v == AUTH_DENIED ? 403 : 401));
    if (v == AUTH_ALLOW) {
        CHECK(is_three_base64url_parts(jwt));
        CHECK(judge(jwt, OTHER_SECRET, in) == AUTH_BAD_CREDENTIAL);
    }
    return v;
}

/* Encodes bytes[0..len) as base64url without padding at out (room for 4 * ceil(len / 3)
 * + 1 bytes). Returns the length written. */
static size_t
encode_base64url(const void *bytes, size_t len, char *out)
{
    CHECK(EVP_EncodeBlock((unsigned char *)out, bytes, (int)len) >= 0);
    size_t kept = strcspn(out, "=");
    out[kept] = '\0';
    for (char *c = strpbrk(out, "+/"); c != NULL; c = strpbrk(c + 1, "+/"))
        *c = *c == '+' ? '-' : '_';
    return kept;
}

/* header.claims.signature with SECRET, as an app's backend would sign it, in an exact-size
 * allocation (free it). */
static char *
sign_token(const struct part *header, const struct part *claims)
{
    size_t room = (header->len + 2) / 3 * 4 + (claims->len + 2) / 3 * 4 + 64;
    char *jwt = malloc(room);
    CHECK(jwt != NULL);
    size_t used = encode_base64url(header->text, header->len, jwt);
    jwt[used++] = '.';
    used += encode_base64url(claims->text, claims->len, jwt + used);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)jwt, used,
               mac, &mac_len) != NULL);
    jwt[used++] = '.';
    CHECK(encode_base64url(mac, mac_len, jwt + used) == SIGNATURE_CHARS);
    char *exact = strdup(jwt);
    CHECK(exact != NULL);
    free(jwt);
    return exact;
}

/* The signed token spelt otherwise, decoding to the same bytes for a lenient decoder: the
 * last character with an unused low bit set, and with a '=' after it. Both are refused. */
static void
check_respellings(const char *jwt, const struct input *in)
{
    size_t len = strlen(jwt);
    char *respelt = malloc(len + 2);
    CHECK(respelt != NULL);
    memcpy(respelt, jwt, len + 1);
    const char *at = strchr(BASE64URL, jwt[len - 1]);
    CHECK(at != NULL && (at - BASE64URL) % 2 == 0);     /* canonical: low bits zero */
    respelt[len - 1] = BASE64URL[(at - BASE64URL) + 1];
    CHECK(judge(respelt, SECRET, in) == AUTH_BAD_CREDENTIAL);
    memcpy(respelt, jwt, len);
    memcpy(respelt + len, "=", 2);
    CHECK(judge(respelt, SECRET, in) == AUTH_BAD_CREDENTIAL);
    free(respelt);
}

static void
check_signed(const struct part *header, const struct part *claims, const struct input *in)
{
    char *jwt = sign_token(header, claims);
    enum auth_verdict v = check_jwt(jwt, in);
    check_respellings(jwt, in);
    if (v != AUTH_BAD_CREDENTIAL)
        check_accepted_parts(header, claims, in, v);
    free(jwt);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct input in;
    read_input(data, size, &in);
    struct part fixed_header = copy_part((const uint8_t *)DEFAULT_HEADER, strlen(DEFAULT_HEADER));
    struct part no_part = copy_part((const uint8_t *)"", 0);
    switch (in.mode) {
    case MODE_CREDENTIAL:
        check_credential(&in);
        break;
    case MODE_JWT:
        check_jwt(in.parts[0].text, &in);
        break;
    case MODE_SIGNED:
        check_signed(&in.parts[0], in.parts[1].text ? &in.parts[1] : &no_part, &in);
        break;
    default:
        check_signed(&fixed_header, &in.parts[0], &in);
        break;
    }
    for (int i = 0; i < PARTS_MAX; i++)
        free(in.parts[i].text);
    free(fixed_header.text);
    free(no_part.text);
    return 0;
}
