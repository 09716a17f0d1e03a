/*
 * test_sse.c - the bytes of an event stream (fcgi/sse.h, SPEC §4.1, §4.3, §4.6, §4.7).
 *
 * Every test passes what it wrote through assert_sse_bytes(): no NUL, no CR, LF only as the
 * line ends the module writes, and every line a known SSE field or comment (STYLE §8). Event
 * frames are parsed back with cJSON to check key order and values. Hostile rows: CR, LF,
 * CRLF and NUL in every text field, invalid UTF-8 (0xFF, truncated, overlong, surrogates),
 * data that is not JSON or only nearly JSON, pretty-printed JSON, 1 MiB of data. Also the
 * control lines (open, keepalive, probe, gap), sse_utf8_sanitize and the buffer limit.
 */
#include <cJSON.h>
#include <check.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/sse.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define FFFD "\xef\xbf\xbd"

/* The framing invariant on b->bytes[start..len): no NUL, no CR, exactly `lines` LFs with the
 * last byte an LF, and each line empty, a comment, or an id/event/data/retry field. */
static void
assert_sse_bytes(const struct buf *b, size_t start, int lines)
{
    ck_assert_ptr_nonnull(b->bytes);
    ck_assert_uint_gt(b->len, start);
    const char *p = b->bytes + start, *end = b->bytes + b->len;
    ck_assert_msg(memchr(p, '\0', (size_t)(end - p)) == NULL, "NUL in SSE bytes");
    ck_assert_msg(memchr(p, '\r', (size_t)(end - p)) == NULL, "CR in SSE bytes");
    ck_assert_int_eq(end[-1], '\n');
    int seen = 0;
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        bool is_known = lf == p || *p == ':' || strncmp(p, "id: ", 4) == 0
                        || strncmp(p, "event: ", 7) == 0 || strncmp(p, "data: ", 6) == 0
                        || strncmp(p, "retry: ", 7) == 0;
        ck_assert_msg(is_known, "line %d is no SSE field: %.40s", seen, p);
        seen++;
        p = lf + 1;
    }
    ck_assert_msg(seen == lines, "%d lines, want %d: %s", seen, lines, b->bytes + start);
}

/* An event frame: the invariant, then "\n\n" at the end and "id: <id>\n" at the start. */
static void
assert_frame(const struct buf *b, size_t start, int64_t id, bool is_named)
{
    assert_sse_bytes(b, start, is_named ? 4 : 3);
    ck_assert(memcmp(b->bytes + b->len - 2, "\n\n", 2) == 0);
    char head[32];
    int n = snprintf(head, sizeof(head), "id: %" PRId64 "\n", id);
    ck_assert_msg(strncmp(b->bytes + start, head, (size_t)n) == 0, "frame starts %.30s",
                  b->bytes + start);
    const char *second = b->bytes + start + n;
    ck_assert(strncmp(second, is_named ? "event: " : "data: ", is_named ? 7 : 6) == 0);
}

/* The raw JSON text of the frame's data line (points into b; length in *len). */
static const char *
frame_json_text(const struct buf *b, size_t start, size_t *len)
{
    const char *data = strstr(b->bytes + start, "\ndata: ");
    ck_assert_ptr_nonnull(data);
    data += 7;
    *len = (size_t)(strchr(data, '\n') - data);
    return data;
}

/* Parses the frame's data line; free with cJSON_Delete. */
static cJSON *
frame_json(const struct buf *b, size_t start)
{
    size_t len;
    const char *text = frame_json_text(b, start, &len);
    cJSON *json = cJSON_ParseWithLength(text, len);
    ck_assert_msg(json != NULL, "data line is not JSON: %.200s", text);
    ck_assert(cJSON_IsObject(json));
    return json;
}

static struct event
text_event(int64_t id, const char *type, const char *data)
{
    return (struct event){.id = id, .type = type, .type_len = type ? strlen(type) : 0,
                          .data = data, .data_len = data ? strlen(data) : 0};
}

/* Appends e into a fresh buffer, checks the frame and returns its parsed JSON. */
static cJSON *
append_and_parse(struct buf *b, const struct event *e, bool is_named)
{
    buf_init(b, 8 << 20);
    ck_assert_int_eq(sse_append_event(b, e, is_named), 0);
    assert_frame(b, 0, e->id, is_named);
    return frame_json(b, 0);
}

static void
assert_string_item(const cJSON *json, const char *key, const char *want)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    ck_assert_msg(item != NULL, "no key %s", key);
    if (want == NULL) {
        ck_assert_msg(cJSON_IsNull(item), "%s should be null", key);
        return;
    }
    ck_assert_msg(cJSON_IsString(item), "%s should be a string", key);
    ck_assert_str_eq(item->valuestring, want);
}

/* The optional text columns of struct event, by mask bit. */
static const char *const FIELD_KEYS[] = {
    "stream_id", "node_id", "execution_id", "correlation_id", "colony_id", "run_id",
};
static const char *const FIELD_VALUES[] = {"worker:w1", "n1", "x1", "c1", "col1", "r1"};

static void
set_field(struct event *e, int field, const char *value)
{
    size_t len = value ? strlen(value) : 0;
    const char **text[] = {&e->stream_id, &e->node_id, &e->execution_id, &e->correlation_id,
                           &e->colony_id, &e->run_id};
    size_t *text_len[] = {&e->stream_id_len, &e->node_id_len, &e->execution_id_len,
                          &e->correlation_id_len, &e->colony_id_len, &e->run_id_len};
    *text[field] = value;
    *text_len[field] = len;
}

/* Bits 0-5: text columns; bit 6: data; bit 7: timestamp. */
static struct event
event_for_mask(int mask)
{
    struct event e = text_event(1000 + mask, "node_log", NULL);
    for (int f = 0; f < COUNT(FIELD_KEYS); f++)
        set_field(&e, f, (mask >> f) & 1 ? FIELD_VALUES[f] : NULL);
    if (mask & 64) {
        e.data = "{\"k\":[1,\"v\"]}";
        e.data_len = strlen(e.data);
    }
    if (mask & 128)
        e.timestamp = (struct event_value){.kind = EVENT_VALUE_INTEGER, .integer = 1700000000};
    return e;
}

static void
assert_key_order(const cJSON *json, bool has_run_id)
{
    static const char *const KEYS[] = {
        "type", "stream_id", "node_id", "execution_id", "data", "timestamp",
        "correlation_id", "colony_id", "seq", "run_id",
    };
    const cJSON *item = json->child;
    int n = has_run_id ? 10 : 9;
    for (int i = 0; i < n; i++, item = item->next) {
        ck_assert_msg(item != NULL, "missing key %s", KEYS[i]);
        ck_assert_str_eq(item->string, KEYS[i]);
    }
    ck_assert_msg(item == NULL, "extra key %s", item ? item->string : "");
}

static void
check_mask(int mask)
{
    struct event e = event_for_mask(mask);
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, false);
    assert_key_order(json, (mask & 32) != 0);
    assert_string_item(json, "type", "node_log");
    for (int f = 0; f < COUNT(FIELD_KEYS) - 1; f++)  /* run_id: absent, not null */
        assert_string_item(json, FIELD_KEYS[f], (mask >> f) & 1 ? FIELD_VALUES[f] : NULL);
    if (mask & 32)
        assert_string_item(json, "run_id", "r1");
    else
        ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(json, "run_id"));
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    ck_assert(mask & 64 ? cJSON_IsObject(data) : cJSON_IsNull(data));
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(json, "timestamp");
    ck_assert(mask & 128 ? cJSON_IsNumber(ts) && ts->valuedouble == 1700000000.0
                         : cJSON_IsNull(ts));
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(json, "seq");
    ck_assert(cJSON_IsNumber(seq) && seq->valuedouble == (double)e.id);
    cJSON_Delete(json);
    buf_release(&b);
}

START_TEST(test_every_field_combination)
{
    for (int mask = 0; mask < 256; mask++)
        check_mask(mask);
}
END_TEST

START_TEST(test_exact_frame)
{
    struct event e = text_event(7, "client_output_delta", "{\"a\": [1, 2]}");
    e.stream_id = "queen";
    e.stream_id_len = 5;
    e.timestamp = (struct event_value){.kind = EVENT_VALUE_TEXT, .text = "2026", .text_len = 4};
    struct buf b;
    buf_init(&b, 1 << 20);
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    assert_frame(&b, 0, 7, false);
    ck_assert_str_eq(b.bytes, "id: 7\ndata: {\"type\":\"client_output_delta\",\"stream_id\":"
                     "\"queen\",\"node_id\":null,\"execution_id\":null,\"data\":{\"a\":[1,2]},"
                     "\"timestamp\":\"2026\",\"correlation_id\":null,\"colony_id\":null,"
                     "\"seq\":7}\n\n");
    buf_release(&b);
}
END_TEST

START_TEST(test_named_event_line)
{
    struct event e = text_event(8, "execution_started", "{}");
    e.run_id = "";
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, true);
    static const char head[] = "id: 8\nevent: execution_started\ndata: {";
    ck_assert(strncmp(b.bytes, head, sizeof(head) - 1) == 0);
    assert_key_order(json, true);
    assert_string_item(json, "run_id", "");  /* run_id set, even if empty */
    cJSON_Delete(json);
    buf_release(&b);
    e = text_event(INT64_MAX, "t", "{}");
    json = append_and_parse(&b, &e, false);
    ck_assert(strstr(b.bytes, "\"seq\":9223372036854775807}") != NULL);
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

/* A frame appended after other bytes leaves them alone and is framed on its own. */
START_TEST(test_frames_back_to_back)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    ck_assert_int_eq(sse_append_keepalive(&b), 0);
    size_t first = b.len;
    struct event e = text_event(1, "a\nb", "{}");
    ck_assert_int_eq(sse_append_event(&b, &e, true), 0);
    size_t second = b.len;
    e.id = 2;
    ck_assert_int_eq(sse_append_event(&b, &e, false), 0);
    assert_sse_bytes(&b, 0, 2 + 4 + 3);
    ck_assert(strncmp(b.bytes, ": keepalive\n\n", first) == 0);
    ck_assert(strncmp(b.bytes + first, "id: 1\nevent: ", 13) == 0);
    ck_assert(strncmp(b.bytes + second, "id: 2\ndata: ", 12) == 0);
    buf_release(&b);
}
END_TEST

/* data column -> the "data" value. raw: expected JSON text in the frame after "data":; else
 * string: the value must be a JSON string equal to this. */
static const struct {
    const char *data;
    size_t len;             /* 0: strlen */
    const char *raw;
    const char *string;
} DATA[] = {
    {"{\"a\":1}", 0, "{\"a\":1}", NULL},
    {"[1,\"x\",null,true]", 0, "[1,\"x\",null,true]", NULL},
    {"1234567890123456789", 0, "1234567890123456789", NULL},
    {"-9223372036854775808", 0, "-9223372036854775808", NULL},
    {"{\"big\":12345678901234567890123}", 0, "{\"big\":12345678901234567890123}", NULL},
    {"\"s\"", 0, "\"s\"", NULL},
    {"null", 0, "null", NULL},
    {"{\n  \"a\": \"x\\ny\",\r\n  \"b\" : [ 1 , 2 ]\n}\n", 0, "{\"a\":\"x\\ny\",\"b\":[1,2]}",
     NULL},
    {"{\"q\": \"say \\\"hi\\\"  //x /*y*/\"}", 0, "{\"q\":\"say \\\"hi\\\"  //x /*y*/\"}", NULL},
    {"{\"u\":\"\\u0000\\r\\n\"}", 0, "{\"u\":\"\\u0000\\r\\n\"}", NULL},
    /* tests/fuzz/regressions/fuzz_frame: a string ending in an escaped backslash */
    {"{\"path\":\"C:\\\\dir\\\\\", \"note\":\"a b\"}", 0,
     "{\"path\":\"C:\\\\dir\\\\\",\"note\":\"a b\"}", NULL},
    {"[\"a\\\\\", \"//x\"]", 0, "[\"a\\\\\",\"//x\"]", NULL},
    {"not json", 0, NULL, "not json"},
    {"not json\r\nevent: evil\n\ndata: x", 0, NULL, "not json\r\nevent: evil\n\ndata: x"},
    {"", 0, NULL, ""},
    {"{\"a\":1,}", 0, NULL, "{\"a\":1,}"},
    {"[1,2", 0, NULL, "[1,2"},
    {"{} // c", 0, NULL, "{} // c"},
    {"01", 0, NULL, "01"},
    {"1.", 0, NULL, "1."},
    {"-.5", 0, NULL, "-.5"},
    {"{\"n\":01}", 0, NULL, "{\"n\":01}"},
    {"{\"a\":\"raw\nLF\"}", 0, NULL, "{\"a\":\"raw\nLF\"}"},
    {"{\"a\":\"raw\rCR\"}", 0, NULL, "{\"a\":\"raw\rCR\"}"},
    {"a\0b", 3, NULL, "a" FFFD "b"},
    {"{}\0{}", 5, NULL, "{}" FFFD "{}"},
    {"\xff\xfe", 0, NULL, FFFD FFFD},
    {"\"\xc0\x80\"", 0, "\"" FFFD FFFD "\"", NULL},
    {"\"\xed\xa0\x80\"", 0, "\"" FFFD FFFD FFFD "\"", NULL},
};

START_TEST(test_data_column)
{
    struct event e = text_event(5, "t", DATA[_i].data);
    if (DATA[_i].len)
        e.data_len = DATA[_i].len;
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, false);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    ck_assert_ptr_nonnull(data);
    if (DATA[_i].raw != NULL) {
        char want[256];
        snprintf(want, sizeof(want), "\"data\":%s,\"timestamp\":", DATA[_i].raw);
        ck_assert_msg(strstr(b.bytes, want) != NULL, "want %s in %s", want, b.bytes);
    } else {
        ck_assert_msg(cJSON_IsString(data), "data %d should be a JSON string: %s", _i,
                      b.bytes);
        ck_assert_str_eq(data->valuestring, DATA[_i].string);
    }
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

/* Hostile bytes for every text field. expected NULL: the value must be valid UTF-8 holding a
 * U+FFFD and the prefix "a" (how many U+FFFD a truncated sequence gives is not fixed). */
static const struct {
    const char *in;
    size_t len;             /* 0: strlen */
    const char *expected;
} HOSTILE[] = {
    {"\r", 0, "\r"}, {"\n", 0, "\n"}, {"\r\n", 0, "\r\n"}, {"a\rb\nc", 0, "a\rb\nc"},
    {"\n\nid: 666\n\ndata: {}\n\n", 0, "\n\nid: 666\n\ndata: {}\n\n"},
    {"a\0b", 3, "a" FFFD "b"}, {"\0", 1, FFFD}, {"a\0\r\n", 4, "a" FFFD "\r\n"},
    {"\xff", 0, FFFD}, {"a\xff\xfe" "b", 0, "a" FFFD FFFD "b"},
    {"\xc0\x80", 0, FFFD FFFD}, {"\xed\xa0\x80", 0, FFFD FFFD FFFD},
    {"\xf4\x90\x80\x80", 0, FFFD FFFD FFFD FFFD},
    {"a\xe2\x82", 0, NULL}, {"a\xf0\x9f\x98", 0, NULL}, {"a\xc3", 0, NULL},
    {"\x01\x1f\x7f\"\\", 0, "\x01\x1f\x7f\"\\"},
    {"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0, "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
};

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 table 3-7), or 0. Independent of
 * the module under test on purpose. */
static size_t
utf8_len(const unsigned char *s)
{
    static const struct { unsigned char first_lo, first_hi, lo, hi; size_t n; } FORMS[] = {
        {0x01, 0x7f, 0, 0, 1}, {0xc2, 0xdf, 0x80, 0xbf, 2}, {0xe0, 0xe0, 0xa0, 0xbf, 3},
        {0xe1, 0xec, 0x80, 0xbf, 3}, {0xed, 0xed, 0x80, 0x9f, 3}, {0xee, 0xef, 0x80, 0xbf, 3},
        {0xf0, 0xf0, 0x90, 0xbf, 4}, {0xf1, 0xf3, 0x80, 0xbf, 4}, {0xf4, 0xf4, 0x80, 0x8f, 4},
    };
    for (int i = 0; i < COUNT(FORMS); i++) {
        if (s[0] < FORMS[i].first_lo || s[0] > FORMS[i].first_hi)
            continue;
        if (FORMS[i].n > 1 && (s[1] < FORMS[i].lo || s[1] > FORMS[i].hi))
            return 0;
        for (size_t k = 2; k < FORMS[i].n; k++) {
            if (s[k] < 0x80 || s[k] > 0xbf)
                return 0;
        }
        return FORMS[i].n;
    }
    return 0;
}

/* True when s is well-formed UTF-8 that starts with "a" and holds a U+FFFD. */
static bool
is_valid_utf8_with_fffd(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0';) {
        size_t n = utf8_len(p);
        if (n == 0)
            return false;
        p += n;
    }
    return strncmp(s, "a", 1) == 0 && strstr(s, FFFD) != NULL;
}

static void
assert_hostile_value(const cJSON *json, const char *key, int row)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    ck_assert_msg(cJSON_IsString(item), "%s is not a string", key);
    if (HOSTILE[row].expected == NULL)
        ck_assert_msg(is_valid_utf8_with_fffd(item->valuestring), "%s", key);
    else
        ck_assert_str_eq(item->valuestring, HOSTILE[row].expected);
}

START_TEST(test_hostile_fields)
{
    size_t len = HOSTILE[_i].len ? HOSTILE[_i].len : strlen(HOSTILE[_i].in);
    struct event e = text_event(9, HOSTILE[_i].in, "{}");
    e.type_len = len;
    for (int f = 0; f < COUNT(FIELD_KEYS); f++)
        set_field(&e, f, HOSTILE[_i].in);
    e.stream_id_len = e.node_id_len = e.execution_id_len = len;
    e.correlation_id_len = e.colony_id_len = e.run_id_len = len;
    e.timestamp = (struct event_value){.kind = EVENT_VALUE_TEXT, .text = HOSTILE[_i].in,
                                       .text_len = len};
    for (int named = 0; named <= 1; named++) {
        struct buf b;
        cJSON *json = append_and_parse(&b, &e, named);
        assert_key_order(json, true);
        assert_hostile_value(json, "type", _i);
        for (int f = 0; f < COUNT(FIELD_KEYS); f++)
            assert_hostile_value(json, FIELD_KEYS[f], _i);
        assert_hostile_value(json, "timestamp", _i);
        cJSON_Delete(json);
        buf_release(&b);
    }
}
END_TEST

/* data holding each hostile value inside a JSON string, and as the whole column. */
START_TEST(test_hostile_data)
{
    size_t len = HOSTILE[_i].len ? HOSTILE[_i].len : strlen(HOSTILE[_i].in);
    char data[64];
    ck_assert_uint_lt(len + 9, sizeof(data));
    memcpy(data, "{\"k\":\"", 6);
    memcpy(data + 6, HOSTILE[_i].in, len);
    memcpy(data + 6 + len, "\"}", 3);
    struct event e = text_event(11, "t", data);
    e.data_len = len + 8;
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, true);
    cJSON_Delete(json);
    buf_release(&b);
    e.data = HOSTILE[_i].in;
    e.data_len = len;
    json = append_and_parse(&b, &e, true);
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

/* 100000 nested arrays, open and closed: no stack overflow, a well-framed event. */
START_TEST(test_deeply_nested_data)
{
    enum { DEPTH = 100000 };
    char *data = malloc(2 * DEPTH + 1);
    ck_assert_ptr_nonnull(data);
    memset(data, '[', DEPTH);
    memset(data + DEPTH, ']', DEPTH);
    data[2 * DEPTH] = '\0';
    struct event e = text_event(6, "t", data);
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, false);
    cJSON_Delete(json);
    buf_release(&b);
    data[2 * DEPTH - 1] = '\0';  /* one bracket short: not JSON, so a string */
    e.data_len = 2 * DEPTH - 1;
    json = append_and_parse(&b, &e, false);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, "data");
    ck_assert(cJSON_IsString(item) && strcmp(item->valuestring, data) == 0);
    cJSON_Delete(json);
    buf_release(&b);
    free(data);
}
END_TEST

/* 1 MiB of data: as a valid JSON string, and as invalid JSON full of raw CR and LF. */
START_TEST(test_one_mebibyte_data)
{
    size_t n = 1 << 20;
    char *data = malloc(n + 3);
    ck_assert_ptr_nonnull(data);
    data[0] = '"';
    memset(data + 1, 'x', n);
    data[n + 1] = '"';
    data[n + 2] = '\0';
    struct event e = text_event(3, "t", data);
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, false);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, "data");
    ck_assert(cJSON_IsString(item) && strlen(item->valuestring) == n);
    cJSON_Delete(json);
    buf_release(&b);
    for (size_t i = 1; i <= n; i++)
        data[i] = i % 100 == 0 ? '\n' : i % 100 == 50 ? '\r' : 'x';
    data[n + 1] = '\0';  /* no closing quote: not JSON */
    e.data_len = n + 1;
    json = append_and_parse(&b, &e, true);
    item = cJSON_GetObjectItemCaseSensitive(json, "data");
    ck_assert(cJSON_IsString(item) && strcmp(item->valuestring, data) == 0);
    cJSON_Delete(json);
    buf_release(&b);
    free(data);
}
END_TEST

static const struct {
    struct event_value ts;
    const char *expected;   /* text after "timestamp": */
} TIMESTAMPS[] = {
    {{.kind = EVENT_VALUE_NULL}, "null,"},
    {{.kind = EVENT_VALUE_INTEGER, .integer = 0}, "0,"},
    {{.kind = EVENT_VALUE_INTEGER, .integer = -5}, "-5,"},
    {{.kind = EVENT_VALUE_INTEGER, .integer = INT64_MAX}, "9223372036854775807,"},
    {{.kind = EVENT_VALUE_INTEGER, .integer = INT64_MIN}, "-9223372036854775808,"},
    {{.kind = EVENT_VALUE_REAL, .real = 1.5}, "1.5,"},
    {{.kind = EVENT_VALUE_REAL, .real = 1700000000.25}, "1700000000.25,"},
    {{.kind = EVENT_VALUE_TEXT, .text = "2026-01-01T00:00:00Z", .text_len = 20},
     "\"2026-01-01T00:00:00Z\","},
    {{.kind = EVENT_VALUE_TEXT, .text = "", .text_len = 0}, "\"\","},
    {{.kind = EVENT_VALUE_TEXT, .text = "a\r\nb", .text_len = 4}, "\"a\\r\\nb\","},
    {{.kind = EVENT_VALUE_REAL, .real = INFINITY}, "null,"},  /* JSON has no infinity */
    {{.kind = EVENT_VALUE_REAL, .real = -INFINITY}, "null,"},
    {{.kind = EVENT_VALUE_REAL, .real = NAN}, "null,"},
};

START_TEST(test_timestamp_kinds)
{
    struct event e = text_event(2, "t", "{}");
    e.timestamp = TIMESTAMPS[_i].ts;
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, false);
    char want[64];
    snprintf(want, sizeof(want), "\"timestamp\":%s", TIMESTAMPS[_i].expected);
    ck_assert_msg(strstr(b.bytes, want) != NULL, "want %s in %s", want, b.bytes);
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

START_TEST(test_open)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(sse_append_open(&b, 3000), 0);
    assert_sse_bytes(&b, 0, 3);
    ck_assert(strncmp(b.bytes, "retry: 3000\n:", 13) == 0);
    ck_assert(memcmp(b.bytes + b.len - 2, "\n\n", 2) == 0);
    size_t start = b.len;
    ck_assert_int_eq(sse_append_open(&b, 0), 0);
    assert_sse_bytes(&b, start, 3);
    ck_assert(strncmp(b.bytes + start, "retry: 0\n:", 10) == 0);
    buf_release(&b);
}
END_TEST

START_TEST(test_keepalive_and_probe)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(sse_append_keepalive(&b), 0);
    assert_sse_bytes(&b, 0, 2);
    ck_assert_str_eq(b.bytes, ": keepalive\n\n");
    buf_reset(&b);
    ck_assert_int_eq(sse_append_probe(&b), 0);
    assert_sse_bytes(&b, 0, 1);
    ck_assert_str_eq(b.bytes, ":\n");
    buf_release(&b);
}
END_TEST

/* SPEC §4.12: retry, the cursor when there is one, the reason as a comment; one block, no
 * data line, so EventSource fires nothing and comes back after retry ms. */
static const struct {
    long retry_ms;
    bool has_cursor;
    int64_t cursor;
    const char *reason;
    const char *expected;
    int lines;
} REFUSALS[] = {
    {2000, false, 0, "database missing",
     "retry: 2000\n: sse-fcgi unavailable: database missing\n\n", 3},
    {1000, true, 42, "no free stream slot",
     "retry: 1000\nid: 42\n: sse-fcgi unavailable: no free stream slot\n\n", 4},
    {0, true, 0, "x", "retry: 0\nid: 0\n: sse-fcgi unavailable: x\n\n", 4},
    {5000, true, INT64_MAX, "a\r\nb\x7f",
     "retry: 5000\nid: 9223372036854775807\n: sse-fcgi unavailable: a  b \n\n", 4},
};

/* The cursor block: an id and the end of the block, nothing EventSource would fire. */
START_TEST(test_cursor_block)
{
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(sse_append_cursor(&b, 100), 0);
    assert_sse_bytes(&b, 0, 2);
    ck_assert_str_eq(b.bytes, "id: 100\n\n");
    buf_release(&b);
}
END_TEST

/* A shared frame (sse_event_json once, sse_append_frame per stream) is byte for byte the
 * frame sse_append_event writes, whole or as a head the caller completes. */
START_TEST(test_shared_frame_pieces)
{
    struct event e = {.id = 7, .type = "client_output_delta", .type_len = 19,
                      .data = "{\"a\":1}", .data_len = 7};
    for (int is_named = 0; is_named <= 1; is_named++) {
        struct buf whole, pieces;
        buf_init(&whole, 4096);
        buf_init(&pieces, 4096);
        ck_assert_int_eq(sse_append_event(&whole, &e, is_named), 0);
        size_t len;
        char *json = sse_event_json(&e, &len);
        ck_assert_ptr_nonnull(json);
        ck_assert_uint_eq(len, strlen(json));
        ck_assert_int_eq(sse_append_frame(&pieces, &e, is_named, json, len), 0);
        ck_assert_str_eq(pieces.bytes, whole.bytes);
        buf_reset(&pieces);
        ck_assert_int_eq(sse_append_frame(&pieces, &e, is_named, NULL, 0), 0);
        ck_assert_int_eq(buf_append(&pieces, json, len), 0);
        ck_assert_int_eq(buf_append_str(&pieces, SSE_FRAME_END), 0);
        ck_assert_str_eq(pieces.bytes, whole.bytes);
        assert_frame(&pieces, 0, 7, is_named);
        free(json);
        buf_release(&whole);
        buf_release(&pieces);
    }
}
END_TEST

START_TEST(test_refusal)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(sse_append_refusal(&b, REFUSALS[_i].retry_ms, REFUSALS[_i].has_cursor,
                                        REFUSALS[_i].cursor, REFUSALS[_i].reason), 0);
    assert_sse_bytes(&b, 0, REFUSALS[_i].lines);
    ck_assert_str_eq(b.bytes, REFUSALS[_i].expected);
    buf_release(&b);
    buf_init(&b, 20);  /* too small: nothing at all is written */
    ck_assert_int_eq(sse_append_refusal(&b, 2000, true, 1, "database missing"), -1);
    ck_assert_uint_eq(b.len, 0);
    buf_release(&b);
}
END_TEST

static const struct {
    int64_t requested, resumed_from;
    const char *expected;
} GAPS[] = {
    {5, 17, "event: gap\ndata: {\"requested\":5,\"resumed_from\":17}\n\n"},
    {0, 1, "event: gap\ndata: {\"requested\":0,\"resumed_from\":1}\n\n"},
    {INT64_MAX - 1, INT64_MAX, "event: gap\ndata: {\"requested\":9223372036854775806,"
                               "\"resumed_from\":9223372036854775807}\n\n"},
};

START_TEST(test_gap)
{
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(sse_append_gap(&b, GAPS[_i].requested, GAPS[_i].resumed_from), 0);
    assert_sse_bytes(&b, 0, 3);
    ck_assert_str_eq(b.bytes, GAPS[_i].expected);
    ck_assert_ptr_null(strstr(b.bytes, "id:"));
    size_t len;
    const char *text = frame_json_text(&b, 0, &len);
    cJSON *json = cJSON_ParseWithLength(text, len);
    ck_assert_ptr_nonnull(json);
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(json, "requested"));
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(json, "resumed_from"));
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

/* Measures e's frame, then appends it to "keep" under limits exactly at and one below. */
START_TEST(test_buffer_limit_leaves_buffer_unchanged)
{
    struct event e = text_event(1, "t\r\n", "{\"k\":\"0123456789012345678901234567890123\"}");
    struct buf b;
    buf_init(&b, 4096);
    ck_assert_int_eq(sse_append_event(&b, &e, true), 0);
    size_t frame_len = b.len;
    buf_release(&b);
    buf_init(&b, 4 + frame_len - 1);
    ck_assert_int_eq(buf_append_str(&b, "keep"), 0);
    ck_assert_int_eq(sse_append_event(&b, &e, true), -1);
    ck_assert_uint_eq(b.len, 4);
    ck_assert_str_eq(b.bytes, "keep");
    buf_release(&b);
    buf_init(&b, 4 + frame_len);
    ck_assert_int_eq(buf_append_str(&b, "keep"), 0);
    ck_assert_int_eq(sse_append_event(&b, &e, true), 0);
    assert_frame(&b, 4, 1, true);
    buf_release(&b);
}
END_TEST

/* The control lines at a 20-byte limit: what fits is written whole, the rest not at all. */
START_TEST(test_control_lines_at_limit)
{
    struct buf b;
    buf_init(&b, 20);
    ck_assert_int_eq(sse_append_gap(&b, INT64_MAX, INT64_MAX), -1);
    ck_assert_int_eq(sse_append_open(&b, 3000), -1);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(sse_append_keepalive(&b), 0);
    ck_assert_int_eq(sse_append_probe(&b), 0);
    ck_assert_int_eq(sse_append_probe(&b), 0);
    ck_assert_uint_eq(b.len, 17);
    ck_assert_int_eq(sse_append_keepalive(&b), -1);
    ck_assert_int_eq(sse_append_probe(&b), 0);   /* 17 + 2 fits */
    ck_assert_int_eq(sse_append_probe(&b), -1);  /* 19 + 2 > 20 */
    ck_assert_int_eq(sse_append_gap(&b, 1, 2), -1);
    assert_sse_bytes(&b, 0, 5);
    ck_assert_str_eq(b.bytes, ": keepalive\n\n:\n:\n:\n");
    buf_release(&b);
}
END_TEST

static const struct {
    const char *in;
    size_t len;             /* 0: strlen */
    const char *out;        /* NULL: valid UTF-8 starting "a" with at least one U+FFFD */
} UTF8[] = {
    {"", 0, ""}, {"plain ascii ~\x7f", 0, "plain ascii ~\x7f"},
    {"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 0, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"},
    {"\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 0,
     "\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"},
    {"\xed\x9f\xbf\xee\x80\x80", 0, "\xed\x9f\xbf\xee\x80\x80"},
    {"\xff", 0, FFFD}, {"\xfe\xff", 0, FFFD FFFD}, {"\x80", 0, FFFD},
    {"\xc0\x80", 0, FFFD FFFD}, {"\xc1\xbf", 0, FFFD FFFD},
    {"\xe0\x80\x80", 0, FFFD FFFD FFFD}, {"\xf0\x80\x80\x80", 0, FFFD FFFD FFFD FFFD},
    {"\xed\xa0\x80", 0, FFFD FFFD FFFD}, {"\xed\xbf\xbf", 0, FFFD FFFD FFFD},
    {"\xf4\x90\x80\x80", 0, FFFD FFFD FFFD FFFD}, {"\xf5\x80\x80\x80", 0,
     FFFD FFFD FFFD FFFD},
    {"a\0b", 3, "a" FFFD "b"}, {"\0\0", 2, FFFD FFFD},
    {"a\xe2\x82", 0, NULL}, {"a\xe2\x82z", 0, NULL}, {"a\xf0\x9f\x98", 0, NULL},
    {"a\xc3", 0, NULL},
    {"\xc3\xa9", 1, FFFD},  /* len cuts the sequence: nothing past len is read */
};

START_TEST(test_utf8_sanitize)
{
    size_t len = UTF8[_i].len ? UTF8[_i].len : strlen(UTF8[_i].in);
    char out[3 * 32 + 1];
    ck_assert_uint_le(len, 32);
    memset(out, 'Z', sizeof(out));
    size_t n = sse_utf8_sanitize(UTF8[_i].in, len, out);
    ck_assert_uint_le(n, 3 * len);
    ck_assert_int_eq(out[n], '\0');
    ck_assert_uint_eq(strlen(out), n);  /* no NUL inside */
    if (UTF8[_i].out != NULL)
        ck_assert_str_eq(out, UTF8[_i].out);
    else
        ck_assert_msg(is_valid_utf8_with_fffd(out), "row %d", _i);
    if (strchr(UTF8[_i].in, 'z') != NULL)
        ck_assert_int_eq(out[n - 1], 'z');  /* resynchronises after a truncated sequence */
    /* and the same bytes as a stream id make a well-framed event */
    struct event e = text_event(4, "t", "{}");
    e.stream_id = UTF8[_i].in;
    e.stream_id_len = len;
    struct buf b;
    cJSON *json = append_and_parse(&b, &e, true);
    assert_string_item(json, "stream_id", out);
    cJSON_Delete(json);
    buf_release(&b);
}
END_TEST

Suite *suite_sse(void);

Suite *
suite_sse(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("sse");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_every_field_combination);
    tcase_add_test(tc, test_exact_frame);
    tcase_add_test(tc, test_named_event_line);
    tcase_add_test(tc, test_frames_back_to_back);
    tcase_add_loop_test(tc, test_data_column, 0, COUNT(DATA));
    tcase_add_loop_test(tc, test_hostile_fields, 0, COUNT(HOSTILE));
    tcase_add_loop_test(tc, test_hostile_data, 0, COUNT(HOSTILE));
    tcase_add_test(tc, test_deeply_nested_data);
    tcase_add_test(tc, test_one_mebibyte_data);
    tcase_add_loop_test(tc, test_timestamp_kinds, 0, COUNT(TIMESTAMPS));
    tcase_add_test(tc, test_open);
    tcase_add_test(tc, test_keepalive_and_probe);
    tcase_add_loop_test(tc, test_refusal, 0, COUNT(REFUSALS));
    tcase_add_test(tc, test_cursor_block);
    tcase_add_test(tc, test_shared_frame_pieces);
    tcase_add_loop_test(tc, test_gap, 0, COUNT(GAPS));
    tcase_add_test(tc, test_buffer_limit_leaves_buffer_unchanged);
    tcase_add_test(tc, test_control_lines_at_limit);
    tcase_add_loop_test(tc, test_utf8_sanitize, 0, COUNT(UTF8));
    suite_add_tcase(s, tc);
    return s;
}
