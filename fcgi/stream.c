/*
 * stream.c - one request, from route to last byte.
 *
 * A request is validated completely before any byte is sent: method (405), route (404/400),
 * query (400), database (503), session (404). Then the first rows are read, so that a closed
 * session with nothing left can still be answered 204 (SPEC §4.9).
 *
 * Why replay/resume then live has no gap and no duplicate. Event ids come from
 * AUTOINCREMENT under SQLite's single writer, so they become visible in id order: once a
 * reader sees id N, every smaller id it will ever see is already visible. A stream therefore
 * keeps one cursor, the highest id it has dealt with (sent, filtered out or shed), and every
 * read is "rows of this channel with id > cursor, in id order":
 *   - resume (Last-Event-ID N): the cursor starts at N;
 *   - fresh connect: the replay window and the live starting point (the table's newest id)
 *     are read in one read transaction, so a row committed meanwhile is either in the window
 *     or after the starting point, never both and never neither;
 *   - live: each wakeup reads everything after the cursor, in batches.
 * A closed session ends the stream once a read that started after the closed flag was seen
 * comes back short: every event was committed before the session was closed (the schema
 * refuses later ones), so that read has them all.
 *
 * Live, the stream does not watch the database itself: the process's hub (store/hub.c) does,
 * reads each new row once and wakes the streams it is for (a task posted to the loop); they
 * copy their rows out of its memory (or read the database when it no longer holds them).
 * Between wakeups a stream is nothing but its socket in the loop's epoll set and its one
 * timer, armed for the earliest of: the next keepalive (SPEC §4.7), the next probe write
 * (§4.10), the end of SSE_MAX_STREAM_S (§4.9) and, while output waits, the slow-client
 * limit. Frames go into the conn's output without a system call, and each round ends with
 * one write of all of them (conn_flush); what the socket does not take waits, and a stream
 * with STREAM_OUTPUT_MARK bytes waiting is "parked": it reads nothing more until EPOLLOUT
 * says the socket drained, then goes on from its cursor.
 */
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "../store/hub.h"
#include "../store/store.h"
#include "../store/wait.h"
#include "buf.h"
#include "config.h"
#include "filter.h"
#include "http.h"
#include "log.h"
#include "params.h"
#include "sse.h"

enum {
    STREAM_RETRY_AFTER_S = 2,       /* Retry-After on 503, retry: of a soft refusal */
    STREAM_BUSY_TIMEOUT_MS = 2000,  /* SQLite busy timeout of the read connection */
    LOG_VALUE_MAX = 96,             /* bytes of a client-supplied value in a log line */
};

/* SPEC §6 reasons, spelled exactly. */
enum end_reason {
    END_CLIENT_DISCONNECTED = 1,    /* from 1: functions return 0 or -reason */
    END_SESSION_CLOSED,
    END_MAX_STREAM_TIME,
    END_SHUTDOWN,
    END_ERROR_STORE,
    END_ERROR_OOM,
    END_ERROR_DATABASE_GONE,
    END_SLOW_CLIENT,
};

static const char *const END_REASONS[] = {
    [END_CLIENT_DISCONNECTED] = "client_disconnected",
    [END_SESSION_CLOSED] = "session_closed",
    [END_MAX_STREAM_TIME] = "max_stream_time",
    [END_SHUTDOWN] = "shutdown",
    [END_ERROR_STORE] = "error:store",
    [END_ERROR_OOM] = "error:oom",
    [END_ERROR_DATABASE_GONE] = "error:database_gone",
    [END_SLOW_CLIENT] = "slow_client",
};

enum {
    STREAM_FLUSH_BYTES = 64 * 1024,
    /* What r->out may hold: it is handed to the conn once it holds STREAM_FLUSH_BYTES, and a
     * frame that goes into it is smaller than that, with its head (an event: line of a
     * 128-byte type, sanitized). A frame of STREAM_FLUSH_BYTES or more goes to the conn
     * from where it lies. */
    STREAM_OUT_MAX = 2 * STREAM_FLUSH_BYTES + 1024,
    /* r->out keeps no more than this allocated between rounds (memory per stream). */
    STREAM_OUT_KEPT = 4096,
    /* A round reads at most this many batches before it lets the loop serve others. */
    STREAM_BATCHES_PER_TURN = 4,
    /* lighttpd closes its backend connections and signals the backend microseconds apart;
     * a stream that saw the close first is still ending because of the shutdown. 20 ms
     * covers that gap and keeps a real disconnect well inside SPEC §4.10's 0.1 s. */
    STREAM_GONE_GRACE_MS = 20,
};

/* The live state of an open stream. */
struct live {
    struct store *st;               /* owned; the stream's own connection: for its start,
                                     * and while it is behind the hub's memory */
    struct hub *hub;                /* borrowed; the process's watcher of the database */
    struct hub_sub sub;             /* registered with hub while is_subscribed */
    bool is_subscribed;
    unsigned long hub_generation;   /* the hub's at join: a change means a new file */
    bool is_parked;                 /* STREAM_OUTPUT_MARK bytes wait: no reading until the
                                     * socket drains */
    struct filter filter;           /* owned */
    struct event_type_policy *policy; /* owned */
    size_t policy_count;
    struct store_batch batch;       /* owned; the rows being sent */
    int64_t cursor;                 /* highest id dealt with */
    int64_t replay_until;           /* rows with id <= this are replay (SPEC §4.2); 0: none */
    long replayed;                  /* events sent from the replay window */
    long events_sent;
    long shed;
    bool is_session_closed;         /* seen before the last read began */
    long probe_ms;                  /* 0 = no probe writes */
    int64_t last_write_ms;          /* any write: probes */
    int64_t last_beat_ms;           /* frames and keepalives: keepalive timer */
    int64_t end_ms;                 /* SSE_MAX_STREAM_S deadline, INT64_MAX for none */
};

enum request_state {
    REQUEST_ANSWERING,              /* being answered, in stream_serve */
    REQUEST_LIVE,                   /* a stream in the loop */
    REQUEST_ENDING,                 /* the response is complete; its output still waits */
    REQUEST_DONE,                   /* freed at the end of this turn of the loop */
};

/* Everything one request owns. */
struct request {
    struct conn *conn;              /* owned; the transport */
    struct stream_shared *shared;   /* borrowed; process-wide */
    enum request_state state;
    bool has_slot;                  /* holds one of the process's stream slots */
    struct config cfg;              /* strings borrowed from the request/environment */
    bool is_head;
    const char *cors_origin;        /* Access-Control-Allow-Origin value or NULL */
    struct route route;
    struct query query;
    struct store_channel channel;
    char channel_key[PARAMS_ID_MAX + 8]; /* "worker:<id>" for worker streams */
    char log_subject[LOG_VALUE_MAX + 16]; /* "session=<id>", "worker=<id>", "channel=global" */
    struct buf out;                 /* SSE bytes not yet handed to the conn; at most
                                     * STREAM_OUT_MAX */
    struct live lv;                 /* a stream's */
    bool is_client_gone;            /* seen; the stream ends STREAM_GONE_GRACE_MS later */
    bool is_watched;                /* conn->io is in the loop */
    struct loop_timer timer;        /* the earliest deadline */
    struct loop_task wake_task;     /* posted by the hub's wake */
    struct loop_task free_task;     /* frees the request after the turn that retired it */
    struct request *prev, *next;    /* shared->open */
};

/* A setting for this request: its parameter (Apache SetEnv), else the process environment
 * (SPEC §7). */
static const char *
setting(const struct conn *conn, const char *name)
{
    const char *value = conn_param(conn, name);
    return value != NULL ? value : getenv(name);
}

/* config_load's lookup: the request's settings; the per-process ones are left to
 * load_config, so a request's bad value for one of them cannot fail the request either. */
static const char *
lookup_setting(void *ctx, const char *name)
{
    const struct request *r = ctx;
    return config_is_per_process(name) ? NULL : setting(r->conn, name);
}

static const char *
param(const struct request *r, const char *name)
{
    return conn_param(r->conn, name);
}

/* Hands what r->out holds to the conn's output (written at the end of the round). Returns
 * 0, or -1 when the conn is broken. */
static int
flush_out(struct request *r)
{
    if (r->out.len == 0)
        return r->conn->is_broken ? -1 : 0;
    int rc = conn_append(r->conn, r->out.bytes, r->out.len);
    buf_reset(&r->out);
    return rc < 0 ? -1 : 0;
}

static void
respond_error(struct request *r, int status, const char *message)
{
    buf_reset(&r->out);
    int retry_after_s = status == 503 ? STREAM_RETRY_AFTER_S : 0;
    if (http_append_error(&r->out, status, message, retry_after_s, r->cors_origin,
                          !r->is_head) == 0)
        flush_out(r);
}

/* Whether the client speaks SSE: EventSource sends Accept: text/event-stream, and
 * Last-Event-ID when it comes back (SPEC §4.12). */
static bool
is_sse_client(const struct conn *conn)
{
    const char *accept = conn_param(conn, "HTTP_ACCEPT");
    return (accept != NULL && strstr(accept, "text/event-stream") != NULL)
           || conn_param(conn, "HTTP_LAST_EVENT_ID") != NULL;
}

/* The cursor a client showed: Last-Event-ID, else last_event_id= of query (may be NULL).
 * Silent: the stream itself logs a malformed one. */
static bool
client_cursor(const struct conn *conn, const struct query *query, int64_t *cursor)
{
    if (params_parse_event_id(conn_param(conn, "HTTP_LAST_EVENT_ID"), cursor) == 0)
        return true;
    if (query != NULL && query->has_last_event_id) {
        *cursor = query->last_event_id;
        return true;
    }
    return false;
}

/* A transient refusal (SPEC §4.12). EventSource fails for good on a 503, so an SSE client
 * gets a 200 stream that only sets retry: and keeps its cursor, then ends: it comes back
 * after STREAM_RETRY_AFTER_S. Everyone else (HEAD, health, curl) gets the honest 503. The
 * caller has logged the refusal. */
static void
respond_unavailable(struct request *r, bool is_stream_route, const char *message)
{
    if (r->is_head || !is_stream_route || !is_sse_client(r->conn)) {
        respond_error(r, 503, message);
        return;
    }
    int64_t cursor = 0;
    bool has_cursor = client_cursor(r->conn, &r->query, &cursor);
    buf_reset(&r->out);
    if (http_append_stream_head(&r->out, r->cors_origin) == 0
        && sse_append_refusal(&r->out, STREAM_RETRY_AFTER_S * 1000L, has_cursor, cursor,
                              message) == 0)
        flush_out(r);
}

/* Logs and answers a failure of store_open/lookup with the SPEC §5 status. */
static void
respond_store_error(struct request *r, int rc, const char *detail)
{
    static const struct { int rc; int status; const char *message; } MAP[] = {
        {STORE_ERR_MISSING, 503, "database missing"},
        {STORE_ERR_UNREADABLE, 503, "database unreadable"},
        {STORE_ERR_SCHEMA, 503, "database has no sse-fcgi schema"},
        {STORE_ERR_BUSY, 503, "database busy"},
        {STORE_ERR_NOMEM, 503, "out of memory"},
        {STORE_ERR_NOT_FOUND, 404, "no such session"},
    };
    for (size_t i = 0; i < sizeof(MAP) / sizeof(MAP[0]); i++) {
        if (MAP[i].rc == rc) {
            log_line(MAP[i].status == 404 ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR,
                     "error status=%d %s reason=%s detail=\"%s\"", MAP[i].status,
                     r->log_subject, MAP[i].message, detail);
            if (MAP[i].status == 503)
                respond_unavailable(r, r->route.kind != ROUTE_HEALTH, MAP[i].message);
            else
                respond_error(r, MAP[i].status, MAP[i].message);
            return;
        }
    }
    log_line(LOG_LEVEL_ERROR, "error status=503 %s detail=\"%s\"", r->log_subject, detail);
    respond_unavailable(r, r->route.kind != ROUTE_HEALTH, "database unavailable");
}

/* Logs, once a process per name, a per-process setting given as a request parameter: it is
 * ignored (README "Configuration"). Under CGI the parameters are the process's environment,
 * which is where such a setting belongs. */
static void
warn_per_process_params(struct request *r)
{
    for (unsigned i = 0; r->conn->is_fastcgi && config_per_process_name(i) != NULL; i++) {
        const char *name = config_per_process_name(i);
        unsigned bit = 1u << i;
        if (param(r, name) != NULL
            && (atomic_fetch_or(&r->shared->warned_params, bit) & bit) == 0)
            log_line(LOG_LEVEL_WARN, "warning per-process setting ignored in request "
                     "parameters name=%s (set it in the process environment)", name);
    }
}

/* Reads the request's configuration; the per-process settings stay the process's. */
static int
load_config(struct request *r)
{
    const char *bad_name = NULL, *why = NULL;
    warn_per_process_params(r);
    if (config_load(&r->cfg, lookup_setting, r, &bad_name, &why) < 0) {
        log_line(LOG_LEVEL_ERROR, "error bad configuration variable=%s reason=\"%s\"",
                 bad_name, why);
        char message[128];
        snprintf(message, sizeof(message), "bad configuration: %s: %s", bad_name, why);
        respond_error(r, 503, message);
        return -1;
    }
    config_copy_per_process(&r->cfg, &r->shared->process);
    return 0;
}

/* Method, route and query (SPEC §3, §5). Returns 0 when the request may go on. */
static int
parse_request(struct request *r)
{
    const char *method = param(r, "REQUEST_METHOD");
    r->is_head = method != NULL && strcmp(method, "HEAD") == 0;
    if (method == NULL || (strcmp(method, "GET") != 0 && !r->is_head)) {
        char clean[16];
        log_line(LOG_LEVEL_INFO, "error status=405 method=%s",
                 log_clean(method, clean, sizeof(clean)));
        respond_error(r, 405, "method not allowed: use GET or HEAD");
        return -1;
    }
    char path[PARAMS_PATH_MAX];
    const char *why = "no such route";
    int rc = params_request_path(param(r, "REQUEST_URI"), param(r, "SCRIPT_NAME"),
                                 param(r, "PATH_INFO"), path, sizeof(path));
    if (rc == 0)
        rc = params_match_route(path, &r->route, &why);
    if (rc == 0 && r->route.kind != ROUTE_HEALTH)
        rc = params_parse_query(param(r, "QUERY_STRING"), &r->query, &why);
    else if (rc == 0 && params_parse_query(param(r, "QUERY_STRING"), &r->query, &why) < 0)
        r->query.session_id = NULL;  /* health answers whatever its query (session_id=) */
    if (rc == 0)
        return 0;
    char clean[LOG_VALUE_MAX];
    int status = rc == PARAMS_NOT_FOUND ? 404 : 400;
    log_line(LOG_LEVEL_INFO, "error status=%d path=%s reason=\"%s\"", status,
             log_clean(path, clean, sizeof(clean)), why);
    respond_error(r, status, why);
    return -1;
}

static void
set_channel(struct request *r)
{
    char clean[LOG_VALUE_MAX];
    log_clean(r->route.id, clean, sizeof(clean));
    switch (r->route.kind) {
    case ROUTE_SESSION_EVENTS:
        r->channel = (struct store_channel){STORE_SCOPE_SESSION, r->route.id};
        snprintf(r->log_subject, sizeof(r->log_subject), "session=%s", clean);
        break;
    case ROUTE_WORKER_EVENTS:
        snprintf(r->channel_key, sizeof(r->channel_key), "worker:%s", r->route.id);
        r->channel = (struct store_channel){STORE_SCOPE_WORKER, r->channel_key};
        snprintf(r->log_subject, sizeof(r->log_subject), "worker=%s", clean);
        break;
    default:
        r->channel = (struct store_channel){STORE_SCOPE_GLOBAL, NULL};
        snprintf(r->log_subject, sizeof(r->log_subject), "channel=global");
        break;
    }
}

static int
open_store(struct request *r, struct store **st)
{
    if (r->cfg.db_path == NULL) {
        log_line(LOG_LEVEL_ERROR, "error status=503 %s reason=\"SSE_DB is not set\"",
                 r->log_subject);
        respond_error(r, 503, "SSE_DB is not set");
        return -1;
    }
    char detail[512];
    int rc = store_open(r->cfg.db_path, STREAM_BUSY_TIMEOUT_MS, st, detail, sizeof(detail));
    if (rc < 0) {
        respond_store_error(r, rc, detail);
        return -1;
    }
    return 0;
}

/* Where the hub's lines go: the process's log. */
static void
log_hub(bool is_warning, const char *message)
{
    log_line(is_warning ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, "%s", message);
}

/* The hub of the request's database, started on first use (every process joins its host's
 * hub once; /api/health too, so that it can report the host's streams). */
static struct hub *
process_hub(const struct request *r)
{
    struct hub_options opt = {.poll_ms = r->cfg.poll_ms, .shutdown_fd = r->shared->shutdown_fd,
                              .frame = sse_event_json, .dir = r->cfg.hub_dir, .log = log_hub};
    return hub_get(r->cfg.db_path, &opt);
}

static void
serve_health(struct request *r)
{
    struct store *st = NULL;
    if (open_store(r, &st) < 0)
        return;
    struct health_facts facts = {.streams_open = atomic_load(&r->shared->streams_open)};
    struct hub *h = process_hub(r);
    if (h != NULL) {
        static const char *const ROLES[] = {"private", "leader", "follower"};
        struct hub_facts hf;
        hub_get_facts(h, &hf);
        facts.hub = hf.role == HUB_ROLE_PRIVATE ? "private" : "shared";
        facts.hub_role = ROLES[hf.role];
        facts.hub_leader_pid = hf.leader_pid;
        facts.subscribers = hf.subscribers;
        if (r->query.session_id != NULL) {
            facts.session_id = r->query.session_id;
            facts.session_subscribers = hub_session_subscribers(h, r->query.session_id);
        }
    }
    int rc = store_health(st, &facts.schema_version, &facts.is_wal);
    if (rc == 0)
        rc = store_newest_id(st, &facts.newest_event_id);
    if (rc < 0) {
        respond_store_error(r, rc, store_errmsg(st));
    } else if (http_append_health(&r->out, &facts, r->cors_origin, !r->is_head) == 0) {
        flush_out(r);
    }
    store_close(st);
}

/* Builds the filter; logs each unknown types= entry (SPEC §6). */
static int
build_filter(struct request *r, struct live *lv)
{
    bool is_unknown[PARAMS_LIST_MAX] = {false};
    struct filter_request req = {
        .type_names = r->query.types,
        .type_count = r->query.types_count,
        .has_all_types = r->query.has_types_all,
        .watch = r->query.watch,
        .watch_count = r->query.watch_count,
        .has_watch_all = r->query.has_watch_all,
        .has_worker_rule = r->route.kind == ROUTE_SESSION_EVENTS,
        .has_open_types = r->route.kind == ROUTE_GLOBAL_EVENTS,  /* SPEC §3 */
        .max_lag = r->cfg.max_lag,
    };
    if (filter_init(&lv->filter, lv->policy, lv->policy_count, &req, is_unknown) < 0)
        return -1;
    for (size_t i = 0; i < r->query.types_count; i++) {
        char clean[LOG_VALUE_MAX];
        if (is_unknown[i])
            log_line(LOG_LEVEL_WARN, "warning unknown event type filter: %s",
                     log_clean(r->query.types[i], clean, sizeof(clean)));
    }
    return 0;
}

/* The resume point: Last-Event-ID header, else last_event_id=; malformed means absent. */
static bool
resume_point(struct request *r, int64_t *after_id)
{
    const char *header = param(r, "HTTP_LAST_EVENT_ID");
    int rc = params_parse_event_id(header, after_id);
    if (rc == 0)
        return true;
    char clean[LOG_VALUE_MAX];
    if (rc == PARAMS_MALFORMED)
        log_line(LOG_LEVEL_WARN, "warning malformed Last-Event-ID %s value=%s",
                 r->log_subject, log_clean(header, clean, sizeof(clean)));
    if (r->query.is_last_event_id_malformed)
        log_line(LOG_LEVEL_WARN, "warning malformed last_event_id %s", r->log_subject);
    if (r->query.has_last_event_id) {
        *after_id = r->query.last_event_id;
        return true;
    }
    return false;
}

/* Hands len bytes to the conn past r->out (a frame too large to copy twice). Returns 0 or
 * -1. */
static int
send_direct(struct request *r, const char *bytes, size_t len)
{
    return flush_out(r) < 0 || conn_append(r->conn, bytes, len) < 0 ? -1 : 0;
}

/* Puts the head of e's frame (with json, the whole frame) into r->out, flushing first when
 * it is full or has no room. Returns 0, -1 when the client is gone, 1 when the head alone
 * is larger than STREAM_OUT_MAX (an event: line of a hand-edited type). */
static int
place_frame(struct request *r, const struct event *e, const char *json, size_t len)
{
    if (r->out.len >= STREAM_FLUSH_BYTES && flush_out(r) < 0)
        return -1;
    if (sse_append_frame(&r->out, e, r->query.is_named, json, len) == 0)
        return 0;
    if (flush_out(r) < 0)
        return -1;
    return sse_append_frame(&r->out, e, r->query.is_named, json, len) == 0 ? 0 : 1;
}

/* Appends the frame of row: the one the hub built for every stream when there is one, else
 * one built here for this send. A frame of STREAM_FLUSH_BYTES or more is never copied into
 * r->out: the hub's goes to the conn as it is, shared by every stream it is for. Returns 0,
 * 1 when the event was skipped as too large, -1 when the client is gone, -2 when out of
 * memory. */
static int
append_frame(struct request *r, struct store_row *row)
{
    const struct event *e = &row->event;
    size_t len = row->frame_len;
    char *own = NULL;
    const char *json = row->frame;
    if (json == NULL && !e->is_oversized && (json = own = sse_event_json(e, &len)) == NULL
        && len == 0)
        return -2;
    bool is_big = len >= STREAM_FLUSH_BYTES;
    int rc = json == NULL ? 1 : place_frame(r, e, is_big ? NULL : json, len);
    if (rc == 0 && is_big
        && ((own != NULL ? send_direct(r, json, len)
                         : flush_out(r) < 0 ? -1 : conn_append_shared(r->conn, row, json, len)) < 0
            || send_direct(r, SSE_FRAME_END, strlen(SSE_FRAME_END)) < 0))
        rc = -1;
    if (rc == 1)
        log_line(LOG_LEVEL_WARN, "warning event too large, skipped id=%" PRId64, e->id);
    free(own);
    return rc;
}

/* True when the stream's output is over its mark: it must read no more until it drains. */
static bool
is_output_full(const struct request *r)
{
    return conn_waiting(r->conn) + r->out.len >= STREAM_OUTPUT_MARK;
}

/* Filters and frames the batch; stops before a row when the output is over its mark
 * (lv->is_parked: the cursor stays on the last row dealt with). Returns 0, or a negative
 * end_reason. */
static int
send_batch(struct request *r, struct live *lv, int64_t newest_id)
{
    for (size_t i = 0; i < lv->batch.count; i++) {
        const struct event *e = &lv->batch.events[i];
        bool is_replay = e->id <= lv->replay_until;
        if (is_output_full(r)) {
            lv->is_parked = true;
            return 0;
        }
        lv->cursor = e->id;
        if (e->is_oversized) {  /* its type is unknown: skipped, whatever the filter */
            append_frame(r, lv->batch.rows[i]);
            continue;
        }
        enum filter_verdict v = filter_check(&lv->filter, e, is_replay, newest_id - e->id);
        if (v == FILTER_SHED)
            lv->shed++;
        if (v != FILTER_SEND)
            continue;
        int rc = append_frame(r, lv->batch.rows[i]);
        if (rc == -1)
            return -END_CLIENT_DISCONNECTED;
        if (rc == -2)
            return -END_ERROR_OOM;
        lv->replayed += rc == 0 && is_replay;
        if (rc == 0 && ++lv->events_sent == 1) {
            char clean[LOG_VALUE_MAX];
            log_line(LOG_LEVEL_INFO, "first event %s type=%s", r->log_subject,
                     log_clean(e->type, clean, sizeof(clean)));
        }
    }
    return 0;
}

/* Counts the batch's events that would be sent (for the 204 decision). */
static size_t
count_sendable(const struct live *lv)
{
    size_t n = 0;
    for (size_t i = 0; i < lv->batch.count; i++) {
        const struct event *e = &lv->batch.events[i];
        n += filter_check(&lv->filter, e, e->id <= lv->replay_until, 0) == FILTER_SEND;
    }
    return n;
}

/* How the stream starts: what read_start found. */
struct start {
    bool has_gap;                   /* SPEC §4.3 */
    int64_t gap_requested, gap_resumed_from;
    size_t sendable;                /* events of the first batch that pass the filter */
};

/* Reads the first batch after lv->cursor, skipping whole batches of filtered-out rows, so
 * that "nothing left" is known before the head is sent (204). */
static int
read_first_batch(struct request *r, struct live *lv, struct start *s)
{
    for (;;) {
        int rc = store_events_after(lv->st, &r->channel, lv->cursor, STREAM_BATCH_ROWS,
                                    STREAM_BATCH_BYTES, &lv->batch);
        if (rc < 0)
            return rc;
        s->sendable = count_sendable(lv);
        if (s->sendable > 0 || !lv->batch.is_full)
            return 0;
        lv->cursor = lv->batch.events[lv->batch.count - 1].id;
    }
}

static int
check_retention(struct request *r, struct live *lv, int64_t after_id, struct start *s)
{
    int64_t pruned_through = 0, oldest_kept = 0;
    int rc = store_retention(lv->st, &r->channel, after_id, &pruned_through, &oldest_kept);
    if (rc == 0 && pruned_through > after_id) {
        s->has_gap = true;
        s->gap_requested = after_id;
        s->gap_resumed_from = oldest_kept > 0 ? oldest_kept : pruned_through + 1;
    }
    return rc;
}

/* A resume point this database never issued: the client read another file (one restored
 * from an older copy, or replaced). Its ids past the newest mean nothing here, and rows
 * that get them later are new to it: resume after the newest id, and say so with the gap
 * notice of SPEC §4.3. */
static int
check_beyond_newest(struct live *lv, int64_t after_id, struct start *s)
{
    int64_t newest = 0;
    int rc = store_newest_id(lv->st, &newest);
    if (rc == 0 && after_id > newest) {
        s->has_gap = true;
        s->gap_requested = after_id;
        s->gap_resumed_from = newest + 1;
        lv->cursor = newest;
    }
    return rc;
}

/* Sets the cursor (resume point, replay window, or newest id) and reads the first rows
 * before any byte is sent. Returns 0 or a store error. */
static int
read_start(struct request *r, struct live *lv, struct start *s)
{
    int64_t after_id = 0;
    int rc;
    if (resume_point(r, &after_id)) {
        lv->cursor = after_id;
        rc = check_retention(r, lv, after_id, s);
        if (rc == 0)
            rc = check_beyond_newest(lv, after_id, s);
    } else if (r->route.kind == ROUTE_GLOBAL_EVENTS) {
        rc = store_newest_id(lv->st, &lv->cursor);  /* SPEC §3: no replay on global */
    } else {
        int64_t first_id = 0;
        rc = store_replay_window(lv->st, &r->channel, (size_t)r->cfg.replay_limit, &first_id,
                                 &lv->replay_until);
        lv->cursor = first_id > 0 ? first_id - 1 : lv->replay_until;
    }
    return rc < 0 ? rc : read_first_batch(r, lv, s);
}

static bool
is_shutting_down(const struct request *r)
{
    return atomic_load(&r->shared->is_shutting_down);
}

/* Hands r->out to the conn and restarts the timers it resets. Returns 0 or
 * -END_CLIENT_DISCONNECTED. */
static int
send_now(struct request *r, struct live *lv, bool is_beat)
{
    if (r->out.len == 0)
        return 0;
    if (flush_out(r) < 0)
        return -END_CLIENT_DISCONNECTED;
    lv->last_write_ms = wait_now_ms();
    if (is_beat)
        lv->last_beat_ms = lv->last_write_ms;
    return 0;
}

static int64_t
earliest(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Logs "sse replayed N" once the cursor has passed the replay window (SPEC §6). */
static void
log_replayed(const struct request *r, struct live *lv)
{
    if (lv->replay_until > 0 && lv->cursor >= lv->replay_until) {
        if (lv->replayed > 0)
            log_line(LOG_LEVEL_INFO, "replayed %ld %s", lv->replayed, r->log_subject);
        lv->replay_until = 0;
    }
}

/* The session's closed flag, as the hub read it before it woke this stream (store/hub.c:
 * after every commit that has rows of the session, and after every commit that has no rows
 * at all). */
static void
check_session_closed(struct request *r, struct live *lv)
{
    if (r->route.kind == ROUTE_SESSION_EVENTS && atomic_load(&lv->sub.is_session_closed))
        lv->is_session_closed = true;
}

/* Rows after the cursor from the database itself, when the hub's memory does not have them
 * all: the stream fell behind, or the session is closed and its last rows must come from a
 * read that began after the closed flag was seen. A stream that is behind reads through a
 * connection of its own (opened here, closed once it is back in the hub's memory), so that
 * many catching-up streams do not queue on the one the hub shares. Returns 0 or a store
 * error. */
static int
read_from_database(struct request *r, struct live *lv, int64_t *newest_id,
                   int64_t *scanned_through)
{
    char err[256];
    if (lv->st == NULL) {
        int rc = store_open(r->cfg.db_path, STREAM_BUSY_TIMEOUT_MS, &lv->st, err, sizeof(err));
        if (rc < 0)
            return rc;
    }
    /* One snapshot: when the batch is not full, every row up to the newest id was looked
     * at, and the cursor may pass the other channels' rows up to it, so that it reaches
     * the hub's memory again (whose oldest row may be newer than this channel's last). */
    int rc = store_read_begin(lv->st);
    bool is_reading = rc == 0;
    if (rc == 0)
        rc = store_events_after(lv->st, &r->channel, lv->cursor, STREAM_BATCH_ROWS,
                                STREAM_BATCH_BYTES, &lv->batch);
    int64_t newest = 0;
    if (rc == 0 && store_newest_id(lv->st, &newest) == 0) {
        *newest_id = newest;
        if (!lv->batch.is_full)
            *scanned_through = newest;
    }
    if (is_reading)
        store_read_end(lv->st);
    return rc;
}

/* The database was restored in place from an older copy whose newest id is
 * restored_newest (-1: it was not a restore). A client past that id has seen rows the file
 * no longer holds, and rows published now get ids it has seen: it is told of the gap, and
 * handed restored_newest as its Last-Event-ID, so that it comes back for exactly those. */
static void
send_restored_cursor(struct request *r, struct live *lv, int64_t restored_newest)
{
    if (restored_newest < 0 || lv->cursor <= restored_newest)
        return;
    if (sse_append_gap(&r->out, lv->cursor, restored_newest + 1) == 0
        && sse_append_cursor(&r->out, restored_newest) == 0)
        send_now(r, lv, true);
    log_line(LOG_LEVEL_WARN, "warning gap %s requested=%" PRId64 " resumed_from=%" PRId64
             " reason=database_restored", r->log_subject, lv->cursor, restored_newest + 1);
}

/* The hub's newest id is older than the stream's cursor: either the hub has not read the
 * last commit yet, or the hub first read the file after it was restored from an older
 * copy, once this stream had read the newer one (then the hub's generation never moved).
 * The file tells: returns -1 with *file_newest when it was restored, else 0. */
static int
check_restored_before_join(struct request *r, struct live *lv, int64_t *file_newest)
{
    char err[256];
    if (lv->st == NULL
        && store_open(r->cfg.db_path, STREAM_BUSY_TIMEOUT_MS, &lv->st, err, sizeof(err)) < 0)
        return 0;  /* it will be checked at the next wakeup */
    if (store_newest_id(lv->st, file_newest) < 0)
        return 0;
    return *file_newest < lv->cursor ? -1 : 0;
}

/* One round of the live loop: closed flag, then rows after the cursor, from the hub's
 * memory when it has them, else from the database. Returns 0 to go on reading at once, 1
 * when caught up, 2 when parked (the output is over its mark), or -end_reason. */
static int
read_and_send(struct request *r, struct live *lv)
{
    int64_t restored_newest;
    if (hub_generation(lv->hub, &restored_newest) != lv->hub_generation) {
        send_restored_cursor(r, lv, restored_newest);
        return -END_ERROR_DATABASE_GONE;  /* removed or replaced: its ids mean nothing now */
    }
    check_session_closed(r, lv);
    int rc;
    int64_t newest_id = 0, scanned_through = lv->cursor;
    int in_memory = lv->is_session_closed
                        ? 0
                        : hub_copy_after(lv->hub, &r->channel, lv->cursor, STREAM_BATCH_ROWS,
                                         STREAM_BATCH_BYTES, &lv->batch, &scanned_through,
                                         &newest_id);
    if (in_memory < 0)
        return -END_ERROR_OOM;
    if (in_memory == 1 && newest_id < lv->cursor) {
        int64_t file_newest = 0;
        if (check_restored_before_join(r, lv, &file_newest) < 0) {
            store_batch_clear(&lv->batch);
            send_restored_cursor(r, lv, file_newest);
            return -END_ERROR_DATABASE_GONE;
        }
    }
    if (in_memory == 1 && lv->st != NULL) {
        store_close(lv->st);  /* caught up: the hub's memory serves it again */
        lv->st = NULL;
    }
    if (in_memory == 0) {
        rc = read_from_database(r, lv, &newest_id, &scanned_through);
        if (rc == STORE_ERR_BUSY)
            return 1;  /* a writer holds a lock: keep the stream, try at the next wakeup */
        if (rc < 0)
            return -END_ERROR_STORE;
    }
    if ((rc = send_batch(r, lv, newest_id)) < 0 || (rc = send_now(r, lv, true)) < 0)
        return rc;
    if (lv->is_parked) {
        store_batch_clear(&lv->batch);  /* the rest is read again once the socket drains */
        return 2;
    }
    if (!lv->batch.is_full && scanned_through > lv->cursor)
        lv->cursor = scanned_through;  /* rows of other channels, dealt with */
    log_replayed(r, lv);
    if (lv->batch.is_full)
        return 0;
    return lv->is_session_closed ? -END_SESSION_CLOSED : 1;
}

static void
live_release(struct live *lv)
{
    if (lv->is_subscribed)
        hub_unsubscribe(lv->hub, &lv->sub);
    lv->is_subscribed = false;
    filter_release(&lv->filter);
    store_policy_free(lv->policy, lv->policy_count);
    lv->policy = NULL;
    lv->policy_count = 0;
    store_batch_release(&lv->batch);
    store_close(lv->st);
    lv->st = NULL;
}

enum { AUTH_TOKENS_MAX = 16, JWT_SECRET_MAX = 4096 };

/* The HS256 key: SSE_JWT_SECRET, else the contents of SSE_JWT_SECRET_FILE without a final
 * newline. Returns its length, or -1 when the file cannot be read or is empty. */
static long
jwt_secret(const struct request *r, unsigned char *out, size_t size)
{
    if (r->cfg.jwt_secret != NULL && r->cfg.jwt_secret[0] != '\0') {
        size_t len = strlen(r->cfg.jwt_secret);
        if (len > size)
            return -1;
        memcpy(out, r->cfg.jwt_secret, len);
        return (long)len;
    }
    FILE *f = fopen(r->cfg.jwt_secret_file, "re");
    if (f == NULL)
        return -1;
    size_t len = fread(out, 1, size, f);
    fclose(f);
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        len--;
    return len > 0 ? (long)len : -1;
}

/* SSE_AUTH (auth.h). It runs before anything that could tell whether the session exists,
 * so an unknown session and a wrong token get the same answer through the same work. No
 * credential or secret ever reaches a log line. Returns 0, or -1 after answering. */
static int
authorize(struct request *r, struct store *st)
{
    if (r->cfg.auth_mode == AUTH_MODE_NONE)
        return 0;
    char credential[AUTH_CREDENTIAL_MAX];
    const char *token = auth_credential(r->query.token, param(r, "HTTP_COOKIE"),
                                        param(r, "HTTP_AUTHORIZATION"), credential,
                                        sizeof(credential));
    enum auth_verdict v;
    if (r->cfg.auth_mode == AUTH_MODE_TOKEN) {
        struct stored_token stored[AUTH_TOKENS_MAX];
        size_t count = 0;
        /* read_tokens.scope (schema.sql): "session:" is prefixed, since a session may be
         * named "worker:w1"; worker keys are already "worker:<id>" (issue 11). */
        char scope[sizeof("session:") + PARAMS_ID_MAX];
        snprintf(scope, sizeof(scope), "%s%s",
                 r->channel.scope == STORE_SCOPE_SESSION ? "session:" : "",
                 r->channel.scope == STORE_SCOPE_GLOBAL ? "global" : r->channel.key);
        int rc = token != NULL ? store_read_tokens(st, scope, stored, AUTH_TOKENS_MAX, &count)
                               : 0;
        if (rc < 0) {
            respond_store_error(r, rc, store_errmsg(st));
            return -1;
        }
        v = auth_check_token(token, stored, count);
    } else {
        unsigned char secret[JWT_SECRET_MAX];
        long secret_len = jwt_secret(r, secret, sizeof(secret));
        if (secret_len < 0) {
            log_line(LOG_LEVEL_ERROR, "error status=503 %s reason=\"SSE_JWT_SECRET_FILE "
                     "unreadable or empty\"", r->log_subject);
            respond_error(r, 503, "authentication is not configured");
            return -1;
        }
        enum auth_channel channel = r->route.kind == ROUTE_SESSION_EVENTS ? AUTH_CHANNEL_SESSION
                                    : r->route.kind == ROUTE_WORKER_EVENTS ? AUTH_CHANNEL_WORKER
                                                                           : AUTH_CHANNEL_GLOBAL;
        v = auth_check_jwt(token, secret, (size_t)secret_len, (int64_t)time(NULL), channel,
                           r->route.id);
        auth_wipe(secret, sizeof(secret));
    }
    if (v == AUTH_ALLOW)
        return 0;
    log_line(LOG_LEVEL_WARN, "denied status=%d %s reason=\"%s\"", auth_status(v),
             r->log_subject, auth_reason(v));
    respond_error(r, auth_status(v), auth_reason(v));
    return -1;
}

/* Opens the store, checks the session, loads the policy and the first rows. Returns 0, or
 * -1 after answering the request. */
static int
prepare_stream(struct request *r, struct live *lv, struct start *s)
{
    if (open_store(r, &lv->st) < 0 || authorize(r, lv->st) < 0)
        return -1;
    int rc = 0;
    if (r->route.kind == ROUTE_SESSION_EVENTS)
        rc = store_session_lookup(lv->st, r->route.id, &lv->is_session_closed);
    if (rc == 0)
        rc = store_policy_load(lv->st, &lv->policy, &lv->policy_count);
    if (rc == 0 && build_filter(r, lv) < 0)
        rc = STORE_ERR_NOMEM;
    if (rc == 0)
        rc = read_start(r, lv, s);
    if (rc < 0) {
        respond_store_error(r, rc, store_errmsg(lv->st));
        return -1;
    }
    return 0;
}

/* ---- the stream in the loop ------------------------------------------------------- */

#define REQUEST_OF(ptr, member) ((struct request *)((char *)(ptr) - offsetof(struct request, member)))

static void finish(struct request *r);
static void on_client_gone(struct request *r);

/* What the request's descriptor is watched for: the client leaving (FastCGI: EOF or an
 * abort record on the socket; CGI: only EPOLLERR/EPOLLHUP, which always come), and
 * EPOLLOUT while output waits. */
static uint32_t
watched_events(const struct request *r, bool is_waiting)
{
    uint32_t events = r->conn->is_fastcgi ? EPOLLIN | EPOLLRDHUP : 0;
    return is_waiting ? events | EPOLLOUT : events;
}

static int64_t
slow_limit_ms(const struct request *r)
{
    return (r->cfg.slow_client_s > 0 ? r->cfg.slow_client_s : 30) * 1000;  /* 0: no config */
}

/* The request's earliest deadline. */
static int64_t
next_due(const struct request *r)
{
    const struct live *lv = &r->lv;
    if (r->state == REQUEST_ENDING)
        return r->conn->last_progress_ms + slow_limit_ms(r);
    int64_t due = lv->end_ms;
    if (conn_waiting(r->conn) > 0)
        return earliest(due, r->conn->last_progress_ms + slow_limit_ms(r));
    due = earliest(due, lv->last_beat_ms + r->cfg.keepalive_s * 1000);
    return lv->probe_ms > 0 ? earliest(due, lv->last_write_ms + lv->probe_ms) : due;
}

/* Arms the timer for the earliest deadline when that is sooner than where it stands. A
 * later one is left: the timer moves itself when it fires (loop.h, "lazy"). */
static void
arm_timer(struct request *r)
{
    int64_t due = next_due(r);
    if (r->timer.heap_slot == 0 || due < r->timer.due_ms)
        loop_timer_arm(r->shared->loop, &r->timer, due);
}

/* Writes what the conn holds; watches for EPOLLOUT while some waits. Returns 0, or -1 when
 * the client is gone. */
static int
write_out(struct request *r)
{
    if (flush_out(r) < 0)
        return -1;
    if (r->out.cap > STREAM_OUT_KEPT)
        buf_release(&r->out);  /* a burst is over: give its memory back */
    int rc = conn_flush(r->conn, wait_now_ms());
    if (rc < 0)
        return -1;
    if (r->is_watched)
        loop_io_modify(r->shared->loop, &r->conn->io, watched_events(r, rc == 1));
    arm_timer(r);  /* output that began to wait: the slow-client limit; output that drained
                    * after waiting: its keepalive, due before that limit */
    return 0;
}

/* Frees what is left of a request once this turn of the loop is over (events of the same
 * turn may still name it). */
static void
free_request(struct loop_task *t)
{
    free(REQUEST_OF(t, free_task));
}

/* The request is over: everything it holds is given back, now. */
static void
retire(struct request *r)
{
    struct stream_shared *shared = r->shared;
    r->state = REQUEST_DONE;
    loop_timer_disarm(shared->loop, &r->timer);
    if (r->is_watched)
        loop_io_remove(shared->loop, &r->conn->io);
    r->is_watched = false;
    live_release(&r->lv);
    loop_task_cancel(shared->loop, &r->wake_task);  /* after the unsubscribe: none comes */
    conn_free(r->conn);
    r->conn = NULL;
    buf_release(&r->out);
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        shared->open = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    shared->open_count--;
    loop_defer(shared->loop, &r->free_task);
    if (shared->on_done != NULL)
        shared->on_done(shared, r->has_slot);
}

/* Ends a live stream: its last bytes, its log line, then the end of the response. */
static void
end_stream(struct request *r, enum end_reason reason)
{
    if (r->state != REQUEST_LIVE)
        return;
    r->state = REQUEST_ENDING;
    atomic_fetch_sub(&r->shared->streams_open, 1);
    flush_out(r);
    log_line(LOG_LEVEL_INFO, "disconnected %s events_sent=%ld shed=%ld reason=%s",
             r->log_subject, r->lv.events_sent, r->lv.shed, END_REASONS[reason]);
    if (r->lv.is_subscribed) {
        hub_unsubscribe(r->lv.hub, &r->lv.sub);
        r->lv.is_subscribed = false;
    }
    if (reason == END_CLIENT_DISCONNECTED || reason == END_SLOW_CLIENT)
        retire(r);  /* nobody reads what is left */
    else
        finish(r);
}

/* Writes the output; a stream parked with less than half its mark still waiting (the
 * socket took it) reads on at the end of this turn. Returns 0, or -1 when the client is
 * gone. */
static int
write_and_unpark(struct request *r)
{
    if (write_out(r) < 0)
        return -1;
    if (r->lv.is_parked && conn_waiting(r->conn) < STREAM_OUTPUT_MARK / 2) {
        r->lv.is_parked = false;
        loop_defer(r->shared->loop, &r->wake_task);
    }
    return 0;
}

/* Reads and sends rounds until the stream has caught up or is parked, or has had its share
 * of this turn (then it goes on at the end of the turn). */
static void
pump(struct request *r)
{
    struct live *lv = &r->lv;
    if (r->state != REQUEST_LIVE || r->is_client_gone || lv->is_parked)
        return;
    int rc = 0;
    for (int i = 0; i < STREAM_BATCHES_PER_TURN && rc == 0; i++) {
        rc = read_and_send(r, lv);
        if (rc < 0) {
            end_stream(r, (enum end_reason)-rc);
            return;
        }
    }
    if (wait_now_ms() >= lv->end_ms) {
        end_stream(r, END_MAX_STREAM_TIME);
        return;
    }
    if (write_and_unpark(r) < 0) {
        on_client_gone(r);
        return;
    }
    if (rc == 0)
        loop_defer(r->shared->loop, &r->wake_task);  /* more to read: after the others */
}

/* The hub has rows for the stream (or a closed flag): called from the hub's threads. */
static void
on_hub_wake(struct hub_sub *sub)
{
    struct request *r = REQUEST_OF(sub, lv.sub);
    loop_post(r->shared->loop, &r->wake_task);
}

static void
on_wake_task(struct loop_task *t)
{
    pump(REQUEST_OF(t, wake_task));
}

/* The client left (or a write failed). A live stream waits STREAM_GONE_GRACE_MS before it
 * says so, since a shutdown may be what closed the socket. */
static void
on_client_gone(struct request *r)
{
    if (r->state != REQUEST_LIVE) {
        retire(r);
        return;
    }
    if (is_shutting_down(r)) {
        end_stream(r, END_SHUTDOWN);
        return;
    }
    if (r->is_watched)
        loop_io_remove(r->shared->loop, &r->conn->io);
    r->is_watched = false;
    r->is_client_gone = true;
    loop_timer_arm(r->shared->loop, &r->timer, wait_now_ms() + STREAM_GONE_GRACE_MS);
}

static void
on_io(struct loop_io *io, uint32_t events)
{
    struct conn *conn = (struct conn *)((char *)io - offsetof(struct conn, io));
    struct request *r = conn->owner;
    if (r->state == REQUEST_DONE || !r->is_watched)
        return;
    if ((events & (EPOLLERR | EPOLLHUP))
        || (r->conn->is_fastcgi && (events & (EPOLLIN | EPOLLRDHUP)) && conn_peer_left(conn))) {
        on_client_gone(r);
        return;
    }
    if (!(events & EPOLLOUT))
        return;
    if (write_and_unpark(r) < 0)
        on_client_gone(r);
    else if (r->state == REQUEST_ENDING && conn_waiting(conn) == 0)
        retire(r);
}

/* Sends a keepalive (SPEC §4.7) or a probe (§4.10) when one is due and nothing waits. */
static int
send_beat(struct request *r, int64_t now)
{
    struct live *lv = &r->lv;
    if (conn_waiting(r->conn) > 0)
        return 0;
    bool is_beat = now >= lv->last_beat_ms + r->cfg.keepalive_s * 1000;
    bool is_probe = lv->probe_ms > 0 && now >= lv->last_write_ms + lv->probe_ms;
    if (!is_beat && !is_probe)
        return 0;
    if (is_beat ? sse_append_keepalive(&r->out) : sse_append_probe(&r->out))
        return -END_ERROR_OOM;
    if (send_now(r, lv, is_beat) < 0 || write_out(r) < 0)
        return -END_CLIENT_DISCONNECTED;
    return 0;
}

static void
on_timer(struct loop_timer *t)
{
    struct request *r = REQUEST_OF(t, timer);
    int64_t now = wait_now_ms();
    bool is_stalled = conn_waiting(r->conn) > 0
                      && now >= r->conn->last_progress_ms + slow_limit_ms(r);
    if (r->state == REQUEST_ENDING) {
        if (is_stalled)
            retire(r);  /* the end of a response nobody reads */
        else
            arm_timer(r);
        return;
    }
    if (r->state != REQUEST_LIVE)
        return;
    if (r->is_client_gone) {
        end_stream(r, is_shutting_down(r) ? END_SHUTDOWN : END_CLIENT_DISCONNECTED);
        return;
    }
    if (now >= r->lv.end_ms) {
        end_stream(r, END_MAX_STREAM_TIME);
        return;
    }
    if (is_stalled) {
        end_stream(r, END_SLOW_CLIENT);
        return;
    }
    int rc = send_beat(r, now);
    if (rc == -END_CLIENT_DISCONNECTED) {
        on_client_gone(r);
        return;
    }
    if (rc < 0) {
        end_stream(r, (enum end_reason)-rc);
        return;
    }
    loop_timer_arm(r->shared->loop, &r->timer, next_due(r));
}

/* The response is complete: its end is written, and the request freed once the socket has
 * taken it all (or the client is found gone, or takes nothing for the slow-client limit). */
static void
finish(struct request *r)
{
    flush_out(r);
    conn_end(r->conn);
    int rc = conn_flush(r->conn, wait_now_ms());
    if (rc != 1) {
        retire(r);
        return;
    }
    r->state = REQUEST_ENDING;
    uint32_t events = watched_events(r, true);
    int err = r->is_watched ? loop_io_modify(r->shared->loop, &r->conn->io, events)
                            : loop_io_add(r->shared->loop, &r->conn->io, events);
    if (err < 0) {
        retire(r);
        return;
    }
    r->is_watched = true;
    loop_timer_arm(r->shared->loop, &r->timer, next_due(r));
}

/* Subscribes the stream to the process's watcher of its database and puts its socket in
 * the loop; the stream's own connection is closed, the hub's memory and shared connection
 * serve it from now on. */
static int
join_hub(struct request *r, struct live *lv)
{
    lv->hub = process_hub(r);
    int err = 0;
    if (lv->hub != NULL) {
        err = loop_io_add(r->shared->loop, &r->conn->io, watched_events(r, false));
        /* EPERM: CGI's stdout is a file epoll cannot watch; it is written, never watched */
        r->is_watched = err == 0;
    }
    if (lv->hub == NULL || (err < 0 && err != -EPERM)) {
        log_line(LOG_LEVEL_ERROR, "error status=503 %s reason=\"no thread or descriptor for "
                 "the watcher\"", r->log_subject);
        respond_unavailable(r, true, "out of resources");
        return -1;
    }
    lv->sub = (struct hub_sub){.scope = r->channel.scope, .key = r->channel.key,
                               .wake = on_hub_wake, .wake_fd = -1};
    int64_t restored_newest;
    lv->hub_generation = hub_generation(lv->hub, &restored_newest);
    hub_subscribe(lv->hub, &lv->sub);
    lv->is_subscribed = true;
    store_close(lv->st);
    lv->st = NULL;
    return 0;
}

/* Head, opening lines, gap notice and the first batch; then the stream lives in the loop. */
static void
start_stream(struct request *r, const struct start *s)
{
    struct live *lv = &r->lv;
    if (http_append_stream_head(&r->out, r->cors_origin) < 0
        || sse_append_open(&r->out, r->cfg.retry_ms) < 0
        || (s->has_gap && sse_append_gap(&r->out, s->gap_requested, s->gap_resumed_from) < 0)) {
        end_stream(r, END_ERROR_OOM);
        return;
    }
    log_line(LOG_LEVEL_INFO, "connected %s types=%zu", r->log_subject,
             lv->filter.requested_count);
    if (s->has_gap)
        log_line(LOG_LEVEL_WARN, "warning gap %s requested=%" PRId64 " resumed_from=%" PRId64,
                 r->log_subject, s->gap_requested, s->gap_resumed_from);
    int rc = send_batch(r, lv, 0);
    if (rc == 0)
        rc = send_now(r, lv, true);
    if (rc < 0) {
        end_stream(r, (enum end_reason)-rc);
        return;
    }
    log_replayed(r, lv);
    if (!lv->is_parked && !lv->batch.is_full && lv->cursor < lv->replay_until)
        lv->cursor = lv->replay_until;  /* the window is done: go live from its snapshot */
    log_replayed(r, lv);
    if (lv->is_parked) {
        store_batch_clear(&lv->batch);
        if (write_and_unpark(r) < 0)
            on_client_gone(r);
        return;
    }
    pump(r);
}

/* Answers the request with its stream, or with the response that replaces it (an error,
 * 204, HEAD's head). */
static void
serve_stream(struct request *r)
{
    struct live *lv = &r->lv;
    struct start s = {0};
    if (prepare_stream(r, lv, &s) < 0)
        return;
    if (lv->is_session_closed && s.sendable == 0 && !lv->batch.is_full) {
        log_line(LOG_LEVEL_INFO, "no content %s reason=session_closed", r->log_subject);
        if (http_append_no_content(&r->out, r->cors_origin) == 0)
            flush_out(r);
        return;
    }
    if (r->is_head) {
        if (http_append_stream_head(&r->out, r->cors_origin) == 0)
            flush_out(r);
        return;
    }
    if (join_hub(r, lv) < 0)
        return;
    lv->probe_ms = config_probe_ms(&r->cfg, param(r, "SERVER_SOFTWARE"), !r->conn->is_fastcgi);
    lv->last_write_ms = lv->last_beat_ms = wait_now_ms();
    if (r->cfg.max_stream_s > 0)
        lv->end_ms = lv->last_write_ms + r->cfg.max_stream_s * 1000;
    atomic_fetch_add(&r->shared->streams_open, 1);
    r->state = REQUEST_LIVE;
    loop_timer_arm(r->shared->loop, &r->timer, next_due(r));
    start_stream(r, &s);
}

/* A request object for conn, in shared->open. NULL when out of memory (conn is then
 * answered 503 and freed). */
static struct request *
request_new(struct conn *conn, struct stream_shared *shared, bool has_slot)
{
    struct request *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        log_line(LOG_LEVEL_ERROR, "error status=503 reason=out_of_memory");
        static const char NO_MEMORY[] = "Status: 503 Service Unavailable\r\nRetry-After: 2\r\n"
                                        "Content-Type: application/json\r\n\r\n"
                                        "{\"error\": \"out of memory\"}\n";
        conn_append(conn, NO_MEMORY, sizeof(NO_MEMORY) - 1);
        conn_end(conn);
        conn_flush(conn, wait_now_ms());
        conn_free(conn);
        if (shared->on_done != NULL)
            shared->on_done(shared, has_slot);
        return NULL;
    }
    r->conn = conn;
    conn->owner = r;
    conn->io.on_event = on_io;
    r->shared = shared;
    r->has_slot = has_slot;
    r->lv.end_ms = INT64_MAX;
    store_batch_init(&r->lv.batch);
    r->timer.on_due = on_timer;
    r->wake_task.run = on_wake_task;
    r->free_task.run = free_request;
    buf_init(&r->out, STREAM_OUT_MAX);
    snprintf(r->log_subject, sizeof(r->log_subject), "session=-");
    r->next = shared->open;
    if (shared->open != NULL)
        shared->open->prev = r;
    shared->open = r;
    shared->open_count++;
    return r;
}

void
stream_serve(struct conn *conn, struct stream_shared *shared, bool has_slot)
{
    struct request *r = request_new(conn, shared, has_slot);
    if (r == NULL)
        return;
    if (load_config(r) == 0 && parse_request(r) == 0) {
        r->cors_origin = http_cors_origin(r->cfg.cors_origin, param(r, "HTTP_ORIGIN"));
        set_channel(r);
        if (r->route.kind == ROUTE_HEALTH)
            serve_health(r);
        else
            serve_stream(r);
    }
    if (r->state == REQUEST_ANSWERING)
        finish(r);
}

bool
stream_needs_slot(const struct conn *conn)
{
    const char *method = conn_param(conn, "REQUEST_METHOD");
    if (method == NULL || strcmp(method, "GET") != 0)
        return false;  /* HEAD sends the head alone; any other method gets 405 */
    char path[PARAMS_PATH_MAX];
    struct route route;
    struct query query;
    const char *why = NULL;
    return params_request_path(conn_param(conn, "REQUEST_URI"), conn_param(conn, "SCRIPT_NAME"),
                               conn_param(conn, "PATH_INFO"), path, sizeof(path)) == 0
           && params_match_route(path, &route, &why) == 0 && route.kind != ROUTE_HEALTH
           && params_parse_query(conn_param(conn, "QUERY_STRING"), &query, &why) == 0;
}

void
stream_reject_busy(struct conn *conn, struct stream_shared *shared)
{
    struct request *r = request_new(conn, shared, false);
    if (r == NULL)
        return;
    r->cors_origin = http_cors_origin(setting(conn, "SSE_CORS_ORIGIN"),
                                      conn_param(conn, "HTTP_ORIGIN"));
    const char *method = conn_param(conn, "REQUEST_METHOD");
    r->is_head = method != NULL && strcmp(method, "HEAD") == 0;
    const char *why = NULL;
    if (params_parse_query(conn_param(conn, "QUERY_STRING"), &r->query, &why) < 0)
        r->query = (struct query){0};  /* only its last_event_id= is wanted here */
    log_line(LOG_LEVEL_WARN, "warning busy status=503 reason=no_free_stream_slot");
    respond_unavailable(r, true, "no free stream slot in this process; retry");
    finish(r);
}

void
stream_shutdown_all(struct stream_shared *shared)
{
    struct request *next;
    for (struct request *r = shared->open; r != NULL; r = next) {
        next = r->next;
        end_stream(r, END_SHUTDOWN);
    }
}
