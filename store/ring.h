/*
 * ring.h - the hub's memory of recent rows (pure: no I/O, no lock, no clock).
 *
 * A ring holds references to every row with base < id <= newest, in id order: at most
 * max_rows of them and about max_bytes (store_row.bytes: strings and frame, every byte the
 * row costs). An append evicts the oldest rows until the new ones fit, but never a row of
 * the append in progress unless every slot holds one: one append larger than max_bytes
 * stays whole until the next, so the ring holds at most max_bytes plus one append. An
 * evicted row lives on while a stream still holds a reference to it, so eviction never
 * frees what anyone reads.
 *
 * The caller serialises access (store/hub.c holds its ring_lock around every call).
 */
#ifndef SSE_RING_H
#define SSE_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct ring {
    struct store_row **slots;       /* owned; max_rows slots, one reference each */
    size_t max_rows, max_bytes;
    size_t head, count;             /* oldest row at slots[head] */
    size_t bytes;                   /* store_row.bytes of the rows held */
    int64_t base;                   /* every row with base < id <= newest is held */
    int64_t newest;
    bool is_known;                  /* base and newest are set (the table was read) */
};

/* Prepares an empty ring that knows nothing yet. Returns 0, or -1 when out of memory. */
int ring_init(struct ring *r, size_t max_rows, size_t max_bytes);

/* Drops every reference and frees the slots. NULL is safe. */
void ring_release(struct ring *r);

/* Drops every row. With is_known the ring starts again at newest (base = newest: nothing
 * before it is held); without, it knows nothing until the next ring_restart. */
void ring_restart(struct ring *r, bool is_known, int64_t newest);

/* Appends a reference to each row of batch, which must be in id order and after newest
 * (the rows read after it); the batch keeps its own references. */
void ring_append(struct ring *r, const struct store_batch *batch);

/* Adds to out (cleared first) references to the rows of ch with id > after_id, at most
 * max_rows and about max_bytes; out->is_full says more follow. *scanned_through gets the
 * highest id looked at (every row of other channels up to it was passed over). Returns 1;
 * 0 when rows after after_id have left the ring, or it knows nothing (read the database
 * instead); -1 when out of memory. */
int ring_copy_after(const struct ring *r, const struct store_channel *ch, int64_t after_id,
                    size_t max_rows, size_t max_bytes, struct store_batch *out,
                    int64_t *scanned_through);

#endif
