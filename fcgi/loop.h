/*
 * loop.h - one epoll loop per process: descriptors, timers and tasks (issue 13).
 *
 * Every stream of a process lives in this loop's thread: its socket is a loop_io, its next
 * deadline (keepalive, probe, end, a slow client) one loop_timer, and the hub's wakeup of it a
 * loop_task that another thread posts. Nothing here knows of FastCGI or SSE.
 *
 * Timers are a binary min-heap: arming, moving and disarming cost O(log n), and the loop sleeps
 * exactly until the earliest one, so an idle stream costs nothing between its deadlines. A
 * caller that resets a deadline often (a keepalive after every write) leaves its timer where
 * it was and moves it when it fires ("lazy"), so a busy stream touches the heap once per
 * keepalive period, not once per write.
 *
 * Tasks posted from other threads go into a list under a mutex; the first one into an empty
 * list writes the loop's eventfd. So a round of the hub that wakes 1,000 streams costs the
 * loop one wakeup and the hub 1,000 list insertions, not 1,000 eventfd writes.
 *
 * Only loop_post and loop_task_cancel may be called from another thread; everything else
 * belongs to the loop's thread.
 */
#ifndef SSE_LOOP_H
#define SSE_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* A descriptor in the loop; on_event gets epoll's event bits. */
struct loop_io {
    int fd;
    uint32_t events;                    /* what it is registered for now */
    void (*on_event)(struct loop_io *io, uint32_t events);
};

struct loop_timer {
    int64_t due_ms;                     /* on loop_now_ms's clock */
    size_t heap_slot;                   /* the loop's: index + 1 in the heap, 0 = not armed */
    void (*on_due)(struct loop_timer *t);
};

/* Work handed to the loop's thread, from any thread (loop_post) or from itself (loop_defer). */
struct loop_task {
    struct loop_task *prev, *next;      /* the loop's */
    bool is_queued;                     /* the loop's, under its lock */
    void (*run)(struct loop_task *t);
};

struct loop {
    int epoll_fd;
    int wake_fd;                        /* eventfd: tasks were posted */
    bool is_stopping;
    int64_t now_ms;                     /* the clock, read once per turn */
    struct loop_timer **heap;
    size_t heap_count, heap_cap;
    pthread_mutex_t lock;               /* guards the task list and every is_queued */
    struct loop_task *first, *last;
};

/* Creates the epoll and eventfd descriptors. Returns 0, or -errno. */
int loop_init(struct loop *l);

/* Closes them and frees the heap; what is still registered is the caller's. */
void loop_release(struct loop *l);

/* Adds io->fd for events (EPOLLIN, EPOLLOUT, EPOLLRDHUP; errors and hang-ups always come).
 * Returns 0, or -errno (EPERM: a file epoll cannot watch, such as a regular file). */
int loop_io_add(struct loop *l, struct loop_io *io, uint32_t events);

/* Changes what io waits for; a no-op when it is already that. Returns 0, or -errno. */
int loop_io_modify(struct loop *l, struct loop_io *io, uint32_t events);

/* Removes io->fd (before the caller closes it). */
void loop_io_remove(struct loop *l, struct loop_io *io);

/* Arms t for due_ms, or moves it there when armed. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, int64_t due_ms);

void loop_timer_disarm(struct loop *l, struct loop_timer *t);

/* Queues t to run in the loop's thread, once however often it is posted before it runs.
 * Thread-safe; wakes the loop. */
void loop_post(struct loop *l, struct loop_task *t);

/* loop_post from the loop's own thread: t runs after what is queued now, this turn. */
void loop_defer(struct loop *l, struct loop_task *t);

/* Takes t off the queue if it is on it, so that it does not run. Thread-safe. */
void loop_task_cancel(struct loop *l, struct loop_task *t);

/* Runs until loop_stop: events, then due timers, then tasks, each turn. */
void loop_run(struct loop *l);

/* Makes loop_run return after the current turn. The loop's thread. */
void loop_stop(struct loop *l);

/* Milliseconds on the monotonic clock, as of the start of this turn of the loop. */
int64_t loop_now_ms(const struct loop *l);

/* The monotonic clock now (for a caller that needs a fresh reading). */
int64_t loop_clock_ms(void);

#endif
