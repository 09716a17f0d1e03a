/*
 * sse_client.h - an HTTP/1.1 client for Server-Sent Events over a real TCP socket.
 *
 * It sends one GET (or any method) to 127.0.0.1:<port>, parses the status line and headers,
 * decodes chunked transfer encoding (or Content-Length, or read-to-EOF) and splits the body
 * into SSE blocks: the lines up to a blank line, with id, event, retry, data (joined by "\n")
 * and comments. Every read has a deadline (poll); the functions named _expect fail the test
 * on a timeout and print the bytes received. Every byte received stays in raw for the test to
 * inspect; the decoded body is kept whole too. Not thread-safe (one test, one process).
 */
#ifndef SSE_TEST_SSE_CLIENT_H
#define SSE_TEST_SSE_CLIENT_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    SSE_CLIENT_HEAD_MAX = 8192,     /* status line and headers */
    SSE_CLIENT_FIELD_MAX = 512,     /* id, event and comment values kept per block */
};

struct sse_client {
    int fd;                             /* the socket; -1 once closed */
    char request[256];                  /* "GET /path" for messages */
    bool is_head_method;                /* a HEAD request: no body */
    char *raw;                          /* every byte received; owned */
    size_t raw_len, raw_cap, raw_pos;   /* raw_pos: decoded up to here */
    int status;                         /* HTTP status; 0 until the head arrived */
    char head[SSE_CLIENT_HEAD_MAX];     /* status line and headers, NUL-terminated */
    int body_state;                     /* decoder state (sse_client.c) */
    size_t chunk_left;                  /* bytes left in this chunk / Content-Length */
    char *body;                         /* decoded body, NUL-terminated; owned */
    size_t body_len, body_cap, body_pos; /* body_pos: parsed into blocks up to here */
    size_t line_pos, scan_pos;          /* the block from body_pos is whole lines up to
                                         * line_pos, then one without its end up to
                                         * scan_pos (0: not scanned yet) */
    bool is_eof;                        /* the peer closed */
    bool is_body_done;                  /* last chunk, Content-Length reached, or EOF */
    const char *framing_error;          /* bad chunked encoding; NULL when fine */
};

struct sse_frame {
    bool has_id;
    char id[SSE_CLIENT_FIELD_MAX];
    bool has_event;
    char event[SSE_CLIENT_FIELD_MAX];
    bool has_retry;
    long retry_ms;
    char *data;                         /* data lines joined by "\n"; NULL when none; owned */
    size_t data_lines;
    char comment[SSE_CLIENT_FIELD_MAX]; /* the last comment line, without ':' and one space */
    size_t comment_lines;
    size_t other_lines;                 /* lines with any other field name */
};

/* Connects, sends "<method> <path> HTTP/1.1" with Host, the given extra header lines
 * ("Name: value", NULL-terminated list or NULL) and, unless they hold an Accept line,
 * EventSource's "Accept: text/event-stream"; waits up to 5 s for the response head.
 * Fails the test on any error. */
void sse_client_open(struct sse_client *c, int port, const char *method, const char *path,
                     const char *const *headers);

/* sse_client_open with a request body (NULL: none; sent with its Content-Length) and the
 * time the response head may take (the WebDriver client's commands). */
void sse_client_request(struct sse_client *c, int port, const char *method, const char *path,
                        const char *const *headers, const char *body, int head_timeout_ms);

/* The two halves of sse_client_open, for a request that must be pending while the test
 * does something else (a backend restart): sse_client_send connects and sends the request
 * and returns at once; sse_client_wait_head then waits up to timeout_ms for the head and
 * fails the test when none comes. */
void sse_client_send(struct sse_client *c, int port, const char *method, const char *path,
                     const char *const *headers);
/* sse_client_send of a GET with SO_RCVBUF set to rcvbuf bytes before the connect (the
 * kernel doubles it), so that a client that stops reading stalls the server's writes soon
 * (loopback would buffer megabytes) and is a full client again once it reads on. */
void sse_client_send_rcvbuf(struct sse_client *c, int port, const char *path,
                            const char *const *headers, int rcvbuf);
void sse_client_wait_head(struct sse_client *c, int timeout_ms);

/* Takes what the socket of c holds now, without waiting. Returns true when any bytes or the
 * end of the connection arrived (then decoded as usual), false when nothing had come. */
bool sse_client_has_bytes(struct sse_client *c);

/* A bare client: connects, sends "GET path" and returns the socket without reading
 * anything (the caller reads, or never does). rcvbuf > 0 sets SO_RCVBUF first. */
int sse_client_send_get(int port, const char *path, int rcvbuf);

/* The HTTP status a client that does not ask for SSE gets (a bare GET, no Accept header),
 * read within timeout_ms; fails the test when no status line comes. */
int sse_client_plain_status(int port, const char *path, int timeout_ms);

/* GETs path with headers (as sse_client_open) and returns its body parsed as JSON (the
 * caller cJSON_Deletes it); fails the test unless the status is 200 and the body, read within
 * 5 s, is a JSON object (/api/health). */
cJSON *sse_client_get_json(int port, const char *path, const char *const *headers);

/* Closes the socket and frees the buffers. Accepts a closed client. */
void sse_client_close(struct sse_client *c);

/* Copies the value of header name (case-insensitive) into out. Returns out, or NULL when
 * the response has no such header. */
const char *sse_client_header(const struct sse_client *c, const char *name, char *out,
                              size_t size);

enum sse_client_result { SSE_CLIENT_BLOCK = 0, SSE_CLIENT_END = 1, SSE_CLIENT_TIMEOUT = -1 };

/* Reads the next block (any block: comments and retry too) within timeout_ms. Returns
 * SSE_CLIENT_BLOCK and fills f (release with sse_frame_release), SSE_CLIENT_END when the body
 * ended with no further complete block, or SSE_CLIENT_TIMEOUT. */
enum sse_client_result sse_client_next(struct sse_client *c, struct sse_frame *f,
                                       int timeout_ms);

/* Like sse_client_next but fails the test on a timeout or an end of body. */
void sse_client_expect_block(struct sse_client *c, struct sse_frame *f, int timeout_ms);

/* Next block that has data (skips comment and retry blocks); fails on timeout or end. */
void sse_client_expect_event(struct sse_client *c, struct sse_frame *f, int timeout_ms);

/* Waits up to timeout_ms for the end of the body; comment-only blocks are allowed before
 * it, an event is a failure. */
void sse_client_expect_end(struct sse_client *c, int timeout_ms);

/* Waits up to timeout_ms until the decoded body, from offset on, contains needle; fails the
 * test otherwise. Returns the ms waited. Blocks are still parsed from where they were. */
long sse_client_expect_bytes(struct sse_client *c, const char *needle, size_t offset,
                             int timeout_ms);

/* Reads the whole body (error responses) within timeout_ms; it is then c->body. */
void sse_client_read_body(struct sse_client *c, int timeout_ms);

/* Prints the request and the bytes received (tail) to stderr. */
void sse_client_dump(const struct sse_client *c);

/* Frees f's data. Accepts a zeroed frame. */
void sse_frame_release(struct sse_frame *f);

/* Parses f's data as JSON. Returns the tree (owned by the caller, cJSON_Delete) or NULL
 * when there is no data or it is not JSON. */
cJSON *sse_frame_json(const struct sse_frame *f);

/* f's id as a number; fails the test when f has no decimal id. */
long long sse_frame_id(const struct sse_frame *f);

#endif
