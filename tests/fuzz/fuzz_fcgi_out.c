/*
 * fuzz_fcgi_out.c - libFuzzer target for the FastCGI record writer (fcgi/fcgi_out.h).
 *
 * Feeds: a program (layout above LLVMFuzzerTestOneInput) of STDOUT appends, records built
 * as fcgi/conn.c builds a shared frame's, and partial "writes" through a struct
 * fcgi_pending whose limit comes from the input, as the event loop drives it against a
 * non-blocking socket; the content is the input's own
 * bytes, read round and round. Checks: the pending bytes never pass the limit; an append
 * grows them by exactly len + fcgi_out_overhead(len), or is refused only when it cannot fit
 * and then changes nothing; what was "written" decodes, with a decoder of its own from the
 * FastCGI Specification 1.0 (Open Market, 1996), to records of version 1, STDOUT then one
 * empty STDOUT and END_REQUEST, the request id, 8-multiple zero padding, and content equal
 * to everything appended, in order.
 * A broken invariant aborts through CHECK (check.h); libFuzzer saves the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/fcgi_out.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    HEADER_BYTES = 4,                   /* limit (2), request id (2) */
    STEP_BYTES = 3,                     /* op, argument (2) */
    CONTENT_MAX = 1024 * 1024,          /* appends stop here: bounds a run's time and memory */
    WIRE_MAX = 2 * 1024 * 1024,
};

/* Builds len content bytes from the input, read round and round from *at. */
static void
content_of(const uint8_t *data, size_t size, size_t *at, unsigned char *out, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t from = *at % size, n = size - from < len - i ? size - from : len - i;
        memcpy(out + i, data + from, n);
        i += n;
        *at += n;
    }
}

/* "Writes" up to n pending bytes onto the wire, as a socket that takes n would. */
static void
write_some(struct fcgi_pending *p, struct buf *wire, size_t n)
{
    size_t len;
    const void *bytes = fcgi_pending_data(p, &len);
    CHECK((bytes == NULL) == (len == 0));
    size_t take = n < len ? n : len;
    if (take > 0)
        CHECK(buf_append(wire, bytes, take) == 0);
    fcgi_pending_advance(p, take);
    CHECK(fcgi_pending_len(p) == len - take);
}

static unsigned
be16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* The wire as the web server reads it: every record well formed, the content in order. */
static void
check_wire(const struct buf *wire, unsigned id, const struct buf *want, uint32_t app_status)
{
    const unsigned char *p = (const unsigned char *)wire->bytes;
    size_t left = wire->len, got = 0;
    bool closed = false, ended = false;
    while (left > 0) {
        CHECK(!ended && left >= FCGI_OUT_HEADER_LEN);
        CHECK(p[0] == 1 && be16(p + 2) == id && p[7] == 0);
        size_t clen = be16(p + 4), plen = p[6];
        CHECK((clen + plen) % 8 == 0 && plen < 8 && left - 8 >= clen + plen);
        for (size_t i = 0; i < plen; i++)
            CHECK(p[8 + clen + i] == 0);
        if (p[1] == 6 && clen > 0) {
            CHECK(!closed && got + clen <= want->len);
            CHECK(memcmp(p + 8, want->bytes + got, clen) == 0);
            got += clen;
        } else if (p[1] == 6) {
            CHECK(!closed);
            closed = true;
        } else {
            CHECK(p[1] == 3 && closed && clen == 8);
            const unsigned char *body = p + 8;
            CHECK(((uint32_t)body[0] << 24 | (uint32_t)body[1] << 16
                   | (uint32_t)body[2] << 8 | body[3]) == app_status);
            CHECK(body[4] == 0 && body[5] == 0 && body[6] == 0 && body[7] == 0);
            ended = true;
        }
        p += 8 + clen + plen;
        left -= 8 + clen + plen;
    }
    CHECK(ended && got == want->len);
}

/* One append of n bytes: exact growth on success, refused only when it cannot fit. */
static void
append_step(struct fcgi_pending *p, unsigned id, const unsigned char *content, size_t n,
            struct buf *want)
{
    size_t before = fcgi_pending_len(p), held = p->buf.len;
    if (fcgi_pending_stdout(p, (uint16_t)id, content, n) == 0) {
        CHECK(fcgi_pending_len(p) == before + n + fcgi_out_overhead(n));
        CHECK(buf_append(want, content, n) == 0);
    } else {
        CHECK(n > 0 && before + n + fcgi_out_overhead(n) > p->buf.max_len);
        CHECK(fcgi_pending_len(p) == before && p->buf.len <= held);
    }
}

/* One record as fcgi/conn.c writes a shared frame: its head, the content from elsewhere
 * (here raw bytes through the same buffer, so that the wire holds them in place), its
 * padding. Skipped when the whole record would not fit. */
static void
shared_step(struct fcgi_pending *p, unsigned id, const unsigned char *content, size_t n,
            struct buf *want)
{
    size_t before = fcgi_pending_len(p), total = n + fcgi_out_overhead(n);
    if (before + total > p->buf.max_len)
        return;
    CHECK(fcgi_pending_stdout_head(p, (uint16_t)id, n) == 0);
    CHECK(fcgi_pending_raw(p, content, n) == 0);
    CHECK(fcgi_pending_stdout_tail(p, n) == 0);
    CHECK(fcgi_pending_len(p) == before + total);
    CHECK(buf_append(want, content, n) == 0);
}

/* Input layout: bytes 0-1 (big-endian) v, the limit 24 + 8 * v; bytes 2-3 the request id.
 * Then 3-byte steps {op, a (2 bytes, big-endian)}: op % 4 < 2 appends a + 65536 * (op >> 7)
 * bytes of STDOUT, or, with op % 4 == 1 and bit 6 set, one record of a % 65535 + 1 bytes
 * built as a shared frame's (head, content, tail); 2 writes a bytes; 3 writes a % 17. The end: END_REQUEST with the
 * status made of the first four bytes, after writing what must go to make room for it;
 * then everything is written and the wire checked. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER_BYTES)
        return 0;
    size_t limit = 24 + 8 * (size_t)be16(data);
    unsigned id = be16(data + 2);
    uint32_t app_status = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16
                          | (uint32_t)data[2] << 8 | data[3];
    struct fcgi_pending p;
    fcgi_pending_init(&p, limit);
    struct buf wire, want;
    buf_init(&wire, WIRE_MAX);
    buf_init(&want, CONTENT_MAX);
    unsigned char *content = malloc(2 * 65536);
    CHECK(content != NULL);
    size_t at = 0;
    for (size_t s = HEADER_BYTES; s + STEP_BYTES <= size; s += STEP_BYTES) {
        unsigned op = data[s], a = be16(data + s + 1);
        if (op % 4 == 1 && (op & 0x40)) {
            size_t n = a % 65535 + 1;
            CHECK(fcgi_pending_stdout_head(&p, (uint16_t)id, 0) < 0);
            if (want.len + n <= CONTENT_MAX) {
                content_of(data, size, &at, content, n);
                shared_step(&p, id, content, n, &want);
            }
        } else if (op % 4 < 2) {
            size_t n = a + 65536 * (size_t)(op >> 7);
            if (want.len + n <= CONTENT_MAX) {
                content_of(data, size, &at, content, n);
                append_step(&p, id, content, n, &want);
            }
        } else {
            write_some(&p, &wire, op % 4 == 2 ? a : a % 17);
        }
        CHECK(p.buf.len <= limit && p.sent <= p.buf.len);
    }
    while (fcgi_pending_end(&p, (uint16_t)id, app_status) < 0) {
        CHECK(fcgi_pending_len(&p) + 24 > limit);
        write_some(&p, &wire, 4096);
    }
    CHECK(p.buf.len <= limit);
    while (fcgi_pending_len(&p) > 0)
        write_some(&p, &wire, 4093);
    CHECK(p.buf.len == 0 && p.sent == 0);
    check_wire(&wire, id, &want, app_status);
    free(content);
    buf_release(&want);
    buf_release(&wire);
    fcgi_pending_release(&p);
    return 0;
}
