/*
 * test_http.c - CGI response heads and JSON bodies (fcgi/http.h, SPEC §4.1, §4.9, §5).
 *
 * Covers: status texts; the event-stream head; 204 without a body; error heads and
 * {"error": ...} bodies parsed back with cJSON (quotes, CR/LF, control bytes in the message);
 * 405 with Allow; Retry-After only when asked; HEAD (with_body=false) writes no body; the
 * CORS allowlist and the CORS header appearing only when an origin is given; the health body.
 * Every head is checked to use CRLF line ends only and to end with one blank line.
 */
#include <cJSON.h>
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "fcgi/http.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Checks the head (up to the blank line): CRLF only, no NUL; returns the body's offset. */
static size_t
assert_head(const struct buf *b, int status)
{
    ck_assert_ptr_nonnull(b->bytes);
    ck_assert_uint_eq(strlen(b->bytes), b->len);
    char first[64];
    snprintf(first, sizeof(first), "Status: %d %s\r\n", status, http_status_text(status));
    ck_assert_msg(strncmp(b->bytes, first, strlen(first)) == 0, "head starts %.40s", b->bytes);
    const char *end = strstr(b->bytes, "\r\n\r\n");
    ck_assert_ptr_nonnull(end);
    for (const char *p = b->bytes; p < end + 4; p++) {
        if (*p == '\n')
            ck_assert_msg(p > b->bytes && p[-1] == '\r', "bare LF in head");
        if (*p == '\r')
            ck_assert_msg(p[1] == '\n', "bare CR in head");
    }
    return (size_t)(end + 4 - b->bytes);
}

/* True when the head (before the blank line) holds this exact header line. */
static bool
head_has(const struct buf *b, const char *line)
{
    const char *end = strstr(b->bytes, "\r\n\r\n");
    char want[256];
    snprintf(want, sizeof(want), "\r\n%s\r\n", line);
    const char *hit = strstr(b->bytes, want);
    return hit != NULL && hit <= end;
}

static cJSON *
body_json(const struct buf *b, size_t body)
{
    ck_assert_uint_gt(b->len, body);
    cJSON *json = cJSON_Parse(b->bytes + body);
    ck_assert_msg(json != NULL, "body is not JSON: %s", b->bytes + body);
    return json;
}

static const struct {
    int status;
    const char *text;
} STATUS_TEXTS[] = {
    {200, "OK"}, {204, "No Content"}, {400, "Bad Request"}, {404, "Not Found"},
    {405, "Method Not Allowed"}, {503, "Service Unavailable"}, {299, "Unknown"},
    {0, "Unknown"}, {-1, "Unknown"}, {999, "Unknown"},
};

START_TEST(test_status_text)
{
    ck_assert_str_eq(http_status_text(STATUS_TEXTS[_i].status), STATUS_TEXTS[_i].text);
}
END_TEST

START_TEST(test_stream_head)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_stream_head(&b, NULL), 0);
    size_t body = assert_head(&b, 200);
    ck_assert_uint_eq(body, b.len);  /* nothing after the head */
    ck_assert(strncmp(b.bytes, "Status: 200 OK\r\n", 16) == 0);
    ck_assert(head_has(&b, "Content-Type: text/event-stream; charset=utf-8"));
    ck_assert(head_has(&b, "Cache-Control: no-cache"));
    ck_assert(head_has(&b, "X-Accel-Buffering: no"));
    ck_assert_ptr_null(strstr(b.bytes, "Access-Control"));
    ck_assert_str_eq(b.bytes + b.len - 4, "\r\n\r\n");
    buf_release(&b);
}
END_TEST

START_TEST(test_no_content)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_no_content(&b, NULL), 0);
    ck_assert_uint_eq(assert_head(&b, 204), b.len);
    ck_assert_ptr_null(strstr(b.bytes, "Access-Control"));
    buf_reset(&b);
    ck_assert_int_eq(http_append_no_content(&b, "https://a.example"), 0);
    ck_assert_uint_eq(assert_head(&b, 204), b.len);
    ck_assert(head_has(&b, "Access-Control-Allow-Origin: https://a.example"));
    buf_release(&b);
}
END_TEST

static const struct {
    int status;
    const char *message;
    int retry_after_s;
} ERRORS[] = {
    {400, "malformed session id", 0},
    {404, "no such session", 0},
    {405, "method not allowed", 0},
    {503, "database unavailable", 5},
    {503, "no free stream slot", 1},
    {400, "say \"no\"\r\nX-Injected: 1\n\\", 0},
    {404, "", 0},
    {400, "\x01\x1f tab\there", 0},
    {405, "with retry", 30},
};

START_TEST(test_error)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_error(&b, ERRORS[_i].status, ERRORS[_i].message,
                                       ERRORS[_i].retry_after_s, NULL, true), 0);
    size_t body = assert_head(&b, ERRORS[_i].status);
    ck_assert(strstr(b.bytes, "Content-Type: application/json") != NULL);
    ck_assert_int_eq(head_has(&b, "Allow: GET, HEAD"), ERRORS[_i].status == 405);
    char retry[64];
    snprintf(retry, sizeof(retry), "Retry-After: %d", ERRORS[_i].retry_after_s);
    ck_assert_int_eq(head_has(&b, retry), ERRORS[_i].retry_after_s > 0);
    ck_assert_int_eq(strstr(b.bytes, "Retry-After") != NULL, ERRORS[_i].retry_after_s > 0);
    ck_assert_ptr_null(strstr(b.bytes, "X-Injected: 1\r\n"));
    ck_assert_ptr_null(strstr(b.bytes, "Access-Control"));
    cJSON *json = body_json(&b, body);
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(json, "error");
    ck_assert(cJSON_IsString(error));
    ck_assert_str_eq(error->valuestring, ERRORS[_i].message);
    ck_assert_ptr_null(memchr(b.bytes + body, '\r', b.len - body));  /* escaped in JSON */
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

/* HEAD: the same head, no body. */
START_TEST(test_error_without_body)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_error(&b, 503, "down", 5, NULL, false), 0);
    ck_assert_uint_eq(assert_head(&b, 503), b.len);
    ck_assert(head_has(&b, "Retry-After: 5"));
    ck_assert_ptr_null(strstr(b.bytes, "down"));
    buf_reset(&b);
    ck_assert_int_eq(http_append_error(&b, 405, "no", 0, NULL, false), 0);
    ck_assert_uint_eq(assert_head(&b, 405), b.len);
    ck_assert(head_has(&b, "Allow: GET, HEAD"));
    buf_release(&b);
}
END_TEST

static const struct {
    const char *allowlist;
    const char *origin;
    const char *expected;
} CORS[] = {
    {NULL, "https://a.example", NULL}, {NULL, NULL, NULL}, {"", "https://a.example", NULL},
    {"*", NULL, "*"}, {"*", "https://a.example", "*"}, {"*", "", "*"},
    {"https://a.example", "https://a.example", "https://a.example"},
    {"https://b.example,https://a.example", "https://a.example", "https://a.example"},
    {"https://b.example, https://a.example", "https://a.example", "https://a.example"},
    {"https://a.example", "https://a.example.evil", NULL},
    {"https://a.example", "https://a.exampl", NULL},
    {"https://a.example", "http://a.example", NULL},
    {"https://a.example", "https://a.example\r\nX-Injected: 1", NULL},
    {"https://a.example", NULL, NULL}, {"https://a.example", "", NULL},
    {"https://a.example,,", "", NULL}, {"https://a.example", "*", NULL},
    {"https://b.example,https://a.example", "https://b.example,https://a.example", NULL},
};

START_TEST(test_cors_origin)
{
    const char *got = http_cors_origin(CORS[_i].allowlist, CORS[_i].origin);
    if (CORS[_i].expected == NULL)
        ck_assert_msg(got == NULL, "row %d: got %s", _i, got);
    else
        ck_assert_str_eq(got, CORS[_i].expected);
}
END_TEST

/* The CORS header is in every head when an origin is given, and in none otherwise. */
START_TEST(test_cors_header)
{
    static const char *const origins[] = {"https://a.example", "*"};
    for (int i = 0; i < 2; i++) {
        char line[128];
        snprintf(line, sizeof(line), "Access-Control-Allow-Origin: %s", origins[i]);
        struct buf b;
        buf_init(&b, 4096);
        ck_assert_int_eq(http_append_stream_head(&b, origins[i]), 0);
        assert_head(&b, 200);
        ck_assert(head_has(&b, line));
        buf_reset(&b);
        ck_assert_int_eq(http_append_error(&b, 404, "x", 0, origins[i], true), 0);
        assert_head(&b, 404);
        ck_assert(head_has(&b, line));
        buf_reset(&b);
        struct health_facts facts = {.schema_version = 1};
        ck_assert_int_eq(http_append_health(&b, &facts, origins[i], true), 0);
        assert_head(&b, 200);
        ck_assert(head_has(&b, line));
        buf_release(&b);
    }
}
END_TEST

START_TEST(test_health)
{
    struct health_facts facts = {.schema_version = 3, .newest_event_id = 42,
                                 .streams_open = 7, .is_wal = true};
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    cJSON *json = body_json(&b, assert_head(&b, 200));
    ck_assert_ptr_null(strstr(b.bytes, "Access-Control"));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(json, "status")->valuestring, "ok");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(json, "schema_version")->valueint, 3);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(json, "newest_event_id")->valueint, 42);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(json, "streams_open")->valueint, 7);
    ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(json, "database")));
    cJSON_Delete(json);
    buf_reset(&b);
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, false), 0);  /* HEAD */
    ck_assert_uint_eq(assert_head(&b, 200), b.len);
    buf_release(&b);
}
END_TEST

/* Issue 12: the hub's facts, and one session's count when it was asked for; none of them
 * when there is no hub. */
START_TEST(test_health_hub_facts)
{
    struct health_facts facts = {.schema_version = 1, .hub = "shared", .hub_role = "follower",
                                 .hub_leader_pid = 4242, .subscribers = 200,
                                 .session_id = "s\"1", .session_subscribers = 3};
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    cJSON *json = body_json(&b, assert_head(&b, 200));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(json, "hub")->valuestring, "shared");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(json, "hub_role")->valuestring, "follower");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(json, "hub_leader_pid")->valueint, 4242);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(json, "subscribers")->valueint, 200);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(json, "session_id")->valuestring, "s\"1");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(json, "session_subscribers")->valueint, 3);
    cJSON_Delete(json);
    buf_reset(&b);
    facts.hub = NULL;
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    json = body_json(&b, assert_head(&b, 200));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(json, "hub"));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(json, "session_subscribers"));
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

/* Issue 14: a node fed by sse-fcgi-relay says how far its copy lags; without a relay the
 * key is absent. */
START_TEST(test_health_relay)
{
    struct health_relay relay = {.state = "reconnecting", .position = 90,
                                 .upstream_newest = 100, .seconds_in_state = 12,
                                 .copied_at = NULL, .detail = "connection refused"};
    struct health_facts facts = {.schema_version = 1, .relay = &relay};
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    cJSON *json = body_json(&b, assert_head(&b, 200));
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(json, "relay");
    ck_assert(cJSON_IsObject(r));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(r, "state")->valuestring, "reconnecting");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r, "position")->valueint, 90);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r, "upstream_newest")->valueint, 100);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r, "behind")->valueint, 10);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r, "seconds_in_state")->valueint, 12);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "copied_at")));
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(r, "detail")->valuestring,
                     "connection refused");
    cJSON_Delete(json);
    buf_reset(&b);
    relay.position = 120;    /* read the log before the relay's last batch: never negative */
    relay.copied_at = "2026-12-01T10:00:00.000Z";
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    json = body_json(&b, assert_head(&b, 200));
    r = cJSON_GetObjectItemCaseSensitive(json, "relay");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r, "behind")->valueint, 0);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(r, "copied_at")->valuestring,
                     "2026-12-01T10:00:00.000Z");
    cJSON_Delete(json);
    buf_reset(&b);
    facts.relay = NULL;
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    json = body_json(&b, assert_head(&b, 200));
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(json, "relay"));
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

/* An int64 event id must reach the client with all its digits (a double keeps only 53 bits),
 * as sse.c does for id and seq. */
START_TEST(test_health_large_event_id)
{
    struct health_facts facts = {.schema_version = 1, .newest_event_id = INT64_MAX};
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    cJSON_Delete(body_json(&b, assert_head(&b, 200)));
    ck_assert_msg(strstr(b.bytes, "\"newest_event_id\":9223372036854775807") != NULL,
                  "digits lost: %s", b.bytes);
    buf_release(&b);
}
END_TEST

START_TEST(test_limit_leaves_buffer_unchanged)
{
    struct buf b;
    buf_init(&b, 40);
    ck_assert_int_eq(buf_append_str(&b, "keep"), 0);
    ck_assert_int_eq(http_append_stream_head(&b, NULL), -1);
    ck_assert_int_eq(http_append_error(&b, 404, "no such session", 0, NULL, true), -1);
    struct health_facts facts = {.schema_version = 1};
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), -1);
    ck_assert_uint_eq(b.len, 4);
    ck_assert_str_eq(b.bytes, "keep");
    buf_release(&b);
}
END_TEST

Suite *suite_http(void);

Suite *
suite_http(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 10);
    tcase_add_loop_test(tc, test_status_text, 0, COUNT(STATUS_TEXTS));
    tcase_add_test(tc, test_stream_head);
    tcase_add_test(tc, test_no_content);
    tcase_add_loop_test(tc, test_error, 0, COUNT(ERRORS));
    tcase_add_test(tc, test_error_without_body);
    tcase_add_loop_test(tc, test_cors_origin, 0, COUNT(CORS));
    tcase_add_test(tc, test_cors_header);
    tcase_add_test(tc, test_health);
    tcase_add_test(tc, test_health_large_event_id);
    tcase_add_test(tc, test_health_hub_facts);
    tcase_add_test(tc, test_health_relay);
    tcase_add_test(tc, test_limit_leaves_buffer_unchanged);
    suite_add_tcase(s, tc);
    return s;
}
