/*
 * hub_file.c - the shared hub's file: its name, its mapping, the header and the ring in
 * it, and the host-wide counts of streams.
 *
 * The shared mapping (one file, SSE_HUB_DIR/sse-fcgi-<uid>-<hash>-v1.hub) holds a small
 * header (struct hub_shared: generation, the database file's identity, leader pid,
 * subscriber counts) and then the ring (store/shring.c). Only the leader writes it, and
 * only while it holds flock on the file (the election is in store/hub_link.c). Anyone
 * reads the counts, without a lock: counts_seq is odd while the leader changes them.
 */
#define _GNU_SOURCE  /* realpath under -std=c11 */

#include "hub_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shring.h"

enum {
    HUB_PAGE = 4096,
};

/* --- The shared file ----------------------------------------------------------------- */

/* FNV-1a, 64 bits, never 0: the counts table's key (two sessions sharing it would share a
 * count, at odds of one in 2^64). */
static uint64_t
key_hash64(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return h != 0 ? h : 1;
}

static size_t
shared_head_bytes(void)
{
    return (sizeof(struct hub_shared) + HUB_PAGE - 1) / HUB_PAGE * HUB_PAGE;
}

/* The database's path with symbolic links resolved (its directory's, when the file does
 * not exist yet), so every process names the same hub for it. */
static void
canonical_path(const char *path, char *out, size_t size)
{
    char resolved[PATH_MAX];
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
                     slash ? path : ".");
    if (realpath(path, resolved) != NULL)
        n = snprintf(out, size, "%s", resolved);
    else if (n >= 0 && (size_t)n < sizeof(dir) && realpath(dir[0] ? dir : "/", resolved))
        n = snprintf(out, size, "%s/%s", resolved, slash ? slash + 1 : path);
    else
        n = -1;
    if (n < 0 || (size_t)n >= size)
        snprintf(out, size, "%s", path);  /* as given: every process gives the same */
}

/* Opens (creating it when missing) and maps the host's file for db_path. Returns 0, or -1
 * with *why set; the hub is then private. */
int
hub_file_map_shared(struct hub *h, const char **why)
{
    char canonical[PATH_MAX];
    canonical_path(h->db_path, canonical, sizeof(canonical));
    uint64_t hash = key_hash64(canonical, strlen(canonical));
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/sse-fcgi-%ld-%016llx-v%d", h->opt.dir,
                     (long)geteuid(), (unsigned long long)hash, HUB_SHARED_VERSION);
    if (n < 0 || (size_t)n + sizeof(".sock") > sizeof(h->sock_path)) {
        *why = "SSE_HUB_DIR is too long for a socket path";
        return -1;
    }
    memcpy(h->sock_path, path, (size_t)n);
    memcpy(h->sock_path + n, ".sock", sizeof(".sock"));
    if ((size_t)n + sizeof(".hub") > sizeof(path)) {
        *why = "SSE_HUB_DIR is too long";
        return -1;
    }
    memcpy(path + n, ".hub", sizeof(".hub"));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        *why = strerror(errno);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t bytes = shared_head_bytes() + shring_size(HUB_RING_ROWS, HUB_RING_BYTES);
    if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
        *why = "the hub file is not a regular file of this user";
    } else if ((size_t)sb.st_size < bytes && ftruncate(fd, (off_t)bytes) < 0) {
        *why = strerror(errno);  /* growing it twice to the same size is harmless */
    } else {
        void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            h->file_fd = fd;
            h->shared = map;
            h->map_bytes = bytes;
            return 0;
        }
        *why = strerror(errno);
    }
    close(fd);
    return -1;
}

static void *
ring_memory(const struct hub *h)
{
    return (unsigned char *)h->shared + shared_head_bytes();
}

/* Whether a leader has formatted the file with this layout; fills h->shring. */
bool
hub_file_attach_ring(struct hub *h)
{
    return atomic_load(&h->shared->magic) == HUB_SHARED_MAGIC
           && h->shared->version == HUB_SHARED_VERSION
           && shring_attach(&h->shring, ring_memory(h), h->map_bytes - shared_head_bytes(),
                            HUB_RING_ROWS, HUB_RING_BYTES) == 0;
}

/* Takes over a mapping that holds no ring of this layout: formats the header and the
 * ring (magic last), so followers attach to it; one that holds such a ring is kept. */
void
hub_file_format(struct hub *h)
{
    struct hub_shared *sh = h->shared;
    if (!hub_file_attach_ring(h)) {
        atomic_store(&sh->magic, 0);
        memset((unsigned char *)sh + sizeof(sh->magic), 0, sizeof(*sh) - sizeof(sh->magic));
        sh->version = HUB_SHARED_VERSION;
        atomic_store(&sh->restored_newest, -1);
        shring_format(ring_memory(h), HUB_RING_ROWS, HUB_RING_BYTES);
        atomic_store(&sh->magic, HUB_SHARED_MAGIC);
        hub_file_attach_ring(h);
    }
}

/* Marks the mapping usable by this process's streams, once. */
void
hub_file_set_attached(struct hub *h)
{
    if (atomic_load(&h->is_attached))
        return;
    h->generation_base = atomic_load(&h->shared->generation);
    atomic_store(&h->is_attached, true);
}

/* --- Host-wide counts (the leader writes them; anyone reads) ----------------------- */

/* Adds delta to the streams of sub's session and to the total. Called with subs_lock
 * held, by the leader only. A full table counts the total only. */
void
hub_file_count_change(struct hub *h, const struct hub_sub *sub, int64_t delta)
{
    struct hub_shared *sh = h->shared;
    if (sh == NULL || hub_role_of(h) != HUB_ROLE_LEADER)
        return;
    atomic_fetch_add(&sh->subscribers, delta);
    if (sub->scope != STORE_SCOPE_SESSION)
        return;
    uint64_t key = key_hash64(sub->key, strlen(sub->key));
    uint64_t seq = atomic_load_explicit(&sh->counts_seq, memory_order_relaxed);
    atomic_store_explicit(&sh->counts_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    /* The session's slot, else (to add it) the first slot of a session nobody reads any
     * more, or the empty one that ends the chain: a long-lived leader sees sessions come
     * and go, and would otherwise fill the table with ones that ended. */
    struct hub_count *found = NULL, *spare = NULL;
    for (size_t i = 0; i < HUB_COUNT_SLOTS && found == NULL; i++) {
        struct hub_count *c = &sh->counts[(key + i) % HUB_COUNT_SLOTS];
        uint64_t k = atomic_load_explicit(&c->key_hash, memory_order_relaxed);
        if (k == key)
            found = c;
        else if (spare == NULL
                 && (k == 0 || atomic_load_explicit(&c->count, memory_order_relaxed) <= 0))
            spare = c;
        if (k == 0)
            break;
    }
    if (found == NULL && delta > 0 && spare != NULL) {
        atomic_store_explicit(&spare->key_hash, key, memory_order_relaxed);
        atomic_store_explicit(&spare->count, 0, memory_order_relaxed);
        found = spare;
    }
    if (found != NULL)
        atomic_fetch_add_explicit(&found->count, delta, memory_order_relaxed);
    else if (delta > 0)
        atomic_store_explicit(&sh->counts_overflow, 1, memory_order_relaxed);
    atomic_store_explicit(&sh->counts_seq, seq + 2, memory_order_release);
}

/* Empties the counts: a new leader counts again from the subscriptions it is sent. */
void
hub_file_counts_reset(struct hub_shared *sh)
{
    uint64_t seq = atomic_load(&sh->counts_seq);
    atomic_store(&sh->counts_seq, seq + 1);
    for (size_t i = 0; i < HUB_COUNT_SLOTS; i++) {
        atomic_store_explicit(&sh->counts[i].key_hash, 0, memory_order_relaxed);
        atomic_store_explicit(&sh->counts[i].count, 0, memory_order_relaxed);
    }
    atomic_store(&sh->subscribers, 0);
    atomic_store(&sh->counts_overflow, 0);
    atomic_store(&sh->counts_seq, seq + 2);
}

/* The session's count as the leader keeps it; -1 when it could not be read steadily. */
long
hub_file_count_read(const struct hub_shared *sh, const char *session_id)
{
    uint64_t key = key_hash64(session_id, strlen(session_id));
    for (int attempt = 0; attempt < 100; attempt++) {  /* bounded: the writer never waits */
        uint64_t seq = atomic_load_explicit(&sh->counts_seq, memory_order_acquire);
        if (seq % 2 != 0)
            continue;
        int64_t count = 0;
        for (size_t i = 0; i < HUB_COUNT_SLOTS; i++) {
            const struct hub_count *c = &sh->counts[(key + i) % HUB_COUNT_SLOTS];
            uint64_t k = atomic_load_explicit(&c->key_hash, memory_order_relaxed);
            if (k == key)
                count = atomic_load_explicit(&c->count, memory_order_relaxed);
            if (k == key || k == 0)
                break;
        }
        bool is_unknown = count == 0
                          && atomic_load_explicit(&sh->counts_overflow, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&sh->counts_seq, memory_order_relaxed) == seq)
            return is_unknown ? -1 : count > 0 ? (long)count : 0;
    }
    return -1;
}
