/*
 * filter.h - the stream policy, decided without I/O (pure): which types a client asked for,
 * the worker rule (SPEC §4.5), replay eligibility (§4.2) and shedding under lag (§4.8).
 *
 * A filter borrows the policy table and the watch list it is built from; both must outlive
 * it. Checking an event is read-only, so one filter may be shared by threads once built.
 */
#ifndef SSE_FILTER_H
#define SSE_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../store/event.h"

struct filter {
    const struct event_type_policy *policy; /* borrowed; sorted by name (strcmp) */
    size_t policy_count;
    bool *is_requested;                     /* owned; one per policy entry */
    size_t requested_count;                 /* entries set in is_requested */
    bool has_all_types;                     /* types=*: unknown row types pass too */
    const char *const *open_names;          /* borrowed; has_open_types: the names asked
                                             * for, matched as given (NULL: none) */
    size_t open_count;
    bool has_worker_rule;                   /* session streams only (SPEC §3) */
    const char *const *watch;               /* borrowed; "worker" or "worker:<id>" */
    size_t watch_count;
    bool has_watch_all;                     /* watch=* */
    int64_t max_lag;                        /* SSE_MAX_LAG; 0 = never shed */
};

enum filter_verdict {
    FILTER_SEND = 0,
    FILTER_SKIP_TYPE,       /* type not requested (or not replayed, during replay) */
    FILTER_SKIP_WORKER,     /* worker chatter the client did not opt in to */
    FILTER_SHED,            /* non-critical event dropped because the client lags */
};

/* Inputs to filter_init, gathered from the query and the configuration. */
struct filter_request {
    const char *const *type_names;  /* types= entries (borrowed during init only) */
    size_t type_count;
    bool has_all_types;
    const char *const *watch;       /* borrowed for the filter's life */
    size_t watch_count;
    bool has_watch_all;
    bool has_worker_rule;
    bool has_open_types;            /* the global channel (SPEC §3): no names means every
                                     * type, known or not, and a name the policy table does
                                     * not know is matched as given instead of ignored;
                                     * type_names is then borrowed for the filter's life */
    int64_t max_lag;
};

/* Builds a filter over a policy table sorted by name. Names not in the table are reported
 * by setting is_unknown[i] (caller array of type_count, may be NULL). No known name, or no
 * names at all, selects the default set (streamed_by_default). With has_open_types, no
 * names selects every type instead, and every name is kept (none is reported unknown).
 * Returns 0, or -1 when out of memory. Release with filter_release. */
int filter_init(struct filter *f, const struct event_type_policy *policy, size_t policy_count,
                const struct filter_request *req, bool *is_unknown);

/* Frees what filter_init allocated. NULL is safe. */
void filter_release(struct filter *f);

/* Finds a type's policy entry by name, or NULL. Binary search; thread-safe. */
const struct event_type_policy *filter_find_type(const struct event_type_policy *policy,
                                                 size_t policy_count, const char *name);

/* True when stream_id is "worker" or starts with "worker:" (SPEC §4.5). NULL is false. */
bool filter_is_worker_stream(const char *stream_id);

/* Decides one event. is_replay adds the replayed=1 condition (SPEC §4.2). lag is how many
 * ids the event is behind the newest row; it matters only when max_lag > 0. */
enum filter_verdict filter_check(const struct filter *f, const struct event *e, bool is_replay,
                                 int64_t lag);

#endif
