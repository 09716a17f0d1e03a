/*
 * test_params.c - route matching, percent-decoding, query and Last-Event-ID parsing, fed
 * tables of hostile input: empty, one over each limit, NUL, raw and encoded CR/LF, huge ids.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "fcgi/params.h"

static const struct {
    const char *path;
    int rc;
    enum route_kind kind;
    const char *id;
} ROUTES[] = {
    {"/api/sessions/abc/events", 0, ROUTE_SESSION_EVENTS, "abc"},
    {"/app/cgi-bin/events.fcgi/api/sessions/a.b_c:d-e/events", 0, ROUTE_SESSION_EVENTS,
     "a.b_c:d-e"},
    {"/app/api/health", 0, ROUTE_HEALTH, ""},
    {"/api/events/global", 0, ROUTE_GLOBAL_EVENTS, ""},
    {"/api/workers/w1/events", 0, ROUTE_WORKER_EVENTS, "w1"},
    {"/api/sessions/%61bc/events", 0, ROUTE_SESSION_EVENTS, "abc"},
    {"/api/sessions/abc/events/", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/sessions/abc", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/other/abc/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/", PARAMS_NOT_FOUND, 0, NULL},
    {"", PARAMS_NOT_FOUND, 0, NULL},
    {"api/health", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/sessions//events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%2Fb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%00b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%0D%0Ab/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a\r\nb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%zzb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%2/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/\xff/events", PARAMS_MALFORMED, 0, NULL},
};

START_TEST(test_match_route)
{
    struct route route;
    const char *why = NULL;
    int rc = params_match_route(ROUTES[_i].path, &route, &why);
    ck_assert_msg(rc == ROUTES[_i].rc, "%s: rc %d", ROUTES[_i].path, rc);
    if (rc == 0) {
        ck_assert_int_eq(route.kind, ROUTES[_i].kind);
        ck_assert_str_eq(route.id, ROUTES[_i].id);
    } else {
        ck_assert_ptr_nonnull(why);
    }
}
END_TEST

START_TEST(test_id_length_limit)
{
    char path[400], id[200];
    memset(id, 'x', 129);
    id[128] = '\0';
    snprintf(path, sizeof(path), "/api/sessions/%s/events", id);
    struct route route;
    const char *why;
    ck_assert_int_eq(params_match_route(path, &route, &why), 0);
    ck_assert_uint_eq(strlen(route.id), 128);
    id[128] = 'x';
    id[129] = '\0';
    snprintf(path, sizeof(path), "/api/sessions/%s/events", id);
    ck_assert_int_eq(params_match_route(path, &route, &why), PARAMS_MALFORMED);
    ck_assert(!params_id_is_valid("", 0));
    ck_assert(params_id_is_valid("a", 1));
}
END_TEST

START_TEST(test_request_path)
{
    char out[64];
    ck_assert_int_eq(params_request_path("/api/health?x=1#f", NULL, NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/api/health");
    ck_assert_int_eq(params_request_path("", "/app.fcgi", "/api/health", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/app.fcgi/api/health");
    ck_assert_int_eq(params_request_path(NULL, NULL, "/api/x", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/api/x");
    ck_assert_int_eq(params_request_path(NULL, NULL, NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
    char big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(params_request_path(big, NULL, NULL, out, sizeof(out)),
                     PARAMS_NOT_FOUND);
}
END_TEST

static const struct {
    const char *in;
    bool plus;
    long rc;
    const char *out;
} DECODES[] = {
    {"a%41b", false, 3, "aAb"}, {"%7e%7E", false, 2, "~~"}, {"a+b", true, 3, "a b"},
    {"a+b", false, 3, "a+b"}, {"%", false, -1, NULL}, {"%4", false, -1, NULL},
    {"%G0", false, -1, NULL}, {"%00", false, -1, NULL}, {"", false, 0, ""},
    {"%0D%0A", false, 2, "\r\n"}, {"0123456789abcdef", false, -1, NULL},
};

START_TEST(test_percent_decode)
{
    char out[16];
    long rc = params_percent_decode(DECODES[_i].in, strlen(DECODES[_i].in), out, sizeof(out),
                                    DECODES[_i].plus);
    ck_assert_msg(rc == DECODES[_i].rc, "%s: %ld", DECODES[_i].in, rc);
    if (rc >= 0)
        ck_assert_str_eq(out, DECODES[_i].out);
}
END_TEST

START_TEST(test_query_lists)
{
    struct query q;
    const char *why;
    ck_assert_int_eq(params_parse_query("types=a,,b%2Cc+&watch=worker:x,worker&named=1&"
                                        "zzz=%zz&types=ignored", &q, &why), 0);
    ck_assert_uint_eq(q.types_count, 3);
    ck_assert_str_eq(q.types[0], "a");
    ck_assert_str_eq(q.types[1], "b");
    ck_assert_str_eq(q.types[2], "c");
    ck_assert_uint_eq(q.watch_count, 2);
    ck_assert_str_eq(q.watch[0], "worker:x");
    ck_assert(q.is_named && !q.has_types_all && !q.has_watch_all && !q.has_last_event_id);
    ck_assert_int_eq(params_parse_query("types=*&watch=*", &q, &why), 0);
    ck_assert(q.has_types_all && q.has_watch_all && q.types_count == 0);
    ck_assert_int_eq(params_parse_query(NULL, &q, &why), 0);
    ck_assert_int_eq(params_parse_query("", &q, &why), 0);
    ck_assert_uint_eq(q.types_count, 0);
}
END_TEST

static const char *const BAD_QUERIES[] = {
    "watch=queen", "watch=worker:", "watch=worker:a/b", "watch=worker:%0A", "types=a%00b",
    "types=%zz", "watch=%",
};

START_TEST(test_query_malformed)
{
    struct query q;
    const char *why = NULL;
    ck_assert_msg(params_parse_query(BAD_QUERIES[_i], &q, &why) == PARAMS_MALFORMED, "%s",
                  BAD_QUERIES[_i]);
    ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(test_query_limits)
{
    static char qs[PARAMS_QUERY_MAX + 64];
    strcpy(qs, "types=");
    for (int i = 0; i <= PARAMS_LIST_MAX; i++)
        strcat(qs, "t,");
    struct query q;
    const char *why;
    ck_assert_int_eq(params_parse_query(qs, &q, &why), PARAMS_MALFORMED);
    memset(qs, 'a', sizeof(qs) - 1);
    qs[PARAMS_QUERY_MAX + 1] = '\0';
    ck_assert_int_eq(params_parse_query(qs, &q, &why), PARAMS_MALFORMED);
    qs[PARAMS_QUERY_MAX] = '\0';
    ck_assert_int_eq(params_parse_query(qs, &q, &why), 0);
}
END_TEST

START_TEST(test_query_last_event_id)
{
    struct query q;
    const char *why;
    ck_assert_int_eq(params_parse_query("last_event_id=42", &q, &why), 0);
    ck_assert(q.has_last_event_id && q.last_event_id == 42);
    ck_assert_int_eq(params_parse_query("last_event_id=9223372036854775808", &q, &why), 0);
    ck_assert(!q.has_last_event_id && q.is_last_event_id_malformed);
    ck_assert_int_eq(params_parse_query("last_event_id=", &q, &why), 0);
    ck_assert(!q.has_last_event_id && !q.is_last_event_id_malformed);
}
END_TEST

static const struct {
    const char *value;
    int rc;
    int64_t id;
} EVENT_IDS[] = {
    {NULL, 1, 0}, {"", 1, 0}, {"  \t", 1, 0}, {"0", 0, 0}, {"42", 0, 42}, {" 42\t", 0, 42},
    {"9223372036854775807", 0, INT64_MAX}, {"9223372036854775808", PARAMS_MALFORMED, 0},
    {"99999999999999999999999", PARAMS_MALFORMED, 0}, {"-1", PARAMS_MALFORMED, 0},
    {"1e3", PARAMS_MALFORMED, 0}, {"0x10", PARAMS_MALFORMED, 0}, {"12a", PARAMS_MALFORMED, 0},
    {"1\n", PARAMS_MALFORMED, 0}, {"1 2", PARAMS_MALFORMED, 0}, {"+1", PARAMS_MALFORMED, 0},
};

START_TEST(test_event_id)
{
    int64_t id = -7;
    int rc = params_parse_event_id(EVENT_IDS[_i].value, &id);
    ck_assert_msg(rc == EVENT_IDS[_i].rc, "%s: %d", EVENT_IDS[_i].value, rc);
    if (rc == 0)
        ck_assert_int_eq(id, EVENT_IDS[_i].id);
}
END_TEST

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_params(void);

Suite *
suite_params(void)
{
    Suite *s = suite_create("params");
    TCase *tc = tcase_create("params");
    tcase_add_loop_test(tc, test_match_route, 0, COUNT(ROUTES));
    tcase_add_test(tc, test_id_length_limit);
    tcase_add_test(tc, test_request_path);
    tcase_add_loop_test(tc, test_percent_decode, 0, COUNT(DECODES));
    tcase_add_test(tc, test_query_lists);
    tcase_add_loop_test(tc, test_query_malformed, 0, COUNT(BAD_QUERIES));
    tcase_add_test(tc, test_query_limits);
    tcase_add_test(tc, test_query_last_event_id);
    tcase_add_loop_test(tc, test_event_id, 0, COUNT(EVENT_IDS));
    suite_add_tcase(s, tc);
    return s;
}
