/*
 * test_sse.c - SSE bytes. Every test checks the framing invariant (SPEC §4.6): no CR, no NUL,
 * and LF only as the frame's own line ends, whatever the row holds: CR, LF, NUL, invalid
 * UTF-8, pretty-printed JSON, 1 MiB of data. The data line is parsed back with cJSON.
 */
#include <cJSON.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/sse.h"

/* Asserts the invariant on bytes that should be `lines` lines then a blank line. */
static void
assert_well_framed(const struct buf *b, int lines)
{
    ck_assert_ptr_nonnull(b->bytes);
    ck_assert_uint_eq(strlen(b->bytes), b->len);  /* no NUL inside */
    ck_assert_ptr_null(memchr(b->bytes, '\r', b->len));
    int lf = 0;
    for (size_t i = 0; i < b->len; i++)
        lf += b->bytes[i] == '\n';
    ck_assert_int_eq(lf, lines + 1);
    ck_assert(b->len >= 2 && memcmp(b->bytes + b->len - 2, "\n\n", 2) == 0);
}

/* Parses the data: line of a frame; free with cJSON_Delete. */
static cJSON *
frame_json(const struct buf *b)
{
    const char *data = strstr(b->bytes, "\ndata: ");
    ck_assert_ptr_nonnull(data);
    data += 7;
    const char *end = strchr(data, '\n');
    cJSON *json = cJSON_ParseWithLength(data, (size_t)(end - data));
    ck_assert_msg(json != NULL, "data line is not JSON: %s", data);
    return json;
}

static struct event
text_event(int64_t id, const char *type, const char *data)
{
    return (struct event){.id = id, .type = type, .type_len = strlen(type), .data = data,
                          .data_len = data ? strlen(data) : 0};
}

START_TEST(test_frame_fields_and_order)
{
    struct event e = text_event(7, "client_output_delta", "{\"a\": [1, 2]}");
    e.stream_id = "queen";
    e.stream_id_len = 5;
    e.timestamp = (struct event_value){.kind = EVENT_VALUE_TEXT, .text = "2026", .text_len = 4};
    struct buf b;
    buf_init(&b, 1 << 20);
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    assert_well_framed(&b, 2);
    ck_assert_str_eq(b.bytes, "id: 7\ndata: {\"type\":\"client_output_delta\",\"stream_id\":"
                     "\"queen\",\"node_id\":null,\"execution_id\":null,\"data\":{\"a\":[1,2]},"
                     "\"timestamp\":\"2026\",\"correlation_id\":null,\"colony_id\":null,"
                     "\"seq\":7}\n\n");
    buf_reset(&b);
    e.run_id = "r1";
    e.run_id_len = 2;
    ck_assert_int_eq(sse_append_event(&b, &e, true), 0);
    assert_well_framed(&b, 3);
    static const char head[] = "id: 7\nevent: client_output_delta\ndata: ";
    ck_assert(strncmp(b.bytes, head, sizeof(head) - 1) == 0);
    ck_assert(strstr(b.bytes, "\"seq\":7,\"run_id\":\"r1\"}") != NULL);
    buf_release(&b);
}
END_TEST

static const struct {
    const char *data;       /* the data column */
    size_t len;
    const char *expected;   /* "data": value in the frame */
} DATA[] = {
    {"{\n  \"a\": \"x\\ny\"\n}", 0, "{\"a\":\"x\\ny\"}"},
    {"12345678901234567890123", 0, "12345678901234567890123"},
    {"\"s\"", 0, "\"s\""},
    {"not json\r\nevent: evil", 0, "\"not json\\r\\nevent: evil\""},
    {"{\"a\":\"raw\nLF\"}", 0, "{\"a\":\"raw\\nLF\"}"},
    {"a\0b", 3, "\"a\xef\xbf\xbd" "b\""},
    {"\xff\xfe", 0, "\"\xef\xbf\xbd\xef\xbf\xbd\""},
    {"[]", 0, "[]"},
};

START_TEST(test_hostile_data)
{
    size_t len = DATA[_i].len ? DATA[_i].len : strlen(DATA[_i].data);
    struct event e = text_event(1, "t", NULL);
    e.data = DATA[_i].data;
    e.data_len = len;
    struct buf b;
    buf_init(&b, 1 << 20);
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    assert_well_framed(&b, 2);
    char expected[128];
    snprintf(expected, sizeof(expected), "\"data\":%s,", DATA[_i].expected);
    ck_assert_msg(strstr(b.bytes, expected) != NULL, "want %s in %s", expected, b.bytes);
    cJSON_Delete(frame_json(&b));
    buf_release(&b);
}
END_TEST

START_TEST(test_hostile_fields)
{
    static const char type[] = "a\rb\nc\0d\xc0\x80";
    struct event e = text_event(9, "x", "{}");
    e.type = type;
    e.type_len = sizeof(type) - 1;
    e.stream_id = "w\r\n:\xed\xa0\x80";
    e.stream_id_len = strlen(e.stream_id);
    e.node_id = "\n\nid: 666\n\n";
    e.node_id_len = strlen(e.node_id);
    struct buf b;
    buf_init(&b, 1 << 20);
    ck_assert_int_eq(sse_append_event(&b, &e, true), 0);
    assert_well_framed(&b, 3);
    static const char head[] = "id: 9\nevent: a?b?c\xef\xbf\xbd" "d";
    ck_assert(strncmp(b.bytes, head, sizeof(head) - 1) == 0);
    cJSON *json = frame_json(&b);
    ck_assert_str_eq(cJSON_GetObjectItem(json, "node_id")->valuestring, "\n\nid: 666\n\n");
    ck_assert_str_eq(cJSON_GetObjectItem(json, "stream_id")->valuestring,
                     "w\r\n:\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

START_TEST(test_one_mebibyte_data)
{
    size_t n = 1 << 20;
    char *data = malloc(n + 3);
    ck_assert_ptr_nonnull(data);
    data[0] = '"';
    for (size_t i = 1; i <= n; i++)
        data[i] = i % 100 == 0 ? '\n' : 'x';  /* raw LF: not JSON, becomes a string */
    data[n + 1] = '"';
    data[n + 2] = '\0';
    struct event e = text_event(3, "t", data);
    struct buf b;
    buf_init(&b, 16 << 20);
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    assert_well_framed(&b, 2);
    cJSON_Delete(frame_json(&b));
    buf_release(&b);
    free(data);
}
END_TEST

START_TEST(test_timestamp_kinds)
{
    struct event e = text_event(2, "t", "{}");
    struct buf b;
    buf_init(&b, 4096);
    e.timestamp = (struct event_value){.kind = EVENT_VALUE_INTEGER, .integer = INT64_MAX};
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    ck_assert(strstr(b.bytes, "\"timestamp\":9223372036854775807,") != NULL);
    buf_reset(&b);
    e.timestamp = (struct event_value){.kind = EVENT_VALUE_REAL, .real = 1.5};
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    ck_assert(strstr(b.bytes, "\"timestamp\":1.5,") != NULL);
    buf_reset(&b);
    e.timestamp = (struct event_value){.kind = EVENT_VALUE_NULL};
    e.data = NULL;
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    ck_assert(strstr(b.bytes, "\"data\":null,\"timestamp\":null,") != NULL);
    assert_well_framed(&b, 2);
    buf_release(&b);
}
END_TEST

START_TEST(test_control_lines)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(sse_append_open(&b, 3000), 0);
    ck_assert(strncmp(b.bytes, "retry: 3000\n:", 13) == 0);
    assert_well_framed(&b, 2);
    buf_reset(&b);
    ck_assert_int_eq(sse_append_keepalive(&b), 0);
    ck_assert_str_eq(b.bytes, ": keepalive\n\n");
    buf_reset(&b);
    ck_assert_int_eq(sse_append_probe(&b), 0);
    ck_assert_str_eq(b.bytes, ":\n");
    buf_reset(&b);
    ck_assert_int_eq(sse_append_gap(&b, 5, 17), 0);
    ck_assert_str_eq(b.bytes, "event: gap\ndata: {\"requested\":5,\"resumed_from\":17}\n\n");
    buf_release(&b);
}
END_TEST

START_TEST(test_buffer_limit_leaves_buffer_unchanged)
{
    struct event e = text_event(1, "t", "{\"k\":\"0123456789012345678901234567890123456789\"}");
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(buf_append_str(&b, "keep"), 0);
    ck_assert_int_eq(sse_append_event(&b, &e, false), -1);
    ck_assert_str_eq(b.bytes, "keep");
    char sixty[60];
    memset(sixty, 'x', sizeof(sixty));
    ck_assert_int_eq(buf_append(&b, sixty, sizeof(sixty)), 0);
    ck_assert_int_eq(buf_append(&b, "x", 1), -1);
    ck_assert_uint_eq(b.len, 64);
    buf_release(&b);
    buf_release(NULL);
}
END_TEST

static const struct {
    const char *in;
    size_t len;
    const char *out;
} UTF8[] = {
    {"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 0, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"},
    {"\xc0\x80", 0, "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xed\xa0\x80", 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"a\xe2\x82", 0, "a\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xf4\x90\x80\x80", 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"a\0b", 3, "a\xef\xbf\xbd" "b"},
    {"", 0, ""},
};

START_TEST(test_utf8_sanitize)
{
    size_t len = UTF8[_i].len ? UTF8[_i].len : strlen(UTF8[_i].in);
    char out[64];
    size_t n = sse_utf8_sanitize(UTF8[_i].in, len, out);
    ck_assert_uint_eq(n, strlen(UTF8[_i].out));
    ck_assert_str_eq(out, UTF8[_i].out);
}
END_TEST

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_sse(void);

Suite *
suite_sse(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("sse");
    tcase_add_test(tc, test_frame_fields_and_order);
    tcase_add_loop_test(tc, test_hostile_data, 0, COUNT(DATA));
    tcase_add_test(tc, test_hostile_fields);
    tcase_add_test(tc, test_one_mebibyte_data);
    tcase_add_test(tc, test_timestamp_kinds);
    tcase_add_test(tc, test_control_lines);
    tcase_add_test(tc, test_buffer_limit_leaves_buffer_unchanged);
    tcase_add_loop_test(tc, test_utf8_sanitize, 0, COUNT(UTF8));
    suite_add_tcase(s, tc);
    return s;
}
