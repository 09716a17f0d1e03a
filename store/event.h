/*
 * event.h - plain structs that mirror schema.sql rows and the event_types policy flags.
 *
 * No functions live here. Strings point into memory owned by whoever filled the struct
 * (store.c fills them from a batch arena; unit tests from literals). Every text field may be
 * NULL (SQL NULL) and may hold any bytes a hand-edited database can hold: consumers never
 * assume valid UTF-8 or absence of control characters.
 */
#ifndef SSE_EVENT_H
#define SSE_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Byte limits of the columns a stream loads. schema.sql's INSERT triggers refuse a row over
 * any of them with the same numbers (the schema suite checks that both agree); a row that
 * slipped past them (an older schema, a hand-edited file) may still exceed them. */
enum {
    EVENT_DATA_MAX = 1048576,       /* events.data: 1 MiB */
    EVENT_ID_FIELD_MAX = 256,       /* node_id, execution_id, correlation_id, colony_id, run_id */
    EVENT_TIMESTAMP_MAX = 64,       /* events.timestamp, as text or as a number's text */
    EVENT_NAME_MAX = 128,           /* events.type, events.stream_id, event_types.name */
};

/* A column that SQLite may hand back as text or as a number (events.timestamp). */
enum event_value_kind {
    EVENT_VALUE_NULL = 0,
    EVENT_VALUE_INTEGER,
    EVENT_VALUE_REAL,
    EVENT_VALUE_TEXT,
};

struct event_value {
    enum event_value_kind kind;
    int64_t integer;   /* valid for EVENT_VALUE_INTEGER */
    double real;       /* valid for EVENT_VALUE_REAL */
    const char *text;  /* valid for EVENT_VALUE_TEXT; NUL-terminated, may hold inner NULs */
    size_t text_len;   /* bytes of text, without the terminator */
};

/* One row of `events`. Text fields are NUL-terminated; *_len counts bytes without it. */
struct event {
    int64_t id;                  /* SSE id and resume cursor */
    const char *session_id;      /* NULL for the global channel */
    size_t session_id_len;
    bool is_session_id_blob;     /* stored as a BLOB (a hand-edited row): like SQL's =, it */
    bool is_stream_id_blob;      /* matches no session (stream id: no worker) channel */
    bool is_oversized;           /* a value over STORE_VALUE_MAX: only id, and the keys when
                                  * they could be read, are set; it is skipped, logged */
    const char *type;            /* never NULL in a row the schema accepted */
    size_t type_len;
    const char *stream_id;
    size_t stream_id_len;
    const char *node_id;
    size_t node_id_len;
    const char *execution_id;
    size_t execution_id_len;
    const char *data;            /* JSON text as stored; may be invalid in a hand-edited db */
    size_t data_len;
    struct event_value timestamp;
    const char *correlation_id;
    size_t correlation_id_len;
    const char *colony_id;
    size_t colony_id_len;
    const char *run_id;          /* the frame carries run_id only when this is not NULL */
    size_t run_id_len;
};

/* Flags of one `event_types` row. */
struct event_type_policy {
    const char *name;            /* owned by the policy table that holds this entry */
    bool is_streamed_by_default;
    bool is_replayed;
    bool is_critical;
    bool is_worker_fanin;
};

/* One `read_tokens` row (SSE_AUTH=token): salt as stored, and the lower-case hex SHA-256
 * of salt || token. */
struct stored_token {
    char salt[129];
    char hash_hex[65];
};

#endif
