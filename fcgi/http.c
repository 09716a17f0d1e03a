/*
 * http.c - response heads and small JSON bodies (pure).
 *
 * Heads are CGI headers ("Status: 404 Not Found") with CRLF line ends; the web server makes
 * the HTTP status line from them. Bodies are built with cJSON. No I/O.
 */
#include "http.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int status;
    const char *text;
} STATUS_TEXTS[] = {
    {200, "OK"}, {204, "No Content"}, {400, "Bad Request"}, {401, "Unauthorized"},
    {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
    {500, "Internal Server Error"}, {503, "Service Unavailable"},
};

const char *
http_status_text(int status)
{
    for (size_t i = 0; i < sizeof(STATUS_TEXTS) / sizeof(STATUS_TEXTS[0]); i++) {
        if (STATUS_TEXTS[i].status == status)
            return STATUS_TEXTS[i].text;
    }
    return "Unknown";
}

const char *
http_cors_origin(const char *allowlist, const char *request_origin)
{
    if (allowlist == NULL || allowlist[0] == '\0')
        return NULL;
    if (strcmp(allowlist, "*") == 0)
        return "*";
    if (request_origin == NULL || request_origin[0] == '\0')
        return NULL;
    size_t origin_len = strlen(request_origin);
    for (const char *p = allowlist; *p != '\0';) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == origin_len && len > 0 && memcmp(p, request_origin, len) == 0)
            return request_origin;
        p += len;
    }
    return NULL;
}

/* "Status: ..." plus the CORS headers, when any. Origins with CR/LF never get here:
 * http_cors_origin returns only allowlist entries or "*", and the allowlist is ours. */
static int
append_status(struct buf *b, int status, const char *cors_origin)
{
    if (buf_appendf(b, "Status: %d %s\r\n", status, http_status_text(status)) < 0)
        return -1;
    if (cors_origin == NULL)
        return 0;
    if (strcmp(cors_origin, "*") == 0)
        return buf_append_str(b, "Access-Control-Allow-Origin: *\r\n");
    return buf_appendf(b, "Access-Control-Allow-Origin: %s\r\n"
                       "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n",
                       cors_origin);
}

int
http_append_stream_head(struct buf *b, const char *cors_origin)
{
    size_t start = b->len;
    if (append_status(b, 200, cors_origin) < 0
        || buf_append_str(b, "Content-Type: text/event-stream; charset=utf-8\r\n"
                             "Cache-Control: no-cache\r\n"
                             "X-Accel-Buffering: no\r\n\r\n") < 0) {
        buf_truncate(b, start);
        return -1;
    }
    return 0;
}

int
http_append_no_content(struct buf *b, const char *cors_origin)
{
    size_t start = b->len;
    if (append_status(b, 204, cors_origin) < 0 || buf_append_str(b, "\r\n") < 0) {
        buf_truncate(b, start);
        return -1;
    }
    return 0;
}

/* Appends a JSON head and body (printed from object, which stays the caller's). */
static int
append_json(struct buf *b, const cJSON *object, bool with_body)
{
    char *json = cJSON_PrintUnformatted(object);
    if (json == NULL)
        return -1;
    int rc = buf_appendf(b, "Content-Type: application/json\r\nCache-Control: no-store\r\n"
                         "Content-Length: %zu\r\n\r\n", strlen(json) + 1);
    if (rc == 0 && with_body)
        rc = buf_appendf(b, "%s\n", json);
    cJSON_free(json);
    return rc;
}

static int
append_error_headers(struct buf *b, int status, int retry_after_s)
{
    if (status == 405 && buf_append_str(b, "Allow: GET, HEAD\r\n") < 0)
        return -1;
    /* RFC 9110: a 401 names the scheme (SSE_AUTH also takes ?token= and a cookie) */
    if (status == 401 && buf_append_str(b, "WWW-Authenticate: Bearer\r\n") < 0)
        return -1;
    if (retry_after_s > 0 && buf_appendf(b, "Retry-After: %d\r\n", retry_after_s) < 0)
        return -1;
    return 0;
}

int
http_append_error(struct buf *b, int status, const char *message, int retry_after_s,
                  const char *cors_origin, bool with_body)
{
    size_t start = b->len;
    cJSON *body = cJSON_CreateObject();
    int rc = body != NULL && cJSON_AddStringToObject(body, "error", message) != NULL ? 0 : -1;
    if (rc == 0)
        rc = append_status(b, status, cors_origin);
    if (rc == 0)
        rc = append_error_headers(b, status, retry_after_s);
    if (rc == 0)
        rc = append_json(b, body, with_body);
    cJSON_Delete(body);
    if (rc < 0)
        buf_truncate(b, start);
    return rc;
}

/* An exact integer member (a double would lose digits above 2^53). */
static bool
add_integer(cJSON *object, const char *key, int64_t value)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%" PRId64, value);
    return cJSON_AddRawToObject(object, key, digits) != NULL;
}

/* "relay": where this node's copy of the shared log stands. behind counts positions
 * (events and session changes) the relay had not copied when it last read the log. */
static bool
add_relay(cJSON *o, const struct health_relay *r)
{
    cJSON *relay = cJSON_AddObjectToObject(o, "relay");
    int64_t behind = r->upstream_newest > r->position ? r->upstream_newest - r->position : 0;
    return relay != NULL && cJSON_AddStringToObject(relay, "state", r->state)
           && add_integer(relay, "position", r->position)
           && add_integer(relay, "upstream_newest", r->upstream_newest)
           && add_integer(relay, "behind", behind)
           && add_integer(relay, "seconds_in_state", r->seconds_in_state)
           && (r->copied_at != NULL ? cJSON_AddStringToObject(relay, "copied_at", r->copied_at)
                                    : cJSON_AddNullToObject(relay, "copied_at"))
           && cJSON_AddStringToObject(relay, "detail", r->detail);
}

int
http_append_health(struct buf *b, const struct health_facts *facts, const char *cors_origin,
                   bool with_body)
{
    size_t start = b->len;
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "status", "ok")
              && cJSON_AddStringToObject(o, "database", "reachable")
              && cJSON_AddNumberToObject(o, "schema_version", facts->schema_version)
              && cJSON_AddStringToObject(o, "journal_mode", facts->is_wal ? "wal" : "other")
              && add_integer(o, "newest_event_id", facts->newest_event_id)
              && cJSON_AddNumberToObject(o, "streams_open", (double)facts->streams_open);
    if (ok && facts->hub != NULL)
        ok = cJSON_AddStringToObject(o, "hub", facts->hub)
             && cJSON_AddStringToObject(o, "hub_role", facts->hub_role)
             && cJSON_AddNumberToObject(o, "hub_leader_pid", (double)facts->hub_leader_pid)
             && cJSON_AddNumberToObject(o, "subscribers", (double)facts->subscribers);
    if (ok && facts->hub != NULL && facts->session_id != NULL)
        ok = cJSON_AddStringToObject(o, "session_id", facts->session_id)
             && cJSON_AddNumberToObject(o, "session_subscribers",
                                        (double)facts->session_subscribers);
    if (ok && facts->relay != NULL)
        ok = add_relay(o, facts->relay);
    int rc = ok ? append_status(b, 200, cors_origin) : -1;
    if (rc == 0)
        rc = append_json(b, o, with_body);
    cJSON_Delete(o);
    if (rc < 0)
        buf_truncate(b, start);
    return rc;
}
