/*
 * ring.c - the hub's memory of recent rows (see ring.h).
 *
 * A circular array of row references. Rows arrive in id order, so the array is sorted by id
 * and a copy starts with a binary search. Nothing here copies row content: a stream gets
 * references, and the bytes are freed by whoever drops the last one.
 */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

int
ring_init(struct ring *r, size_t max_rows, size_t max_bytes)
{
    memset(r, 0, sizeof(*r));
    r->slots = calloc(max_rows, sizeof(*r->slots));
    r->max_rows = max_rows;
    r->max_bytes = max_bytes;
    return r->slots != NULL ? 0 : -1;
}

static struct store_row *
row_at(const struct ring *r, size_t index)
{
    return r->slots[(r->head + index) % r->max_rows];
}

static void
evict_oldest(struct ring *r)
{
    struct store_row *row = r->slots[r->head];
    r->base = row->event.id;
    r->bytes -= row->bytes;
    r->slots[r->head] = NULL;
    r->head = (r->head + 1) % r->max_rows;
    r->count--;
    store_row_unref(row);
}

void
ring_restart(struct ring *r, bool is_known, int64_t newest)
{
    while (r->count > 0)
        evict_oldest(r);
    r->head = 0;
    r->base = r->newest = is_known ? newest : 0;
    r->is_known = is_known;
}

void
ring_release(struct ring *r)
{
    if (r == NULL || r->slots == NULL)
        return;
    ring_restart(r, false, 0);
    free(r->slots);
    r->slots = NULL;
}

void
ring_append(struct ring *r, const struct store_batch *batch)
{
    int64_t before = r->newest;  /* rows up to here may go; the append's own stay */
    for (size_t i = 0; i < batch->count; i++) {
        struct store_row *row = batch->rows[i];
        while (r->count > 0
               && (r->count == r->max_rows
                   || (r->bytes + row->bytes > r->max_bytes
                       && row_at(r, 0)->event.id <= before)))
            evict_oldest(r);
        r->slots[(r->head + r->count) % r->max_rows] = store_row_ref(row);
        r->count++;
        r->bytes += row->bytes;
        r->newest = row->event.id;
    }
}

/* Index (0 = oldest) of the first row with id > after_id; count when none. */
static size_t
first_after(const struct ring *r, int64_t after_id)
{
    size_t lo = 0, hi = r->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (row_at(r, mid)->event.id <= after_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int
ring_copy_after(const struct ring *r, const struct store_channel *ch, int64_t after_id,
                size_t max_rows, size_t max_bytes, struct store_batch *out,
                int64_t *scanned_through)
{
    store_batch_clear(out);
    *scanned_through = after_id;
    if (!r->is_known || after_id < r->base)
        return 0;
    size_t bytes = 0;
    for (size_t i = first_after(r, after_id); i < r->count; i++) {
        struct store_row *row = row_at(r, i);
        if (out->count >= max_rows || bytes >= max_bytes) {
            out->is_full = true;
            break;
        }
        *scanned_through = row->event.id;
        if (!store_event_in_channel(&row->event, ch))
            continue;
        long n = store_batch_add_row(out, row);
        if (n < 0)
            return -1;
        bytes += (size_t)n;
    }
    return 1;
}
