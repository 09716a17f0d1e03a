/*
 * log.c - the one place that writes log lines (SPEC §6).
 *
 * A line is formatted into a stack buffer and written with a single write(), so lines from
 * different threads never interleave. Lines to a file (SSE_LOG=/path) start with a UTC
 * timestamp, because nothing else stamps them; stderr goes to the web server's error log,
 * which stamps its own. Never log event data or anything secret.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum { LOG_LINE_MAX = 1024 };

/* Process-wide; atomics so any thread may log while another reconfigures. */
static atomic_int current_level = LOG_LEVEL_INFO;
static atomic_int current_fd = STDERR_FILENO;     /* -1 means syslog */
static atomic_bool is_file_target = false;
static pthread_mutex_t target_lock = PTHREAD_MUTEX_INITIALIZER;  /* guards target_name */
static char target_name[4096] = "stderr";                        /* the SSE_LOG in use */

void
log_set_level(enum log_level level)
{
    atomic_store(&current_level, (int)level);
}

bool
log_is_enabled(enum log_level level)
{
    return (int)level <= atomic_load(&current_level);
}

/* Switches to target; the caller holds target_lock. */
static int
switch_target(const char *target)
{
    if (strcmp(target, "stderr") == 0) {
        atomic_store(&is_file_target, false);
        atomic_store(&current_fd, STDERR_FILENO);
    } else if (strcmp(target, "syslog") == 0) {
        openlog("sse-fcgi", LOG_PID, LOG_DAEMON);
        atomic_store(&is_file_target, false);
        atomic_store(&current_fd, -1);
    } else {
        int fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0)
            return -errno;
        /* The previous file stays open: another thread may be writing to it. main.c opens
         * the target once, at start-up (SSE_LOG is per process), so none is left behind. */
        atomic_store(&current_fd, fd);
        atomic_store(&is_file_target, true);
    }
    snprintf(target_name, sizeof(target_name), "%s", target);
    return 0;
}

int
log_open(const char *target)
{
    if (target == NULL)
        target = "stderr";
    pthread_mutex_lock(&target_lock);
    int rc = strcmp(target, target_name) == 0 ? 0 : switch_target(target);
    pthread_mutex_unlock(&target_lock);
    return rc;
}

/* Writes "<timestamp> " into line for file targets; returns its length. */
static size_t
format_time_prefix(char *line, size_t size)
{
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(line, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(line + n, size - n, ".%03ldZ ", now.tv_nsec / 1000000);
    return n + (m > 0 ? (size_t)m : 0);
}

void
log_line(enum log_level level, const char *fmt, ...)
{
    if (!log_is_enabled(level))
        return;
    char line[LOG_LINE_MAX + 64];
    size_t n = atomic_load(&is_file_target) ? format_time_prefix(line, sizeof(line)) : 0;
    n += (size_t)snprintf(line + n, sizeof(line) - n, "sse ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, LOG_LINE_MAX - n, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : (n + (size_t)m >= LOG_LINE_MAX ? LOG_LINE_MAX - 1 : n + (size_t)m);
    int fd = atomic_load(&current_fd);
    if (fd < 0) {
        line[n] = '\0';
        syslog(level == LOG_LEVEL_ERROR ? LOG_ERR : level == LOG_LEVEL_WARN ? LOG_WARNING
               : level == LOG_LEVEL_INFO ? LOG_INFO : LOG_DEBUG, "%s", line);
        return;
    }
    line[n++] = '\n';
    ssize_t written = write(fd, line, n);
    (void)written;  /* nowhere left to report a failing log */
}

const char *
log_clean(const char *value, char *out, size_t out_size)
{
    if (value == NULL) {
        snprintf(out, out_size, "-");
        return out;
    }
    size_t i = 0;
    for (; value[i] != '\0' && i + 1 < out_size; i++) {
        unsigned char c = (unsigned char)value[i];
        out[i] = (c <= 0x20 || c >= 0x7F || c == '=') ? '?' : (char)c;
    }
    out[i] = '\0';
    if (value[i] != '\0' && out_size > 4)
        memcpy(out + out_size - 4, "...", 4);
    return out;
}
