/*
 * webdriver.h - a real headless Chromium, driven over the W3C WebDriver protocol.
 *
 * webdriver_start fork/execs Debian's /usr/bin/chromedriver on a free loopback port in a
 * process group of its own, and opens a session on /usr/bin/chromium started with
 * --headless --no-sandbox --disable-gpu --disable-background-networking. Commands are
 * HTTP/1.1 requests with cJSON bodies, each with a deadline. webdriver_stop ends the session,
 * then TERMs the group by the driver's PID and waits until no process of the group is left
 * (KILL at the deadline), then stops Chromium's crash handler, which leaves the group.
 * Chromium's profile and temp files live in the test's temp dir. A failure prints the
 * driver's log. Not thread-safe (one test, one process).
 */
#ifndef SSE_TEST_WEBDRIVER_H
#define SSE_TEST_WEBDRIVER_H

#include <cJSON.h>
#include <stdbool.h>
#include <sys/types.h>

#include "tests/lib/testenv.h"

struct webdriver {
    pid_t pid;                          /* chromedriver, leader of its group; -1 stopped */
    int port;                           /* its loopback port */
    char session[128];                  /* WebDriver session id; "" before/after */
    char log_path[TESTENV_PATH_MAX];    /* chromedriver's stdout/stderr and --log-path */
    char home[TESTENV_PATH_MAX];        /* HOME and TMPDIR of the browser: the test's dir */
};

/* Starts the driver and a browser session with a window of width x height. Fails the test
 * (pointing at `make deps`) when chromium or chromedriver is missing. */
void webdriver_start(struct webdriver *wd, const struct testenv *env, int width, int height);

/* Ends the session and every process of the driver's group. Accepts a stopped driver. */
void webdriver_stop(struct webdriver *wd);

/* Loads url and waits for the page's load event. */
void webdriver_navigate(struct webdriver *wd, const char *url);

/* Runs script (a function body; `return` gives the result) in the page. Returns the result
 * (cJSON_Delete it). Fails the test on a script error. */
cJSON *webdriver_execute(struct webdriver *wd, const char *script);

/* webdriver_execute for a script returning a string: copies it into out ("" otherwise). */
const char *webdriver_execute_string(struct webdriver *wd, const char *script, char *out,
                                     size_t size);

/* Polls script (returning true or false) until it returns true or timeout_ms passes.
 * Returns whether it did. */
bool webdriver_wait_until(struct webdriver *wd, const char *script, int timeout_ms);

/* Finds the element for a CSS selector and clicks it as a user would (WebDriver Element
 * Click: scrolled into view, the click at its centre). */
void webdriver_click(struct webdriver *wd, const char *css_selector);

/* Clears the input for a CSS selector and types text into it (WebDriver Element Send Keys). */
void webdriver_type(struct webdriver *wd, const char *css_selector, const char *text);

/* Saves a PNG screenshot of the viewport to path. Returns its size in bytes. */
long webdriver_screenshot(struct webdriver *wd, const char *path);

#endif
