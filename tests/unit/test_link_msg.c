/*
 * test_link_msg.c - the shared hub's link messages (store/link_msg.h): each message round
 * trips, and each way of being malformed is refused (the leader then drops the link).
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "store/link_msg.h"

static unsigned char buf[LINK_MSG_MAX + 16];

START_TEST(test_sub_round_trip)
{
    uint32_t id = 3u | 7u << LINK_GENERATION_SHIFT;
    size_t n = link_encode_sub(buf, sizeof(buf), id, STORE_SCOPE_SESSION, "s\0x", 3);
    ck_assert_uint_eq(n, LINK_HEAD_BYTES + 3);
    struct link_msg m;
    ck_assert_int_eq(link_decode(buf, n, &m), 0);
    ck_assert_int_eq(m.kind, LINK_SUB);
    ck_assert_int_eq(m.scope, STORE_SCOPE_SESSION);
    ck_assert_uint_eq(m.id, id);
    ck_assert_uint_eq(m.key_len, 3);
    ck_assert(memcmp(m.key, "s\0x", 3) == 0);
    n = link_encode_sub(buf, sizeof(buf), 1, STORE_SCOPE_GLOBAL, NULL, 0);
    ck_assert_int_eq(link_decode(buf, n, &m), 0);
    ck_assert_int_eq(m.scope, STORE_SCOPE_GLOBAL);
    ck_assert_uint_eq(m.key_len, 0);
}
END_TEST

START_TEST(test_unsub_and_wake_round_trip)
{
    struct link_msg m;
    size_t n = link_encode_unsub(buf, sizeof(buf), 9);
    ck_assert_int_eq(link_decode(buf, n, &m), 0);
    ck_assert_int_eq(m.kind, LINK_UNSUB);
    ck_assert_uint_eq(m.id, 9);
    const uint32_t ids[] = {1, 2 | LINK_CLOSED_BIT, 0xffff};
    n = link_encode_wake(buf, sizeof(buf), ids, 3);
    ck_assert_uint_eq(n, LINK_HEAD_BYTES + 12);
    ck_assert_int_eq(link_decode(buf, n, &m), 0);
    ck_assert_int_eq(m.kind, LINK_WAKE);
    ck_assert_uint_eq(m.id_count, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert_uint_eq(link_msg_wake_id(&m, i), ids[i]);
    n = link_encode_wake_all(buf, sizeof(buf));
    ck_assert_int_eq(link_decode(buf, n, &m), 0);
    ck_assert_int_eq(m.kind, LINK_WAKE_ALL);
}
END_TEST

/* What the encoders refuse to build. */
START_TEST(test_encoders_refuse)
{
    char key[LINK_KEY_MAX + 1];
    memset(key, 'k', sizeof(key));
    ck_assert_uint_eq(link_encode_sub(buf, sizeof(buf), 0, STORE_SCOPE_SESSION, "s", 1), 0);
    ck_assert_uint_eq(link_encode_sub(buf, sizeof(buf), 1 | LINK_CLOSED_BIT,
                                      STORE_SCOPE_SESSION, "s", 1), 0);
    ck_assert_uint_eq(link_encode_sub(buf, sizeof(buf), 1, STORE_SCOPE_ALL, "s", 1), 0);
    ck_assert_uint_eq(link_encode_sub(buf, sizeof(buf), 1, STORE_SCOPE_SESSION, key,
                                      sizeof(key)), 0);
    ck_assert_uint_eq(link_encode_sub(buf, 9, 1, STORE_SCOPE_SESSION, "ss", 2), 0);
    ck_assert_uint_eq(link_encode_unsub(buf, sizeof(buf), 1u << LINK_GENERATION_SHIFT), 0);
    static uint32_t many[LINK_WAKE_IDS_MAX + 1];
    ck_assert_uint_eq(link_encode_wake(buf, sizeof(buf), many, LINK_WAKE_IDS_MAX + 1), 0);
    ck_assert_uint_eq(link_encode_wake(buf, LINK_HEAD_BYTES + 3, many, 1), 0);
    ck_assert_uint_eq(link_encode_wake_all(buf, LINK_HEAD_BYTES - 1), 0);
}
END_TEST

/* Writes a head with the given fields into buf (host order, as link_msg.c does). */
static void
put_head(uint8_t kind, uint8_t scope, uint16_t key_len, uint32_t id)
{
    buf[0] = kind;
    buf[1] = scope;
    memcpy(buf + 2, &key_len, 2);
    memcpy(buf + 4, &id, 4);
}

START_TEST(test_decode_refuses)
{
    struct link_msg m;
    static const struct {
        uint8_t kind, scope;
        uint16_t key_len;
        uint32_t id;
        size_t len;
        const char *why;
    } CASES[] = {
        {LINK_SUB, STORE_SCOPE_SESSION, 2, 1, 7, "shorter than its head"},
        {0, 0, 0, 0, 8, "no such kind"},
        {9, 0, 0, 0, 8, "no such kind"},
        {LINK_SUB, STORE_SCOPE_SESSION, 3, 1, 8 + 2, "key shorter than key_len"},
        {LINK_SUB, STORE_SCOPE_SESSION, 1, 1, 8 + 2, "bytes after the key"},
        {LINK_SUB, STORE_SCOPE_SESSION, 0, 1, 8, "a session with no key"},
        {LINK_SUB, STORE_SCOPE_GLOBAL, 1, 1, 8 + 1, "the global channel with a key"},
        {LINK_SUB, STORE_SCOPE_ALL, 1, 1, 8 + 1, "scope ALL is no channel"},
        {LINK_SUB, STORE_SCOPE_SESSION, 1, 0x10000, 8 + 1, "id without a slot"},
        {LINK_SUB, STORE_SCOPE_SESSION, 1, 1 | LINK_CLOSED_BIT, 8 + 1, "closed bit in a SUB"},
        {LINK_SUB, STORE_SCOPE_SESSION, LINK_KEY_MAX + 1, 1, 8 + LINK_KEY_MAX + 1, "key too long"},
        {LINK_UNSUB, 0, 0, 1, 9, "bytes after an UNSUB"},
        {LINK_UNSUB, 1, 0, 1, 8, "an UNSUB with a scope"},
        {LINK_WAKE, 0, 0, 2, 8 + 4, "fewer ids than its count"},
        {LINK_WAKE, 0, 0, 1, 8 + 8, "more ids than its count"},
        {LINK_WAKE, 0, 0, LINK_WAKE_IDS_MAX + 1, 8, "count over the maximum"},
        {LINK_WAKE, 0, 1, 0, 8, "a WAKE with a key length"},
        {LINK_WAKE_ALL, 0, 0, 1, 8, "a WAKE_ALL with a count"},
        {LINK_WAKE_ALL, 0, 0, 0, 12, "bytes after a WAKE_ALL"},
    };
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        memset(buf, 's', sizeof(buf));
        put_head(CASES[i].kind, CASES[i].scope, CASES[i].key_len, CASES[i].id);
        ck_assert_msg(link_decode(buf, CASES[i].len, &m) == -1, "accepted: %s",
                      CASES[i].why);
    }
}
END_TEST

Suite *suite_link_msg(void);

Suite *
suite_link_msg(void)
{
    Suite *s = suite_create("link_msg");
    TCase *tc = tcase_create("link_msg");
    tcase_add_test(tc, test_sub_round_trip);
    tcase_add_test(tc, test_unsub_and_wake_round_trip);
    tcase_add_test(tc, test_encoders_refuse);
    tcase_add_test(tc, test_decode_refuses);
    suite_add_tcase(s, tc);
    return s;
}
