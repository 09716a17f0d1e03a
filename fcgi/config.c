/*
 * config.c - SSE_* settings from a lookup function (pure, SPEC §7).
 *
 * One table lists every numeric setting with its default and range, so the error for a bad
 * value always names the variable. Lookup order (request parameters, then environment) is the
 * caller's business; this file only parses.
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t offset;          /* of the long in struct config */
    long default_value;
    long min, max;
} NUMERIC_SETTINGS[] = {
    {"SSE_KEEPALIVE_S", offsetof(struct config, keepalive_s), 15, 1, 3600},
    {"SSE_POLL_MS", offsetof(struct config, poll_ms), 250, 10, 60000},
    {"SSE_REPLAY_LIMIT", offsetof(struct config, replay_limit), 1000, 0, 100000},
    {"SSE_MAX_LAG", offsetof(struct config, max_lag), 0, 0, 2147483647},
    {"SSE_RETRY_MS", offsetof(struct config, retry_ms), 3000, 0, 3600000},
    {"SSE_MAX_STREAM_S", offsetof(struct config, max_stream_s), 0, 0, 2147483647},
    {"SSE_THREADS", offsetof(struct config, threads), 1, 1, 100000},
    {"SSE_PROBE_MS", offsetof(struct config, probe_ms), -1, 0, 60000},
    {"SSE_SLOW_CLIENT_S", offsetof(struct config, slow_client_s), 30, 1, 3600},
};

/* Per process: one log target and level serve the process; its stream slots are made once;
 * one watcher per database (store/hub.c) polls for every stream of it, so a request's own
 * SSE_POLL_MS could only ever be the first request's; that watcher is shared by every
 * process of the host through SSE_HUB_DIR, which must be the same for all of them. */
static const char *const PER_PROCESS_NAMES[] = {
    "SSE_LOG", "SSE_LOG_LEVEL", "SSE_THREADS", "SSE_POLL_MS", "SSE_HUB_DIR",
};

const char *
config_per_process_name(size_t i)
{
    return i < sizeof(PER_PROCESS_NAMES) / sizeof(PER_PROCESS_NAMES[0]) ? PER_PROCESS_NAMES[i]
                                                                          : NULL;
}

bool
config_is_per_process(const char *name)
{
    for (size_t i = 0; name != NULL && config_per_process_name(i) != NULL; i++) {
        if (strcmp(name, config_per_process_name(i)) == 0)
            return true;
    }
    return false;
}

void
config_copy_per_process(struct config *c, const struct config *process)
{
    c->log_target = process->log_target;
    c->log_level = process->log_level;
    c->threads = process->threads;
    c->poll_ms = process->poll_ms;
    c->hub_dir = process->hub_dir;
}

int
config_parse_log_level(const char *name, enum log_level *out)
{
    static const char *const NAMES[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (name != NULL && strcmp(name, NAMES[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int
config_parse_long(const char *text, long min, long max, long *out, const char **why)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    bool is_number_start = (text[0] >= '0' && text[0] <= '9') || text[0] == '-';
    if (!is_number_start || *end != '\0' || errno != 0) {
        *why = "not a decimal integer";
        return -1;
    }
    if (value < min || value > max) {
        *why = "out of range";
        return -1;
    }
    *out = value;
    return 0;
}

static int
load_numeric(struct config *c, config_lookup_fn lookup, void *ctx, const char **bad_name,
             const char **why)
{
    for (size_t i = 0; i < sizeof(NUMERIC_SETTINGS) / sizeof(NUMERIC_SETTINGS[0]); i++) {
        long *field = (long *)((char *)c + NUMERIC_SETTINGS[i].offset);
        *field = NUMERIC_SETTINGS[i].default_value;
        const char *text = lookup(ctx, NUMERIC_SETTINGS[i].name);
        if (text == NULL)
            continue;
        if (config_parse_long(text, NUMERIC_SETTINGS[i].min, NUMERIC_SETTINGS[i].max, field,
                              why)) {
            *bad_name = NUMERIC_SETTINGS[i].name;
            return -1;
        }
    }
    return 0;
}

static int
load_strings(struct config *c, config_lookup_fn lookup, void *ctx, const char **bad_name,
             const char **why)
{
    c->db_path = lookup(ctx, "SSE_DB");
    if (c->db_path != NULL && c->db_path[0] == '\0') {
        *bad_name = "SSE_DB";
        *why = "empty path";
        return -1;
    }
    c->cors_origin = lookup(ctx, "SSE_CORS_ORIGIN");
    c->hub_dir = lookup(ctx, "SSE_HUB_DIR");
    if (c->hub_dir == NULL || c->hub_dir[0] == '\0')
        c->hub_dir = "/dev/shm";
    c->log_target = lookup(ctx, "SSE_LOG");
    if (c->log_target != NULL && c->log_target[0] == '\0') {
        *bad_name = "SSE_LOG";
        *why = "must be stderr, syslog or a file path";
        return -1;
    }
    if (auth_parse_mode(lookup(ctx, "SSE_AUTH"), &c->auth_mode) < 0) {
        *bad_name = "SSE_AUTH";
        *why = "must be none, token or jwt";
        return -1;
    }
    c->jwt_secret = lookup(ctx, "SSE_JWT_SECRET");
    c->jwt_secret_file = lookup(ctx, "SSE_JWT_SECRET_FILE");
    if (c->auth_mode == AUTH_MODE_JWT && (c->jwt_secret == NULL || c->jwt_secret[0] == '\0')
        && (c->jwt_secret_file == NULL || c->jwt_secret_file[0] == '\0')) {
        *bad_name = "SSE_JWT_SECRET";
        *why = "SSE_AUTH=jwt needs SSE_JWT_SECRET or SSE_JWT_SECRET_FILE";
        return -1;
    }
    const char *level = lookup(ctx, "SSE_LOG_LEVEL");
    c->log_level = LOG_LEVEL_INFO;
    if (level != NULL && config_parse_log_level(level, &c->log_level) < 0) {
        *bad_name = "SSE_LOG_LEVEL";
        *why = "must be error, warn, info or debug";
        return -1;
    }
    return 0;
}

int
config_load(struct config *c, config_lookup_fn lookup, void *ctx, const char **bad_name,
            const char **why)
{
    memset(c, 0, sizeof(*c));
    if (load_numeric(c, lookup, ctx, bad_name, why) < 0)
        return -1;
    return load_strings(c, lookup, ctx, bad_name, why);
}

long
config_probe_ms(const struct config *c, const char *server_software, bool is_cgi)
{
    if (c->probe_ms >= 0)
        return c->probe_ms;
    bool is_apache = server_software != NULL && strncmp(server_software, "Apache", 6) == 0;
    return is_apache || is_cgi ? 500 : 0;
}
