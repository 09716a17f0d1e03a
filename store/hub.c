/*
 * hub.c - one watcher per process and database (see hub.h).
 *
 * Locks: ring_lock (a rwlock) guards the ring and newest/base; subs_lock guards the
 * subscription table. The watcher never holds both at once, and streams hold ring_lock only
 * while they copy rows, never while they write to a client.
 */
#define _GNU_SOURCE  /* pthread_rwlock_t under -std=c11 */

#include "hub.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ring.h"
#include "wait.h"

enum {
    HUB_BUCKETS = 1024,             /* subscription hash table */
    HUB_BUSY_TIMEOUT_MS = 2000,     /* SQLite busy timeout of the hub's connections */
    HUB_BUSY_RETRY_MS = 10,         /* a writer held a lock past it: read again this soon */
    HUB_SWEEP_MS = 10000,           /* every session's closed flag read again this often */
};

struct hub {
    struct hub *next_hub;           /* the process's list of hubs, one per database */
    char *db_path;                  /* owned */
    long poll_ms;
    int shutdown_fd;
    dev_t db_dev;                   /* the file the watcher opened: a different one at */
    ino_t db_ino;                   /* db_path means the database was replaced */
    bool has_file;                  /* db_dev/db_ino are set */
    atomic_ulong generation;        /* +1 each time the file is found gone or replaced */
    _Atomic int64_t restored_newest; /* with the last +1: newest id of a restored file, or -1 */

    pthread_rwlock_t ring_lock;
    struct ring ring;               /* guarded by ring_lock; only the watcher changes it */
    hub_frame_fn frame;             /* builds a row's frame once, for every stream */

    pthread_mutex_t subs_lock;
    struct hub_sub *buckets[HUB_BUCKETS]; /* SESSION and WORKER subscriptions by key */
    struct hub_sub *global_subs;    /* GLOBAL subscriptions */
    unsigned long round;            /* read rounds; one wakeup per subscription each */
    struct hub_sub **marked;        /* the subscriptions this round wakes */
    size_t marked_count, marked_cap;
};

static pthread_mutex_t hubs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hub *hubs;

/* FNV-1a: keys are short ids. 0 stands for NULL. */
static uint32_t
key_hash(const char *key, size_t len)
{
    if (key == NULL)
        return 0;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    return h != 0 ? h : 1;
}

static size_t
bucket_of(const char *key, size_t len)
{
    return key_hash(key, len) % HUB_BUCKETS;
}

/* The chain a subscription belongs in. */
static struct hub_sub **
chain_of(struct hub *h, const struct hub_sub *sub)
{
    return sub->scope == STORE_SCOPE_GLOBAL ? &h->global_subs
                                            : &h->buckets[bucket_of(sub->key, strlen(sub->key))];
}

void
hub_subscribe(struct hub *h, struct hub_sub *sub)
{
    pthread_mutex_lock(&h->subs_lock);
    struct hub_sub **head = chain_of(h, sub);
    sub->woken_round = sub->checked_round = 0;
    atomic_init(&sub->is_session_closed, false);
    sub->next = *head;
    *head = sub;
    pthread_mutex_unlock(&h->subs_lock);
}

void
hub_unsubscribe(struct hub *h, struct hub_sub *sub)
{
    pthread_mutex_lock(&h->subs_lock);
    struct hub_sub **link = chain_of(h, sub);
    while (*link != NULL && *link != sub)
        link = &(*link)->next;
    if (*link == sub)
        *link = sub->next;
    pthread_mutex_unlock(&h->subs_lock);
}

/* Marks sub to be woken this round (once). */
static void
mark(struct hub *h, struct hub_sub *sub)
{
    if (sub->woken_round == h->round)
        return;
    if (h->marked_count == h->marked_cap) {
        size_t cap = h->marked_cap ? 2 * h->marked_cap : 64;
        struct hub_sub **grown = realloc(h->marked, cap * sizeof(*grown));
        if (grown == NULL)
            return;  /* that stream wakes at its next keepalive instead */
        h->marked = grown;
        h->marked_cap = cap;
    }
    sub->woken_round = h->round;
    h->marked[h->marked_count++] = sub;
}

/* Whether sub's channel holds e: the same rule as the database's queries. */
static bool
is_subscribed_to(const struct hub_sub *sub, const struct event *e)
{
    struct store_channel ch = {sub->scope, sub->key};
    return store_event_in_channel(e, &ch);
}

/* The subscriptions whose channel holds e: marked to be woken (is_marking), or only
 * counted. Returns whether there is one. Called with subs_lock held. */
static bool
mark_subscribers(struct hub *h, const struct event *e, bool is_marking)
{
    bool has_any = false;
    struct hub_sub *chains[3] = {h->global_subs, NULL, NULL};
    if (e->session_id != NULL)
        chains[1] = h->buckets[bucket_of(e->session_id, e->session_id_len)];
    if (e->stream_id != NULL)
        chains[2] = h->buckets[bucket_of(e->stream_id, e->stream_id_len)];
    for (size_t c = 0; c < 3; c++) {
        for (struct hub_sub *s = chains[c]; s != NULL; s = s->next) {
            if (!is_subscribed_to(s, e))
                continue;
            has_any = true;
            if (!is_marking)
                return true;
            mark(h, s);
        }
    }
    return has_any;
}

/* Reads the closed flag of sub's session (once per session and round) into every
 * subscription of that session. A session that is gone counts as closed. */
static void
check_closed(struct hub *h, struct store *st, struct hub_sub *sub)
{
    if (st == NULL || sub->scope != STORE_SCOPE_SESSION || sub->checked_round == h->round
        || atomic_load(&sub->is_session_closed))
        return;
    bool is_closed = false;
    int rc = store_session_lookup(st, sub->key, &is_closed);
    is_closed = is_closed || rc == STORE_ERR_NOT_FOUND;
    for (struct hub_sub *s = h->buckets[bucket_of(sub->key, strlen(sub->key))]; s; s = s->next) {
        if (s->scope == STORE_SCOPE_SESSION && strcmp(s->key, sub->key) == 0) {
            s->checked_round = h->round;
            if (is_closed)
                atomic_store(&s->is_session_closed, true);
        }
    }
}

/* Wakes the streams that have a row in batch; every stream when it is empty (a commit
 * without rows may have closed sessions). Session flags are read before any eventfd is
 * written, so a woken stream sees them. */
static void
wake_for(struct hub *h, struct store *st, const struct store_batch *batch)
{
    pthread_mutex_lock(&h->subs_lock);
    h->round++;
    h->marked_count = 0;
    if (batch->count == 0) {
        for (size_t b = 0; b < HUB_BUCKETS; b++) {
            for (struct hub_sub *s = h->buckets[b]; s != NULL; s = s->next)
                mark(h, s);
        }
    }
    for (struct hub_sub *s = h->global_subs; s != NULL && batch->count == 0; s = s->next)
        mark(h, s);
    for (size_t i = 0; i < batch->count; i++)
        mark_subscribers(h, &batch->events[i], true);
    for (size_t i = 0; i < h->marked_count; i++)
        check_closed(h, st, h->marked[i]);
    uint64_t one = 1;
    for (size_t i = 0; i < h->marked_count; i++) {
        ssize_t n = write(h->marked[i]->wake_fd, &one, sizeof(one));
        (void)n;  /* EAGAIN: the counter is full, so the stream is awake anyway */
    }
    pthread_mutex_unlock(&h->subs_lock);
}

/* A transaction that closes a session and adds rows only to other sessions wakes nobody
 * of that session: every HUB_SWEEP_MS the closed flag of every open session stream is read
 * again, and the streams whose session closed are woken. */
static void
sweep_closed(struct hub *h, struct store *st)
{
    pthread_mutex_lock(&h->subs_lock);
    h->round++;
    uint64_t one = 1;
    for (size_t b = 0; b < HUB_BUCKETS; b++) {
        for (struct hub_sub *s = h->buckets[b]; s != NULL; s = s->next) {
            bool was_closed = atomic_load(&s->is_session_closed);
            check_closed(h, st, s);
            if (!was_closed && atomic_load(&s->is_session_closed)) {
                ssize_t n = write(s->wake_fd, &one, sizeof(one));
                (void)n;
            }
        }
    }
    pthread_mutex_unlock(&h->subs_lock);
}

/* Builds the frame of every row some stream of this process subscribes to, once for all
 * of them (the rows are the watcher's alone until they are in the ring). A row without a
 * subscriber is framed by whoever reads it later, if anyone does. */
static void
frame_subscribed_rows(struct hub *h, struct store_batch *batch)
{
    for (size_t i = 0; i < batch->count; i++) {
        struct store_row *row = batch->rows[i];
        pthread_mutex_lock(&h->subs_lock);
        bool is_wanted = !row->event.is_oversized && mark_subscribers(h, &row->event, false);
        pthread_mutex_unlock(&h->subs_lock);
        size_t len = 0;
        char *frame = is_wanted ? h->frame(&row->event, &len) : NULL;
        if (frame != NULL)
            store_row_set_frame(row, frame, len);  /* NULL: too large or no memory */
    }
}

/* Puts the batch's rows into the ring (which takes references of its own). */
static void
append_rows(struct hub *h, const struct store_batch *batch)
{
    pthread_rwlock_wrlock(&h->ring_lock);
    ring_append(&h->ring, batch);
    pthread_rwlock_unlock(&h->ring_lock);
}

/* Sleeps up to ms, or less when the process is told to stop. Returns true on shutdown. */
static bool
pause_or_shutdown(const struct hub *h, long ms)
{
    struct pollfd p = {.fd = h->shutdown_fd, .events = POLLIN};
    return poll(&p, 1, (int)ms) > 0;
}

/* The database file was removed, replaced or restored: forget its rows, and wake every
 * stream, which ends (what it sent may not be in the new file). With is_known the ring
 * starts again at newest, the new file's newest id. */
static void
forget_database(struct hub *h, bool is_known, int64_t newest, bool is_restore)
{
    pthread_rwlock_wrlock(&h->ring_lock);
    ring_restart(&h->ring, is_known, newest);
    pthread_rwlock_unlock(&h->ring_lock);
    atomic_store(&h->restored_newest, is_restore ? newest : -1);
    atomic_fetch_add(&h->generation, 1);
    struct store_batch none;
    store_batch_init(&none);
    wake_for(h, NULL, &none);
}

/* Reads every row after the ring's newest into the ring and wakes their streams; a newest
 * id that went back is a database restored in place. Returns 0, or a store error (the
 * connection is then reopened). */
static int
read_new_rows(struct hub *h, struct store *st, struct store_batch *batch)
{
    static const struct store_channel all = {STORE_SCOPE_ALL, NULL};
    bool has_rows = false;
    for (;;) {
        /* The rows and the closed flags wake_for reads come from one snapshot. */
        int64_t newest = 0;
        int rc = store_read_begin(st);
        bool is_reading = rc == 0;
        if (rc == 0 && (rc = store_newest_id(st, &newest)) == 0 && newest < h->ring.newest)
            forget_database(h, true, newest, true);  /* restored in place: same file */
        if (rc == 0)
            rc = store_events_after(st, &all, h->ring.newest, HUB_READ_ROWS, HUB_READ_BYTES,
                                    batch);
        if (rc == 0) {
            frame_subscribed_rows(h, batch);
            append_rows(h, batch);  /* in the ring before anyone is woken to copy them */
            if (batch->count > 0 || !has_rows)
                wake_for(h, st, batch);  /* the batch still holds its rows */
        }
        if (is_reading)
            store_read_end(st);
        if (rc == STORE_ERR_BUSY) {
            if (pause_or_shutdown(h, HUB_BUSY_RETRY_MS))
                return 0;
            continue;
        }
        if (rc < 0)
            return rc;
        bool is_full = batch->is_full;
        has_rows = has_rows || batch->count > 0;
        store_batch_clear(batch);
        if (!is_full)
            return 0;
    }
}

/* True while db_path still names the file the watcher opened. */
static bool
is_same_file(const struct hub *h)
{
    struct stat sb;
    return stat(h->db_path, &sb) == 0 && sb.st_dev == h->db_dev && sb.st_ino == h->db_ino;
}

/* Opens the watcher's connection and learns where the table ends. A file other than the
 * one read before (a new inode), or one whose newest id is older, is a new database. */
static int
open_watcher(struct hub *h, struct store **st, struct waiter **w)
{
    char err[256];
    struct stat before, after;
    if (stat(h->db_path, &before) < 0)
        return STORE_ERR_MISSING;
    int rc = store_open(h->db_path, HUB_BUSY_TIMEOUT_MS, st, err, sizeof(err));
    if (rc == 0 && (stat(h->db_path, &after) < 0 || after.st_ino != before.st_ino
                    || after.st_dev != before.st_dev))
        rc = STORE_ERR_MISSING;  /* replaced while we opened it: try again */
    /* The waiter's data_version first, the newest id second: a commit between the two is
     * then both counted in newest and seen as a change, never neither (rows committed
     * after newest was read but before the version would wait for the next commit). */
    struct wait_options opt = {.poll_ms = h->poll_ms, .client_fd = -1,
                               .shutdown_fd = h->shutdown_fd};
    if (rc == 0)
        rc = wait_open(*st, h->db_path, &opt, w);
    int64_t newest = 0;
    if (rc == 0)
        rc = store_newest_id(*st, &newest);
    if (rc < 0) {
        wait_close(*w);
        *w = NULL;
        store_close(*st);
        *st = NULL;
        return rc;
    }
    bool is_other_file = h->has_file && (before.st_dev != h->db_dev
                                         || before.st_ino != h->db_ino);
    h->db_dev = before.st_dev;
    h->db_ino = before.st_ino;
    h->has_file = true;
    if (h->ring.is_known && (is_other_file || newest < h->ring.newest)) {
        forget_database(h, true, newest, !is_other_file);
    } else if (!h->ring.is_known) {  /* the first open, or the file is back: no stream */
        pthread_rwlock_wrlock(&h->ring_lock);  /* has sent a row of it since it joined */
        ring_restart(&h->ring, true, newest);
        pthread_rwlock_unlock(&h->ring_lock);
    }
    return 0;
}

static void *
hub_main(void *arg)
{
    struct hub *h = arg;
    struct store *st = NULL;
    struct waiter *w = NULL;
    struct store_batch batch;
    store_batch_init(&batch);
    int64_t next_sweep_ms = wait_now_ms() + HUB_SWEEP_MS;
    for (;;) {
        if (st == NULL) {
            if (open_watcher(h, &st, &w) < 0) {
                if (pause_or_shutdown(h, h->poll_ms))
                    break;
                continue;
            }
            read_new_rows(h, st, &batch);  /* what was committed while it was closed */
        }
        /* The deadline: every poll_ms, check that the file is still the one we read. */
        enum wait_result r = wait_for_change(w, wait_now_ms() + h->poll_ms);
        if (r == WAIT_SHUTDOWN)
            break;
        if (wait_now_ms() >= next_sweep_ms) {
            sweep_closed(h, st);
            next_sweep_ms = wait_now_ms() + HUB_SWEEP_MS;
        }
        bool is_gone = !is_same_file(h);
        if (!is_gone && r == WAIT_CHANGED && read_new_rows(h, st, &batch) == 0)
            continue;
        if (is_gone || r == WAIT_CHANGED || r == WAIT_ERROR) {  /* reopen after a pause */
            wait_close(w);
            store_close(st);
            w = NULL;
            st = NULL;
        }
        if (is_gone)
            forget_database(h, false, 0, false);
    }
    wait_close(w);
    store_close(st);
    store_batch_release(&batch);
    return NULL;
}

static struct hub *
hub_create(const char *db_path, long poll_ms, int shutdown_fd, hub_frame_fn frame)
{
    struct hub *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->db_path = strdup(db_path);
    h->poll_ms = poll_ms;
    h->shutdown_fd = shutdown_fd;
    h->frame = frame;
    atomic_init(&h->restored_newest, -1);
    pthread_rwlock_init(&h->ring_lock, NULL);
    pthread_mutex_init(&h->subs_lock, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    bool is_ok = h->db_path && ring_init(&h->ring, HUB_RING_ROWS, HUB_RING_BYTES) == 0
                 && pthread_create(&thread, &attr, hub_main, h) == 0;
    pthread_attr_destroy(&attr);
    if (!is_ok) {
        ring_release(&h->ring);
        free(h->db_path);
        free(h);
        return NULL;
    }
    return h;
}

struct hub *
hub_get(const char *db_path, long poll_ms, int shutdown_fd, hub_frame_fn frame)
{
    pthread_mutex_lock(&hubs_lock);
    struct hub *h = hubs;
    while (h != NULL && strcmp(h->db_path, db_path) != 0)
        h = h->next_hub;
    if (h == NULL && (h = hub_create(db_path, poll_ms, shutdown_fd, frame)) != NULL) {
        h->next_hub = hubs;
        hubs = h;
    }
    pthread_mutex_unlock(&hubs_lock);
    return h;
}

int
hub_copy_after(struct hub *h, const struct store_channel *ch, int64_t after_id,
               size_t max_rows, size_t max_bytes, struct store_batch *out,
               int64_t *scanned_through, int64_t *newest_id)
{
    pthread_rwlock_rdlock(&h->ring_lock);
    *newest_id = h->ring.newest;
    int rc = ring_copy_after(&h->ring, ch, after_id, max_rows, max_bytes, out,
                             scanned_through);
    pthread_rwlock_unlock(&h->ring_lock);
    return rc;
}

unsigned long
hub_generation(struct hub *h, int64_t *restored_newest)
{
    unsigned long generation = atomic_load(&h->generation);
    *restored_newest = atomic_load(&h->restored_newest);
    return generation;
}
