/*
 * request.c - one request: its settings, method, route and query, access, the answers that
 * are not a stream (errors, health, refusals), and its life in the event loop.
 *
 * A request is validated completely before any byte is sent: method (405), route (404/400),
 * query (400), database (503), session (404), access (401/403). Health is answered here; a
 * stream route goes to stream_serve (stream.c). Every answer goes into the conn's output
 * (conn.h) without a system call and is written by request_write_out; a response that the
 * socket has not taken in full when it ends waits in REQUEST_ENDING, watched for EPOLLOUT,
 * until it is written, the client is gone, or it takes nothing for SSE_SLOW_CLIENT_S. A
 * request is freed at the end of the loop's turn, since events of that turn may still name
 * it.
 */
#include "request.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "../store/wait.h"
#include "auth.h"
#include "http.h"
#include "log.h"
#include "request_internal.h"
#include "sse.h"

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

const char *
request_param(const struct request *r, const char *name)
{
    return conn_param(r->conn, name);
}

/* Hands what r->out holds to the conn's output (written at the end of the round). Returns
 * 0, or -1 when the conn is broken. */
int
request_flush_out(struct request *r)
{
    if (r->out.len == 0)
        return r->conn->is_broken ? -1 : 0;
    int rc = conn_append(r->conn, r->out.bytes, r->out.len);
    buf_reset(&r->out);
    return rc < 0 ? -1 : 0;
}

void
request_respond_error(struct request *r, int status, const char *message)
{
    buf_reset(&r->out);
    int retry_after_s = status == 503 ? REQUEST_RETRY_AFTER_S : 0;
    if (http_append_error(&r->out, status, message, retry_after_s, r->cors_origin,
                          !r->is_head) == 0)
        request_flush_out(r);
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
 * after REQUEST_RETRY_AFTER_S. Everyone else (HEAD, health, curl) gets the honest 503. The
 * caller has logged the refusal. */
void
request_respond_unavailable(struct request *r, bool is_stream_route, const char *message)
{
    if (r->is_head || !is_stream_route || !is_sse_client(r->conn)) {
        request_respond_error(r, 503, message);
        return;
    }
    int64_t cursor = 0;
    bool has_cursor = client_cursor(r->conn, &r->query, &cursor);
    buf_reset(&r->out);
    if (http_append_stream_head(&r->out, r->cors_origin) == 0
        && sse_append_refusal(&r->out, REQUEST_RETRY_AFTER_S * 1000L, has_cursor, cursor,
                              message) == 0)
        request_flush_out(r);
}

/* Logs and answers a failure of store_open/lookup with the SPEC §5 status. */
void
request_respond_store_error(struct request *r, int rc, const char *detail)
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
                request_respond_unavailable(r, r->route.kind != ROUTE_HEALTH, MAP[i].message);
            else
                request_respond_error(r, MAP[i].status, MAP[i].message);
            return;
        }
    }
    log_line(LOG_LEVEL_ERROR, "error status=503 %s detail=\"%s\"", r->log_subject, detail);
    request_respond_unavailable(r, r->route.kind != ROUTE_HEALTH, "database unavailable");
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
        if (request_param(r, name) != NULL
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
        request_respond_error(r, 503, message);
        return -1;
    }
    config_copy_per_process(&r->cfg, &r->shared->process);
    return 0;
}

/* Method, route and query (SPEC §3, §5). Returns 0 when the request may go on. */
static int
parse_request(struct request *r)
{
    const char *method = request_param(r, "REQUEST_METHOD");
    r->is_head = method != NULL && strcmp(method, "HEAD") == 0;
    if (method == NULL || (strcmp(method, "GET") != 0 && !r->is_head)) {
        char clean[16];
        log_line(LOG_LEVEL_INFO, "error status=405 method=%s",
                 log_clean(method, clean, sizeof(clean)));
        request_respond_error(r, 405, "method not allowed: use GET or HEAD");
        return -1;
    }
    char path[PARAMS_PATH_MAX];
    const char *why = "no such route";
    int rc = params_request_path(request_param(r, "REQUEST_URI"), request_param(r, "SCRIPT_NAME"),
                                 request_param(r, "PATH_INFO"), path, sizeof(path));
    if (rc == 0)
        rc = params_match_route(path, &r->route, &why);
    if (rc == 0 && r->route.kind != ROUTE_HEALTH)
        rc = params_parse_query(request_param(r, "QUERY_STRING"), &r->query, &why);
    else if (rc == 0 && params_parse_query(request_param(r, "QUERY_STRING"), &r->query, &why) < 0)
        r->query.session_id = NULL;  /* health answers whatever its query (session_id=) */
    if (rc == 0)
        return 0;
    char clean[LOG_VALUE_MAX];
    int status = rc == PARAMS_NOT_FOUND ? 404 : 400;
    log_line(LOG_LEVEL_INFO, "error status=%d path=%s reason=\"%s\"", status,
             log_clean(path, clean, sizeof(clean)), why);
    request_respond_error(r, status, why);
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

int
request_open_store(struct request *r, struct store **st)
{
    if (r->cfg.db_path == NULL) {
        log_line(LOG_LEVEL_ERROR, "error status=503 %s reason=\"SSE_DB is not set\"",
                 r->log_subject);
        request_respond_error(r, 503, "SSE_DB is not set");
        return -1;
    }
    char detail[512];
    int rc = store_open(r->cfg.db_path, REQUEST_BUSY_TIMEOUT_MS, st, detail, sizeof(detail));
    if (rc < 0) {
        request_respond_store_error(r, rc, detail);
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
struct hub *
request_hub(const struct request *r)
{
    struct hub_options opt = {.poll_ms = r->cfg.poll_ms, .shutdown_fd = r->shared->shutdown_fd,
                              .frame = sse_event_json, .dir = r->cfg.hub_dir, .log = log_hub};
    return hub_get(r->cfg.db_path, &opt);
}

static void
serve_health(struct request *r)
{
    struct store *st = NULL;
    if (request_open_store(r, &st) < 0)
        return;
    struct health_facts facts = {.streams_open = atomic_load(&r->shared->streams_open)};
    struct hub *h = request_hub(r);
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
    struct store_relay_state rs;
    struct health_relay relay;
    if (rc == 0 && (rc = store_relay_state(st, &rs)) == 1) {
        relay = (struct health_relay){
            .state = rs.state, .position = rs.position, .upstream_newest = rs.upstream_newest,
            .seconds_in_state = rs.seconds_in_state,
            .copied_at = rs.has_copied_at ? rs.copied_at : NULL, .detail = rs.detail,
        };
        facts.relay = &relay;
        rc = 0;
    }
    if (rc < 0) {
        request_respond_store_error(r, rc, store_errmsg(st));
    } else if (http_append_health(&r->out, &facts, r->cors_origin, !r->is_head) == 0) {
        request_flush_out(r);
    }
    store_close(st);
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
int
request_authorize(struct request *r, struct store *st)
{
    if (r->cfg.auth_mode == AUTH_MODE_NONE)
        return 0;
    char credential[AUTH_CREDENTIAL_MAX];
    const char *token = auth_credential(r->query.token, request_param(r, "HTTP_COOKIE"),
                                        request_param(r, "HTTP_AUTHORIZATION"), credential,
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
            request_respond_store_error(r, rc, store_errmsg(st));
            return -1;
        }
        v = auth_check_token(token, stored, count);
    } else {
        unsigned char secret[JWT_SECRET_MAX];
        long secret_len = jwt_secret(r, secret, sizeof(secret));
        if (secret_len < 0) {
            log_line(LOG_LEVEL_ERROR, "error status=503 %s reason=\"SSE_JWT_SECRET_FILE "
                     "unreadable or empty\"", r->log_subject);
            request_respond_error(r, 503, "authentication is not configured");
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
    request_respond_error(r, auth_status(v), auth_reason(v));
    return -1;
}

bool
request_is_shutting_down(const struct request *r)
{
    return atomic_load(&r->shared->is_shutting_down);
}

/* What the request's descriptor is watched for: the client leaving (FastCGI: EOF or an
 * abort record on the socket; CGI: only EPOLLERR/EPOLLHUP, which always come), and
 * EPOLLOUT while output waits. */
uint32_t
request_watched_events(const struct request *r, bool is_waiting)
{
    uint32_t events = r->conn->is_fastcgi ? EPOLLIN | EPOLLRDHUP : 0;
    return is_waiting ? events | EPOLLOUT : events;
}

int64_t
request_slow_limit_ms(const struct request *r)
{
    return (r->cfg.slow_client_s > 0 ? r->cfg.slow_client_s : 30) * 1000;  /* 0: no config */
}

/* The request's earliest deadline: the stream's while it lives, else the end of a response
 * nobody takes. */
static int64_t
next_due(const struct request *r)
{
    if (r->state == REQUEST_LIVE)
        return stream_next_due(r);
    return r->conn->last_progress_ms + request_slow_limit_ms(r);
}

/* Arms the timer for the earliest deadline when that is sooner than where it stands. A
 * later one is left: the timer moves itself when it fires (loop.h, "lazy"). */
void
request_arm_timer(struct request *r)
{
    int64_t due = next_due(r);
    if (r->timer.heap_slot == 0 || due < r->timer.due_ms)
        loop_timer_arm(r->shared->loop, &r->timer, due);
}

/* Writes what the conn holds; watches for EPOLLOUT while some waits. Returns 0, or -1 when
 * the client is gone. */
int
request_write_out(struct request *r)
{
    if (request_flush_out(r) < 0)
        return -1;
    buf_release(&r->out);  /* between rounds a stream keeps no buffer (memory per stream) */
    int rc = conn_flush(r->conn, wait_now_ms());
    if (rc < 0)
        return -1;
    if (r->is_watched)
        loop_io_modify(r->shared->loop, &r->conn->io, request_watched_events(r, rc == 1));
    /* output that began to wait: the slow-client limit; output that drained after
     * waiting: its keepalive, due before that limit */
    request_arm_timer(r);
    return 0;
}

/* Frees what is left of a request once this turn of the loop is over (events of the same
 * turn may still name it). */
static void
free_request(struct loop_task *t)
{
    struct request *r = REQUEST_OF(t, free_task);
    conn_free(r->conn);  /* its loop_io too: an event of this turn may still name it */
    free(r);
}

/* The request is over: everything it holds is given back, now. */
void
request_retire(struct request *r)
{
    struct request_shared *shared = r->shared;
    r->state = REQUEST_DONE;
    loop_timer_disarm(shared->loop, &r->timer);
    if (r->is_watched)
        loop_io_remove(shared->loop, &r->conn->io);
    r->is_watched = false;
    stream_release(r);
    loop_task_cancel(shared->loop, &r->wake_task);  /* after the unsubscribe: none comes */
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

/* The request's socket: the stream's while it lives, else the end of a response waiting to
 * be written. */
static void
on_io(struct loop_io *io, uint32_t events)
{
    struct conn *conn = (struct conn *)((char *)io - offsetof(struct conn, io));
    struct request *r = conn->owner;
    if (r->state == REQUEST_DONE || !r->is_watched)
        return;
    if (r->state == REQUEST_LIVE) {
        stream_on_io(r, events);
        return;
    }
    bool is_gone = (events & (EPOLLERR | EPOLLHUP))
                   || (conn->is_fastcgi && (events & (EPOLLIN | EPOLLRDHUP))
                       && conn_peer_left(conn));
    if (is_gone || ((events & EPOLLOUT) && request_write_out(r) < 0)
        || conn_waiting(conn) == 0)
        request_retire(r);
}

static void
on_timer(struct loop_timer *t)
{
    struct request *r = REQUEST_OF(t, timer);
    if (r->state == REQUEST_LIVE) {
        stream_on_timer(r);
    } else if (r->state == REQUEST_ENDING) {
        if (conn_waiting(r->conn) > 0
            && wait_now_ms() >= r->conn->last_progress_ms + request_slow_limit_ms(r))
            request_retire(r);  /* the end of a response nobody reads */
        else
            request_arm_timer(r);
    }
}

/* The response is complete: its end is written, and the request freed once the socket has
 * taken it all (or the client is found gone, or takes nothing for the slow-client limit). */
void
request_finish(struct request *r)
{
    request_flush_out(r);
    conn_end(r->conn);
    int rc = conn_flush(r->conn, wait_now_ms());
    if (rc != 1) {
        request_retire(r);
        return;
    }
    r->state = REQUEST_ENDING;
    uint32_t events = request_watched_events(r, true);
    int err = r->is_watched ? loop_io_modify(r->shared->loop, &r->conn->io, events)
                            : loop_io_add(r->shared->loop, &r->conn->io, events);
    if (err < 0) {
        request_retire(r);
        return;
    }
    r->is_watched = true;
    loop_timer_arm(r->shared->loop, &r->timer, next_due(r));
}

/* A request object for conn, in shared->open. NULL when out of memory (conn is then
 * answered 503 and freed). */
static struct request *
request_new(struct conn *conn, struct request_shared *shared, bool has_slot)
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
request_serve(struct conn *conn, struct request_shared *shared, bool has_slot)
{
    struct request *r = request_new(conn, shared, has_slot);
    if (r == NULL)
        return;
    if (load_config(r) == 0 && parse_request(r) == 0) {
        r->cors_origin = http_cors_origin(r->cfg.cors_origin, request_param(r, "HTTP_ORIGIN"));
        set_channel(r);
        if (r->route.kind == ROUTE_HEALTH)
            serve_health(r);
        else
            stream_serve(r);
    }
    if (r->state == REQUEST_ANSWERING)
        request_finish(r);
}

bool
request_needs_slot(const struct conn *conn)
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
request_reject_busy(struct conn *conn, struct request_shared *shared)
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
    request_respond_unavailable(r, true, "no free stream slot in this process; retry");
    request_finish(r);
}

void
request_shutdown_all(struct request_shared *shared)
{
    struct request *next;
    for (struct request *r = shared->open; r != NULL; r = next) {
        next = r->next;
        stream_end_for_shutdown(r);
    }
}
