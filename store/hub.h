/*
 * hub.h - one watcher per process and database: the new rows are read once, kept in memory
 * and shared by every stream of the process.
 *
 * A hub is a thread with its own read-only connection and one waiter (inotify on the -wal,
 * confirmed by data_version, store/wait.c). Each time another connection commits it reads
 * every new row of the table in one query per batch, appends them to a ring of recent rows
 * and wakes, through their eventfd, only the streams whose channel has a new row (all of
 * them after a commit that added no row: a session closed, rows pruned). Before it wakes a
 * session stream it reads that session's closed flag (once per session and round) into the
 * subscription, so streams never query for it. A woken stream
 * copies its channel's rows after its cursor out of the ring (hub_copy_after) and writes
 * them without holding any lock, so a slow client delays nobody.
 *
 * The ring keeps every row with id in (base, newest]. A stream whose cursor is older than
 * base (it fell behind, or started from an old resume point) reads the database instead,
 * on a connection of its own, until it has caught up. Rows become visible in id order (AUTOINCREMENT, one writer), so a
 * stream's cursor may pass rows of other channels: they were dealt with.
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
};

struct hub;

/* A stream's subscription. The stream fills scope, key and wake_fd, keeps the struct (and
 * key) alive while subscribed; the rest belongs to the hub. */
struct hub_sub {
    enum store_scope scope;             /* SESSION, WORKER or GLOBAL */
    const char *key;                    /* session id or "worker:<id>"; NULL for GLOBAL */
    int wake_fd;                        /* eventfd the hub writes 1 to */
    atomic_bool is_session_closed;      /* SESSION scope: set by the hub before it wakes */
    unsigned long woken_round;          /* the hub's: one write per read round */
    unsigned long checked_round;        /* the hub's: closed flag read in this round */
    struct hub_sub *next;               /* the hub's: bucket chain */
};

/* The hub of db_path, started on first use with SSE_POLL_MS poll_ms as its safety net and
 * shutdown_fd (readable once the process must stop) to end it. NULL when the thread or
 * memory could not be had. */
struct hub *hub_get(const char *db_path, long poll_ms, int shutdown_fd);

void hub_subscribe(struct hub *h, struct hub_sub *sub);
void hub_unsubscribe(struct hub *h, struct hub_sub *sub);

/* Copies into out (cleared first) the rows of ch with id > after_id that the ring holds, at
 * most max_rows and about max_bytes; out->is_full says more follow. *scanned_through gets
 * the highest id looked at (every row of other channels up to it was skipped), *newest_id
 * the newest id the hub has read. Returns true, or false when rows after after_id have left
 * the ring (or the hub has not read the table yet): read the database instead. A negative
 * value is out of memory. */
int hub_copy_after(struct hub *h, const struct store_channel *ch, int64_t after_id,
                   size_t max_rows, size_t max_bytes, struct store_batch *out,
                   int64_t *scanned_through, int64_t *newest_id);

/* Changes each time the hub finds the database file removed or replaced by another file
 * (a different inode at the path; checked every poll_ms). A stream that sees it change
 * must end: the rows it has sent may not be in the new file. */
unsigned long hub_generation(struct hub *h);

#endif
