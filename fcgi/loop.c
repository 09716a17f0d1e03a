/*
 * loop.c - the epoll loop: descriptors, a min-heap of timers, and a queue of tasks.
 */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum { EVENTS_PER_WAIT = 256 };

int64_t
loop_clock_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int64_t
loop_now_ms(const struct loop *l)
{
    return l->now_ms;
}

/* The eventfd is registered with a NULL loop_io: its events mean "tasks were posted". */
int
loop_init(struct loop *l)
{
    *l = (struct loop){.epoll_fd = -1, .wake_fd = -1, .now_ms = loop_clock_ms()};
    pthread_mutex_init(&l->lock, NULL);
    l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (l->epoll_fd < 0 || l->wake_fd < 0
        || epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->wake_fd, &ev) < 0) {
        int rc = -errno;
        loop_release(l);
        return rc;
    }
    return 0;
}

void
loop_release(struct loop *l)
{
    if (l->epoll_fd >= 0)
        close(l->epoll_fd);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    l->epoll_fd = l->wake_fd = -1;
    free(l->heap);
    l->heap = NULL;
    l->heap_count = l->heap_cap = 0;
    pthread_mutex_destroy(&l->lock);
}

/* ---- descriptors -------------------------------------------------------------------- */

int
loop_io_add(struct loop *l, struct loop_io *io, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
        return -errno;
    io->events = events;
    return 0;
}

int
loop_io_modify(struct loop *l, struct loop_io *io, uint32_t events)
{
    if (io->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epoll_fd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    io->events = events;
    return 0;
}

void
loop_io_remove(struct loop *l, struct loop_io *io)
{
    epoll_ctl(l->epoll_fd, EPOLL_CTL_DEL, io->fd, NULL);
}

/* ---- timers: a binary min-heap on due_ms; heap_slot is the index + 1 ---------------- */

static void
heap_place(struct loop *l, size_t i, struct loop_timer *t)
{
    l->heap[i] = t;
    t->heap_slot = i + 1;
}

static void
sift_up(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    while (i > 0 && l->heap[(i - 1) / 2]->due_ms > t->due_ms) {
        heap_place(l, i, l->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_place(l, i, t);
}

static void
sift_down(struct loop *l, size_t i)
{
    struct loop_timer *t = l->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= l->heap_count)
            break;
        if (child + 1 < l->heap_count && l->heap[child + 1]->due_ms < l->heap[child]->due_ms)
            child++;
        if (l->heap[child]->due_ms >= t->due_ms)
            break;
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

void
loop_timer_arm(struct loop *l, struct loop_timer *t, int64_t due_ms)
{
    if (t->heap_slot != 0) {
        int64_t was = t->due_ms;
        t->due_ms = due_ms;
        if (due_ms < was)
            sift_up(l, t->heap_slot - 1);
        else if (due_ms > was)
            sift_down(l, t->heap_slot - 1);
        return;
    }
    if (l->heap_count == l->heap_cap) {
        size_t cap = l->heap_cap ? 2 * l->heap_cap : 64;
        struct loop_timer **grown = realloc(l->heap, cap * sizeof(*grown));
        if (grown == NULL)
            return;  /* unarmed: its owner is woken by its socket or the hub only */
        l->heap = grown;
        l->heap_cap = cap;
    }
    t->due_ms = due_ms;
    l->heap[l->heap_count++] = t;
    sift_up(l, l->heap_count - 1);
}

void
loop_timer_disarm(struct loop *l, struct loop_timer *t)
{
    if (t->heap_slot == 0)
        return;
    size_t i = t->heap_slot - 1;
    t->heap_slot = 0;
    struct loop_timer *last = l->heap[--l->heap_count];
    if (i == l->heap_count)
        return;
    heap_place(l, i, last);
    sift_up(l, i);
    sift_down(l, last->heap_slot - 1);
}

/* Runs every timer due by now. A timer may arm itself or others again from on_due. */
static void
run_due_timers(struct loop *l)
{
    while (l->heap_count > 0 && l->heap[0]->due_ms <= l->now_ms) {
        struct loop_timer *t = l->heap[0];
        loop_timer_disarm(l, t);
        t->on_due(t);
    }
}

/* ---- tasks -------------------------------------------------------------------------- */

/* Appends t to the queue, once. Returns whether the queue was empty. Under l->lock. */
static bool
enqueue(struct loop *l, struct loop_task *t)
{
    if (t->is_queued)
        return false;
    bool was_empty = l->first == NULL;
    t->is_queued = true;
    t->next = NULL;
    t->prev = l->last;
    if (l->last != NULL)
        l->last->next = t;
    else
        l->first = t;
    l->last = t;
    return was_empty;
}

static void
unlink_task(struct loop *l, struct loop_task *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        l->first = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        l->last = t->prev;
    t->prev = t->next = NULL;
    t->is_queued = false;
}

void
loop_post(struct loop *l, struct loop_task *t)
{
    pthread_mutex_lock(&l->lock);
    bool was_empty = enqueue(l, t);
    pthread_mutex_unlock(&l->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t n = write(l->wake_fd, &one, sizeof(one));
        (void)n;  /* EAGAIN: the counter is full, so the loop is awake anyway */
    }
}

void
loop_defer(struct loop *l, struct loop_task *t)
{
    pthread_mutex_lock(&l->lock);
    enqueue(l, t);
    pthread_mutex_unlock(&l->lock);
}

void
loop_task_cancel(struct loop *l, struct loop_task *t)
{
    pthread_mutex_lock(&l->lock);
    if (t->is_queued)
        unlink_task(l, t);
    pthread_mutex_unlock(&l->lock);
}

/* Runs the tasks queued when it began; those queued meanwhile wait for the next turn, so a
 * task that defers itself cannot starve the descriptors. */
static void
run_tasks(struct loop *l)
{
    pthread_mutex_lock(&l->lock);
    struct loop_task *end = l->last;
    while (l->first != NULL) {
        struct loop_task *t = l->first;
        bool is_last = t == end;
        unlink_task(l, t);
        pthread_mutex_unlock(&l->lock);
        t->run(t);
        pthread_mutex_lock(&l->lock);
        if (is_last)
            break;
    }
    pthread_mutex_unlock(&l->lock);
}

static bool
has_tasks(struct loop *l)
{
    pthread_mutex_lock(&l->lock);
    bool has = l->first != NULL;
    pthread_mutex_unlock(&l->lock);
    return has;
}

/* How long epoll may sleep: until the earliest timer, not at all when tasks wait. */
static int
wait_timeout(struct loop *l)
{
    if (has_tasks(l))
        return 0;
    if (l->heap_count == 0)
        return -1;
    int64_t wait = l->heap[0]->due_ms - loop_clock_ms();
    return wait <= 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait;
}

void
loop_run(struct loop *l)
{
    struct epoll_event events[EVENTS_PER_WAIT];
    while (!l->is_stopping) {
        int n = epoll_wait(l->epoll_fd, events, EVENTS_PER_WAIT, wait_timeout(l));
        l->now_ms = loop_clock_ms();
        for (int i = 0; i < n; i++) {
            struct loop_io *io = events[i].data.ptr;
            if (io == NULL) {
                uint64_t count;
                ssize_t got = read(l->wake_fd, &count, sizeof(count));
                (void)got;
                continue;
            }
            io->on_event(io, events[i].events);
        }
        run_due_timers(l);
        run_tasks(l);
    }
    for (int i = 0; i < 8 && has_tasks(l); i++)
        run_tasks(l);  /* what the last turn deferred: frees, mostly */
}

void
loop_stop(struct loop *l)
{
    l->is_stopping = true;
}
