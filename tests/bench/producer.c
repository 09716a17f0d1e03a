/*
 * producer.c - the benchmark's producer: INSERTs events at a set rate over a set number of
 * sessions, each stamped with the wall-clock time of its INSERT (data {"t_us":…}), so that
 * the load client can measure delivery latency from it.
 *
 *   producer --db PATH --sessions M --rate R --duration S [--batch B] [--type T]
 *   producer --nchan-port P --sessions M --rate R --duration S [--batch B]
 *   producer --pg CONNINFO --sessions M --rate R --duration S [--batch B] [--type T]
 *
 * --rate 0 inserts as fast as it can. Rows go round-robin over sessions bench-0..M-1 (which
 * it creates), B rows per transaction. Pacing sleeps until absolute deadlines
 * (clock_nanosleep), so a slow commit does not slow the rate that follows. Prints
 * `inserted=N seconds=S rate=X max_commit_ms=W`: W is the longest BEGIN-to-COMMIT, which
 * includes any wait for another writer's lock (busy timeout 5 s).
 *
 * --nchan-port publishes to nginx + nchan on 127.0.0.1:P instead (the bench's reference):
 * each event is one POST /pub/bench-N over one keep-alive connection, whose body is the
 * {"data":{"t_us":…,"seq":…}} the load client reads, stamped as the POST is built; a batch
 * is B POSTs pipelined in one write, and W is then the longest batch, every answer
 * (201/202) read.
 *
 * --pg commits into PostgreSQL's shared log instead (deploy/postgresql/schema.sql; make
 * bench's h, where relays copy it into the web nodes' SQLite files): one connection, the
 * sessions made in one INSERT ... ON CONFLICT DO NOTHING, then a prepared INSERT per event,
 * each its own transaction (autocommit) when B is 1, else B in one BEGIN ... COMMIT. The
 * stamp is taken just before the INSERT is sent, so latency runs from the start of its
 * commit; W is the longest INSERT (or BEGIN-to-COMMIT), the trigger and its lock included.
 */
#define _GNU_SOURCE /* getopt_long */

#include <arpa/inet.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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

static void
die_errno(const char *what)
{
    perror(what);
    exit(1);
}

static int
connect_nchan(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0
        || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        die_errno("producer: connect");
    return fd;
}

/* Appends one POST of `body` to /pub/SESSION to `out` (OUT_BYTES), at *len. */
enum { OUT_BYTES = 32768, ANSWER_BYTES = 65536 };

static void
append_post(char *out, size_t *len, const char *session, const char *body)
{
    int n = snprintf(out + *len, OUT_BYTES - *len,
                     "POST /pub/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     session, strlen(body), body);
    if (n < 0 || (size_t)n >= OUT_BYTES - *len) {
        fprintf(stderr, "producer: batch too large\n");
        exit(1);
    }
    *len += (size_t)n;
}

/* Writes the pipelined POSTs and reads `count` whole answers (head and Content-Length
 * body), so that the connection stays usable. Any status but 2xx ends the run. */
static void
send_posts(int fd, const char *out, size_t len, long count)
{
    static char answer[ANSWER_BYTES];
    static size_t got;  /* bytes of the next answers already read */
    for (size_t sent = 0; sent < len;) {
        ssize_t n = write(fd, out + sent, len - sent);
        if (n <= 0)
            die_errno("producer: POST");
        sent += (size_t)n;
    }
    while (count > 0) {
        answer[got] = '\0';
        const char *end = strstr(answer, "\r\n\r\n");
        if (end != NULL) {
            if (strncmp(answer, "HTTP/1.1 2", 10) != 0) {
                fprintf(stderr, "producer: %.*s\n", (int)strcspn(answer, "\r"), answer);
                exit(1);
            }
            const char *length = strcasestr(answer, "\r\nContent-Length:");
            size_t body_bytes = length != NULL && length < end ? (size_t)atol(length + 17) : 0;
            size_t whole = (size_t)(end + 4 - answer) + body_bytes;
            if (got >= whole) {
                memmove(answer, answer + whole, got - whole);
                got -= whole;
                count--;
                continue;
            }
        }
        if (got == sizeof(answer) - 1) {
            fprintf(stderr, "producer: answer too long\n");
            exit(1);
        }
        ssize_t n = read(fd, answer + got, sizeof(answer) - 1 - got);
        if (n <= 0)
            die_errno("producer: answer");
        got += (size_t)n;
    }
}

/* Sleeps until the next batch's absolute deadline; rate 0 does not sleep. */
static void
pace(struct timespec *next, long batch, double rate)
{
    if (rate <= 0)
        return;
    next->tv_nsec += (long)((double)batch / rate * 1e9);
    next->tv_sec += next->tv_nsec / 1000000000L;
    next->tv_nsec %= 1000000000L;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL);
}

static void
print_summary(long inserted, double took_s, double max_commit_s)
{
    printf("inserted=%ld seconds=%.2f rate=%.0f max_commit_ms=%.1f\n", inserted, took_s,
           (double)inserted / took_s, max_commit_s * 1000);
}

/* Where the events go: begin a batch, add one event to it (its session, and its data JSON
 * with the stamp just taken), end it (commit, or send it and read every answer). */
struct target {
    void (*begin)(void *ctx);
    void (*add)(void *ctx, const char *session, const char *data);
    void (*end)(void *ctx);
    void *ctx;
};

/* Publishes round-robin over sessions bench-0..sessions-1, batch events per begin/end, paced to
 * rate (0: as fast as it can), for seconds or until SIGTERM, then prints the summary, whose
 * max_commit_ms is the longest begin-to-end. */
static void
publish(const struct target *t, long sessions, double rate, long batch, double seconds)
{
    char id[32], data[96];
    double start = now_s(CLOCK_MONOTONIC), max_batch_s = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    long published = 0;
    while (!is_stop_requested && now_s(CLOCK_MONOTONIC) - start < seconds) {
        double begun = now_s(CLOCK_MONOTONIC);
        t->begin(t->ctx);
        for (long i = 0; i < batch; i++, published++) {
            snprintf(id, sizeof(id), "bench-%ld", published % sessions);
            long long t_us = (long long)(now_s(CLOCK_REALTIME) * 1e6);
            snprintf(data, sizeof(data), "{\"t_us\":%lld,\"seq\":%ld}", t_us, published);
            t->add(t->ctx, id, data);
        }
        t->end(t->ctx);
        double batch_s = now_s(CLOCK_MONOTONIC) - begun;
        max_batch_s = batch_s > max_batch_s ? batch_s : max_batch_s;
        pace(&next, batch, rate);
    }
    print_summary(published, now_s(CLOCK_MONOTONIC) - start, max_batch_s);
}

/* --nchan-port: a batch is its POSTs, pipelined in one write. */
struct nchan_target {
    int fd;
    size_t len;             /* bytes of out in use */
    long count;             /* POSTs in out */
    char out[OUT_BYTES];
};

static void
begin_nchan_batch(void *ctx)
{
    struct nchan_target *n = ctx;
    n->len = 0;
    n->count = 0;
}

static void
add_nchan_event(void *ctx, const char *session, const char *data)
{
    struct nchan_target *n = ctx;
    char body[128];
    snprintf(body, sizeof(body), "{\"data\":%s}", data);
    append_post(n->out, &n->len, session, body);
    n->count++;
}

static void
end_nchan_batch(void *ctx)
{
    struct nchan_target *n = ctx;
    send_posts(n->fd, n->out, n->len, n->count);
}

static int
publish_nchan(int port, long sessions, double rate, long batch, double seconds)
{
    struct nchan_target *n = calloc(1, sizeof(*n));  /* 32 KiB: off the stack */
    if (n == NULL)
        die_errno("producer");
    n->fd = connect_nchan(port);
    const struct target t = {begin_nchan_batch, add_nchan_event, end_nchan_batch, n};
    publish(&t, sessions, rate, batch, seconds);
    close(n->fd);
    free(n);
    return 0;
}

/* --db: a batch is one transaction of prepared INSERTs. */
struct sqlite_target {
    sqlite3 *db;
    sqlite3_stmt *insert;
    const char *type;       /* borrowed: argv */
};

static void
begin_sqlite_batch(void *ctx)
{
    exec(((struct sqlite_target *)ctx)->db, "BEGIN");
}

static void
add_sqlite_event(void *ctx, const char *session, const char *data)
{
    struct sqlite_target *s = ctx;
    sqlite3_bind_text(s->insert, 1, session, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s->insert, 2, s->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->insert, 3, data, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s->insert) != SQLITE_DONE)
        die(s->db, "insert event");
    sqlite3_reset(s->insert);
}

static void
end_sqlite_batch(void *ctx)
{
    exec(((struct sqlite_target *)ctx)->db, "COMMIT");
}

static int
publish_sqlite(const char *db_path, long sessions, double rate, long batch, double seconds,
               const char *type)
{
    struct sqlite_target s = {.type = type};
    if (sqlite3_open(db_path, &s.db) != SQLITE_OK)
        die(s.db, "open");
    sqlite3_busy_timeout(s.db, 5000);
    exec(s.db, "PRAGMA synchronous=NORMAL");
    sqlite3_stmt *session = NULL;
    if (sqlite3_prepare_v2(s.db, "INSERT OR IGNORE INTO sessions(id) VALUES (?1)", -1, &session,
                           NULL) != SQLITE_OK
        || sqlite3_prepare_v2(s.db, "INSERT INTO events(session_id, type, data) "
                              "VALUES (?1, ?2, ?3)", -1, &s.insert, NULL) != SQLITE_OK)
        die(s.db, "prepare");
    char id[32];
    exec(s.db, "BEGIN");
    for (long i = 0; i < sessions; i++) {
        snprintf(id, sizeof(id), "bench-%ld", i);
        sqlite3_bind_text(session, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(session) != SQLITE_DONE)
            die(s.db, "insert session");
        sqlite3_reset(session);
    }
    exec(s.db, "COMMIT");
    const struct target t = {begin_sqlite_batch, add_sqlite_event, end_sqlite_batch, &s};
    publish(&t, sessions, rate, batch, seconds);
    sqlite3_finalize(session);
    sqlite3_finalize(s.insert);
    sqlite3_close(s.db);
    return 0;
}

/* --pg: a batch is one autocommitted INSERT, or B in one transaction. */
struct pg_target {
    PGconn *conn;
    long batch;
    const char *type;       /* borrowed: argv */
};

static void
die_pg(PGconn *conn, PGresult *res, const char *what)
{
    fprintf(stderr, "producer: %s: %s", what,
            res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    exit(1);
}

/* Runs sql (or the statement prepared as name, when sql is NULL) with params; any answer
 * but success ends the run. */
static void
exec_pg(PGconn *conn, const char *sql, const char *name, int count, const char *const *params)
{
    PGresult *res = sql != NULL ? PQexecParams(conn, sql, count, NULL, params, NULL, NULL, 0)
                                : PQexecPrepared(conn, name, count, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die_pg(conn, res, sql != NULL ? sql : name);
    PQclear(res);
}

/* BEGIN or COMMIT around a batch of more than one event; one alone autocommits. */
static void
bracket_pg_batch(const struct pg_target *p, const char *sql)
{
    if (p->batch > 1)
        exec_pg(p->conn, sql, NULL, 0, NULL);
}

static void
begin_pg_batch(void *ctx)
{
    bracket_pg_batch(ctx, "BEGIN");
}

static void
add_pg_event(void *ctx, const char *session, const char *data)
{
    struct pg_target *p = ctx;
    const char *const params[] = {session, p->type, data};
    exec_pg(p->conn, NULL, "event", 3, params);
}

static void
end_pg_batch(void *ctx)
{
    bracket_pg_batch(ctx, "COMMIT");
}

static int
publish_pg(const char *conninfo, long sessions, double rate, long batch, double seconds,
           const char *type)
{
    struct pg_target p = {.conn = PQconnectdb(conninfo), .batch = batch, .type = type};
    if (PQstatus(p.conn) != CONNECTION_OK)
        die_pg(p.conn, NULL, "connect");
    char count[24];
    snprintf(count, sizeof(count), "%ld", sessions);
    const char *const params[] = {count};
    exec_pg(p.conn, "INSERT INTO sessions(id) SELECT 'bench-' || i "
            "FROM generate_series(0, $1::bigint - 1) AS i ON CONFLICT (id) DO NOTHING", NULL,
            1, params);
    PGresult *res = PQprepare(p.conn, "event", "INSERT INTO events(session_id, type, data) "
                              "VALUES ($1, $2, $3)", 3, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die_pg(p.conn, res, "prepare");
    PQclear(res);
    const struct target t = {begin_pg_batch, add_pg_event, end_pg_batch, &p};
    publish(&t, sessions, rate, batch, seconds);
    PQfinish(p.conn);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *db_path = NULL, *pg = NULL, *type = "llm_text_delta";
    long sessions = 1, batch = 1;
    int nchan_port = 0;
    double rate = 0, seconds = 10;
    static const struct option OPTIONS[] = {
        {"db", required_argument, NULL, 'd'}, {"sessions", required_argument, NULL, 'm'},
        {"rate", required_argument, NULL, 'r'}, {"duration", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 's'},
        {"batch", required_argument, NULL, 'b'}, {"type", required_argument, NULL, 't'},
        {"nchan-port", required_argument, NULL, 'n'}, {"pg", required_argument, NULL, 'g'},
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
        case 'n': nchan_port = atoi(optarg); break;
        case 'g': pg = optarg; break;
        default: return 2;
        }
    }
    int targets = (db_path != NULL) + (nchan_port > 0) + (pg != NULL);
    if (targets != 1 || sessions < 1 || batch < 1 || seconds <= 0) {
        fprintf(stderr, "usage: producer {--db PATH | --nchan-port P | --pg CONNINFO} "
                "--sessions M --rate R --duration S [--batch B] [--type T]\n");
        return 2;
    }
    struct sigaction on_term = {.sa_handler = request_stop};  /* no SA_RESTART: wakes the sleep */
    sigaction(SIGTERM, &on_term, NULL);
    if (nchan_port > 0)
        return publish_nchan(nchan_port, sessions, rate, batch, seconds);
    if (pg != NULL)
        return publish_pg(pg, sessions, rate, batch, seconds, type);
    return publish_sqlite(db_path, sessions, rate, batch, seconds, type);
}
