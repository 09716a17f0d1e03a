/*
 * main.c - the one test runner: every unit suite, then every integration suite, in one Check
 * SRunner, so that the last line is the whole suite's "N passed, N failed".
 *
 * Check forks each test, enforces its timeout and kills the test's process group afterwards,
 * so a hung or crashed test cannot hang the suite or leave servers behind.
 * CK_RUN_SUITE / CK_RUN_CASE select tests; CK_FORK=no runs in-process (gdb).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define SUITE(name) Suite *suite_##name(void);
#include "unit/suites.def"
#include "integration/suites.def"
#undef SUITE

int
main(void)
{
    SRunner *runner = srunner_create(NULL);
#define SUITE(name) srunner_add_suite(runner, suite_##name());
#include "unit/suites.def"
#include "integration/suites.def"
#undef SUITE
    srunner_run_all(runner, CK_NORMAL);
    int run = srunner_ntests_run(runner);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    printf("%d passed, %d failed\n", run - failed, failed);
    return failed == 0 && run > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
