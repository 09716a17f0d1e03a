/*
 * buf.h - a growable byte buffer with a hard size limit (pure).
 *
 * Invariants: `bytes` is NULL or holds `len` bytes followed by a NUL; len < cap; len never
 * exceeds max_len. An append that would pass max_len or fails to allocate leaves the buffer
 * unchanged and returns -1, so a caller can send what it has and try again. Not thread-safe;
 * one buffer belongs to one stream.
 */
#ifndef SSE_BUF_H
#define SSE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *bytes;     /* owned; NULL until the first append */
    size_t len;      /* bytes used, without the NUL */
    size_t cap;      /* bytes allocated */
    size_t max_len;  /* hard limit on len */
};

/* Prepares an empty buffer that may grow to max_len bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t max_len);

/* Frees the bytes and leaves the buffer empty and reusable. NULL is safe. */
void buf_release(struct buf *b);

/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);

/* Appends n bytes. Returns 0, or -1 (limit or out of memory; buffer unchanged). */
int buf_append(struct buf *b, const void *bytes, size_t n);

/* Appends a NUL-terminated string. Returns as buf_append. */
int buf_append_str(struct buf *b, const char *s);

/* Appends printf-formatted text. Returns as buf_append. */
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Shrinks the buffer back to len bytes (len <= b->len); used to undo a partial append. */
void buf_truncate(struct buf *b, size_t len);

#endif
