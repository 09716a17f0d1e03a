/*
 * log.h - the only writer of log lines (SPEC §6, STYLE §7).
 *
 * Every line is "sse <verb> key=value ..." written with one write(), so lines from different
 * threads never interleave. Values that come from clients or rows go through log_clean first.
 * All functions are thread-safe.
 */
#ifndef SSE_LOG_H
#define SSE_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Sends lines to "stderr" (NULL too), "syslog", or appends them to a file path; naming the
 * target already in use does nothing. Returns 0, or -errno when the file cannot be opened
 * (the previous target stays). */
int log_open(const char *target);

/* Sets the most verbose level written. */
void log_set_level(enum log_level level);

/* True when a line at this level would be written. */
bool log_is_enabled(enum log_level level);

/* Writes "sse " + the formatted text + "\n" when level is enabled. Lines are cut at 1 KiB. */
void log_line(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies value into out (out_size > 0) for use as a log value: bytes outside printable ASCII,
 * spaces and '=' become '?', and long values are cut with "...". NULL gives "-". Returns out. */
const char *log_clean(const char *value, char *out, size_t out_size);

#endif
