#!/bin/sh
# make run: a demo database, lighttpd on 127.0.0.1:8080 with sse-fcgi behind mod_fastcgi,
# and a page that shows the "demo" session live. Ctrl-C stops lighttpd and its backend.
set -eu
bin=${1:?usage: run.sh /path/to/sse-fcgi}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dir=$top/build/demo
port=${SSE_DEMO_PORT:-8080}
mkdir -p "$dir/www"
db=$dir/events.db
sqlite3 "$db" < "$top/schema.sql" > /dev/null
sqlite3 "$db" "INSERT OR IGNORE INTO sessions(id) VALUES ('demo');"
cp "$here/index.html" "$dir/www/index.html"
sed -e "s|@PORT@|$port|" -e "s|@WWW@|$dir/www|" -e "s|@DIR@|$dir|g" -e "s|@BIN@|$bin|" \
    -e "s|@DB@|$db|" "$here/lighttpd.conf.in" > "$dir/lighttpd.conf"
cat <<MSG

  sse-fcgi demo: open http://127.0.0.1:$port/  (session "demo")
  stream with curl:  curl -N http://127.0.0.1:$port/api/sessions/demo/events

  publish an event (in another terminal):
    sqlite3 $db "INSERT INTO events(session_id, type, data) VALUES ('demo', 'client_output_delta', '{\"content\":\"hello\"}');"

  logs: $dir/sse-fcgi.log   stop: Ctrl-C

MSG
exec lighttpd -D -f "$dir/lighttpd.conf"
