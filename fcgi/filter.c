/*
 * filter.c - which events a stream sends (pure).
 *
 * The policy is the event_types table, loaded by the store and sorted by name, so a type is
 * found by binary search. The requested set is one bool per policy entry. The worker rule
 * (SPEC §4.5) and replay eligibility (§4.2) are decided per event; shedding (§4.8) never
 * touches a critical type. The global channel's types are open (SPEC §3): every type unless
 * types= narrows it, names matched as given. No I/O, no logging: unknown names are reported
 * to the caller.
 */
#include "filter.h"

#include <stdlib.h>
#include <string.h>

static int
compare_name_to_entry(const void *key, const void *entry)
{
    return strcmp((const char *)key, ((const struct event_type_policy *)entry)->name);
}

const struct event_type_policy *
filter_find_type(const struct event_type_policy *policy, size_t policy_count,
                 const char *name)
{
    if (policy == NULL || policy_count == 0 || name == NULL)
        return NULL;
    return bsearch(name, policy, policy_count, sizeof(*policy), compare_name_to_entry);
}

bool
filter_is_worker_stream(const char *stream_id)
{
    return stream_id != NULL
           && (strcmp(stream_id, "worker") == 0 || strncmp(stream_id, "worker:", 7) == 0);
}

/* Marks the names the client asked for; returns how many were known. */
static size_t
mark_requested(struct filter *f, const struct filter_request *req, bool *is_unknown)
{
    size_t known = 0;
    for (size_t i = 0; i < req->type_count; i++) {
        const struct event_type_policy *p =
            filter_find_type(f->policy, f->policy_count, req->type_names[i]);
        if (is_unknown != NULL)
            is_unknown[i] = p == NULL;
        if (p != NULL && !f->is_requested[p - f->policy]) {
            f->is_requested[p - f->policy] = true;
            known++;
        }
    }
    return known;
}

int
filter_init(struct filter *f, const struct event_type_policy *policy, size_t policy_count,
            const struct filter_request *req, bool *is_unknown)
{
    memset(f, 0, sizeof(*f));
    f->policy = policy;
    f->policy_count = policy_count;
    f->has_all_types = req->has_all_types;
    f->has_worker_rule = req->has_worker_rule;
    f->watch = req->watch;
    f->watch_count = req->watch_count;
    f->has_watch_all = req->has_watch_all;
    f->max_lag = req->max_lag;
    f->is_requested = calloc(policy_count ? policy_count : 1, sizeof(bool));
    if (f->is_requested == NULL)
        return -1;
    size_t known = mark_requested(f, req, is_unknown);
    if (req->has_open_types) {
        /* SPEC §3: the global channel has no default set; app-wide events carry the app's
         * own type names, so a name the table does not know is asked for, not a typo. */
        for (size_t i = 0; is_unknown != NULL && i < req->type_count; i++)
            is_unknown[i] = false;
        f->open_names = req->type_names;
        f->open_count = req->type_count;
        f->has_all_types = f->has_all_types || req->type_count == 0;
        f->requested_count = req->type_count;
    } else if ((f->requested_count = known) == 0) {
        /* SPEC §3: an empty or all-unknown list means the default set. */
        for (size_t i = 0; i < policy_count; i++) {
            f->is_requested[i] = policy[i].is_streamed_by_default;
            f->requested_count += policy[i].is_streamed_by_default;
        }
    }
    if (f->has_all_types) {
        for (size_t i = 0; i < policy_count; i++)
            f->is_requested[i] = true;
        f->requested_count = policy_count;
    }
    return 0;
}

void
filter_release(struct filter *f)
{
    if (f == NULL)
        return;
    free(f->is_requested);
    f->is_requested = NULL;
}

static bool
is_watched(const struct filter *f, const char *stream_id)
{
    if (f->has_watch_all)
        return true;
    for (size_t i = 0; i < f->watch_count; i++) {
        if (strcmp(f->watch[i], stream_id) == 0)
            return true;
    }
    return false;
}

/* True when type is one of the open names (has_open_types). */
static bool
is_open_name(const struct filter *f, const char *type)
{
    for (size_t i = 0; type != NULL && i < f->open_count; i++) {
        if (strcmp(f->open_names[i], type) == 0)
            return true;
    }
    return false;
}

enum filter_verdict
filter_check(const struct filter *f, const struct event *e, bool is_replay, int64_t lag)
{
    const struct event_type_policy *p = filter_find_type(f->policy, f->policy_count, e->type);
    bool is_requested = p != NULL ? f->is_requested[p - f->policy]
                                  : f->has_all_types || is_open_name(f, e->type);
    if (!is_requested || (is_replay && (p == NULL || !p->is_replayed)))
        return FILTER_SKIP_TYPE;
    if (f->has_worker_rule && filter_is_worker_stream(e->stream_id)
        && !(p != NULL && p->is_worker_fanin) && !is_watched(f, e->stream_id))
        return FILTER_SKIP_WORKER;
    if (f->max_lag > 0 && lag > f->max_lag && !(p != NULL && p->is_critical))
        return FILTER_SHED;
    return FILTER_SEND;
}
