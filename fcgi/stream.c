/*
 * stream.c - a request's event stream: replay or resume, then live (see stream.h).
 *
 * Before any byte is sent the first rows are read, so that a closed session with nothing
 * left can still be answered 204 (SPEC §4.9).
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

#include "../store/wait.h"
#include "http.h"
#include "log.h"
#include "request_internal.h"
#include "sse.h"

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
    /* A round reads at most this many batches before it lets the loop serve others. */
    STREAM_BATCHES_PER_TURN = 4,
    /* lighttpd closes its backend connections and signals the backend microseconds apart;
     * a stream that saw the close first is still ending because of the shutdown. 20 ms
     * covers that gap and keeps a real disconnect well inside SPEC §4.10's 0.1 s. */
    STREAM_GONE_GRACE_MS = 20,
};

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
    const char *header = request_param(r, "HTTP_LAST_EVENT_ID");
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
    return request_flush_out(r) < 0 || conn_append(r->conn, bytes, len) < 0 ? -1 : 0;
}

/* Puts the head of e's frame (with json, the whole frame) into r->out, flushing first when
 * it is full or has no room. Returns 0, -1 when the client is gone, 1 when the head alone
 * is larger than STREAM_OUT_MAX (an event: line of a hand-edited type). */
static int
place_frame(struct request *r, const struct event *e, const char *json, size_t len)
{
    if (r->out.len >= STREAM_FLUSH_BYTES && request_flush_out(r) < 0)
        return -1;
    if (sse_append_frame(&r->out, e, r->query.is_named, json, len) == 0)
        return 0;
    if (request_flush_out(r) < 0)
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
                         : request_flush_out(r) < 0 ? -1 : conn_append_shared(r->conn, row, json, len)) < 0
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
 * notice of SPEC §4.3. On a node of a shared log (a relay writes relay_state) such an id
 * is one another node served before this node's relay copied it: the stream waits there. */
static int
check_beyond_newest(struct live *lv, int64_t after_id, struct start *s)
{
    int64_t newest = 0;
    int rc = store_newest_id(lv->st, &newest);
    struct store_relay_state relay;
    if (rc == 0 && after_id > newest && (rc = store_relay_state(lv->st, &relay)) == 1) {
        lv->is_ahead_of_relay = true;
        return 0;
    }
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

/* Hands r->out to the conn and restarts the timers it resets. Returns 0 or
 * -END_CLIENT_DISCONNECTED. */
static int
send_now(struct request *r, struct live *lv, bool is_beat)
{
    if (r->out.len == 0)
        return 0;
    if (request_flush_out(r) < 0)
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
        int rc = store_open(r->cfg.db_path, REQUEST_BUSY_TIMEOUT_MS, &lv->st, err, sizeof(err));
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
        && store_open(r->cfg.db_path, REQUEST_BUSY_TIMEOUT_MS, &lv->st, err, sizeof(err)) < 0)
        return 0;  /* it will be checked at the next wakeup */
    if (store_newest_id(lv->st, file_newest) < 0)
        return 0;
    return *file_newest < lv->cursor && !lv->is_ahead_of_relay ? -1 : 0;
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
    if (!lv->is_session_closed)
        hub_skip_quiet(&lv->sub, &lv->cursor);
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
    hub_publish_cursor(&lv->sub, lv->cursor);
    log_replayed(r, lv);
    if (lv->batch.is_full)
        return 0;
    return lv->is_session_closed ? -END_SESSION_CLOSED : 1;
}

void
stream_release(struct request *r)
{
    struct live *lv = &r->lv;
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

/* Opens the store, checks the session, loads the policy and the first rows. Returns 0, or
 * -1 after answering the request. */
static int
prepare_stream(struct request *r, struct live *lv, struct start *s)
{
    if (request_open_store(r, &lv->st) < 0 || request_authorize(r, lv->st) < 0)
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
        request_respond_store_error(r, rc, store_errmsg(lv->st));
        return -1;
    }
    return 0;
}

/* Ends a live stream: its last bytes, its log line, then the end of the response. */
static void
stream_end(struct request *r, enum end_reason reason)
{
    if (r->state != REQUEST_LIVE)
        return;
    r->state = REQUEST_ENDING;
    atomic_fetch_sub(&r->shared->streams_open, 1);
    request_flush_out(r);
    log_line(LOG_LEVEL_INFO, "disconnected %s events_sent=%ld shed=%ld reason=%s",
             r->log_subject, r->lv.events_sent, r->lv.shed, END_REASONS[reason]);
    if (r->lv.is_subscribed) {
        hub_unsubscribe(r->lv.hub, &r->lv.sub);
        r->lv.is_subscribed = false;
    }
    if (reason == END_CLIENT_DISCONNECTED || reason == END_SLOW_CLIENT)
        request_retire(r);  /* nobody reads what is left */
    else
        request_finish(r);
}

/* Writes the output; a stream parked with less than half its mark still waiting (the
 * socket took it) reads on at the end of this turn. Returns 0, or -1 when the client is
 * gone. */
static int
write_and_unpark(struct request *r)
{
    if (request_write_out(r) < 0)
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
            stream_end(r, (enum end_reason)-rc);
            return;
        }
    }
    if (wait_now_ms() >= lv->end_ms) {
        stream_end(r, END_MAX_STREAM_TIME);
        return;
    }
    if (write_and_unpark(r) < 0) {
        stream_client_gone(r);
        return;
    }
    if (rc == 0)
        loop_defer(r->shared->loop, &r->wake_task);  /* more to read: after the others */
    else if (rc == 1)
        store_batch_release(&lv->batch);  /* caught up: no rows held, no arrays kept */
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
void
stream_client_gone(struct request *r)
{
    if (r->state != REQUEST_LIVE) {
        request_retire(r);
        return;
    }
    if (request_is_shutting_down(r)) {
        stream_end(r, END_SHUTDOWN);
        return;
    }
    if (r->is_watched)
        loop_io_remove(r->shared->loop, &r->conn->io);
    r->is_watched = false;
    r->is_client_gone = true;
    loop_timer_arm(r->shared->loop, &r->timer, wait_now_ms() + STREAM_GONE_GRACE_MS);
}

/* The socket of a live stream: the client gone, or room to write. */
void
stream_on_io(struct request *r, uint32_t events)
{
    if ((events & (EPOLLERR | EPOLLHUP))
        || (r->conn->is_fastcgi && (events & (EPOLLIN | EPOLLRDHUP))
            && conn_peer_left(r->conn))) {
        stream_client_gone(r);
        return;
    }
    if ((events & EPOLLOUT) && write_and_unpark(r) < 0)
        stream_client_gone(r);
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
    if (send_now(r, lv, is_beat) < 0 || request_write_out(r) < 0)
        return -END_CLIENT_DISCONNECTED;
    return 0;
}

void
stream_on_timer(struct request *r)
{
    int64_t now = wait_now_ms();
    if (r->is_client_gone) {
        stream_end(r, request_is_shutting_down(r) ? END_SHUTDOWN : END_CLIENT_DISCONNECTED);
        return;
    }
    if (now >= r->lv.end_ms) {
        stream_end(r, END_MAX_STREAM_TIME);
        return;
    }
    if (conn_waiting(r->conn) > 0 && now >= r->conn->last_progress_ms + request_slow_limit_ms(r)) {
        stream_end(r, END_SLOW_CLIENT);
        return;
    }
    int rc = send_beat(r, now);
    if (rc == -END_CLIENT_DISCONNECTED) {
        stream_client_gone(r);
        return;
    }
    if (rc < 0) {
        stream_end(r, (enum end_reason)-rc);
        return;
    }
    loop_timer_arm(r->shared->loop, &r->timer, stream_next_due(r));
}

int64_t
stream_next_due(const struct request *r)
{
    const struct live *lv = &r->lv;
    if (r->is_client_gone)
        return r->timer.due_ms;  /* armed for the end of its grace */
    int64_t due = lv->end_ms;
    if (conn_waiting(r->conn) > 0)
        return earliest(due, r->conn->last_progress_ms + request_slow_limit_ms(r));
    due = earliest(due, lv->last_beat_ms + r->cfg.keepalive_s * 1000);
    return lv->probe_ms > 0 ? earliest(due, lv->last_write_ms + lv->probe_ms) : due;
}

/* Subscribes the stream to the process's watcher of its database and puts its socket in
 * the loop; the stream's own connection is closed, the hub's memory and shared connection
 * serve it from now on. */
static int
join_hub(struct request *r, struct live *lv)
{
    lv->hub = request_hub(r);
    int err = 0;
    if (lv->hub != NULL) {
        err = loop_io_add(r->shared->loop, &r->conn->io, request_watched_events(r, false));
        /* EPERM: CGI's stdout is a file epoll cannot watch; it is written, never watched */
        r->is_watched = err == 0;
    }
    if (lv->hub == NULL || (err < 0 && err != -EPERM)) {
        log_line(LOG_LEVEL_ERROR, "error status=503 %s reason=\"no thread or descriptor for "
                 "the watcher\"", r->log_subject);
        request_respond_unavailable(r, true, "out of resources");
        return -1;
    }
    lv->sub = (struct hub_sub){.scope = r->channel.scope, .key = r->channel.key,
                               .wake = on_hub_wake, .wake_fd = -1, .consumed = lv->cursor};
    r->wake_task.run = on_wake_task;
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
        stream_end(r, END_ERROR_OOM);
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
        stream_end(r, (enum end_reason)-rc);
        return;
    }
    log_replayed(r, lv);
    if (!lv->is_parked && !lv->batch.is_full && lv->cursor < lv->replay_until)
        lv->cursor = lv->replay_until;  /* the window is done: go live from its snapshot */
    log_replayed(r, lv);
    if (lv->is_parked) {
        store_batch_clear(&lv->batch);
        if (write_and_unpark(r) < 0)
            stream_client_gone(r);
        return;
    }
    pump(r);
}

/* Answers the request with its stream, or with the response that replaces it (an error,
 * 204, HEAD's head). */
void
stream_serve(struct request *r)
{
    struct live *lv = &r->lv;
    struct start s = {0};
    if (prepare_stream(r, lv, &s) < 0)
        return;
    if (lv->is_session_closed && s.sendable == 0 && !lv->batch.is_full) {
        log_line(LOG_LEVEL_INFO, "no content %s reason=session_closed", r->log_subject);
        if (http_append_no_content(&r->out, r->cors_origin) == 0)
            request_flush_out(r);
        return;
    }
    if (r->is_head) {
        if (http_append_stream_head(&r->out, r->cors_origin) == 0)
            request_flush_out(r);
        return;
    }
    if (join_hub(r, lv) < 0)
        return;
    lv->probe_ms = config_probe_ms(&r->cfg, request_param(r, "SERVER_SOFTWARE"), !r->conn->is_fastcgi);
    lv->last_write_ms = lv->last_beat_ms = wait_now_ms();
    if (r->cfg.max_stream_s > 0)
        lv->end_ms = lv->last_write_ms + r->cfg.max_stream_s * 1000;
    atomic_fetch_add(&r->shared->streams_open, 1);
    r->state = REQUEST_LIVE;
    loop_timer_arm(r->shared->loop, &r->timer, stream_next_due(r));
    start_stream(r, &s);
}

void
stream_end_for_shutdown(struct request *r)
{
    stream_end(r, END_SHUTDOWN);
}
