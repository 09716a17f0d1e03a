/*
 * check.h - the one assertion of the fuzz targets.
 *
 * CHECK(cond) prints the broken invariant with its file and line, then abort()s, which
 * libFuzzer records as a crash and saves with its input. Unlike assert() it cannot be
 * compiled out by NDEBUG, and it names the invariant even where inlining hides the frame.
 */
#ifndef SSE_FUZZ_CHECK_H
#define SSE_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

/* Reports what broke and aborts; never returns. */
static inline void
check_failed(const char *file, int line, const char *cond)
{
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, cond);
    abort();
}

#define CHECK(cond) ((cond) ? (void)0 : check_failed(__FILE__, __LINE__, #cond))

#endif
