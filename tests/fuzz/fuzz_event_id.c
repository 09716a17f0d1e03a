/*
 * fuzz_event_id.c - libFuzzer target for Last-Event-ID parsing (params_parse_event_id,
 * SPEC §4.3).
 *
 * Feeds: the input as a NUL-terminated header value (an inner NUL ends it, as in a FastCGI
 * parameter).
 * Checks: the result is 0, 1 or PARAMS_MALFORMED and agrees with an independent reading of
 * the grammar (blanks, digits in 0..INT64_MAX, blanks); on success the id is >= 0 and
 * printing it with %lld and parsing that again gives the same id.
 * A broken invariant aborts through CHECK (check.h); libFuzzer saves the input.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi/params.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the header comment of params_parse_event_id allows, read without arithmetic:
 * 1 for blank, 0 for blanks + digits <= INT64_MAX + blanks, PARAMS_MALFORMED otherwise.
 * For 0, *number and *number_len give the digits without leading zeros. */
static int
expected_result(const char *value, const char **number, size_t *number_len)
{
    const char *blank = " \t";
    const char *p = value + strspn(value, blank);
    if (*p == '\0')
        return 1;
    size_t digits = strspn(p, "0123456789");
    if (digits == 0 || p[digits + strspn(p + digits, blank)] != '\0')
        return PARAMS_MALFORMED;
    while (digits > 1 && *p == '0')
        p++, digits--;
    const char *max = "9223372036854775807";  /* INT64_MAX */
    if (digits > strlen(max) || (digits == strlen(max) && strncmp(p, max, digits) > 0))
        return PARAMS_MALFORMED;
    *number = p;
    *number_len = digits;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = malloc(size + 1);
    CHECK(value != NULL);
    memcpy(value, data, size);
    value[size] = '\0';
    int64_t id = -1;
    int rc = params_parse_event_id(value, &id);
    const char *number = NULL;
    size_t number_len = 0;
    CHECK(rc == expected_result(value, &number, &number_len));
    if (rc == 0) {
        CHECK(id >= 0);
        char text[32];
        snprintf(text, sizeof(text), "%lld", (long long)id);
        /* The value itself, not only a stable one: the same digits as the input's. */
        CHECK(strlen(text) == number_len && memcmp(text, number, number_len) == 0);
        int64_t again = -1;
        CHECK(params_parse_event_id(text, &again) == 0 && again == id);
    }
    CHECK(params_parse_event_id(NULL, &id) == 1);
    free(value);
    return 0;
}
