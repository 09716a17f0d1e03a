/*
 * test_config.c - the SSE_* settings (fcgi/config.h, SPEC §7) through a fake lookup.
 *
 * Covers: every default (a lookup that knows nothing); every variable parsed, at the low and
 * the high end of its range; a table of bad values ("", "abc", "-1", "1x", one past each end
 * of the range, huge) each refused with bad_name naming the variable and a reason; the probe
 * default per server (SPEC §4.10) and an explicit SSE_PROBE_MS winning; config_parse_log_level;
 * which settings are per process, and copying those into a request's configuration.
 */
#include <check.h>
#include <stddef.h>
#include <string.h>

#include "fcgi/config.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* A lookup over a NULL-terminated list of "NAME", "value" pairs (ctx; NULL knows nothing). */
static const char *
lookup_pairs(void *ctx, const char *name)
{
    const char *const *pairs = ctx;
    for (size_t i = 0; pairs != NULL && pairs[i] != NULL; i += 2) {
        if (strcmp(pairs[i], name) == 0)
            return pairs[i + 1];
    }
    return NULL;
}

static int
load(struct config *c, const char *const *pairs, const char **bad, const char **why)
{
    *bad = NULL;
    *why = NULL;
    return config_load(c, lookup_pairs, (void *)pairs, bad, why);
}

START_TEST(test_defaults)
{
    struct config c;
    const char *bad, *why;
    memset(&c, 0x5a, sizeof(c));
    ck_assert_int_eq(load(&c, NULL, &bad, &why), 0);
    ck_assert_ptr_null(c.db_path);
    ck_assert_int_eq(c.keepalive_s, 15);
    ck_assert_int_eq(c.poll_ms, 250);
    ck_assert_int_eq(c.replay_limit, 1000);
    ck_assert_int_eq(c.max_lag, 0);
    ck_assert_int_eq(c.retry_ms, 3000);
    ck_assert_int_eq(c.max_stream_s, 0);
    ck_assert_int_eq(c.threads, 1);
    ck_assert_int_eq(c.probe_ms, -1);
    ck_assert_int_eq(c.log_level, LOG_LEVEL_INFO);
    ck_assert_ptr_null(c.cors_origin);
    ck_assert(c.log_target == NULL || strcmp(c.log_target, "stderr") == 0);
}
END_TEST

/* One variable at a time, so that each is known to be read under its own name. */
static const struct {
    const char *name;
    const char *value;
    size_t offset;
    long expected;
} VALUES[] = {
    {"SSE_KEEPALIVE_S", "1", offsetof(struct config, keepalive_s), 1},
    {"SSE_KEEPALIVE_S", "3600", offsetof(struct config, keepalive_s), 3600},
    {"SSE_POLL_MS", "10", offsetof(struct config, poll_ms), 10},
    {"SSE_POLL_MS", "60000", offsetof(struct config, poll_ms), 60000},
    {"SSE_REPLAY_LIMIT", "0", offsetof(struct config, replay_limit), 0},
    {"SSE_REPLAY_LIMIT", "100000", offsetof(struct config, replay_limit), 100000},
    {"SSE_MAX_LAG", "0", offsetof(struct config, max_lag), 0},
    {"SSE_MAX_LAG", "5", offsetof(struct config, max_lag), 5},
    {"SSE_MAX_LAG", "2147483647", offsetof(struct config, max_lag), 2147483647L},
    {"SSE_RETRY_MS", "0", offsetof(struct config, retry_ms), 0},
    {"SSE_RETRY_MS", "3600000", offsetof(struct config, retry_ms), 3600000},
    {"SSE_MAX_STREAM_S", "270", offsetof(struct config, max_stream_s), 270},
    {"SSE_MAX_STREAM_S", "2147483647", offsetof(struct config, max_stream_s), 2147483647L},
    {"SSE_THREADS", "1", offsetof(struct config, threads), 1},
    {"SSE_THREADS", "4096", offsetof(struct config, threads), 4096},
    {"SSE_PROBE_MS", "0", offsetof(struct config, probe_ms), 0},
    {"SSE_PROBE_MS", "60000", offsetof(struct config, probe_ms), 60000},
};

START_TEST(test_numeric_value)
{
    const char *pairs[] = {VALUES[_i].name, VALUES[_i].value, NULL};
    struct config c;
    const char *bad, *why;
    ck_assert_msg(load(&c, pairs, &bad, &why) == 0, "%s=%s refused: %s", VALUES[_i].name,
                  VALUES[_i].value, why ? why : "");
    long got = *(const long *)((const char *)&c + VALUES[_i].offset);
    ck_assert_int_eq(got, VALUES[_i].expected);
}
END_TEST

START_TEST(test_string_values)
{
    const char *pairs[] = {
        "SSE_DB", "/x/e.db", "SSE_LOG_LEVEL", "debug", "SSE_LOG", "syslog",
        "SSE_CORS_ORIGIN", "https://a.example,https://b.example", "SSE_THREADS", "8", NULL,
    };
    struct config c;
    const char *bad, *why;
    ck_assert_int_eq(load(&c, pairs, &bad, &why), 0);
    ck_assert_str_eq(c.db_path, "/x/e.db");
    ck_assert_int_eq(c.log_level, LOG_LEVEL_DEBUG);
    ck_assert_str_eq(c.log_target, "syslog");
    ck_assert_str_eq(c.cors_origin, "https://a.example,https://b.example");
    ck_assert_int_eq(c.threads, 8);
    ck_assert_int_eq(c.keepalive_s, 15);  /* the others keep their defaults */
    const char *file[] = {"SSE_LOG", "/var/log/sse.log", "SSE_LOG_LEVEL", "error", NULL};
    ck_assert_int_eq(load(&c, file, &bad, &why), 0);
    ck_assert_str_eq(c.log_target, "/var/log/sse.log");
    ck_assert_int_eq(c.log_level, LOG_LEVEL_ERROR);
}
END_TEST

static const char *const NUMERIC_NAMES[] = {
    "SSE_KEEPALIVE_S", "SSE_POLL_MS", "SSE_REPLAY_LIMIT", "SSE_MAX_LAG", "SSE_RETRY_MS",
    "SSE_MAX_STREAM_S", "SSE_THREADS", "SSE_PROBE_MS",
};
static const char *const BAD_NUMBERS[] = {
    "", "abc", "-1", "1x", "x1", "1.5", "1e3", "0x10", "99999999999999999999",
    "9223372036854775808", "-9223372036854775809", "1\n", "5 5", " 1", "\t1", "+1", "-",
    "\r1",
};

/* Every bad number for every numeric variable: _i walks the cross product. */
START_TEST(test_bad_number)
{
    const char *name = NUMERIC_NAMES[_i / COUNT(BAD_NUMBERS)];
    const char *value = BAD_NUMBERS[_i % COUNT(BAD_NUMBERS)];
    const char *pairs[] = {name, value, NULL};
    struct config c;
    const char *bad, *why;
    ck_assert_msg(load(&c, pairs, &bad, &why) == -1, "%s=\"%s\" accepted", name, value);
    ck_assert_ptr_nonnull(bad);
    ck_assert_str_eq(bad, name);
    ck_assert_ptr_nonnull(why);
}
END_TEST

static const char *const OUT_OF_RANGE[][2] = {
    {"SSE_KEEPALIVE_S", "0"}, {"SSE_KEEPALIVE_S", "3601"}, {"SSE_POLL_MS", "9"},
    {"SSE_POLL_MS", "60001"}, {"SSE_REPLAY_LIMIT", "100001"}, {"SSE_MAX_LAG", "2147483648"},
    {"SSE_RETRY_MS", "3600001"}, {"SSE_MAX_STREAM_S", "2147483648"}, {"SSE_THREADS", "0"},
    {"SSE_THREADS", "100001"}, {"SSE_PROBE_MS", "60001"}, {"SSE_LOG_LEVEL", "verbose"},
    {"SSE_LOG_LEVEL", ""}, {"SSE_LOG_LEVEL", "INFO"}, {"SSE_LOG_LEVEL", "info "},
};

START_TEST(test_out_of_range)
{
    const char *pairs[] = {OUT_OF_RANGE[_i][0], OUT_OF_RANGE[_i][1], NULL};
    struct config c;
    const char *bad, *why;
    ck_assert_msg(load(&c, pairs, &bad, &why) == -1, "%s=\"%s\" accepted", pairs[0], pairs[1]);
    ck_assert_ptr_nonnull(bad);
    ck_assert_str_eq(bad, OUT_OF_RANGE[_i][0]);
    ck_assert_ptr_nonnull(why);
}
END_TEST

/* A bad value among good ones is still found and named. */
START_TEST(test_bad_among_good)
{
    const char *pairs[] = {
        "SSE_DB", "/x/e.db", "SSE_KEEPALIVE_S", "20", "SSE_THREADS", "many",
        "SSE_LOG_LEVEL", "warn", NULL,
    };
    struct config c;
    const char *bad, *why;
    ck_assert_int_eq(load(&c, pairs, &bad, &why), -1);
    ck_assert_str_eq(bad, "SSE_THREADS");
}
END_TEST

static const struct {
    const char *probe;          /* SSE_PROBE_MS, or NULL */
    const char *server_software;
    bool is_cgi;
    long expected;
} PROBES[] = {
    {NULL, "Apache/2.4.62 (Debian)", false, 500}, {NULL, "Apache", false, 500},
    {NULL, "Apache/2.4.62 (Debian)", true, 500}, {NULL, "lighttpd/1.4.69", true, 500},
    {NULL, NULL, true, 500}, {NULL, "lighttpd/1.4.69", false, 0}, {NULL, NULL, false, 0},
    {NULL, "", false, 0}, {NULL, "nginx/1.22", false, 0},
    {"200", "Apache/2.4.62", false, 200}, {"200", "lighttpd/1.4.69", false, 200},
    {"0", "Apache/2.4.62", true, 0}, {"60000", NULL, false, 60000},
};

START_TEST(test_probe_ms)
{
    const char *pairs[] = {"SSE_PROBE_MS", PROBES[_i].probe, NULL};
    struct config c;
    const char *bad, *why;
    ck_assert_int_eq(load(&c, PROBES[_i].probe ? pairs : NULL, &bad, &why), 0);
    long got = config_probe_ms(&c, PROBES[_i].server_software, PROBES[_i].is_cgi);
    ck_assert_msg(got == PROBES[_i].expected, "row %d: %ld", _i, got);
}
END_TEST

static const struct {
    const char *name;
    int rc;
    enum log_level level;
} LEVELS[] = {
    {"error", 0, LOG_LEVEL_ERROR}, {"warn", 0, LOG_LEVEL_WARN}, {"info", 0, LOG_LEVEL_INFO},
    {"debug", 0, LOG_LEVEL_DEBUG}, {NULL, -1, 0}, {"", -1, 0}, {"WARN", -1, 0},
    {"warning", -1, 0}, {"info\n", -1, 0}, {" info", -1, 0}, {"deb", -1, 0}, {"2", -1, 0},
};

START_TEST(test_parse_log_level)
{
    enum log_level level = LOG_LEVEL_DEBUG + 1;
    int rc = config_parse_log_level(LEVELS[_i].name, &level);
    ck_assert_msg(rc == LEVELS[_i].rc, "\"%s\": %d", LEVELS[_i].name ? LEVELS[_i].name : "",
                  rc);
    if (rc == 0)
        ck_assert_int_eq(level, LEVELS[_i].level);
}
END_TEST

/* SSE_AUTH and the JWT secret it needs. */
START_TEST(test_auth_settings)
{
    struct config c;
    const char *bad, *why;
    const char *const jwt[] = {"SSE_AUTH", "jwt", "SSE_JWT_SECRET_FILE", "/etc/key", NULL};
    ck_assert_int_eq(load(&c, jwt, &bad, &why), 0);
    ck_assert_int_eq(c.auth_mode, AUTH_MODE_JWT);
    ck_assert_str_eq(c.jwt_secret_file, "/etc/key");
    const char *const no_secret[] = {"SSE_AUTH", "jwt", "SSE_JWT_SECRET", "", NULL};
    ck_assert_int_eq(load(&c, no_secret, &bad, &why), -1);
    ck_assert_str_eq(bad, "SSE_JWT_SECRET");
    const char *const bogus[] = {"SSE_AUTH", "basic", NULL};
    ck_assert_int_eq(load(&c, bogus, &bad, &why), -1);
    ck_assert_str_eq(bad, "SSE_AUTH");
    ck_assert_int_eq(load(&c, NULL, &bad, &why), 0);
    ck_assert_int_eq(c.auth_mode, AUTH_MODE_NONE);
}
END_TEST

/* README "Configuration": which settings belong to the process, not to a request. */
START_TEST(test_per_process_names)
{
    static const char *const expected[] = {"SSE_LOG", "SSE_LOG_LEVEL", "SSE_THREADS",
                                           "SSE_POLL_MS", "SSE_HUB_DIR"};
    size_t n = 0;
    while (config_per_process_name(n) != NULL)
        n++;
    ck_assert_uint_eq(n, (size_t)COUNT(expected));
    for (int i = 0; i < COUNT(expected); i++) {
        ck_assert_str_eq(config_per_process_name((size_t)i), expected[i]);
        ck_assert(config_is_per_process(expected[i]));
    }
    ck_assert_ptr_null(config_per_process_name((size_t)-1));
    static const char *const per_request[] = {
        "SSE_DB", "SSE_KEEPALIVE_S", "SSE_REPLAY_LIMIT", "SSE_MAX_LAG", "SSE_RETRY_MS",
        "SSE_MAX_STREAM_S", "SSE_CORS_ORIGIN", "SSE_PROBE_MS", "SSE_AUTH", "SSE_JWT_SECRET",
        "SSE_JWT_SECRET_FILE", "", "SSE_LOG_", "SSE_LO", "sse_log", "SSE_LOG ", "SSE_LOGX",
        "SSE_THREADS\n",
    };
    for (int i = 0; i < COUNT(per_request); i++)
        ck_assert_msg(!config_is_per_process(per_request[i]), "%s", per_request[i]);
    ck_assert(!config_is_per_process(NULL));
}
END_TEST

/* A request's configuration takes the process's per-process values and keeps its own. */
START_TEST(test_copy_per_process)
{
    const char *const process_pairs[] = {
        "SSE_LOG", "/var/log/p.log", "SSE_LOG_LEVEL", "warn", "SSE_THREADS", "8",
        "SSE_POLL_MS", "1000", "SSE_KEEPALIVE_S", "20", "SSE_DB", "/p.db", NULL,
    };
    const char *const request_pairs[] = {
        "SSE_LOG", "/tmp/r.log", "SSE_LOG_LEVEL", "debug", "SSE_THREADS", "2",
        "SSE_POLL_MS", "10", "SSE_KEEPALIVE_S", "30", "SSE_DB", "/r.db", NULL,
    };
    struct config process, request;
    const char *bad, *why;
    ck_assert_int_eq(load(&process, process_pairs, &bad, &why), 0);
    ck_assert_int_eq(load(&request, request_pairs, &bad, &why), 0);
    config_copy_per_process(&request, &process);
    ck_assert_str_eq(request.log_target, "/var/log/p.log");
    ck_assert_int_eq(request.log_level, LOG_LEVEL_WARN);
    ck_assert_int_eq(request.threads, 8);
    ck_assert_int_eq(request.poll_ms, 1000);
    ck_assert_int_eq(request.keepalive_s, 30);
    ck_assert_str_eq(request.db_path, "/r.db");
}
END_TEST

Suite *suite_config(void);

Suite *
suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_defaults);
    tcase_add_loop_test(tc, test_numeric_value, 0, COUNT(VALUES));
    tcase_add_test(tc, test_string_values);
    tcase_add_loop_test(tc, test_bad_number, 0, COUNT(NUMERIC_NAMES) * COUNT(BAD_NUMBERS));
    tcase_add_loop_test(tc, test_out_of_range, 0, COUNT(OUT_OF_RANGE));
    tcase_add_test(tc, test_bad_among_good);
    tcase_add_test(tc, test_auth_settings);
    tcase_add_loop_test(tc, test_probe_ms, 0, COUNT(PROBES));
    tcase_add_loop_test(tc, test_parse_log_level, 0, COUNT(LEVELS));
    tcase_add_test(tc, test_per_process_names);
    tcase_add_test(tc, test_copy_per_process);
    suite_add_tcase(s, tc);
    return s;
}
