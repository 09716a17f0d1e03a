/*
 * jwt.h - HS256 JWTs and read-token hashes for the tests, built independently of fcgi/auth.c (OpenSSL HMAC and
 * base64, then the URL alphabet), so that a bug in the responder's decoder is not
 * mirrored by the test's encoder.
 */
#ifndef SSE_TEST_JWT_H
#define SSE_TEST_JWT_H

#include <stddef.h>

/* header_json.claims_json signed with secret (HMAC-SHA256) into out. Returns out; fails
 * the test when it does not fit. */
char *jwt_make(const char *secret, const char *header_json, const char *claims_json,
               char *out, size_t size);

/* signing_input (the base64url "header.claims", any bytes) followed by "." and its
 * HMAC-SHA256 with secret, into out: a JWT whose parts the caller encoded. Returns out;
 * fails the test when it does not fit. */
char *jwt_sign(const char *secret, const char *signing_input, char *out, size_t size);

/* jwt_make with the header {"alg":"HS256","typ":"JWT"}. */
char *jwt_hs256(const char *secret, const char *claims_json, char *out, size_t size);

/* Lower-case hex SHA-256 of salt || token into out (65 bytes): what a producer stores in
 * read_tokens, computed here as a producer would, not by fcgi/auth.c. */
void token_hash_hex(const char *salt, const char *token, char out[65]);

#endif
