#!/usr/bin/env bash
# soak.sh - does the store stay bounded while a capture runs for a long time?
#
# A capture on cni0 under mixed load for SOAK_MINUTES, with one-minute spans
# partitions and a short retention (SOAK_RETENTION), so that several
# retention periods pass within the run:
#   - keep-alive HTTP: wrk (pod1) against nginx (pod2), paced by
#     bench/soak_pace.lua to about SOAK_KEEPALIVE_RPS requests/s;
#   - short connections: a second wrk with Connection: close, about
#     SOAK_SHORT_CPS connections/s;
#   - long-lived connections: SOAK_LONG connections (bench/hold_connections.py)
#     that send a byte every 20 s for the whole run.
# Every SOAK_SAMPLE seconds it records: spans kept (the planner's estimate of
# the partitions' rows), bytes of spans and of the rollup, the data
# directory's free space, the capture worker's anonymous RSS, spans written
# per second, spans dropped, and the requests and connections the load made.
# At the end it checks that every request and connection was recorded (the
# counts of the last minutes are compared when the load has stopped), and
# draws the samples over time (gnuplot) into a PNG beside the JSON/Markdown.
#
# Targets: size and RSS flat after the first retention period (the slope of
# the second half is reported); 100 % of exchanges and connections recorded;
# retention never stalls inserts (no spans dropped).
#
# Nothing here is a test: the script fails only on a broken setup.
#
# Usage (as root, from anywhere):  bench/soak.sh [-h]
#
# Environment (defaults in brackets):
#   SOAK_MINUTES        how long the load runs [30]; 5 for a quick run
#   SOAK_RETENTION      ebpf_capture.retention [5min]
#   SOAK_KEEPALIVE_RPS  keep-alive requests per second, about [4000]
#   SOAK_SHORT_CPS      short connections per second, about [300]
#   SOAK_LONG           long-lived connections [50]
#   SOAK_SAMPLE         seconds between samples [5]
#   BENCH_STOCK         1 = PostgreSQL's default settings [1]
#   BENCH_SKIP_BUILD    1 = do not run make && make install [0]
#   BENCH_PG_CONF       extra postgresql.conf lines []
#   BENCH_RESULTS_DIR   where the JSON/Markdown/PNG go [bench/results]
#   EBPFC_NS, BENCH_PG_PORT, NGINX_PORT [ebpfsk, 5495, 8080]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfsk}"
export EBPFC_PODS=3
SOAK_MINUTES="${SOAK_MINUTES:-30}"
SOAK_RETENTION="${SOAK_RETENTION:-5min}"
SOAK_KEEPALIVE_RPS="${SOAK_KEEPALIVE_RPS:-4000}"
SOAK_SHORT_CPS="${SOAK_SHORT_CPS:-300}"
SOAK_LONG="${SOAK_LONG:-50}"
SOAK_SAMPLE="${SOAK_SAMPLE:-5}"
BENCH_DURATION=$((SOAK_MINUTES * 60))
BENCH_CONNECTIONS=16
BENCH_THREADS=1
BENCH_PAUSE=0
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF=0
BENCH_PERF_KEEP=0
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5495}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
BODY="ebpf_capture soak: hello from pod2"

BENCH_NAME=soak
WRK_ARGS=()
NGINX_KEEPALIVE="keepalive_timeout 65; keepalive_requests 1000000;"
URL_PATH=/soak

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"

bench_require_root
bench_check_uint SOAK_MINUTES SOAK_KEEPALIVE_RPS SOAK_SHORT_CPS SOAK_LONG SOAK_SAMPLE BENCH_PG_PORT \
	NGINX_PORT
((SOAK_MINUTES > 0 && SOAK_SAMPLE > 0)) || die "SOAK_MINUTES and SOAK_SAMPLE must be positive"
command -v gnuplot >/dev/null || die "gnuplot not found (tests/install-deps.sh installs gnuplot-nox)"

BENCH_PG_CONF="ebpf_capture.partition_interval = '1min'
ebpf_capture.retention = '$SOAK_RETENTION'
ebpf_capture.rollup_partition_interval = '1min'
ebpf_capture.rollup_retention = '$SOAK_RETENTION'${BENCH_PG_CONF:+
$BENCH_PG_CONF}"

bench_prepare
bench_build
bench_setup

# wrk paced per connection: a request every `delay` ms on each of its
# connections (bench/soak_pace.lua).
paced_wrk() { # NAME CONNECTIONS RATE EXTRA_ARGS...
	local name="$1" conns="$2" rate="$3"
	shift 3
	local delay=$((conns * 1000 / (rate > 0 ? rate : 1)))
	ip netns exec "$(topo_pod_ns 1)" env SOAK_DELAY_MS="$delay" wrk -t1 -c"$conns" -d"$((BENCH_DURATION + 5))s" \
		-s "$REPO/bench/soak_pace.lua" "$@" "$URL" >"$WORK/wrk-$name.txt" 2>&1 &
	BENCH_BG_PID="${BENCH_BG_PID:-} $!"
}

LONG_PORT=9400
ip netns exec "$(topo_pod_ns 3)" python3 "$REPO/bench/hold_connections.py" serve \
	--bind "$(pod_ip4 3)" --port "$LONG_PORT" &
BENCH_BG_PID="${BENCH_BG_PID:-} $!"
sleep 1

bench_capture_start
DATADIR="$PGDIR/data"

ip netns exec "$(topo_pod_ns 1)" python3 "$REPO/bench/hold_connections.py" connect \
	--host "$(pod_ip4 3)" --port "$LONG_PORT" --count "$SOAK_LONG" --every 20 >"$WORK/long.txt" 2>&1 &
BENCH_BG_PID="${BENCH_BG_PID:-} $!"
paced_wrk keepalive 16 "$SOAK_KEEPALIVE_RPS"
paced_wrk short 8 "$SOAK_SHORT_CPS" -H 'Connection: close'

requests_served() {
	pod_exec 1 curl -s "http://$SERVER_IP:$NGINX_PORT/nginx_status" | awk 'NR == 3 { print $3 }'
}

SAMPLES="$WORK/samples.tsv"
printf 't\tspans_rows\tspans_bytes\trollup_bytes\tdisk_free\trss_anon_kb\tspans_written\tspans_dropped\trequests\tconnections\tspans_per_s\trequests_per_s\n' >"$SAMPLES"
t_start="$(now_s)"
prev_t="" prev_written=0 prev_requests=0
log "soak for $SOAK_MINUTES min: keep-alive ~$SOAK_KEEPALIVE_RPS req/s, short ~$SOAK_SHORT_CPS conn/s, $SOAK_LONG long-lived; retention $SOAK_RETENTION"
end=$(($(date +%s) + BENCH_DURATION))
while (($(date +%s) < end)); do
	row="$(psql_q "SELECT s.spans_bytes, s.rollup_bytes, s.disk_free_bytes,
	        (SELECT coalesce(sum(c.reltuples), 0)::bigint FROM pg_inherits i JOIN pg_class c
	         ON c.oid = i.inhrelid WHERE i.inhparent = 'spans'::regclass AND c.reltuples > 0),
	        (SELECT spans_written FROM capture_status()), (SELECT spans_dropped FROM capture_status())
	        FROM storage_status() s")"
	IFS='|' read -r sbytes rbytes dfree srows written dropped <<<"$row"
	rss="$(awk '/^RssAnon:/ { print $2 }' "/proc/$WORKER_PID/status" 2>/dev/null || echo 0)"
	t="$(awk -v a="$t_start" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }')"
	requests="$(requests_served)"
	rates="0 0"
	if [[ -n "$prev_t" ]]; then
		rates="$(awk -v t0="$prev_t" -v t1="$t" -v w0="$prev_written" -v w1="$written" \
			-v r0="$prev_requests" -v r1="$requests" \
			'BEGIN { d = t1 - t0; if (d <= 0) d = 1; printf "%.0f %.0f", (w1 - w0) / d, (r1 - r0) / d }')"
	fi
	prev_t="$t" prev_written="$written" prev_requests="$requests"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$t" "$srows" "$sbytes" "$rbytes" "$dfree" "$rss" "$written" "$dropped" \
		"$requests" "$(tcp_counter "$(topo_pod_ns 1)" ActiveOpens)" ${rates} >>"$SAMPLES"
	sleep "$SOAK_SAMPLE"
done
log "load done; letting the last spans in"
for pid in ${BENCH_BG_PID:-}; do kill "$pid" 2>/dev/null || true; done
sleep 8

# Recall over the last minutes (within the retention): every request nginx
# logged since a cut time (its $msec: when the response ended) has its http
# span (end_time: when the response was seen). Only the cut is an edge, so
# the two counts may differ by a request or two there, not more.
cut="$(($(date +%s) - 150))"
put soak.recall_cut "$cut"
put soak.http_spans_since_cut "$(psql_q "SELECT count(*) FROM spans WHERE protocol = 'http'
  AND dst_port = $NGINX_PORT AND end_time >= to_timestamp($cut)")"
put soak.requests_since_cut "$(awk -v c="$cut" '$1 >= c { n++ } END { print n + 0 }' \
	"$NGINX_DIR/access.log" 2>/dev/null || echo 0)"
put soak.tcp_spans_since_cut "$(psql_q "SELECT count(*) FROM spans WHERE protocol = 'tcp'
  AND dst_port = $NGINX_PORT AND start_time >= to_timestamp($cut)")"
put soak.final_status "$(status_row)"
put soak.storage "$(psql_q "SELECT row_to_json(s) FROM storage_status() s")"
put soak.log_problems "$(grep -cE 'ERROR|WARNING|FATAL|PANIC' "$PGDIR/server.log" || true)"
soak_count() { psql_q "SELECT count(*) FROM spans"; }
bench_capture_stop soak_count || true

JSON="$BENCH_RESULTS_DIR/soak-$STAMP.json"
MD="$BENCH_RESULTS_DIR/soak-$STAMP.md"
PNG="$BENCH_RESULTS_DIR/soak-$STAMP.png"
cp "$SAMPLES" "$BENCH_RESULTS_DIR/soak-$STAMP.tsv"
bench_put_meta
put meta.minutes "$SOAK_MINUTES"
put meta.retention "$SOAK_RETENTION"
put meta.keepalive_rps "$SOAK_KEEPALIVE_RPS"
put meta.short_cps "$SOAK_SHORT_CPS"
put meta.long "$SOAK_LONG"

gnuplot <<EOF
set terminal pngcairo size 1200,900 font "Sans,10" noenhanced
set output "$PNG"
set datafile separator "\t"
set multiplot layout 3,1 title "ebpf_capture soak: $SOAK_MINUTES min, retention $SOAK_RETENTION, one-minute partitions"
set xlabel "minutes"
set grid
set key top left
set ylabel "MB"
plot "$SAMPLES" using (\$1/60):(\$3/1048576) every ::1 with lines lw 2 title "spans (tables, indexes)", \
     "$SAMPLES" using (\$1/60):(\$4/1048576) every ::1 with lines lw 2 title "rollup", \
     "$SAMPLES" using (\$1/60):(\$6/1024) every ::1 with lines lw 2 title "worker RSS (anonymous)"
set ylabel "spans kept (estimate)"
plot "$SAMPLES" using (\$1/60):2 every ::1 with lines lw 2 title "rows in the spans partitions"
set ylabel "per second"
plot "$SAMPLES" using (\$1/60):11 every ::2 with lines lw 2 title "spans written", \
     "$SAMPLES" using (\$1/60):12 every ::2 with lines lw 2 title "requests served (nginx)", \
     "$SAMPLES" using (\$1/60):8 every ::1 with lines lw 2 title "spans dropped (so far)"
unset multiplot
EOF

python3 - "$RESULTS" "$SAMPLES" "$JSON" "$MD" "$PNG" <<'PY'
import json, statistics, sys

tsv, samples_path, json_path, md_path, png = sys.argv[1:6]
meta, kv = {}, {}
for line in open(tsv):
    key, _, value = line.rstrip("\n").partition("\t")
    (meta if key.startswith("meta.") else kv)[key[5:] if key.startswith("meta.") else key] = value
rows = [line.rstrip("\n").split("\t") for line in open(samples_path)][1:]
cols = ["t", "spans_rows", "spans_bytes", "rollup_bytes", "disk_free", "rss_anon_kb",
        "spans_written", "spans_dropped", "requests", "connections", "spans_per_s",
        "requests_per_s"]
samples = [dict(zip(cols, (float(x) if x else 0.0 for x in r))) for r in rows]
retention_s = {"min": 60, "h": 3600, "s": 1}
ret = meta["retention"]
num = float("".join(ch for ch in ret if ch.isdigit() or ch == "."))
unit = ret.lstrip("0123456789.").strip() or "s"
retention = num * retention_s.get(unit, 60)


def slope(key, part):
    """Least-squares slope of key over the samples in part, per minute."""
    xs = [s["t"] / 60 for s in part]
    ys = [s[key] for s in part]
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


after = [s for s in samples if s["t"] >= retention + 120]
second_half = after[len(after) // 2:] if after else []
last = samples[-1] if samples else {}
first = samples[0] if samples else {}
span = (last.get("t", 0) - first.get("t", 0)) or 1
summary = dict(
    meta=meta,
    samples=len(samples),
    spans_written_per_s=round((last.get("spans_written", 0) - first.get("spans_written", 0)) / span),
    requests_per_s=round((last.get("requests", 0) - first.get("requests", 0)) / span),
    connections_per_s=round((last.get("connections", 0) - first.get("connections", 0)) / span),
    spans_dropped=int(last.get("spans_dropped", 0)),
    spans_mb_after_retention=dict(
        min=round(min((s["spans_bytes"] for s in after), default=0) / 2**20, 1),
        max=round(max((s["spans_bytes"] for s in after), default=0) / 2**20, 1),
        slope_mb_per_min_second_half=round(slope("spans_bytes", second_half) / 2**20, 3)),
    rollup_mb_after_retention=dict(
        min=round(min((s["rollup_bytes"] for s in after), default=0) / 2**20, 2),
        max=round(max((s["rollup_bytes"] for s in after), default=0) / 2**20, 2)),
    worker_rss_mb=dict(
        max=round(max((s["rss_anon_kb"] for s in samples), default=0) / 1024, 1),
        max_after_retention=round(max((s["rss_anon_kb"] for s in after), default=0) / 1024, 1),
        slope_mb_per_min_second_half=round(slope("rss_anon_kb", second_half) / 1024, 3)),
    recall=dict(
        http_spans=int(kv.get("soak.http_spans_since_cut", "0") or 0),
        requests=int(kv.get("soak.requests_since_cut", "0") or 0),
        tcp_spans=int(kv.get("soak.tcp_spans_since_cut", "0") or 0)),
    log_problems=int(kv.get("soak.log_problems", "0") or 0),
    storage=json.loads(kv["soak.storage"]) if kv.get("soak.storage") else None,
    png=png)
json.dump(summary, open(json_path, "w"), indent=1, default=str)
s = summary
lines = [f"# soak {meta['stamp']} ({meta['git']})", "",
         f"{meta['minutes']} min; retention {meta['retention']}, one-minute partitions; "
         f"keep-alive ~{meta['keepalive_rps']} req/s, short ~{meta['short_cps']} conn/s, "
         f"{meta['long']} long-lived; {meta['cpus']} CPUs, PostgreSQL {meta['postgres']}", "",
         "| | |", "|---|---|",
         f"| spans written per second | {s['spans_written_per_s']:,} |",
         f"| requests / connections per second (load) | {s['requests_per_s']:,} / {s['connections_per_s']:,} |",
         f"| spans dropped | {s['spans_dropped']:,} |",
         f"| spans, after the first retention period: min / max | "
         f"{s['spans_mb_after_retention']['min']} / {s['spans_mb_after_retention']['max']} MB |",
         f"| spans, slope over the second half | "
         f"{s['spans_mb_after_retention']['slope_mb_per_min_second_half']} MB/min |",
         f"| rollup after the first retention period: min / max | "
         f"{s['rollup_mb_after_retention']['min']} / {s['rollup_mb_after_retention']['max']} MB |",
         f"| worker RSS (anonymous): max / max after retention | "
         f"{s['worker_rss_mb']['max']} / {s['worker_rss_mb']['max_after_retention']} MB |",
         f"| worker RSS, slope over the second half | "
         f"{s['worker_rss_mb']['slope_mb_per_min_second_half']} MB/min |",
         f"| last 150 s of load: http spans / requests nginx logged (recall) | "
         f"{s['recall']['http_spans']:,} / {s['recall']['requests']:,} "
         f"({s['recall']['http_spans'] / max(s['recall']['requests'], 1):.4f}) |",
         f"| last 150 s of load: tcp spans to nginx | {s['recall']['tcp_spans']:,} |",
         f"| server log lines with ERROR/WARNING/FATAL/PANIC | {s['log_problems']} |",
         "", f"![soak]({png.rsplit('/', 1)[-1]})"]
open(md_path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"\nJSON: {json_path}\nMarkdown: {md_path}\nPNG: {png}")
PY
