#!/usr/bin/env bash
# bench/open_connections_bench.sh - what the report of open connections
# costs the worker: `bash bench/open_connections_bench.sh`.
#
# A capture on cni0, then BENCH_OPEN connections from pod1 to pod2 held open
# (bench/hold_connections.py: one byte on each every BENCH_EVERY seconds, so
# none goes idle). Two windows of BENCH_DURATION seconds each, measured from
# /proc: the worker with ebpf_capture.open_connections_interval =
# BENCH_INTERVAL, then with 0 (the report off; the sweeps of the flow table
# every 250 ms and the keep-alive bytes go on as before). The difference, over
# the reports written (open_connections' inserted rows / BENCH_OPEN), is what
# one report costs the worker; over BENCH_OPEN, what a row costs. It also
# checks that every report held every connection.
#
# Settings (environment):
#   BENCH_OPEN         connections held open [10000]
#   BENCH_INTERVAL     open_connections_interval in the first window [1s]
#   BENCH_DURATION     seconds per window [30]
#   BENCH_EVERY        seconds between two bytes on one connection [10]
#   BENCH_SKIP_BUILD   1 = do not run make && make install [0]
#   BENCH_RESULTS_DIR  where the Markdown goes [bench/results]
#   EBPFC_NS           namespace prefix [ebpfcb]
#   BENCH_PG_PORT      port of the throw-away cluster [5497]
#   HOLD_PORT          port the holder listens on in pod2 [9000]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfcb}"
export EBPFC_PODS=2
BENCH_OPEN="${BENCH_OPEN:-10000}"
BENCH_INTERVAL="${BENCH_INTERVAL:-1s}"
BENCH_DURATION="${BENCH_DURATION:-30}"
BENCH_EVERY="${BENCH_EVERY:-10}"
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5497}"
HOLD_PORT="${HOLD_PORT:-9000}"
# What lib.sh expects of every benchmark (nginx is started, and not used).
BENCH_PERF=0
BENCH_PERF_KEEP=0
NGINX_PORT=8080
IFACE=cni0
BODY=ok
BENCH_NAME=open_connections_bench
WRK_ARGS=()
NGINX_KEEPALIVE=""
URL_PATH=/
STATUS_COLS_SQL="state, pid, packets, bytes, spans_written, spans_dropped, events_dropped,
	kernel_drops, flow_table_full, flows_tracked, payload_dropped, last_error"
# Connections live longer than a window: no idle span in between.
BENCH_PG_CONF="ebpf_capture.idle_timeout = '10min'
ebpf_capture.open_connections_interval = '$BENCH_INTERVAL'"

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"

bench_require_root
bench_check_uint BENCH_OPEN BENCH_DURATION BENCH_PG_PORT HOLD_PORT
((BENCH_OPEN > 0 && BENCH_DURATION > 0)) || die "BENCH_OPEN and BENCH_DURATION must be positive"
[[ "$BENCH_EVERY" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_EVERY must be a number of seconds"
[[ "$BENCH_INTERVAL" =~ ^[1-9][0-9]*(ms|s)$ ]] || die "BENCH_INTERVAL must be like 500ms or 1s"

bench_prepare
bench_build
bench_setup

HOLDER="$REPO/bench/hold_connections.py"
ip netns exec "$(topo_pod_ns 2)" /usr/bin/python3 "$HOLDER" serve --bind "$SERVER_IP" \
	--port "$HOLD_PORT" >"$WORK/serve.log" 2>&1 &
BENCH_BG_PID=$!
for _ in $(seq 50); do
	grep -q listening "$WORK/serve.log" && break
	sleep 0.1
done
grep -q listening "$WORK/serve.log" || die "the holder did not listen: $(cat "$WORK/serve.log")"

bench_capture_start

log "opening $BENCH_OPEN connections $CLIENT_IP -> $SERVER_IP:$HOLD_PORT"
ip netns exec "$(topo_pod_ns 1)" /usr/bin/python3 "$HOLDER" connect --host "$SERVER_IP" \
	--port "$HOLD_PORT" --count "$BENCH_OPEN" --every "$BENCH_EVERY" >"$WORK/connect.log" 2>&1 &
CLIENT_PID=$!
BENCH_BG_PID="$BENCH_BG_PID $CLIENT_PID"
for _ in $(seq 600); do
	grep -q '^ready' "$WORK/connect.log" && break
	kill -0 "$CLIENT_PID" 2>/dev/null || die "the client exited: $(cat "$WORK/connect.log")"
	sleep 0.1
done
grep -q "^ready $BENCH_OPEN\$" "$WORK/connect.log" || die "the client is not ready: $(cat "$WORK/connect.log")"

listed() {
	psql_q "SELECT count(*) FROM open_connections
	        WHERE interface = '$IFACE' AND dst_port = $HOLD_PORT AND dst_addr = '$SERVER_IP'"
}
inserted() { psql_q "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'open_connections'"; }

log "waiting for a report that lists all $BENCH_OPEN"
for _ in $(seq 120); do
	(($(listed) == BENCH_OPEN)) && break
	sleep 0.5
done
(($(listed) == BENCH_OPEN)) || die "open_connections lists $(listed) of $BENCH_OPEN connections"

# window NAME: worker CPU ticks and rows inserted into open_connections over
# BENCH_DURATION seconds; the smallest count of our connections in a report.
window() {
	local name="$1" w0 w1 i0 i1 least="$BENCH_OPEN" n
	w0="$(proc_ticks "$WORKER_PID")"
	i0="$(inserted)"
	for _ in $(seq "$BENCH_DURATION"); do
		sleep 1
		n="$(listed)"
		((n < least)) && least=$n
	done
	w1="$(proc_ticks "$WORKER_PID")"
	i1="$(inserted)"
	put "$name.worker_ticks" "$((w1 - w0))"
	put "$name.rows_inserted" "$((i1 - i0))"
	put "$name.least_listed" "$least"
	log "$name: worker $((w1 - w0)) ticks, $((i1 - i0)) rows inserted, reports listed >= $least"
}

log "window 1: report every $BENCH_INTERVAL, ${BENCH_DURATION}s"
window report
log "window 2: report off, ${BENCH_DURATION}s"
psql_q "ALTER SYSTEM SET ebpf_capture.open_connections_interval = 0" >/dev/null
psql_q "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 100); do
	(($(listed) == 0)) && break
	sleep 0.1
done
(($(listed) == 0)) || die "the report is off and open_connections still lists $(listed)"
window off
put capture.status_after "$(status_row)"

# --------------------------------------------------------------------------
# report

R="$(got report.worker_ticks)"
O="$(got off.worker_ticks)"
ROWS="$(got report.rows_inserted)"
OFF_ROWS="$(got off.rows_inserted)"
LEAST="$(got report.least_listed)"
read -r REPORTS PER_REPORT PER_ROW < <(awk -v r="$R" -v o="$O" -v rows="$ROWS" -v n="$BENCH_OPEN" \
	-v hz="$CLK_TCK" 'BEGIN {
		reports = rows / n
		extra_ms = (r - o) * 1000 / hz
		per_report = reports > 0 ? extra_ms / reports : 0
		per_row = rows > 0 ? extra_ms * 1000 / rows : 0
		printf "%.1f %.1f %.2f\n", reports, per_report, per_row }')
mkdir -p "$BENCH_RESULTS_DIR"
OUT="$BENCH_RESULTS_DIR/$BENCH_NAME-$STAMP.md"
{
	echo "# open_connections_bench $STAMP ($GIT_DESC)"
	echo
	echo "$BENCH_OPEN connections held open, one byte each every ${BENCH_EVERY}s; windows of ${BENCH_DURATION}s; $(nproc) CPUs, $(uname -r)"
	echo
	echo "| | report every $BENCH_INTERVAL | report off |"
	echo "|---|---|---|"
	echo "| worker CPU | $(awk -v t="$R" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f s", t / hz }') | $(awk -v t="$O" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f s", t / hz }') |"
	echo "| rows written to open_connections | $ROWS ($REPORTS reports) | $OFF_ROWS |"
	echo "| fewest of the $BENCH_OPEN in a report read | $LEAST | – |"
	echo "| worker CPU per report, over the report off | $PER_REPORT ms ($PER_ROW µs per row) | – |"
	echo
	echo "status after: $(got capture.status_after)"
} >"$OUT"
cat "$OUT"
((LEAST == BENCH_OPEN)) || die "a report read while measuring listed $LEAST of $BENCH_OPEN connections"
((OFF_ROWS == 0)) || die "rows were written with the report off"
