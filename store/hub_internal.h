/*
 * hub_internal.h - what the three files of the hub share, and nothing else: store/hub.c
 * (the API of hub.h, subscriptions, waking, the rows and the watcher thread),
 * store/hub_file.c (the shared file: name, mapping, header, counts) and store/hub_link.c
 * (the socket between the leader and its followers, and the election). Only those three
 * include it; hub.h stays the whole public surface.
 *
 * Locks: ring_lock (a rwlock) guards the private ring; subs_lock guards the subscription
 * table, the links to followers (leader) and the link to the leader (follower). The
 * watcher never holds both at once, streams hold ring_lock only while they copy rows, and
 * nothing is ever written to a socket under subs_lock that could block: the leader's
 * writes are MSG_DONTWAIT, and a follower's have a send timeout after which its link is
 * dropped and built again.
 */
#ifndef SSE_HUB_INTERNAL_H
#define SSE_HUB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "hub.h"
#include "link_msg.h"
#include "ring.h"
#include "shring.h"

enum {
    HUB_BUCKETS = 1024,             /* subscription hash table */
    HUB_COUNT_SLOTS = 4096,         /* sessions whose streams are counted host-wide */
    HUB_SHARED_MAGIC = 0x53485542,  /* "SHUB" */
    HUB_SHARED_VERSION = 1,
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
    _Atomic uint32_t counts_overflow; /* a session could not be counted: the table was full
                                       * (more sessions read at once than it holds) */
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

    /* Private hub (the ring: also the leader's). */
    dev_t db_dev;                   /* the file the watcher opened: a different one at */
    ino_t db_ino;                   /* db_path means the database was replaced */
    bool has_file;                  /* db_dev/db_ino are set */
    atomic_ulong generation;        /* +1 each time the file is found gone or replaced */
    _Atomic int64_t restored_newest; /* with the last +1: newest id of a restored file, or -1 */
    pthread_rwlock_t ring_lock;
    struct ring ring;               /* guarded by ring_lock; only the watcher changes it.
                                     * The leader keeps one too, beside the shared ring,
                                     * so that its own streams share rows (references)
                                     * instead of each copying them out of the mapping */
    atomic_bool has_ring;           /* ring is in use: private hub, or leader */

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
    /* The last id of the newest round with rows (note_quiet); the watcher's, under
     * subs_lock. */
    _Atomic int64_t round_through;
    struct hub_sub **marked;        /* the subscriptions this round wakes */
    size_t marked_count, marked_cap;
};

/* --- store/hub.c --------------------------------------------------------------------- */

/* The hub's role now (it changes when this process takes the lead). */
enum hub_role hub_role_of(const struct hub *h);

/* Puts sub into (takes it out of) the chain its channel belongs in. subs_lock held. */
void hub_chain_insert(struct hub *h, struct hub_sub *sub);
void hub_chain_remove(struct hub *h, struct hub_sub *sub);

/* The subscription whose number is id in table (slots from 1), or NULL. */
struct hub_sub *hub_sub_of_id(struct hub_sub *const *table, size_t cap, uint32_t id);

/* Writes 1 to the eventfd of sub, a stream of this process. */
void hub_wake_local(struct hub_sub *sub);

/* Sleeps up to ms, or less when the process is told to stop. Returns true on shutdown. */
bool hub_pause_or_shutdown(const struct hub *h, long ms);

/* Grows a table of subscriptions by slot (by_id, a link's subs) to hold at least slots,
 * the new ones NULL. Returns 0, or -1 when out of memory (the table as it was). */
int hub_table_reserve(struct hub_sub ***table, size_t *cap, size_t slots);

/* The leader's own ring of references beside the shared one (hub.c), started when it
 * takes over, before its watcher runs. */
void hub_start_own_ring(struct hub *h);

/* The watcher thread (arg: the hub): waits for commits and reads the new rows. */
void *hub_watcher_main(void *arg);

/* Starts a detached thread. Returns 0, or -1. */
int hub_start_thread(void *(*fn)(void *), void *arg);

/* A line to the process's log (opt.log), formatted. */
void hub_log(const struct hub *h, bool is_warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- store/hub_file.c ---------------------------------------------------------------- */

/* Opens (creating it when missing) and maps the host's file for h->db_path, names the
 * socket. Returns 0, or -1 with *why set; the hub is then private. */
int hub_file_map_shared(struct hub *h, const char **why);

/* Whether a leader has formatted the file with this layout; fills h->shring. */
bool hub_file_attach_ring(struct hub *h);

/* Formats the file unless it holds a ring of this layout. The leader, with the flock. */
void hub_file_format(struct hub *h);

/* Marks the mapping usable by this process's streams, once. */
void hub_file_set_attached(struct hub *h);

/* Adds delta to the host-wide counts of sub's stream. subs_lock held; leader only. */
void hub_file_count_change(struct hub *h, const struct hub_sub *sub, int64_t delta);

/* Empties the counts (a new leader counts again). */
void hub_file_counts_reset(struct hub_shared *sh);

/* The host's streams of session_id; -1 when they could not be read steadily. */
long hub_file_count_read(const struct hub_shared *sh, const char *session_id);

/* --- store/hub_link.c ---------------------------------------------------------------- */

/* Follower: sends sub's SUB (UNSUB) to the leader. subs_lock held. */
void hub_link_send_sub(struct hub *h, const struct hub_sub *sub);
void hub_link_send_unsub(struct hub *h, const struct hub_sub *sub);

/* Leader: queues sub's wakeup on its link; hub_link_flush sends what is queued, never
 * waiting. subs_lock held. */
void hub_link_queue(struct hub_link *link, const struct hub_sub *sub);
void hub_link_flush(struct hub_link *link);

/* Takes the lead when no process holds it (flock, never waiting): formats or adopts the
 * mapping and counts this process's streams. Returns whether this process leads now; the
 * link thread then starts the watcher. hub_create calls it before that thread starts, so
 * that the first request of a new process already knows its role. */
bool hub_link_try_lead(struct hub *h);

/* The link thread (arg: a shared hub): leads when it gets the flock, else follows. */
void *hub_link_main(void *arg);

#endif
