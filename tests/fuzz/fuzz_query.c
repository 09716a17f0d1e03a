/*
 * fuzz_query.c - libFuzzer target for query parsing and percent-decoding (fcgi/params.h).
 *
 * Feeds: the input as a NUL-terminated QUERY_STRING to params_parse_query, and unterminated
 * to params_percent_decode with a buffer that fits and a small one.
 * Checks: a parsed query has at most PARAMS_LIST_MAX entries per list, each NUL-terminated
 * inside q->storage, 1..PARAMS_NAME_MAX bytes, trimmed, valid for watch=; a refusal has a
 * reason. Decoding fails exactly on a bad escape or NUL, stays in its buffer, and its output
 * escaped again decodes the same. A broken invariant aborts through CHECK (check.h).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/params.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when p points at a NUL-terminated string of 1..PARAMS_NAME_MAX bytes inside storage
 * that a split list may hold: trimmed and without ','. */
static bool
is_list_entry(const struct query *q, const char *p)
{
    const char *lo = q->storage, *hi = q->storage + sizeof(q->storage);
    if (p < lo || p >= hi)
        return false;
    const char *nul = memchr(p, '\0', (size_t)(hi - p));
    if (nul == NULL)
        return false;
    size_t len = (size_t)(nul - p);
    return len >= 1 && len <= PARAMS_NAME_MAX && p[0] != ' ' && p[len - 1] != ' '
           && memchr(p, ',', len) == NULL;
}

static bool
is_watch_entry(const char *p)
{
    if (strcmp(p, "worker") == 0)
        return true;
    return strncmp(p, "worker:", 7) == 0 && params_id_is_valid(p + 7, strlen(p + 7));
}

static void
check_query(const char *query_string)
{
    struct query q;
    memset(&q, 0xAA, sizeof(q));  /* nothing may rely on zeroed storage */
    const char *why = NULL;
    int rc = params_parse_query(query_string, &q, &why);
    if (rc != 0) {
        CHECK(rc == PARAMS_MALFORMED && why != NULL && why[0] != '\0');
        return;
    }
    CHECK(strlen(query_string) <= PARAMS_QUERY_MAX);
    CHECK(q.types_count <= PARAMS_LIST_MAX && q.watch_count <= PARAMS_LIST_MAX);
    for (size_t i = 0; i < q.types_count; i++)
        CHECK(is_list_entry(&q, q.types[i]) && strcmp(q.types[i], "*") != 0);
    for (size_t i = 0; i < q.watch_count; i++)
        CHECK(is_list_entry(&q, q.watch[i]) && is_watch_entry(q.watch[i]));
    if (q.token != NULL) {
        const char *hi = q.storage + sizeof(q.storage);
        CHECK(q.token >= q.storage && q.token < hi
              && memchr(q.token, '\0', (size_t)(hi - q.token)) != NULL);
    }
    CHECK(!(q.has_last_event_id && q.is_last_event_id_malformed));
    CHECK(!q.has_last_event_id || q.last_event_id >= 0);
}

static int
hex_digit(unsigned char c)
{
    const char *digits = "0123456789abcdef0123456789ABCDEF";
    const char *at = c != '\0' ? strchr(digits, c) : NULL;
    return at == NULL ? -1 : (int)((at - digits) % 16);
}

/* Independent of params.c: decoding must fail when an escape is cut short or not hex, or
 * when a raw or decoded byte is NUL. Sets *escapes to the number of %XX escapes. */
static bool
must_decode_fail(const char *in, size_t len, size_t *escapes)
{
    *escapes = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\0')
            return true;
        if (in[i] != '%')
            continue;
        if (len - i < 3)
            return true;
        int hi = hex_digit((unsigned char)in[i + 1]), lo = hex_digit((unsigned char)in[i + 2]);
        if (hi < 0 || lo < 0 || hi * 16 + lo == 0)
            return true;
        i += 2;
        (*escapes)++;
    }
    return false;
}

/* Decodes in[0..len) into exactly out_size bytes; checks the result's bounds. Returns the
 * decoded copy (malloc'd) or NULL when decoding failed. */
static char *
decode(const char *in, size_t len, size_t out_size, bool plus_is_space, long *n)
{
    char *out = malloc(out_size);
    CHECK(out != NULL);
    *n = params_percent_decode(in, len, out, out_size, plus_is_space);
    if (*n < 0) {
        CHECK(*n == -1);
        free(out);
        return NULL;
    }
    CHECK((size_t)*n <= len && (size_t)*n < out_size && out[*n] == '\0');
    CHECK(memchr(out, '\0', (size_t)*n) == NULL);
    return out;
}

static void
check_decode(const uint8_t *data, size_t size)
{
    bool plus_is_space = size > 0 && (data[0] & 1);
    char *in = malloc(size > 0 ? size : 1);  /* exact and unterminated: ASan sees overreads */
    CHECK(in != NULL);
    memcpy(in, data, size);
    size_t escapes;
    bool must_fail = must_decode_fail(in, size, &escapes);
    long n;
    char *out = decode(in, size, size + 1, plus_is_space, &n);
    CHECK((out == NULL) == must_fail);
    if (out != NULL) {
        CHECK((size_t)n == size - 2 * escapes);
        if (plus_is_space && memchr(in, '%', size) == NULL)
            CHECK(strchr(out, '+') == NULL);  /* a '+' then only comes from %2B */
        /* Every byte escaped again decodes to the same bytes. */
        char *again = malloc(3 * (size_t)n + 1);
        CHECK(again != NULL);
        for (long i = 0; i < n; i++)
            snprintf(again + 3 * i, 4, "%%%02X", (unsigned char)out[i]);
        long m;
        char *back = decode(again, 3 * (size_t)n, (size_t)n + 1, false, &m);
        CHECK(back != NULL && m == n && memcmp(back, out, (size_t)n) == 0);
        free(back);
        free(again);
    }
    /* A small buffer: the same bytes when they fit, else a refusal, never an overflow. */
    size_t small = 1 + size % 16;
    long s;
    char *cut = decode(in, size, small, plus_is_space, &s);
    if (out != NULL && (size_t)n < small)
        CHECK(cut != NULL && s == n && memcmp(cut, out, (size_t)n) == 0);
    else
        CHECK(cut == NULL);
    free(cut);
    free(out);
    free(in);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *query_string = malloc(size + 1);
    CHECK(query_string != NULL);
    memcpy(query_string, data, size);
    query_string[size] = '\0';
    check_query(query_string);
    free(query_string);
    check_decode(data, size);
    return 0;
}
