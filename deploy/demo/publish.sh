#!/bin/sh
# A producer in plain shell: a short scripted agent run into one session, one sqlite3 CLI
# call per event, as a cron job or a CGI script would publish. Pauses between events so the
# viewer shows them arriving.
#   deploy/demo/publish.sh build/demo/events.db demo
set -eu
db=${1:?usage: publish.sh DB SESSION}
session=${2:?usage: publish.sh DB SESSION}
pause=${PUBLISH_PAUSE_S:-0.4}

# q TEXT: TEXT as an SQL string literal (single quotes doubled), so a quote in the JSON
# is stored as given and never ends the literal.
q() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"
}

# publish TYPE STREAM_ID JSON: one row, committed when the CLI exits.
publish() {
    sqlite3 -bail "$db" "INSERT INTO events(session_id, type, stream_id, data)
                         VALUES ($(q "$session"), $(q "$1"), $(q "$2"), $(q "$3"));"
    sleep "$pause"
}

sqlite3 -bail "$db" "INSERT OR IGNORE INTO sessions(id) VALUES ($(q "$session"));"
run=$(date +%s)
publish execution_started   queen '{"run":"'"$run"'","goal":"summarise the inbox"}'
publish llm_text_delta      queen '{"content":"Reading the inbox"}'
publish tool_call_started   queen '{"tool":"mail.search","args":{"folder":"inbox","unread":true}}'
publish tool_call_completed queen '{"tool":"mail.search","result":{"count":3}}'
publish subagent_report     worker:summariser '{"summary":"2 invoices, 1 meeting request"}'
publish client_output_delta queen '{"content":"You have 3 unread mails: "}'
publish client_output_delta queen '{"content":"2 invoices and a meeting request. That'"'"'s all."}'
publish execution_completed queen '{"run":"'"$run"'","tokens":412}'
echo "published 8 events into session $session of $db"
