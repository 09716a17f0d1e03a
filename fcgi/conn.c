/*
 * conn.c - a request's parameters and its non-blocking response (see conn.h).
 */
#include "conn.h"

#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../store/store.h"

enum {
    STDIN_DRAIN_MAX = 64 * 1024,      /* request body bytes read before streaming */
    /* A safety net only: a stream stops appending once STREAM_OUTPUT_MARK bytes wait, and
     * a frame of 64 KiB or more is shared, not copied (conn_append_shared), so what this
     * conn owns is at most that mark plus one smaller frame and its head. */
    CONN_OUTPUT_MAX = 4 * 1024 * 1024,
    CONN_IOV_MAX = 64,                /* pieces per writev */
};

/* A part of the waiting output, in order: `len` bytes of c->out (row NULL), or `len` bytes
 * at `bytes` of a shared row's frame, for which the piece holds a reference. */
struct conn_piece {
    struct store_row *row;
    const char *bytes;
    size_t len;
};

/* Queues a piece; an owned one joins the owned piece before it. */
static int
push_piece(struct conn *c, struct store_row *row, const char *bytes, size_t len)
{
    c->waiting += len;
    if (row == NULL && c->piece_count > c->piece_head
        && c->pieces[c->piece_count - 1].row == NULL) {
        c->pieces[c->piece_count - 1].len += len;
        return 0;
    }
    if (c->piece_head > 0 && c->piece_count == c->piece_cap) {
        memmove(c->pieces, c->pieces + c->piece_head,
                (c->piece_count - c->piece_head) * sizeof(*c->pieces));
        c->piece_count -= c->piece_head;
        c->piece_head = 0;
    }
    if (c->piece_count == c->piece_cap) {
        size_t cap = c->piece_cap ? 2 * c->piece_cap : 8;
        struct conn_piece *grown = realloc(c->pieces, cap * sizeof(*grown));
        if (grown == NULL) {
            c->waiting -= len;
            return -1;
        }
        c->pieces = grown;
        c->piece_cap = cap;
    }
    c->pieces[c->piece_count++] = (struct conn_piece){row, bytes, len};
    return 0;
}

/* Drops n written bytes from the front of the output. */
static void
consume(struct conn *c, size_t n)
{
    c->waiting -= n;
    while (n > 0 && c->piece_head < c->piece_count) {
        struct conn_piece *piece = &c->pieces[c->piece_head];
        size_t take = n < piece->len ? n : piece->len;
        if (piece->row == NULL)
            fcgi_pending_advance(&c->out, take);
        else
            piece->bytes += take;
        piece->len -= take;
        n -= take;
        if (piece->len == 0) {
            store_row_unref(piece->row);
            c->piece_head++;
        }
    }
    if (c->piece_head == c->piece_count)
        c->piece_head = c->piece_count = 0;
}

struct conn *
conn_open(int fd, bool is_fastcgi, uint16_t request_id)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->fd = fd;
    c->is_fastcgi = is_fastcgi;
    c->request_id = request_id;
    c->io.fd = fd;
    fcgi_pending_init(&c->out, CONN_OUTPUT_MAX);
    return c;
}

/* Reads the request body to EOF, so that anything the socket says later can only mean the
 * request is over (DEPLOY-NOTES Q4). */
static void
drain_stdin(FCGX_Request *req)
{
    char chunk[4096];
    int n, total = 0;
    while (total < STDIN_DRAIN_MAX && (n = FCGX_GetStr(chunk, sizeof(chunk), req->in)) > 0)
        total += n;
}

/* The parameters of req, copied into one block: the pointers, then the strings. */
static char **
copy_params(char **envp)
{
    size_t count = 0, bytes = 0;
    for (char **p = envp; p != NULL && *p != NULL; p++, count++)
        bytes += strlen(*p) + 1;
    char **copy = malloc((count + 1) * sizeof(*copy) + bytes);
    if (copy == NULL)
        return NULL;
    char *at = (char *)(copy + count + 1);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(envp[i]) + 1;
        memcpy(at, envp[i], len);
        copy[i] = at;
        at += len;
    }
    copy[count] = NULL;
    return copy;
}

struct conn *
conn_accept_fastcgi(int *rc)
{
    static FCGX_Request accepting;  /* reused: its buffers are freed after each accept */
    static bool is_initialised;
    FCGX_Request *req = &accepting;
    if (!is_initialised) {
        FCGX_InitRequest(req, 0, 0);
        is_initialised = true;
    }
    *rc = FCGX_Accept_r(req);
    if (*rc < 0)
        return NULL;
    drain_stdin(req);
    struct conn *c = conn_open(req->ipcFd, true, (uint16_t)req->requestId);
    char **params = c != NULL ? copy_params(req->envp) : NULL;
    if (params == NULL) {
        free(c);
        FCGX_PutS("Status: 503 Service Unavailable\r\nRetry-After: 2\r\n"
                  "Content-Type: application/json\r\n\r\n{\"error\": \"out of memory\"}\n",
                  req->out);
        FCGX_Finish_r(req);
        *rc = -ENOMEM;
        return NULL;
    }
    c->envp = params;
    /* The socket is ours now: FCGX_Free with close 0 frees libfcgi's buffers and
     * parameters, and the next FCGX_Accept_r finds no descriptor to finish or close. */
    req->ipcFd = -1;
    FCGX_Free(req, 0);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    fcntl(c->fd, F_SETFD, FD_CLOEXEC);
    return c;
}

struct conn *
conn_cgi(void)
{
    struct conn *c = conn_open(STDOUT_FILENO, false, 0);
    if (c != NULL)
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    return c;
}

const char *
conn_param(const struct conn *c, const char *name)
{
    if (c->envp == NULL)
        return getenv(name);
    size_t len = strlen(name);
    for (char **p = c->envp; *p != NULL; p++) {
        if (strncmp(*p, name, len) == 0 && (*p)[len] == '=')
            return *p + len + 1;
    }
    return NULL;
}

/* Appends owned bytes through append (records or raw) and queues them. */
static int
append_owned(struct conn *c, int rc, size_t before)
{
    size_t added = fcgi_pending_len(&c->out) - before;
    if (rc < 0 || (added > 0 && push_piece(c, NULL, NULL, added) < 0)) {
        c->is_broken = true;
        return -1;
    }
    return 0;
}

int
conn_append(struct conn *c, const void *bytes, size_t len)
{
    if (len == 0 || c->is_ended)
        return 0;
    size_t before = fcgi_pending_len(&c->out);
    return append_owned(c, c->is_fastcgi ? fcgi_pending_stdout(&c->out, c->request_id, bytes, len)
                                         : fcgi_pending_raw(&c->out, bytes, len), before);
}

int
conn_append_shared(struct conn *c, struct store_row *row, const char *bytes, size_t len)
{
    while (len > 0 && !c->is_ended && !c->is_broken) {
        /* a multiple of 8 below 65535: no padding but after the last record */
        size_t n = len < CONN_SHARED_RECORD ? len : CONN_SHARED_RECORD;
        size_t before = fcgi_pending_len(&c->out);
        if (c->is_fastcgi
            && append_owned(c, fcgi_pending_stdout_head(&c->out, c->request_id, n), before) < 0)
            return -1;
        if (push_piece(c, store_row_ref(row), bytes, n) < 0) {
            store_row_unref(row);
            c->is_broken = true;
            return -1;
        }
        before = fcgi_pending_len(&c->out);
        if (c->is_fastcgi && append_owned(c, fcgi_pending_stdout_tail(&c->out, n), before) < 0)
            return -1;
        bytes += n;
        len -= n;
    }
    return c->is_broken ? -1 : 0;
}

void
conn_end(struct conn *c)
{
    if (c->is_ended)
        return;
    size_t before = fcgi_pending_len(&c->out);
    if (c->is_fastcgi)
        append_owned(c, fcgi_pending_end(&c->out, c->request_id, 0), before);
    c->is_ended = true;
}

size_t
conn_waiting(const struct conn *c)
{
    return c->waiting;
}

/* Writes as many pieces as one writev takes. Returns the bytes written, or -1 with errno. */
static ssize_t
write_pieces(struct conn *c)
{
    struct iovec iov[CONN_IOV_MAX];
    int count = 0;
    size_t owned_len;
    const char *owned = fcgi_pending_data(&c->out, &owned_len);
    for (size_t i = c->piece_head; i < c->piece_count && count < CONN_IOV_MAX; i++) {
        const struct conn_piece *piece = &c->pieces[i];
        if (piece->row != NULL) {
            iov[count++] = (struct iovec){(void *)piece->bytes, piece->len};
        } else {
            iov[count++] = (struct iovec){(void *)owned, piece->len};
            owned += piece->len;
        }
    }
    if (!c->is_fastcgi)
        return writev(c->fd, iov, count);
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)count};
    return sendmsg(c->fd, &msg, MSG_NOSIGNAL);
}

int
conn_flush(struct conn *c, int64_t now_ms)
{
    if (c->is_broken)
        return -1;
    if (!c->has_waited)
        c->last_progress_ms = now_ms;  /* the stall, if any, starts with this write */
    while (c->waiting > 0) {
        ssize_t n = write_pieces(c);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->has_waited = true;
            return 1;
        }
        if (n <= 0) {
            c->is_broken = true;
            return -1;
        }
        consume(c, (size_t)n);
        c->last_progress_ms = now_ms;
    }
    /* All written: an idle conn keeps no buffer (issue 13: memory per stream; glibc's
     * tcache makes the next round's small allocations cheap). */
    c->has_waited = false;
    fcgi_pending_release(&c->out);
    free(c->pieces);
    c->pieces = NULL;
    c->piece_cap = 0;
    return 0;
}

bool
conn_peer_left(const struct conn *c)
{
    char byte;
    ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void
conn_free(struct conn *c)
{
    if (c == NULL)
        return;
    if (c->is_fastcgi) {
        shutdown(c->fd, SHUT_WR);
        char trash[512];
        for (int i = 0; i < 8 && recv(c->fd, trash, sizeof(trash), MSG_DONTWAIT) > 0; i++) {
        }
        close(c->fd);
    } else {
        close(c->fd);  /* CGI's stdout: the web server sees the response end */
    }
    for (size_t i = c->piece_head; i < c->piece_count; i++)
        store_row_unref(c->pieces[i].row);
    free(c->pieces);
    fcgi_pending_release(&c->out);
    free(c->envp);
    free(c);
}
