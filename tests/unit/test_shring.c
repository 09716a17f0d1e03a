/*
 * test_shring.c - the ring of recent rows that every process maps (store/shring.h), through
 * its header.
 *
 * Each ring lives in a malloc'd block of exactly shring_size bytes followed by a guard, so a
 * record written past the end of the area shows as a changed guard here and as a heap
 * overflow under ASan. Record sizes are chosen exactly (RECORD_HEADER below), so that what
 * eviction by bytes keeps is known to the row. The last test runs a writer thread that wraps
 * a small ring constantly beside a reader: every copy it accepts must be exactly right.
 */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/shring.h"

enum {
    /* shring.c's record header (4 + 4 + 8 + 8 + 8 + 11 * 4 bytes, aligned to 8); each
     * non-NULL field adds its bytes and a NUL, the whole rounded up to 8. */
    RECORD_HEADER = 80,
    /* A row of make_row: header, "sN" and "t" with their NULs, then data_len + 1. */
    ROW_OVERHEAD = RECORD_HEADER + 3 + 2 + 1,
    GUARD = 64,
    DATA_MAX = 4096,
};

static char data_bytes[DATA_MAX];

/* A ring in memory of its own, with a guard after it. */
struct mapped {
    struct shring r;
    unsigned char *mem;
    size_t size;
};

static void
map_ring(struct mapped *m, size_t slots, size_t area)
{
    m->size = shring_size(slots, area);
    m->mem = malloc(m->size + GUARD);
    ck_assert_ptr_nonnull(m->mem);
    memset(m->mem, 0xa5, m->size + GUARD);  /* format must not need zeroed memory */
    shring_format(m->mem, slots, area);
    ck_assert_int_eq(shring_attach(&m->r, m->mem, m->size, slots, area), 0);
    shring_restart(&m->r, true, 0);
}

static void
unmap_ring(struct mapped *m)
{
    for (size_t i = 0; i < GUARD; i++)
        ck_assert_uint_eq(m->mem[m->size + i], 0xa5);  /* nothing written past the area */
    free(m->mem);
}

/* The deterministic data of row id: data_len bytes, some of them NUL. */
static const char *
data_of(int64_t id, size_t data_len)
{
    ck_assert_uint_le(data_len, sizeof(data_bytes));
    for (size_t i = 0; i < data_len; i++)
        data_bytes[i] = (char)((id * 31 + (int64_t)i * 7) % 97);
    return data_bytes;
}

/* Appends one row made with store_row_new from e (and frame, when not NULL). */
static void
append_event(struct shring *r, const struct event *e, const char *frame, size_t frame_len)
{
    struct store_row *row = store_row_new(e);
    ck_assert_ptr_nonnull(row);
    if (frame != NULL) {
        char *copy = malloc(frame_len + 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, frame, frame_len);
        copy[frame_len] = '\0';
        store_row_set_frame(row, copy, frame_len);
    }
    struct store_batch b;
    store_batch_init(&b);
    ck_assert_int_ge(store_batch_add_row(&b, row), 0);
    store_row_unref(row);
    shring_append(r, &b);
    store_batch_release(&b);
}

/* Appends rows first_id..last_id (sessions alternate s1, s2) of data_len bytes of data, as
 * one batch: a record of ROW_OVERHEAD + data_len bytes each, rounded up to 8. */
static void
append_range(struct shring *r, int64_t first_id, int64_t last_id, size_t data_len)
{
    struct store_batch b;
    store_batch_init(&b);
    for (int64_t id = first_id; id <= last_id; id++) {
        struct event e = {.id = id, .session_id = id % 2 ? "s1" : "s2", .session_id_len = 2,
                          .type = "t", .type_len = 1, .data = data_of(id, data_len),
                          .data_len = data_len};
        struct store_row *row = store_row_new(&e);
        ck_assert_ptr_nonnull(row);
        ck_assert_int_ge(store_batch_add_row(&b, row), 0);
        store_row_unref(row);
    }
    shring_append(r, &b);
    store_batch_release(&b);
}

static const struct store_channel ALL = {STORE_SCOPE_ALL, NULL};
static const struct store_channel S1 = {STORE_SCOPE_SESSION, "s1"};
static const struct store_channel S2 = {STORE_SCOPE_SESSION, "s2"};
static const struct store_channel GLOBAL = {STORE_SCOPE_GLOBAL, NULL};
static const struct store_channel W1 = {STORE_SCOPE_WORKER, "worker:w1"};

enum { ANY_SCANNED = -999 };

/* Copies after after_id and checks the result code, the ids, is_full and (unless
 * ANY_SCANNED) scanned_through; rows made by append_range must hold their data. */
static void
expect_copy(const struct shring *r, const struct store_channel *ch, int64_t after_id,
            size_t max_rows, int want_rc, const int64_t *ids, size_t n, bool is_full,
            int64_t want_scanned)
{
    struct store_batch out;
    store_batch_init(&out);
    int64_t scanned = -1;
    int rc = shring_copy_after(r, ch, after_id, max_rows, SIZE_MAX, &out, &scanned, NULL, NULL);
    ck_assert_int_eq(rc, want_rc);
    ck_assert_uint_eq(out.count, n);
    for (size_t i = 0; i < n; i++) {
        const struct event *e = &out.events[i];
        ck_assert_int_eq(e->id, ids[i]);
        if (e->data != NULL) {
            ck_assert_mem_eq(e->data, data_of(e->id, e->data_len), e->data_len);
            ck_assert_int_eq(e->data[e->data_len], '\0');
        }
    }
    ck_assert(out.is_full == is_full);
    if (want_rc != 1)
        ck_assert_int_eq(scanned, after_id);
    else if (want_scanned != ANY_SCANNED)
        ck_assert_int_eq(scanned, want_scanned);
    store_batch_release(&out);
}

START_TEST(test_attach_checks_geometry)
{
    size_t size = shring_size(8, 1024);
    unsigned char *mem = malloc(size);
    ck_assert_ptr_nonnull(mem);
    struct shring r;
    memset(mem, 0, size);
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 1024), -1);  /* never formatted */
    memset(mem, 0xff, size);
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 1024), -1);
    shring_format(mem, 8, 1024);
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 1024), 0);
    ck_assert(!shring_is_known(&r));
    ck_assert_int_eq(shring_newest(&r), 0);
    expect_copy(&r, &ALL, 0, 10, 0, NULL, 0, false, 0);
    ck_assert_int_eq(shring_attach(&r, mem, size - 1, 8, 1024), -1);   /* too small */
    ck_assert_int_eq(shring_attach(&r, mem, size, 4, 1024), -1);       /* other slots */
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 512), -1);        /* other area */
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 1020), -1);       /* not 8-aligned */
    ck_assert_int_eq(shring_attach(&r, mem, size, 0, 1024), -1);
    ck_assert_int_eq(shring_attach(&r, mem, size + 100, 8, 1024), 0);  /* room to spare */
    shring_format(mem, 4, 1024);  /* another geometry in the same memory */
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 1024), -1);
    ck_assert_int_eq(shring_attach(&r, mem, size, 4, 1024), 0);
    mem[0] ^= 1;  /* the magic opens the head */
    ck_assert_int_eq(shring_attach(&r, mem, size, 4, 1024), -1);
    free(mem);
}
END_TEST

/* An area too small for four records of the smallest size (a header) is refused: a zero
 * one would divide by zero at the first append, a tiny one overflow with its first stub. */
START_TEST(test_attach_refuses_a_tiny_area)
{
    size_t size = shring_size(8, 4 * RECORD_HEADER);
    unsigned char *mem = malloc(size);
    ck_assert_ptr_nonnull(mem);
    struct shring r;
    shring_format(mem, 8, 0);
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 0), -1);
    shring_format(mem, 8, 4 * RECORD_HEADER - 8);
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 4 * RECORD_HEADER - 8), -1);
    shring_format(mem, 8, 4 * RECORD_HEADER);
    ck_assert_int_eq(shring_attach(&r, mem, size, 8, 4 * RECORD_HEADER), 0);
    free(mem);
}
END_TEST

START_TEST(test_restart_known_and_unknown)
{
    struct mapped m;
    map_ring(&m, 8, 4096);
    shring_restart(&m.r, true, 10);
    ck_assert(shring_is_known(&m.r));
    ck_assert_int_eq(shring_newest(&m.r), 10);
    expect_copy(&m.r, &ALL, 9, 10, 0, NULL, 0, false, 0);     /* before base: the database */
    expect_copy(&m.r, &ALL, 10, 10, 1, NULL, 0, false, 10);   /* at base: nothing new yet */
    expect_copy(&m.r, &ALL, 99, 10, 1, NULL, 0, false, 99);   /* past newest */
    append_range(&m.r, 11, 14, 10);
    ck_assert_int_eq(shring_newest(&m.r), 14);
    shring_restart(&m.r, true, 20);  /* every row dropped */
    ck_assert_int_eq(shring_newest(&m.r), 20);
    expect_copy(&m.r, &ALL, 13, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 20, 10, 1, NULL, 0, false, 20);
    append_range(&m.r, 21, 22, 10);
    expect_copy(&m.r, &ALL, 20, 10, 1, (const int64_t[]){21, 22}, 2, false, 22);
    shring_restart(&m.r, false, 30);
    ck_assert(!shring_is_known(&m.r));
    ck_assert_int_eq(shring_newest(&m.r), 0);
    expect_copy(&m.r, &ALL, 22, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 99, 10, 0, NULL, 0, false, 0);
    shring_restart(&m.r, true, 5);  /* a new database may start lower */
    append_range(&m.r, 6, 7, 10);
    expect_copy(&m.r, &ALL, 5, 10, 1, (const int64_t[]){6, 7}, 2, false, 7);
    expect_copy(&m.r, &ALL, 4, 10, 0, NULL, 0, false, 0);
    unmap_ring(&m);
}
END_TEST

START_TEST(test_copy_at_every_edge)
{
    struct mapped m;
    map_ring(&m, 8, 1 << 16);
    shring_restart(&m.r, true, 10);
    append_range(&m.r, 11, 16, 10);
    ck_assert_int_eq(shring_newest(&m.r), 16);
    expect_copy(&m.r, &ALL, 9, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 10, 10, 1, (const int64_t[]){11, 12, 13, 14, 15, 16}, 6, false,
                16);
    expect_copy(&m.r, &ALL, 13, 10, 1, (const int64_t[]){14, 15, 16}, 3, false, 16);
    expect_copy(&m.r, &ALL, 15, 10, 1, (const int64_t[]){16}, 1, false, 16);
    expect_copy(&m.r, &ALL, 16, 10, 1, NULL, 0, false, 16);
    expect_copy(&m.r, &ALL, 17, 10, 1, NULL, 0, false, 17);
    expect_copy(&m.r, &S1, 10, 10, 1, (const int64_t[]){11, 13, 15}, 3, false, 16);
    expect_copy(&m.r, &S1, 15, 10, 1, NULL, 0, false, 16);
    /* 8 slots: 4 more rows evict 11 and 12, and base moves to 12 */
    append_range(&m.r, 17, 20, 10);
    expect_copy(&m.r, &ALL, 11, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 12, 10, 1, (const int64_t[]){13, 14, 15, 16, 17, 18, 19, 20}, 8,
                false, 20);
    unmap_ring(&m);
}
END_TEST

/* Membership is store_event_in_channel's: every byte of a TEXT key, never a BLOB. */
START_TEST(test_channels_follow_the_sql)
{
    struct mapped m;
    map_ring(&m, 32, 1 << 16);
    const struct event rows[] = {
        {.id = 1, .session_id = "s1", .session_id_len = 2},
        {.id = 2, .session_id = "s2", .session_id_len = 2},
        {.id = 3, .session_id = "s1\0x", .session_id_len = 4},   /* not s1 */
        {.id = 4},                                                 /* global */
        {.id = 5, .session_id = "s1", .session_id_len = 2, .is_session_id_blob = true},
        {.id = 6, .session_id = "", .session_id_len = 0},        /* not global */
        {.id = 7, .stream_id = "worker:w1", .stream_id_len = 9},  /* global too */
        {.id = 8, .session_id = "s1", .session_id_len = 2, .stream_id = "worker:w1",
         .stream_id_len = 9, .is_stream_id_blob = true},
        {.id = 9, .session_id = "s2", .session_id_len = 2, .stream_id = "worker:w1",
         .stream_id_len = 9},
        {.id = 10, .stream_id = "worker:w1x", .stream_id_len = 10},
        {.id = 11, .is_session_id_blob = true},  /* a BLOB is not NULL */
    };
    size_t n_rows = sizeof(rows) / sizeof(rows[0]);
    for (size_t i = 0; i < n_rows; i++) {
        struct event e = rows[i];
        e.type = "t", e.type_len = 1;
        append_event(&m.r, &e, NULL, 0);
    }
    expect_copy(&m.r, &S1, 0, 20, 1, (const int64_t[]){1, 8}, 2, false, 11);
    expect_copy(&m.r, &S2, 0, 20, 1, (const int64_t[]){2, 9}, 2, false, 11);
    expect_copy(&m.r, &GLOBAL, 0, 20, 1, (const int64_t[]){4, 7, 10}, 3, false, 11);
    expect_copy(&m.r, &W1, 0, 20, 1, (const int64_t[]){7, 9}, 2, false, 11);
    const struct store_channel odd = {STORE_SCOPE_SESSION, ""};
    expect_copy(&m.r, &odd, 0, 20, 1, (const int64_t[]){6}, 1, false, 11);
    /* and the same answer as the function itself, channel by channel */
    const struct store_channel *channels[] = {&ALL, &S1, &S2, &GLOBAL, &W1, &odd};
    for (size_t c = 0; c < sizeof(channels) / sizeof(channels[0]); c++) {
        struct store_batch out;
        store_batch_init(&out);
        int64_t scanned;
        ck_assert_int_eq(shring_copy_after(&m.r, channels[c], 0, 20, SIZE_MAX, &out, &scanned, NULL, NULL),
                         1);
        size_t k = 0;
        for (size_t i = 0; i < n_rows; i++) {
            if (!store_event_in_channel(&rows[i], channels[c]))
                continue;
            ck_assert_uint_lt(k, out.count);
            ck_assert_int_eq(out.events[k].id, rows[i].id);
            ck_assert(out.events[k].is_session_id_blob == rows[i].is_session_id_blob);
            ck_assert(out.events[k].is_stream_id_blob == rows[i].is_stream_id_blob);
            k++;
        }
        ck_assert_uint_eq(k, out.count);
        store_batch_release(&out);
    }
    unmap_ring(&m);
}
END_TEST

START_TEST(test_row_and_byte_limits)
{
    struct mapped m;
    map_ring(&m, 16, 1 << 16);
    append_range(&m.r, 1, 6, 10);
    expect_copy(&m.r, &ALL, 0, 2, 1, (const int64_t[]){1, 2}, 2, true, 2);
    expect_copy(&m.r, &ALL, 0, 6, 1, (const int64_t[]){1, 2, 3, 4, 5, 6}, 6, false, 6);
    expect_copy(&m.r, &ALL, 4, 2, 1, (const int64_t[]){5, 6}, 2, false, 6);
    expect_copy(&m.r, &S1, 0, 2, 1, (const int64_t[]){1, 3}, 2, true, 3);
    expect_copy(&m.r, &ALL, 0, 0, 1, NULL, 0, true, 0);
    expect_copy(&m.r, &ALL, 6, 0, 1, NULL, 0, false, 6);  /* nothing follows */

    struct store_batch out;
    store_batch_init(&out);
    int64_t scanned;
    ck_assert_int_eq(shring_copy_after(&m.r, &ALL, 0, 100, SIZE_MAX, &out, &scanned, NULL, NULL), 1);
    ck_assert_uint_eq(out.count, 6);
    size_t cost = out.rows[0]->bytes;  /* every row the same size */
    static const struct {
        size_t max_bytes, count;
        bool is_full;
    } CASES[] = {{1, 1, true}, {0, 0, true}, {2, 2, true}, {3, 3, true}, {6, 6, false}};
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        size_t max_bytes = CASES[i].max_bytes <= 1 ? CASES[i].max_bytes
                                                   : CASES[i].max_bytes * cost;
        ck_assert_int_eq(shring_copy_after(&m.r, &ALL, 0, 100, max_bytes, &out, &scanned, NULL, NULL), 1);
        ck_assert_uint_eq(out.count, CASES[i].count);
        ck_assert(out.is_full == CASES[i].is_full);
        ck_assert_int_eq(scanned, (int64_t)CASES[i].count);
        if (max_bytes > cost) {  /* one byte less: the row that crosses it is the last */
            ck_assert_int_eq(shring_copy_after(&m.r, &ALL, 0, 100, max_bytes - 1, &out,
                                               &scanned, NULL, NULL), 1);
            ck_assert_uint_eq(out.count, CASES[i].count);
        }
    }
    store_batch_release(&out);
    unmap_ring(&m);
}
END_TEST

/* Whether a and b hold the same bytes, or are both NULL (SQL NULL). */
static void
expect_same_text(const char *got, size_t got_len, const char *want, size_t want_len)
{
    if (want == NULL) {
        ck_assert_ptr_null(got);
        ck_assert_uint_eq(got_len, 0);
        return;
    }
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert_mem_eq(got, want, want_len);
    ck_assert_int_eq(got[got_len], '\0');
}

/* Every column of got equals want's (the keys and flags of a frame row, else all). */
static void
expect_same_event(const struct event *got, const struct event *want, bool is_framed)
{
    ck_assert_int_eq(got->id, want->id);
    ck_assert(got->is_session_id_blob == want->is_session_id_blob);
    ck_assert(got->is_stream_id_blob == want->is_stream_id_blob);
    ck_assert(got->is_oversized == want->is_oversized);
    expect_same_text(got->session_id, got->session_id_len, want->session_id,
                     want->session_id_len);
    expect_same_text(got->type, got->type_len, want->type, want->type_len);
    expect_same_text(got->stream_id, got->stream_id_len, want->stream_id,
                     want->stream_id_len);
    const struct event none = {0};
    const struct event *cols = is_framed ? &none : want;  /* a frame leaves them out */
    expect_same_text(got->node_id, got->node_id_len, cols->node_id, cols->node_id_len);
    expect_same_text(got->execution_id, got->execution_id_len, cols->execution_id,
                     cols->execution_id_len);
    expect_same_text(got->data, got->data_len, cols->data, cols->data_len);
    expect_same_text(got->correlation_id, got->correlation_id_len, cols->correlation_id,
                     cols->correlation_id_len);
    expect_same_text(got->colony_id, got->colony_id_len, cols->colony_id, cols->colony_id_len);
    expect_same_text(got->run_id, got->run_id_len, cols->run_id, cols->run_id_len);
    if (is_framed)
        return;
    ck_assert_int_eq(got->timestamp.kind, want->timestamp.kind);
    switch (want->timestamp.kind) {
    case EVENT_VALUE_INTEGER:
        ck_assert_int_eq(got->timestamp.integer, want->timestamp.integer);
        break;
    case EVENT_VALUE_REAL:  /* bit for bit */
        ck_assert_mem_eq(&got->timestamp.real, &want->timestamp.real, sizeof(double));
        break;
    case EVENT_VALUE_TEXT:
        expect_same_text(got->timestamp.text, got->timestamp.text_len, want->timestamp.text,
                         want->timestamp.text_len);
        break;
    default:
        break;
    }
}

START_TEST(test_columns_and_frames_copied_exactly)
{
    struct mapped m;
    map_ring(&m, 16, 1 << 16);
    static const char frame5[] = "id: 5\nevent: t\ndata: {\"a\":\"\0\"}\n\n";
    const struct event rows[] = {
        {.id = 1, .session_id = "s1", .session_id_len = 2, .type = "progress", .type_len = 8,
         .stream_id = "worker:w1", .stream_id_len = 9, .node_id = "", .node_id_len = 0,
         .data = "{\"a\":\"x\0y\"}", .data_len = 11,
         .timestamp = {.kind = EVENT_VALUE_INTEGER, .integer = INT64_MIN + 1},
         .correlation_id = "c\0d", .correlation_id_len = 3, .colony_id = "col",
         .colony_id_len = 3},
        {.id = 2, .session_id = "s1", .session_id_len = 2, .type = "t", .type_len = 1,
         .execution_id = "exec", .execution_id_len = 4, .data = "", .data_len = 0,
         .timestamp = {.kind = EVENT_VALUE_REAL, .real = -0.0}, .run_id = "",
         .run_id_len = 0},
        {.id = 3, .type = "t", .type_len = 1, .data = "{}", .data_len = 2,
         .timestamp = {.kind = EVENT_VALUE_REAL, .real = 1712345678.125}},
        {.id = 4, .session_id = "", .session_id_len = 0, .type = "", .type_len = 0,
         .data = "[1]", .data_len = 3,
         .timestamp = {.kind = EVENT_VALUE_TEXT, .text = "2026-01-01T00:00:00Z\0tail",
                       .text_len = 25},
         .run_id = "r\0", .run_id_len = 2},
        {.id = 5, .session_id = "s1", .session_id_len = 2, .type = "t", .type_len = 1,
         .stream_id = "", .stream_id_len = 0, .node_id = "n", .node_id_len = 1,
         .data = "{\"a\":\"\"}", .data_len = 8,
         .timestamp = {.kind = EVENT_VALUE_TEXT, .text = "", .text_len = 0}},
        {.id = 6, .session_id = "s1", .session_id_len = 2, .type = "t", .type_len = 1,
         .data = "{}", .data_len = 2},
        {.id = 7, .session_id = "s1", .session_id_len = 2, .is_session_id_blob = true,
         .stream_id = "worker:w1", .stream_id_len = 9, .is_stream_id_blob = true,
         .is_oversized = true, .type = "t", .type_len = 1},
        {.id = 8},  /* nothing but the id: every column NULL */
    };
    size_t n_rows = sizeof(rows) / sizeof(rows[0]);
    for (size_t i = 0; i < n_rows; i++) {
        if (rows[i].id == 5)
            append_event(&m.r, &rows[i], frame5, sizeof(frame5) - 1);
        else if (rows[i].id == 6)
            append_event(&m.r, &rows[i], "", 0);  /* an empty frame is still a frame */
        else
            append_event(&m.r, &rows[i], NULL, 0);
    }
    struct store_batch out;
    store_batch_init(&out);
    int64_t scanned;
    ck_assert_int_eq(shring_copy_after(&m.r, &ALL, 0, 100, SIZE_MAX, &out, &scanned, NULL, NULL), 1);
    ck_assert_uint_eq(out.count, n_rows);
    for (size_t i = 0; i < n_rows; i++) {
        const struct store_row *row = out.rows[i];
        bool is_framed = rows[i].id == 5 || rows[i].id == 6;
        expect_same_event(&out.events[i], &rows[i], is_framed);
        expect_same_event(&row->event, &rows[i], is_framed);
        if (rows[i].id == 5) {
            ck_assert_uint_eq(row->frame_len, sizeof(frame5) - 1);
            ck_assert_mem_eq(row->frame, frame5, sizeof(frame5));  /* and its NUL */
        } else if (rows[i].id == 6) {
            ck_assert_ptr_nonnull(row->frame);
            ck_assert_uint_eq(row->frame_len, 0);
        } else {
            ck_assert_ptr_null(row->frame);
        }
    }
    store_batch_release(&out);
    unmap_ring(&m);
}
END_TEST

/* Four records of 240 bytes fill 960 of 1000: the fifth starts the next lap (never split
 * across the end) and evicts only the first; each one after evicts one more. */
START_TEST(test_eviction_by_bytes_never_splits)
{
    struct mapped m;
    map_ring(&m, 64, 1000);
    size_t data_len = 240 - ROW_OVERHEAD;
    for (int64_t id = 1; id <= 4; id++)
        append_range(&m.r, id, id, data_len);
    expect_copy(&m.r, &ALL, 0, 10, 1, (const int64_t[]){1, 2, 3, 4}, 4, false, 4);
    for (int64_t id = 5; id <= 40; id++) {
        append_range(&m.r, id, id, data_len);
        expect_copy(&m.r, &ALL, id - 5, 10, 0, NULL, 0, false, 0);
        expect_copy(&m.r, &ALL, id - 4, 10, 1, (const int64_t[]){id - 3, id - 2, id - 1, id},
                    4, false, id);
    }
    /* Records that end exactly at the area's end: 3 x 240 + 184 + 96 = 1000. */
    shring_restart(&m.r, true, 100);
    append_range(&m.r, 101, 101, 240 - ROW_OVERHEAD);  /* starts the next lap */
    append_range(&m.r, 102, 103, 240 - ROW_OVERHEAD);
    append_range(&m.r, 104, 104, 184 - ROW_OVERHEAD);
    append_range(&m.r, 105, 105, 96 - ROW_OVERHEAD);
    expect_copy(&m.r, &ALL, 100, 10, 1, (const int64_t[]){101, 102, 103, 104, 105}, 5,
                false, 105);
    append_range(&m.r, 106, 106, 88 - ROW_OVERHEAD);  /* at the start: evicts only 101 */
    expect_copy(&m.r, &ALL, 100, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 101, 10, 1, (const int64_t[]){102, 103, 104, 105, 106}, 5,
                false, 106);
    unmap_ring(&m);
}
END_TEST

START_TEST(test_eviction_by_index_slots)
{
    struct mapped m;
    map_ring(&m, 4, 1 << 16);
    append_range(&m.r, 1, 10, 10);  /* one batch with more rows than slots */
    expect_copy(&m.r, &ALL, 5, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 6, 10, 1, (const int64_t[]){7, 8, 9, 10}, 4, false, 10);
    for (int64_t id = 11; id <= 1000; id++)  /* the index wraps many times */
        append_range(&m.r, id, id, (size_t)id % 50);
    expect_copy(&m.r, &ALL, 996, 10, 1, (const int64_t[]){997, 998, 999, 1000}, 4, false,
                1000);
    expect_copy(&m.r, &ALL, 995, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 10, 10, 0, NULL, 0, false, 0);
    unmap_ring(&m);
}
END_TEST

START_TEST(test_old_ids_after_wrap)
{
    struct mapped m;
    map_ring(&m, 64, 1000);
    for (int64_t id = 1; id <= 100; id++)
        append_range(&m.r, id, id, 240 - ROW_OVERHEAD);
    for (int64_t after = -1; after < 96; after++)
        expect_copy(&m.r, &ALL, after, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 96, 10, 1, (const int64_t[]){97, 98, 99, 100}, 4, false, 100);
    expect_copy(&m.r, &S2, 96, 10, 1, (const int64_t[]){98, 100}, 2, false, 100);
    unmap_ring(&m);
}
END_TEST

/* A row over a quarter of the area is a stub: its channel reads the database, the others
 * pass over it. */
START_TEST(test_large_row_is_a_stub)
{
    struct mapped m;
    map_ring(&m, 64, 1024);
    append_range(&m.r, 1, 1, 10);     /* s1 */
    append_range(&m.r, 2, 2, 1000);   /* s2, a stub */
    append_range(&m.r, 3, 3, 10);     /* s1 */
    append_range(&m.r, 4, 4, 10);     /* s2 */
    struct event big_global = {.id = 5, .type = "t", .type_len = 1};
    static char frame[600];
    memset(frame, 'f', sizeof(frame));
    append_event(&m.r, &big_global, frame, sizeof(frame));  /* a frame makes it a stub */
    append_range(&m.r, 6, 6, 10);     /* s2 */
    expect_copy(&m.r, &S1, 0, 10, 1, (const int64_t[]){1, 3}, 2, false, 6);
    expect_copy(&m.r, &S2, 0, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &S2, 1, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &S2, 2, 10, 1, (const int64_t[]){4, 6}, 2, false, 6);
    expect_copy(&m.r, &S2, 0, 0, 1, NULL, 0, true, 0);  /* stopped before reaching it */
    expect_copy(&m.r, &GLOBAL, 0, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &GLOBAL, 5, 10, 1, NULL, 0, false, 6);
    expect_copy(&m.r, &ALL, 1, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &ALL, 5, 10, 1, (const int64_t[]){6}, 1, false, 6);
    /* a stub holds only keys: 4 more (88 bytes each) join the 560 bytes of rows 1 to 6
     * in the 1024 of the area, and row 1 is still there */
    for (int64_t id = 7; id <= 10; id++) {
        struct event big = {.id = id, .session_id = "s2", .session_id_len = 2, .type = "t",
                            .type_len = 1, .data = data_of(id, 1000), .data_len = 1000};
        append_event(&m.r, &big, NULL, 0);
    }
    expect_copy(&m.r, &S1, 0, 10, 1, (const int64_t[]){1, 3}, 2, false, 10);
    unmap_ring(&m);
}
END_TEST

/* A stub whose keys alone are over a quarter of the area (a hand-edited row: the schema
 * bounds sessions.id, a database need not) must still fit in it; it is then kept without
 * keys, and every channel reads the database for it. */
START_TEST(test_stub_with_huge_keys_stays_in_the_area)
{
    static char key[3000];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    const struct store_channel huge = {STORE_SCOPE_SESSION, key};
    struct mapped m;
    map_ring(&m, 64, 1024);
    append_range(&m.r, 1, 1, 10);
    struct event e = {.id = 2, .session_id = key, .session_id_len = sizeof(key) - 1,
                      .type = "t", .type_len = 1, .is_oversized = true};
    append_event(&m.r, &e, NULL, 0);  /* keys of 3000 bytes: more than the whole area */
    e.id = 3, e.session_id_len = 400;  /* more than a quarter, less than the area */
    append_event(&m.r, &e, NULL, 0);
    append_range(&m.r, 4, 4, 10);
    expect_copy(&m.r, &huge, 0, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &S2, 0, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &S2, 3, 10, 1, (const int64_t[]){4}, 1, false, 4);
    expect_copy(&m.r, &ALL, 0, 10, 0, NULL, 0, false, 0);
    expect_copy(&m.r, &S1, 0, 1, 1, (const int64_t[]){1}, 1, true, 1);
    /* and they take a header's room, no more: 352 bytes so far, 5 x 80 more fit */
    for (int64_t id = 5; id <= 9; id++)
        append_event(&m.r, &(struct event){.id = id, .session_id = key,
                                           .session_id_len = sizeof(key) - 1}, NULL, 0);
    expect_copy(&m.r, &S1, 0, 1, 1, (const int64_t[]){1}, 1, true, 1);
    expect_copy(&m.r, &S2, 3, 1, 1, (const int64_t[]){4}, 1, true, 4);
    unmap_ring(&m);
}
END_TEST

START_TEST(test_scanned_through)
{
    struct mapped m;
    map_ring(&m, 16, 1 << 16);
    append_range(&m.r, 11, 14, 10);  /* 11 s1, 12 s2, 13 s1, 14 s2 */
    expect_copy(&m.r, &S1, 10, 10, 1, (const int64_t[]){11, 13}, 2, false, 14);
    expect_copy(&m.r, &S1, 13, 10, 1, NULL, 0, false, 14);   /* passed over 14 */
    expect_copy(&m.r, &S1, 10, 1, 1, (const int64_t[]){11}, 1, true, 11);
    expect_copy(&m.r, &S2, 10, 1, 1, (const int64_t[]){12}, 1, true, 12);
    expect_copy(&m.r, &S1, 11, 1, 1, (const int64_t[]){13}, 1, true, 13);
    expect_copy(&m.r, &GLOBAL, 10, 10, 1, NULL, 0, false, 14);
    expect_copy(&m.r, &GLOBAL, 20, 10, 1, NULL, 0, false, 20);
    expect_copy(&m.r, &GLOBAL, 0, 10, 1, NULL, 0, false, 14);  /* base 0: the ring's start */
    unmap_ring(&m);
}
END_TEST

/* A writer that appends and wraps a small ring without pause, beside a reader. */
enum {
    RACE_SLOTS = 16,
    RACE_BYTES = 2048,
    RACE_READS = 2000000,        /* the reader's bound */
    RACE_APPENDS = 100000000,    /* the writer's, should the reader never stop it */
    RACE_ACCEPTED = 2000,
    RACE_REJECTED = 200,
    RACE_DATA = 200,
};

struct race {
    struct shring *r;
    atomic_bool stop;
};

/* The row the writer appends as id: every byte a function of id. */
static void
race_event(int64_t id, struct event *e, char data[RACE_DATA])
{
    size_t data_len = (size_t)(id * 37 % RACE_DATA);
    for (size_t i = 0; i < data_len; i++)
        data[i] = (char)('a' + (id + (int64_t)i) % 26);
    static const char *const sessions[] = {NULL, "s1", "s2"};
    *e = (struct event){.id = id, .session_id = sessions[id % 3],
                        .session_id_len = id % 3 ? 2 : 0, .type = "t", .type_len = 1,
                        .node_id = id % 2 ? "node" : NULL, .node_id_len = id % 2 ? 4 : 0,
                        .data = data, .data_len = data_len,
                        .timestamp = {.kind = EVENT_VALUE_INTEGER, .integer = id * 1000 + 7}};
}

static void *
race_writer(void *arg)
{
    struct race *race = arg;
    char data[RACE_DATA];
    struct store_batch b;
    store_batch_init(&b);
    int64_t id = 1;
    for (long i = 0; i < RACE_APPENDS && !atomic_load(&race->stop); i++) {
        for (int k = 0; k <= i % 3; k++) {  /* batches of 1 to 3 rows */
            struct event e;
            race_event(id++, &e, data);
            struct store_row *row = store_row_new(&e);
            if (row == NULL || store_batch_add_row(&b, row) < 0)
                abort();  /* no ck_assert off the test's thread */
            store_row_unref(row);
        }
        shring_append(race->r, &b);
        store_batch_clear(&b);
    }
    store_batch_release(&b);
    return NULL;
}

START_TEST(test_reader_beside_a_writer)
{
    struct mapped m;
    map_ring(&m, RACE_SLOTS, RACE_BYTES);
    struct race race = {.r = &m.r};
    atomic_init(&race.stop, false);
    pthread_t writer;
    ck_assert_int_eq(pthread_create(&writer, NULL, race_writer, &race), 0);
    struct store_batch out;
    store_batch_init(&out);
    char data[RACE_DATA];
    long accepted = 0, rejected = 0;
    for (long i = 0; i < RACE_READS && (accepted < RACE_ACCEPTED || rejected < RACE_REJECTED);
         i++) {
        int64_t after = shring_newest(&m.r) - i % 12;
        const struct store_channel *ch = i % 2 ? &ALL : &S1;
        int64_t scanned;
        int rc = shring_copy_after(&m.r, ch, after, 1 + (size_t)i % 8, SIZE_MAX, &out,
                                   &scanned, NULL, NULL);
        ck_assert_int_ge(rc, 0);
        if (rc == 0) {
            ck_assert_uint_eq(out.count, 0);
            rejected++;
            continue;
        }
        accepted++;
        int64_t last = after;
        for (size_t k = 0; k < out.count; k++) {
            int64_t id = out.events[k].id;
            /* every id is held, so none is missing: the next one, or the next s1 one */
            int64_t want = last + 1;
            while (ch == &S1 && want % 3 != 1)
                want++;
            ck_assert_int_eq(id, want);
            struct event e;
            race_event(id, &e, data);
            expect_same_event(&out.events[k], &e, false);
            last = id;
        }
        ck_assert_int_ge(scanned, last);
        ck_assert_uint_le(out.count, 1 + (size_t)i % 8);
    }
    atomic_store(&race.stop, true);
    ck_assert_int_eq(pthread_join(writer, NULL), 0);
    store_batch_release(&out);
    ck_assert_int_gt(accepted, 0);
    ck_assert_int_gt(rejected, 0);
    unmap_ring(&m);
}
END_TEST

Suite *suite_shring(void);

Suite *
suite_shring(void)
{
    Suite *s = suite_create("shring");
    TCase *tc = tcase_create("shring");
    tcase_add_test(tc, test_attach_checks_geometry);
    tcase_add_test(tc, test_attach_refuses_a_tiny_area);
    tcase_add_test(tc, test_restart_known_and_unknown);
    tcase_add_test(tc, test_copy_at_every_edge);
    tcase_add_test(tc, test_channels_follow_the_sql);
    tcase_add_test(tc, test_row_and_byte_limits);
    tcase_add_test(tc, test_columns_and_frames_copied_exactly);
    tcase_add_test(tc, test_eviction_by_bytes_never_splits);
    tcase_add_test(tc, test_eviction_by_index_slots);
    tcase_add_test(tc, test_old_ids_after_wrap);
    tcase_add_test(tc, test_large_row_is_a_stub);
    tcase_add_test(tc, test_stub_with_huge_keys_stays_in_the_area);
    tcase_add_test(tc, test_scanned_through);
    tcase_add_test(tc, test_reader_beside_a_writer);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}
