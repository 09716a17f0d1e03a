/*
 * test_hub_counts.c - the host-wide subscriber counts the leader keeps in the shared file
 * (store/hub_file.c), on a header in plain memory: what /api/health's "subscribers" and
 * "session_subscribers" read.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/hub_internal.h"

/* A leader's hub whose shared header is h->shared (calloc'd). */
static struct hub *
leader_hub(void)
{
    struct hub *h = calloc(1, sizeof(*h));
    ck_assert_ptr_nonnull(h);
    h->shared = calloc(1, sizeof(*h->shared));
    ck_assert_ptr_nonnull(h->shared);
    atomic_init(&h->role, HUB_ROLE_LEADER);
    return h;
}

static void
free_hub(struct hub *h)
{
    free(h->shared);
    free(h);
}

static void
change(struct hub *h, const char *session, int64_t delta)
{
    struct hub_sub sub = {.scope = STORE_SCOPE_SESSION, .key = session};
    hub_file_count_change(h, &sub, delta);
}

START_TEST(test_counts_per_session_and_total)
{
    struct hub *h = leader_hub();
    change(h, "s1", 1);
    change(h, "s1", 1);
    change(h, "s2", 1);
    struct hub_sub global = {.scope = STORE_SCOPE_GLOBAL};
    hub_file_count_change(h, &global, 1);
    ck_assert_int_eq(hub_file_count_read(h->shared, "s1"), 2);
    ck_assert_int_eq(hub_file_count_read(h->shared, "s2"), 1);
    ck_assert_int_eq(hub_file_count_read(h->shared, "s3"), 0);
    ck_assert_int_eq(atomic_load(&h->shared->subscribers), 4);
    change(h, "s1", -1);
    ck_assert_int_eq(hub_file_count_read(h->shared, "s1"), 1);
    hub_file_counts_reset(h->shared);
    ck_assert_int_eq(hub_file_count_read(h->shared, "s1"), 0);
    ck_assert_int_eq(atomic_load(&h->shared->subscribers), 0);
    free_hub(h);
}
END_TEST

/* A leader lives as long as its process, and sessions come and go: a session nobody reads
 * any more gives its slot to the next (before, after 4,096 sessions had ever been read,
 * every new one read 0). */
START_TEST(test_slots_of_ended_sessions_are_reused)
{
    struct hub *h = leader_hub();
    char name[32];
    for (int i = 0; i < 3 * HUB_COUNT_SLOTS; i++) {
        snprintf(name, sizeof(name), "old-%d", i);
        change(h, name, 1);
        change(h, name, -1);
    }
    change(h, "new", 1);
    change(h, "new", 1);
    ck_assert_int_eq(hub_file_count_read(h->shared, "new"), 2);
    free_hub(h);
}
END_TEST

/* More sessions read at once than the table holds: the ones it could not count read as
 * unknown (-1), never as a wrong 0. */
START_TEST(test_full_table_says_unknown)
{
    struct hub *h = leader_hub();
    char name[32];
    for (int i = 0; i <= HUB_COUNT_SLOTS; i++) {
        snprintf(name, sizeof(name), "s-%d", i);
        change(h, name, 1);
    }
    int unknown = 0;
    for (int i = 0; i <= HUB_COUNT_SLOTS; i++) {
        snprintf(name, sizeof(name), "s-%d", i);
        long n = hub_file_count_read(h->shared, name);
        ck_assert(n == 1 || n == -1);
        unknown += n == -1;
    }
    ck_assert_int_eq(unknown, 1);
    ck_assert_int_eq(atomic_load(&h->shared->subscribers), HUB_COUNT_SLOTS + 1);
    free_hub(h);
}
END_TEST

Suite *suite_hub_counts(void);

Suite *
suite_hub_counts(void)
{
    Suite *s = suite_create("hub_counts");
    TCase *tc = tcase_create("hub_counts");
    tcase_add_test(tc, test_counts_per_session_and_total);
    tcase_add_test(tc, test_slots_of_ended_sessions_are_reused);
    tcase_add_test(tc, test_full_table_says_unknown);
    suite_add_tcase(s, tc);
    return s;
}
