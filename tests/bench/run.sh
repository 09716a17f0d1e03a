#!/bin/bash
# make bench: runs the scenarios of issue 4 against a real lighttpd + sse-fcgi and prints one
# table. Usage: run.sh BIN SCHEMA TOOLS_DIR WORK_DIR. BENCH_SCENARIOS="a b c d e" picks
# scenarios, BENCH_SECONDS (default 10) the length of the timed ones.
#
# Each scenario gets a fresh database and a fresh lighttpd on a free loopback port. The
# load client (loadgen) connects every stream, then creates a ready file; the producer
# starts only then. Server CPU is the backend's utime+stime (/proc/PID/stat) over the run;
# RSS per stream is (VmRSS with the streams - VmRSS before them) / streams. Every process
# started here (lighttpd, its sse-fcgi backend, nginx, loadgen) is stopped by PID on exit, also on
# Ctrl-C. A scenario whose streams do not all open (503: slots ran out) still gets its row,
# with the count in the note column; BENCH_THREADS overrides SSE_THREADS to try that.
#
# Every scenario runs twice: against sse-fcgi, then against the reference, nginx + nchan
# (nginx.conf.in: 1 worker, EventSource subscribers on a channel per session, the producer
# POSTing each event over one keep-alive connection). Same client and producer, in their
# --nchan modes; nchan's server CPU and RSS are its worker's. A third row gives the ratios
# sse-fcgi / nchan of p99, CPU per 1,000 delivered and RSS per stream.
set -euo pipefail
bin=$1 schema=$2 tools=$3 work=$4
conf_in=$(dirname "$0")/lighttpd.conf.in
nginx_in=$(dirname "$0")/nginx.conf.in
seconds=${BENCH_SECONDS:-10}
scenarios=${BENCH_SCENARIOS:-a b c d e p}
tick=$(getconf CLK_TCK)
pids=()
cleanup() {
    # a failed look-up must not stop the stopping (set -e also holds in the EXIT trap)
    local -
    set +e
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 50); do is_gone "$pid" && break; sleep 0.05; done
        is_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    done
    pids=()
}
# is_gone PID: the process exited; a zombie counts as gone (kill -0 still reaches it until its
# parent, which is not this shell for lighttpd's child, reaps it)
is_gone() {
    local stat
    { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) }
    [[ $stat == [ZX]* ]]
}
trap cleanup EXIT INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n 16384

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 20000))
        ss -ltn "( sport = :$port )" | grep -q LISTEN || { echo "$port"; return; }
    done
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 20 ms until it succeeds;
# returns 1 (and says so) when SECONDS pass first.
wait_for() {
    local what=$1 limit=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= end)); then echo "bench: $what did not happen in ${limit} s" >&2; return 1; fi
        sleep 0.02
    done
}
ready_or_gone() { test -e "$1" || ! kill -0 "$2"; }

# scenario NAME STREAMS SESSIONS RATE BATCH SECONDS: the sse-fcgi row, the nchan row and
# the ratio row.
scenario() {
    local name=$1; shift
    run_one sse-fcgi "$name" "$@"
    local sse_p99=$r_p99 sse_per_k=$r_per_k sse_rss=$r_rss
    run_one nchan "$name" "$@"
    printf '| %s | sse-fcgi / nchan | | | | %s | | %s | %s | | | |\n' "${name%%:*}" \
        "$(ratio "$sse_p99" "$r_p99")" "$(ratio "$sse_per_k" "$r_per_k")" \
        "$(ratio "$sse_rss" "$r_rss")"
}

# ratio A B: A / B as "N.N×", or "-" when either is missing or B is not above 0
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0)
        printf "%.1f×", a / b; else print "-" }'
}

# prepare_db DIR SESSIONS: a fresh database with sessions bench-0 .. bench-(SESSIONS-1)
prepare_db() {
    sqlite3 "$1/events.db" < "$schema" > /dev/null
    sqlite3 "$1/events.db" "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k
        WHERE i < $2 - 1) INSERT INTO sessions(id) SELECT 'bench-' || i FROM k"
}

# start_sse DIR PORT STREAMS SESSIONS: lighttpd + sse-fcgi; sets measured to the backend
start_sse() {
    local dir=$1 port=$2 streams=$3 sessions=$4
    prepare_db "$dir" "$sessions"
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@BIN@|$bin|g" \
        -e "s|@THREADS@|${BENCH_THREADS:-$((streams + 16))}|g" "$conf_in" > "$dir/lighttpd.conf"
    lighttpd -D -f "$dir/lighttpd.conf" > "$dir/lighttpd.out" 2>&1 &
    local server=$!
    pids+=("$server")
    wait_for "lighttpd on port $port" 10 curl -sf "http://127.0.0.1:$port/api/health" || return 1
    measured=$(pgrep -P "$server" | head -1)
    pids+=("$measured")
}

# start_nchan DIR PORT: nginx + nchan, master in the foreground; sets measured to its worker
start_nchan() {
    local dir=$1 port=$2
    mkdir -p "$dir/nginx-tmp"
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" "$nginx_in" > "$dir/nginx.conf"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" > "$dir/nginx.out" 2>&1 &
    local server=$!
    pids+=("$server")
    wait_for "nginx on port $port" 10 curl -sf "http://127.0.0.1:$port/health" || return 1
    measured=$(pgrep -P "$server" | head -1)
    [ -n "$measured" ] && pids+=("$measured")
}

# start_client DIR PORT STREAMS SESSIONS SECONDS LOADGEN_ARGS...: starts loadgen (sets client)
# and waits for its ready file; returns 1 when it never came (the client failed)
start_client() {
    local dir=$1 port=$2 streams=$3 sessions=$4 secs=$5; shift 5
    "$tools/loadgen" --port "$port" --streams "$streams" --sessions "$sessions" \
        --duration "$secs" --ready-file "$dir/ready" "$@" \
        > "$dir/loadgen.out" 2> "$dir/loadgen.err" &
    client=$!
    pids+=("$client")
    # loadgen creates the file once every stream opened or was refused (30 s at most)
    wait_for "loadgen ready" 60 ready_or_gone "$dir/ready" "$client" || true
    test -e "$dir/ready"
}

# read_loadgen DIR: sets events, eps, p50, p99, errors and connected from loadgen's line of
# key=value pairs (p50 and p99 are - when nothing arrived)
read_loadgen() {
    events=0 eps=0 p50=0 p99=0 errors=0 connected=0
    for kv in $(cat "$1/loadgen.out"); do
        case $kv in
            events=*) events=${kv#*=} ;; events_per_s=*) eps=${kv#*=} ;;
            p50_ms=*) p50=${kv#*=} ;; p99_ms=*) p99=${kv#*=} ;;
            errors=*) errors=${kv#*=} ;; connected=*) connected=${kv#*=} ;;
        esac
    done
    if [ "$events" = 0 ]; then p50=-; p99=-; fi
}

# delivery_note DIR STREAMS SESSIONS: what read_loadgen's figures say went wrong, for the note
# column: streams that did not open (and the first refusal), and what was published but not
# delivered. Every published event is for streams/sessions streams; nchan drops what it
# cannot keep up with, without a gap loadgen could see (issue 13, scenario c).
delivery_note() {
    local dir=$1 streams=$2 sessions=$3 note=""
    if [ "$connected" != "$streams" ]; then
        note="only $connected of $streams streams opened"
        local refusals; refusals=$(grep -c '^loadgen: HTTP' "$dir/loadgen.err" || true)
        ((refusals > 0)) && note="$note ($refusals refused: $(grep -m1 '^loadgen: HTTP' \
            "$dir/loadgen.err" | cut -d' ' -f3-))"
    fi
    local lost; lost=$(awk -v p="$(published "$dir")" -v e="$events" -v n="$streams" \
        -v m="$sessions" \
        'BEGIN { x = p * n / m; if (x > 0 && e < 0.95 * x) printf "%.0f", 100 * (1 - e / x) }')
    [ -n "$lost" ] && note="${note:+$note; }$lost % of what was published not delivered"
    echo "$note"
}

# published DIR: the events the producer published (0 when it did not run)
published() {
    local n; n=$(sed -n 's/^inserted=\([0-9]*\).*/\1/p' "$1/producer.out" 2>/dev/null || true)
    echo "${n:-0}"
}

# per_1000 CPU_S EVENTS: CPU seconds per 1,000 events, or - without events
per_1000() {
    awk -v c="$1" -v e="$2" 'BEGIN { if (e > 0) printf "%.4f", c / (e / 1000); else print "-" }'
}

# run_one SERVER NAME STREAMS SESSIONS RATE BATCH SECONDS: one row; sets r_p99, r_per_k and
# r_rss for the ratio row
run_one() {
    local server=$1 name=$2 streams=$3 sessions=$4 rate=$5 batch=$6 secs=$7
    local dir=$work/${name%%:*}-$server
    r_p99=- r_per_k=- r_rss=-
    rm -rf "$dir" && mkdir -p "$dir"
    local port; port=$(free_port)
    local measured="" client="" client_args=() producer_args=(--db "$dir/events.db")
    if [ "$server" = nchan ]; then
        client_args=(--nchan --path /sub/bench-%d)
        producer_args=(--nchan-port "$port")
    fi
    if ! "start_${server//-fcgi/}" "$dir" "$port" "$streams" "$sessions"; then
        cleanup
        row "$name" "$server" "$streams" "$rate" - - - - - - - "server did not start: see $dir"
        return
    fi
    local rss_base; rss_base=$(rss_kib "$measured")
    if ! start_client "$dir" "$port" "$streams" "$sessions" "$secs" "${client_args[@]}"; then
        cleanup
        row "$name" "$server" "$streams" "$rate" - - - - - - - \
            "load client failed: see $dir/loadgen.err"
        return
    fi
    local cpu0; cpu0=$(cpu_ticks "$measured")
    local rss_streams; rss_streams=$(rss_kib "$measured")
    if [ "$rate" != idle ]; then
        "$tools/producer" "${producer_args[@]}" --sessions "$sessions" --rate "$rate" \
            --batch "$batch" --duration "$secs" > "$dir/producer.out" 2> "$dir/producer.err" \
            || true
    fi
    wait "$client" || true
    local cpu1; cpu1=$(cpu_ticks "$measured")
    local rss_end; rss_end=$(rss_kib "$measured")
    ((rss_end > rss_streams)) && rss_streams=$rss_end
    cleanup
    local events eps p50 p99 errors connected
    read_loadgen "$dir"
    local cpu_s per_k rss_per
    cpu_s=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / t }')
    per_k=$(per_1000 "$cpu_s" "$events")
    rss_per=$(awk -v a="$rss_base" -v b="$rss_streams" -v n="$streams" 'BEGIN { printf "%.1f", (b - a) / n }')
    local note; note=$(delivery_note "$dir" "$streams" "$sessions")
    r_p99=$p99 r_per_k=$per_k r_rss=$rss_per
    row "$name" "$server" "$streams" "$rate" "$p50" "$p99" "$eps" "$per_k" "$rss_per" "$cpu_s" \
        "$errors" "$note"
}

# prune_scenario EVENTS SESSIONS: issue 6's retention. EVENTS rows over SESSIONS sessions,
# their timestamps spread evenly over the last 60 days, then `sse-fcgi prune --keep-days 30`
# while the producer commits 200 events/s (one per transaction): how long it takes, how long
# it holds the write lock at most, and the producer's slowest commit in that time.
prune_scenario() {
    local events=$1 sessions=$2 dir=$work/p
    rm -rf "$dir" && mkdir -p "$dir"
    sqlite3 "$dir/events.db" < "$schema" > /dev/null
    sqlite3 "$dir/events.db" "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k
        WHERE i < $sessions - 1) INSERT INTO sessions(id) SELECT 'bench-' || i FROM k;
        WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < $events - 1)
        INSERT INTO events(session_id, type, timestamp) SELECT 'bench-' || (i % $sessions),
        'llm_text_delta', strftime('%Y-%m-%dT%H:%M:%fZ', 'now',
        '-' || (60.0 * ($events - 1 - i) / $events) || ' days') FROM k;"
    "$tools/producer" --db "$dir/events.db" --sessions "$sessions" --rate 200 --batch 1 \
        --duration 60 > "$dir/producer.out" &
    local producer=$!
    pids+=("$producer")
    local t0 t1
    t0=$(date +%s.%N)
    SSE_DB="$dir/events.db" "$bin" prune --keep-days 30 > "$dir/prune.out" 2>&1 || true
    t1=$(date +%s.%N)
    kill -TERM "$producer" 2>/dev/null || true
    wait "$producer" 2>/dev/null || true
    cleanup
    local summary; summary=$(grep -m1 'deleted\|nothing' "$dir/prune.out" || cat "$dir/prune.out")
    local took; took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo
    echo "| scenario | seconds | prune's summary | producer at 200 ev/s meanwhile |"
    echo "| --- | --- | --- | --- |"
    printf '| p: %s events, %s sessions, 60 days; prune --keep-days 30 | %s | %s | %s |\n' \
        "$events" "$sessions" "$took" "${summary#sse-fcgi prune: }" \
        "$(cat "$dir/producer.out" 2>/dev/null || echo "no output")"
}

# row NAME SERVER STREAMS RATE P50 P99 EPS PER_K RSS_PER CPU_S ERRORS NOTE
row() {
    local asked=$4
    [ "$asked" = 0 ] && asked="max (batch 100)"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" \
        "$asked" "$5" "$6" "$7" "$8" "$9" "${10}" "${11}" "${12}"
}

echo "sse-fcgi bench: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ); client, producer and server share the machine"
echo "reproduce: make bench (BENCH_SCENARIOS=\"$scenarios\" BENCH_SECONDS=$seconds)"
echo
echo "| scenario | server | streams | rate asked (ev/s) | p50 ms | p99 ms | delivered ev/s | server CPU s / 1,000 delivered | server RSS / stream KiB | server CPU s in all | errors | note |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for s in $scenarios; do
    case $s in
        a) scenario "a: 1 stream" 1 1 1000 1 "$seconds" ;;
        b) scenario "b: 1,000 streams / 1,000 sessions" 1000 1000 2000 1 "$seconds" ;;
        c) scenario "c: 1 stream, max rate" 1 1 0 100 "$seconds" ;;
        d) scenario "d: 1,000 idle streams, 20 s" 1000 1000 idle 1 20 ;;
        e) scenario "e: fan-out 100 streams / 1 session" 100 1 200 1 "$seconds" ;;
        p) prune_scenario 1000000 50 ;;
        *) echo "bench: unknown scenario $s" >&2; exit 2 ;;
    esac
done
