/*
 * shring.h - the ring of recent rows in memory that every process of a host maps (the hub
 * of store/hub.h when it is shared). Pure: it works on the bytes it is given and does no
 * I/O, takes no lock and reads no clock.
 *
 * One writer (the hub's leader, which alone reads the database) appends rows; any number of
 * readers in any process copy the rows of their channel out, without a lock, while the
 * writer goes on. The writer never waits for a reader, so a reader can find that what it
 * copied was overwritten under it: it checks after its copy (a seqlock, with the record
 * numbers as the sequence) and then reads the database instead, as it does for rows that
 * left the ring.
 *
 * Layout: a head (geometry, positions), an index of `slots` entries (record number n -> id
 * and byte position) and a byte area of `data_bytes` where records lie end to end, never
 * split across its end. Records [first_n, next_n) are intact; every row with base < id <=
 * newest has one. A record holds the row's channel keys and type (what a stream filters
 * on) and its frame when the writer built one, else every column (the reader frames it).
 * A row too large for a quarter of the area is kept as a stub: keys only, and whoever's
 * channel it is reads it from the database (keys too large themselves: none, and every
 * channel reads it there).
 *
 * Positions only grow (64 bits), so a copy that lies before the writer's eviction point is
 * known to be torn. Every length read from shared memory is checked against the area
 * before it is used: a torn or hostile record is never followed out of bounds.
 */
#ifndef SSE_SHRING_H
#define SSE_SHRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct shring_head;
struct shring_slot;

/* A process's view of a ring: pointers into the mapping, filled by shring_attach. */
struct shring {
    struct shring_head *head;
    struct shring_slot *index;
    unsigned char *data;
    size_t slots, data_bytes;
};

/* Bytes a ring of slots index entries and data_bytes (a multiple of 8) needs. */
size_t shring_size(size_t slots, size_t data_bytes);

/* Writes an empty ring that knows nothing yet into mem (shring_size bytes, 8-aligned,
 * zero or not). Only the writer, before any reader looks. */
void shring_format(void *mem, size_t slots, size_t data_bytes);

/* Fills r for a ring that mem (size bytes) holds. Returns 0, or -1 when mem does not hold
 * one with that geometry (never formatted, another version, another size), or data_bytes is
 * under 4 record headers (320 bytes). */
int shring_attach(struct shring *r, void *mem, size_t size, size_t slots, size_t data_bytes);

/* Writer: drops every row. With is_known the ring starts at newest (nothing before it is
 * held); without, it knows nothing until the next restart. */
void shring_restart(struct shring *r, bool is_known, int64_t newest);

/* Writer: appends the rows of batch (id order, after newest), with their frames. */
void shring_append(struct shring *r, const struct store_batch *batch);

/* The newest id the ring has, and whether it knows where the table ends at all. */
int64_t shring_newest(const struct shring *r);
bool shring_is_known(const struct shring *r);

/* Gives the whole row of a stub (one new reference), or NULL: the reader reads the
 * database instead. */
typedef struct store_row *(*shring_load_fn)(void *ctx, int64_t id);

/* Reader: puts into out (cleared first) new rows copying those of ch with id > after_id,
 * at most max_rows and about max_bytes; out->is_full says more follow. A stub of ch is
 * asked of load (NULL: none). *scanned_through gets the highest id looked at. Returns 1; 0
 * when rows after after_id have left the ring, were overwritten during the copy, or are
 * stubs of ch that load did not give, or the ring knows nothing (read the database
 * instead); -1 when out of memory. */
int shring_copy_after(const struct shring *r, const struct store_channel *ch, int64_t after_id,
                      size_t max_rows, size_t max_bytes, struct store_batch *out,
                      int64_t *scanned_through, shring_load_fn load, void *load_ctx);

#endif
