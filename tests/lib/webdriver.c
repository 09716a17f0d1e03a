/*
 * webdriver.c - headless Chromium through chromedriver (see webdriver.h).
 *
 * The protocol is W3C WebDriver: JSON over HTTP/1.1, one request per connection
 * (Connection: close), answers {"value": ...} or {"value": {"error", "message"}}.
 * Everything Chromium starts stays in the driver's process group but its crash handler
 * (crashpad), which makes a session of its own and outlives the browser. It cannot be
 * switched off (--disable-crashpad-for-testing leaves navigations hanging), so it is found
 * by its --database= argument, under the HOME this driver gives Chromium, and stopped by PID.
 */
#define _DEFAULT_SOURCE  /* setenv */

#include "tests/lib/webdriver.h"

#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/sse_client.h"

enum {
    WEBDRIVER_READY_MS = 15000,         /* driver listening */
    WEBDRIVER_COMMAND_MS = 60000,       /* one command, a session start or a page load */
    WEBDRIVER_STOP_MS = 5000,           /* the group gone after TERM, then after KILL */
};

static const char CHROMEDRIVER[] = "/usr/bin/chromedriver";
static const char CHROMIUM[] = "/usr/bin/chromium";

static void
dump_hook(void *ctx)
{
    struct webdriver *wd = ctx;
    diag_print_file("chromedriver log", wd->log_path, 16384);
}

static bool
is_group_gone(pid_t pgid)
{
    waitpid(pgid, NULL, WNOHANG);  /* the driver is our child */
    return kill(-pgid, 0) < 0 && errno == ESRCH;
}

/* TERMs the driver's group, then KILLs what is left at the deadline; reaps the driver. */
static void
stop_group(struct webdriver *wd)
{
    if (wd->pid <= 0)
        return;
    int sig = SIGTERM;
    for (int round = 0; round < 2 && !is_group_gone(wd->pid); round++, sig = SIGKILL) {
        kill(-wd->pid, sig);
        int64_t deadline = testenv_now_ms() + WEBDRIVER_STOP_MS;
        while (!is_group_gone(wd->pid) && testenv_now_ms() < deadline)
            testenv_poll_step();
    }
    waitpid(wd->pid, NULL, WNOHANG);
    wd->pid = -1;
}

/* Stops the crash handlers of this driver's Chromium by PID (TERM, deadline, KILL). */
static void
stop_crash_handlers(const struct webdriver *wd)
{
    char prefix[TESTENV_PATH_MAX + 16];
    snprintf(prefix, sizeof(prefix), "--database=%s/", wd->home);
    int sig = SIGTERM;
    for (int round = 0; round < 2 && testenv_signal_by_arg(prefix, 0, NULL, 0) > 0;
         round++, sig = SIGKILL) {
        testenv_signal_by_arg(prefix, sig, NULL, 0);
        int64_t deadline = testenv_now_ms() + WEBDRIVER_STOP_MS;
        while (testenv_signal_by_arg(prefix, 0, NULL, 0) > 0 && testenv_now_ms() < deadline)
            testenv_poll_step();
    }
}

static void
cleanup_hook(void *ctx)
{
    stop_group(ctx);
    stop_crash_handlers(ctx);
}

/* One command: method path with body (NULL: none). Returns the answer's "value" (owned by
 * the caller), or fails the test with the driver's error. The HTTP exchange is the suite's
 * own client (sse_client.h), which reads the answer by its Content-Length: the driver may
 * keep the connection open after answering. */
static cJSON *
command(struct webdriver *wd, const char *method, const char *path, const cJSON *body)
{
    char *payload = body ? cJSON_PrintUnformatted(body) : NULL;
    const char *const headers[] = {"Content-Type: application/json; charset=utf-8",
                                   "Connection: close", NULL};
    struct sse_client c;
    sse_client_request(&c, wd->port, method, path, headers, payload, WEBDRIVER_COMMAND_MS);
    free(payload);
    sse_client_read_body(&c, WEBDRIVER_COMMAND_MS);
    cJSON *parsed = cJSON_Parse(c.body);
    cJSON *value = cJSON_DetachItemFromObjectCaseSensitive(parsed, "value");
    cJSON_Delete(parsed);
    if (c.status != 200 || value == NULL) {
        fprintf(stderr, "--- chromedriver answer to %s %s ---\n%.4000s\n", method, path,
                c.body);
        cJSON_Delete(value);
    }
    int status = c.status;
    bool is_ok = status == 200 && value != NULL;
    sse_client_close(&c);
    DIAG_CHECK(is_ok, "WebDriver %s %s failed (HTTP %d)", method, path, status);
    return value;
}

/* command() on the session: path is what follows /session/<id>. */
static cJSON *
session_command(struct webdriver *wd, const char *method, const char *path, const cJSON *body)
{
    char full[512];
    snprintf(full, sizeof(full), "/session/%s%s", wd->session, path);
    return command(wd, method, full, body);
}

/* chromedriver, leading a process group of its own that Chromium and its helpers join.
 * Chromium's profile and temp files go to the test's dir, removed with it. */
static pid_t
spawn_driver(const struct webdriver *wd)
{
    char port_arg[32], log_arg[TESTENV_PATH_MAX + 16];
    snprintf(port_arg, sizeof(port_arg), "--port=%d", wd->port);
    snprintf(log_arg, sizeof(log_arg), "--log-path=%s", wd->log_path);
    const char *const argv[] = {CHROMEDRIVER, port_arg, log_arg, NULL};
    const char *const env_pairs[] = {"TMPDIR", wd->home, "HOME", wd->home, NULL};
    return testenv_spawn(wd->log_path, argv, env_pairs, true);
}

static cJSON *
session_request(int width, int height)
{
    char window[64];
    snprintf(window, sizeof(window), "--window-size=%d,%d", width, height);
    const char *args[] = {
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-dev-shm-usage", "--no-first-run",
        "--hide-scrollbars", window,
    };
    cJSON *options = cJSON_CreateObject();
    cJSON_AddStringToObject(options, "binary", CHROMIUM);
    cJSON_AddItemToObject(options, "args",
                          cJSON_CreateStringArray(args, (int)(sizeof(args) / sizeof(args[0]))));
    cJSON *match = cJSON_CreateObject();
    cJSON_AddStringToObject(match, "browserName", "chrome");
    cJSON_AddItemToObject(match, "goog:chromeOptions", options);
    cJSON *capabilities = cJSON_CreateObject();
    cJSON_AddItemToObject(capabilities, "alwaysMatch", match);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddItemToObject(body, "capabilities", capabilities);
    return body;
}

void
webdriver_start(struct webdriver *wd, const struct testenv *env, int width, int height)
{
    DIAG_CHECK(access(CHROMEDRIVER, X_OK) == 0 && access(CHROMIUM, X_OK) == 0,
               "%s or %s is missing: run `make deps` (packages chromium, chromium-driver)",
               CHROMEDRIVER, CHROMIUM);
    wd->session[0] = '\0';
    testenv_path(env, "chromedriver.log", wd->log_path, sizeof(wd->log_path));
    snprintf(wd->home, sizeof(wd->home), "%s", env->dir);
    wd->port = testenv_pick_port();
    wd->pid = spawn_driver(wd);
    diag_register(wd, dump_hook, cleanup_hook);
    int64_t deadline = testenv_now_ms() + WEBDRIVER_READY_MS;
    while (!testenv_is_port_accepting(wd->port) && testenv_now_ms() < deadline) {
        DIAG_CHECK(waitpid(wd->pid, NULL, WNOHANG) == 0, "chromedriver exited at start");
        testenv_poll_step();
    }
    DIAG_CHECK(testenv_is_port_accepting(wd->port), "chromedriver never listened on port %d",
               wd->port);
    cJSON *body = session_request(width, height);
    cJSON *value = command(wd, "POST", "/session", body);
    cJSON_Delete(body);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(value, "sessionId");
    DIAG_CHECK(cJSON_IsString(id) && strlen(id->valuestring) < sizeof(wd->session),
               "no sessionId in the new-session answer");
    snprintf(wd->session, sizeof(wd->session), "%s", id->valuestring);
    cJSON_Delete(value);
}

void
webdriver_stop(struct webdriver *wd)
{
    if (wd->pid <= 0)
        return;
    if (wd->session[0] != '\0')
        cJSON_Delete(session_command(wd, "DELETE", "", NULL));  /* the browser quits */
    wd->session[0] = '\0';
    stop_group(wd);
    stop_crash_handlers(wd);
    diag_unregister(wd);
}

void
webdriver_navigate(struct webdriver *wd, const char *url)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "url", url);
    cJSON_Delete(session_command(wd, "POST", "/url", body));
    cJSON_Delete(body);
}

cJSON *
webdriver_execute(struct webdriver *wd, const char *script)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "script", script);
    cJSON_AddItemToObject(body, "args", cJSON_CreateArray());
    cJSON *value = session_command(wd, "POST", "/execute/sync", body);
    cJSON_Delete(body);
    return value;
}

const char *
webdriver_execute_string(struct webdriver *wd, const char *script, char *out, size_t size)
{
    cJSON *value = webdriver_execute(wd, script);
    snprintf(out, size, "%s", cJSON_IsString(value) ? value->valuestring : "");
    cJSON_Delete(value);
    return out;
}

bool
webdriver_wait_until(struct webdriver *wd, const char *script, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    for (;;) {
        cJSON *value = webdriver_execute(wd, script);
        bool is_true = cJSON_IsTrue(value);
        cJSON_Delete(value);
        if (is_true)
            return true;
        if (testenv_now_ms() >= deadline)
            return false;
        testenv_poll_step();
    }
}

/* The WebDriver element reference for a CSS selector (the id string, owned). */
static char *
find_element(struct webdriver *wd, const char *css_selector)
{
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "using", "css selector");
    cJSON_AddStringToObject(body, "value", css_selector);
    cJSON *value = session_command(wd, "POST", "/element", body);
    cJSON_Delete(body);
    /* W3C names the element reference key with this fixed identifier. */
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(value,
                                                        "element-6066-11e4-a52e-4f735466cecf");
    DIAG_CHECK(cJSON_IsString(ref), "no element for %s", css_selector);
    char *id = strdup(ref->valuestring);
    cJSON_Delete(value);
    DIAG_CHECK(id != NULL, "out of memory");
    return id;
}

static void
element_command(struct webdriver *wd, const char *css_selector, const char *action,
                const cJSON *body)
{
    char *id = find_element(wd, css_selector);
    char path[256];
    snprintf(path, sizeof(path), "/element/%s/%s", id, action);
    free(id);
    cJSON_Delete(session_command(wd, "POST", path, body));
}

void
webdriver_click(struct webdriver *wd, const char *css_selector)
{
    cJSON *body = cJSON_CreateObject();
    element_command(wd, css_selector, "click", body);
    cJSON_Delete(body);
}

void
webdriver_type(struct webdriver *wd, const char *css_selector, const char *text)
{
    cJSON *body = cJSON_CreateObject();
    element_command(wd, css_selector, "clear", body);
    cJSON_AddStringToObject(body, "text", text);
    element_command(wd, css_selector, "value", body);
    cJSON_Delete(body);
}

long
webdriver_screenshot(struct webdriver *wd, const char *path)
{
    cJSON *value = session_command(wd, "GET", "/screenshot", NULL);
    DIAG_CHECK(cJSON_IsString(value), "the screenshot answer is not a string");
    size_t b64_len = strlen(value->valuestring);
    unsigned char *png = malloc(b64_len / 4 * 3 + 3);
    DIAG_CHECK(png != NULL, "out of memory");
    int len = EVP_DecodeBlock(png, (const unsigned char *)value->valuestring, (int)b64_len);
    DIAG_CHECK(len > 0, "the screenshot is not base64");
    len -= (b64_len >= 1 && value->valuestring[b64_len - 1] == '=')
           + (b64_len >= 2 && value->valuestring[b64_len - 2] == '=');  /* padding */
    cJSON_Delete(value);
    testenv_write_file(path, (const char *)png, (size_t)len);
    free(png);
    return len;
}
