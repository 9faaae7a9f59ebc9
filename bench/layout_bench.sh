#!/usr/bin/env bash
# layout_bench.sh - the capture on a bridge node and on a routed node (no
# bridge: Calico's layout, docs/cni.md), side by side in one run: throughput
# with capture over without, and recall, for short connections and for
# keep-alive HTTP.
#
# One node namespace holds both layouts (tests/lib/topology.sh): pod1 and
# pod2 on the bridge cni0, and the Calico-like pods cali1 and cali2 (routed
# veths, /32 routes, proxy ARP). wrk runs in pod1 against nginx in pod2
# (captured as capture_start('cni0')) and in cali1 against nginx in cali2
# (capture_start('cali*')). Each window is one wrk run of LAYOUT_WINDOW
# seconds; a window with capture starts the capture before wrk, waits after
# wrk for every span of its connections and stops the capture. Windows come
# in pairs, without and with capture on one layout, the order alternating from
# pair to pair (off-on, on-off, ...) and the layouts interleaved (bridge pair,
# routed pair, routed pair, bridge pair, ...), so a steady drift cancels and
# both layouts see the same machine.
#
# Reported per load and layout: each pair's throughput with capture over
# without (wrk's requests/s), their median, mean, standard error and the
# pooled ratio; the routed layout's ratio minus the bridge's (target: within
# 0.02); recall: connection spans over the connections the client's kernel
# opened (TcpActiveOpens) and HTTP spans over nginx's logged responses, in the
# windows with capture (target 100 %); the worker's CPU per connection or HTTP
# span; drops counted by capture_status(). Written to
# bench/results/layout_bench-<UTC stamp>.{json,md}.
#
# Before measuring it waits (at most BENCH_QUIET_TIMEOUT seconds) for a quiet
# machine. Nothing here is a test: it fails only on a broken setup.
#
# Usage (as root, from anywhere):  bench/layout_bench.sh [-h]
#
# Environment (defaults in brackets):
#   LAYOUT_LOADS       which loads, in this order ["short keepalive"]
#   LAYOUT_PAIRS       pairs of windows per load and layout [8]
#   LAYOUT_WINDOW      seconds per wrk run [5]
#   LAYOUT_SHORT_CONNECTIONS, LAYOUT_KEEPALIVE_CONNECTIONS  wrk -c [64, 32]
#   BENCH_THREADS      wrk threads [2]
#   BENCH_DRAIN_TIMEOUT seconds to wait for a window's spans [60]
#   BENCH_QUIET_TIMEOUT seconds to wait for a quiet machine, 0 = do not [600]
#   BENCH_QUIET_LOAD, BENCH_QUIET_IDLE  as in http_bench.sh [0.7, 90]
#   BENCH_BPF_STATS    1 = turn on kernel.bpf_stats_enabled for the run (restored
#                      after) and report the socket filter's runs and CPU per
#                      connection or request in the windows with capture: the
#                      kernel's own figure, which the machine's noise does not
#                      move; the accounting itself costs every run a little [0]
#   BENCH_PG_CONF      extra postgresql.conf lines []
#   BENCH_SKIP_BUILD   1 = do not run make && make install [0]
#   BENCH_RESULTS_DIR  [bench/results]; EBPFC_NS [ebpflb]; BENCH_PG_PORT [5495];
#   NGINX_PORT [8080]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpflb}"
export EBPFC_PODS=2
LAYOUT_LOADS="${LAYOUT_LOADS:-short keepalive}"
LAYOUT_PAIRS="${LAYOUT_PAIRS:-8}"
LAYOUT_WINDOW="${LAYOUT_WINDOW:-5}"
LAYOUT_SHORT_CONNECTIONS="${LAYOUT_SHORT_CONNECTIONS:-64}"
LAYOUT_KEEPALIVE_CONNECTIONS="${LAYOUT_KEEPALIVE_CONNECTIONS:-32}"
BENCH_DURATION="$LAYOUT_WINDOW"
BENCH_CONNECTIONS="$LAYOUT_SHORT_CONNECTIONS"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_PAUSE=1
BENCH_DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-60}"
BENCH_QUIET_TIMEOUT="${BENCH_QUIET_TIMEOUT:-600}"
BENCH_QUIET_LOAD="${BENCH_QUIET_LOAD:-0.7}"
BENCH_QUIET_IDLE="${BENCH_QUIET_IDLE:-90}"
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF=0
BENCH_PERF_KEEP=0
BENCH_PG_CONF="${BENCH_PG_CONF:-}"
BENCH_BPF_STATS="${BENCH_BPF_STATS:-0}"
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5495}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
BODY="ebpf_capture bench: hello from the server pod"
BENCH_NAME=layout_bench
WRK_ARGS=()

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"

bench_require_root
bench_check_uint LAYOUT_PAIRS LAYOUT_WINDOW LAYOUT_SHORT_CONNECTIONS \
	LAYOUT_KEEPALIVE_CONNECTIONS BENCH_THREADS BENCH_DRAIN_TIMEOUT BENCH_QUIET_TIMEOUT \
	BENCH_PG_PORT NGINX_PORT
((LAYOUT_PAIRS > 0 && LAYOUT_WINDOW > 0 && BENCH_THREADS > 0)) ||
	die "LAYOUT_PAIRS, LAYOUT_WINDOW and BENCH_THREADS must be positive"
for load in $LAYOUT_LOADS; do
	[[ "$load" == short || "$load" == keepalive ]] || die "LAYOUT_LOADS: short and/or keepalive"
done

bench_prepare
bench_build

# --------------------------------------------------------------------------
# both layouts, the cluster, an nginx in each server pod

declare -A CLIENT_NS SERVER_NS SERVER_IP TARGET NGINX_PIDS NGINX_DIRS
LAYOUTS=(bridge routed)

log "topology $EBPFC_NS-node: cni0 with pod1 and pod2, Calico-like cali1 and cali2"
TOPO_STARTED=1
topo_up || die "topo_up failed"
routed_up calico 2 || die "routed_up failed"
CLIENT_NS[bridge]="$(topo_pod_ns 1)"
SERVER_NS[bridge]="$(topo_pod_ns 2)"
SERVER_IP[bridge]="$(pod_ip4 2)"
TARGET[bridge]=cni0
CLIENT_NS[routed]="$(routed_pod_ns calico 1)"
SERVER_NS[routed]="$(routed_pod_ns calico 2)"
SERVER_IP[routed]="$(routed_ip4 calico 2)"
TARGET[routed]='cali*'
for layout in "${LAYOUTS[@]}"; do
	ip netns exec "${CLIENT_NS[$layout]}" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
	ip netns exec "${CLIENT_NS[$layout]}" sysctl -q -w net.ipv4.tcp_tw_reuse=1
done

log "PostgreSQL cluster in $PGDIR (port $BENCH_PG_PORT)"
export EBPFC_PG_EXTRA_CONF="ebpf_capture.idle_timeout = '5s'
log_line_prefix = '%m [%p] %b '${BENCH_PG_CONF:+
$BENCH_PG_CONF}"
pg_start "$PGDIR" --port "$BENCH_PG_PORT" || die "pg_start failed"
psql_q "CREATE EXTENSION ebpf_capture" >/dev/null || die "CREATE EXTENSION failed"

# nginx serves both loads: wrk's "Connection: close" ends each short one.
start_nginx() {
	local layout="$1" dir="$WORK/nginx-$1"
	bench_nginx_conf "$dir" "${SERVER_IP[$layout]}" "keepalive_timeout 65; keepalive_requests 100000;"
	ip netns exec "${SERVER_NS[$layout]}" nginx -c "$dir/nginx.conf" -p "$dir" 2>>"$dir/error.log" &
	NGINX_PIDS[$layout]=$!
	NGINX_DIRS[$layout]="$dir"
	BENCH_BG_PID="${BENCH_BG_PID:-} ${NGINX_PIDS[$layout]}"
	for _ in $(seq 50); do
		ip netns exec "${CLIENT_NS[$layout]}" bash -c \
			"exec 3<>/dev/tcp/${SERVER_IP[$layout]}/$NGINX_PORT" 2>/dev/null && return 0
		sleep 0.1
	done
	die "nginx in ${SERVER_NS[$layout]} does not answer: $(cat "$dir/error.log")"
}
for layout in "${LAYOUTS[@]}"; do start_nginx "$layout"; done

# --------------------------------------------------------------------------
# windows

status_of() {
	psql_q "SELECT state, coalesce(pid, 0), flows_tracked, events_dropped, kernel_drops,
	               flow_table_full, spans_dropped, payload_dropped, http_bound_hits
	        FROM capture_status() WHERE interface = '$1'"
}

wait_capture_state() {
	local target="$1" want="$2" state=""
	for _ in $(seq 150); do
		IFS='|' read -r state _ <<<"$(status_of "$target")"
		[[ "$state" == "$want" ]] && return 0
		sleep 0.1
	done
	die "capture on $target did not reach '$want': $(status_of "$target")"
}

# Spans of the window's connections to the layout's nginx.
spans_count() {
	psql_q "SELECT count(*) FILTER (WHERE protocol = 'tcp'),
	               count(*) FILTER (WHERE protocol = 'http' AND http_status = 200)
	        FROM spans WHERE interface = '$1' AND dst_port = $NGINX_PORT
	          AND dst_addr = '$2' AND start_time >= to_timestamp($3)"
}

# filter_stats WORKER_PID: "run_time_ns run_cnt" of the socket filter the
# worker loaded (its fd's prog_id), "0 0" without BENCH_BPF_STATS.
filter_stats() {
	local id
	((BENCH_BPF_STATS)) || {
		echo "0 0"
		return
	}
	id="$(grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{ print $2; exit }')"
	[[ -n "$id" ]] || die "no BPF program among the fds of worker $1"
	bpftool prog show id "$id" --json |
		python3 -c 'import json, sys; p = json.load(sys.stdin); print(p.get("run_time_ns", 0), p.get("run_cnt", 0))'
}

# window LOAD LAYOUT PHASE PAIR: one wrk run; appends a "window" line:
# load layout phase pair requests seconds opens tcp_spans http_spans
# worker_ticks t0 t1 drops filter_ns filter_runs
window() {
	local load="$1" layout="$2" phase="$3" pair="$4"
	local target="${TARGET[$layout]}" client="${CLIENT_NS[$layout]}" out="$WORK/wrk.txt"
	local conns args=() a0 a1 t0 t1 w0=0 w1=0 wpid=0 requests secs spans="0|0" drops="0" prev n stable
	local f0="0 0" f1="0 0" f0ns f0n f1ns f1n
	if [[ "$load" == short ]]; then
		conns="$LAYOUT_SHORT_CONNECTIONS"
		args=(-H 'Connection: close')
	else
		conns="$LAYOUT_KEEPALIVE_CONNECTIONS"
	fi
	if [[ "$phase" == on ]]; then
		psql_q "SELECT capture_start('$target')" >/dev/null
		wait_capture_state "$target" running
		IFS='|' read -r _ wpid _ <<<"$(status_of "$target")"
		sleep 1 # the worker settles into its loop
		w0="$(proc_ticks "$wpid")"
		f0="$(filter_stats "$wpid")"
	fi
	a0="$(tcp_counter "$client" ActiveOpens)"
	t0="$(now_s)"
	ip netns exec "$client" wrk -t"$BENCH_THREADS" -c"$conns" -d"${LAYOUT_WINDOW}s" \
		"${args[@]}" "http://${SERVER_IP[$layout]}:$NGINX_PORT/" >"$out" 2>&1 ||
		die "wrk failed: $(cat "$out")"
	t1="$(now_s)"
	a1="$(tcp_counter "$client" ActiveOpens)"
	requests="$(awk '/ requests in / { print $1 }' "$out")"
	secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
	[[ -n "$requests" ]] || die "wrk printed no result: $(cat "$out")"
	if [[ "$phase" == on ]]; then
		w1="$(proc_ticks "$wpid")"
		f1="$(filter_stats "$wpid")"
		# every span of the window: counts stable and no flow left in the kernel
		prev=-1
		stable=0
		for _ in $(seq "$BENCH_DRAIN_TIMEOUT"); do
			sleep 1
			n="$(spans_count "$target" "${SERVER_IP[$layout]}" "$t0")"
			local flows
			IFS='|' read -r _ _ flows _ <<<"$(status_of "$target")"
			if [[ "$n" == "$prev" ]]; then stable=$((stable + 1)); else stable=0; fi
			prev="$n"
			((stable >= 2 && flows == 0)) && break
		done
		spans="$n"
		drops="$(status_of "$target" | cut -d'|' -f4- | tr '|' ',')"
		psql_q "SELECT capture_stop('$target')" >/dev/null
		wait_capture_state "$target" stopped
	fi
	read -r f0ns f0n <<<"$f0"
	read -r f1ns f1n <<<"$f1"
	put window "$load $layout $phase $pair $requests $secs $((a1 - a0)) ${spans//|/ } \
$((w1 - w0)) $t0 $t1 $drops $((f1ns - f0ns)) $((f1n - f0n))"
	log "$load $layout pair $pair $phase: $requests requests in ${secs}s, $((a1 - a0)) connections$(
		[[ "$phase" == on ]] && echo ", spans (tcp|http) $spans")"
	sleep "$BENCH_PAUSE"
}

if ((BENCH_BPF_STATS)); then
	command -v bpftool >/dev/null || die "BENCH_BPF_STATS=1 needs bpftool"
	BPF_STATS_WAS="$(sysctl -n kernel.bpf_stats_enabled)"
	sysctl -q -w kernel.bpf_stats_enabled=1
	# restored by the EXIT trap, before lib.sh's cleanup
	trap 'rc=$?; set +e; sysctl -q -w kernel.bpf_stats_enabled="$BPF_STATS_WAS"; (exit "$rc"); bench_cleanup' EXIT
fi

if ((BENCH_QUIET_TIMEOUT > 0)); then
	bench_wait_quiet "$BENCH_QUIET_TIMEOUT" "$BENCH_QUIET_LOAD" "$BENCH_QUIET_IDLE"
else
	put meta.quiet ""
fi

for load in $LAYOUT_LOADS; do
	log "load: $load; warm-up"
	for layout in "${LAYOUTS[@]}"; do
		ip netns exec "${CLIENT_NS[$layout]}" wrk -t"$BENCH_THREADS" -c16 -d2s \
			"http://${SERVER_IP[$layout]}:$NGINX_PORT/" >/dev/null 2>&1 || die "warm-up failed"
	done
	for pair in $(seq "$LAYOUT_PAIRS"); do
		# bridge, routed / routed, bridge; off-on / on-off
		if ((pair % 2)); then order=(bridge routed); else order=(routed bridge); fi
		if (((pair + 1) / 2 % 2)); then phases=(off on); else phases=(on off); fi
		for layout in "${order[@]}"; do
			for phase in "${phases[@]}"; do
				window "$load" "$layout" "$phase" "$pair"
			done
		done
	done
done

# nginx's buffered access log is complete once it exits
for layout in "${LAYOUTS[@]}"; do
	kill -QUIT "${NGINX_PIDS[$layout]}" 2>/dev/null || true
	wait "${NGINX_PIDS[$layout]}" 2>/dev/null || true
	cp "${NGINX_DIRS[$layout]}/access.log" "$WORK/access-$layout.log" 2>/dev/null || : >"$WORK/access-$layout.log"
done
BENCH_BG_PID=""

JSON="$BENCH_RESULTS_DIR/layout_bench-$STAMP.json"
MD="$BENCH_RESULTS_DIR/layout_bench-$STAMP.md"
URL="http://${SERVER_IP[bridge]}:$NGINX_PORT/ and http://${SERVER_IP[routed]}:$NGINX_PORT/"
bench_put_meta
put meta.pairs "$LAYOUT_PAIRS"
put meta.loads "$LAYOUT_LOADS"
put meta.short_connections "$LAYOUT_SHORT_CONNECTIONS"
put meta.keepalive_connections "$LAYOUT_KEEPALIVE_CONNECTIONS"
put meta.pg_conf "$(tr '\n' ';' <<<"$BENCH_PG_CONF" | sed 's/;$//')"
put meta.http_guc "$(psql_q "SHOW ebpf_capture.http")"
put meta.bpf_stats "$BENCH_BPF_STATS"

python3 - "$RESULTS" "$JSON" "$MD" "$WORK/access-bridge.log" "$WORK/access-routed.log" <<'PY'
import json, math, statistics, sys

tsv, json_path, md_path, log_bridge, log_routed = sys.argv[1:6]
meta, windows = {}, []
for line in open(tsv):
    key, _, value = line.rstrip("\n").partition("\t")
    if key == "window":
        f = value.split()
        windows.append(dict(load=f[0], layout=f[1], phase=f[2], pair=int(f[3]),
                            requests=int(f[4]), seconds=float(f[5]), opens=int(f[6]),
                            tcp_spans=int(f[7]), http_spans=int(f[8]), worker_ticks=int(f[9]),
                            t0=float(f[10]), t1=float(f[11]),
                            drops=[int(x) for x in f[12].split(",")] if f[12] != "0" else [],
                            filter_ns=int(f[13]), filter_runs=int(f[14])))
    elif key.startswith("meta."):
        meta[key[5:]] = value
clk = int(meta["clk_tck"])
logs = {}
for layout, path in (("bridge", log_bridge), ("routed", log_routed)):
    logs[layout] = [(float(a), b) for a, b, _ in (l.split() for l in open(path) if l.strip())]
for w in windows:
    w["rate"] = w["requests"] / w["seconds"]
    # nginx answers the requests in flight when wrk stops: they count too
    w["responses"] = sum(1 for t, s in logs[w["layout"]]
                         if w["t0"] <= t <= w["t1"] + 0.5 and s == "200")

summary = dict(meta=meta, windows=windows, loads={})
lines = [f"# layout_bench {meta['stamp']} ({meta['git']}; {meta.get('pg_conf') or 'default settings'})",
         "", f"{meta['pairs']} pairs of {meta['duration']} s wrk runs per load and layout "
         f"(-t{meta['threads']}; short: -c{meta['short_connections']} with 'Connection: close'; "
         f"keep-alive: -c{meta['keepalive_connections']}); {meta['cpus']} CPUs, Linux "
         f"{meta['kernel']}, PostgreSQL {meta['postgres']}; quiet machine: {meta.get('quiet')} "
         f"(load {meta.get('quiet_load1')}, idle {meta.get('quiet_idle_pct')} %)", ""]
for load in dict.fromkeys(w["load"] for w in windows):
    res = {}
    for layout in ("bridge", "routed"):
        ws = [w for w in windows if w["load"] == load and w["layout"] == layout]
        pairs = []
        for p in sorted({w["pair"] for w in ws}):
            on = next(w for w in ws if w["pair"] == p and w["phase"] == "on")
            off = next(w for w in ws if w["pair"] == p and w["phase"] == "off")
            pairs.append(dict(pair=p, on=on["rate"], off=off["rate"], ratio=on["rate"] / off["rate"]))
        ratios = [x["ratio"] for x in pairs]
        on = [w for w in ws if w["phase"] == "on"]
        off = [w for w in ws if w["phase"] == "off"]
        pooled = (sum(w["requests"] for w in on) / sum(w["seconds"] for w in on)) / \
                 (sum(w["requests"] for w in off) / sum(w["seconds"] for w in off))
        opens = sum(w["opens"] for w in on)
        tcp = sum(w["tcp_spans"] for w in on)
        responses = sum(w["responses"] for w in on)
        http = sum(w["http_spans"] for w in on)
        per_span = tcp if load == "short" else http
        res[layout] = dict(
            pairs=pairs,
            ratio_median=statistics.median(ratios), ratio_mean=statistics.mean(ratios),
            ratio_standard_error=(statistics.stdev(ratios) / math.sqrt(len(ratios))
                                  if len(ratios) > 1 else None),
            ratio_pooled=pooled,
            connections=opens, tcp_spans=tcp, recall_tcp=tcp / opens if opens else None,
            responses=responses, http_spans=http,
            recall_http=http / responses if responses else None,
            worker_cpu_us_per_span=(1e6 * sum(w["worker_ticks"] for w in on) / clk / per_span
                                    if per_span else None),
            windows_with_drops=sum(1 for w in on if any(w["drops"])),
            filter_runs_per_span=(sum(w["filter_runs"] for w in on) / per_span
                                  if per_span and meta.get("bpf_stats") == "1" else None),
            filter_ns_per_span=(sum(w["filter_ns"] for w in on) / per_span
                                if per_span and meta.get("bpf_stats") == "1" else None),
            filter_ns_per_run=(sum(w["filter_ns"] for w in on) / sum(w["filter_runs"] for w in on)
                               if sum(w["filter_runs"] for w in on) else None),
            rate_without=statistics.median(w["rate"] for w in off))
    res["routed_minus_bridge_median"] = res["routed"]["ratio_median"] - res["bridge"]["ratio_median"]
    res["routed_minus_bridge_pooled"] = res["routed"]["ratio_pooled"] - res["bridge"]["ratio_pooled"]
    summary["loads"][load] = res
    name = "short connections" if load == "short" else "keep-alive HTTP"
    lines += [f"## {name}", "",
              "| | bridge (cni0) | routed (cali*) |", "|---|---|---|",
              "| requests/s without capture (median) | {:,.0f} | {:,.0f} |".format(
                  res["bridge"]["rate_without"], res["routed"]["rate_without"]),
              "| with / without, per pair | {} | {} |".format(
                  ", ".join(f"{x['ratio']:.3f}" for x in res["bridge"]["pairs"]),
                  ", ".join(f"{x['ratio']:.3f}" for x in res["routed"]["pairs"])),
              "| median; mean ± standard error; pooled | **{:.3f}**; {:.3f} ± {:.3f}; {:.3f} | **{:.3f}**; {:.3f} ± {:.3f}; {:.3f} |".format(
                  res["bridge"]["ratio_median"], res["bridge"]["ratio_mean"],
                  res["bridge"]["ratio_standard_error"] or 0, res["bridge"]["ratio_pooled"],
                  res["routed"]["ratio_median"], res["routed"]["ratio_mean"],
                  res["routed"]["ratio_standard_error"] or 0, res["routed"]["ratio_pooled"]),
              "| connection spans / connections opened | {:,} / {:,} | {:,} / {:,} |".format(
                  res["bridge"]["tcp_spans"], res["bridge"]["connections"],
                  res["routed"]["tcp_spans"], res["routed"]["connections"]),
              "| HTTP spans / nginx responses | {:,} / {:,} | {:,} / {:,} |".format(
                  res["bridge"]["http_spans"], res["bridge"]["responses"],
                  res["routed"]["http_spans"], res["routed"]["responses"]),
              "| worker CPU per {} | {:.2f} µs | {:.2f} µs |".format(
                  "connection" if load == "short" else "HTTP span",
                  res["bridge"]["worker_cpu_us_per_span"] or 0,
                  res["routed"]["worker_cpu_us_per_span"] or 0),
              "| windows with a drop counted | {} | {} |".format(
                  res["bridge"]["windows_with_drops"], res["routed"]["windows_with_drops"]),
              ]
    if meta.get("bpf_stats") == "1":
        unit = "connection" if load == "short" else "HTTP span"
        lines += ["| socket filter runs per {} | {:.1f} | {:.1f} |".format(
                      unit, res["bridge"]["filter_runs_per_span"], res["routed"]["filter_runs_per_span"]),
                  "| socket filter CPU per {} (per run) | {:.2f} µs ({:.0f} ns) | {:.2f} µs ({:.0f} ns) |".format(
                      unit, res["bridge"]["filter_ns_per_span"] / 1000, res["bridge"]["filter_ns_per_run"],
                      res["routed"]["filter_ns_per_span"] / 1000, res["routed"]["filter_ns_per_run"])]
    lines += ["",
              f"routed − bridge: median {res['routed_minus_bridge_median']:+.3f}, "
              f"pooled {res['routed_minus_bridge_pooled']:+.3f} (target: within 0.02)", ""]
json.dump(summary, open(json_path, "w"), indent=1)
open(md_path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"\nJSON: {json_path}\nMarkdown: {md_path}")
PY
