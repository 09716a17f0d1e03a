/*
 * http.h - CGI/FastCGI response heads and small JSON bodies (pure).
 *
 * Heads use the CGI "Status:" header and CRLF line ends; the web server turns them into an
 * HTTP status line. Bodies are built with cJSON. with_body=false (HEAD) writes the head only.
 * Thread-safe; on failure the buffer is left as it was.
 */
#ifndef SSE_HTTP_H
#define SSE_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

/* Reason phrase for the statuses this program sends ("Unknown" otherwise). */
const char *http_status_text(int status);

/* Picks the Access-Control-Allow-Origin value: NULL when allowlist is NULL or empty (no CORS
 * headers); "*" when the allowlist is "*"; otherwise the request's Origin when it is one of the
 * allowlist's comma-separated entries, else NULL. Returns a borrowed pointer. */
const char *http_cors_origin(const char *allowlist, const char *request_origin);

/* 200 head of an event stream (SPEC §4.1). cors_origin may be NULL. */
int http_append_stream_head(struct buf *b, const char *cors_origin);

/* 204 No Content: a closed session with nothing left (SPEC §4.9). */
int http_append_no_content(struct buf *b, const char *cors_origin);

/* An error (SPEC §5): head plus {"error": message}. retry_after_s > 0 adds Retry-After;
 * status 405 adds "Allow: GET, HEAD". */
int http_append_error(struct buf *b, int status, const char *message, int retry_after_s,
                      const char *cors_origin, bool with_body);

/* The relay_state row of a node fed by sse-fcgi-relay (README "Several web nodes"). */
struct health_relay {
    const char *state;           /* "copying", "reconnecting" or "stopped" */
    int64_t position;            /* copied through this position of the shared log */
    int64_t upstream_newest;     /* the log's newest position when the relay last read it */
    int64_t seconds_in_state;    /* since the state began */
    const char *copied_at;       /* the last batch's commit, UTC; NULL: none yet */
    const char *detail;          /* why, for reconnecting and stopped; "" otherwise */
};

/* What /api/health reports. */
struct health_facts {
    int schema_version;          /* PRAGMA user_version */
    int64_t newest_event_id;     /* 0 when the table is empty */
    long streams_open;           /* in this process */
    bool is_wal;                 /* journal_mode is wal */
    const char *hub;             /* "shared" or "private"; NULL: no hub facts */
    const char *hub_role;        /* "leader", "follower" or "private" */
    long hub_leader_pid;         /* 0 when unknown */
    long subscribers;            /* streams on the database, host-wide when shared */
    const char *session_id;      /* with session_subscribers, when asked (NULL: not) */
    long session_subscribers;    /* -1: could not be read */
    const struct health_relay *relay;   /* NULL: no relay writes this database */
};

/* 200 with the health JSON: {"status":"ok","database":"reachable",...}. */
int http_append_health(struct buf *b, const struct health_facts *facts,
                       const char *cors_origin, bool with_body);

#endif
