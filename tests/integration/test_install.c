/*
 * test_install.c - make install and make uninstall, the installed man pages, README's links
 * and the settings sse-fcgi(1) documents (issue 15).
 *
 * The real make runs the source tree's Makefile (make -C $SSE_SRC_DIR) on the binaries the
 * suite was built with: BUILD is the directory of $SSE_FCGI_BIN, and -o marks both binaries
 * old, so make rebuilds nothing whatever changed since; the tests check that every line make
 * printed is an install or a removal and that the binaries' mtimes did not move. DESTDIR is
 * a directory of the test's own that holds an unrelated file, an unrelated program and an
 * empty directory (as Debian ships /usr/local/share/man) before the install; after the
 * uninstall its file list must be what it was. The installed pages are linted with mandoc
 * and rendered with man -l; README.md, fcgi/config.c, relay/main.c and the pages' sources
 * are read from the source tree.
 */
#define _XOPEN_SOURCE 700  /* nftw */

#include <check.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fcgi/config.h"
#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/server.h"
#include "tests/lib/testenv.h"

enum {
    TREE_MAX = 65536,           /* bytes of a DESTDIR listing */
    NAMES_MAX = 64,             /* SSE_* names of one source file */
    NAME_MAX_LEN = 64,
};

/* What make install must put below DESTDIR, with its mode and the source (below the tree;
 * "@" stands for the build directory) it must be a copy of. */
static const struct {
    const char *path, *source;
    mode_t mode;
} INSTALLED[] = {
    {"usr/local/bin/sse-fcgi", "@/sse-fcgi", 0755},
    {"usr/local/bin/sse-fcgi-relay", "@/sse-fcgi-relay", 0755},
    {"usr/local/share/sse-fcgi/schema.sql", "schema.sql", 0644},
    {"usr/local/share/sse-fcgi/postgresql/schema.sql", "deploy/postgresql/schema.sql", 0644},
    {"usr/local/share/sse-fcgi/viewer/index.html", "deploy/viewer/index.html", 0644},
    {"usr/local/share/sse-fcgi/viewer/viewer.js", "deploy/viewer/viewer.js", 0644},
    {"usr/local/share/sse-fcgi/viewer/viewer.css", "deploy/viewer/viewer.css", 0644},
    {"usr/local/share/man/man1/sse-fcgi.1", "man/sse-fcgi.1", 0644},
    {"usr/local/share/man/man1/sse-fcgi-relay.1", "man/sse-fcgi-relay.1", 0644},
    {"usr/local/share/man/man7/sse-fcgi.7", "man/sse-fcgi.7", 0644},
};

static const char *const PAGES[] = {
    "usr/local/share/man/man1/sse-fcgi.1",
    "usr/local/share/man/man1/sse-fcgi-relay.1",
    "usr/local/share/man/man7/sse-fcgi.7",
};

static struct command_result result;  /* 32 KiB, off the stack */

/* The build directory as the Makefile's BUILD: relative to the tree when it is inside. */
static void
build_dir(char *out, size_t size)
{
    const char *src = testenv_require("SSE_SRC_DIR");
    const char *bin = testenv_require("SSE_FCGI_BIN");
    size_t src_len = strlen(src);
    if (strncmp(bin, src, src_len) == 0 && bin[src_len] == '/')
        bin += src_len + 1;
    snprintf(out, size, "%.*s", (int)(strrchr(bin, '/') ? strrchr(bin, '/') - bin : 0), bin);
    DIAG_CHECK(out[0] != '\0', "SSE_FCGI_BIN has no directory: %s", bin);
}

/* <tree>/<path>, or <build>/<rest> for "@/<rest>". */
static void
source_path(const char *path, char *out, size_t size)
{
    char build[TESTENV_PATH_MAX];
    build_dir(build, sizeof(build));
    const char *src = testenv_require("SSE_SRC_DIR");
    if (strncmp(path, "@/", 2) == 0 && build[0] == '/')
        snprintf(out, size, "%s/%s", build, path + 2);
    else if (strncmp(path, "@/", 2) == 0)
        snprintf(out, size, "%s/%s/%s", src, build, path + 2);
    else
        snprintf(out, size, "%s/%s", src, path);
}

/* Runs the tree's `make <target>` with DESTDIR=destdir and the suite's binaries, none of
 * them rebuilt. make's own settings from a parent make (MAKEFLAGS may carry BUILD= or
 * CFLAGS= of make sanitize) and PREFIX are kept out. Returns the exit status. */
static int
run_make(const char *target, const char *destdir)
{
    char build[TESTENV_PATH_MAX], bin[TESTENV_PATH_MAX + 16], relay[TESTENV_PATH_MAX + 16];
    char build_arg[TESTENV_PATH_MAX + 8], dest_arg[TESTENV_PATH_MAX + 8];
    build_dir(build, sizeof(build));
    snprintf(bin, sizeof(bin), "%s/sse-fcgi", build);
    snprintf(relay, sizeof(relay), "%s/sse-fcgi-relay", build);
    snprintf(build_arg, sizeof(build_arg), "BUILD=%s", build);
    snprintf(dest_arg, sizeof(dest_arg), "DESTDIR=%s", destdir);
    const char *const args[] = {"-C", testenv_require("SSE_SRC_DIR"), "--no-print-directory",
                                "-o", bin, "-o", relay, build_arg, "PREFIX=/usr/local",
                                dest_arg, target, NULL};
    const char *const env[] = {"MAKEFLAGS", NULL, "MFLAGS", NULL, "MAKELEVEL", NULL,
                               "PREFIX", NULL, "DESTDIR", NULL, NULL};
    return command_run(&test_env, args, &(struct command_options){
                           .env = env, .program = "/usr/bin/make", .timeout_ms = 20000},
                       &result);
}

/* Fails unless make exited 0 and every line it printed starts with one of prefixes (so
 * it compiled, linked and generated nothing). */
static void
expect_make_did_only(const char *what, int status, const char *const *prefixes)
{
    bool is_ok = status == 0;
    for (const char *at = result.out; is_ok && *at != '\0';) {
        size_t len = strcspn(at, "\n");
        bool is_known = false;
        for (size_t i = 0; prefixes[i] != NULL; i++)
            is_known = is_known || strncmp(at, prefixes[i], strlen(prefixes[i])) == 0;
        is_ok = is_known;
        at += len + (at[len] == '\n');
    }
    if (!is_ok)
        command_dump(&result);
    DIAG_CHECK(is_ok, "make %s exited %d or printed other lines than %s... (output above)",
               what, status, prefixes[0]);
}

static void
make_install(const char *destdir)
{
    expect_make_did_only("install", run_make("install", destdir),
                         (const char *const[]){"install -m ", NULL});
}

static void
make_uninstall(const char *destdir)
{
    expect_make_did_only("uninstall", run_make("uninstall", destdir),
                         (const char *const[]){"rm -f ", "rmdir ", NULL});
}

/* ---- the DESTDIR tree ----------------------------------------------------------------- */

static char tree_lines[TREE_MAX];     /* nftw has no context pointer */
static size_t tree_used, tree_root_len;

static int
add_tree_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)ftw;
    char kind = type == FTW_D ? 'd' : type == FTW_SL ? 'l' : type == FTW_F ? 'f' : '?';
    const char *relative = path[tree_root_len] != '\0' ? path + tree_root_len : "/";
    int n = snprintf(tree_lines + tree_used, sizeof(tree_lines) - tree_used, "%s %c %04o\n",
                     relative, kind, (unsigned)(sb->st_mode & 07777));
    if (n < 0 || (size_t)n >= sizeof(tree_lines) - tree_used)
        return 1;
    tree_used += (size_t)n;
    return 0;
}

static int
compare_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every entry below root, one sorted "<path> <kind> <mode>" line each, into out. */
static void
list_tree(const char *root, char *out, size_t size)
{
    tree_used = 0;
    tree_root_len = strlen(root);
    DIAG_CHECK(nftw(root, add_tree_entry, 16, FTW_PHYS) == 0, "cannot list %s", root);
    char *lines[1024];
    size_t count = 0;
    for (char *at = strtok(tree_lines, "\n"); at != NULL; at = strtok(NULL, "\n")) {
        DIAG_CHECK(count < sizeof(lines) / sizeof(lines[0]), "%s: too many entries", root);
        lines[count++] = at;
    }
    qsort(lines, count, sizeof(lines[0]), compare_lines);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s\n", lines[i]);
}

/* A DESTDIR that already holds what a host has: an unrelated file, an unrelated program
 * in the bin directory install uses, and an empty man directory. */
static void
make_destdir(char *dest, size_t size)
{
    char path[TESTENV_PATH_MAX + 64];
    testenv_path(&test_env, "dest", dest, size);
    const char *const dirs[] = {"", "/usr", "/usr/local", "/usr/local/bin", "/usr/local/share",
                                "/usr/local/share/man", "/usr/local/share/doc",
                                "/usr/local/share/doc/other", NULL};
    for (size_t i = 0; dirs[i] != NULL; i++) {
        snprintf(path, sizeof(path), "%s%s", dest, dirs[i]);
        DIAG_CHECK(mkdir(path, 0755) == 0, "mkdir %s", path);
    }
    snprintf(path, sizeof(path), "%s/usr/local/share/doc/other/README", dest);
    testenv_write_file(path, "not ours\n", 9);
    snprintf(path, sizeof(path), "%s/usr/local/bin/other-tool", dest);
    testenv_write_script(path, "#!/bin/sh\nexit 0\n");
}

static long
mtime_of(const char *path)
{
    struct stat sb;
    DIAG_CHECK(stat(path, &sb) == 0, "stat %s", path);
    return (long)sb.st_mtime;
}

/* True when the files at a and b hold the same bytes. */
static bool
is_same_content(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool is_same = fa != NULL && fb != NULL;
    int ca = 0, cb = 0;
    while (is_same && ca != EOF) {
        ca = getc(fa);
        cb = getc(fb);
        is_same = ca == cb;
    }
    if (fa != NULL)
        fclose(fa);
    if (fb != NULL)
        fclose(fb);
    return is_same;
}

/* Every file of INSTALLED is in dest, with its mode and its source's bytes. */
static void
expect_installed(const char *dest)
{
    char path[TESTENV_PATH_MAX + 128], source[TESTENV_PATH_MAX + 128];
    for (size_t i = 0; i < sizeof(INSTALLED) / sizeof(INSTALLED[0]); i++) {
        struct stat sb;
        snprintf(path, sizeof(path), "%s/%s", dest, INSTALLED[i].path);
        source_path(INSTALLED[i].source, source, sizeof(source));
        DIAG_CHECK(stat(path, &sb) == 0 && S_ISREG(sb.st_mode), "not installed: %s", path);
        DIAG_CHECK((sb.st_mode & 07777) == INSTALLED[i].mode, "%s: mode %04o, not %04o",
                   path, (unsigned)(sb.st_mode & 07777), (unsigned)INSTALLED[i].mode);
        DIAG_CHECK(is_same_content(path, source), "%s is not a copy of %s", path, source);
    }
}

/* install records the directories it created, and only those: not the ones the DESTDIR
 * had (usr/local/bin, usr/local/share/man). */
static void
expect_created_dirs_recorded(const char *dest)
{
    static const char EXPECTED[] = "/usr/local/share/man/man1\n/usr/local/share/man/man7\n"
                                   "/usr/local/share/sse-fcgi\n"
                                   "/usr/local/share/sse-fcgi/postgresql\n"
                                   "/usr/local/share/sse-fcgi/viewer\n";
    char path[TESTENV_PATH_MAX + 64], record[4096];
    snprintf(path, sizeof(path), "%s/usr/local/share/sse-fcgi/installed-dirs", dest);
    DIAG_CHECK(testenv_read_file(path, record, sizeof(record)) >= 0, "no %s", path);
    DIAG_CHECK(strcmp(record, EXPECTED) == 0, "%s holds:\n%s\nnot:\n%s", path, record,
               EXPECTED);
}

START_TEST(test_install_then_uninstall_leaves_the_tree_as_it_was)
{
    static char before[TREE_MAX], installed[TREE_MAX], after[TREE_MAX];
    char dest[TESTENV_PATH_MAX], bin[TESTENV_PATH_MAX + 16], relay[TESTENV_PATH_MAX + 16];
    make_destdir(dest, sizeof(dest));
    list_tree(dest, before, sizeof(before));
    source_path("@/sse-fcgi", bin, sizeof(bin));
    source_path("@/sse-fcgi-relay", relay, sizeof(relay));
    long bin_mtime = mtime_of(bin), relay_mtime = mtime_of(relay);
    make_install(dest);
    expect_installed(dest);
    expect_created_dirs_recorded(dest);
    list_tree(dest, installed, sizeof(installed));
    make_install(dest);  /* again: the same files, and the first install's record kept */
    expect_created_dirs_recorded(dest);
    make_uninstall(dest);
    list_tree(dest, after, sizeof(after));
    DIAG_CHECK(strcmp(before, after) == 0, "after make uninstall:\n%s\nbefore make "
               "install:\n%s\nand installed:\n%s", after, before, installed);
    DIAG_CHECK(mtime_of(bin) == bin_mtime && mtime_of(relay) == relay_mtime,
               "make install rebuilt %s or %s", bin, relay);
}
END_TEST

/* ---- the installed man pages ---------------------------------------------------------- */

/* Lints one installed page at style level (every warning and error too), with
 * cross-references looked up in the installed tree only. Nothing may be reported but a
 * reference to another project's page, which the host may or may not have; a reference to
 * one of this project's pages must resolve. mandoc's stderr may only note that the tree
 * has no mandoc.db (it finds the pages without one). */
static void
expect_lint_clean(const char *dest, const char *page)
{
    char man_dir[TESTENV_PATH_MAX + 32], path[TESTENV_PATH_MAX + 64];
    snprintf(man_dir, sizeof(man_dir), "%s/usr/local/share/man", dest);
    snprintf(path, sizeof(path), "%s/%s", dest, page);
    DIAG_CHECK(access("/usr/bin/mandoc", X_OK) == 0, "no /usr/bin/mandoc: run make deps");
    int status = command_run(&test_env, (const char *const[]){"-T", "lint", "-W", "style",
                                                               "-M", man_dir, path, NULL},
                             &(struct command_options){.program = "/usr/bin/mandoc"}, &result);
    bool is_ok = status == 0 || status == 1;
    for (char *line = strtok(result.out, "\n"); is_ok && line; line = strtok(NULL, "\n")) {
        const char *xr = strstr(line, "STYLE: referenced manual not found: Xr ");
        is_ok = xr != NULL && strncmp(xr + 39, "sse-fcgi", 8) != 0;
    }
    for (char *line = strtok(result.err, "\n"); is_ok && line; line = strtok(NULL, "\n"))
        is_ok = strncmp(line, "mandoc: outdated mandoc.db lacks ", 33) == 0;
    if (!is_ok)
        command_dump(&result);
    DIAG_CHECK(is_ok, "mandoc -T lint on %s (exit %d): output above", page, status);
}

/* man -l renders the page with no warning from groff, and the output has its title. */
static void
expect_renders(const char *dest, const char *page, const char *title)
{
    char path[TESTENV_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dest, page);
    const char *const env[] = {"MANPAGER", "cat", "PAGER", "cat", "MANWIDTH", "80",
                               "LC_ALL", "C.UTF-8", NULL};
    int status = command_run(&test_env, (const char *const[]){"--warnings", "-l", path, NULL},
                             &(struct command_options){.env = env, .program = "/usr/bin/man"},
                             &result);
    bool is_ok = status == 0 && result.err[0] == '\0' && strstr(result.out, title) != NULL
                 && strstr(result.out, "NAME") != NULL;
    if (!is_ok)
        command_dump(&result);
    DIAG_CHECK(is_ok, "man --warnings -l %s (exit %d): no %s, or warnings (above)", page,
               status, title);
}

START_TEST(test_installed_man_pages_lint_clean_and_render)
{
    static const char *const TITLES[] = {"SSE-FCGI(1)", "SSE-FCGI-RELAY(1)", "SSE-FCGI(7)"};
    char dest[TESTENV_PATH_MAX];
    make_destdir(dest, sizeof(dest));
    make_install(dest);
    for (size_t i = 0; i < sizeof(PAGES) / sizeof(PAGES[0]); i++) {
        expect_lint_clean(dest, PAGES[i]);
        expect_renders(dest, PAGES[i], TITLES[i]);
    }
    make_uninstall(dest);
}
END_TEST

/* ---- README.md ------------------------------------------------------------------------ */

/* GitHub's anchor of a heading's text: lower case, spaces to '-', other punctuation gone. */
static void
heading_anchor(const char *text, size_t len, char *out, size_t size)
{
    size_t used = 0;
    for (size_t i = 0; i < len && used + 1 < size; i++) {
        char c = text[i];
        if (c >= 'A' && c <= 'Z')
            out[used++] = (char)(c - 'A' + 'a');
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')
            out[used++] = c;
        else if (c == ' ')
            out[used++] = '-';
    }
    out[used] = '\0';
}

/* True when README has a heading (outside fenced code) whose anchor is anchor. */
static bool
has_heading(const char *readme, const char *anchor)
{
    bool is_fenced = false;
    for (const char *line = readme; *line != '\0';) {
        size_t len = strcspn(line, "\n");
        if (strncmp(line, "```", 3) == 0)
            is_fenced = !is_fenced;
        if (!is_fenced && line[0] == '#') {
            size_t hashes = strspn(line, "#");
            char found[256];
            heading_anchor(line + hashes + 1, len > hashes ? len - hashes - 1 : 0, found,
                           sizeof(found));
            if (strcmp(found, anchor) == 0)
                return true;
        }
        line += len + (line[len] == '\n');
    }
    return false;
}

/* NULL when a link target is one a clone can follow, else why not. */
static const char *
judge_target(const char *readme, const char *target)
{
    struct stat sb;
    char path[TESTENV_PATH_MAX + 512];
    if (target[0] == '#')
        return has_heading(readme, target + 1) ? NULL : "no heading has this anchor";
    if (strstr(target, "://") != NULL || strncmp(target, "mailto:", 7) == 0)
        return "points outside the repository";
    if (target[0] == '/' || strncmp(target, "../", 3) == 0 || strstr(target, "/../") != NULL)
        return "a path out of the tree";
    snprintf(path, sizeof(path), "%s/%.*s", testenv_require("SSE_SRC_DIR"),
             (int)strcspn(target, "#"), target);
    return stat(path, &sb) == 0 ? NULL : "no such file in the tree";
}

/* Checks every [text](target), ![alt](target) and "[label]: target" of README. */
static void
expect_link_targets_inside(const char *readme)
{
    char target[512];
    for (const char *at = readme; (at = strstr(at, "](")) != NULL; at += 2) {
        size_t len = strcspn(at + 2, ") \n");
        snprintf(target, sizeof(target), "%.*s", (int)len, at + 2);
        const char *why = judge_target(readme, target);
        DIAG_CHECK(why == NULL, "README links to \"%s\": %s", target, why);
    }
    for (const char *line = readme; *line != '\0';) {
        size_t len = strcspn(line, "\n");
        const char *colon = line[0] == '[' ? strstr(line, "]: ") : NULL;
        if (colon != NULL && colon < line + len) {
            snprintf(target, sizeof(target), "%.*s", (int)strcspn(colon + 3, " \n"), colon + 3);
            const char *why = judge_target(readme, target);
            DIAG_CHECK(why == NULL, "README defines link \"%s\": %s", target, why);
        }
        line += len + (line[len] == '\n');
    }
}

/* Every http:// or https:// in README, in a link or in text, is the demo's loopback. */
static void
expect_urls_only_local(const char *readme)
{
    static const char *const LOCAL[] = {"127.0.0.1", "localhost", "[::1]", NULL};
    for (const char *at = readme; (at = strstr(at, "http")) != NULL; at += 4) {
        const char *host = strncmp(at, "http://", 7) == 0    ? at + 7
                           : strncmp(at, "https://", 8) == 0 ? at + 8
                                                             : NULL;
        bool is_local = host == NULL;
        for (size_t i = 0; !is_local && LOCAL[i] != NULL; i++)
            is_local = strncmp(host, LOCAL[i], strlen(LOCAL[i])) == 0
                       && strchr(":/ `)\n", host[strlen(LOCAL[i])]) != NULL;
        DIAG_CHECK(is_local, "README has an address outside the machine: %.60s", at);
    }
}

/*
 * README's rule: a reader of a clone can follow everything it points at.
 * - No path climbs out of the tree ("../" anywhere), and none of the notes that live
 *   outside it is named: SPEC.md, "SPEC §n", DEPLOY-NOTES. The contract is man/sse-fcgi.7.
 * - A link or image target is a #anchor of one of README's headings, or a relative path to
 *   a file or directory of the tree; no scheme, no absolute path.
 * - An http:// or https:// address, in a link or in plain text, is only ever the demo's
 *   own loopback (127.0.0.1, localhost, [::1]). Outside documentation is named in words,
 *   with no address.
 */
START_TEST(test_readme_points_nowhere_outside_the_repository)
{
    static const char *const OUTSIDE[] = {"../", "SPEC.md", "SPEC §", "DEPLOY-NOTES", NULL};
    char *readme = testenv_read_source("README.md");
    for (size_t i = 0; OUTSIDE[i] != NULL; i++) {
        const char *at = strstr(readme, OUTSIDE[i]);
        DIAG_CHECK(at == NULL, "README names \"%s\", outside the repository: %.80s",
                   OUTSIDE[i], at);
    }
    expect_link_targets_inside(readme);
    expect_urls_only_local(readme);
    DIAG_CHECK(strstr(readme, "[sse-fcgi(7)](man/sse-fcgi.7)") != NULL
               && has_heading(readme, "the-contract"),
               "README has no section The contract linking man/sse-fcgi.7");
    free(readme);
}
END_TEST

/* ---- the settings the pages document -------------------------------------------------- */

/* The distinct names that stand in source as a string literal "SSE_..." of their own
 * (after `after`, e.g. "getenv(" or ""), into names. Returns how many. */
static size_t
source_names(const char *source, const char *after, char names[][NAME_MAX_LEN])
{
    char quote[32];
    snprintf(quote, sizeof(quote), "%s\"SSE_", after);
    size_t count = 0;
    for (const char *at = source; (at = strstr(at, quote)) != NULL; at += strlen(quote)) {
        const char *name = at + strlen(quote) - 4;
        size_t len = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        if (name[len] != '"' || len >= NAME_MAX_LEN)
            continue;
        bool is_new = true;
        for (size_t i = 0; i < count; i++)
            is_new = is_new && !(strlen(names[i]) == len && strncmp(names[i], name, len) == 0);
        if (is_new && count < NAMES_MAX)
            snprintf(names[count++], NAME_MAX_LEN, "%.*s", (int)len, name);
    }
    return count;
}

/* The text of the page's ".It Ev name" item, up to the next item or list end, or NULL. */
static const char *
page_item(const char *page, const char *name, size_t *len)
{
    char head[NAME_MAX_LEN + 16];
    snprintf(head, sizeof(head), "\n.It Ev %s\n", name);
    const char *at = strstr(page, head);
    if (at == NULL)
        return NULL;
    at += strlen(head);
    const char *next = strstr(at, "\n.It "), *end = strstr(at, "\n.El");
    if (end == NULL)
        end = at + strlen(at);
    *len = (size_t)((next != NULL && next < end ? next : end) - at);
    return at;
}

/* True when needle stands in the len bytes at text. */
static bool
has_within(const char *text, size_t len, const char *needle)
{
    size_t needle_len = strlen(needle);
    for (size_t i = 0; i + needle_len <= len; i++)
        if (memcmp(text + i, needle, needle_len) == 0)
            return true;
    return false;
}

/* Every name the source knows has an item in the page, and every SSE_* item of the page
 * is a name the source knows: neither can go stale. */
static void
expect_page_documents(const char *page_name, const char *page, char names[][NAME_MAX_LEN],
                      size_t count)
{
    size_t len;
    for (size_t i = 0; i < count; i++)
        DIAG_CHECK(page_item(page, names[i], &len) != NULL, "%s does not document %s "
                   "(no \".It Ev %s\" item)", page_name, names[i], names[i]);
    for (const char *at = page; (at = strstr(at, "\n.It Ev SSE_")) != NULL; at += 8) {
        size_t name_len = strcspn(at + 8, " \n");
        bool is_known = false;
        for (size_t i = 0; i < count; i++)
            is_known = is_known || (strlen(names[i]) == name_len
                                    && strncmp(names[i], at + 8, name_len) == 0);
        DIAG_CHECK(is_known, "%s documents %.*s, which the source does not read", page_name,
                   (int)name_len, at + 8);
    }
}

START_TEST(test_every_setting_is_documented)
{
    static char names[NAMES_MAX][NAME_MAX_LEN];
    char *config = testenv_read_source("fcgi/config.c");
    char *page = testenv_read_source("man/sse-fcgi.1");
    size_t count = source_names(config, "", names);
    DIAG_CHECK(count >= 15, "only %zu SSE_* names found in fcgi/config.c", count);
    expect_page_documents("man/sse-fcgi.1", page, names, count);
    for (size_t i = 0, len; i < count; i++) {  /* and says which scope it has */
        const char *item = page_item(page, names[i], &len);
        bool says_process = has_within(item, len, "Per process.");
        bool says_request = has_within(item, len, "Per request.");
        bool is_process = config_is_per_process(names[i]);
        DIAG_CHECK(says_process == is_process && says_request == !is_process, "man/sse-fcgi.1 "
                   "gives %s the wrong scope: it is per %s", names[i],
                   is_process ? "process" : "request");
    }
    char *relay = testenv_read_source("relay/main.c");
    char *relay_page = testenv_read_source("man/sse-fcgi-relay.1");
    count = source_names(relay, "getenv(", names);
    DIAG_CHECK(count >= 4, "only %zu getenv(\"SSE_...\") in relay/main.c", count);
    expect_page_documents("man/sse-fcgi-relay.1", relay_page, names, count);
    free(config);
    free(page);
    free(relay);
    free(relay_page);
}
END_TEST

Suite *suite_install(void);

Suite *
suite_install(void)
{
    Suite *s = suite_create("install");
    TCase *tc = server_tcase_create("install");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_install_then_uninstall_leaves_the_tree_as_it_was);
    tcase_add_test(tc, test_installed_man_pages_lint_clean_and_render);
    tcase_add_test(tc, test_readme_points_nowhere_outside_the_repository);
    tcase_add_test(tc, test_every_setting_is_documented);
    suite_add_tcase(s, tc);
    return s;
}
