#!/usr/bin/env bash
# capture_bench.sh - what does a capture on cni0 cost, and does it miss anything?
#
# One run measures, side by side, wrk (pod1) against nginx (pod2) with short
# connections (every request is a new TCP connection: wrk sends
# "Connection: close" and nginx has keepalive_timeout 0):
#
#   1. baseline   - no capture
#   2. capture    - capture_start('cni0') running in the server's worker
#   3. baseline2  - no capture again (drift check; BENCH_THIRD_RUN=0 skips it)
#
# and reports connections made (wrk's completed requests, cross-checked with
# the pods' TCP counters and nginx's access log), connection spans recorded
# for the capture window, their ratio, wrk throughput with/without capture,
# the capture worker's CPU time per thousand spans, and the capture_status()
# counters. The summary is printed and written as JSON and as a Markdown
# snippet to bench/results/capture_bench-<UTC timestamp>.{json,md}.
#
# Nothing here is a test: the script fails only on a broken setup, never on
# a figure.
#
# Usage (as root, from anywhere):  bench/capture_bench.sh [-h]
#
# Environment (defaults in brackets):
#   BENCH_DURATION     seconds per measured wrk run [10]
#   BENCH_CONNECTIONS  wrk connections [64]
#   BENCH_THREADS      wrk threads [2]
#   BENCH_WARMUP       seconds of unmeasured warm-up before run 1, 0 = none [3]
#   BENCH_PAUSE        seconds between runs [3]
#   BENCH_THIRD_RUN    1 = a second baseline after the capture run [1]
#   BENCH_PROMISC_RUN  1 = also a run with cni0 promiscuous but no capture,
#                      before the capture run (what promiscuity alone costs) [0]
#   BENCH_DRAIN_TIMEOUT seconds to wait for the spans of the capture run [60]
#   BENCH_PERF         1 = sample every CPU with `perf record` during each run
#                      and save per-command and per-symbol profiles next to
#                      the JSON (needs perf; skipped if missing) [0]
#   BENCH_SKIP_BUILD   1 = do not run make && make install [0]
#   BENCH_RESULTS_DIR  where the JSON/Markdown go [bench/results]
#   EBPFC_NS           namespace prefix [ebpfcb]  (tests use ebpfct)
#   BENCH_PG_PORT      port of the throw-away cluster [5497]
#   NGINX_PORT         port nginx listens on in pod2 [8080]
#
# Setup details worth knowing when reading the figures:
#   - pod1 gets net.ipv4.ip_local_port_range "1024 65535" and tcp_tw_reuse=1
#     (in its own namespace only), so tens of thousands of short connections
#     do not run out of ephemeral ports.
#   - the cluster runs with ebpf_capture.idle_timeout = 5s, so a connection
#     left half-open when wrk stops is written within the drain wait.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
	usage
	exit 0
fi
if (($#)); then
	usage >&2
	exit 2
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfcb}"
export EBPFC_PODS=2
BENCH_DURATION="${BENCH_DURATION:-10}"
BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-64}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_WARMUP="${BENCH_WARMUP:-3}"
BENCH_PAUSE="${BENCH_PAUSE:-3}"
BENCH_THIRD_RUN="${BENCH_THIRD_RUN:-1}"
BENCH_PROMISC_RUN="${BENCH_PROMISC_RUN:-0}"
BENCH_DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-60}"
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF="${BENCH_PERF:-0}"
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5497}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
# A fixed, small body; its length is reported.
BODY="ebpf_capture bench: hello from pod2"

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
	printf '[bench] FATAL: %s\n' "$*" >&2
	exit 1
}

((EUID == 0)) || die "run as root (network namespaces, make install, cluster as postgres)"
for v in BENCH_DURATION BENCH_CONNECTIONS BENCH_THREADS BENCH_WARMUP BENCH_PAUSE \
	BENCH_DRAIN_TIMEOUT BENCH_PG_PORT NGINX_PORT; do
	[[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
((BENCH_DURATION > 0 && BENCH_CONNECTIONS > 0 && BENCH_THREADS > 0)) ||
	die "BENCH_DURATION, BENCH_CONNECTIONS and BENCH_THREADS must be positive"
((BENCH_CONNECTIONS >= BENCH_THREADS)) || die "wrk needs BENCH_CONNECTIONS >= BENCH_THREADS"

# --------------------------------------------------------------------------
# dependencies and build

if [[ -x "$REPO/tests/install-deps.sh" ]]; then
	"$REPO/tests/install-deps.sh" >&2 || die "tests/install-deps.sh failed"
elif [[ -f "$REPO/tests/install-deps.sh" ]]; then
	bash "$REPO/tests/install-deps.sh" >&2 || die "tests/install-deps.sh failed"
fi
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

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [[ -n "$PERF_PID" ]] && kill -0 "$PERF_PID" 2>/dev/null; then
		kill -INT "$PERF_PID" 2>/dev/null
		wait "$PERF_PID" 2>/dev/null
	fi
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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
	if ! (cd "$REPO" && make -j"$(nproc)" && make install) >"$WORK/build.log" 2>&1; then
		tail -n 40 "$WORK/build.log" >&2
		die "make && make install failed"
	fi
fi

# --------------------------------------------------------------------------
# topology, cluster, nginx

log "topology $EBPFC_NS-node + 2 pods"
TOPO_STARTED=1
topo_up || die "topo_up failed"
SERVER_IP="$(pod_ip4 2)"
CLIENT_IP="$(pod_ip4 1)"
pod_exec 1 sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
pod_exec 1 sysctl -q -w net.ipv4.tcp_tw_reuse=1

log "PostgreSQL cluster in $PGDIR (port $BENCH_PG_PORT)"
export EBPFC_PG_EXTRA_CONF="ebpf_capture.idle_timeout = '5s'
log_line_prefix = '%m [%p] %b '"
pg_start "$PGDIR" --port "$BENCH_PG_PORT" || die "pg_start failed"
psql_q() { pg_psql "$PGDIR" -qAt -c "$1"; }
# pg_start may report success for a server that did not come up.
psql_q "SELECT 1" >/dev/null 2>&1 || die "the cluster in $PGDIR is not running (server log below)"
psql_q "CREATE EXTENSION ebpf_capture" >/dev/null || die "CREATE EXTENSION failed"

log "nginx in pod2 ($SERVER_IP:$NGINX_PORT)"
mkdir -p "$NGINX_DIR"
cat >"$NGINX_DIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    log_format bench '\$msec \$status \$remote_port';
    keepalive_timeout 0;
    client_body_temp_path $NGINX_DIR/client_body;
    proxy_temp_path $NGINX_DIR/proxy;
    fastcgi_temp_path $NGINX_DIR/fastcgi;
    uwsgi_temp_path $NGINX_DIR/uwsgi;
    scgi_temp_path $NGINX_DIR/scgi;
    server {
        listen $SERVER_IP:$NGINX_PORT;
        access_log $NGINX_DIR/access.log bench buffer=256k flush=1s;
        location / {
            default_type text/plain;
            return 200 "$BODY";
        }
    }
}
EOF
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
URL="http://$SERVER_IP:$NGINX_PORT/"
body="$(pod_exec 1 wrk -t1 -c1 -d1s -H 'Connection: close' "$URL" 2>&1)" || die "wrk probe failed: $body"
grep -q ' requests in ' <<<"$body" || die "wrk probe gave no result: $body"

# --------------------------------------------------------------------------
# measurement helpers

CLK_TCK="$(getconf CLK_TCK)"

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

# Results accumulate as key<TAB>value lines, turned into JSON at the end.
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
put() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

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
		--latency -H 'Connection: close' "$URL" >"$out" 2>&1 &
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
		} >"$BENCH_RESULTS_DIR/capture_bench-$STAMP-perf-$name.txt"
		rm -f "$WORK/perf-$name.data"
	fi
	log "$name: $(grep ' requests in ' "$out" | sed 's/^ *//'), $(grep 'Requests/sec' "$out" | tr -s ' ')"
}

status_row() {
	psql_q "SELECT state, coalesce(pid, 0), packets, bytes, spans_written, spans_dropped,
	               events_dropped, kernel_drops, flow_table_full, flows_tracked,
	               coalesce(last_error, '')
	        FROM capture_status() WHERE interface = '$IFACE'"
}

# spans_in WINDOW_START WINDOW_END: spans of connections to nginx in the window.
spans_in() {
	psql_q "SELECT count(*) FROM spans
	        WHERE dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP'
	          AND start_time >= to_timestamp($1) AND start_time <= to_timestamp($2)"
}

# --------------------------------------------------------------------------
# the runs

if ((BENCH_WARMUP > 0)); then
	log "warm-up: ${BENCH_WARMUP}s (not measured)"
	pod_exec 1 wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${BENCH_WARMUP}s" \
		-H 'Connection: close' "$URL" >"$WORK/wrk-warmup.txt" 2>&1 || die "warm-up wrk failed"
	sleep "$BENCH_PAUSE"
fi

log "run 1: baseline, no capture, ${BENCH_DURATION}s"
wrk_run baseline "$BENCH_DURATION"
sleep "$BENCH_PAUSE"

if ((BENCH_PROMISC_RUN)); then
	log "run 1b: cni0 promiscuous, no capture, ${BENCH_DURATION}s"
	ip -n "$(topo_node_ns)" link set cni0 promisc on
	wrk_run promisc "$BENCH_DURATION"
	ip -n "$(topo_node_ns)" link set cni0 promisc off
	sleep "$BENCH_PAUSE"
fi

log "starting the capture on $IFACE"
LOG_OFFSET="$(stat -c %s "$PGDIR/server.log")"
psql_q "SELECT capture_start('$IFACE')" >/dev/null
state=""
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
SPANS_BEFORE="$(psql_q "SELECT count(*) FROM spans")"
put capture.spans_table_before "$SPANS_BEFORE"

log "run 2: capture on $IFACE (worker pid $WORKER_PID), ${BENCH_DURATION}s"
W0="$(proc_ticks "$WORKER_PID")"
X0="$(ctx_switches "$WORKER_PID")"
C0="$(cluster_ticks)"
D0="$(now_s)"
wrk_run capture "$BENCH_DURATION"
T0="$(awk -F'\t' '$1 == "capture.t0" { print $2 }' "$RESULTS")"
T1="$(awk -F'\t' '$1 == "capture.t1" { print $2 }' "$RESULTS")"
WIN0="$(awk -v t="$T0" 'BEGIN { printf "%.6f", t - 1 }')"
WIN1="$(awk -v t="$T1" 'BEGIN { printf "%.6f", t + 1 }')"

# Wait until every span of the window is in the table: the count must stop
# moving (flush interval 200 ms, close grace 1 s) and the kernel flow table
# must be empty (no connection still open), or the timeout passes.
log "waiting for the spans of run 2 (at most ${BENCH_DRAIN_TIMEOUT}s)"
prev=-1
stable=0
drained=0
deadline=$((SECONDS + BENCH_DRAIN_TIMEOUT))
while ((SECONDS < deadline)); do
	sleep 1
	n="$(spans_in "$WIN0" "$WIN1")"
	IFS='|' read -r state wpid _ _ _ _ _ _ _ flows _ <<<"$(status_row)"
	if [[ "$state" != running || "$wpid" != "$WORKER_PID" ]]; then
		log "capture state is now '$state' (worker pid $wpid, was $WORKER_PID)"
	fi
	if ((n == prev)); then stable=$((stable + 1)); else stable=0; fi
	prev=$n
	if ((stable >= 2 && flows == 0)); then
		drained=1
		break
	fi
done
D1="$(now_s)"
W1="$(proc_ticks "$WORKER_PID")"
X1="$(ctx_switches "$WORKER_PID")"
put capture.worker_ctx_switches "$((X1 - X0))"
C1="$(cluster_ticks)"
put capture.drained "$drained"
put capture.drain_seconds "$(awk -v a="$T1" -v b="$D1" 'BEGIN { printf "%.1f", b - a }')"
put capture.worker_ticks "${W0:-} ${W1:-}"
put capture.cluster_ticks "$C0 $C1"
put capture.measure_seconds "$(awk -v a="$D0" -v b="$D1" 'BEGIN { printf "%.3f", b - a }')"
put capture.status_after "$(status_row)"
put capture.spans_window "$(spans_in "$WIN0" "$WIN1")"
put capture.spans_port_all "$(psql_q "SELECT count(*) FROM spans WHERE dst_port = $NGINX_PORT")"
put capture.spans_dupes "$(psql_q "SELECT count(*) - count(DISTINCT (src_addr, src_port, dst_addr, dst_port, start_time))
	FROM spans WHERE dst_port = $NGINX_PORT")"
# Spans in the table that are not pod1 -> nginx connections (there should be none).
put capture.spans_other "$(psql_q "SELECT count(*) FROM spans
	WHERE NOT (dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP' AND src_addr = '$CLIENT_IP')")"
put capture.spans_other_sample "$(psql_q "SELECT start_time, end_time, status, src_addr, src_port,
	dst_addr, dst_port, bytes_sent, bytes_received, packets_sent, packets_received, attributes
	FROM spans WHERE NOT (dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP' AND src_addr = '$CLIENT_IP')
	ORDER BY start_time LIMIT 10" | base64 -w0)"
put capture.spans_by_reason "$(psql_q "SELECT coalesce(string_agg(r || '=' || n, ' ' ORDER BY n DESC), '')
	FROM (SELECT attributes->>'tcp.close_reason' AS r, count(*) AS n FROM spans
	      WHERE dst_port = $NGINX_PORT AND start_time BETWEEN to_timestamp($WIN0) AND to_timestamp($WIN1)
	      GROUP BY 1) s")"
put capture.spans_quality "$(psql_q "SELECT
	count(*) FILTER (WHERE (attributes->>'tcp.handshake_completed')::bool),
	count(*) FILTER (WHERE (attributes->>'tcp.mid_stream')::bool),
	count(*) FILTER (WHERE status = 'ERROR'),
	count(*) FILTER (WHERE src_addr <> '$CLIENT_IP'),
	count(*) FILTER (WHERE bytes_received >= ${#BODY}),
	coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY bytes_sent), 0),
	coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY bytes_received), 0),
	coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY packets_sent + packets_received), 0),
	coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY (attributes->>'tcp.handshake_rtt_us')::int), -1)
	FROM spans WHERE dst_port = $NGINX_PORT
	  AND start_time BETWEEN to_timestamp($WIN0) AND to_timestamp($WIN1)")"

log "stopping the capture"
psql_q "SELECT capture_stop('$IFACE')" >/dev/null
for _ in $(seq 150); do
	IFS='|' read -r state _ <<<"$(status_row)"
	[[ "$state" == stopped ]] && break
	sleep 0.1
done
put capture.state_after_stop "$state"
put capture.status_after_stop "$(status_row)"
put capture.spans_window_after_stop "$(spans_in "$WIN0" "$WIN1")"
put capture.spans_table_after_stop "$(psql_q "SELECT count(*) FROM spans")"
# What the server said while the capture ran (warnings, errors, crashes).
put capture.server_log "$(tail -c +"$((LOG_OFFSET + 1))" "$PGDIR/server.log" | base64 -w0)"

if ((BENCH_THIRD_RUN)); then
	sleep "$BENCH_PAUSE"
	log "run 3: baseline again, no capture, ${BENCH_DURATION}s"
	wrk_run baseline2 "$BENCH_DURATION"
fi

# nginx writes its buffered access log when it exits.
kill -QUIT "$NGINX_PID" 2>/dev/null || true
for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
wait "$NGINX_PID" 2>/dev/null || true
NGINX_PID=""
for run in baseline promisc capture baseline2; do
	t0="$(awk -F'\t' -v k="$run.t0" '$1 == k { print $2 }' "$RESULTS")"
	t1="$(awk -F'\t' -v k="$run.t1" '$1 == k { print $2 }' "$RESULTS")"
	[[ -n "$t0" ]] || continue
	put "$run.access_log" "$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b + 0.5 { n++; if ($2 == 200) ok++ }
		END { print n + 0, ok + 0 }' "$NGINX_DIR/access.log" 2>/dev/null)"
done

# --------------------------------------------------------------------------
# summary, JSON, Markdown

JSON="$BENCH_RESULTS_DIR/capture_bench-$STAMP.json"
MD="$BENCH_RESULTS_DIR/capture_bench-$STAMP.md"
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

python3 - "$RESULTS" "$JSON" "$MD" <<'PY'
import base64, json, re, sys

tsv, json_path, md_path = sys.argv[1:4]
raw = {}
with open(tsv) as fh:
    for line in fh:
        k, _, v = line.rstrip("\n").partition("\t")
        raw[k] = v
g = raw.get
STATUS_COLS = ["state", "pid", "packets", "bytes", "spans_written", "spans_dropped",
               "events_dropped", "kernel_drops", "flow_table_full", "flows_tracked", "last_error"]


def status(s):
    if not s:
        return None
    vals = s.split("|", len(STATUS_COLS) - 1)
    out = dict(zip(STATUS_COLS, vals))
    for k in STATUS_COLS[1:-1]:
        if k in out:
            out[k] = int(out[k])
    out["last_error"] = out.get("last_error") or None
    return out


def unit(v, u):
    mult = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "us": 1e-3, "ms": 1, "s": 1e3,
            "m": 6e4, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
    return float(v) * mult.get(u, 1)


def parse_wrk(text):
    r = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        r["requests"] = int(m.group(1))
        r["seconds"] = unit(m.group(2), m.group(3)) / 1000.0
        r["bytes_read"] = int(unit(m.group(4), m.group(5)))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["requests_per_s"] = float(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = dict(zip(["connect", "read", "write", "timeout"],
                                  map(int, m.groups()))) if m else {
        "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Latency\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)\s+([\d.]+)(\w+)", text)
    if m:
        r["latency_avg_ms"] = round(unit(m.group(1), m.group(2)), 3)
        r["latency_max_ms"] = round(unit(m.group(5), m.group(6)), 3)
    for p in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(\w+)" % p, text, re.M)
        if m:
            r["latency_p%s_ms" % p] = round(unit(m.group(1), m.group(2)), 3)
    return r


clk = int(g("meta.clk_tck"))
runs = {}
for name in ("baseline", "promisc", "capture", "baseline2"):
    if not g(name + ".t0"):
        continue
    text = base64.b64decode(g(name + ".wrk_output")).decode("utf-8", "replace")
    run = parse_wrk(text)
    run["window"] = [float(g(name + ".t0")), float(g(name + ".t1"))]
    run["tcp_active_opens_pod1"] = int(g(name + ".active_opens"))
    run["tcp_attempt_fails_pod1"] = int(g(name + ".attempt_fails"))
    run["tcp_estab_resets_pod1"] = int(g(name + ".estab_resets"))
    run["tcp_passive_opens_pod2"] = int(g(name + ".passive_opens"))
    al = (g(name + ".access_log") or "0 0").split()
    run["nginx_access_log"] = {"lines": int(al[0]), "status_200": int(al[1])}
    b0, t0, s0, b1, t1, s1 = map(int, g(name + ".host_cpu").split())
    run["wrk_cpu_s"] = float(g(name + ".wrk_cpu_s"))
    run["nginx_cpu_s"] = int(g(name + ".nginx_ticks")) / clk
    run["cluster_cpu_s"] = int(g(name + ".cluster_ticks_run")) / clk
    run["host_softirq_s"] = (s1 - s0) / clk
    run["ksoftirqd_cpu_s"] = int(g(name + ".ksoftirqd_ticks")) / clk
    run["loadavg_before"] = g(name + ".loadavg_before")
    iw0, rs0, iw1, rs1 = map(int, g(name + ".irqs").split())
    run["host_irq_work_interrupts"] = iw1 - iw0
    run["host_reschedule_interrupts"] = rs1 - rs0
    run["host_cpu_busy_pct"] = round(100.0 * (b1 - b0) / max(1, t1 - t0), 1)
    runs[name] = run

cap = runs["capture"]
base = runs["baseline"]
w = (g("capture.worker_ticks") or "").split()
worker_cpu_s = (int(w[1]) - int(w[0])) / clk if len(w) == 2 else None
c0, c1 = map(int, g("capture.cluster_ticks").split())
cluster_cpu_s = (c1 - c0) / clk
# CPU per connection: wrk + nginx (their system time includes the packet path,
# bridge and socket filter, which run in softirq on their behalf) + ksoftirqd
# + the PostgreSQL cluster. For the capture run the cluster's share includes
# the drain after wrk ended. host_softirq_s is informational only: with tick
# accounting it overlaps the processes' system time.
for name, r in runs.items():
    pg = cluster_cpu_s if name == "capture" else r["cluster_cpu_s"]
    r["cpu_s_accounted"] = round(r["wrk_cpu_s"] + r["nginx_cpu_s"] + r["ksoftirqd_cpu_s"] + pg, 3)
    opens_n = r["tcp_active_opens_pod1"]
    r["cpu_us_per_connection"] = round(1e6 * r["cpu_s_accounted"] / opens_n, 1) if opens_n else None
spans = int(g("capture.spans_window"))
made = cap.get("requests", 0)
opens = cap["tcp_active_opens_pod1"]
q = g("capture.spans_quality").split("|")
quality = {
    "handshake_completed": int(q[0]), "mid_stream": int(q[1]), "status_error": int(q[2]),
    "src_not_pod1": int(q[3]), "response_bytes_seen": int(q[4]),
    "median_bytes_sent": int(q[5]), "median_bytes_received": int(q[6]),
    "median_packets": int(q[7]), "median_handshake_rtt_us": int(q[8]),
}
by_reason = dict(kv.split("=") for kv in g("capture.spans_by_reason").split() if "=" in kv)
by_reason = {k: int(v) for k, v in by_reason.items()}
st_before = status(g("capture.status_before"))
st_after = status(g("capture.status_after"))
st_stop = status(g("capture.status_after_stop"))

log_text = base64.b64decode(g("capture.server_log") or "").decode("utf-8", "replace")
interesting = [l for l in log_text.splitlines()
               if re.search(r"WARNING|ERROR|FATAL|PANIC|terminated by signal|ebpf_capture", l)]
problems = [l for l in interesting
            if re.search(r"WARNING|ERROR|FATAL|PANIC|terminated by signal|failed", l)]


def ratio(a, b):
    return round(a / b, 4) if b else None


thr_ratio = ratio(cap["requests_per_s"] or 0, base["requests_per_s"] or 0)
thr_ratio2 = None
if "baseline2" in runs:
    mean = (base["requests_per_s"] + runs["baseline2"]["requests_per_s"]) / 2
    thr_ratio2 = ratio(cap["requests_per_s"], mean)

result = {
    "meta": {k[5:]: g(k) for k in raw if k.startswith("meta.")},
    "runs": runs,
    "capture": {
        "connections_made_wrk_requests": made,
        "connections_made_tcp_active_opens": opens,
        "spans_recorded": spans,
        "spans_recorded_after_capture_stop": int(g("capture.spans_window_after_stop")),
        "spans_to_nginx_port_any_time": int(g("capture.spans_port_all")),
        "spans_not_pod1_to_nginx": int(g("capture.spans_other")),
        "spans_not_pod1_to_nginx_sample": base64.b64decode(g("capture.spans_other_sample") or "")
        .decode("utf-8", "replace").splitlines(),
        "spans_table_after_stop": int(g("capture.spans_table_after_stop")),
        "spans_duplicates": int(g("capture.spans_dupes")),
        "recorded_over_requests": ratio(spans, made),
        "recorded_over_tcp_opens": ratio(spans, opens),
        "spans_by_close_reason": by_reason,
        "span_quality": quality,
        "drained": g("capture.drained") == "1",
        "drain_seconds_after_wrk": float(g("capture.drain_seconds")),
        "worker_pid": int(g("capture.worker_pid")),
        "worker_cpu_s": worker_cpu_s,
        "worker_context_switches": int(g("capture.worker_ctx_switches")),
        "worker_cpu_ms_per_1000_spans": round(1e6 * worker_cpu_s / spans, 2)
        if worker_cpu_s is not None and spans else None,
        "worker_cpu_pct_of_one_core": round(100.0 * worker_cpu_s / float(g("capture.measure_seconds")), 1)
        if worker_cpu_s is not None else None,
        "cluster_cpu_s": round(cluster_cpu_s, 2),
        "measure_seconds": float(g("capture.measure_seconds")),
        "status_before": st_before,
        "status_after": st_after,
        "status_after_stop": st_stop,
        "state_after_stop": g("capture.state_after_stop"),
        "server_log_problems": problems[:50],
        "server_log_ebpf_capture": interesting[:50],
    },
    "throughput_ratio_capture_over_baseline": thr_ratio,
    "throughput_ratio_capture_over_mean_baselines": thr_ratio2,
}
base_cpu = [runs[n]["cpu_us_per_connection"] for n in ("baseline", "baseline2") if n in runs]
if cap["cpu_us_per_connection"] and all(base_cpu):
    result["cpu_per_connection_ratio_capture_over_baselines"] = round(
        cap["cpu_us_per_connection"] / (sum(base_cpu) / len(base_cpu)), 3)
# What the capture adds per connection: the extra CPU of the processes that
# carry the traffic (relative to the baselines), and PostgreSQL's CPU.
if opens and spans and all(base_cpu):
    b = [runs[n] for n in ("baseline", "baseline2") if n in runs]
    traffic = ("wrk_cpu_s", "nginx_cpu_s", "ksoftirqd_cpu_s")

    def per_conn(r):
        return sum(r[k] for k in traffic) / r["tcp_active_opens_pod1"] * 1e6

    result["capture_cost_us_per_connection"] = {
        "traffic_processes": round(per_conn(cap) - sum(per_conn(r) for r in b) / len(b), 1),
        "postgres": round(cluster_cpu_s / opens * 1e6, 1),
        "worker": round(worker_cpu_s / spans * 1e6, 1) if worker_cpu_s is not None else None}
if "baseline2" in runs:
    result["baseline_drift"] = ratio(runs["baseline2"]["requests_per_s"], base["requests_per_s"])
with open(json_path, "w") as fh:
    json.dump(result, fh, indent=2)
    fh.write("\n")

# ---- Markdown snippet
m = result["meta"]
names = [n for n in ("baseline", "promisc", "capture", "baseline2") if n in runs]
heads = {"baseline": "no capture", "promisc": "cni0 promiscuous, no capture",
         "capture": "capture on cni0", "baseline2": "no capture (again)"}


def fmt_int(v):
    return f"{v:,}" if isinstance(v, int) else "–"


def cell_spans(n):
    if n != "capture":
        return "–"
    return f"{spans:,} ({100.0 * spans / made:.1f} %)" if made else f"{spans:,}"


rows = [
    ("wrk requests (= connections)", lambda n: fmt_int(runs[n].get("requests"))),
    ("TCP connections opened (pod1)", lambda n: fmt_int(runs[n]["tcp_active_opens_pod1"])),
    ("requests/s", lambda n: f"{runs[n]['requests_per_s']:,.0f}"),
    ("throughput vs. first baseline", lambda n: f"{runs[n]['requests_per_s'] / base['requests_per_s']:.3f}"),
    ("CPU per connection (wrk+nginx+ksoftirqd+postgres)", lambda n: f"{runs[n]['cpu_us_per_connection']} µs"),
    ("capture CPU per connection: traffic path / PostgreSQL", lambda n: (
        "+{traffic_processes} µs / {postgres} µs".format(**result["capture_cost_us_per_connection"])
        if n == "capture" and "capture_cost_us_per_connection" in result else "–")),
    ("latency p50 / p99 (ms)", lambda n: f"{runs[n].get('latency_p50_ms', '–')} / {runs[n].get('latency_p99_ms', '–')}"),
    ("spans recorded (recorded / requests)", cell_spans),
    ("worker CPU per 1000 spans", lambda n: f"{result['capture']['worker_cpu_ms_per_1000_spans']} ms" if n == "capture" else "–"),
    ("events / kernel / flow-table / span drops", lambda n: (
        "{events_dropped} / {kernel_drops} / {flow_table_full} / {spans_dropped}".format(**st_after)
        if n == "capture" and st_after else "–")),
]
md = []
md.append(f"wrk {m['wrk']} `-t{m['threads']} -c{m['connections']} -d{m['duration']}s "
          f"-H 'Connection: close'` from pod1 against nginx {m['nginx']} (1 worker, "
          f"{m['body_bytes']}-byte body, keepalive_timeout 0) in pod2, across the bridge cni0; "
          f"PostgreSQL {m['postgres']}, Linux {m['kernel']}, {m['cpus']} CPUs ({m['cpu_model']}); "
          f"ebpf_capture {m['git']}, {m['stamp']}.")
md.append("")
md.append("| | " + " | ".join(heads[n] for n in names) + " |")
md.append("|---|" + "---|" * len(names))
for label, fn in rows:
    md.append(f"| {label} | " + " | ".join(fn(n) for n in names) + " |")
md_text = "\n".join(md) + "\n"
with open(md_path, "w") as fh:
    fh.write(md_text)

# ---- summary
c = result["capture"]
c_cluster = cluster_cpu_s
out = []
out.append("=" * 78)
out.append(f"ebpf_capture bench  {m['stamp']}  (git {m['git']}, kernel {m['kernel']}, {m['cpus']} CPUs)")
out.append(f"wrk -t{m['threads']} -c{m['connections']} -d{m['duration']}s -H 'Connection: close' {m['url']}")
out.append("-" * 78)
out.append(f"{'run':<12}{'requests':>10}{'req/s':>10}{'tcp opens':>11}{'srv accepts':>12}"
           f"{'nginx log':>10}{'sock err':>9}{'p50 ms':>8}{'p99 ms':>8}{'cpu%':>6}")
for n in names:
    r = runs[n]
    se = sum(r["socket_errors"].values())
    out.append(f"{n:<12}{r.get('requests', 0):>10}{r['requests_per_s']:>10.0f}"
               f"{r['tcp_active_opens_pod1']:>11}{r['tcp_passive_opens_pod2']:>12}"
               f"{r['nginx_access_log']['lines']:>10}{se:>9}"
               f"{r.get('latency_p50_ms', 0):>8}{r.get('latency_p99_ms', 0):>8}{r['host_cpu_busy_pct']:>6}")
out.append(f"{'CPU s':<12}{'wrk':>8}{'nginx':>8}{'ksoftirqd':>10}{'postgres':>9}{'total':>8}{'us/conn':>9}"
           f"{'IRQ-work/conn':>15}")
for n in names:
    r = runs[n]
    pg = c_cluster if n == "capture" else r["cluster_cpu_s"]
    out.append(f"{n:<12}{r['wrk_cpu_s']:>8.2f}{r['nginx_cpu_s']:>8.2f}{r['ksoftirqd_cpu_s']:>10.2f}"
               f"{pg:>9.2f}{r['cpu_s_accounted']:>8.2f}{r['cpu_us_per_connection']:>9}"
               f"{r['host_irq_work_interrupts'] / max(1, r['tcp_active_opens_pod1']):>15.3f}")
out.append("  (postgres for the capture run includes the drain after wrk; softirq work is in wrk/nginx"
           " system time;\n   IRQ-work = host-wide IWI interrupts, how a BPF ring buffer wakes its reader)")
out.append("load average (1/5/15 min) before each run: "
           + ", ".join(f"{n} {runs[n]['loadavg_before']}" for n in names))
out.append("-" * 78)
out.append(f"connections made (wrk requests)      {made}")
out.append(f"connections opened (pod1 TCP opens)  {opens}")
out.append(f"spans recorded in the window         {spans}   (after capture_stop: {c['spans_recorded_after_capture_stop']})")
out.append(f"recorded / made                      {100.0 * (c['recorded_over_requests'] or 0):.2f} %   "
           f"(recorded / TCP opens: {100.0 * (c['recorded_over_tcp_opens'] or 0):.2f} %)   target 100 %")
out.append(f"throughput capture / baseline        {thr_ratio}"
           + (f"   (/ mean of both baselines: {thr_ratio2}; drift baseline2/baseline: {result['baseline_drift']})"
              if thr_ratio2 is not None else "") + "   target >= 0.9")
cost = result.get("capture_cost_us_per_connection")
if cost:
    out.append(f"capture cost per connection          {cost['traffic_processes']:+.1f} us in wrk/nginx/ksoftirqd "
               f"(kernel path, filter, wake-ups) + {cost['postgres']:.1f} us in PostgreSQL "
               f"(worker {cost['worker']} us)")
if "cpu_per_connection_ratio_capture_over_baselines" in result:
    out.append(f"CPU per connection capture/baseline  {result['cpu_per_connection_ratio_capture_over_baselines']}"
               "   (wrk+nginx+ksoftirqd+postgres; robust to neighbours stealing CPU)")
out.append(f"worker CPU                           {c['worker_cpu_s']:.2f} s over {c['measure_seconds']:.1f} s "
           f"({c['worker_cpu_pct_of_one_core']} % of a core) = {c['worker_cpu_ms_per_1000_spans']} ms per 1000 spans")
out.append(f"worker context switches              {c['worker_context_switches']} "
           f"({c['worker_context_switches'] / spans if spans else 0:.2f} per span)")
out.append(f"whole cluster CPU (same interval)    {c['cluster_cpu_s']:.2f} s")
if st_after:
    out.append("capture_status after the drain       "
               f"state={st_after['state']} packets={st_after['packets']} spans_written={st_after['spans_written']} "
               f"flows_tracked={st_after['flows_tracked']}")
    out.append("  drops                              "
               f"events_dropped={st_after['events_dropped']} kernel_drops={st_after['kernel_drops']} "
               f"flow_table_full={st_after['flow_table_full']} spans_dropped={st_after['spans_dropped']}"
               + (f" last_error={st_after['last_error']!r}" if st_after['last_error'] else ""))
out.append(f"spans by close reason                {by_reason}")
out.append(f"span checks                          duplicates={c['spans_duplicates']} "
           f"not_pod1_to_nginx={c['spans_not_pod1_to_nginx']} "
           f"mid_stream={quality['mid_stream']} handshake_completed={quality['handshake_completed']} "
           f"status_error={quality['status_error']}")
out.append(f"                                     median bytes sent/received={quality['median_bytes_sent']}/"
           f"{quality['median_bytes_received']} packets={quality['median_packets']} "
           f"handshake_rtt={quality['median_handshake_rtt_us']} us")
out.append(f"drained                              {c['drained']} ({c['drain_seconds_after_wrk']} s after wrk ended); "
           f"state after capture_stop: {c['state_after_stop']}")
for l in c["spans_not_pod1_to_nginx_sample"][:10]:
    out.append("  other span: " + l)
out.append(f"server log problems during capture   {len(problems)}")
for l in problems[:10]:
    out.append("  " + l)
out.append("-" * 78)
out.append(f"JSON:     {json_path}")
out.append(f"Markdown: {md_path}")
out.append("=" * 78)
print("\n".join(out))
print()
print(md_text)
PY
