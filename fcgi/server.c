/*
 * server.c - the process's requests: accepting, stream slots, the line of requests waiting
 * for one, and shutdown.
 *
 * FastCGI: two threads, whatever the number of streams. The accepting thread (the caller's)
 * runs libfcgi's FCGX_Accept_r and reads each request's head (conn_accept_fastcgi), then
 * posts the conn to the loop; it never waits for anything else (issue 11: when the
 * accepting thread waited for slots, the 40th request waited 9.9 s). The loop's thread
 * does the rest (stream.h): every stream, every quick answer, every refusal.
 *
 * Slots: SSE_THREADS is the number of streams one process serves at once (the name is
 * from when each was a thread; 1 under mod_fcgid, which sends a process one request at a
 * time). A request that may stream and finds every slot taken waits in a line up to
 * SLOT_WAIT_MS for one to be freed, then is refused busy (SPEC §4.12). The wait is for
 * mod_fcgid, which returns a process to its pool as soon as Apache sees the client gone, a
 * few ms before the stream itself notices and frees its slot; lighttpd would otherwise
 * queue the request silently (DEPLOY-NOTES §6). Health and every other request that
 * streams nothing need no slot.
 *
 * Shutdown (SPEC §4.11): SIGTERM makes shutdown_fd readable; the loop ends every stream
 * with reason=shutdown, refuses what waits, and stops once every response is written or
 * SHUTDOWN_GRACE_MS have passed. libfcgi's accept gives up (FCGX_ShutdownPending, main.c).
 */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "request.h"

enum {
    SLOT_WAIT_MS = 250,
    /* Requests waiting for a slot. More than 64 arriving within 250 ms while every slot
     * streams is a flood; those past it are refused at once, which is what waiting would
     * almost surely have given them. */
    WAITING_MAX = 64,
    SHUTDOWN_GRACE_MS = 800,          /* streams end, then the process exits (SPEC §4.11) */
    LOOP_STACK_BYTES = 512 * 1024,    /* cJSON recursion on deeply nested data fits */
};

struct waiting {
    struct conn *conn;
    int64_t until_ms;
};

/* The process's one server; everything but the hand-off belongs to the loop's thread. */
static struct server {
    struct loop loop;
    struct request_shared shared;
    long slots, slots_used;
    struct waiting line[WAITING_MAX];  /* a FIFO ring */
    size_t line_head, line_count;
    struct loop_timer line_timer;      /* the oldest waiting request's SLOT_WAIT_MS */
    bool is_taking_from_line;          /* take_from_line is running (it may nest) */
    struct loop_io shutdown_io;
    struct loop_timer grace_timer;
    struct loop_task stop_task;        /* accept failed: stop as for SIGTERM */
    bool is_cgi;
} server;

static void
arm_line_timer(void)
{
    if (server.line_count > 0)
        loop_timer_arm(&server.loop, &server.line_timer, server.line[server.line_head].until_ms);
    else
        loop_timer_disarm(&server.loop, &server.line_timer);
}

static struct conn *
line_pop(void)
{
    struct conn *conn = server.line[server.line_head].conn;
    server.line_head = (server.line_head + 1) % WAITING_MAX;
    server.line_count--;
    return conn;
}

/* Starts the waiting requests while slots are free. */
static void
take_from_line(void)
{
    if (server.is_taking_from_line)
        return;  /* a request started below ended at once: the outer loop goes on */
    server.is_taking_from_line = true;
    while (server.line_count > 0 && server.slots_used < server.slots) {
        server.slots_used++;
        request_serve(line_pop(), &server.shared, true);
    }
    server.is_taking_from_line = false;
    arm_line_timer();
}

/* Refuses every waiting request whose SLOT_WAIT_MS are up. */
static void
on_line_due(struct loop_timer *t)
{
    (void)t;
    int64_t now = loop_clock_ms();
    while (server.line_count > 0 && server.line[server.line_head].until_ms <= now)
        request_reject_busy(line_pop(), &server.shared);
    arm_line_timer();
}

static void
stop_if_idle(void)
{
    if (atomic_load(&server.shared.is_shutting_down) && server.shared.open_count == 0)
        loop_stop(&server.loop);
}

/* A request was freed (stream_shared.on_done). */
static void
on_request_done(struct request_shared *shared, bool had_slot)
{
    (void)shared;
    server.slots_used -= had_slot;
    if (server.is_cgi && shared->open_count == 0)
        loop_stop(&server.loop);
    if (!atomic_load(&server.shared.is_shutting_down))
        take_from_line();
    stop_if_idle();
}

/* An accepted request, posted by the accepting thread. */
static void
on_handoff(struct loop_task *t)
{
    struct conn *conn = (struct conn *)((char *)t - offsetof(struct conn, handoff));
    if (atomic_load(&server.shared.is_shutting_down)) {
        request_reject_busy(conn, &server.shared);
    } else if (!request_needs_slot(conn)) {
        request_serve(conn, &server.shared, false);
    } else if (server.slots_used < server.slots) {
        server.slots_used++;
        request_serve(conn, &server.shared, true);
    } else if (server.line_count < WAITING_MAX) {
        size_t tail = (server.line_head + server.line_count++) % WAITING_MAX;
        server.line[tail] = (struct waiting){conn, loop_clock_ms() + SLOT_WAIT_MS};
        if (server.line_count == 1)
            arm_line_timer();
    } else {
        request_reject_busy(conn, &server.shared);  /* answered now, without waiting */
    }
}

static void
on_grace_due(struct loop_timer *t)
{
    (void)t;
    loop_stop(&server.loop);
}

/* SIGTERM (or a failed accept): every stream ends, what waits is refused. */
static void
begin_shutdown(void)
{
    if (atomic_exchange(&server.shared.is_shutting_down, true))
        return;
    if (server.shutdown_io.fd >= 0)
        loop_io_remove(&server.loop, &server.shutdown_io);
    while (server.line_count > 0)
        request_reject_busy(line_pop(), &server.shared);
    arm_line_timer();
    request_shutdown_all(&server.shared);
    loop_timer_arm(&server.loop, &server.grace_timer, loop_clock_ms() + SHUTDOWN_GRACE_MS);
    stop_if_idle();
}

static void
on_shutdown_readable(struct loop_io *io, uint32_t events)
{
    (void)io;
    (void)events;
    begin_shutdown();
}

static void
on_stop_task(struct loop_task *t)
{
    (void)t;
    begin_shutdown();
}

static int
server_init(const struct config *process, int shutdown_fd, bool is_cgi)
{
    int rc = loop_init(&server.loop);
    if (rc < 0)
        return rc;
    server.is_cgi = is_cgi;
    server.slots = is_cgi ? 1 : process->threads;
    server.shared.loop = &server.loop;
    server.shared.shutdown_fd = shutdown_fd;
    server.shared.process = *process;
    server.shared.on_done = on_request_done;
    server.line_timer.on_due = on_line_due;
    server.grace_timer.on_due = on_grace_due;
    server.stop_task.run = on_stop_task;
    server.shutdown_io = (struct loop_io){.fd = shutdown_fd, .on_event = on_shutdown_readable};
    if (shutdown_fd >= 0 && (rc = loop_io_add(&server.loop, &server.shutdown_io, EPOLLIN)) < 0)
        return rc;
    return 0;
}

static void *
loop_thread(void *unused)
{
    (void)unused;
    loop_run(&server.loop);
    return NULL;
}

/* Starts the loop's thread with the shutdown signals blocked, so that they interrupt the
 * accepting thread's accept() (and every thread the loop's thread starts, the hub's,
 * inherits the mask). Returns 0, or an errno. */
static int
start_loop_thread(pthread_t *thread)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, LOOP_STACK_BYTES);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(thread, &attr, loop_thread, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

int
server_run_fastcgi(const struct config *process, int shutdown_fd)
{
    pthread_t thread;
    int rc = server_init(process, shutdown_fd, false);
    if (rc < 0 || (rc = -start_loop_thread(&thread)) < 0) {
        log_line(LOG_LEVEL_ERROR, "error cannot start the event loop: %s", strerror(-rc));
        return 1;
    }
    log_line(LOG_LEVEL_INFO, "started mode=fastcgi slots=%ld pid=%ld", server.slots,
             (long)getpid());
    for (;;) {
        struct conn *conn = conn_accept_fastcgi(&rc);
        if (conn != NULL) {
            conn->handoff.run = on_handoff;
            loop_post(&server.loop, &conn->handoff);
        } else if (rc != -ENOMEM) {
            break;
        }
    }
    struct pollfd signalled = {.fd = shutdown_fd, .events = POLLIN};
    if (poll(&signalled, 1, 0) <= 0) {  /* not SIGTERM's doing */
        log_line(LOG_LEVEL_ERROR, "error accept failed; exiting");
        loop_post(&server.loop, &server.stop_task);
    }
    pthread_join(thread, NULL);
    return 0;
}

int
server_run_cgi(const struct config *process, int shutdown_fd)
{
    struct conn *conn;
    if (server_init(process, shutdown_fd, true) < 0 || (conn = conn_cgi()) == NULL) {
        fputs("sse-fcgi: cannot start the event loop\n", stderr);
        return 1;
    }
    server.slots_used = 1;
    request_serve(conn, &server.shared, true);
    if (server.shared.open_count > 0)
        loop_run(&server.loop);
    return 0;
}
