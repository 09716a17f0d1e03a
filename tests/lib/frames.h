/*
 * frames.h - assertions on the events a stream sends (SPEC §4.4, §4.6).
 *
 * Built on sse_client: read events up to a given id and compare the ids with the expected
 * list, exactly and in order; check that every frame is well-formed (one data line that
 * parses as JSON, an id, seq equal to the id) and that the body never holds CR or NUL.
 * Failures print the ids seen and the bytes received. Not thread-safe.
 */
#ifndef SSE_TEST_FRAMES_H
#define SSE_TEST_FRAMES_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/lib/sse_client.h"

/* Fails the test unless f is a well-formed event frame: a decimal id, exactly one data line
 * that parses as JSON with "seq" equal to the id, no unknown field lines. */
void frames_expect_wellformed(const struct sse_frame *f);

/* Prints "label (n): id id ..." to stderr, the first 200 ids. */
void frames_print_ids(const char *label, const long long *ids, size_t n);

/* Reads events until one with id >= last_id (each within timeout_ms), storing their ids
 * in ids (at most cap; more fail the test). Every frame must be well-formed; an
 * "event: gap" notice (no id) is skipped, its own test checks it. Returns the count. */
size_t frames_read_until(struct sse_client *c, long long last_id, long long *ids, size_t cap,
                         int timeout_ms);

/* Reads events until the last expected id and fails unless the ids seen are exactly
 * expected[0..n), in that order. n must be > 0. */
void frames_expect_ids(struct sse_client *c, const long long *expected, size_t n,
                       int timeout_ms);

/* Fails unless ids[0..n) are exactly 1..last, in order: what the connections of one client
 * (label, for the message) received in all, on a fresh database, nothing lost or repeated
 * across a resume. */
void frames_expect_one_to(const long long *ids, size_t n, long long last, const char *label);

/* Reads the next event and fails unless it is the retention notice of SPEC §4.3: no id,
 * `event: gap`, data {"requested": requested, "resumed_from": resumed_from}. */
void frames_expect_gap(struct sse_client *c, long long requested, long long resumed_from,
                       int timeout_ms);

/* Opens GET path with headers (NULL-terminated or NULL), fails unless the status is 200,
 * and reads the opening block, which must carry "retry:" (SPEC §4.1). */
void frames_open_stream(struct sse_client *c, int port, const char *path,
                        const char *const *headers);

/* The second half of frames_open_stream, for a request sent with sse_client_send (or
 * sse_client_send_rcvbuf): waits up to timeout_ms for the head, fails unless the status is
 * 200, and reads the opening block, which must carry "retry:". */
void frames_wait_stream(struct sse_client *c, int timeout_ms);

/* Reads events until the body ends (within timeout_ms in all), appending their ids to
 * ids from ids[n] on (at most cap in all; more fail the test). Every frame must be
 * well-formed; comment blocks may come between them. Fails unless the body ends. Returns
 * the new count. */
size_t frames_read_to_end(struct sse_client *c, long long *ids, size_t n, size_t cap,
                          int timeout_ms);

/* Reads the first block of a 200 response (5 s deadline) and tells whether it is a soft
 * refusal (SPEC §4.12: "retry:", a comment "sse-fcgi unavailable: ..."), copying the
 * comment (without that prefix) into reason and the retry into *retry_ms when it is. */
bool frames_read_refusal(struct sse_client *c, char *reason, size_t size, long *retry_ms);

/* Fails the test unless the response is a soft refusal whose reason contains
 * reason_part, with an "id: <cursor>" line when cursor >= 0 (none when it is -1), and its
 * body then ends. */
void frames_expect_refusal(struct sse_client *c, const char *reason_part, long long cursor);

/* Opens path resuming after last_id (Last-Event-ID), retrying as EventSource does while
 * the web server cannot serve it yet (503, no backend, or a soft refusal, after whose
 * retry: it comes back), for up to timeout_ms; fails unless it gets a stream. The opening
 * block is read. Returns the ms it took. */
long frames_resume(struct sse_client *c, int port, const char *path, long long last_id,
                   int timeout_ms);

/* Resumes path after last_id (Last-Event-ID) as an EventSource does while a front end
 * answers for a backend that is away: each soft refusal of the front end's own script
 * (retry: retry_ms, the cursor in id:) is checked in full (frames_expect_soft_refusal) and
 * followed by a new try, until a stream answers with its first event, which must come
 * within timeout_ms. The events are left unread for frames_expect_ids. Returns how many
 * soft refusals came first. */
int frames_resume_through_refusals(struct sse_client *c, int port, const char *path,
                                   long long last_id, long retry_ms, int timeout_ms);

/* Fails unless c got a soft refusal (SPEC §4.12), as the responder or a front end's
 * soft-refusal script sends it: 200 text/event-stream, one block of retry: retry_ms, an id:
 * line equal to cursor (none when cursor is NULL), one comment and no data, then the end of
 * the body. */
void frames_expect_soft_refusal(struct sse_client *c, long retry_ms, const char *cursor);

/* Fails the test when the decoded body holds a CR or a NUL byte (SPEC §4.6). */
void frames_expect_clean_body(const struct sse_client *c);

#endif
