#!/bin/bash
# make bench: runs the scenarios of issue 4 against a real lighttpd + sse-fcgi, and the f
# scenarios against Apache + mod_fcgid + sse-fcgi, and prints their tables. Usage: run.sh BIN
# SCHEMA TOOLS_DIR WORK_DIR [RELAY_BIN] (default: sse-fcgi-relay beside BIN).
# BENCH_SCENARIOS="a b c d e" picks scenarios (default all: a b c d e g h f1 f2 f3 f4 p, about
# 6 minutes; f4 alone takes about 45 s, 20 of them mod_fcgid starting 1,000 processes, g
# about 35 s, h about 40 s), BENCH_SECONDS (default 10) the length of the timed ones.
#
# Each scenario gets a fresh database and a fresh lighttpd on a free loopback port. The
# load client (loadgen) connects every stream, then creates a ready file; the producer
# starts only then. Server CPU is utime+stime (/proc/PID/stat) over the run, from the ready
# file to loadgen's end, of lighttpd and its sse-fcgi backend together (issue 13: the
# server is "lighttpd + sse-fcgi"; lighttpd relays every byte, so leaving it out would
# flatter sse-fcgi against nchan, whose one process does both); the note gives sse-fcgi's
# part. RSS per stream is (VmRSS with the streams - VmRSS before them) / streams that
# opened, of the sse-fcgi backend alone, since the targets (issue 13: at most 24 KiB per
# stream) are sse-fcgi's; the note gives lighttpd's growth per stream beside it, and the
# ratio row's note the ratio with both added, so that the column does not read as the
# whole server's. loadgen has at most 256 streams on their way at a time; the note says how
# long they took to open when that was 1 s or more.
# Every process started here (lighttpd, its sse-fcgi backend, Apache and the sse-fcgi
# processes mod_fcgid spawned for it, nginx, loadgen, producer, PostgreSQL, the relays) is
# stopped by PID on exit, also on Ctrl-C. A scenario whose streams do not all open (refused:
# slots ran out) still gets its row, with the count in the note column; BENCH_THREADS
# overrides SSE_THREADS to try that.
#
# Every scenario runs twice: against sse-fcgi, then against the reference, nginx + nchan
# (nginx.conf.in: 1 worker, EventSource subscribers on a channel per session, the producer
# POSTing each event over one keep-alive connection). Same client and producer, in their
# --nchan modes; nchan's server CPU and RSS are its worker's. A third row gives the ratios
# sse-fcgi / nchan of p99, CPU per 1,000 delivered (lighttpd + sse-fcgi against the
# worker) and RSS per stream (sse-fcgi's against the worker's; with lighttpd's in the note).
#
# Scenario g (issue 13) is 10,000 streams on 10,000 sessions at 2,000 ev/s, on one sse-fcgi
# process (SSE_THREADS 10,016: the streams one process serves at once). loadgen gives its
# streams 60 s to open (10,000 took 9-11 s through lighttpd, 0.4-0.7 s into nchan). What
# it needed raised is in the next paragraph.
#
# Limits for many streams (issue 13: 10,000 on one sse-fcgi process), each set from the
# open-file limit this script gets (ulimit -n: 65536, or the hard limit where it may not
# raise that; 20000 on the bench VM, whose root lacks CAP_SYS_RESOURCE): lighttpd's
# server.max-fds and max-connections, nginx's worker_connections and worker_rlimit_nofile;
# loadgen raises its own. lighttpd stops accepting while over 90 % of its fds are in use,
# and a stream holds 2 (client, backend): where one process cannot hold the streams,
# lighttpd runs worker processes (server.max-worker: 2 for 10,000 streams at 20000 fds),
# which share the one backend, and the note says so. An sse-fcgi that accepts fewer
# SSE_THREADS runs with its maximum (4096 while a stream had a thread of its own) and
# refuses the rest, as the note says; one that runs out of fds and exits gets a row that
# says so; one that holds over half its fds has it in the note. loadgen stops waiting for
# streams after 10 s in which none opened or was refused. Ports: only loadgen's sockets
# take ephemeral ports (lighttpd talks to sse-fcgi over a Unix socket), 10,000 of the
# 28,232 of 32768-60999 for 10,000 streams, and the TIME_WAITs a run leaves hold their
# ports only toward that run's server port; free_port keeps the servers below the range.
#
# Scenario h (issue 14) is two web nodes on one PostgreSQL log: a throwaway PostgreSQL
# started as the tests start one (tests/lib/pg.c: initdb as the postgres user, postgres in
# the foreground on a free loopback port, fsync=off; stopped by PID with SIGINT, a fast
# shutdown), and per node an SQLite file made from schema.sql, sse-fcgi-relay copying the log
# into it, and lighttpd + sse-fcgi on it. loadgen splits 100 streams over the nodes; the
# producer (--pg) commits each event into PostgreSQL, stamped as for SQLite, so latency runs
# from the start of the commit to the client. The same streams and rate on one node (the
# producer writing its SQLite file) and into nchan, in the same run, give the reference rows;
# nchan has no 2-node mode here (it would need Redis). Then the relay's own table: its CPU per
# 1,000 rows in that run, and its top speed, copying 200,000 rows preloaded into a database
# of their own (one INSERT ... SELECT generate_series) into an empty file, timed by its own
# debug log's stamps (BENCH_RELAY_BATCH_ROWS="500 5000" repeats that with those --batch-rows).
#
# The f scenarios (apache.conf.in: mpm_event, one sse-fcgi process per stream, as on a host
# where mod_fcgid is the way in) have a table of their own: the server's CPU there is
# Apache's processes' plus every sse-fcgi process's (they come as streams arrive: each PID's
# ticks at the end minus its ticks at the start, 0 for one new since), with the sse-fcgi part
# also shown, and memory is PSS (/proc/PID/smaps_rollup), since the processes share their
# code; see run_fcgid.
set -euo pipefail
bin=$1 schema=$2 tools=$3 work=$4 relay_bin=${5:-$(dirname "$1")/sse-fcgi-relay}
pg_schema=$(dirname "$0")/../../deploy/postgresql/schema.sql
conf_in=$(dirname "$0")/lighttpd.conf.in
nginx_in=$(dirname "$0")/nginx.conf.in
apache_in=$(dirname "$0")/apache.conf.in
# mod_fcgid's process table (FCGID_MAX_APPLICATION, compiled in): at most this many processes
FCGID_TABLE=1024
seconds=${BENCH_SECONDS:-10}
scenarios=${BENCH_SCENARIOS:-a b c d e g h f1 f2 f3 f4 p}
tick=$(getconf CLK_TCK)
pids=() apache_root=""
pg_pid="" pg_data="" pg_bin="" pg_port="" pg_conninfo=""  # scenario h's PostgreSQL (start_pg)
cleanup() {
    # a failed look-up must not stop the stopping (set -e also holds in the EXIT trap)
    local -
    set +e
    stop_listed
    stop_pg
}
# stop_listed: every process in pids (and mod_fcgid's), TERM, then KILL after 2.5 s; not
# PostgreSQL, which scenario h keeps between its parts
stop_listed() {
    local -
    set +e
    # mod_fcgid's processes are Apache's grandchildren, started as streams came: stop every
    # one alive now by its PID, before Apache (which otherwise waits for their streams)
    if [ -n "$apache_root" ]; then
        local backends; backends=$(apache_procs "$apache_root" | awk '$2 == "backend" { print $1 }')
        pids=($backends "${pids[@]}")
    fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 50); do is_gone "$pid" && break; sleep 0.05; done
        is_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    done
    pids=() apache_root=""
}
# is_gone PID: the process exited; a zombie counts as gone (kill -0 still reaches it until its
# parent, which is not this shell for Apache's and lighttpd's children, reaps it)
is_gone() {
    local stat
    { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) }
    [[ $stat == [ZX]* ]]
}
# stop_pg: scenario h's PostgreSQL by its PID: SIGINT (a fast shutdown: it ends the sessions,
# then a checkpoint), waited for up to 15 s; then SIGKILL to it and its children, and the
# System V segment a killed postmaster leaves behind is removed (postmaster.pid's line 7
# holds its key and id)
stop_pg() {
    [ -n "$pg_pid" ] || return 0
    local -
    set +e
    kill -INT "$pg_pid" 2>/dev/null
    for _ in $(seq 1 300); do is_gone "$pg_pid" && break; sleep 0.05; done
    if ! is_gone "$pg_pid"; then
        local child
        for child in $(pgrep -P "$pg_pid"); do kill -KILL "$child" 2>/dev/null; done
        kill -KILL "$pg_pid" 2>/dev/null
        wait "$pg_pid" 2>/dev/null
        local shm; shm=$(sed -n 7p "$pg_data/postmaster.pid" 2>/dev/null | awk '{ print $2 }')
        [ -n "$shm" ] && ipcrm -m "$shm" 2>/dev/null
    fi
    wait "$pg_pid" 2>/dev/null
    pg_pid=""
}
# after a signal's trap bash would go on with the next command (the next row): stop, then exit
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
# The open-file limit every server here inherits: 65536, or the hard limit where this
# shell may not raise that (without CAP_SYS_RESOURCE, even as root: 20000 on the bench VM).
# lighttpd's server.max-fds and nginx's worker_rlimit_nofile are set to it, and the notes
# say when a scenario needs more.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=65536
# lighttpd keeps server.max-fds in 16 bits, and stops accepting above 90 % of it in use
lighttpd_fds=$((nofile > 65535 ? 65535 : nofile))
# how long loadgen may take to open a scenario's streams; the driver waits 30 s longer
connect_limit=30

# free_port: a loopback port for a server to listen on, below the kernel's ephemeral range
# (ip_local_port_range, 32768-60999 by default) and held by no socket at all. A port in
# that range may be the local end of some client's connection, or of one in TIME_WAIT
# (scenario g leaves 10,000 of them for a minute), and then bind fails even with
# SO_REUSEADDR: checking only for listeners missed that.
read -r ephemeral_low _ < /proc/sys/net/ipv4/ip_local_port_range
free_port() {
    local port low=10000 high=$((ephemeral_low - 1))
    ((high - low < 1000)) && low=20000 high=39999  # no room below it: take the chance
    while :; do
        port=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
        [ -z "$(ss -Htan "( sport = :$port )")" ] && { echo "$port"; return; }
    done
}
# cpu_ticks PID...: their utime+stime summed; rss_kib PID...: their VmRSS summed. A process
# gone counts 0 (run_one then says it exited).
cpu_ticks() { proc_files stat "$@" | awk '{ n += $14 + $15 } END { print n + 0 }'; }
rss_kib() { proc_files status "$@" | awk '/^VmRSS/ { n += $2 } END { print n + 0 }'; }
proc_files() {
    local file=$1 pid; shift
    for pid; do cat "/proc/$pid/$file" 2>/dev/null || true; done
}

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
# the ratio row. The CPU ratio is of the totals (lighttpd + sse-fcgi against nchan's
# worker); the RSS ratio is of the RSS column (sse-fcgi's alone), and the note gives it
# with lighttpd's RSS per stream added as well. Leaves s_p50, s_p99 and s_per_k (sse-fcgi's
# row), n_p99, n_per_k and n_rss (nchan's) for scenario h.
scenario() {
    local name=$1; shift
    run_one sse-fcgi "$name" "$@"
    local sse_p99=$r_p99 sse_per_k=$r_per_k sse_rss=$r_rss sse_front_rss=$r_front_rss
    s_p50=$r_p50 s_p99=$r_p99 s_per_k=$r_per_k
    run_one nchan "$name" "$@"
    n_p99=$r_p99 n_per_k=$r_per_k n_rss=$r_rss
    local both; both=$(ratio "$(awk -v a="$sse_rss" -v b="$sse_front_rss" \
        'BEGIN { if (a ~ /^-?[0-9.]+$/ && b ~ /^-?[0-9.]+$/) print a + b; else print "-" }')" \
        "$r_rss")
    local note=""
    [ "$both" != - ] && note="RSS with lighttpd's: $both"
    printf '| %s | sse-fcgi / nchan | | | | %s | | %s | %s | | | %s |\n' "${name%%:*}" \
        "$(ratio "$sse_p99" "$r_p99")" "$(ratio "$sse_per_k" "$r_per_k")" \
        "$(ratio "$sse_rss" "$r_rss")" "$note"
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

# start_sse DIR PORT STREAMS SESSIONS: lighttpd + sse-fcgi on a fresh database (prepare_db);
# sets what start_lighttpd sets
start_sse() {
    prepare_db "$1" "$4"
    start_lighttpd "$1" "$2" "$3"
}

# start_lighttpd DIR PORT STREAMS: lighttpd + sse-fcgi on DIR/events.db; sets measured to the
# backend, front to lighttpd (whose CPU and RSS run_one counts too) and limits to what capped
# the streams, for the note column
start_lighttpd() {
    local dir=$1 port=$2 streams=$3
    local threads=${BENCH_THREADS:-$((streams + 16))} most
    most=$(threads_allowed "$threads")
    if ((most < threads)); then
        limits="SSE_THREADS $threads is over this sse-fcgi's maximum: ran with $most"
        threads=$most
    fi
    # A stream holds 2 of lighttpd's fds (client, backend), 16 are its own and the health
    # probe's, and it stops accepting while over 90 % of server.max-fds are in use. Where
    # the open-file limit leaves one process too few (20000 on the bench VM: 8,992 streams),
    # worker processes share the streams (server.max-worker; the backend is still one
    # process, which lighttpd starts before them).
    local workers=1
    while ((2 * streams / workers + 16 > lighttpd_fds * 9 / 10)); do workers=$((workers + 1)); done
    ((workers > 1)) && limits="${limits:+$limits; }lighttpd ran $workers worker processes (server.max-worker): one stops accepting at 90 % of server.max-fds $lighttpd_fds (the open-file limit here), 2 fds a stream"
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@BIN@|$bin|g" \
        -e "s|@THREADS@|$threads|g" -e "s|@MAXFDS@|$lighttpd_fds|g" \
        -e "s|@MAXCONNS@|$((lighttpd_fds / 2))|g" -e "s|@WORKERS@|$workers|g" "$conf_in" \
        > "$dir/lighttpd.conf"
    # in a process group of its own: with workers, lighttpd stops them with kill(0, SIGTERM),
    # which would stop this script and whatever started it too (setsid does not fork here:
    # a background job of a script leads no group, so $! is lighttpd)
    setsid lighttpd -D -f "$dir/lighttpd.conf" > "$dir/lighttpd.out" 2>&1 &
    local server=$!
    pids+=("$server")
    wait_for "lighttpd on port $port" 10 curl -sf "http://127.0.0.1:$port/api/health" || return 1
    # lighttpd's children: the backend, and its workers when it has them
    local children=$((workers > 1 ? workers + 1 : 1)) child
    wait_for "lighttpd's $children children" 10 has_children "$server" "$children" || return 1
    front=$server
    for child in $(pgrep -P "$server"); do
        if [ "$(cat "/proc/$child/comm" 2>/dev/null)" = lighttpd ]; then front+=" $child"
        else measured=$child; fi
        pids+=("$child")
    done
    [ -n "$measured" ]
}

# has_children PID N: PID has N child processes or more
has_children() { (($(pgrep -c -P "$1") >= $2)); }

# threads_allowed N: N, or the largest SSE_THREADS below it that this sse-fcgi accepts (its
# maximum was 4096 while a stream had a thread of its own), found with --check, which names
# SSE_THREADS when it is out of range
threads_allowed() {
    is_allowed() {
        local out; out=$(SSE_THREADS=$1 SSE_DB=/nonexistent "$bin" --check 2>&1 || true)
        [[ $out != *SSE_THREADS* ]]
    }
    local low=1 high=$1 mid
    is_allowed "$high" && { echo "$high"; return; }
    while ((high - low > 1)); do
        mid=$(((low + high) / 2))
        if is_allowed "$mid"; then low=$mid; else high=$mid; fi
    done
    echo "$low"
}

# start_nchan DIR PORT STREAMS: nginx + nchan, master in the foreground; sets measured to its
# worker, and limits when the open-file limit leaves too few connections for STREAMS
start_nchan() {
    local dir=$1 port=$2 streams=$3
    mkdir -p "$dir/nginx-tmp"
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@NOFILE@|$nofile|g" "$nginx_in" \
        > "$dir/nginx.conf"
    # a stream holds 1 fd of nginx's worker; 16 for its listener, the producer and spare
    ((streams + 16 > nofile)) && limits="nginx's worker_connections and worker_rlimit_nofile are $nofile (the open-file limit here)"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" > "$dir/nginx.out" 2>&1 &
    local server=$!
    pids+=("$server")
    wait_for "nginx on port $port" 10 curl -sf "http://127.0.0.1:$port/health" || return 1
    measured=$(pgrep -P "$server" | head -1)
    [ -n "$measured" ] && pids+=("$measured")
}

# start_apache DIR PORT STREAMS SESSIONS: Apache + mod_fcgid + sse-fcgi (apache.conf.in), in the
# foreground; sets apache_root (cleanup stops its fcgid processes by PID) and limits, the
# directives raised past their defaults for STREAMS, for the note column
start_apache() {
    local dir=$1 port=$2 streams=$3 sessions=$4
    # Apache runs as www-data and mod_fcgid starts the responder as that user: it needs to
    # create -wal, -shm and its log here, and its own socket directory
    mkdir -p "$dir/bin" "$dir/fcgid"
    ln -s "$bin" "$dir/bin/events.fcgi"
    prepare_db "$dir" "$sessions"
    chmod 0777 "$dir" "$dir/fcgid" && chmod 0666 "$dir/events.db"
    # a worker thread per stream, plus 32 for the health probe and spare; a process per stream
    # plus the few that mod_fcgid spawns for requests another process then took
    local servers=$(((streams + 32 + 63) / 64))
    local procs=$((streams + 24 > FCGID_TABLE ? FCGID_TABLE : streams + 24))
    sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" -e "s|@SERVERS@|$servers|g" \
        -e "s|@WORKERS@|$((servers * 64))|g" -e "s|@PROCS@|$procs|g" "$apache_in" \
        > "$dir/apache.conf"
    limits=$(raised_limits "$streams" "$servers" "$procs")
    /usr/sbin/apache2 -DFOREGROUND -f "$dir/apache.conf" > "$dir/apache.out" 2>&1 &
    apache_root=$!
    pids+=("$apache_root")
    wait_for "apache on port $port" 10 curl -sf "http://127.0.0.1:$port/api/health"
}

# raised_limits STREAMS SERVERS PROCS: the Apache and mod_fcgid defaults that would have capped
# STREAMS, each with what apache.conf.in set instead, for the note column
raised_limits() {
    local streams=$1 servers=$2 procs=$3 out=""
    ((procs > 100)) && out+="; FcgidMaxProcessesPerClass (default 100) caps sse-fcgi processes, set to $procs"
    ((procs > 1000)) && out+="; FcgidMaxProcesses (default 1000) caps all fcgid processes, set to $procs"
    ((servers * 64 > 400)) && out+="; MaxRequestWorkers (default 400 = ServerLimit 16 × ThreadsPerChild 25) caps streams, a worker thread each, set to $((servers * 64)) = ServerLimit $servers × ThreadsPerChild 64"
    ((streams + 24 >= FCGID_TABLE)) && out+="; mod_fcgid's process table holds $FCGID_TABLE processes at most (FCGID_MAX_APPLICATION, compiled in)"
    echo "${out#; }"
}

# apache_procs ROOT: "PID ROLE TICKS" for every process under Apache's parent ROOT: apache
# for ROOT and its children (the worker processes and mod_fcgid's process manager), backend
# for theirs (the sse-fcgi processes the manager spawned); TICKS is utime+stime. One pass
# over /proc/*/stat; the fields are counted after the ")" that ends the command name.
apache_procs() {
    # a process may exit between the glob and its read: cat's failure is no error here
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
        { pid = $1; sub(/^.*\) /, ""); ppid[pid] = $2; ticks[pid] = $12 + $13 }
        END { for (p in ppid) {
            if (p == root || ppid[p] == root) print p, "apache", ticks[p]
            else if (ppid[p] in ppid && ppid[ppid[p]] == root) print p, "backend", ticks[p] } }'
}

# snapshot SERVER: "PID ROLE TICKS" of the processes whose CPU is the server's
snapshot() {
    if [ "$1" = apache ]; then apache_procs "$apache_root"
    else echo "$measured nginx $(cpu_ticks "$measured")"; fi
}

# cpu_between START END [ROLE]: CPU seconds of the processes (of ROLE) in snapshot END: its
# ticks minus those in START, where a process new since START counts from 0
cpu_between() {
    awk -v role="${3:-}" -v t="$tick" 'NR == FNR { start[$1] = $3; next }
        role == "" || $2 == role { sum += $3 - ($1 in start ? start[$1] : 0) }
        END { printf "%.2f", sum / t }' "$1" "$2"
}

# gone_between START END: how many backends in START are not in END (their CPU is lost)
gone_between() {
    awk 'NR == FNR { if ($2 == "backend") start[$1] = 1; next } { delete start[$1] }
        END { n = 0; for (p in start) n++; print n }' "$1" "$2"
}

# memory SERVER: "backends= serving= inotify= readers= apache= pss_mean= pss_all=" in KiB, from
# /proc/PID/smaps_rollup. A backend serves a stream while it holds a socket besides fd 0
# (mod_fcgid's listening socket); pss_mean is over those, pss_all sums every process of the
# server (Apache's included); readers counts the backends with the database open (with one
# hub per host, only its leader). For nchan, the worker.
memory() {
    if [ "$1" != apache ]; then
        local pss; pss=$(awk '/^Pss:/ { print $2 }' "/proc/$measured/smaps_rollup")
        echo "backends=1 serving=1 inotify=1 readers=1 apache=0 pss_mean=$pss pss_all=$pss"
        return
    fi
    local procs; procs=$(apache_procs "$apache_root")
    local backends; backends=$(awk '$2 == "backend" { printf "/proc/%s/fd ", $1 }' <<< "$procs")
    {
        echo "$procs"
        # processes that exited since the list was made are skipped (grep and find fail)
        { grep -H '^Pss:' $(awk '{ printf "/proc/%s/smaps_rollup ", $1 }' <<< "$procs") \
            2>/dev/null || true; } | tr '/:' '  ' | awk '{ print $2, "pss", $5 }'
        { [ -z "$backends" ] || find $backends -mindepth 1 -printf '%h %f %l\n' 2>/dev/null \
            || true; } | awk '{ split($1, p, "/"); print p[3], "fd", $2, $3 }'
    } | awk '$2 == "apache" || $2 == "backend" { role[$1] = $2; n[$2]++; next }
        $2 == "pss" { pss[$1] = $3; next }
        $2 == "fd" && $4 ~ /^socket:/ && $3 != 0 { serving[$1] = 1 }
        $2 == "fd" && $4 == "anon_inode:inotify" { inotify[$1] = 1 }
        $2 == "fd" && $4 ~ /\.db$/ { reader[$1] = 1 }
        END { for (p in pss) all += pss[p]
              for (p in reader) r++
              for (p in inotify) i++
              for (p in serving) { s++; sum += pss[p] }
              printf "backends=%d serving=%d inotify=%d readers=%d apache=%d pss_mean=%.0f pss_all=%d\n",
                  n["backend"], s, i, r, n["apache"], s ? sum / s : 0, all }'
}

# start_client DIR PORT STREAMS SESSIONS SECONDS LOADGEN_ARGS...: starts loadgen (sets client)
# and waits for its ready file; returns 1 when it never came (the client failed)
start_client() {
    local dir=$1 port=$2 streams=$3 sessions=$4 secs=$5; shift 5
    "$tools/loadgen" --port "$port" --streams "$streams" --sessions "$sessions" \
        --duration "$secs" --ready-file "$dir/ready" --connect-limit "$connect_limit" "$@" \
        > "$dir/loadgen.out" 2> "$dir/loadgen.err" &
    client=$!
    pids+=("$client")
    # loadgen creates the file once every stream opened or was refused (connect_limit at most)
    wait_for "loadgen ready" $((connect_limit + 30)) ready_or_gone "$dir/ready" "$client" || true
    test -e "$dir/ready"
}

# read_loadgen DIR: sets events, eps, p50, p99, errors, connected and connect_s from
# loadgen's line of key=value pairs (p50 and p99 are - when nothing arrived)
read_loadgen() {
    events=0 eps=0 p50=0 p99=0 errors=0 connected=0 connect_s=0
    for kv in $(cat "$1/loadgen.out"); do
        case $kv in
            events=*) events=${kv#*=} ;; events_per_s=*) eps=${kv#*=} ;;
            p50_ms=*) p50=${kv#*=} ;; p99_ms=*) p99=${kv#*=} ;;
            errors=*) errors=${kv#*=} ;; connected=*) connected=${kv#*=} ;;
            connect_s=*) connect_s=${kv#*=} ;;
        esac
    done
    if [ "$events" = 0 ]; then p50=-; p99=-; fi
}

# delivery_note DIR STREAMS SESSIONS: what read_loadgen's figures say went wrong, for the note
# column: streams that did not open (and the first refusal), and what was published but not
# delivered. Every published event is for streams/sessions streams, of which only the open
# ones can get it (scenario g on a binary with fewer slots: 4,096 of 10,000); nchan drops
# what it cannot keep up with, without a gap loadgen could see (issue 13, scenario c).
delivery_note() {
    local dir=$1 streams=$2 sessions=$3 note=""
    if [ "$connected" != "$streams" ]; then
        note="only $connected of $streams streams opened"
        local refusals; refusals=$(grep -c '^loadgen: HTTP' "$dir/loadgen.err" || true)
        ((refusals > 0)) && note="$note ($refusals refused: $(grep -m1 '^loadgen: HTTP' \
            "$dir/loadgen.err" | cut -d' ' -f3-))"
    fi
    local lost; lost=$(awk -v p="$(published "$dir")" -v e="$events" -v n="$connected" \
        -v m="$sessions" \
        'BEGIN { x = p * n / m; if (x > 0 && e < 0.95 * x) printf "%.0f", 100 * (1 - e / x) }')
    [ -n "$lost" ] && note="${note:+$note; }$lost % of what was published not delivered"
    echo "$note"
}

# producer_note DIR RATE: says so when the producer published under 95 % of RATE (its one
# connection, SQLite's writer or nchan's publisher, may not keep up, or a commit waited for
# the disk), with its slowest commit; nothing else
producer_note() {
    local dir=$1 rate=$2 seconds
    seconds=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$dir/producer.out" 2>/dev/null || true)
    [ -n "$seconds" ] && [ "$rate" != idle ] && [ "$rate" != 0 ] || return 0
    awk -v p="$(published "$dir")" -v s="$seconds" -v r="$rate" \
        -v w="$(sed -n 's/.*max_commit_ms=\([0-9.]*\).*/\1/p' "$dir/producer.out")" \
        'BEGIN { if (s > 0 && p / s < 0.95 * r)
            printf "the producer published %.0f ev/s of %d (slowest commit %s ms)", p / s, r, w }'
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

# run_one SERVER NAME STREAMS SESSIONS RATE BATCH SECONDS: one row; sets r_p50, r_p99, r_per_k,
# r_rss and r_front_rss (lighttpd's RSS per stream, - for nchan) for the ratio row. The
# CPU is the backend's (sse-fcgi, or nchan's worker) plus front's (lighttpd; none for
# nchan), the RSS column the backend's alone.
run_one() {
    local server=$1 name=$2 streams=$3 sessions=$4 rate=$5 batch=$6 secs=$7
    local dir=$work/${name%%:*}-$server
    r_p50=- r_p99=- r_per_k=- r_rss=- r_front_rss=-
    rm -rf "$dir" && mkdir -p "$dir"
    local port; port=$(free_port)
    local measured="" front="" limits="" client="" client_args=()
    local producer_args=(--db "$dir/events.db")
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
    local front_base=0; [ -n "$front" ] && front_base=$(rss_kib $front)
    if ! start_client "$dir" "$port" "$streams" "$sessions" "$secs" "${client_args[@]}"; then
        cleanup
        row "$name" "$server" "$streams" "$rate" - - - - - - - \
            "load client failed: see $dir/loadgen.err"
        return
    fi
    local cpu0 front0=0 front1=0 front_streams=0 front_end=0
    cpu0=$(cpu_ticks "$measured")
    [ -n "$front" ] && front0=$(cpu_ticks $front) front_streams=$(rss_kib $front)
    local rss_streams; rss_streams=$(rss_kib "$measured")
    local fds; fds=$({ find "/proc/$measured/fd" -mindepth 1 2>/dev/null || true; } | wc -l)
    if [ "$rate" != idle ]; then
        "$tools/producer" "${producer_args[@]}" --sessions "$sessions" --rate "$rate" \
            --batch "$batch" --duration "$secs" > "$dir/producer.out" 2> "$dir/producer.err" \
            || true
    fi
    wait "$client" || true
    # a backend that died (lighttpd starts another) took its ticks with it
    if is_gone "$measured"; then
        cleanup
        local events eps p50 p99 errors connected connect_s
        read_loadgen "$dir"
        local why; why=$({ grep -m1 ' exiting' "$dir/sse.log" 2>/dev/null || true; } | cut -d' ' -f4-)
        row "$name" "$server" "$streams" "$rate" - - - - - - "$errors" \
            "$server exited during the run${why:+ (its log: $why)}, $connected streams had opened; see $dir${limits:+; $limits}"
        return
    fi
    local cpu1; cpu1=$(cpu_ticks "$measured")
    [ -n "$front" ] && front1=$(cpu_ticks $front) front_end=$(rss_kib $front)
    local rss_end; rss_end=$(rss_kib "$measured")
    local fd_limit; fd_limit=$(awk '/^Max open files/ { print $4 }' "/proc/$measured/limits")
    ((rss_end > rss_streams)) && rss_streams=$rss_end
    ((front_end > front_streams)) && front_streams=$front_end
    cleanup
    local events eps p50 p99 errors connected connect_s
    read_loadgen "$dir"
    local cpu_s backend_s per_k rss_per
    backend_s=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / t }')
    cpu_s=$(awk -v a="$((cpu0 + front0))" -v b="$((cpu1 + front1))" -v t="$tick" \
        'BEGIN { printf "%.2f", (b - a) / t }')
    per_k=$(per_1000 "$cpu_s" "$events")
    # per stream that opened (streams refused hold nothing once answered)
    local open=$((connected > 0 ? connected : streams))
    rss_per=$(awk -v a="$rss_base" -v b="$rss_streams" -v n="$open" 'BEGIN { printf "%.1f", (b - a) / n }')
    local note; note=$(delivery_note "$dir" "$streams" "$sessions")
    local slow; slow=$(producer_note "$dir" "$rate")
    [ -n "$slow" ] && note="${note:+$note; }$slow"
    [ -n "$limits" ] && note="${note:+$note; }$limits"
    [[ $fd_limit =~ ^[0-9]+$ ]] && ((fds > fd_limit / 2)) && \
        note="${note:+$note; }$server held $fds fds of its $fd_limit"
    awk -v s="$connect_s" 'BEGIN { exit !(s >= 1) }' && \
        note="${note:+$note; }streams open after $connect_s s"
    if [ -n "$front" ]; then
        r_front_rss=$(awk -v a="$front_base" -v b="$front_streams" -v n="$open" \
            'BEGIN { printf "%.1f", (b - a) / n }')
        local backend_k; backend_k=$(per_1000 "$backend_s" "$events")
        [ "$backend_k" != - ] && backend_s="$backend_s ($backend_k / 1,000)"
        note="${note:+$note; }sse-fcgi: $backend_s CPU s of it, lighttpd the rest; lighttpd's RSS: $r_front_rss KiB / stream more"
    fi
    r_p50=$p50 r_p99=$p99 r_per_k=$per_k r_rss=$rss_per
    row "$name" "$server" "$streams" "$rate" "$p50" "$p99" "$eps" "$per_k" "$rss_per" "$cpu_s" \
        "$errors" "$note"
}

# fcgid_scenario NAME STREAMS SESSIONS RATE SECONDS: Apache + mod_fcgid + sse-fcgi, then
# nginx + nchan, then the ratios sse-fcgi / nchan of p99, CPU per 1,000 delivered (Apache's
# included) and PSS per stream.
fcgid_scenario() {
    local name=$1; shift
    run_fcgid apache "$name" "$@"
    local sse_p99=$r_p99 sse_per_k=$r_per_k sse_pss=$r_pss
    run_fcgid nchan "$name" "$@"
    print_row "${name%%:*}" "sse-fcgi / nchan" "" "" "" "$(ratio "$sse_p99" "$r_p99")" "" "" "" \
        "$(ratio "$sse_per_k" "$r_per_k")" "" "" "" "" "$(ratio "$sse_pss" "$r_pss")" "" "" \
        "" "" ""
}

# run_fcgid SERVER NAME STREAMS SESSIONS RATE SECONDS: one row of the Apache + mod_fcgid table
# (SERVER apache or nchan); sets r_p99, r_per_k and r_pss for the ratio row. loadgen reads
# 1 s longer than the producer publishes, so that what is still on its way counts and "lost"
# is what never came; rates are per second of publishing. CPU is every server process's,
# from the ready file to loadgen's end; memory is read at 90 % of the run, streams open.
run_fcgid() {
    local server=$1 name=$2 streams=$3 sessions=$4 rate=$5 secs=$6 began=$SECONDS
    local dir=$work/${name%%:*}-$server label=sse-fcgi
    r_p99=- r_per_k=- r_pss=-
    rm -rf "$dir" && mkdir -p "$dir"
    local port; port=$(free_port)
    local measured="" client="" producer="" limits="" margin=1
    local client_args=() producer_args=(--db "$dir/events.db")
    if [ "$server" = nchan ]; then
        label=nchan client_args=(--nchan --path /sub/bench-%d)
        producer_args=(--nchan-port "$port")
    fi
    [ "$rate" = idle ] && margin=0
    if ! "start_$server" "$dir" "$port" "$streams" "$sessions"; then
        cleanup
        fcgid_failed "$name" "$label" "$streams" "$rate" "server did not start: see $dir"
        return
    fi
    if ! start_client "$dir" "$port" "$streams" "$sessions" $((secs + margin)) \
        "${client_args[@]}"; then
        cleanup
        fcgid_failed "$name" "$label" "$streams" "$rate" "load client failed: see $dir/loadgen.err"
        return
    fi
    local open_s=$((SECONDS - began))
    snapshot "$server" > "$dir/cpu-start"
    if [ "$rate" != idle ]; then
        "$tools/producer" "${producer_args[@]}" --sessions "$sessions" --rate "$rate" \
            --duration "$secs" > "$dir/producer.out" 2> "$dir/producer.err" &
        producer=$!
        pids+=("$producer")
    fi
    sleep "$(awk -v s="$secs" 'BEGIN { print s * 0.9 }')"
    memory "$server" > "$dir/memory"
    [ -n "$producer" ] && { wait "$producer" || true; }
    wait "$client" || true
    snapshot "$server" > "$dir/cpu-end"
    cleanup
    fcgid_row "$name" "$label" "$streams" "$sessions" "$rate" "$secs" "$dir" "$open_s" \
        "$((SECONDS - began))"
}

# fcgid_row NAME LABEL STREAMS SESSIONS RATE SECONDS DIR OPEN_S ROW_S: computes and prints the
# row from DIR's files; sets r_p99, r_per_k and r_pss
fcgid_row() {
    local name=$1 label=$2 streams=$3 sessions=$4 rate=$5 secs=$6 dir=$7
    local events eps p50 p99 errors connected connect_s
    read_loadgen "$dir"
    local kv backends=0 serving=0 inotify=0 readers=0 apache=0 pss_mean=0 pss_all=0
    for kv in $(cat "$dir/memory"); do local "$kv"; done
    local published; published=$(published "$dir")
    local seconds; seconds=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$dir/producer.out" \
        2>/dev/null || true)
    local cpu cpu_b per_k per_k_b pss_stream lost=- processes
    cpu=$(cpu_between "$dir/cpu-start" "$dir/cpu-end")
    cpu_b=$(cpu_between "$dir/cpu-start" "$dir/cpu-end" backend)
    per_k=$(per_1000 "$cpu" "$events") per_k_b=$(per_1000 "$cpu_b" "$events")
    [ -n "$seconds" ] && eps=$(awk -v e="$events" -v s="$seconds" 'BEGIN { printf "%.0f", e / s }')
    [ "$rate" = idle ] && eps=- lost=-
    [ "$rate" != idle ] && lost=$(awk -v p="$published" -v e="$events" -v n="$streams" \
        -v m="$sessions" 'BEGIN { x = p * n / m - e; printf "%.0f", (x > 0 ? x : 0) }')
    pss_stream=$(awk -v a="$pss_all" -v n="$streams" 'BEGIN { printf "%.0f", a / n }')
    local note; note=$(delivery_note "$dir" "$streams" "$sessions")
    local slow; slow=$(producer_note "$dir" "$rate")
    [ -n "$slow" ] && note="${note:+$note; }$slow"
    if [ "$label" = nchan ]; then
        processes="1 nginx worker" cpu_b=- per_k_b=-
    else
        processes="$backends sse-fcgi ($serving serving) + $apache Apache"
        local gone; gone=$(gone_between "$dir/cpu-start" "$dir/cpu-end")
        ((gone > 0)) && note="${note:+$note; }$gone sse-fcgi processes exited (CPU not counted)"
        note="${note:+$note; }$readers of $backends processes had the database open, $inotify watched it with inotify (one hub per host: its leader)"
        [ -n "$limits" ] && note="${note:+$note; }$limits"
    fi
    r_p99=$p99 r_per_k=$per_k r_pss=$pss_stream
    print_row "$name" "$label" "$streams" "$rate" "$p50" "$p99" "$eps" "$events" "$lost" \
        "$per_k" "$per_k_b" "$cpu" "$cpu_b" "$pss_mean" "$pss_stream" "$processes" "$errors" \
        "$8" "$9" "$note"
}

# fcgid_failed NAME LABEL STREAMS RATE NOTE: a row without figures
fcgid_failed() {
    print_row "$1" "$2" "$3" "$4" - - - - - - - - - - - - - - - "$5"
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

# pg_bin_dir: $SSE_PG_BINDIR, or the highest /usr/lib/postgresql/<version>/bin that holds
# postgres (as tests/lib/pg.c finds it)
pg_bin_dir() {
    if [ -n "${SSE_PG_BINDIR:-}" ]; then echo "$SSE_PG_BINDIR"; return; fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -t/ -k4 -n | tail -1)
    [ -n "$found" ] && dirname "$found"
}

# start_pg DIR: scenario h's PostgreSQL in DIR/pg, started as tests/lib/pg.c starts one:
# initdb -U sse --auth=trust, as the postgres user when this is root (setpriv execs, so $! is
# the server's PID), then postgres itself in the foreground on a free loopback port, without
# a Unix socket, with fsync=off (no commit waits for the disk; nor does one of the
# single-node producer's, synchronous=NORMAL, but at its checkpoints). Applies
# deploy/postgresql/schema.sql; sets pg_pid, pg_data, pg_port and pg_conninfo.
start_pg() {
    local dir=$1/pg as=()
    pg_bin=$(pg_bin_dir) || true
    if [ ! -x "$pg_bin/postgres" ]; then echo "bench: no PostgreSQL: make deps" >&2; return 1; fi
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        as=(setpriv --reuid=postgres --regid=postgres --init-groups)
        chown postgres: "$dir"
    fi
    pg_data=$dir/data
    "${as[@]}" "$pg_bin/initdb" -D "$pg_data" -U sse --auth=trust -E UTF8 --locale=C \
        --no-sync > "$dir/initdb.log" 2>&1 || return 1
    pg_port=$(free_port)
    "${as[@]}" "$pg_bin/postgres" -D "$pg_data" -p "$pg_port" -c listen_addresses=127.0.0.1 \
        -c unix_socket_directories= -c fsync=off > "$dir/postgres.log" 2>&1 &
    pg_pid=$!
    pg_conninfo="host=127.0.0.1 port=$pg_port user=sse"
    wait_for "postgres on port $pg_port" 30 "$pg_bin/pg_isready" -q -h 127.0.0.1 \
        -p "$pg_port" -U sse -d postgres || return 1
    psql_h postgres -f "$pg_schema" > /dev/null
}

# psql_h DATABASE ARGS...: psql on scenario h's server: unaligned, tuples only, stopping at
# the first error
psql_h() {
    local db=$1; shift
    "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U sse -d "$db" \
        "$@"
}

# pg_ticks: utime+stime of the postmaster and its live children, plus those of the children
# it reaped (its cutime+cstime: a backend that ended, such as the producer's, counts there)
pg_ticks() {
    { awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$pg_pid/stat"
      cpu_ticks $(pgrep -P "$pg_pid"); } 2>/dev/null | awk '{ n += $1 } END { print n + 0 }'
}

# relay_backends DATABASE: the PIDs of the PostgreSQL backends serving relays there
relay_backends() {
    psql_h postgres -c "SELECT pid FROM pg_stat_activity
        WHERE application_name = 'sse-fcgi-relay' AND datname = '$1'"
}

# ticks_s A B [N]: (B - A) ticks in CPU seconds, divided by N (default 1)
ticks_s() {
    awk -v a="$1" -v b="$2" -v n="${3:-1}" -v t="$tick" 'BEGIN { printf "%.2f", (b - a) / n / t }'
}

# start_relay DIR DATABASE [RELAY_ARGS...]: sse-fcgi-relay copying DATABASE's log into
# DIR/events.db (made from schema.sql first when missing), logging to DIR/relay.log at debug
# level, a line per batch (events=, sessions=, through=, behind=); sets relay
start_relay() {
    local dir=$1 db=$2; shift 2
    [ -e "$dir/events.db" ] || sqlite3 "$dir/events.db" < "$schema" > /dev/null
    SSE_LOG=$dir/relay.log SSE_LOG_LEVEL=debug "$relay_bin" --pg "$pg_conninfo dbname=$db" \
        --db "$dir/events.db" "$@" > "$dir/relay.out" 2>&1 &
    relay=$!
    pids+=("$relay")
}

# has_sessions DB N: DB holds N sessions or more
has_sessions() { (($(sqlite3 "$1" "SELECT count(*) FROM sessions") >= $2)); }

# batch_lines LOG...: the relays' batch lines so far, in all
batch_lines() { cat "$@" 2>/dev/null | grep -c ' sse relay copied ' || true; }

# start_nodes DIR STREAMS SESSIONS: PostgreSQL with the sessions, then two web nodes on it,
# DIR/node1 and DIR/node2, each a relay into its own SQLite file and, once that holds the
# sessions, lighttpd + sse-fcgi; sets ports, backends, fronts, relays and dbs, or why
start_nodes() {
    local dir=$1 streams=$2 sessions=$3 n
    if ! start_pg "$dir"; then why="PostgreSQL did not start: see $dir/pg"; return; fi
    if ! psql_h postgres -c "INSERT INTO sessions(id) SELECT 'bench-' || i
        FROM generate_series(0, $sessions - 1) AS i" > /dev/null; then
        why="psql could not create the sessions: see $dir/pg/postgres.log"; return
    fi
    for n in 1 2; do
        local node=$dir/node$n measured="" front="" limits="" relay="" port
        port=$(free_port)
        mkdir -p "$node"
        start_relay "$node" postgres
        relays+=("$relay") dbs+=("$node/events.db")
        if ! wait_for "node $n's relay" 30 has_sessions "$node/events.db" "$sessions"; then
            why="node $n's relay did not copy the sessions: see $node/relay.log"; return
        fi
        if ! start_lighttpd "$node" "$port" "$streams"; then
            why="node $n's server did not start: see $node"; return
        fi
        ports+=("$port") backends+=("$measured") fronts+=($front)
    done
}

# nodes_scenario NAME STREAMS SESSIONS RATE SECONDS ROWS: scenario h (issue 14). First the
# same streams and rate on one node (scenario: its row, nchan's and their ratios); then two
# web nodes on one PostgreSQL log (start_nodes): loadgen sends stream i to node i % 2, the
# producer commits into PostgreSQL, one INSERT (a transaction) per event. The 2-node row's
# server CPU is both nodes' lighttpd, sse-fcgi and relay; PostgreSQL's is in the note. Then
# that run against 1 node and against nchan, and the relay's table: its CPU in that run, and
# its top speed (relay_max, on ROWS preloaded rows).
nodes_scenario() {
    local name=$1 streams=$2 sessions=$3 rate=$4 secs=$5 rows=$6
    scenario "$name, 1 node" "$streams" "$sessions" "$rate" 1 "$secs"
    local one_p50=$s_p50 one_p99=$s_p99 one_per_k=$s_per_k nchan_p99=$n_p99 \
        nchan_per_k=$n_per_k nchan_rss=$n_rss
    local dir=$work/h-nodes label="sse-fcgi, 2 nodes" why="" client=""
    local ports=() backends=() fronts=() relays=() dbs=()
    rm -rf "$dir" && mkdir -p "$dir"
    start_nodes "$dir" "$streams" "$sessions"
    local rss_base=0 front_base=0 backs=() pgr=()
    if [ -z "$why" ]; then
        rss_base=$(rss_kib "${backends[@]}") front_base=$(rss_kib "${fronts[@]}")
        start_client "$dir" "${ports[0]}" "$streams" "$sessions" "$secs" --port "${ports[1]}" \
            || why="load client failed: see $dir/loadgen.err"
    fi
    [ -z "$why" ] && pgr=($(relay_backends postgres))
    [ -z "$why" ] && ((${#pgr[@]} != 2)) && why="found ${#pgr[@]} relay backends, not 2"
    if [ -n "$why" ]; then
        cleanup
        row "$name, 2 nodes" "$label" "$streams" "$rate" - - - - - - - "$why"
        return
    fi
    local cpu_back=() cpu_front=() cpu_relay=() cpu_pg=() cpu_pgr=() batches=() rss=() \
        front_rss=()
    snapshot_nodes "$dir"
    "$tools/producer" --pg "$pg_conninfo dbname=postgres" --sessions "$sessions" \
        --rate "$rate" --batch 1 --duration "$secs" > "$dir/producer.out" \
        2> "$dir/producer.err" || true
    wait "$client" || true
    local problems="" n newest at
    for n in 0 1; do
        is_gone "${backends[$n]}" && problems+="; node $((n + 1))'s sse-fcgi exited (its CPU lost)"
    done
    snapshot_nodes "$dir"
    newest=$(psql_h postgres -c "SELECT max(id) FROM events")
    for n in 0 1; do
        at=$(sqlite3 "${dbs[$n]}" "SELECT position FROM relay_state")
        ((at < newest)) && problems+="; node $((n + 1))'s relay $((newest - at)) behind at the end"
    done
    stop_listed
    local events eps p50 p99 errors connected connect_s
    read_loadgen "$dir"
    local open=$((connected > 0 ? connected : streams)) cpu_s per_k rss_per front_per
    cpu_s=$(ticks_s $((cpu_back[0] + cpu_front[0] + cpu_relay[0])) \
        $((cpu_back[1] + cpu_front[1] + cpu_relay[1])))
    per_k=$(per_1000 "$cpu_s" "$events")
    ((rss[1] < rss[0])) && rss[1]=${rss[0]}
    rss_per=$(awk -v a="$rss_base" -v b="${rss[1]}" -v n="$open" \
        'BEGIN { printf "%.1f", (b - a) / n }')
    front_per=$(awk -v a="$front_base" -v b="${front_rss[1]}" -v n="$open" \
        'BEGIN { printf "%.1f", (b - a) / n }')
    local note; note=$(delivery_note "$dir" "$streams" "$sessions")
    local slow; slow=$(producer_note "$dir" "$rate")
    [ -n "$slow" ] && note="${note:+$note; }$slow"
    [ -n "$problems" ] && note="${note:+$note; }${problems#; }"
    local commit_ms; commit_ms=$(sed -n 's/.*max_commit_ms=\([0-9.]*\).*/\1/p' "$dir/producer.out")
    note+="${note:+; }sse-fcgi $(ticks_s "${cpu_back[@]}") CPU s of it, the relays"
    note+=" $(ticks_s "${cpu_relay[@]}"), lighttpd the rest; lighttpd's RSS: $front_per KiB /"
    note+=" stream more; PostgreSQL $(ticks_s "${cpu_pg[@]}") CPU s besides (not in the column),"
    note+=" of it the relays' backends $(ticks_s "${cpu_pgr[@]}"); the producer's slowest"
    note+=" commit $commit_ms ms"
    row "$name, 2 nodes" "$label" "$streams" "$rate" "$p50" "$p99" "$eps" "$per_k" "$rss_per" \
        "$cpu_s" "$errors" "$note"
    local target=- d99; d99=$(minus "$p99" "$one_p99")
    [ "$d99" != - ] && target=$(awk -v d="$d99" 'BEGIN { print (d <= 2 ? "met" : "missed") }')
    local against="p50 and p99: ms more than 1 node's; CPU: the ratio; p99 within 2 ms of 1"
    against+=" node's (issue 14): $target"
    print_row "${name%%:*}" "2 nodes − 1 node" "" "" "$(minus "$p50" "$one_p50")" "$d99" "" \
        "$(ratio "$per_k" "$one_per_k")" "" "" "" "$against"
    print_row "${name%%:*}" "2 nodes / nchan" "" "" "" "$(ratio "$p99" "$nchan_p99")" "" \
        "$(ratio "$per_k" "$nchan_per_k")" "$(ratio "$rss_per" "$nchan_rss")" "" "" \
        "nchan has no 2-node mode here (it would need Redis): its 1-node row is the reference"
    relay_table
    relay_row "${name%%:*}: each relay at $rate ev/s, in the 2-node run" default \
        "$(published "$dir")" "$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$dir/producer.out")" \
        "$(((batches[1] - batches[0]) / 2))" \
        "$(ticks_s "${cpu_relay[@]}" 2)" "$(ticks_s "${cpu_pgr[@]}" 2)" \
        "each copies every row; the mean of the two"
    local batch_rows
    for batch_rows in ${BENCH_RELAY_BATCH_ROWS:-default}; do
        relay_max "${name%%:*}" "$rows" "$sessions" "$batch_rows"
    done
    cleanup
}

# snapshot_nodes DIR: appends the 2-node run's counters to nodes_scenario's arrays (its
# locals): CPU ticks of the backends, the fronts, the relays, PostgreSQL and the relays'
# backends (pgr), the relays' batch lines, and the RSS of the backends and of the fronts.
# Called at the ready file ([0]) and at loadgen's end ([1]).
snapshot_nodes() {
    cpu_back+=("$(cpu_ticks "${backends[@]}")") cpu_front+=("$(cpu_ticks "${fronts[@]}")")
    cpu_relay+=("$(cpu_ticks "${relays[@]}")") cpu_pg+=("$(pg_ticks)")
    cpu_pgr+=("$(cpu_ticks "${pgr[@]}")") batches+=("$(batch_lines "$1"/node[12]/relay.log)")
    rss+=("$(rss_kib "${backends[@]}")") front_rss+=("$(rss_kib "${fronts[@]}")")
}

# preload ROWS SESSIONS: database relay_max with the schema, SESSIONS sessions and ROWS events
# (one INSERT ... SELECT generate_series), vacuumed and analysed, as a log is in its steady
# state (the first reader would otherwise set every row's hint bits); once
preload() {
    local rows=$1 sessions=$2
    [ -n "$(psql_h postgres -c "SELECT 1 FROM pg_database WHERE datname = 'relay_max'")" ] \
        && return
    psql_h postgres -c "CREATE DATABASE relay_max" > /dev/null
    psql_h relay_max -f "$pg_schema" > /dev/null
    psql_h relay_max -c "INSERT INTO sessions(id) SELECT 'bench-' || i
        FROM generate_series(0, $sessions - 1) AS i" > /dev/null
    psql_h relay_max -c "INSERT INTO events(session_id, type, data)
        SELECT 'bench-' || (i % $sessions), 'llm_text_delta', '{\"t_us\":0,\"seq\":' || i || '}'
        FROM generate_series(0, $rows - 1) AS i" > /dev/null
    psql_h relay_max -c "VACUUM (ANALYZE)" > /dev/null
}

# relay_max NAME ROWS SESSIONS BATCH_ROWS: the relay's top speed: a relay (--batch-rows
# BATCH_ROWS unless default) copies the preloaded log into an empty SQLite file, from its
# log's "relay connected" line to the batch line that reached the newest position
# (behind=0), by the log's own millisecond stamps. The log is polled every 50 ms with bash
# builtins only, no process started per poll; the relay and its backend are idle once it
# has caught up, so their CPU read then is the copy's.
relay_max() {
    local name=$1 rows=$2 sessions=$3 batch_rows=$4 dir=$work/h-relay-$4 args=() relay
    [ "$batch_rows" = default ] || args=(--batch-rows "$batch_rows")
    rm -rf "$dir" && mkdir -p "$dir"
    preload "$rows" "$sessions"
    mkfifo "$dir/tick"
    local tick_fd end=$((SECONDS + 300)) why=""
    exec {tick_fd}<>"$dir/tick"
    start_relay "$dir" relay_max "${args[@]}"
    until caught_up "$dir/relay.log"; do
        if is_gone "$relay"; then why="the relay exited: see $dir/relay.log"; break; fi
        if ((SECONDS >= end)); then why="not caught up in 300 s: see $dir/relay.log"; break; fi
        read -r -t 0.05 -u "$tick_fd" _ || true
    done
    exec {tick_fd}>&-
    local relay_s pg_s
    relay_s=$(ticks_s 0 "$(cpu_ticks "$relay")")
    pg_s=$(ticks_s 0 "$(cpu_ticks $(relay_backends relay_max))")
    stop_listed
    if [ -n "$why" ]; then
        relay_row "$name: relay, $rows rows preloaded" "$batch_rows" - - - - - "$why"
        return
    fi
    local copied seconds batches
    read -r copied seconds batches < <(awk '
        { split($1, t, /[T:Z]/); s = t[2] * 3600 + t[3] * 60 + t[4] }
        / sse relay connected / && start == "" { start = s }
        / sse relay copied / { n++; last = s; for (i = 4; i <= NF; i++) {
            split($i, kv, "="); if (kv[1] == "events" || kv[1] == "sessions") rows += kv[2] } }
        END { if (last < start) last += 86400; printf "%d %.3f %d\n", rows, last - start, n }' \
        "$dir/relay.log")
    local target; target=$(awk -v r="$copied" -v s="$seconds" \
        'BEGIN { print (s > 0 && r / s >= 50000 ? "met" : "missed") }')
    relay_row "$name: relay, $rows rows preloaded, into an empty file" "$batch_rows" \
        "$copied" "$seconds" "$batches" "$relay_s" "$pg_s" \
        "target (issue 14) ≥ 50,000 rows/s: $target"
}

# caught_up LOG: the relay logged a batch that reached the log's newest position (builtins only)
caught_up() {
    local line
    while read -r line; do
        [[ $line == *" sse relay copied "*" behind=0" ]] && return 0
    done 2>/dev/null < "$1"
    return 1
}

# minus A B: A - B in ms as "+N.NNN", or "-" when either is missing
minus() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/)
        printf "%+.3f", a - b; else print "-" }'
}

# relay_table: the header of the relay's table. The relay's CPU is the process's; PostgreSQL's
# that of the backend serving it (its reads), not the producer's INSERTs
relay_table() {
    current_table=relay
    echo
    print_row scenario "relay batch rows" rows seconds "rows / s" batches "relay CPU s" \
        "relay CPU s / 1,000 rows" "its PostgreSQL backend CPU s" \
        "its backend CPU s / 1,000 rows" note
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
}

# relay_row NAME BATCH_ROWS ROWS SECONDS BATCHES RELAY_S PG_S NOTE: a row of it, rates derived
relay_row() {
    local rows=$3 secs=$4 per_s=- relay_k=- pg_k=- batch=$2
    if [[ $rows =~ ^[0-9]+$ ]] && ((rows > 0)); then
        per_s=$(awk -v r="$rows" -v s="$secs" \
            'BEGIN { if (s > 0) printf "%.0f", r / s; else print "-" }')
        relay_k=$(per_1000 "$6" "$rows") pg_k=$(per_1000 "$7" "$rows")
    fi
    [ "$batch" = default ] && batch="5000 (default)"
    print_row "$1" "$batch" "$rows" "$secs" "$per_s" "$5" "$6" "$relay_k" "$7" "$pg_k" "$8"
}

# row NAME SERVER STREAMS RATE P50 P99 EPS PER_K RSS_PER CPU_S ERRORS NOTE
row() {
    local asked=$4
    [ "$asked" = 0 ] && asked="max (batch 100)"
    print_row "$1" "$2" "$3" "$asked" "${@:5}"
}

# print_row FIELD...: one row of a Markdown table
print_row() {
    local out="|" field
    for field in "$@"; do out+=" $field |"; done
    echo "$out"
}

# table KIND: the header of KIND's table (lighttpd, fcgid), unless that table is the current
# one; a scenario's rows go under the header of its kind
current_table=""
table() {
    [ "$1" = "$current_table" ] && return
    current_table=$1
    echo
    if [ "$1" = lighttpd ]; then
        print_row scenario server streams "rate asked (ev/s)" "p50 ms" "p99 ms" \
            "delivered ev/s" "server CPU s / 1,000 delivered" "server RSS / stream KiB" \
            "server CPU s in all" errors note
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    else
        echo "Apache + mod_fcgid (one sse-fcgi process per stream) and nginx + nchan:"
        echo
        print_row scenario server streams "rate asked (ev/s)" "p50 ms" "p99 ms" \
            "delivered ev/s" "delivered in all" lost "server CPU s / 1,000 delivered" \
            "of it sse-fcgi" "server CPU s in all" "of it sse-fcgi" \
            "PSS / process KiB" "server PSS / stream KiB" processes errors \
            "streams open after s" "row s" note
        echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    fi
}

echo "sse-fcgi bench: $(nproc) cores, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ); client, producer and server share the machine"
echo "reproduce: make bench (BENCH_SCENARIOS=\"$scenarios\" BENCH_SECONDS=$seconds)"
for s in $scenarios; do
    case $s in
        [a-eg]|h) table lighttpd ;; f[1-4]) table fcgid ;; p) current_table=prune ;;
    esac
    case $s in
        a) scenario "a: 1 stream" 1 1 1000 1 "$seconds" ;;
        b) scenario "b: 1,000 streams / 1,000 sessions" 1000 1000 2000 1 "$seconds" ;;
        c) scenario "c: 1 stream, max rate" 1 1 0 100 "$seconds" ;;
        d) scenario "d: 1,000 idle streams, 20 s" 1000 1000 idle 1 20 ;;
        e) scenario "e: fan-out 100 streams / 1 session" 100 1 200 1 "$seconds" ;;
        g) connect_limit=60
           scenario "g: 10,000 streams / 10,000 sessions" 10000 10000 2000 1 "$seconds"
           connect_limit=30 ;;
        f1) fcgid_scenario "f1: 200 streams / 200 sessions" 200 200 2000 "$seconds" ;;
        f2) fcgid_scenario "f2: 200 idle streams, 20 s" 200 200 idle 20 ;;
        f3) fcgid_scenario "f3: fan-out 100 streams / 1 session" 100 1 200 "$seconds" ;;
        f4) fcgid_scenario "f4: 1,000 streams / 1,000 sessions" 1000 1000 2000 "$seconds" ;;
        h) nodes_scenario "h: 100 streams / 100 sessions" 100 100 1000 "$seconds" 200000 ;;
        p) prune_scenario 1000000 50 ;;
        *) echo "bench: unknown scenario $s" >&2; exit 2 ;;
    esac
done
