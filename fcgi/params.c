/*
 * params.c - route matching, percent-decoding, query and Last-Event-ID parsing (pure).
 *
 * Routes are matched on the last segments of the raw path, so the mount point (lighttpd
 * prefix, a .fcgi script under cgi-bin, a RewriteRule) never matters (SPEC §3). Ids are
 * validated after decoding, so "%2F" or "%0A" can never smuggle a separator into a query or
 * a log line. Nothing here allocates, reads the environment or logs.
 */
#include "params.h"

#include <stddef.h>
#include <string.h>

/* One path segment: bytes [start, start + len) of the raw path. */
struct segment {
    const char *start;
    size_t len;
};

enum { ROUTE_SEGMENTS = 4 };  /* the longest route: api / sessions / {id} / events */

static bool
segment_is(const struct segment *s, const char *literal)
{
    return s->start != NULL && s->len == strlen(literal)
           && memcmp(s->start, literal, s->len) == 0;
}

/* Fills seg[0..ROUTE_SEGMENTS) with the path's last segments, seg[ROUTE_SEGMENTS-1] being the
 * last. Missing ones have start == NULL. */
static void
split_tail(const char *path, struct segment seg[ROUTE_SEGMENTS])
{
    memset(seg, 0, sizeof(struct segment) * ROUTE_SEGMENTS);
    const char *end = path + strlen(path);
    for (int i = ROUTE_SEGMENTS - 1; i >= 0; i--) {
        const char *slash = end;
        while (slash > path && slash[-1] != '/')
            slash--;
        if (slash == path)
            return;  /* no '/' before this segment: it is not a path segment */
        seg[i].start = slash;
        seg[i].len = (size_t)(end - slash);
        end = slash - 1;
    }
}

int
params_request_path(const char *request_uri, const char *script_name, const char *path_info,
                    char *out, size_t out_size)
{
    if (request_uri != NULL && request_uri[0] != '\0') {
        size_t len = strcspn(request_uri, "?#");
        if (len >= out_size)
            return PARAMS_NOT_FOUND;
        memcpy(out, request_uri, len);
        out[len] = '\0';
        return 0;
    }
    size_t script_len = script_name ? strlen(script_name) : 0;
    size_t info_len = path_info ? strlen(path_info) : 0;
    if (script_len + info_len >= out_size)
        return PARAMS_NOT_FOUND;
    if (script_len > 0)
        memcpy(out, script_name, script_len);
    if (info_len > 0)
        memcpy(out + script_len, path_info, info_len);
    out[script_len + info_len] = '\0';
    return 0;
}

bool
params_id_is_valid(const char *id, size_t len)
{
    if (len == 0 || len > PARAMS_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                  || c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long
params_percent_decode(const char *in, size_t in_len, char *out, size_t out_size,
                      bool plus_is_space)
{
    size_t n = 0;
    for (size_t i = 0; i < in_len; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= in_len)
                return -1;
            int hi = hex_value(in[i + 1]), lo = hi < 0 ? -1 : hex_value(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0' || n + 1 >= out_size)
            return -1;
        out[n++] = (char)c;
    }
    if (out_size == 0)
        return -1;
    out[n] = '\0';
    return (long)n;
}

static int
decode_id(const struct segment *s, struct route *out, const char **why)
{
    long n = params_percent_decode(s->start, s->len, out->id, sizeof(out->id), false);
    if (n < 0 || !params_id_is_valid(out->id, (size_t)n)) {
        *why = "malformed id: allowed are 1-128 bytes of A-Z a-z 0-9 . _ : -";
        return PARAMS_MALFORMED;
    }
    return 0;
}

/* True when the mount point, path[0..api_slash) (everything before the '/' that starts the
 * route's "api" segment), itself ends in an "api" segment: "/api/api/health". Web servers
 * merge slashes and decode escapes before they match an access rule, so "/api//api" and
 * "/%61pi/api" count as repeats too. */
static bool
is_repeated_api(const char *path, size_t api_slash)
{
    size_t end = api_slash;
    while (end > 0 && path[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    char segment[4];
    long n = params_percent_decode(path + start, end - start, segment, sizeof(segment), false);
    return n == 3 && memcmp(segment, "api", 3) == 0;
}

/* Which route the tail names, and the index of its "api" segment; -1 for none. */
static int
match_tail(const struct segment seg[ROUTE_SEGMENTS], enum route_kind *kind)
{
    if (segment_is(&seg[2], "api") && segment_is(&seg[3], "health")) {
        *kind = ROUTE_HEALTH;
        return 2;
    }
    if (segment_is(&seg[1], "api") && segment_is(&seg[2], "events")
        && segment_is(&seg[3], "global")) {
        *kind = ROUTE_GLOBAL_EVENTS;
        return 1;
    }
    if (!segment_is(&seg[0], "api") || !segment_is(&seg[3], "events"))
        return -1;
    if (segment_is(&seg[1], "sessions"))
        *kind = ROUTE_SESSION_EVENTS;
    else if (segment_is(&seg[1], "workers"))
        *kind = ROUTE_WORKER_EVENTS;
    else
        return -1;
    return 0;
}

int
params_match_route(const char *path, struct route *out, const char **why)
{
    struct segment seg[ROUTE_SEGMENTS];
    split_tail(path, seg);
    out->id[0] = '\0';
    *why = "no such route";
    int api = match_tail(seg, &out->kind);
    if (api < 0)
        return PARAMS_NOT_FOUND;
    if (is_repeated_api(path, (size_t)(seg[api].start - 1 - path))) {
        *why = "no such route: the path repeats /api";
        return PARAMS_NOT_FOUND;
    }
    if (out->kind == ROUTE_SESSION_EVENTS || out->kind == ROUTE_WORKER_EVENTS)
        return decode_id(&seg[2], out, why);
    return 0;
}

int
params_parse_event_id(const char *value, int64_t *id)
{
    if (value == NULL)
        return 1;
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return 1;
    int64_t n = 0;
    const char *digits = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (n > (INT64_MAX - d) / 10)
            return PARAMS_MALFORMED;
        n = n * 10 + d;
    }
    if (p == digits)
        return PARAMS_MALFORMED;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0')
        return PARAMS_MALFORMED;
    *id = n;
    return 0;
}

/* Splits a decoded list in place on ',' into list[], trimming spaces and dropping empty
 * entries. Returns the count, or -1 when there are more than PARAMS_LIST_MAX entries or an
 * entry is longer than PARAMS_NAME_MAX (no type or stream id can be: schema.sql). */
static int
split_list(char *value, const char **list)
{
    int count = 0;
    char *p = value;
    while (p != NULL) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            p[--len] = '\0';
        if (len > 0) {
            if (count == PARAMS_LIST_MAX || len > PARAMS_NAME_MAX)
                return -1;
            list[count++] = p;
        }
        p = comma ? comma + 1 : NULL;
    }
    return count;
}

static bool
watch_entry_is_valid(const char *entry)
{
    if (strcmp(entry, "worker") == 0)
        return true;
    if (strncmp(entry, "worker:", 7) != 0)
        return false;
    return params_id_is_valid(entry + 7, strlen(entry + 7));
}

static int
apply_types(struct query *q, char *value, const char **why)
{
    int n = split_list(value, q->types);
    if (n < 0) {
        *why = "types=: too many entries, or one longer than 128 bytes";
        return PARAMS_MALFORMED;
    }
    q->types_count = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(q->types[i], "*") == 0)
            q->has_types_all = true;
        else
            q->types[q->types_count++] = q->types[i];
    }
    return 0;
}

static int
apply_watch(struct query *q, char *value, const char **why)
{
    int n = split_list(value, q->watch);
    if (n < 0) {
        *why = "watch=: too many entries, or one longer than 128 bytes";
        return PARAMS_MALFORMED;
    }
    q->watch_count = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(q->watch[i], "*") == 0) {
            q->has_watch_all = true;
        } else if (watch_entry_is_valid(q->watch[i])) {
            q->watch[q->watch_count++] = q->watch[i];
        } else {
            *why = "watch= entries must be *, worker or worker:<id>";
            return PARAMS_MALFORMED;
        }
    }
    return 0;
}

static void
apply_last_event_id(struct query *q, const char *value)
{
    int rc = params_parse_event_id(value, &q->last_event_id);
    q->has_last_event_id = rc == 0;
    q->is_last_event_id_malformed = rc == PARAMS_MALFORMED;
}

/* Which of the known keys a decoded key is; bit flags remember the ones already seen. */
enum query_key { KEY_TYPES = 1, KEY_WATCH = 2, KEY_LAST_EVENT_ID = 4, KEY_NAMED = 8,
                 KEY_TOKEN = 16, KEY_SESSION_ID = 32 };

static int
key_of(const char *name)
{
    static const struct { const char *name; int key; } keys[] = {
        {"types", KEY_TYPES}, {"watch", KEY_WATCH},
        {"last_event_id", KEY_LAST_EVENT_ID}, {"named", KEY_NAMED}, {"token", KEY_TOKEN},
        {"session_id", KEY_SESSION_ID},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(name, keys[i].name) == 0)
            return keys[i].key;
    }
    return 0;
}

static int
apply_pair(struct query *q, int key, char *value, const char **why)
{
    switch (key) {
    case KEY_TYPES:
        return apply_types(q, value, why);
    case KEY_WATCH:
        return apply_watch(q, value, why);
    case KEY_LAST_EVENT_ID:
        apply_last_event_id(q, value);
        return 0;
    case KEY_NAMED:
        q->is_named = strcmp(value, "1") == 0 || strcmp(value, "true") == 0
                      || strcmp(value, "yes") == 0;
        return 0;
    case KEY_TOKEN:
        q->token = value;
        return 0;
    case KEY_SESSION_ID:
        q->session_id = value;
        return 0;
    }
    return 0;
}

/* Decodes one "key=value" pair; `used` is how much of q->storage is taken. */
static int
parse_pair(struct query *q, const char *pair, size_t len, size_t *used, int *seen,
           const char **why)
{
    const char *eq = memchr(pair, '=', len);
    size_t key_len = eq ? (size_t)(eq - pair) : len;
    char key[32];
    if (params_percent_decode(pair, key_len, key, sizeof(key), true) < 0)
        return 0;  /* longer than any known key, or undecodable: not ours, ignore */
    int k = key_of(key);
    if (k == 0 || (*seen & k))
        return 0;
    *seen |= k;
    char *value = q->storage + *used;
    const char *raw = eq ? eq + 1 : pair + len;
    long n = params_percent_decode(raw, (size_t)(pair + len - raw), value,
                                   sizeof(q->storage) - *used, true);
    if (n < 0) {
        *why = "malformed query: bad percent-encoding or NUL";
        return PARAMS_MALFORMED;
    }
    *used += (size_t)n + 1;
    return apply_pair(q, k, value, why);
}

int
params_parse_query(const char *query_string, struct query *q, const char **why)
{
    memset(q, 0, offsetof(struct query, storage));
    q->storage[0] = '\0';
    if (query_string == NULL)
        return 0;
    size_t total = strlen(query_string);
    if (total > PARAMS_QUERY_MAX) {
        *why = "query string too long";
        return PARAMS_MALFORMED;
    }
    size_t used = 0;
    int seen = 0;
    const char *p = query_string;
    while (*p != '\0') {
        size_t len = strcspn(p, "&");
        int rc = parse_pair(q, p, len, &used, &seen, why);
        if (rc < 0)
            return rc;
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}
