/*
 * test_access.c - access control end to end (SSE_AUTH, issue 5), behind every front end.
 *
 * Token mode: the producer stores salt and SHA-256(salt || token) with the sqlite3 CLI; a
 * stream needs the token as ?token=, as the sse_token cookie or as a Bearer header; no
 * credential is 401, a wrong token and an unknown session are the same 403; the scopes
 * "session:<id>", "worker:<id>" and "global" each open their own stream only, also for a
 * session named "worker:w1" (issue 11). JWT mode: an HS256 token signed with the secret
 * from SSE_JWT_SECRET_FILE opens the sessions its "sse" claim lists until "exp". Denials
 * are JSON with one log line; no token or secret is ever logged. /api/health needs no
 * credential. Issue 12: without libcrypto (hidden from the responder, lighttpd and nginx) a
 * credential gets 503, logged, and the process says why at start.
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/jwt.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

static const char TOKEN[] = "tok-7f3a9c1e5b2d4068a1c3e5f7091b2d4f";
static const char JWT_SECRET[] = "jwt-secret-0123456789abcdef0123456789";

/* GET path with one extra header (or none) and returns the status; the body of a denial
 * must be JSON {"error": ...}, copied into error (size bytes) when not NULL. */
static int
get_status(const char *path, const char *header, char *error, size_t size)
{
    const char *const headers[] = {header, NULL};
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "GET", path, header ? headers : NULL);
    int status = c.status;
    if (status != 200) {
        sse_client_read_body(&c, 3000);
        DIAG_CHECK(strstr(c.body, "\"error\"") != NULL, "%s: no JSON error: %s", c.request,
                   c.body);
        if (error != NULL)
            snprintf(error, size, "%s", c.body);
        char value[64];
        DIAG_CHECK(status != 401 || sse_client_header(&c, "WWW-Authenticate", value,
                                                       sizeof(value)) != NULL,
                   "%s: 401 without WWW-Authenticate", c.request);
    }
    sse_client_close(&c);
    return status;
}

static void
expect_no_secret_in_log(const char *secret)
{
    static char log[1 << 20];
    testenv_read_file(test_srv.sse_log, log, sizeof(log));
    DIAG_CHECK(strstr(log, secret) == NULL, "a credential or secret is in the log");
}

/* Stores token for scope ("session:<id>", "worker:<id>" or "global") as a producer does. */
static void
store_token(const char *scope, const char *salt, const char *token)
{
    char hash[65];
    token_hash_hex(salt, token, hash);
    publish_okf(&test_env, "INSERT INTO read_tokens(scope, salt, hash) VALUES ('%s', '%s', "
                "'%s');\n", scope, salt, hash);
}

START_TEST(test_read_tokens)
{
    const char *const settings[] = {"SSE_AUTH", "token", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    store_token("session:s1", "5a1f0c3e9b7d2468", TOKEN);
    publish_events(&test_env, "s1", "execution_started", NULL, 1);  /* replayed */
    char wrong[512], unknown[512], query[256], cookie[128], bearer[128];
    DIAG_CHECK(get_status("/api/sessions/s1/events", NULL, NULL, 0) == 401,
               "no credential: not 401");
    DIAG_CHECK(get_status("/api/sessions/s1/events?token=nope", NULL, wrong, sizeof(wrong))
               == 403, "a wrong token: not 403");
    snprintf(query, sizeof(query), "/api/sessions/s9/events?token=%s", TOKEN);
    DIAG_CHECK(get_status(query, NULL, unknown, sizeof(unknown)) == 403,
               "an unknown session: not 403");
    DIAG_CHECK(strcmp(wrong, unknown) == 0, "a wrong token and an unknown session answer "
               "differently: %s / %s", wrong, unknown);
    snprintf(query, sizeof(query), "/api/sessions/s1/events?token=%s", TOKEN);
    snprintf(cookie, sizeof(cookie), "Cookie: theme=dark; sse_token=%s", TOKEN);
    snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", TOKEN);
    const char *const ways[][2] = {{query, NULL}, {"/api/sessions/s1/events", cookie},
                                   {"/api/sessions/s1/events", bearer}};
    for (int i = 0; i < 3; i++) {
        struct sse_client c;
        frames_open_stream(&c, test_srv.port, ways[i][0],
                           ways[i][1] ? (const char *const[]){ways[i][1], NULL} : NULL);
        frames_expect_ids(&c, (const long long[]){1}, 1, 5000);  /* the replay */
        sse_client_close(&c);
    }
    logwait_expect_count(test_srv.sse_log, "sse denied status=", NULL, 3, 2000);
    expect_no_secret_in_log(TOKEN);
    DIAG_CHECK(get_status("/api/health", NULL, NULL, 0) == 200, "health needs no token");
}
END_TEST

/* Opens path with ?token=token and expects a 200 stream (which it closes) or a status. */
static void
expect_token_status(const char *path, const char *token, int expected)
{
    char query[512];
    snprintf(query, sizeof(query), "%s?token=%s", path, token);
    int status = get_status(query, NULL, NULL, 0);
    DIAG_CHECK(status == expected, "%s with the token: %d, expected %d", path, status,
               expected);
}

/* Issue 11: a session may be named "worker:w1", so its token's scope must not be the
 * worker w1's. Each scope opens its own stream and no other. */
START_TEST(test_token_scopes_are_separate)
{
    const char *const settings[] = {"SSE_AUTH", "token", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    static const char SESSION_TOKEN[] = "tok-session-worker-w1-0123456789abcdef";
    static const char WORKER_TOKEN[] = "tok-worker-w1-0123456789abcdef012345";
    static const char GLOBAL_TOKEN[] = "tok-global-0123456789abcdef0123456789";
    store_token("session:worker:w1", "5a1f0c3e9b7d2468", SESSION_TOKEN);
    store_token("worker:w1", "6b2e1d4f0a8c3579", WORKER_TOKEN);
    store_token("global", "7c3f2e5a1b9d4680", GLOBAL_TOKEN);
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('worker:w1'), ('global');\n");
    static const char SESSION[] = "/api/sessions/worker:w1/events",
                      WORKER[] = "/api/workers/w1/events", GLOBAL[] = "/api/events/global",
                      GLOBAL_SESSION[] = "/api/sessions/global/events";
    expect_token_status(SESSION, SESSION_TOKEN, 200);
    expect_token_status(WORKER, SESSION_TOKEN, 403);
    expect_token_status(WORKER, WORKER_TOKEN, 200);
    expect_token_status(SESSION, WORKER_TOKEN, 403);
    expect_token_status(GLOBAL, GLOBAL_TOKEN, 200);
    expect_token_status(GLOBAL_SESSION, GLOBAL_TOKEN, 403);
    expect_token_status(GLOBAL, SESSION_TOKEN, 403);
}
END_TEST

START_TEST(test_jwt)
{
    char secret_path[TESTENV_PATH_MAX];
    testenv_path(&test_env, "jwt.key", secret_path, sizeof(secret_path));
    char key_file[sizeof(JWT_SECRET) + 1];
    snprintf(key_file, sizeof(key_file), "%s\n", JWT_SECRET);  /* as `echo` writes it */
    testenv_write_file(secret_path, key_file, strlen(key_file));
    const char *const settings[] = {"SSE_AUTH", "jwt", "SSE_JWT_SECRET_FILE", secret_path, NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('s2');\n");
    publish_events(&test_env, "s1", "execution_started", NULL, 1);  /* replayed */
    char claims[256], jwt[1024], expired[1024], path[1400];
    long long now = (long long)time(NULL);
    snprintf(claims, sizeof(claims), "{\"exp\":%lld,\"sse\":{\"sessions\":[\"s1\"]}}",
             now + 600);
    jwt_hs256(JWT_SECRET, claims, jwt, sizeof(jwt));
    snprintf(claims, sizeof(claims), "{\"exp\":%lld,\"sse\":{\"sessions\":[\"s1\"]}}", now - 1);
    jwt_hs256(JWT_SECRET, claims, expired, sizeof(expired));
    snprintf(path, sizeof(path), "/api/sessions/s1/events?token=%s", jwt);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, path, NULL);
    frames_expect_ids(&c, (const long long[]){1}, 1, 5000);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);
    frames_expect_ids(&c, (const long long[]){2}, 1, 5000);
    sse_client_close(&c);
    snprintf(path, sizeof(path), "/api/sessions/s2/events?token=%s", jwt);
    DIAG_CHECK(get_status(path, NULL, NULL, 0) == 403, "a JWT for s1 opened s2");
    snprintf(path, sizeof(path), "/api/sessions/s1/events?token=%s", expired);
    DIAG_CHECK(get_status(path, NULL, NULL, 0) == 401, "an expired JWT was not 401");
    jwt_hs256("not-the-secret", claims, expired, sizeof(expired));
    snprintf(path, sizeof(path), "/api/sessions/s1/events?token=%s", expired);
    DIAG_CHECK(get_status(path, NULL, NULL, 0) == 401, "a JWT with a wrong key was not 401");
    expect_no_secret_in_log(JWT_SECRET);
    expect_no_secret_in_log(jwt);
}
END_TEST

/* The file libcrypto.so.3 the dynamic linker found for this test process (which links it),
 * the one the responder would load, as /proc/self/maps names it: symlinks resolved. */
static void
libcrypto_path(char *out, size_t size)
{
    static char maps[1 << 20];
    testenv_read_file("/proc/self/maps", maps, sizeof(maps));
    const char *name = strstr(maps, "/libcrypto.so.3\n");
    DIAG_CHECK(name != NULL, "libcrypto.so.3 is not mapped by the test runner");
    const char *start = name;
    while (start > maps && start[-1] != ' ')
        start--;
    size_t len = (size_t)(name - start) + strlen("/libcrypto.so.3");
    DIAG_CHECK(start[0] == '/' && len < size, "libcrypto.so.3 mapped from %.40s", start);
    snprintf(out, size, "%.*s", (int)len, start);
}

/* Issue 12: the responder loads libcrypto only for SSE_AUTH (fcgi/crypto.h). Here it runs
 * in a mount namespace of its own where /dev/null is bound over that file: the process
 * logs at start that SSE_AUTH cannot work, a credential is answered 503 with one log line,
 * no credential is still 401 and a stream without SSE_AUTH would not notice. */
START_TEST(test_missing_libcrypto)
{
    char lib[PATH_MAX], wrapper[TESTENV_PATH_MAX], script[3 * PATH_MAX];
    libcrypto_path(lib, sizeof(lib));
    testenv_path(&test_env, "sse-fcgi-without-libcrypto", wrapper, sizeof(wrapper));
    snprintf(script, sizeof(script), "#!/bin/sh\nexec unshare --mount sh -c 'mount --bind "
             "/dev/null \"$0\" && exec \"$1\"' \"%s\" \"%s\"\n", lib,
             testenv_require("SSE_FCGI_BIN"));
    testenv_write_script(wrapper, script);
    const char *const settings[] = {"SSE_AUTH", "token", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings,
                                                                .bin = wrapper});
    logwait_expect_line(test_srv.sse_log, "sse error SSE_AUTH needs libcrypto.so.3: cannot "
                        "load libcrypto.so.3", "every credential will be answered 503", 2000);
    char error[512];
    DIAG_CHECK(get_status("/api/sessions/s1/events?token=x", NULL, error, sizeof(error))
               == 503, "a credential without libcrypto: not 503");
    DIAG_CHECK(strstr(error, "authentication unavailable: libcrypto.so.3 cannot be loaded")
               != NULL, "the 503 says: %s", error);
    logwait_expect_line(test_srv.sse_log, "sse denied status=503 session=s1",
                        "reason=\"authentication unavailable", 2000);
    DIAG_CHECK(get_status("/api/sessions/s1/events", NULL, NULL, 0) == 401,
               "no credential: not 401");
    DIAG_CHECK(get_status("/api/health", NULL, NULL, 0) == 200, "health needs no token");
}
END_TEST

Suite *suite_access(void);

Suite *
suite_access(void)
{
    Suite *s = server_suite_create("access");
    TCase *tc = server_tcase_create("access");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_read_tokens);
    tcase_add_test(tc, test_token_scopes_are_separate);
    tcase_add_test(tc, test_jwt);
    /* The wrapper is lighttpd's bin-path, or the program of nginx's standalone backend;
     * Apache runs the binary under its script names. */
    if (!server_front_end_is_apache(server_building_front_end))
        tcase_add_test(tc, test_missing_libcrypto);
    suite_add_tcase(s, tc);
    return s;
}
