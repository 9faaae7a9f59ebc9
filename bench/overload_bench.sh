#!/usr/bin/env bash
# overload_bench.sh - a worker that cannot keep up: bounded memory, every
# loss counted, no dearer spans, and back to complete once it can.
#
# wrk (pod1) runs keep-alive HTTP against nginx (pod2) for the whole run while
# the capture records it. In the middle, for OVERLOAD_SECONDS, the worker gets
# only OVERLOAD_QUOTA percent of a CPU (a cgroup v1 CPU quota on its process):
# it falls far behind the load, as on a node whose pods take every CPU.
# (OVERLOAD_QUOTA=0 runs OVERLOAD_HOGS busy loops at nice -19 instead, which
# take the CPUs from the load too.) Sampled every second: the worker's anonymous RSS, its CPU, the
# spans written and what was dropped where (spans_dropped: the backlog bound;
# events_dropped, payload_dropped: the ring buffer; kernel_drops). Reported,
# for the phases before, during and after the overload: worker CPU per span,
# spans per second, drops, peak RSS; and the recall of a probe burst run
# after the overload (every request of it recorded?), with how long after the
# hogs stopped the worker wrote spans as fast as the load again.
#
# Targets (issue: graceful overload): anonymous RSS under 128 MiB, every loss
# counted, CPU per span not higher under overload, recall 100 % within a few
# seconds after. Nothing here is a test (tests/integration/test_20_overload.py
# is the short one).
#
# Usage (as root, from anywhere):  bench/overload_bench.sh [-h]
#
# Environment (defaults in brackets):
#   OVERLOAD_BEFORE    seconds of load before the overload [15]
#   OVERLOAD_SECONDS   seconds of overload [60]
#   OVERLOAD_AFTER     seconds of load after it [20]
#   OVERLOAD_QUOTA     percent of a CPU the worker gets meanwhile [10]
#   OVERLOAD_HOGS      busy loops at nice -19, when OVERLOAD_QUOTA=0 [4]
#   BENCH_CONNECTIONS  wrk connections [32]
#   BENCH_STOCK, BENCH_SKIP_BUILD, BENCH_PG_CONF, BENCH_RESULTS_DIR, EBPFC_DESTDIR as in lib.sh
#   EBPFC_NS, BENCH_PG_PORT, NGINX_PORT [ebpfov, 5491, 8080]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfov}"
export EBPFC_PODS=2
OVERLOAD_BEFORE="${OVERLOAD_BEFORE:-15}"
OVERLOAD_SECONDS="${OVERLOAD_SECONDS:-60}"
OVERLOAD_AFTER="${OVERLOAD_AFTER:-20}"
OVERLOAD_HOGS="${OVERLOAD_HOGS:-4}"
OVERLOAD_QUOTA="${OVERLOAD_QUOTA:-10}"
CGROUP=/sys/fs/cgroup/cpu/ebpfc-overload-$$
BENCH_DURATION=$((OVERLOAD_BEFORE + OVERLOAD_SECONDS + OVERLOAD_AFTER))
BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-32}"
BENCH_THREADS=2
BENCH_PAUSE=0
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF=0
BENCH_PERF_KEEP=0
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5491}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
BODY="ebpf_capture overload: hello from pod2"

BENCH_NAME=overload_bench
WRK_ARGS=()
NGINX_KEEPALIVE="keepalive_timeout 65; keepalive_requests 1000000;"
URL_PATH=/load

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"
bench_require_root
bench_check_uint OVERLOAD_BEFORE OVERLOAD_SECONDS OVERLOAD_AFTER OVERLOAD_HOGS OVERLOAD_QUOTA \
	BENCH_CONNECTIONS
if ((OVERLOAD_QUOTA > 0)); then
	[[ -w /sys/fs/cgroup/cpu/cgroup.procs ]] || die "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu"
fi
release_cgroup() {
	[[ -d "$CGROUP" ]] || return 0
	while read -r pid; do echo "$pid" >/sys/fs/cgroup/cpu/cgroup.procs 2>/dev/null || true; done \
		<"$CGROUP/cgroup.procs"
	rmdir "$CGROUP" 2>/dev/null || true
}

bench_prepare
overload_exit() {
	local rc=$?
	release_cgroup
	(exit "$rc")
	bench_cleanup
}
trap overload_exit EXIT
bench_build
bench_setup
bench_capture_start

SAMPLES="$WORK/samples.tsv"
printf 't\tphase\trss_anon_kb\tworker_ticks\tspans_written\tspans_dropped\tevents_dropped\tpayload_dropped\tkernel_drops\n' >"$SAMPLES"
sample() { # PHASE
	local row
	row="$(psql_q "SELECT spans_written, spans_dropped, events_dropped, payload_dropped, kernel_drops
	               FROM capture_status()")"
	printf '%s\t%s\t%s\t%s\t%s\n' "$(now_s)" "$1" \
		"$(awk '/^RssAnon:/ { print $2 }' "/proc/$WORKER_PID/status")" \
		"$(proc_ticks "$WORKER_PID")" "$(tr '|' '\t' <<<"$row")" >>"$SAMPLES"
}

log "wrk for ${BENCH_DURATION}s; overload from ${OVERLOAD_BEFORE}s for ${OVERLOAD_SECONDS}s ($OVERLOAD_HOGS hogs at nice -19)"
ip netns exec "$(topo_pod_ns 1)" wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$((BENCH_DURATION + 2))s" \
	"$URL" >"$WORK/wrk.txt" 2>&1 &
WRK_PID=$!
t0="$(date +%s)"
phase=before
hogs=()
while (($(date +%s) < t0 + BENCH_DURATION)); do
	now=$(($(date +%s) - t0))
	if [[ "$phase" == before ]] && ((now >= OVERLOAD_BEFORE)); then
		phase=overload
		if ((OVERLOAD_QUOTA > 0)); then
			mkdir -p "$CGROUP"
			echo $((OVERLOAD_QUOTA * 1000)) >"$CGROUP/cpu.cfs_quota_us"
			echo "$WORKER_PID" >"$CGROUP/cgroup.procs"
			log "overload: the worker gets $OVERLOAD_QUOTA % of a CPU"
		else
			for _ in $(seq "$OVERLOAD_HOGS"); do
				nice -n -19 sh -c 'while :; do :; done' &
				hogs+=("$!")
			done
			BENCH_BG_PID="${BENCH_BG_PID:-} ${hogs[*]}"
			log "overload: the hogs run"
		fi
	elif [[ "$phase" == overload ]] && ((now >= OVERLOAD_BEFORE + OVERLOAD_SECONDS)); then
		phase=after
		if ((OVERLOAD_QUOTA > 0)); then
			release_cgroup
			log "the quota is gone"
		else
			kill "${hogs[@]}" 2>/dev/null || true
			wait "${hogs[@]}" 2>/dev/null || true
			log "the hogs stopped"
		fi
	fi
	sample "$phase"
	sleep 1
done
wait "$WRK_PID" 2>/dev/null || true
WRK_PID=""
sleep 3

# A probe burst on fresh connections: every request of it must be recorded.
log "probe: 2,000 requests on 4 new connections"
served() { pod_exec 1 curl -s "http://$SERVER_IP:$NGINX_PORT/nginx_status" | awk 'NR == 3 { print $3 }'; }
probe0="$(psql_q "SELECT count(*) FROM spans WHERE protocol = 'http' AND http_target = '/probe'")"
served0="$(served)"
pod_exec 1 wrk -t1 -c4 -d30s -s "$REPO/bench/probe_count.lua" "http://$SERVER_IP:$NGINX_PORT/probe" \
	>"$WORK/probe.txt" 2>&1 || true
served1="$(served)"
sleep 3
probe_sent=$((served1 - served0 - 1)) # the second stub_status request is counted in served1
probe1="$(psql_q "SELECT count(*) FROM spans WHERE protocol = 'http' AND http_target = '/probe'")"
put probe.sent "$probe_sent"
put probe.recorded "$((probe1 - probe0))"
put wrk_output "$(base64 -w0 <"$WORK/wrk.txt")"
put final_status "$(status_row)"
bench_count_none() { echo 0; }
bench_capture_stop bench_count_none || true
bench_put_meta
put meta.before "$OVERLOAD_BEFORE"
put meta.overload "$OVERLOAD_SECONDS"
put meta.after "$OVERLOAD_AFTER"
put meta.hogs "$OVERLOAD_HOGS"
put meta.quota "$OVERLOAD_QUOTA"
cp "$SAMPLES" "$BENCH_RESULTS_DIR/overload_bench-$STAMP.tsv"

python3 - "$RESULTS" "$SAMPLES" "$BENCH_RESULTS_DIR/overload_bench-$STAMP.json" \
	"$BENCH_RESULTS_DIR/overload_bench-$STAMP.md" <<'PY'
import json, sys

tsv, samples_path, json_path, md_path = sys.argv[1:5]
meta, kv = {}, {}
for line in open(tsv):
    key, _, value = line.rstrip("\n").partition("\t")
    if key.startswith("meta."):
        meta[key[5:]] = value
    else:
        kv[key] = value
clk = int(meta["clk_tck"])
cols = ["t", "phase", "rss", "ticks", "written", "sdrop", "edrop", "pdrop", "kdrop"]
rows = []
for line in list(open(samples_path))[1:]:
    v = line.rstrip("\n").split("\t")
    r = dict(zip(cols, v))
    for k in cols:
        if k != "phase":
            r[k] = float(r[k] or 0)
    rows.append(r)
phases = {}
for name in ("before", "overload", "after"):
    ps = [r for r in rows if r["phase"] == name]
    if len(ps) < 2:
        continue
    a, b = ps[0], ps[-1]
    secs = b["t"] - a["t"] or 1
    written = b["written"] - a["written"]
    lost = (b["sdrop"] - a["sdrop"])
    phases[name] = dict(
        seconds=round(secs, 1),
        spans_per_s=round(written / secs),
        worker_cpu_share=round((b["ticks"] - a["ticks"]) / clk / secs, 3),
        worker_us_per_span=round(1e6 * (b["ticks"] - a["ticks"]) / clk / written, 2) if written else None,
        # every span the worker made, written or dropped at the backlog bound
        worker_us_per_span_made=round(1e6 * (b["ticks"] - a["ticks"]) / clk / (written + lost), 2)
        if written + lost else None,
        spans_dropped=int(b["sdrop"] - a["sdrop"]), events_dropped=int(b["edrop"] - a["edrop"]),
        payload_dropped=int(b["pdrop"] - a["pdrop"]), kernel_drops=int(b["kdrop"] - a["kdrop"]),
        rss_max_mib=round(max(r["rss"] for r in ps) / 1024, 1))
# how long after the hogs stopped the worker wrote as fast as before
after = [r for r in rows if r["phase"] == "after"]
before = phases.get("before", {}).get("spans_per_s") or 0
caught_up = None
for x, y in zip(after, after[1:]):
    rate = (y["written"] - x["written"]) / ((y["t"] - x["t"]) or 1)
    if before and rate <= 1.2 * before and y["sdrop"] == x["sdrop"] and y["edrop"] == x["edrop"] \
            and y["pdrop"] == x["pdrop"]:
        caught_up = round(y["t"] - after[0]["t"], 1)
        break
summary = dict(meta=meta, phases=phases, rss_max_mib=round(max(r["rss"] for r in rows) / 1024, 1),
               seconds_to_steady_after=caught_up,
               probe_sent=int(kv.get("probe.sent") or 0), probe_recorded=int(kv.get("probe.recorded") or 0))
json.dump(summary, open(json_path, "w"), indent=1)
lines = [f"# overload_bench {meta['stamp']} ({meta['git']})", "",
         f"keep-alive wrk -c{meta['connections']}; {meta['overload']} s of overload: "
         + (f"the worker limited to {meta['quota']} % of a CPU (cgroup CPU quota)" if meta['quota'] != '0'
            else f"{meta['hogs']} busy loops at nice -19")
         + f"; {meta['cpus']} CPUs, PostgreSQL {meta['postgres']}", "",
         "| phase | s | spans/s written | worker CPU | µs per span written | µs per span made | "
         "spans dropped | events dropped | payload dropped | kernel drops | peak RSS (anon) |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for name, p in phases.items():
    lines.append(f"| {name} | {p['seconds']} | {p['spans_per_s']:,} | {p['worker_cpu_share']:.0%} | "
                 f"{p['worker_us_per_span']} | {p['worker_us_per_span_made']} | "
                 f"{p['spans_dropped']:,} | {p['events_dropped']:,} | "
                 f"{p['payload_dropped']:,} | {p['kernel_drops']:,} | {p['rss_max_mib']} MiB |")
lines += ["", f"peak anonymous RSS: **{summary['rss_max_mib']} MiB**; steady again "
          f"{summary['seconds_to_steady_after']} s after the overload ended; probe afterwards: "
          f"{summary['probe_recorded']:,} of {summary['probe_sent']:,} requests recorded"]
open(md_path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
