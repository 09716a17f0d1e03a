/*
 * hub.c - one watcher per host and database (see hub.h).
 *
 * Locks: ring_lock (a rwlock) guards the private ring; subs_lock guards the subscription
 * table, the links to followers (leader) and the link to the leader (follower). The
 * watcher never holds both at once, streams hold ring_lock only while they copy rows, and
 * nothing is ever written to a socket under subs_lock that could block: the leader's
 * writes are MSG_DONTWAIT, and a follower's have a send timeout after which its link is
 * dropped and built again.
 *
 * The shared mapping (one file, SSE_HUB_DIR/sse-fcgi-<uid>-<hash>-v1.hub) holds a small
 * header (struct hub_shared: generation, the database file's identity, leader pid,
 * subscriber counts) and then the ring (store/shring.c). Only the leader writes it, and
 * only while it holds flock on the file: a blocked flock passes on in under 0.3 ms when
 * its holder dies; flock is used, never a POSIX lock, since those vanish when a process
 * closes any descriptor of the file (DEPLOY-NOTES, "Leader election").
 *
 * The link: AF_UNIX SOCK_SEQPACKET, so each message arrives whole and a dead peer is an
 * end of file. Follower to leader: SUB (id, scope, key) and UNSUB (id). Leader to
 * follower: WAKE, a list of ids, each with the session's closed flag in its top bit, or
 * WAKE_ALL when a list could not be sent. On a SUB the leader wakes that subscription at
 * once: rows appended between the stream's first copy and the SUB are then not missed.
 */
#define _GNU_SOURCE  /* pthread_rwlock_t, accept4, flock under -std=c11 */

#include "hub.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ring.h"
#include "shring.h"
#include "wait.h"

enum {
    HUB_BUCKETS = 1024,             /* subscription hash table */
    HUB_BUSY_TIMEOUT_MS = 2000,     /* SQLite busy timeout of the hub's connections */
    HUB_BUSY_RETRY_MS = 10,         /* a writer held a lock past it: read again this soon */
    HUB_SWEEP_MS = 10000,           /* every session's closed flag read again this often */
    HUB_COUNT_SLOTS = 4096,         /* sessions whose streams are counted host-wide */
    HUB_RECONNECT_MS = 20,          /* a follower without a leader tries again this soon */
    HUB_SEND_TIMEOUT_MS = 1000,     /* a follower's SUB that waits longer drops the link */
    HUB_WAKE_IDS_MAX = 2048,        /* ids per WAKE message */
    HUB_SHARED_MAGIC = 0x53485542,  /* "SHUB" */
    HUB_SHARED_VERSION = 1,
    HUB_PAGE = 4096,
};

/* A subscription's number on its link: its slot in the follower's table (low 16 bits,
 * from 1) and a generation (15 bits), so that a slot used again is never taken for the
 * one before it (a WAKE in flight for a stream that ended must not reach the next one). */
#define LINK_SLOT_MASK 0xffffu
#define LINK_GENERATION_SHIFT 16
#define LINK_CLOSED_BIT 0x80000000u

enum link_kind { LINK_SUB = 1, LINK_UNSUB, LINK_WAKE, LINK_WAKE_ALL };

/* Every link message starts so; SUB's key follows, WAKE's count ids follow. */
struct link_head {
    uint8_t kind, scope;
    uint16_t key_len;
    uint32_t id;                    /* SUB, UNSUB: the subscription; WAKE: the id count */
};

struct hub_count {
    _Atomic uint64_t key_hash;      /* 0: empty slot */
    _Atomic int64_t count;
};

/* The head of the shared file. The ring follows at HUB_PAGE alignment. */
struct hub_shared {
    _Atomic uint32_t magic;         /* written last when the file is formatted */
    uint32_t version;
    _Atomic uint64_t generation;    /* as struct hub's, for every process */
    _Atomic int64_t restored_newest;
    _Atomic uint64_t db_dev, db_ino;  /* the file the leader's watcher opened */
    _Atomic uint32_t has_file;
    _Atomic int32_t leader_pid;
    _Atomic int64_t subscribers;    /* streams on the host, counted by the leader */
    _Atomic uint64_t counts_seq;    /* odd while the leader changes counts[] */
    struct hub_count counts[HUB_COUNT_SLOTS]; /* streams per session, by key hash */
};

/* The leader's side of one follower process. */
struct hub_link {
    int fd;
    struct hub_sub **subs;          /* by the follower's ids - 1; owned */
    size_t subs_cap;
    uint32_t *pending;              /* ids (and closed bits) to wake this round */
    size_t pending_count, pending_cap;
    bool is_wake_all_owed;          /* a WAKE could not be sent: send WAKE_ALL next */
    struct hub_link *next;
};

struct hub {
    struct hub *next_hub;           /* the process's list of hubs, one per database */
    char *db_path;                  /* owned */
    struct hub_options opt;         /* dir owned */
    _Atomic int role;               /* enum hub_role */

    /* Private hub only. */
    dev_t db_dev;                   /* the file the watcher opened: a different one at */
    ino_t db_ino;                   /* db_path means the database was replaced */
    bool has_file;                  /* db_dev/db_ino are set */
    atomic_ulong generation;        /* +1 each time the file is found gone or replaced */
    _Atomic int64_t restored_newest; /* with the last +1: newest id of a restored file, or -1 */
    pthread_rwlock_t ring_lock;
    struct ring ring;               /* guarded by ring_lock; only the watcher changes it */

    /* Shared hub only. */
    int file_fd;                    /* the mapped file; flock on it elects the leader */
    struct hub_shared *shared;      /* the mapping */
    size_t map_bytes;
    struct shring shring;           /* the ring in it */
    atomic_bool is_attached;        /* the mapping was formatted by a leader: usable */
    uint64_t generation_base;       /* shared->generation when this process attached */
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int link_fd;                    /* follower: the connection to the leader, or -1 */
    pthread_mutex_t big_lock;       /* guards big_row */
    struct store_row *big_row;      /* the last row too large for the ring that a stream
                                     * of this process read, framed: one copy for all */
    struct hub_link *links;         /* leader: the followers */

    pthread_mutex_t subs_lock;
    struct hub_sub *buckets[HUB_BUCKETS]; /* SESSION and WORKER subscriptions by key */
    struct hub_sub *global_subs;    /* GLOBAL subscriptions */
    struct hub_sub **by_id;         /* this process's subscriptions, by their slot - 1 */
    size_t by_id_cap;
    uint32_t next_generation;       /* of the next link_id */
    long local_subs;
    unsigned long round;            /* read rounds; one wakeup per subscription each */
    struct hub_sub **marked;        /* the subscriptions this round wakes */
    size_t marked_count, marked_cap;
};

static pthread_mutex_t hubs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hub *hubs;

static enum hub_role
role_of(const struct hub *h)
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

/* FNV-1a, 64 bits, never 0: the counts table's key (two sessions sharing it would share a
 * count, at odds of one in 2^64). */
static uint64_t
key_hash64(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
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

static void
chain_insert(struct hub *h, struct hub_sub *sub)
{
    struct hub_sub **head = chain_of(h, sub);
    sub->woken_round = sub->checked_round = 0;
    atomic_init(&sub->is_session_closed, false);
    sub->next = *head;
    *head = sub;
}

static void
chain_remove(struct hub *h, struct hub_sub *sub)
{
    struct hub_sub **link = chain_of(h, sub);
    while (*link != NULL && *link != sub)
        link = &(*link)->next;
    if (*link == sub)
        *link = sub->next;
}

/* --- Host-wide counts (the leader writes them; anyone reads) ----------------------- */

/* Adds delta to the streams of sub's session and to the total. Called with subs_lock
 * held, by the leader only. A full table counts the total only. */
static void
count_change(struct hub *h, const struct hub_sub *sub, int64_t delta)
{
    struct hub_shared *sh = h->shared;
    if (sh == NULL || role_of(h) != HUB_ROLE_LEADER)
        return;
    atomic_fetch_add(&sh->subscribers, delta);
    if (sub->scope != STORE_SCOPE_SESSION)
        return;
    uint64_t key = key_hash64(sub->key, strlen(sub->key));
    uint64_t seq = atomic_load_explicit(&sh->counts_seq, memory_order_relaxed);
    atomic_store_explicit(&sh->counts_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (size_t i = 0; i < HUB_COUNT_SLOTS; i++) {
        struct hub_count *c = &sh->counts[(key + i) % HUB_COUNT_SLOTS];
        uint64_t k = atomic_load_explicit(&c->key_hash, memory_order_relaxed);
        if (k == 0 && delta > 0)
            atomic_store_explicit(&c->key_hash, k = key, memory_order_relaxed);
        if (k == key) {
            atomic_fetch_add_explicit(&c->count, delta, memory_order_relaxed);
            break;
        }
        if (k == 0)
            break;
    }
    atomic_store_explicit(&sh->counts_seq, seq + 2, memory_order_release);
}

/* Empties the counts: a new leader counts again from the subscriptions it is sent. */
static void
counts_reset(struct hub_shared *sh)
{
    uint64_t seq = atomic_load(&sh->counts_seq);
    atomic_store(&sh->counts_seq, seq + 1);
    for (size_t i = 0; i < HUB_COUNT_SLOTS; i++) {
        atomic_store_explicit(&sh->counts[i].key_hash, 0, memory_order_relaxed);
        atomic_store_explicit(&sh->counts[i].count, 0, memory_order_relaxed);
    }
    atomic_store(&sh->subscribers, 0);
    atomic_store(&sh->counts_seq, seq + 2);
}

/* The session's count as the leader keeps it; -1 when it could not be read steadily. */
static long
count_read(const struct hub_shared *sh, const char *session_id)
{
    uint64_t key = key_hash64(session_id, strlen(session_id));
    for (int attempt = 0; attempt < 100; attempt++) {  /* bounded: the writer never waits */
        uint64_t seq = atomic_load_explicit(&sh->counts_seq, memory_order_acquire);
        if (seq % 2 != 0)
            continue;
        int64_t count = 0;
        for (size_t i = 0; i < HUB_COUNT_SLOTS; i++) {
            const struct hub_count *c = &sh->counts[(key + i) % HUB_COUNT_SLOTS];
            uint64_t k = atomic_load_explicit(&c->key_hash, memory_order_relaxed);
            if (k == key)
                count = atomic_load_explicit(&c->count, memory_order_relaxed);
            if (k == key || k == 0)
                break;
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&sh->counts_seq, memory_order_relaxed) == seq)
            return count > 0 ? (long)count : 0;
    }
    return -1;
}

/* --- The link, follower side -------------------------------------------------------- */

/* Sends one message to the leader. On failure the link is shut down, so that the link
 * thread builds it again and sends every subscription anew. Called with subs_lock held. */
static void
link_send(struct hub *h, const void *msg, size_t len)
{
    if (h->link_fd < 0)
        return;
    if (send(h->link_fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
        shutdown(h->link_fd, SHUT_RDWR);
}

static void
link_send_sub(struct hub *h, const struct hub_sub *sub)
{
    unsigned char msg[sizeof(struct link_head) + 1024];
    size_t key_len = sub->key != NULL ? strlen(sub->key) : 0;
    if (key_len > sizeof(msg) - sizeof(struct link_head))
        return;  /* longer than any id: never subscribed */
    struct link_head head = {.kind = LINK_SUB, .scope = (uint8_t)sub->scope,
                             .key_len = (uint16_t)key_len, .id = sub->link_id};
    memcpy(msg, &head, sizeof(head));
    if (key_len > 0)
        memcpy(msg + sizeof(head), sub->key, key_len);
    link_send(h, msg, sizeof(head) + key_len);
}

static void
link_send_unsub(struct hub *h, const struct hub_sub *sub)
{
    struct link_head head = {.kind = LINK_UNSUB, .id = sub->link_id};
    link_send(h, &head, sizeof(head));
}

/* The subscription whose number is id in table (slots from 1), or NULL. */
static struct hub_sub *
sub_of_id(struct hub_sub *const *table, size_t cap, uint32_t id)
{
    size_t slot = id & LINK_SLOT_MASK;
    struct hub_sub *s = slot != 0 && slot <= cap ? table[slot - 1] : NULL;
    return s != NULL && s->link_id == id ? s : NULL;
}

/* Gives sub a number in this process (its slot in by_id and a generation). */
static int
number_sub(struct hub *h, struct hub_sub *sub)
{
    size_t i = 0;
    while (i < h->by_id_cap && h->by_id[i] != NULL)
        i++;
    if (i >= LINK_SLOT_MASK)
        return -1;
    if (i == h->by_id_cap) {
        size_t cap = h->by_id_cap ? 2 * h->by_id_cap : 16;
        struct hub_sub **grown = realloc(h->by_id, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        memset(grown + h->by_id_cap, 0, (cap - h->by_id_cap) * sizeof(*grown));
        h->by_id = grown;
        h->by_id_cap = cap;
    }
    h->by_id[i] = sub;
    uint32_t generation = h->next_generation++ & (LINK_CLOSED_BIT - 1) >> LINK_GENERATION_SHIFT;
    sub->link_id = (uint32_t)(i + 1) | generation << LINK_GENERATION_SHIFT;
    return 0;
}

static void
wake_local(struct hub_sub *sub)
{
    uint64_t one = 1;
    ssize_t n = write(sub->wake_fd, &one, sizeof(one));
    (void)n;  /* EAGAIN: the counter is full, so the stream is awake anyway */
}

void
hub_subscribe(struct hub *h, struct hub_sub *sub)
{
    pthread_mutex_lock(&h->subs_lock);
    chain_insert(h, sub);
    sub->link = NULL;
    if (number_sub(h, sub) < 0)
        sub->link_id = 0;  /* no number: woken at its keepalive only */
    h->local_subs++;
    if (role_of(h) == HUB_ROLE_LEADER)
        count_change(h, sub, 1);
    else if (sub->link_id != 0)
        link_send_sub(h, sub);
    pthread_mutex_unlock(&h->subs_lock);
}

void
hub_unsubscribe(struct hub *h, struct hub_sub *sub)
{
    pthread_mutex_lock(&h->subs_lock);
    chain_remove(h, sub);
    if (sub_of_id(h->by_id, h->by_id_cap, sub->link_id) == sub)
        h->by_id[(sub->link_id & LINK_SLOT_MASK) - 1] = NULL;
    h->local_subs--;
    if (role_of(h) == HUB_ROLE_LEADER)
        count_change(h, sub, -1);
    else if (sub->link_id != 0)
        link_send_unsub(h, sub);
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

/* Queues sub's wakeup on its link (leader), to go out with link_flush. */
static void
link_queue(struct hub_link *link, const struct hub_sub *sub)
{
    if (link->pending_count == link->pending_cap) {
        size_t cap = link->pending_cap ? 2 * link->pending_cap : 64;
        uint32_t *grown = realloc(link->pending, cap * sizeof(*grown));
        if (grown == NULL) {
            link->is_wake_all_owed = true;
            return;
        }
        link->pending = grown;
        link->pending_cap = cap;
    }
    link->pending[link->pending_count++] =
        sub->link_id | (atomic_load(&sub->is_session_closed) ? LINK_CLOSED_BIT : 0u);
}

/* Sends what is queued on link, never waiting: a follower whose socket is full is awake
 * (it has not read what came before), and is sent WAKE_ALL as soon as there is room. */
static void
link_flush(struct hub_link *link)
{
    if (link->is_wake_all_owed) {
        struct link_head head = {.kind = LINK_WAKE_ALL};
        if (send(link->fd, &head, sizeof(head), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            return;
        link->is_wake_all_owed = false;
        link->pending_count = 0;
    }
    unsigned char msg[sizeof(struct link_head) + HUB_WAKE_IDS_MAX * sizeof(uint32_t)];
    for (size_t at = 0; at < link->pending_count; at += HUB_WAKE_IDS_MAX) {
        size_t n = link->pending_count - at;
        n = n < HUB_WAKE_IDS_MAX ? n : HUB_WAKE_IDS_MAX;
        struct link_head head = {.kind = LINK_WAKE, .id = (uint32_t)n};
        memcpy(msg, &head, sizeof(head));
        memcpy(msg + sizeof(head), link->pending + at, n * sizeof(uint32_t));
        if (send(link->fd, msg, sizeof(head) + n * sizeof(uint32_t),
                 MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            link->is_wake_all_owed = errno == EAGAIN || errno == EWOULDBLOCK;
            break;
        }
    }
    link->pending_count = 0;
}

/* Wakes every marked subscription: its eventfd in this process, its link elsewhere. */
static void
wake_marked(struct hub *h)
{
    for (size_t i = 0; i < h->marked_count; i++) {
        struct hub_sub *s = h->marked[i];
        if (s->link == NULL)
            wake_local(s);
        else
            link_queue(s->link, s);
    }
    for (struct hub_link *link = h->links; link != NULL; link = link->next) {
        if (link->pending_count > 0 || link->is_wake_all_owed)
            link_flush(link);
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
    for (size_t i = 0; i < h->marked_count; i++)
        check_closed(h, st, h->marked[i]);
    wake_marked(h);
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
    h->marked_count = 0;
    for (size_t b = 0; b < HUB_BUCKETS; b++) {
        for (struct hub_sub *s = h->buckets[b]; s != NULL; s = s->next) {
            bool was_closed = atomic_load(&s->is_session_closed);
            check_closed(h, st, s);
            if (!was_closed && atomic_load(&s->is_session_closed))
                mark(h, s);
        }
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
    if (is_shared(h)) {
        shring_restart(&h->shring, is_known, newest);
        return;
    }
    pthread_rwlock_wrlock(&h->ring_lock);
    ring_restart(&h->ring, is_known, newest);
    pthread_rwlock_unlock(&h->ring_lock);
}

/* Puts the batch's rows into the ring (the private one takes references of its own). */
static void
rows_append(struct hub *h, const struct store_batch *batch)
{
    if (is_shared(h)) {
        shring_append(&h->shring, batch);
        return;
    }
    pthread_rwlock_wrlock(&h->ring_lock);
    ring_append(&h->ring, batch);
    pthread_rwlock_unlock(&h->ring_lock);
}

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
static bool
pause_or_shutdown(const struct hub *h, long ms)
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

static void *
watcher_main(void *arg)
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
                if (pause_or_shutdown(h, h->opt.poll_ms))
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

static int
start_thread(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return rc == 0 ? 0 : -1;
}

/* --- The shared file ----------------------------------------------------------------- */

static size_t
shared_head_bytes(void)
{
    return (sizeof(struct hub_shared) + HUB_PAGE - 1) / HUB_PAGE * HUB_PAGE;
}

static void hub_log(const struct hub *h, bool is_warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
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

/* The database's path with symbolic links resolved (its directory's, when the file does
 * not exist yet), so every process names the same hub for it. */
static void
canonical_path(const char *path, char *out, size_t size)
{
    char resolved[PATH_MAX];
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
                     slash ? path : ".");
    if (realpath(path, resolved) != NULL)
        n = snprintf(out, size, "%s", resolved);
    else if (n >= 0 && (size_t)n < sizeof(dir) && realpath(dir[0] ? dir : "/", resolved))
        n = snprintf(out, size, "%s/%s", resolved, slash ? slash + 1 : path);
    else
        n = -1;
    if (n < 0 || (size_t)n >= size)
        snprintf(out, size, "%s", path);  /* as given: every process gives the same */
}

/* Opens (creating it when missing) and maps the host's file for db_path. Returns 0, or -1
 * with *why set; the hub is then private. */
static int
map_shared(struct hub *h, const char **why)
{
    char canonical[PATH_MAX];
    canonical_path(h->db_path, canonical, sizeof(canonical));
    uint64_t hash = key_hash64(canonical, strlen(canonical));
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/sse-fcgi-%ld-%016llx-v%d", h->opt.dir,
                     (long)geteuid(), (unsigned long long)hash, HUB_SHARED_VERSION);
    if (n < 0 || (size_t)n + sizeof(".sock") > sizeof(h->sock_path)) {
        *why = "SSE_HUB_DIR is too long for a socket path";
        return -1;
    }
    memcpy(h->sock_path, path, (size_t)n);
    memcpy(h->sock_path + n, ".sock", sizeof(".sock"));
    if ((size_t)n + sizeof(".hub") > sizeof(path)) {
        *why = "SSE_HUB_DIR is too long";
        return -1;
    }
    memcpy(path + n, ".hub", sizeof(".hub"));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        *why = strerror(errno);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t bytes = shared_head_bytes() + shring_size(HUB_RING_ROWS, HUB_RING_BYTES);
    if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
        *why = "the hub file is not a regular file of this user";
    } else if ((size_t)sb.st_size < bytes && ftruncate(fd, (off_t)bytes) < 0) {
        *why = strerror(errno);  /* growing it twice to the same size is harmless */
    } else {
        void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            h->file_fd = fd;
            h->shared = map;
            h->map_bytes = bytes;
            return 0;
        }
        *why = strerror(errno);
    }
    close(fd);
    return -1;
}

static void *
ring_memory(const struct hub *h)
{
    return (unsigned char *)h->shared + shared_head_bytes();
}

/* Whether a leader has formatted the file with this layout; fills h->shring. */
static bool
attach_ring(struct hub *h)
{
    return atomic_load(&h->shared->magic) == HUB_SHARED_MAGIC
           && h->shared->version == HUB_SHARED_VERSION
           && shring_attach(&h->shring, ring_memory(h), h->map_bytes - shared_head_bytes(),
                            HUB_RING_ROWS, HUB_RING_BYTES) == 0;
}

/* Marks the mapping usable by this process's streams, once. */
static void
set_attached(struct hub *h)
{
    if (atomic_load(&h->is_attached))
        return;
    h->generation_base = atomic_load(&h->shared->generation);
    atomic_store(&h->is_attached, true);
}

/* --- The link, leader side ----------------------------------------------------------- */

static void
drop_link(struct hub *h, struct hub_link *link)
{
    pthread_mutex_lock(&h->subs_lock);
    for (size_t i = 0; i < link->subs_cap; i++) {
        struct hub_sub *s = link->subs[i];
        if (s == NULL)
            continue;
        chain_remove(h, s);
        count_change(h, s, -1);
        free(s);
    }
    for (struct hub_link **l = &h->links; *l != NULL; l = &(*l)->next) {
        if (*l == link) {
            *l = link->next;
            break;
        }
    }
    pthread_mutex_unlock(&h->subs_lock);
    close(link->fd);
    free(link->subs);
    free(link->pending);
    free(link);
}

/* A follower's SUB: a subscription of the leader's, woken at once (see the top). */
static int
add_remote_sub(struct hub *h, struct hub_link *link, const struct link_head *head,
               const char *key)
{
    uint32_t id = head->id;
    size_t slot = id & LINK_SLOT_MASK;
    if (slot == 0 || (id & LINK_CLOSED_BIT) != 0 || head->scope > STORE_SCOPE_GLOBAL)
        return -1;
    if (slot > link->subs_cap) {
        size_t cap = link->subs_cap ? link->subs_cap : 16;
        while (cap < slot)
            cap *= 2;
        struct hub_sub **grown = realloc(link->subs, cap * sizeof(*grown));
        if (grown == NULL)
            return -1;
        memset(grown + link->subs_cap, 0, (cap - link->subs_cap) * sizeof(*grown));
        link->subs = grown;
        link->subs_cap = cap;
    }
    if (link->subs[slot - 1] != NULL)
        return -1;  /* a slot used again before its UNSUB: nonsense */
    struct hub_sub *s = calloc(1, sizeof(*s) + head->key_len + 1);
    if (s == NULL)
        return -1;
    char *copy = (char *)(s + 1);
    memcpy(copy, key, head->key_len);
    s->scope = (enum store_scope)head->scope;
    s->key = head->scope == STORE_SCOPE_GLOBAL ? NULL : copy;
    s->wake_fd = -1;
    s->link = link;
    s->link_id = id;
    pthread_mutex_lock(&h->subs_lock);
    link->subs[slot - 1] = s;
    chain_insert(h, s);
    count_change(h, s, 1);
    link_queue(link, s);
    link_flush(link);
    pthread_mutex_unlock(&h->subs_lock);
    return 0;
}

static void
remove_remote_sub(struct hub *h, struct hub_link *link, uint32_t id)
{
    struct hub_sub *s = sub_of_id(link->subs, link->subs_cap, id);
    if (s == NULL)
        return;
    pthread_mutex_lock(&h->subs_lock);
    link->subs[(id & LINK_SLOT_MASK) - 1] = NULL;
    chain_remove(h, s);
    count_change(h, s, -1);
    pthread_mutex_unlock(&h->subs_lock);
    free(s);
}

/* Reads what a follower sent. Returns -1 when the link is over (or spoke nonsense). */
static int
serve_link(struct hub *h, struct hub_link *link)
{
    for (;;) {
        unsigned char msg[sizeof(struct link_head) + 1024];
        ssize_t n = recv(link->fd, msg, sizeof(msg), MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        if ((size_t)n < sizeof(struct link_head))
            return -1;  /* 0: the follower is gone */
        struct link_head head;
        memcpy(&head, msg, sizeof(head));
        if (head.kind == LINK_SUB && (size_t)n == sizeof(head) + head.key_len) {
            if (add_remote_sub(h, link, &head, (const char *)msg + sizeof(head)) < 0)
                return -1;
        } else if (head.kind == LINK_UNSUB && (size_t)n == sizeof(head)) {
            remove_remote_sub(h, link, head.id);
        } else {
            return -1;
        }
    }
}

static int
listen_on(const struct hub *h)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, h->sock_path, sizeof(addr.sun_path));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    unlink(h->sock_path);  /* the last leader's: we hold the lock, so it is dead */
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || chmod(h->sock_path, 0600) < 0
        || listen(fd, SOMAXCONN) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Takes the mapping over (formats it unless it holds a ring of this layout, which it
 * then goes on with), counts this process's streams, starts the watcher and serves the
 * followers until shutdown. Called with the flock held, for the rest of the process. */
static void
lead(struct hub *h)
{
    struct hub_shared *sh = h->shared;
    if (!attach_ring(h)) {
        atomic_store(&sh->magic, 0);
        memset((unsigned char *)sh + sizeof(sh->magic), 0, sizeof(*sh) - sizeof(sh->magic));
        sh->version = HUB_SHARED_VERSION;
        atomic_store(&sh->restored_newest, -1);
        shring_format(ring_memory(h), HUB_RING_ROWS, HUB_RING_BYTES);
        atomic_store(&sh->magic, HUB_SHARED_MAGIC);
        attach_ring(h);
    }
    counts_reset(sh);
    set_attached(h);
    atomic_store(&sh->leader_pid, (int32_t)getpid());
    pthread_mutex_lock(&h->subs_lock);
    if (h->link_fd >= 0)
        close(h->link_fd);
    h->link_fd = -1;
    atomic_store(&h->role, HUB_ROLE_LEADER);
    for (size_t i = 0; i < h->by_id_cap; i++) {
        if (h->by_id[i] != NULL)
            count_change(h, h->by_id[i], 1);
    }
    pthread_mutex_unlock(&h->subs_lock);
    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    hub_log(h, false, "hub leader pid=%s db=%s", pid, h->db_path);
    while (start_thread(watcher_main, h) < 0) {
        if (pause_or_shutdown(h, 1000))
            return;
    }
    int listen_fd = -1;
    struct pollfd *fds = NULL;
    struct hub_link **of = NULL;
    size_t cap = 0;
    for (;;) {
        if (listen_fd < 0 && (listen_fd = listen_on(h)) < 0)
            hub_log(h, true, "warning hub socket=%s reason=\"%s\"", h->sock_path, strerror(errno));
        size_t count = 0;
        for (struct hub_link *l = h->links; l != NULL; l = l->next)
            count++;
        if (count + 2 > cap) {
            cap = 2 * (count + 2);
            struct pollfd *f = realloc(fds, cap * sizeof(*f));
            struct hub_link **o = realloc(of, cap * sizeof(*o));
            fds = f != NULL ? f : fds;
            of = o != NULL ? o : of;
            if (f == NULL || o == NULL) {
                cap = 0;
                if (pause_or_shutdown(h, 100))
                    break;
                continue;
            }
        }
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = h->opt.shutdown_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        for (struct hub_link *l = h->links; l != NULL; l = l->next) {
            of[n] = l;
            fds[n++] = (struct pollfd){.fd = l->fd, .events = POLLIN};
        }
        if (poll(fds, (nfds_t)n, listen_fd < 0 ? 1000 : -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents != 0)
            break;
        for (size_t i = 2; i < n; i++) {
            if (fds[i].revents != 0 && serve_link(h, of[i]) < 0)
                drop_link(h, of[i]);
        }
        if (listen_fd >= 0 && fds[1].revents != 0) {
            int fd;
            while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                struct hub_link *l = calloc(1, sizeof(*l));
                if (l == NULL) {
                    close(fd);
                    continue;
                }
                l->fd = fd;
                pthread_mutex_lock(&h->subs_lock);
                l->next = h->links;
                h->links = l;
                pthread_mutex_unlock(&h->subs_lock);
            }
        }
    }
    free(fds);
    free(of);
}

/* --- The link thread: leader or follower --------------------------------------------- */

static int
connect_leader(const struct hub *h)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, h->sock_path, sizeof(addr.sun_path));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval timeout = {.tv_sec = HUB_SEND_TIMEOUT_MS / 1000,
                              .tv_usec = HUB_SEND_TIMEOUT_MS % 1000 * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0
        || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Wakes the subscriptions a WAKE names, each with its session's closed flag. */
static void
dispatch_wake(struct hub *h, const unsigned char *msg, size_t len, bool is_all)
{
    pthread_mutex_lock(&h->subs_lock);
    if (is_all) {
        for (size_t i = 0; i < h->by_id_cap; i++) {
            if (h->by_id[i] != NULL)
                wake_local(h->by_id[i]);
        }
    }
    for (size_t at = sizeof(struct link_head); !is_all && at + 4 <= len; at += 4) {
        uint32_t word;
        memcpy(&word, msg + at, sizeof(word));
        struct hub_sub *s = sub_of_id(h->by_id, h->by_id_cap, word & ~LINK_CLOSED_BIT);
        if (s == NULL)
            continue;  /* unsubscribed since (its slot may serve another stream now) */
        if (word & LINK_CLOSED_BIT)
            atomic_store(&s->is_session_closed, true);
        wake_local(s);
    }
    pthread_mutex_unlock(&h->subs_lock);
}

/* Serves one connection to the leader until it ends: subscriptions first (and a wakeup of
 * every stream, which may have missed rows while there was no leader), then wakeups. */
static void
follow(struct hub *h, int fd)
{
    pthread_mutex_lock(&h->subs_lock);
    h->link_fd = fd;
    atomic_store(&h->role, HUB_ROLE_FOLLOWER);
    for (size_t i = 0; i < h->by_id_cap; i++) {
        if (h->by_id[i] != NULL) {
            link_send_sub(h, h->by_id[i]);
            wake_local(h->by_id[i]);
        }
    }
    pthread_mutex_unlock(&h->subs_lock);
    for (;;) {
        struct pollfd p[2] = {{.fd = h->opt.shutdown_fd, .events = POLLIN},
                              {.fd = fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents != 0)
            break;
        if (p[1].revents == 0)
            continue;
        unsigned char msg[sizeof(struct link_head) + HUB_WAKE_IDS_MAX * sizeof(uint32_t)];
        ssize_t n = recv(fd, msg, sizeof(msg), 0);
        if (n < (ssize_t)sizeof(struct link_head))
            break;  /* the leader is gone (0), or spoke nonsense */
        struct link_head head;
        memcpy(&head, msg, sizeof(head));
        if (head.kind == LINK_WAKE || head.kind == LINK_WAKE_ALL)
            dispatch_wake(h, msg, (size_t)n, head.kind == LINK_WAKE_ALL);
    }
    pthread_mutex_lock(&h->subs_lock);
    h->link_fd = -1;
    pthread_mutex_unlock(&h->subs_lock);
    close(fd);
}

/* One per process and shared hub: leads when it can take the lock, else follows the
 * leader; when the leader goes, tries to lead again. */
static void *
link_main(void *arg)
{
    struct hub *h = arg;
    for (;;) {
        if (flock(h->file_fd, LOCK_EX | LOCK_NB) == 0) {
            lead(h);
            return NULL;
        }
        int fd = attach_ring(h) ? connect_leader(h) : -1;
        if (fd >= 0) {
            set_attached(h);
            follow(h, fd);
        }
        if (pause_or_shutdown(h, fd >= 0 ? 0 : HUB_RECONNECT_MS))
            return NULL;
    }
}

/* --- The hub ------------------------------------------------------------------------- */

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
    if (strcmp(h->opt.dir, "off") != 0 && map_shared(h, &why) == 0) {
        atomic_init(&h->role, HUB_ROLE_FOLLOWER);
        if (start_thread(link_main, h) == 0)
            return h;
        why = "no thread for the link";
        munmap(h->shared, h->map_bytes);
        close(h->file_fd);
        h->shared = NULL;
    }
    hub_log(h, strcmp(why, "SSE_HUB_DIR=off") != 0, "hub=private db=%s reason=\"%s\"",
            h->db_path, why);
    atomic_init(&h->role, HUB_ROLE_PRIVATE);
    if (ring_init(&h->ring, HUB_RING_ROWS, HUB_RING_BYTES) == 0
        && start_thread(watcher_main, h) == 0)
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
    out->role = role_of(h);
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
        return count_read(h->shared, session_id);
    long count = 0;
    pthread_mutex_lock(&h->subs_lock);
    for (struct hub_sub *s = h->buckets[bucket_of(session_id, strlen(session_id))]; s;
         s = s->next)
        count += s->scope == STORE_SCOPE_SESSION && strcmp(s->key, session_id) == 0;
    pthread_mutex_unlock(&h->subs_lock);
    return count;
}
