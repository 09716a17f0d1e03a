/*
 * test_fcgi_out.c - FastCGI records (fcgi/fcgi_out.h), through its header only.
 *
 * Every record written is read back by a decoder of the test's own (decode below), from the
 * FastCGI Specification 1.0 (Open Market, 1996): 8-byte headers of version 1, the type and
 * request id asked for, content lengths of at most 65535, zero padding that makes each
 * record a multiple of 8, content that reassembles to what was appended.
 * Covers: STDOUT of 0, 1, 7, 8, 65535, 65536, 65537 and 3*65535+5 bytes; fcgi_out_overhead
 * against what was appended; all-or-nothing in a buffer one byte too small, for STDOUT and
 * the end; the end records byte for byte; pending output advanced a byte at a time, by odd
 * sizes, appended to while partly sent, drained to empty, and its limit.
 * The tcase "conn" checks the writer on top of it (fcgi/conn.h) over a socketpair: owned bytes
 * and shared frames (written without a copy, with record heads of their own) in order, a
 * frame's padding, the end; a peer that does not read (what waits, then drains); the
 * references a shared frame holds, given back once written or when the conn is freed; CGI's
 * bare bytes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fcgi/conn.h"
#include "fcgi/fcgi_out.h"
#include "store/store.h"

/* What decode read. */
struct decoded {
    unsigned char *content;  /* STDOUT content, reassembled; malloc'd */
    size_t content_len;
    size_t records;          /* STDOUT records with content */
    bool ended;              /* an empty STDOUT then END_REQUEST closed it */
    uint32_t app_status;
};

static unsigned
u16_at(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Reads bytes[0..len) as records of request id; fails the test on anything malformed, a
 * record after the end, or a record cut short. */
static struct decoded
decode(const void *bytes, size_t len, unsigned id)
{
    const unsigned char *p = bytes, *end = p + len;
    struct decoded d = {.content = malloc(len + 1)};
    ck_assert_ptr_nonnull(d.content);
    bool stdout_closed = false;
    while (p < end) {
        ck_assert_msg(!d.ended, "record after END_REQUEST");
        ck_assert_int_ge(end - p, 8);
        ck_assert_uint_eq(p[0], 1);                 /* version */
        ck_assert_uint_eq(u16_at(p + 2), id);       /* requestIdB1, B0 */
        size_t clen = u16_at(p + 4), plen = p[6];
        ck_assert_uint_eq(p[7], 0);                 /* reserved */
        ck_assert_uint_eq((8 + clen + plen) % 8, 0);
        ck_assert_uint_lt(plen, 8);
        ck_assert_uint_ge((size_t)(end - p), 8 + clen + plen);
        const unsigned char *c = p + 8;
        for (size_t i = 0; i < plen; i++)
            ck_assert_uint_eq(c[clen + i], 0);
        if (p[1] == 6) {                            /* FCGI_STDOUT */
            ck_assert_msg(!stdout_closed, "STDOUT after the empty STDOUT");
            if (clen == 0) {
                stdout_closed = true;
            } else {
                memcpy(d.content + d.content_len, c, clen);
                d.content_len += clen;
                d.records++;
            }
        } else {
            ck_assert_uint_eq(p[1], 3);             /* FCGI_END_REQUEST */
            ck_assert_msg(stdout_closed, "END_REQUEST before the empty STDOUT");
            ck_assert_uint_eq(clen, 8);
            d.app_status = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16
                           | (uint32_t)c[2] << 8 | c[3];
            ck_assert_uint_eq(c[4], 0);             /* FCGI_REQUEST_COMPLETE */
            ck_assert(c[5] == 0 && c[6] == 0 && c[7] == 0);
            d.ended = true;
        }
        p = c + clen + plen;
    }
    return d;
}

/* len bytes of a pattern that shows a shifted or dropped byte; malloc'd. */
static unsigned char *
pattern(size_t len, unsigned seed)
{
    unsigned char *p = malloc(len + 1);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)((i * 131 + seed + i / 251) & 0xFF);
    return p;
}

static const size_t SIZES[] = {0, 1, 7, 8, 65535, 65536, 65537, 3 * 65535 + 5};
enum { SIZES_COUNT = sizeof(SIZES) / sizeof(SIZES[0]) };

/* Records of content: one per 65535 bytes, rounded up. */
static size_t
records_for(size_t len)
{
    return (len + 65534) / 65535;
}

START_TEST(test_stdout_sizes)
{
    size_t len = SIZES[_i];
    unsigned char *content = pattern(len, (unsigned)_i);
    struct buf b;
    buf_init(&b, 1 << 20);
    ck_assert_int_eq(buf_append_str(&b, ""), 0);
    ck_assert_int_eq(fcgi_out_stdout(&b, 0x1234, content, len), 0);
    ck_assert_uint_eq(b.len, len + fcgi_out_overhead(len));
    ck_assert_uint_eq(b.len % 8, 0);
    struct decoded d = decode(b.bytes, b.len, 0x1234);
    ck_assert_uint_eq(d.content_len, len);
    ck_assert_uint_eq(d.records, records_for(len));
    ck_assert(!d.ended);
    ck_assert(len == 0 || memcmp(d.content, content, len) == 0);
    free(d.content);
    buf_release(&b);
    free(content);
}
END_TEST

/* The overhead by hand: 8 per record, padding of 1 for each full record. */
START_TEST(test_overhead)
{
    ck_assert_uint_eq(fcgi_out_overhead(0), 0);
    ck_assert_uint_eq(fcgi_out_overhead(1), 8 + 7);
    ck_assert_uint_eq(fcgi_out_overhead(7), 8 + 1);
    ck_assert_uint_eq(fcgi_out_overhead(8), 8);
    ck_assert_uint_eq(fcgi_out_overhead(65535), 8 + 1);
    ck_assert_uint_eq(fcgi_out_overhead(65536), 9 + 8 + 7);
    ck_assert_uint_eq(fcgi_out_overhead(3 * 65535 + 5), 3 * 9 + 8 + 3);
    ck_assert_uint_gt(fcgi_out_overhead(SIZE_MAX), 0);  /* no wrap */
}
END_TEST

/* One byte short of the records: nothing appended, what was there kept. */
START_TEST(test_stdout_all_or_nothing)
{
    size_t len = SIZES[_i];
    if (len == 0)
        return;
    unsigned char *content = pattern(len, 7);
    size_t need = len + fcgi_out_overhead(len);
    struct buf b;
    buf_init(&b, 5 + need - 1);
    ck_assert_int_eq(buf_append(&b, "head!", 5), 0);
    ck_assert_int_eq(fcgi_out_stdout(&b, 1, content, len), -1);
    ck_assert_uint_eq(b.len, 5);
    ck_assert(memcmp(b.bytes, "head!", 6) == 0);
    b.max_len++;
    ck_assert_int_eq(fcgi_out_stdout(&b, 1, content, len), 0);  /* exactly fits */
    ck_assert_uint_eq(b.len, b.max_len);
    ck_assert_int_eq(fcgi_out_stdout(&b, 1, content, SIZE_MAX - 8), -1);
    ck_assert_uint_eq(b.len, b.max_len);
    buf_release(&b);
    free(content);
}
END_TEST

/* The spec's bytes: empty STDOUT, END_REQUEST {appStatus, REQUEST_COMPLETE, reserved}. */
START_TEST(test_end_bytes)
{
    static const unsigned char want[24] = {
        1, 6, 0xAB, 0xCD, 0, 0, 0, 0,
        1, 3, 0xAB, 0xCD, 0, 8, 0, 0,
        0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0,
    };
    struct buf b;
    buf_init(&b, 24);
    ck_assert_int_eq(fcgi_out_end(&b, 0xABCD, 0x01020304), 0);
    ck_assert_uint_eq(b.len, 24);
    ck_assert(memcmp(b.bytes, want, 24) == 0);
    ck_assert_int_eq(fcgi_out_end(&b, 0xABCD, 0), -1);  /* full */
    ck_assert_uint_eq(b.len, 24);
    buf_release(&b);

    buf_init(&b, 23);
    ck_assert_int_eq(fcgi_out_end(&b, 1, 0), -1);
    ck_assert_uint_eq(b.len, 0);
    buf_release(&b);
}
END_TEST

START_TEST(test_stream_then_end_decodes)
{
    unsigned char *content = pattern(70000, 3);
    struct buf b;
    buf_init(&b, 1 << 20);
    ck_assert_int_eq(fcgi_out_stdout(&b, 2, content, 10), 0);
    ck_assert_int_eq(fcgi_out_stdout(&b, 2, content + 10, 69990), 0);
    ck_assert_int_eq(fcgi_out_end(&b, 2, 7), 0);
    struct decoded d = decode(b.bytes, b.len, 2);
    ck_assert(d.ended);
    ck_assert_uint_eq(d.app_status, 7);
    ck_assert_uint_eq(d.content_len, 70000);
    ck_assert(memcmp(d.content, content, 70000) == 0);
    free(d.content);
    buf_release(&b);
    free(content);
}
END_TEST

/* Writes the pending bytes n at a time into out (a socket that takes n), checking that the
 * data pointer always continues where the last write stopped. */
static void
drain_by(struct fcgi_pending *p, struct buf *out, size_t n)
{
    size_t len;
    const void *data;
    while ((data = fcgi_pending_data(p, &len)) != NULL) {
        size_t take = n < len ? n : len;
        ck_assert_int_eq(buf_append(out, data, take), 0);
        fcgi_pending_advance(p, take);
        ck_assert_uint_eq(fcgi_pending_len(p), len - take);
        ck_assert_uint_le(p->buf.len, p->buf.max_len);
    }
    ck_assert_uint_eq(len, 0);
    ck_assert_uint_eq(fcgi_pending_len(p), 0);
    ck_assert_uint_eq(p->buf.len, 0);  /* drained: reset */
    ck_assert_uint_eq(p->sent, 0);
}

START_TEST(test_pending_one_byte_at_a_time)
{
    unsigned char *content = pattern(300, 1);
    struct fcgi_pending p;
    fcgi_pending_init(&p, 4096);
    size_t len;
    ck_assert_ptr_null(fcgi_pending_data(&p, &len));
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(fcgi_pending_stdout(&p, 9, content, 300), 0);
    ck_assert_int_eq(fcgi_pending_end(&p, 9, 0), 0);
    struct buf out;
    buf_init(&out, 1 << 20);
    drain_by(&p, &out, 1);
    struct decoded d = decode(out.bytes, out.len, 9);
    ck_assert(d.ended && d.content_len == 300 && memcmp(d.content, content, 300) == 0);
    free(d.content);
    buf_release(&out);
    fcgi_pending_release(&p);
    fcgi_pending_release(NULL);
    free(content);
}
END_TEST

/* Odd write sizes, appends between partial writes, and the limit while partly sent. */
START_TEST(test_pending_appends_while_partly_sent)
{
    static const size_t writes[] = {3, 13, 1, 997, 65537, 5, 70001};
    unsigned char *content = pattern(200000, 5);
    struct fcgi_pending p;
    fcgi_pending_init(&p, 80000);
    struct buf out;
    buf_init(&out, 1 << 22);
    size_t appended = 0, step = 0;
    while (appended < 200000) {
        size_t n = 1 + (step * 7919) % 30000;
        if (n > 200000 - appended)
            n = 200000 - appended;
        if (fcgi_pending_stdout(&p, 4, content + appended, n) == 0) {
            appended += n;
        } else {
            /* Refused only when it cannot fit even with the sent bytes dropped. */
            ck_assert_uint_gt(fcgi_pending_len(&p) + n + fcgi_out_overhead(n), p.buf.max_len);
        }
        ck_assert_uint_le(p.buf.len, p.buf.max_len);
        size_t len;
        const void *data = fcgi_pending_data(&p, &len);
        size_t take = writes[step % 7] < len ? writes[step % 7] : len;
        if (take > 0)
            ck_assert_int_eq(buf_append(&out, data, take), 0);
        fcgi_pending_advance(&p, take);
        step++;
    }
    ck_assert_int_eq(fcgi_pending_end(&p, 4, 1), 0);
    drain_by(&p, &out, 11);
    struct decoded d = decode(out.bytes, out.len, 4);
    ck_assert(d.ended);
    ck_assert_uint_eq(d.app_status, 1);
    ck_assert_uint_eq(d.content_len, 200000);
    ck_assert(memcmp(d.content, content, 200000) == 0);
    free(d.content);
    buf_release(&out);
    fcgi_pending_release(&p);
    free(content);
}
END_TEST

/* A full pending output refuses and changes nothing; sending makes room again. */
START_TEST(test_pending_limit)
{
    struct fcgi_pending p;
    fcgi_pending_init(&p, 64);
    ck_assert_int_eq(fcgi_pending_stdout(&p, 1, "0123456789012345678901234567890123456789", 40),
                     0);
    ck_assert_uint_eq(fcgi_pending_len(&p), 48);
    ck_assert_int_eq(fcgi_pending_end(&p, 1, 0), -1);
    ck_assert_uint_eq(fcgi_pending_len(&p), 48);
    fcgi_pending_advance(&p, 9);  /* less than half: no move */
    ck_assert_uint_eq(p.sent, 9);
    ck_assert_int_eq(fcgi_pending_end(&p, 1, 0), 0);  /* fits once the 9 are dropped */
    ck_assert_uint_eq(fcgi_pending_len(&p), 39 + 24);
    ck_assert_uint_eq(p.sent, 0);
    ck_assert_uint_le(p.buf.len, 64);
    fcgi_pending_advance(&p, 1000);  /* more than held: all of it */
    ck_assert_uint_eq(fcgi_pending_len(&p), 0);
    fcgi_pending_release(&p);
}
END_TEST

/* ---- conn: the writer over a socket --------------------------------------------------- */

/* A row whose frame is len pattern bytes, one reference. */
static struct store_row *
frame_row(size_t len, unsigned seed)
{
    struct event e = {.id = 1, .type = "t", .type_len = 1};
    struct store_row *row = store_row_new(&e);
    ck_assert_ptr_nonnull(row);
    store_row_set_frame(row, (char *)pattern(len, seed), len);
    return row;
}

/* A conn on one end of a socketpair; *peer gets the other end, non-blocking. */
static struct conn *
paired_conn(int *peer, bool is_fastcgi)
{
    int fds[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    *peer = fds[1];
    struct conn *c = conn_open(fds[0], is_fastcgi, 7);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* A conn whose socket buffer is small, so that a peer that does not read fills it soon. */
static struct conn *
paired_conn_small(int *peer)
{
    struct conn *c = paired_conn(peer, true);
    int small = 4096;
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    return c;
}

/* Frees the conn, the peer and the row, once the conn gave its references back. */
static void
close_pair(struct conn *c, int peer, struct store_row *row)
{
    conn_free(c);
    if (peer >= 0)
        close(peer);
    ck_assert_int_eq(atomic_load(&row->refs), 1);
    store_row_unref(row);
}

/* Reads what the peer has now into b. */
static void
read_peer(int peer, struct buf *b)
{
    char chunk[65536];
    ssize_t n;
    while ((n = read(peer, chunk, sizeof(chunk))) > 0)
        ck_assert_int_eq(buf_append(b, chunk, (size_t)n), 0);
    ck_assert(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Flushes c while the peer reads, until nothing waits. */
static void
flush_and_read(struct conn *c, int peer, struct buf *b)
{
    int rc;
    for (int rounds = 0; (rc = conn_flush(c, rounds)) == 1; rounds++) {
        ck_assert_int_lt(rounds, 100000);
        read_peer(peer, b);
    }
    ck_assert_int_eq(rc, 0);
    read_peer(peer, b);
}

START_TEST(test_conn_owned_and_shared_in_order)
{
    int peer;
    struct conn *c = paired_conn(&peer, true);
    size_t big = 3 * CONN_SHARED_RECORD + 5;  /* four records, the last padded */
    struct store_row *row = frame_row(big, 3);
    ck_assert_int_eq(conn_append(c, "head:", 5), 0);
    ck_assert_int_eq(conn_append_shared(c, row, row->frame, big), 0);
    ck_assert_int_eq(conn_append(c, "\n\n", 2), 0);
    ck_assert_int_eq(conn_append_shared(c, row, row->frame + 1, 9), 0);
    conn_end(c);
    ck_assert_uint_ge(conn_waiting(c), 5 + big + 2 + 9 + 24);
    ck_assert_int_gt(atomic_load(&row->refs), 1);  /* the conn holds it while it waits */
    struct buf got;
    buf_init(&got, 1 << 24);
    flush_and_read(c, peer, &got);
    ck_assert_uint_eq(conn_waiting(c), 0);
    ck_assert_int_eq(atomic_load(&row->refs), 1);  /* given back once written */
    struct decoded d = decode(got.bytes, got.len, 7);
    ck_assert(d.ended);
    ck_assert_uint_eq(d.content_len, 5 + big + 2 + 9);
    ck_assert_int_eq(memcmp(d.content, "head:", 5), 0);
    ck_assert_int_eq(memcmp(d.content + 5, row->frame, big), 0);
    ck_assert_int_eq(memcmp(d.content + 5 + big, "\n\n", 2), 0);
    ck_assert_int_eq(memcmp(d.content + 5 + big + 2, row->frame + 1, 9), 0);
    free(d.content);
    buf_release(&got);
    close_pair(c, peer, row);
}
END_TEST

/* A peer that does not read: the socket fills, the rest waits (and holds its frame); as
 * the peer reads, it drains, byte for byte. */
START_TEST(test_conn_waits_for_a_peer_that_does_not_read)
{
    int peer;
    struct conn *c = paired_conn_small(&peer);
    size_t big = 4 * 1024 * 1024;
    struct store_row *row = frame_row(big, 5);
    ck_assert_int_eq(conn_append_shared(c, row, row->frame, big), 0);
    ck_assert_int_eq(conn_flush(c, 10), 1);
    size_t waiting = conn_waiting(c);
    ck_assert_uint_gt(waiting, 0);
    ck_assert_uint_lt(waiting, big + fcgi_out_overhead(big));
    ck_assert_int_eq(c->last_progress_ms, 10);
    ck_assert_int_eq(conn_flush(c, 20), 1);  /* nothing taken: no progress */
    ck_assert_int_eq(c->last_progress_ms, 10);
    ck_assert_uint_eq(conn_waiting(c), waiting);
    struct buf got;
    buf_init(&got, 1 << 24);
    flush_and_read(c, peer, &got);
    struct decoded d = decode(got.bytes, got.len, 7);
    ck_assert_uint_eq(d.content_len, big);
    ck_assert_int_eq(memcmp(d.content, row->frame, big), 0);
    free(d.content);
    buf_release(&got);
    close_pair(c, peer, row);
}
END_TEST

/* A conn freed with a frame still waiting gives its reference back; a write to a peer that
 * closed breaks it. */
START_TEST(test_conn_free_and_broken_peer)
{
    int peer;
    struct conn *c = paired_conn_small(&peer);
    struct store_row *row = frame_row(1 << 20, 9);
    ck_assert_int_eq(conn_append_shared(c, row, row->frame, 1 << 20), 0);
    ck_assert_int_eq(conn_flush(c, 0), 1);
    close(peer);
    ck_assert_int_eq(conn_flush(c, 1), -1);
    ck_assert(c->is_broken);
    ck_assert_int_eq(conn_append(c, "x", 1), 0);  /* an append still queues, */
    ck_assert_int_eq(conn_flush(c, 2), -1);       /* but nothing is written again */
    close_pair(c, -1, row);
}
END_TEST

/* Plain CGI: bare bytes, shared frames too, and no records. */
START_TEST(test_conn_cgi_bare_bytes)
{
    int peer;
    struct conn *c = paired_conn(&peer, false);
    struct store_row *row = frame_row(100000, 1);
    static const char HEAD[] = "Status: 200\r\n\r\n";
    ck_assert_int_eq(conn_append(c, HEAD, strlen(HEAD)), 0);
    ck_assert_int_eq(conn_append_shared(c, row, row->frame, 100000), 0);
    conn_end(c);
    struct buf got;
    buf_init(&got, 1 << 24);
    flush_and_read(c, peer, &got);
    ck_assert_uint_eq(got.len, strlen(HEAD) + 100000);
    ck_assert_int_eq(memcmp(got.bytes, HEAD, strlen(HEAD)), 0);
    ck_assert_int_eq(memcmp(got.bytes + strlen(HEAD), row->frame, 100000), 0);
    buf_release(&got);
    close_pair(c, peer, row);
}
END_TEST

Suite *suite_fcgi_out(void);

Suite *
suite_fcgi_out(void)
{
    Suite *s = suite_create("fcgi_out");
    TCase *tc = tcase_create("fcgi_out");
    tcase_set_timeout(tc, 10);
    tcase_add_loop_test(tc, test_stdout_sizes, 0, SIZES_COUNT);
    tcase_add_test(tc, test_overhead);
    tcase_add_loop_test(tc, test_stdout_all_or_nothing, 0, SIZES_COUNT);
    tcase_add_test(tc, test_end_bytes);
    tcase_add_test(tc, test_stream_then_end_decodes);
    tcase_add_test(tc, test_pending_one_byte_at_a_time);
    tcase_add_test(tc, test_pending_appends_while_partly_sent);
    tcase_add_test(tc, test_pending_limit);
    suite_add_tcase(s, tc);
    TCase *conn = tcase_create("conn");
    tcase_set_timeout(conn, 10);
    tcase_add_test(conn, test_conn_owned_and_shared_in_order);
    tcase_add_test(conn, test_conn_waits_for_a_peer_that_does_not_read);
    tcase_add_test(conn, test_conn_free_and_broken_peer);
    tcase_add_test(conn, test_conn_cgi_bare_bytes);
    suite_add_tcase(s, conn);
    return s;
}
