/*
 * main.c - the one test runner: every unit suite, then every integration suite, in one Check
 * SRunner, so that the last line is the whole suite's "N passed, N failed".
 *
 * Check forks each test, enforces its timeout and kills the test's process group afterwards,
 * so a hung or crashed test cannot hang the suite or leave servers behind.
 * Suites listed as FRONT_SUITE run once per front end (suffix _fcgid, _cgi for Apache).
 * CK_RUN_SUITE / CK_RUN_CASE select tests; CK_FORK=no runs in-process (gdb).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/lib/server.h"

#define SUITE(name) Suite *suite_##name(void);
#define FRONT_SUITE(name) SUITE(name)
#define FCGID_SUITE(name) SUITE(name)
#include "unit/suites.def"
#include "integration/suites.def"
#undef SUITE
#undef FRONT_SUITE
#undef FCGID_SUITE

/* Builds one suite for one front end. */
static void
add_suite_for(SRunner *runner, Suite *(*make)(void), enum server_front_end front_end)
{
    server_building_front_end = front_end;
    srunner_add_suite(runner, make());
    server_building_front_end = SERVER_LIGHTTPD;
}

/* A FRONT_SUITE runs once per front end: lighttpd, Apache + mod_fcgid, Apache + CGI. */
static void
add_front_suites(SRunner *runner, Suite *(*make)(void))
{
    for (int fe = 0; fe < SERVER_FRONT_END_COUNT; fe++)
        add_suite_for(runner, make, (enum server_front_end)fe);
}

int
main(void)
{
    SRunner *runner = srunner_create(NULL);
#define SUITE(name) srunner_add_suite(runner, suite_##name());
#define FRONT_SUITE(name) add_front_suites(runner, suite_##name);
#define FCGID_SUITE(name) add_suite_for(runner, suite_##name, SERVER_APACHE_FCGID);
#include "unit/suites.def"
#include "integration/suites.def"
#undef SUITE
#undef FRONT_SUITE
#undef FCGID_SUITE
    srunner_run_all(runner, CK_NORMAL);
    int run = srunner_ntests_run(runner);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    printf("%d passed, %d failed\n", run - failed, failed);
    return failed == 0 && run > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
