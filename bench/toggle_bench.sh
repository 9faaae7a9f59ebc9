#!/usr/bin/env bash
# toggle_bench.sh - what does a capture cost the traffic, measured without the
# drift between runs?
#
# capture_bench.sh compares 10-second runs taken a minute apart. On a shared
# two-CPU machine two such baselines differ by up to 10 %, so a single run
# cannot tell a 2 % cost from noise. Here wrk (pod1) runs against nginx (pod2)
# without a pause, and something is switched under it: windows of
# TOGGLE_WINDOW seconds, in pairs ordered A-B, B-A, A-B, ... so that a steady
# drift cancels. Each window starts TOGGLE_SETTLE seconds after the switch.
#
# TOGGLE_MODE=capture (the default) switches the capture on and off
# (capture_start / capture_stop, the real thing): A = off, B = on; reported:
# each pair's rate with capture over its rate without, and the worker's CPU
# per span (or per connection) in the windows with capture.
#
# TOGGLE_MODE=layout keeps the capture on and switches the spans table it
# writes into: A = the partitioned spans (the shipped table: time partitions,
# routed by the worker, b-trees on start_time and trace_id), B = another
# layout, swapped in by renaming (TOGGLE_LAYOUT_B):
#   plain     an unpartitioned table with the same columns and indexes (the
#             0.1 layout)
#   brin      partitioned the same way, BRIN instead of the b-tree on start_time
#   no_trace  partitioned the same way, no index on trace_id
# Reported: the worker's CPU per span and the spans written per second in
# each, and their ratio.
#
# TOGGLE_MODE=export keeps the capture on and switches the OTLP export: A =
# off, B = on (ebpf_capture.otlp_endpoint set, reloaded), to a receiver on the
# node namespace's loopback that reads each request and answers 200 (an nginx:
# what a collector does with the spans is not the capture's cost). Reported:
# the throughput with export over without, the worker's CPU per span in each,
# the exporter's own CPU per exported span (otlp_status().cpu_us: encoding,
# the outbox, sending), the spans exported, and the recall of each phase
# (spans that start in a window over what the load did in it; keepalive:
# HTTP spans over nginx's requests, short: tcp spans over connections).
# TOGGLE_EXPORT_CONF: extra otlp settings for the run, one per line, e.g.
# "ebpf_capture.otlp_compression = 'none'".
#
# TOGGLE_LOAD=short (the default) makes wrk open a connection per request and
# counts connections (pod1's TcpActiveOpens); TOGGLE_LOAD=keepalive keeps
# wrk's connections open and counts the requests nginx served (its
# stub_status).
#
# TOGGLE_CONTENTION=N runs N busy loops on the machine for the whole run (a
# node's pods competing with the worker for the CPUs).
#
# Completeness is not measured here (connections cross the switches): that is
# capture_bench.sh's and http_bench.sh's job. Nothing here is a test: the
# script fails only on a broken setup, never on a figure.
#
# Usage (as root, from anywhere):  bench/toggle_bench.sh [-h]
#
# Environment (defaults in brackets):
#   TOGGLE_MODE        capture, layout or export [capture]
#   TOGGLE_EXPORT_CONF extra settings of the export (TOGGLE_MODE=export) []
#   TOGGLE_LAYOUT_B    plain, brin or no_trace (TOGGLE_MODE=layout) [plain]
#   TOGGLE_LOAD        short or keepalive [short]
#   TOGGLE_PAIRS       pairs of windows [12]
#   TOGGLE_WINDOW      seconds measured per window [5]
#   TOGGLE_SETTLE      seconds between a switch and its window [2]
#   TOGGLE_CONTENTION  busy loops competing for the CPUs [0]
#   BENCH_CONNECTIONS  wrk connections [64]
#   BENCH_THREADS      wrk threads [2]
#   BENCH_STOCK        1 = PostgreSQL's default settings, 0 = the tests' [1]
#   BENCH_SKIP_BUILD   1 = do not run make && make install [0]
#   BENCH_PG_CONF      extra postgresql.conf lines, e.g. "ebpf_capture.http = off" []
#   BENCH_RESULTS_DIR  where the JSON/Markdown go [bench/results]
#   EBPFC_NS, BENCH_PG_PORT, NGINX_PORT as in capture_bench.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfcb}"
export EBPFC_PODS=2
TOGGLE_MODE="${TOGGLE_MODE:-capture}"
TOGGLE_LAYOUT_B="${TOGGLE_LAYOUT_B:-plain}"
TOGGLE_LOAD="${TOGGLE_LOAD:-short}"
TOGGLE_CONTENTION="${TOGGLE_CONTENTION:-0}"
TOGGLE_PAIRS="${TOGGLE_PAIRS:-12}"
TOGGLE_WINDOW="${TOGGLE_WINDOW:-5}"
TOGGLE_SETTLE="${TOGGLE_SETTLE:-2}"
BENCH_DURATION="$TOGGLE_WINDOW"
BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-64}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_PAUSE=0
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF=0
BENCH_PERF_KEEP=0
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5497}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
BODY="ebpf_capture bench: hello from pod2"

BENCH_NAME=toggle_bench
case "$TOGGLE_LOAD" in
short)
	WRK_ARGS=(-H 'Connection: close')
	NGINX_KEEPALIVE="keepalive_timeout 0;"
	;;
keepalive)
	WRK_ARGS=()
	NGINX_KEEPALIVE="keepalive_timeout 65; keepalive_requests 1000000;"
	;;
*) echo "TOGGLE_LOAD must be short or keepalive" >&2 && exit 2 ;;
esac
[[ "$TOGGLE_MODE" == capture || "$TOGGLE_MODE" == layout || "$TOGGLE_MODE" == export ]] ||
	{ echo "TOGGLE_MODE must be capture, layout or export" >&2 && exit 2; }
TOGGLE_EXPORT_CONF="${TOGGLE_EXPORT_CONF:-}"
URL_PATH=/

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"

bench_require_root
bench_check_uint TOGGLE_PAIRS TOGGLE_WINDOW TOGGLE_SETTLE TOGGLE_CONTENTION BENCH_CONNECTIONS \
	BENCH_THREADS BENCH_PG_PORT NGINX_PORT
((TOGGLE_PAIRS > 0 && TOGGLE_WINDOW > 0 && BENCH_CONNECTIONS >= BENCH_THREADS && BENCH_THREADS > 0)) ||
	die "TOGGLE_PAIRS, TOGGLE_WINDOW and BENCH_THREADS must be positive, BENCH_CONNECTIONS >= BENCH_THREADS"

bench_prepare
bench_build
bench_setup

# wait_state STATE: capture_status() of IFACE reaches STATE within 15 s.
wait_state() {
	local state=""
	for _ in $(seq 150); do
		IFS='|' read -r state _ <<<"$(status_row)"
		[[ "$state" == "$1" ]] && return 0
		sleep 0.1
	done
	die "capture did not reach '$1': $(status_row)"
}

switch_on() {
	psql_q "SELECT capture_start('$IFACE')" >/dev/null
	wait_state running
	IFS='|' read -r _ WORKER_PID _ <<<"$(status_row)"
}

switch_off() {
	psql_q "SELECT capture_stop('$IFACE')" >/dev/null
	wait_state stopped
	WORKER_PID=""
}

# The layouts of TOGGLE_MODE=layout: `spans` is the shipped partitioned
# table (A) or the TOGGLE_LAYOUT_B one (B), swapped by renaming. A partitioned
# B gets partitions of its own for the hours of the run.
LAYOUT=A
setup_layouts() {
	case "$TOGGLE_LAYOUT_B" in
	plain)
		psql_q "CREATE TABLE spans_b (LIKE spans INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
		        CREATE INDEX ON spans_b (start_time); CREATE INDEX ON spans_b (trace_id);" >/dev/null
		;;
	brin | no_trace)
		psql_q "CREATE TABLE spans_b (LIKE spans INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
		          PARTITION BY RANGE (start_time);
		        CREATE TABLE spans_b_late PARTITION OF spans_b DEFAULT;
		        SELECT _storage_premake('spans_b', interval '1 hour', interval '3 hours');" >/dev/null
		if [[ "$TOGGLE_LAYOUT_B" == brin ]]; then
			psql_q "CREATE INDEX ON spans_b USING brin (start_time);
			        CREATE INDEX ON spans_b (trace_id);" >/dev/null
		else
			psql_q "CREATE INDEX ON spans_b (start_time);" >/dev/null
		fi
		;;
	*) die "TOGGLE_LAYOUT_B must be plain, brin or no_trace" ;;
	esac
}
use_layout() {
	[[ "$LAYOUT" == "$1" ]] && return 0
	if [[ "$1" == B ]]; then
		psql_q "BEGIN; ALTER TABLE spans RENAME TO spans_a;
		        ALTER TABLE spans_b RENAME TO spans; COMMIT;" >/dev/null
	else
		psql_q "BEGIN; ALTER TABLE spans RENAME TO spans_b;
		        ALTER TABLE spans_a RENAME TO spans; COMMIT;" >/dev/null
	fi
	LAYOUT="$1"
}

# What the load did so far: connections pod1 opened, or requests nginx served.
load_count() {
	if [[ "$TOGGLE_LOAD" == short ]]; then
		tcp_counter "$(topo_pod_ns 1)" ActiveOpens
	else
		pod_exec 1 curl -s "http://$SERVER_IP:$NGINX_PORT/nginx_status" | awk 'NR == 3 { print $3 }'
	fi
}

spans_written() {
	psql_q "SELECT coalesce(sum(spans_written), 0) FROM capture_status()"
}

# TOGGLE_MODE=export: the receiver (nginx on the node namespace's loopback)
# and the switch.
OTLP_PORT=4318
EXPORT=A
setup_export() {
	local dir="$WORK/otlp-receiver"
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    client_body_buffer_size 16m;
    client_max_body_size 64m;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$OTLP_PORT;
        location / {
            access_log $dir/access.log;
            return 200;
        }
    }
}
EOF
	ip netns exec "$(topo_node_ns)" nginx -c "$dir/nginx.conf" -p "$dir" 2>>"$dir/error.log" &
	BENCH_BG_PID="${BENCH_BG_PID:-} $!"
	local line
	while IFS= read -r line; do
		[[ -n "$line" ]] && psql_q "ALTER SYSTEM SET ${line%%=*} = ${line#*=}" >/dev/null
	done <<<"$TOGGLE_EXPORT_CONF"
	psql_q "SELECT pg_reload_conf()" >/dev/null
}
use_export() {
	[[ "$EXPORT" == "$1" ]] && return 0
	if [[ "$1" == B ]]; then
		psql_q "ALTER SYSTEM SET ebpf_capture.otlp_endpoint = 'http://127.0.0.1:$OTLP_PORT'" >/dev/null
	else
		psql_q "ALTER SYSTEM RESET ebpf_capture.otlp_endpoint" >/dev/null
	fi
	psql_q "SELECT pg_reload_conf()" >/dev/null
	EXPORT="$1"
}
otlp_counts() {
	psql_q "SELECT coalesce(sum(exported), 0) || ' ' || coalesce(sum(cpu_us), 0) FROM otlp_status()"
}

# window N PHASE: one measured window; appends a "window" line to RESULTS:
# pair phase load_count seconds worker_ticks spans_written.
window() {
	local a0 a1 t0 t1 w0="" w1="" s0=0 s1=0 o0="0 0" o1="0 0"
	[[ "$TOGGLE_MODE" == export ]] && o0="$(otlp_counts)"
	a0="$(load_count)"
	[[ -n "$WORKER_PID" ]] && s0="$(spans_written)"
	t0="$(now_s)"
	[[ -n "$WORKER_PID" ]] && w0="$(proc_ticks "$WORKER_PID")"
	sleep "$TOGGLE_WINDOW"
	[[ -n "$WORKER_PID" ]] && w1="$(proc_ticks "$WORKER_PID")"
	t1="$(now_s)"
	a1="$(load_count)"
	[[ -n "$WORKER_PID" ]] && s1="$(spans_written)"
	[[ "$TOGGLE_MODE" == export ]] && o1="$(otlp_counts)"
	put window "$1 $2 $((a1 - a0)) $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') \
$(((${w1:-0}) - (${w0:-0}))) $((s1 - s0))"
	if [[ "$TOGGLE_MODE" == export ]]; then
		put export "$1 $2 $t0 $t1 $((${o1% *} - ${o0% *})) $((${o1#* } - ${o0#* }))"
	fi
	log "pair $1 $2: $((a1 - a0)) $TOGGLE_LOAD, $((s1 - s0)) spans"
}

for _ in $(seq "$TOGGLE_CONTENTION"); do
	nice -n 0 sh -c 'while :; do :; done' &
	BENCH_BG_PID="${BENCH_BG_PID:-} $!"
done
((TOGGLE_CONTENTION == 0)) || log "$TOGGLE_CONTENTION busy loops compete for the CPUs"

# wrk runs through every window and switch; it is stopped at the end.
total=$((TOGGLE_PAIRS * 2 * (TOGGLE_WINDOW + TOGGLE_SETTLE + 3) + 30))
log "wrk for up to ${total}s; $TOGGLE_PAIRS pairs of ${TOGGLE_WINDOW}s windows ($TOGGLE_MODE, $TOGGLE_LOAD)"
WORKER_PID=""
if [[ "$TOGGLE_MODE" == layout ]]; then
	setup_layouts
	switch_on
elif [[ "$TOGGLE_MODE" == export ]]; then
	setup_export
	switch_on
fi
ip netns exec "$(topo_pod_ns 1)" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${total}s" \
	"${WRK_ARGS[@]}" "$URL" >"$WORK/wrk-toggle.txt" 2>&1 &
WRK_PID=$!
sleep 3 # wrk's own start

for pair in $(seq "$TOGGLE_PAIRS"); do
	if ((pair % 2)); then order=(A B); else order=(B A); fi
	for phase in "${order[@]}"; do
		kill -0 "$WRK_PID" 2>/dev/null || die "wrk exited early: $(cat "$WORK/wrk-toggle.txt")"
		if [[ "$TOGGLE_MODE" == capture ]]; then
			if [[ "$phase" == B ]]; then
				[[ -n "$WORKER_PID" ]] || switch_on
			else
				[[ -z "$WORKER_PID" ]] || switch_off
			fi
		elif [[ "$TOGGLE_MODE" == layout ]]; then
			use_layout "$phase"
		else
			use_export "$phase"
		fi
		sleep "$TOGGLE_SETTLE"
		window "$pair" "$phase"
		if [[ -n "$WORKER_PID" ]]; then put status "$pair $(status_row)"; fi
	done
done
[[ "$TOGGLE_MODE" != layout ]] || use_layout A
[[ "$TOGGLE_MODE" != export ]] || use_export A
[[ -z "$WORKER_PID" ]] || switch_off
kill "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
WRK_PID=""

# TOGGLE_MODE=export: each window's recall, from the spans that start in it
# (all written by now: the capture stopped, its final flush is in).
if [[ "$TOGGLE_MODE" == export ]]; then
	proto=http
	[[ "$TOGGLE_LOAD" == short ]] && proto=tcp
	got export | while read -r pair phase t0 t1 _; do
		put recall "$pair $phase $(psql_q "SELECT count(*) FROM spans WHERE protocol = '$proto'
			AND start_time >= to_timestamp($t0) AND start_time < to_timestamp($t1)")"
	done
fi

JSON="$BENCH_RESULTS_DIR/toggle_bench-$STAMP.json"
MD="$BENCH_RESULTS_DIR/toggle_bench-$STAMP.md"
bench_put_meta
put meta.pairs "$TOGGLE_PAIRS"
put meta.mode "$TOGGLE_MODE"
put meta.layout_b "$TOGGLE_LAYOUT_B"
put meta.load "$TOGGLE_LOAD"
put meta.contention "$TOGGLE_CONTENTION"
put meta.stock "${BENCH_STOCK:-1}"
put meta.settle "$TOGGLE_SETTLE"
put meta.pg_conf "${BENCH_PG_CONF:-}"

python3 - "$RESULTS" "$JSON" "$MD" <<'PY'
import json, math, statistics, sys

tsv, json_path, md_path = sys.argv[1:4]
meta, windows, status, export, recall = {}, [], [], {}, {}
for line in open(tsv):
    key, _, value = line.rstrip("\n").partition("\t")
    if key == "export":
        pair, phase, _, _, exported, cpu_us = value.split()
        export[(int(pair), phase)] = (int(exported), int(cpu_us))
    elif key == "recall":
        pair, phase, n = value.split()
        recall[(int(pair), phase)] = int(n)
    if key == "window":
        pair, phase, count, secs, ticks, spans = value.split()
        windows.append(dict(pair=int(pair), phase=phase, count=int(count), seconds=float(secs),
                            worker_ticks=int(ticks), spans=int(spans)))
    elif key == "status":
        status.append(value)
    elif key.startswith("meta."):
        meta[key[5:]] = value
clk = int(meta["clk_tck"])
mode, load = meta["mode"], meta["load"]
unit = "connections" if load == "short" else "requests"
layout_b = meta.get("layout_b", "plain")
for w in windows:
    w["rate"] = w["count"] / w["seconds"]
    w["worker_us_per_span"] = (1e6 * w["worker_ticks"] / clk / w["spans"]) if w["spans"] else None
    w["spans_per_s"] = w["spans"] / w["seconds"]


def pooled(ws, key):
    return sum(w[key] for w in ws) / sum(w["seconds"] for w in ws)


def worker_us(ws):
    spans = sum(w["spans"] for w in ws)
    return 1e6 * sum(w["worker_ticks"] for w in ws) / clk / spans if spans else None


pairs = []
for p in sorted({w["pair"] for w in windows}):
    a = next(w for w in windows if w["pair"] == p and w["phase"] == "A")
    b = next(w for w in windows if w["pair"] == p and w["phase"] == "B")
    x = dict(pair=p, rate_a=round(a["rate"]), rate_b=round(b["rate"]), ratio=b["rate"] / a["rate"])
    if mode == "layout":
        x.update(us_a=a["worker_us_per_span"], us_b=b["worker_us_per_span"],
                 cpu_ratio=(a["worker_us_per_span"] / b["worker_us_per_span"])
                 if a["worker_us_per_span"] and b["worker_us_per_span"] else None)
    else:
        x.update(us_b=b["worker_us_per_span"])
    pairs.append(x)
ratios = [x["ratio"] for x in pairs]
A = [w for w in windows if w["phase"] == "A"]
B = [w for w in windows if w["phase"] == "B"]
sem = statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 else None
drops = [s for s in status if any(int(x or 0) for x in s.split(" ", 1)[1].split("|")[5:9])]
summary = dict(meta=meta, windows=windows, pairs=pairs,
               ratio_median=round(statistics.median(ratios), 4),
               ratio_mean=round(statistics.mean(ratios), 4),
               ratio_standard_error=round(sem, 4) if sem is not None else None,
               ratio_pooled=round(pooled(B, "count") / pooled(A, "count"), 4),
               status_with_drops=drops)
if mode == "export":
    for w in windows:
        w["exported"], w["export_cpu_us"] = export.get((w["pair"], w["phase"]), (0, 0))
    exported = sum(w["exported"] for w in B)
    summary.update(
        worker_cpu_us_per_span_off=round(worker_us(A), 2),
        worker_cpu_us_per_span_on=round(worker_us(B), 2),
        exported_spans=exported, spans_written_on=sum(w["spans"] for w in B),
        exporter_cpu_us_per_span=round(sum(w["export_cpu_us"] for w in B) / exported, 3)
        if exported else None,
        recall_off=round(sum(recall.get((w["pair"], "A"), 0) for w in A)
                         / sum(w["count"] for w in A), 5),
        recall_on=round(sum(recall.get((w["pair"], "B"), 0) for w in B)
                        / sum(w["count"] for w in B), 5))
elif mode == "capture":
    summary["worker_cpu_us_per_span"] = round(worker_us(B), 2) if worker_us(B) else None
    summary["worker_cpu_us_per_span_median"] = round(statistics.median(
        x["us_b"] for x in pairs if x["us_b"]), 2) if any(x["us_b"] for x in pairs) else None
else:
    summary["layout_b"] = layout_b
    summary["worker_cpu_us_per_span_shipped"] = round(worker_us(A), 2)
    summary["worker_cpu_us_per_span_b"] = round(worker_us(B), 2)
    cr = [x["cpu_ratio"] for x in pairs if x["cpu_ratio"]]
    summary["cpu_ratio_median"] = round(statistics.median(cr), 4) if cr else None
    summary["spans_per_s_shipped"] = round(pooled(A, "spans"))
    summary["spans_per_s_b"] = round(pooled(B, "spans"))
json.dump(summary, open(json_path, "w"), indent=1)
lines = [f"# toggle_bench {meta['stamp']} ({meta['git']}; {mode}"
         f"{' (B: ' + layout_b + ')' if mode == 'layout' else ''}, {load}, "
         f"{'stock settings' if meta.get('stock', '1') == '1' else 'tests settings'}"
         f"{', ' + meta['contention'] + ' busy loops' if meta.get('contention', '0') != '0' else ''}"
         f"; {meta.get('pg_conf') or 'no extra settings'})", "",
         f"{len(pairs)} pairs of {meta['duration']} s windows, {meta['settle']} s after each switch; "
         f"wrk -t{meta['threads']} -c{meta['connections']}; {meta['cpus']} CPUs, "
         f"Linux {meta['kernel']}, PostgreSQL {meta['postgres']}", ""]
if mode == "export":
    lines += [f"| pair | order | {unit}/s export off | on | on / off | worker µs/span off | on | "
              f"exporter µs/span |", "|---|---|---|---|---|---|---|---|"]
    for x in pairs:
        wa = next(w for w in windows if w["pair"] == x["pair"] and w["phase"] == "A")
        wb = next(w for w in windows if w["pair"] == x["pair"] and w["phase"] == "B")
        order = "off, on" if x["pair"] % 2 else "on, off"
        ex = f"{wb['export_cpu_us'] / wb['exported']:.2f}" if wb["exported"] else "–"
        lines.append(f"| {x['pair']} | {order} | {x['rate_a']:,} | {x['rate_b']:,} | "
                     f"{x['ratio']:.3f} | {wa['worker_us_per_span'] or 0:.2f} | "
                     f"{wb['worker_us_per_span'] or 0:.2f} | {ex} |")
    lines += ["", f"on / off: median **{summary['ratio_median']:.3f}**, mean "
              f"{summary['ratio_mean']:.3f} ± {summary['ratio_standard_error'] or 0:.3f} "
              f"(standard error), pooled {summary['ratio_pooled']:.3f}; range "
              f"{min(ratios):.3f}–{max(ratios):.3f}",
              f"worker CPU per span: export off {summary['worker_cpu_us_per_span_off']} µs, on "
              f"{summary['worker_cpu_us_per_span_on']} µs; the exporter's own "
              f"{summary['exporter_cpu_us_per_span']} µs per exported span "
              f"({summary['exported_spans']:,} exported while on, "
              f"{summary['spans_written_on']:,} written)",
              f"recall (spans starting in a window / {unit}): off {summary['recall_off']}, on "
              f"{summary['recall_on']}"]
elif mode == "capture":
    lines += [f"| pair | order | {unit}/s without | with | with / without | worker µs per span |",
              "|---|---|---|---|---|---|"]
    for x in pairs:
        order = "off, on" if x["pair"] % 2 else "on, off"
        us = f"{x['us_b']:.2f}" if x["us_b"] else "–"
        lines.append(f"| {x['pair']} | {order} | {x['rate_a']:,} | {x['rate_b']:,} | "
                     f"{x['ratio']:.3f} | {us} |")
    lines += ["", f"with / without: median **{summary['ratio_median']:.3f}**, mean "
              f"{summary['ratio_mean']:.3f} ± {summary['ratio_standard_error'] or 0:.3f} "
              f"(standard error), pooled {summary['ratio_pooled']:.3f}; range "
              f"{min(ratios):.3f}–{max(ratios):.3f}",
              f"worker CPU per span with capture: pooled {summary['worker_cpu_us_per_span']} µs, "
              f"median of pairs {summary['worker_cpu_us_per_span_median']} µs"]
else:
    lines += [f"| pair | order | {unit}/s shipped | {layout_b} | worker µs/span shipped | "
              f"{layout_b} | shipped / {layout_b} CPU |", "|---|---|---|---|---|---|---|"]
    for x in pairs:
        order = f"shipped, {layout_b}" if x["pair"] % 2 else f"{layout_b}, shipped"
        lines.append(f"| {x['pair']} | {order} | {x['rate_a']:,} | {x['rate_b']:,} | "
                     f"{x['us_a'] or 0:.2f} | {x['us_b'] or 0:.2f} | "
                     f"{x['cpu_ratio'] or 0:.3f} |")
    lines += ["", f"worker CPU per span: shipped (partitioned, two b-trees) "
              f"{summary['worker_cpu_us_per_span_shipped']} µs, {layout_b} "
              f"{summary['worker_cpu_us_per_span_b']} µs (pooled); shipped / {layout_b}, "
              f"median of pairs: **{summary['cpu_ratio_median']}**",
              f"spans written per second: shipped {summary['spans_per_s_shipped']:,}, "
              f"{layout_b} {summary['spans_per_s_b']:,}"]
lines.append(f"windows where a drop was counted: {len(drops)}")
open(md_path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"\nJSON: {json_path}\nMarkdown: {md_path}")
PY
