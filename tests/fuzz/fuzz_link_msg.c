/*
 * fuzz_link_msg.c - libFuzzer target for the shared hub's link messages
 * (store/link_msg.c: link_decode, the encoders).
 *
 * Feeds: the input as one message, as a SOCK_SEQPACKET recv() would hand it over.
 * Checks: link_decode never reads past the bytes it is given (ASan: the input is copied
 * into a buffer of exactly its size); what it accepts is well formed (a SUB's id has a
 * slot and no closed bit, its scope is a channel's and only the global one has no key;
 * a WAKE's ids all lie inside the message) and canonical: encoding the decoded message
 * again gives the same bytes. A broken invariant aborts through CHECK (check.h).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/link_msg.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
encode_again(const struct link_msg *m, unsigned char *out, size_t cap)
{
    switch (m->kind) {
    case LINK_SUB:
        return link_encode_sub(out, cap, m->id, m->scope, m->key, m->key_len);
    case LINK_UNSUB:
        return link_encode_unsub(out, cap, m->id);
    case LINK_WAKE: {
        static uint32_t ids[LINK_WAKE_IDS_MAX];
        for (size_t i = 0; i < m->id_count; i++)
            ids[i] = link_msg_wake_id(m, i);
        return link_encode_wake(out, cap, ids, m->id_count);
    }
    case LINK_WAKE_ALL:
        return link_encode_wake_all(out, cap);
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *msg = malloc(size > 0 ? size : 1);
    if (msg == NULL)
        return 0;
    if (size > 0)
        memcpy(msg, data, size);
    struct link_msg m;
    if (link_decode(msg, size, &m) == 0) {
        CHECK(size >= LINK_HEAD_BYTES && size <= LINK_MSG_MAX);
        if (m.kind == LINK_SUB || m.kind == LINK_UNSUB)
            CHECK((m.id & LINK_SLOT_MASK) != 0 && (m.id & LINK_CLOSED_BIT) == 0);
        if (m.kind == LINK_SUB) {
            CHECK(m.scope <= STORE_SCOPE_GLOBAL && m.key_len <= LINK_KEY_MAX);
            CHECK((m.scope == STORE_SCOPE_GLOBAL) == (m.key_len == 0));
            CHECK((const unsigned char *)m.key + m.key_len == msg + size);
        }
        if (m.kind == LINK_WAKE) {
            CHECK(m.id_count <= LINK_WAKE_IDS_MAX);
            CHECK(m.ids + 4 * m.id_count == msg + size);
        }
        static unsigned char again[LINK_MSG_MAX];
        size_t n = encode_again(&m, again, sizeof(again));
        CHECK(n == size && memcmp(again, msg, size) == 0);
    }
    free(msg);
    return 0;
}
