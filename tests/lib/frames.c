/*
 * frames.c - event-level assertions over sse_client (see frames.h).
 *
 * The expected ids of a test are known exactly: every test has a fresh database, whose
 * AUTOINCREMENT ids start at 1, so a test can say "ids 5..10, then 11" and compare sets
 * and order in one step.
 */
#include "tests/lib/frames.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/diag.h"
#include "tests/lib/testenv.h"

void
frames_expect_wellformed(const struct sse_frame *f)
{
    long long id = sse_frame_id(f);
    DIAG_CHECK(f->data_lines == 1, "frame %lld has %zu data lines (a raw line break in the "
               "JSON?)", id, f->data_lines);
    DIAG_CHECK(f->other_lines == 0, "frame %lld has %zu unknown field lines", id,
               f->other_lines);
    cJSON *json = sse_frame_json(f);
    DIAG_CHECK(json != NULL, "frame %lld: data is not JSON: %.300s", id, f->data);
    cJSON *seq = cJSON_GetObjectItemCaseSensitive(json, "seq");
    bool is_seq_ok = cJSON_IsNumber(seq) && (long long)seq->valuedouble == id;
    cJSON_Delete(json);
    DIAG_CHECK(is_seq_ok, "frame %lld: seq is not the id: %.300s", id, f->data);
}

void
frames_print_ids(const char *label, const long long *ids, size_t n)
{
    fprintf(stderr, "%s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 200; i++)
        fprintf(stderr, " %lld", ids[i]);
    fprintf(stderr, "%s\n", n > 200 ? " ..." : "");
}

size_t
frames_read_until(struct sse_client *c, long long last_id, long long *ids, size_t cap,
                  int timeout_ms)
{
    size_t n = 0;
    for (long long id = 0; id < last_id;) {
        struct sse_frame f;
        sse_client_expect_event(c, &f, timeout_ms);
        if (f.has_event && strcmp(f.event, "gap") == 0 && !f.has_id) {
            sse_frame_release(&f);  /* the gap notice is checked by its own test */
            continue;
        }
        frames_expect_wellformed(&f);
        id = sse_frame_id(&f);
        sse_frame_release(&f);
        if (n == cap)
            frames_print_ids("ids so far", ids, n);
        DIAG_CHECK(n < cap, "more than %zu events before id %lld", cap, last_id);
        ids[n++] = id;
    }
    return n;
}

void
frames_expect_ids(struct sse_client *c, const long long *expected, size_t n, int timeout_ms)
{
    long long *ids = calloc(n + 64, sizeof(*ids));
    DIAG_CHECK(ids != NULL && n > 0, "frames_expect_ids: nothing expected");
    size_t got = frames_read_until(c, expected[n - 1], ids, n + 64, timeout_ms);
    bool is_same = got == n && memcmp(ids, expected, n * sizeof(*ids)) == 0;
    if (!is_same) {
        frames_print_ids("expected ids", expected, n);
        frames_print_ids("received ids", ids, got);
    }
    free(ids);
    DIAG_CHECK(is_same, "%s: the events received are not the expected ones (ids above)",
               c->request);
}

void
frames_expect_soft_refusal(struct sse_client *c, long retry_ms, const char *cursor)
{
    char type[128] = "";
    sse_client_header(c, "Content-Type", type, sizeof(type));
    DIAG_CHECK(c->status == 200 && strncmp(type, "text/event-stream", 17) == 0,
               "%s: %d %s, expected a soft refusal, 200 text/event-stream (an EventSource "
               "gives up for good on anything else)", c->request, c->status, type);
    struct sse_frame f;
    sse_client_expect_block(c, &f, 3000);
    bool is_id_right = cursor ? f.has_id && strcmp(f.id, cursor) == 0 : !f.has_id;
    bool is_refusal = f.has_retry && f.retry_ms == retry_ms && is_id_right && f.data == NULL
                      && f.comment_lines == 1 && f.other_lines == 0;
    sse_frame_release(&f);
    DIAG_CHECK(is_refusal, "%s: not a block of retry: %ld, %s%s and one comment", c->request,
               retry_ms, cursor ? "id: " : "no id", cursor ? cursor : "");
    sse_client_expect_end(c, 3000);
}

int
frames_resume_through_refusals(struct sse_client *c, int port, const char *path,
                               long long last_id, long retry_ms, int timeout_ms)
{
    char header[64], cursor[32];
    snprintf(header, sizeof(header), "Last-Event-ID: %lld", last_id);
    snprintf(cursor, sizeof(cursor), "%lld", last_id);
    const char *const headers[] = {header, NULL};
    int64_t deadline = testenv_now_ms() + timeout_ms;
    for (int refusals = 0;; refusals++) {
        sse_client_open(c, port, "GET", path, headers);
        while (!c->is_body_done && strstr(c->body ? c->body : "", "\ndata:") == NULL
               && testenv_now_ms() < deadline) {
            if (!sse_client_has_bytes(c))
                testenv_poll_step();
        }
        if (!c->is_body_done) {
            DIAG_CHECK(c->status == 200 && testenv_now_ms() < deadline,
                       "%s: not served within %d ms (%d soft refusals)", c->request,
                       timeout_ms, refusals);
            return refusals;
        }
        frames_expect_soft_refusal(c, retry_ms, cursor);
        sse_client_close(c);
        testenv_poll_step();  /* an EventSource waits retry: ms; the test polls faster */
    }
}

void
frames_expect_clean_body(const struct sse_client *c)
{
    const char *cr = c->body ? memchr(c->body, '\r', c->body_len) : NULL;
    const char *nul = c->body ? memchr(c->body, '\0', c->body_len) : NULL;
    DIAG_CHECK(cr == NULL, "%s: CR at body offset %ld", c->request, (long)(cr - c->body));
    DIAG_CHECK(nul == NULL, "%s: NUL at body offset %ld", c->request, (long)(nul - c->body));
}

/* The number member key of json equals want. */
static bool
has_number(const cJSON *json, const char *key, long long want)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    return cJSON_IsNumber(item) && (long long)item->valuedouble == want;
}

void
frames_expect_one_to(const long long *ids, size_t n, long long last, const char *label)
{
    for (size_t i = 0; i < n; i++)
        DIAG_CHECK(ids[i] == (long long)i + 1, "event %zu of %s has id %lld", i + 1, label,
                   ids[i]);
    DIAG_CHECK(n == (size_t)last, "%zu events over %s, expected %lld", n, label, last);
}

void
frames_expect_gap(struct sse_client *c, long long requested, long long resumed_from,
                  int timeout_ms)
{
    struct sse_frame f;
    sse_client_expect_event(c, &f, timeout_ms);
    cJSON *gap = sse_frame_json(&f);
    bool is_gap = f.has_event && strcmp(f.event, "gap") == 0 && !f.has_id
                  && has_number(gap, "requested", requested)
                  && has_number(gap, "resumed_from", resumed_from);
    cJSON_Delete(gap);
    if (!is_gap)
        sse_client_dump(c);
    sse_frame_release(&f);
    DIAG_CHECK(is_gap, "%s: the next event is not 'event: gap' with {\"requested\":%lld,"
               "\"resumed_from\":%lld}", c->request, requested, resumed_from);
}

/* The status and the opening block of a stream whose head arrived. */
static void
expect_opening(struct sse_client *c)
{
    DIAG_CHECK(c->status == 200, "%s: status %d, expected 200", c->request, c->status);
    struct sse_frame f;
    sse_client_expect_block(c, &f, 5000);
    bool has_retry = f.has_retry && f.data == NULL;
    sse_frame_release(&f);
    DIAG_CHECK(has_retry, "%s: the first block has no retry: line", c->request);
}

void
frames_open_stream(struct sse_client *c, int port, const char *path,
                   const char *const *headers)
{
    sse_client_open(c, port, "GET", path, headers);
    expect_opening(c);
}

void
frames_wait_stream(struct sse_client *c, int timeout_ms)
{
    sse_client_wait_head(c, timeout_ms);
    expect_opening(c);
}

size_t
frames_read_to_end(struct sse_client *c, long long *ids, size_t n, size_t cap,
                   int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    struct sse_frame f;
    enum sse_client_result rc;
    while ((rc = sse_client_next(c, &f, (int)(deadline - testenv_now_ms())))
           == SSE_CLIENT_BLOCK) {
        if (f.data != NULL) {
            frames_expect_wellformed(&f);
            if (n == cap)
                frames_print_ids("ids so far", ids, n);
            DIAG_CHECK(n < cap, "%s: more than %zu events before the end", c->request, cap);
            ids[n++] = sse_frame_id(&f);
        }
        sse_frame_release(&f);
    }
    DIAG_CHECK(rc == SSE_CLIENT_END, "%s: the stream did not end within %d ms", c->request,
               timeout_ms);
    return n;
}

static const char REFUSAL_PREFIX[] = "sse-fcgi unavailable: ";

bool
frames_read_refusal(struct sse_client *c, char *reason, size_t size, long *retry_ms)
{
    struct sse_frame f;
    sse_client_expect_block(c, &f, 5000);
    bool is_refusal = f.has_retry && f.data == NULL && f.comment_lines == 1
                      && strncmp(f.comment, REFUSAL_PREFIX, strlen(REFUSAL_PREFIX)) == 0;
    if (is_refusal) {
        snprintf(reason, size, "%s", f.comment + strlen(REFUSAL_PREFIX));
        *retry_ms = f.retry_ms;
    }
    sse_frame_release(&f);
    return is_refusal;
}

void
frames_expect_refusal(struct sse_client *c, const char *reason_part, long long cursor)
{
    DIAG_CHECK(c->status == 200, "%s: status %d, expected a 200 soft refusal", c->request,
               c->status);
    char type[128];
    DIAG_CHECK(sse_client_header(c, "Content-Type", type, sizeof(type)) != NULL
               && strncmp(type, "text/event-stream", 17) == 0,
               "%s: a soft refusal must be text/event-stream", c->request);
    struct sse_frame f;
    sse_client_expect_block(c, &f, 5000);
    bool is_ok = f.has_retry && f.retry_ms > 0 && f.data == NULL && f.comment_lines == 1
                 && strncmp(f.comment, REFUSAL_PREFIX, strlen(REFUSAL_PREFIX)) == 0
                 && strstr(f.comment, reason_part) != NULL
                 && (cursor < 0 ? !f.has_id : f.has_id && atoll(f.id) == cursor);
    if (!is_ok)
        sse_client_dump(c);
    sse_frame_release(&f);
    DIAG_CHECK(is_ok, "%s: not a soft refusal naming '%s' with cursor %lld", c->request,
               reason_part, cursor);
    sse_client_expect_end(c, 3000);
}

long
frames_resume(struct sse_client *c, int port, const char *path, long long last_id,
              int timeout_ms)
{
    char header[64];
    snprintf(header, sizeof(header), "Last-Event-ID: %lld", last_id);
    const char *const headers[] = {header, NULL};
    int64_t start_ms = testenv_now_ms();
    for (;;) {
        sse_client_open(c, port, "GET", path, headers);
        char reason[128];
        long retry_ms = 0;
        if (c->status == 200 && !frames_read_refusal(c, reason, sizeof(reason), &retry_ms))
            break;
        sse_client_close(c);
        /* EventSource waits retry: ms after a soft refusal before it comes back */
        int64_t again_ms = testenv_now_ms() + retry_ms;
        while (testenv_now_ms() < again_ms && testenv_now_ms() - start_ms < timeout_ms)
            testenv_poll_step();
        DIAG_CHECK(testenv_now_ms() - start_ms < timeout_ms, "%s after %lld: status %d "
                   "(refused) for %d ms", c->request, last_id, c->status, timeout_ms);
    }
    return (long)(testenv_now_ms() - start_ms);
}
