/*
 * test_loop.c - the event loop (fcgi/loop.h): its timer heap, its tasks and its descriptors.
 *
 * Covers: 500 timers armed in a shuffled order fire in due order, also with some moved
 * earlier, later and disarmed on the way; a timer that re-arms itself; a task posted from
 * another thread wakes a sleeping loop_run, posted twice runs once, cancelled never runs; a
 * deferred task runs after the ones queued before it and never in the turn that queued it;
 * a readable pipe reaches its loop_io, a hang-up too.
 */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "fcgi/loop.h"

enum { TIMERS = 500 };

static struct loop test_loop;
static int64_t fired[TIMERS];
static size_t fired_count;

struct numbered_timer {
    struct loop_timer t;
    int64_t due;
};

static void
record_fired(struct loop_timer *t)
{
    fired[fired_count++] = t->due_ms;
    if (fired_count == TIMERS || test_loop.heap_count == 0)
        loop_stop(&test_loop);
}

static void
setup(void)
{
    ck_assert_int_eq(loop_init(&test_loop), 0);
    fired_count = 0;
}

static void
teardown(void)
{
    loop_release(&test_loop);
}

START_TEST(test_timers_fire_in_due_order)
{
    static struct numbered_timer timers[TIMERS];
    int64_t base = loop_clock_ms() - 1000;  /* every one already due: no sleeping */
    srand(13);
    for (size_t i = 0; i < TIMERS; i++)
        timers[i] = (struct numbered_timer){.t = {.on_due = record_fired},
                                            .due = base + rand() % 900};
    for (size_t i = 0; i < TIMERS; i++)
        loop_timer_arm(&test_loop, &timers[i].t, timers[i].due);
    /* moved earlier, moved later, disarmed, armed again */
    for (size_t i = 0; i < TIMERS; i += 7)
        loop_timer_arm(&test_loop, &timers[i].t, timers[i].due - 50);
    for (size_t i = 3; i < TIMERS; i += 11)
        loop_timer_arm(&test_loop, &timers[i].t, timers[i].due + 40);
    size_t disarmed = 0;
    for (size_t i = 5; i < TIMERS; i += 13, disarmed++)
        loop_timer_disarm(&test_loop, &timers[i].t);
    ck_assert_uint_eq(test_loop.heap_count, TIMERS - disarmed);
    loop_timer_disarm(&test_loop, &timers[5].t);  /* twice: a no-op */
    ck_assert_uint_eq(test_loop.heap_count, TIMERS - disarmed);
    loop_run(&test_loop);
    ck_assert_uint_eq(fired_count, TIMERS - disarmed);
    for (size_t i = 1; i < fired_count; i++)
        ck_assert_int_le(fired[i - 1], fired[i]);
    for (size_t i = 0; i < TIMERS; i++)
        ck_assert_uint_eq(timers[i].t.heap_slot, 0);
}
END_TEST

static int rearm_left;

static void
rearm_self(struct loop_timer *t)
{
    if (--rearm_left > 0)
        loop_timer_arm(&test_loop, t, loop_clock_ms() + 1);
    else
        loop_stop(&test_loop);
}

/* A timer arms itself again from on_due; the loop sleeps in between, without spinning. */
START_TEST(test_timer_rearms_itself)
{
    struct loop_timer t = {.on_due = rearm_self};
    rearm_left = 20;
    int64_t start = loop_clock_ms();
    loop_timer_arm(&test_loop, &t, start + 1);
    loop_run(&test_loop);
    ck_assert_int_eq(rearm_left, 0);
    ck_assert_int_ge(loop_clock_ms() - start, 20);
}
END_TEST

static int runs;

static void
count_run(struct loop_task *t)
{
    (void)t;
    runs++;
}

static void
stop_task(struct loop_task *t)
{
    (void)t;
    loop_stop(&test_loop);
}

static struct loop_task counted = {.run = count_run}, stopper = {.run = stop_task};

static void *
post_later(void *unused)
{
    (void)unused;
    nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
    loop_post(&test_loop, &counted);
    loop_post(&test_loop, &stopper);
    return NULL;
}

/* loop_run sleeps with nothing to do (no timer); another thread's post wakes it. (A second
 * post from here could come after the woken loop ran the first, and then rightly runs
 * again: the double post is its own test, below, with both posts before the loop runs.) */
START_TEST(test_post_from_another_thread_wakes_the_loop)
{
    runs = 0;
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, post_later, NULL), 0);
    loop_run(&test_loop);
    pthread_join(thread, NULL);
    ck_assert_int_eq(runs, 1);
    ck_assert(!counted.is_queued);
}
END_TEST

/* A task posted again while it is still queued runs once. */
START_TEST(test_double_post_runs_once)
{
    runs = 0;
    loop_post(&test_loop, &counted);
    loop_post(&test_loop, &counted);
    loop_post(&test_loop, &stopper);
    loop_run(&test_loop);
    ck_assert_int_eq(runs, 1);
    ck_assert(!counted.is_queued);
}
END_TEST

START_TEST(test_cancelled_task_never_runs)
{
    runs = 0;
    loop_post(&test_loop, &counted);
    loop_task_cancel(&test_loop, &counted);
    loop_task_cancel(&test_loop, &counted);  /* not queued: a no-op */
    loop_post(&test_loop, &stopper);
    loop_run(&test_loop);
    ck_assert_int_eq(runs, 0);
}
END_TEST

static int order[8], order_count;

struct ordered_task {
    struct loop_task t;
    int number;
    bool defers;
};

static struct ordered_task ordered[3];

static void
note_order(struct loop_task *t)
{
    struct ordered_task *o = (struct ordered_task *)t;
    order[order_count++] = o->number;
    if (o->defers) {
        o->defers = false;
        loop_defer(&test_loop, t);  /* runs again, after the others, in the next turn */
    }
    if (order_count == 4)
        loop_stop(&test_loop);
}

START_TEST(test_deferred_task_runs_after_the_others)
{
    order_count = 0;
    for (int i = 0; i < 3; i++) {
        ordered[i] = (struct ordered_task){.t = {.run = note_order}, .number = i,
                                           .defers = i == 0};
        loop_defer(&test_loop, &ordered[i].t);
    }
    loop_run(&test_loop);
    ck_assert_int_eq(order_count, 4);
    ck_assert_int_eq(order[0], 0);
    ck_assert_int_eq(order[1], 1);
    ck_assert_int_eq(order[2], 2);
    ck_assert_int_eq(order[3], 0);
}
END_TEST

static uint32_t seen_events;

static void
note_events(struct loop_io *io, uint32_t events)
{
    seen_events |= events;
    char byte;
    if (read(io->fd, &byte, 1) <= 0)
        loop_io_remove(&test_loop, io);
    loop_stop(&test_loop);
}

START_TEST(test_readable_pipe_and_hang_up)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    struct loop_io io = {.fd = fds[0], .on_event = note_events};
    ck_assert_int_eq(loop_io_add(&test_loop, &io, EPOLLIN), 0);
    ck_assert_int_eq(loop_io_modify(&test_loop, &io, EPOLLIN), 0);  /* unchanged: no-op */
    ck_assert_int_eq(write(fds[1], "x", 1), 1);
    seen_events = 0;
    loop_run(&test_loop);
    ck_assert(seen_events & EPOLLIN);
    test_loop.is_stopping = false;
    close(fds[1]);
    seen_events = 0;
    loop_run(&test_loop);
    ck_assert(seen_events & EPOLLHUP);
    close(fds[0]);
}
END_TEST

Suite *suite_loop(void);

Suite *
suite_loop(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tcase_create("loop");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_timers_fire_in_due_order);
    tcase_add_test(tc, test_timer_rearms_itself);
    tcase_add_test(tc, test_post_from_another_thread_wakes_the_loop);
    tcase_add_test(tc, test_double_post_runs_once);
    tcase_add_test(tc, test_cancelled_task_never_runs);
    tcase_add_test(tc, test_deferred_task_runs_after_the_others);
    tcase_add_test(tc, test_readable_pipe_and_hang_up);
    suite_add_tcase(s, tc);
    return s;
}
