/*
 * loadgen.c - the benchmark's load client: many SSE connections in one epoll loop.
 *
 *   loadgen --port P [--port P2 ...] --streams N --sessions M --duration S [--path T]
 *           [--ready-file F] [--nchan] [--connect-limit L] [--connect-window W]
 *           [--connect-stall Q]
 *
 * Opens N HTTP/1.1 GETs of T with %d = i % M (default /api/sessions/bench-%d/events, the
 * producer's sessions), stream i to the (i % K)th of its K ports (8 at most; make bench's h:
 * two web nodes, one latency distribution over both), at most W (default 256) on their way
 * at a time, decodes chunked bodies and SSE blocks, and for each event reads the producer's
 * stamp (data.t_us, wall-clock µs, with cJSON) to compute delivery latency. Once every
 * stream has settled - its 200 and opening block, or a refusal (any other status, or
 * sse-fcgi's soft refusal: a 200 whose block says `: sse-fcgi unavailable: ...`, when its
 * slots run out) - or L seconds (default 30) passed, or Q (default 10) without a stream
 * settling (a server out of descriptors takes no more, and those on their way would wait out
 * L), it creates F (the driver then starts the producer) and reads for S seconds with the
 * streams that opened; connected= says how many, connect_s= how long that took. A stream
 * holds its buffers only as long as its lines are (and its head's only while that is read),
 * so 10,000 streams cost a few MB here. Ids must grow on every stream; anything else is an
 * error. --nchan reads nginx + nchan's EventSource instead (the bench's reference): its body
 * is not chunked (nginx ends it by closing), its opening block is the comment `: hi`, and
 * its ids are `<time>:<tag>`, which must grow as the pair (time, tag). Prints one line:
 * streams= connected= connect_s= events= events_per_s= p50_ms= p90_ms= p99_ms= max_ms=
 * errors=.
 */
#define _GNU_SOURCE /* getopt_long */

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum body_state { HEAD, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, PLAIN };
enum { LINE_MAX_BYTES = 65536, LINE_START_BYTES = 256, HEAD_MAX = 8192, LOADGEN_PORTS_MAX = 8 };

/* A line of text that grows as needed, up to LINE_MAX_BYTES with its '\0': a stream holds
 * only what its longest line needed (the bench's events are about 100 bytes), not 64 KiB. */
struct text {
    char *bytes;
    size_t len, cap;
};

/* One stream. The head buffer exists only while a head is read, the lines only as long as
 * they are: with 10,000 streams (scenario g) two fixed 64 KiB lines each would be 1.3 GB. */
struct conn {
    int fd;                         /* -1: not connected yet, or closed */
    enum body_state state;
    char *head;                     /* HEAD_MAX bytes while state is HEAD, else NULL */
    size_t head_len;
    size_t chunk_left;
    char size_line[32];
    size_t size_len;
    struct text line;               /* the SSE line being read */
    struct text data;               /* the block's data line */
    long long block_id, last_id;
    long long block_tag, last_tag;  /* --nchan: the tag after the time in `id:` */
    bool is_open;                   /* 200 and the opening block seen */
    bool is_refused;                /* its opening block was sse-fcgi's soft refusal */
};

static double *latencies;
static size_t latency_count, latency_cap;
static long errors, opened, refused;
static bool is_measuring, is_nchan;

static void *
must_realloc(void *p, size_t bytes)
{
    p = realloc(p, bytes);
    if (p == NULL) {
        perror("loadgen");
        exit(1);
    }
    return p;
}

/* Makes room for `need` bytes (a '\0' included); false when that is over LINE_MAX_BYTES. */
static bool
text_reserve(struct text *t, size_t need)
{
    if (need > LINE_MAX_BYTES)
        return false;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : LINE_START_BYTES;
        while (cap < need)
            cap *= 2;
        cap = cap < LINE_MAX_BYTES ? cap : LINE_MAX_BYTES;
        t->bytes = must_realloc(t->bytes, cap);
        t->cap = cap;
    }
    return true;
}

static double
wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double
mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
record(double latency_us)
{
    if (latency_count == latency_cap) {
        latency_cap = latency_cap ? 2 * latency_cap : 1 << 16;
        latencies = must_realloc(latencies, latency_cap * sizeof(*latencies));
    }
    latencies[latency_count++] = latency_us;
}

/* One complete SSE block: an event when it had data. */
static void
dispatch(struct conn *c)
{
    if (c->data.len == 0) {
        if (!c->is_open) {
            c->is_open = true;  /* the opening block: retry: and a comment */
            opened++;
        }
        return;
    }
    double arrived = wall_us();
    cJSON *event = cJSON_Parse(c->data.bytes);  /* '\0'-ended by sse_line */
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(event, "data"), "t_us");
    bool is_growing = c->block_id > c->last_id
                      || (is_nchan && c->block_id == c->last_id && c->block_tag > c->last_tag);
    if (!cJSON_IsNumber(t) || !is_growing)
        errors++;
    else if (is_measuring)
        record(arrived - t->valuedouble);
    c->last_id = c->block_id;
    c->last_tag = c->block_tag;
    cJSON_Delete(event);
    c->data.len = 0;
}

/* sse-fcgi's ids are integers; nchan's are `<time>:<tag>` (one channel: no brackets). */
static void
read_id(struct conn *c, const char *text)
{
    char *end = NULL;
    c->block_id = strtoll(text, &end, 10);
    c->block_tag = 0;
    if (is_nchan && *end == ':')
        c->block_tag = strtoll(end + 1, NULL, 10);
}

/* sse-fcgi refuses an EventSource stream (no free slot, the database unavailable) with a
 * 200 whose one block is `retry:` and this comment, then the end of the body (README, Soft
 * refusals): a 503 would stop EventSource for good. That stream never opened. */
static const char SOFT_REFUSAL[] = ": sse-fcgi unavailable: ";

static void
sse_line(struct conn *c)
{
    const char *line = c->line.len > 0 ? c->line.bytes : "";
    size_t len = c->line.len;
    if (len > 0)
        c->line.bytes[len] = '\0';
    if (len == 0)
        dispatch(c);
    else if (strncmp(line, "id: ", 4) == 0)
        read_id(c, line + 4);
    else if (!c->is_open && strncmp(line, SOFT_REFUSAL, strlen(SOFT_REFUSAL)) == 0) {
        fprintf(stderr, "loadgen: HTTP/1.1 200 OK with a soft refusal: %s\n", line + 2);
        c->is_refused = true;
    }
    else if (strncmp(line, "data: ", 6) == 0 && text_reserve(&c->data, len - 6 + 1)) {
        memcpy(c->data.bytes, line + 6, len - 6 + 1);
        c->data.len = len - 6;
    }
    c->line.len = 0;
}

/* A line longer than LINE_MAX_BYTES - 1 is cut there, as before the lines grew. */
static void
sse_bytes(struct conn *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !c->is_refused; i++) {
        if (p[i] == '\n')
            sse_line(c);
        else if (text_reserve(&c->line, c->line.len + 2))
            c->line.bytes[c->line.len++] = p[i];
    }
}

/* Feeds received bytes through the HTTP head and chunked decoding. Returns false when the
 * answer is not a 200 stream: the caller closes it (its body is not chunked SSE). */
static bool
feed(struct conn *c, const char *p, size_t n)
{
    while (n > 0) {
        if (c->state == HEAD) {
            if (c->head == NULL) {
                c->head = must_realloc(NULL, HEAD_MAX);
                c->head_len = 0;
            }
            if (c->head_len < HEAD_MAX - 1)
                c->head[c->head_len++] = *p;
            c->head[c->head_len] = '\0';
            p++, n--;
            if (c->head_len >= 4 && strcmp(c->head + c->head_len - 4, "\r\n\r\n") == 0) {
                bool is_ok = strncmp(c->head, "HTTP/1.1 200", 12) == 0;
                bool is_chunked = strcasestr(c->head, "\r\nTransfer-Encoding: chunked\r\n");
                if (!is_ok)
                    fprintf(stderr, "loadgen: %.*s\n", (int)strcspn(c->head, "\r"), c->head);
                free(c->head);
                c->head = NULL;
                if (!is_ok)
                    return false;
                /* nchan's streams are plain; sse-fcgi's are chunked, but for its soft
                 * refusal, which lighttpd may send whole, with a Content-Length */
                c->state = is_nchan || !is_chunked ? PLAIN : CHUNK_SIZE;
            }
        } else if (c->state == PLAIN) {
            sse_bytes(c, p, n);
            n = 0;
            if (c->is_refused)
                return false;
        } else if (c->state == CHUNK_SIZE) {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                c->size_line[c->size_len] = '\0';
                c->chunk_left = strtoul(c->size_line, NULL, 16);
                c->size_len = 0;
                c->state = c->chunk_left > 0 ? CHUNK_DATA : HEAD;
            } else if (ch != '\r' && c->size_len < sizeof(c->size_line) - 1) {
                c->size_line[c->size_len++] = ch;
            }
        } else if (c->state == CHUNK_DATA) {
            size_t take = n < c->chunk_left ? n : c->chunk_left;
            sse_bytes(c, p, take);
            if (c->is_refused)
                return false;
            p += take, n -= take;
            c->chunk_left -= take;
            if (c->chunk_left == 0)
                c->state = CHUNK_END;
        } else {  /* CHUNK_END: the CRLF after a chunk */
            if (*p == '\n')
                c->state = CHUNK_SIZE;
            p++, n--;
        }
    }
    return true;
}

static int
open_conn(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0
                   && errno != EINPROGRESS)) {
        perror("loadgen: connect");
        exit(1);
    }
    return fd;
}

static int
compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Closes a stream the server refused or ended; before its opening block it never opened. */
static void
drop_conn(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    free(c->head);
    free(c->line.bytes);
    free(c->data.bytes);
    c->head = c->line.bytes = c->data.bytes = NULL;
    c->line.len = c->line.cap = c->data.len = c->data.cap = 0;
    errors++;
    if (!c->is_open)
        refused++;
}

/* Raises the open-file limit to `need`, never lowering a higher one. */
static void
raise_fd_limit(rlim_t need)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= need)
        return;
    lim.rlim_cur = need;
    if (lim.rlim_max < need)
        lim.rlim_max = need;  /* only root may; otherwise the connects report EMFILE */
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
        getrlimit(RLIMIT_NOFILE, &lim);
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

static void
create_ready_file(const char *path)
{
    FILE *f = path != NULL ? fopen(path, "w") : NULL;
    if (path != NULL && f == NULL)
        perror("loadgen: ready file");
    if (f != NULL)
        fclose(f);
}

static double
percentile_ms(double p)
{
    if (latency_count == 0)
        return 0;
    size_t i = (size_t)(p * (double)(latency_count - 1));
    return latencies[i] / 1000.0;
}

int
main(int argc, char **argv)
{
    int ports[LOADGEN_PORTS_MAX], port_count = 0;
    bool has_bad_port = false;
    long streams = 1, sessions = 1, window = 256;
    double seconds = 10, connect_limit = 30, connect_stall = 10;
    const char *ready_file = NULL, *path_template = "/api/sessions/bench-%d/events";
    static const struct option OPTIONS[] = {
        {"port", required_argument, NULL, 'p'}, {"streams", required_argument, NULL, 'n'},
        {"sessions", required_argument, NULL, 'm'}, {"duration", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 's'}, {"ready-file", required_argument, NULL, 'r'},
        {"path", required_argument, NULL, 't'}, {"nchan", no_argument, NULL, 'x'},
        {"connect-limit", required_argument, NULL, 'l'},
        {"connect-window", required_argument, NULL, 'w'},
        {"connect-stall", required_argument, NULL, 'q'}, {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", OPTIONS, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (port_count == LOADGEN_PORTS_MAX || (ports[port_count++] = atoi(optarg)) <= 0)
                has_bad_port = true;
            break;
        case 'n': streams = atol(optarg); break;
        case 'm': sessions = atol(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'r': ready_file = optarg; break;
        case 't': path_template = optarg; break;
        case 'x': is_nchan = true; break;
        case 'l': connect_limit = atof(optarg); break;
        case 'q': connect_stall = atof(optarg); break;
        case 'w': window = atol(optarg); break;
        default: return 2;
        }
    }
    const char *percent = strchr(path_template, '%');
    if (port_count == 0 || has_bad_port || streams < 1 || sessions < 1 || seconds <= 0
        || connect_limit <= 0 || connect_stall <= 0 || window < 1 || percent == NULL
        || percent[1] != 'd' || strchr(percent + 2, '%') != NULL) {
        fprintf(stderr, "usage: loadgen --port P [--port P2 ...] --streams N --sessions M "
                "--duration S [--path TEMPLATE-WITH-ONE-%%d] [--ready-file F] [--nchan] "
                "[--connect-limit S] [--connect-window W] [--connect-stall S]\n");
        return 2;
    }
    raise_fd_limit((rlim_t)streams + 64);
    struct conn *conns = calloc((size_t)streams, sizeof(*conns));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || ep < 0) {
        perror("loadgen");
        return 1;
    }
    for (long i = 0; i < streams; i++)
        conns[i].fd = -1;
    long started = 0;  /* conns[0 .. started-1] were connected */
    double began = mono_s(), connect_until = began + connect_limit, measure_until = 0;
    double connect_s = 0, settled_at = began;  /* when a stream last opened or was refused */
    long settled = 0;
    struct epoll_event events[256];
    char buf[65536];
    while (!is_measuring || mono_s() < measure_until) {
        if (opened + refused != settled) {
            settled = opened + refused;
            settled_at = mono_s();
        }
        if (!is_measuring && (settled == streams || mono_s() >= connect_until
                              || mono_s() >= settled_at + connect_stall)) {
            is_measuring = true;  /* a stream not started by now never is */
            connect_s = mono_s() - began;
            measure_until = mono_s() + seconds;
            create_ready_file(ready_file);
        }
        /* At most `window` streams on their way (connected, neither open nor refused yet):
         * 10,000 connects at once would overflow the listen backlogs (the web server's, and
         * its backend's), and a dropped SYN waits 1 s, then 3, for its retry. */
        while (!is_measuring && started < streams && started - opened - refused < window) {
            struct conn *c = &conns[started];
            c->fd = open_conn(ports[started++ % port_count]);
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        }
        int n = epoll_wait(ep, events, 256, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (events[i].events & EPOLLOUT) {
                char request[2048];
                /* the template has exactly one %d (checked): print around it, so that no
                 * format string comes from the command line */
                int len = snprintf(request, sizeof(request),
                                   "GET %.*s%ld%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "Accept: text/event-stream\r\n\r\n",
                                   (int)(percent - path_template), path_template,
                                   (long)(c - conns) % sessions, percent + 2);
                if (len < 0 || (size_t)len >= sizeof(request)) {
                    fprintf(stderr, "loadgen: --path too long\n");
                    return 2;
                }
                if (write(c->fd, request, (size_t)len) != len) {
                    drop_conn(ep, c);  /* refused connect or reset: never opened */
                    continue;
                }
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t got = read(c->fd, buf, sizeof(buf));
                if (got > 0) {
                    if (!feed(c, buf, (size_t)got))
                        drop_conn(ep, c);
                } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                    drop_conn(ep, c);  /* refused, or ended in the middle of the run */
                }
            }
        }
    }
    qsort(latencies, latency_count, sizeof(*latencies), compare);
    printf("streams=%ld connected=%ld connect_s=%.2f events=%zu events_per_s=%.0f "
           "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%ld\n", streams, opened,
           connect_s, latency_count, is_measuring ? (double)latency_count / seconds : 0.0,
           percentile_ms(0.50), percentile_ms(0.90), percentile_ms(0.99), percentile_ms(1.0),
           errors);
    for (long i = 0; i < streams; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].head);
        free(conns[i].line.bytes);
        free(conns[i].data.bytes);
    }
    free(conns);
    free(latencies);
    return 0;
}
