/*
 * fuzz_frame.c - libFuzzer target for the event frame encoder (sse_append_event, SPEC §4.6).
 *
 * Feeds: a struct event whose id, timestamp kind and text fields come from the input (layout
 * above split_fields); fields hold any bytes: CR, LF, NUL, invalid UTF-8, nearly-JSON data.
 * Checks what sse.h and sse.c promise, named and not: one block ending in "\n\n", no CR, NUL
 * or other control byte but its line ends, valid UTF-8, lines "id: ", ["event: "], "data: "
 * in that order, the data a JSON object with the frame's keys that keeps clean row text; in
 * a small buffer the same frame, or a refusal that leaves the buffer as it was.
 * A broken invariant aborts through CHECK (check.h); libFuzzer saves the input.
 */
#include <cJSON.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/sse.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    FIELD_TYPE, FIELD_STREAM_ID, FIELD_NODE_ID, FIELD_EXECUTION_ID, FIELD_DATA,
    FIELD_CORRELATION_ID, FIELD_COLONY_ID, FIELD_RUN_ID, FIELD_TIMESTAMP, FIELD_SESSION_ID,
    FIELD_COUNT,
    FIELD_SEPARATOR = 0x1F,             /* ASCII unit separator */
    HEADER_BYTES = 11,                  /* id (8), control (1), NULL mask (2) */
    SMALL_ROOM_STEP = 16,               /* bytes of small-buffer room per control unit */
    FRAME_MAX = 64 * 1024 * 1024,       /* STREAM_FRAME_MAX: what a stream allows */
};

/* How a frame key's value is checked. */
enum key_check { KEY_TEXT, KEY_DATA, KEY_TIMESTAMP, KEY_NUMBER };

/* The frame's JSON keys in order (SPEC §4.6); run_id, the last, only when the row has one. */
static const struct {
    const char *name;
    enum key_check check;
    int field;                          /* FIELD_*, or -1 for seq */
} FRAME_KEYS[] = {
    {"type", KEY_TEXT, FIELD_TYPE}, {"stream_id", KEY_TEXT, FIELD_STREAM_ID},
    {"node_id", KEY_TEXT, FIELD_NODE_ID}, {"execution_id", KEY_TEXT, FIELD_EXECUTION_ID},
    {"data", KEY_DATA, FIELD_DATA}, {"timestamp", KEY_TIMESTAMP, FIELD_TIMESTAMP},
    {"correlation_id", KEY_TEXT, FIELD_CORRELATION_ID},
    {"colony_id", KEY_TEXT, FIELD_COLONY_ID}, {"seq", KEY_NUMBER, -1},
    {"run_id", KEY_TEXT, FIELD_RUN_ID},
};
enum { FRAME_KEYS_COUNT = sizeof(FRAME_KEYS) / sizeof(FRAME_KEYS[0]) };

/* One input field: NULL when absent, else len bytes plus a NUL. */
struct field {
    char *text;
    size_t len;
};

/* True when s[0..len) is UTF-8 as RFC 3629 defines it: shortest form, no surrogates, at
 * most U+10FFFF. Decodes code points rather than matching byte ranges, to differ from sse.c. */
static bool
is_utf8(const unsigned char *s, size_t len)
{
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3
                 : (c >> 3) == 0x1E ? 4 : 0;
        if (n == 0 || len - i < n)
            return false;
        uint32_t cp = n == 1 ? c : c & (0x7F >> n);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min_for_len[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

/* Row text that must come back unchanged: valid UTF-8 without NUL. */
static bool
is_clean_text(const struct field *f)
{
    return f->text != NULL && memchr(f->text, '\0', f->len) == NULL
           && is_utf8((const unsigned char *)f->text, f->len);
}

/* Input layout: bytes 0-7 the id (host order, zero-padded); byte 8 a control byte, bits 0-1
 * the timestamp's kind (text, integer, real, NULL) and bits 2-7 a small buffer's room in
 * SMALL_ROOM_STEP units; bytes 9-10 (little-endian) a mask whose bit i makes field i NULL.
 * The rest splits on FIELD_SEPARATOR into the FIELD_* order; fields the input does not reach
 * are NULL too. Each field gets an exact-size allocation, so ASan sees a read past its NUL. */
static void
split_fields(const uint8_t *data, size_t size, struct field fields[FIELD_COUNT])
{
    memset(fields, 0, sizeof(struct field) * FIELD_COUNT);
    unsigned null_mask = size >= HEADER_BYTES ? data[9] | (unsigned)data[10] << 8 : 0;
    size_t at = HEADER_BYTES;
    for (int i = 0; i < FIELD_COUNT && at <= size; i++) {
        const uint8_t *sep = size > at ? memchr(data + at, FIELD_SEPARATOR, size - at) : NULL;
        size_t len = sep ? (size_t)(sep - (data + at)) : size - at;
        if (null_mask & (1u << i)) {
            at += len + 1;
            continue;
        }
        fields[i].text = malloc(len + 1);
        CHECK(fields[i].text != NULL);
        memcpy(fields[i].text, data + at, len);
        fields[i].text[len] = '\0';
        fields[i].len = len;
        at += len + 1;  /* past the separator; past size when there was none */
    }
}

static struct event_value
timestamp_of(const struct field *f, unsigned control)
{
    struct event_value v = {.kind = EVENT_VALUE_NULL};
    unsigned char bytes[8] = {0};
    if (f->text != NULL)
        memcpy(bytes, f->text, f->len < 8 ? f->len : 8);
    switch (control & 3) {
    case 0:
        if (f->text != NULL)
            v = (struct event_value){.kind = EVENT_VALUE_TEXT, .text = f->text,
                                     .text_len = f->len};
        break;
    case 1:
        v.kind = EVENT_VALUE_INTEGER;
        memcpy(&v.integer, bytes, sizeof(v.integer));
        break;
    case 2:
        v.kind = EVENT_VALUE_REAL;  /* any bits: NaN, infinities, subnormals */
        memcpy(&v.real, bytes, sizeof(v.real));
        break;
    }
    return v;
}

static struct event
event_of(const uint8_t *data, size_t size, const struct field f[FIELD_COUNT])
{
    struct event e = {0};
    unsigned char id[8] = {0};
    memcpy(id, data, size < 8 ? size : 8);
    memcpy(&e.id, id, sizeof(e.id));
    e.type = f[FIELD_TYPE].text, e.type_len = f[FIELD_TYPE].len;
    e.stream_id = f[FIELD_STREAM_ID].text, e.stream_id_len = f[FIELD_STREAM_ID].len;
    e.node_id = f[FIELD_NODE_ID].text, e.node_id_len = f[FIELD_NODE_ID].len;
    e.execution_id = f[FIELD_EXECUTION_ID].text, e.execution_id_len = f[FIELD_EXECUTION_ID].len;
    e.data = f[FIELD_DATA].text, e.data_len = f[FIELD_DATA].len;
    e.correlation_id = f[FIELD_CORRELATION_ID].text;
    e.correlation_id_len = f[FIELD_CORRELATION_ID].len;
    e.colony_id = f[FIELD_COLONY_ID].text, e.colony_id_len = f[FIELD_COLONY_ID].len;
    e.run_id = f[FIELD_RUN_ID].text, e.run_id_len = f[FIELD_RUN_ID].len;
    e.session_id = f[FIELD_SESSION_ID].text;
    e.timestamp = timestamp_of(&f[FIELD_TIMESTAMP], size > 8 ? data[8] : 0);
    return e;
}

/* A text column's JSON value: null for SQL NULL, else a string, equal to the row's text
 * when that is clean. */
static void
check_text_item(const cJSON *item, const struct field *f)
{
    if (f->text == NULL) {
        CHECK(cJSON_IsNull(item));
        return;
    }
    CHECK(cJSON_IsString(item));
    if (is_clean_text(f))
        CHECK(strlen(item->valuestring) == f->len
              && memcmp(item->valuestring, f->text, f->len) == 0);
}

static void
check_timestamp_item(const cJSON *item, const struct event_value *v, const struct field *f)
{
    switch (v->kind) {
    case EVENT_VALUE_NULL:
        CHECK(cJSON_IsNull(item));
        break;
    case EVENT_VALUE_INTEGER:
        CHECK(cJSON_IsNumber(item));
        break;
    case EVENT_VALUE_REAL:
        CHECK(cJSON_IsNumber(item) || cJSON_IsNull(item));  /* cJSON prints NaN, inf as null */
        break;
    case EVENT_VALUE_TEXT:
        check_text_item(item, f);
        break;
    }
}

/* The data column: null for NULL; for clean text, the text as a string when it is not JSON,
 * else the same value cJSON reads from the text (sse.c embeds valid JSON as raw text). */
static void
check_data_item(const cJSON *item, const struct field *f)
{
    if (f->text == NULL) {
        CHECK(cJSON_IsNull(item));
        return;
    }
    if (!is_clean_text(f))
        return;
    if (cJSON_IsString(item) && strcmp(item->valuestring, f->text) == 0)
        return;
    /* Compared as cJSON prints them: cJSON_Compare fails on numbers that overflow to inf. */
    cJSON *parsed = cJSON_ParseWithOpts(f->text, NULL, true);
    CHECK(parsed != NULL);
    char *want = cJSON_PrintUnformatted(parsed), *got = cJSON_PrintUnformatted(item);
    CHECK(want != NULL && got != NULL && strcmp(want, got) == 0);
    cJSON_free(want);
    cJSON_free(got);
    cJSON_Delete(parsed);
}

/* "seq" is printed by sse.c, not cJSON, so its digits are exact. Quotes inside strings are
 * escaped, and only run_id (a string) follows seq, so the last `,"seq":` is the top-level one. */
static void
check_seq_text(const char *json, int64_t id)
{
    const char *seq = NULL;
    for (const char *p = json; (p = strstr(p, ",\"seq\":")) != NULL; p++)
        seq = p;
    CHECK(seq != NULL);
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%" PRId64, id);
    seq += strlen(",\"seq\":");
    CHECK(strncmp(seq, digits, (size_t)n) == 0 && (seq[n] == ',' || seq[n] == '}'));
}

/* The data line's payload: a JSON object with FRAME_KEYS in order and values that match. */
static void
check_payload(const char *json, const struct event *e, const struct field f[FIELD_COUNT])
{
    cJSON *o = cJSON_ParseWithOpts(json, NULL, true);
    CHECK(cJSON_IsObject(o));
    size_t keys = e->run_id != NULL ? FRAME_KEYS_COUNT : FRAME_KEYS_COUNT - 1, i = 0;
    for (const cJSON *item = o->child; item != NULL; item = item->next, i++) {
        CHECK(i < keys && strcmp(item->string, FRAME_KEYS[i].name) == 0);
        const struct field *field = FRAME_KEYS[i].field >= 0 ? &f[FRAME_KEYS[i].field] : NULL;
        switch (FRAME_KEYS[i].check) {
        case KEY_TEXT:
            check_text_item(item, field);
            break;
        case KEY_DATA:
            check_data_item(item, field);
            break;
        case KEY_TIMESTAMP:
            check_timestamp_item(item, &e->timestamp, field);
            break;
        case KEY_NUMBER:
            CHECK(cJSON_IsNumber(item));
            break;
        }
    }
    CHECK(i == keys);
    check_seq_text(json, e->id);
    cJSON_Delete(o);
}

/* The "event: " line's value: the type with control bytes as '?'; clean types unchanged. */
static void
check_event_line(const char *value, size_t len, const struct field *type)
{
    for (size_t i = 0; i < len; i++)
        CHECK((unsigned char)value[i] != 0x7F);
    bool is_printable = true;
    for (size_t i = 0; i < type->len; i++)
        is_printable = is_printable && (unsigned char)type->text[i] >= 0x20
                       && (unsigned char)type->text[i] != 0x7F;
    if (is_printable && is_clean_text(type))
        CHECK(len == type->len && memcmp(value, type->text, len) == 0);
}

/* Byte-level framing: one block, no CR/NUL/control byte but LF, valid UTF-8. */
static void
check_bytes(const char *frame, size_t len)
{
    CHECK(len >= 2 && frame[len - 2] == '\n' && frame[len - 1] == '\n');
    for (size_t i = 0; i + 2 < len; i++)
        CHECK(!(frame[i] == '\n' && frame[i + 1] == '\n'));
    for (size_t i = 0; i < len; i++)
        CHECK(frame[i] == '\n' || (unsigned char)frame[i] >= 0x20);
    CHECK(is_utf8((const unsigned char *)frame, len));
}

/* Checks frame[0..len) line by line: id, optional event, data. */
static void
check_frame(const char *frame, size_t len, const struct event *e, bool is_named,
            const struct field f[FIELD_COUNT])
{
    check_bytes(frame, len);
    char id_line[40];
    int n = snprintf(id_line, sizeof(id_line), "id: %" PRId64 "\n", e->id);
    CHECK(strncmp(frame, id_line, (size_t)n) == 0);
    const char *p = frame + n, *end = frame + len - 1;  /* end: the blank line's LF */
    if (is_named) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        CHECK(lf != NULL && strncmp(p, "event: ", 7) == 0);
        check_event_line(p + 7, (size_t)(lf - p - 7), &f[FIELD_TYPE]);
        p = lf + 1;
    }
    CHECK(strncmp(p, "data: ", 6) == 0);
    p += 6;
    CHECK(memchr(p, '\n', (size_t)(end - p)) == end - 1);  /* data is the last line */
    char *json = malloc((size_t)(end - 1 - p) + 1);
    CHECK(json != NULL);
    memcpy(json, p, (size_t)(end - 1 - p));
    json[end - 1 - p] = '\0';
    check_payload(json, e, f);
    free(json);
}

/* Appends with no practical limit (a stream's): must succeed. Returns the frame, malloc'd. */
static char *
frame_of(const struct event *e, bool is_named, const struct field f[FIELD_COUNT], size_t *len)
{
    struct buf b;
    buf_init(&b, FRAME_MAX);
    CHECK(sse_append_event(&b, e, is_named) == 0);
    check_frame(b.bytes, b.len, e, is_named, f);
    char *frame = malloc(b.len + 1);
    CHECK(frame != NULL);
    memcpy(frame, b.bytes, b.len + 1);
    *len = b.len;
    buf_release(&b);
    return frame;
}

/* In a buffer that already holds a block and has `room` bytes left: the same frame, or a
 * failure that changed nothing and only because the frame did not fit. */
static void
check_small_buffer(const struct event *e, bool is_named, const char *frame, size_t len,
                   size_t room)
{
    static const char before[] = ": keepalive\n\n";
    struct buf b;
    buf_init(&b, strlen(before) + room);
    CHECK(buf_append_str(&b, before) == 0);
    if (sse_append_event(&b, e, is_named) == 0) {
        CHECK(b.len == strlen(before) + len
              && memcmp(b.bytes + strlen(before), frame, len) == 0);
    } else {
        CHECK(len > room);
        CHECK(b.len == strlen(before) && strcmp(b.bytes, before) == 0);
    }
    CHECK(b.len <= b.max_len);
    buf_release(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct field fields[FIELD_COUNT];
    split_fields(data, size, fields);
    struct event e = event_of(data, size, fields);
    size_t room = size > 8 ? (size_t)(data[8] >> 2) * SMALL_ROOM_STEP : 0;
    for (int named = 0; named <= 1; named++) {
        size_t len;
        char *frame = frame_of(&e, named, fields, &len);
        check_small_buffer(&e, named, frame, len, room);
        free(frame);
    }
    for (int i = 0; i < FIELD_COUNT; i++)
        free(fields[i].text);
    return 0;
}
