/*
 * logwait.h - waiting for a line in a log file, with a deadline.
 *
 * The responder logs to SSE_LOG (a file in the test's temp dir, see server.h). These helpers
 * re-read the file every few ms until a line holds every given substring or the deadline
 * passes; a miss fails the test and prints the file. Not thread-safe.
 */
#ifndef SSE_TEST_LOGWAIT_H
#define SSE_TEST_LOGWAIT_H

#include <stdbool.h>
#include <stdint.h>

/* Polls path up to timeout_ms for a line containing needle and, when also is not NULL,
 * also. Returns the ms waited, or -1 on timeout. */
int64_t logwait_for_line(const char *path, const char *needle, const char *also,
                         int timeout_ms);

/* Like logwait_for_line, but a timeout fails the test (printing the file). Returns the ms
 * waited. */
int64_t logwait_expect_line(const char *path, const char *needle, const char *also,
                            int timeout_ms);

/* Polls up to timeout_ms until at least min_count lines contain needle (and also); a
 * timeout fails the test. Returns the ms waited. */
int64_t logwait_expect_count(const char *path, const char *needle, const char *also,
                             int min_count, int timeout_ms);

/* Counts the lines of path that contain needle and, when not NULL, also (no waiting). */
int logwait_count_lines(const char *path, const char *needle, const char *also);

#endif
