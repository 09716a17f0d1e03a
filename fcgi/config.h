/*
 * config.h - the SSE_* settings (SPEC §7), parsed without I/O (pure).
 *
 * Values come through a lookup function, which main.c points at the process environment and
 * stream.c at the request's FastCGI parameters first and the process environment second
 * (per-process settings aside: those come from the process, see config_is_per_process). A
 * bad value is an error that names the variable. Strings in struct config are borrowed from
 * the lookup's source.
 */
#ifndef SSE_CONFIG_H
#define SSE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"


/* SSE_LOG_LEVEL values; log.h filters on them. */
enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

/* Parses "error|warn|info|debug". Returns 0, or -1 for anything else. */
int config_parse_log_level(const char *name, enum log_level *out);

/* Parses a decimal integer in [min, max]: digits with an optional leading '-', nothing
 * else (no sign '+', no spaces, no suffix). Returns 0 and *out, or -1 with *why set to a
 * static reason ("not a decimal integer", "out of range"). Thread-safe. */
int config_parse_long(const char *text, long min, long max, long *out, const char **why);

struct config {
    const char *db_path;       /* SSE_DB; NULL when unset (requests then get 503) */
    long keepalive_s;          /* SSE_KEEPALIVE_S, 1..3600, default 15 */
    long poll_ms;              /* SSE_POLL_MS, 10..60000, default 250 */
    long replay_limit;         /* SSE_REPLAY_LIMIT, 0..100000, default 1000 */
    long max_lag;              /* SSE_MAX_LAG, 0..2^31-1, default 0 = never shed */
    long retry_ms;             /* SSE_RETRY_MS, 0..3600000, default 3000 */
    long max_stream_s;         /* SSE_MAX_STREAM_S, 0..2^31-1, default 0 = never */
    long threads;              /* SSE_THREADS, 1..100000, default 1: streams one process
                                * serves at once (each was a thread before issue 13) */
    long probe_ms;             /* SSE_PROBE_MS, 0..60000; -1 = not set (pick by server) */
    long slow_client_s;        /* SSE_SLOW_CLIENT_S, 1..3600, default 30: a stream whose
                                * client takes no byte for this long while output waits
                                * ends with reason=slow_client (issue 13) */
    const char *cors_origin;   /* SSE_CORS_ORIGIN; NULL = no CORS headers */
    enum auth_mode auth_mode;  /* SSE_AUTH: none (default), token or jwt */
    const char *jwt_secret;    /* SSE_JWT_SECRET: the HS256 key, or NULL */
    const char *jwt_secret_file; /* SSE_JWT_SECRET_FILE: a file holding it, or NULL */
    enum log_level log_level;  /* SSE_LOG_LEVEL, default info */
    const char *log_target;    /* SSE_LOG: stderr (default), syslog or a file path */
    const char *hub_dir;       /* SSE_HUB_DIR: where the host's shared hub lives (default
                                * /dev/shm); "off" = a private hub per process */
};

/* Returns the value of a variable, or NULL when unset. */
typedef const char *(*config_lookup_fn)(void *ctx, const char *name);

/* Fills *c with defaults, then with every variable lookup() knows. Returns 0, or -1 with
 * *bad_name set to the variable and *why to a static reason. Thread-safe. */
int config_load(struct config *c, config_lookup_fn lookup, void *ctx, const char **bad_name,
                const char **why);

/* The settings that belong to the process, not to one request: SSE_LOG, SSE_LOG_LEVEL,
 * SSE_THREADS, SSE_POLL_MS and SSE_HUB_DIR (README "Configuration"). main.c reads them once, at start,
 * from the environment; a request's parameters cannot change them. Returns the i-th name,
 * or NULL when i is past the last. Thread-safe. */
const char *config_per_process_name(size_t i);

/* True when name is one of config_per_process_name's. NULL is false. Thread-safe. */
bool config_is_per_process(const char *name);

/* Copies the per-process fields (log_target, log_level, threads, poll_ms,
 * hub_dir) of process into
 * c, leaving every other field of c as it is. Strings stay borrowed from process's source. */
void config_copy_per_process(struct config *c, const struct config *process);

/* SSE_PROBE_MS when set, else the SPEC §4.10 default: 500 under Apache (server_software
 * starts with "Apache") or plain CGI, 0 (off) elsewhere. */
long config_probe_ms(const struct config *c, const char *server_software, bool is_cgi);

#endif
