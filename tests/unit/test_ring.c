/*
 * test_ring.c - the hub's memory of recent rows (store/ring.h), through its header.
 *
 * Rows are made with store_row_new, with a data column of a chosen size, so that byte
 * pressure is exact. Each test checks what ring_copy_after hands out at the edges of the
 * ring (before base, at base, at newest, past it), that an append larger than the ring
 * stays whole, and that an evicted row a stream still holds stays readable (ASan, under
 * `make sanitize`, would report the use after free the audit found in the old hub).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/ring.h"

enum { DATA_MAX = 4096 };

static char data_bytes[DATA_MAX];

/* A row of session (NULL: global) with data_len bytes of data. */
static struct store_row *
make_row(int64_t id, const char *session, size_t data_len)
{
    memset(data_bytes, 'd', sizeof(data_bytes));
    struct event e = {.id = id, .type = "t", .type_len = 1, .data = data_bytes,
                      .data_len = data_len};
    if (session != NULL) {
        e.session_id = session;
        e.session_id_len = strlen(session);
    }
    struct store_row *row = store_row_new(&e);
    ck_assert_ptr_nonnull(row);
    return row;
}

/* Appends rows first_id..last_id (sessions alternate s1, s2) as one batch. */
static void
append_range(struct ring *r, int64_t first_id, int64_t last_id, size_t data_len)
{
    struct store_batch b;
    store_batch_init(&b);
    for (int64_t id = first_id; id <= last_id; id++) {
        struct store_row *row = make_row(id, id % 2 ? "s1" : "s2", data_len);
        ck_assert_int_ge(store_batch_add_row(&b, row), 0);
        store_row_unref(row);  /* the batch holds it */
    }
    ring_append(r, &b);
    store_batch_release(&b);
}

/* An empty ring that has read the table up to id 0. */
static void
open_ring(struct ring *r, size_t max_rows, size_t max_bytes)
{
    ck_assert_int_eq(ring_init(r, max_rows, max_bytes), 0);
    ring_restart(r, true, 0);
}

/* The bytes a row of data_len bytes of data costs. */
static size_t
bytes_of_row(size_t data_len)
{
    struct store_row *probe = make_row(1, "s1", data_len);
    size_t bytes = probe->bytes;
    store_row_unref(probe);
    return bytes;
}

static const struct store_channel ALL = {STORE_SCOPE_ALL, NULL};
static const struct store_channel S1 = {STORE_SCOPE_SESSION, "s1"};

/* Copies after after_id and checks the result code and the ids. */
static void
expect_copy(const struct ring *r, const struct store_channel *ch, int64_t after_id,
            size_t max_rows, int want_rc, const int64_t *ids, size_t n, bool is_full)
{
    struct store_batch out;
    store_batch_init(&out);
    int64_t scanned = -1;
    int rc = ring_copy_after(r, ch, after_id, max_rows, SIZE_MAX, &out, &scanned);
    ck_assert_int_eq(rc, want_rc);
    ck_assert_uint_eq(out.count, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(out.events[i].id, ids[i]);
    ck_assert(out.is_full == is_full);
    ck_assert_int_ge(scanned, after_id);
    store_batch_release(&out);
}

START_TEST(test_unknown_ring_sends_to_the_database)
{
    struct ring r;
    ck_assert_int_eq(ring_init(&r, 8, 1 << 20), 0);
    expect_copy(&r, &ALL, 0, 10, 0, NULL, 0, false);
    ring_restart(&r, true, 10);
    expect_copy(&r, &ALL, 9, 10, 0, NULL, 0, false);   /* before base: the database */
    expect_copy(&r, &ALL, 10, 10, 1, NULL, 0, false);  /* at base: nothing new yet */
    expect_copy(&r, &ALL, 99, 10, 1, NULL, 0, false);  /* past newest */
    ring_release(&r);
    ring_release(NULL);
}
END_TEST

START_TEST(test_copy_at_every_edge)
{
    struct ring r;
    ck_assert_int_eq(ring_init(&r, 8, 1 << 20), 0);
    ring_restart(&r, true, 10);
    append_range(&r, 11, 16, 10);
    ck_assert_int_eq(r.newest, 16);
    expect_copy(&r, &ALL, 10, 10, 1, (const int64_t[]){11, 12, 13, 14, 15, 16}, 6, false);
    expect_copy(&r, &ALL, 13, 10, 1, (const int64_t[]){14, 15, 16}, 3, false);
    expect_copy(&r, &ALL, 16, 10, 1, NULL, 0, false);
    expect_copy(&r, &ALL, 10, 2, 1, (const int64_t[]){11, 12}, 2, true);
    expect_copy(&r, &S1, 10, 10, 1, (const int64_t[]){11, 13, 15}, 3, false);
    expect_copy(&r, &S1, 15, 10, 1, NULL, 0, false);
    /* 8 slots: 4 more rows evict 11 and 12, and base moves to 12 */
    append_range(&r, 17, 20, 10);
    ck_assert_uint_eq(r.count, 8);
    ck_assert_int_eq(r.base, 12);
    expect_copy(&r, &ALL, 11, 10, 0, NULL, 0, false);
    expect_copy(&r, &ALL, 12, 10, 1, (const int64_t[]){13, 14, 15, 16, 17, 18, 19, 20}, 8,
                false);
    ring_release(&r);
}
END_TEST

START_TEST(test_eviction_under_byte_pressure)
{
    struct ring r;
    size_t row_bytes = bytes_of_row(1000);
    open_ring(&r, 64, 5 * row_bytes);
    for (int64_t id = 1; id <= 12; id++) {
        append_range(&r, id, id, 1000);
        ck_assert_uint_le(r.bytes, 5 * row_bytes);
    }
    ck_assert_uint_eq(r.count, 5);
    ck_assert_int_eq(r.base, 7);
    expect_copy(&r, &ALL, 7, 10, 1, (const int64_t[]){8, 9, 10, 11, 12}, 5, false);
    ring_release(&r);
}
END_TEST

/* One append larger than the ring: none of its rows is evicted by the append itself (the
 * hub wakes streams for them next), the older ones are. */
START_TEST(test_big_append_stays_whole)
{
    struct ring r;
    size_t row_bytes = bytes_of_row(2000);
    open_ring(&r, 64, 3 * row_bytes);
    append_range(&r, 1, 2, 2000);
    append_range(&r, 3, 10, 2000);
    ck_assert_uint_eq(r.count, 8);
    ck_assert_int_eq(r.base, 2);
    expect_copy(&r, &S1, 2, 10, 1, (const int64_t[]){3, 5, 7, 9}, 4, false);
    append_range(&r, 11, 11, 2000);  /* the next append may evict them */
    ck_assert_uint_le(r.bytes, 3 * row_bytes);
    ring_release(&r);
}
END_TEST

/* An append with more rows than slots keeps the newest (there is nowhere else). */
START_TEST(test_append_of_more_rows_than_slots)
{
    struct ring r;
    open_ring(&r, 4, 1 << 20);
    append_range(&r, 1, 10, 10);
    ck_assert_uint_eq(r.count, 4);
    ck_assert_int_eq(r.base, 6);
    expect_copy(&r, &ALL, 6, 10, 1, (const int64_t[]){7, 8, 9, 10}, 4, false);
    ring_release(&r);
}
END_TEST

/* A stream's copy outlives the eviction of its rows: they are references. */
START_TEST(test_copy_outlives_eviction)
{
    struct ring r;
    open_ring(&r, 2, 1 << 20);
    append_range(&r, 1, 2, 100);
    struct store_batch held;
    store_batch_init(&held);
    int64_t scanned;
    ck_assert_int_eq(ring_copy_after(&r, &ALL, 0, 10, SIZE_MAX, &held, &scanned), 1);
    ck_assert_int_eq(scanned, 2);
    append_range(&r, 3, 4, 100);  /* 1 and 2 leave the ring */
    ring_restart(&r, true, 4);
    ck_assert_uint_eq(held.count, 2);
    ck_assert_uint_eq(held.events[1].data_len, 100);
    ck_assert_int_eq(held.events[1].data[99], 'd');
    ck_assert_str_eq(held.events[0].session_id, "s1");
    store_batch_release(&held);
    ring_release(&r);
}
END_TEST

/* max_bytes stops the copy after the row that crosses it. */
START_TEST(test_copy_byte_limit)
{
    struct ring r;
    open_ring(&r, 16, 1 << 20);
    append_range(&r, 1, 6, 1000);
    struct store_batch out;
    store_batch_init(&out);
    int64_t scanned;
    ck_assert_int_eq(ring_copy_after(&r, &ALL, 0, 100, 1500, &out, &scanned), 1);
    ck_assert_uint_eq(out.count, 2);
    ck_assert(out.is_full);
    ck_assert_int_eq(scanned, 2);
    store_batch_release(&out);
    ring_release(&r);
}
END_TEST

/* Channel membership is the SQL's: every byte of a TEXT key, and never a BLOB. */
START_TEST(test_channel_membership)
{
    struct event e = {.id = 1, .session_id = "s1\0x", .session_id_len = 4};
    ck_assert(!store_event_in_channel(&e, &S1));
    e.session_id_len = 2;
    ck_assert(store_event_in_channel(&e, &S1));
    e.is_session_id_blob = true;
    ck_assert(!store_event_in_channel(&e, &S1));
    const struct store_channel global = {STORE_SCOPE_GLOBAL, NULL};
    ck_assert(!store_event_in_channel(&e, &global));  /* a BLOB is not NULL */
    struct event g = {.id = 2};
    ck_assert(store_event_in_channel(&g, &global));
    const struct store_channel w1 = {STORE_SCOPE_WORKER, "worker:w1"};
    struct event w = {.id = 3, .stream_id = "worker:w1", .stream_id_len = 9};
    ck_assert(store_event_in_channel(&w, &w1));
    w.is_stream_id_blob = true;
    ck_assert(!store_event_in_channel(&w, &w1));
}
END_TEST

Suite *suite_ring(void);

Suite *
suite_ring(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("ring");
    tcase_add_test(tc, test_unknown_ring_sends_to_the_database);
    tcase_add_test(tc, test_copy_at_every_edge);
    tcase_add_test(tc, test_eviction_under_byte_pressure);
    tcase_add_test(tc, test_big_append_stays_whole);
    tcase_add_test(tc, test_append_of_more_rows_than_slots);
    tcase_add_test(tc, test_copy_outlives_eviction);
    tcase_add_test(tc, test_copy_byte_limit);
    tcase_add_test(tc, test_channel_membership);
    suite_add_tcase(s, tc);
    return s;
}
