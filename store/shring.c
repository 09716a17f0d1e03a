/*
 * shring.c - the ring of recent rows shared between processes (see shring.h).
 *
 * Ordering, the seqlock of DEPLOY-NOTES "Seqlock on a 64 KiB record" with record numbers
 * for the sequence:
 *   writer: advance base and first_n past what it will overwrite; release fence; write the
 *           record and its index entry; publish data_head, newest, then next_n (release).
 *   reader: load next_n (acquire); copy records below it; acquire fence; load first_n and
 *           base again. If first_n passed the first record it copied, or base passed its
 *           cursor, some of what it read may have been rewritten: it discards the copy.
 * The record bytes are plain memory read with memcpy, checked before use, never trusted.
 */
#include "shring.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum {
    SHRING_MAGIC = 0x53524e47,     /* "SRNG" */
    SHRING_VERSION = 1,
    SHRING_ALIGN = 8,
    SHRING_NULL = UINT32_MAX,       /* a field's length when it is SQL NULL */
};

/* The fields a record may hold, in the order their bytes follow the header. */
enum shring_field {
    F_SESSION_ID, F_TYPE, F_STREAM_ID, F_NODE_ID, F_EXECUTION_ID, F_DATA, F_TIMESTAMP,
    F_CORRELATION_ID, F_COLONY_ID, F_RUN_ID, F_FRAME, F_COUNT
};

enum record_flag {
    R_SESSION_BLOB = 1u << 0,
    R_STREAM_BLOB = 1u << 1,
    R_OVERSIZED = 1u << 2,
    R_STUB = 1u << 3,               /* keys only: read the row from the database */
    R_TS_SHIFT = 4,                 /* two bits: enum event_value_kind of the timestamp */
    R_KEYLESS = 1u << 6,            /* a stub whose keys were too large: every channel's */
};

struct shring_head {
    uint32_t magic, version;
    uint64_t slots, data_bytes;
    _Atomic uint64_t first_n, next_n;   /* records [first_n, next_n) are intact */
    _Atomic uint64_t data_head;         /* where the next record goes (only grows) */
    _Atomic int64_t base, newest;
    _Atomic uint32_t is_known;
};

struct shring_slot {
    _Atomic int64_t id;
    _Atomic uint64_t pos;
};

struct record {
    uint32_t bytes;                 /* the whole record, a multiple of SHRING_ALIGN */
    uint32_t flags;
    uint64_t n;
    int64_t id;
    int64_t ts_bits;                /* the timestamp's integer, or its double's bits */
    uint32_t len[F_COUNT];
};

static size_t
align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

static size_t
head_bytes(void)
{
    return align_up(sizeof(struct shring_head), 64);
}

size_t
shring_size(size_t slots, size_t data_bytes)
{
    return head_bytes() + slots * sizeof(struct shring_slot) + data_bytes;
}

static void
point_into(struct shring *r, void *mem, size_t slots, size_t data_bytes)
{
    r->head = mem;
    r->index = (struct shring_slot *)((unsigned char *)mem + head_bytes());
    r->data = (unsigned char *)(r->index + slots);
    r->slots = slots;
    r->data_bytes = data_bytes;
}

void
shring_format(void *mem, size_t slots, size_t data_bytes)
{
    struct shring r;
    memset(mem, 0, shring_size(slots, 0));
    point_into(&r, mem, slots, data_bytes);
    r.head->slots = slots;
    r.head->data_bytes = data_bytes;
    r.head->version = SHRING_VERSION;
    atomic_thread_fence(memory_order_release);
    r.head->magic = SHRING_MAGIC;
}

int
shring_attach(struct shring *r, void *mem, size_t size, size_t slots, size_t data_bytes)
{
    if (size < shring_size(slots, data_bytes) || data_bytes % SHRING_ALIGN != 0 || slots == 0
        || data_bytes < 4 * sizeof(struct record))  /* a keyless stub fits in a quarter */
        return -1;
    point_into(r, mem, slots, data_bytes);
    const struct shring_head *h = r->head;
    if (h->magic != SHRING_MAGIC || h->version != SHRING_VERSION || h->slots != slots
        || h->data_bytes != data_bytes)
        return -1;
    return 0;
}

int64_t
shring_newest(const struct shring *r)
{
    return atomic_load_explicit(&r->head->newest, memory_order_acquire);
}

bool
shring_is_known(const struct shring *r)
{
    return atomic_load_explicit(&r->head->is_known, memory_order_acquire) != 0;
}

void
shring_restart(struct shring *r, bool is_known, int64_t newest)
{
    struct shring_head *h = r->head;
    /* Readers that copied a record see first_n pass it; base and newest follow. */
    atomic_store_explicit(&h->first_n, atomic_load(&h->next_n), memory_order_relaxed);
    atomic_store_explicit(&h->base, is_known ? newest : 0, memory_order_relaxed);
    atomic_store_explicit(&h->newest, is_known ? newest : 0, memory_order_relaxed);
    atomic_store_explicit(&h->is_known, is_known, memory_order_release);
}

/* The bytes and length of each field of e (frame: row->frame). With a frame, the columns
 * only a framer needs are left out; a stub keeps only the keys and type. */
static void
fields_of(const struct store_row *row, bool is_stub, const char *ptr[F_COUNT],
          uint32_t len[F_COUNT])
{
    const struct event *e = &row->event;
    const char *p[F_COUNT] = {
        e->session_id, e->type, e->stream_id, e->node_id, e->execution_id, e->data,
        e->timestamp.kind == EVENT_VALUE_TEXT ? e->timestamp.text : NULL,
        e->correlation_id, e->colony_id, e->run_id, row->frame,
    };
    size_t l[F_COUNT] = {
        e->session_id_len, e->type_len, e->stream_id_len, e->node_id_len,
        e->execution_id_len, e->data_len, e->timestamp.text_len, e->correlation_id_len,
        e->colony_id_len, e->run_id_len, row->frame_len,
    };
    for (size_t f = 0; f < F_COUNT; f++) {
        bool is_kept = f == F_SESSION_ID || f == F_TYPE || f == F_STREAM_ID
                       || (!is_stub && (row->frame != NULL ? f == F_FRAME : f != F_FRAME));
        ptr[f] = is_kept ? p[f] : NULL;
        len[f] = ptr[f] != NULL && l[f] < SHRING_NULL ? (uint32_t)l[f] : SHRING_NULL;
        if (len[f] == SHRING_NULL)
            ptr[f] = NULL;
    }
}

static size_t
record_bytes(const uint32_t len[F_COUNT])
{
    size_t n = sizeof(struct record);
    for (size_t f = 0; f < F_COUNT; f++)
        n += len[f] == SHRING_NULL ? 0 : (size_t)len[f] + 1;
    return align_up(n, SHRING_ALIGN);
}

/* Evicts the records that a record at [pos, end) overwrites, and one when the index is
 * full; then fences, so that a reader who sees any byte written after sees the eviction. */
static void
evict_before(struct shring *r, uint64_t end)
{
    struct shring_head *h = r->head;
    uint64_t first = atomic_load_explicit(&h->first_n, memory_order_relaxed);
    uint64_t next = atomic_load_explicit(&h->next_n, memory_order_relaxed);
    int64_t base = atomic_load_explicit(&h->base, memory_order_relaxed);
    while (first < next
           && (next - first >= r->slots
               || atomic_load_explicit(&r->index[first % r->slots].pos, memory_order_relaxed)
                      + r->data_bytes < end)) {
        base = atomic_load_explicit(&r->index[first % r->slots].id, memory_order_relaxed);
        first++;
    }
    atomic_store_explicit(&h->base, base, memory_order_relaxed);
    atomic_store_explicit(&h->first_n, first, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void
append_row(struct shring *r, const struct store_row *row)
{
    struct shring_head *h = r->head;
    const char *ptr[F_COUNT];
    uint32_t len[F_COUNT];
    fields_of(row, false, ptr, len);
    size_t bytes = record_bytes(len);
    bool is_stub = bytes > r->data_bytes / 4;
    if (is_stub) {
        fields_of(row, true, ptr, len);
        bytes = record_bytes(len);
    }
    bool is_keyless = is_stub && bytes > r->data_bytes / 4;  /* keys too large: keep none */
    if (is_keyless) {
        for (size_t f = 0; f < F_COUNT; f++)
            ptr[f] = NULL, len[f] = SHRING_NULL;
        bytes = record_bytes(len);
    }
    uint64_t pos = atomic_load_explicit(&h->data_head, memory_order_relaxed);
    if (pos % r->data_bytes + bytes > r->data_bytes)
        pos += r->data_bytes - pos % r->data_bytes;  /* never split across the end */
    evict_before(r, pos + bytes);

    const struct event *e = &row->event;
    uint64_t n = atomic_load_explicit(&h->next_n, memory_order_relaxed);
    struct record rec = {
        .bytes = (uint32_t)bytes, .n = n, .id = e->id,
        .flags = (e->is_session_id_blob ? R_SESSION_BLOB : 0u)
                 | (e->is_stream_id_blob ? R_STREAM_BLOB : 0u)
                 | (e->is_oversized ? R_OVERSIZED : 0u) | (is_stub ? R_STUB : 0u)
                 | (is_keyless ? R_KEYLESS : 0u)
                 | ((uint32_t)e->timestamp.kind << R_TS_SHIFT),
    };
    if (e->timestamp.kind == EVENT_VALUE_INTEGER)
        rec.ts_bits = e->timestamp.integer;
    else if (e->timestamp.kind == EVENT_VALUE_REAL)
        memcpy(&rec.ts_bits, &e->timestamp.real, sizeof(rec.ts_bits));
    memcpy(rec.len, len, sizeof(rec.len));
    unsigned char *out = r->data + pos % r->data_bytes;
    memcpy(out, &rec, sizeof(rec));
    size_t at = sizeof(rec);
    for (size_t f = 0; f < F_COUNT; f++) {
        if (len[f] == SHRING_NULL)
            continue;
        memcpy(out + at, ptr[f], len[f]);
        out[at + len[f]] = '\0';
        at += (size_t)len[f] + 1;
    }
    struct shring_slot *slot = &r->index[n % r->slots];
    atomic_store_explicit(&slot->id, e->id, memory_order_relaxed);
    atomic_store_explicit(&slot->pos, pos, memory_order_relaxed);
    atomic_store_explicit(&h->data_head, pos + bytes, memory_order_relaxed);
    atomic_store_explicit(&h->newest, e->id, memory_order_relaxed);
    atomic_store_explicit(&h->next_n, n + 1, memory_order_release);
}

void
shring_append(struct shring *r, const struct store_batch *batch)
{
    for (size_t i = 0; i < batch->count; i++)
        append_row(r, batch->rows[i]);
}

/* A record as read from shared memory, its fields pointing into the mapping. */
struct view {
    struct record rec;
    const char *field[F_COUNT];
};

/* Reads the record of index entry n into v, checking every length against the area.
 * Returns false when it is not a whole record (torn, or never written). */
static bool
read_record(const struct shring *r, uint64_t n, struct view *v)
{
    uint64_t pos = atomic_load_explicit(&r->index[n % r->slots].pos, memory_order_relaxed);
    size_t off = (size_t)(pos % r->data_bytes);
    if (off + sizeof(v->rec) > r->data_bytes)
        return false;
    memcpy(&v->rec, r->data + off, sizeof(v->rec));
    if (v->rec.n != n || v->rec.bytes < sizeof(v->rec) || v->rec.bytes > r->data_bytes - off)
        return false;
    size_t at = sizeof(v->rec);
    for (size_t f = 0; f < F_COUNT; f++) {
        v->field[f] = NULL;
        if (v->rec.len[f] == SHRING_NULL)
            continue;
        if ((size_t)v->rec.len[f] + 1 > v->rec.bytes - at)
            return false;
        v->field[f] = (const char *)r->data + off + at;
        at += (size_t)v->rec.len[f] + 1;
    }
    return true;
}

static size_t
field_len(const struct view *v, enum shring_field f)
{
    return v->field[f] != NULL ? v->rec.len[f] : 0;
}

/* Only what store_event_in_channel reads of a view: a reader passes over most records
 * (other channels' rows), so it decodes the rest only of those it copies. */
static void
keys_of(const struct view *v, struct event *e)
{
    memset(e, 0, sizeof(*e));
    e->id = v->rec.id;
    e->is_session_id_blob = (v->rec.flags & R_SESSION_BLOB) != 0;
    e->is_stream_id_blob = (v->rec.flags & R_STREAM_BLOB) != 0;
    e->session_id = v->field[F_SESSION_ID], e->session_id_len = field_len(v, F_SESSION_ID);
    e->stream_id = v->field[F_STREAM_ID], e->stream_id_len = field_len(v, F_STREAM_ID);
}

/* The event a view describes; its strings point into the mapping (copy before use). */
static void
event_of(const struct view *v, struct event *e)
{
    keys_of(v, e);
    e->is_oversized = (v->rec.flags & R_OVERSIZED) != 0;
    e->type = v->field[F_TYPE], e->type_len = field_len(v, F_TYPE);
    e->node_id = v->field[F_NODE_ID], e->node_id_len = field_len(v, F_NODE_ID);
    e->execution_id = v->field[F_EXECUTION_ID];
    e->execution_id_len = field_len(v, F_EXECUTION_ID);
    e->data = v->field[F_DATA], e->data_len = field_len(v, F_DATA);
    e->correlation_id = v->field[F_CORRELATION_ID];
    e->correlation_id_len = field_len(v, F_CORRELATION_ID);
    e->colony_id = v->field[F_COLONY_ID], e->colony_id_len = field_len(v, F_COLONY_ID);
    e->run_id = v->field[F_RUN_ID], e->run_id_len = field_len(v, F_RUN_ID);
    unsigned kind = (v->rec.flags >> R_TS_SHIFT) & 3u;
    e->timestamp.kind = (enum event_value_kind)kind;
    if (kind == EVENT_VALUE_INTEGER)
        e->timestamp.integer = v->rec.ts_bits;
    else if (kind == EVENT_VALUE_REAL)
        memcpy(&e->timestamp.real, &v->rec.ts_bits, sizeof(e->timestamp.real));
    else if (kind == EVENT_VALUE_TEXT && v->field[F_TIMESTAMP] != NULL)
        e->timestamp.text = v->field[F_TIMESTAMP], e->timestamp.text_len = v->rec.len[F_TIMESTAMP];
    else
        e->timestamp.kind = EVENT_VALUE_NULL;
}

/* Copies v into a row of out. Returns the bytes it costs, or -1 when out of memory. */
static long
copy_into(const struct view *v, struct store_batch *out)
{
    struct event e;
    event_of(v, &e);
    struct store_row *row = store_row_new(&e);
    if (row == NULL)
        return -1;
    if (v->field[F_FRAME] != NULL) {
        char *frame = malloc(v->rec.len[F_FRAME] + 1u);
        if (frame == NULL) {
            store_row_unref(row);
            return -1;
        }
        memcpy(frame, v->field[F_FRAME], v->rec.len[F_FRAME]);
        frame[v->rec.len[F_FRAME]] = '\0';
        store_row_set_frame(row, frame, v->rec.len[F_FRAME]);
    }
    long n = store_batch_add_row(out, row);
    store_row_unref(row);  /* the batch holds it now */
    return n;
}

/* Puts the whole row of a stub into out, from load. Returns its cost, 0 when load gave
 * nothing, -1 when out of memory. */
static long
copy_stub(const struct view *v, struct store_batch *out, shring_load_fn load, void *ctx)
{
    struct store_row *row = load != NULL ? load(ctx, v->rec.id) : NULL;
    if (row == NULL)
        return 0;
    long n = row->event.id == v->rec.id ? store_batch_add_row(out, row) : 0;
    store_row_unref(row);
    return n;
}

/* The first record number in [lo, hi) whose id is > after_id (ids grow with n). */
static uint64_t
first_after(const struct shring *r, uint64_t lo, uint64_t hi, int64_t after_id)
{
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (atomic_load_explicit(&r->index[mid % r->slots].id, memory_order_relaxed) <= after_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int
shring_copy_after(const struct shring *r, const struct store_channel *ch, int64_t after_id,
                  size_t max_rows, size_t max_bytes, struct store_batch *out,
                  int64_t *scanned_through, shring_load_fn load, void *load_ctx)
{
    const struct shring_head *h = r->head;
    store_batch_clear(out);
    *scanned_through = after_id;
    if (!shring_is_known(r))
        return 0;
    uint64_t next = atomic_load_explicit(&h->next_n, memory_order_acquire);
    uint64_t first = atomic_load_explicit(&h->first_n, memory_order_relaxed);
    if (after_id < atomic_load_explicit(&h->base, memory_order_relaxed) || first > next)
        return 0;
    uint64_t start = first_after(r, first, next, after_id);
    int64_t scanned = after_id;
    size_t bytes = 0;
    int rc = 1;
    for (uint64_t n = start; n < next; n++) {
        if (out->count >= max_rows || bytes >= max_bytes) {
            out->is_full = true;
            break;
        }
        struct view v;
        if (!read_record(r, n, &v)) {
            rc = 0;
            break;
        }
        struct event e;
        keys_of(&v, &e);
        if ((v.rec.flags & R_KEYLESS) != 0) {
            rc = 0;  /* its channel is unknown: the database has it */
            break;
        }
        if (store_event_in_channel(&e, ch)) {
            long cost = (v.rec.flags & R_STUB) != 0 ? copy_stub(&v, out, load, load_ctx)
                                                    : copy_into(&v, out);
            if (cost == 0) {
                rc = 0;  /* a stub nobody loaded: the database has it */
                break;
            }
            if (cost < 0) {
                store_batch_clear(out);
                return -1;
            }
            bytes += (size_t)cost;
        }
        scanned = v.rec.id;
    }
    /* Whatever was read may have been rewritten meanwhile: check that none of it was. */
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&h->first_n, memory_order_relaxed) > start
        || after_id < atomic_load_explicit(&h->base, memory_order_relaxed))
        rc = 0;
    if (rc != 1) {
        store_batch_clear(out);
        return rc;
    }
    *scanned_through = scanned;
    return 1;
}
