/*
 * main.c - start-up, signals, CGI or FastCGI, the accept loop and the stream threads.
 *
 * FastCGI: the main thread accepts (libfcgi FCGX_Accept_r) and hands each request to one of
 * SSE_THREADS stream threads; when none is free it answers 503 at once (SPEC §4.12), because
 * lighttpd would otherwise queue the request silently (DEPLOY-NOTES §6). Plain CGI: one
 * request from the environment and fd 0/1, then exit (FCGX_Accept_r has no CGI fallback,
 * DEPLOY-NOTES §4). SIGTERM writes to a pipe that every stream's wait polls, so streams end
 * with reason=shutdown and the process exits within a second (SPEC §4.11).
 */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../store/store.h"
#include "commands.h"
#include "config.h"
#include "log.h"
#include "stream.h"

enum {
    THREAD_STACK_BYTES = 512 * 1024,  /* cJSON recursion on deeply nested data fits */
    SHUTDOWN_GRACE_MS = 800,          /* streams end, then the process exits (SPEC §4.11) */
    STDIN_DRAIN_MAX = 64 * 1024,      /* request body bytes read before streaming */
    SLOT_WAIT_MS = 250,               /* for a slot about to be freed, before a 503 */
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

/* ---- stream threads ----------------------------------------------------------------- */

/* The hand-off between the accepting thread and the stream threads. Owned by main();
 * every field below `lock` is guarded by it. */
struct pool {
    pthread_mutex_t lock;
    pthread_cond_t changed;        /* a request was handed off, a thread ended, or shutdown */
    FCGX_Request *requests;        /* threads + 1: the accepting thread always has one */
    FCGX_Request **free_list;      /* requests nobody holds */
    size_t free_count;
    FCGX_Request **handed;         /* accepted, waiting for a stream thread */
    size_t handed_count;
    long threads;                  /* SSE_THREADS */
    long busy_threads;             /* requests handed off and not yet finished */
    long running_threads;          /* stream threads not yet returned */
};

static struct pool pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .changed = PTHREAD_COND_INITIALIZER,
};

/* Returns a request to the free list; is_finished_stream also frees its stream slot. */
static void
pool_put_free(FCGX_Request *req, bool is_finished_stream)
{
    pthread_mutex_lock(&pool.lock);
    pool.free_list[pool.free_count++] = req;
    pool.busy_threads -= is_finished_stream;
    if (is_finished_stream)
        pthread_cond_broadcast(&pool.changed);  /* the accepting thread may wait for it */
    pthread_mutex_unlock(&pool.lock);
}

/* Waits for a request; NULL at shutdown. */
static FCGX_Request *
pool_take(void)
{
    pthread_mutex_lock(&pool.lock);
    while (pool.handed_count == 0 && !atomic_load(&is_shutting_down))
        pthread_cond_wait(&pool.changed, &pool.lock);
    FCGX_Request *req = pool.handed_count > 0 ? pool.handed[--pool.handed_count] : NULL;
    pthread_mutex_unlock(&pool.lock);
    return req;
}

static void *
stream_thread(void *unused)
{
    (void)unused;
    FCGX_Request *req;
    while ((req = pool_take()) != NULL) {
        drain_stdin(req);
        struct stream_io io = fcgi_io(req);
        stream_serve(&io, &shared);
        FCGX_Finish_r(req);
        pool_put_free(req, true);
    }
    pthread_mutex_lock(&pool.lock);
    pool.running_threads--;
    pthread_cond_broadcast(&pool.changed);
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

/* Hands req to a stream thread. Returns false when every slot is still taken after
 * SLOT_WAIT_MS. A slot counts as taken from hand-off until its request is finished, not by
 * threads waiting, so a thread that has not reached pool_take yet is still a free slot.
 * The short wait is for mod_fcgid, which returns a process to its pool as soon as Apache
 * sees the client gone, a few ms before the stream itself notices and frees its slot. */
static bool
pool_hand_off(FCGX_Request *req)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += SLOT_WAIT_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&pool.lock);
    while (pool.busy_threads >= pool.threads && !atomic_load(&is_shutting_down)
           && pthread_cond_timedwait(&pool.changed, &pool.lock, &until) == 0) {
    }
    bool is_taken = pool.busy_threads < pool.threads;
    if (is_taken) {
        pool.busy_threads++;
        pool.handed[pool.handed_count++] = req;
        pthread_cond_signal(&pool.changed);
    }
    pthread_mutex_unlock(&pool.lock);
    return is_taken;
}

static FCGX_Request *
pool_get_free(void)
{
    pthread_mutex_lock(&pool.lock);
    FCGX_Request *req = pool.free_count > 0 ? pool.free_list[--pool.free_count] : NULL;
    pthread_mutex_unlock(&pool.lock);
    return req;
}

static int
start_threads(long threads)
{
    size_t total = (size_t)threads + 1;
    pool.threads = threads;
    pool.requests = calloc(total, sizeof(*pool.requests));
    pool.free_list = calloc(total, sizeof(*pool.free_list));
    pool.handed = calloc(total, sizeof(*pool.handed));
    if (!pool.requests || !pool.free_list || !pool.handed)
        return -ENOMEM;
    for (size_t i = 0; i < total; i++) {
        FCGX_InitRequest(&pool.requests[i], 0, 0);
        pool.free_list[pool.free_count++] = &pool.requests[i];
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Stream threads block the shutdown signals, so they interrupt the accepting thread. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = 0;
    for (long i = 0; i < threads && rc == 0; i++) {
        pthread_t thread;
        rc = pthread_create(&thread, &attr, stream_thread, NULL);
        if (rc == 0)
            pool.running_threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return -rc;
}

/* Wakes idle threads and waits up to SHUTDOWN_GRACE_MS for every stream to end. */
static void
wait_for_threads(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += SHUTDOWN_GRACE_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.changed);
    while (pool.running_threads > 0
           && pthread_cond_timedwait(&pool.changed, &pool.lock, &until) == 0) {
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
        FCGX_Request *req = pool_get_free();  /* never NULL: threads + 1 requests */
        if (FCGX_Accept_r(req) < 0) {
            pool_put_free(req, false);
            if (!atomic_load(&is_shutting_down))
                log_line(LOG_LEVEL_ERROR, "error accept failed; exiting");
            break;
        }
        if (pool_hand_off(req))
            continue;
        struct stream_io io = fcgi_io(req);
        stream_reject_busy(&io);
        FCGX_Finish_r(req);
        pool_put_free(req, false);
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
    if (FCGX_Init() != 0 || install_signals() < 0) {
        fputs("sse-fcgi: cannot initialise libfcgi or signals\n", stderr);
        return 1;
    }
    return FCGX_IsCGI() ? serve_cgi() : serve_fastcgi(cfg.threads);
}
