/*
 * test_filter.c - the stream policy: default set, explicit types, types=*, the worker rule
 * with and without watch= (SPEC §4.5), replay eligibility (§4.2), shedding (§4.8).
 */
#include <check.h>
#include <string.h>

#include "fcgi/filter.h"

/* Sorted by name, as store_policy_load returns it. */
static const struct event_type_policy POLICY[] = {
    {"client_output_delta", true, true, false, false},
    {"execution_completed", true, false, true, true},
    {"execution_started", true, true, true, false},
    {"llm_reasoning_delta", false, false, false, false},
    {"llm_text_delta", true, false, false, false},
    {"subagent_report", true, false, false, true},
};
enum { POLICY_COUNT = sizeof(POLICY) / sizeof(POLICY[0]) };

static struct event
make_event(const char *type, const char *stream_id)
{
    return (struct event){.id = 10, .type = type, .stream_id = stream_id};
}

static void
init(struct filter *f, const char *const *names, size_t n, bool *is_unknown)
{
    struct filter_request req = {.type_names = names, .type_count = n, .has_worker_rule = true};
    ck_assert_int_eq(filter_init(f, POLICY, POLICY_COUNT, &req, is_unknown), 0);
}

START_TEST(test_default_set)
{
    struct filter f;
    init(&f, NULL, 0, NULL);
    ck_assert_uint_eq(f.requested_count, 5);
    struct event e = make_event("llm_reasoning_delta", NULL);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SKIP_TYPE);
    e = make_event("llm_text_delta", NULL);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SEND);
    e = make_event("not_in_table", NULL);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SKIP_TYPE);
    filter_release(&f);
    filter_release(NULL);
}
END_TEST

START_TEST(test_explicit_and_unknown_types)
{
    const char *names[] = {"llm_reasoning_delta", "bogus", "client_output_delta"};
    bool is_unknown[3] = {true, false, true};
    struct filter f;
    init(&f, names, 3, is_unknown);
    ck_assert(!is_unknown[0] && is_unknown[1] && !is_unknown[2]);
    ck_assert_uint_eq(f.requested_count, 2);
    struct event e = make_event("llm_reasoning_delta", NULL);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SEND);
    e = make_event("llm_text_delta", NULL);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SKIP_TYPE);
    filter_release(&f);
    const char *unknown_only[] = {"bogus", ""};
    init(&f, unknown_only, 2, NULL);
    ck_assert_uint_eq(f.requested_count, 5);  /* all unknown: the default set */
    filter_release(&f);
}
END_TEST

START_TEST(test_all_types)
{
    struct filter_request req = {.has_all_types = true};
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, NULL), 0);
    struct event e = make_event("not_in_table", NULL);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SEND);
    e = make_event("llm_reasoning_delta", NULL);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SEND);
    ck_assert_int_eq(filter_check(&f, &e, true, 0), FILTER_SKIP_TYPE);  /* not replayed */
    filter_release(&f);
}
END_TEST

static const struct {
    const char *type;
    const char *stream_id;
    const char *watch;          /* one entry, "*" or NULL */
    bool has_worker_rule;
    enum filter_verdict verdict;
} WORKER_RULE[] = {
    {"llm_text_delta", "worker:abc", NULL, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker", NULL, true, FILTER_SKIP_WORKER},
    {"subagent_report", "worker:abc", NULL, true, FILTER_SEND},
    {"execution_completed", "worker:abc", NULL, true, FILTER_SEND},
    {"llm_text_delta", "worker:abc", "worker:abc", true, FILTER_SEND},
    {"llm_text_delta", "worker:xyz", "worker:abc", true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker", "worker", true, FILTER_SEND},
    {"llm_text_delta", "worker:abc", "*", true, FILTER_SEND},
    {"llm_text_delta", "workers:abc", NULL, true, FILTER_SEND},
    {"llm_text_delta", "xworker:abc", NULL, true, FILTER_SEND},
    {"llm_text_delta", NULL, NULL, true, FILTER_SEND},
    {"llm_text_delta", "worker:abc", NULL, false, FILTER_SEND},
};

START_TEST(test_worker_rule)
{
    const char *watch[1] = {WORKER_RULE[_i].watch};
    bool is_all = watch[0] != NULL && strcmp(watch[0], "*") == 0;
    struct filter_request req = {
        .watch = watch, .watch_count = watch[0] != NULL && !is_all, .has_watch_all = is_all,
        .has_worker_rule = WORKER_RULE[_i].has_worker_rule,
    };
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, NULL), 0);
    struct event e = make_event(WORKER_RULE[_i].type, WORKER_RULE[_i].stream_id);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), WORKER_RULE[_i].verdict);
    filter_release(&f);
}
END_TEST

START_TEST(test_replay_and_shedding)
{
    struct filter_request req = {.max_lag = 100};
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, NULL), 0);
    struct event delta = make_event("client_output_delta", NULL);
    struct event text = make_event("llm_text_delta", NULL);
    struct event started = make_event("execution_started", NULL);
    ck_assert_int_eq(filter_check(&f, &delta, true, 0), FILTER_SEND);
    ck_assert_int_eq(filter_check(&f, &text, true, 0), FILTER_SKIP_TYPE);
    ck_assert_int_eq(filter_check(&f, &text, false, 100), FILTER_SEND);
    ck_assert_int_eq(filter_check(&f, &text, false, 101), FILTER_SHED);
    ck_assert_int_eq(filter_check(&f, &started, false, 1000000), FILTER_SEND);
    f.max_lag = 0;
    ck_assert_int_eq(filter_check(&f, &text, false, INT64_MAX), FILTER_SEND);
    filter_release(&f);
}
END_TEST

START_TEST(test_find_type)
{
    ck_assert_ptr_eq(filter_find_type(POLICY, POLICY_COUNT, "subagent_report"), &POLICY[5]);
    ck_assert_ptr_eq(filter_find_type(POLICY, POLICY_COUNT, "client_output_delta"), &POLICY[0]);
    ck_assert_ptr_null(filter_find_type(POLICY, POLICY_COUNT, "zzz"));
    ck_assert_ptr_null(filter_find_type(POLICY, POLICY_COUNT, NULL));
    ck_assert_ptr_null(filter_find_type(NULL, 0, "a"));
    ck_assert(!filter_is_worker_stream(NULL));
    ck_assert(filter_is_worker_stream("worker:"));
}
END_TEST

Suite *suite_filter(void);

Suite *
suite_filter(void)
{
    Suite *s = suite_create("filter");
    TCase *tc = tcase_create("filter");
    tcase_add_test(tc, test_default_set);
    tcase_add_test(tc, test_explicit_and_unknown_types);
    tcase_add_test(tc, test_all_types);
    tcase_add_loop_test(tc, test_worker_rule, 0,
                        (int)(sizeof(WORKER_RULE) / sizeof(WORKER_RULE[0])));
    tcase_add_test(tc, test_replay_and_shedding);
    tcase_add_test(tc, test_find_type);
    suite_add_tcase(s, tc);
    return s;
}
