/*
 * diag.c - the failure hooks of the integration helpers (see diag.h).
 *
 * A fixed table, no allocation: it is used on the failure path. Dumps go to stderr, which
 * Check leaves attached to the terminal, so a failure shows the server's error log, the
 * responder's SSE_LOG and the bytes received right above Check's own failure line.
 */
#include "tests/lib/diag.h"

#include <stdio.h>
#include <string.h>

enum { DIAG_HOOKS_MAX = 1024 };  /* the soak opens a few hundred clients */

static struct {
    void *ctx;
    diag_fn *dump;
    diag_fn *cleanup;
} hooks[DIAG_HOOKS_MAX];
static size_t hook_count;

void
diag_register(void *ctx, diag_fn *dump, diag_fn *cleanup)
{
    ck_assert_msg(hook_count < DIAG_HOOKS_MAX, "diag: too many hooks");
    hooks[hook_count].ctx = ctx;
    hooks[hook_count].dump = dump;
    hooks[hook_count].cleanup = cleanup;
    hook_count++;
}

void
diag_unregister(void *ctx)
{
    size_t kept = 0;
    for (size_t i = 0; i < hook_count; i++) {
        if (hooks[i].ctx != ctx)
            hooks[kept++] = hooks[i];
    }
    hook_count = kept;
}

void
diag_fail_cleanup(void)
{
    size_t count = hook_count;
    hook_count = 0;  /* a hook that fails must not recurse */
    for (size_t i = 0; i < count; i++) {
        if (hooks[i].dump)
            hooks[i].dump(hooks[i].ctx);
    }
    for (size_t i = count; i-- > 0;) {
        if (hooks[i].cleanup)
            hooks[i].cleanup(hooks[i].ctx);
    }
    fflush(stderr);
}

void
diag_print_bytes(const char *label, const char *bytes, size_t len, size_t max_bytes)
{
    fprintf(stderr, "--- %s (%zu bytes%s) ---\n", label, len,
            len > max_bytes ? ", tail shown" : "");
    size_t start = len > max_bytes ? len - max_bytes : 0;
    for (size_t i = start; i < len; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c == '\n')
            fputs("\\n\n", stderr);
        else if (c == '\r')
            fputs("\\r", stderr);
        else if (c < 0x20 || c == 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "\n--- end of %s ---\n", label);
}

void
diag_print_file(const char *label, const char *path, size_t max_bytes)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "--- %s: %s does not exist ---\n", label, path);
        return;
    }
    char buf[65536];
    size_t cap = max_bytes < sizeof(buf) ? max_bytes : sizeof(buf);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (size > (long)cap)
        fseek(f, size - (long)cap, SEEK_SET);
    else
        rewind(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    fprintf(stderr, "--- %s: %s (%ld bytes%s) ---\n%.*s--- end of %s ---\n", label, path,
            size, size > (long)cap ? ", tail shown" : "", (int)n, buf, label);
}
