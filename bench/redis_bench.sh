#!/usr/bin/env bash
# redis_bench.sh - what the capture of Redis's protocol costs, and whether it
# sees every command: redis-benchmark -t set,get -P REDIS_PIPELINE (pipelined)
# from pod1 against a redis-server in pod2, in windows of REDIS_REQUESTS
# requests per command with the capture off (A) and on (B), in pairs ordered
# A-B, B-A, A-B, ... so that a steady drift cancels.
#
# Reported, as medians over the pairs: the throughput ratio (redis-benchmark's
# requests per second with the capture over without; per window the SET and
# GET rates' harmonic mean, the rate of the window's requests), the recall
# (SET and GET spans of a capture window over the SET and GET calls the
# server counted in it: INFO commandstats after CONFIG RESETSTAT), and the
# worker's CPU per span (utime+stime of the worker over the spans).
# redis-benchmark's connections are made inside each window, so every
# window's connections are seen from their start.
#
# Nothing here is a test: the script fails only on a broken setup.
#
# Usage (as root):  bench/redis_bench.sh [-h]
#
# Environment (defaults in brackets):
#   REDIS_PAIRS       pairs of windows [6]
#   REDIS_REQUESTS    requests per command per window (redis-benchmark -n) [200000]
#   REDIS_CLIENTS     redis-benchmark clients (-c) [8]
#   REDIS_PIPELINE    commands per pipeline (-P) [16]
#   BENCH_STOCK       1 = PostgreSQL's default settings for the capturing cluster [1]
#   BENCH_SKIP_BUILD  1 = no make && make install [0]
#   BENCH_PG_CONF     extra postgresql.conf lines of the capturing cluster []
#   BENCH_RESULTS_DIR where the results go [bench/results]
#   EBPFC_NS, BENCH_PG_PORT as in capture_bench.sh; EBPFC_DESTDIR as in lib.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfcr}"
export EBPFC_PODS=2
REDIS_PAIRS="${REDIS_PAIRS:-6}"
REDIS_REQUESTS="${REDIS_REQUESTS:-200000}"
REDIS_CLIENTS="${REDIS_CLIENTS:-8}"
REDIS_PIPELINE="${REDIS_PIPELINE:-16}"
BENCH_DURATION=1
BENCH_CONNECTIONS=1
BENCH_THREADS=1
BENCH_PAUSE=0
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF=0
BENCH_PERF_KEEP=0
BENCH_DRAIN_TIMEOUT=60
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5497}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
BODY="ebpf_capture bench"
BENCH_NAME=redis_bench
WRK_ARGS=()
NGINX_KEEPALIVE="keepalive_timeout 0;"
URL_PATH=/
STATUS_COLS_SQL="state, coalesce(pid, 0), packets, bytes, spans_written, spans_dropped,
	events_dropped, kernel_drops, flow_table_full, flows_tracked, payload_dropped,
	redis_connections, redis_spans, redis_lost, coalesce(last_error, '')"
POD_REDIS_PORT=6379

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"
bench_require_root
bench_check_uint REDIS_PAIRS REDIS_REQUESTS REDIS_CLIENTS REDIS_PIPELINE BENCH_PG_PORT
command -v redis-server >/dev/null || die "redis-server is not installed (tests/install-deps.sh)"

bench_prepare
bench_build
bench_setup

# The measured server: redis-server in pod2, no persistence.
POD_REDIS="$WORK/podredis"
mkdir -p "$POD_REDIS"
ip netns exec "$(topo_pod_ns 2)" redis-server --port "$POD_REDIS_PORT" --bind 0.0.0.0 \
	--protected-mode no --save "" --appendonly no --daemonize yes \
	--pidfile "$POD_REDIS/redis.pid" --dir "$POD_REDIS" --logfile "$POD_REDIS/log" ||
	die "redis-server did not start"
stop_pod_redis() {
	[[ -f "$POD_REDIS/redis.pid" ]] && kill "$(cat "$POD_REDIS/redis.pid")" 2>/dev/null || true
}
trap 'stop_pod_redis; bench_cleanup' EXIT
for _ in $(seq 50); do
	[[ "$(pod_exec 1 redis-cli -h "$SERVER_IP" -p "$POD_REDIS_PORT" PING 2>/dev/null)" == PONG ]] && break
	sleep 0.1
done

put meta.requests "$REDIS_REQUESTS"
put meta.clients "$REDIS_CLIENTS"
put meta.pipeline "$REDIS_PIPELINE"
put meta.pairs "$REDIS_PAIRS"

rcli() { pod_exec 1 redis-cli -h "$SERVER_IP" -p "$POD_REDIS_PORT" "$@"; }

# run_window NAME: redis-benchmark SET and GET; records the rate, the
# server's count of SET and GET calls and the window's bounds.
run_window() {
	local name="$1" out rps calls
	rcli CONFIG RESETSTAT >/dev/null
	put "$name.t0" "$(now_s)"
	out="$(pod_exec 1 redis-benchmark -h "$SERVER_IP" -p "$POD_REDIS_PORT" -t set,get \
		-n "$REDIS_REQUESTS" -c "$REDIS_CLIENTS" -P "$REDIS_PIPELINE" -r 100000 -q 2>&1)" ||
		die "redis-benchmark failed: $out"
	put "$name.t1" "$(now_s)"
	# "SET: 123456.79 requests per second, p50=..." (carriage returns between updates)
	rps="$(tr '\r' '\n' <<<"$out" | python3 -c '
import re, sys
rates = {}
for line in sys.stdin:
    m = re.match(r"^(SET|GET): ([0-9.]+) requests per second", line.strip())
    if m:
        rates[m.group(1)] = float(m.group(2))
if len(rates) == 2:
    print("%.1f" % (2 / (1 / rates["SET"] + 1 / rates["GET"])))
')"
	[[ -n "$rps" ]] || die "no rates in redis-benchmark's output: $out"
	calls="$(rcli INFO commandstats | tr -d '\r' |
		sed -n 's/^cmdstat_\(set\|get\):calls=\([0-9]*\),.*/\2/p' | paste -sd+ | bc)"
	put "$name.rps" "$rps"
	put "$name.calls" "$calls"
}

window_spans() {
	psql_q "SELECT count(*) FROM spans WHERE protocol = 'redis' AND name IN ('SET', 'GET')
	        AND start_time BETWEEN to_timestamp($(got "$1.t0")) AND to_timestamp($(got "$1.t1"))"
}
bench_protocol_pairs redis_bench "$REDIS_PAIRS" rps calls
