/*
 * stream.h - a request's event stream: headers, replay or resume, live, keepalive, end.
 *
 * request.c hands a request to stream_serve once its route says it streams; while it is
 * live, its socket and timer events come here. Memory per stream is bounded: one batch of
 * at most STREAM_BATCH_ROWS rows and about STREAM_BATCH_BYTES bytes (plus the row that
 * crosses that line), whose rows it shares with the hub when the hub's memory serves them;
 * one frame at a time built for a row the hub did not frame; and its output waiting for the
 * socket, which it stops adding to once STREAM_OUTPUT_MARK bytes wait (so at most that plus
 * one frame, and a frame of STREAM_FLUSH_BYTES or more is the hub's, shared, not copied).
 * A stream over the mark reads no rows until the socket drains; then it goes on from its
 * cursor, from the hub's memory or the database: a slow client loses nothing (unless
 * SSE_MAX_LAG sheds, SPEC §4.8) and delays nobody. One whose socket takes nothing for
 * SSE_SLOW_CLIENT_S (default 30) while output waits ends with reason=slow_client; it
 * resumes exactly with Last-Event-ID.
 */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

#include <stdint.h>

enum {
    STREAM_BATCH_ROWS = 256,
    STREAM_BATCH_BYTES = 256 * 1024,
    /* Output waiting for the socket past which a stream reads no more rows. */
    STREAM_OUTPUT_MARK = 256 * 1024,
    STREAM_FLUSH_BYTES = 64 * 1024,
    /* What r->out may hold: it is handed to the conn once it holds STREAM_FLUSH_BYTES, and a
     * frame that goes into it is smaller than that, with its head (an event: line of a
     * 128-byte type, sanitized). A frame of STREAM_FLUSH_BYTES or more goes to the conn
     * from where it lies. */
    STREAM_OUT_MAX = 2 * STREAM_FLUSH_BYTES + 1024,
};

struct request;

/* Opens the store, checks the session and access, reads the first rows, then answers: the
 * stream (r becomes REQUEST_LIVE), or 204, HEAD's head or an error (r stays answering). */
void stream_serve(struct request *r);

/* A live stream's socket events and its timer. */
void stream_on_io(struct request *r, uint32_t events);
void stream_on_timer(struct request *r);

/* A live stream's earliest deadline: keepalive, probe, SSE_MAX_STREAM_S, slow client. */
int64_t stream_next_due(const struct request *r);

/* The client left, or a write failed. */
void stream_client_gone(struct request *r);

/* Ends a live stream with reason=shutdown (SPEC §4.11). */
void stream_end_for_shutdown(struct request *r);

/* Gives back what the stream holds: its subscription, filter, policy, batch, connection. */
void stream_release(struct request *r);

#endif
