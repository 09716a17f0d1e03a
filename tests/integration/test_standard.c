/*
 * test_standard.c - standard EventSource clients through faults (issue 11).
 *
 * The rest of the suite reads streams with its own client, which retries where a standard
 * one does not. Here six npm `eventsource` clients (the WHATWG EventSource every browser
 * implements; tests/lib/esclient.h) read session s1 from 0 while something goes wrong:
 * every stream slot taken, the database moved away and back, every backend SIGKILLed, the
 * web server restarted. The WHATWG client fails for good on any status but 200, so each
 * client must end only on the 204 of the closed session (SPEC §4.9), having received exactly
 * ids 1..N, no gap and no repeat. A transient refusal must come as the soft refusal of
 * SPEC §4.12 (200, retry:, the end), never as a 503 to an SSE client.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "tests/lib/diag.h"
#include "tests/lib/esclient.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/testenv.h"

enum {
    STD_CLIENTS = 6,
    STD_SLOTS = 4,                  /* stream slots in the slot test: two clients too many */
    STD_DEADLINE_MS = 40000,        /* the clients give up waiting for their 204 then */
    STD_WAIT_MS = 15000,            /* a step that follows a commit, a reconnect or a start */
    STD_DATABASE_AWAY_MS = 1500,    /* issue 11: a deploy or a restore */
};

/* Every client resumes from 0 (a fresh connect would replay only the replayed types), with
 * the query parameter, as a page does: EventSource cannot set Last-Event-ID itself, and the
 * header it sends on a reconnect wins over the parameter (SPEC §4.3). */
static const char STREAM_PATH[] = "/api/sessions/s1/events?last_event_id=0";

/* The clients reconnect 300 ms after a stream ends (SSE_RETRY_MS); SSE_THREADS leaves a
 * slot for each client and a few for reconnects that overlap a stream's end. */
static const char *const STD_ENV[] = {"SSE_RETRY_MS", "300", "SSE_THREADS", "12", NULL};

/* nginx_main: main-context lines under nginx, or NULL. */
static void
start_server_with(int port, const char *nginx_main)
{
    server_start(&test_srv, &test_env, &(struct server_options){.env = STD_ENV, .port = port,
                                                                .nginx_main = nginx_main});
}

static void
start_server(int port)
{
    start_server_with(port, NULL);
}

/* Publishes the ids after *last_id up to last, as a producer does, and waits until
 * min_clients clients have the last one. */
static void
publish_up_to(struct esclient_run *run, long long *last_id, long long last, int min_clients)
{
    publish_events(&test_env, "s1", "llm_text_delta", NULL, (int)(last - *last_id));
    *last_id = last;
    esclient_wait_for(run, "message", last, min_clients, STD_WAIT_MS);
}

/* Starts the server (with nginx_main under nginx, may be NULL) and the clients, waits
 * until every client streams (its connect is in the log), and has ids 1..3 published and
 * received by each. */
static void
start_streaming_with(struct esclient_run *run, long long *last_id, const char *nginx_main)
{
    start_server_with(0, nginx_main);
    esclient_start(run, &test_env, test_srv.port, STREAM_PATH, STD_CLIENTS, NULL,
                   STD_DEADLINE_MS);
    logwait_expect_count(test_srv.sse_log, "sse connected session=s1", NULL, STD_CLIENTS,
                         STD_WAIT_MS);
    *last_id = 0;
    publish_up_to(run, last_id, 3, STD_CLIENTS);
}

static void
start_streaming(struct esclient_run *run, long long *last_id)
{
    start_streaming_with(run, last_id, NULL);
}

/* Closes session s1: each stream ends after its last event, and a reconnect gets 204. */
static void
close_session(void)
{
    publish_ok(&test_env, "UPDATE sessions SET closed_at = "
               "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = 's1';\n");
}

/* Closes the session and fails unless every client ends on its 204 with ids 1..last_id. */
static void
expect_every_client_ended(struct esclient_run *run, long long last_id)
{
    close_session();
    esclient_finish(run);
    esclient_expect_ended_with_ids(run, 1, last_id);
}

/* The limit on concurrent streams of each front end, for the slot test: the one backend of
 * lighttpd and of nginx has STD_SLOTS stream slots (SSE_THREADS; the responder itself
 * refuses the rest), mod_fcgid runs at most STD_SLOTS processes of the class (it holds the
 * rest until one is free), and under CGI Apache has STD_SLOTS workers (the rest wait in the
 * listen queue). */
static struct server_options
slot_limited_options(void)
{
    static const char *const env[] = {"SSE_RETRY_MS", "300", "SSE_THREADS", "4", NULL};
    static const char *const directives[SERVER_FRONT_END_COUNT] = {
        [SERVER_APACHE_FCGID] = "FcgidMaxProcessesPerClass 4\nFcgidMaxProcesses 4\n",
        [SERVER_APACHE_CGI] = "ServerLimit 1\nThreadLimit 4\nThreadsPerChild 4\n"
                              "MaxRequestWorkers 4\n",
    };
    return (struct server_options){.env = env,
                                   .apache_directives = directives[server_front_end]};
}

/* More clients than stream slots: the clients without one are refused (lighttpd) or held
 * (Apache) until the session ends, and then still get every event and the 204. */
START_TEST(test_standard_clients_outlast_full_slots)
{
    struct server_options opt = slot_limited_options();
    server_start(&test_srv, &test_env, &opt);
    struct esclient_run run;
    esclient_start(&run, &test_env, test_srv.port, STREAM_PATH, STD_CLIENTS, NULL,
                   STD_DEADLINE_MS);
    logwait_expect_count(test_srv.sse_log, "sse connected session=s1", NULL, STD_SLOTS,
                         STD_WAIT_MS);
    if (!server_front_end_is_apache(server_front_end))
        logwait_expect_count(test_srv.sse_log, "no_free_stream_slot", NULL,
                             STD_CLIENTS - STD_SLOTS, STD_WAIT_MS);
    long long last_id = 0;
    publish_up_to(&run, &last_id, 5, STD_SLOTS);
    int streams = logwait_count_lines(test_srv.sse_log, "sse connected session=s1", NULL);
    DIAG_CHECK(streams == STD_SLOTS, "%d streams on %d slots: the limit did not hold, the "
               "test proves nothing", streams, STD_SLOTS);
    publish_up_to(&run, &last_id, 10, STD_SLOTS);
    expect_every_client_ended(&run, last_id);
}
END_TEST

/* The database is moved away for 1.5 s (a deploy, a restore) and back: the streams end,
 * the reconnects while it is missing are refused softly, and rows published once it is
 * back reach every client. */
START_TEST(test_standard_clients_outlast_missing_database)
{
    struct esclient_run run;
    long long last_id;
    start_streaming(&run, &last_id);
    int64_t moved_ms = testenv_now_ms();
    testenv_move_database(&test_env, "", ".away");
    logwait_expect_count(test_srv.sse_log, "reason=error:database_gone", NULL, STD_CLIENTS,
                         STD_WAIT_MS);
    logwait_expect_line(test_srv.sse_log, "status=503", "database missing", STD_WAIT_MS);
    while (testenv_now_ms() - moved_ms < STD_DATABASE_AWAY_MS)  /* the time it is away */
        testenv_poll_step();
    testenv_move_database(&test_env, ".away", "");
    publish_up_to(&run, &last_id, 6, STD_CLIENTS);
    expect_every_client_ended(&run, last_id);
}
END_TEST

/* Every responder process is SIGKILLed mid-stream (what a web server does to a stuck
 * process, or the OOM killer): the web server starts new ones, and the clients resume.
 * nginx starts none: there the test starts the backend again, as the service manager
 * would, once every stream was cut; until then nginx answers 502, which the shipped
 * snippet turns into a soft refusal. */
START_TEST(test_standard_clients_outlast_killed_backend)
{
    struct esclient_run run;
    long long last_id;
    start_streaming(&run, &last_id);
    pid_t pids[ESCLIENT_MAX];
    size_t count = server_list_backends(&test_srv, pids, ESCLIENT_MAX);
    DIAG_CHECK(count > 0, "no responder process to kill");
    for (size_t i = 0; i < count; i++)
        kill(pids[i], SIGKILL);
    esclient_wait_for(&run, "error", -1, STD_CLIENTS, STD_WAIT_MS);  /* each stream cut */
    if (server_front_end == SERVER_NGINX) {
        server_stop_backend(&test_srv);  /* reaps it */
        server_start_backend(&test_srv, &test_env, &(struct server_options){.env = STD_ENV});
    }
    publish_up_to(&run, &last_id, 6, STD_CLIENTS);
    expect_every_client_ended(&run, last_id);
}
END_TEST

/* The web server is stopped (its backends with it) and started again on the same port,
 * with rows committed while it is down. */
START_TEST(test_standard_clients_outlast_web_server_restart)
{
    struct esclient_run run;
    long long last_id;
    start_streaming(&run, &last_id);
    int port = test_srv.port;
    server_stop(&test_srv);
    esclient_wait_for(&run, "error", -1, STD_CLIENTS, STD_WAIT_MS);  /* each stream cut */
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);  /* 4, 5 while it is down */
    start_server(port);
    last_id = 5;
    publish_up_to(&run, &last_id, 6, STD_CLIENTS);
    expect_every_client_ended(&run, last_id);
}
END_TEST

/* nginx reloaded (SIGHUP to its master, as `nginx -s reload` does) with
 * worker_shutdown_timeout: the old worker keeps the streams, live, until the timeout, then
 * closes them mid-body; the clients reconnect to the new worker with Last-Event-ID. Rows
 * are committed before and after the cut. The nginx suite measures the times. */
START_TEST(test_standard_clients_outlast_nginx_reload)
{
    struct esclient_run run;
    long long last_id;
    start_streaming_with(&run, &last_id, "worker_shutdown_timeout 1s;");
    server_signal(&test_srv, SIGHUP);
    publish_up_to(&run, &last_id, 4, STD_CLIENTS);  /* the old worker still serves them */
    esclient_wait_for(&run, "error", -1, STD_CLIENTS, STD_WAIT_MS);  /* each stream cut */
    publish_up_to(&run, &last_id, 6, STD_CLIENTS);
    expect_every_client_ended(&run, last_id);
}
END_TEST

Suite *suite_standard(void);

Suite *
suite_standard(void)
{
    Suite *s = server_suite_create("standard");
    TCase *tc = server_tcase_create("standard");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_standard_clients_outlast_full_slots);
    tcase_add_test(tc, test_standard_clients_outlast_missing_database);
    tcase_add_test(tc, test_standard_clients_outlast_killed_backend);
    tcase_add_test(tc, test_standard_clients_outlast_web_server_restart);
    /* nginx only: what its reload (a new certificate, a new site) does to open streams is
     * nginx's own; Apache's graceful restart is in README's table, measured by hand. */
    if (server_building_front_end == SERVER_NGINX)
        tcase_add_test(tc, test_standard_clients_outlast_nginx_reload);
    suite_add_tcase(s, tc);
    return s;
}
