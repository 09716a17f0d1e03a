/*
 * sse_client.c - HTTP/1.1 + chunked + SSE parsing over a socket (see sse_client.h).
 *
 * Bytes flow raw -> (head parser, body decoder) -> body -> (block parser) -> frames. Each
 * stage keeps a position, so data is parsed once however it is split across reads. Line ends
 * are LF, CRLF or a lone CR as WHATWG says, so a stray CR shows as a broken frame instead of
 * being hidden. The head must end within SSE_CLIENT_HEAD_MAX bytes.
 */
#include "tests/lib/sse_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/testenv.h"

enum body_state { BODY_HEAD, BODY_CHUNK_SIZE, BODY_CHUNK_DATA, BODY_CHUNK_END,
                  BODY_TRAILER, BODY_LENGTH, BODY_TO_EOF, BODY_DONE };

enum { READ_BYTES = 65536, HEAD_TIMEOUT_MS = 5000, DUMP_BYTES = 8192 };

static void
grow(char **bytes, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t cap_new = *cap ? *cap : 65536;
    while (cap_new < need)
        cap_new *= 2;
    char *p = realloc(*bytes, cap_new);
    DIAG_CHECK(p != NULL, "out of memory (%zu bytes)", cap_new);
    *bytes = p;
    *cap = cap_new;
}

static void
append_body(struct sse_client *c, const char *bytes, size_t len)
{
    grow(&c->body, &c->body_cap, c->body_len + len + 1);
    memcpy(c->body + c->body_len, bytes, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
}

/* Position of the first "\r\n" at or after from in raw, or NULL. */
static const char *
find_crlf(const struct sse_client *c, size_t from)
{
    for (size_t i = from; i + 1 < c->raw_len; i++) {
        if (c->raw[i] == '\r' && c->raw[i + 1] == '\n')
            return c->raw + i;
    }
    return NULL;
}

static void
choose_body_mode(struct sse_client *c)
{
    char value[64];
    if (c->is_head_method || c->status == 204 || c->status == 304) {
        c->body_state = BODY_DONE;
    } else if (sse_client_header(c, "Transfer-Encoding", value, sizeof(value))
               && strcasecmp(value, "chunked") == 0) {
        c->body_state = BODY_CHUNK_SIZE;
    } else if (sse_client_header(c, "Content-Length", value, sizeof(value))) {
        c->chunk_left = (size_t)strtoull(value, NULL, 10);
        c->body_state = c->chunk_left > 0 ? BODY_LENGTH : BODY_DONE;
    } else {
        c->body_state = BODY_TO_EOF;
    }
}

/* Parses the head once "\r\n\r\n" is in raw. Returns true when it was. */
static bool
decode_head(struct sse_client *c)
{
    const char *end = NULL;
    for (size_t i = 0; i + 3 < c->raw_len && end == NULL; i++) {
        if (memcmp(c->raw + i, "\r\n\r\n", 4) == 0)
            end = c->raw + i;
    }
    if (end == NULL) {
        DIAG_CHECK(c->raw_len < SSE_CLIENT_HEAD_MAX, "%s: response head too long",
                   c->request);
        return false;
    }
    size_t len = (size_t)(end - c->raw) + 2;
    DIAG_CHECK(len < sizeof(c->head), "%s: response head too long", c->request);
    memcpy(c->head, c->raw, len);
    c->head[len] = '\0';
    c->raw_pos = len + 2;
    DIAG_CHECK(sscanf(c->head, "HTTP/1.%*d %d", &c->status) == 1, "%s: bad status line: %s",
               c->request, c->head);
    choose_body_mode(c);
    return true;
}

/* One step of chunked decoding. Returns true when it made progress. */
static bool
decode_chunked(struct sse_client *c)
{
    size_t avail = c->raw_len - c->raw_pos;
    const char *crlf;
    switch (c->body_state) {
    case BODY_CHUNK_SIZE: {
        if ((crlf = find_crlf(c, c->raw_pos)) == NULL)
            return false;
        char *end = NULL;
        c->chunk_left = (size_t)strtoull(c->raw + c->raw_pos, &end, 16);
        if (end == c->raw + c->raw_pos)
            c->framing_error = "chunk size line is not hex";
        c->raw_pos = (size_t)(crlf - c->raw) + 2;
        c->body_state = c->chunk_left > 0 ? BODY_CHUNK_DATA : BODY_TRAILER;
        return c->framing_error == NULL;
    }
    case BODY_CHUNK_DATA: {
        size_t n = avail < c->chunk_left ? avail : c->chunk_left;
        append_body(c, c->raw + c->raw_pos, n);
        c->raw_pos += n;
        c->chunk_left -= n;
        c->body_state = c->chunk_left == 0 ? BODY_CHUNK_END : BODY_CHUNK_DATA;
        return n > 0;
    }
    case BODY_CHUNK_END:
        if (avail < 2)
            return false;
        if (memcmp(c->raw + c->raw_pos, "\r\n", 2) != 0)
            c->framing_error = "chunk data not followed by CRLF";
        c->raw_pos += 2;
        c->body_state = BODY_CHUNK_SIZE;
        return c->framing_error == NULL;
    default:  /* BODY_TRAILER: lines up to an empty one */
        if ((crlf = find_crlf(c, c->raw_pos)) == NULL)
            return false;
        c->body_state = crlf == c->raw + c->raw_pos ? BODY_DONE : BODY_TRAILER;
        c->raw_pos = (size_t)(crlf - c->raw) + 2;
        return true;
    }
}

/* Decodes everything raw holds so far. */
static void
decode(struct sse_client *c)
{
    if (c->body_state == BODY_HEAD && !decode_head(c))
        return;
    size_t avail;
    while (c->framing_error == NULL && c->body_state != BODY_DONE) {
        avail = c->raw_len - c->raw_pos;
        if (c->body_state == BODY_LENGTH || c->body_state == BODY_TO_EOF) {
            size_t n = c->body_state == BODY_LENGTH && avail > c->chunk_left ? c->chunk_left
                                                                            : avail;
            append_body(c, c->raw + c->raw_pos, n);
            c->raw_pos += n;
            c->chunk_left -= c->body_state == BODY_LENGTH ? n : 0;
            if (c->body_state == BODY_LENGTH && c->chunk_left == 0)
                c->body_state = BODY_DONE;
            break;
        }
        if (!decode_chunked(c))
            break;
    }
    c->is_body_done = c->body_state == BODY_DONE || (c->is_eof && c->body_state != BODY_HEAD);
    DIAG_CHECK(c->framing_error == NULL, "%s: bad chunked encoding: %s", c->request,
               c->framing_error);
}

/* Receives once, waiting until deadline_ms. Returns 1 on bytes, 0 on EOF, -1 on timeout. */
static int
receive(struct sse_client *c, int64_t deadline_ms)
{
    int64_t left_ms = deadline_ms - testenv_now_ms();
    if (c->is_eof)
        return 0;
    if (left_ms < 0)
        left_ms = 0;  /* past the deadline: still take what is already there */
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int rc = poll(&p, 1, (int)left_ms);
    if (rc == 0 || (rc < 0 && errno == EINTR))
        return -1;
    DIAG_CHECK(rc > 0, "%s: poll: %s", c->request, strerror(errno));
    grow(&c->raw, &c->raw_cap, c->raw_len + READ_BYTES + 1);
    ssize_t n = recv(c->fd, c->raw + c->raw_len, READ_BYTES, 0);
    if (n <= 0) {
        c->is_eof = true;  /* EOF or reset: either way nothing more comes */
        decode(c);
        return 0;
    }
    c->raw_len += (size_t)n;
    c->raw[c->raw_len] = '\0';
    decode(c);
    return 1;
}

static void
dump_hook(void *ctx)
{
    sse_client_dump(ctx);
}

static void
send_all(struct sse_client *c, const char *bytes, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, bytes, len, MSG_NOSIGNAL);
        DIAG_CHECK(n > 0, "%s: send: %s", c->request, strerror(errno));
        bytes += n;
        len -= (size_t)n;
    }
}

static void
send_request(struct sse_client *c, int port, const char *method, const char *path,
             const char *const *headers, const char *body)
{
    char request[8192];
    bool has_accept = false;
    int len = snprintf(request, sizeof(request), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n",
                       method, path, port);
    for (size_t i = 0; headers && headers[i] && len < (int)sizeof(request); i++) {
        len += snprintf(request + len, sizeof(request) - (size_t)len, "%s\r\n", headers[i]);
        has_accept = has_accept || strncasecmp(headers[i], "Accept:", 7) == 0;
    }
    /* What EventSource sends, unless the test plays another client (curl: Accept: any) */
    if (!has_accept && len < (int)sizeof(request))
        len += snprintf(request + len, sizeof(request) - (size_t)len,
                        "Accept: text/event-stream\r\n");
    if (body != NULL && len < (int)sizeof(request))
        len += snprintf(request + len, sizeof(request) - (size_t)len,
                        "Content-Length: %zu\r\n", strlen(body));
    if (len < (int)sizeof(request))
        len += snprintf(request + len, sizeof(request) - (size_t)len, "\r\n");
    DIAG_CHECK(len < (int)sizeof(request), "%s: request too long", c->request);
    send_all(c, request, (size_t)len);
    if (body != NULL)
        send_all(c, body, strlen(body));
}

/* Connects and sends the request (with body when not NULL); the head is read later.
 * rcvbuf > 0 sets SO_RCVBUF first. */
static void
connect_and_send(struct sse_client *c, int port, const char *method, const char *path,
                 const char *const *headers, const char *body, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->request, sizeof(c->request), "%s %.200s", method, path);
    c->is_head_method = strcmp(method, "HEAD") == 0;
    /* CLOEXEC: a producer or server started later must not inherit the socket and keep
     * the connection open after close() (the soak found streams outliving their client) */
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    DIAG_CHECK(c->fd >= 0, "socket: %s", strerror(errno));
    diag_register(c, dump_hook, NULL);
    if (rcvbuf > 0)
        DIAG_CHECK(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0,
                   "%s: SO_RCVBUF: %s", c->request, strerror(errno));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    DIAG_CHECK(connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0,
               "%s: connect to 127.0.0.1:%d: %s", c->request, port, strerror(errno));
    send_request(c, port, method, path, headers, body);
}

void
sse_client_send(struct sse_client *c, int port, const char *method, const char *path,
                const char *const *headers)
{
    connect_and_send(c, port, method, path, headers, NULL, 0);
}

void
sse_client_send_rcvbuf(struct sse_client *c, int port, const char *path,
                       const char *const *headers, int rcvbuf)
{
    connect_and_send(c, port, "GET", path, headers, NULL, rcvbuf);
}

bool
sse_client_has_bytes(struct sse_client *c)
{
    return receive(c, testenv_now_ms()) >= 0;
}

void
sse_client_wait_head(struct sse_client *c, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    while (c->status == 0) {
        int rc = receive(c, deadline);
        DIAG_CHECK(rc > 0 || c->status != 0, "%s: no response head within %d ms (%s)",
                   c->request, timeout_ms, rc == 0 ? "connection closed" : "timeout");
    }
}

void
sse_client_request(struct sse_client *c, int port, const char *method, const char *path,
                   const char *const *headers, const char *body, int head_timeout_ms)
{
    connect_and_send(c, port, method, path, headers, body, 0);
    sse_client_wait_head(c, head_timeout_ms);
}

void
sse_client_open(struct sse_client *c, int port, const char *method, const char *path,
                const char *const *headers)
{
    sse_client_request(c, port, method, path, headers, NULL, HEAD_TIMEOUT_MS);
}

int
sse_client_send_get(int port, const char *path, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    DIAG_CHECK(fd >= 0, "socket: %s", strerror(errno));
    if (rcvbuf > 0)
        DIAG_CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0,
                   "SO_RCVBUF: %s", strerror(errno));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    DIAG_CHECK(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0,
               "GET %s: connect to 127.0.0.1:%d: %s", path, port, strerror(errno));
    char request[512];
    int len = snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                       path);
    DIAG_CHECK(len > 0 && (size_t)len < sizeof(request)
               && write(fd, request, (size_t)len) == len, "GET %s: write failed", path);
    return fd;
}

int
sse_client_plain_status(int port, const char *path, int timeout_ms)
{
    int fd = sse_client_send_get(port, path, 0);
    char head[64] = "";
    size_t len = 0;
    int64_t deadline = testenv_now_ms() + timeout_ms;
    while (strstr(head, "\r\n") == NULL && len + 1 < sizeof(head)
           && testenv_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n = poll(&p, 1, 50) > 0 ? read(fd, head + len, sizeof(head) - 1 - len) : 0;
        if (n < 0 || (n == 0 && p.revents != 0))
            break;  /* an error, or the end of the connection */
        len += (size_t)n;
        head[len] = '\0';
    }
    close(fd);
    int status = 0;
    DIAG_CHECK(sscanf(head, "HTTP/1.%*d %d", &status) == 1, "GET %s: no status line: %s",
               path, head);
    return status;
}

cJSON *
sse_client_get_json(int port, const char *path, const char *const *headers)
{
    struct sse_client c;
    sse_client_open(&c, port, "GET", path, headers);
    DIAG_CHECK(c.status == 200, "%s: status %d", c.request, c.status);
    sse_client_read_body(&c, 5000);
    cJSON *json = cJSON_Parse(c.body);
    DIAG_CHECK(cJSON_IsObject(json), "%s: not a JSON object: %s", c.request, c.body);
    sse_client_close(&c);
    return json;
}

void
sse_client_close(struct sse_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    diag_unregister(c);
    free(c->raw);
    free(c->body);
    c->raw = c->body = NULL;
    c->raw_len = c->raw_cap = c->body_len = c->body_cap = 0;
}

const char *
sse_client_header(const struct sse_client *c, const char *name, char *out, size_t size)
{
    size_t name_len = strlen(name);
    for (const char *line = strstr(c->head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, name_len) != 0 || line[name_len] != ':')
            continue;
        const char *value = line + name_len + 1;
        value += strspn(value, " \t");
        size_t len = strcspn(value, "\r\n");
        snprintf(out, size, "%.*s", (int)len, value);
        return out;
    }
    return NULL;
}

/* Finds the line at p, looking for its end from `from` on (p <= from: the bytes between
 * are known to end no line): its length and terminator size (LF, CRLF or a lone CR).
 * Returns false when the line is not complete yet. */
static bool
find_line(const char *p, const char *from, const char *end, bool is_final, size_t *len,
          size_t *term_len)
{
    for (const char *q = from; q < end; q++) {
        if (*q != '\n' && *q != '\r')
            continue;
        if (*q == '\r' && q + 1 == end && !is_final)
            return false;  /* CR or CRLF: the next byte decides */
        *len = (size_t)(q - p);
        *term_len = *q == '\r' && q + 1 < end && q[1] == '\n' ? 2 : 1;
        return true;
    }
    return false;
}

static void
append_data(struct sse_frame *f, const char *value, size_t len)
{
    size_t old_len = f->data ? strlen(f->data) : 0;
    size_t extra = f->data ? 1 : 0;
    char *p = realloc(f->data, old_len + extra + len + 1);
    DIAG_CHECK(p != NULL, "out of memory");
    if (extra)
        p[old_len] = '\n';
    memcpy(p + old_len + extra, value, len);
    p[old_len + extra + len] = '\0';
    f->data = p;
    f->data_lines++;
}

/* Applies one SSE line (WHATWG "process the field"). */
static void
apply_line(struct sse_frame *f, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    int cut = (int)(value_len < SSE_CLIENT_FIELD_MAX ? value_len : SSE_CLIENT_FIELD_MAX - 1);
    if (name_len == 0) {
        snprintf(f->comment, sizeof(f->comment), "%.*s", cut, value);
        f->comment_lines++;
    } else if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        append_data(f, value, value_len);
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
        f->has_id = true;
        snprintf(f->id, sizeof(f->id), "%.*s", cut, value);
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        f->has_event = true;
        snprintf(f->event, sizeof(f->event), "%.*s", cut, value);
    } else if (name_len == 5 && memcmp(line, "retry", 5) == 0) {
        f->has_retry = true;
        f->retry_ms = strtol(value, NULL, 10);
    } else {
        f->other_lines++;
    }
}

/* Takes the next complete block from the body into f. Returns false when there is none.
 * A try that finds none keeps where its scan stopped (line_pos, scan_pos), so that a
 * block that arrives in many reads is scanned once, not again from its start at every
 * read (a 30 MiB line took 40 s so). */
static bool
take_block(struct sse_client *c, struct sse_frame *f)
{
    memset(f, 0, sizeof(*f));
    if (c->body == NULL)
        return false;
    const char *start = c->body + c->body_pos, *end = c->body + c->body_len, *p = start;
    const char *from = p;
    if (c->scan_pos > c->body_pos) {
        p = c->body + c->line_pos;
        from = c->body + c->scan_pos;
    }
    size_t len, term_len;
    while (find_line(p, from, end, c->is_body_done, &len, &term_len)) {
        if (len > 0) {
            from = p += len + term_len;
            continue;
        }
        if (p == start) {  /* blank lines between blocks dispatch nothing */
            from = start = p = p + term_len;
            c->body_pos = (size_t)(start - c->body);
            continue;
        }
        for (const char *q = start; q < p;) {
            find_line(q, q, p, true, &len, &term_len);
            apply_line(f, q, len);
            q += len + term_len;
        }
        c->body_pos = (size_t)(p + term_len - c->body);
        c->scan_pos = 0;
        return true;
    }
    /* nothing past p ends a line, but a CR at the very end may yet be a CRLF */
    c->line_pos = (size_t)(p - c->body);
    c->scan_pos = (size_t)(end > p && end[-1] == '\r' ? end - 1 - c->body : end - c->body);
    return false;
}

enum sse_client_result
sse_client_next(struct sse_client *c, struct sse_frame *f, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    for (;;) {
        if (take_block(c, f))
            return SSE_CLIENT_BLOCK;
        if (c->is_body_done)
            return SSE_CLIENT_END;
        if (receive(c, deadline) < 0)
            return SSE_CLIENT_TIMEOUT;
    }
}

void
sse_client_expect_block(struct sse_client *c, struct sse_frame *f, int timeout_ms)
{
    enum sse_client_result rc = sse_client_next(c, f, timeout_ms);
    DIAG_CHECK(rc == SSE_CLIENT_BLOCK, "%s: %s instead of an SSE block within %d ms",
               c->request, rc == SSE_CLIENT_END ? "end of body" : "timeout", timeout_ms);
}

void
sse_client_expect_event(struct sse_client *c, struct sse_frame *f, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    for (;;) {
        int64_t left_ms = deadline - testenv_now_ms();
        sse_client_expect_block(c, f, left_ms > 0 ? (int)left_ms : 0);
        if (f->data != NULL)
            return;
        sse_frame_release(f);
    }
}

void
sse_client_expect_end(struct sse_client *c, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    struct sse_frame f;
    enum sse_client_result rc;
    while ((rc = sse_client_next(c, &f, (int)(deadline - testenv_now_ms())))
           == SSE_CLIENT_BLOCK) {
        bool is_event = f.data != NULL;
        sse_frame_release(&f);
        DIAG_CHECK(!is_event, "%s: an event arrived where the stream should end", c->request);
    }
    DIAG_CHECK(rc == SSE_CLIENT_END, "%s: the stream did not end within %d ms", c->request,
               timeout_ms);
}

long
sse_client_expect_bytes(struct sse_client *c, const char *needle, size_t offset,
                        int timeout_ms)
{
    int64_t start_ms = testenv_now_ms();
    while (c->body == NULL || offset > c->body_len || !strstr(c->body + offset, needle)) {
        int rc = receive(c, start_ms + timeout_ms);
        DIAG_CHECK(rc > 0, "%s: '%s' not received within %d ms (%s)", c->request, needle,
                   timeout_ms, rc == 0 ? "connection closed" : "timeout");
    }
    return (long)(testenv_now_ms() - start_ms);
}

void
sse_client_read_body(struct sse_client *c, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    while (!c->is_body_done) {
        DIAG_CHECK(receive(c, deadline) >= 0, "%s: body not complete within %d ms",
                   c->request, timeout_ms);
    }
    if (c->body == NULL)
        append_body(c, "", 0);
}

void
sse_client_dump(const struct sse_client *c)
{
    fprintf(stderr, "=== client %s: status %d, %zu bytes received, %s ===\n", c->request,
            c->status, c->raw_len, c->is_eof ? "closed by the server" : "open");
    diag_print_bytes("bytes received", c->raw ? c->raw : "", c->raw_len, DUMP_BYTES);
}

void
sse_frame_release(struct sse_frame *f)
{
    free(f->data);
    f->data = NULL;
}

cJSON *
sse_frame_json(const struct sse_frame *f)
{
    if (f->data == NULL)
        return NULL;
    const char *end = NULL;
    return cJSON_ParseWithOpts(f->data, &end, 1);
}

long long
sse_frame_id(const struct sse_frame *f)
{
    char *end = NULL;
    long long id = f->has_id ? strtoll(f->id, &end, 10) : -1;
    DIAG_CHECK(f->has_id && end != f->id && *end == '\0' && id > 0,
               "frame without a decimal id (id '%s', data %.200s)", f->id,
               f->data ? f->data : "(none)");
    return id;
}
