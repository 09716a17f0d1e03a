#!/bin/sh
# A producer for the shared PostgreSQL log (deploy/postgresql/schema.sql) with psql.
#
#   publish.sh [-d CONNINFO] open SESSION                 create the session (again: no-op)
#   publish.sh [-d CONNINFO] text SESSION TYPE TEXT...    one event per TEXT, its data
#                                                         {"content": TEXT} built by PostgreSQL
#   publish.sh [-d CONNINFO] event SESSION TYPE JSON...   one event per JSON document
#   publish.sh [-d CONNINFO] close SESSION                streams end, reconnects get 204
#
# CONNINFO is a libpq string or URI ("host=db1 dbname=sse user=producer"); without -d,
# libpq's environment applies (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, ...).
# Several TEXTs or JSONs are one INSERT: all rows or none. It prints each event's id, the
# SSE id PostgreSQL gave it. Every value reaches the server as a psql variable (-v
# name=value, written :'name' in the SQL, which psql sends as a quoted literal): nothing is
# spliced into the SQL text, so a quote in a value cannot end a literal. A refused row:
# psql prints "ERROR:  <the schema's message>" and the script exits 3.
set -eu

usage() {
    echo "usage: publish.sh [-d CONNINFO] open|close SESSION" \
         "| text|event SESSION TYPE VALUE..." >&2
    exit 2
}

conn=
if [ "${1:-}" = -d ]; then
    [ $# -ge 2 ] || usage
    conn=$2
    shift 2
fi
[ $# -ge 2 ] || usage
step=$1
session=$2
shift 2

# run SQL [psql options]: psql reads SQL on stdin, where it replaces :'name' (it does not
# in -c); -t -A print rows bare, one a line; VERBOSITY=terse: the message without CONTEXT.
run() {
    sql=$1
    shift
    printf '%s\n' "$sql" | psql -X -q -t -A -v ON_ERROR_STOP=1 -v VERBOSITY=terse \
        ${conn:+-d "$conn"} -v session="$session" "$@" -f -
}

case $step in
open)
    run "INSERT INTO sessions(id) VALUES (:'session') ON CONFLICT DO NOTHING;" ;;
text|event)
    [ $# -ge 2 ] || usage
    type=$1
    shift
    # Value i becomes variable v<i>; only the names v1, v2, ... are written into the SQL.
    rows= n=$# i=0
    for value in "$@"; do
        i=$((i + 1))
        data=":'v$i'"
        [ "$step" = event ] || data="json_build_object('content', :'v$i')::text"
        rows="$rows${rows:+, }(:'session', :'type', $data)"
        set -- "$@" -v "v$i=$value"
    done
    shift "$n"
    run "INSERT INTO events(session_id, type, data) VALUES $rows RETURNING id;" \
        -v type="$type" "$@" ;;
close)
    # sse_now_text(): the schema's now, written as the default timestamps are.
    closed=$(run "UPDATE sessions SET closed_at = sse_now_text()
                  WHERE id = :'session' AND closed_at IS NULL RETURNING id;")
    [ -n "$closed" ] || { echo "publish.sh: no open session $session" >&2; exit 1; } ;;
*)
    usage ;;
esac
