/*
 * test_http.c - response heads and JSON bodies (SPEC §4.1, §5): stream head, 204, errors
 * with Allow and Retry-After, HEAD without body, CORS allowlist, the health body.
 */
#include <cJSON.h>
#include <check.h>
#include <string.h>

#include "fcgi/http.h"

static cJSON *
body_json(const struct buf *b)
{
    const char *body = strstr(b->bytes, "\r\n\r\n");
    ck_assert_ptr_nonnull(body);
    cJSON *json = cJSON_Parse(body + 4);
    ck_assert_msg(json != NULL, "body is not JSON: %s", body + 4);
    return json;
}

START_TEST(test_stream_head)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_stream_head(&b, NULL), 0);
    ck_assert(strncmp(b.bytes, "Status: 200 OK\r\n", 16) == 0);
    ck_assert(strstr(b.bytes, "Content-Type: text/event-stream; charset=utf-8\r\n") != NULL);
    ck_assert(strstr(b.bytes, "Cache-Control: no-cache\r\n") != NULL);
    ck_assert(strstr(b.bytes, "X-Accel-Buffering: no\r\n") != NULL);
    ck_assert(strstr(b.bytes, "Access-Control") == NULL);
    ck_assert_str_eq(b.bytes + b.len - 4, "\r\n\r\n");
    buf_reset(&b);
    ck_assert_int_eq(http_append_no_content(&b, NULL), 0);
    ck_assert_str_eq(b.bytes, "Status: 204 No Content\r\n\r\n");
    buf_release(&b);
}
END_TEST

START_TEST(test_errors)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_error(&b, 405, "say \"no\"\n", 0, NULL, true), 0);
    ck_assert(strncmp(b.bytes, "Status: 405 Method Not Allowed\r\n", 32) == 0);
    ck_assert(strstr(b.bytes, "Allow: GET, HEAD\r\n") != NULL);
    ck_assert(strstr(b.bytes, "Retry-After") == NULL);
    cJSON *json = body_json(&b);
    ck_assert_str_eq(cJSON_GetObjectItem(json, "error")->valuestring, "say \"no\"\n");
    cJSON_Delete(json);
    buf_reset(&b);
    ck_assert_int_eq(http_append_error(&b, 503, "down", 5, NULL, false), 0);
    ck_assert(strstr(b.bytes, "Retry-After: 5\r\n") != NULL);
    ck_assert_str_eq(b.bytes + b.len - 4, "\r\n\r\n");  /* HEAD: no body */
    buf_release(&b);
    ck_assert_str_eq(http_status_text(404), "Not Found");
    ck_assert_str_eq(http_status_text(299), "Unknown");
}
END_TEST

START_TEST(test_cors)
{
    ck_assert_ptr_null(http_cors_origin(NULL, "https://a.example"));
    ck_assert_ptr_null(http_cors_origin("", "https://a.example"));
    ck_assert_str_eq(http_cors_origin("*", NULL), "*");
    ck_assert_str_eq(http_cors_origin("https://b.example, https://a.example",
                                      "https://a.example"), "https://a.example");
    ck_assert_ptr_null(http_cors_origin("https://a.example", "https://a.example.evil"));
    ck_assert_ptr_null(http_cors_origin("https://a.example", "https://a.exampl"));
    ck_assert_ptr_null(http_cors_origin("https://a.example", NULL));
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_stream_head(&b, "https://a.example"), 0);
    ck_assert(strstr(b.bytes, "Access-Control-Allow-Origin: https://a.example\r\n"
                     "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n") != NULL);
    buf_release(&b);
}
END_TEST

START_TEST(test_health)
{
    struct health_facts facts = {.schema_version = 1, .newest_event_id = 42,
                                 .streams_open = 3, .is_wal = true};
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(http_append_health(&b, &facts, NULL, true), 0);
    cJSON *json = body_json(&b);
    ck_assert_str_eq(cJSON_GetObjectItem(json, "status")->valuestring, "ok");
    ck_assert_str_eq(cJSON_GetObjectItem(json, "database")->valuestring, "reachable");
    ck_assert_int_eq(cJSON_GetObjectItem(json, "schema_version")->valueint, 1);
    ck_assert_int_eq(cJSON_GetObjectItem(json, "newest_event_id")->valueint, 42);
    ck_assert_int_eq(cJSON_GetObjectItem(json, "streams_open")->valueint, 3);
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

Suite *suite_http(void);

Suite *
suite_http(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_add_test(tc, test_stream_head);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_cors);
    tcase_add_test(tc, test_health);
    suite_add_tcase(s, tc);
    return s;
}
