/*
 * main.c - start-up, signals, CGI or FastCGI, the accept loop and the stream threads.
 *
 * FastCGI: the main thread accepts (libfcgi FCGX_Accept_r) and hands each request that may
 * stream to one of SSE_THREADS stream threads, and every other one to a thread of its own;
 * a stream request that finds no thread free within 250 ms is answered busy (SPEC §4.12),
 * because lighttpd would otherwise queue it silently (DEPLOY-NOTES §6), and the accepting
 * thread never waits for any of that (see "the pool" below). Plain CGI: one
 * request from the environment and fd 0/1, then exit (FCGX_Accept_r has no CGI fallback,
 * DEPLOY-NOTES §4). SIGTERM writes to a pipe that every stream's wait polls, so streams end
 * with reason=shutdown and the process exits within a second (SPEC §4.11).
 */
#include <assert.h>
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../store/store.h"
#include "commands.h"
#include "config.h"
#include "crypto.h"
#include "log.h"
#include "stream.h"

enum {
    THREAD_STACK_BYTES = 512 * 1024,  /* cJSON recursion on deeply nested data fits */
    /* The refuser only formats and writes the busy answer (stream_reject_busy: no SQLite,
     * no cJSON, no recursion); the deepest it went was 9.6 KiB (stack painted, make test's
     * load, routes, access, stream and replay suites). A thread's memory is the pages it
     * touches, so this saves address space only: 448 KiB per process. */
    REFUSER_STACK_BYTES = 64 * 1024,
    SHUTDOWN_GRACE_MS = 800,          /* streams end, then the process exits (SPEC §4.11) */
    STDIN_DRAIN_MAX = 64 * 1024,      /* request body bytes read before streaming */
};

static const char USAGE[] =
    "usage: sse-fcgi             serve (started by a web server: FastCGI or CGI)\n"
    "       sse-fcgi --check [--db PATH]\n"
    "                            check a deployment as this user (the web server's)\n"
    "       sse-fcgi prune --keep-days N | --keep-events N [--floor-hours N] [--dry-run]\n"
    "                      [--db PATH] [--verbose]\n"
    "                            delete old events (as a user who can write the database)\n"
    "       sse-fcgi --explain   print the query plan of every query against $SSE_DB\n"
    "       sse-fcgi --version\n"
    "Configuration comes from SSE_* variables; see README.md.\n";

/* Process-wide, written once before threads start, except where noted. */
static struct stream_shared shared = {.shutdown_fd = -1};
static int shutdown_write_fd = -1;
/* Set by the signal handler, read by every thread: a lock-free atomic is both
 * async-signal-safe and race-free (volatile sig_atomic_t is only the former). */
static atomic_int is_shutting_down;

static void
on_shutdown_signal(int signo)
{
    (void)signo;
    int saved_errno = errno;
    atomic_store(&is_shutting_down, 1);
    ssize_t n = write(shutdown_write_fd, "x", 1);
    (void)n;
    FCGX_ShutdownPending();  /* makes libfcgi's accept() loop give up instead of retrying */
    errno = saved_errno;
}

/* SIGTERM/SIGINT end the streams; SIGPIPE is ignored so a dead client is an EPIPE
 * (mod_cgid hands it over as SIG_DFL, DEPLOY-NOTES Q7). Call after FCGX_Init, which
 * otherwise installs its own SIGTERM handler (DEPLOY-NOTES §5). */
static int
install_signals(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -errno;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    shared.shutdown_fd = fds[0];
    shutdown_write_fd = fds[1];
    struct sigaction sa = {.sa_handler = on_shutdown_signal};
    sigemptyset(&sa.sa_mask);  /* no SA_RESTART: accept() must see EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ---- FastCGI transport -------------------------------------------------------------- */

static const char *
fcgi_param(void *ctx, const char *name)
{
    FCGX_Request *req = ctx;
    return FCGX_GetParam(name, req->envp);
}

static int
fcgi_send(void *ctx, const char *bytes, size_t len)
{
    FCGX_Request *req = ctx;
    /* FCGX_PutStr only buffers; FCGX_FFlush is where a dead peer shows (DEPLOY-NOTES Q1). */
    if (FCGX_PutStr(bytes, (int)len, req->out) != (int)len || FCGX_FFlush(req->out) < 0)
        return -(FCGX_GetError(req->out) > 0 ? FCGX_GetError(req->out) : EIO);
    return 0;
}

/* Reads the request body to EOF, so that later POLLIN on the socket can only mean the
 * client left (DEPLOY-NOTES Q4). */
static void
drain_stdin(FCGX_Request *req)
{
    char chunk[4096];
    int n, total = 0;
    while (total < STDIN_DRAIN_MAX && (n = FCGX_GetStr(chunk, sizeof(chunk), req->in)) > 0)
        total += n;
}

static struct stream_io
fcgi_io(FCGX_Request *req)
{
    return (struct stream_io){
        .ctx = req,
        .param = fcgi_param,
        .send = fcgi_send,
        .client_fd = req->ipcFd,
        .is_client_socket = true,
        .is_cgi = false,
    };
}

/* ---- the pool: stream threads, the line of waiting streams, the quick thread ---------- */

/* How a process answers "at once" (SPEC §4.12) without the accepting thread ever waiting for
 * a stream slot (issue 11: when it waited in the accept loop, 250 ms per request, the 40th
 * request waited 9.9 s, and /api/health behind it):
 *   - the accepting thread accepts and sorts: a request that may stream (stream_needs_slot)
 *     joins the `waiting` line, any other (health, HEAD, every 4xx) the `quick` line; it
 *     answers a request itself only when that line is full, with the busy answer, which is
 *     one short write to a fresh connection;
 *   - a free stream thread takes the oldest waiting request, so a slot is simply a thread;
 *   - the refuser thread answers busy to each request still waiting SLOT_WAIT_MS after its
 *     accept. The wait is for mod_fcgid, which returns a process to its pool as soon as
 *     Apache sees the client gone, a few ms before the stream itself notices and frees its
 *     slot; it is counted per request, so a crowd of waiting requests costs no one more;
 *   - the quick thread answers the quick line, so those never need a stream slot.
 * The quick thread and the refuser start at the first request that needs them (issue 12):
 * the first quick request, and the first one that may stream to find no free stream thread
 * for it. Under mod_fcgid (one stream at a time) most processes never need either, and a
 * thread costs the pages its stack touched (8-16 KiB), its malloc cache and the kernel's
 * stack for it. At shutdown stream and quick threads take nothing more; the refuser, or
 * the accepting thread when none was started, answers busy to whatever is left in either
 * line. */
enum {
    SLOT_WAIT_MS = 250,
    /* The line holds every request a free thread has yet to take (a burst of up to
     * SSE_THREADS streams at once must all be served: make bench opened 1,000 on 1,016
     * threads, and with a line of 64 seven were refused), plus this many waiting for a
     * slot to be freed. Each holds a web server connection and an FCGX_Request with its
     * parameters (a few KiB), for SLOT_WAIT_MS at most. More than 64 arriving within 250 ms
     * while every slot streams is a flood; those past it are refused at once, which is what
     * waiting would almost surely have given them. */
    WAITING_MAX = 64,
    /* Only health is not instant (it opens the database, whose busy timeout is 2 s); rather
     * than queue a 17th behind 16 of them, it is refused at once. */
    QUICK_MAX = 16,
    /* Requests held outside the lines and the stream threads: the one being accepted, the
     * one being refused and the one the quick thread serves. */
    REQUESTS_SPARE = 3,
};

/* Milliseconds on the monotonic clock, which every condition variable below waits on. */
static int64_t
monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static struct timespec
monotonic_timespec(int64_t at_ms)
{
    return (struct timespec){.tv_sec = at_ms / 1000, .tv_nsec = (at_ms % 1000) * 1000000L};
}

/* A FIFO ring of accepted requests, each with the time it may wait until, and the
 * threads that take from it. Guarded by pool.lock. */
struct line {
    struct line_entry {
        FCGX_Request *req;
        int64_t until_ms;          /* monotonic; for `waiting` only */
    } *entries;                    /* cap of them */
    size_t head, count, cap;
    pthread_cond_t ready;          /* a request joined, or shutdown */
};

static void
line_push(struct line *l, FCGX_Request *req, int64_t until_ms)
{
    l->entries[(l->head + l->count++) % l->cap] = (struct line_entry){req, until_ms};
}

static FCGX_Request *
line_pop(struct line *l)
{
    FCGX_Request *req = l->entries[l->head].req;
    l->head = (l->head + 1) % l->cap;
    l->count--;
    return req;
}

/* The hand-off between the accepting thread and the threads that answer. Owned by main();
 * every field below `lock` is guarded by it. */
struct pool {
    pthread_mutex_t lock;
    pthread_cond_t refuser_wake;   /* a request joined `waiting`, or shutdown */
    pthread_cond_t thread_ended;   /* running_threads went down */
    FCGX_Request *requests;        /* every request object: threads + lines + spare */
    FCGX_Request **free_list;      /* requests nobody holds */
    size_t free_count;
    struct line waiting;           /* may stream: for the stream threads */
    struct line quick;             /* stream nothing: for the quick thread */
    long running_threads;          /* threads not yet returned */
    size_t busy_stream_threads;    /* stream threads serving a request */
    /* The accepting thread's own, unguarded: it alone starts threads. */
    size_t stream_threads;
    bool is_quick_started, is_refuser_started;
};

static struct pool pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
pool_put_free(FCGX_Request *req)
{
    pthread_mutex_lock(&pool.lock);
    pool.free_list[pool.free_count++] = req;
    pthread_mutex_unlock(&pool.lock);
}

/* A free request. The lines and the threads hold at most as many as start_threads made
 * beyond this one, so there always is one. */
static FCGX_Request *
pool_get_free(void)
{
    pthread_mutex_lock(&pool.lock);
    assert(pool.free_count > 0);
    FCGX_Request *req = pool.free_list[--pool.free_count];
    pthread_mutex_unlock(&pool.lock);
    return req;
}

/* Puts an accepted request in its line. Returns false when the line is full or the process
 * is stopping (then the caller answers it). */
static bool
pool_hand_off(FCGX_Request *req, bool needs_slot)
{
    struct line *line = needs_slot ? &pool.waiting : &pool.quick;
    pthread_mutex_lock(&pool.lock);
    bool is_queued = line->count < line->cap && !atomic_load(&is_shutting_down);
    if (is_queued) {
        line_push(line, req, monotonic_ms() + SLOT_WAIT_MS);
        pthread_cond_signal(&line->ready);
        if (needs_slot)
            pthread_cond_signal(&pool.refuser_wake);
    }
    pthread_mutex_unlock(&pool.lock);
    return is_queued;
}

/* Waits for the oldest request of line; NULL at shutdown. */
static FCGX_Request *
pool_take(struct line *line)
{
    pthread_mutex_lock(&pool.lock);
    while (line->count == 0 && !atomic_load(&is_shutting_down))
        pthread_cond_wait(&line->ready, &pool.lock);
    FCGX_Request *req = atomic_load(&is_shutting_down) ? NULL : line_pop(line);
    pool.busy_stream_threads += req != NULL && line == &pool.waiting;
    pthread_mutex_unlock(&pool.lock);
    return req;
}

/* Waits for a request to refuse: the oldest waiting one once its SLOT_WAIT_MS are up, or,
 * at shutdown, whatever either line still holds. NULL once shutdown has emptied them. */
static FCGX_Request *
pool_take_refusal(void)
{
    pthread_mutex_lock(&pool.lock);
    FCGX_Request *req = NULL;
    while (req == NULL) {
        if (atomic_load(&is_shutting_down)) {
            struct line *left = pool.waiting.count > 0 ? &pool.waiting : &pool.quick;
            req = left->count > 0 ? line_pop(left) : NULL;
            break;
        }
        if (pool.waiting.count == 0) {
            pthread_cond_wait(&pool.refuser_wake, &pool.lock);
            continue;
        }
        int64_t until_ms = pool.waiting.entries[pool.waiting.head].until_ms;
        if (until_ms <= monotonic_ms()) {
            req = line_pop(&pool.waiting);
        } else {
            struct timespec until = monotonic_timespec(until_ms);
            pthread_cond_timedwait(&pool.refuser_wake, &pool.lock, &until);
        }
    }
    pthread_mutex_unlock(&pool.lock);
    return req;
}

static void
pool_thread_ended(void)
{
    pthread_mutex_lock(&pool.lock);
    pool.running_threads--;
    pthread_cond_broadcast(&pool.thread_ended);
    pthread_mutex_unlock(&pool.lock);
}

/* Serves req to its end (a stream thread or the quick thread) and frees it. */
static void
serve_request(FCGX_Request *req)
{
    drain_stdin(req);
    struct stream_io io = fcgi_io(req);
    stream_serve(&io, &shared);
    FCGX_Finish_r(req);
    pool_put_free(req);
}

/* Answers req busy (SPEC §4.12) and frees it. */
static void
refuse_request(FCGX_Request *req)
{
    struct stream_io io = fcgi_io(req);
    stream_reject_busy(&io);
    FCGX_Finish_r(req);
    pool_put_free(req);
}

/* A stream thread (line: &pool.waiting) or the quick thread (&pool.quick). */
static void *
serving_thread(void *line)
{
    FCGX_Request *req;
    while ((req = pool_take(line)) != NULL) {
        serve_request(req);
        if (line == &pool.waiting) {
            pthread_mutex_lock(&pool.lock);
            pool.busy_stream_threads--;
            pthread_mutex_unlock(&pool.lock);
        }
    }
    pool_thread_ended();
    return NULL;
}

static void *
refuser_thread(void *unused)
{
    (void)unused;
    FCGX_Request *req;
    while ((req = pool_take_refusal()) != NULL)
        refuse_request(req);
    pool_thread_ended();
    return NULL;
}

/* Allocates the requests and the lines and initialises the condition variables on the
 * monotonic clock. Returns 0 or -ENOMEM. */
static int
init_pool(long threads)
{
    size_t waiting_cap = (size_t)threads + WAITING_MAX;
    size_t total = (size_t)threads + waiting_cap + QUICK_MAX + REQUESTS_SPARE;
    pool.requests = calloc(total, sizeof(*pool.requests));
    pool.free_list = calloc(total, sizeof(*pool.free_list));
    pool.waiting = (struct line){.entries = calloc(waiting_cap, sizeof(struct line_entry)),
                                 .cap = waiting_cap};
    pool.quick = (struct line){.entries = calloc(QUICK_MAX, sizeof(struct line_entry)),
                               .cap = QUICK_MAX};
    if (!pool.requests || !pool.free_list || !pool.waiting.entries || !pool.quick.entries)
        return -ENOMEM;
    for (size_t i = 0; i < total; i++) {
        FCGX_InitRequest(&pool.requests[i], 0, 0);
        pool.free_list[pool.free_count++] = &pool.requests[i];
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_t *conds[] = {&pool.waiting.ready, &pool.quick.ready, &pool.refuser_wake,
                               &pool.thread_ended};
    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
        pthread_cond_init(conds[i], &attr);
    pthread_condattr_destroy(&attr);
    return 0;
}

/* Starts a detached thread of the pool. Returns 0, or an errno. */
static int
start_thread(void *(*run)(void *), void *arg, size_t stack_bytes)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, stack_bytes);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The pool's threads block the shutdown signals, so they interrupt the accepting one. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, run, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        pthread_mutex_lock(&pool.lock);
        pool.running_threads++;
        pthread_mutex_unlock(&pool.lock);
    }
    return rc;
}

/* Starts the stream threads. Returns 0, or -errno. */
static int
start_threads(long threads)
{
    int rc = init_pool(threads);
    for (long i = 0; i < threads && rc == 0; i++) {
        rc = -start_thread(serving_thread, &pool.waiting, THREAD_STACK_BYTES);
        pool.stream_threads += rc == 0;
    }
    return rc;
}

/* Starts the thread a request is about to need, if it has not started yet: the quick
 * thread for a quick request, the refuser for one that may stream and finds no free stream
 * thread to take it (one just started, or back from a request, is free). Returns false
 * when that thread cannot be started (then the caller answers the request busy). The
 * accepting thread only. */
static bool
start_helper_for(bool needs_slot)
{
    bool *is_started = needs_slot ? &pool.is_refuser_started : &pool.is_quick_started;
    if (*is_started)
        return true;
    if (needs_slot) {
        pthread_mutex_lock(&pool.lock);
        bool may_wait = pool.waiting.count + pool.busy_stream_threads >= pool.stream_threads;
        pthread_mutex_unlock(&pool.lock);
        if (!may_wait)
            return true;  /* a free thread takes it: only this thread adds to the line */
    }
    int rc = needs_slot ? start_thread(refuser_thread, NULL, REFUSER_STACK_BYTES)
                        : start_thread(serving_thread, &pool.quick, THREAD_STACK_BYTES);
    if (rc != 0) {
        log_line(LOG_LEVEL_ERROR, "error cannot start the %s thread: %s",
                 needs_slot ? "refuser" : "quick", strerror(rc));
        return false;
    }
    *is_started = true;
    return true;
}

/* Wakes every thread and waits up to SHUTDOWN_GRACE_MS for them to end. */
static void
wait_for_threads(void)
{
    struct timespec until = monotonic_timespec(monotonic_ms() + SHUTDOWN_GRACE_MS);
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.waiting.ready);
    pthread_cond_broadcast(&pool.quick.ready);
    pthread_cond_broadcast(&pool.refuser_wake);
    while (pool.running_threads > 0
           && pthread_cond_timedwait(&pool.thread_ended, &pool.lock, &until) == 0) {
    }
    pthread_mutex_unlock(&pool.lock);
}

static int
serve_fastcgi(long threads)
{
    int rc = start_threads(threads);
    if (rc < 0) {
        log_line(LOG_LEVEL_ERROR, "error cannot start stream threads: %s", strerror(-rc));
        return 1;
    }
    log_line(LOG_LEVEL_INFO, "started mode=fastcgi threads=%ld pid=%ld", threads,
             (long)getpid());
    while (!atomic_load(&is_shutting_down)) {
        FCGX_Request *req = pool_get_free();
        if (FCGX_Accept_r(req) < 0) {
            pool_put_free(req);
            if (!atomic_load(&is_shutting_down))
                log_line(LOG_LEVEL_ERROR, "error accept failed; exiting");
            break;
        }
        struct stream_io io = fcgi_io(req);
        bool needs_slot = stream_needs_slot(&io);
        if (!start_helper_for(needs_slot) || !pool_hand_off(req, needs_slot))
            refuse_request(req);  /* answered now (a line full, no thread), without waiting */
    }
    if (!pool.is_refuser_started && atomic_load(&is_shutting_down)) {
        FCGX_Request *req;  /* what the refuser would have answered */
        while ((req = pool_take_refusal()) != NULL)
            refuse_request(req);
    }
    wait_for_threads();
    return 0;
}

/* ---- plain CGI ---------------------------------------------------------------------- */

static const char *
cgi_param(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

static int
cgi_send(void *ctx, const char *bytes, size_t len)
{
    (void)ctx;
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, bytes, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -(n < 0 ? errno : EIO);
        bytes += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
serve_cgi(void)
{
    if (getenv("GATEWAY_INTERFACE") == NULL && getenv("REQUEST_METHOD") == NULL) {
        fputs("sse-fcgi: not started by a web server (no FastCGI socket, no CGI "
              "environment).\n", stderr);
        fputs(USAGE, stderr);
        return 2;
    }
    struct stream_io io = {
        .param = cgi_param,
        .send = cgi_send,
        .client_fd = STDOUT_FILENO,  /* POLLERR/POLLHUP on stdout (DEPLOY-NOTES Q7) */
        .is_client_socket = false,
        .is_cgi = true,
    };
    stream_serve(&io, &shared);
    return 0;
}

/* ---- start-up ----------------------------------------------------------------------- */

static const char *
env_lookup(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

static void
print_plan_line(void *ctx, const char *query_name, const char *detail)
{
    (void)ctx;
    printf("%s: %s\n", query_name, detail);
}

static int
explain(const struct config *cfg)
{
    if (cfg->db_path == NULL) {
        fputs("sse-fcgi --explain: set SSE_DB to the database path\n", stderr);
        return 2;
    }
    struct store *st = NULL;
    char err[512];
    int rc = store_open(cfg->db_path, 1000, &st, err, sizeof(err));
    if (rc == 0 && store_explain(st, print_plan_line, NULL) < 0) {
        snprintf(err, sizeof(err), "%s", store_errmsg(st));
        rc = -1;
    }
    store_close(st);
    if (rc < 0)
        fprintf(stderr, "sse-fcgi --explain: %s\n", err);
    return rc < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
    /* One malloc arena for every thread, set before any starts. glibc gives each thread
     * that allocates an arena of its own (up to 8 per core), and each keeps the pages its
     * thread once touched: behind mod_fcgid, one stream per process, the stream thread's
     * and the watcher's held 380 and 392 KiB. Sharing one, what one thread frees serves
     * the others (issue 12: 133 KiB less per process, README "Memory per process"); the
     * small blocks most calls take come from each thread's tcache without the lock. */
    mallopt(M_ARENA_MAX, 1);
    /* Blocks of 64 KiB and more are mmap()ed, and unmapped when freed. glibc's threshold
     * would otherwise rise to the largest block freed (and keep twice that untrimmed): a
     * row of 900 KB, once read, left its process's heap that much larger for good (make
     * memory with 4 such rows replayed: Pss up to 4,411 KiB a process, 1,481 on average;
     * with this, 861 and 841). A block this large is a row or a batch of frames, copied
     * several times anyway, so its mmap costs little more. */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    /* The admin commands judge the SSE_* settings themselves (--check reports them). */
    if (argc > 1 && strcmp(argv[1], "prune") == 0)
        return commands_prune(argc - 1, argv + 1);
    if (argc > 1 && (strcmp(argv[1], "--check") == 0 || strcmp(argv[1], "check") == 0))
        return commands_check(argc - 1, argv + 1);
    struct config cfg;
    const char *bad_name = NULL, *why = NULL;
    if (config_load(&cfg, env_lookup, NULL, &bad_name, &why) < 0) {
        fprintf(stderr, "sse-fcgi: bad value for %s: %s\n", bad_name, why);
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "--explain") == 0)
        return explain(&cfg);
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        fputs("sse-fcgi 0.1.0\n", stdout);
        return 0;
    }
    if (argc > 1) {  /* --help is asked for: stdout; anything else is a mistake: stderr */
        bool is_help = strcmp(argv[1], "--help") == 0;
        fputs(USAGE, is_help ? stdout : stderr);
        return is_help ? 0 : 2;
    }
    /* The per-process settings (config_is_per_process) are read here, once; every request
     * takes them from shared.process. */
    shared.process = cfg;
    log_set_level(cfg.log_level);
    if (log_open(cfg.log_target) < 0) {
        fprintf(stderr, "sse-fcgi: SSE_LOG: cannot open %s: %s\n", cfg.log_target,
                strerror(errno));
        return 2;
    }
    /* SSE_AUTH for the whole process: libcrypto is loaded now rather than at the first
     * credential (auth.c), so that a missing library is said once, at start. */
    if (cfg.auth_mode != AUTH_MODE_NONE && crypto_load() == NULL)
        log_line(LOG_LEVEL_ERROR, "error SSE_AUTH needs %s: %s; every credential will be "
                 "answered 503", CRYPTO_SONAME, crypto_error());
    if (FCGX_Init() != 0 || install_signals() < 0) {
        fputs("sse-fcgi: cannot initialise libfcgi or signals\n", stderr);
        return 1;
    }
    return FCGX_IsCGI() ? serve_cgi() : serve_fastcgi(cfg.threads);
}
