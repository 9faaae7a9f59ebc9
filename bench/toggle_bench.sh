#!/usr/bin/env bash
# toggle_bench.sh - what does a capture cost the traffic, measured without the
# drift between runs?
#
# capture_bench.sh compares 10-second runs taken a minute apart. On a shared
# two-CPU machine two such baselines differ by up to 10 %, so a single run
# cannot tell a 2 % cost from noise. Here wrk (pod1) runs against nginx (pod2)
# with short connections without a pause, and the capture is switched on and
# off under it (capture_start / capture_stop, the real thing): windows of
# TOGGLE_WINDOW seconds, in pairs ordered off-on, on-off, off-on, ... so that
# a steady drift cancels. Each window starts TOGGLE_SETTLE seconds after the
# switch (the worker starting, or writing its last spans and exiting) and
# counts the connections pod1 opened (its kernel's TcpActiveOpens). Reported:
# each pair's rate with capture over its rate without, their median, mean and
# standard error, the ratio of the pooled rates, and the worker's CPU per
# connection in the windows with capture.
#
# Completeness is not measured here (connections cross the switches): that is
# capture_bench.sh's job. Nothing here is a test: the script fails only on a
# broken setup, never on a figure.
#
# Usage (as root, from anywhere):  bench/toggle_bench.sh [-h]
#
# Environment (defaults in brackets):
#   TOGGLE_PAIRS       pairs of windows [12]
#   TOGGLE_WINDOW      seconds measured per window [5]
#   TOGGLE_SETTLE      seconds between a switch and its window [2]
#   BENCH_CONNECTIONS  wrk connections [64]
#   BENCH_THREADS      wrk threads [2]
#   BENCH_SKIP_BUILD   1 = do not run make && make install [0]
#   BENCH_PG_CONF      extra postgresql.conf lines, e.g. "ebpf_capture.http = off" []
#   BENCH_RESULTS_DIR  where the JSON/Markdown go [bench/results]
#   EBPFC_NS, BENCH_PG_PORT, NGINX_PORT as in capture_bench.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfcb}"
export EBPFC_PODS=2
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
WRK_ARGS=(-H 'Connection: close')
NGINX_KEEPALIVE="keepalive_timeout 0;"
URL_PATH=/

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"

bench_require_root
bench_check_uint TOGGLE_PAIRS TOGGLE_WINDOW TOGGLE_SETTLE BENCH_CONNECTIONS BENCH_THREADS \
	BENCH_PG_PORT NGINX_PORT
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

# window N PHASE: one measured window; appends a "window" line to RESULTS:
# pair phase connections seconds worker_ticks.
window() {
	local a0 a1 t0 t1 w0="" w1=""
	a0="$(tcp_counter "$(topo_pod_ns 1)" ActiveOpens)"
	t0="$(now_s)"
	[[ -n "$WORKER_PID" ]] && w0="$(proc_ticks "$WORKER_PID")"
	sleep "$TOGGLE_WINDOW"
	[[ -n "$WORKER_PID" ]] && w1="$(proc_ticks "$WORKER_PID")"
	t1="$(now_s)"
	a1="$(tcp_counter "$(topo_pod_ns 1)" ActiveOpens)"
	put window "$1 $2 $((a1 - a0)) $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') \
$(((${w1:-0}) - (${w0:-0})))"
	log "pair $1 $2: $((a1 - a0)) connections"
}

# wrk runs through every window and switch; it is stopped at the end.
total=$((TOGGLE_PAIRS * 2 * (TOGGLE_WINDOW + TOGGLE_SETTLE + 3) + 30))
log "wrk for up to ${total}s; $TOGGLE_PAIRS pairs of ${TOGGLE_WINDOW}s windows"
ip netns exec "$(topo_pod_ns 1)" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"${total}s" \
	"${WRK_ARGS[@]}" "$URL" >"$WORK/wrk-toggle.txt" 2>&1 &
WRK_PID=$!
WORKER_PID=""
sleep 3 # wrk's own start

for pair in $(seq "$TOGGLE_PAIRS"); do
	if ((pair % 2)); then order=(off on); else order=(on off); fi
	for phase in "${order[@]}"; do
		kill -0 "$WRK_PID" 2>/dev/null || die "wrk exited early: $(cat "$WORK/wrk-toggle.txt")"
		if [[ "$phase" == on ]]; then
			[[ -n "$WORKER_PID" ]] || switch_on
		else
			[[ -z "$WORKER_PID" ]] || switch_off
		fi
		sleep "$TOGGLE_SETTLE"
		window "$pair" "$phase"
		if [[ "$phase" == on ]]; then put status "$pair $(status_row)"; fi
	done
done
[[ -z "$WORKER_PID" ]] || switch_off
kill "$WRK_PID" 2>/dev/null || true
wait "$WRK_PID" 2>/dev/null || true
WRK_PID=""

JSON="$BENCH_RESULTS_DIR/toggle_bench-$STAMP.json"
MD="$BENCH_RESULTS_DIR/toggle_bench-$STAMP.md"
bench_put_meta
put meta.pairs "$TOGGLE_PAIRS"
put meta.settle "$TOGGLE_SETTLE"
put meta.pg_conf "${BENCH_PG_CONF:-}"

python3 - "$RESULTS" "$JSON" "$MD" <<'PY'
import json, math, statistics, sys

tsv, json_path, md_path = sys.argv[1:4]
meta, windows, status = {}, [], []
for line in open(tsv):
    key, _, value = line.rstrip("\n").partition("\t")
    if key == "window":
        pair, phase, conns, secs, ticks = value.split()
        windows.append(dict(pair=int(pair), phase=phase, connections=int(conns),
                            seconds=float(secs), worker_ticks=int(ticks)))
    elif key == "status":
        status.append(value)
    elif key.startswith("meta."):
        meta[key[5:]] = value
clk = int(meta["clk_tck"])
for w in windows:
    w["rate"] = w["connections"] / w["seconds"]
pairs = []
for p in sorted({w["pair"] for w in windows}):
    on = next(w for w in windows if w["pair"] == p and w["phase"] == "on")
    off = next(w for w in windows if w["pair"] == p and w["phase"] == "off")
    pairs.append(dict(pair=p, on=round(on["rate"]), off=round(off["rate"]),
                      ratio=on["rate"] / off["rate"]))
ratios = [x["ratio"] for x in pairs]
on = [w for w in windows if w["phase"] == "on"]
off = [w for w in windows if w["phase"] == "off"]
pooled = (sum(w["connections"] for w in on) / sum(w["seconds"] for w in on)) / \
         (sum(w["connections"] for w in off) / sum(w["seconds"] for w in off))
sem = statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 else None
worker_us = 1e6 * sum(w["worker_ticks"] for w in on) / clk / sum(w["connections"] for w in on)
# every status line: state|pid|packets|bytes|spans_written|spans_dropped|events_dropped|kernel_drops|flow_table_full|...
drops = [s for s in status if any(int(x or 0) for x in s.split(" ", 1)[1].split("|")[5:9])]
summary = dict(
    meta=meta, windows=windows, pairs=pairs,
    ratio_median=round(statistics.median(ratios), 4),
    ratio_mean=round(statistics.mean(ratios), 4),
    ratio_standard_error=round(sem, 4) if sem is not None else None,
    ratio_pooled=round(pooled, 4),
    worker_cpu_us_per_connection=round(worker_us, 2),
    status_with_drops=drops,
)
json.dump(summary, open(json_path, "w"), indent=1)
lines = [f"# toggle_bench {meta['stamp']} ({meta['git']}; {meta.get('pg_conf') or 'default settings'})", "",
         f"{len(pairs)} pairs of {meta['duration']} s windows, {meta['settle']} s after each switch; "
         f"wrk -t{meta['threads']} -c{meta['connections']}, short connections; {meta['cpus']} CPUs, "
         f"Linux {meta['kernel']}, PostgreSQL {meta['postgres']}", "",
         "| pair | order | connections/s without | with | with / without |", "|---|---|---|---|---|"]
for x in pairs:
    order = "off, on" if x["pair"] % 2 else "on, off"
    lines.append(f"| {x['pair']} | {order} | {x['off']:,} | {x['on']:,} | {x['ratio']:.3f} |")
lines += ["",
          f"with / without: median **{summary['ratio_median']:.3f}**, mean {summary['ratio_mean']:.3f} "
          f"± {summary['ratio_standard_error'] or 0:.3f} (standard error), pooled {summary['ratio_pooled']:.3f}; "
          f"range {min(ratios):.3f}–{max(ratios):.3f}",
          f"worker CPU per connection in the windows with capture: {summary['worker_cpu_us_per_connection']} µs",
          f"windows with capture where a drop was counted: {len(drops)}"]
open(md_path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"\nJSON: {json_path}\nMarkdown: {md_path}")
PY
