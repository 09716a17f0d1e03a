/*
 * producer.c - the benchmark's producer: INSERTs events at a set rate over a set number of
 * sessions, each stamped with the wall-clock time of its INSERT (data {"t_us":…}), so that
 * the load client can measure delivery latency from it.
 *
 *   producer --db PATH --sessions M --rate R --duration S [--batch B] [--type T]
 *
 * --rate 0 inserts as fast as it can. Rows go round-robin over sessions bench-0..M-1 (which
 * it creates), B rows per transaction. Pacing sleeps until absolute deadlines
 * (clock_nanosleep), so a slow commit does not slow the rate that follows. Prints
 * `inserted=N seconds=S rate=X max_commit_ms=W`: W is the longest BEGIN-to-COMMIT, which
 * includes any wait for another writer's lock (busy timeout 5 s).
 */
#define _GNU_SOURCE /* getopt_long */

#include <getopt.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* SIGTERM ends the run early, with the figures printed (make bench's prune scenario). */
static volatile sig_atomic_t is_stop_requested;

static void
request_stop(int sig)
{
    (void)sig;
    is_stop_requested = 1;
}

static double
now_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "producer: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    exit(1);
}

static void
exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die(db, sql);
}

int
main(int argc, char **argv)
{
    const char *db_path = NULL, *type = "llm_text_delta";
    long sessions = 1, batch = 1;
    double rate = 0, seconds = 10;
    static const struct option OPTIONS[] = {
        {"db", required_argument, NULL, 'd'}, {"sessions", required_argument, NULL, 'm'},
        {"rate", required_argument, NULL, 'r'}, {"duration", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'}, {"type", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", OPTIONS, NULL)) != -1) {
        switch (c) {
        case 'd': db_path = optarg; break;
        case 'm': sessions = atol(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 't': type = optarg; break;
        default: return 2;
        }
    }
    if (db_path == NULL || sessions < 1 || batch < 1 || seconds <= 0) {
        fprintf(stderr, "usage: producer --db PATH --sessions M --rate R --duration S "
                "[--batch B] [--type T]\n");
        return 2;
    }
    sqlite3 *db = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        die(db, "open");
    sqlite3_busy_timeout(db, 5000);
    exec(db, "PRAGMA synchronous=NORMAL");
    sqlite3_stmt *session = NULL, *insert = NULL;
    if (sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO sessions(id) VALUES (?1)", -1, &session,
                           NULL) != SQLITE_OK
        || sqlite3_prepare_v2(db, "INSERT INTO events(session_id, type, data) VALUES (?1, ?2, ?3)",
                              -1, &insert, NULL) != SQLITE_OK)
        die(db, "prepare");
    char id[32], data[96];
    exec(db, "BEGIN");
    for (long i = 0; i < sessions; i++) {
        snprintf(id, sizeof(id), "bench-%ld", i);
        sqlite3_bind_text(session, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(session) != SQLITE_DONE)
            die(db, "insert session");
        sqlite3_reset(session);
    }
    exec(db, "COMMIT");
    double start = now_s(CLOCK_MONOTONIC);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long inserted = 0;
    double max_commit_s = 0;
    struct sigaction on_term = {.sa_handler = request_stop};  /* no SA_RESTART: wakes the sleep */
    sigaction(SIGTERM, &on_term, NULL);
    while (!is_stop_requested && now_s(CLOCK_MONOTONIC) - start < seconds) {
        double begun = now_s(CLOCK_MONOTONIC);
        exec(db, "BEGIN");
        for (long i = 0; i < batch; i++, inserted++) {
            snprintf(id, sizeof(id), "bench-%ld", inserted % sessions);
            long long t_us = (long long)(now_s(CLOCK_REALTIME) * 1e6);
            snprintf(data, sizeof(data), "{\"t_us\":%lld,\"seq\":%ld}", t_us, inserted);
            sqlite3_bind_text(insert, 1, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(insert, 2, type, -1, SQLITE_STATIC);
            sqlite3_bind_text(insert, 3, data, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(insert) != SQLITE_DONE)
                die(db, "insert event");
            sqlite3_reset(insert);
        }
        exec(db, "COMMIT");
        double commit_s = now_s(CLOCK_MONOTONIC) - begun;
        max_commit_s = commit_s > max_commit_s ? commit_s : max_commit_s;
        if (rate > 0) {
            double step = (double)batch / rate;
            next.tv_nsec += (long)(step * 1e9);
            next.tv_sec += next.tv_nsec / 1000000000L;
            next.tv_nsec %= 1000000000L;
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        }
    }
    double took = now_s(CLOCK_MONOTONIC) - start;
    printf("inserted=%ld seconds=%.2f rate=%.0f max_commit_ms=%.1f\n", inserted, took,
           (double)inserted / took, max_commit_s * 1000);
    sqlite3_finalize(session);
    sqlite3_finalize(insert);
    sqlite3_close(db);
    return 0;
}
