/*
 * logwait.c - poll a log file for a line (see logwait.h).
 *
 * The whole file is re-read on every poll (test logs are small, at most 1 MiB is looked
 * at); a line only counts once its newline is there, so a half-written line never matches.
 */
#include "tests/lib/logwait.h"

#include <stdlib.h>
#include <string.h>

#include "tests/lib/diag.h"
#include "tests/lib/testenv.h"

enum { LOGWAIT_FILE_MAX = 1 << 20 };

/* Counts the complete lines of path that match; stops at the first unless counting. */
static int
scan_file(const char *path, const char *needle, const char *also, bool is_counting)
{
    char *text = malloc(LOGWAIT_FILE_MAX);
    DIAG_CHECK(text != NULL, "out of memory");
    testenv_read_file(path, text, LOGWAIT_FILE_MAX);
    int count = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        if (strstr(line, needle) && (also == NULL || strstr(line, also)))
            count++;
        if (count > 0 && !is_counting)
            break;
    }
    free(text);
    return count;
}

int
logwait_count_lines(const char *path, const char *needle, const char *also)
{
    return scan_file(path, needle, also, true);
}

int64_t
logwait_for_line(const char *path, const char *needle, const char *also, int timeout_ms)
{
    int64_t start = testenv_now_ms();
    for (;;) {
        if (scan_file(path, needle, also, false) > 0)
            return testenv_now_ms() - start;
        if (testenv_now_ms() - start >= timeout_ms)
            return -1;
        testenv_poll_step();
    }
}

int64_t
logwait_expect_line(const char *path, const char *needle, const char *also, int timeout_ms)
{
    int64_t waited_ms = logwait_for_line(path, needle, also, timeout_ms);
    DIAG_CHECK(waited_ms >= 0, "no line with '%s'%s%s in %s within %d ms", needle,
               also ? " and " : "", also ? also : "", path, timeout_ms);
    return waited_ms;
}

int64_t
logwait_expect_count(const char *path, const char *needle, const char *also, int min_count,
                     int timeout_ms)
{
    int64_t start = testenv_now_ms();
    int count;
    while ((count = scan_file(path, needle, also, true)) < min_count
           && testenv_now_ms() - start < timeout_ms)
        testenv_poll_step();
    DIAG_CHECK(count >= min_count, "%d lines with '%s'%s%s in %s within %d ms, expected %d",
               count, needle, also ? " and " : "", also ? also : "", path, timeout_ms,
               min_count);
    return testenv_now_ms() - start;
}
