/*
 * fuzz_shring.c - libFuzzer target for the ring of recent rows that every process of a host
 * maps (store/shring.c). One program drives two halves:
 *
 * (a) appends of batches of any size and mix (sessions, worker streams, BLOB keys, frames,
 *     every timestamp kind, NULL and empty columns, rows large enough to be stubs, keys too
 *     large even for a stub), restarts, and copies after any cursor with any limits. A model
 *     of the layout shring.h describes (records end to end, never split across the area's
 *     end, stubs over a quarter, eviction of what a record overwrites and of one record when
 *     the index is full) knows the rows the ring holds and its base: a copy must return
 *     exactly the model's rows of its channel after the cursor, to the byte; 0 only when the
 *     ring knows nothing, the cursor is before base, or a stub of the channel is reached.
 * (b) hostile memory: steps that write bytes of the input raw over the mapping (head
 *     positions, index entries, record bytes). From the first one on, copies are only
 *     checked to stay in bounds (ASan: the mapping is a malloc'd block of its exact size) and
 *     to hand back rows of their channel within the row limit, whatever they return.
 *
 * The input: byte 0 picks the geometry, then 4-byte steps, an op byte and three arguments.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/shring.h"
#include "tests/fuzz/check.h"

enum {
    /* shring.c's record header; each non-NULL field adds its bytes and a NUL, and the whole
     * is rounded up to 8. A stub keeps session, type and stream; a keyless stub nothing. */
    RECORD_HEADER = 80,
    MODEL_MAX = 128,        /* records the model remembers: more than any geometry's slots */
    FILL_MAX = 4096,
    BIG_KEY = 700,          /* a key over a quarter of the smaller areas */
    HUGE_KEY = 9000,        /* a key longer than every area */
};

static const struct {
    size_t slots, data_bytes;
} GEOMETRIES[] = {{4, 512}, {16, 4096}, {64, 2048}, {8, 8192}, {5, 320}, {32, 1024}};

static char filler[FILL_MAX];
static char big_key[BIG_KEY + 1];
static char huge_key[HUGE_KEY + 1];

/* One record as the model sees it: the row is make_event(id, seed). */
struct model_record {
    int64_t id;
    uint32_t seed;
    uint64_t pos;
    size_t bytes;
    bool is_stub, is_keyless;
};

struct model {
    struct model_record rec[MODEL_MAX];  /* record n at rec[n % MODEL_MAX] */
    uint64_t first, next, head;          /* records [first, next); where the next one goes */
    int64_t base, newest;
    bool is_known;
};

struct world {
    struct shring ring;
    unsigned char *mem;
    size_t size, slots, data_bytes;
    struct model model;
    int64_t next_id;
    bool is_hostile;                     /* input bytes were written over the mapping */
    struct store_batch out;
};

static uint32_t
mix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* len bytes of filler from a place that depends on salt (filler holds NUL bytes). */
static const char *
slice(uint32_t salt, size_t len)
{
    return filler + salt % (FILL_MAX - len + 1);
}

/* A column from two bits: NULL, empty, some filler, or text with a NUL inside. */
static void
column(uint32_t bits, uint32_t salt, const char **ptr, size_t *len)
{
    static const char *const FIXED[] = {NULL, "", NULL, "x\0y"};
    static const size_t FIXED_LEN[] = {0, 0, 0, 3};
    *ptr = FIXED[bits & 3];
    *len = FIXED_LEN[bits & 3];
    if ((bits & 3) == 2) {
        *len = salt % 41;
        *ptr = slice(salt >> 8, *len);
    }
}

/* The row (id, seed) stands for: every byte a function of both. */
static void
make_event(int64_t id, uint32_t seed, struct event *e, const char **frame, size_t *frame_len)
{
    static const char *const SESSIONS[] = {"s1", "s2", "s1\0x", NULL, "", big_key, huge_key,
                                           "s1"};
    static const size_t SESSION_LENS[] = {2, 2, 4, 0, 0, BIG_KEY, HUGE_KEY, 2};
    static const char *const STREAMS[] = {NULL, "worker:w1", "worker:w2", ""};
    static const size_t STREAM_LENS[] = {0, 9, 9, 0};
    static const char *const TYPES[] = {"t", "", "type\0x", NULL};
    static const size_t TYPE_LENS[] = {1, 0, 6, 0};
    uint32_t h = seed, h2 = mix32(seed ^ 0x5bd1e995u);
    memset(e, 0, sizeof(*e));
    e->id = id;
    e->session_id = SESSIONS[h % 8];
    e->session_id_len = SESSION_LENS[h % 8];
    e->is_session_id_blob = (h >> 3) % 8 == 0;
    e->stream_id = STREAMS[(h >> 6) % 4];
    e->stream_id_len = STREAM_LENS[(h >> 6) % 4];
    e->is_stream_id_blob = (h >> 8) % 8 == 0;
    e->type = TYPES[(h >> 11) % 4];
    e->type_len = TYPE_LENS[(h >> 11) % 4];
    e->is_oversized = (h2 >> 20) % 16 == 0;
    size_t data_len = (h >> 15) % 4 == 0 ? (h >> 17) % 1100 : (h >> 17) % 61;
    if ((h >> 26) % 16 != 0) {
        e->data = slice(h2, data_len);
        e->data_len = data_len;
    }
    switch ((h >> 28) % 4) {
    case EVENT_VALUE_INTEGER:
        e->timestamp = (struct event_value){.kind = EVENT_VALUE_INTEGER, .integer = id * 7 - 3};
        break;
    case EVENT_VALUE_REAL:
        e->timestamp = (struct event_value){.kind = EVENT_VALUE_REAL,
                                            .real = id % 5 == 0 ? -0.0 : (double)id / 3.0};
        break;
    case EVENT_VALUE_TEXT:
        e->timestamp = (struct event_value){.kind = EVENT_VALUE_TEXT, .text_len = h2 % 40};
        e->timestamp.text = slice(h2 >> 3, e->timestamp.text_len);
        break;
    default:
        break;
    }
    column(h2, h2 >> 2, &e->node_id, &e->node_id_len);
    column(h2 >> 4, h2 >> 6, &e->execution_id, &e->execution_id_len);
    column(h2 >> 8, h2 >> 10, &e->correlation_id, &e->correlation_id_len);
    column(h2 >> 12, h2 >> 14, &e->colony_id, &e->colony_id_len);
    column(h2 >> 16, h2 >> 18, &e->run_id, &e->run_id_len);
    *frame = NULL;
    *frame_len = 0;
    if ((h >> 13) % 4 == 0) {
        *frame_len = (h2 >> 5) % 4 == 0 ? (h2 >> 7) % 1200 : (h2 >> 7) % 80;
        *frame = slice(h2 >> 11, *frame_len);
    }
}

static size_t
cost(const char *ptr, size_t len)
{
    return ptr != NULL ? len + 1 : 0;
}

static size_t
round8(size_t n)
{
    return (n + 7) / 8 * 8;
}

/* The model's append of one row: its record's size and place, and what it evicts. */
static void
model_append(struct world *w, int64_t id, uint32_t seed)
{
    struct model *m = &w->model;
    struct event e;
    const char *frame;
    size_t frame_len;
    make_event(id, seed, &e, &frame, &frame_len);
    size_t keys = cost(e.session_id, e.session_id_len) + cost(e.type, e.type_len)
                  + cost(e.stream_id, e.stream_id_len);
    size_t body = frame != NULL ? cost(frame, frame_len)
                                : cost(e.node_id, e.node_id_len)
                                      + cost(e.execution_id, e.execution_id_len)
                                      + cost(e.data, e.data_len)
                                      + (e.timestamp.kind == EVENT_VALUE_TEXT
                                             ? cost(e.timestamp.text, e.timestamp.text_len)
                                             : 0)
                                      + cost(e.correlation_id, e.correlation_id_len)
                                      + cost(e.colony_id, e.colony_id_len)
                                      + cost(e.run_id, e.run_id_len);
    size_t quarter = w->data_bytes / 4, bytes = round8(RECORD_HEADER + keys + body);
    bool is_stub = bytes > quarter, is_keyless = false;
    if (is_stub) {
        bytes = round8(RECORD_HEADER + keys);
        is_keyless = bytes > quarter;
        if (is_keyless)
            bytes = RECORD_HEADER;
    }
    uint64_t pos = m->head;
    if (pos % w->data_bytes + bytes > w->data_bytes)
        pos += w->data_bytes - pos % w->data_bytes;
    while (m->first < m->next
           && (m->next - m->first >= w->slots
               || m->rec[m->first % MODEL_MAX].pos + w->data_bytes < pos + bytes))
        m->base = m->rec[m->first++ % MODEL_MAX].id;
    m->rec[m->next++ % MODEL_MAX] = (struct model_record){
        .id = id, .seed = seed, .pos = pos, .bytes = bytes, .is_stub = is_stub,
        .is_keyless = is_keyless};
    m->head = pos + bytes;
    m->newest = id;
}

/* Appends n rows as one batch (rows from seed); only the writer, so not once hostile. */
static void
do_append(struct world *w, unsigned n, unsigned seed)
{
    if (w->is_hostile)
        return;
    struct store_batch b;
    store_batch_init(&b);
    for (unsigned i = 0; i < n; i++) {
        int64_t id = w->next_id;
        uint32_t h = mix32((uint32_t)id * 0x9e3779b9u ^ seed ^ i << 24);
        w->next_id += 1 + ((h >> 29) == 0 ? (int64_t)(h % 5) : 0);  /* ids with gaps */
        struct event e;
        const char *frame;
        size_t frame_len;
        make_event(id, h, &e, &frame, &frame_len);
        struct store_row *row = store_row_new(&e);
        CHECK(row != NULL);
        if (frame != NULL) {
            char *copy = malloc(frame_len + 1);
            CHECK(copy != NULL);
            memcpy(copy, frame, frame_len);
            copy[frame_len] = '\0';
            store_row_set_frame(row, copy, frame_len);
        }
        CHECK(store_batch_add_row(&b, row) > 0);
        store_row_unref(row);
        model_append(w, id, h);
    }
    shring_append(&w->ring, &b);
    store_batch_release(&b);
    CHECK(shring_newest(&w->ring) == w->model.newest);
}

static void
do_restart(struct world *w, unsigned a)
{
    struct model *m = &w->model;
    bool is_known = a % 4 != 0;
    int64_t newest = w->next_id - 1 + (int64_t)(a / 4 % 7) - 3;  /* a new database */
    shring_restart(&w->ring, is_known, newest);
    m->first = m->next;
    m->is_known = is_known;
    m->base = m->newest = is_known ? newest : 0;
    if (is_known)
        w->next_id = newest + 1;
    if (!w->is_hostile) {
        CHECK(shring_newest(&w->ring) == m->newest);
        CHECK(shring_is_known(&w->ring) == is_known);
    }
}

/* Whether got holds want's bytes (both NULL: SQL NULL), NUL-terminated. */
static bool
same_text(const char *got, size_t got_len, const char *want, size_t want_len)
{
    if (want == NULL)
        return got == NULL && got_len == 0;
    return got != NULL && got_len == want_len && memcmp(got, want, want_len) == 0
           && got[got_len] == '\0';
}

/* The copy of row k is the row (e, frame) to the byte: its keys and frame when it has one,
 * else every column. */
static void
check_row(const struct store_batch *out, size_t k, const struct event *e, const char *frame,
          size_t frame_len)
{
    const struct event *got = &out->events[k];
    const struct store_row *row = out->rows[k];
    CHECK(got->id == e->id);
    CHECK(got->is_session_id_blob == e->is_session_id_blob);
    CHECK(got->is_stream_id_blob == e->is_stream_id_blob);
    CHECK(got->is_oversized == e->is_oversized);
    CHECK(same_text(got->session_id, got->session_id_len, e->session_id, e->session_id_len));
    CHECK(same_text(got->type, got->type_len, e->type, e->type_len));
    CHECK(same_text(got->stream_id, got->stream_id_len, e->stream_id, e->stream_id_len));
    const struct event none = {0};
    const struct event *cols = frame != NULL ? &none : e;  /* a frame stands for them */
    CHECK(same_text(got->node_id, got->node_id_len, cols->node_id, cols->node_id_len));
    CHECK(same_text(got->execution_id, got->execution_id_len, cols->execution_id,
                    cols->execution_id_len));
    CHECK(same_text(got->data, got->data_len, cols->data, cols->data_len));
    CHECK(same_text(got->correlation_id, got->correlation_id_len, cols->correlation_id,
                    cols->correlation_id_len));
    CHECK(same_text(got->colony_id, got->colony_id_len, cols->colony_id,
                    cols->colony_id_len));
    CHECK(same_text(got->run_id, got->run_id_len, cols->run_id, cols->run_id_len));
    if (frame != NULL) {
        CHECK(row->frame != NULL && row->frame_len == frame_len);
        CHECK(memcmp(row->frame, frame, frame_len) == 0 && row->frame[frame_len] == '\0');
        return;
    }
    CHECK(row->frame == NULL);
    CHECK(got->timestamp.kind == e->timestamp.kind);
    if (e->timestamp.kind == EVENT_VALUE_INTEGER)
        CHECK(got->timestamp.integer == e->timestamp.integer);
    else if (e->timestamp.kind == EVENT_VALUE_REAL)
        CHECK(memcmp(&got->timestamp.real, &e->timestamp.real, sizeof(double)) == 0);
    else if (e->timestamp.kind == EVENT_VALUE_TEXT)
        CHECK(same_text(got->timestamp.text, got->timestamp.text_len, e->timestamp.text,
                        e->timestamp.text_len));
}

/* Reads every byte a copied string claims, terminator included (ASan checks the claim). */
static unsigned
touch(const char *p, size_t len)
{
    unsigned sum = 0;
    for (size_t i = 0; p != NULL && i <= len; i++)
        sum += (unsigned char)p[i];
    return sum;
}

static volatile unsigned sink;  /* what touch read, so that it is read */

/* What any copy must be, hostile memory or not: rows of the channel within the limit,
 * each string as long as it says. */
static void
check_well_formed(const struct store_batch *out, const struct store_channel *ch,
                  size_t max_rows)
{
    CHECK(out->count <= max_rows);
    for (size_t i = 0; i < out->count; i++) {
        const struct event *e = &out->events[i];
        const struct store_row *row = out->rows[i];
        CHECK(e->id == row->event.id && e->session_id == row->event.session_id
              && e->data == row->event.data && e->timestamp.kind == row->event.timestamp.kind);
        CHECK(store_event_in_channel(e, ch));
        sink += touch(e->session_id, e->session_id_len) + touch(e->type, e->type_len)
                + touch(e->stream_id, e->stream_id_len) + touch(e->node_id, e->node_id_len)
                + touch(e->execution_id, e->execution_id_len) + touch(e->data, e->data_len)
                + touch(e->correlation_id, e->correlation_id_len)
                + touch(e->colony_id, e->colony_id_len) + touch(e->run_id, e->run_id_len)
                + touch(row->frame, row->frame_len)
                + (e->timestamp.kind == EVENT_VALUE_TEXT
                       ? touch(e->timestamp.text, e->timestamp.text_len)
                       : 0);
    }
}

/* Copies after a cursor near newest with limits and a channel from the arguments, and
 * checks the copy against the model (unless hostile bytes made the model moot). */
static void
do_copy(struct world *w, unsigned a, unsigned b, unsigned c)
{
    static const struct store_channel channels[] = {
        {STORE_SCOPE_ALL, NULL}, {STORE_SCOPE_SESSION, "s1"}, {STORE_SCOPE_SESSION, "s2"},
        {STORE_SCOPE_GLOBAL, NULL}, {STORE_SCOPE_WORKER, "worker:w1"},
        {STORE_SCOPE_WORKER, "worker:w2"}, {STORE_SCOPE_SESSION, big_key},
        {STORE_SCOPE_SESSION, ""},
    };
    const struct store_channel *ch = &channels[c % 8];
    const struct model *m = &w->model;
    int64_t after = a >= 250 ? (int64_t)a - 252 : m->newest - (int64_t)(a % 64) + 8;
    size_t max_rows = b >= 240 ? SIZE_MAX : b % 12;
    static const size_t BYTE_LIMITS[] = {SIZE_MAX, 0, 1};
    size_t max_bytes = c >> 3 < 3 ? BYTE_LIMITS[c >> 3] : (c >> 3) * 97u;
    struct store_batch *out = &w->out;
    int64_t scanned = INT64_MIN;
    int rc = shring_copy_after(&w->ring, ch, after, max_rows, max_bytes, out, &scanned, NULL, NULL);
    CHECK(rc == 0 || rc == 1);
    CHECK(rc == 1 || (out->count == 0 && scanned == after));
    check_well_formed(out, ch, max_rows);
    if (w->is_hostile)
        return;
    if (!m->is_known || after < m->base) {
        CHECK(rc == 0);
        return;
    }
    /* Walk the model's records as the copy must; with rc 0 the byte limit is not known
     * (the copy's costs are), so a stub of the channel within the row limit must be. */
    size_t k = 0, bytes = 0;
    int64_t want_scanned = after;
    bool is_full = false, is_stub_reached = false;
    for (uint64_t n = m->first; n < m->next; n++) {
        const struct model_record *mr = &m->rec[n % MODEL_MAX];
        if (mr->id <= after)
            continue;
        if (k >= max_rows || bytes >= max_bytes) {
            is_full = true;
            break;
        }
        struct event e;
        const char *frame;
        size_t frame_len;
        make_event(mr->id, mr->seed, &e, &frame, &frame_len);
        if (mr->is_keyless || store_event_in_channel(&e, ch)) {
            if (mr->is_stub) {
                is_stub_reached = true;
                break;
            }
            if (rc == 1) {
                CHECK(k < out->count);
                check_row(out, k, &e, frame, frame_len);
                bytes += out->rows[k]->bytes;
            }
            k++;
        }
        want_scanned = mr->id;
    }
    if (rc == 0) {
        CHECK(is_stub_reached);
        return;
    }
    CHECK(!is_stub_reached);
    CHECK(k == out->count);
    CHECK(is_full == out->is_full);
    CHECK(scanned == want_scanned);
}

/* A value to write over a position, a length or an id: edges of the geometry, of 32 and
 * of 64 bits, nudged by the argument's high bits. */
static uint64_t
hostile_value(const struct world *w, unsigned c)
{
    const uint64_t values[] = {
        0, 1, w->slots, w->data_bytes, w->data_bytes - RECORD_HEADER, 2 * w->data_bytes,
        UINT32_MAX, UINT32_MAX - 1, 0x80000000u, UINT64_MAX, UINT64_MAX / 2,
        (uint64_t)INT64_MIN, w->model.next, w->model.first, w->model.head,
        (uint64_t)w->model.newest,
    };
    return values[c % 16] + (uint64_t)(c >> 4) - 8;
}

/* Writes at an offset of the mapping (wrapped, aligned to width) the width low bytes of v. */
static void
poke(struct world *w, size_t offset, uint64_t v, size_t width)
{
    offset = offset * width % w->size;
    w->is_hostile = true;
    for (size_t i = 0; i < width && offset + i < w->size; i++)
        w->mem[offset + i] = (unsigned char)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    static struct world w;
    if (size < 1)
        return 0;
    for (size_t i = 0; i < FILL_MAX; i++)
        filler[i] = (char)((i * 7 + 3) % 251);
    memset(big_key, 'k', BIG_KEY);
    memset(huge_key, 'h', HUGE_KEY);
    memset(&w, 0, sizeof(w));
    size_t g = input[0] % (sizeof(GEOMETRIES) / sizeof(GEOMETRIES[0]));
    w.slots = GEOMETRIES[g].slots;
    w.data_bytes = GEOMETRIES[g].data_bytes;
    w.size = shring_size(w.slots, w.data_bytes);
    w.mem = malloc(w.size);  /* exactly: a read past the mapping is an ASan report */
    CHECK(w.mem != NULL);
    memset(w.mem, 0xa5, w.size);  /* never-written records read the same on every run */
    shring_format(w.mem, w.slots, w.data_bytes);
    CHECK(shring_attach(&w.ring, w.mem, w.size, w.slots, w.data_bytes) == 0);
    shring_restart(&w.ring, true, 0);
    w.model.is_known = true;
    w.next_id = 1;
    store_batch_init(&w.out);
    for (size_t at = 1; at + 4 <= size; at += 4) {
        unsigned a = input[at + 1], b = input[at + 2], c = input[at + 3];
        switch (input[at] % 16) {
        case 0: case 1: case 2: case 3: case 4:
            do_append(&w, a % 40, b | c << 8);
            break;
        case 5: case 6: case 7: case 8: case 9: case 10:
            do_copy(&w, a, b, c);
            break;
        case 11: case 12:
            do_restart(&w, a);
            break;
        case 13:  /* a 32-bit field: lengths, bytes and flags */
            poke(&w, a | b << 8, hostile_value(&w, c), 4);
            break;
        case 14:  /* a 64-bit field: positions, record numbers, ids */
            poke(&w, a | b << 8, hostile_value(&w, c), 8);
            break;
        default: {  /* raw bytes: the next (a % 16 + 1) steps of the input */
            size_t n = 4 * (a % 16 + 1u), offset = (b | c << 8) * 4u % w.size;
            n = n < size - at - 4 ? n : size - at - 4;
            n = n < w.size - offset ? n : w.size - offset;
            memcpy(w.mem + offset, input + at + 4, n);
            w.is_hostile = true;
            at += n / 4 * 4;
            break;
        }
        }
    }
    store_batch_release(&w.out);
    free(w.mem);
    return 0;
}
