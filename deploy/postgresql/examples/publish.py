#!/usr/bin/python3
"""A producer for the shared PostgreSQL log (deploy/postgresql/schema.sql) with psycopg 3
(Debian: python3-psycopg).

    publish.py [-d CONNINFO] open SESSION      create the session (again: no-op)
    publish.py [-d CONNINFO] publish SESSION   one event, then a batch in one transaction
    publish.py [-d CONNINFO] refused SESSION   a batch with a bad row: refused, rolled back
    publish.py [-d CONNINFO] close SESSION     close: streams end, reconnects get 204

CONNINFO is a libpq string or URI ("host=db1 dbname=sse user=producer"); without -d,
libpq's environment applies (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...).
Values are always bound as parameters (%s), never formatted into the SQL. Keep
transactions short: the schema serialises writers from their first row to their commit.
"""
import json
import sys

import psycopg
from psycopg import errors


def open_session(conn, session):
    conn.execute("INSERT INTO sessions(id) VALUES (%s) ON CONFLICT DO NOTHING", (session,))


def publish(conn, session, type_, data, stream_id=None):
    """One event, its own transaction; returns the id PostgreSQL gave it (the SSE id)."""
    cur = conn.execute("INSERT INTO events(session_id, type, stream_id, data) "
                       "VALUES (%s, %s, %s, %s) RETURNING id",
                       (session, type_, stream_id, json.dumps(data)))
    return cur.fetchone()[0]


def publish_batch(conn, rows):
    """(session, type, data) rows in one transaction: all are stored, or none."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany("INSERT INTO events(session_id, type, data) VALUES (%s, %s, %s)",
                        [(s, t, json.dumps(d)) for s, t, d in rows])


def close_session(conn, session):
    """Returns False when there was no open session of that id."""
    cur = conn.execute("UPDATE sessions SET closed_at = sse_now_text() "   # the schema's now
                       "WHERE id = %s AND closed_at IS NULL", (session,))
    return cur.rowcount == 1


def main(argv):
    conninfo = ""                                   # "": libpq's environment
    if argv[:1] == ["-d"] and len(argv) >= 2:
        conninfo, argv = argv[1], argv[2:]
    if len(argv) != 2 or argv[0] not in ("open", "publish", "refused", "close"):
        print("usage:\n" + __doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    step, session = argv
    # autocommit: each statement outside `with conn.transaction()` commits at once; the
    # default READ COMMITTED is what the schema's close check needs.
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if step == "open":
            open_session(conn, session)
        elif step == "publish":
            print(publish(conn, session, "client_output_delta", {"content": "it's \"Hi\""}))
            publish_batch(conn, [(session, "llm_text_delta", {"content": w})
                                 for w in ("one", "two", "three")])
        elif step == "refused":
            try:
                publish_batch(conn, [(session, "llm_text_delta", {"content": "rolled back"}),
                                     ("typo", "llm_text_delta", {"content": "refused"})])
            except errors.CheckViolation as e:      # SQLSTATE 23514, every refusal
                # diag.message_primary is the schema's message; str(e) adds a CONTEXT line.
                print(f"refused: {type(e).__name__} (SQLSTATE {e.sqlstate}): "
                      f"{e.diag.message_primary}")
                print("the whole batch was rolled back: none of its rows is in the log")
        elif not close_session(conn, session):
            print(f"publish.py: no open session {session}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
