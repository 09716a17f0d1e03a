/*
 * server.c - lighttpd, Apache and nginx spawn and stop by PID (see server.h).
 *
 * Readiness is "the port accepts a connection and the PID we forked has not exited", polled
 * every few ms against a deadline (lighttpd's own tests do the same in
 * wait_for_port_with_proc). A port can be taken between picking and binding it, so a start
 * whose lighttpd exits early is retried on a new port a few times. Nothing here sleeps to
 * hope: every wait is a loop on a condition with a deadline.
 */
#include "tests/lib/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fcgi/config.h"
#include "tests/lib/diag.h"
#include "tests/lib/logwait.h"
#include "tests/lib/sse_client.h"

enum {
    SERVER_READY_MS = 10000,
    SERVER_STOP_MS = 3000,           /* lighttpd after TERM; the backend after lighttpd */
    SERVER_BACKEND_STOP_MS = 1500,  /* SPEC §4.11: a backend exits within a second */
    SERVER_START_TRIES = 3,
    SERVER_CONF_MAX = 16384,
    SERVER_ENV_MAX = 64,            /* names + values in bin-environment */
};

enum server_front_end server_front_end = SERVER_LIGHTTPD;
enum server_front_end server_building_front_end = SERVER_LIGHTTPD;

static const struct {
    const char *suffix;         /* of suite names */
    const char *template;       /* in $SSE_TEST_CONF */
    const char *script;         /* Apache: the URL /api/ is rewritten onto */
    const char *program;        /* for messages */
} FRONT_ENDS[SERVER_FRONT_END_COUNT] = {
    [SERVER_LIGHTTPD] = {"", "lighttpd.conf.in", NULL, "lighttpd"},
    [SERVER_APACHE_FCGID] = {"_fcgid", "apache.conf.in", "/fcgi/events.fcgi", "apache2"},
    [SERVER_APACHE_CGI] = {"_cgi", "apache.conf.in", "/cgi/events.cgi", "apache2"},
    [SERVER_NGINX] = {"_nginx", "nginx.conf.in", NULL, "nginx"},
};

/* What tests/conf/nginx.conf.in includes in place of the shipped location snippet's own
 * prefix and socket (write_nginx_location). */
static const char NGINX_SHIPPED_LOCATION[] = "location /api/ {\n";
static const char NGINX_SHIPPED_SOCKET[] = "unix:/run/sse-fcgi/sse-fcgi.sock;";

Suite *
server_suite_create(const char *name)
{
    static char names[64][64];  /* suite names must outlive the runner; few suites */
    static int used;
    if (used == 64)
        abort();  /* called while building the runner, where ck_assert cannot report */
    snprintf(names[used], sizeof(names[used]), "%s%s", name,
             FRONT_ENDS[server_building_front_end].suffix);
    return suite_create(names[used++]);
}

const char *
server_front_end_suffix(enum server_front_end front_end)
{
    return FRONT_ENDS[front_end].suffix;
}

bool
server_front_end_is_apache(enum server_front_end front_end)
{
    return front_end == SERVER_APACHE_FCGID || front_end == SERVER_APACHE_CGI;
}

static void
select_lighttpd(void)
{
    server_front_end = SERVER_LIGHTTPD;
}

static void
select_apache_fcgid(void)
{
    server_front_end = SERVER_APACHE_FCGID;
}

static void
select_apache_cgi(void)
{
    server_front_end = SERVER_APACHE_CGI;
}

static void
select_nginx(void)
{
    server_front_end = SERVER_NGINX;
}

struct testenv test_env;
struct server test_srv;

static void
open_test_env(void)
{
    memset(&test_srv, 0, sizeof(test_srv));
    testenv_open(&test_env);
}

static void
close_test_env(void)
{
    if (test_srv.conf_path[0] != '\0')  /* set by server_start */
        server_stop(&test_srv);
    testenv_close(&test_env);
}

TCase *
server_tcase_create(const char *name)
{
    static void (*const SELECT[SERVER_FRONT_END_COUNT])(void) = {
        select_lighttpd, select_apache_fcgid, select_apache_cgi, select_nginx,
    };
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, SELECT[server_building_front_end], NULL);
    tcase_add_checked_fixture(tc, open_test_env, close_test_env);
    return tc;
}

static bool
is_apache(void)
{
    return server_front_end_is_apache(server_front_end);
}

static bool
is_nginx(void)
{
    return server_front_end == SERVER_NGINX;
}

const char *
server_script_url(void)
{
    return FRONT_ENDS[server_front_end].script;
}

/* Fills pairs with the default bin-environment, then opt->env on top. Returns the count
 * of strings (names and values). */
static size_t
collect_env(const char **pairs, const struct server *srv, const struct testenv *env,
            const struct server_options *opt)
{
    /* The shared hub's files go in the test's own dir (removed with it), never in
     * /dev/shm, where every test's would stay until reboot; open to the server's user. */
    static char hub_dir[TESTENV_PATH_MAX];
    testenv_path(env, "hub", hub_dir, sizeof(hub_dir));
    DIAG_CHECK((mkdir(hub_dir, 0777) == 0 || errno == EEXIST) && chmod(hub_dir, 0777) == 0,
               "cannot make %s: %s", hub_dir, strerror(errno));
    const char *defaults[] = {
        "SSE_DB", opt && opt->db_path ? opt->db_path : env->db_path,
        "SSE_LOG", srv->sse_log, "SSE_KEEPALIVE_S", "1", "SSE_THREADS", "4",
        "SSE_LOG_LEVEL", "debug", "SSE_HUB_DIR", hub_dir,
    };
    size_t n = sizeof(defaults) / sizeof(defaults[0]);
    memcpy(pairs, defaults, sizeof(defaults));
    for (size_t i = 0; opt && opt->env && opt->env[i] && opt->env[i + 1]; i += 2) {
        size_t j = 0;
        while (j < n && strcmp(pairs[j], opt->env[i]) != 0)
            j += 2;
        DIAG_CHECK(j + 2 <= SERVER_ENV_MAX, "too many bin-environment pairs");
        pairs[j] = opt->env[i];
        pairs[j + 1] = opt->env[i + 1];
        n = j == n ? n + 2 : n;
    }
    return n;
}

/* The Apache directive that sets name for the responder: SetEnv makes a request parameter
 * under mod_fcgid (the environment under CGI); a per-process setting (SSE_LOG, ...) must be
 * in the process environment, which under mod_fcgid only FcgidInitialEnv reaches. */
static const char *
apache_env_directive(const char *name)
{
    return server_front_end == SERVER_APACHE_FCGID && config_is_per_process(name)
               ? "FcgidInitialEnv" : "SetEnv";
}

/* Renders bin-environment lines `"NAME" => "value",` (Apache: `SetEnv NAME "value"`) into
 * out. */
static void
render_env(char *out, size_t size, const char **pairs, size_t count)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count; i += 2) {
        int n = is_apache()
                    ? snprintf(out + len, size - len, "%s %s \"%s\"\n",
                               apache_env_directive(pairs[i]), pairs[i], pairs[i + 1])
                    : snprintf(out + len, size - len, "            \"%s\" => \"%s\",\n",
                               pairs[i], pairs[i + 1]);
        DIAG_CHECK(n > 0 && (size_t)n < size - len, "bin-environment too long");
        len += (size_t)n;
    }
    if (len > 0)
        out[len - 1] = '\0';  /* the template's line end follows */
}

/* Renders opt->params, the request parameters, into out: SetEnv lines under Apache,
 * fastcgi_param lines under nginx, one setenv.add-environment under lighttpd (mod_setenv,
 * which the templates load). */
static void
render_params(char *out, size_t size, const struct server_options *opt)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; opt && opt->params && opt->params[i] && opt->params[i + 1]; i += 2) {
        const char *name = opt->params[i], *value = opt->params[i + 1];
        int n = is_apache() ? snprintf(out + len, size - len, "SetEnv %s \"%s\"\n", name, value)
                : is_nginx() ? snprintf(out + len, size - len, "    fastcgi_param %s \"%s\";\n",
                                        name, value)
                : snprintf(out + len, size - len, "%s\"%s\" => \"%s\"",
                           len == 0 ? "setenv.add-environment = (" : ", ", name, value);
        DIAG_CHECK(n > 0 && (size_t)n < size - len, "request parameters too long");
        len += (size_t)n;
    }
    if (len > 0 && !is_apache() && !is_nginx())
        DIAG_CHECK(snprintf(out + len, size - len, ")") == 1, "request parameters too long");
}

/* Value of placeholder name (without the @s), or NULL when unknown. */
static const char *
placeholder(const char *name, size_t len, const char *const *values)
{
    for (size_t i = 0; values[i]; i += 2) {
        if (strlen(values[i]) == len && memcmp(values[i], name, len) == 0)
            return values[i + 1];
    }
    return NULL;
}

/* Copies template into out, replacing @NAME@ with its value. */
static void
render(char *out, size_t size, const char *template, const char *const *values)
{
    size_t len = 0;
    for (const char *p = template; *p;) {
        const char *end = p[0] == '@' ? strchr(p + 1, '@') : NULL;
        const char *value = end ? placeholder(p + 1, (size_t)(end - p - 1), values) : NULL;
        size_t n = value ? strlen(value) : 1;
        DIAG_CHECK(len + n < size, "rendered configuration too long");
        memcpy(out + len, value ? value : p, n);
        len += n;
        p = value ? end + 1 : p + 1;
    }
    out[len] = '\0';
}

/* Replaces the one occurrence of old in text (size bytes) with new; fails the test when
 * old is not there exactly once or the result does not fit. */
static void
replace_once(char *text, size_t size, const char *old, const char *new, const char *what)
{
    char *at = strstr(text, old);
    DIAG_CHECK(at != NULL && strstr(at + 1, old) == NULL, "%s: \"%s\" is not there exactly "
               "once", what, old);
    size_t old_len = strlen(old), new_len = strlen(new), tail_len = strlen(at + old_len);
    DIAG_CHECK((size_t)(at - text) + new_len + tail_len < size, "%s: too long", what);
    memmove(at + new_len, at + old_len, tail_len + 1);
    memcpy(at, new, new_len);
}

/* Writes the shipped deploy/nginx/sse-fcgi.conf into the test's dir as out_path, changed
 * only where a test must differ: the mount instead of /api/, the test's backend socket,
 * and the request parameters at the top of the location (fastcgi_param is inherited from
 * an outer level only where a level sets none, and the location sets some). So every
 * directive a stream passes through behind nginx is the shipped one. Its `include
 * fastcgi_params` is relative to the configuration's directory: Debian's file is linked
 * there. */
static void
write_nginx_location(const struct server *srv, const struct testenv *env,
                     const struct server_options *opt, const char *param_lines,
                     const char *out_path)
{
    static char text[SERVER_CONF_MAX];
    char shipped[TESTENV_PATH_MAX], head[TESTENV_PATH_MAX + 4096];
    char socket[TESTENV_PATH_MAX + 16], params_link[TESTENV_PATH_MAX];
    DIAG_CHECK(access("/etc/nginx/fastcgi_params", R_OK) == 0,
               "/etc/nginx/fastcgi_params is missing: run `make deps` (nginx)");
    snprintf(shipped, sizeof(shipped), "%s/deploy/nginx/sse-fcgi.conf",
             testenv_require("SSE_SRC_DIR"));
    DIAG_CHECK(testenv_read_file(shipped, text, sizeof(text)) > 0, "cannot read %s", shipped);
    snprintf(head, sizeof(head), "location %s {\n%s", opt && opt->mount ? opt->mount : "/api/",
             param_lines);
    replace_once(text, sizeof(text), NGINX_SHIPPED_LOCATION, head, shipped);
    snprintf(socket, sizeof(socket), "unix:%s;", srv->backend_socket);
    replace_once(text, sizeof(text), NGINX_SHIPPED_SOCKET, socket, shipped);
    testenv_write_file(out_path, text, strlen(text));
    testenv_path(env, "fastcgi_params", params_link, sizeof(params_link));
    DIAG_CHECK(symlink("/etc/nginx/fastcgi_params", params_link) == 0 || errno == EEXIST,
               "symlink %s: %s", params_link, strerror(errno));
}

static void
write_conf(struct server *srv, const struct testenv *env, const struct server_options *opt)
{
    static char template[SERVER_CONF_MAX], conf[SERVER_CONF_MAX], env_lines[8192],
        param_lines[4096];
    char template_path[TESTENV_PATH_MAX], port[16], location[TESTENV_PATH_MAX];
    bool is_lighttpd_external = srv->is_backend_external && !is_nginx();
    snprintf(template_path, sizeof(template_path), "%s/%s", testenv_require("SSE_TEST_CONF"),
             is_lighttpd_external ? "lighttpd-external.conf.in"
                                  : FRONT_ENDS[server_front_end].template);
    DIAG_CHECK(testenv_read_file(template_path, template, sizeof(template)) > 0,
               "cannot read %s", template_path);
    const char *pairs[SERVER_ENV_MAX];
    render_env(env_lines, sizeof(env_lines), pairs, collect_env(pairs, srv, env, opt));
    render_params(param_lines, sizeof(param_lines), opt);
    testenv_path(env, "sse-fcgi-location.conf", location, sizeof(location));
    if (is_nginx())
        write_nginx_location(srv, env, opt, param_lines, location);
    snprintf(port, sizeof(port), "%d", srv->port);
    const char *values[] = {
        "PORT", port, "DIR", env->dir, "DOCROOT", env->dir,
        "SRC", testenv_require("SSE_SRC_DIR"),
        "MOUNT", opt && opt->mount ? opt->mount : "/api/",
        "BIN", opt && opt->bin ? opt->bin : testenv_require("SSE_FCGI_BIN"),
        "BIN_ENV", env_lines, "ENV", env_lines, "PARAMS", param_lines,
        "SOCKET", srv->backend_socket,
        "SCRIPT", is_apache() ? FRONT_ENDS[server_front_end].script : "",
        "APACHE_EXTRA", opt && opt->apache_directives ? opt->apache_directives : "",
        "LOCATION", location, "MAIN", opt && opt->nginx_main ? opt->nginx_main : "",
        "SERVER", opt && opt->nginx_server ? opt->nginx_server : "", NULL,
    };
    render(conf, sizeof(conf), template, values);
    testenv_write_file(srv->conf_path, conf, strlen(conf));
}

static pid_t
spawn_lighttpd(const struct server *srv, const struct testenv *env)
{
    const char *const apache[] = {"/usr/sbin/apache2", "-DFOREGROUND", "-f", srv->conf_path,
                                  NULL};
    const char *const lighttpd[] = {"/usr/sbin/lighttpd", "-D", "-f", srv->conf_path, NULL};
    /* -e: the log of start-up errors, before the configuration's error_log is read */
    const char *const nginx[] = {"/usr/sbin/nginx", "-p", env->dir, "-c", srv->conf_path,
                                 "-e", srv->error_log, "-g", "daemon off;", NULL};
    return testenv_spawn(srv->stdio_log, is_apache() ? apache : is_nginx() ? nginx : lighttpd,
                         NULL, false);
}

static pid_t scan_children(pid_t parent);

/* Polls until the port accepts (true) or lighttpd exits or the deadline passes (false);
 * *status gets lighttpd's exit status when it exited. */
static bool
wait_ready(struct server *srv, int *status)
{
    int64_t deadline = testenv_now_ms() + SERVER_READY_MS;
    while (testenv_now_ms() < deadline) {
        if (waitpid(srv->pid, status, WNOHANG) == srv->pid) {
            srv->pid = -1;
            return false;
        }
        if (testenv_is_port_accepting(srv->port))
            return true;
        testenv_poll_step();
    }
    return false;
}

/* Polls GET /api/<probe> until the responder answers 404: a stream slot took a request.
 * Right after start a responder may still answer 503 (no slot waiting yet); that is
 * tested on its own in test_load.c, the other tests must not depend on it. */
static bool
wait_probe(struct server *srv, const struct server_options *opt)
{
    char path[256];
    const char *mount = opt && opt->mount ? opt->mount : "/api/";
    snprintf(path, sizeof(path), "%s%sready-probe", mount,
             strcmp(mount, "/api/") == 0 ? "" : "api/");
    int64_t deadline = testenv_now_ms() + SERVER_READY_MS;
    int status = 0;
    while (status != 404 && testenv_now_ms() < deadline && srv->pid > 0) {
        struct sse_client c;
        sse_client_open(&c, srv->port, "GET", path, NULL);
        status = c.status;
        sse_client_close(&c);
        if (status != 404)
            testenv_poll_step();
    }
    return status == 404;
}

static void
dump_hook(void *ctx)
{
    server_dump(ctx);
}

/* Closes the listening socket a test held for its backends (is_socket_held), if any. */
static void
release_held_socket(struct server *srv)
{
    if (srv->is_backend_socket_held && srv->backend_listen_fd >= 0)
        close(srv->backend_listen_fd);
    srv->backend_listen_fd = -1;
}

static void
cleanup_hook(void *ctx)
{
    struct server *srv = ctx;
    diag_unregister(srv);
    if (srv->pid > 0 && srv->backend_pid < 0 && !is_apache() && !srv->is_backend_external)
        srv->backend_pid = scan_children(srv->pid);  /* before it is orphaned */
    if (srv->pid > 0 && is_nginx())
        testenv_signal_children(srv->pid, SIGKILL, NULL, 0);  /* its workers */
    if (srv->pid > 0) {
        kill(srv->pid, SIGKILL);
        waitpid(srv->pid, NULL, 0);
        srv->pid = -1;
    }
    if (srv->backend_pid > 0 && !server_is_pid_gone(srv->backend_pid))
        kill(srv->backend_pid, SIGKILL);
    if (srv->backend_pid > 0 && srv->is_backend_external)
        waitpid(srv->backend_pid, NULL, 0);
    release_held_socket(srv);
}

static void
set_paths(struct server *srv, const struct testenv *env)
{
    const char *name = FRONT_ENDS[server_front_end].program;
    char file[64];
    snprintf(file, sizeof(file), "%s.conf", name);
    testenv_path(env, file, srv->conf_path, sizeof(srv->conf_path));
    snprintf(file, sizeof(file), "%s-error.log", is_apache() ? "apache" : name);
    testenv_path(env, file, srv->error_log, sizeof(srv->error_log));
    snprintf(file, sizeof(file), "%s-stdio.log", name);
    testenv_path(env, file, srv->stdio_log, sizeof(srv->stdio_log));
    testenv_path(env, "sse-fcgi.log", srv->sse_log, sizeof(srv->sse_log));
    testenv_path(env, "external.sock", srv->backend_socket, sizeof(srv->backend_socket));
    testenv_path(env, "backend-stdio.log", srv->backend_stdio_log,
                 sizeof(srv->backend_stdio_log));
}

/* Apache runs the responder as www-data: it needs the temp dir (to create -wal, -shm and the
 * log) and the binary under the script names the configuration maps. */
static void
prepare_apache_dir(const struct testenv *env)
{
    char path[TESTENV_PATH_MAX];
    DIAG_CHECK(chmod(env->dir, 0777) == 0, "chmod %s: %s", env->dir, strerror(errno));
    const char *dirs[] = {"bin", "fcgid"};
    for (size_t i = 0; i < 2; i++) {
        testenv_path(env, dirs[i], path, sizeof(path));
        DIAG_CHECK(mkdir(path, 0777) == 0 || errno == EEXIST, "mkdir %s", path);
        chmod(path, 0777);
    }
    const char *names[] = {"bin/events.fcgi", "bin/events.cgi"};
    for (size_t i = 0; i < 2; i++) {
        testenv_path(env, names[i], path, sizeof(path));
        DIAG_CHECK(symlink(testenv_require("SSE_FCGI_BIN"), path) == 0 || errno == EEXIST,
                   "symlink %s: %s", path, strerror(errno));
    }
}

void
server_start(struct server *srv, const struct testenv *env, const struct server_options *opt)
{
    set_paths(srv, env);
    srv->pid = srv->backend_pid = -1;
    if (is_apache())
        prepare_apache_dir(env);
    srv->is_backend_external = is_nginx() || (opt && opt->is_external_backend && !is_apache());
    srv->is_backend_socket_held = srv->is_backend_external && opt && opt->is_socket_held;
    srv->backend_listen_fd = -1;
    if (srv->is_backend_external)
        server_start_backend(srv, env, opt);
    int status = 0;
    for (int attempt = 0; attempt < SERVER_START_TRIES; attempt++) {
        srv->port = opt && opt->port > 0 ? opt->port : testenv_pick_port();
        write_conf(srv, env, opt);
        srv->pid = spawn_lighttpd(srv, env);
        diag_register(srv, dump_hook, cleanup_hook);
        if (wait_ready(srv, &status)) {
            DIAG_CHECK((opt && opt->is_port_ready_enough) || wait_probe(srv, opt),
                       "the responder never answered 404 to an unknown route");
            return;
        }
        DIAG_CHECK(srv->pid < 0, "lighttpd pid %ld never listened on 127.0.0.1:%d",
                   (long)srv->pid, srv->port);
        diag_unregister(srv);
        DIAG_CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 127),
                   "/usr/sbin/%s not found: run `make deps`",
                   FRONT_ENDS[server_front_end].program);
    }
    server_dump(srv);
    DIAG_CHECK(false, "lighttpd exited during start-up (exit status %d), %d tries",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1, SERVER_START_TRIES);
}

void
server_start_demo(struct server *srv, const struct testenv *env, const char *demo_dir)
{
    DIAG_CHECK(!is_apache(), "the demo runs lighttpd only");
    set_paths(srv, env);
    snprintf(srv->conf_path, sizeof(srv->conf_path), "%s/lighttpd.conf", demo_dir);
    snprintf(srv->error_log, sizeof(srv->error_log), "%s/lighttpd-error.log", demo_dir);
    snprintf(srv->sse_log, sizeof(srv->sse_log), "%s/sse-fcgi.log", demo_dir);
    srv->pid = srv->backend_pid = -1;
    srv->is_backend_external = false;
    srv->port = testenv_pick_port();
    char port[16], script[TESTENV_PATH_MAX];
    snprintf(port, sizeof(port), "%d", srv->port);
    snprintf(script, sizeof(script), "%s/deploy/demo/run.sh", testenv_require("SSE_SRC_DIR"));
    const char *const argv[] = {"/bin/sh", script, testenv_require("SSE_FCGI_BIN"), NULL};
    const char *const env_pairs[] = {"SSE_DEMO_DIR", demo_dir, "SSE_DEMO_PORT", port, NULL};
    srv->pid = testenv_spawn(srv->stdio_log, argv, env_pairs, false);
    diag_register(srv, dump_hook, cleanup_hook);
    int status = 0;
    DIAG_CHECK(wait_ready(srv, &status) && wait_probe(srv, NULL),
               "deploy/demo/run.sh never served on 127.0.0.1:%d (exit status %d)", srv->port,
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* The address of the unix socket at path; fails the test when path does not fit. */
static struct sockaddr_un
unix_address(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    DIAG_CHECK(strlen(path) < sizeof(addr.sun_path), "socket path too long: %s", path);
    memcpy(addr.sun_path, path, strlen(path) + 1);
    return addr;
}

static bool
is_unix_socket_accepting(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = unix_address(path);
    bool is_up = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    if (fd >= 0)
        close(fd);
    return is_up;
}

/* Makes srv's listening socket at the first call, as systemd does for
 * deploy/systemd/sse-fcgi.socket; CLOEXEC, so that only the backend gets it (as fd 0). */
static void
hold_backend_socket(struct server *srv)
{
    if (srv->backend_listen_fd >= 0)
        return;
    unlink(srv->backend_socket);
    struct sockaddr_un addr = unix_address(srv->backend_socket);
    srv->backend_listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    DIAG_CHECK(srv->backend_listen_fd >= 0
               && bind(srv->backend_listen_fd, (struct sockaddr *)&addr, sizeof(addr)) == 0
               && listen(srv->backend_listen_fd, SOMAXCONN) == 0,
               "cannot listen on %s: %s", srv->backend_socket, strerror(errno));
}

/* Runs the responder on the held socket and waits for its "sse started" line: the socket
 * itself accepts (and queues) connections whether a backend runs or not. */
static void
start_held_backend(struct server *srv, const char *bin, const char *const *pairs)
{
    hold_backend_socket(srv);
    int started = logwait_count_lines(srv->sse_log, "sse started", NULL);
    const char *const argv[] = {bin, NULL};
    pid_t pid = testenv_spawn_stdin(srv->backend_stdio_log, argv, pairs, false,
                                    srv->backend_listen_fd);
    srv->backend_pid = pid;
    int64_t deadline = testenv_now_ms() + SERVER_READY_MS;
    int status = 0;
    while (logwait_count_lines(srv->sse_log, "sse started", NULL) == started) {
        bool has_exited = waitpid(pid, &status, WNOHANG) == pid;
        if (has_exited)
            srv->backend_pid = -1;
        if (has_exited || testenv_now_ms() >= deadline) {
            server_stop_backend(srv);
            diag_print_file("backend stdout/stderr", srv->backend_stdio_log, 8192);
            DIAG_CHECK(false, "the backend on the held socket %s never started (%s)",
                       srv->backend_socket, has_exited ? "it exited" : "timeout");
        }
        testenv_poll_step();
    }
}

void
server_start_backend(struct server *srv, const struct testenv *env,
                     const struct server_options *opt)
{
    const char *pairs[SERVER_ENV_MAX + 1];
    pairs[collect_env(pairs, srv, env, opt)] = NULL;
    const char *bin = opt && opt->bin ? opt->bin : testenv_require("SSE_FCGI_BIN");
    if (srv->is_backend_socket_held) {
        start_held_backend(srv, bin, pairs);
        return;
    }
    unlink(srv->backend_socket);  /* spawn-fcgi refuses a socket path in use */
    /* -n: spawn-fcgi execs the responder in its own place (same PID, our child) */
    const char *const argv[] = {"spawn-fcgi", "-n", "-s", srv->backend_socket, "-M", "0600",
                                "--", bin, NULL};
    pid_t pid = testenv_spawn(srv->backend_stdio_log, argv, pairs, false);
    srv->backend_pid = pid;
    int64_t deadline = testenv_now_ms() + SERVER_READY_MS;
    int status = 0;
    while (!is_unix_socket_accepting(srv->backend_socket) && testenv_now_ms() < deadline) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            srv->backend_pid = -1;
            diag_print_file("spawn-fcgi stdout/stderr", srv->backend_stdio_log, 8192);
            DIAG_CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 127),
                       "spawn-fcgi not found: run `make deps`");
            DIAG_CHECK(false, "spawn-fcgi exited with status %d before its socket accepted",
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        testenv_poll_step();
    }
    if (!is_unix_socket_accepting(srv->backend_socket)) {
        server_stop_backend(srv);
        diag_print_file("spawn-fcgi stdout/stderr", srv->backend_stdio_log, 8192);
        DIAG_CHECK(false, "the external backend never accepted on %s", srv->backend_socket);
    }
}

int64_t
server_stop_backend(struct server *srv)
{
    DIAG_CHECK(srv->is_backend_external, "server_stop_backend: no external backend");
    if (srv->backend_pid <= 0)
        return 0;
    int64_t start_ms = testenv_now_ms();
    kill(srv->backend_pid, SIGTERM);
    while (waitpid(srv->backend_pid, NULL, WNOHANG) == 0) {
        if (testenv_now_ms() - start_ms > SERVER_BACKEND_STOP_MS) {
            kill(srv->backend_pid, SIGKILL);
            waitpid(srv->backend_pid, NULL, 0);
            break;
        }
        testenv_poll_step();
    }
    srv->backend_pid = -1;
    return testenv_now_ms() - start_ms;
}

void
server_signal(const struct server *srv, int sig)
{
    DIAG_CHECK(srv->pid > 0, "server_signal: lighttpd is not running");
    DIAG_CHECK(kill(srv->pid, sig) == 0, "kill(%ld): %s", (long)srv->pid, strerror(errno));
}

bool
server_wait_exit(struct server *srv, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    while (srv->pid > 0) {
        pid_t rc = waitpid(srv->pid, NULL, WNOHANG);
        if (rc == srv->pid || (rc < 0 && errno == ECHILD))
            srv->pid = -1;
        else if (testenv_now_ms() >= deadline)
            return false;
        else
            testenv_poll_step();
    }
    return true;
}

/* Reads the state and parent of pid from /proc/<pid>/stat. Returns false when gone. */
static bool
read_proc_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if (testenv_read_file(path, line, sizeof(line)) <= 0)
        return false;
    const char *after_name = strrchr(line, ')');  /* the command name may hold spaces */
    long parent = 0;
    if (after_name == NULL || sscanf(after_name + 1, " %c %ld", state, &parent) != 2)
        return false;
    *ppid = (pid_t)parent;
    return true;
}

bool
server_is_pid_gone(pid_t pid)
{
    char state = '?';
    pid_t ppid = 0;
    return !read_proc_stat(pid, &state, &ppid) || state == 'Z' || state == 'X';
}

/* The first live process whose parent is lighttpd, or -1. */
static pid_t
scan_children(pid_t parent)
{
    DIR *proc = opendir("/proc");
    DIAG_CHECK(proc != NULL, "cannot read /proc");
    pid_t found = -1;
    struct dirent *d;
    while (found < 0 && (d = readdir(proc)) != NULL) {
        char *end = NULL, state = '?';
        long pid = strtol(d->d_name, &end, 10);
        pid_t ppid = 0;
        if (pid > 0 && *end == '\0' && read_proc_stat((pid_t)pid, &state, &ppid)
            && ppid == parent && state != 'Z')
            found = (pid_t)pid;
    }
    closedir(proc);
    return found;
}

static int signal_apache_responders(const struct server *srv, int sig, pid_t *pids,
                                    size_t cap);

size_t
server_list_backends(struct server *srv, pid_t *pids, size_t cap)
{
    if (is_apache())
        return (size_t)signal_apache_responders(srv, 0, pids, cap);
    if (srv->pid > 0 && !srv->is_backend_external
        && (srv->backend_pid < 0 || server_is_pid_gone(srv->backend_pid)))
        srv->backend_pid = scan_children(srv->pid);
    if (srv->backend_pid < 0 || cap == 0)
        return 0;
    pids[0] = srv->backend_pid;
    return 1;
}

pid_t
server_find_backend(struct server *srv, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    pid_t pid = -1;
    while (srv->pid > 0 && server_list_backends(srv, &pid, 1) == 0
           && testenv_now_ms() < deadline)
        testenv_poll_step();
    return pid;
}

/* Waits for a process we cannot reap (lighttpd's child) to go, then KILLs it. */
static void
stop_backend(pid_t pid)
{
    int64_t deadline = testenv_now_ms() + SERVER_BACKEND_STOP_MS;
    while (!server_is_pid_gone(pid) && testenv_now_ms() < deadline)
        testenv_poll_step();
    if (!server_is_pid_gone(pid))
        kill(pid, SIGKILL);
}

static bool
has_sanitizer_report(const char *path)
{
    static char text[1 << 20];
    testenv_read_file(path, text, sizeof(text));
    return testenv_has_sanitizer_report(text);
}

/* Sends sig to every responder Apache started for this test: the processes whose argv[0]
 * is under the test's bin/ directory (sig 0 only lists them). Returns how many there were;
 * the first cap PIDs go to pids (may be NULL when cap is 0). */
static int
signal_apache_responders(const struct server *srv, int sig, pid_t *pids, size_t cap)
{
    char prefix[TESTENV_PATH_MAX];
    snprintf(prefix, sizeof(prefix), "%s", srv->conf_path);
    char *slash = strrchr(prefix, '/');
    DIAG_CHECK(slash != NULL, "conf path without a directory");
    snprintf(slash, sizeof(prefix) - (size_t)(slash - prefix), "/bin/");
    return testenv_signal_by_arg(prefix, sig, pids, cap);
}

/* Apache waits for its handlers before it exits on SIGTERM (about 2.5 s while a stream is
 * open): stop the responders first, as mod_fcgid's process manager would, with a deadline. */
static void
stop_apache_responders(const struct server *srv)
{
    int64_t deadline = testenv_now_ms() + SERVER_BACKEND_STOP_MS;
    if (signal_apache_responders(srv, SIGTERM, NULL, 0) == 0)
        return;
    while (signal_apache_responders(srv, 0, NULL, 0) > 0 && testenv_now_ms() < deadline)
        testenv_poll_step();
    signal_apache_responders(srv, SIGKILL, NULL, 0);
}

void
server_stop(struct server *srv)
{
    if (srv->pid > 0 && is_apache())
        stop_apache_responders(srv);
    if (srv->pid > 0 && srv->backend_pid < 0 && !is_apache() && !srv->is_backend_external)
        server_find_backend(srv, 0);
    if (srv->pid > 0 && kill(srv->pid, SIGTERM) == 0 && !server_wait_exit(srv, SERVER_STOP_MS)) {
        if (is_nginx())
            testenv_signal_children(srv->pid, SIGKILL, NULL, 0);  /* its workers */
        kill(srv->pid, SIGKILL);
        waitpid(srv->pid, NULL, 0);
        srv->pid = -1;
    }
    if (srv->is_backend_external)
        server_stop_backend(srv);
    else if (srv->backend_pid > 0)
        stop_backend(srv->backend_pid);
    release_held_socket(srv);
    bool is_clean = !has_sanitizer_report(srv->stdio_log) && !has_sanitizer_report(srv->sse_log)
                    && !has_sanitizer_report(srv->error_log)
                    && !has_sanitizer_report(srv->backend_stdio_log);
    DIAG_CHECK(is_clean, "a sanitizer report is in the server logs (see above)");
    diag_unregister(srv);
}

void
server_dump(const struct server *srv)
{
    const char *name = FRONT_ENDS[server_front_end].program;
    char label[96];
    fprintf(stderr, "=== %s pid %ld on 127.0.0.1:%d, conf %s ===\n", name, (long)srv->pid,
            srv->port, srv->conf_path);
    snprintf(label, sizeof(label), "%s error log", name);
    diag_print_file(label, srv->error_log, 16384);
    snprintf(label, sizeof(label), "%s stdout/stderr%s", name,
             srv->is_backend_external ? "" : " (backend stderr)");
    diag_print_file(label, srv->stdio_log, 16384);
    diag_print_file("SSE_LOG", srv->sse_log, 32768);
    if (srv->is_backend_external)
        diag_print_file("spawn-fcgi stdout/stderr", srv->backend_stdio_log, 8192);
}
