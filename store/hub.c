/*
 * hub.c - one watcher per host and database (see hub.h): the public API, the
 * subscriptions and how they are woken, the rows (the private ring, or the shared one)
 * and the watcher thread that reads the new rows of the database. The shared file is
 * store/hub_file.c, the link between the processes of a host store/hub_link.c; what the
 * three share, and the locks they take, is in store/hub_internal.h.
 */
#define _GNU_SOURCE  /* pthread_rwlock_t under -std=c11 */

#include "hub.h"
#include "hub_internal.h"

#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ring.h"
#include "shring.h"
#include "wait.h"

enum {
    HUB_BUSY_TIMEOUT_MS = 2000,     /* SQLite busy timeout of the hub's connections */
    HUB_BUSY_RETRY_MS = 10,         /* a writer held a lock past it: read again this soon */
    HUB_SWEEP_MS = 10000,           /* every session's closed flag read again this often */
};

static pthread_mutex_t hubs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hub *hubs;

enum hub_role
hub_role_of(const struct hub *h)
{
    return (enum hub_role)atomic_load(&h->role);
}

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
hub_chain_insert(struct hub *h, struct hub_sub *sub)
{
    struct hub_sub **head = chain_of(h, sub);
    sub->woken_round = sub->checked_round = 0;
    atomic_init(&sub->is_session_closed, false);
    sub->next = *head;
    *head = sub;
}

void
hub_chain_remove(struct hub *h, struct hub_sub *sub)
{
    struct hub_sub **link = chain_of(h, sub);
    while (*link != NULL && *link != sub)
        link = &(*link)->next;
    if (*link == sub)
        *link = sub->next;
}

/* The subscription whose number is id in table (slots from 1), or NULL. */
struct hub_sub *
hub_sub_of_id(struct hub_sub *const *table, size_t cap, uint32_t id)
{
    size_t slot = id & LINK_SLOT_MASK;
    struct hub_sub *s = slot != 0 && slot <= cap ? table[slot - 1] : NULL;
    return s != NULL && s->link_id == id ? s : NULL;
}

int
hub_table_reserve(struct hub_sub ***table, size_t *cap, size_t slots)
{
    if (slots <= *cap)
        return 0;
    size_t grown_cap = *cap ? *cap : 16;
    while (grown_cap < slots)
        grown_cap *= 2;
    struct hub_sub **grown = realloc(*table, grown_cap * sizeof(*grown));
    if (grown == NULL)
        return -1;
    memset(grown + *cap, 0, (grown_cap - *cap) * sizeof(*grown));
    *table = grown;
    *cap = grown_cap;
    return 0;
}

/* Gives sub a number in this process (its slot in by_id and a generation). */
static int
number_sub(struct hub *h, struct hub_sub *sub)
{
    size_t i = 0;
    while (i < h->by_id_cap && h->by_id[i] != NULL)
        i++;
    if (i >= LINK_SLOT_MASK || hub_table_reserve(&h->by_id, &h->by_id_cap, i + 1) < 0)
        return -1;
    h->by_id[i] = sub;
    uint32_t generation = h->next_generation++ & (LINK_CLOSED_BIT - 1) >> LINK_GENERATION_SHIFT;
    sub->link_id = (uint32_t)(i + 1) | generation << LINK_GENERATION_SHIFT;
    return 0;
}

void
hub_wake_local(struct hub_sub *sub)
{
    if (sub->wake != NULL) {
        sub->wake(sub);
        return;
    }
    uint64_t one = 1;
    ssize_t n = write(sub->wake_fd, &one, sizeof(one));
    (void)n;  /* EAGAIN: the counter is full, so the stream is awake anyway */
}

static bool is_shared(const struct hub *h);

/* The newest row read before sub could be woken for it: hub_skip_quiet vouches for no row
 * up to it (the ring may even have started after the stream's snapshot). INT64_MAX where
 * this process reads no rows, or has not read the table yet. With subs_lock held and sub
 * in its chain, so that every row after it is looked at for sub. */
static int64_t
joined_through_now(struct hub *h)
{
    if (hub_role_of(h) == HUB_ROLE_FOLLOWER)
        return INT64_MAX;
    if (is_shared(h))
        return shring_is_known(&h->shring) ? shring_newest(&h->shring) : INT64_MAX;
    pthread_rwlock_rdlock(&h->ring_lock);
    int64_t newest = h->ring.is_known ? h->ring.newest : INT64_MAX;
    pthread_rwlock_unlock(&h->ring_lock);
    return newest;
}

void
hub_subscribe(struct hub *h, struct hub_sub *sub)
{
    pthread_mutex_lock(&h->subs_lock);
    atomic_store(&sub->last_own_id, 0);
    atomic_store(&sub->quiet_through, 0);
    hub_chain_insert(h, sub);
    sub->joined_through = joined_through_now(h);
    sub->link = NULL;
    if (number_sub(h, sub) < 0)
        sub->link_id = 0;  /* no number: woken at its keepalive only */
    h->local_subs++;
    if (hub_role_of(h) == HUB_ROLE_LEADER)
        hub_file_count_change(h, sub, 1);
    else if (sub->link_id != 0)
        hub_link_send_sub(h, sub);
    pthread_mutex_unlock(&h->subs_lock);
}

void
hub_unsubscribe(struct hub *h, struct hub_sub *sub)
{
    pthread_mutex_lock(&h->subs_lock);
    hub_chain_remove(h, sub);
    if (hub_sub_of_id(h->by_id, h->by_id_cap, sub->link_id) == sub)
        h->by_id[(sub->link_id & LINK_SLOT_MASK) - 1] = NULL;
    h->local_subs--;
    if (hub_role_of(h) == HUB_ROLE_LEADER)
        hub_file_count_change(h, sub, -1);
    else if (sub->link_id != 0)
        hub_link_send_unsub(h, sub);
    pthread_mutex_unlock(&h->subs_lock);
}

/* --- Waking -------------------------------------------------------------------------- */

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

/* The first row of sub's channel in this round: if the stream had dealt with every row of
 * its channel the hub read since it subscribed (the largest of them, last_own_id, and the
 * rounds before the subscription, joined_through, are at or before its published cursor),
 * then rows up to the end of the last round hold none of its channel. consumed may be
 * older than the stream's cursor, never newer, so the claim holds for the cursor too. */
static void
note_quiet(const struct hub *h, struct hub_sub *s)
{
    int64_t own = atomic_load_explicit(&s->last_own_id, memory_order_relaxed);
    int64_t from = own > s->joined_through ? own : s->joined_through;
    int64_t through = atomic_load_explicit(&h->round_through, memory_order_relaxed);
    if (from <= atomic_load_explicit(&s->consumed, memory_order_relaxed) && through > from)
        atomic_store_explicit(&s->quiet_through, through, memory_order_relaxed);
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
            if (s->woken_round != h->round)
                note_quiet(h, s);  /* before this round's rows count as its own */
            if (e->id > atomic_load_explicit(&s->last_own_id, memory_order_relaxed))
                atomic_store_explicit(&s->last_own_id, e->id, memory_order_relaxed);
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
            if (is_closed && !atomic_load(&s->is_session_closed)) {
                atomic_store(&s->is_session_closed, true);
                mark(h, s);  /* every stream of the session, not only sub's */
            }
        }
    }
}

/* Wakes every marked subscription: its eventfd in this process, its link elsewhere. */
static void
wake_marked(struct hub *h)
{
    for (size_t i = 0; i < h->marked_count; i++) {
        struct hub_sub *s = h->marked[i];
        if (s->link == NULL)
            hub_wake_local(s);
        else
            hub_link_queue(s->link, s);
    }
    for (struct hub_link *link = h->links; link != NULL; link = link->next) {
        if (link->pending_count > 0 || link->is_wake_all_owed)
            hub_link_flush(link);
    }
}

/* Wakes the streams that have a row in batch; every stream when it is empty (a commit
 * without rows may have closed sessions). Session flags are read before any stream is
 * woken, so a woken stream sees them. */
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
    if (batch->count > 0)  /* the end of this round, for the next one's note_quiet */
        atomic_store_explicit(&h->round_through, batch->events[batch->count - 1].id,
                              memory_order_relaxed);
    for (size_t i = 0; i < h->marked_count; i++)
        check_closed(h, st, h->marked[i]);
    wake_marked(h);
    pthread_mutex_unlock(&h->subs_lock);
}

/* A transaction that closes a session and adds rows only to other sessions wakes nobody
 * of that session: every HUB_SWEEP_MS the closed flag of every open session stream is read
 * again, and the streams whose session closed are woken. A round that read no row (a
 * session closed, rows pruned, a commit an earlier read took: is_empty_round) does the
 * same, and wakes the other processes' streams as before; it used to wake every stream,
 * which made make bench's b and g p99 (issue 13: 1 % of the rounds, over 80 % of the
 * wakeups), and streams that get a row every few seconds keep their place in the hub's
 * memory through hub_skip_quiet instead. */
static void
sweep_closed(struct hub *h, struct store *st, bool is_empty_round)
{
    pthread_mutex_lock(&h->subs_lock);
    h->round++;
    h->marked_count = 0;
    for (size_t b = 0; b < HUB_BUCKETS; b++) {
        for (struct hub_sub *s = h->buckets[b]; s != NULL; s = s->next) {
            check_closed(h, st, s);  /* marks the streams of a session it finds closed */
            if (is_empty_round && s->link != NULL)
                mark(h, s);
        }
    }
    for (struct hub_sub *s = h->global_subs; s != NULL && is_empty_round; s = s->next) {
        if (s->link != NULL)
            mark(h, s);
    }
    wake_marked(h);
    pthread_mutex_unlock(&h->subs_lock);
}

/* --- The rows: the private ring, or the shared one ----------------------------------- */

static bool
is_shared(const struct hub *h)
{
    return h->shared != NULL;
}

static int64_t
rows_newest(const struct hub *h)
{
    return is_shared(h) ? shring_newest(&h->shring) : h->ring.newest;
}

static bool
rows_is_known(const struct hub *h)
{
    return is_shared(h) ? shring_is_known(&h->shring) : h->ring.is_known;
}

static void
rows_restart(struct hub *h, bool is_known, int64_t newest)
{
    if (is_shared(h))
        shring_restart(&h->shring, is_known, newest);
    if (atomic_load(&h->has_ring)) {
        pthread_rwlock_wrlock(&h->ring_lock);
        ring_restart(&h->ring, is_known, newest);
        pthread_rwlock_unlock(&h->ring_lock);
    }
}

/* Puts the batch's rows into the ring (the private one takes references of its own). */
static void
rows_append(struct hub *h, const struct store_batch *batch)
{
    if (is_shared(h))
        shring_append(&h->shring, batch);
    if (atomic_load(&h->has_ring)) {
        pthread_rwlock_wrlock(&h->ring_lock);
        ring_append(&h->ring, batch);
        pthread_rwlock_unlock(&h->ring_lock);
    }
}

void
hub_start_own_ring(struct hub *h)
{
    if (atomic_load(&h->has_ring) || ring_init(&h->ring, HUB_RING_ROWS, HUB_RING_BYTES) < 0)
        return;  /* without it, the leader's streams copy from the mapping as the others do */
    ring_restart(&h->ring, shring_is_known(&h->shring), shring_newest(&h->shring));
    atomic_store(&h->has_ring, true);
}

/* --- The watcher --------------------------------------------------------------------- */

/* The database file the watcher last opened. */
static bool
file_identity(const struct hub *h, dev_t *dev, ino_t *ino)
{
    if (!is_shared(h)) {
        *dev = h->db_dev;
        *ino = h->db_ino;
        return h->has_file;
    }
    *dev = (dev_t)atomic_load(&h->shared->db_dev);
    *ino = (ino_t)atomic_load(&h->shared->db_ino);
    return atomic_load(&h->shared->has_file) != 0;
}

static void
set_file_identity(struct hub *h, dev_t dev, ino_t ino)
{
    if (!is_shared(h)) {
        h->db_dev = dev;
        h->db_ino = ino;
        h->has_file = true;
        return;
    }
    atomic_store(&h->shared->db_dev, (uint64_t)dev);
    atomic_store(&h->shared->db_ino, (uint64_t)ino);
    atomic_store(&h->shared->has_file, 1);
}

/* Builds the frame of every row some stream of the host subscribes to, once for all of
 * them (the rows are the watcher's alone until they are in the ring). A row without a
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
        char *frame = is_wanted ? h->opt.frame(&row->event, &len) : NULL;
        if (frame != NULL)
            store_row_set_frame(row, frame, len);  /* NULL: too large or no memory */
    }
}

/* Sleeps up to ms, or less when the process is told to stop. Returns true on shutdown. */
bool
hub_pause_or_shutdown(const struct hub *h, long ms)
{
    struct pollfd p = {.fd = h->opt.shutdown_fd, .events = POLLIN};
    return poll(&p, 1, (int)ms) > 0;
}

/* The database file was removed, replaced or restored: forget its rows, and wake every
 * stream, which ends (what it sent may not be in the new file). With is_known the ring
 * starts again at newest, the new file's newest id. */
static void
forget_database(struct hub *h, bool is_known, int64_t newest, bool is_restore)
{
    rows_restart(h, is_known, newest);
    if (is_shared(h)) {
        atomic_store(&h->shared->restored_newest, is_restore ? newest : -1);
        atomic_fetch_add(&h->shared->generation, 1);
    } else {
        atomic_store(&h->restored_newest, is_restore ? newest : -1);
        atomic_fetch_add(&h->generation, 1);
    }
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
        if (rc == 0 && (rc = store_newest_id(st, &newest)) == 0 && newest < rows_newest(h))
            forget_database(h, true, newest, true);  /* restored in place: same file */
        if (rc == 0)
            rc = store_events_after(st, &all, rows_newest(h), HUB_READ_ROWS, HUB_READ_BYTES,
                                    batch);
        if (rc == 0) {
            frame_subscribed_rows(h, batch);
            rows_append(h, batch);  /* in the ring before anyone is woken to copy them */
            if (batch->count > 0)
                wake_for(h, st, batch);  /* the batch still holds its rows */
            else if (!has_rows)
                sweep_closed(h, st, true);  /* no row: a closed session is all it can be */
        }
        if (is_reading)
            store_read_end(st);
        if (rc == STORE_ERR_BUSY) {
            if (hub_pause_or_shutdown(h, HUB_BUSY_RETRY_MS))
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
    dev_t dev;
    ino_t ino;
    return file_identity(h, &dev, &ino) && stat(h->db_path, &sb) == 0 && sb.st_dev == dev
           && sb.st_ino == ino;
}

/* Opens the watcher's connection and learns where the table ends. A file other than the
 * one read before (a new inode), or one whose newest id is older, is a new database; a
 * new leader finds what the one before it read in the shared file and goes on from it. */
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
    struct wait_options opt = {.poll_ms = h->opt.poll_ms, .client_fd = -1,
                               .shutdown_fd = h->opt.shutdown_fd};
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
    dev_t dev;
    ino_t ino;
    bool had_file = file_identity(h, &dev, &ino);
    bool is_other_file = had_file && (before.st_dev != dev || before.st_ino != ino);
    set_file_identity(h, before.st_dev, before.st_ino);
    if (rows_is_known(h) && (is_other_file || newest < rows_newest(h)))
        forget_database(h, true, newest, !is_other_file);
    else if (!rows_is_known(h)) {  /* the first open, or the file is back: no stream */
        rows_restart(h, true, newest);  /* has sent a row of it since it joined */
        struct store_batch none;
        store_batch_init(&none);
        wake_for(h, *st, &none);  /* streams that read the file meanwhile come back */
    }
    return 0;
}

void *
hub_watcher_main(void *arg)
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
                if (hub_pause_or_shutdown(h, h->opt.poll_ms))
                    break;
                continue;
            }
            read_new_rows(h, st, &batch);  /* what was committed while it was closed */
        }
        /* The deadline: every poll_ms, check that the file is still the one we read. */
        enum wait_result r = wait_for_change(w, wait_now_ms() + h->opt.poll_ms);
        if (r == WAIT_SHUTDOWN)
            break;
        if (wait_now_ms() >= next_sweep_ms) {
            sweep_closed(h, st, false);
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

int
hub_start_thread(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

/* --- The hub ------------------------------------------------------------------------- */

void
hub_log(const struct hub *h, bool is_warning, const char *fmt, ...)
{
    char line[PATH_MAX + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (h->opt.log != NULL)
        h->opt.log(is_warning, line);
}

static struct hub *
hub_create(const char *db_path, const struct hub_options *opt)
{
    struct hub *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->db_path = strdup(db_path);
    h->opt = *opt;
    h->opt.dir = strdup(opt->dir != NULL ? opt->dir : "off");
    h->file_fd = h->link_fd = -1;
    atomic_init(&h->restored_newest, -1);
    pthread_rwlock_init(&h->ring_lock, NULL);
    pthread_mutex_init(&h->subs_lock, NULL);
    pthread_mutex_init(&h->big_lock, NULL);
    if (h->db_path == NULL || h->opt.dir == NULL)
        goto fail;
    const char *why = "SSE_HUB_DIR=off";
    if (strcmp(h->opt.dir, "off") != 0 && hub_file_map_shared(h, &why) == 0) {
        atomic_init(&h->role, HUB_ROLE_FOLLOWER);
        hub_link_try_lead(h);  /* the link thread follows when another process leads */
        if (hub_start_thread(hub_link_main, h) == 0)
            return h;
        why = "no thread for the link";  /* closing the file gives the lock back */
        munmap(h->shared, h->map_bytes);
        close(h->file_fd);
        h->shared = NULL;
        if (atomic_exchange(&h->has_ring, false))
            ring_release(&h->ring);  /* a leader's own ring, begun by hub_link_try_lead */
    }
    hub_log(h, strcmp(why, "SSE_HUB_DIR=off") != 0, "hub=private db=%s reason=\"%s\"",
            h->db_path, why);
    atomic_store(&h->role, HUB_ROLE_PRIVATE);
    bool has_ring = ring_init(&h->ring, HUB_RING_ROWS, HUB_RING_BYTES) == 0;
    atomic_store(&h->has_ring, has_ring);
    if (has_ring && hub_start_thread(hub_watcher_main, h) == 0)
        return h;
    ring_release(&h->ring);
fail:
    free(h->db_path);
    free((char *)h->opt.dir);
    free(h);
    return NULL;
}

struct hub *
hub_get(const char *db_path, const struct hub_options *opt)
{
    pthread_mutex_lock(&hubs_lock);
    struct hub *h = hubs;
    while (h != NULL && strcmp(h->db_path, db_path) != 0)
        h = h->next_hub;
    if (h == NULL && (h = hub_create(db_path, opt)) != NULL) {
        h->next_hub = hubs;
        hubs = h;
    }
    pthread_mutex_unlock(&hubs_lock);
    return h;
}

/* A row the ring keeps as a stub (too large for it), read once per process for all its
 * streams, and framed once: the last one is kept (a stream that came late shares it). */
static struct store_row *
load_big_row(void *ctx, int64_t id)
{
    static const struct store_channel all = {STORE_SCOPE_ALL, NULL};
    struct hub *h = ctx;
    pthread_mutex_lock(&h->big_lock);
    if (h->big_row == NULL || h->big_row->event.id != id) {
        struct store *st = NULL;
        struct store_batch batch;
        store_batch_init(&batch);
        char err[256];
        if (store_open(h->db_path, HUB_BUSY_TIMEOUT_MS, &st, err, sizeof(err)) == 0
            && store_events_after(st, &all, id - 1, 1, SIZE_MAX, &batch) == 0
            && batch.count == 1 && batch.rows[0]->event.id == id) {
            struct store_row *row = store_row_ref(batch.rows[0]);
            size_t len = 0;
            char *frame = row->event.is_oversized ? NULL : h->opt.frame(&row->event, &len);
            if (frame != NULL)
                store_row_set_frame(row, frame, len);
            store_row_unref(h->big_row);
            h->big_row = row;
        }
        store_batch_release(&batch);
        store_close(st);
    }
    struct store_row *row = h->big_row != NULL && h->big_row->event.id == id
                                ? store_row_ref(h->big_row) : NULL;
    pthread_mutex_unlock(&h->big_lock);
    return row;
}

int
hub_copy_after(struct hub *h, const struct store_channel *ch, int64_t after_id,
               size_t max_rows, size_t max_bytes, struct store_batch *out,
               int64_t *scanned_through, int64_t *newest_id)
{
    if (atomic_load(&h->has_ring)) {
        pthread_rwlock_rdlock(&h->ring_lock);
        *newest_id = h->ring.newest;
        int rc = ring_copy_after(&h->ring, ch, after_id, max_rows, max_bytes, out,
                                 scanned_through);
        pthread_rwlock_unlock(&h->ring_lock);
        if (rc != 0 || !is_shared(h))
            return rc;  /* else older than the leader's own ring: the mapping may have it */
    }
    if (is_shared(h)) {
        if (!atomic_load(&h->is_attached)) {
            store_batch_clear(out);
            *scanned_through = after_id;
            *newest_id = 0;
            return 0;  /* no leader has formatted the file yet: the database has them */
        }
        *newest_id = shring_newest(&h->shring);
        return shring_copy_after(&h->shring, ch, after_id, max_rows, max_bytes, out,
                                 scanned_through, load_big_row, h);
    }
    return 0;  /* a private hub whose ring could not be had: never */
}

void
hub_skip_quiet(const struct hub_sub *sub, int64_t *cursor)
{
    int64_t quiet = atomic_load_explicit(&sub->quiet_through, memory_order_relaxed);
    if (quiet > *cursor)
        *cursor = quiet;  /* a fact whenever it was written: the cursor only moves on */
}

void
hub_publish_cursor(struct hub_sub *sub, int64_t cursor)
{
    atomic_store_explicit(&sub->consumed, cursor, memory_order_relaxed);
}


unsigned long
hub_generation(struct hub *h, int64_t *restored_newest)
{
    if (is_shared(h)) {
        if (!atomic_load(&h->is_attached)) {
            *restored_newest = -1;
            return 0;
        }
        unsigned long generation =
            (unsigned long)(atomic_load(&h->shared->generation) - h->generation_base);
        *restored_newest = atomic_load(&h->shared->restored_newest);
        return generation;
    }
    unsigned long generation = atomic_load(&h->generation);
    *restored_newest = atomic_load(&h->restored_newest);
    return generation;
}

/* Whether the shared file's counts can be read: a leader has formatted it (this process
 * may not have reached the leader yet: a health request in a new process). */
static bool
is_counted(const struct hub *h)
{
    return is_shared(h) && atomic_load(&h->shared->magic) == HUB_SHARED_MAGIC
           && h->shared->version == HUB_SHARED_VERSION;
}

void
hub_get_facts(struct hub *h, struct hub_facts *out)
{
    out->role = hub_role_of(h);
    bool is_host_wide = is_counted(h);
    out->leader_pid = is_host_wide ? atomic_load(&h->shared->leader_pid) : 0;
    pthread_mutex_lock(&h->subs_lock);
    out->subscribers = h->local_subs;
    pthread_mutex_unlock(&h->subs_lock);
    if (is_host_wide)
        out->subscribers = (long)atomic_load(&h->shared->subscribers);
}

long
hub_session_subscribers(struct hub *h, const char *session_id)
{
    if (is_counted(h))
        return hub_file_count_read(h->shared, session_id);
    long count = 0;
    pthread_mutex_lock(&h->subs_lock);
    for (struct hub_sub *s = h->buckets[bucket_of(session_id, strlen(session_id))]; s;
         s = s->next)
        count += s->scope == STORE_SCOPE_SESSION && strcmp(s->key, session_id) == 0;
    pthread_mutex_unlock(&h->subs_lock);
    return count;
}
