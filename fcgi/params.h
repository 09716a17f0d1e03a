/*
 * params.h - the request surface, parsed without I/O (pure): route matching on the tail of
 * the path, percent-decoding, the query string, id validation and Last-Event-ID.
 *
 * Every function here is thread-safe and allocation-free; results live in caller-provided
 * structs. `why` strings are static and short enough for a JSON error body.
 */
#ifndef SSE_PARAMS_H
#define SSE_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    PARAMS_ID_MAX = 128,            /* session/worker id bytes (SPEC §5) */
    PARAMS_PATH_MAX = 4096,         /* request path bytes we look at */
    PARAMS_QUERY_MAX = 4096,        /* query string bytes, before decoding */
    PARAMS_LIST_MAX = 64,           /* entries in types= or watch= */
    PARAMS_NAME_MAX = 128,          /* bytes of one types=/watch= entry */
};

enum route_kind {
    ROUTE_SESSION_EVENTS,           /* GET /api/sessions/{id}/events */
    ROUTE_WORKER_EVENTS,            /* GET /api/workers/{id}/events */
    ROUTE_GLOBAL_EVENTS,            /* GET /api/events/global */
    ROUTE_HEALTH,                   /* GET /api/health */
};

struct route {
    enum route_kind kind;
    char id[PARAMS_ID_MAX + 1];     /* decoded, validated id; "" for global and health */
};

enum params_error {
    PARAMS_NOT_FOUND = -1,          /* no route: answer 404 */
    PARAMS_MALFORMED = -2,          /* bad id or query: answer 400 */
};

/* Builds the path to route on: REQUEST_URI up to '?', or, when that is NULL or empty,
 * SCRIPT_NAME followed by PATH_INFO (either may be NULL). Writes a NUL-terminated string
 * into out. Returns 0, or PARAMS_NOT_FOUND when the result would not fit in out_size. */
int params_request_path(const char *request_uri, const char *script_name,
                        const char *path_info, char *out, size_t out_size);

/* Matches the raw (still percent-encoded) path on its tail, so any mount point works:
 * ".../api/sessions/{id}/events", ".../api/workers/{id}/events", ".../api/events/global",
 * ".../api/health". Returns 0 and fills *out; PARAMS_NOT_FOUND for an unknown route, and for
 * a mount point that itself ends in an "api" segment ("/api/api/health", also as "/api//api"
 * or "/%61pi/api"); PARAMS_MALFORMED when the id segment is empty, badly encoded or not
 * [A-Za-z0-9._:-]{1,128} after decoding. *why is set on failure. */
int params_match_route(const char *path, struct route *out, const char **why);

/* True when id[0..len) is 1..128 bytes of [A-Za-z0-9._:-] (SPEC §5). */
bool params_id_is_valid(const char *id, size_t len);

/* Percent-decodes in[0..in_len) into out (out_size bytes, NUL-terminated on success).
 * With plus_is_space, '+' becomes ' ' (query strings). Returns the decoded length, or -1 for
 * a bad escape, a decoded NUL byte, or an output that does not fit. */
long params_percent_decode(const char *in, size_t in_len, char *out, size_t out_size,
                           bool plus_is_space);

/* The stream routes' query parameters, decoded. Strings point into `storage`. */
struct query {
    const char *types[PARAMS_LIST_MAX];     /* types= entries, empty entries dropped */
    size_t types_count;
    bool has_types_all;                     /* types=* : every type, known or not */
    const char *watch[PARAMS_LIST_MAX];     /* watch= entries: "worker" or "worker:<id>" */
    size_t watch_count;
    bool has_watch_all;                     /* watch=* */
    bool has_last_event_id;                 /* last_event_id= present and well-formed */
    bool is_last_event_id_malformed;        /* present but not a decimal id: log, ignore */
    int64_t last_event_id;
    bool is_named;                          /* named=1: add an `event: <type>` line */
    const char *token;                      /* token= (SSE_AUTH), decoded; NULL if absent */
    const char *session_id;                 /* session_id= (/api/health), decoded; or NULL */
    char storage[PARAMS_QUERY_MAX + 2 * PARAMS_LIST_MAX];
};

/* Parses a query string (without '?'; NULL or "" is an empty query) into *q. Unknown keys
 * are ignored; for a repeated key the first wins. Returns 0, or PARAMS_MALFORMED (too long,
 * bad escape, NUL, too many entries, a watch entry that is not `*`, `worker` or
 * `worker:<id>`) with *why set. */
int params_parse_query(const char *query_string, struct query *q, const char **why);

/* Parses a Last-Event-ID value: optional spaces/tabs around a decimal number in
 * 0..INT64_MAX. Returns 0 and sets *id; 1 when value is NULL or blank (absent);
 * PARAMS_MALFORMED otherwise. */
int params_parse_event_id(const char *value, int64_t *id);

#endif
