/*
 * hub.h - one watcher per host and database: the new rows are read once, kept in memory
 * that every process of the host maps, and shared by every stream of every process.
 *
 * The watcher (the leader) is one thread in one process, with its own read-only connection
 * and one waiter (inotify on the -wal, confirmed by data_version, store/wait.c). Each time
 * another connection commits it reads every new row of the table in batches, frames once
 * each row some stream subscribes to, appends the rows to the ring of recent rows and wakes
 * only the streams whose channel has a new row; after a round that read no row (a session
 * closed, rows pruned, a commit an earlier read took) only the streams of a session it
 * finds closed, and other processes' streams. Before it wakes a session stream it reads
 * that session's closed flag (once per session and round), so streams never query for it.
 * A stream that gets no row for long keeps its cursor in the ring through hub_skip_quiet.
 *
 * Shared (the default): the ring lives in a file mapping in SSE_HUB_DIR (default /dev/shm:
 * tmpfs, never written to disk), store/shring.h; the leader is whichever process holds
 * flock on that file, and another takes over when it dies. Every other process (a
 * follower) connects to the leader over a UNIX socket beside the file, sends its streams'
 * subscriptions, and is woken through it: one thread per process reads the socket and
 * writes the eventfd of each stream the leader named. Followers never open the database
 * while their streams are live and caught up. Private (SSE_HUB_DIR=off, or the files
 * could not be made): the same watcher and the private ring (store/ring.h) in this process
 * only, as before; the reason is logged once.
 *
 * A woken stream copies its channel's rows after its cursor (hub_copy_after) and writes
 * them without holding any lock, so a slow client delays nobody. A stream whose cursor is
 * older than the ring's oldest row (it fell behind, or resumed from an old point), or whose
 * copy was overwritten under it, reads the database instead, on a connection of its own,
 * until it has caught up. Rows become visible in id order (AUTOINCREMENT, one writer), so a
 * stream's cursor may pass rows of other channels: they were dealt with.
 *
 * A new database at the path ends every stream (hub_generation): a new inode (moved in,
 * replaced), or the newest id ever issued going back (`.restore` of an older copy in
 * place), since the ids a stream has sent then mean nothing in it.
 *
 * All functions are thread-safe. Hubs live until the process exits.
 */
#ifndef SSE_HUB_H
#define SSE_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

enum {
    HUB_RING_ROWS = 8192,               /* recent rows kept in memory */
    HUB_RING_BYTES = 16 * 1024 * 1024,  /* and at most about this many bytes of them */
    HUB_READ_ROWS = 1024,               /* rows per query of the watcher */
    HUB_READ_BYTES = 4 * 1024 * 1024,   /* and about this many bytes */
};

struct hub;

/* A stream's subscription. The stream fills scope, key and wake (or wake_fd), keeps the
 * struct (and key) alive while subscribed; the rest belongs to the hub. */
struct hub_sub {
    enum store_scope scope;             /* SESSION, WORKER or GLOBAL */
    const char *key;                    /* session id or "worker:<id>"; NULL for GLOBAL */
    /* How the hub wakes the stream: wake(sub) when set, else a write of 1 to the eventfd
     * wake_fd. wake is called from the hub's threads with its lock held: it must be quick
     * and must not call into the hub (the event loop posts a task, fcgi/loop.h). It is never
     * called once hub_unsubscribe has returned. */
    void (*wake)(struct hub_sub *sub);
    int wake_fd;
    atomic_bool is_session_closed;      /* SESSION scope: set by the hub before it wakes */
    _Atomic int64_t last_own_id;        /* the hub's: the newest row of the channel it read */
    int64_t joined_through;             /* the hub's: rows up to this were read before it
                                         * subscribed, so not looked at for its channel */
    _Atomic int64_t consumed;           /* the stream's cursor, as it last published it */
    _Atomic int64_t quiet_through;      /* the hub's: no row of the channel lies between the
                                         * stream's cursor and this (hub_skip_quiet) */
    unsigned long woken_round;          /* the hub's: one write per read round */
    unsigned long checked_round;        /* the hub's: closed flag read in this round */
    struct hub_sub *next;               /* the hub's: bucket chain */
    struct hub_link *link;              /* the hub's: the follower it came from (leader), */
    uint32_t link_id;                   /* and its number there; or this process's number */
};

/* Builds the frame of e (what a stream sends of it) into memory the caller frees with
 * free(), *len bytes. NULL when out of memory or too large: streams then frame it
 * themselves (and skip it when it is too large). Thread-safe. */
typedef char *(*hub_frame_fn)(const struct event *e, size_t *len);

/* Where a line about the hub goes (the process's log): a warning or a notice. */
typedef void (*hub_log_fn)(bool is_warning, const char *message);

struct hub_options {
    long poll_ms;                       /* SSE_POLL_MS: the watcher's safety net */
    int shutdown_fd;                    /* readable once the process must stop */
    hub_frame_fn frame;                 /* builds each subscribed row's frame once */
    const char *dir;                    /* SSE_HUB_DIR; "off" for a private hub */
    hub_log_fn log;
};

/* The hub of db_path, started on first use with opt (copied; only the first call's
 * count). NULL when no thread or memory could be had. */
struct hub *hub_get(const char *db_path, const struct hub_options *opt);

enum hub_role {
    HUB_ROLE_PRIVATE,                   /* this process's own watcher */
    HUB_ROLE_LEADER,                    /* the host's watcher runs in this process */
    HUB_ROLE_FOLLOWER,                  /* woken by the leader of another process */
};

/* What /api/health says of the hub. */
struct hub_facts {
    enum hub_role role;
    long leader_pid;                    /* 0 when unknown (private, or between leaders) */
    long subscribers;                   /* streams on this database, host-wide when shared */
};

void hub_get_facts(struct hub *h, struct hub_facts *out);

/* Streams of session_id open on the host (this process, for a private hub). */
long hub_session_subscribers(struct hub *h, const char *session_id);

void hub_subscribe(struct hub *h, struct hub_sub *sub);
void hub_unsubscribe(struct hub *h, struct hub_sub *sub);

/* Puts into out (cleared first) references to the rows of ch with id > after_id that the
 * ring holds, at most max_rows and about max_bytes; out->is_full says more follow.
 * *scanned_through gets the highest id looked at (every row of other channels up to it was
 * skipped), *newest_id the newest id the hub has read. Returns 1, or 0 when rows after
 * after_id have left the ring (or the hub has not read the table yet): read the database
 * instead. A negative value is out of memory. */
int hub_copy_after(struct hub *h, const struct store_channel *ch, int64_t after_id,
                   size_t max_rows, size_t max_bytes, struct store_batch *out,
                   int64_t *scanned_through, int64_t *newest_id);

/* Moves *cursor forward over rows the hub has read and found none of sub's channel in, and
 * publishes the cursor for the hub (sub->consumed). When the hub finds a row for sub in a
 * round and the stream had consumed every earlier row of its channel the hub read since
 * it subscribed, nothing of the channel lies between the stream's cursor and the end of
 * the round before: the stream may start there. So a stream that gets a row every few
 * seconds keeps its cursor inside the hub's memory instead of falling out of it and
 * reading the database (issue 13, make bench's g). Only where this process's watcher reads
 * the rows (private hub, leader); a no-op elsewhere. */
void hub_skip_quiet(const struct hub_sub *sub, int64_t *cursor);

/* Tells the hub how far the stream has dealt with its channel (hub_skip_quiet). */
void hub_publish_cursor(struct hub_sub *sub, int64_t cursor);

/* Changes each time the hub finds a new database at the path: the file removed or replaced
 * by another (a different inode, checked every poll_ms), or restored in place from an
 * older copy (the newest id ever issued went back). A stream that sees it change must
 * end: the rows it has sent may not be in the new file. *restored_newest gets the restored
 * file's newest id when the last change was such a restore (the stream can then hand its
 * client that cursor), or -1. */
unsigned long hub_generation(struct hub *h, int64_t *restored_newest);

#endif
