/*
 * upstream.h - the shared log in PostgreSQL, as the relay reads it (the only module that
 * includes libpq-fe.h).
 *
 * One connection, LISTENing on the schema's 'sse_fcgi' channel. A notification is only a
 * wakeup: what to copy is read by position, so a lost notification costs latency, never a
 * row. Every wait is bounded by the options' timeout and ends early when stop_fd becomes
 * readable, so a relay whose server hangs still stops on SIGTERM, and a server that
 * stopped answering is given up and reconnected.
 */
#ifndef SSE_UPSTREAM_H
#define SSE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store/replica.h"

struct upstream_options {
    const char *conninfo;       /* libpq connection string or URI (--pg, SSE_PG) */
    int timeout_ms;             /* longest wait for one answer before the link is dropped */
    size_t batch_rows;          /* rows (and session changes) per batch at most */
    size_t batch_bytes;         /* about this many bytes of events.data per batch at most */
    int stop_fd;                /* readable: stop waiting (the relay is stopping) */
};

enum upstream_result {
    UPSTREAM_OK = 0,
    UPSTREAM_STOPPED = 1,       /* stop_fd became readable */
    UPSTREAM_FAILED = -1,       /* the link failed: upstream_errmsg; reconnect */
    UPSTREAM_REFUSED = -2,      /* the server is not a usable log (schema, standby): fix it */
};

struct upstream;

/* Connects, checks that the server is a primary with this project's schema, reads its
 * history (system identifier, timeline) into *source and LISTENs. Returns UPSTREAM_OK and
 * *out, or a failure with the message in errbuf (and *out NULL). */
enum upstream_result upstream_connect(const struct upstream_options *opt, struct upstream **out,
                                      struct replica_source *source, char *errbuf,
                                      size_t errbuf_size);

void upstream_close(struct upstream *u);

/* Waits up to timeout_ms for a notification. Returns UPSTREAM_OK (notified, or the time
 * passed: the caller reads either way), UPSTREAM_STOPPED or UPSTREAM_FAILED. */
enum upstream_result upstream_wait(struct upstream *u, int timeout_ms);

/* Reads, in one snapshot, the changes after position: at most batch_rows events in id order,
 * the session changes among them and the pruned marks beyond position. *batch points into
 * memory valid until the next fetch or close. *is_full: more may follow at once. */
enum upstream_result upstream_fetch(struct upstream *u, int64_t position,
                                    struct replica_batch *batch, bool *is_full);

/* The last failure's message; borrowed. */
const char *upstream_errmsg(const struct upstream *u);

#endif
