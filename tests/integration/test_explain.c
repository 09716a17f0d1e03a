/*
 * test_explain.c - every query the responder runs is an index search (SPEC §2 Indexes).
 *
 * `sse-fcgi --explain` (SSE_DB in the environment) prints "<query>: <plan row>" for every
 * query. A plan row that reads a table must SEARCH it through an index or the rowid, never
 * SCAN it, and no query may sort in a temp b-tree. A bare "SEARCH <table>" is SQLite's
 * min()/max() seek at one end of the rowid b-tree (a full read prints SCAN). Rows that read
 * no table (CO-ROUTINE, SEARCH (subquery-N)) only give the plan its shape.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/server.h"
#include "tests/lib/testenv.h"

enum { EXPLAIN_OUTPUT_MAX = 65536 };


/* Runs `sse-fcgi --explain` with SSE_DB set; its stdout goes into out. Returns the exit
 * status. */
static int
run_explain(char *out, size_t size)
{
    static struct command_result r;
    const char *const env[] = {"SSE_DB", test_env.db_path, NULL};
    int status = command_run(&test_env, (const char *const[]){"--explain", NULL},
                             &(struct command_options){.env = env, .timeout_ms = 10000}, &r);
    snprintf(out, size, "%s", r.out);
    return status;
}

/* The table a SCAN/SEARCH row reads, or NULL for rows that read none. */
static const char *
table_read(const char *detail, char *table, size_t size)
{
    const char *verb = strncmp(detail, "SCAN ", 5) == 0     ? detail + 5
                       : strncmp(detail, "SEARCH ", 7) == 0 ? detail + 7
                                                            : NULL;
    if (verb == NULL || verb[0] == '(' || strncmp(verb, "CONSTANT ROW", 12) == 0)
        return NULL;
    snprintf(table, size, "%.*s", (int)strcspn(verb, " "), verb);
    return table;
}

/* Returns NULL when the plan row is fine, else why not. */
static const char *
judge_row(const char *detail)
{
    char table[128];
    if (strstr(detail, "TEMP B-TREE"))
        return "sorts in a temp b-tree";
    if (table_read(detail, table, sizeof(table)) == NULL)
        return NULL;
    if (strncmp(detail, "SCAN ", 5) == 0)
        return "scans the table";
    bool is_indexed = strstr(detail, "USING INDEX") || strstr(detail, "USING COVERING INDEX")
                      || strstr(detail, "USING INTEGER PRIMARY KEY")
                      || strstr(detail, "USING PRIMARY KEY")
                      || strcmp(detail + strlen("SEARCH "), table) == 0;  /* min()/max() */
    return is_indexed ? NULL : "searches without an index";
}

START_TEST(test_every_query_uses_an_index)
{
    static char out[EXPLAIN_OUTPUT_MAX];
    int status = run_explain(out, sizeof(out));
    DIAG_CHECK(status == 0, "sse-fcgi --explain exited %d; output:\n%s", status, out);
    const char *required[] = {"after_session:", "after_worker:", "after_global:", NULL};
    for (size_t i = 0; required[i]; i++)
        DIAG_CHECK(strstr(out, required[i]) != NULL, "no plan for %s in:\n%s", required[i], out);
    int rows = 0;
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        const char *detail = strstr(line, ": ");
        DIAG_CHECK(detail != NULL, "not '<query>: <detail>': %s", line);
        const char *why = judge_row(detail + 2);
        DIAG_CHECK(why == NULL, "query plan %s: %s", line, why);
        rows++;
    }
    DIAG_CHECK(rows >= 3, "only %d plan rows", rows);
}
END_TEST

Suite *suite_explain(void);

Suite *
suite_explain(void)
{
    Suite *s = suite_create("explain");
    TCase *tc = server_tcase_create("explain");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_every_query_uses_an_index);
    suite_add_tcase(s, tc);
    return s;
}
