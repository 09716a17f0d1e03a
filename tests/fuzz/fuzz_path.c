/*
 * fuzz_path.c - libFuzzer target for path routing (fcgi/params.h, SPEC §3, §5).
 *
 * Feeds: the input split on NUL into REQUEST_URI, SCRIPT_NAME and PATH_INFO (a part the input
 * does not reach is NULL, as an absent FastCGI parameter is), each in an exact-size
 * allocation so ASan sees a read past its terminator.
 * Checks: params_request_path builds the documented path or refuses one that does not fit;
 * params_match_route answers 0, 404 or 400 as the path's tail says, and a matched id always
 * passes params_id_is_valid. A broken invariant aborts through CHECK (check.h).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/params.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { PATH_PARTS = 3 };  /* REQUEST_URI, SCRIPT_NAME, PATH_INFO */

static bool
ends_with(const char *s, const char *suffix)
{
    size_t len = strlen(s), suffix_len = strlen(suffix);
    return len >= suffix_len && memcmp(s + len - suffix_len, suffix, suffix_len) == 0;
}

/* Splits data on NUL into parts[]; parts past the input's last NUL stay NULL. */
static void
split_parts(const uint8_t *data, size_t size, char *parts[PATH_PARTS])
{
    size_t at = 0;
    for (int i = 0; i < PATH_PARTS && at <= size; i++) {
        const uint8_t *nul = memchr(data + at, '\0', size - at);
        size_t len = nul ? (size_t)(nul - (data + at)) : size - at;
        parts[i] = malloc(len + 1);
        CHECK(parts[i] != NULL);
        memcpy(parts[i], data + at, len);
        parts[i][len] = '\0';
        at += len + 1;  /* past the NUL; past size when there was none, so the rest are NULL */
    }
}

/* What params.h promises the path is: a non-empty REQUEST_URI up to '?' (params.c also
 * cuts at '#'), else SCRIPT_NAME then PATH_INFO. Returns a malloc'd string. */
static char *
expected_path(char *const parts[PATH_PARTS])
{
    const char *uri = parts[0], *script = parts[1], *info = parts[2];
    bool has_uri = uri != NULL && uri[0] != '\0';
    size_t uri_len = has_uri ? strcspn(uri, "?#") : 0;
    size_t script_len = script ? strlen(script) : 0, info_len = info ? strlen(info) : 0;
    size_t len = has_uri ? uri_len : script_len + info_len;
    char *path = malloc(len + 1);
    CHECK(path != NULL);
    if (has_uri) {
        memcpy(path, uri, uri_len);
    } else {
        memcpy(path, script ? script : "", script_len);
        memcpy(path + script_len, info ? info : "", info_len);
    }
    path[len] = '\0';
    return path;
}

/* Calls params_request_path with an out buffer of exactly out_size bytes. Returns the
 * malloc'd result, or NULL when it was refused; checks it against `expected` either way. */
static char *
request_path(char *const parts[PATH_PARTS], size_t out_size, const char *expected)
{
    char *out = malloc(out_size);
    CHECK(out != NULL);
    int rc = params_request_path(parts[0], parts[1], parts[2], out, out_size);
    if (strlen(expected) >= out_size) {
        CHECK(rc == PARAMS_NOT_FOUND);
        free(out);
        return NULL;
    }
    CHECK(rc == 0 && strcmp(out, expected) == 0);
    return out;
}

/* The raw id segment of ".../api/<collection>/<id>/events", or NULL when the path is not of
 * that shape. Points into path; *len is the segment's length. */
static const char *
raw_id_segment(const char *path, const char *collection, size_t *len)
{
    if (!ends_with(path, "/events"))
        return NULL;
    size_t end = strlen(path) - strlen("/events"), start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    size_t prefix_len = strlen(collection) + 6;  /* "/api/" + collection + "/" */
    if (start < prefix_len)
        return NULL;
    const char *prefix = path + start - prefix_len;
    if (memcmp(prefix, "/api/", 5) != 0 || memcmp(prefix + 5, collection, prefix_len - 6) != 0)
        return NULL;
    *len = end - start;
    return path + start;
}

/* A stream route's result agrees with the path: a plain (unescaped) valid id segment must
 * match and come back unchanged; a matched id is always valid. */
static void
check_stream_route(const char *path, const char *collection, enum route_kind kind, int rc,
                   const struct route *r)
{
    size_t seg_len = 0;
    const char *seg = raw_id_segment(path, collection, &seg_len);
    if (seg == NULL)
        return;
    if (params_id_is_valid(seg, seg_len)) {
        CHECK(rc == 0 && r->kind == kind && strlen(r->id) == seg_len
              && memcmp(r->id, seg, seg_len) == 0);
    }
    if (rc == 0 && r->kind == kind)
        CHECK(params_id_is_valid(r->id, strlen(r->id)));
    else
        CHECK(rc == PARAMS_MALFORMED);  /* the shape is right, so only the id can be wrong */
}

static void
check_route(const char *path)
{
    struct route r;
    memset(&r, 0xAA, sizeof(r));  /* no NUL, so an unterminated id cannot pass */
    const char *why = NULL;
    int rc = params_match_route(path, &r, &why);
    CHECK(rc == 0 || rc == PARAMS_NOT_FOUND || rc == PARAMS_MALFORMED);
    CHECK(rc != 0 || memchr(r.id, '\0', sizeof(r.id)) != NULL);
    if (rc != 0) {
        CHECK(why != NULL && why[0] != '\0');
    } else if (r.kind == ROUTE_SESSION_EVENTS || r.kind == ROUTE_WORKER_EVENTS) {
        CHECK(params_id_is_valid(r.id, strlen(r.id)));
    } else {
        CHECK(r.kind == ROUTE_HEALTH || r.kind == ROUTE_GLOBAL_EVENTS);
        CHECK(r.id[0] == '\0');
    }
    /* A mount point that repeats /api is refused whatever the route (params.c) */
    if (rc == PARAMS_NOT_FOUND && why != NULL && strstr(why, "repeats /api") != NULL)
        return;
    /* Health and global are fixed tails, tried before the stream routes. */
    if (ends_with(path, "/api/health")) {
        CHECK(rc == 0 && r.kind == ROUTE_HEALTH);
        return;
    }
    if (ends_with(path, "/api/events/global")) {
        CHECK(rc == 0 && r.kind == ROUTE_GLOBAL_EVENTS);
        return;
    }
    check_stream_route(path, "sessions", ROUTE_SESSION_EVENTS, rc, &r);
    check_stream_route(path, "workers", ROUTE_WORKER_EVENTS, rc, &r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *parts[PATH_PARTS] = {NULL, NULL, NULL};
    split_parts(data, size, parts);
    char *expected = expected_path(parts);
    /* stream.c's buffer, then a small one so the "does not fit" branch is reached too. */
    char *path = request_path(parts, PARAMS_PATH_MAX, expected);
    free(request_path(parts, 1 + size % 32, expected));
    if (path != NULL)
        check_route(path);
    free(path);
    free(expected);
    for (int i = 0; i < PATH_PARTS; i++)
        free(parts[i]);
    return 0;
}
