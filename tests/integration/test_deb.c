/*
 * test_deb.c - make deb, the two Debian packages it builds and what they install (issue 15).
 *
 * The tree's own make builds the packages into the test's dir (DEB_DIR=<dir>/deb, the file
 * target, so make deps installs nothing): 10-20 s on 2 cores, lintian included, so the test
 * builds its own rather than trust a build/deb/ of unknown age. dpkg-deb -x unpacks both
 * into <dir>/root, a scratch root; the installed binaries run from there with the system's
 * libraries. Checked: the file lists (dpkg-deb -c) hold the binaries, the man pages, the
 * schemas, the viewer, every example file of deploy/ and the units, each in one package;
 * Depends (dpkg-deb -f) names the package of every library the binary needs (objdump -p,
 * dpkg -S), and libpq only for the relay; both packages, both --version lines and
 * CLI_VERSION of fcgi/cli.h give one version; the units start /usr/bin, and no installed
 * unit, page or example names /usr/local/{bin,share}/sse-fcgi; the installed responder's
 * --check passes on a database the sqlite3 CLI made from the installed schema; lintian
 * reports no error on the .changes (both packages).
 */
#include <check.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/server.h"
#include "tests/lib/testenv.h"

enum {
    BUILD_TIMEOUT_MS = 240000,  /* measured: 10-20 s on 2 cores */
    FIELD_MAX = 256,            /* a control field or a line of output */
    NAME_MAX_LEN = 64,          /* the version, the architecture */
    DEB_PATH_MAX = TESTENV_PATH_MAX + 256,
    UNIT_MAX = 8192,            /* bytes of one systemd unit */
};

/* What each package must hold, below its root. "lib/systemd/system/" stands for that or
 * usr/lib/systemd/system/ (where debhelper 14 puts units). */
static const struct {
    const char *package, *path;
} EXPECTED[] = {
    {"sse-fcgi", "usr/bin/sse-fcgi"},
    {"sse-fcgi", "usr/share/man/man1/sse-fcgi.1.gz"},
    {"sse-fcgi", "usr/share/man/man7/sse-fcgi.7.gz"},
    {"sse-fcgi", "usr/share/sse-fcgi/schema.sql"},
    {"sse-fcgi", "usr/share/sse-fcgi/postgresql/schema.sql"},
    {"sse-fcgi", "usr/share/sse-fcgi/viewer/index.html"},
    {"sse-fcgi", "usr/share/sse-fcgi/viewer/viewer.js"},
    {"sse-fcgi", "usr/share/sse-fcgi/viewer/viewer.css"},
    {"sse-fcgi", "usr/share/doc/sse-fcgi/copyright"},
    {"sse-fcgi", "usr/share/doc/sse-fcgi/changelog.gz"},
    {"sse-fcgi", "usr/share/doc/sse-fcgi/README.Debian"},
    {"sse-fcgi", "lib/systemd/system/sse-fcgi.socket"},
    {"sse-fcgi", "lib/systemd/system/sse-fcgi.service"},
    {"sse-fcgi-relay", "usr/bin/sse-fcgi-relay"},
    {"sse-fcgi-relay", "usr/share/man/man1/sse-fcgi-relay.1.gz"},
    {"sse-fcgi-relay", "usr/share/doc/sse-fcgi-relay"},
    {"sse-fcgi-relay", "lib/systemd/system/sse-fcgi-relay.service"},
};

/* The example directories of the tree and where the package puts each one's files. */
static const struct {
    const char *source, *installed;
} EXAMPLES[] = {
    {"deploy/lighttpd", "lighttpd"},
    {"deploy/apache", "apache"},
    {"deploy/nginx", "nginx"},
    {"deploy/php", "php"},
    {"deploy/postgresql/examples", "postgresql"},
};

static const char *const PACKAGES[] = {"sse-fcgi", "sse-fcgi-relay"};

static struct command_result result;  /* 32 KiB, off the stack */
static char version[NAME_MAX_LEN], arch[NAME_MAX_LEN];

/* Runs /bin/sh -c script with $1.. from args (NULL-terminated), make's settings from a
 * parent make (MAKEFLAGS may carry BUILD= or CFLAGS=) unset. Returns the exit status. */
static int
run_sh(const char *script, const char *const *args, int timeout_ms)
{
    const char *argv[16] = {"-c", script, "sh"};
    for (size_t i = 0; i < 12 && args[i] != NULL; i++)
        argv[i + 3] = args[i];
    const char *const env[] = {"MAKEFLAGS", NULL, "MFLAGS", NULL, "MAKELEVEL", NULL, NULL};
    return command_run(&test_env, argv, &(struct command_options){
                           .env = env, .program = "/bin/sh", .timeout_ms = timeout_ms},
                       &result);
}

/* result.out's first line, without its newline, into out. */
static void
first_line(char *out, size_t size)
{
    snprintf(out, size, "%.*s", (int)strcspn(result.out, "\n"), result.out);
}

/* CLI_VERSION of fcgi/cli.h, the one place the version is written. */
static void
read_source_version(void)
{
    static const char DEFINE[] = "#define CLI_VERSION \"";
    char *cli = testenv_read_source("fcgi/cli.h");
    const char *at = strstr(cli, DEFINE);
    DIAG_CHECK(at != NULL, "fcgi/cli.h has no %s...\"", DEFINE);
    at += strlen(DEFINE);
    snprintf(version, sizeof(version), "%.*s", (int)strcspn(at, "\"\n"), at);
    free(cli);
    DIAG_CHECK(version[0] != '\0', "fcgi/cli.h: CLI_VERSION is empty");
}

static void
deb_path(const char *package, char *out, size_t size)
{
    char dir[TESTENV_PATH_MAX];
    testenv_path(&test_env, "deb", dir, sizeof(dir));
    snprintf(out, size, "%s/%s_%s_%s.deb", dir, package, version, arch);
}

/* make deb's file target into <dir>/deb, its output in <dir>/make-deb.log. */
static void
build_packages(void)
{
    char dir[TESTENV_PATH_MAX], deb[DEB_PATH_MAX], log[TESTENV_PATH_MAX];
    read_source_version();
    DIAG_CHECK(run_sh("dpkg --print-architecture", (const char *const[]){NULL}, 0) == 0,
               "dpkg --print-architecture failed: %s", result.err);
    first_line(arch, sizeof(arch));
    testenv_path(&test_env, "deb", dir, sizeof(dir));
    testenv_path(&test_env, "make-deb.log", log, sizeof(log));
    deb_path("sse-fcgi", deb, sizeof(deb));
    int64_t started_ms = testenv_now_ms();
    int status = run_sh("make -C \"$1\" --no-print-directory DEB_DIR=\"$2\" \"$3\" >\"$4\" 2>&1",
                        (const char *const[]){testenv_require("SSE_SRC_DIR"), dir, deb, log,
                                              NULL},
                        BUILD_TIMEOUT_MS);
    if (status != 0)
        diag_print_file("make deb", log, 8192);
    DIAG_CHECK(status == 0, "make DEB_DIR=%s %s exited %d (its output above; make deps "
               "installs debhelper and lintian)", dir, deb, status);
    fprintf(stderr, "deb: make deb took %.1f s\n", (double)(testenv_now_ms() - started_ms) / 1e3);
}

/* dpkg-deb -x of both packages into <dir>/root. */
static void
unpack_packages(void)
{
    char root[TESTENV_PATH_MAX], deb[DEB_PATH_MAX];
    testenv_path(&test_env, "root", root, sizeof(root));
    for (size_t i = 0; i < sizeof(PACKAGES) / sizeof(PACKAGES[0]); i++) {
        deb_path(PACKAGES[i], deb, sizeof(deb));
        int status = run_sh("dpkg-deb -x \"$1\" \"$2\"", (const char *const[]){deb, root, NULL},
                            0);
        if (status != 0)
            command_dump(&result);
        DIAG_CHECK(status == 0, "dpkg-deb -x %s exited %d", deb, status);
    }
}

/* True when a `dpkg-deb -c` listing has the entry ./<path> (a file, directory or link). */
static bool
has_entry(const char *listing, const char *path)
{
    char needle[TESTENV_PATH_MAX];
    snprintf(needle, sizeof(needle), " ./%s", path);
    for (const char *at = listing; (at = strstr(at, needle)) != NULL; at += strlen(needle)) {
        const char *end = at + strlen(needle);
        if (*end == '\n' || *end == '\0' || strncmp(end, " -> ", 4) == 0)
            return true;
    }
    return false;
}

static bool
has_entry_or_usr(const char *listing, const char *path)
{
    char usr[TESTENV_PATH_MAX];
    snprintf(usr, sizeof(usr), "usr/%s", path);
    return has_entry(listing, path)
           || (strncmp(path, "lib/systemd/", 12) == 0 && has_entry(listing, usr));
}

/* `dpkg-deb -c` of package into result.out. */
static void
list_package(const char *package)
{
    char deb[DEB_PATH_MAX];
    deb_path(package, deb, sizeof(deb));
    int status = run_sh("dpkg-deb -c \"$1\"", (const char *const[]){deb, NULL}, 0);
    if (status != 0)
        command_dump(&result);
    DIAG_CHECK(status == 0, "dpkg-deb -c %s exited %d", deb, status);
}

/* Every file of the tree's example directories is in the package's examples. */
static void
expect_examples(const char *listing)
{
    char dir_path[TESTENV_PATH_MAX], entry[TESTENV_PATH_MAX];
    for (size_t i = 0; i < sizeof(EXAMPLES) / sizeof(EXAMPLES[0]); i++) {
        snprintf(dir_path, sizeof(dir_path), "%s/%s", testenv_require("SSE_SRC_DIR"),
                 EXAMPLES[i].source);
        DIR *dir = opendir(dir_path);
        DIAG_CHECK(dir != NULL, "cannot list %s", dir_path);
        size_t count = 0;
        for (struct dirent *d; (d = readdir(dir)) != NULL;) {
            if (d->d_name[0] == '.')
                continue;
            snprintf(entry, sizeof(entry), "usr/share/doc/sse-fcgi/examples/%s/%s",
                     EXAMPLES[i].installed, d->d_name);
            count++;
            if (!has_entry(listing, entry)) {
                closedir(dir);
                fprintf(stderr, "%s", listing);
                DIAG_CHECK(false, "sse-fcgi has no %s (from %s; its listing above)", entry,
                           EXAMPLES[i].source);
            }
        }
        closedir(dir);
        DIAG_CHECK(count > 0, "%s is empty", dir_path);
    }
}

static void
expect_file_lists(void)
{
    for (size_t p = 0; p < sizeof(PACKAGES) / sizeof(PACKAGES[0]); p++) {
        list_package(PACKAGES[p]);
        for (size_t i = 0; i < sizeof(EXPECTED) / sizeof(EXPECTED[0]); i++) {
            bool is_here = has_entry_or_usr(result.out, EXPECTED[i].path);
            bool is_ours = strcmp(EXPECTED[i].package, PACKAGES[p]) == 0;
            if (is_here != is_ours)
                command_dump(&result);
            DIAG_CHECK(is_here == is_ours, "%s %s %s (its listing above)", PACKAGES[p],
                       is_ours ? "has no" : "also has", EXPECTED[i].path);
        }
        if (strcmp(PACKAGES[p], "sse-fcgi") == 0)
            expect_examples(result.out);
    }
}

/* The control field of package into out ("" when there is none). */
static void
control_field(const char *package, const char *field, char *out, size_t size)
{
    char deb[DEB_PATH_MAX];
    deb_path(package, deb, sizeof(deb));
    int status = run_sh("dpkg-deb -f \"$1\" \"$2\"", (const char *const[]){deb, field, NULL}, 0);
    DIAG_CHECK(status == 0, "dpkg-deb -f %s %s exited %d: %s", deb, field, status, result.err);
    first_line(out, size);
}

/* True when depends (a Depends value) names package: "name (...)" or "name" in its list. */
static bool
depends_on(const char *depends, const char *package)
{
    size_t len = strlen(package);
    for (const char *at = depends; (at = strstr(at, package)) != NULL; at += len) {
        bool is_start = at == depends || at[-1] == ' ' || at[-1] == ',';
        if (is_start && strchr(" ,", at[len]) != NULL)
            return true;
    }
    return false;
}

/* The installed binary's libraries (its NEEDED entries) and the package that holds each,
 * "soname package" a line, into result.out. */
static void
list_needed_packages(const char *binary)
{
    static const char SCRIPT[] =
        "multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH) || exit 1\n"
        "objdump -p \"$1\" | awk '$1 == \"NEEDED\" { print $2 }' | while read -r so; do\n"
        "    echo \"$so $(dpkg -S \"*/$multiarch/$so\" 2>/dev/null | sed -n '1s/[:,].*//p')\"\n"
        "done\n";
    int status = run_sh(SCRIPT, (const char *const[]){binary, NULL}, 0);
    if (status != 0 || result.out[0] == '\0')
        command_dump(&result);
    DIAG_CHECK(status == 0 && result.out[0] != '\0', "no NEEDED libraries of %s", binary);
}

/* Depends comes from shlibs: the package of every library the binary links is named. */
static void
expect_shlibs_depends(const char *package, const char *depends)
{
    char root[TESTENV_PATH_MAX], binary[DEB_PATH_MAX], so[FIELD_MAX], holder[FIELD_MAX];
    testenv_path(&test_env, "root", root, sizeof(root));
    snprintf(binary, sizeof(binary), "%s/usr/bin/%s", root, package);
    list_needed_packages(binary);
    for (const char *line = result.out; *line != '\0';) {
        size_t len = strcspn(line, "\n");
        holder[0] = '\0';
        DIAG_CHECK(sscanf(line, "%255s %255s", so, holder) >= 1, "bad line %.*s", (int)len,
                   line);
        DIAG_CHECK(holder[0] != '\0', "%s needs %s, which no installed package holds",
                   package, so);
        DIAG_CHECK(depends_on(depends, holder), "%s needs %s of %s, but its Depends is: %s",
                   package, so, holder, depends);
        line += len + (line[len] == '\n');
    }
}

static void
expect_depends(void)
{
    char depends[2 * FIELD_MAX], own[NAME_MAX_LEN + 16];
    control_field("sse-fcgi", "Depends", depends, sizeof(depends));
    expect_shlibs_depends("sse-fcgi", depends);
    DIAG_CHECK(!depends_on(depends, "libpq5"), "sse-fcgi depends on libpq5: %s", depends);
    control_field("sse-fcgi-relay", "Depends", depends, sizeof(depends));
    expect_shlibs_depends("sse-fcgi-relay", depends);
    DIAG_CHECK(depends_on(depends, "libpq5"), "sse-fcgi-relay does not depend on libpq5: %s",
               depends);
    snprintf(own, sizeof(own), "sse-fcgi (= %s)", version);
    DIAG_CHECK(strstr(depends, own) != NULL, "sse-fcgi-relay's Depends lacks %s: %s", own,
               depends);
}

/* Both packages are at CLI_VERSION, and both installed programs print it. */
static void
expect_versions(void)
{
    char field[FIELD_MAX], root[TESTENV_PATH_MAX], binary[DEB_PATH_MAX];
    char expected[FIELD_MAX + 32];
    testenv_path(&test_env, "root", root, sizeof(root));
    for (size_t p = 0; p < sizeof(PACKAGES) / sizeof(PACKAGES[0]); p++) {
        control_field(PACKAGES[p], "Version", field, sizeof(field));
        DIAG_CHECK(strcmp(field, version) == 0, "%s is at version %s, fcgi/cli.h at %s",
                   PACKAGES[p], field, version);
        snprintf(binary, sizeof(binary), "%s/usr/bin/%s", root, PACKAGES[p]);
        command_run(&test_env, (const char *const[]){"--version", NULL},
                    &(struct command_options){.program = binary}, &result);
        command_expect_status(&result, 0);
        snprintf(expected, sizeof(expected), "%s %s\n", PACKAGES[p], version);
        DIAG_CHECK(strcmp(result.out, expected) == 0, "installed %s --version printed \"%s\", "
                   "not \"%s\"", PACKAGES[p], result.out, expected);
    }
}

/* The unit as installed, from usr/lib/systemd/system or lib/systemd/system. */
static void
read_unit(const char *name, char *out, size_t size)
{
    char root[TESTENV_PATH_MAX], path[DEB_PATH_MAX];
    testenv_path(&test_env, "root", root, sizeof(root));
    snprintf(path, sizeof(path), "%s/usr/lib/systemd/system/%s", root, name);
    if (testenv_read_file(path, out, size) < 0)
        snprintf(path, sizeof(path), "%s/lib/systemd/system/%s", root, name);
    DIAG_CHECK(testenv_read_file(path, out, size) > 0, "cannot read the installed %s", name);
}

/* The units start the installed programs, and no installed text points at make install's
 * /usr/local paths (rules rewrites them in the units, man pages and examples). */
static void
expect_package_paths(void)
{
    static char unit[UNIT_MAX];
    static const struct {
        const char *unit, *exec;
    } UNITS[] = {
        {"sse-fcgi.service", "\nExecStart=/usr/bin/sse-fcgi\n"},
        {"sse-fcgi-relay.service", "\nExecStart=/usr/bin/sse-fcgi-relay\n"},
    };
    for (size_t i = 0; i < sizeof(UNITS) / sizeof(UNITS[0]); i++) {
        read_unit(UNITS[i].unit, unit, sizeof(unit));
        DIAG_CHECK(strstr(unit, UNITS[i].exec) != NULL, "installed %s lacks \"%s\":\n%s",
                   UNITS[i].unit, UNITS[i].exec + 1, unit);
    }
    char root[TESTENV_PATH_MAX];
    testenv_path(&test_env, "root", root, sizeof(root));
    run_sh("cd \"$1\" && { grep -rlE \"$2\" lib usr/lib usr/share/doc/sse-fcgi/examples "
           "2>/dev/null; zgrep -lE \"$2\" usr/share/man/man*/*.gz; }",
           (const char *const[]){root, "/usr/local/(bin|share)/sse-fcgi", NULL}, 0);
    DIAG_CHECK(result.out[0] == '\0', "installed files still name /usr/local paths:\n%s",
               result.out);
}

/* The installed responder's --check on a database made by the sqlite3 CLI from the
 * installed schema. */
static void
expect_installed_check_ok(void)
{
    char root[TESTENV_PATH_MAX], schema[DEB_PATH_MAX], db[TESTENV_PATH_MAX];
    char binary[DEB_PATH_MAX];
    testenv_path(&test_env, "root", root, sizeof(root));
    testenv_path(&test_env, "installed.db", db, sizeof(db));
    snprintf(schema, sizeof(schema), "%s/usr/share/sse-fcgi/schema.sql", root);
    snprintf(binary, sizeof(binary), "%s/usr/bin/sse-fcgi", root);
    int status = run_sh("command -v sqlite3 >/dev/null || { echo 'no sqlite3: make deps' >&2;"
                        " exit 127; }; sqlite3 -bail \"$1\" < \"$2\"",
                        (const char *const[]){db, schema, NULL}, 0);
    if (status != 0)
        command_dump(&result);
    DIAG_CHECK(status == 0, "sqlite3 %s < %s exited %d", db, schema, status);
    command_run(&test_env, (const char *const[]){"--check", "--db", db, NULL},
                &(struct command_options){.program = binary}, &result);
    command_expect_status(&result, 0);
    command_expect_line(&result, "ok   schema: version 1;", NULL);
    command_expect_line(&result, "verdict: ok, all ", "checks passed");
}

static void
expect_lintian_clean(void)
{
    char dir[TESTENV_PATH_MAX], changes[DEB_PATH_MAX];
    testenv_path(&test_env, "deb", dir, sizeof(dir));
    snprintf(changes, sizeof(changes), "%s/sse-fcgi_%s_%s.changes", dir, version, arch);
    int status = run_sh("lintian --fail-on error \"$1\"", (const char *const[]){changes, NULL},
                        120000);
    bool has_error = strncmp(result.out, "E: ", 3) == 0 || strstr(result.out, "\nE: ") != NULL;
    if (status != 0 || has_error)
        command_dump(&result);
    DIAG_CHECK(status == 0 && !has_error, "lintian %s exited %d%s (output above)", changes,
               status, has_error ? " with errors" : "");
}

START_TEST(test_make_deb_packages_install_and_check)
{
    build_packages();
    unpack_packages();
    expect_file_lists();
    expect_depends();
    expect_versions();
    expect_package_paths();
    expect_installed_check_ok();
    expect_lintian_clean();
}
END_TEST

Suite *suite_deb(void);

Suite *
suite_deb(void)
{
    Suite *s = suite_create("deb");
    TCase *tc = server_tcase_create("deb");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_make_deb_packages_install_and_check);
    suite_add_tcase(s, tc);
    return s;
}
