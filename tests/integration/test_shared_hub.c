/*
 * test_shared_hub.c - one hub per host and database under Apache + mod_fcgid (issue 12).
 *
 * mod_fcgid gives every stream a process of its own. With SSE_HUB_DIR the processes of one
 * database share one hub: a mapping in that directory (sse-fcgi-<uid>-<16 hex>-v1.hub) holds
 * the ring of recent rows; one process, the leader (flock on that file), reads SQLite; the
 * others, followers, connect to it over the .sock beside the file, send their subscriptions
 * and are woken when their channel has rows; when the leader dies another takes over. A
 * process that cannot make the files falls back to a private hub, logs `hub=private` once
 * with a reason, and says so in health. /api/health tells "hub", "hub_role",
 * "hub_leader_pid", and "subscribers" (the streams of the database on the whole host;
 * with ?session_id=, "session_subscribers" of that session).
 *
 * Each test has a hub directory of its own in its temp dir (FcgidInitialEnv SSE_HUB_DIR), so
 * no two tests share a hub. The processes are mod_fcgid's pool, seen in /proc
 * (server_list_backends); an open stream holds its process, so N streams opened one after
 * the other are N processes, listed before any other request makes mod_fcgid spawn one
 * more. A health request is answered by an idle process, never one that streams. The ids
 * every stream must get are read back from the database with the sqlite3 CLI.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/esclient.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

enum {
    HUB_STREAMS = 20,               /* streams (processes) of the main tests */
    IDLE_STREAMS = 50,              /* the idle-cost test */
    STREAMS_MAX = 64,
    PROCESSES_MAX = 80,             /* mod_fcgid's limit: every stream plus health */
    STREAM_IDS_MAX = 2048,          /* ids one stream may receive in a test */
    HUB_WAIT_MS = 5000,             /* a count converges, a leader takes over */
    OPEN_WAIT_MS = 15000,           /* streams opened at once have their heads */
    ROWS_WAIT_MS = 10000,           /* every row committed reaches a stream */
    HEALTH_POLL_MS = 50,            /* between two health requests of a polling loop */
    HEALTH_AT_ONCE = 3,
    KILL_ROWS = 400,                /* the producer of the leader-kill test */
    KILL_AT_ROW = 100,              /* the leader dies once this many are committed */
    ES_CLIENTS = 20,
    ES_ROWS = 150,                  /* under ESCLIENT_IDS_MAX */
    ES_DEADLINE_MS = 30000,
};

/* One stream of a test, with the ids it has received so far. */
struct stream {
    struct sse_client c;
    char session[16];
    char path[160];
    long long cursor;           /* the highest id it has received, or resumed after */
    long long ids[STREAM_IDS_MAX];
    size_t count;
    bool has_ended;             /* its body ended (its process died, or it was ended) */
};

static struct stream streams[STREAMS_MAX];

/* The background producer of a test, killed by PID when the test fails first. */
static pid_t producer_pid = -1;

/* The hub directory of this test, <dir>/hub, writable by www-data (Apache's user). */
static const char *
own_hub_dir(void)
{
    static char dir[TESTENV_PATH_MAX];
    testenv_path(&test_env, "hub", dir, sizeof(dir));
    DIAG_CHECK(mkdir(dir, 0777) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    DIAG_CHECK(chmod(dir, 0777) == 0, "chmod %s: %s", dir, strerror(errno));
    return dir;
}

/* Starts Apache with SSE_HUB_DIR=hub_dir in every process's environment (it is a setting of
 * the process, which under mod_fcgid only FcgidInitialEnv reaches), mod_fcgid allowed a
 * process for every stream and health, spawned without its spawn-score pause of a second,
 * settings as request parameters and extra directives after. */
static void
start_hub_server(const char *hub_dir, const char *const *settings, const char *extra)
{
    static char directives[4096];
    snprintf(directives, sizeof(directives), "FcgidMaxProcessesPerClass %d\n"
             "FcgidMaxProcesses %d\nFcgidSpawnScoreUpLimit 100000\n"
             "FcgidInitialEnv SSE_HUB_DIR \"%s\"\n%s", PROCESSES_MAX, PROCESSES_MAX, hub_dir,
             extra ? extra : "");
    server_start(&test_srv, &test_env, &(struct server_options){
        .env = settings, .apache_directives = directives});
}

/* Sessions s01..sNN. */
static void
make_sessions(int n)
{
    publish_okf(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
                "WHERE i < %d)\nINSERT INTO sessions(id) SELECT printf('s%%02d', i) FROM k;\n",
                n);
}

/* One commit of a row for each of sessions s01..sNN, in a shuffled order (7 is prime to
 * every n used here), so that ids of one session are not consecutive. */
static void
publish_round(int n)
{
    publish_okf(&test_env, "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k "
                "WHERE i < %d)\nINSERT INTO events(session_id, type) SELECT "
                "printf('s%%02d', (i * 7) %% %d + 1), 'llm_text_delta' FROM k;\n", n - 1, n);
}

/* Sets s up for a stream of session at path (NULL: /api/sessions/<session>/events) that
 * starts after id cursor. */
static void
init_stream(struct stream *s, const char *session, const char *path, long long cursor)
{
    snprintf(s->session, sizeof(s->session), "%s", session);
    if (path != NULL)
        snprintf(s->path, sizeof(s->path), "%s", path);
    else
        snprintf(s->path, sizeof(s->path), "/api/sessions/%s/events", session);
    s->cursor = cursor;
    s->count = 0;
    s->has_ended = false;
}

/* Opens a stream of session at path resuming after cursor, into s (frames_resume). */
static void
resume_stream(struct stream *s, const char *session, const char *path, long long cursor)
{
    init_stream(s, session, path, cursor);
    frames_resume(&s->c, test_srv.port, s->path, cursor, ROWS_WAIT_MS);
}

/* Sends the request of streams[i], resuming after its cursor (Last-Event-ID). */
static void
send_stream_request(size_t i)
{
    char header[48];
    snprintf(header, sizeof(header), "Last-Event-ID: %lld", streams[i].cursor);
    const char *const headers[] = {header, NULL};
    sse_client_send(&streams[i].c, test_srv.port, "GET", streams[i].path, headers);
}

/* Reads the head and the opening block of streams[i]. Returns 0 once it streams, or the
 * retry: of a soft refusal (SPEC §4.12; a process that mod_fcgid has just spawned may answer
 * one under load, when its stream thread takes the request later than the responder's
 * 250 ms), after which EventSource would come back. */
static long
read_opening(size_t i)
{
    struct sse_client *c = &streams[i].c;
    sse_client_wait_head(c, OPEN_WAIT_MS);
    DIAG_CHECK(c->status == 200, "%s: status %d, expected 200", c->request, c->status);
    struct sse_frame f;
    sse_client_expect_block(c, &f, OPEN_WAIT_MS);
    bool is_refusal = strncmp(f.comment, "sse-fcgi unavailable", 20) == 0;
    long retry_ms = f.retry_ms;
    bool is_opening = f.has_retry && f.data == NULL;
    sse_frame_release(&f);
    DIAG_CHECK(is_opening, "%s: the first block has no retry: line", c->request);
    if (!is_refusal)
        return 0;
    sse_client_close(c);
    return retry_ms > 0 ? retry_ms : 1;
}

/* Connects streams[first..first+n), set up by init_stream, and reads each one's opening
 * block. Every request is sent before any answer is read: when every process is busy,
 * mod_fcgid 2.3.9 sleeps a second before it spawns one for a request, so streams opened one
 * by one would take a second each; at once they take about one in all. A soft refusal is
 * retried after its retry:, as EventSource does. */
static void
connect_streams(size_t first, size_t n)
{
    DIAG_CHECK(first + n <= STREAMS_MAX, "more than %d streams", STREAMS_MAX);
    bool is_pending[STREAMS_MAX] = {false};
    for (size_t i = first; i < first + n; i++)
        is_pending[i] = true;
    int64_t deadline = testenv_now_ms() + 2 * OPEN_WAIT_MS;
    for (int refusals = 0;;) {
        for (size_t i = first; i < first + n; i++) {
            if (is_pending[i])
                send_stream_request(i);
        }
        long retry_ms = 0;
        for (size_t i = first; i < first + n; i++) {
            long again_ms = is_pending[i] ? read_opening(i) : 0;
            is_pending[i] = again_ms > 0;
            refusals += again_ms > 0;
            retry_ms = again_ms > retry_ms ? again_ms : retry_ms;
        }
        if (retry_ms == 0) {
            if (refusals > 0)
                fprintf(stderr, "%zu streams opened at once: %d soft refusals retried\n", n,
                        refusals);
            return;
        }
        DIAG_CHECK(testenv_now_ms() + retry_ms < deadline, "%d soft refusals in %d ms: the "
                   "streams could not all be opened", refusals, 2 * OPEN_WAIT_MS);
        for (int64_t again = testenv_now_ms() + retry_ms; testenv_now_ms() < again;)
            testenv_poll_step();  /* EventSource waits retry: ms after a refusal */
    }
}

/* Opens streams[first..first+n) at once, each on session (NULL: s01, s02, ... by index),
 * resuming from 0 so that every row of its session is sent, also one committed before it
 * joined. */
static void
open_streams(size_t first, size_t n, const char *session)
{
    for (size_t i = first; i < first + n && i < STREAMS_MAX; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%02zu", i + 1);
        init_stream(&streams[i], session != NULL ? session : name, NULL, 0);
    }
    connect_streams(first, n);
}

static void
close_streams(size_t first, size_t n)
{
    for (size_t i = first; i < first + n; i++)
        sse_client_close(&streams[i].c);
}

/* The responder processes, into pids; fails unless there are exactly want (one a stream). */
static size_t
expect_processes(pid_t *pids, size_t want)
{
    size_t n = server_list_backends(&test_srv, pids, PROCESSES_MAX);
    DIAG_CHECK(n == want, "%zu responder processes for %zu streams: mod_fcgid no longer runs "
               "one process a stream, what this suite is built on", n, want);
    return n;
}

static bool
is_listed(pid_t pid, const pid_t *pids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (pids[i] == pid)
            return true;
    }
    return false;
}

/* GET /api/health[?query], answered by an idle process; returns the parsed body. */
static cJSON *
get_health(const char *query)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/health%s%s", query ? "?" : "", query ? query : "");
    const char *const accept[] = {"Accept: application/json", NULL};
    return sse_client_get_json(test_srv.port, path, accept);
}

/* A number member of health, or missing when it is absent or not a number. */
static long long
health_number(const cJSON *health, const char *name, long long missing)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(health, name);
    return cJSON_IsNumber(item) ? (long long)item->valuedouble : missing;
}

/* A string member of health, or "(absent)". */
static const char *
health_text(const cJSON *health, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(health, name);
    return cJSON_IsString(item) ? item->valuestring : "(absent)";
}

/* The body of health as one line, into out. */
static void
print_health(const cJSON *health, char *out, size_t size)
{
    char *text = cJSON_PrintUnformatted(health);
    snprintf(out, size, "%s", text ? text : "(none)");
    cJSON_free(text);
}

/* Lets HEALTH_POLL_MS pass between two health requests of a loop on a condition. */
static void
pause_between_requests(void)
{
    for (int64_t until = testenv_now_ms() + HEALTH_POLL_MS; testenv_now_ms() < until;)
        testenv_poll_step();
}

/* Polls health (query may be NULL) until its number member name is want; fails with the
 * last answer after timeout_ms. */
static void
expect_health_number(const char *query, const char *name, long long want, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    char last[2048];
    for (;;) {
        cJSON *health = get_health(query);
        long long got = health_number(health, name, -1);
        print_health(health, last, sizeof(last));
        cJSON_Delete(health);
        if (got == want)
            return;
        if (testenv_now_ms() >= deadline)
            break;
        pause_between_requests();
    }
    DIAG_CHECK(false, "health%s%s: \"%s\" never became %lld within %d ms; last answer: %s",
               query ? "?" : "", query ? query : "", name, want, timeout_ms, last);
}

/* The leader health names when it is a shared hub's and a live responder other than
 * not_pid; -1 otherwise. */
static pid_t
leader_of(const cJSON *health, pid_t not_pid)
{
    pid_t pids[PROCESSES_MAX];
    size_t n = server_list_backends(&test_srv, pids, PROCESSES_MAX);
    pid_t leader = (pid_t)health_number(health, "hub_leader_pid", 0);
    bool is_shared = strcmp(health_text(health, "hub"), "shared") == 0;
    return is_shared && leader > 0 && leader != not_pid && is_listed(leader, pids, n)
                   && !server_is_pid_gone(leader) ? leader : -1;
}

/* Polls health until it names a shared hub led by a live responder other than not_pid
 * (0: any); returns the leader's pid. */
static pid_t
expect_leader(pid_t not_pid, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    char last[2048];
    for (;;) {
        cJSON *health = get_health(NULL);
        pid_t leader = leader_of(health, not_pid);
        print_health(health, last, sizeof(last));
        cJSON_Delete(health);
        if (leader > 0)
            return leader;
        if (testenv_now_ms() >= deadline)
            break;
        pause_between_requests();
    }
    char other[48] = "";
    if (not_pid > 0)
        snprintf(other, sizeof(other), " other than %ld", (long)not_pid);
    DIAG_CHECK(false, "within %d ms health never named a shared hub led by a live "
               "responder%s; last answer: %s", timeout_ms, other, last);
    return -1;
}

/* Sends HEALTH_AT_ONCE health requests before reading any, so that mod_fcgid answers them
 * with as many processes, and fails unless each says shared, names leader and counts
 * subscribers. */
static void
expect_same_leader_everywhere(pid_t leader, long long subscribers)
{
    const char *const accept[] = {"Accept: application/json", NULL};
    struct sse_client c[HEALTH_AT_ONCE];
    for (int i = 0; i < HEALTH_AT_ONCE; i++)
        sse_client_send(&c[i], test_srv.port, "GET", "/api/health", accept);
    for (int i = 0; i < HEALTH_AT_ONCE; i++) {
        sse_client_wait_head(&c[i], 5000);
        sse_client_read_body(&c[i], 5000);
        cJSON *health = cJSON_Parse(c[i].body);
        const char *role = health_text(health, "hub_role");
        bool is_right = strcmp(health_text(health, "hub"), "shared") == 0
                        && (strcmp(role, "follower") == 0 || strcmp(role, "leader") == 0)
                        && health_number(health, "hub_leader_pid", 0) == leader
                        && health_number(health, "subscribers", -1) == subscribers;
        cJSON_Delete(health);
        DIAG_CHECK(c[i].status == 200 && is_right, "health %d of %d at once: status %d, "
                   "expected a shared hub, the role leader or follower, hub_leader_pid %ld "
                   "and %lld subscribers: %s", i + 1, HEALTH_AT_ONCE, c[i].status,
                   (long)leader, subscribers, c[i].body);
        sse_client_close(&c[i]);
    }
}

/* The responders that have the database open (a descriptor on <dir>/events.db). */
static size_t
list_readers(pid_t *readers, size_t cap, size_t *processes)
{
    pid_t pids[PROCESSES_MAX];
    *processes = server_list_backends(&test_srv, pids, PROCESSES_MAX);
    size_t n = 0;
    for (size_t i = 0; i < *processes && i < PROCESSES_MAX; i++) {
        if (testenv_count_fds(pids[i], "/events.db", NULL) > 0 && n < cap)
            readers[n++] = pids[i];
    }
    return n;
}

/* Polls /proc/<pid>/fd of every responder until only leader has the database open (a
 * health request opens and closes it, so a moment may show its process too); fails naming
 * the readers after timeout_ms. */
static void
expect_only_reader(pid_t leader, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    pid_t readers[PROCESSES_MAX];
    size_t n = 0, processes = 0;
    for (;;) {
        n = list_readers(readers, PROCESSES_MAX, &processes);
        if ((n == 1 && readers[0] == leader) || testenv_now_ms() >= deadline)
            break;
        testenv_poll_step();
    }
    if (n == 1 && readers[0] == leader)
        return;
    fprintf(stderr, "processes with events.db open (%zu of %zu):", n, processes);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %ld", (long)readers[i]);
    fprintf(stderr, "\n");
    DIAG_CHECK(false, "%zu of %zu responder processes have events.db open after %d ms, "
               "expected only the leader %ld: every follower still reads SQLite itself", n,
               processes, timeout_ms, (long)leader);
}

/* Fails unless dir holds one sse-fcgi-<uid>-<16 hex digits>-v1.hub and the .sock of the
 * same name, uid being www-data's (the responders' user), v1 the layout's version; any
 * other file is only printed. */
static void
expect_hub_files(const char *dir)
{
    const struct passwd *pw = getpwnam("www-data");
    DIAG_CHECK(pw != NULL, "no user www-data: run `make deps`");
    char prefix[64], stems[2][256] = {"", ""};
    snprintf(prefix, sizeof(prefix), "sse-fcgi-%ld-", (long)pw->pw_uid);
    static const char *const exts[] = {"-v1.hub", "-v1.sock"};
    int found[2] = {0, 0}, others = 0;
    DIR *d = opendir(dir);
    DIAG_CHECK(d != NULL, "opendir %s: %s", dir, strerror(errno));
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        const char *name = de->d_name;
        size_t len = strlen(name), hex = strlen(prefix);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        bool is_ours = false;
        for (int e = 0; e < 2 && !is_ours; e++) {
            size_t ext = strlen(exts[e]);
            is_ours = len == hex + 16 + ext && strncmp(name, prefix, hex) == 0
                      && strspn(name + hex, "0123456789abcdefABCDEF") == 16
                      && strcmp(name + hex + 16, exts[e]) == 0;
            if (is_ours && found[e]++ == 0)
                snprintf(stems[e], sizeof(stems[e]), "%.*s", (int)(hex + 16), name);
        }
        if (!is_ours) {
            fprintf(stderr, "also in the hub directory: %s\n", name);
            others++;
        }
    }
    closedir(d);
    DIAG_CHECK(found[0] == 1 && found[1] == 1 && strcmp(stems[0], stems[1]) == 0,
               "%s: %d files %s<16 hex>-v1.hub, %d .sock (%s, %s) and %d others; expected one "
               "of each, of one name", dir, found[0], prefix, found[1], stems[0], stems[1],
               others);
}

/* Fails unless dir has no entry at all (nothing was made where nothing could be). */
static void
expect_empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    DIAG_CHECK(d != NULL, "opendir %s: %s", dir, strerror(errno));
    int entries = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        entries += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    DIAG_CHECK(entries == 0, "%s holds %d entries, expected none", dir, entries);
}

/* Lines holding needle and also (may be NULL) in the responder's log: SSE_LOG, and Apache's
 * error log, where a responder's stderr goes. */
static int
log_count(const char *needle, const char *also)
{
    return logwait_count_lines(test_srv.sse_log, needle, also)
           + logwait_count_lines(test_srv.error_log, needle, also);
}

/* Whether a line of path holds "hub leader" and the word pid=<pid>. */
static bool
has_leader_line_in(const char *path, pid_t pid)
{
    static char text[1 << 20];
    if (testenv_read_file(path, text, sizeof(text)) <= 0)
        return false;
    char word[32];
    int len = snprintf(word, sizeof(word), "pid=%ld", (long)pid);
    for (char *line = text, *nl; line != NULL && *line != '\0'; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (strstr(line, "hub leader") == NULL)
            continue;
        for (const char *at = line; (at = strstr(at, word)) != NULL; at += len) {
            bool is_word_start = at == line || at[-1] == ' ';
            bool is_word_end = at[len] == '\0' || at[len] == ' ';
            if (is_word_start && is_word_end)
                return true;
        }
    }
    return false;
}

/* Polls both logs until a "hub leader" line names pid=<pid>; fails after timeout_ms. */
static void
expect_leader_line(pid_t pid, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    while (!has_leader_line_in(test_srv.sse_log, pid)
           && !has_leader_line_in(test_srv.error_log, pid)) {
        if (testenv_now_ms() >= deadline) {
            diag_print_file("SSE_LOG", test_srv.sse_log, 16384);
            DIAG_CHECK(false, "no log line with \"hub leader\" and pid=%ld within %d ms",
                       (long)pid, timeout_ms);
        }
        testenv_poll_step();
    }
}

/* The ids of session's rows after `after`, in order, read back with the sqlite3 CLI. */
static size_t
db_ids(const char *session, long long after, long long *ids, size_t cap)
{
    static struct publish_result r;
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT id FROM events WHERE session_id = '%s' AND id > %lld "
             "ORDER BY id;\n", session, after);
    DIAG_CHECK(publish_sql(&test_env, sql, &r) == 0, "sqlite3 failed: %s", r.err);
    size_t n = 0;
    for (char *p = r.out, *end; *p != '\0'; p = end) {
        long long id = strtoll(p, &end, 10);
        if (end == p)
            break;
        DIAG_CHECK(n < cap, "%s holds more than %zu rows", session, cap);
        ids[n++] = id;
    }
    DIAG_CHECK(strlen(r.out) < sizeof(r.out) - 1, "the ids of %s do not fit the output",
               session);
    return n;
}

/* Fails unless got[0..n_got) is want[0..n_want) (exactly, or a prefix of it when
 * is_prefix). */
static void
expect_ids(const char *what, const long long *got, size_t n_got, const long long *want,
           size_t n_want, bool is_prefix)
{
    bool is_same = (is_prefix ? n_got <= n_want : n_got == n_want)
                   && (n_got == 0 || memcmp(got, want, n_got * sizeof(*got)) == 0);
    if (is_same)
        return;
    frames_print_ids("expected ids", want, n_want);
    frames_print_ids("received ids", got, n_got);
    DIAG_CHECK(false, "%s: the ids received are not %s the ids of the database (above)", what,
               is_prefix ? "the start of" : "exactly");
}

/* Reads s's events until one with id >= last_id, the end of its body, or timeout_ms,
 * appending their ids to s->ids. Each must be a well-formed event with an id: a gap
 * notice here is a loss. */
static void
read_stream(struct stream *s, long long last_id, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    while (s->cursor < last_id && !s->has_ended) {
        int64_t left = deadline - testenv_now_ms();
        struct sse_frame f;
        enum sse_client_result r = left > 0 ? sse_client_next(&s->c, &f, (int)left)
                                            : SSE_CLIENT_TIMEOUT;
        if (r == SSE_CLIENT_TIMEOUT)
            return;
        if (r == SSE_CLIENT_END) {
            s->has_ended = true;
            return;
        }
        if (f.data != NULL) {
            bool is_gap = f.has_event && strcmp(f.event, "gap") == 0;
            if (is_gap)
                sse_client_dump(&s->c);
            DIAG_CHECK(!is_gap, "%s: a gap notice: rows were lost", s->path);
            frames_expect_wellformed(&f);
            DIAG_CHECK(s->count < STREAM_IDS_MAX, "%s: more than %d events", s->path,
                       STREAM_IDS_MAX);
            s->ids[s->count++] = s->cursor = sse_frame_id(&f);
        }
        sse_frame_release(&f);
    }
}

/* Reads every stream of streams[first..first+n) up to the newest row of its session and
 * fails unless it received exactly the database's ids after its cursor (where it was before
 * this call), in order, each once. A stream whose body ends (its process was killed) is
 * resumed with Last-Event-ID, as EventSource would, and must then get exactly the rest; at
 * most max_cut of them may end. Returns how many did. */
static int
expect_streams_exact(size_t first, size_t n, int max_cut)
{
    static long long want[STREAM_IDS_MAX];
    int cut = 0;
    for (size_t i = first; i < first + n; i++) {
        struct stream *s = &streams[i];
        size_t from = s->count;
        size_t n_want = db_ids(s->session, s->cursor, want, STREAM_IDS_MAX);
        long long last = n_want > 0 ? want[n_want - 1] : s->cursor;
        read_stream(s, last, ROWS_WAIT_MS);
        if (s->has_ended) {
            cut++;
            expect_ids(s->path, s->ids + from, s->count - from, want, n_want, true);
            DIAG_CHECK(cut <= max_cut, "%s: stream %zu ended too, %d streams in all; at most "
                       "%d may, the killed process's", s->path, i + 1, cut, max_cut);
            sse_client_close(&s->c);
            long waited = frames_resume(&s->c, test_srv.port, s->path, s->cursor,
                                        ROWS_WAIT_MS);
            fprintf(stderr, "%s (stream %zu) ended after id %lld; resumed in %ld ms\n",
                    s->path, i + 1, s->cursor, waited);
            s->has_ended = false;
            read_stream(s, last, ROWS_WAIT_MS);
        }
        DIAG_CHECK(!s->has_ended, "%s: its resumed stream ended too", s->path);
        expect_ids(s->path, s->ids + from, s->count - from, want, n_want, false);
    }
    return cut;
}

static void
kill_producer(void *ctx)
{
    (void)ctx;
    if (producer_pid > 0) {
        kill(producer_pid, SIGKILL);
        waitpid(producer_pid, NULL, 0);
        producer_pid = -1;
    }
}

/* Starts a producer that commits rows one by one, one sqlite3 CLI each, as a shell loop
 * does: row i goes to session s<(i - 1) % sessions + 1>. */
static void
start_producer(int rows, int sessions)
{
    char script[TESTENV_PATH_MAX], log[TESTENV_PATH_MAX];
    static char text[1024];
    testenv_path(&test_env, "producer.sh", script, sizeof(script));
    testenv_path(&test_env, "producer.log", log, sizeof(log));
    snprintf(text, sizeof(text),
             "i=1\nwhile [ $i -le %d ]; do\n"
             "    sqlite3 -bail -cmd '.timeout 5000' '%s' \"INSERT INTO events(session_id, "
             "type, data) VALUES (printf('s%%02d', ($i - 1) %% %d + 1), 'llm_text_delta', "
             "'{\\\"n\\\":$i}');\" || exit 1\n"
             "    i=$((i + 1))\ndone\n", rows, test_env.db_path, sessions);
    testenv_write_file(script, text, strlen(text));
    const char *const argv[] = {"sh", script, NULL};
    producer_pid = testenv_spawn(log, argv, NULL, false);
    diag_register(&producer_pid, NULL, kill_producer);
}

/* Waits for the producer to commit its last row and exit 0. */
static void
finish_producer(void)
{
    int status = testenv_reap(producer_pid, 30000);
    producer_pid = -1;
    diag_unregister(&producer_pid);
    char log[TESTENV_PATH_MAX];
    testenv_path(&test_env, "producer.log", log, sizeof(log));
    if (status != 0)
        diag_print_file("producer", log, 4096);
    DIAG_CHECK(status == 0, "the producer exited %d", status);
}

static long long
newest_id(void)
{
    /* a reader may meet a lock too while the producer commits: the producer's timeout */
    return publish_query_number(&test_env, ".timeout 5000\nSELECT coalesce(max(id), 0) FROM "
                                "events;\n");
}

/* Polls the database until at least rows are committed. */
static void
wait_for_rows(long long rows)
{
    int64_t deadline = testenv_now_ms() + ROWS_WAIT_MS;
    while (newest_id() < rows) {
        DIAG_CHECK(testenv_now_ms() < deadline && !server_is_pid_gone(producer_pid),
                   "the producer did not commit %lld rows within %d ms", rows, ROWS_WAIT_MS);
        testenv_poll_step();
    }
}

/* SIGKILLs pid and waits until it is gone. */
static void
kill_process(pid_t pid)
{
    DIAG_CHECK(kill(pid, SIGKILL) == 0, "SIGKILL %ld: %s", (long)pid, strerror(errno));
    int64_t deadline = testenv_now_ms() + HUB_WAIT_MS;
    while (!server_is_pid_gone(pid)) {
        DIAG_CHECK(testenv_now_ms() < deadline, "%ld lives on after SIGKILL", (long)pid);
        testenv_poll_step();
    }
}

/* 20 streams on 20 sessions, 20 processes: every row reaches its stream, and only one
 * process reads SQLite; every process agrees on the leader and on the subscribers of the
 * host, and of one session. */
START_TEST(test_one_reader_per_host)
{
    const char *dir = own_hub_dir();
    start_hub_server(dir, NULL, NULL);
    make_sessions(HUB_STREAMS);
    open_streams(0, HUB_STREAMS, NULL);
    pid_t pids[PROCESSES_MAX];
    size_t n = expect_processes(pids, HUB_STREAMS);
    for (int round = 0; round < 3; round++)
        publish_round(HUB_STREAMS);
    publish_events(&test_env, "s01", "llm_text_delta", NULL, 5);
    expect_streams_exact(0, HUB_STREAMS, 0);
    expect_hub_files(dir);
    pid_t leader = expect_leader(0, HUB_WAIT_MS);
    fprintf(stderr, "shared hub: leader %ld (%s of the %zu stream processes)\n",
            (long)leader, is_listed(leader, pids, n) ? "one" : "none", n);
    expect_health_number(NULL, "subscribers", HUB_STREAMS, HUB_WAIT_MS);
    expect_same_leader_everywhere(leader, HUB_STREAMS);
    expect_only_reader(leader, HUB_WAIT_MS);
    expect_health_number("session_id=s01", "session_subscribers", 1, HUB_WAIT_MS);
    open_streams(HUB_STREAMS, 3, "s01");
    expect_health_number("session_id=s01", "session_subscribers", 4, HUB_WAIT_MS);
    expect_health_number(NULL, "subscribers", HUB_STREAMS + 3, HUB_WAIT_MS);
    expect_only_reader(leader, HUB_WAIT_MS);
    publish_events(&test_env, "s01", "llm_text_delta", NULL, 2);
    expect_streams_exact(0, HUB_STREAMS + 3, 0);
    close_streams(HUB_STREAMS, 3);  /* noticed within 2 x SSE_PROBE_MS (500 under Apache) */
    expect_health_number("session_id=s01", "session_subscribers", 1, HUB_WAIT_MS);
    expect_health_number(NULL, "subscribers", HUB_STREAMS, HUB_WAIT_MS);
    close_streams(0, HUB_STREAMS);
}
END_TEST

/* The leader is SIGKILLed while a producer commits row after row to 20 streams: another
 * process leads (health and the log say which), every other stream goes on without a gap
 * or a repeat, and the killed process's stream, resumed, gets exactly the rest. */
START_TEST(test_leader_killed_under_load)
{
    start_hub_server(own_hub_dir(), NULL, NULL);
    make_sessions(HUB_STREAMS);
    open_streams(0, HUB_STREAMS, NULL);
    pid_t pids[PROCESSES_MAX];
    expect_processes(pids, HUB_STREAMS);
    pid_t leader = expect_leader(0, HUB_WAIT_MS);
    expect_leader_line(leader, HUB_WAIT_MS);
    start_producer(KILL_ROWS, HUB_STREAMS);
    wait_for_rows(KILL_AT_ROW);
    int64_t killed_ms = testenv_now_ms();
    kill_process(leader);
    long long at_kill = newest_id();
    DIAG_CHECK(at_kill < KILL_ROWS, "the producer had committed every row before the leader "
               "died: the test proves nothing about a takeover under load");
    pid_t successor = expect_leader(leader, HUB_WAIT_MS);
    long seen_ms = (long)(testenv_now_ms() - killed_ms);  /* an upper bound: health polls */
    expect_leader_line(successor, HUB_WAIT_MS);
    finish_producer();
    int cut = expect_streams_exact(0, HUB_STREAMS, 1);
    fprintf(stderr, "leader %ld killed at row %lld of %d; %ld leads (seen in health %ld ms "
            "after the kill); %d stream%s cut\n", (long)leader, at_kill, KILL_ROWS,
            (long)successor, seen_ms, cut, cut == 1 ? "" : "s");
    publish_round(HUB_STREAMS);  /* the new leader serves every stream live */
    expect_streams_exact(0, HUB_STREAMS, 0);
    expect_only_reader(successor, HUB_WAIT_MS);
    close_streams(0, HUB_STREAMS);
}
END_TEST

/* The same with 20 standard EventSource clients (npm eventsource) on one session: none of
 * them ever fails for good, and each sees every id once, in order, up to the 204 of the
 * closed session. */
START_TEST(test_leader_killed_standard_clients)
{
    static const char *const settings[] = {"SSE_RETRY_MS", "300", NULL};
    start_hub_server(own_hub_dir(), settings, NULL);
    make_sessions(1);
    struct esclient_run run;
    esclient_start(&run, &test_env, test_srv.port, "/api/sessions/s01/events?last_event_id=0",
                   ES_CLIENTS, NULL, ES_DEADLINE_MS);
    logwait_expect_count(test_srv.sse_log, "sse connected session=s01", NULL, ES_CLIENTS,
                         ROWS_WAIT_MS);
    pid_t leader = expect_leader(0, HUB_WAIT_MS);
    start_producer(ES_ROWS, 1);
    wait_for_rows(ES_ROWS / 4);
    kill_process(leader);
    DIAG_CHECK(newest_id() < ES_ROWS, "the producer had committed every row before the "
               "leader died: the test proves nothing about a takeover under load");
    pid_t successor = expect_leader(leader, HUB_WAIT_MS);
    expect_leader_line(successor, HUB_WAIT_MS);
    finish_producer();
    esclient_wait_for(&run, "message", ES_ROWS, ES_CLIENTS, ROWS_WAIT_MS);
    publish_ok(&test_env, "UPDATE sessions SET closed_at = strftime('%Y-%m-%dT%H:%M:%fZ', "
               "'now') WHERE id = 's01';\n");
    esclient_finish(&run);
    esclient_expect_ended_with_ids(&run, 1, ES_ROWS);
}
END_TEST

/* A follower is SIGKILLed: the leader sees its socket close and counts one subscriber less;
 * the leader and every other stream go on. */
START_TEST(test_follower_killed)
{
    enum { STREAMS = 8 };
    start_hub_server(own_hub_dir(), NULL, NULL);
    make_sessions(STREAMS);
    open_streams(0, STREAMS, NULL);
    pid_t pids[PROCESSES_MAX];
    size_t n = expect_processes(pids, STREAMS);
    publish_round(STREAMS);
    expect_streams_exact(0, STREAMS, 0);
    pid_t leader = expect_leader(0, HUB_WAIT_MS);
    expect_health_number(NULL, "subscribers", STREAMS, HUB_WAIT_MS);
    pid_t follower = pids[0] != leader ? pids[0] : pids[1];
    DIAG_CHECK(n == STREAMS && follower != leader, "no follower to kill");
    kill_process(follower);
    expect_health_number(NULL, "subscribers", STREAMS - 1, HUB_WAIT_MS);
    DIAG_CHECK(expect_leader(0, HUB_WAIT_MS) == leader, "the leader changed when a follower "
               "died");
    publish_round(STREAMS);
    publish_round(STREAMS);
    int cut = expect_streams_exact(0, STREAMS, 1);
    DIAG_CHECK(cut == 1, "%d streams ended; the killed follower %ld served one", cut,
               (long)follower);
    expect_health_number(NULL, "subscribers", STREAMS, HUB_WAIT_MS);  /* with the resumed */
    close_streams(0, STREAMS);
}
END_TEST

/* SSE_HUB_DIR names a directory where no process can make the files: every process falls
 * back to a private hub, logs `hub=private` once with a reason, says so in health, and
 * streams every row exactly. */
static void
expect_private_hubs(const char *hub_dir)
{
    enum { STREAMS = 3 };
    start_hub_server(hub_dir, NULL, NULL);
    make_sessions(STREAMS);
    open_streams(0, STREAMS, NULL);
    pid_t pids[PROCESSES_MAX];
    expect_processes(pids, STREAMS);
    publish_round(STREAMS);
    publish_events(&test_env, "s02", "llm_text_delta", NULL, 3);
    expect_streams_exact(0, STREAMS, 0);
    cJSON *health = get_health(NULL);
    char body[2048];
    print_health(health, body, sizeof(body));
    bool is_private = strcmp(health_text(health, "hub"), "private") == 0
                      && strcmp(health_text(health, "hub_role"), "private") == 0
                      && health_number(health, "subscribers", -1) == 0;
    cJSON_Delete(health);
    DIAG_CHECK(is_private, "health with SSE_HUB_DIR=%s: expected hub and hub_role \"private\" "
               "and 0 subscribers (this process's): %s", hub_dir, body);
    /* Every stream process fell back (the health one too, unless it has not used a hub) */
    int64_t deadline = testenv_now_ms() + HUB_WAIT_MS;
    while (log_count("hub=private", NULL) < STREAMS && testenv_now_ms() < deadline)
        testenv_poll_step();
    int lines = log_count("hub=private", NULL);
    int reasons = log_count("hub=private", "reason=\"");
    size_t processes = server_list_backends(&test_srv, pids, PROCESSES_MAX);
    DIAG_CHECK(lines == reasons && lines >= STREAMS && (size_t)lines <= processes,
               "%d lines with hub=private (%d with a reason=\"...\") from %zu processes; "
               "expected one with a reason per process", lines, reasons, processes);
    close_streams(0, STREAMS);
}

START_TEST(test_fallback_private_hub)
{
    char dir[TESTENV_PATH_MAX];
    testenv_path(&test_env, "readonly", dir, sizeof(dir));  /* root's, www-data cannot write */
    DIAG_CHECK(mkdir(dir, 0555) == 0 && chmod(dir, 0555) == 0, "mkdir %s", dir);
    expect_private_hubs(dir);
    expect_empty_dir(dir);
}
END_TEST

/* A path that does not exist, and cannot be made (its parent is not writable). */
START_TEST(test_fallback_missing_hub_dir)
{
    char dir[TESTENV_PATH_MAX], missing[TESTENV_PATH_MAX];
    testenv_path(&test_env, "readonly", dir, sizeof(dir));
    DIAG_CHECK(mkdir(dir, 0555) == 0 && chmod(dir, 0555) == 0, "mkdir %s", dir);
    testenv_path(&test_env, "readonly/missing", missing, sizeof(missing));
    expect_private_hubs(missing);
    expect_empty_dir(dir);
}
END_TEST

/* The database file is replaced (mv of another file onto it) while streams of three
 * processes and a fourth on another session are open: every stream ends (SPEC: what it
 * sent may not be in the new file, reason=error:database_gone), and after the resume no row
 * of the old file is ever sent, although the old file's rows were in the shared ring and
 * the new file ends at the same id. */
START_TEST(test_database_replaced_shared)
{
    enum { S1_STREAMS = 3, STREAMS = S1_STREAMS + 1 };
    start_hub_server(own_hub_dir(), NULL, NULL);
    make_sessions(2);
    for (int i = 0; i < STREAMS; i++)
        init_stream(&streams[i], i < S1_STREAMS ? "s01" : "s02", NULL, 0);
    connect_streams(0, STREAMS);
    publish_ok(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
               "WHERE i < 3)\nINSERT INTO events(session_id, type, data) SELECT 's01', "
               "'llm_text_delta', '{\"file\":\"old\"}' FROM k;\n");  /* 1..3 */
    expect_streams_exact(0, S1_STREAMS, 0);
    char copy[TESTENV_PATH_MAX];
    testenv_path(&test_env, "restored.db", copy, sizeof(copy));
    publish_okf(&test_env, "VACUUM INTO '%s';\n", copy);  /* a new inode with 1..3 */
    /* 4..6 of s02 in the old file only, read by the leader into the ring */
    publish_ok(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
               "WHERE i < 3)\nINSERT INTO events(session_id, type, data) SELECT 's02', "
               "'llm_text_delta', '{\"file\":\"old\"}' FROM k;\n");
    expect_streams_exact(S1_STREAMS, 1, 0);
    pid_t leader = expect_leader(0, HUB_WAIT_MS);
    struct testenv restored = test_env;
    snprintf(restored.db_path, sizeof(restored.db_path), "%s", copy);
    publish_ok(&restored, "INSERT INTO events(session_id, type, data) VALUES "
               "('s01', 'llm_text_delta', '{\"file\":\"new\"}'), "
               "('s01', 'llm_text_delta', '{\"file\":\"new\"}'), "
               "('s02', 'llm_text_delta', '{\"file\":\"new\"}');\n"  /* 4, 5; 6 */
               "PRAGMA wal_checkpoint(TRUNCATE);\n");
    /* The old -wal and -shm go first, as README says (SQLite would apply the old WAL) */
    static const char *const stale[] = {"events.db-wal", "events.db-shm", "restored.db-wal",
                                        "restored.db-shm"};
    for (int i = 0; i < 4; i++) {
        char path[TESTENV_PATH_MAX];
        unlink(testenv_path(&test_env, stale[i], path, sizeof(path)));
    }
    DIAG_CHECK(rename(copy, test_env.db_path) == 0, "rename: %s", strerror(errno));
    for (int i = 0; i < STREAMS; i++) {
        sse_client_expect_end(&streams[i].c, HUB_WAIT_MS);
        sse_client_close(&streams[i].c);
    }
    logwait_expect_count(test_srv.sse_log, "sse disconnected session=s0",
                         "reason=error:database_gone", STREAMS, HUB_WAIT_MS);
    for (int i = 0; i < S1_STREAMS; i++) {
        frames_resume(&streams[i].c, test_srv.port, streams[i].path, 3, ROWS_WAIT_MS);
        frames_expect_ids(&streams[i].c, (const long long[]){4, 5}, 2, ROWS_WAIT_MS);
    }
    struct stream *fresh = &streams[S1_STREAMS];  /* a new client of s02, from the start */
    resume_stream(fresh, "s02", NULL, 0);
    frames_expect_ids(&fresh->c, (const long long[]){6}, 1, ROWS_WAIT_MS);
    publish_events(&test_env, "s01", "llm_text_delta", NULL, 1);  /* 7, live */
    for (int i = 0; i < STREAMS; i++) {
        if (i < S1_STREAMS)
            frames_expect_ids(&streams[i].c, (const long long[]){7}, 1, ROWS_WAIT_MS);
        DIAG_CHECK(strstr(streams[i].c.body, "\"old\"") == NULL, "%s: after the resume, a "
                   "row of the replaced file was sent:\n%s", streams[i].path,
                   streams[i].c.body);
    }
    pid_t now_leader = expect_leader(0, HUB_WAIT_MS);
    expect_only_reader(now_leader, HUB_WAIT_MS);
    fprintf(stderr, "database replaced: leader %ld before, %ld after\n", (long)leader,
            (long)now_leader);
    close_streams(0, STREAMS);
}
END_TEST

enum { LAG_ROWS = 2000, LAG_CRITICAL_EVERY = 10 };

/* A stream through the script URL's /lag/ prefix runs with SSE_MAX_LAG 10 (a request
 * parameter); the others never shed. */
static const char LAG_PREFIX[] = "/lag";

/* Reads the disconnect line of session into *sent and *shed (SPEC §6). */
static void
read_disconnect_counts(const char *session, long *sent, long *shed)
{
    static char text[1 << 20];
    char needle[64];
    snprintf(needle, sizeof(needle), "sse disconnected session=%s ", session);
    logwait_expect_line(test_srv.sse_log, needle, "shed=", HUB_WAIT_MS);
    testenv_read_file(test_srv.sse_log, text, sizeof(text));
    const char *line = strstr(text, needle);
    const char *sent_at = line ? strstr(line, "events_sent=") : NULL;
    const char *shed_at = line ? strstr(line, "shed=") : NULL;
    DIAG_CHECK(sent_at && shed_at, "no events_sent= and shed= in the disconnect line");
    *sent = strtol(sent_at + strlen("events_sent="), NULL, 10);
    *shed = strtol(shed_at + strlen("shed="), NULL, 10);
}

/* Resumes with Last-Event-ID are exact whichever process serves them, while the stream the
 * client came from is still open in another process (A, which stays open throughout, so
 * that the first process, the leader in practice, serves no later request); and a client
 * far behind, on a follower, with SSE_MAX_LAG 10, may lose non-critical events but never a
 * critical one, and the log counts what it shed (SPEC §4.8). */
START_TEST(test_resume_exact_and_critical)
{
    char extra[512];
    snprintf(extra, sizeof(extra), "<Location \"%s%s/api/sessions/s03/events\">\n"
             "    SetEnv SSE_MAX_LAG 10\n</Location>\n", server_script_url(), LAG_PREFIX);
    start_hub_server(own_hub_dir(), NULL, extra);
    make_sessions(3);
    open_streams(0, 1, "s01");  /* A */
    pid_t pids[PROCESSES_MAX];
    expect_processes(pids, 1);
    pid_t first_process = pids[0];
    for (int i = 0; i < 4; i++)
        publish_events(&test_env, "s01", "llm_text_delta", NULL, 10);  /* 1..40 */
    expect_streams_exact(0, 1, 0);
    publish_events(&test_env, "s01", "llm_text_delta", NULL, 20);  /* 41..60 */
    read_stream(&streams[0], 50, ROWS_WAIT_MS);  /* A has seen 50, maybe more */
    pid_t leader = expect_leader(0, HUB_WAIT_MS);
    static const long long cursors[] = {50, 0, 60, 25};
    for (size_t i = 1; i <= 4; i++)  /* B, C, D, E: a process each */
        init_stream(&streams[i], "s01", NULL, cursors[i - 1]);
    connect_streams(1, 4);
    expect_streams_exact(1, 4, 0);
    publish_events(&test_env, "s01", "llm_text_delta", NULL, 5);  /* 61..65 */
    expect_streams_exact(1, 4, 0);
    struct stream *f = &streams[5];
    resume_stream(f, "s01", NULL, 63);
    expect_streams_exact(5, 1, 0);
    close_streams(1, 5);

    publish_okf(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
                "WHERE i < %d)\nINSERT INTO events(session_id, type) SELECT 's03', "
                "CASE WHEN i %% %d = 0 THEN 'execution_started' ELSE 'llm_text_delta' END "
                "FROM k;\n", LAG_ROWS, LAG_CRITICAL_EVERY);
    long long first = publish_query_number(&test_env, "SELECT min(id) FROM events WHERE "
                                           "session_id = 's03';\n");
    char lag_path[128];
    snprintf(lag_path, sizeof(lag_path), "%s%s/api/sessions/s03/events", server_script_url(),
             LAG_PREFIX);
    struct stream *lag = &streams[6];  /* LAG_ROWS behind the newest row */
    resume_stream(lag, "s03", lag_path, first - 1);
    read_stream(lag, first + LAG_ROWS - 1, ROWS_WAIT_MS);
    size_t critical = 0;
    for (size_t i = 0; i < lag->count; i++) {
        DIAG_CHECK(i == 0 || lag->ids[i] > lag->ids[i - 1], "ids out of order at %zu", i);
        critical += (lag->ids[i] - first + 1) % LAG_CRITICAL_EVERY == 0;
    }
    DIAG_CHECK(critical == LAG_ROWS / LAG_CRITICAL_EVERY, "%zu of %d critical events arrived "
               "(%zu events in all)", critical, LAG_ROWS / LAG_CRITICAL_EVERY, lag->count);
    sse_client_close(&lag->c);
    long sent = 0, shed = 0;
    read_disconnect_counts("s03", &sent, &shed);
    fprintf(stderr, "lagging client (leader %ld, %s): events_sent=%ld shed=%ld\n",
            (long)leader, leader == first_process ? "busy with A" : "maybe this one", sent,
            shed);
    DIAG_CHECK(sent == (long)lag->count && sent + shed == LAG_ROWS, "log says events_sent=%ld "
               "shed=%ld; received %zu of %d rows", sent, shed, lag->count, LAG_ROWS);
    close_streams(0, 1);
}
END_TEST

/* What the responders pids[0..n) have used so far, summed over their threads: CPU time in
 * ns, the scheduler's own account (/proc/<pid>/task/<tid>/schedstat; utime and stime are
 * sampled at each tick, which misses a short wakeup that follows one), and the times they
 * went to sleep (voluntary_ctxt_switches), each sleep ending in a wakeup. Fails when one of
 * the processes is gone (a process that died would hide what it used). */
static void
sum_costs(const pid_t *pids, size_t n, long long *cpu_ns, long long *sleeps)
{
    *cpu_ns = *sleeps = 0;
    for (size_t i = 0; i < n; i++) {
        char dir_path[64];
        snprintf(dir_path, sizeof(dir_path), "/proc/%ld/task", (long)pids[i]);
        DIR *dir = opendir(dir_path);
        DIAG_CHECK(dir != NULL && !server_is_pid_gone(pids[i]), "responder %ld is gone",
                   (long)pids[i]);
        for (struct dirent *de; (de = readdir(dir)) != NULL;) {
            char path[352], text[4096];
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s/schedstat", dir_path, de->d_name);
            if (testenv_read_file(path, text, sizeof(text)) > 0)
                *cpu_ns += strtoll(text, NULL, 10);
            snprintf(path, sizeof(path), "%s/%s/status", dir_path, de->d_name);
            const char *at = testenv_read_file(path, text, sizeof(text)) > 0
                                 ? strstr(text, "\nvoluntary_ctxt_switches:") : NULL;
            if (at != NULL)
                *sleeps += strtoll(at + strlen("\nvoluntary_ctxt_switches:"), NULL, 10);
        }
        closedir(dir);
    }
}

enum { IDLE_WINDOW_MS = 3000, IDLE_WAKEUPS_PER_S = 30 };

/* 50 streams, no commit, for 3 s: the responders together use less than 0.2 s of CPU.
 * What idle streams must do in that window: every stream writes a probe every
 * SSE_PROBE_MS (500 under Apache), 300 small writes; the leader checks the file every
 * SSE_POLL_MS (250), 12 stats; SSE_KEEPALIVE_S is 15, so no keepalive. Each is tens of
 * microseconds: well under 0.05 s in all. A process that polls instead of sleeping on its
 * socket, a follower looking at the shared ring every millisecond, costs 50 x 3000 wakeups
 * of a few microseconds each at least: over 0.3 s. CPU time is what the processes ran, not
 * how long they waited for a core, so a loaded machine does not inflate it; a sanitized
 * build takes up to four times as long per wakeup. The wakeups are counted too, a measure
 * of polling a load cannot change: at most 30 a second a stream, where a probe takes 2 and
 * the leader's check of the file 4 (today's private hubs: about 8), and a poller 100 or
 * more. */
START_TEST(test_idle_streams_cost_nothing)
{
    static const char *const settings[] = {"SSE_KEEPALIVE_S", "15", NULL};
    start_hub_server(own_hub_dir(), settings, NULL);
    make_sessions(IDLE_STREAMS);
    open_streams(0, IDLE_STREAMS, NULL);
    pid_t pids[PROCESSES_MAX];
    size_t n = expect_processes(pids, IDLE_STREAMS);
    logwait_expect_count(test_srv.sse_log, "sse connected session=", NULL, IDLE_STREAMS,
                         HUB_WAIT_MS);
    long long cpu_before, sleeps_before, cpu_after, sleeps_after;
    sum_costs(pids, n, &cpu_before, &sleeps_before);
    int64_t start_ms = testenv_now_ms();
    while (testenv_now_ms() - start_ms < IDLE_WINDOW_MS)  /* the window measured */
        testenv_poll_step();
    sum_costs(pids, n, &cpu_after, &sleeps_after);
    double seconds = (double)(cpu_after - cpu_before) / 1e9;
    double bound = 0.2 * (getenv("SSE_SANITIZED") != NULL ? 4 : 1);
    fprintf(stderr, "%d idle streams: %.4f s of CPU and %lld wakeups in %d ms\n",
            IDLE_STREAMS, seconds, sleeps_after - sleeps_before, IDLE_WINDOW_MS);
    DIAG_CHECK(seconds < bound, "%d idle streams used %.3f s of CPU in %d ms (bound %.2f s): "
               "a process polls", IDLE_STREAMS, seconds, IDLE_WINDOW_MS, bound);
    long long wakeups = sleeps_after - sleeps_before;
    long long wakeup_bound = (long long)IDLE_STREAMS * IDLE_WAKEUPS_PER_S * IDLE_WINDOW_MS / 1000;
    DIAG_CHECK(wakeups < wakeup_bound, "%d idle streams woke %lld times in %d ms (bound %lld): "
               "a process polls", IDLE_STREAMS, wakeups, IDLE_WINDOW_MS, wakeup_bound);
    close_streams(0, IDLE_STREAMS);
}
END_TEST

Suite *suite_shared_hub(void);

/* One case a test, named after it, so that CK_RUN_CASE can pick one. */
static void
add_case(Suite *s, const char *name, const TTest *test)
{
    TCase *tc = server_tcase_create(name);
    tcase_set_timeout(tc, 45);
    tcase_add_test(tc, test);
    suite_add_tcase(s, tc);
}

/* Listed as FCGID_SUITE: behind Apache + mod_fcgid only, where every stream is a process. */
Suite *
suite_shared_hub(void)
{
    Suite *s = suite_create("shared_hub");
    add_case(s, "one_reader_per_host", test_one_reader_per_host);
    add_case(s, "leader_killed_under_load", test_leader_killed_under_load);
    add_case(s, "leader_killed_standard_clients", test_leader_killed_standard_clients);
    add_case(s, "follower_killed", test_follower_killed);
    add_case(s, "fallback_private_hub", test_fallback_private_hub);
    add_case(s, "fallback_missing_hub_dir", test_fallback_missing_hub_dir);
    add_case(s, "database_replaced_shared", test_database_replaced_shared);
    add_case(s, "resume_exact_and_critical", test_resume_exact_and_critical);
    add_case(s, "idle_streams_cost_nothing", test_idle_streams_cost_nothing);
    return s;
}
