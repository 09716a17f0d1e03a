#!/bin/sh
# make run: a demo database, lighttpd on 127.0.0.1:8080 with sse-fcgi behind mod_fastcgi,
# and the viewer (deploy/viewer/) showing session "demo" live. Ctrl-C stops lighttpd and its
# backend. SSE_DEMO_PORT and SSE_DEMO_DIR (default build/demo) move it.
set -eu
bin=${1:?usage: run.sh /path/to/sse-fcgi}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dir=${SSE_DEMO_DIR:-$top/build/demo}
port=${SSE_DEMO_PORT:-8080}
mkdir -p "$dir/www"
db=$dir/events.db
sqlite3 "$db" < "$top/schema.sql" > /dev/null
sqlite3 "$db" "INSERT OR IGNORE INTO sessions(id) VALUES ('demo');"
cp "$top/deploy/viewer/index.html" "$top/deploy/viewer/viewer.js" \
   "$top/deploy/viewer/viewer.css" "$dir/www/"
sed -e "s|@PORT@|$port|" -e "s|@WWW@|$dir/www|" -e "s|@DIR@|$dir|g" -e "s|@BIN@|$bin|" \
    -e "s|@DB@|$db|" -e "s|@TOP@|$top|" "$here/lighttpd.conf.in" > "$dir/lighttpd.conf"
cat <<MSG

  sse-fcgi demo: open http://127.0.0.1:$port/  (the viewer, on session "demo")

  publish an event (in another terminal):
    sqlite3 $db "INSERT INTO events(session_id, type, data) VALUES ('demo', 'client_output_delta', '{\"content\":\"hello\"}');"
  or a short scripted agent run, one sqlite3 call per event:
    deploy/demo/publish.sh $db demo
  close the session (the viewer shows "ended"):
    sqlite3 $db "UPDATE sessions SET closed_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = 'demo';"

  raw stream:  curl -N http://127.0.0.1:$port/api/sessions/demo/events
  health:      curl http://127.0.0.1:$port/api/health
  logs: $dir/sse-fcgi.log   stop: Ctrl-C

MSG
exec lighttpd -D -f "$dir/lighttpd.conf"
