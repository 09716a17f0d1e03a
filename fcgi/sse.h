/*
 * sse.h - the bytes of an event stream, written into a caller's buffer (pure).
 *
 * Invariant for every function here: the bytes appended contain no CR and no NUL, and LF only
 * as the line ends the function itself writes, whatever the event's fields hold (WHATWG: CR
 * alone ends a line). Invalid UTF-8 and NUL in row content become U+FFFD. JSON is built with
 * cJSON. On failure the buffer is left as it was. Thread-safe.
 */
#ifndef SSE_SSE_H
#define SSE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store/event.h"
#include "buf.h"

/* Stream opening (SPEC §4.1): "retry: <ms>\n" then a comment line and a blank line. */
int sse_append_open(struct buf *b, long retry_ms);

/* ": keepalive\n\n" (SPEC §4.7). */
int sse_append_keepalive(struct buf *b);

/* ":\n" - the bare comment line that reveals a dead client under Apache/CGI (SPEC §4.10). */
int sse_append_probe(struct buf *b);

/* "event: gap\ndata: {"requested":N,"resumed_from":M}\n\n" (SPEC §4.3); no id line, so the
 * client's last event id is unchanged. */
int sse_append_gap(struct buf *b, int64_t requested, int64_t resumed_from);

/* A soft refusal (SPEC §4.12), the whole body of a 200 stream that a standard EventSource
 * comes back from: "retry: <ms>\n", "id: <cursor>\n" when has_cursor (it keeps the client's
 * Last-Event-ID without firing an event), ": sse-fcgi unavailable: <reason>\n", "\n".
 * reason is ours (a static string); any control byte in it becomes a space. */
int sse_append_refusal(struct buf *b, long retry_ms, bool has_cursor, int64_t cursor,
                       const char *reason);

/* One event frame (SPEC §4.6): "id: <id>\n" [ "event: <type>\n" ] "data: <json>\n\n".
 * Returns 0, or -1 when cJSON or the buffer runs out of memory or the limit. */
int sse_append_event(struct buf *b, const struct event *e, bool is_named);

/* Copies in[0..len) to out, replacing each invalid UTF-8 sequence and each NUL with U+FFFD.
 * out must have room for 3 * len + 1 bytes; it is NUL-terminated. Returns bytes written. */
size_t sse_utf8_sanitize(const char *in, size_t len, char *out);

#endif
