/*
 * hub_link.c - the link between the leader of a shared hub and its followers (the other
 * processes of the host), and the election of the leader.
 *
 * The leader is the process that holds flock on the hub file. Nobody waits on the lock:
 * when the leader dies its socket closes under every follower, and each tries the lock
 * without blocking (so no thread sits in flock, and a follower keeps serving its streams'
 * wakeups until then). flock is used, never a POSIX lock, since those vanish when a
 * process closes any descriptor of the file (DEPLOY-NOTES, "Leader election").
 *
 * The link: AF_UNIX SOCK_SEQPACKET, so each message arrives whole and a dead peer is an
 * end of file. Follower to leader: SUB (id, scope, key) and UNSUB (id). Leader to
 * follower: WAKE, a list of ids, each with the session's closed flag in its top bit, or
 * WAKE_ALL when a list could not be sent. On a SUB the leader wakes that subscription at
 * once: rows appended between the stream's first copy and the SUB are then not missed.
 */
#define _GNU_SOURCE  /* accept4, flock under -std=c11 */

#include "hub_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    HUB_RECONNECT_MS = 20,          /* a follower without a leader tries again this soon */
    HUB_SEND_TIMEOUT_MS = 1000,     /* a follower's SUB that waits longer drops the link */
};

/* --- The link, follower side -------------------------------------------------------- */

/* Sends one message to the leader. On failure the link is shut down, so that the link
 * thread builds it again and sends every subscription anew. Called with subs_lock held. */
static void
link_send(struct hub *h, const void *msg, size_t len)
{
    if (h->link_fd < 0)
        return;
    if (send(h->link_fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len)
        shutdown(h->link_fd, SHUT_RDWR);
}

void
hub_link_send_sub(struct hub *h, const struct hub_sub *sub)
{
    unsigned char msg[LINK_HEAD_BYTES + LINK_KEY_MAX];
    size_t len = link_encode_sub(msg, sizeof(msg), sub->link_id, sub->scope, sub->key,
                                 sub->key != NULL ? strlen(sub->key) : 0);
    if (len > 0)  /* 0: longer than any id, never subscribed: woken at its keepalive */
        link_send(h, msg, len);
}

void
hub_link_send_unsub(struct hub *h, const struct hub_sub *sub)
{
    unsigned char msg[LINK_HEAD_BYTES];
    size_t len = link_encode_unsub(msg, sizeof(msg), sub->link_id);
    if (len > 0)
        link_send(h, msg, len);
}

static int
connect_leader(const struct hub *h)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, h->sock_path, sizeof(addr.sun_path));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval timeout = {.tv_sec = HUB_SEND_TIMEOUT_MS / 1000,
                              .tv_usec = HUB_SEND_TIMEOUT_MS % 1000 * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) < 0
        || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Wakes the subscriptions a WAKE names, each with its session's closed flag. */
static void
dispatch_wake(struct hub *h, const struct link_msg *m)
{
    pthread_mutex_lock(&h->subs_lock);
    if (m->kind == LINK_WAKE_ALL) {
        for (size_t i = 0; i < h->by_id_cap; i++) {
            if (h->by_id[i] != NULL)
                hub_wake_local(h->by_id[i]);
        }
    }
    for (size_t i = 0; m->kind == LINK_WAKE && i < m->id_count; i++) {
        uint32_t word = link_msg_wake_id(m, i);
        struct hub_sub *s = hub_sub_of_id(h->by_id, h->by_id_cap, word & ~LINK_CLOSED_BIT);
        if (s == NULL)
            continue;  /* unsubscribed since (its slot may serve another stream now) */
        if (word & LINK_CLOSED_BIT)
            atomic_store(&s->is_session_closed, true);
        hub_wake_local(s);
    }
    pthread_mutex_unlock(&h->subs_lock);
}

/* Serves one connection to the leader until it ends: subscriptions first (and a wakeup of
 * every stream, which may have missed rows while there was no leader), then wakeups. */
static void
follow(struct hub *h, int fd)
{
    pthread_mutex_lock(&h->subs_lock);
    h->link_fd = fd;
    atomic_store(&h->role, HUB_ROLE_FOLLOWER);
    for (size_t i = 0; i < h->by_id_cap; i++) {
        if (h->by_id[i] != NULL) {
            hub_link_send_sub(h, h->by_id[i]);
            hub_wake_local(h->by_id[i]);
        }
    }
    pthread_mutex_unlock(&h->subs_lock);
    for (;;) {
        struct pollfd p[2] = {{.fd = h->opt.shutdown_fd, .events = POLLIN},
                              {.fd = fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents != 0)
            break;
        if (p[1].revents == 0)
            continue;
        unsigned char msg[LINK_MSG_MAX];
        struct link_msg m;
        ssize_t n = recv(fd, msg, sizeof(msg), 0);
        if (n <= 0 || link_decode(msg, (size_t)n, &m) < 0
            || (m.kind != LINK_WAKE && m.kind != LINK_WAKE_ALL))
            break;  /* the leader is gone (0), or spoke nonsense */
        dispatch_wake(h, &m);
    }
    pthread_mutex_lock(&h->subs_lock);
    h->link_fd = -1;
    pthread_mutex_unlock(&h->subs_lock);
    close(fd);
}

/* --- The link, leader side ----------------------------------------------------------- */

/* Queues sub's wakeup on its link (leader), to go out with hub_link_flush. */
void
hub_link_queue(struct hub_link *link, const struct hub_sub *sub)
{
    if (link->pending_count == link->pending_cap) {
        size_t cap = link->pending_cap ? 2 * link->pending_cap : 64;
        uint32_t *grown = realloc(link->pending, cap * sizeof(*grown));
        if (grown == NULL) {
            link->is_wake_all_owed = true;
            return;
        }
        link->pending = grown;
        link->pending_cap = cap;
    }
    link->pending[link->pending_count++] =
        sub->link_id | (atomic_load(&sub->is_session_closed) ? LINK_CLOSED_BIT : 0u);
}

/* Sends what is queued on link, never waiting: a follower whose socket is full is awake
 * (it has not read what came before), and is sent WAKE_ALL as soon as there is room. */
void
hub_link_flush(struct hub_link *link)
{
    if (link->is_wake_all_owed) {
        unsigned char all[LINK_HEAD_BYTES];
        size_t len = link_encode_wake_all(all, sizeof(all));
        if (send(link->fd, all, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            return;
        link->is_wake_all_owed = false;
        link->pending_count = 0;
    }
    unsigned char msg[LINK_MSG_MAX];
    for (size_t at = 0; at < link->pending_count; at += LINK_WAKE_IDS_MAX) {
        size_t n = link->pending_count - at;
        n = n < LINK_WAKE_IDS_MAX ? n : LINK_WAKE_IDS_MAX;
        size_t len = link_encode_wake(msg, sizeof(msg), link->pending + at, n);
        if (send(link->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
            link->is_wake_all_owed = errno == EAGAIN || errno == EWOULDBLOCK;
            break;
        }
    }
    link->pending_count = 0;
}

static void
drop_link(struct hub *h, struct hub_link *link)
{
    pthread_mutex_lock(&h->subs_lock);
    for (size_t i = 0; i < link->subs_cap; i++) {
        struct hub_sub *s = link->subs[i];
        if (s == NULL)
            continue;
        hub_chain_remove(h, s);
        hub_file_count_change(h, s, -1);
        free(s);
    }
    for (struct hub_link **l = &h->links; *l != NULL; l = &(*l)->next) {
        if (*l == link) {
            *l = link->next;
            break;
        }
    }
    pthread_mutex_unlock(&h->subs_lock);
    close(link->fd);
    free(link->subs);
    free(link->pending);
    free(link);
}

/* A follower's SUB: a subscription of the leader's, woken at once (see the top). */
static int
add_remote_sub(struct hub *h, struct hub_link *link, const struct link_msg *m)
{
    uint32_t id = m->id;
    size_t slot = id & LINK_SLOT_MASK;  /* link_decode checked the id, scope and key */
    if (hub_table_reserve(&link->subs, &link->subs_cap, slot) < 0)
        return -1;
    if (link->subs[slot - 1] != NULL)
        return -1;  /* a slot used again before its UNSUB: nonsense */
    struct hub_sub *s = calloc(1, sizeof(*s) + m->key_len + 1);
    if (s == NULL)
        return -1;
    char *copy = (char *)(s + 1);
    if (m->key_len > 0)
        memcpy(copy, m->key, m->key_len);
    s->scope = m->scope;
    s->key = m->scope == STORE_SCOPE_GLOBAL ? NULL : copy;
    s->wake_fd = -1;
    s->link = link;
    s->link_id = id;
    pthread_mutex_lock(&h->subs_lock);
    link->subs[slot - 1] = s;
    hub_chain_insert(h, s);
    hub_file_count_change(h, s, 1);
    hub_link_queue(link, s);
    hub_link_flush(link);
    pthread_mutex_unlock(&h->subs_lock);
    return 0;
}

static void
remove_remote_sub(struct hub *h, struct hub_link *link, uint32_t id)
{
    struct hub_sub *s = hub_sub_of_id(link->subs, link->subs_cap, id);
    if (s == NULL)
        return;
    pthread_mutex_lock(&h->subs_lock);
    link->subs[(id & LINK_SLOT_MASK) - 1] = NULL;
    hub_chain_remove(h, s);
    hub_file_count_change(h, s, -1);
    pthread_mutex_unlock(&h->subs_lock);
    free(s);
}

/* Reads what a follower sent. Returns -1 when the link is over (or spoke nonsense). */
static int
serve_link(struct hub *h, struct hub_link *link)
{
    for (;;) {
        unsigned char msg[LINK_HEAD_BYTES + LINK_KEY_MAX + 1];  /* + 1: a longer one fails */
        ssize_t n = recv(link->fd, msg, sizeof(msg), MSG_DONTWAIT);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        struct link_msg m;
        if (n == 0 || link_decode(msg, (size_t)n, &m) < 0)
            return -1;  /* 0: the follower is gone */
        if (m.kind == LINK_SUB) {
            if (add_remote_sub(h, link, &m) < 0)
                return -1;
        } else if (m.kind == LINK_UNSUB) {
            remove_remote_sub(h, link, m.id);
        } else {
            return -1;
        }
    }
}

static int
listen_on(const struct hub *h)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, h->sock_path, sizeof(addr.sun_path));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    unlink(h->sock_path);  /* the last leader's: we hold the lock, so it is dead */
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || chmod(h->sock_path, 0600) < 0
        || listen(fd, SOMAXCONN) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Takes the mapping over (formats it unless it holds a ring of this layout, which it
 * then goes on with) and counts this process's streams. Called with the flock held. */
static void
take_over(struct hub *h)
{
    struct hub_shared *sh = h->shared;
    hub_file_format(h);
    hub_file_counts_reset(sh);
    hub_file_set_attached(h);
    hub_start_own_ring(h);
    atomic_store(&sh->leader_pid, (int32_t)getpid());
    pthread_mutex_lock(&h->subs_lock);
    if (h->link_fd >= 0)
        close(h->link_fd);
    h->link_fd = -1;
    atomic_store(&h->role, HUB_ROLE_LEADER);
    for (size_t i = 0; i < h->by_id_cap; i++) {
        if (h->by_id[i] != NULL) {
            hub_file_count_change(h, h->by_id[i], 1);
            /* the last leader read their rows: hub_skip_quiet knows nothing of them */
            h->by_id[i]->joined_through = INT64_MAX;
        }
    }
    pthread_mutex_unlock(&h->subs_lock);
    char pid[32];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    hub_log(h, false, "hub leader pid=%s db=%s", pid, h->db_path);
}

bool
hub_link_try_lead(struct hub *h)
{
    if (flock(h->file_fd, LOCK_EX | LOCK_NB) < 0)
        return false;
    take_over(h);
    return true;
}

/* Starts the watcher and serves the followers until shutdown: the leader's link thread,
 * for the rest of the process. */
static void
lead(struct hub *h)
{
    while (hub_start_thread(hub_watcher_main, h) < 0) {
        if (hub_pause_or_shutdown(h, 1000))
            return;
    }
    int listen_fd = -1;
    struct pollfd *fds = NULL;
    struct hub_link **of = NULL;
    size_t cap = 0;
    for (;;) {
        if (listen_fd < 0 && (listen_fd = listen_on(h)) < 0)
            hub_log(h, true, "warning hub socket=%s reason=\"%s\"", h->sock_path, strerror(errno));
        size_t count = 0;
        for (struct hub_link *l = h->links; l != NULL; l = l->next)
            count++;
        if (count + 2 > cap) {
            cap = 2 * (count + 2);
            struct pollfd *f = realloc(fds, cap * sizeof(*f));
            struct hub_link **o = realloc(of, cap * sizeof(*o));
            fds = f != NULL ? f : fds;
            of = o != NULL ? o : of;
            if (f == NULL || o == NULL) {
                cap = 0;
                if (hub_pause_or_shutdown(h, 100))
                    break;
                continue;
            }
        }
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = h->opt.shutdown_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
        for (struct hub_link *l = h->links; l != NULL; l = l->next) {
            of[n] = l;
            fds[n++] = (struct pollfd){.fd = l->fd, .events = POLLIN};
        }
        if (poll(fds, (nfds_t)n, listen_fd < 0 ? 1000 : -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents != 0)
            break;
        for (size_t i = 2; i < n; i++) {
            if (fds[i].revents != 0 && serve_link(h, of[i]) < 0)
                drop_link(h, of[i]);
        }
        if (listen_fd >= 0 && fds[1].revents != 0) {
            int fd;
            while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                struct hub_link *l = calloc(1, sizeof(*l));
                if (l == NULL) {
                    close(fd);
                    continue;
                }
                l->fd = fd;
                pthread_mutex_lock(&h->subs_lock);
                l->next = h->links;
                h->links = l;
                pthread_mutex_unlock(&h->subs_lock);
            }
        }
    }
    free(fds);
    free(of);
}

/* --- The link thread: leader or follower --------------------------------------------- */

/* One per process and shared hub: leads when it can take the lock, else follows the
 * leader; when the leader goes, tries to lead again. */
void *
hub_link_main(void *arg)
{
    struct hub *h = arg;
    for (;;) {
        if (hub_role_of(h) == HUB_ROLE_LEADER || hub_link_try_lead(h)) {
            lead(h);
            return NULL;
        }
        int fd = hub_file_attach_ring(h) ? connect_leader(h) : -1;
        if (fd >= 0) {
            hub_file_set_attached(h);
            follow(h, fd);
        }
        if (hub_pause_or_shutdown(h, fd >= 0 ? 0 : HUB_RECONNECT_MS))
            return NULL;
    }
}
