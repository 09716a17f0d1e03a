/*
 * test_params.c - the request surface (fcgi/params.h): route matching on the path tail at
 * any mount point, id validation, params_request_path, percent-decoding, the query string
 * and Last-Event-ID (SPEC §3, §5).
 *
 * Written as tables of hostile input (STYLE §8): empty, one over each limit, NUL, raw and
 * percent-encoded CR/LF, bad escapes, invalid characters, ids >= 2^63, negatives.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "fcgi/params.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const struct {
    const char *path;
    int rc;
    enum route_kind kind;
    const char *id;
} ROUTES[] = {
    {"/api/sessions/abc/events", 0, ROUTE_SESSION_EVENTS, "abc"},
    {"/app/cgi-bin/events.fcgi/api/sessions/abc/events", 0, ROUTE_SESSION_EVENTS, "abc"},
    {"/app/api/sessions/abc/events", 0, ROUTE_SESSION_EVENTS, "abc"},
    {"/app/api/health", 0, ROUTE_HEALTH, ""},
    {"/api/health", 0, ROUTE_HEALTH, ""},
    {"/app/cgi-bin/events.fcgi/api/health", 0, ROUTE_HEALTH, ""},
    {"/api/events/global", 0, ROUTE_GLOBAL_EVENTS, ""},
    {"/app/api/events/global", 0, ROUTE_GLOBAL_EVENTS, ""},
    {"/api/workers/w1/events", 0, ROUTE_WORKER_EVENTS, "w1"},
    {"/app/cgi-bin/events.fcgi/api/workers/w1/events", 0, ROUTE_WORKER_EVENTS, "w1"},
    {"/api/sessions/a.b_c:d-E9/events", 0, ROUTE_SESSION_EVENTS, "a.b_c:d-E9"},
    {"/api/sessions/%61%62c/events", 0, ROUTE_SESSION_EVENTS, "abc"},
    {"/api/sessions/%2e%5F%3a%2D/events", 0, ROUTE_SESSION_EVENTS, "._:-"},
    {"/api/workers/worker%3Ax/events", 0, ROUTE_WORKER_EVENTS, "worker:x"},
    {"/api/sessions/global/events", 0, ROUTE_SESSION_EVENTS, "global"},
    /* unknown routes */
    {"", PARAMS_NOT_FOUND, 0, NULL},
    {"/", PARAMS_NOT_FOUND, 0, NULL},
    {"/api", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/healthz", PARAMS_NOT_FOUND, 0, NULL},
    {"/API/health", PARAMS_NOT_FOUND, 0, NULL},
    {"/apix/health", PARAMS_NOT_FOUND, 0, NULL},
    {"/xapi/health", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/health/x", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/sessions/abc", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/sessions/abc/event", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/sessions/abc/events/extra", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/sessions/a/b/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/session/abc/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/other/abc/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/events/local", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/events/global/x", PARAMS_NOT_FOUND, 0, NULL},
    {"/sessions/abc/events", PARAMS_NOT_FOUND, 0, NULL},
    /* a repeated /api prefix (issue 11): a web server's rule on /api/sessions/<id> must not
     * be sidestepped by /api/api/sessions/<id>/events */
    {"/api/api/sessions/s1/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/api/workers/w1/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/api/events/global", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/api/health", PARAMS_NOT_FOUND, 0, NULL},
    {"/app/api/api/sessions/s1/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/api/api/api/sessions/s1/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/%61pi/api/sessions/s1/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/%61%70%69/api/health", PARAMS_NOT_FOUND, 0, NULL},
    {"/api//api/sessions/s1/events", PARAMS_NOT_FOUND, 0, NULL},
    {"/api///api/health", PARAMS_NOT_FOUND, 0, NULL},
    {"api/api/health", PARAMS_NOT_FOUND, 0, NULL},
    /* ... but a prefix that only looks like it is a mount point like any other */
    {"/apiapi/api/health", 0, ROUTE_HEALTH, ""},
    {"/xapi/api/health", 0, ROUTE_HEALTH, ""},
    {"/api.v1/api/health", 0, ROUTE_HEALTH, ""},
    {"/API/api/health", 0, ROUTE_HEALTH, ""},
    {"/%2561pi/api/health", 0, ROUTE_HEALTH, ""},
    {"/api%00/api/health", 0, ROUTE_HEALTH, ""},
    {"/api/x/api/health", 0, ROUTE_HEALTH, ""},
    {"/api/sessions/api/events", 0, ROUTE_SESSION_EVENTS, "api"},
    {"/api/workers/api/events", 0, ROUTE_WORKER_EVENTS, "api"},
    /* malformed ids */
    {"/api/sessions//events", PARAMS_MALFORMED, 0, NULL},
    {"/api/workers//events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%2Fb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/%2F/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%00b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/%00/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%zz/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%2/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/abc%/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%0D%0Ab/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/%0A/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a\r\nb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a\rb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a\nb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%20b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a+b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a@b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a%40b/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/a\tb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/\xff/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/sessions/%C3%A9/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/workers/a%2Fb/events", PARAMS_MALFORMED, 0, NULL},
    {"/api/workers/a%0D%0A/events", PARAMS_MALFORMED, 0, NULL},
};

START_TEST(test_match_route)
{
    struct route route;
    const char *why = NULL;
    int rc = params_match_route(ROUTES[_i].path, &route, &why);
    ck_assert_msg(rc == ROUTES[_i].rc, "%s: rc %d, want %d", ROUTES[_i].path, rc,
                  ROUTES[_i].rc);
    if (rc == 0) {
        ck_assert_int_eq(route.kind, ROUTES[_i].kind);
        ck_assert_str_eq(route.id, ROUTES[_i].id);
    } else {
        ck_assert_ptr_nonnull(why);
        ck_assert_ptr_null(strpbrk(why, "\r\n\""));
    }
}
END_TEST

/* Builds "/api/sessions/<id>/events" where <id> is n copies of unit. */
static void
make_long_id_path(char *path, size_t size, const char *unit, int n)
{
    int used = snprintf(path, size, "/api/sessions/");
    for (int i = 0; i < n; i++)
        used += snprintf(path + used, size - (size_t)used, "%s", unit);
    snprintf(path + used, size - (size_t)used, "/events");
}

START_TEST(test_id_length_limit)
{
    char path[1024];
    struct route route;
    const char *why = NULL;
    make_long_id_path(path, sizeof(path), "x", PARAMS_ID_MAX);
    ck_assert_int_eq(params_match_route(path, &route, &why), 0);
    ck_assert_uint_eq(strlen(route.id), PARAMS_ID_MAX);
    make_long_id_path(path, sizeof(path), "x", PARAMS_ID_MAX + 1);
    ck_assert_int_eq(params_match_route(path, &route, &why), PARAMS_MALFORMED);
    make_long_id_path(path, sizeof(path), "%41", PARAMS_ID_MAX);  /* 384 raw, 128 decoded */
    ck_assert_int_eq(params_match_route(path, &route, &why), 0);
    ck_assert_uint_eq(strlen(route.id), PARAMS_ID_MAX);
    ck_assert(route.id[0] == 'A' && route.id[PARAMS_ID_MAX - 1] == 'A');
    make_long_id_path(path, sizeof(path), "%41", PARAMS_ID_MAX + 1);
    ck_assert_int_eq(params_match_route(path, &route, &why), PARAMS_MALFORMED);
    make_long_id_path(path, sizeof(path), "x", 300);
    ck_assert_int_eq(params_match_route(path, &route, &why), PARAMS_MALFORMED);
}
END_TEST

static const struct {
    const char *id;
    size_t len;     /* 0: strlen */
    bool is_valid;
} IDS[] = {
    {"a", 0, true}, {"A-z_0.9:x", 0, true}, {"...", 0, true}, {"", 0, false},
    {"a b", 0, false}, {"a/b", 0, false}, {"a\rb", 0, false}, {"a\nb", 0, false},
    {"a\0b", 3, false}, {"\xff", 0, false}, {"a%41", 0, false}, {"a+b", 0, false},
    {"ab", 1, true},
};

START_TEST(test_id_is_valid)
{
    size_t len = IDS[_i].len ? IDS[_i].len : strlen(IDS[_i].id);
    ck_assert_msg(params_id_is_valid(IDS[_i].id, len) == IDS[_i].is_valid, "id %d", _i);
}
END_TEST

START_TEST(test_id_is_valid_length)
{
    char id[PARAMS_ID_MAX + 2];
    memset(id, 'k', sizeof(id));
    ck_assert(params_id_is_valid(id, PARAMS_ID_MAX));
    ck_assert(!params_id_is_valid(id, PARAMS_ID_MAX + 1));
    ck_assert(!params_id_is_valid(id, 0));
}
END_TEST

START_TEST(test_request_path)
{
    char out[64];
    ck_assert_int_eq(params_request_path("/api/health?x=1", NULL, NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/api/health");
    ck_assert_int_eq(params_request_path("/api/health?", "/s", "/p", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/api/health");
    ck_assert_int_eq(params_request_path("/a%3Fb", NULL, NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/a%3Fb");  /* still raw: routing decodes the id itself */
    ck_assert_int_eq(params_request_path("", "/app.fcgi", "/api/health", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/app.fcgi/api/health");
    ck_assert_int_eq(params_request_path(NULL, "/app.fcgi", "/api/x", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/app.fcgi/api/x");
    ck_assert_int_eq(params_request_path(NULL, NULL, "/api/x", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/api/x");
    ck_assert_int_eq(params_request_path(NULL, "/api/health", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/api/health");
    ck_assert_int_eq(params_request_path(NULL, NULL, NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_request_path_too_long)
{
    char out[16], big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(params_request_path(big, NULL, NULL, out, sizeof(out)), PARAMS_NOT_FOUND);
    ck_assert_int_eq(params_request_path(NULL, big, NULL, out, sizeof(out)), PARAMS_NOT_FOUND);
    ck_assert_int_eq(params_request_path(NULL, NULL, big, out, sizeof(out)), PARAMS_NOT_FOUND);
    ck_assert_int_eq(params_request_path(NULL, "/1234567", "/1234567", out, sizeof(out)),
                     PARAMS_NOT_FOUND);  /* 16 bytes + NUL does not fit in 16 */
    ck_assert_int_eq(params_request_path(NULL, "/123456", "/1234567", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/123456/1234567");
    big[15] = '\0';  /* 15 bytes + NUL: fits exactly */
    ck_assert_int_eq(params_request_path(big, NULL, NULL, out, sizeof(out)), 0);
    ck_assert_uint_eq(strlen(out), 15);
    big[15] = '?';  /* a long query after the path does not count */
    ck_assert_int_eq(params_request_path(big, NULL, NULL, out, sizeof(out)), 0);
    ck_assert_uint_eq(strlen(out), 15);
}
END_TEST

static const struct {
    const char *in;
    size_t in_len;      /* 0: strlen */
    bool plus;
    long rc;
    const char *out;
} DECODES[] = {
    {"", 0, false, 0, ""}, {"abc", 0, false, 3, "abc"}, {"a%41b", 0, false, 3, "aAb"},
    {"%2f%2F", 0, false, 2, "//"}, {"%7e%7E", 0, false, 2, "~~"},
    {"%aB%Cd", 0, false, 2, "\xab\xcd"}, {"a+b", 0, true, 3, "a b"},
    {"a+b", 0, false, 3, "a+b"},
    {"%2B", 0, true, 1, "+"}, {"+%20+", 0, true, 3, "   "}, {"%0D%0A", 0, false, 2, "\r\n"},
    {"%", 0, false, -1, NULL}, {"%4", 0, false, -1, NULL}, {"a%", 0, false, -1, NULL},
    {"%G0", 0, false, -1, NULL}, {"%4G", 0, false, -1, NULL}, {"%%41", 0, false, -1, NULL},
    {"%-1", 0, false, -1, NULL}, {"% 1", 0, false, -1, NULL}, {"%00", 0, false, -1, NULL},
    {"a%00", 0, true, -1, NULL}, {"a\0b", 3, false, -1, NULL},
    {"abc%41", 3, false, 3, "abc"}, {"%41", 2, false, -1, NULL},
};

START_TEST(test_percent_decode)
{
    char out[32];
    memset(out, 'Z', sizeof(out));
    size_t len = DECODES[_i].in_len ? DECODES[_i].in_len : strlen(DECODES[_i].in);
    long rc = params_percent_decode(DECODES[_i].in, len, out, sizeof(out), DECODES[_i].plus);
    ck_assert_msg(rc == DECODES[_i].rc, "\"%s\": %ld, want %ld", DECODES[_i].in, rc,
                  DECODES[_i].rc);
    if (rc >= 0) {
        ck_assert_uint_eq(strlen(out), (size_t)rc);
        ck_assert_str_eq(out, DECODES[_i].out);
    }
}
END_TEST

START_TEST(test_percent_decode_output_size)
{
    char out[8];
    ck_assert_int_eq(params_percent_decode("abc", 3, out, 4, false), 3);
    ck_assert_str_eq(out, "abc");
    ck_assert_int_eq(params_percent_decode("abc", 3, out, 3, false), -1);
    ck_assert_int_eq(params_percent_decode("%41%42%43", 9, out, 4, false), 3);
    ck_assert_int_eq(params_percent_decode("%41%42%43", 9, out, 3, false), -1);
    ck_assert_int_eq(params_percent_decode("", 0, out, 1, false), 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(params_percent_decode("a", 1, out, 1, false), -1);
}
END_TEST

static int
parse(const char *qs, struct query *q)
{
    const char *why = NULL;
    int rc = params_parse_query(qs, q, &why);
    if (rc != 0)
        ck_assert_ptr_nonnull(why);
    return rc;
}

START_TEST(test_query_types)
{
    struct query q;
    ck_assert_int_eq(parse("types=a,,b", &q), 0);
    ck_assert_uint_eq(q.types_count, 2);
    ck_assert_str_eq(q.types[0], "a");
    ck_assert_str_eq(q.types[1], "b");
    ck_assert(!q.has_types_all);
    ck_assert_int_eq(parse("types=,,,", &q), 0);
    ck_assert_uint_eq(q.types_count, 0);
    ck_assert_int_eq(parse("types=", &q), 0);
    ck_assert_uint_eq(q.types_count, 0);
    ck_assert_int_eq(parse("types=*", &q), 0);
    ck_assert(q.has_types_all);
    ck_assert_uint_eq(q.types_count, 0);
    ck_assert_int_eq(parse("types=client%5Foutput_delta", &q), 0);
    ck_assert_uint_eq(q.types_count, 1);
    ck_assert_str_eq(q.types[0], "client_output_delta");
}
END_TEST

START_TEST(test_query_watch)
{
    struct query q;
    ck_assert_int_eq(parse("watch=worker:x,worker", &q), 0);
    ck_assert_uint_eq(q.watch_count, 2);
    ck_assert_str_eq(q.watch[0], "worker:x");
    ck_assert_str_eq(q.watch[1], "worker");
    ck_assert(!q.has_watch_all);
    ck_assert_int_eq(parse("watch=*", &q), 0);
    ck_assert(q.has_watch_all);
    ck_assert_uint_eq(q.watch_count, 0);
    ck_assert_int_eq(parse("watch=worker%3Aa.b_c-d", &q), 0);
    ck_assert_str_eq(q.watch[0], "worker:a.b_c-d");
}
END_TEST

START_TEST(test_query_flags_and_keys)
{
    struct query q;
    ck_assert_int_eq(parse("named=1", &q), 0);
    ck_assert(q.is_named);
    ck_assert_int_eq(parse("named=0", &q), 0);
    ck_assert(!q.is_named);
    ck_assert_int_eq(parse("foo=bar&types=a&x=&=y&&", &q), 0);  /* unknown keys ignored */
    ck_assert_uint_eq(q.types_count, 1);
    ck_assert_str_eq(q.types[0], "a");
    ck_assert(!q.is_named && !q.has_last_event_id && !q.is_last_event_id_malformed);
    ck_assert_int_eq(parse("types=a&types=b&named=1&named=0&last_event_id=5&last_event_id=7",
                           &q), 0);  /* first of a repeated key wins */
    ck_assert_uint_eq(q.types_count, 1);
    ck_assert_str_eq(q.types[0], "a");
    ck_assert(q.is_named);
    ck_assert(q.has_last_event_id && q.last_event_id == 5);
    ck_assert_int_eq(parse("watch=worker:a&watch=*", &q), 0);
    ck_assert(!q.has_watch_all && q.watch_count == 1);
}
END_TEST

START_TEST(test_query_empty)
{
    struct query q;
    memset(&q, 0x5a, sizeof(q));
    ck_assert_int_eq(parse(NULL, &q), 0);
    ck_assert(q.types_count == 0 && q.watch_count == 0 && !q.is_named);
    ck_assert(!q.has_types_all && !q.has_watch_all);
    ck_assert(!q.has_last_event_id && !q.is_last_event_id_malformed);
    memset(&q, 0x5a, sizeof(q));
    ck_assert_int_eq(parse("", &q), 0);
    ck_assert(q.types_count == 0 && q.watch_count == 0 && !q.is_named);
    ck_assert(!q.has_types_all && !q.has_watch_all);
    ck_assert(!q.has_last_event_id && !q.is_last_event_id_malformed);
}
END_TEST

static const struct {
    const char *qs;
    bool has;
    bool is_malformed;
    int64_t id;
} LAST_IDS[] = {
    {"last_event_id=42", true, false, 42}, {"last_event_id=0", true, false, 0},
    {"last_event_id=%2042+", true, false, 42},
    {"last_event_id=9223372036854775807", true, false, INT64_MAX},
    {"last_event_id=9223372036854775808", false, true, 0},
    {"last_event_id=99999999999999999999", false, true, 0},
    {"last_event_id=-1", false, true, 0}, {"last_event_id=abc", false, true, 0},
    {"last_event_id=1e3", false, true, 0}, {"last_event_id=12a", false, true, 0},
    {"last_event_id=1%0A", false, true, 0}, {"last_event_id=0x10", false, true, 0},
};

START_TEST(test_query_last_event_id)
{
    struct query q;
    ck_assert_msg(parse(LAST_IDS[_i].qs, &q) == 0, "%s", LAST_IDS[_i].qs);
    ck_assert_msg(q.has_last_event_id == LAST_IDS[_i].has, "%s: has", LAST_IDS[_i].qs);
    ck_assert_msg(q.is_last_event_id_malformed == LAST_IDS[_i].is_malformed, "%s: malformed",
                  LAST_IDS[_i].qs);
    if (LAST_IDS[_i].has)
        ck_assert_int_eq(q.last_event_id, LAST_IDS[_i].id);
}
END_TEST

static const char *const BAD_QUERIES[] = {
    "watch=queen", "watch=worker:", "watch=workers:x", "watch=Worker:x", "watch=xworker:a",
    "watch=worker:a/b", "watch=worker:a%2Fb", "watch=worker:%0A", "watch=worker:%0D%0A",
    "watch=worker:a+b", "watch=worker:x,queen", "watch=worker:%00", "types=a%00b",
    "types=%00", "watch=%00", "types=%zz", "types=%", "types=a%4", "watch=%",
    "named=%00", "last_event_id=%00", "last_event_id=%zz",
};

START_TEST(test_query_malformed)
{
    struct query q;
    const char *why = NULL;
    ck_assert_msg(params_parse_query(BAD_QUERIES[_i], &q, &why) == PARAMS_MALFORMED, "%s",
                  BAD_QUERIES[_i]);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_null(strpbrk(why, "\r\n\""));
}
END_TEST

/* "<key>=" followed by n entries "e<i>" separated by commas. */
static void
make_list_query(char *qs, size_t size, const char *key, const char *entry, int n)
{
    int used = snprintf(qs, size, "%s=", key);
    for (int i = 0; i < n; i++)
        used += snprintf(qs + used, size - (size_t)used, "%s%s", i ? "," : "", entry);
}

START_TEST(test_query_list_limit)
{
    static char qs[PARAMS_QUERY_MAX];
    struct query q;
    make_list_query(qs, sizeof(qs), "types", "t", PARAMS_LIST_MAX);
    ck_assert_int_eq(parse(qs, &q), 0);
    ck_assert_uint_eq(q.types_count, PARAMS_LIST_MAX);
    make_list_query(qs, sizeof(qs), "types", "t", PARAMS_LIST_MAX + 1);
    ck_assert_int_eq(parse(qs, &q), PARAMS_MALFORMED);
    make_list_query(qs, sizeof(qs), "watch", "worker:w", PARAMS_LIST_MAX);
    ck_assert_int_eq(parse(qs, &q), 0);
    ck_assert_uint_eq(q.watch_count, PARAMS_LIST_MAX);
    make_list_query(qs, sizeof(qs), "watch", "worker", PARAMS_LIST_MAX + 1);
    ck_assert_int_eq(parse(qs, &q), PARAMS_MALFORMED);
}
END_TEST

START_TEST(test_query_length_limit)
{
    static char qs[PARAMS_QUERY_MAX + 64];
    struct query q;
    memcpy(qs, "types=a&x=", 10);
    memset(qs + 10, 'a', sizeof(qs) - 10);
    qs[PARAMS_QUERY_MAX + 1] = '\0';
    ck_assert_int_eq(parse(qs, &q), PARAMS_MALFORMED);
    qs[PARAMS_QUERY_MAX] = '\0';
    ck_assert_int_eq(parse(qs, &q), 0);
    ck_assert_uint_eq(q.types_count, 1);
    ck_assert_str_eq(q.types[0], "a");
    memcpy(qs, "named=1&x=", 10);  /* an unknown key's long value fills it exactly */
    ck_assert_int_eq(parse(qs, &q), 0);
    ck_assert(q.is_named);
}
END_TEST

static const struct {
    const char *value;
    int rc;
    int64_t id;
} EVENT_IDS[] = {
    {NULL, 1, 0}, {"", 1, 0}, {"  ", 1, 0}, {" \t ", 1, 0}, {"0", 0, 0}, {"42", 0, 42},
    {" 42 ", 0, 42}, {"\t42\t", 0, 42}, {"007", 0, 7},
    {"9223372036854775807", 0, INT64_MAX},
    {"9223372036854775808", PARAMS_MALFORMED, 0},
    {"18446744073709551616", PARAMS_MALFORMED, 0},
    {"99999999999999999999999", PARAMS_MALFORMED, 0}, {"-1", PARAMS_MALFORMED, 0},
    {"-0", PARAMS_MALFORMED, 0}, {"+1", PARAMS_MALFORMED, 0}, {"1e3", PARAMS_MALFORMED, 0},
    {"0x10", PARAMS_MALFORMED, 0}, {"12a", PARAMS_MALFORMED, 0}, {"1\n", PARAMS_MALFORMED, 0},
    {"1\r", PARAMS_MALFORMED, 0}, {"\n1", PARAMS_MALFORMED, 0}, {"1 2", PARAMS_MALFORMED, 0},
    {"1.0", PARAMS_MALFORMED, 0}, {"abc", PARAMS_MALFORMED, 0},
};

START_TEST(test_event_id)
{
    int64_t id = -7;
    int rc = params_parse_event_id(EVENT_IDS[_i].value, &id);
    ck_assert_msg(rc == EVENT_IDS[_i].rc, "\"%s\": %d, want %d",
                  EVENT_IDS[_i].value ? EVENT_IDS[_i].value : "(null)", rc, EVENT_IDS[_i].rc);
    if (rc == 0)
        ck_assert_int_eq(id, EVENT_IDS[_i].id);
}
END_TEST

/* PARAMS_NAME_MAX: a types= or watch= entry of 128 bytes is kept, 129 is refused. */
START_TEST(test_query_entry_length)
{
    static char qs[PARAMS_QUERY_MAX];
    struct query q;
    const char *why = NULL;
    strcpy(qs, "types=");
    memset(qs + 6, 't', PARAMS_NAME_MAX);
    qs[6 + PARAMS_NAME_MAX] = '\0';
    ck_assert_int_eq(params_parse_query(qs, &q, &why), 0);
    ck_assert_uint_eq(strlen(q.types[0]), PARAMS_NAME_MAX);
    strcat(qs, "t");
    ck_assert_int_eq(params_parse_query(qs, &q, &why), PARAMS_MALFORMED);
    ck_assert_ptr_nonnull(why);
}
END_TEST

Suite *suite_params(void);

Suite *
suite_params(void)
{
    Suite *s = suite_create("params");
    TCase *tc = tcase_create("params");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_query_entry_length);
    tcase_add_loop_test(tc, test_match_route, 0, COUNT(ROUTES));
    tcase_add_test(tc, test_id_length_limit);
    tcase_add_loop_test(tc, test_id_is_valid, 0, COUNT(IDS));
    tcase_add_test(tc, test_id_is_valid_length);
    tcase_add_test(tc, test_request_path);
    tcase_add_test(tc, test_request_path_too_long);
    tcase_add_loop_test(tc, test_percent_decode, 0, COUNT(DECODES));
    tcase_add_test(tc, test_percent_decode_output_size);
    tcase_add_test(tc, test_query_types);
    tcase_add_test(tc, test_query_watch);
    tcase_add_test(tc, test_query_flags_and_keys);
    tcase_add_test(tc, test_query_empty);
    tcase_add_loop_test(tc, test_query_last_event_id, 0, COUNT(LAST_IDS));
    tcase_add_loop_test(tc, test_query_malformed, 0, COUNT(BAD_QUERIES));
    tcase_add_test(tc, test_query_list_limit);
    tcase_add_test(tc, test_query_length_limit);
    tcase_add_loop_test(tc, test_event_id, 0, COUNT(EVENT_IDS));
    suite_add_tcase(s, tc);
    return s;
}
