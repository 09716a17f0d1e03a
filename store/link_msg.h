/*
 * link_msg.h - the messages of the shared hub's link (store/hub_link.c), as bytes: built and
 * checked here, sent and received there. Pure: no I/O.
 *
 * Why a protocol of our own: the link joins processes of one program, one version (the
 * layout version is in the files' names), on one host, over a SOCK_SEQPACKET socket that
 * keeps each message whole; it has four messages of fixed shape. A Debian library for it
 * (D-Bus, ZeroMQ, protobuf-c) would bring a daemon or a dependency and a schema compiler
 * for what is a few lines of memcpy; what it must not do, read past a message or believe a
 * malformed one, is what link_decode checks and tests/fuzz/fuzz_link_msg.c tries.
 *
 * Every message begins with an 8-byte head: kind, scope, key length, id (host order: both
 * ends are on one host). Follower to leader: SUB (head, then key_len bytes of key) and
 * UNSUB (head). Leader to follower: WAKE (head whose id is the count, then that many
 * 32-bit subscription ids, each with LINK_CLOSED_BIT when the stream's session closed) and
 * WAKE_ALL (head).
 */
#ifndef SSE_LINK_MSG_H
#define SSE_LINK_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

enum link_kind { LINK_SUB = 1, LINK_UNSUB, LINK_WAKE, LINK_WAKE_ALL };

enum {
    LINK_HEAD_BYTES = 8,
    LINK_KEY_MAX = 1024,            /* longer than any channel key (ids are <= 128 bytes) */
    LINK_WAKE_IDS_MAX = 2048,       /* ids in one WAKE; more go in several */
    LINK_MSG_MAX = LINK_HEAD_BYTES + 4 * LINK_WAKE_IDS_MAX, /* the largest message */
};

/* A subscription's id: its slot in the follower's table (low 16 bits, from 1) and a
 * generation (15 bits), so that a slot used again is never taken for the one before it
 * (a WAKE in flight for a stream that ended must not reach the next one). In a WAKE, the
 * top bit says the session closed. */
#define LINK_SLOT_MASK 0xffffu
#define LINK_GENERATION_SHIFT 16
#define LINK_CLOSED_BIT 0x80000000u

/* A decoded message; key and ids point into the bytes it was decoded from. */
struct link_msg {
    enum link_kind kind;
    enum store_scope scope;         /* SUB */
    uint32_t id;                    /* SUB, UNSUB */
    const char *key;                /* SUB: key_len bytes, not NUL-terminated */
    size_t key_len;
    const unsigned char *ids;       /* WAKE: id_count ids, read with link_msg_wake_id */
    size_t id_count;
};

/* Each writes one message into out (size bytes) and returns its length, or 0 when the
 * arguments cannot make a valid one (id without a slot, key too long, too many ids, out
 * too small). */
size_t link_encode_sub(unsigned char *out, size_t size, uint32_t id, enum store_scope scope,
                       const char *key, size_t key_len);
size_t link_encode_unsub(unsigned char *out, size_t size, uint32_t id);
size_t link_encode_wake(unsigned char *out, size_t size, const uint32_t *ids, size_t count);
size_t link_encode_wake_all(unsigned char *out, size_t size);

/* Checks and decodes the len bytes of one message into *m. Returns 0, or -1 when they are
 * not exactly one well-formed message (the link is then dropped). */
int link_decode(const unsigned char *msg, size_t len, struct link_msg *m);

/* The i-th id of a WAKE (i < m->id_count), closed bit included. */
uint32_t link_msg_wake_id(const struct link_msg *m, size_t i);

#endif
