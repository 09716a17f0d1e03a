/*
 * main.c - sse-fcgi-relay: copies the shared log from PostgreSQL into this node's SQLite
 * file, which the node's sse-fcgi streams from unchanged (README "Several web nodes").
 *
 * One loop: connect, check the log's history against the one recorded, then fetch a batch
 * after the local position, apply it in one SQLite transaction, and wait for a NOTIFY (or
 * a timeout, which also proves the link alive) when caught up. Any failure of the link
 * drops it and reconnects with backoff; the position is only ever what the last local
 * commit recorded, so nothing is copied twice or skipped, whatever kills the relay.
 * A changed history (another cluster, or a new timeline after a failover) stops the copy
 * for good (exit 3) until an operator runs --adopt: mixing two histories silently would
 * give clients two different events under one id.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fcgi/cli.h"
#include "../fcgi/log.h"
#include "../store/replica.h"
#include "upstream.h"

enum {
    EXIT_USAGE = 2,
    EXIT_HISTORY_CHANGED = 3,
    BUSY_TIMEOUT_MS = 5000,
    BATCH_BYTES = 8 << 20,          /* events.data per batch: 8 rows of the 1 MiB maximum */
    BACKOFF_FIRST_MS = 250,
    BACKOFF_MAX_MS = 5000,
    IDLE_CHECK_MS = 30000,          /* caught up and no NOTIFY: read anyway this often */
};

static const char USAGE[] =
    "usage: sse-fcgi-relay --pg CONNINFO --db PATH [--batch-rows N] [--timeout S]\n"
    "                            copy the shared log into this node's SQLite file\n"
    "       sse-fcgi-relay --check --pg CONNINFO --db PATH\n"
    "                            report the log, the local file and the lag, and exit\n"
    "       sse-fcgi-relay --adopt --pg CONNINFO --db PATH\n"
    "                            accept the log's new history (after a failover) and go on\n"
    "--pg defaults to $SSE_PG, --db to $SSE_DB. See sse-fcgi-relay(1).\n";

static int stop_read_fd = -1, stop_write_fd = -1;

static void
on_stop_signal(int signo)
{
    (void)signo;
    int saved_errno = errno;
    ssize_t ignored = write(stop_write_fd, "x", 1);
    (void)ignored;
    errno = saved_errno;
}

static bool
is_stopping(void)
{
    struct pollfd p = {.fd = stop_read_fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* Sleeps ms, or less when a stop signal comes. Returns true when stopping. */
static bool
sleep_unless_stopped(int ms)
{
    struct pollfd p = {.fd = stop_read_fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR) {
    }
    return n > 0;
}

static int
install_signals(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    stop_read_fd = fds[0];
    stop_write_fd = fds[1];
    fcntl(stop_write_fd, F_SETFL, O_NONBLOCK);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static bool
same_source(const struct replica_source *a, const struct replica_source *b)
{
    return strcmp(a->system_identifier, b->system_identifier) == 0 &&
           a->timeline == b->timeline;
}

struct relay {
    struct upstream_options up_opt;
    struct replica *replica;
    struct replica_state state;     /* as last read or written */
    bool is_adopting;               /* --adopt: record the next history instead of refusing */
    uint64_t marks_applied;         /* the pruned marks last written, as marks_digest says */
};

/* The pruned marks beyond the position come with every batch until the position passes
 * them; a digest tells a batch that brings only the same marks again, so that an idle relay
 * does not write (and wake every stream's hub) at each NOTIFY. */
static uint64_t
marks_digest(const struct replica_batch *b)
{
    uint64_t digest = b->pruned_count;
    for (size_t i = 0; i < b->pruned_count; i++)
        digest = digest * 31 + (uint64_t)b->pruned[i].through_id;
    return digest;
}

/* The history check at each connect. Returns 0 to copy, or EXIT_HISTORY_CHANGED. */
static int
check_history(struct relay *rl, const struct replica_source *now)
{
    struct replica_state *st = &rl->state;
    if (st->has_source && !same_source(&st->source, now) && !rl->is_adopting) {
        char detail[512];
        snprintf(detail, sizeof(detail), "the log's history changed: it was system %s "
                 "timeline %" PRId64 ", it is system %s timeline %" PRId64 "; copying "
                 "stopped at position %" PRId64 ". Ids after the last common point may "
                 "have been reissued. See README \"Failover\", then run sse-fcgi-relay "
                 "--adopt", st->source.system_identifier, st->source.timeline,
                 now->system_identifier, now->timeline, st->position);
        log_line(LOG_LEVEL_ERROR, "relay stopped reason=history_changed was_system=%s "
                 "was_timeline=%" PRId64 " system=%s timeline=%" PRId64 " position=%" PRId64,
                 st->source.system_identifier, st->source.timeline, now->system_identifier,
                 now->timeline, st->position);
        replica_set_state(rl->replica, REPLICA_STOPPED, NULL, detail);
        return EXIT_HISTORY_CHANGED;
    }
    if (rl->is_adopting && st->has_source && !same_source(&st->source, now))
        log_line(LOG_LEVEL_WARN, "relay adopted was_system=%s was_timeline=%" PRId64
                 " system=%s timeline=%" PRId64 " position=%" PRId64,
                 st->source.system_identifier, st->source.timeline, now->system_identifier,
                 now->timeline, st->position);
    rl->is_adopting = false;
    st->has_source = true;
    st->source = *now;
    return 0;
}

/* Copies until the link fails or a stop comes. Returns 0 (reconnect) or 1 (stopping). */
static int
copy_until_failure(struct relay *rl, struct upstream *u)
{
    int local_backoff_ms = BACKOFF_FIRST_MS;
    for (;;) {
        struct replica_batch batch;
        bool is_full;
        enum upstream_result rc = upstream_fetch(u, rl->state.position, &batch, &is_full);
        if (rc == UPSTREAM_STOPPED)
            return 1;
        if (rc != UPSTREAM_OK) {
            log_line(LOG_LEVEL_WARN, "relay disconnected reason=%s", upstream_errmsg(u));
            return 0;
        }
        uint64_t marks = marks_digest(&batch);
        if (batch.through > rl->state.position || marks != rl->marks_applied ||
            batch.upstream_newest != rl->state.upstream_newest) {
            if (replica_apply(rl->replica, &batch) != 0) {
                log_line(LOG_LEVEL_ERROR, "relay error local=%s retry_in_ms=%d",
                         replica_errmsg(rl->replica), local_backoff_ms);
                if (sleep_unless_stopped(local_backoff_ms))
                    return 1;
                local_backoff_ms = local_backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                                         : local_backoff_ms * 2;
                continue;
            }
            local_backoff_ms = BACKOFF_FIRST_MS;
            if (log_is_enabled(LOG_LEVEL_DEBUG))
                log_line(LOG_LEVEL_DEBUG, "relay copied events=%zu sessions=%zu through=%"
                         PRId64 " behind=%" PRId64, batch.event_count, batch.session_count,
                         batch.through, batch.upstream_newest - batch.through);
            rl->state.position = batch.through;
            rl->state.upstream_newest = batch.upstream_newest;
            rl->marks_applied = marks;
        }
        if (is_full)
            continue;
        rc = upstream_wait(u, IDLE_CHECK_MS);
        if (rc == UPSTREAM_STOPPED)
            return 1;
        if (rc != UPSTREAM_OK) {
            log_line(LOG_LEVEL_WARN, "relay disconnected reason=%s", upstream_errmsg(u));
            return 0;
        }
    }
}

/* The relay's life: connect, check, copy; reconnect with backoff. Returns the exit code. */
static int
run(struct relay *rl)
{
    int backoff_ms = BACKOFF_FIRST_MS;
    char last_reason[1024] = "";    /* why the last connect failed: logged and recorded once */
    while (!is_stopping()) {
        struct upstream *u;
        struct replica_source source;
        char err[1024];
        enum upstream_result rc = upstream_connect(&rl->up_opt, &u, &source, err, sizeof(err));
        if (rc == UPSTREAM_STOPPED)
            break;
        if (rc != UPSTREAM_OK) {
            /* Each new reason once (a restart's "shutting down", then "a standby"), so that
             * health says why now, not why first; the same reason again at debug level. */
            bool is_new = strcmp(err, last_reason) != 0;
            log_line(is_new ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG,
                     "relay unreachable reason=%s retry_in_ms=%d", err, backoff_ms);
            if (is_new)
                replica_set_state(rl->replica, REPLICA_RECONNECTING, NULL, err);
            snprintf(last_reason, sizeof(last_reason), "%s", err);
            if (sleep_unless_stopped(backoff_ms))
                break;
            backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
            continue;
        }
        int exit_code = check_history(rl, &source);
        if (exit_code != 0) {
            upstream_close(u);
            return exit_code;
        }
        if (replica_set_state(rl->replica, REPLICA_COPYING, &source, "") != 0)
            log_line(LOG_LEVEL_ERROR, "relay error local=%s", replica_errmsg(rl->replica));
        log_line(LOG_LEVEL_INFO, "relay connected system=%s timeline=%" PRId64
                 " position=%" PRId64, source.system_identifier, source.timeline,
                 rl->state.position);
        backoff_ms = BACKOFF_FIRST_MS;
        last_reason[0] = '\0';
        int stopping = copy_until_failure(rl, u);
        upstream_close(u);
        if (stopping)
            break;
        replica_set_state(rl->replica, REPLICA_RECONNECTING, NULL, "the link to the log "
                          "failed; reconnecting");
    }
    log_line(LOG_LEVEL_INFO, "relay stopped reason=signal position=%" PRId64,
             rl->state.position);
    return 0;
}

/* --check: one line per fact, like sse-fcgi --check. Returns the exit code. */
static int
check(struct relay *rl)
{
    int failed = 0;
    struct upstream *u;
    struct replica_source source;
    char err[1024];
    bool is_stopped = rl->state.kind == REPLICA_STOPPED;
    printf("%s local database: position %" PRId64 ", state %s%s%s\n",
           is_stopped ? "FAIL" : "ok  ", rl->state.position,
           replica_state_name(rl->state.kind), rl->state.detail[0] ? ": " : "",
           rl->state.detail);
    failed += is_stopped;
    if (upstream_connect(&rl->up_opt, &u, &source, err, sizeof(err)) != UPSTREAM_OK) {
        printf("FAIL log: %s\n", err);
        return 1;
    }
    printf("ok   log: a primary with the sse-fcgi schema; system %s timeline %" PRId64 "\n",
           source.system_identifier, source.timeline);
    if (rl->state.has_source && !same_source(&rl->state.source, &source)) {
        printf("FAIL history: the local copy came from system %s timeline %" PRId64
               "; the log is another history now (README \"Failover\")\n",
               rl->state.source.system_identifier, rl->state.source.timeline);
        failed++;
    } else {
        printf("ok   history: %s\n", rl->state.has_source ? "the same as the local copy's"
                                                          : "no copy made yet");
    }
    struct replica_batch batch;
    bool is_full;
    if (upstream_fetch(u, rl->state.position, &batch, &is_full) != UPSTREAM_OK) {
        printf("FAIL log: %s\n", upstream_errmsg(u));
        failed++;
    } else {
        printf("%s lag: %" PRId64 " positions behind the log's newest %" PRId64 "\n",
               "ok  ", batch.upstream_newest > rl->state.position
                           ? batch.upstream_newest - rl->state.position : 0,
               batch.upstream_newest);
    }
    upstream_close(u);
    printf("sse-fcgi-relay --check: %s\n", failed == 0 ? "ok" : "failed");
    return failed == 0 ? 0 : 1;
}

static int
usage_error(const char *bad_arg, const char *why)
{
    if (bad_arg != NULL)
        fprintf(stderr, "sse-fcgi-relay: %s: %s\n", bad_arg, why);
    else
        fprintf(stderr, "sse-fcgi-relay: %s\n", why);
    fputs(USAGE, stderr);
    return EXIT_USAGE;
}

int
main(int argc, char **argv)
{
    struct cli_relay opt;
    const char *bad_arg, *why;
    if (cli_parse_relay(argc, argv, &opt, &bad_arg, &why) != 0)
        return usage_error(bad_arg, why);
    if (opt.is_help) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (opt.is_version) {
        fputs("sse-fcgi-relay " CLI_VERSION "\n", stdout);
        return 0;
    }
    const char *pg = opt.pg != NULL ? opt.pg : getenv("SSE_PG");
    const char *db = opt.db_path != NULL ? opt.db_path : getenv("SSE_DB");
    if (pg == NULL || pg[0] == '\0')
        return usage_error(NULL, "say where the log is: --pg CONNINFO or SSE_PG");
    if (db == NULL || db[0] == '\0')
        return usage_error(NULL, "say where this node's SQLite file is: --db PATH or SSE_DB");
    const char *level = getenv("SSE_LOG_LEVEL");
    enum log_level lv;
    if (level != NULL && config_parse_log_level(level, &lv) < 0)
        return usage_error(level, "SSE_LOG_LEVEL is one of error, warn, info, debug");
    if (level != NULL)
        log_set_level(lv);
    const char *target = getenv("SSE_LOG");
    if (target != NULL && target[0] != '\0' && log_open(target) != 0)
        fprintf(stderr, "sse-fcgi-relay: SSE_LOG=%s cannot be opened; logging to stderr\n",
                target);
    if (install_signals() != 0) {
        perror("sse-fcgi-relay: pipe");
        return 1;
    }
    struct relay rl = {
        .up_opt = {.conninfo = pg, .timeout_ms = (int)opt.timeout_s * 1000,
                   .batch_rows = (size_t)opt.batch_rows, .batch_bytes = BATCH_BYTES,
                   .stop_fd = stop_read_fd},
        .is_adopting = opt.is_adopt,
    };
    char err[1024];
    if (replica_open(db, BUSY_TIMEOUT_MS, &rl.replica, err, sizeof(err)) != 0) {
        fprintf(stderr, "sse-fcgi-relay: %s\n", err);
        return 1;
    }
    int exit_code;
    if (replica_state(rl.replica, &rl.state) != 0) {
        fprintf(stderr, "sse-fcgi-relay: %s\n", replica_errmsg(rl.replica));
        exit_code = 1;
    } else if (opt.is_check) {
        exit_code = check(&rl);
    } else if (rl.state.kind == REPLICA_STOPPED && !opt.is_adopt) {
        log_line(LOG_LEVEL_ERROR, "relay stopped reason=history_changed position=%" PRId64
                 " detail=recorded_earlier", rl.state.position);
        fprintf(stderr, "sse-fcgi-relay: %s\n", rl.state.detail);
        exit_code = EXIT_HISTORY_CHANGED;
    } else {
        exit_code = run(&rl);
    }
    replica_close(rl.replica);
    return exit_code;
}
