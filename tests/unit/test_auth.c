/*
 * test_auth.c - read tokens and HS256 JWTs (fcgi/auth.h), hostile input first.
 *
 * Covers: SSE_AUTH values; where a credential is taken from and in which order; token
 * hashes checked against a known SHA-256 vector; a wrong token and an unknown channel
 * refused alike; a table of JWTs - good, expired, not yet valid, wrong secret, alg none,
 * alg HS512, tampered claims, bad base64, too many parts, claims that grant another
 * session, "*", workers, global - each with its verdict. Issue 11: a part spelt another
 * way that decodes to the same bytes (unused low bits, '=' padding, the standard
 * alphabet), a NUL in a string, duplicate keys and claims of the wrong type are refused.
 * Issue 12: libcrypto is loaded at the first check (fcgi/crypto.h); a library that cannot
 * be loaded, or lacks a function, is reported, and its verdict is 503.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "fcgi/auth.h"
#include "fcgi/crypto.h"
#include "tests/lib/jwt.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char SECRET[] = "a-test-secret-of-32-bytes-length";

START_TEST(test_mode_parsing)
{
    enum auth_mode m = AUTH_MODE_JWT;
    ck_assert_int_eq(auth_parse_mode(NULL, &m), 0);
    ck_assert_int_eq(m, AUTH_MODE_NONE);
    ck_assert_int_eq(auth_parse_mode("token", &m), 0);
    ck_assert_int_eq(m, AUTH_MODE_TOKEN);
    ck_assert_int_eq(auth_parse_mode("jwt", &m), 0);
    ck_assert_int_eq(m, AUTH_MODE_JWT);
    ck_assert_int_eq(auth_parse_mode("JWT", &m), -1);
    ck_assert_int_eq(auth_parse_mode("basic", &m), -1);
}
END_TEST

START_TEST(test_credential_sources)
{
    char out[64];
    const char *c = auth_credential("q", "sse_token=c", "Bearer h", out, sizeof(out));
    ck_assert_str_eq(c, "q");  /* the query wins */
    c = auth_credential(NULL, "a=1; sse_token=c; b=2", "Bearer h", out, sizeof(out));
    ck_assert_str_eq(c, "c");
    c = auth_credential("", "xsse_token=c", "bearer  h", out, sizeof(out));
    ck_assert_str_eq(c, "h");  /* not a cookie of that name; scheme case-insensitive */
    ck_assert_ptr_null(auth_credential(NULL, NULL, "Basic abc", out, sizeof(out)));
    ck_assert_ptr_null(auth_credential(NULL, "sse_token=", NULL, out, sizeof(out)));
    char huge[128];
    memset(huge, 'x', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    ck_assert_ptr_null(auth_credential(huge, NULL, NULL, out, sizeof(out)));  /* too long */
}
END_TEST

START_TEST(test_token_hash_vector)
{
    char hash[65];
    auth_hash_token("", "abc", hash);  /* FIPS 180-2 test vector for SHA-256("abc") */
    ck_assert_str_eq(hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(test_token_checks)
{
    struct stored_token stored[2] = {{.salt = "0123456789abcdef"}, {.salt = "fedcba9876543210"}};
    auth_hash_token(stored[0].salt, "old-token", stored[0].hash_hex);
    auth_hash_token(stored[1].salt, "new-token", stored[1].hash_hex);
    ck_assert_int_eq(auth_check_token("old-token", stored, 2), AUTH_ALLOW);
    ck_assert_int_eq(auth_check_token("new-token", stored, 2), AUTH_ALLOW);
    ck_assert_int_eq(auth_check_token("new-token", stored, 1), AUTH_DENIED);
    ck_assert_int_eq(auth_check_token("wrong", stored, 2), AUTH_DENIED);
    ck_assert_int_eq(auth_check_token("old-token", NULL, 0), AUTH_DENIED);  /* no channel */
    ck_assert_int_eq(auth_check_token(NULL, stored, 2), AUTH_NO_CREDENTIAL);
    struct stored_token bad = {.salt = "0123456789abcdef", .hash_hex = "short"};
    ck_assert_int_eq(auth_check_token("x", &bad, 1), AUTH_DENIED);
    ck_assert_int_eq(auth_status(AUTH_DENIED), 403);
    ck_assert_int_eq(auth_status(AUTH_NO_CREDENTIAL), 401);
    ck_assert_int_eq(auth_status(AUTH_BAD_CREDENTIAL), 401);
}
END_TEST

START_TEST(test_libcrypto_loading)
{
    struct crypto c;
    char err[256];
    ck_assert(!crypto_load_from("libcrypto-missing.so.3", &c, err, sizeof(err)));
    ck_assert_ptr_nonnull(strstr(err, "cannot load libcrypto-missing.so.3: "));
    ck_assert(!crypto_load_from("libc.so.6", &c, err, sizeof(err)));
    ck_assert_str_eq(err, "libc.so.6 has no EVP_sha256");
    ck_assert(crypto_load_from(CRYPTO_SONAME, &c, err, sizeof(err)));
    unsigned char digest[32];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = c.md_ctx_new();
    ck_assert(c.digest_init(ctx, c.sha256(), NULL) && c.digest_update(ctx, "abc", 3)
              && c.digest_final(ctx, digest, &len));
    c.md_ctx_free(ctx);
    ck_assert_int_eq(len, 32);
    ck_assert_int_eq(digest[0], 0xba);  /* SHA-256("abc"), as test_token_hash_vector */
    ck_assert_ptr_nonnull(crypto_load());
    ck_assert_ptr_eq(crypto_loaded(), crypto_load());
    ck_assert_str_eq(crypto_error(), "");
    ck_assert_int_eq(auth_status(AUTH_UNAVAILABLE), 503);
    ck_assert_str_eq(auth_reason(AUTH_UNAVAILABLE),
                     "authentication unavailable: libcrypto.so.3 cannot be loaded");
}
END_TEST

enum { NOW = 1800000000 };

/* Shorthands for the JWT tests. */
#define EXP "\"exp\":1800000060"
#define S1 "{" EXP ",\"sse\":{\"sessions\":[\"s1\"]}}"
#define SESSION AUTH_CHANNEL_SESSION
#define WORKER AUTH_CHANNEL_WORKER
#define GLOBAL AUTH_CHANNEL_GLOBAL
#define BAD AUTH_BAD_CREDENTIAL

static const struct jwt_case {
    const char *header;         /* NULL: HS256 */
    const char *claims;
    const char *secret;         /* NULL: SECRET */
    enum auth_channel channel;
    const char *id;
    enum auth_verdict verdict;
} JWTS[] = {
    {NULL, "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", NULL, AUTH_CHANNEL_SESSION,
     "s1", AUTH_ALLOW},
    {NULL, "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", NULL, AUTH_CHANNEL_SESSION,
     "s2", AUTH_DENIED},
    {NULL, "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"*\"]}}", NULL, AUTH_CHANNEL_SESSION,
     "any", AUTH_ALLOW},
    {NULL, "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", NULL, AUTH_CHANNEL_WORKER,
     "s1", AUTH_DENIED},
    {NULL, "{\"exp\":1800000060,\"sse\":{\"workers\":[\"w1\"]}}", NULL, AUTH_CHANNEL_WORKER,
     "w1", AUTH_ALLOW},
    {NULL, "{\"exp\":1800000060,\"sse\":{\"global\":true}}", NULL, AUTH_CHANNEL_GLOBAL, "",
     AUTH_ALLOW},
    {NULL, "{\"exp\":1800000060}", NULL, AUTH_CHANNEL_SESSION, "s1", AUTH_DENIED},
    {NULL, "{\"exp\":1800000000,\"sse\":{\"sessions\":[\"s1\"]}}", NULL, AUTH_CHANNEL_SESSION,
     "s1", AUTH_BAD_CREDENTIAL},  /* expired: exp must be after now */
    {NULL, "{\"sse\":{\"sessions\":[\"s1\"]}}", NULL, AUTH_CHANNEL_SESSION, "s1",
     AUTH_BAD_CREDENTIAL},  /* no exp */
    {NULL, "{\"exp\":\"1900000000\",\"sse\":{\"sessions\":[\"s1\"]}}", NULL,
     AUTH_CHANNEL_SESSION, "s1", AUTH_BAD_CREDENTIAL},
    {NULL, "{\"exp\":1800000060,\"nbf\":1800000030,\"sse\":{\"sessions\":[\"s1\"]}}", NULL,
     AUTH_CHANNEL_SESSION, "s1", AUTH_BAD_CREDENTIAL},  /* not yet valid */
    {NULL, "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", "another-secret",
     AUTH_CHANNEL_SESSION, "s1", AUTH_BAD_CREDENTIAL},
    {"{\"alg\":\"none\"}", "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", NULL,
     AUTH_CHANNEL_SESSION, "s1", AUTH_BAD_CREDENTIAL},
    {"{\"alg\":\"HS512\"}", "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", NULL,
     AUTH_CHANNEL_SESSION, "s1", AUTH_BAD_CREDENTIAL},
    {"[1]", "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", NULL,
     AUTH_CHANNEL_SESSION, "s1", AUTH_BAD_CREDENTIAL},
    {NULL, "not json", NULL, AUTH_CHANNEL_SESSION, "s1", AUTH_BAD_CREDENTIAL},
    /* Issue 11: a NUL (\u0000) cut cJSON's strings short, in a value or in a key. */
    {"{\"alg\":\"HS256\\u0000x\"}", S1, NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[\"s1\\u0000x\"]}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\\u0000x\":[\"s1\"]}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[\"s1\"]},\"note\":\"\\\\u0000\"}", NULL, SESSION,
     "s1", AUTH_ALLOW},  /* an escaped backslash, then "u0000": no NUL */
    /* Issue 11: duplicate keys resolved to the first, at every level that is read. */
    {"{\"alg\":\"HS256\",\"alg\":\"none\"}", S1, NULL, SESSION, "s1", BAD},
    {"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"typ\":\"JWT\"}", S1, NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP "," EXP ",\"sse\":{\"sessions\":[\"s1\"]}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"nbf\":1,\"nbf\":1,\"sse\":{\"sessions\":[\"s1\"]}}", NULL, SESSION,
     "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[\"s1\"]},\"sse\":{}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"jti\":1,\"jti\":2,\"sse\":{\"sessions\":[\"s1\"]}}", NULL, SESSION,
     "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[\"s1\"],\"sessions\":[]}}", NULL, SESSION, "s1",
     BAD},
    {NULL, "{" EXP ",\"sse\":{\"workers\":[\"w1\"],\"workers\":[]}}", NULL, WORKER, "w1",
     BAD},
    {NULL, "{" EXP ",\"sse\":{\"global\":true,\"global\":false}}", NULL, GLOBAL, "", BAD},
    /* Issue 11: sessions and workers are arrays of strings, global a boolean, typ a string. */
    {"{\"alg\":\"HS256\"}", S1, NULL, SESSION, "s1", AUTH_ALLOW},  /* typ is optional */
    {"{\"alg\":\"HS256\",\"typ\":1}", S1, NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":{\"a\":\"s1\"}}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":\"s1\"}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[\"s1\",1]}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[[\"s1\"]]}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"workers\":{\"a\":\"w1\"}}}", NULL, WORKER, "w1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[\"s1\"],\"workers\":7}}", NULL, SESSION, "s1",
     BAD},
    {NULL, "{" EXP ",\"sse\":{\"global\":1}}", NULL, GLOBAL, "", BAD},
    {NULL, "{" EXP ",\"sse\":{\"global\":\"true\"}}", NULL, GLOBAL, "", BAD},
    {NULL, "{" EXP ",\"sse\":[\"s1\"]}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":null}", NULL, SESSION, "s1", BAD},
    {NULL, "{\"exp\":true,\"sse\":{\"sessions\":[\"s1\"]}}", NULL, SESSION, "s1", BAD},
    {NULL, "{" EXP ",\"sse\":{\"global\":false}}", NULL, GLOBAL, "", AUTH_DENIED},
    {NULL, "{" EXP ",\"sse\":{\"sessions\":[]}}", NULL, SESSION, "s1", AUTH_DENIED},
    {NULL, "{" EXP ",\"sse\":{}}", NULL, SESSION, "s1", AUTH_DENIED},
};

START_TEST(test_jwt_table)
{
    const struct jwt_case *t = &JWTS[_i];
    char jwt[2048];
    jwt_make(t->secret ? t->secret : SECRET,
             t->header ? t->header : "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", t->claims, jwt,
             sizeof(jwt));
    enum auth_verdict v = auth_check_jwt(jwt, (const unsigned char *)SECRET, strlen(SECRET),
                                         NOW, t->channel, t->id);
    ck_assert_msg(v == t->verdict, "case %d (%s %s): verdict %d, expected %d", _i,
                  t->header ? t->header : "HS256", t->claims, v, t->verdict);
}
END_TEST

START_TEST(test_jwt_tampering)
{
    char jwt[2048], other[2048];
    jwt_hs256(SECRET, "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s1\"]}}", jwt, sizeof(jwt));
    jwt_hs256(SECRET, "{\"exp\":1800000060,\"sse\":{\"sessions\":[\"s2\"]}}", other,
              sizeof(other));
    const unsigned char *key = (const unsigned char *)SECRET;
    /* s2's claims with s1's signature */
    char spliced[4096];
    const char *sig = strrchr(jwt, '.');
    snprintf(spliced, sizeof(spliced), "%.*s%s", (int)(strrchr(other, '.') - other), other, sig);
    ck_assert_int_eq(auth_check_jwt(spliced, key, strlen(SECRET), NOW, AUTH_CHANNEL_SESSION,
                                    "s2"), AUTH_BAD_CREDENTIAL);
    static const char *const MALFORMED[] = {
        "", ".", "..", "a.b", "a.b.c.d", "!!!.b.c", "eyJhbGciOiJIUzI1NiJ9..", "a.b.c",
    };
    for (int i = 0; i < COUNT(MALFORMED); i++)
        ck_assert_int_eq(auth_check_jwt(MALFORMED[i], key, strlen(SECRET), NOW,
                                        AUTH_CHANNEL_SESSION, "s1"), AUTH_BAD_CREDENTIAL);
    ck_assert_int_eq(auth_check_jwt(NULL, key, strlen(SECRET), NOW, AUTH_CHANNEL_SESSION,
                                    "s1"), AUTH_NO_CREDENTIAL);
    ck_assert_int_eq(auth_check_jwt(jwt, key, 0, NOW, AUTH_CHANNEL_SESSION, "s1"),
                     AUTH_BAD_CREDENTIAL);  /* no secret configured: nothing verifies */
    jwt[strlen(jwt) - 1] ^= 1;  /* one bit of the signature */
    ck_assert_int_eq(auth_check_jwt(jwt, key, strlen(SECRET), NOW, AUTH_CHANNEL_SESSION,
                                    "s1"), AUTH_BAD_CREDENTIAL);
}
END_TEST

/* How test_jwt_base64url spoils one part of a good JWT. */
enum part_edit {
    EDIT_NONE,                  /* the control: still allowed */
    EDIT_LOW_BITS,              /* set an unused low bit of the last character */
    EDIT_PAD,                   /* append the '=' padding of standard base64 */
    EDIT_STD_ALPHABET,          /* '-' and '_' as standard base64's '+' and '/' */
    EDIT_APPEND,                /* append text */
    EDIT_PREPEND,               /* insert text before the part */
};

static const struct base64url_case {
    int part;                   /* 0 header, 1 claims, 2 signature */
    enum part_edit edit;
    const char *text;           /* for EDIT_APPEND and EDIT_PREPEND */
} PART_EDITS[] = {
    {0, EDIT_NONE, NULL}, {1, EDIT_NONE, NULL},
    {0, EDIT_LOW_BITS, NULL}, {1, EDIT_LOW_BITS, NULL}, {2, EDIT_LOW_BITS, NULL},
    {0, EDIT_PAD, NULL}, {1, EDIT_PAD, NULL}, {2, EDIT_PAD, NULL},
    {2, EDIT_STD_ALPHABET, NULL},
    {0, EDIT_APPEND, " "}, {1, EDIT_APPEND, "\n"}, {2, EDIT_APPEND, "\t"},
    {0, EDIT_PREPEND, " "}, {1, EDIT_PREPEND, "+"}, {2, EDIT_PREPEND, "%"},
    {1, EDIT_APPEND, "\x80"}, {2, EDIT_APPEND, "="},
};

/* The url-safe alphabet of RFC 4648 §5, written out here rather than taken from auth.c. */
static const char BASE64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Inserts text at jwt[at] (jwt has room: size bytes). */
static void
insert_text(char *jwt, size_t size, size_t at, const char *text)
{
    size_t len = strlen(jwt), n = strlen(text);
    ck_assert_uint_lt(len + n, size);
    memmove(jwt + at + n, jwt + at, len - at + 1);
    memcpy(jwt + at, text, n);
}

/* Applies edit to part [start, end) of jwt. */
static void
edit_part(char *jwt, size_t size, size_t start, size_t end, enum part_edit edit,
          const char *text)
{
    size_t len = end - start;
    if (edit == EDIT_LOW_BITS) {
        ck_assert_uint_ne(len % 4, 0);  /* the last character carries unused bits */
        const char *at = strchr(BASE64URL, jwt[end - 1]);
        ck_assert_ptr_nonnull(at);
        ck_assert_int_eq((at - BASE64URL) & 1, 0);
        jwt[end - 1] = BASE64URL[(at - BASE64URL) | 1];
    } else if (edit == EDIT_PAD) {
        ck_assert_uint_ne(len % 4, 0);
        insert_text(jwt, size, end, len % 4 == 2 ? "==" : "=");
    } else if (edit == EDIT_STD_ALPHABET) {
        ck_assert_ptr_nonnull(strpbrk(jwt + start, "-_"));
        for (size_t i = start; i < end; i++)
            jwt[i] = jwt[i] == '-' ? '+' : jwt[i] == '_' ? '/' : jwt[i];
    } else if (edit != EDIT_NONE) {
        insert_text(jwt, size, edit == EDIT_APPEND ? end : start, text);
    }
}

/* Issue 11: every part is canonical base64url: the unused low bits of its last character
 * are zero, no '=' padding, no character outside the alphabet. A part a lenient decoder
 * reads as the same bytes must still be refused; header and claims are signed again. */
START_TEST(test_jwt_base64url)
{
    const struct base64url_case *t = &PART_EDITS[_i];
    char jwt[2048];
    /* lengths 38, 59 and 43: each part's last character carries unused bits */
    jwt_make(SECRET, "{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", S1, jwt, sizeof(jwt));
    size_t dot1 = (size_t)(strchr(jwt, '.') - jwt), dot2 = (size_t)(strrchr(jwt, '.') - jwt);
    size_t starts[3] = {0, dot1 + 1, dot2 + 1}, ends[3] = {dot1, dot2, strlen(jwt)};
    edit_part(jwt, sizeof(jwt), starts[t->part], ends[t->part], t->edit, t->text);
    if (t->part < 2) {
        *strrchr(jwt, '.') = '\0';
        jwt_sign(SECRET, jwt, jwt, sizeof(jwt));
    }
    enum auth_verdict v = auth_check_jwt(jwt, (const unsigned char *)SECRET, strlen(SECRET),
                                         NOW, AUTH_CHANNEL_SESSION, "s1");
    enum auth_verdict expected = t->edit == EDIT_NONE ? AUTH_ALLOW : AUTH_BAD_CREDENTIAL;
    ck_assert_msg(v == expected, "case %d (%s): verdict %d, expected %d", _i, jwt, v, expected);
}
END_TEST

/* A raw NUL byte inside the header's alg, which jwt_make cannot write: cJSON takes it into
 * the string, which then reads as "HS256" (found by fuzz_auth). */
START_TEST(test_jwt_raw_nul)
{
    static const char HEADER_PART[] = "eyJhbGciOiJIUzI1NgB4In0";  /* {"alg":"HS256\0x"} */
    char jwt[2048], input[2048];
    jwt_hs256(SECRET, S1, jwt, sizeof(jwt));
    const char *dot1 = strchr(jwt, '.'), *dot2 = strrchr(jwt, '.');
    snprintf(input, sizeof(input), "%s%.*s", HEADER_PART, (int)(dot2 - dot1), dot1);
    jwt_sign(SECRET, input, jwt, sizeof(jwt));
    ck_assert_int_eq(auth_check_jwt(jwt, (const unsigned char *)SECRET, strlen(SECRET), NOW,
                                    AUTH_CHANNEL_SESSION, "s1"), AUTH_BAD_CREDENTIAL);
}
END_TEST

Suite *suite_auth(void);

Suite *
suite_auth(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_add_test(tc, test_mode_parsing);
    tcase_add_test(tc, test_credential_sources);
    tcase_add_test(tc, test_token_hash_vector);
    tcase_add_test(tc, test_token_checks);
    tcase_add_test(tc, test_libcrypto_loading);
    tcase_add_loop_test(tc, test_jwt_table, 0, COUNT(JWTS));
    tcase_add_test(tc, test_jwt_tampering);
    tcase_add_loop_test(tc, test_jwt_base64url, 0, COUNT(PART_EDITS));
    tcase_add_test(tc, test_jwt_raw_nul);
    suite_add_tcase(s, tc);
    return s;
}
