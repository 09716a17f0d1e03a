/*
 * fuzz_ring.c - libFuzzer target for the hub's batch handling (store/ring.c): appends of
 * batches of any size and mix of channels, restarts, copies after any id with any limits,
 * and copies held across evictions, as the hub and its streams do them.
 *
 * The input is a program of 4-byte steps: an op byte and three argument bytes. Invariants:
 * the ring never holds more than its bytes plus the last append; a copy returns 0 only for
 * a cursor before base (or an unknown ring); what it returns is in id order, after the
 * cursor, of the channel, within the row limit, and is exactly the rows a shadow list of
 * every appended row says the ring holds; a held copy stays readable after eviction (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/ring.h"
#include "tests/fuzz/check.h"

enum { RING_ROWS = 16, RING_BYTES = 8192, HELD_MAX = 4, SHADOW_MAX = 4096 };

static const char *const SESSIONS[] = {"s1", "s2", "s1\0x", NULL};
static const size_t SESSION_LENS[] = {2, 2, 4, 0};
static char filler[1024];

/* What every appended row was: id, session index, whether a BLOB. */
struct shadow_row {
    int64_t id;
    int session;
    bool is_blob;
};

struct world {
    struct ring ring;
    struct shadow_row rows[SHADOW_MAX];
    size_t count;
    int64_t next_id;
    size_t last_append_bytes;       /* of the last append that had rows */
    struct store_batch held[HELD_MAX];
};

static struct store_row *
make_row(const struct shadow_row *s, size_t data_len)
{
    struct event e = {.id = s->id, .type = "t", .type_len = 1, .data = filler,
                      .data_len = data_len, .is_session_id_blob = s->is_blob};
    e.session_id = SESSIONS[s->session];
    e.session_id_len = SESSION_LENS[s->session];
    return store_row_new(&e);
}

/* Appends n rows (channels and sizes from seed) as one batch. */
static void
do_append(struct world *w, unsigned n, unsigned seed)
{
    struct store_batch b;
    store_batch_init(&b);
    size_t appended = 0;
    for (unsigned i = 0; i < n && w->count < SHADOW_MAX; i++) {
        struct shadow_row *s = &w->rows[w->count];
        *s = (struct shadow_row){.id = w->next_id++, .session = (int)((seed + i) % 4),
                                 .is_blob = (seed >> 2 & 1) && i % 3 == 0};
        struct store_row *row = make_row(s, (seed * 37u + i * 101u) % sizeof(filler));
        if (row == NULL)
            break;
        CHECK(store_batch_add_row(&b, row) > 0);
        appended += row->bytes;
        store_row_unref(row);
        w->count++;
    }
    ring_append(&w->ring, &b);
    if (b.count > 0)
        w->last_append_bytes = appended;
    CHECK(w->ring.bytes <= RING_BYTES + w->last_append_bytes);
    store_batch_release(&b);
}

/* Whether shadow row s is in channel choice 0 (every row), 1 (s1), 2 (s2), 3 (global). */
static bool
shadow_in_channel(const struct shadow_row *s, unsigned choice)
{
    switch (choice) {
    case 1:
        return !s->is_blob && s->session == 0;
    case 2:
        return !s->is_blob && s->session == 1;
    case 3:
        return !s->is_blob && s->session == 3;
    default:
        return true;
    }
}

/* Copies after a cursor and checks the result against the shadow list. */
static void
do_copy(struct world *w, unsigned cursor_back, unsigned limit, unsigned channel)
{
    static const struct store_channel CHANNELS[] = {
        {STORE_SCOPE_ALL, NULL}, {STORE_SCOPE_SESSION, "s1"}, {STORE_SCOPE_SESSION, "s2"},
        {STORE_SCOPE_GLOBAL, NULL},
    };
    unsigned choice = channel % 4;
    struct store_channel ch = CHANNELS[choice];
    int64_t after = w->ring.newest - (int64_t)cursor_back;
    struct store_batch *out = &w->held[channel % HELD_MAX];
    int64_t scanned = 0;
    size_t max_rows = limit % 8 + 1;
    int rc = ring_copy_after(&w->ring, &ch, after, max_rows, SIZE_MAX, out, &scanned);
    CHECK(rc == 0 || rc == 1);
    CHECK(rc == 1 || !w->ring.is_known || after < w->ring.base);
    CHECK(out->count <= max_rows);
    int64_t last = after;
    for (size_t i = 0; i < out->count; i++) {
        CHECK(out->events[i].id > last && out->events[i].id <= scanned);
        CHECK(store_event_in_channel(&out->events[i], &ch));
        last = out->events[i].id;
    }
    if (rc == 0 || out->is_full)
        return;
    size_t expected = 0;  /* every shadow row of the channel after the cursor */
    for (size_t i = 0; i < w->count; i++) {
        const struct shadow_row *s = &w->rows[i];
        if (s->id > after && s->id <= w->ring.newest && shadow_in_channel(s, choice))
            CHECK(expected < out->count && out->events[expected++].id == s->id);
    }
    CHECK(expected == out->count);
}

/* Reads every held row end to end: an evicted row that was freed would be a use after
 * free here. */
static void
touch_held(const struct world *w)
{
    for (size_t h = 0; h < HELD_MAX; h++) {
        for (size_t i = 0; i < w->held[h].count; i++) {
            const struct event *e = &w->held[h].events[i];
            CHECK(e->data_len == 0 || (e->data[0] == 'f' && e->data[e->data_len - 1] == 'f'));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *input, size_t size)
{
    static struct world w;
    memset(filler, 'f', sizeof(filler));
    memset(&w, 0, sizeof(w));
    if (ring_init(&w.ring, RING_ROWS, RING_BYTES) < 0)
        return 0;
    ring_restart(&w.ring, true, 0);
    w.next_id = 1;
    for (size_t i = 0; i < HELD_MAX; i++)
        store_batch_init(&w.held[i]);
    for (size_t at = 0; at + 4 <= size; at += 4) {
        unsigned a = input[at + 1], b = input[at + 2], c = input[at + 3];
        switch (input[at] % 4) {
        case 0:
            do_append(&w, a % 40, b);
            break;
        case 1:
            do_copy(&w, a % 48, b, c);
            break;
        case 2:  /* a new database: the shadow starts again at the ring's newest */
            if (a % 8 == 0) {
                ring_restart(&w.ring, true, w.next_id - 1);
                w.count = 0;
            }
            break;
        default:
            store_batch_clear(&w.held[a % HELD_MAX]);
            break;
        }
        touch_held(&w);
    }
    for (size_t i = 0; i < HELD_MAX; i++)
        store_batch_release(&w.held[i]);
    ring_release(&w.ring);
    return 0;
}
