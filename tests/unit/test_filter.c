/*
 * test_filter.c - the stream policy (fcgi/filter.h) over a small policy table: the default
 * set (no names, all-unknown names, with is_unknown[] reported), explicit types, types=*,
 * the worker rule with and without watch= (SPEC §4.5), "workers:x"/"xworker:" not being
 * worker streams, the rule switched off, replay eligibility (§4.2: replayed AND requested),
 * shedding under lag (§4.8: never for critical types, never with max_lag 0), the global
 * channel's open types (§3: every type without types=, unknown names matched as given), and
 * filter_find_type / filter_is_worker_stream on hits, misses and NULL.
 */
#include <check.h>
#include <string.h>

#include "fcgi/filter.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Sorted by name (strcmp), as the store returns it.
 *   name                  default replayed critical fanin */
static const struct event_type_policy POLICY[] = {
    {"client_output_delta", true, true, false, false},
    {"execution_completed", true, true, true, true},
    {"execution_started", true, false, true, false},
    {"llm_reasoning_delta", false, false, false, false},
    {"llm_text_delta", true, false, false, false},
    {"node_log", false, true, false, false},
    {"subagent_report", true, false, false, true},
};
enum { POLICY_COUNT = COUNT(POLICY), DEFAULT_COUNT = 5 };

static struct event
make_event(const char *type, const char *stream_id)
{
    return (struct event){
        .id = 10, .type = type, .type_len = type ? strlen(type) : 0,
        .stream_id = stream_id, .stream_id_len = stream_id ? strlen(stream_id) : 0,
    };
}

static enum filter_verdict
check_live(const struct filter *f, const char *type, const char *stream_id)
{
    struct event e = make_event(type, stream_id);
    return filter_check(f, &e, false, 0);
}

static void
init_types(struct filter *f, const char *const *names, size_t n, bool *is_unknown)
{
    struct filter_request req = {.type_names = names, .type_count = n, .has_worker_rule = true};
    ck_assert_int_eq(filter_init(f, POLICY, POLICY_COUNT, &req, is_unknown), 0);
}

/* Asserts the default set: streamed_by_default types pass, the others and unknown don't. */
static void
assert_default_set(const struct filter *f)
{
    ck_assert_uint_eq(f->requested_count, DEFAULT_COUNT);
    for (int i = 0; i < POLICY_COUNT; i++) {
        enum filter_verdict want = POLICY[i].is_streamed_by_default ? FILTER_SEND
                                                                    : FILTER_SKIP_TYPE;
        ck_assert_msg(check_live(f, POLICY[i].name, NULL) == want, "%s", POLICY[i].name);
    }
    ck_assert_int_eq(check_live(f, "not_in_table", NULL), FILTER_SKIP_TYPE);
    ck_assert_int_eq(check_live(f, "", NULL), FILTER_SKIP_TYPE);
}

START_TEST(test_default_set_without_names)
{
    struct filter f;
    init_types(&f, NULL, 0, NULL);
    assert_default_set(&f);
    filter_release(&f);
    filter_release(NULL);
}
END_TEST

START_TEST(test_default_set_when_all_unknown)
{
    const char *names[] = {"bogus", "", "LLM_TEXT_DELTA", "client_output_delta\n"};
    bool is_unknown[4] = {false, false, false, false};
    struct filter f;
    init_types(&f, names, 4, is_unknown);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(is_unknown[i], "names[%d] not reported unknown", i);
    assert_default_set(&f);
    filter_release(&f);
}
END_TEST

START_TEST(test_explicit_types)
{
    const char *names[] = {"llm_reasoning_delta", "bogus", "client_output_delta",
                           "llm_reasoning_delta"};
    bool is_unknown[4] = {true, false, true, true};
    struct filter f;
    init_types(&f, names, 4, is_unknown);
    ck_assert(!is_unknown[0] && is_unknown[1] && !is_unknown[2] && !is_unknown[3]);
    ck_assert_uint_eq(f.requested_count, 2);
    ck_assert_int_eq(check_live(&f, "llm_reasoning_delta", NULL), FILTER_SEND);
    ck_assert_int_eq(check_live(&f, "client_output_delta", NULL), FILTER_SEND);
    ck_assert_int_eq(check_live(&f, "llm_text_delta", NULL), FILTER_SKIP_TYPE);
    ck_assert_int_eq(check_live(&f, "execution_completed", NULL), FILTER_SKIP_TYPE);
    ck_assert_int_eq(check_live(&f, "bogus", NULL), FILTER_SKIP_TYPE);
    filter_release(&f);
}
END_TEST

START_TEST(test_all_types)
{
    struct filter_request req = {.has_all_types = true, .has_worker_rule = true};
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, NULL), 0);
    for (int i = 0; i < POLICY_COUNT; i++)
        ck_assert_int_eq(check_live(&f, POLICY[i].name, NULL), FILTER_SEND);
    ck_assert_int_eq(check_live(&f, "not_in_table", NULL), FILTER_SEND);
    ck_assert_int_eq(check_live(&f, "not_in_table", "worker:a"), FILTER_SKIP_WORKER);
    filter_release(&f);
}
END_TEST

START_TEST(test_empty_policy_table)
{
    struct filter_request req = {.has_worker_rule = true};
    struct filter f;
    ck_assert_int_eq(filter_init(&f, NULL, 0, &req, NULL), 0);
    ck_assert_uint_eq(f.requested_count, 0);
    ck_assert_int_eq(check_live(&f, "anything", NULL), FILTER_SKIP_TYPE);
    filter_release(&f);
}
END_TEST

static const struct {
    const char *type;
    const char *stream_id;
    const char *watch[3];       /* NULL-terminated; {"*"} means watch=* */
    bool has_worker_rule;
    enum filter_verdict verdict;
} WORKER_RULE[] = {
    {"llm_text_delta", "worker:abc", {NULL}, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker", {NULL}, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker:", {NULL}, true, FILTER_SKIP_WORKER},
    {"subagent_report", "worker:abc", {NULL}, true, FILTER_SEND},        /* fan-in */
    {"execution_completed", "worker", {NULL}, true, FILTER_SEND},        /* fan-in */
    {"llm_text_delta", "worker:abc", {"worker:abc"}, true, FILTER_SEND},
    {"llm_text_delta", "worker:abc", {"worker:x", "worker:abc"}, true, FILTER_SEND},
    {"llm_text_delta", "worker:xyz", {"worker:abc"}, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker:abcd", {"worker:abc"}, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker:ab", {"worker:abc"}, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker", {"worker"}, true, FILTER_SEND},
    {"llm_text_delta", "worker:abc", {"worker"}, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker", {"worker:abc"}, true, FILTER_SKIP_WORKER},
    {"llm_text_delta", "worker:abc", {"*"}, true, FILTER_SEND},
    {"llm_text_delta", "worker", {"*"}, true, FILTER_SEND},
    {"llm_text_delta", "workers:abc", {NULL}, true, FILTER_SEND},
    {"llm_text_delta", "xworker:abc", {NULL}, true, FILTER_SEND},
    {"llm_text_delta", "Worker:abc", {NULL}, true, FILTER_SEND},
    {"llm_text_delta", "workerx", {NULL}, true, FILTER_SEND},
    {"llm_text_delta", "queen", {NULL}, true, FILTER_SEND},
    {"llm_text_delta", "", {NULL}, true, FILTER_SEND},
    {"llm_text_delta", NULL, {NULL}, true, FILTER_SEND},
    {"llm_text_delta", "worker:abc", {NULL}, false, FILTER_SEND},
    {"llm_text_delta", "worker", {NULL}, false, FILTER_SEND},
    {"llm_reasoning_delta", "worker:abc", {"*"}, true, FILTER_SKIP_TYPE},
};

START_TEST(test_worker_rule)
{
    const char *const *watch = WORKER_RULE[_i].watch;
    bool is_all = watch[0] != NULL && strcmp(watch[0], "*") == 0;
    size_t n = 0;
    while (!is_all && n < 3 && watch[n] != NULL)
        n++;
    struct filter_request req = {
        .watch = watch, .watch_count = n, .has_watch_all = is_all,
        .has_worker_rule = WORKER_RULE[_i].has_worker_rule,
    };
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, NULL), 0);
    enum filter_verdict got = check_live(&f, WORKER_RULE[_i].type, WORKER_RULE[_i].stream_id);
    ck_assert_msg(got == WORKER_RULE[_i].verdict, "%s on %s: %d, want %d",
                  WORKER_RULE[_i].type, WORKER_RULE[_i].stream_id ? WORKER_RULE[_i].stream_id
                  : "(null)", got, WORKER_RULE[_i].verdict);
    filter_release(&f);
}
END_TEST

/* Replay (SPEC §4.2): a type is replayed when it is replayed=1 AND requested. */
static const struct {
    const char *types;          /* one requested type, or NULL for the default set */
    const char *type;
    enum filter_verdict verdict;
} REPLAY[] = {
    {NULL, "client_output_delta", FILTER_SEND},         /* default, replayed */
    {NULL, "execution_completed", FILTER_SEND},
    {NULL, "execution_started", FILTER_SKIP_TYPE},      /* default, not replayed */
    {NULL, "llm_text_delta", FILTER_SKIP_TYPE},
    {NULL, "node_log", FILTER_SKIP_TYPE},               /* replayed, not requested */
    {"node_log", "node_log", FILTER_SEND},              /* replayed and requested */
    {"node_log", "client_output_delta", FILTER_SKIP_TYPE},
    {"llm_reasoning_delta", "llm_reasoning_delta", FILTER_SKIP_TYPE},
    {NULL, "not_in_table", FILTER_SKIP_TYPE},
};

START_TEST(test_replay)
{
    const char *names[1] = {REPLAY[_i].types};
    struct filter f;
    init_types(&f, names, REPLAY[_i].types != NULL, NULL);
    struct event e = make_event(REPLAY[_i].type, NULL);
    ck_assert_msg(filter_check(&f, &e, true, 0) == REPLAY[_i].verdict, "%s", REPLAY[_i].type);
    filter_release(&f);
}
END_TEST

START_TEST(test_replay_all_types)
{
    struct filter_request req = {.has_all_types = true};
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, NULL), 0);
    struct event e = make_event("node_log", NULL);
    ck_assert_int_eq(filter_check(&f, &e, true, 0), FILTER_SEND);
    e = make_event("llm_reasoning_delta", NULL);
    ck_assert_int_eq(filter_check(&f, &e, true, 0), FILTER_SKIP_TYPE);
    ck_assert_int_eq(filter_check(&f, &e, false, 0), FILTER_SEND);
    e = make_event("not_in_table", NULL);
    ck_assert_int_eq(filter_check(&f, &e, true, 0), FILTER_SKIP_TYPE);  /* no replayed=1 */
    filter_release(&f);
}
END_TEST

/* The global channel (SPEC §3, has_open_types): no types= streams every type, also types
 * the table does not know (app-wide events carry the app's own names); types= narrows it,
 * and a name the table does not know is matched as given instead of being ignored. */
static const struct {
    const char *types[3];       /* NULL-terminated types= entries; {NULL}: no types= */
    const char *type;           /* the row's type */
    enum filter_verdict verdict;
} OPEN_TYPES[] = {
    {{NULL}, "crm_changed", FILTER_SEND},
    {{NULL}, "llm_text_delta", FILTER_SEND},
    {{NULL}, "llm_reasoning_delta", FILTER_SEND},       /* not in the default set */
    {{NULL}, "node_log", FILTER_SEND},
    {{NULL}, "", FILTER_SEND},
    {{NULL}, "x\ny", FILTER_SEND},
    {{NULL}, NULL, FILTER_SEND},
    {{"crm_changed"}, "crm_changed", FILTER_SEND},
    {{"crm_changed"}, "crm_changed_", FILTER_SKIP_TYPE},
    {{"crm_changed"}, "crm", FILTER_SKIP_TYPE},
    {{"crm_changed"}, "CRM_CHANGED", FILTER_SKIP_TYPE},
    {{"crm_changed"}, "llm_text_delta", FILTER_SKIP_TYPE},
    {{"crm_changed"}, "", FILTER_SKIP_TYPE},
    {{"crm_changed"}, NULL, FILTER_SKIP_TYPE},
    {{"other"}, "crm_changed", FILTER_SKIP_TYPE},      /* all unknown: still narrows */
    {{"other"}, "other", FILTER_SEND},
    {{"crm_changed", "llm_reasoning_delta"}, "llm_reasoning_delta", FILTER_SEND},
    {{"crm_changed", "llm_reasoning_delta"}, "crm_changed", FILTER_SEND},
    {{"crm_changed", "llm_reasoning_delta"}, "llm_text_delta", FILTER_SKIP_TYPE},
    {{"llm_text_delta"}, "llm_text_delta", FILTER_SEND},
    {{"llm_text_delta"}, "crm_changed", FILTER_SKIP_TYPE},
    {{"llm_text_delta"}, "client_output_delta", FILTER_SKIP_TYPE},
};

START_TEST(test_open_types)
{
    const char *const *names = OPEN_TYPES[_i].types;
    size_t n = 0;
    while (n < 3 && names[n] != NULL)
        n++;
    bool is_unknown[3] = {true, true, true};
    struct filter_request req = {.type_names = names, .type_count = n, .has_open_types = true};
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, is_unknown), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(!is_unknown[i], "%s reported unknown: it is matched as given", names[i]);
    ck_assert_uint_eq(f.requested_count, (n > 0 ? n : (size_t)POLICY_COUNT));
    struct event e = make_event(OPEN_TYPES[_i].type, NULL);
    enum filter_verdict got = filter_check(&f, &e, false, 0);
    ck_assert_msg(got == OPEN_TYPES[_i].verdict, "row type %s, types=%s: %d, want %d",
                  OPEN_TYPES[_i].type ? OPEN_TYPES[_i].type : "(null)",
                  n > 0 ? names[0] : "(none)", got, OPEN_TYPES[_i].verdict);
    filter_release(&f);
}
END_TEST

/* Without has_open_types nothing changes: the same rows keep the default-set rule. */
START_TEST(test_open_types_off)
{
    const char *names[] = {"other"};
    struct filter f;
    init_types(&f, names, 1, NULL);
    ck_assert_int_eq(check_live(&f, "other", NULL), FILTER_SKIP_TYPE);
    ck_assert_int_eq(check_live(&f, "crm_changed", NULL), FILTER_SKIP_TYPE);
    ck_assert_int_eq(check_live(&f, "llm_text_delta", NULL), FILTER_SEND);
    filter_release(&f);
}
END_TEST

static const struct {
    int64_t max_lag;
    const char *type;
    int64_t lag;
    enum filter_verdict verdict;
} SHEDDING[] = {
    {0, "llm_text_delta", 0, FILTER_SEND},
    {0, "llm_text_delta", 1000000, FILTER_SEND},
    {0, "llm_text_delta", INT64_MAX, FILTER_SEND},
    {100, "llm_text_delta", 0, FILTER_SEND},
    {100, "llm_text_delta", 99, FILTER_SEND},
    {100, "llm_text_delta", 100, FILTER_SEND},
    {100, "llm_text_delta", 101, FILTER_SHED},
    {100, "llm_text_delta", INT64_MAX, FILTER_SHED},
    {100, "client_output_delta", 101, FILTER_SHED},
    {100, "execution_started", 101, FILTER_SEND},       /* critical */
    {100, "execution_completed", INT64_MAX, FILTER_SEND},
    {1, "execution_started", INT64_MAX, FILTER_SEND},
    {1, "subagent_report", 2, FILTER_SHED},
};

START_TEST(test_shedding)
{
    struct filter_request req = {.max_lag = SHEDDING[_i].max_lag, .has_worker_rule = true};
    struct filter f;
    ck_assert_int_eq(filter_init(&f, POLICY, POLICY_COUNT, &req, NULL), 0);
    struct event e = make_event(SHEDDING[_i].type, NULL);
    enum filter_verdict got = filter_check(&f, &e, false, SHEDDING[_i].lag);
    ck_assert_msg(got == SHEDDING[_i].verdict, "max_lag %lld %s lag %lld: %d",
                  (long long)SHEDDING[_i].max_lag, SHEDDING[_i].type,
                  (long long)SHEDDING[_i].lag, got);
    filter_release(&f);
}
END_TEST

START_TEST(test_find_type)
{
    for (int i = 0; i < POLICY_COUNT; i++)
        ck_assert_ptr_eq(filter_find_type(POLICY, POLICY_COUNT, POLICY[i].name), &POLICY[i]);
    static const char *const misses[] = {
        "", "a", "zzz", "client", "client_output_delta_", "execution", "m", "Node_log",
        "node_log ",
    };
    for (int i = 0; i < COUNT(misses); i++)
        ck_assert_ptr_null(filter_find_type(POLICY, POLICY_COUNT, misses[i]));
    ck_assert_ptr_null(filter_find_type(NULL, 0, "node_log"));
    ck_assert_ptr_eq(filter_find_type(POLICY, 1, "client_output_delta"), &POLICY[0]);
    ck_assert_ptr_null(filter_find_type(POLICY, 1, "node_log"));
}
END_TEST

START_TEST(test_is_worker_stream)
{
    ck_assert(!filter_is_worker_stream(NULL));
    ck_assert(!filter_is_worker_stream(""));
    ck_assert(filter_is_worker_stream("worker"));
    ck_assert(filter_is_worker_stream("worker:"));
    ck_assert(filter_is_worker_stream("worker:abc"));
    ck_assert(filter_is_worker_stream("worker:a:b"));
    ck_assert(!filter_is_worker_stream("workers:x"));
    ck_assert(!filter_is_worker_stream("xworker:"));
    ck_assert(!filter_is_worker_stream("Worker:x"));
    ck_assert(!filter_is_worker_stream("worker "));
    ck_assert(!filter_is_worker_stream("work"));
    ck_assert(!filter_is_worker_stream(" worker"));
}
END_TEST

Suite *suite_filter(void);

Suite *
suite_filter(void)
{
    Suite *s = suite_create("filter");
    TCase *tc = tcase_create("filter");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_default_set_without_names);
    tcase_add_test(tc, test_default_set_when_all_unknown);
    tcase_add_test(tc, test_explicit_types);
    tcase_add_test(tc, test_all_types);
    tcase_add_test(tc, test_empty_policy_table);
    tcase_add_loop_test(tc, test_worker_rule, 0, COUNT(WORKER_RULE));
    tcase_add_loop_test(tc, test_replay, 0, COUNT(REPLAY));
    tcase_add_test(tc, test_replay_all_types);
    tcase_add_loop_test(tc, test_open_types, 0, COUNT(OPEN_TYPES));
    tcase_add_test(tc, test_open_types_off);
    tcase_add_loop_test(tc, test_shedding, 0, COUNT(SHEDDING));
    tcase_add_test(tc, test_find_type);
    tcase_add_test(tc, test_is_worker_stream);
    suite_add_tcase(s, tc);
    return s;
}
