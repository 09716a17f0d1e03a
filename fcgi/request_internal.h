/*
 * request_internal.h - what fcgi/request.c (a request's route, settings, access, errors,
 * health and life in the loop) and fcgi/stream.c (its event stream: replay, resume, live)
 * share. Internal to fcgi/; the server sees request.h only.
 *
 * A request is one object from accept to free (struct request): request.c answers it, or
 * hands it to stream_serve when it streams; while it is REQUEST_LIVE its socket and timer
 * events go to stream.c, and once the stream ends request.c writes the response's end and
 * frees it. Everything here belongs to the loop's thread.
 */
#ifndef SSE_REQUEST_INTERNAL_H
#define SSE_REQUEST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store/hub.h"
#include "../store/store.h"
#include "buf.h"
#include "config.h"
#include "conn.h"
#include "filter.h"
#include "loop.h"
#include "params.h"
#include "request.h"
#include "stream.h"

enum {
    REQUEST_RETRY_AFTER_S = 2,       /* Retry-After on 503, retry: of a soft refusal */
    REQUEST_BUSY_TIMEOUT_MS = 2000,  /* SQLite busy timeout of a read connection */
    LOG_VALUE_MAX = 96,              /* bytes of a client-supplied value in a log line */
};

#define REQUEST_OF(ptr, member) ((struct request *)((char *)(ptr) - offsetof(struct request, member)))

/* The live state of an open stream. */
struct live {
    struct store *st;               /* owned; the stream's own connection: for its start,
                                     * and while it is behind the hub's memory */
    struct hub *hub;                /* borrowed; the process's watcher of the database */
    struct hub_sub sub;             /* registered with hub while is_subscribed */
    bool is_subscribed;
    unsigned long hub_generation;   /* the hub's at join: a change means a new file */
    bool is_parked;                 /* STREAM_OUTPUT_MARK bytes wait: no reading until the
                                     * socket drains */
    struct filter filter;           /* owned */
    struct event_type_policy *policy; /* owned */
    size_t policy_count;
    struct store_batch batch;       /* owned; the rows being sent */
    int64_t cursor;                 /* highest id dealt with */
    bool is_ahead_of_relay;         /* the cursor is an id of the shared log this node's
                                     * relay has not copied yet (README "Several web
                                     * nodes"): wait for it, it is not a restore */
    int64_t replay_until;           /* rows with id <= this are replay (SPEC §4.2); 0: none */
    long replayed;                  /* events sent from the replay window */
    long events_sent;
    long shed;
    bool is_session_closed;         /* seen before the last read began */
    long probe_ms;                  /* 0 = no probe writes */
    int64_t last_write_ms;          /* any write: probes */
    int64_t last_beat_ms;           /* frames and keepalives: keepalive timer */
    int64_t end_ms;                 /* SSE_MAX_STREAM_S deadline, INT64_MAX for none */
};

enum request_state {
    REQUEST_ANSWERING,              /* being answered, in request_serve */
    REQUEST_LIVE,                   /* a stream in the loop */
    REQUEST_ENDING,                 /* the response is complete; its output still waits */
    REQUEST_DONE,                   /* freed at the end of this turn of the loop */
};

/* Everything one request owns. */
struct request {
    struct conn *conn;              /* owned; the transport */
    struct request_shared *shared;   /* borrowed; process-wide */
    enum request_state state;
    bool has_slot;                  /* holds one of the process's stream slots */
    struct config cfg;              /* strings borrowed from the request/environment */
    bool is_head;
    const char *cors_origin;        /* Access-Control-Allow-Origin value or NULL */
    struct route route;
    struct query query;
    struct store_channel channel;
    char channel_key[PARAMS_ID_MAX + 8]; /* "worker:<id>" for worker streams */
    char log_subject[LOG_VALUE_MAX + 16]; /* "session=<id>", "worker=<id>", "channel=global" */
    struct buf out;                 /* SSE bytes not yet handed to the conn; at most
                                     * STREAM_OUT_MAX */
    struct live lv;                 /* a stream's */
    bool is_client_gone;            /* seen; the stream ends STREAM_GONE_GRACE_MS later */
    bool is_watched;                /* conn->io is in the loop */
    struct loop_timer timer;        /* the earliest deadline */
    struct loop_task wake_task;     /* posted by the hub's wake */
    struct loop_task free_task;     /* frees the request after the turn that retired it */
    struct request *prev, *next;    /* shared->open */
};

/* ---- request.c, for stream.c ------------------------------------------------------- */

/* A request parameter (CGI: the environment) or NULL. */
const char *request_param(const struct request *r, const char *name);

/* Hands what r->out holds to the conn (written at the end of the round). Returns 0, or -1
 * when the conn is broken. */
int request_flush_out(struct request *r);

/* The answers of SPEC §5 and §4.12, each into the conn. */
void request_respond_error(struct request *r, int status, const char *message);
void request_respond_unavailable(struct request *r, bool is_stream_route, const char *message);
void request_respond_store_error(struct request *r, int rc, const char *detail);

/* Opens the request's database; answers and returns -1 when it cannot. */
int request_open_store(struct request *r, struct store **st);

/* SSE_AUTH; answers and returns -1 when the request may not read its channel. */
int request_authorize(struct request *r, struct store *st);

/* The hub of the request's database (hub.h); NULL when none could be started. */
struct hub *request_hub(const struct request *r);

/* What the request's descriptor is watched for, with EPOLLOUT when output waits. */
uint32_t request_watched_events(const struct request *r, bool is_waiting);

/* Writes what the conn holds; watches for EPOLLOUT while some waits and arms the timer.
 * Returns 0, or -1 when the client is gone. */
int request_write_out(struct request *r);

/* Arms the timer for the request's earliest deadline, when that is sooner than it stands. */
void request_arm_timer(struct request *r);

/* SSE_SLOW_CLIENT_S in ms. */
int64_t request_slow_limit_ms(const struct request *r);

bool request_is_shutting_down(const struct request *r);

/* The response is complete: its end is written, and the request freed once the socket has
 * taken it all (or the client is found gone, or takes nothing for the slow-client limit). */
void request_finish(struct request *r);

/* The request is over: everything it holds is given back now, its memory at the end of
 * the turn. */
void request_retire(struct request *r);

#endif
