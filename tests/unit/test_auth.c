/*
 * test_auth.c - read tokens and HS256 JWTs (fcgi/auth.h), hostile input first.
 *
 * Covers: SSE_AUTH values; where a credential is taken from and in which order; token
 * hashes checked against a known SHA-256 vector; a wrong token and an unknown channel
 * refused alike; a table of JWTs - good, expired, not yet valid, wrong secret, alg none,
 * alg HS512, tampered claims, bad base64, too many parts, claims that grant another
 * session, "*", workers, global - each with its verdict.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "fcgi/auth.h"
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

enum { NOW = 1800000000 };

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
    {NULL, "{\"exp\":1800000060,\"sse\":{\"global\":1}}", NULL, AUTH_CHANNEL_GLOBAL, "",
     AUTH_DENIED},
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
    ck_assert_msg(v == t->verdict, "case %d (%s): verdict %d, expected %d", _i, t->claims, v,
                  t->verdict);
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
    tcase_add_loop_test(tc, test_jwt_table, 0, COUNT(JWTS));
    tcase_add_test(tc, test_jwt_tampering);
    suite_add_tcase(s, tc);
    return s;
}
