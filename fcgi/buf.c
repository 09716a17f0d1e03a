/*
 * buf.c - growable byte buffer with a hard limit.
 *
 * Grows by doubling, never past max_len + 1 bytes. A failed append leaves the buffer as it
 * was: the caller may flush what it holds and retry. No I/O.
 */
#include "buf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
buf_init(struct buf *b, size_t max_len)
{
    b->bytes = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_len = max_len;
}

void
buf_release(struct buf *b)
{
    if (b == NULL)
        return;
    free(b->bytes);
    b->bytes = NULL;
    b->len = 0;
    b->cap = 0;
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->bytes != NULL)
        b->bytes[0] = '\0';
}

/* Makes room for `extra` more bytes plus the NUL. */
static int
ensure_room(struct buf *b, size_t extra)
{
    if (extra > b->max_len - b->len)
        return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (b->max_len < SIZE_MAX && cap > b->max_len + 1)  /* max_len + 1 wraps at SIZE_MAX */
        cap = b->max_len + 1;
    char *bytes = realloc(b->bytes, cap);
    if (bytes == NULL)
        return -1;
    b->bytes = bytes;
    b->cap = cap;
    return 0;
}

int
buf_append(struct buf *b, const void *bytes, size_t n)
{
    if (ensure_room(b, n) < 0)
        return -1;
    if (n > 0)
        memcpy(b->bytes + b->len, bytes, n);
    b->len += n;
    b->bytes[b->len] = '\0';
    return 0;
}

int
buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int
buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || ensure_room(b, (size_t)n) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->bytes + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void
buf_truncate(struct buf *b, size_t len)
{
    if (len < b->len) {
        b->len = len;
        b->bytes[len] = '\0';
    }
}
