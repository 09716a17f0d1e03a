/*
 * fcgi_out.c - FastCGI response records as bytes, and the output a socket has not taken yet.
 *
 * What it is for: issue 13 replaces the thread per stream with one epoll loop per process.
 * That loop cannot write through libfcgi: FCGX_PutStr and FCGX_FFlush block on the socket
 * until all is written, so one slow client would stall every stream of the process. The loop
 * instead builds the records here, writes what a non-blocking socket accepts and keeps the
 * rest (struct fcgi_pending), bounded so that a full buffer marks a slow client. Pure: no I/O,
 * no clock; fcgi/conn.c does the writes.
 *
 * The records, from the FastCGI Specification 1.0 (Open Market, 1996):
 * - every record starts with an 8-byte header {version = 1, type, requestIdB1, requestIdB0,
 *   contentLengthB1, contentLengthB0, paddingLength, reserved} (section 3.3), then
 *   contentLength bytes of content (so at most 65535) and paddingLength bytes of padding;
 * - the spec recommends padding records to a multiple of 8 bytes; we always pad, with zeros;
 * - FCGI_STDOUT = 6 carries the response; a stream's end is an empty STDOUT record
 *   (section 3.3, "stream records"), then FCGI_END_REQUEST = 3 (section 5.5) with an 8-byte
 *   body {appStatusB3..B0, protocolStatus, reserved[3]}, protocolStatus
 *   FCGI_REQUEST_COMPLETE = 0.
 */
#include "fcgi_out.h"

#include <stdint.h>
#include <string.h>

/* Zeros up to 7 bytes of padding. */
static const unsigned char ZEROS[FCGI_OUT_HEADER_LEN];

static size_t
padding_of(size_t content_len)
{
    return (FCGI_OUT_HEADER_LEN - content_len % FCGI_OUT_HEADER_LEN) % FCGI_OUT_HEADER_LEN;
}

/* Appends the header of one record of content_len bytes. */
static int
append_header(struct buf *b, unsigned type, uint16_t request_id, size_t content_len)
{
    unsigned char header[FCGI_OUT_HEADER_LEN] = {
        FCGI_OUT_VERSION, (unsigned char)type,
        (unsigned char)(request_id >> 8), (unsigned char)(request_id & 0xFF),
        (unsigned char)(content_len >> 8), (unsigned char)(content_len & 0xFF),
        (unsigned char)padding_of(content_len), 0,
    };
    return buf_append(b, header, sizeof(header));
}

/* Appends one record: header, content_len bytes, zero padding. */
static int
append_record(struct buf *b, unsigned type, uint16_t request_id, const void *content,
              size_t content_len)
{
    if (append_header(b, type, request_id, content_len) < 0
        || buf_append(b, content, content_len) < 0)
        return -1;
    return buf_append(b, ZEROS, padding_of(content_len));
}

size_t
fcgi_out_overhead(size_t len)
{
    if (len == 0)
        return 0;
    size_t full = (len - 1) / FCGI_OUT_CONTENT_MAX;      /* records before the last */
    size_t last = len - full * FCGI_OUT_CONTENT_MAX;     /* 1..FCGI_OUT_CONTENT_MAX */
    return full * (FCGI_OUT_HEADER_LEN + padding_of(FCGI_OUT_CONTENT_MAX))
           + FCGI_OUT_HEADER_LEN + padding_of(last);
}

/* True when n more bytes fit in b (the check buf_append makes, done once for all records). */
static int
fits(const struct buf *b, size_t n)
{
    return n <= b->max_len - b->len;
}

int
fcgi_out_stdout(struct buf *b, uint16_t request_id, const void *bytes, size_t len)
{
    size_t overhead = fcgi_out_overhead(len);
    if (len == 0)
        return 0;
    if (len > SIZE_MAX - overhead || !fits(b, len + overhead))
        return -1;
    size_t start = b->len;
    const unsigned char *p = bytes;
    while (len > 0) {
        size_t n = len < FCGI_OUT_CONTENT_MAX ? len : FCGI_OUT_CONTENT_MAX;
        if (append_record(b, FCGI_OUT_STDOUT, request_id, p, n) < 0) {
            buf_truncate(b, start);                          /* out of memory */
            return -1;
        }
        p += n;
        len -= n;
    }
    return 0;
}

int
fcgi_out_end(struct buf *b, uint16_t request_id, uint32_t app_status)
{
    const unsigned char body[FCGI_OUT_END_BODY_LEN] = {
        (unsigned char)(app_status >> 24), (unsigned char)(app_status >> 16),
        (unsigned char)(app_status >> 8), (unsigned char)app_status,
        FCGI_OUT_REQUEST_COMPLETE, 0, 0, 0,
    };
    size_t start = b->len;
    if (!fits(b, 2 * FCGI_OUT_HEADER_LEN + sizeof(body))
        || append_record(b, FCGI_OUT_STDOUT, request_id, NULL, 0) < 0
        || append_record(b, FCGI_OUT_END_REQUEST, request_id, body, sizeof(body)) < 0) {
        buf_truncate(b, start);
        return -1;
    }
    return 0;
}

void
fcgi_pending_init(struct fcgi_pending *p, size_t max_len)
{
    buf_init(&p->buf, max_len);
    p->sent = 0;
}

void
fcgi_pending_release(struct fcgi_pending *p)
{
    if (p == NULL)
        return;
    buf_release(&p->buf);
    p->sent = 0;
}

size_t
fcgi_pending_len(const struct fcgi_pending *p)
{
    return p->buf.len - p->sent;
}

const void *
fcgi_pending_data(const struct fcgi_pending *p, size_t *len)
{
    *len = fcgi_pending_len(p);
    return *len > 0 ? p->buf.bytes + p->sent : NULL;
}

/* Moves the unsent bytes to the front of the buffer. */
static void
compact(struct fcgi_pending *p)
{
    size_t left = fcgi_pending_len(p);
    if (p->sent == 0)
        return;
    if (left > 0)
        memmove(p->buf.bytes, p->buf.bytes + p->sent, left);
    buf_truncate(&p->buf, left);
    p->sent = 0;
}

void
fcgi_pending_advance(struct fcgi_pending *p, size_t n)
{
    size_t left = fcgi_pending_len(p);
    p->sent += n < left ? n : left;
    if (p->sent == p->buf.len) {
        buf_reset(&p->buf);
        p->sent = 0;
    } else if (p->sent >= p->buf.len - p->sent) {
        compact(p);  /* moves at most as many bytes as were sent since the last move */
    }
}

/* Compacts p when need more bytes would not fit behind what it holds. */
static void
make_room(struct fcgi_pending *p, size_t need)
{
    if (!fits(&p->buf, need))
        compact(p);
}

int
fcgi_pending_stdout(struct fcgi_pending *p, uint16_t request_id, const void *bytes,
                    size_t len)
{
    size_t overhead = fcgi_out_overhead(len);
    make_room(p, len > SIZE_MAX - overhead ? SIZE_MAX : len + overhead);
    return fcgi_out_stdout(&p->buf, request_id, bytes, len);
}

int
fcgi_pending_end(struct fcgi_pending *p, uint16_t request_id, uint32_t app_status)
{
    make_room(p, 2 * FCGI_OUT_HEADER_LEN + FCGI_OUT_END_BODY_LEN);
    return fcgi_out_end(&p->buf, request_id, app_status);
}

int
fcgi_pending_raw(struct fcgi_pending *p, const void *bytes, size_t len)
{
    make_room(p, len);
    return buf_append(&p->buf, bytes, len);
}

int
fcgi_pending_stdout_head(struct fcgi_pending *p, uint16_t request_id, size_t content_len)
{
    if (content_len == 0 || content_len > FCGI_OUT_CONTENT_MAX)
        return -1;
    make_room(p, FCGI_OUT_HEADER_LEN);
    return append_header(&p->buf, FCGI_OUT_STDOUT, request_id, content_len);
}

int
fcgi_pending_stdout_tail(struct fcgi_pending *p, size_t content_len)
{
    size_t padding = padding_of(content_len);
    if (padding == 0)
        return 0;
    make_room(p, padding);
    return buf_append(&p->buf, ZEROS, padding);
}
