/*
 * test_soak.c - many clients, many events, random drops: nothing lost, nothing twice
 * (issue 5).
 *
 * SOAK_STREAMS clients (default 200) read SOAK_SESSIONS sessions (20), each asking for
 * everything from the start (Last-Event-ID: 0). One sqlite3 CLI inserts SOAK_EVENTS events
 * (default 20,000 in `make test`; `make soak` asks for 1,000,000) in transactions of 100
 * rows, round-robin over the sessions, so event id k belongs to session (k - 1) % sessions
 * and each client knows exactly which ids it must get, in which order. While they read,
 * clients drop their connection at random (seeded, so a failure can be replayed) and
 * resume with Last-Event-ID. Every received id is checked against the next one expected:
 * a larger one counts the ids lost, a smaller one a duplicate. The figures are printed:
 *   soak: E events, S streams, R reconnects, lost 0, duplicated 0, T s
 */
#include <check.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

enum { SOAK_BATCH = 100, SOAK_DROP_ONE_IN = 400, SOAK_SEED = 20261125 };

struct soak_client {
    struct sse_client http;
    int session;
    long long next_id;          /* the next id this client must receive */
    long long received, lost, duplicated, reconnects, busy_answers;
};

static long
setting(const char *name, long fallback)
{
    const char *value = getenv(name);
    return value != NULL && atol(value) > 0 ? atol(value) : fallback;
}

/* Connects, resuming after the last id received (0 before the first: everything). */
static void
soak_connect(struct soak_client *c, int port, int sessions)
{
    char path[64], header[64];
    long long last_id = c->next_id - sessions;
    snprintf(path, sizeof(path), "/api/sessions/soak%d/events", c->session);
    snprintf(header, sizeof(header), "Last-Event-ID: %lld", last_id > 0 ? last_id : 0);
    const char *const headers[] = {header, NULL};
    int64_t deadline = testenv_now_ms() + 5000;
    for (;;) {
        sse_client_open(&c->http, port, "GET", path, headers);
        char reason[128];
        long retry_ms;
        if (c->http.status != 200 || !frames_read_refusal(&c->http, reason, sizeof(reason),
                                                          &retry_ms))
            break;
        /* every slot taken for a moment (streams whose clients just left): the soft
         * refusal of SPEC §4.12; come back, as EventSource does (sooner than its retry:) */
        if (c->busy_answers++ == 0)
            fprintf(stderr, "soak: refused on reconnect: %s\n", reason);
        sse_client_close(&c->http);
        if (testenv_now_ms() >= deadline)
            break;
        testenv_poll_step();
    }
    DIAG_CHECK(c->http.status == 200, "%s (%s): status %d", c->http.request, header,
               c->http.status);
}

/* Checks one received id against the one expected next. */
static void
account(struct soak_client *c, long long id, int sessions)
{
    c->received++;
    if (id < c->next_id) {
        c->duplicated++;
        return;
    }
    DIAG_CHECK((id - 1) % sessions == c->session, "session %d got id %lld of session %lld",
               c->session, id, (id - 1) % sessions);
    c->lost += (id - c->next_id) / sessions;
    c->next_id = id + sessions;
}

/* The producer: events/SOAK_BATCH INSERT statements, each one transaction of SOAK_BATCH
 * rows whose session follows from the id. Owned by the caller (free). */
static char *
producer_sql(long events, int sessions)
{
    const char row[] = "INSERT INTO events(session_id, type, data) SELECT 'soak' || "
                       "((%ld + i - 1) %% %d), 'llm_text_delta', '{\"i\":' || (%ld + i) || '}' "
                       "FROM (WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
                       "WHERE i < %d) SELECT i FROM k);\n";
    size_t size = 256 + (size_t)(events / SOAK_BATCH + 1) * (sizeof(row) + 64);
    char *sql = malloc(size);
    DIAG_CHECK(sql != NULL, "out of memory");
    size_t used = (size_t)snprintf(sql, size, ".timeout 20000\nPRAGMA synchronous=NORMAL;\n");
    for (long first = 0; first < events; first += SOAK_BATCH)
        used += (size_t)snprintf(sql + used, size - used, row, first, sessions, first,
                                 SOAK_BATCH);
    return sql;
}

/* Reads every block that is there without waiting; drops the connection at random. */
static void
drain(struct soak_client *c, int sessions, unsigned *seed)
{
    struct sse_frame f;
    enum sse_client_result rc;
    while ((rc = sse_client_next(&c->http, &f, 0)) == SSE_CLIENT_BLOCK) {
        bool is_event = f.data != NULL;
        if (is_event)
            account(c, sse_frame_id(&f), sessions);
        sse_frame_release(&f);
        if (is_event && rand_r(seed) % SOAK_DROP_ONE_IN == 0) {
            sse_client_close(&c->http);
            c->reconnects++;
            soak_connect(c, test_srv.port, sessions);
        }
    }
    DIAG_CHECK(rc != SSE_CLIENT_END, "%s: the stream ended", c->http.request);
}

START_TEST(test_soak)
{
    long events = setting("SOAK_EVENTS", 20000);
    int streams = (int)setting("SOAK_STREAMS", 200);
    int sessions = (int)setting("SOAK_SESSIONS", 20);
    char threads[16];
    snprintf(threads, sizeof(threads), "%d", streams + 16);
    const char *const settings[] = {"SSE_THREADS", threads, "SSE_LOG_LEVEL", "warn", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    for (int s = 0; s < sessions; s++)
        publish_okf(&test_env, "INSERT INTO sessions(id) VALUES ('soak%d');\n", s);
    struct soak_client *clients = calloc((size_t)streams, sizeof(*clients));
    struct pollfd *fds = calloc((size_t)streams, sizeof(*fds));
    DIAG_CHECK(clients != NULL && fds != NULL, "out of memory");
    for (int i = 0; i < streams; i++) {
        clients[i].session = i % sessions;
        clients[i].next_id = clients[i].session + 1;
        soak_connect(&clients[i], test_srv.port, sessions);
    }
    char *sql = producer_sql(events, sessions);
    int64_t start_ms = testenv_now_ms();
    pid_t producer = publish_start(&test_env, sql);
    free(sql);
    unsigned seed = SOAK_SEED;
    int done = 0;
    int64_t deadline = start_ms + setting("SOAK_TIMEOUT_S", 120) * 1000;
    while (done < streams && testenv_now_ms() < deadline) {
        for (int i = 0; i < streams; i++)
            fds[i] = (struct pollfd){.fd = clients[i].http.fd, .events = POLLIN};
        poll(fds, (nfds_t)streams, 100);
        done = 0;
        for (int i = 0; i < streams; i++) {
            if (fds[i].revents)
                drain(&clients[i], sessions, &seed);
            done += clients[i].next_id > events;
        }
    }
    struct publish_result r;
    DIAG_CHECK(publish_wait(&test_env, producer, 60000, &r) == 0, "producer: %s", r.err);
    long long reconnects = 0, lost = 0, duplicated = 0, received = 0, busy = 0;
    for (int i = 0; i < streams; i++) {
        reconnects += clients[i].reconnects;
        busy += clients[i].busy_answers;
        lost += clients[i].lost;
        duplicated += clients[i].duplicated;
        received += clients[i].received;
        sse_client_close(&clients[i].http);
    }
    fprintf(stderr, "soak: %ld events, %d streams, %lld delivered, %lld reconnects (%lld "
            "answered 503 first), lost %lld, duplicated %lld, %.1f s\n", events, streams,
            received, reconnects, busy, lost, duplicated,
            (double)(testenv_now_ms() - start_ms) / 1000.0);
    DIAG_CHECK(done == streams, "%d of %d clients got all their events in time", done, streams);
    DIAG_CHECK(lost == 0 && duplicated == 0, "lost %lld, duplicated %lld", lost, duplicated);
    free(clients);
    free(fds);
}
END_TEST

Suite *suite_soak(void);

Suite *
suite_soak(void)
{
    Suite *s = suite_create("soak");
    TCase *tc = server_tcase_create("soak");
    tcase_set_timeout(tc, (double)setting("SOAK_TIMEOUT_S", 120) + 60);
    tcase_add_test(tc, test_soak);
    suite_add_tcase(s, tc);
    return s;
}
