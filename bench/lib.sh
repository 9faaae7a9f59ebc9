#!/usr/bin/env bash
# bench/lib.sh - what the benchmarks in bench/ share: dependencies and build,
# the namespaces, the throw-away cluster, nginx in pod2, wrk runs measured
# from /proc, the capture's start, drain and stop, and waiting for a quiet
# machine. Sourced, never run.
#
# The sourcing script sets REPO and its settings (BENCH_DURATION,
# BENCH_CONNECTIONS, BENCH_THREADS, BENCH_PAUSE, BENCH_DRAIN_TIMEOUT,
# BENCH_SKIP_BUILD, BENCH_PERF, BENCH_PERF_KEEP (keep perf.data), BENCH_RESULTS_DIR, BENCH_PG_PORT, NGINX_PORT,
# IFACE, BODY, EBPFC_NS, EBPFC_PODS) and these, which shape the traffic:
#
#   BENCH_NAME         file name prefix of its results (capture_bench, ...)
#   WRK_ARGS           array: wrk options besides -t/-c/-d, e.g. (-H 'Connection: close')
#   NGINX_KEEPALIVE    nginx http{} lines about keep-alive, e.g. "keepalive_timeout 0;"
#   URL_PATH           the path wrk requests [/]
#   STATUS_COLS_SQL    capture_status() columns status_row prints, state and
#                      pid first, flows_tracked tenth, last_error last
#   BENCH_BG_PID       helpers the script runs in the background, their pids
#                      separated by spaces (cleanup ends them)
#   BENCH_PG_CONF      extra postgresql.conf lines for the cluster (newline-
#                      separated), e.g. "ebpf_capture.ring_buffer_size = '64MB'"
#   BENCH_STOCK        1 (default): the cluster keeps PostgreSQL's defaults, as a
#                      new user's does (fsync, synchronous_commit, full_page_writes
#                      on); 0: the test suite's faster settings (all three off)
#   EBPFC_DESTDIR      install into a private PostgreSQL copy there (see
#                      tests/run.sh) instead of the system's
#
# then calls, in order: bench_prepare, bench_build, bench_setup; measures with
# wrk_run, bench_capture_start, bench_drain, bench_capture_stop; and finishes
# with bench_nginx_stop_count and bench_put_meta.
#
# shellcheck shell=bash
# Variables set here are read by the sourcing script, and the other way round:
# shellcheck disable=SC2034,SC2153

# bench_args "$@" (a benchmark's own arguments): -h or --help prints its header
# comment and exits; any other argument is refused with it.
bench_args() {
	if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
		bench_usage
		exit 0
	fi
	if (($#)); then
		bench_usage >&2
		exit 2
	fi
}
bench_usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
	printf '[bench] FATAL: %s\n' "$*" >&2
	exit 1
}

: "${URL_PATH:=/}"
: "${STATUS_COLS_SQL:=state, coalesce(pid, 0), packets, bytes, spans_written, spans_dropped,
	               events_dropped, kernel_drops, flow_table_full, flows_tracked,
	               coalesce(last_error, '')}"

bench_require_root() {
	((EUID == 0)) || die "run as root (network namespaces, make install, cluster as postgres)"
}

# bench_check_uint VAR...: each must be a whole number.
bench_check_uint() {
	local v
	for v in "$@"; do
		[[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
	done
}

# --------------------------------------------------------------------------
# dependencies, work directory, cleanup

# bench_prepare: root, tools, tests/lib, the work directory and the cleanup trap.
bench_prepare() {
	bench_require_root
	if [[ -x "$REPO/tests/install-deps.sh" ]]; then
		"$REPO/tests/install-deps.sh" >&2 || die "tests/install-deps.sh failed"
	elif [[ -f "$REPO/tests/install-deps.sh" ]]; then
		bash "$REPO/tests/install-deps.sh" >&2 || die "tests/install-deps.sh failed"
	fi
	local tool fn
	for tool in wrk nginx python3 ip setpriv runuser getconf make; do
		command -v "$tool" >/dev/null || die "$tool not found (tests/install-deps.sh installs it)"
	done
	[[ -f "$REPO/tests/lib/topology.sh" && -f "$REPO/tests/lib/pgcluster.sh" ]] ||
		die "tests/lib/topology.sh or tests/lib/pgcluster.sh missing"

	# shellcheck source=SCRIPTDIR/../tests/lib/topology.sh
	source "$REPO/tests/lib/topology.sh"
	# shellcheck source=SCRIPTDIR/../tests/lib/pgcluster.sh
	source "$REPO/tests/lib/pgcluster.sh"
	for fn in topo_up topo_down pod_exec node_exec pod_ip4 pg_start pg_stop pg_psql; do
		declare -F "$fn" >/dev/null || die "tests/lib does not define $fn (yet?)"
	done

	STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
	if ((BENCH_PERF)) && ! command -v perf >/dev/null; then
		printf '[bench] BENCH_PERF=1 but perf is not installed: no profiles\n' >&2
		BENCH_PERF=0
	fi
	PERF_PID=""
	mkdir -p "$BENCH_RESULTS_DIR"
	WORK="$(mktemp -d /tmp/ebpfc-bench.XXXXXX)"
	chmod 0755 "$WORK"
	PGDIR="$WORK/pg"
	NGINX_DIR="$WORK/nginx"
	NGINX_PID=""
	WRK_PID=""
	TOPO_STARTED=0
	CLK_TCK="$(getconf CLK_TCK)"
	# Results accumulate as key<TAB>value lines, turned into JSON at the end.
	RESULTS="$WORK/results.tsv"
	: >"$RESULTS"

	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

bench_cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [[ -n "$PERF_PID" ]] && kill -0 "$PERF_PID" 2>/dev/null; then
		kill -INT "$PERF_PID" 2>/dev/null
		wait "$PERF_PID" 2>/dev/null
	fi
	local pid
	for pid in ${BENCH_BG_PID:-}; do
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
		fi
	done
	if [[ -n "$WRK_PID" ]] && kill -0 "$WRK_PID" 2>/dev/null; then
		kill "$WRK_PID" 2>/dev/null
		wait "$WRK_PID" 2>/dev/null
	fi
	if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
		kill -QUIT "$NGINX_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$NGINX_PID" 2>/dev/null
		wait "$NGINX_PID" 2>/dev/null
	fi
	if [[ -f "$PGDIR/data/postmaster.pid" ]]; then
		pg_stop "$PGDIR" >/dev/null 2>&1 || log "cleanup: pg_stop failed"
	fi
	if ((TOPO_STARTED)); then
		topo_down
	fi
	if ((rc != 0)) && [[ -f "$PGDIR/server.log" ]]; then
		log "failed (exit $rc); server log tail:"
		tail -n 30 "$PGDIR/server.log" >&2
		# keep the evidence
		cp "$PGDIR/server.log" "/tmp/ebpfc-bench-server-$$.log" 2>/dev/null &&
			log "server log kept in /tmp/ebpfc-bench-server-$$.log"
	fi
	rm -rf "$WORK"
	exit "$rc"
}

# --------------------------------------------------------------------------
# build

# bench_build: make && make install (unless BENCH_SKIP_BUILD=1); sets GIT_DESC.
bench_build() {
	# What is built: the commit, and whether the extension's sources differ from it
	# (changes elsewhere, e.g. in tests/, do not mark the build).
	GIT_DESC="$(git -C "$REPO" describe --always 2>/dev/null || echo unknown)"
	if [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no -- \
		extension bpf sql Makefile ebpf_capture.control 2>/dev/null)" ]]; then
		GIT_DESC="$GIT_DESC+local-changes"
	fi
	if ((BENCH_SKIP_BUILD)); then
		GIT_DESC="installed (BENCH_SKIP_BUILD=1; tree at $GIT_DESC)"
		log "BENCH_SKIP_BUILD=1: using the installed extension"
	else
		log "building and installing the extension (make && make install)"
		if [[ -n "${EBPFC_DESTDIR:-}" ]]; then
			bash "$REPO/tests/lib/private_pg.sh" "$EBPFC_DESTDIR" >/dev/null
			export PG_BINDIR="$EBPFC_DESTDIR$(pg_config --bindir)"
		fi
		if ! (cd "$REPO" && make -j"$(nproc)" && make install ${EBPFC_DESTDIR:+DESTDIR=$EBPFC_DESTDIR}) >"$WORK/build.log" 2>&1; then
			tail -n 40 "$WORK/build.log" >&2
			die "make && make install failed"
		fi
	fi
}

# --------------------------------------------------------------------------
# topology, cluster, nginx

# bench_nginx_conf DIR ADDR KEEPALIVE_LINES: DIR/nginx.conf, one worker
# answering BODY to everything on ADDR:NGINX_PORT, its access log (time,
# status, client port) in DIR/access.log.
bench_nginx_conf() {
	local dir="$1" addr="$2" keepalive="$3"
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    log_format bench '\$msec \$status \$remote_port';
    $keepalive
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen $addr:$NGINX_PORT;
        access_log $dir/access.log bench buffer=256k flush=1s;
        location / {
            default_type text/plain;
            return 200 "$BODY";
        }
        # requests served so far, for benchmarks that count them per window
        location = /nginx_status {
            stub_status;
            access_log off;
        }
    }
}
EOF
}

# bench_setup: namespaces, cluster with the extension, nginx in pod2, a probe.
# Sets SERVER_IP, CLIENT_IP, URL, NGINX_PID; defines psql_q.
bench_setup() {
	log "topology $EBPFC_NS-node + 2 pods"
	TOPO_STARTED=1
	topo_up || die "topo_up failed"
	SERVER_IP="$(pod_ip4 2)"
	CLIENT_IP="$(pod_ip4 1)"
	pod_exec 1 sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
	pod_exec 1 sysctl -q -w net.ipv4.tcp_tw_reuse=1

	log "PostgreSQL cluster in $PGDIR (port $BENCH_PG_PORT, stock settings: ${BENCH_STOCK:-1})"
	export EBPFC_PG_STOCK="${BENCH_STOCK:-1}"
	export EBPFC_PG_EXTRA_CONF="ebpf_capture.idle_timeout = '5s'
log_line_prefix = '%m [%p] %b '${BENCH_PG_CONF:+
$BENCH_PG_CONF}"
	pg_start "$PGDIR" --port "$BENCH_PG_PORT" || die "pg_start failed"
	# pg_start may report success for a server that did not come up.
	psql_q "SELECT 1" >/dev/null 2>&1 || die "the cluster in $PGDIR is not running (server log below)"
	psql_q "CREATE EXTENSION ebpf_capture" >/dev/null || die "CREATE EXTENSION failed"

	log "nginx in pod2 ($SERVER_IP:$NGINX_PORT)"
	bench_nginx_conf "$NGINX_DIR" "$SERVER_IP" "$NGINX_KEEPALIVE"
	pod_exec 2 nginx -t -q -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" 2>"$NGINX_DIR/test.log" || {
		cat "$NGINX_DIR/test.log" >&2
		die "nginx -t failed"
	}
	# Not through pod_exec: a function in the background is a subshell, and $!
	# must be nginx's master itself (ip netns exec execs the command).
	ip netns exec "$(topo_pod_ns 2)" nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" \
		2>>"$NGINX_DIR/error.log" &
	NGINX_PID=$!
	for _ in $(seq 50); do
		if pod_exec 1 bash -c "exec 3<>/dev/tcp/$SERVER_IP/$NGINX_PORT" 2>/dev/null; then
			break
		fi
		kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$NGINX_DIR/error.log")"
		sleep 0.1
	done
	URL="http://$SERVER_IP:$NGINX_PORT$URL_PATH"
	local body
	body="$(pod_exec 1 wrk -t1 -c1 -d1s "${WRK_ARGS[@]}" "$URL" 2>&1)" || die "wrk probe failed: $body"
	grep -q ' requests in ' <<<"$body" || die "wrk probe gave no result: $body"
}

psql_q() { pg_psql "$PGDIR" -qAt -c "$1"; }

# --------------------------------------------------------------------------
# measurement helpers

# tcp_counter NETNS NAME: a field of the Tcp: line of /proc/net/snmp there.
tcp_counter() {
	# shellcheck disable=SC2016 # awk program
	ip netns exec "$1" awk -v want="$2" '
		$1 == "Tcp:" && !hdr { for (i = 2; i <= NF; i++) name[i] = $i; hdr = 1; next }
		$1 == "Tcp:" && hdr  { for (i = 2; i <= NF; i++) if (name[i] == want) print $i; exit }
	' /proc/net/snmp
}

# proc_ticks PID: utime+stime of PID in clock ticks (empty if it is gone).
proc_ticks() {
	local stat
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
	stat="${stat##*) }"
	awk '{ print $12 + $13 }' <<<"$stat"
}

# cluster_ticks: utime+stime of every process of the cluster, plus what the
# postmaster collected from children that already exited.
cluster_ticks() {
	local pm total=0 pid t stat
	pm="$(head -n 1 "$PGDIR/data/postmaster.pid")"
	stat="$(cat "/proc/$pm/stat")"
	stat="${stat##*) }"
	total="$(awk '{ print $12 + $13 + $14 + $15 }' <<<"$stat")"
	for pid in $(pgrep -P "$pm" || true); do
		t="$(proc_ticks "$pid")"
		total=$((total + ${t:-0}))
	done
	echo "$total"
}

# host_cpu: "busy total softirq" jiffies from /proc/stat.
host_cpu() {
	awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t, $8; exit }' /proc/stat
}

# nginx_ticks: utime+stime of nginx's master and workers.
nginx_ticks() {
	local total pid t
	total="$(proc_ticks "$NGINX_PID")"
	for pid in $(pgrep -P "$NGINX_PID" || true); do
		t="$(proc_ticks "$pid")"
		total=$((${total:-0} + ${t:-0}))
	done
	echo "${total:-0}"
}

# ksoftirqd_ticks: utime+stime of the ksoftirqd threads (network softirq work
# that did not run in the context of wrk or nginx; without
# CONFIG_IRQ_TIME_ACCOUNTING the rest is part of their system time).
ksoftirqd_ticks() {
	local total=0 pid t
	for pid in $(pgrep '^ksoftirqd/' || true); do
		t="$(proc_ticks "$pid")"
		total=$((total + ${t:-0}))
	done
	echo "$total"
}

# irq_counts: host-wide "IRQ-work reschedule" interrupt totals (all CPUs).
# IRQ work is how a BPF ring buffer wakes its reader.
irq_counts() {
	awk '$1 == "IWI:" || $1 == "RES:" {
		n = 0
		for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i
		v[$1] = n
	} END { print v["IWI:"] + 0, v["RES:"] + 0 }' /proc/interrupts
}

# ctx_switches PID: voluntary + involuntary context switches of PID.
ctx_switches() {
	awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }' "/proc/$1/status" 2>/dev/null || true
}

# children_cpu FILE: user+system seconds of this shell's reaped children into
# FILE (wrk runs as a direct child, so the difference around one run is wrk's
# CPU time). `times` must run in this shell, not in a $(...) subshell.
children_cpu() {
	times >"$1.times"
	awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] }
		printf "%.3f\n", t
	}' "$1.times" >"$1"
}

now_s() { date +%s.%N; }

put() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }
# got KEY: a value put earlier.
got() { awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$RESULTS"; }

# --------------------------------------------------------------------------
# a quiet machine

# bench_wait_quiet TIMEOUT MAX_LOAD MIN_IDLE_PCT: wait (at most TIMEOUT
# seconds, polling every 5 s) until the 1-minute load average is below
# MAX_LOAD and the CPUs were at least MIN_IDLE_PCT % idle over the last 5 s,
# i.e. until other sessions' tests, builds and fuzzers have stopped. Records
# meta.quiet* either way; never fails.
bench_wait_quiet() {
	local timeout="$1" max_load="$2" min_idle="$3"
	local start=$SECONDS load idle quiet=0 a b
	log "waiting for a quiet machine: 1-min load < $max_load and >= $min_idle % idle (at most ${timeout}s)"
	while :; do
		a="$(host_cpu)"
		sleep 5
		b="$(host_cpu)"
		idle="$(awk -v a="$a" -v b="$b" 'BEGIN {
			split(a, x, " "); split(b, y, " ")
			dt = y[2] - x[2]; db = y[1] - x[1]
			printf "%.1f", (dt > 0 ? 100.0 * (dt - db) / dt : 0) }')"
		load="$(cut -d' ' -f1 /proc/loadavg)"
		if awk -v l="$load" -v m="$max_load" -v i="$idle" -v n="$min_idle" 'BEGIN { exit !(l < m && i >= n) }'; then
			quiet=1
			break
		fi
		if ((SECONDS - start >= timeout)); then
			break
		fi
		if (((SECONDS - start) % 60 < 5)); then
			log "  not quiet yet after $((SECONDS - start))s: load $load, idle $idle %; busiest: $(bench_busiest)"
		fi
	done
	put meta.quiet "$quiet"
	put meta.quiet_waited_s "$((SECONDS - start))"
	put meta.quiet_load1 "$load"
	put meta.quiet_idle_pct "$idle"
	put meta.quiet_criteria "load1 < $max_load, idle >= $min_idle % over 5 s, wait <= ${timeout}s"
	put meta.quiet_busiest "$(bench_busiest)"
	if ((quiet)); then
		log "quiet after $((SECONDS - start))s (load $load, idle $idle %)"
	else
		log "NOT QUIET after ${timeout}s (load $load, idle $idle %): measuring anyway; busiest: $(bench_busiest)"
	fi
}

# bench_busiest: the five processes with the most CPU right now (ps's %CPU is
# over each process's lifetime, so sample /proc twice, 1 s apart).
bench_busiest() {
	local a b
	a="$(proc_cpu_table)"
	sleep 1
	b="$(proc_cpu_table)"
	awk -v hz="$CLK_TCK" 'NR == FNR { t[$1] = $2; next }
		($1 in t) && $2 > t[$1] { printf "%d %s(%d):%d%%\n", $2 - t[$1], $3, $1, 100 * ($2 - t[$1]) / hz }' \
		<(echo "$a") <(echo "$b") | sort -rn | head -n 5 | cut -d' ' -f2- | paste -sd' ' -
}

# proc_cpu_table: "pid utime+stime comm" of every process.
proc_cpu_table() {
	# comm may hold spaces and parentheses: it ends at the last ") ".
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
		if (!match($0, /.*\) /)) next
		rest = substr($0, RLENGTH + 1)
		o = index($0, "(")
		comm = substr($0, o + 1, RLENGTH - o - 2)
		gsub(/ /, "_", comm)
		split(rest, f, " ")
		print $1, f[12] + f[13], comm
	}'
}

# --------------------------------------------------------------------------
# wrk runs

# wrk_run NAME SECONDS: one wrk run; records its figures under NAME.
wrk_run() {
	local name="$1" secs="$2" out="$WORK/wrk-$1.txt"
	local t0 t1 act0 act1 pas0 pas1 fail0 fail1 rst0 rst1 cpu0 cpu1 ng0 ng1 ch0 ch1 cl0 cl1 sq0 sq1 irq0 irq1
	act0="$(tcp_counter "$(topo_pod_ns 1)" ActiveOpens)"
	fail0="$(tcp_counter "$(topo_pod_ns 1)" AttemptFails)"
	rst0="$(tcp_counter "$(topo_pod_ns 1)" EstabResets)"
	pas0="$(tcp_counter "$(topo_pod_ns 2)" PassiveOpens)"
	ng0="$(nginx_ticks)"
	sq0="$(ksoftirqd_ticks)"
	cl0="$(cluster_ticks)"
	children_cpu "$WORK/ch0"
	ch0="$(cat "$WORK/ch0")"
	cpu0="$(host_cpu)"
	irq0="$(irq_counts)"
	t0="$(now_s)"
	put "$name.loadavg_before" "$(cut -d' ' -f1-3 /proc/loadavg)"
	ip netns exec "$(topo_pod_ns 1)" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${secs}s" \
		--latency "${WRK_ARGS[@]}" "$URL" >"$out" 2>&1 &
	WRK_PID=$!
	local ours=""
	if ((BENCH_PERF)); then
		# our processes only: other sessions may run wrk, nginx and postgres too
		ours="$( (
			echo "$WRK_PID" "$NGINX_PID"
			pgrep -P "$NGINX_PID"
			head -n 1 "$PGDIR/data/postmaster.pid"
			pgrep -P "$(head -n 1 "$PGDIR/data/postmaster.pid")"
			pgrep '^ksoftirqd/'
		) | tr -s ' \n' ',' | sed 's/,$//')"
		perf record -a -F 999 -o "$WORK/perf-$name.data" -- sleep "$secs" >/dev/null 2>"$WORK/perf-$name.log" &
		PERF_PID=$!
	fi
	if ! wait "$WRK_PID"; then
		WRK_PID=""
		cat "$out" >&2
		die "wrk ($name) failed"
	fi
	WRK_PID=""
	t1="$(now_s)"
	if [[ -n "$PERF_PID" ]]; then
		wait "$PERF_PID" || log "perf record ($name) failed: $(tail -n 3 "$WORK/perf-$name.log")"
		PERF_PID=""
	fi
	cpu1="$(host_cpu)"
	irq1="$(irq_counts)"
	children_cpu "$WORK/ch1"
	ch1="$(cat "$WORK/ch1")"
	cl1="$(cluster_ticks)"
	ng1="$(nginx_ticks)"
	sq1="$(ksoftirqd_ticks)"
	act1="$(tcp_counter "$(topo_pod_ns 1)" ActiveOpens)"
	fail1="$(tcp_counter "$(topo_pod_ns 1)" AttemptFails)"
	rst1="$(tcp_counter "$(topo_pod_ns 1)" EstabResets)"
	pas1="$(tcp_counter "$(topo_pod_ns 2)" PassiveOpens)"
	grep -q ' requests in ' "$out" || {
		cat "$out" >&2
		die "wrk ($name) printed no result"
	}
	put "$name.t0" "$t0"
	put "$name.t1" "$t1"
	put "$name.wrk_output" "$(base64 -w0 <"$out")"
	put "$name.active_opens" "$((act1 - act0))"
	put "$name.attempt_fails" "$((fail1 - fail0))"
	put "$name.estab_resets" "$((rst1 - rst0))"
	put "$name.passive_opens" "$((pas1 - pas0))"
	put "$name.host_cpu" "$cpu0 $cpu1"
	put "$name.irqs" "$irq0 $irq1"
	put "$name.wrk_cpu_s" "$(awk -v a="$ch0" -v b="$ch1" 'BEGIN { printf "%.3f", b - a }')"
	put "$name.nginx_ticks" "$((ng1 - ng0))"
	put "$name.ksoftirqd_ticks" "$((sq1 - sq0))"
	put "$name.cluster_ticks_run" "$((cl1 - cl0))"
	if ((BENCH_PERF)) && [[ -s "$WORK/perf-$name.data" ]]; then
		{
			echo "# perf record -a -F 999 during the '$name' run: CPU share by command (all CPUs)"
			perf report -i "$WORK/perf-$name.data" --stdio --sort comm 2>/dev/null |
				awk '!/^#/ && NF && ++n <= 25' || true
			echo
			echo "# symbols of this benchmark's processes (wrk, nginx, the cluster, ksoftirqd): pids $ours"
			echo "# (percentages are of all samples on all CPUs)"
			perf report -i "$WORK/perf-$name.data" --stdio --sort comm,dso,sym --pid "$ours" 2>/dev/null |
				awk '!/^#/ && NF && ++n <= 60' || true
			echo
			echo "# the cluster's processes: CPU share by process (all CPUs)"
			perf report -i "$WORK/perf-$name.data" --stdio --sort pid --comm postgres 2>/dev/null |
				awk '!/^#/ && NF && ++n <= 12' || true
			echo "# which is which (at the end of the run):"
			ps -o pid=,args= --ppid "$(head -n 1 "$PGDIR/data/postmaster.pid")" 2>/dev/null || true
			echo
			echo "# symbols of the cluster's processes alone (the capture worker's inserts)"
			echo "# (percentages are of all samples on all CPUs)"
			perf report -i "$WORK/perf-$name.data" --stdio --sort dso,sym --comm postgres 2>/dev/null |
				awk '!/^#/ && NF && ++n <= 50' || true
		} >"$BENCH_RESULTS_DIR/$BENCH_NAME-$STAMP-perf-$name.txt"
		if ((BENCH_PERF_KEEP)); then
			mv "$WORK/perf-$name.data" "$BENCH_RESULTS_DIR/$BENCH_NAME-$STAMP-perf-$name.data"
		else
			rm -f "$WORK/perf-$name.data"
		fi
	fi
	log "$name: $(grep ' requests in ' "$out" | sed 's/^ *//'), $(grep 'Requests/sec' "$out" | tr -s ' ')"
}

# wrk_warmup SECONDS: an unmeasured wrk run, then the pause.
wrk_warmup() {
	log "warm-up: ${1}s (not measured)"
	pod_exec 1 wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${1}s" \
		"${WRK_ARGS[@]}" "$URL" >"$WORK/wrk-warmup.txt" 2>&1 || die "warm-up wrk failed"
	sleep "$BENCH_PAUSE"
}

# --------------------------------------------------------------------------
# the capture

status_row() {
	psql_q "SELECT $STATUS_COLS_SQL
	        FROM capture_status() WHERE interface = '$IFACE'"
}

# bench_capture_start: capture_start(IFACE), wait for 'running'; sets
# WORKER_PID and LOG_OFFSET (where the server log stood).
bench_capture_start() {
	local state=""
	log "starting the capture on $IFACE"
	LOG_OFFSET="$(stat -c %s "$PGDIR/server.log")"
	psql_q "SELECT capture_start('$IFACE')" >/dev/null
	for _ in $(seq 150); do
		IFS='|' read -r state _ <<<"$(status_row)"
		[[ "$state" == running ]] && break
		sleep 0.1
	done
	[[ "$state" == running ]] || die "capture did not reach 'running': $(status_row)"
	IFS='|' read -r _ WORKER_PID _ <<<"$(status_row)"
	[[ "$WORKER_PID" =~ ^[1-9][0-9]*$ && -d "/proc/$WORKER_PID" ]] || die "no worker pid: $(status_row)"
	put capture.worker_pid "$WORKER_PID"
	sleep 1 # let the worker settle into its loop
	put capture.status_before "$(status_row)"
	put capture.spans_table_before "$(psql_q "SELECT count(*) FROM spans")"
}

# bench_drain COUNT_FUNCTION: wait until every span of the capture run is in
# the table: the count COUNT_FUNCTION prints must stop moving (flush interval
# 200 ms, close grace 1 s) and the kernel flow table must be empty (no
# connection still open), or BENCH_DRAIN_TIMEOUT passes. Sets DRAINED and
# D1 (when it ended).
bench_drain() {
	local count_fn="$1" prev=-1 stable=0 deadline n state wpid flows
	log "waiting for the spans of the capture run (at most ${BENCH_DRAIN_TIMEOUT}s)"
	DRAINED=0
	deadline=$((SECONDS + BENCH_DRAIN_TIMEOUT))
	while ((SECONDS < deadline)); do
		sleep 1
		n="$("$count_fn")"
		IFS='|' read -r state wpid _ _ _ _ _ _ _ flows _ <<<"$(status_row)"
		if [[ "$state" != running || "$wpid" != "$WORKER_PID" ]]; then
			log "capture state is now '$state' (worker pid $wpid, was $WORKER_PID)"
		fi
		if ((n == prev)); then stable=$((stable + 1)); else stable=0; fi
		prev=$n
		if ((stable >= 2 && flows == 0)); then
			DRAINED=1
			break
		fi
	done
	D1="$(now_s)"
}

# bench_capture_stop COUNT_FUNCTION: capture_stop(IFACE), wait for
# 'stopped'; records the state, the status, the count COUNT_FUNCTION prints
# afterwards, and the server log since the capture started.
bench_capture_stop() {
	local count_fn="$1" state=""
	log "stopping the capture"
	psql_q "SELECT capture_stop('$IFACE')" >/dev/null
	for _ in $(seq 150); do
		IFS='|' read -r state _ <<<"$(status_row)"
		[[ "$state" == stopped ]] && break
		sleep 0.1
	done
	put capture.state_after_stop "$state"
	put capture.status_after_stop "$(status_row)"
	put capture.spans_window_after_stop "$("$count_fn")"
	put capture.spans_table_after_stop "$(psql_q "SELECT count(*) FROM spans")"
	# What the server said while the capture ran (warnings, errors, crashes).
	put capture.server_log "$(tail -c +"$((LOG_OFFSET + 1))" "$PGDIR/server.log" | base64 -w0)"
}

# bench_nginx_stop_count RUN...: stop nginx (it writes its buffered access
# log when it exits) and count the access log lines of each run's window.
bench_nginx_stop_count() {
	local run t0 t1
	kill -QUIT "$NGINX_PID" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
	wait "$NGINX_PID" 2>/dev/null || true
	NGINX_PID=""
	for run in "$@"; do
		t0="$(got "$run.t0")"
		t1="$(got "$run.t1")"
		[[ -n "$t0" ]] || continue
		put "$run.access_log" "$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b + 0.5 { n++; if ($2 == 200) ok++ }
			END { print n + 0, ok + 0 }' "$NGINX_DIR/access.log" 2>/dev/null)"
	done
}

# bench_put_meta: what ran where.
bench_put_meta() {
	put meta.stamp "$STAMP"
	put meta.kernel "$(uname -r)"
	put meta.cpus "$(nproc)"
	put meta.cpu_model "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	put meta.wrk "$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
	put meta.nginx "$(nginx -v 2>&1 | sed 's/.*nginx\///')"
	put meta.postgres "$("$PG_BINDIR/postgres" --version | awk '{ print $3 }')"
	put meta.git "$GIT_DESC"
	put meta.duration "$BENCH_DURATION"
	put meta.connections "$BENCH_CONNECTIONS"
	put meta.threads "$BENCH_THREADS"
	put meta.body_bytes "${#BODY}"
	put meta.clk_tck "$CLK_TCK"
	put meta.url "$URL"
	put meta.ns "$EBPFC_NS"
}

# bench_protocol_pairs NAME PAIRS RATE COUNT: the capture on and off around a
# load, for the protocol benchmarks (pg_bench.sh, redis_bench.sh). The caller
# defines run_window WINDOW (runs the load once; records WINDOW.t0, WINDOW.t1,
# WINDOW.RATE, the load's rate, and WINDOW.COUNT, the requests it made) and
# window_spans WINDOW (prints the spans recorded for that window's requests).
# PAIRS pairs alternate off-on, on-off, ...; then the medians over the pairs
# (throughput with / without, recall, the worker's CPU per span) are printed,
# kept as `summary` and the results copied to $BENCH_RESULTS_DIR/NAME-STAMP.tsv.
bench_protocol_pairs() {
	local name="$1" pairs="$2" rate="$3" count="$4" p summary out
	for p in $(seq "$pairs"); do
		if ((p % 2)); then
			log "pair $p: off, then on"
			run_window "p$p.off"
			bench_measure_on "p$p.on"
		else
			log "pair $p: on, then off"
			bench_measure_on "p$p.on"
			run_window "p$p.off"
		fi
	done
	summary="$(for p in $(seq "$pairs"); do
		printf '%s %s %s %s %s\n' "$(got "p$p.off.$rate")" "$(got "p$p.on.$rate")" \
			"$(got "p$p.on.$count")" "$(got "p$p.on.spans")" "$(got "p$p.on.worker_ticks")"
	done | python3 -c '
import statistics, sys
tick = 1e6 / float(sys.argv[1])
rate, count = sys.argv[2], sys.argv[3]
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
ratio = [on / off for off, on, _, _, _ in rows]
recall = [s / t for _, _, t, s, _ in rows]
cpu = [w * tick / s for _, _, _, s, w in rows if s > 0]
print("pairs=%d %s_off=%.0f %s_on=%.0f throughput_ratio=%.3f (min %.3f max %.3f) "
      "recall=%.5f (min %.5f) worker_us_per_span=%.2f spans=%d %s=%d" % (
      len(rows), rate, statistics.median(r[0] for r in rows), rate,
      statistics.median(r[1] for r in rows),
      statistics.median(ratio), min(ratio), max(ratio), statistics.median(recall), min(recall),
      statistics.median(cpu) if cpu else float("nan"), sum(r[3] for r in rows), count,
      sum(r[2] for r in rows)))
' "$CLK_TCK" "$rate" "$count")"
	put summary "$summary"
	bench_put_meta
	out="$BENCH_RESULTS_DIR/$name-$STAMP.tsv"
	cp "$RESULTS" "$out"
	log "results: $out"
	echo "$summary"
}

# bench_measure_on WINDOW: run_window with the capture on, then the window's
# spans (waiting for them), the worker's CPU and the capture's status.
BENCH_CURRENT=""
bench_current_spans() { window_spans "$BENCH_CURRENT"; }
bench_measure_on() {
	local name="$1" ticks0 ticks1
	bench_capture_start
	ticks0="$(proc_ticks "$WORKER_PID")"
	run_window "$name"
	BENCH_CURRENT="$name"
	bench_drain bench_current_spans
	ticks1="$(proc_ticks "$WORKER_PID")"
	put "$name.worker_ticks" "$((ticks1 - ticks0))"
	put "$name.spans" "$(window_spans "$name")"
	put "$name.status" "$(status_row)"
	bench_capture_stop bench_current_spans
}
