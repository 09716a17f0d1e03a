/*
 * server.h - real lighttpd with sse-fcgi behind mod_fastcgi, on a free loopback port (or
 * Apache, or nginx with the responder standalone: enum server_front_end).
 *
 * server_start renders $SSE_TEST_CONF/lighttpd.conf.in into the test's temp dir, runs
 * `lighttpd -D -f <conf>` (fork/exec, PID kept) and returns once the port accepts, the PID
 * is alive and a probe of an unknown route is answered 404 by the responder (so its stream
 * slots are taking requests), all polled with a deadline. server_stop sends SIGTERM by PID,
 * waits with a deadline, then SIGKILLs; the backend lighttpd spawned is then waited for and
 * killed by its PID too.
 * nginx (tests/conf/nginx.conf.in, `nginx -g 'daemon off;' -p <dir> -c <conf>`, one
 * worker) spawns nothing: server_start first starts the responder standalone, as an
 * external backend (server_start_backend), and nginx reaches it through the shipped
 * deploy/nginx/sse-fcgi.conf, rendered with the test's mount and socket. server_stop stops
 * nginx's master by PID (it stops its worker), then the backend.
 * A failure prints lighttpd's error log, its stdout/stderr (the backend's stderr under -D) and
 * the responder's SSE_LOG file. Not thread-safe (one test, one process).
 */
#ifndef SSE_TEST_SERVER_H
#define SSE_TEST_SERVER_H

#include <check.h>
#include <stdbool.h>
#include <sys/types.h>

#include "tests/lib/testenv.h"

/* The web server in front of the responder (issue 3: one set of tests, three front ends;
 * issue 15: four). */
enum server_front_end {
    SERVER_LIGHTTPD,            /* lighttpd + mod_fastcgi, sse-fcgi spawned by bin-path */
    SERVER_APACHE_FCGID,        /* Apache mpm_event + mod_fcgid */
    SERVER_APACHE_CGI,          /* Apache mpm_event + mod_cgid: one process per stream */
    SERVER_NGINX,               /* nginx fastcgi_pass to a standalone responder the test
                                 * starts (spawn-fcgi -n, or a held socket): nginx has no
                                 * process manager for FastCGI */
    SERVER_FRONT_END_COUNT,
};

/* The front end server_start uses; set for each test case by server_tcase_create. */
extern enum server_front_end server_front_end;

/* The front end the suite being built will run against: tests/main.c sets it before it
 * calls a suite constructor listed as FRONT_SUITE(name). */
extern enum server_front_end server_building_front_end;

/* suite_create(name), suffixed "_fcgid" or "_cgi" for the Apache front ends and "_nginx"
 * for nginx, so that CK_RUN_SUITE can pick one. */
Suite *server_suite_create(const char *name);

/* The suffix server_suite_create gives suites run against front_end ("" for lighttpd).
 * Static storage. */
const char *server_front_end_suffix(enum server_front_end front_end);

/* True for the two Apache front ends: a responder process per request (CGI) or from
 * mod_fcgid's pool, probe lines while idle, Apache's own 404 for a %2F. lighttpd and nginx
 * send every request to one responder process. */
bool server_front_end_is_apache(enum server_front_end front_end);

/* The per-test environment and server of every integration test. */
extern struct testenv test_env;
extern struct server test_srv;

/* tcase_create(name) with two fixtures: an unchecked one that selects
 * server_building_front_end for every test of the case (it runs in the runner process,
 * before the tests fork), and a checked one that opens test_env before each test and, after
 * it, stops test_srv (when it was started) and removes test_env. */
TCase *server_tcase_create(const char *name);

struct server_options {
    const char *mount;              /* fastcgi.server prefix; NULL means "/api/" */
    const char *db_path;            /* SSE_DB; NULL means the test's events.db */
    const char *const *env;         /* extra bin-environment: name, value, ..., NULL; a name
                                     * given here replaces the default of the same name */
    const char *const *params;      /* request parameters, not environment: name, value,
                                     * ..., NULL (lighttpd setenv.add-environment, Apache
                                     * SetEnv even for a per-process setting) */
    const char *apache_directives;  /* extra server-config lines under Apache, or NULL */
    const char *nginx_main;         /* extra main-context lines under nginx, or NULL */
    const char *nginx_server;       /* extra lines in nginx's server { }, or NULL */
    bool is_port_ready_enough;      /* skip the 404 probe: ready once the port accepts */
    int port;                       /* listen here (a restart on the same port); 0: pick */
    const char *bin;                /* lighttpd's bin-path (nginx: the standalone
                                     * backend's program) instead of the responder (a
                                     * wrapper that runs it under valgrind); NULL: it */
    bool is_external_backend;       /* lighttpd: the responder is started apart, by
                                     * spawn-fcgi on a unix socket (as systemd would),
                                     * and lighttpd connects to it (no bin-path); nginx:
                                     * always so, whatever this says */
    bool is_socket_held;            /* external backend: the test, not spawn-fcgi,
                                     * makes the listening socket once and hands it to
                                     * each backend it starts as fd 0, as a systemd
                                     * socket unit does (deploy/systemd/): the socket
                                     * stays open while the backend restarts */
};

struct server {
    pid_t pid;                              /* lighttpd (nginx: its master); -1 once
                                             * stopped */
    pid_t backend_pid;                      /* sse-fcgi seen under lighttpd; -1 unknown */
    int port;                               /* 127.0.0.1 port lighttpd listens on */
    char conf_path[TESTENV_PATH_MAX];       /* rendered configuration */
    char error_log[TESTENV_PATH_MAX];       /* server.errorlog */
    char stdio_log[TESTENV_PATH_MAX];       /* lighttpd's stdout+stderr (backend stderr) */
    char sse_log[TESTENV_PATH_MAX];         /* SSE_LOG of the responder */
    bool is_backend_external;               /* backend_pid is our child (spawn-fcgi -n) */
    char backend_socket[TESTENV_PATH_MAX];  /* its listening socket */
    char backend_stdio_log[TESTENV_PATH_MAX];
    bool is_backend_socket_held;            /* backend_listen_fd is ours (is_socket_held) */
    int backend_listen_fd;                  /* the held listening socket; -1 before */
};

/* Starts lighttpd for env with the defaults SSE_DB=<env db>, SSE_LOG=<dir>/sse-fcgi.log,
 * SSE_KEEPALIVE_S=1, SSE_THREADS=4, SSE_LOG_LEVEL=debug, changed by opt (may be NULL).
 * Fails the test (with the logs) when lighttpd is missing (`make deps`) or never listens. */
void server_start(struct server *srv, const struct testenv *env,
                  const struct server_options *opt);

/* Runs deploy/demo/run.sh (what `make run` runs) with SSE_DEMO_DIR=demo_dir on a free port:
 * the script execs lighttpd, so srv->pid is lighttpd's and server_stop stops it and its
 * backend as usual. The logs are the demo's own; srv->stdio_log holds what the script
 * printed. */
void server_start_demo(struct server *srv, const struct testenv *env, const char *demo_dir);

/* Stops lighttpd and its backend by PID (TERM, deadline, KILL) and fails the test when a
 * log shows a sanitizer report. Accepts a stopped server. */
void server_stop(struct server *srv);

/* With is_external_backend (always under nginx): starts the responder (opt->bin when
 * set) under `spawn-fcgi -n` on srv's socket,
 * with the same settings as server_start, and waits until the socket accepts. With
 * is_socket_held it runs the responder itself on the socket it holds (made at the first
 * call) and waits for the responder's "sse started" line instead, since the held socket
 * accepts whether a backend runs or not. server_start calls it; a test calls it again to
 * restart the backend after server_stop_backend. */
void server_start_backend(struct server *srv, const struct testenv *env,
                          const struct server_options *opt);

/* Stops an external backend by PID (TERM, deadline, KILL) and reaps it; a held socket
 * stays open (server_stop closes it). Returns the ms it took to exit after SIGTERM. */
int64_t server_stop_backend(struct server *srv);

/* Sends sig to lighttpd (for the shutdown test; SIGHUP to nginx's master reloads it). */
void server_signal(const struct server *srv, int sig);

/* Waits up to timeout_ms for lighttpd to exit and reaps it. Returns true when it did. */
bool server_wait_exit(struct server *srv, int timeout_ms);

/* The responder processes serving this test, first cap of them into pids: lighttpd's
 * backend child, the external backend (nginx's, or lighttpd's with is_external_backend;
 * none while it is stopped), or under Apache every process whose argv[0] is under the
 * test's bin/
 * (mod_fcgid's pool, or one CGI process per open request). Returns how many run. */
size_t server_list_backends(struct server *srv, pid_t *pids, size_t cap);

/* Polls up to timeout_ms for a responder process (see above). Returns the first or -1. */
pid_t server_find_backend(struct server *srv, int timeout_ms);

/* The URL of the responder script itself under Apache ("/fcgi/events.fcgi"), requests to
 * which bypass the rewrite of /api/; NULL under lighttpd. */
const char *server_script_url(void);

/* True when pid no longer runs (no such process, or a zombie left for someone else). */
bool server_is_pid_gone(pid_t pid);

/* Prints the error log, lighttpd's stdio and the SSE_LOG file to stderr. */
void server_dump(const struct server *srv);

#endif
