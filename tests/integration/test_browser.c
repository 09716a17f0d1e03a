/*
 * test_browser.c - the viewer (deploy/viewer/) in a real headless Chromium (issue 6).
 *
 * lighttpd serves the viewer's files from the document root under /app/ and the responder
 * at /app/api/, so the page runs mounted under a sub-path with its relative URLs. Apache
 * (mod_fcgid and CGI) serves them as deploy/apache/viewer.conf ships it, nginx as
 * deploy/nginx/viewer.conf does, at /sse-viewer/, and the page is told where the API is
 * (?api=/api/). Rows are published with the sqlite3
 * CLI; the test reads what the page shows through WebDriver (tests/lib/webdriver.h): the
 * ids of the rows it lists, its state badge, its counters.
 * Every wait polls the page against a deadline. Screenshots of the viewer are saved to
 * $SSE_ARTIFACT_DIR (viewer.png, viewer-fcgid.png, viewer-cgi.png, viewer-nginx.png,
 * viewer-demo.png).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/lib/diag.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"
#include "tests/lib/webdriver.h"

enum {
    BROWSER_WAIT_MS = 15000,    /* a page change that should follow a commit or a restart */
    BROWSER_RETRY_MS = 500,     /* SSE_RETRY_MS: EventSource's reconnect delay */
};

static const char *const VIEWER_FILES[] = {"index.html", "viewer.js", "viewer.css"};

/* A JS expression: the ids of the rows the page lists, oldest first, as "1,2,3". */
#define ROW_IDS_EXPR                                                                        \
    "[...document.querySelectorAll('#events tr[data-id]')]"                                 \
    ".map((r) => r.dataset.id).reverse().join(',')"

static bool
is_lighttpd(void)
{
    return server_front_end == SERVER_LIGHTTPD;
}

/* The viewer's folder and the API's, as URL paths. */
static const char *
viewer_path(void)
{
    return is_lighttpd() ? "/app/" : "/sse-viewer/";
}

static const char *
api_path(void)
{
    return is_lighttpd() ? "/app/api/" : "/api/";
}

/* Copies the viewer into <dir>/app/, which lighttpd's document root serves as /app/ and
 * Apache and nginx as /sse-viewer/ (readable by www-data). */
static void
install_viewer(void)
{
    static char bytes[256 * 1024];
    char app_dir[TESTENV_PATH_MAX], from[TESTENV_PATH_MAX], to[TESTENV_PATH_MAX + 32];
    testenv_path(&test_env, "app", app_dir, sizeof(app_dir));
    DIAG_CHECK(mkdir(app_dir, 0755) == 0, "mkdir %s", app_dir);
    for (size_t i = 0; i < sizeof(VIEWER_FILES) / sizeof(VIEWER_FILES[0]); i++) {
        snprintf(from, sizeof(from), "%s/deploy/viewer/%s", testenv_require("SSE_SRC_DIR"),
                 VIEWER_FILES[i]);
        long len = testenv_read_file(from, bytes, sizeof(bytes));
        DIAG_CHECK(len > 0 && (size_t)len < sizeof(bytes) - 1, "cannot read %s", from);
        snprintf(to, sizeof(to), "%s/%s", app_dir, VIEWER_FILES[i]);
        testenv_write_file(to, bytes, (size_t)len);
        DIAG_CHECK(chmod(to, 0644) == 0, "chmod %s", to);
    }
}

static const char *const VIEWER_ENV[] = {"SSE_RETRY_MS", "500", NULL};

/* lighttpd: the responder at /app/api/. Apache: the modules deploy/apache/viewer.conf
 * needs (the test configuration loads only what the responder needs), then that file.
 * nginx: the location its viewer.conf says to write, with that file in it. */
static struct server_options
viewer_options(int port)
{
    static char directives[2048], location[2048];
    char app_dir[TESTENV_PATH_MAX];
    testenv_path(&test_env, "app", app_dir, sizeof(app_dir));
    snprintf(directives, sizeof(directives),
             "LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so\n"
             "LoadModule headers_module /usr/lib/apache2/modules/mod_headers.so\n"
             "LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so\n"
             "TypesConfig /etc/mime.types\n"
             "Define SSE_VIEWER_DIR \"%s\"\n"
             "Include \"%s/deploy/apache/viewer.conf\"\n",
             app_dir, testenv_require("SSE_SRC_DIR"));
    snprintf(location, sizeof(location),
             "location /sse-viewer/ {\n"
             "    alias \"%s/\";\n"
             "    include \"%s/deploy/nginx/viewer.conf\";\n"
             "}\n", app_dir, testenv_require("SSE_SRC_DIR"));
    return (struct server_options){.mount = is_lighttpd() ? "/app/api/" : NULL,
                                   .env = VIEWER_ENV, .port = port,
                                   .apache_directives = is_lighttpd() ? NULL : directives,
                                   .nginx_server = location};
}

static void
start_viewer_server(void)
{
    install_viewer();
    struct server_options opt = viewer_options(0);
    server_start(&test_srv, &test_env, &opt);
}

/* Opens the viewer with the page parameters params ("session=s1", or "") in a fresh
 * browser. */
static void
open_viewer(struct webdriver *wd, const char *params)
{
    char url[256];
    webdriver_start(wd, &test_env, 1280, 900);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s?%s%s", test_srv.port, viewer_path(),
             is_lighttpd() ? "" : "api=/api/&", params);
    webdriver_navigate(wd, url);
}

static void
expect_state(struct webdriver *wd, const char *state)
{
    char script[128], shown[64];
    snprintf(script, sizeof(script),
             "return document.getElementById('state').dataset.state === '%s';", state);
    if (webdriver_wait_until(wd, script, BROWSER_WAIT_MS))
        return;
    webdriver_execute_string(wd, "return document.getElementById('state').dataset.state + "
                                 "' (' + document.getElementById('state-detail').textContent"
                                 " + ')';", shown, sizeof(shown));
    DIAG_CHECK(false, "the viewer never showed state %s; it shows %s", state, shown);
}

/* Waits until the page lists exactly the ids in expected ("1,2,3"), oldest first. */
static void
expect_rows(struct webdriver *wd, const char *expected)
{
    char script[512], shown[1024];
    snprintf(script, sizeof(script), "return " ROW_IDS_EXPR " === '%s';", expected);
    if (webdriver_wait_until(wd, script, BROWSER_WAIT_MS))
        return;
    webdriver_execute_string(wd, "return " ROW_IDS_EXPR ";", shown, sizeof(shown));
    DIAG_CHECK(false, "the viewer lists ids [%s], expected [%s]", shown, expected);
}

static long
page_number(struct webdriver *wd, const char *element_id)
{
    char script[128], text[64];
    snprintf(script, sizeof(script), "return document.getElementById('%s').textContent;",
             element_id);
    webdriver_execute_string(wd, script, text, sizeof(text));
    return strtol(text, NULL, 10);
}

/* Saves the page as $SSE_ARTIFACT_DIR/name and checks it is a PNG of some size. */
static void
save_screenshot(struct webdriver *wd, const char *name)
{
    char artifact[TESTENV_PATH_MAX];
    const char *dir = testenv_require("SSE_ARTIFACT_DIR");
    mkdir(dir, 0755);
    snprintf(artifact, sizeof(artifact), "%s/%s", dir, name);
    long png_bytes = webdriver_screenshot(wd, artifact);
    char magic[8] = "";
    testenv_read_file(artifact, magic, sizeof(magic));
    DIAG_CHECK(png_bytes > 10000 && memcmp(magic, "\x89PNG", 4) == 0,
               "the screenshot %s is not a PNG of the page (%ld bytes)", artifact, png_bytes);
}

/* Rows like an agent run's, with ids 1.. in a fresh database. */
static void
publish_agent_rows(int first, int count)
{
    static const char *const ROWS[] = {
        "'execution_started', 'queen', '{\"goal\":\"summarise the inbox\"}'",
        "'llm_text_delta', 'queen', '{\"content\":\"Reading the inbox\"}'",
        "'tool_call_started', 'queen', '{\"tool\":\"mail.search\",\"args\":{\"unread\":true}}'",
        "'tool_call_completed', 'queen', '{\"tool\":\"mail.search\",\"result\":{\"count\":3}}'",
        "'subagent_report', 'worker:summariser', '{\"summary\":\"2 invoices, 1 meeting\"}'",
        "'client_output_delta', 'queen', '{\"content\":\"You have 3 unread mails: \"}'",
        "'client_output_delta', 'queen', '{\"content\":\"2 invoices and a meeting.\"}'",
        "'node_loop_iteration', 'queen', '{\"iteration\":2}'",
        "'context_usage_updated', 'queen', '{\"tokens\":4120,\"limit\":128000}'",
        "'execution_completed', 'queen', '{\"tokens\":412}'",
    };
    for (int i = first; i < first + count; i++)
        publish_okf(&test_env, "INSERT INTO events(session_id, type, stream_id, data) "
                    "VALUES ('s1', %s);\n", ROWS[(size_t)i % (sizeof(ROWS) / sizeof(ROWS[0]))]);
}

/* The server and the page on session s1, live, showing rows 1..count (as expected). */
static void
start_live_viewer(struct webdriver *wd, int count, const char *expected)
{
    start_viewer_server();
    open_viewer(wd, "session=s1");
    expect_state(wd, "live");
    publish_agent_rows(0, count);
    expect_rows(wd, expected);
}

/* The viewer's own files: right types, revalidated on every load, 304 on a match. */
START_TEST(test_viewer_files_served)
{
    start_viewer_server();
    static const struct {
        const char *name, *content_type;
    } FILES[] = {
        {"", "text/html; charset=utf-8"},
        {"index.html", "text/html; charset=utf-8"},
        {"viewer.js", "text/javascript; charset=utf-8"},
        {"viewer.css", "text/css; charset=utf-8"},
    };
    for (size_t i = 0; i < sizeof(FILES) / sizeof(FILES[0]); i++) {
        struct sse_client c;
        char path[128];
        snprintf(path, sizeof(path), "%s%s", viewer_path(), FILES[i].name);
        char type[128] = "", cache[128] = "", sniff[64] = "", etag[128] = "";
        sse_client_open(&c, test_srv.port, "GET", path, NULL);
        sse_client_header(&c, "Content-Type", type, sizeof(type));
        sse_client_header(&c, "Cache-Control", cache, sizeof(cache));
        sse_client_header(&c, "X-Content-Type-Options", sniff, sizeof(sniff));
        sse_client_header(&c, "ETag", etag, sizeof(etag));
        int status = c.status;
        sse_client_close(&c);
        DIAG_CHECK(status == 200 && strcmp(type, FILES[i].content_type) == 0
                       && strcmp(cache, "no-cache") == 0 && strcmp(sniff, "nosniff") == 0
                       && etag[0] != '\0',
                   "%s: status %d, Content-Type '%s', Cache-Control '%s', "
                   "X-Content-Type-Options '%s', ETag '%s'", path, status, type,
                   cache, sniff, etag);
        char if_none_match[160];
        snprintf(if_none_match, sizeof(if_none_match), "If-None-Match: %s", etag);
        const char *const headers[] = {if_none_match, NULL};
        sse_client_open(&c, test_srv.port, "GET", path, headers);
        status = c.status;
        sse_client_close(&c);
        DIAG_CHECK(status == 304, "%s with its ETag: status %d, expected 304", path, status);
    }
    /* The stream under the same mount keeps the responder's own headers only. */
    struct sse_client c;
    char cache[128] = "", health[128];
    snprintf(health, sizeof(health), "%shealth", api_path());
    sse_client_open(&c, test_srv.port, "GET", health, NULL);
    DIAG_CHECK(c.status == 200 && sse_client_header(&c, "X-Content-Type-Options", cache,
                                                    sizeof(cache)) == NULL,
               "%s: status %d, or the viewer's headers on the API", health, c.status);
    sse_client_close(&c);
}
END_TEST

/*
 * The whole life of a session in the page: live rows in order; the web server restarted
 * while rows are committed, and the page resumes with Last-Event-ID, nothing missed or
 * repeated; the session closed, and the page shows "ended" and stops reconnecting (204).
 */
START_TEST(test_viewer_live_restart_end)
{
    struct webdriver wd;
    start_live_viewer(&wd, 4, "1,2,3,4");

    int port = test_srv.port;
    server_stop(&test_srv);
    expect_state(&wd, "reconnecting");
    publish_agent_rows(4, 3);  /* 5..7, committed while the page is cut off */
    struct server_options opt = viewer_options(port);
    server_start(&test_srv, &test_env, &opt);
    expect_state(&wd, "live");
    expect_rows(&wd, "1,2,3,4,5,6,7");
    logwait_expect_line(test_srv.sse_log, "sse connected session=s1", NULL, 2000);
    DIAG_CHECK(logwait_count_lines(test_srv.sse_log, "warning malformed", NULL) == 0,
               "the page sent a malformed Last-Event-ID");

    publish_agent_rows(7, 3);  /* 8..10 */
    expect_rows(&wd, "1,2,3,4,5,6,7,8,9,10");
    DIAG_CHECK(page_number(&wd, "last-id") == 10 && page_number(&wd, "event-count") == 10
                   && page_number(&wd, "open-count") == 2,
               "the status line shows last id %ld, %ld events, %ld connections; expected "
               "10, 10, 2", page_number(&wd, "last-id"), page_number(&wd, "event-count"),
               page_number(&wd, "open-count"));

    /* The JSON of a row, on click. */
    webdriver_click(&wd, "#events tr[data-id='5']");
    char json[2048];
    webdriver_execute_string(&wd, "const pre = document.querySelector('#events tr.json pre');"
                                  "return pre ? pre.textContent : '';", json, sizeof(json));
    DIAG_CHECK(strstr(json, "\"seq\": 5") && strstr(json, "\"type\": \"subagent_report\"")
                   && strstr(json, "\"summary\": \"2 invoices, 1 meeting\""),
               "the JSON shown for row 5 is: %s", json);

    static const char *const NAMES[SERVER_FRONT_END_COUNT] = {
        [SERVER_LIGHTTPD] = "viewer.png", [SERVER_APACHE_FCGID] = "viewer-fcgid.png",
        [SERVER_APACHE_CGI] = "viewer-cgi.png", [SERVER_NGINX] = "viewer-nginx.png",
    };
    save_screenshot(&wd, NAMES[server_front_end]);

    publish_ok(&test_env, "UPDATE sessions SET closed_at = "
               "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = 's1';\n");
    expect_state(&wd, "ended");
    expect_rows(&wd, "1,2,3,4,5,6,7,8,9,10");
    logwait_expect_line(test_srv.sse_log, "sse no content session=s1", NULL, 2000);
    /* EventSource retries every BROWSER_RETRY_MS while it is still trying: for eight such
     * periods, no new request may reach the responder. */
    int connects = logwait_count_lines(test_srv.sse_log, "session=s1", NULL);
    int64_t until = testenv_now_ms() + 8 * BROWSER_RETRY_MS;
    while (testenv_now_ms() < until)
        testenv_poll_step();
    int connects_after = logwait_count_lines(test_srv.sse_log, "session=s1", NULL);
    DIAG_CHECK(connects_after == connects, "the page went on reconnecting after 204: %d log "
               "lines for s1, then %d", connects, connects_after);
    expect_state(&wd, "ended");
    webdriver_stop(&wd);
}
END_TEST

/* The database goes missing: the server answers the page's EventSource with a soft refusal
 * (SPEC §4.12), a 200 stream it comes back from by itself after retry:, from where it was.
 * The viewer has no retry of its own: the EventSource the page opened first is the one
 * that shows the row committed once the database is back. */
START_TEST(test_viewer_survives_soft_refusal)
{
    struct webdriver wd;
    start_live_viewer(&wd, 2, "1,2");
    cJSON_Delete(webdriver_execute(&wd, "window.firstSource = view.source; return true;"));
    int refused = logwait_count_lines(test_srv.sse_log, "status=503", "database missing");
    testenv_move_database(&test_env, "", ".away");
    logwait_expect_count(test_srv.sse_log, "status=503", "database missing", refused + 1,
                         BROWSER_WAIT_MS);
    expect_state(&wd, "reconnecting");
    testenv_move_database(&test_env, ".away", "");
    publish_agent_rows(2, 1);  /* 3 */
    expect_rows(&wd, "1,2,3");
    expect_state(&wd, "live");
    DIAG_CHECK(webdriver_wait_until(&wd, "return view.source === window.firstSource && "
                                         "view.source.readyState === EventSource.OPEN;", 0),
               "the page's first EventSource gave up; the page opened another");
    webdriver_stop(&wd);
}
END_TEST

/* Rows pruned before the page asks for the whole history: it shows the gap event
 * (SPEC §4.3) as a row of its own, then the kept rows. */
START_TEST(test_viewer_shows_gap)
{
    start_viewer_server();
    publish_agent_rows(0, 5);
    publish_ok(&test_env, "DELETE FROM events WHERE id <= 3;\n");
    struct webdriver wd;
    open_viewer(&wd, "session=s1&history=all");
    expect_rows(&wd, "4,5");
    char gap[256];
    webdriver_execute_string(&wd, "const g = document.querySelector('#events tr.gap');"
                                  "return g ? g.textContent : '';", gap, sizeof(gap));
    DIAG_CHECK(strcmp(gap, "gap: events after 0 were pruned; resumed from 4") == 0,
               "the gap row says: '%s'", gap);
    webdriver_stop(&wd);
}
END_TEST

/* Typing a session, choosing types and watching workers: the page asks for exactly that. */
START_TEST(test_viewer_controls)
{
    start_viewer_server();
    struct webdriver wd;
    open_viewer(&wd, "");  /* no session given: the page tries "demo", which is not there */
    expect_state(&wd, "error");
    char detail[256];
    webdriver_execute_string(&wd, "return document.getElementById('state-detail').textContent;",
                             detail, sizeof(detail));
    DIAG_CHECK(strstr(detail, "no such session") != NULL, "state detail: %s", detail);

    webdriver_type(&wd, "#session", "s1");
    webdriver_click(&wd, "#type-picker summary");
    webdriver_click(&wd, "#types-none");
    webdriver_click(&wd, "#type-boxes input[value='execution_started']");
    webdriver_click(&wd, "#type-boxes input[value='tool_call_started']");
    webdriver_click(&wd, "#watch-all");
    webdriver_click(&wd, "#connect");
    expect_state(&wd, "live");
    char url[1024], expected[256];
    webdriver_execute_string(&wd, "return document.getElementById('stream-url').href;", url,
                             sizeof(url));
    snprintf(expected, sizeof(expected), ":%d%ssessions/s1/events?types=tool_call_started%%2C"
             "execution_started&watch=*", test_srv.port, api_path());
    DIAG_CHECK(strstr(url, expected) != NULL, "stream URL: %s, expected ...%s", url, expected);

    publish_ok(&test_env,
               "INSERT INTO events(session_id, type, stream_id) VALUES\n"
               " ('s1', 'execution_started', 'queen'),\n"       /* 1: chosen */
               " ('s1', 'llm_text_delta', 'queen'),\n"          /* 2: not chosen */
               " ('s1', 'tool_call_started', 'worker:w1'),\n"   /* 3: worker, watched */
               " ('s1', 'tool_call_completed', 'queen'),\n"     /* 4: not chosen */
               " ('s1', 'tool_call_started', 'queen');\n");     /* 5: chosen */
    expect_rows(&wd, "1,3,5");
    char shown_url[1024];
    webdriver_execute_string(&wd, "return location.search;", shown_url, sizeof(shown_url));
    DIAG_CHECK(strstr(shown_url, "session=s1") && strstr(shown_url, "watch=*"),
               "the page URL does not keep the choice: %s", shown_url);
    char recent[64];
    webdriver_execute_string(&wd, "return [...document.querySelectorAll('#recent-sessions "
                                  "option')].map((o) => o.value).join(',');", recent,
                             sizeof(recent));
    DIAG_CHECK(strcmp(recent, "s1,demo") == 0, "recent sessions offered: [%s]", recent);
    webdriver_stop(&wd);
}
END_TEST

/* The nth line (0-based) of text that, without its leading spaces, starts with prefix,
 * copied from prefix on into out. */
static const char *
printed_line(const char *text, const char *prefix, int nth, char *out, size_t size)
{
    for (const char *at = text; (at = strstr(at, prefix)) != NULL; at++) {
        const char *start = at;
        while (start > text && start[-1] == ' ')
            start--;
        if ((start == text || start[-1] == '\n') && nth-- == 0) {
            size_t len = strcspn(at, "\n");
            DIAG_CHECK(len < size, "a printed line is too long");
            memcpy(out, at, len);
            out[len] = '\0';
            return out;
        }
    }
    DIAG_CHECK(false, "make run printed no line %d starting with '%s':\n%s", nth, prefix,
               text);
    return NULL;
}

static void
run_printed_command(const char *command_line)
{
    struct publish_result r;
    int status = publish_shell(&test_env, command_line, &r);
    DIAG_CHECK(status == 0, "`%s` exited %d: %s", command_line, status, r.err);
}

/*
 * What `make run` gives a new user: deploy/demo/run.sh itself, the viewer at / on session
 * "demo", and the lines it prints, run as printed: an INSERT, the scripted agent run
 * (deploy/demo/publish.sh) and the session's close.
 */
START_TEST(test_demo_as_make_run_starts_it)
{
    char demo_dir[TESTENV_PATH_MAX], printed[8192], line[2048], command_line[4096];
    testenv_path(&test_env, "demo", demo_dir, sizeof(demo_dir));
    server_start_demo(&test_srv, &test_env, demo_dir);
    DIAG_CHECK(testenv_read_file(test_srv.stdio_log, printed, sizeof(printed)) > 0,
               "make run printed nothing");
    struct webdriver wd;
    webdriver_start(&wd, &test_env, 1280, 900);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", test_srv.port);
    webdriver_navigate(&wd, url);
    expect_state(&wd, "live");

    run_printed_command(printed_line(printed, "sqlite3 ", 0, line, sizeof(line)));
    expect_rows(&wd, "1");
    /* Printed relative to the source tree, where `make run` is typed. */
    snprintf(command_line, sizeof(command_line), "cd '%s' && PUBLISH_PAUSE_S=0.05 %s",
             testenv_require("SSE_SRC_DIR"),
             printed_line(printed, "deploy/demo/publish.sh ", 0, line, sizeof(line)));
    run_printed_command(command_line);
    expect_rows(&wd, "1,2,3,4,5,6,7,8,9");
    webdriver_click(&wd, "#events tr[data-id='6']");

    save_screenshot(&wd, "viewer-demo.png");

    /* A new page replays only the replayed types (1, 7, 8 client_output_delta, 2
     * execution_started); "whole history" asks for every event from id 0. */
    webdriver_navigate(&wd, url);
    expect_state(&wd, "live");
    expect_rows(&wd, "1,2,7,8");
    webdriver_click(&wd, "#from-start");
    webdriver_click(&wd, "#connect");
    expect_rows(&wd, "1,2,3,4,5,6,7,8,9");

    run_printed_command(printed_line(printed, "sqlite3 ", 1, line, sizeof(line)));
    expect_state(&wd, "ended");
    expect_rows(&wd, "1,2,3,4,5,6,7,8,9");
    char shown_url[256];
    webdriver_execute_string(&wd, "return location.search;", shown_url, sizeof(shown_url));
    DIAG_CHECK(strstr(shown_url, "history=all") != NULL, "page URL: %s", shown_url);
    webdriver_stop(&wd);
}
END_TEST

Suite *suite_browser(void);

Suite *
suite_browser(void)
{
    Suite *s = server_suite_create("browser");
    TCase *tc = server_tcase_create("browser");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_viewer_files_served);
    tcase_add_test(tc, test_viewer_live_restart_end);
    tcase_add_test(tc, test_viewer_controls);
    tcase_add_test(tc, test_viewer_survives_soft_refusal);
    tcase_add_test(tc, test_viewer_shows_gap);
    if (server_building_front_end == SERVER_LIGHTTPD)  /* make run is lighttpd's */
        tcase_add_test(tc, test_demo_as_make_run_starts_it);
    suite_add_tcase(s, tc);
    return s;
}
