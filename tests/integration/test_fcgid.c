/*
 * test_fcgid.c - what only Apache + mod_fcgid does to a stream (issue 3, DEPLOY-NOTES Q2-Q4).
 *
 * Keepalives keep a stream alive past FcgidIOTimeout; SSE_MAX_STREAM_S below
 * FcgidBusyTimeout ends the stream cleanly and the client resumes without loss; a client
 * that leaves frees its fcgid process, so that at the process limit the next client is
 * served (the time it took is printed); the default output buffer holds everything back
 * (the fact the deploy files are built on); deploy/apache/htaccess works as shipped; a
 * request's SetEnv of a per-process setting (SSE_LOG, SSE_LOG_LEVEL, SSE_POLL_MS) changes
 * nothing in the process and leaks nothing. Apache's own 5xx reach an SSE client as a soft
 * refusal (deploy/apache/sse-soft-refusal.lua), also when a process dies mid-stream
 * (issue 11).
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"


/* FcgidIOTimeout 3 cuts a stream silent for 3 s (Q2); keepalives every second keep it. */
START_TEST(test_stream_outlives_io_timeout)
{
    server_start(&test_srv, &test_env, &(struct server_options){
        .apache_directives = "FcgidIOTimeout 3\nFcgidBusyScanInterval 1\n"});
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    int64_t start_ms = testenv_now_ms();
    while (testenv_now_ms() - start_ms < 5000) {
        struct sse_frame f;
        sse_client_expect_block(&c, &f, 1600);  /* a keepalive at least every second */
        sse_frame_release(&f);
    }
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&c, (const long long[]){1}, 1, 3000);
    sse_client_close(&c);
}
END_TEST

/* SSE_MAX_STREAM_S ends the stream before FcgidBusyTimeout would kill it (§2); the client
 * resumes with Last-Event-ID and gets exactly what it missed. */
START_TEST(test_max_stream_time_then_resume)
{
    const char *const settings[] = {"SSE_MAX_STREAM_S", "2", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){
        .env = settings, .apache_directives = "FcgidBusyTimeout 10\n"});
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&c, (const long long[]){1}, 1, 3000);
    sse_client_expect_end(&c, 4000);
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=max_stream_time",
                        2000);
    publish_events(&test_env, "s1", "execution_started", NULL, 2);
    const char *const resume[] = {"Last-Event-ID: 1", NULL};
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", resume);
    frames_expect_ids(&c, (const long long[]){2, 3}, 2, 3000);
    sse_client_close(&c);
}
END_TEST

/* With one process allowed, a client that leaves must free it for the next one (Q3, Q4). */
START_TEST(test_disconnect_frees_process_at_limit)
{
    server_start(&test_srv, &test_env, &(struct server_options){
        .apache_directives = "FcgidMaxProcessesPerClass 1\n"});
    struct sse_client first, second;
    frames_open_stream(&first, test_srv.port, "/api/sessions/s1/events", NULL);
    int64_t closed_ms = testenv_now_ms();
    sse_client_close(&first);
    frames_open_stream(&second, test_srv.port, "/api/sessions/s1/events", NULL);
    int64_t served_ms = testenv_now_ms() - closed_ms;
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&second, (const long long[]){1}, 1, 3000);
    fprintf(stderr, "mod_fcgid at its process limit: next client served %lld ms after the "
            "previous one left\n", (long long)served_ms);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=client_disconnected",
                        3000);
    sse_client_close(&second);
}
END_TEST

/* Sends a GET for path and returns how many bytes arrive within timeout_ms. */
static size_t
raw_bytes_within(int port, const char *path, int timeout_ms)
{
    int fd = sse_client_send_get(port, path, 0);
    size_t total = 0;
    int64_t deadline = testenv_now_ms() + timeout_ms;
    for (int64_t now = testenv_now_ms(); now < deadline; now = testenv_now_ms()) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        total += (size_t)n;
    }
    close(fd);
    return total;
}

/* DEPLOY-NOTES §1, checked again here: with mod_fcgid's default 64 KiB output buffer not
 * even the headers reach the client, events or not; the whole FRONT_SUITE set streams with
 * FcgidOutputBufferSize 0. */
START_TEST(test_default_output_buffer_holds_the_stream)
{
    server_start(&test_srv, &test_env, &(struct server_options){
        .apache_directives = "FcgidOutputBufferSize 65536\n",
        .is_port_ready_enough = true});
    publish_events(&test_env, "s1", "execution_started", NULL, 3);
    size_t received = raw_bytes_within(test_srv.port, "/api/sessions/s1/events", 2500);
    DIAG_CHECK(received == 0, "with FcgidOutputBufferSize 65536 %zu bytes arrived within "
               "2.5 s: DEPLOY-NOTES section 1 no longer holds, README must change", received);
}
END_TEST

/* deploy/apache/htaccess as a shared-hosting user installs it: the binary copied into their
 * directory as events.fcgi and events.cgi, the file as .htaccess with their database path,
 * and the host's AllowOverride FileInfo Options=ExecCGI. Both the pretty URL (rewritten to
 * events.fcgi) and the CGI script stream, uncompressed although the host compresses
 * everything and the client accepts gzip (the file's SetEnv no-gzip 1). */
START_TEST(test_shared_hosting_htaccess)
{
    char site[TESTENV_PATH_MAX], path[TESTENV_PATH_MAX], source[TESTENV_PATH_MAX];
    testenv_path(&test_env, "site", site, sizeof(site));
    DIAG_CHECK(mkdir(site, 0755) == 0, "mkdir %s: %s", site, strerror(errno));
    static char htaccess[8192];
    snprintf(source, sizeof(source), "%s/deploy/apache/htaccess", testenv_require("SSE_SRC_DIR"));
    long len = testenv_read_file(source, htaccess, sizeof(htaccess) - 512);
    DIAG_CHECK(len > 0, "cannot read %s", source);
    char *db = strstr(htaccess, "/home/USER/data/events.db");
    DIAG_CHECK(db != NULL, "%s no longer names /home/USER/data/events.db", source);
    static char adapted[8192];
    snprintf(adapted, sizeof(adapted), "%.*s%s%s", (int)(db - htaccess), htaccess,
             test_env.db_path, db + strlen("/home/USER/data/events.db"));
    testenv_write_file(testenv_path(&test_env, "site/.htaccess", path, sizeof(path)), adapted,
                       strlen(adapted));
    const char *names[] = {"site/events.fcgi", "site/events.cgi"};
    for (int i = 0; i < 2; i++) {
        testenv_path(&test_env, names[i], path, sizeof(path));
        DIAG_CHECK(symlink(testenv_require("SSE_FCGI_BIN"), path) == 0, "symlink %s", path);
    }
    char directives[3 * TESTENV_PATH_MAX];
    snprintf(directives, sizeof(directives),
             "LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so\n"
             "LoadModule deflate_module /usr/lib/apache2/modules/mod_deflate.so\n"
             "TypesConfig /etc/mime.types\n"
             "Alias /app/ \"%s/\"\n<Directory \"%s\">\n"
             "    Options FollowSymLinks\n    AllowOverride FileInfo Options=ExecCGI\n"
             "    SetOutputFilter DEFLATE\n"  /* a host compressing everything (Q5) */
             "    Require all granted\n</Directory>\n", site, site);
    server_start(&test_srv, &test_env, &(struct server_options){.apache_directives = directives});
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    const char *urls[] = {"/app/api/sessions/s1/events", "/app/events.cgi/api/sessions/s1/events"};
    const char *const gzip[] = {"Accept-Encoding: gzip", NULL};
    for (int i = 0; i < 2; i++) {
        struct sse_client c;
        frames_open_stream(&c, test_srv.port, urls[i], gzip);
        frames_expect_ids(&c, (const long long[]){1, 2}, (size_t)i + 1, 3000);  /* replay */
        publish_events(&test_env, "s1", "execution_started", NULL, 1);
        frames_expect_ids(&c, (const long long[]){i + 2}, 1, 3000);
        char value[64];
        DIAG_CHECK(sse_client_header(&c, "Content-Encoding", value, sizeof(value)) == NULL,
                   "%s: compressed (%s)", urls[i], value);
        sse_client_close(&c);
    }
}
END_TEST

enum { ALTERNATING_REQUESTS = 300, PIPELINE_BYTES = 1024 * 1024 };

/* Sends GETs of paths[first..first+n) (alternating, i % 2) pipelined on one keep-alive
 * connection and fails unless n answers "200" arrive within 20 s. One connection, because
 * Apache then starts a request only once the one before has ended and mod_fcgid has its
 * process back; separate connections race that return and wait its 1 s spawn delay. */
static void
expect_pipelined_200s(const char *const paths[2], int first, int n)
{
    static char requests[ALTERNATING_REQUESTS * 160], answers[PIPELINE_BYTES];
    int fd = sse_client_send_get(test_srv.port, paths[first % 2], 0);  /* the first */
    size_t len = 0;
    for (int i = first + 1; i < first + n; i++)  /* the rest, as sse_client_send_get would */
        len += (size_t)snprintf(requests + len, sizeof(requests) - len,
                                "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", paths[i % 2]);
    DIAG_CHECK(write(fd, requests, len) == (ssize_t)len, "pipelining %d requests: write "
               "failed", n);
    size_t got = 0;
    int answered = 0;
    int64_t deadline = testenv_now_ms() + 20000;
    while (answered < n && got < sizeof(answers) - 1 && testenv_now_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - testenv_now_ms())) <= 0)
            continue;
        ssize_t k = read(fd, answers + got, sizeof(answers) - 1 - got);
        if (k <= 0)
            break;
        got += (size_t)k;
        answers[got] = '\0';
        answered = 0;
        for (const char *at = answers; (at = strstr(at, "HTTP/1.1 ")) != NULL; at += 9) {
            DIAG_CHECK(strncmp(at + 9, "200 ", 4) == 0, "a pipelined request got %.12s", at);
            answered++;
        }
    }
    close(fd);
    DIAG_CHECK(answered == n, "%d of %d pipelined requests answered", answered, n);
}

/* pid's descriptors once it holds none on the database: a health request closes its
 * connection (3 descriptors: the file, -wal, -shm) just after its answer has gone. */
/* The descriptors of pid once its hub is up: the host's watcher (issue 12) keeps the
 * database open in the leader, so the count is taken once it has. */
static int
settled_fd_count(pid_t pid)
{
    int64_t deadline = testenv_now_ms() + 2000;
    while (testenv_count_fds(pid, "/events.db", NULL) == 0 && testenv_now_ms() < deadline)
        testenv_poll_step();
    return testenv_count_fds(pid, NULL, NULL);
}

/* Issue 11: SSE_LOG and SSE_POLL_MS are per-process settings (README "Configuration"). A
 * request's SetEnv of them is ignored with one warning per process and name, so requests
 * alternating two SetEnv SSE_LOG paths neither move the log nor open a file each: before,
 * every switch opened the other file and never closed the last (300 requests, 300 fds). */
START_TEST(test_request_log_target_is_ignored)
{
    char a_log[TESTENV_PATH_MAX], b_log[TESTENV_PATH_MAX], directives[4 * TESTENV_PATH_MAX];
    testenv_path(&test_env, "a.log", a_log, sizeof(a_log));
    testenv_path(&test_env, "b.log", b_log, sizeof(b_log));
    const char *script = server_script_url();
    snprintf(directives, sizeof(directives), "MaxKeepAliveRequests 0\n"
             "<Location \"%s/a/api/health\">\n    SetEnv SSE_LOG \"%s\"\n</Location>\n"
             "<Location \"%s/b/api/health\">\n    SetEnv SSE_LOG \"%s\"\n"
             "    SetEnv SSE_POLL_MS 10\n</Location>\n", script, a_log, script, b_log);
    server_start(&test_srv, &test_env, &(struct server_options){.apache_directives = directives});
    char a_url[128], b_url[128];
    snprintf(a_url, sizeof(a_url), "%s/a/api/health", script);
    snprintf(b_url, sizeof(b_url), "%s/b/api/health", script);
    const char *const paths[2] = {a_url, b_url};
    expect_pipelined_200s(paths, 0, 10);  /* warmed up: whatever a first request opens */
    pid_t backend = server_find_backend(&test_srv, 2000);
    DIAG_CHECK(backend > 0, "no mod_fcgid process");
    int fds_at_start = settled_fd_count(backend);
    expect_pipelined_200s(paths, 10, ALTERNATING_REQUESTS - 10);
    DIAG_CHECK(server_find_backend(&test_srv, 0) == backend && !server_is_pid_gone(backend),
               "mod_fcgid changed processes: the count below would prove nothing");
    int fds_at_end = settled_fd_count(backend);
    fprintf(stderr, "%d requests alternating two SetEnv SSE_LOG: %d descriptors after 10, "
            "%d after %d\n", ALTERNATING_REQUESTS, fds_at_start, fds_at_end,
            ALTERNATING_REQUESTS);
    DIAG_CHECK(fds_at_end <= fds_at_start + 2, "the process went from %d to %d descriptors "
               "over %d requests", fds_at_start, fds_at_end, ALTERNATING_REQUESTS - 10);
    struct stat sb;
    DIAG_CHECK(stat(a_log, &sb) != 0 && stat(b_log, &sb) != 0,
               "a request's SetEnv SSE_LOG opened its file");
    static const char *const names[] = {"name=SSE_LOG ", "name=SSE_POLL_MS "};
    for (int i = 0; i < 2; i++) {
        int warnings = logwait_count_lines(test_srv.sse_log, "sse warning per-process "
                                           "setting", names[i]);
        DIAG_CHECK(warnings == 1, "%d warnings with %s, expected one per process", warnings,
                   names[i]);
    }
}
END_TEST

/* Issue 11: SSE_LOG_LEVEL is per process. The process logs at warn (FcgidInitialEnv); one
 * location asks for error, another for debug (SetEnv). Before, each request set the level
 * of the whole process: a request under "error" silenced its own warnings, and one under
 * "debug" made every thread log at debug. */
START_TEST(test_request_log_level_is_ignored)
{
    const char *script = server_script_url();
    char directives[1024];
    snprintf(directives, sizeof(directives),
             "<Location \"%s/quiet/api/sessions/s1/events\">\n    SetEnv SSE_LOG_LEVEL error\n"
             "</Location>\n<Location \"%s/loud/api/sessions/s1/events\">\n"
             "    SetEnv SSE_LOG_LEVEL debug\n</Location>\n", script, script);
    const char *const settings[] = {"SSE_LOG_LEVEL", "warn", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){
        .env = settings, .apache_directives = directives});
    const char *const bad_id[] = {"Last-Event-ID: not-a-number", NULL};
    const char *const prefixes[] = {"quiet", "loud"};
    for (int i = 0; i < 2; i++) {
        char url[160];
        snprintf(url, sizeof(url), "%s/%s/api/sessions/s1/events", script, prefixes[i]);
        struct sse_client c;
        frames_open_stream(&c, test_srv.port, url, bad_id);  /* logs before the head */
        int warned = logwait_count_lines(test_srv.sse_log, "sse warning malformed "
                                         "Last-Event-ID", NULL);
        int connected = logwait_count_lines(test_srv.sse_log, "sse connected", NULL);
        DIAG_CHECK(warned == i + 1, "under SetEnv SSE_LOG_LEVEL %s: %d warning lines, "
                   "expected %d at the process's level warn", i ? "debug" : "error", warned,
                   i + 1);
        DIAG_CHECK(connected == 0, "under SetEnv SSE_LOG_LEVEL %s: an info line was logged "
                   "at the process's level warn", i ? "debug" : "error");
        sse_client_close(&c);
    }
}
END_TEST

/* Stops (SIGSTOP) every fcgid process, which must be count idle ones; returns how many. */
static size_t
stop_idle_processes(pid_t *pids, size_t count)
{
    size_t n = server_list_backends(&test_srv, pids, count + 1);
    DIAG_CHECK(n == count, "%zu fcgid processes, expected %zu idle ones", n, count);
    for (size_t i = 0; i < n; i++)
        DIAG_CHECK(kill(pids[i], SIGSTOP) == 0, "SIGSTOP %ld: %s", (long)pids[i],
                   strerror(errno));
    return n;
}

/* Apache answers some 5xx itself, and a standard EventSource gives up for good on them:
 * mod_fcgid answers 500 when a process does not answer within FcgidIOTimeout (and 503 after
 * 64 s without a free process, the same ErrorDocument path, too slow to test here). With
 * deploy/apache/sse-soft-refusal.lua as the ErrorDocument an SSE client gets a soft refusal
 * (200 text/event-stream, retry: 2000, no id:), a plain client keeps Apache's 500. Two idle
 * processes are stopped, so that each of the two requests waits 1 s for one and fails. */
START_TEST(test_own_error_is_soft_refusal)
{
    server_start(&test_srv, &test_env, &(struct server_options){
        .apache_directives = "FcgidIOTimeout 1\n"});
    struct sse_client one, two;
    frames_open_stream(&one, test_srv.port, "/api/sessions/s1/events", NULL);
    frames_open_stream(&two, test_srv.port, "/api/sessions/s1/events", NULL);
    sse_client_close(&one);
    sse_client_close(&two);
    logwait_expect_count(test_srv.sse_log, "sse disconnected session=s1",
                         "reason=client_disconnected", 2, 3000);
    pid_t pids[3];
    size_t stopped = stop_idle_processes(pids, 2);
    const char *const resume[] = {"Last-Event-ID: 2", NULL};
    struct sse_client c;
    int64_t start_ms = testenv_now_ms();
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", resume);
    frames_expect_soft_refusal(&c, 2000, NULL);
    sse_client_close(&c);
    int64_t refused_ms = testenv_now_ms() - start_ms;
    int status = sse_client_plain_status(test_srv.port, "/api/health", 5000);
    for (size_t i = 0; i < stopped; i++)
        kill(pids[i], SIGCONT);  /* mod_fcgid kills them at its next error scan */
    fprintf(stderr, "mod_fcgid's own 500 (IO timeout 1 s): soft refusal to the SSE client "
            "after %lld ms, %d to a plain client\n", (long long)refused_ms, status);
    DIAG_CHECK(status == 500, "a plain client got %d, expected Apache's own 500", status);
}
END_TEST

/* A process killed in the middle of a stream: Apache appends its own error document to the
 * stream it already sent (an HTML page without the handler). Through the soft-refusal
 * handler that is a block of retry: 2000 and a comment, and never an id:, which would move
 * the client's cursor back to the Last-Event-ID it came with (here 0, after event 1). The
 * client then resumes from 1 on a new process. */
START_TEST(test_killed_process_mid_stream)
{
    server_start(&test_srv, &test_env, NULL);
    const char *const fresh[] = {"Last-Event-ID: 0", NULL};
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", fresh);
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&c, (const long long[]){1}, 1, 3000);
    pid_t pid = server_find_backend(&test_srv, 1000);
    DIAG_CHECK(pid > 0 && kill(pid, SIGKILL) == 0, "cannot kill the fcgid process %ld",
               (long)pid);
    int retry_blocks = 0;
    struct sse_frame f;
    while (sse_client_next(&c, &f, 3000) == SSE_CLIENT_BLOCK) {
        DIAG_CHECK(!f.has_id && f.data == NULL, "%s: after the kill an %s arrived", c.request,
                   f.has_id ? "id: line" : "event");
        retry_blocks += f.has_retry && f.retry_ms == 2000;
        sse_frame_release(&f);
    }
    DIAG_CHECK(c.is_body_done && retry_blocks == 1, "%s: after the kill, %d retry: 2000 "
               "blocks and the end %s", c.request, retry_blocks,
               c.is_body_done ? "came" : "never came");
    sse_client_close(&c);
    frames_resume(&c, test_srv.port, "/api/sessions/s1/events", 1, 5000);
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&c, (const long long[]){2}, 1, 3000);
    sse_client_close(&c);
}
END_TEST

Suite *suite_fcgid(void);

Suite *
suite_fcgid(void)
{
    Suite *s = server_suite_create("apache");
    TCase *tc = server_tcase_create("apache");
    tcase_set_timeout(tc, 40);
    tcase_add_test(tc, test_stream_outlives_io_timeout);
    tcase_add_test(tc, test_max_stream_time_then_resume);
    tcase_add_test(tc, test_disconnect_frees_process_at_limit);
    tcase_add_test(tc, test_default_output_buffer_holds_the_stream);
    tcase_add_test(tc, test_shared_hosting_htaccess);
    tcase_add_test(tc, test_request_log_target_is_ignored);
    tcase_add_test(tc, test_request_log_level_is_ignored);
    tcase_add_test(tc, test_own_error_is_soft_refusal);
    tcase_add_test(tc, test_killed_process_mid_stream);
    suite_add_tcase(s, tc);
    return s;
}
