/*
 * fcgi_out.h - FastCGI records of a response, written into a caller's buffer (pure).
 *
 * For the event loop (issue 13), which writes to non-blocking sockets itself: fcgi/conn.c
 * builds a stream's STDOUT and END_REQUEST records here and writes what the socket takes,
 * keeping the rest in a struct fcgi_pending.
 *
 * Every append is all-or-nothing: on failure (the buffer's max_len, or out of memory) the
 * buffer is left as it was and -1 returned. Not thread-safe; one buffer belongs to one stream.
 */
#ifndef SSE_FCGI_OUT_H
#define SSE_FCGI_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* FastCGI Specification 1.0 (Open Market, 1996), section 8. */
enum {
    FCGI_OUT_VERSION = 1,            /* FCGI_VERSION_1 */
    FCGI_OUT_HEADER_LEN = 8,         /* FCGI_HEADER_LEN */
    FCGI_OUT_END_REQUEST = 3,        /* FCGI_END_REQUEST */
    FCGI_OUT_STDOUT = 6,             /* FCGI_STDOUT */
    FCGI_OUT_REQUEST_COMPLETE = 0,   /* protocolStatus FCGI_REQUEST_COMPLETE */
    FCGI_OUT_END_BODY_LEN = 8,       /* FCGI_EndRequestBody */
    FCGI_OUT_CONTENT_MAX = 65535,    /* contentLength is 16 bits */
};

/* Appends len bytes as STDOUT records of request_id: as many as needed, each at most
 * FCGI_OUT_CONTENT_MAX content bytes, padded to a multiple of 8. len 0 appends nothing (an
 * empty STDOUT record ends the stream: fcgi_out_end). Returns 0, or -1 (buffer unchanged). */
int fcgi_out_stdout(struct buf *b, uint16_t request_id, const void *bytes, size_t len);

/* Appends the end of request_id's response: an empty STDOUT record, then END_REQUEST with
 * app_status and protocolStatus REQUEST_COMPLETE (24 bytes). Returns as fcgi_out_stdout. */
int fcgi_out_end(struct buf *b, uint16_t request_id, uint32_t app_status);

/* The record bytes (headers and padding) fcgi_out_stdout adds to len content bytes; 0 for
 * len 0. A caller budgets len + fcgi_out_overhead(len) bytes of buffer. */
size_t fcgi_out_overhead(size_t len);

/*
 * Output waiting for a non-blocking socket: buf.bytes[sent..buf.len) is still to write.
 * Append with fcgi_pending_stdout / fcgi_pending_end (or fcgi_out_* on &buf), write what
 * fcgi_pending_data returns, then fcgi_pending_advance by what the socket took.
 * Bounded: at most buf.max_len bytes are held, sent or not; an append that does not fit
 * fails and changes nothing, which tells the caller the client is slow (backpressure).
 */
struct fcgi_pending {
    struct buf buf;
    size_t sent;                     /* bytes of buf already written */
};

/* Prepares an empty pending output that may hold max_len bytes. Allocates nothing. */
void fcgi_pending_init(struct fcgi_pending *p, size_t max_len);

/* Frees the bytes; p is empty and reusable. NULL is safe. */
void fcgi_pending_release(struct fcgi_pending *p);

/* The bytes still to write and their count in *len; NULL with *len 0 when there are none. */
const void *fcgi_pending_data(const struct fcgi_pending *p, size_t *len);

/* After a write took n bytes (n <= fcgi_pending_len): drops them. Empties the buffer when
 * all is sent, and moves what is left to the front once half of the buffer is sent. */
void fcgi_pending_advance(struct fcgi_pending *p, size_t n);

/* Bytes still to write. */
size_t fcgi_pending_len(const struct fcgi_pending *p);

/* fcgi_out_stdout / fcgi_out_end into p, first moving unsent bytes to the front when the
 * records would not fit otherwise. Return 0, or -1 (p unchanged but for that move). */
int fcgi_pending_stdout(struct fcgi_pending *p, uint16_t request_id, const void *bytes,
                        size_t len);
int fcgi_pending_end(struct fcgi_pending *p, uint16_t request_id, uint32_t app_status);

/* For content the caller writes from memory of its own (a large frame every stream shares,
 * written without a copy): the header of one STDOUT record of content_len bytes
 * (1..FCGI_OUT_CONTENT_MAX), then, once the caller has queued the content, its padding.
 * Return as fcgi_pending_stdout; the tail appends nothing when no padding is due. */
int fcgi_pending_stdout_head(struct fcgi_pending *p, uint16_t request_id, size_t content_len);
int fcgi_pending_stdout_tail(struct fcgi_pending *p, size_t content_len);

/* Appends len bytes as they are, no record around them (plain CGI writes its response to
 * stdout bare). Returns as fcgi_pending_stdout. */
int fcgi_pending_raw(struct fcgi_pending *p, const void *bytes, size_t len);

#endif
