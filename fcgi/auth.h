/*
 * auth.h - who may read a stream (SSE_AUTH): per-channel read tokens or signed JWTs (pure).
 *
 * Off by default. With SSE_AUTH=token the producer stores, per channel, a random salt and
 * the SHA-256 of salt || token (table read_tokens; never the token itself); a request shows
 * the token and sse-fcgi compares hashes in constant time. With SSE_AUTH=jwt the app's
 * backend signs an HS256 JWT whose "sse" claim lists what it may read and whose "exp" ends
 * it, and sse-fcgi checks signature and claims without touching the database (the idea of
 * Mercure's subscribe claims). Crypto is OpenSSL's libcrypto, loaded at the first check
 * that needs it (crypto.h), JSON is cJSON; nothing here does I/O or reads a clock (the
 * caller passes the time). Thread-safe.
 */
#ifndef SSE_AUTH_H
#define SSE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store/event.h"

enum auth_mode {
    AUTH_MODE_NONE = 0,
    AUTH_MODE_TOKEN,
    AUTH_MODE_JWT,
};

/* Parses SSE_AUTH ("none", "token", "jwt"; NULL or "" is none). Returns 0 or -1. */
int auth_parse_mode(const char *text, enum auth_mode *out);

enum auth_verdict {
    AUTH_ALLOW = 0,
    AUTH_NO_CREDENTIAL,         /* 401: nothing shown */
    AUTH_BAD_CREDENTIAL,        /* 401: a JWT that is malformed, badly signed or expired */
    AUTH_DENIED,                /* 403: a token that is not this channel's, a JWT without it */
    AUTH_UNAVAILABLE,           /* 503: libcrypto cannot be loaded, so nothing is checked */
};

/* The HTTP status of a verdict (200 for AUTH_ALLOW) and its reason, for the log and body. */
int auth_status(enum auth_verdict v);
const char *auth_reason(enum auth_verdict v);

enum { AUTH_CREDENTIAL_MAX = 4096 };

/* The credential of a request, by precedence: the `token=` query value (EventSource cannot
 * set headers), the `sse_token` cookie, an `Authorization: Bearer` header. Copies it into
 * out (size bytes) and returns out, or NULL when none is shown or it does not fit. */
const char *auth_credential(const char *query_token, const char *cookie_header,
                            const char *authorization, char *out, size_t size);

/* Checks token against the channel's stored tokens (count may be 0: an unknown channel).
 * Hashes and compares against every stored token, and against a dummy one when there are
 * none, so an unknown channel costs what a wrong token costs. AUTH_UNAVAILABLE for a token
 * shown when libcrypto cannot be loaded (as auth_check_jwt). */
enum auth_verdict auth_check_token(const char *token, const struct stored_token *stored,
                                   size_t count);

/* What a request wants to read, for the JWT's "sse" claim. */
enum auth_channel {
    AUTH_CHANNEL_SESSION,       /* "sessions": [ids or "*"] */
    AUTH_CHANNEL_WORKER,        /* "workers": [ids or "*"] */
    AUTH_CHANNEL_GLOBAL,        /* "global": true */
};

/* Checks an HS256 JWT: three canonical base64url parts (no '=', unused low bits zero),
 * header alg "HS256", HMAC-SHA256 with secret (compared in constant time), numeric "exp"
 * after now_s (and "nbf", when present, not after it), and an "sse" claim object that
 * grants channel/id. Header and claims are JSON objects with no NUL (\u0000) in any string
 * and no duplicate key, also inside "sse", whose "sessions" and "workers" are arrays of
 * strings and "global" a boolean; any of that broken is AUTH_BAD_CREDENTIAL. A missing
 * "sse", or one that does not list channel/id, is AUTH_DENIED. A token shown while
 * libcrypto cannot be loaded is AUTH_UNAVAILABLE. */
enum auth_verdict auth_check_jwt(const char *jwt, const unsigned char *secret,
                                 size_t secret_len, int64_t now_s, enum auth_channel channel,
                                 const char *id);

/* Frees the calling thread's OpenSSL state (cheap when it has none; nothing at all in a
 * process that never loaded libcrypto). */
void auth_release_thread(void);

/* Overwrites n bytes at p with zeros in a way the compiler keeps (a secret's copy). */
void auth_wipe(void *p, size_t n);

/* Lower-case hex SHA-256 of salt || token into out (65 bytes): what a producer stores.
 * All zeros, which match no stored hash, when libcrypto cannot be loaded. */
void auth_hash_token(const char *salt, const char *token, char out[65]);

#endif
