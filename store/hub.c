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
    atomic_ulong generation;        /* +1 each time the file is found gone or replaced */

    pthread_rwlock_t ring_lock;
    struct event *ring;             /* HUB_RING_ROWS slots, oldest at ring_head */
    char **ring_blocks;             /* the row block each slot's strings live in */
    uint32_t *ring_session_hash;    /* key_hash of each row's session_id and stream_id: */
    uint32_t *ring_stream_hash;     /* a stream skips other channels' rows without strcmp */
    size_t ring_head, ring_count, ring_bytes;
    int64_t base;                   /* every row with base < id <= newest is in the ring */
    int64_t newest;
    bool is_reading;                /* base/newest are known: the first read happened */

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

/* Marks the subscriptions of chain whose scope is scope and key is text[0..len). */
static void
mark_matching(struct hub *h, struct hub_sub *chain, enum store_scope scope, const char *text,
              size_t len)
{
    for (struct hub_sub *s = chain; s != NULL; s = s->next) {
        if (s->scope == scope && strlen(s->key) == len && memcmp(s->key, text, len) == 0)
            mark(h, s);
    }
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
    bool has_global_row = batch->count == 0;
    for (size_t i = 0; i < batch->count && !has_global_row; i++)
        has_global_row = batch->events[i].session_id == NULL;
    for (struct hub_sub *s = h->global_subs; s != NULL && has_global_row; s = s->next)
        mark(h, s);
    for (size_t i = 0; i < batch->count; i++) {
        const struct event *e = &batch->events[i];
        if (e->session_id != NULL) {
            size_t len = strlen(e->session_id);
            mark_matching(h, h->buckets[bucket_of(e->session_id, len)], STORE_SCOPE_SESSION,
                          e->session_id, len);
        }
        if (e->stream_id != NULL)
            mark_matching(h, h->buckets[bucket_of(e->stream_id, e->stream_id_len)],
                          STORE_SCOPE_WORKER, e->stream_id, e->stream_id_len);
    }
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

static size_t
row_bytes(const struct event *e)
{
    return e->type_len + e->stream_id_len + e->node_id_len + e->execution_id_len + e->data_len
           + e->correlation_id_len + e->colony_id_len + e->run_id_len + 256;
}

static void
evict_oldest(struct hub *h)
{
    struct event *e = &h->ring[h->ring_head];
    h->base = e->id;
    h->ring_bytes -= row_bytes(e);
    free(h->ring_blocks[h->ring_head]);
    h->ring_head = (h->ring_head + 1) % HUB_RING_ROWS;
    h->ring_count--;
}

/* Gives the batch's rows to the ring. The batch still points at them until the caller
 * forgets them: only this thread evicts, so they stay valid until its next append. */
static void
append_rows(struct hub *h, struct store_batch *batch)
{
    pthread_rwlock_wrlock(&h->ring_lock);
    for (size_t i = 0; i < batch->count; i++) {
        size_t bytes = row_bytes(&batch->events[i]);
        while (h->ring_count > 0
               && (h->ring_count == HUB_RING_ROWS || h->ring_bytes + bytes > HUB_RING_BYTES))
            evict_oldest(h);
        size_t slot = (h->ring_head + h->ring_count) % HUB_RING_ROWS;
        const struct event *e = &batch->events[i];
        h->ring[slot] = *e;
        h->ring_blocks[slot] = batch->row_blocks[i];
        h->ring_session_hash[slot] = key_hash(e->session_id,
                                              e->session_id ? strlen(e->session_id) : 0);
        h->ring_stream_hash[slot] = key_hash(e->stream_id, e->stream_id_len);
        h->ring_count++;
        h->ring_bytes += bytes;
        h->newest = batch->events[i].id;
    }
    pthread_rwlock_unlock(&h->ring_lock);
}

/* Sleeps up to ms, or less when the process is told to stop. Returns true on shutdown. */
static bool
pause_or_shutdown(const struct hub *h, long ms)
{
    struct pollfd p = {.fd = h->shutdown_fd, .events = POLLIN};
    return poll(&p, 1, (int)ms) > 0;
}

/* Reads every row after h->newest into the ring and wakes their streams. Returns 0, or a
 * store error (the connection is then reopened). */
static int
read_new_rows(struct hub *h, struct store *st, struct store_batch *batch)
{
    static const struct store_channel all = {STORE_SCOPE_ALL, NULL};
    bool has_rows = false;
    for (;;) {
        /* The rows and the closed flags wake_for reads come from one snapshot. */
        int rc = store_read_begin(st);
        if (rc == 0) {
            rc = store_events_after(st, &all, h->newest, HUB_READ_ROWS, SIZE_MAX, batch);
            if (rc == 0) {
                append_rows(h, batch);  /* in the ring before anyone is woken to copy them */
                if (batch->count > 0 || !has_rows)
                    wake_for(h, st, batch);
            }
            store_read_end(st);
        }
        if (rc == STORE_ERR_BUSY) {
            if (pause_or_shutdown(h, HUB_BUSY_RETRY_MS))
                return 0;
            continue;
        }
        if (rc < 0)
            return rc;
        bool is_full = batch->is_full;
        has_rows = has_rows || batch->count > 0;
        store_batch_forget_rows(batch);
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

/* The database file was removed or replaced: forget its rows and connections, and wake
 * every stream, which ends (its rows may not be the new file's rows). */
static void
forget_database(struct hub *h)
{
    pthread_rwlock_wrlock(&h->ring_lock);
    while (h->ring_count > 0)
        evict_oldest(h);
    h->base = h->newest = 0;
    h->is_reading = false;
    pthread_rwlock_unlock(&h->ring_lock);
    atomic_fetch_add(&h->generation, 1);
    struct store_batch none;
    store_batch_init(&none);
    wake_for(h, NULL, &none);
}

/* Opens the watcher's connection and learns where the table ends. */
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
    h->db_dev = before.st_dev;
    h->db_ino = before.st_ino;
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
    pthread_rwlock_wrlock(&h->ring_lock);
    if (!h->is_reading || newest < h->newest) {  /* first open, or a new database file */
        while (h->ring_count > 0)
            evict_oldest(h);
        h->base = h->newest = newest;
        h->is_reading = true;
    }
    pthread_rwlock_unlock(&h->ring_lock);
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
            forget_database(h);
    }
    wait_close(w);
    store_close(st);
    store_batch_release(&batch);
    return NULL;
}

static struct hub *
hub_create(const char *db_path, long poll_ms, int shutdown_fd)
{
    struct hub *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->db_path = strdup(db_path);
    h->ring = calloc(HUB_RING_ROWS, sizeof(*h->ring));
    h->ring_blocks = calloc(HUB_RING_ROWS, sizeof(*h->ring_blocks));
    h->ring_session_hash = calloc(HUB_RING_ROWS, sizeof(*h->ring_session_hash));
    h->ring_stream_hash = calloc(HUB_RING_ROWS, sizeof(*h->ring_stream_hash));
    h->poll_ms = poll_ms;
    h->shutdown_fd = shutdown_fd;
    pthread_rwlock_init(&h->ring_lock, NULL);
    pthread_mutex_init(&h->subs_lock, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    bool is_ok = h->db_path && h->ring && h->ring_blocks && h->ring_session_hash
                 && h->ring_stream_hash && pthread_create(&thread, &attr, hub_main, h) == 0;
    pthread_attr_destroy(&attr);
    if (!is_ok) {
        free(h->db_path);
        free(h->ring);
        free(h->ring_blocks);
        free(h->ring_session_hash);
        free(h->ring_stream_hash);
        free(h);
        return NULL;
    }
    return h;
}

struct hub *
hub_get(const char *db_path, long poll_ms, int shutdown_fd)
{
    pthread_mutex_lock(&hubs_lock);
    struct hub *h = hubs;
    while (h != NULL && strcmp(h->db_path, db_path) != 0)
        h = h->next_hub;
    if (h == NULL && (h = hub_create(db_path, poll_ms, shutdown_fd)) != NULL) {
        h->next_hub = hubs;
        hubs = h;
    }
    pthread_mutex_unlock(&hubs_lock);
    return h;
}

/* Whether ring slot's row belongs to ch; channel_hash is key_hash of ch->key. */
static bool
is_in_channel(const struct hub *h, size_t slot, const struct store_channel *ch,
              uint32_t channel_hash)
{
    const struct event *e = &h->ring[slot];
    switch (ch->scope) {
    case STORE_SCOPE_SESSION:
        return h->ring_session_hash[slot] == channel_hash && e->session_id != NULL
               && strcmp(e->session_id, ch->key) == 0;
    case STORE_SCOPE_WORKER:
        return h->ring_stream_hash[slot] == channel_hash && e->stream_id != NULL
               && e->stream_id_len == strlen(ch->key)
               && memcmp(e->stream_id, ch->key, e->stream_id_len) == 0;
    case STORE_SCOPE_GLOBAL:
        return e->session_id == NULL;
    default:
        return true;
    }
}

/* Index (0 = oldest) of the first ring row with id > after_id; ring_count when none. */
static size_t
first_after(const struct hub *h, int64_t after_id)
{
    size_t lo = 0, hi = h->ring_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h->ring[(h->ring_head + mid) % HUB_RING_ROWS].id <= after_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int
hub_copy_after(struct hub *h, const struct store_channel *ch, int64_t after_id,
               size_t max_rows, size_t max_bytes, struct store_batch *out,
               int64_t *scanned_through, int64_t *newest_id)
{
    store_batch_clear(out);
    pthread_rwlock_rdlock(&h->ring_lock);
    *newest_id = h->newest;
    *scanned_through = after_id;
    if (!h->is_reading || after_id < h->base) {
        pthread_rwlock_unlock(&h->ring_lock);
        return 0;
    }
    size_t bytes = 0;
    int rc = 1;
    uint32_t channel_hash = ch->key ? key_hash(ch->key, strlen(ch->key)) : 0;
    for (size_t i = first_after(h, after_id); i < h->ring_count; i++) {
        size_t slot = (h->ring_head + i) % HUB_RING_ROWS;
        const struct event *e = &h->ring[slot];
        if (out->count >= max_rows || bytes >= max_bytes) {
            out->is_full = true;
            break;
        }
        *scanned_through = e->id;
        if (!is_in_channel(h, slot, ch, channel_hash))
            continue;
        long n = store_batch_add_copy(out, e);
        if (n < 0) {
            rc = -1;
            break;
        }
        bytes += (size_t)n;
    }
    pthread_rwlock_unlock(&h->ring_lock);
    return rc;
}

unsigned long
hub_generation(struct hub *h)
{
    return atomic_load(&h->generation);
}
