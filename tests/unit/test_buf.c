/*
 * test_buf.c - the bounded byte buffer (fcgi/buf.h), through its header only.
 *
 * Covers: init allocates nothing; append, append_str, appendf, truncate, reset, release (and
 * release of NULL, and reuse after release); the invariants after every call (bytes is NULL
 * or NUL-terminated at len, len < cap, len <= max_len); the hard limit: an append that fits
 * exactly succeeds, one byte more returns -1 and leaves bytes and len unchanged; embedded NUL
 * bytes; growth to 1 MiB; the largest possible limit (SIZE_MAX).
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/buf.h"

/* The header's invariants, checked after every operation. */
static void
assert_invariants(const struct buf *b)
{
    ck_assert_uint_le(b->len, b->max_len);
    if (b->bytes == NULL) {
        ck_assert_uint_eq(b->len, 0);
        return;
    }
    ck_assert_msg(b->len < b->cap, "len %zu cap %zu", b->len, b->cap);
    ck_assert_int_eq(b->bytes[b->len], '\0');
}

/* Asserts that b holds exactly the n bytes at want. */
static void
assert_holds(const struct buf *b, const void *want, size_t n)
{
    assert_invariants(b);
    ck_assert_uint_eq(b->len, n);
    if (n > 0)
        ck_assert(memcmp(b->bytes, want, n) == 0);
}

START_TEST(test_init_allocates_nothing)
{
    struct buf b;
    memset(&b, 0x5a, sizeof(b));
    buf_init(&b, 100);
    ck_assert_ptr_null(b.bytes);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.max_len, 100);
    buf_reset(&b);
    assert_holds(&b, "", 0);
    buf_release(&b);
    buf_release(NULL);
}
END_TEST

START_TEST(test_append_variants)
{
    struct buf b;
    buf_init(&b, 1024);
    ck_assert_int_eq(buf_append(&b, "ab", 2), 0);
    assert_holds(&b, "ab", 2);
    ck_assert_int_eq(buf_append_str(&b, "cd"), 0);
    assert_holds(&b, "abcd", 4);
    ck_assert_int_eq(buf_appendf(&b, "-%d-%s-", 42, "x"), 0);
    assert_holds(&b, "abcd-42-x-", 10);
    ck_assert_int_eq(buf_append(&b, "zzz", 0), 0);
    ck_assert_int_eq(buf_append_str(&b, ""), 0);
    assert_holds(&b, "abcd-42-x-", 10);
    buf_release(&b);
}
END_TEST

START_TEST(test_embedded_nul)
{
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(buf_append(&b, "a\0b", 3), 0);
    assert_holds(&b, "a\0b", 3);
    ck_assert_int_eq(buf_appendf(&b, "%c", 0), 0);
    assert_holds(&b, "a\0b\0", 4);
    buf_release(&b);
}
END_TEST

START_TEST(test_truncate_reset_release_reuse)
{
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(buf_append_str(&b, "hello world"), 0);
    buf_truncate(&b, 5);
    assert_holds(&b, "hello", 5);
    buf_truncate(&b, 5);
    assert_holds(&b, "hello", 5);
    buf_truncate(&b, 0);
    assert_holds(&b, "", 0);
    ck_assert_int_eq(buf_append_str(&b, "again"), 0);
    buf_reset(&b);
    assert_holds(&b, "", 0);
    ck_assert_ptr_nonnull(b.bytes);  /* reset keeps the allocation */
    buf_release(&b);
    ck_assert_ptr_null(b.bytes);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(buf_append_str(&b, "reused"), 0);  /* reusable after release */
    assert_holds(&b, "reused", 6);
    buf_release(&b);
}
END_TEST

/* Appends at the limit: the last byte that fits, then one more through each append call. */
START_TEST(test_limit_leaves_buffer_unchanged)
{
    struct buf b;
    buf_init(&b, 16);
    ck_assert_int_eq(buf_append_str(&b, "0123456789"), 0);
    ck_assert_int_eq(buf_append(&b, "abcdefg", 7), -1);
    assert_holds(&b, "0123456789", 10);
    ck_assert_int_eq(buf_append_str(&b, "abcdefg"), -1);
    ck_assert_int_eq(buf_appendf(&b, "%s", "abcdefg"), -1);
    ck_assert_int_eq(buf_appendf(&b, "%07d", 1), -1);
    assert_holds(&b, "0123456789", 10);
    ck_assert_int_eq(buf_append(&b, "abcdef", 6), 0);  /* exactly max_len */
    assert_holds(&b, "0123456789abcdef", 16);
    ck_assert_int_eq(buf_append(&b, "x", 1), -1);
    ck_assert_int_eq(buf_appendf(&b, "x"), -1);
    assert_holds(&b, "0123456789abcdef", 16);
    ck_assert_int_eq(buf_append(&b, "", 0), 0);  /* nothing more still fits */
    assert_holds(&b, "0123456789abcdef", 16);
    buf_release(&b);
}
END_TEST

START_TEST(test_limit_zero)
{
    struct buf b;
    buf_init(&b, 0);
    ck_assert_int_eq(buf_append(&b, "x", 1), -1);
    ck_assert_int_eq(buf_appendf(&b, "%d", 1), -1);
    assert_holds(&b, "", 0);
    buf_release(&b);
}
END_TEST

/* A huge single append (bigger than the limit by far) must not wrap any size arithmetic. */
START_TEST(test_limit_huge_request)
{
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(buf_append_str(&b, "keep"), 0);
    ck_assert_int_eq(buf_append(&b, "x", SIZE_MAX), -1);
    ck_assert_int_eq(buf_append(&b, "x", SIZE_MAX - 3), -1);
    assert_holds(&b, "keep", 4);
    buf_release(&b);
}
END_TEST

START_TEST(test_grows_to_one_mebibyte)
{
    enum { CHUNK = 1000, TOTAL = 1 << 20 };
    char chunk[CHUNK];
    memset(chunk, 'q', sizeof(chunk));
    struct buf b;
    buf_init(&b, TOTAL);
    size_t want = 0;
    while (want + CHUNK <= TOTAL) {
        ck_assert_int_eq(buf_append(&b, chunk, CHUNK), 0);
        want += CHUNK;
    }
    ck_assert_int_eq(buf_append(&b, chunk, CHUNK), -1);
    ck_assert_int_eq(buf_append(&b, chunk, TOTAL - want), 0);
    assert_invariants(&b);
    ck_assert_uint_eq(b.len, TOTAL);
    ck_assert_int_eq(b.bytes[TOTAL - 1], 'q');
    buf_release(&b);
}
END_TEST

/* "may grow to max_len bytes": SIZE_MAX is a legal limit and the invariants must still hold. */
START_TEST(test_unlimited_max_len)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    ck_assert_int_eq(buf_append_str(&b, "hello"), 0);
    assert_holds(&b, "hello", 5);
    ck_assert_int_eq(buf_appendf(&b, "%s", " world"), 0);
    assert_holds(&b, "hello world", 11);
    buf_release(&b);
}
END_TEST

Suite *suite_buf(void);

Suite *
suite_buf(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("buf");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_init_allocates_nothing);
    tcase_add_test(tc, test_append_variants);
    tcase_add_test(tc, test_embedded_nul);
    tcase_add_test(tc, test_truncate_reset_release_reuse);
    tcase_add_test(tc, test_limit_leaves_buffer_unchanged);
    tcase_add_test(tc, test_limit_zero);
    tcase_add_test(tc, test_limit_huge_request);
    tcase_add_test(tc, test_grows_to_one_mebibyte);
    tcase_add_test(tc, test_unlimited_max_len);
    suite_add_tcase(s, tc);
    return s;
}
