/*
 * link_msg.c - the messages of the shared hub's link (see link_msg.h).
 */
#include "link_msg.h"

#include <string.h>

struct head {
    uint8_t kind, scope;
    uint16_t key_len;
    uint32_t id;
};

_Static_assert(sizeof(struct head) == LINK_HEAD_BYTES, "the head is 8 bytes");

static size_t
put_head(unsigned char *out, size_t size, enum link_kind kind, unsigned scope,
         size_t key_len, uint32_t id)
{
    if (size < LINK_HEAD_BYTES)
        return 0;
    struct head h = {.kind = (uint8_t)kind, .scope = (uint8_t)scope,
                     .key_len = (uint16_t)key_len, .id = id};
    memcpy(out, &h, sizeof(h));
    return sizeof(h);
}

/* An id a SUB or UNSUB may carry: a slot, no closed bit. */
static bool
is_subscription_id(uint32_t id)
{
    return (id & LINK_SLOT_MASK) != 0 && (id & LINK_CLOSED_BIT) == 0;
}

size_t
link_encode_sub(unsigned char *out, size_t size, uint32_t id, enum store_scope scope,
                const char *key, size_t key_len)
{
    if (!is_subscription_id(id) || scope > STORE_SCOPE_GLOBAL || key_len > LINK_KEY_MAX
        || size < LINK_HEAD_BYTES + key_len || (key_len > 0 && key == NULL))
        return 0;
    size_t n = put_head(out, size, LINK_SUB, (unsigned)scope, key_len, id);
    if (key_len > 0)
        memcpy(out + n, key, key_len);
    return n + key_len;
}

size_t
link_encode_unsub(unsigned char *out, size_t size, uint32_t id)
{
    return is_subscription_id(id) ? put_head(out, size, LINK_UNSUB, 0, 0, id) : 0;
}

size_t
link_encode_wake(unsigned char *out, size_t size, const uint32_t *ids, size_t count)
{
    if (count > LINK_WAKE_IDS_MAX || size < LINK_HEAD_BYTES + 4 * count)
        return 0;
    size_t n = put_head(out, size, LINK_WAKE, 0, 0, (uint32_t)count);
    if (count > 0)
        memcpy(out + n, ids, 4 * count);
    return n + 4 * count;
}

size_t
link_encode_wake_all(unsigned char *out, size_t size)
{
    return put_head(out, size, LINK_WAKE_ALL, 0, 0, 0);
}

int
link_decode(const unsigned char *msg, size_t len, struct link_msg *m)
{
    memset(m, 0, sizeof(*m));
    struct head h;
    if (len < sizeof(h))
        return -1;
    memcpy(&h, msg, sizeof(h));
    size_t body = len - sizeof(h);
    bool is_bare = h.scope == 0 && h.key_len == 0;
    switch (h.kind) {
    case LINK_SUB:
        /* A session or worker channel has a key; the global one has none. */
        if (!is_subscription_id(h.id) || h.scope > STORE_SCOPE_GLOBAL || h.key_len != body
            || h.key_len > LINK_KEY_MAX
            || (h.scope == STORE_SCOPE_GLOBAL) != (h.key_len == 0))
            return -1;
        m->scope = (enum store_scope)h.scope;
        m->key = (const char *)msg + sizeof(h);
        m->key_len = h.key_len;
        m->id = h.id;
        break;
    case LINK_UNSUB:
        if (!is_subscription_id(h.id) || !is_bare || body != 0)
            return -1;
        m->id = h.id;
        break;
    case LINK_WAKE:
        if (!is_bare || h.id > LINK_WAKE_IDS_MAX || body != 4 * (size_t)h.id)
            return -1;
        m->ids = msg + sizeof(h);
        m->id_count = h.id;
        break;
    case LINK_WAKE_ALL:
        if (!is_bare || h.id != 0 || body != 0)
            return -1;
        break;
    default:
        return -1;
    }
    m->kind = (enum link_kind)h.kind;
    return 0;
}

uint32_t
link_msg_wake_id(const struct link_msg *m, size_t i)
{
    uint32_t id;
    memcpy(&id, m->ids + 4 * i, sizeof(id));
    return id;
}
