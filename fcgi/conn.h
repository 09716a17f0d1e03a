/*
 * conn.h - the transport of one request: its parameters, and its response written to a
 * non-blocking descriptor (FastCGI records on the web server's socket, or bare bytes on
 * plain CGI's stdout).
 *
 * A FastCGI request is accepted and its head read by libfcgi, in the accepting thread
 * (conn_accept_fastcgi): FCGX_Accept_r, the parameters and the request body. Its
 * parameters are then copied into one block the conn owns, the socket taken from libfcgi
 * and the FCGX_Request freed, so that an open stream holds a descriptor, its parameters
 * and its output and nothing of libfcgi's (whose request holds 17 KiB of stream buffers).
 * From then on the loop's thread owns the conn and writes the records itself (fcgi_out.h):
 * libfcgi's writers block until the socket took everything, and one client that does not
 * read would then stall every stream of the process.
 *
 * Output is appended without a system call (conn_append) and written by conn_flush, so the
 * frames of one round go out in one write (writev of the owned bytes and of the shared
 * frames, which are never copied). What the descriptor has not taken waits in the
 * conn; a caller checks conn_waiting against its own mark before it appends more (the
 * stream stops reading rows while it is over it: backpressure).
 */
#ifndef SSE_CONN_H
#define SSE_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fcgi_out.h"
#include "loop.h"

struct store_row;
struct conn_piece;

enum {
    /* Content of one record of a shared frame: the largest multiple of 8 that fits, so only
     * a frame's last record needs padding. */
    CONN_SHARED_RECORD = 65528,
};

struct conn {
    int fd;                          /* the request's socket (owned), or stdout (CGI) */
    bool is_fastcgi;
    uint16_t request_id;             /* FastCGI */
    char **envp;                     /* FastCGI parameters "NAME=value", NULL-terminated, in
                                      * one owned block; NULL for CGI (the environment) */
    struct fcgi_pending out;         /* owned bytes (records, or CGI's bare bytes) not yet
                                      * written */
    struct conn_piece *pieces;       /* what waits, in order: owned bytes and shared frames */
    size_t piece_head, piece_count, piece_cap;
    size_t waiting;                  /* bytes of all pieces */
    bool is_ended;                   /* END_REQUEST appended */
    bool is_broken;                  /* a write failed: the peer is gone */
    bool has_waited;                 /* the last conn_flush left output waiting */
    int64_t last_progress_ms;        /* while output waits: when the descriptor last took a
                                      * byte, or when the waiting began */
    struct loop_io io;               /* the loop's handle on fd; its owner sets on_event */
    void *owner;                     /* the request served on it (fcgi/stream.c) */
    struct loop_task handoff;        /* the accepting thread's post of a new conn */
};

/* Accepts the next FastCGI request with libfcgi (blocking) and reads its head and body:
 * returns a conn that owns the socket and a copy of the parameters. NULL with *rc: -errno
 * of a failed accept (the caller stops), or -ENOMEM (the request was answered 503 and
 * closed). One thread only (the accepting one): libfcgi's request object is this file's. */
struct conn *conn_accept_fastcgi(int *rc);

/* A conn that writes to fd (FastCGI records of request_id, or bare bytes), with no
 * parameters; conn_free closes fd. NULL when out of memory. */
struct conn *conn_open(int fd, bool is_fastcgi, uint16_t request_id);

/* The conn of plain CGI's one request: stdout, parameters from the environment. */
struct conn *conn_cgi(void);

/* A parameter of the request, or NULL. Borrowed until conn_free. */
const char *conn_param(const struct conn *c, const char *name);

/* Appends len bytes of response (STDOUT content). No system call. Returns 0, or -1 when out
 * of memory or past the hard limit (the conn then counts as broken). */
int conn_append(struct conn *c, const void *bytes, size_t len);

/* Appends len bytes of row's frame (bytes points into it) without copying them: the conn
 * holds a reference to row until they are written. The records' headers are the conn's
 * own. Returns as conn_append. This is how a large frame goes to many streams at the cost
 * of one (hub.h: the hub frames each row once). */
int conn_append_shared(struct conn *c, struct store_row *row, const char *bytes, size_t len);

/* Appends the end of the response (FastCGI: empty STDOUT and END_REQUEST). Idempotent. */
void conn_end(struct conn *c);

/* Writes what the descriptor takes now. Returns 0 when nothing waits any more, 1 when some
 * still waits (the descriptor is full: wait for EPOLLOUT), -1 when the peer is gone. */
int conn_flush(struct conn *c, int64_t now_ms);

/* Bytes appended that the descriptor has not taken yet. */
size_t conn_waiting(const struct conn *c);

/* True when the web server has given up on the request: EOF on its socket, or anything
 * sent after the request body (FCGI_ABORT_REQUEST). FastCGI only; CGI learns it from
 * EPOLLERR/EPOLLHUP (DEPLOY-NOTES Q4, Q9). */
bool conn_peer_left(const struct conn *c);

/* Closes the descriptor (FastCGI: shuts the sending side first, so that a peer on TCP reads
 * the end of the response before the close) and frees everything. NULL is safe. */
void conn_free(struct conn *c);

#endif
