#!/usr/bin/env bash
# pg_bench.sh - what the capture of PostgreSQL's wire protocol costs, and
# whether it sees every query: pgbench -S (select only, one query per
# transaction) from pod1 against a PostgreSQL server in pod2, in windows of
# PG_WINDOW seconds with the capture off (A) and on (B), in pairs ordered
# A-B, B-A, A-B, ... so that a steady drift cancels.
#
# Reported, as medians over the pairs: the throughput ratio (pgbench's tps
# with the capture over its tps without), the recall (postgresql spans of a
# capture window over pgbench's transactions in it: pgbench's own count), and
# the worker's CPU per span (utime+stime of the worker over the spans).
# pgbench's connections are made inside each window (-C is not used: one
# connection per client for the window), so every window's connections are
# seen from their start.
#
# Nothing here is a test: the script fails only on a broken setup.
#
# Usage (as root):  bench/pg_bench.sh [-h]
#
# Environment (defaults in brackets):
#   PG_PAIRS          pairs of windows [6]
#   PG_WINDOW         seconds per window [8]
#   PG_CLIENTS        pgbench clients [8]
#   PG_MODE           pgbench -M: simple, extended or prepared [prepared]
#   PG_SCALE          pgbench -i scale [5]
#   BENCH_STOCK       1 = PostgreSQL's default settings for the capturing cluster [1]
#   BENCH_SKIP_BUILD  1 = no make && make install [0]
#   BENCH_PG_CONF     extra postgresql.conf lines of the capturing cluster []
#   BENCH_RESULTS_DIR where the results go [bench/results]
#   EBPFC_NS, BENCH_PG_PORT as in capture_bench.sh; EBPFC_DESTDIR as in lib.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfcp}"
export EBPFC_PODS=2
PG_PAIRS="${PG_PAIRS:-6}"
PG_WINDOW="${PG_WINDOW:-8}"
PG_CLIENTS="${PG_CLIENTS:-8}"
PG_MODE="${PG_MODE:-prepared}"
PG_SCALE="${PG_SCALE:-5}"
BENCH_DURATION="$PG_WINDOW"
BENCH_CONNECTIONS=1
BENCH_THREADS=1
BENCH_PAUSE=0
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF=0
BENCH_PERF_KEEP=0
BENCH_DRAIN_TIMEOUT=60
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5496}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
BODY="ebpf_capture bench"
BENCH_NAME=pg_bench
WRK_ARGS=()
NGINX_KEEPALIVE="keepalive_timeout 0;"
URL_PATH=/
STATUS_COLS_SQL="state, coalesce(pid, 0), packets, bytes, spans_written, spans_dropped,
	events_dropped, kernel_drops, flow_table_full, flows_tracked, payload_dropped,
	postgresql_connections, postgresql_spans, postgresql_lost, coalesce(last_error, '')"
POD_PG_PORT=5432
QUERY_TEXT='SELECT abalance FROM pgbench_accounts WHERE aid = $1'
[[ "$PG_MODE" == simple ]] && QUERY_TEXT='SELECT abalance FROM pgbench_accounts WHERE aid = ?'

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"
bench_require_root
bench_check_uint PG_PAIRS PG_WINDOW PG_CLIENTS PG_SCALE BENCH_PG_PORT
[[ "$PG_MODE" =~ ^(simple|extended|prepared)$ ]] || die "PG_MODE must be simple, extended or prepared"

bench_prepare
bench_build
bench_setup

# The measured server: a second cluster in pod2.
POD_PG="$WORK/podpg"
mkdir -p "$POD_PG"
chown postgres:postgres "$POD_PG"
runuser -u postgres -- "$PG_BINDIR/initdb" -D "$POD_PG/data" -A trust -U postgres --no-sync \
	>/dev/null || die "initdb failed"
cat >>"$POD_PG/data/postgresql.conf" <<EOF
listen_addresses = '*'
unix_socket_directories = '$POD_PG'
max_connections = 100
EOF
echo "host all all 0.0.0.0/0 trust" >>"$POD_PG/data/pg_hba.conf"
ip netns exec "$(topo_pod_ns 2)" runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$POD_PG/data" \
	-l "$POD_PG/log" -w -o "-p $POD_PG_PORT" start >/dev/null || die "the pod's server did not start"
stop_pod_pg() {
	runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$POD_PG/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap 'stop_pod_pg; bench_cleanup' EXIT
pod_exec 1 env PGSSLMODE=disable "$PG_BINDIR/pgbench" -i -q -s "$PG_SCALE" -h "$SERVER_IP" -p "$POD_PG_PORT" \
	-U postgres postgres >/dev/null 2>&1 || die "pgbench -i failed"

put meta.mode "$PG_MODE"
put meta.clients "$PG_CLIENTS"
put meta.window "$PG_WINDOW"
put meta.pairs "$PG_PAIRS"

# run_window NAME: pgbench for PG_WINDOW seconds; records tps, transactions
# and the window's bounds.
run_window() {
	local name="$1" out tps tx
	put "$name.t0" "$(now_s)"
	out="$(pod_exec 1 env PGSSLMODE=disable "$PG_BINDIR/pgbench" -S -n -M "$PG_MODE" -c "$PG_CLIENTS" -j 2 \
		-T "$PG_WINDOW" -h "$SERVER_IP" -p "$POD_PG_PORT" -U postgres postgres 2>&1)" ||
		die "pgbench failed: $out"
	put "$name.t1" "$(now_s)"
	tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out")"
	tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")"
	[[ -n "$tps" && -n "$tx" ]] || die "no tps in pgbench's output: $out"
	put "$name.tps" "$tps"
	put "$name.transactions" "$tx"
}

window_spans() {
	psql_q "SELECT count(*) FROM spans WHERE protocol = 'postgresql'
	        AND start_time BETWEEN to_timestamp($(got "$1.t0")) AND to_timestamp($(got "$1.t1"))
	        AND attributes->>'db.query.text' IN ('$QUERY_TEXT', '$QUERY_TEXT;')"
}
bench_protocol_pairs pg_bench "$PG_PAIRS" tps transactions
