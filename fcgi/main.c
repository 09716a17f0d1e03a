/*
 * main.c - start-up: the command line, the process's settings, signals, then FastCGI or
 * plain CGI (fcgi/server.c).
 *
 * FastCGI when libfcgi finds a listening socket on fd 0; plain CGI otherwise: one request
 * from the environment and stdout, then exit (FCGX_Accept_r has no CGI fallback,
 * DEPLOY-NOTES §4). SIGTERM writes to a pipe that the event loop watches, so streams end
 * with reason=shutdown and the process exits within a second (SPEC §4.11).
 */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../store/store.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "crypto.h"
#include "log.h"
#include "server.h"

static const char USAGE[] =
    "usage: sse-fcgi             serve (started by a web server: FastCGI or CGI)\n"
    "       sse-fcgi --check [--db PATH]\n"
    "                            check a deployment as this user (the web server's)\n"
    "       sse-fcgi prune --keep-days N | --keep-events N [--floor-hours N] [--dry-run]\n"
    "                      [--db PATH] [--verbose]\n"
    "                            delete old events (as a user who can write the database)\n"
    "       sse-fcgi --explain   print the query plan of every query against $SSE_DB\n"
    "       sse-fcgi --version\n"
    "Configuration comes from SSE_* variables; see sse-fcgi(1), and sse-fcgi(7) for the\n"
    "contract.\n";

static int shutdown_read_fd = -1, shutdown_write_fd = -1;

static void
on_shutdown_signal(int signo)
{
    (void)signo;
    int saved_errno = errno;
    ssize_t n = write(shutdown_write_fd, "x", 1);
    (void)n;
    FCGX_ShutdownPending();  /* makes libfcgi's accept() loop give up instead of retrying */
    errno = saved_errno;
}

/* SIGTERM/SIGINT end the streams; SIGPIPE is ignored so a dead client is an EPIPE
 * (mod_cgid hands it over as SIG_DFL, DEPLOY-NOTES Q7). Call after FCGX_Init, which
 * otherwise installs its own SIGTERM handler (DEPLOY-NOTES §5). */
static int
install_signals(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -errno;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    shutdown_read_fd = fds[0];
    shutdown_write_fd = fds[1];
    struct sigaction sa = {.sa_handler = on_shutdown_signal};
    sigemptyset(&sa.sa_mask);  /* no SA_RESTART: accept() must see EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ---- start-up ----------------------------------------------------------------------- */

static const char *
env_lookup(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

static void
print_plan_line(void *ctx, const char *query_name, const char *detail)
{
    (void)ctx;
    printf("%s: %s\n", query_name, detail);
}

static int
explain(const struct config *cfg)
{
    if (cfg->db_path == NULL) {
        fputs("sse-fcgi --explain: set SSE_DB to the database path\n", stderr);
        return 2;
    }
    struct store *st = NULL;
    char err[512];
    int rc = store_open(cfg->db_path, 1000, &st, err, sizeof(err));
    if (rc == 0 && store_explain(st, print_plan_line, NULL) < 0) {
        snprintf(err, sizeof(err), "%s", store_errmsg(st));
        rc = -1;
    }
    store_close(st);
    if (rc < 0)
        fprintf(stderr, "sse-fcgi --explain: %s\n", err);
    return rc < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
    /* One malloc arena for every thread, set before any starts. glibc gives each thread
     * that allocates an arena of its own (up to 8 per core), and each keeps the pages its
     * thread once touched: behind mod_fcgid, one stream per process, the stream thread's
     * and the watcher's held 380 and 392 KiB. Sharing one, what one thread frees serves
     * the others (issue 12: 133 KiB less per process, README "Memory per process"); the
     * small blocks most calls take come from each thread's tcache without the lock. */
    mallopt(M_ARENA_MAX, 1);
    /* Blocks of 64 KiB and more are mmap()ed, and unmapped when freed. glibc's threshold
     * would otherwise rise to the largest block freed (and keep twice that untrimmed): a
     * row of 900 KB, once read, left its process's heap that much larger for good (make
     * memory with 4 such rows replayed: Pss up to 4,411 KiB a process, 1,481 on average;
     * with this, 861 and 841). A block this large is a row or a batch of frames, copied
     * several times anyway, so its mmap costs little more. */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    /* The admin commands judge the SSE_* settings themselves (--check reports them). */
    if (argc > 1 && strcmp(argv[1], "prune") == 0)
        return commands_prune(argc - 1, argv + 1);
    if (argc > 1 && (strcmp(argv[1], "--check") == 0 || strcmp(argv[1], "check") == 0))
        return commands_check(argc - 1, argv + 1);
    struct config cfg;
    const char *bad_name = NULL, *why = NULL;
    if (config_load(&cfg, env_lookup, NULL, &bad_name, &why) < 0) {
        fprintf(stderr, "sse-fcgi: bad value for %s: %s\n", bad_name, why);
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "--explain") == 0)
        return explain(&cfg);
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        fputs("sse-fcgi " CLI_VERSION "\n", stdout);
        return 0;
    }
    if (argc > 1) {  /* --help is asked for: stdout; anything else is a mistake: stderr */
        bool is_help = strcmp(argv[1], "--help") == 0;
        fputs(USAGE, is_help ? stdout : stderr);
        return is_help ? 0 : 2;
    }
    /* The per-process settings (config_is_per_process) are read here, once; every request
     * takes them from stream_shared.process. */
    log_set_level(cfg.log_level);
    if (log_open(cfg.log_target) < 0) {
        fprintf(stderr, "sse-fcgi: SSE_LOG: cannot open %s: %s\n", cfg.log_target,
                strerror(errno));
        return 2;
    }
    /* SSE_AUTH for the whole process: libcrypto is loaded now rather than at the first
     * credential (auth.c), so that a missing library is said once, at start. */
    if (cfg.auth_mode != AUTH_MODE_NONE && crypto_load() == NULL)
        log_line(LOG_LEVEL_ERROR, "error SSE_AUTH needs %s: %s; every credential will be "
                 "answered 503", CRYPTO_SONAME, crypto_error());
    if (FCGX_Init() != 0 || install_signals() < 0) {
        fputs("sse-fcgi: cannot initialise libfcgi or signals\n", stderr);
        return 1;
    }
    if (!FCGX_IsCGI())
        return server_run_fastcgi(&cfg, shutdown_read_fd);
    if (getenv("GATEWAY_INTERFACE") == NULL && getenv("REQUEST_METHOD") == NULL) {
        fputs("sse-fcgi: not started by a web server (no FastCGI socket, no CGI "
              "environment).\n", stderr);
        fputs(USAGE, stderr);
        return 2;
    }
    return server_run_cgi(&cfg, shutdown_read_fd);
}
