/*
 * main.c - the one test runner: every unit suite, then every integration suite, so that the
 * last line is the whole suite's "N passed, N failed".
 *
 * Check forks each test, enforces its timeout and kills the test's process group afterwards,
 * so a hung or crashed test cannot hang the suite or leave servers behind.
 * Suites listed as FRONT_SUITE run once per front end (suffix _fcgid, _cgi for Apache,
 * _nginx for nginx).
 * CK_RUN_SUITE / CK_RUN_CASE select tests; CK_FORK=no runs in-process (gdb).
 *
 * Two lanes run side by side, each its own SRunner in a child process: every test picks
 * its own ports and temp dir, so they share nothing. The second lane holds the suites that
 * mostly wait (on PostgreSQL, on keepalives, on a restart), so that the suites that measure
 * time or memory (load, backpressure, hub, memory) keep the first lane and stay as quiet
 * as they were alone. SECOND_LANE names suites as suites.def does, and takes every front
 * end's copy of a FRONT_SUITE with them; FIRST_LANE names single copies, by the name they
 * run under ("browser_nginx"), that stay in the first lane all the same. The nginx copies
 * (issue 15, about 45 s in all) are all in the first: measured with the Check XML log of
 * one `make test`, the second lane took 368 s and the first 263 s, 58 s of them a hub
 * test that timed out then and takes 9 s now. A lane runs its suites one after another,
 * so those copies never run beside the first lane's suites that measure, only beside the
 * second's, which mostly wait. A selection (CK_RUN_SUITE, CK_RUN_CASE), CK_FORK=no or
 * SSE_TEST_LANES=1 runs one lane, in this process.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/server.h"

#define SUITE(name) Suite *suite_##name(void);
#define FRONT_SUITE(name) SUITE(name)
#define FCGID_SUITE(name) SUITE(name)
#define NGINX_SUITE(name) SUITE(name)
#include "unit/suites.def"
#include "integration/suites.def"
#undef SUITE
#undef FRONT_SUITE
#undef FCGID_SUITE
#undef NGINX_SUITE

enum { LANE_ALL = -1, LANE_COUNT = 2 };

/* The second lane's suites (suites.def names, every copy of a FRONT_SUITE), but for the
 * copies FIRST_LANE names as they run; every other suite is the first's. */
static const char *const SECOND_LANE[] = {
    "pg_schema", "relay", "pg_producers", "php", "standard", "faults", "external", "prune",
    "store", "check", "db", "explain", "schema", "worker", "replay", "access", "browser",
    "routes", "install", "deb", NULL,
};

static const char *const FIRST_LANE[] = {
    "routes_nginx", "worker_nginx", "replay_nginx", "standard_nginx", "access_nginx",
    "browser_nginx", "external_nginx", NULL,
};

static bool
is_listed(const char *const *list, const char *name)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

/* The lane of suite name as it runs against front_end. */
static int
lane_of(const char *name, enum server_front_end front_end)
{
    char copy[64];
    snprintf(copy, sizeof(copy), "%s%s", name, server_front_end_suffix(front_end));
    return is_listed(SECOND_LANE, name) && !is_listed(FIRST_LANE, copy) ? 1 : 0;
}

/* Builds one suite for one front end. */
static void
add_suite_for(SRunner *runner, Suite *(*make)(void), enum server_front_end front_end)
{
    server_building_front_end = front_end;
    srunner_add_suite(runner, make());
    server_building_front_end = SERVER_LIGHTTPD;
}

/* Builds one suite for one front end when its copy belongs to lane (LANE_ALL: always). */
static void
add_suite_in(SRunner *runner, int lane, const char *name, Suite *(*make)(void),
             enum server_front_end front_end)
{
    if (lane == LANE_ALL || lane_of(name, front_end) == lane)
        add_suite_for(runner, make, front_end);
}

/* A FRONT_SUITE runs once per front end: lighttpd, Apache + mod_fcgid, Apache + CGI, nginx;
 * each copy in its own lane (LANE_ALL: every copy). */
static void
add_front_suites(SRunner *runner, int lane, const char *name, Suite *(*make)(void))
{
    for (int fe = 0; fe < SERVER_FRONT_END_COUNT; fe++)
        add_suite_in(runner, lane, name, make, (enum server_front_end)fe);
}

/* Runs lane's suites (LANE_ALL: every suite). Returns the tests run and sets *failed. */
static int
run_lane(int lane, int *failed)
{
    SRunner *runner = srunner_create(NULL);
#define PICKED(name) (lane == LANE_ALL || lane_of(#name, SERVER_LIGHTTPD) == lane)
#define SUITE(name) if (PICKED(name)) srunner_add_suite(runner, suite_##name());
#define FRONT_SUITE(name) add_front_suites(runner, lane, #name, suite_##name);
#define FCGID_SUITE(name) add_suite_in(runner, lane, #name, suite_##name, SERVER_APACHE_FCGID);
#define NGINX_SUITE(name) add_suite_in(runner, lane, #name, suite_##name, SERVER_NGINX);
#include "unit/suites.def"
#include "integration/suites.def"
#undef SUITE
#undef FRONT_SUITE
#undef FCGID_SUITE
#undef NGINX_SUITE
#undef PICKED
    srunner_run_all(runner, CK_NORMAL);
    int run = srunner_ntests_run(runner);
    *failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return run;
}

static bool
is_one_lane(void)
{
    const char *lanes = getenv("SSE_TEST_LANES");
    const char *fork_mode = getenv("CK_FORK");
    return getenv("CK_RUN_SUITE") != NULL || getenv("CK_RUN_CASE") != NULL ||
           (fork_mode != NULL && strcmp(fork_mode, "no") == 0) ||
           (lanes != NULL && strcmp(lanes, "1") == 0);
}

/* Each lane in a child that writes "run failed" to its pipe; a lane that dies without a
 * report counts as one failure. */
static int
run_lanes(int *failed)
{
    int fds[LANE_COUNT][2];
    pid_t pids[LANE_COUNT];
    fflush(NULL);
    for (int lane = 0; lane < LANE_COUNT; lane++) {
        if (pipe(fds[lane]) != 0 || (pids[lane] = fork()) < 0) {
            perror("run-tests: lanes");
            exit(EXIT_FAILURE);
        }
        if (pids[lane] == 0) {
            close(fds[lane][0]);
            /* each lane its own XML log (CK_XML_LOG_FILE_NAME), or the last one wins */
            const char *xml = getenv("CK_XML_LOG_FILE_NAME");
            if (xml != NULL && lane > 0) {
                char name[4096];
                snprintf(name, sizeof(name), "%s.lane%d", xml, lane + 1);
                setenv("CK_XML_LOG_FILE_NAME", name, 1);
            }
            int lane_failed;
            int lane_run = run_lane(lane, &lane_failed);
            dprintf(fds[lane][1], "%d %d\n", lane_run, lane_failed);
            fflush(NULL);
            _exit(0);
        }
        close(fds[lane][1]);
    }
    int run = 0;
    *failed = 0;
    for (int lane = 0; lane < LANE_COUNT; lane++) {
        char report[64] = "";
        ssize_t n = read(fds[lane][0], report, sizeof(report) - 1);
        int lane_run = 0, lane_failed = 0;
        if (n <= 0 || sscanf(report, "%d %d", &lane_run, &lane_failed) != 2) {
            fprintf(stderr, "run-tests: lane %d ended without a report\n", lane + 1);
            lane_failed = 1;
        }
        close(fds[lane][0]);
        waitpid(pids[lane], NULL, 0);
        run += lane_run;
        *failed += lane_failed;
    }
    return run;
}

int
main(void)
{
    int failed;
    int run = is_one_lane() ? run_lane(LANE_ALL, &failed) : run_lanes(&failed);
    printf("%d passed, %d failed\n", run - failed, failed);
    return failed == 0 && run > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
