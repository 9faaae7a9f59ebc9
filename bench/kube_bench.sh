#!/usr/bin/env bash
# kube_bench.sh - what does naming spans from the Kubernetes cache cost?
#
# One run, one capture, short connections (wrk "Connection: close" from pod1
# to nginx in pod2), three measured runs side by side:
#
#   1. metadata off  - no Kubernetes API configured
#   2. metadata on   - the capture follows a fake API server (tests/kube) that
#                      holds BENCH_PODS pods, pod1 and pod2 among them
#   3. metadata off  - the API settings reset again (drift check)
#
# and reports spans written per second and the worker's CPU per span in each,
# the share of spans of run 2 named at both ends, and the worker's resident
# memory before and after the cache filled (the cache's footprint in the
# worker). Results go to bench/results/kube_bench-<UTC>.txt. Nothing here is a
# test: it fails only on a broken setup.
#
# Usage (as root):  bench/kube_bench.sh
#
# Environment (defaults in brackets): BENCH_DURATION [10], BENCH_CONNECTIONS
# [64], BENCH_THREADS [2], BENCH_PODS [10000], BENCH_SKIP_BUILD [0],
# EBPFC_NS [ebpfkb], BENCH_PG_PORT [5495], NGINX_PORT [8080].
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EBPFC_NS="${EBPFC_NS:-ebpfkb}"
export EBPFC_PODS=2
BENCH_DURATION="${BENCH_DURATION:-10}"
BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-64}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_PODS="${BENCH_PODS:-10000}"
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF=0
BENCH_PERF_KEEP=0
BENCH_PG_CONF=""
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5495}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
BODY="ebpf_capture bench: hello from pod2"
BENCH_NAME=kube_bench
WRK_ARGS=(-H 'Connection: close')
NGINX_KEEPALIVE="keepalive_timeout 0;"
URL_PATH=/

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_check_uint BENCH_DURATION BENCH_CONNECTIONS BENCH_THREADS BENCH_PODS BENCH_PG_PORT NGINX_PORT

bench_prepare
bench_build
bench_setup
OUT="$BENCH_RESULTS_DIR/$BENCH_NAME-$STAMP.txt"

log "fake Kubernetes API with $BENCH_PODS pods in $(topo_node_ns)"
mkdir -p "$WORK/kube"
chmod 0755 "$WORK/kube"
cat >"$WORK/kube_api.py" <<PY
import json, sys, time
sys.path.insert(0, "$REPO/tests/kube")
from fake_kube_api import FakeKubeAPI
api = FakeKubeAPI("$WORK/kube").start()
api.add_replicaset("web-5d8f9c7b6", namespace="shop", deployment="web", uid="rs-web-1")
for i in range($BENCH_PODS - 2):
    api.add_pod("filler-%d" % i, namespace="ns%d" % (i % 50),
                ip="10.%d.%d.%d" % (100 + i // 65536, (i // 256) % 256, i % 256),
                node="node-%d" % (i % 100))
api.add_pod("loadgen", namespace="tools", ip="$CLIENT_IP", node="node-a")
api.add_pod("web-5d8f9c7b6-x2x9k", namespace="shop", ip="$SERVER_IP", node="node-a",
            owner=("ReplicaSet", "web-5d8f9c7b6", "rs-web-1"),
            labels={"app": "web", "pod-template-hash": "5d8f9c7b6"})
print(json.dumps({"url": api.url, "ca_file": api.ca_file, "token_file": api.token_file}),
      flush=True)
while True:
    time.sleep(3600)
PY
ip netns exec "$(topo_node_ns)" /usr/bin/python3 "$WORK/kube_api.py" >"$WORK/kube.json" 2>"$WORK/kube.err" &
KUBE_PID=$!
trap 'kill "$KUBE_PID" 2>/dev/null || true; bench_cleanup' EXIT
for _ in $(seq 600); do
	[[ -s "$WORK/kube.json" ]] && break
	kill -0 "$KUBE_PID" 2>/dev/null || die "fake API exited: $(cat "$WORK/kube.err")"
	sleep 0.1
done
[[ -s "$WORK/kube.json" ]] || die "fake API did not start"
chmod -R a+rX "$WORK/kube"
KUBE_URL="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])' <"$WORK/kube.json")"
KUBE_CA="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ca_file"])' <"$WORK/kube.json")"
KUBE_TOKEN="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["token_file"])' <"$WORK/kube.json")"

bench_capture_start
worker_ticks() { awk '{ print $14 + $15 }' "/proc/$WORKER_PID/stat"; }
worker_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$WORKER_PID/status"; }
written() { psql_q "SELECT spans_written FROM capture_status() WHERE interface = '$IFACE'"; }

# measure NAME: one wrk run; prints spans/s, worker us per span, spans written.
measure() {
	local name="$1" n0 n1 c0 c1 t0 t1 prev
	n0="$(written)"
	c0="$(worker_ticks)"
	t0="$(now_s)"
	pod_exec 1 wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${BENCH_DURATION}s" \
		"${WRK_ARGS[@]}" "$URL" >"$WORK/wrk-$name.txt" 2>&1
	# wait for the last spans of the run to be written (the count stops moving)
	prev=-1
	for _ in $(seq 100); do
		n1="$(written)"
		[[ "$n1" == "$prev" ]] && break
		prev="$n1"
		sleep 0.5
	done
	t1="$(now_s)"
	c1="$(worker_ticks)"
	awk -v n="$((n1 - n0))" -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v d="$BENCH_DURATION" \
		-v name="$name" -v req="$(awk '/requests in/ { print $1 }' "$WORK/wrk-$name.txt")" \
		'BEGIN { printf "%-14s wrk requests %8d   spans written %8d   spans/s %8.0f   worker %5.2f us/span\n",
		         name, req, n, n / d, c * 1e6 / hz / (n > 0 ? n : 1) }'
}

{
	echo "kube_bench $STAMP: $BENCH_PODS pods, wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d${BENCH_DURATION}s Connection: close"
	measure metadata-off
	rss0="$(worker_rss_kb)"
	psql_q "ALTER SYSTEM SET ebpf_capture.kube_api_url = '$KUBE_URL'" >/dev/null
	psql_q "ALTER SYSTEM SET ebpf_capture.kube_ca_file = '$KUBE_CA'" >/dev/null
	psql_q "ALTER SYSTEM SET ebpf_capture.kube_token_file = '$KUBE_TOKEN'" >/dev/null
	psql_q "SELECT pg_reload_conf()" >/dev/null
	t0="$(now_s)"
	for _ in $(seq 600); do
		st="$(psql_q "SELECT metadata_state || ' ' || pods_known FROM capture_status()")"
		[[ "$st" == "synced $BENCH_PODS" ]] && break
		sleep 0.1
	done
	t1="$(now_s)"
	rss1="$(worker_rss_kb)"
	echo "metadata       $st after $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; worker RSS $rss0 kB -> $rss1 kB (+$((rss1 - rss0)) kB)"
	win0="$(now_s)"
	measure metadata-on
	echo "named spans    $(psql_q "SELECT count(*) FILTER (WHERE src_pod = 'loadgen' AND dst_workload = 'web')
		|| ' of ' || count(*) FROM spans WHERE protocol = 'tcp' AND dst_port = $NGINX_PORT
		AND start_time >= to_timestamp($win0)")"
	echo "sample span    $(psql_q "SELECT concat_ws(' ', src_addr, src_pod, src_workload, dst_addr, dst_pod,
		dst_workload, dst_workload_kind) FROM spans WHERE protocol = 'tcp' AND dst_port = $NGINX_PORT
		AND start_time >= to_timestamp($win0) LIMIT 1")"
	echo "pods table     $(psql_q "SELECT count(*) FROM pods") rows; $(psql_q "SELECT string_agg(name || ' ' || ips::text
		|| ' ' || coalesce(workload, '-'), '; ') FROM pods WHERE name IN ('loadgen', 'web-5d8f9c7b6-x2x9k')")"
	for g in kube_api_url kube_ca_file kube_token_file; do
		psql_q "ALTER SYSTEM RESET ebpf_capture.$g" >/dev/null
	done
	psql_q "SELECT pg_reload_conf()" >/dev/null
	sleep 1
	measure metadata-off-2
	echo "status         $(psql_q "SELECT metadata_state, spans_dropped, events_dropped, payload_dropped FROM capture_status()")"
} | tee "$OUT"
log "results: $OUT"
