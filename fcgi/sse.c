/*
 * sse.c - the bytes of an event stream (pure).
 *
 * Every string that comes from a row is made valid UTF-8 without NUL first (sse_utf8_sanitize)
 * and then handed to cJSON, whose printer escapes CR, LF and every other control character,
 * so a frame's only line ends are the ones written here (SPEC §4.6). Valid JSON data (cJSON
 * parses it and it keeps to RFC 8259, which cJSON alone does not check) is embedded as
 * minified raw text, which keeps integers beyond 2^53 exact; anything else in the data
 * column becomes a JSON string. Integers (id, seq, integer timestamps) are printed by
 * us for the same reason. No I/O.
 */
#include "sse.h"

#include <assert.h>
#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char UTF8_REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when it is invalid (RFC 3629). */
static size_t
utf8_sequence_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    if (c >= 0x01 && c <= 0x7F)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return n;
}

size_t
sse_utf8_sanitize(const char *in, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_len(s + i, len - i);
        if (n == 0) {
            memcpy(out + o, UTF8_REPLACEMENT, 3);
            o += 3;
            i += 1;
        } else {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        }
    }
    out[o] = '\0';
    return o;
}

/* Whether in[0..len) is valid UTF-8 without NUL, so that sanitizing would copy it as is. */
static bool
is_clean_utf8(const char *in, size_t len)
{
    const unsigned char *s = (const unsigned char *)in;
    for (size_t i = 0; i < len;) {
        size_t n = s[i] < 0x80 && s[i] != 0 ? 1 : utf8_sequence_len(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* A sanitized, NUL-terminated copy of in[0..len); free() it. NULL when out of memory. Only
 * text that needs it is given 3 bytes per input byte (a big row is framed with one copy). */
static char *
sanitized_copy(const char *in, size_t len, size_t *out_len)
{
    if (is_clean_utf8(in, len)) {
        char *copy = malloc(len + 1);
        if (copy != NULL) {
            memcpy(copy, in, len);
            copy[len] = '\0';
        }
        if (out_len != NULL)
            *out_len = len;
        return copy;
    }
    char *out = malloc(3 * len + 1);
    if (out == NULL)
        return NULL;
    size_t n = sse_utf8_sanitize(in, len, out);
    if (out_len != NULL)
        *out_len = n;
    return out;
}

static cJSON *
string_or_null(const char *text, size_t len)
{
    if (text == NULL)
        return cJSON_CreateNull();
    char *clean = sanitized_copy(text, len, NULL);
    if (clean == NULL)
        return NULL;
    cJSON *item = cJSON_CreateString(clean);
    free(clean);
    return item;
}

static cJSON *
integer_item(int64_t value)
{
    char digits[24];
    snprintf(digits, sizeof(digits), "%" PRId64, value);
    return cJSON_CreateRaw(digits);
}

static bool
has_control_bytes(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20)
            return true;
    }
    return false;
}

/* Length of a JSON number (RFC 8259 grammar) at s, or 0 when s does not start with one. */
static size_t
json_number_len(const char *s)
{
    const char *p = s;
    p += *p == '-';
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    if (*p == '.') {
        const char *digits = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == digits)
            return 0;
    }
    if (*p == 'e' || *p == 'E') {
        p += p[1] == '+' || p[1] == '-' ? 2 : 1;
        const char *digits = p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == digits)
            return 0;
    }
    return (size_t)(p - s);
}

/* cJSON's parser accepts numbers JSON does not ("01", "1.", "-.5") and raw control bytes in
 * strings; a browser's JSON.parse would then throw and lose the event. True when the
 * minified text, already accepted by cJSON, also keeps to RFC 8259 there. */
static bool
is_strict_json(const char *minified)
{
    if (has_control_bytes(minified))
        return false;
    bool is_in_string = false;
    for (const char *p = minified; *p != '\0'; p++) {
        if (is_in_string) {
            if (*p == '\\' && p[1] != '\0')
                p++;
            else if (*p == '"')
                is_in_string = false;
        } else if (*p == '"') {
            is_in_string = true;
        } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
            size_t n = json_number_len(p);
            if (n == 0 || p[n] == '.' || (p[n] >= '0' && p[n] <= '9'))
                return false;
            p += n - 1;
        }
    }
    return true;
}

/* Removes the whitespace between JSON tokens, in place. Not cJSON_Minify: in cJSON 1.7.15
 * (Debian 12) it takes the quote after an escaped backslash ("C:\\dir\\") for an escaped
 * quote, then strips spaces and "comments" inside the strings that follow; fuzz_frame
 * found it (tests/fuzz/regressions/fuzz_frame). */
static void
compact_json(char *text)
{
    bool is_in_string = false;
    char *out = text;
    for (const char *p = text; *p != '\0'; p++) {
        if (is_in_string) {
            if (*p == '\\' && p[1] != '\0')
                *out++ = *p++;  /* the escaped character is copied below, whatever it is */
            else if (*p == '"')
                is_in_string = false;
        } else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            continue;
        } else if (*p == '"') {
            is_in_string = true;
        }
        *out++ = *p;
    }
    *out = '\0';
}

/* The data column as a JSON item: raw minified JSON when valid, else a JSON string. */
static cJSON *
data_item(const char *data, size_t len)
{
    if (data == NULL)
        return cJSON_CreateNull();
    size_t clean_len;
    char *clean = sanitized_copy(data, len, &clean_len);
    if (clean == NULL)
        return NULL;
    /* Only whether cJSON parses it is wanted: its tree goes at once (a big row is framed
     * with as few copies alive as can be) */
    cJSON *parsed = cJSON_ParseWithLengthOpts(clean, clean_len + 1, NULL, true);
    bool is_json = parsed != NULL;
    cJSON_Delete(parsed);
    char *minified = malloc(clean_len + 1);
    cJSON *item = NULL;
    if (minified != NULL) {
        memcpy(minified, clean, clean_len + 1);
        compact_json(minified);
        item = is_json && is_strict_json(minified) ? cJSON_CreateRaw(minified)
                                                   : cJSON_CreateString(clean);
    }
    free(minified);
    free(clean);
    return item;
}

static cJSON *
timestamp_item(const struct event_value *v)
{
    switch (v->kind) {
    case EVENT_VALUE_INTEGER:
        return integer_item(v->integer);
    case EVENT_VALUE_REAL:
        return cJSON_CreateNumber(v->real);
    case EVENT_VALUE_TEXT:
        return string_or_null(v->text, v->text_len);
    case EVENT_VALUE_NULL:
        break;
    }
    return cJSON_CreateNull();
}

/* Adds item under key; takes ownership of item. Returns false when item is NULL (OOM). */
static bool
add(cJSON *object, const char *key, cJSON *item)
{
    if (item == NULL)
        return false;
    if (!cJSON_AddItemToObject(object, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

/* The frame's JSON (SPEC §4.6), unformatted; free() it. NULL when out of memory. */
static char *
event_json(const struct event *e)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL
              && add(o, "type", string_or_null(e->type, e->type_len))
              && add(o, "stream_id", string_or_null(e->stream_id, e->stream_id_len))
              && add(o, "node_id", string_or_null(e->node_id, e->node_id_len))
              && add(o, "execution_id", string_or_null(e->execution_id, e->execution_id_len))
              && add(o, "data", data_item(e->data, e->data_len))
              && add(o, "timestamp", timestamp_item(&e->timestamp))
              && add(o, "correlation_id",
                     string_or_null(e->correlation_id, e->correlation_id_len))
              && add(o, "colony_id", string_or_null(e->colony_id, e->colony_id_len))
              && add(o, "seq", integer_item(e->id))
              && (e->run_id == NULL || add(o, "run_id", string_or_null(e->run_id, e->run_id_len)));
    char *json = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return json;
}

/* Appends "event: <type>\n" with every control byte of the type replaced by '?'. */
static int
append_event_line(struct buf *b, const char *type, size_t type_len)
{
    char *clean = sanitized_copy(type ? type : "", type ? type_len : 0, NULL);
    if (clean == NULL)
        return -1;
    for (char *p = clean; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = '?';
    }
    int rc = buf_appendf(b, "event: %s\n", clean);
    free(clean);
    return rc;
}

char *
sse_event_json(const struct event *e, size_t *len)
{
    *len = 0;
    char *json = event_json(e);
    if (json == NULL)
        return NULL;
    /* cJSON escapes every control character inside strings; raw data was checked above. */
    assert(strpbrk(json, "\r\n") == NULL);
    *len = strlen(json);
    if (*len <= SSE_FRAME_JSON_MAX)
        return json;
    cJSON_free(json);
    return NULL;
}

int
sse_append_frame(struct buf *b, const struct event *e, bool is_named, const char *json,
                 size_t json_len)
{
    size_t start = b->len;
    int rc = buf_appendf(b, "id: %" PRId64 "\n", e->id);
    if (rc == 0 && is_named)
        rc = append_event_line(b, e->type, e->type_len);
    if (rc == 0)
        rc = buf_append_str(b, "data: ");
    if (rc == 0 && json != NULL)
        rc = buf_append(b, json, json_len);
    if (rc == 0 && json != NULL)
        rc = buf_append_str(b, SSE_FRAME_END);
    if (rc < 0)
        buf_truncate(b, start);
    return rc;
}

int
sse_append_event(struct buf *b, const struct event *e, bool is_named)
{
    size_t len;
    char *json = sse_event_json(e, &len);
    if (json == NULL)
        return -1;
    int rc = sse_append_frame(b, e, is_named, json, len);
    cJSON_free(json);
    return rc;
}

int
sse_append_open(struct buf *b, long retry_ms)
{
    return buf_appendf(b, "retry: %ld\n: sse-fcgi stream open\n\n", retry_ms);
}

int
sse_append_refusal(struct buf *b, long retry_ms, bool has_cursor, int64_t cursor,
                   const char *reason)
{
    size_t start = b->len;
    int rc = buf_appendf(b, "retry: %ld\n", retry_ms);
    if (rc == 0 && has_cursor)
        rc = buf_appendf(b, "id: %" PRId64 "\n", cursor);
    if (rc == 0)
        rc = buf_append_str(b, ": sse-fcgi unavailable: ");
    for (const char *p = reason; rc == 0 && *p != '\0'; p++) {
        char c = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
        rc = buf_append(b, &c, 1);
    }
    if (rc == 0)
        rc = buf_append_str(b, "\n\n");
    if (rc < 0)
        buf_truncate(b, start);
    return rc;
}

int
sse_append_cursor(struct buf *b, int64_t id)
{
    return buf_appendf(b, "id: %" PRId64 "\n\n", id);
}

int
sse_append_keepalive(struct buf *b)
{
    return buf_append_str(b, ": keepalive\n\n");
}

int
sse_append_probe(struct buf *b)
{
    return buf_append_str(b, ":\n");
}

int
sse_append_gap(struct buf *b, int64_t requested, int64_t resumed_from)
{
    return buf_appendf(b, "event: gap\ndata: {\"requested\":%" PRId64 ",\"resumed_from\":%"
                       PRId64 "}\n\n", requested, resumed_from);
}
