/*
 * test_memory.c - what one sse-fcgi process costs under Apache + mod_fcgid (issue 12).
 *
 * mod_fcgid runs one process per stream, so the memory bill is one process's share times
 * the streams. MEMORY_STREAMS clients (default 40; `make memory` asks for 200) each hold a
 * stream of s1, so each holds a process of its own (SSE_THREADS=1, the default);
 * MEMORY_EVENTS events (200) are then published and every stream must get them all. With
 * MEMORY_HISTORY=N, N rows of 500 bytes are published first and every stream replays them
 * (Last-Event-ID: 0), as a client that comes back from far behind: what a connection's page
 * cache holds once it has read that much. Then every responder process is read:
 *   - /proc/PID/smaps_rollup: Pss, private (Private_Clean + Private_Dirty: the pages no
 *     other process maps, which other processes on the host cannot change) and Rss;
 *   - /proc/PID/smaps: the same split by mapping, each one counted under its file (its
 *     .bss, the anonymous mapping right after its writable segment, with it), [heap], the
 *     glibc thread arenas (anonymous mappings on a 64 MiB boundary: HEAP_MAX_SIZE), the
 *     thread stacks (the mappings that hold a thread's stack pointer, from
 *     /proc/PID/task/TID/syscall), the main stack, and any other anonymous mapping.
 * Printed, per process (the mean over all of them):
 *   memory: P processes for N streams, E events each: Pss a KiB (min-max), private b KiB,
 *           Rss c KiB, T threads per process
 *   memory:   <mapping>  Pss KiB  Rss KiB  Private_Dirty KiB
 * Pss counts a shared page once over its sharers, so the mean Pss over the processes is
 * what each adds to the host. The check is a guard against a regression, not the budget
 * (README "Memory per process"): the mean private memory, which other processes on the
 * host do not move, at most MEMORY_PRIVATE_MAX_KIB (960; 734 when it was written: linking
 * libcrypto again would add 408), not with MEMORY_HISTORY nor under make sanitize.
 * MEMORY_HOLD_S keeps the streams open that many seconds after the figures, to look at
 * the processes by hand.
 */
#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

enum {
    MEMORY_PROCESSES_MAX = 1024,
    CATEGORIES_MAX = 64,
    CATEGORY_NAME_MAX = 64,
    VMAS_MAX = 4096,
    THREADS_MAX = 256,
    ARENA_ALIGN = 64 * 1024 * 1024,     /* glibc's HEAP_MAX_SIZE on 64-bit */
};

static long
setting(const char *name, long fallback)
{
    const char *value = getenv(name);
    return value != NULL && atol(value) > 0 ? atol(value) : fallback;
}

/* One mapping of /proc/PID/smaps, in KiB. */
struct vma {
    uintptr_t start, end;
    char perms[5];
    char path[256];             /* "" for an anonymous mapping */
    long pss, rss, private_dirty;
};

/* The figures of one category, summed over the processes read. */
struct category {
    char name[CATEGORY_NAME_MAX];
    long pss, rss, private_dirty;
};

struct tally {
    struct category cats[CATEGORIES_MAX];
    size_t count;
    long processes, threads, pss, rss, uss, pss_min, pss_max;
};

static void
add_to(struct tally *t, const char *name, const struct vma *v)
{
    size_t i = 0;
    while (i < t->count && strcmp(t->cats[i].name, name) != 0)
        i++;
    DIAG_CHECK(i < CATEGORIES_MAX, "more than %d kinds of mapping", CATEGORIES_MAX);
    if (i == t->count)
        snprintf(t->cats[t->count++].name, CATEGORY_NAME_MAX, "%s", name);
    t->cats[i].pss += v->pss;
    t->cats[i].rss += v->rss;
    t->cats[i].private_dirty += v->private_dirty;
}

/* Reads /proc/pid/smaps into vmas. Returns the count (0 when the process is gone). */
static size_t
read_smaps(pid_t pid, struct vma *vmas, size_t cap)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%ld/smaps", (long)pid);
    FILE *f = fopen(path, "re");
    size_t n = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        uintmax_t start, end;
        char perms[5], name[256] = "";
        long kib;
        if (sscanf(line, "%jx-%jx %4s %*s %*s %*s %255[^\n]", &start, &end, perms, name) >= 3) {
            DIAG_CHECK(n < cap, "pid %ld has more than %zu mappings", (long)pid, cap);
            vmas[n] = (struct vma){.start = (uintptr_t)start, .end = (uintptr_t)end};
            snprintf(vmas[n].perms, sizeof(vmas[n].perms), "%s", perms);
            snprintf(vmas[n].path, sizeof(vmas[n].path), "%s", name);
            n++;
        } else if (n > 0 && sscanf(line, "Pss: %ld kB", &kib) == 1) {
            vmas[n - 1].pss = kib;
        } else if (n > 0 && sscanf(line, "Rss: %ld kB", &kib) == 1) {
            vmas[n - 1].rss = kib;
        } else if (n > 0 && sscanf(line, "Private_Dirty: %ld kB", &kib) == 1) {
            vmas[n - 1].private_dirty = kib;
        }
    }
    if (f != NULL)
        fclose(f);
    return n;
}

/* The stack pointers of pid's threads but the main one, from /proc/PID/task/TID/syscall
 * ("nr args... sp pc", or "-1 sp pc" outside a system call). Returns the count. */
static size_t
thread_stack_pointers(pid_t pid, uintptr_t *sps, size_t cap)
{
    char dir_path[64];
    snprintf(dir_path, sizeof(dir_path), "/proc/%ld/task", (long)pid);
    DIR *dir = opendir(dir_path);
    size_t n = 0;
    struct dirent *de;
    while (dir != NULL && (de = readdir(dir)) != NULL && n < cap) {
        if (de->d_name[0] == '.' || atol(de->d_name) == (long)pid)
            continue;
        char path[352], text[512];
        snprintf(path, sizeof(path), "%s/%s/syscall", dir_path, de->d_name);
        if (testenv_read_file(path, text, sizeof(text)) <= 0)
            continue;
        char *fields[10];
        size_t count = 0;
        char *tok = strtok(text, " \n");
        for (; tok != NULL && count < 10; tok = strtok(NULL, " \n"))
            fields[count++] = tok;
        if (count >= 3)
            sps[n++] = (uintptr_t)strtoull(fields[count - 2], NULL, 16);
    }
    if (dir != NULL)
        closedir(dir);
    return n;
}

/* The basename of a mapped file, "[heap]", "[stack]", "[vdso]"... */
static const char *
file_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

/* The category of vmas[i] (see the top of the file). */
static const char *
categorize(const struct vma *vmas, size_t i, const uintptr_t *sps, size_t sp_count)
{
    const struct vma *v = &vmas[i];
    if (v->path[0] == '[') {
        if (strcmp(v->path, "[heap]") == 0)
            return "[heap] (main arena)";
        if (strcmp(v->path, "[stack]") == 0)
            return "[stack] (main thread)";
        return "[vdso] [vvar] ...";
    }
    if (v->path[0] != '\0')
        return file_name(v->path);
    for (size_t k = 0; k < sp_count; k++) {
        if (sps[k] >= v->start && sps[k] < v->end)
            return "thread stacks";
    }
    if (v->start % ARENA_ALIGN == 0 && strcmp(v->perms, "rw-p") == 0)
        return "malloc thread arenas";
    if (i > 0 && vmas[i - 1].end == v->start && vmas[i - 1].path[0] == '/'
        && vmas[i - 1].perms[1] == 'w')
        return file_name(vmas[i - 1].path);  /* its .bss */
    return "other anonymous";
}

/* A field of /proc/pid/smaps_rollup or status in KiB (or a count); -1 when missing. */
static long
proc_field(pid_t pid, const char *file, const char *field)
{
    char path[64];
    static char text[16384];
    snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, file);
    if (testenv_read_file(path, text, sizeof(text)) <= 0)
        return -1;
    const char *line = strstr(text, field);
    return line ? strtol(line + strlen(field), NULL, 10) : -1;
}

static void
tally_process(struct tally *t, pid_t pid)
{
    static struct vma vmas[VMAS_MAX];
    uintptr_t sps[THREADS_MAX];
    size_t sp_count = thread_stack_pointers(pid, sps, THREADS_MAX);
    size_t n = read_smaps(pid, vmas, VMAS_MAX);
    long pss = proc_field(pid, "smaps_rollup", "\nPss:");
    long rss = proc_field(pid, "smaps_rollup", "\nRss:");
    long uss = proc_field(pid, "smaps_rollup", "\nPrivate_Clean:")
               + proc_field(pid, "smaps_rollup", "\nPrivate_Dirty:");
    long threads = proc_field(pid, "status", "\nThreads:");
    DIAG_CHECK(n > 0 && pss > 0 && rss > 0 && threads > 0, "cannot read /proc/%ld",
               (long)pid);
    for (size_t i = 0; i < n; i++)
        add_to(t, categorize(vmas, i, sps, sp_count), &vmas[i]);
    t->pss_min = t->processes == 0 || pss < t->pss_min ? pss : t->pss_min;
    t->pss_max = pss > t->pss_max ? pss : t->pss_max;
    t->processes++;
    t->pss += pss;
    t->rss += rss;
    t->uss += uss;
    t->threads += threads;
}

static int
by_pss_descending(const void *a, const void *b)
{
    const struct category *x = a, *y = b;
    return (y->pss > x->pss) - (y->pss < x->pss);
}

static void
print_tally(struct tally *t, long streams, long events)
{
    long p = t->processes;
    fprintf(stderr, "memory: %ld processes for %ld streams, %ld events each: Pss %ld KiB "
            "(%ld-%ld), private %ld KiB, Rss %ld KiB, %.1f threads per process\n", p, streams,
            events, t->pss / p, t->pss_min, t->pss_max, t->uss / p, t->rss / p,
            (double)t->threads / (double)p);
    qsort(t->cats, t->count, sizeof(t->cats[0]), by_pss_descending);
    fprintf(stderr, "memory:   %-24s %8s %8s %14s\n", "mapping (per process)", "Pss KiB",
            "Rss KiB", "Private_Dirty");
    for (size_t i = 0; i < t->count; i++) {
        const struct category *c = &t->cats[i];
        if (c->rss == 0)
            continue;
        fprintf(stderr, "memory:   %-24s %8.1f %8.1f %14.1f\n", c->name,
                (double)c->pss / (double)p, (double)c->rss / (double)p,
                (double)c->private_dirty / (double)p);
    }
}

/* The Apache limits that let one test hold `streams` fcgid processes, each spawned without
 * mod_fcgid's score limit holding it back. */
static void
limits(char *out, size_t size, long streams)
{
    snprintf(out, size, "FcgidMaxProcessesPerClass %ld\nFcgidMaxProcesses %ld\n"
             "FcgidSpawnScoreUpLimit %ld\nServerLimit %ld\nThreadsPerChild 25\n"
             "MaxRequestWorkers %ld\n", streams + 16, streams + 16, 4 * streams + 64,
             streams / 25 + 4, (streams / 25 + 4) * 25);
}

START_TEST(test_memory_per_process)
{
    long streams = setting("MEMORY_STREAMS", 40), events = setting("MEMORY_EVENTS", 200);
    long history = setting("MEMORY_HISTORY", 0), total = history + events;
    DIAG_CHECK(streams < MEMORY_PROCESSES_MAX, "MEMORY_STREAMS above %d",
               MEMORY_PROCESSES_MAX - 1);
    char directives[512];
    limits(directives, sizeof(directives), streams);
    const char *const settings[] = {"SSE_THREADS", "1", "SSE_LOG_LEVEL", "info", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){
        .env = settings, .apache_directives = directives});
    struct sse_client *clients = calloc((size_t)streams, sizeof(*clients));
    long long *ids = calloc((size_t)total + 1, sizeof(*ids));
    DIAG_CHECK(clients != NULL && ids != NULL, "out of memory");
    if (history > 0)  /* rows of 500 bytes that every stream replays (Last-Event-ID: 0) */
        publish_okf(&test_env, "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM "
                    "k WHERE n < %ld) INSERT INTO events(session_id, type, data) SELECT 's1', "
                    "'execution_started', json_object('n', n, 'pad', hex(zeroblob(240))) "
                    "FROM k;\n", history);
    const char *const resume[] = {"Last-Event-ID: 0", NULL};
    int64_t start_ms = testenv_now_ms();
    for (long i = 0; i < streams; i++)  /* all at once: mod_fcgid spawns while they wait */
        sse_client_send(&clients[i], test_srv.port, "GET", "/api/sessions/s1/events",
                        history > 0 ? resume : NULL);
    for (long i = 0; i < streams; i++) {
        sse_client_wait_head(&clients[i], 60000);
        DIAG_CHECK(clients[i].status == 200, "%s: status %d", clients[i].request,
                   clients[i].status);
        struct sse_frame f;
        sse_client_expect_block(&clients[i], &f, 60000);
        bool is_opening = f.has_retry && f.data == NULL
                          && strstr(f.comment, "unavailable") == NULL;
        sse_frame_release(&f);
        DIAG_CHECK(is_opening, "stream %ld: the first block is not a stream's opening "
                   "retry: (a soft refusal?)", i);
    }
    long open_ms = (long)(testenv_now_ms() - start_ms);
    publish_events(&test_env, "s1", "execution_started", NULL, (int)events);
    for (long i = 0; i < streams; i++) {
        size_t got = frames_read_until(&clients[i], total, ids, (size_t)total + 1, 20000);
        DIAG_CHECK(got == (size_t)total && ids[total - 1] == total, "stream %ld: %zu of %ld "
                   "events", i, got, total);
    }
    static pid_t pids[MEMORY_PROCESSES_MAX];
    size_t count = server_list_backends(&test_srv, pids, MEMORY_PROCESSES_MAX);
    DIAG_CHECK(count >= (size_t)streams, "%zu fcgid processes for %ld streams", count,
               streams);
    static struct tally t;
    for (size_t i = 0; i < count; i++)
        tally_process(&t, pids[i]);
    fprintf(stderr, "memory: %ld streams opened in %ld ms\n", streams, open_ms);
    print_tally(&t, streams, total);
    sleep((unsigned)setting("MEMORY_HOLD_S", 0));  /* to look at the processes by hand */
    for (long i = 0; i < streams; i++)
        sse_client_close(&clients[i]);
    free(clients);
    free(ids);
    long private_max = setting("MEMORY_PRIVATE_MAX_KIB", 960);
    if (history == 0 && getenv("SSE_SANITIZED") == NULL)
        DIAG_CHECK(t.uss / t.processes <= private_max, "%ld KiB private per process, more "
                   "than MEMORY_PRIVATE_MAX_KIB=%ld", t.uss / t.processes, private_max);
}
END_TEST

Suite *suite_memory(void);

Suite *
suite_memory(void)
{
    Suite *s = server_suite_create("memory");
    TCase *tc = server_tcase_create("memory");
    tcase_set_timeout(tc, 60 + (double)setting("MEMORY_STREAMS", 40) / 2);
    tcase_add_test(tc, test_memory_per_process);
    suite_add_tcase(s, tc);
    return s;
}
