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
#   BENCH_PERF_KEEP    1 = also keep each run's perf.data there [0]
#   BENCH_SKIP_BUILD   1 = do not run make && make install [0]
#   BENCH_PG_CONF      extra postgresql.conf lines for the cluster, e.g.
#                      "ebpf_capture.http = off" (connection spans only) []
#   BENCH_RESULTS_DIR  where the JSON/Markdown go [bench/results]
#   EBPFC_NS           namespace prefix [ebpfcb]  (tests use ebpfct)
#   BENCH_PG_PORT      port of the throw-away cluster [5497]
#   NGINX_PORT         port nginx listens on in pod2 [8080]
#
# Connection spans only (protocol = 'tcp'): HTTP exchange spans are written too
# (ebpf_capture.http is on by default) and cost worker CPU, but are not counted.
#
# Setup details worth knowing when reading the figures:
#   - pod1 gets net.ipv4.ip_local_port_range "1024 65535" and tcp_tw_reuse=1
#     (in its own namespace only), so tens of thousands of short connections
#     do not run out of ephemeral ports.
#   - the cluster runs with ebpf_capture.idle_timeout = 5s, so a connection
#     left half-open when wrk stops is written within the drain wait.
set -euo pipefail

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
BENCH_PERF_KEEP="${BENCH_PERF_KEEP:-0}"
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5497}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
# A fixed, small body; its length is reported.
BODY="ebpf_capture bench: hello from pod2"

# The traffic: short connections.
BENCH_NAME=capture_bench
WRK_ARGS=(-H 'Connection: close')
NGINX_KEEPALIVE="keepalive_timeout 0;"
URL_PATH=/

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"

bench_require_root
bench_check_uint BENCH_DURATION BENCH_CONNECTIONS BENCH_THREADS BENCH_WARMUP BENCH_PAUSE \
	BENCH_DRAIN_TIMEOUT BENCH_PG_PORT NGINX_PORT
((BENCH_DURATION > 0 && BENCH_CONNECTIONS > 0 && BENCH_THREADS > 0)) ||
	die "BENCH_DURATION, BENCH_CONNECTIONS and BENCH_THREADS must be positive"
((BENCH_CONNECTIONS >= BENCH_THREADS)) || die "wrk needs BENCH_CONNECTIONS >= BENCH_THREADS"

# --------------------------------------------------------------------------
# dependencies, build, topology, cluster, nginx

bench_prepare
bench_build
bench_setup

# spans_in WINDOW_START WINDOW_END: spans of connections to nginx in the window.
spans_in() {
	psql_q "SELECT count(*) FROM (SELECT * FROM spans WHERE protocol = 'tcp') spans
	        WHERE dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP'
	          AND start_time >= to_timestamp($1) AND start_time <= to_timestamp($2)"
}
spans_in_window() { spans_in "$WIN0" "$WIN1"; }

# --------------------------------------------------------------------------
# the runs

if ((BENCH_WARMUP > 0)); then
	wrk_warmup "$BENCH_WARMUP"
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

bench_capture_start

log "run 2: capture on $IFACE (worker pid $WORKER_PID), ${BENCH_DURATION}s"
W0="$(proc_ticks "$WORKER_PID")"
X0="$(ctx_switches "$WORKER_PID")"
C0="$(cluster_ticks)"
D0="$(now_s)"
wrk_run capture "$BENCH_DURATION"
T0="$(got capture.t0)"
T1="$(got capture.t1)"
WIN0="$(awk -v t="$T0" 'BEGIN { printf "%.6f", t - 1 }')"
WIN1="$(awk -v t="$T1" 'BEGIN { printf "%.6f", t + 1 }')"

bench_drain spans_in_window
W1="$(proc_ticks "$WORKER_PID")"
X1="$(ctx_switches "$WORKER_PID")"
put capture.worker_ctx_switches "$((X1 - X0))"
C1="$(cluster_ticks)"
put capture.drained "$DRAINED"
put capture.drain_seconds "$(awk -v a="$T1" -v b="$D1" 'BEGIN { printf "%.1f", b - a }')"
put capture.worker_ticks "${W0:-} ${W1:-}"
put capture.cluster_ticks "$C0 $C1"
put capture.measure_seconds "$(awk -v a="$D0" -v b="$D1" 'BEGIN { printf "%.3f", b - a }')"
# Fresh statistics for the checks below (after the CPU was measured): a short
# run can end before autovacuum analyzed the table, and the anti-joins below
# then get a nested loop that takes minutes.
psql_q "ANALYZE spans" >/dev/null
put capture.status_after "$(status_row)"
put capture.spans_window "$(spans_in "$WIN0" "$WIN1")"
put capture.spans_port_all "$(psql_q "SELECT count(*) FROM (SELECT * FROM spans WHERE protocol = 'tcp') spans WHERE dst_port = $NGINX_PORT")"
put capture.spans_dupes "$(psql_q "SELECT count(*) - count(DISTINCT (src_addr, src_port, dst_addr, dst_port, start_time))
	FROM (SELECT * FROM spans WHERE protocol = 'tcp') spans WHERE dst_port = $NGINX_PORT")"
# Spans in the table that are not pod1 -> nginx connections (there should be none).
put capture.spans_other "$(psql_q "SELECT count(*) FROM (SELECT * FROM spans WHERE protocol = 'tcp') spans
	WHERE NOT (dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP' AND src_addr = '$CLIENT_IP')")"
put capture.spans_other_sample "$(psql_q "SELECT start_time, end_time, status, src_addr, src_port,
	dst_addr, dst_port, bytes_sent, bytes_received, packets_sent, packets_received, attributes
	FROM (SELECT * FROM spans WHERE protocol = 'tcp') spans WHERE NOT (dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP' AND src_addr = '$CLIENT_IP')
	ORDER BY start_time LIMIT 10" | base64 -w0)"
# Connections first seen mid-stream (their handshake was not seen): every span
# of the same client port around them, to tell a lost handshake from a reused
# four-tuple.
put capture.mid_stream_sample "$(psql_q "SELECT m.src_port, s.start_time, s.end_time,
	s.attributes->>'tcp.close_reason', s.attributes->>'tcp.mid_stream', s.bytes_sent,
	s.bytes_received, s.packets_sent, s.packets_received
	FROM (SELECT src_port, start_time FROM spans WHERE protocol = 'tcp' AND dst_port = $NGINX_PORT
	      AND (attributes->>'tcp.mid_stream')::bool ORDER BY start_time LIMIT 10) m
	JOIN spans s ON s.protocol = 'tcp' AND s.src_port = m.src_port AND s.dst_port = $NGINX_PORT
	 AND s.start_time BETWEEN m.start_time - interval '5 s' AND m.start_time + interval '5 s'
	ORDER BY m.start_time, s.start_time" | base64 -w0)"
# With HTTP parsing on, every connection carries one request and its response:
# one HTTP span each, child of its connection's span.
put capture.http_setting "$(psql_q "SHOW ebpf_capture.http")"
put capture.http_spans "$(psql_q "SELECT count(*) FROM spans WHERE protocol = 'http' AND dst_port = $NGINX_PORT")"
put capture.connections_without_http_span "$(psql_q "SELECT count(*) FROM spans t
	WHERE t.protocol = 'tcp' AND t.dst_port = $NGINX_PORT AND t.bytes_received > 0
	  AND NOT EXISTS (SELECT 1 FROM spans h WHERE h.protocol = 'http' AND h.dst_port = $NGINX_PORT
	                  AND h.attributes->>'tcp.span_id' = t.span_id)")"
# ... and, if there are any, up to ten of them with every span of the same
# client port around them (a reused four-tuple shows as neighbours).
put capture.no_http_sample "$(psql_q "SELECT m.src_port, s.protocol, s.start_time, s.end_time,
	s.attributes->>'tcp.close_reason', s.bytes_sent, s.bytes_received, s.span_id,
	s.attributes->>'tcp.span_id'
	FROM (SELECT t.src_port, t.start_time FROM spans t
	      WHERE t.protocol = 'tcp' AND t.dst_port = $NGINX_PORT AND t.bytes_received > 0
	        AND NOT EXISTS (SELECT 1 FROM spans h WHERE h.protocol = 'http' AND h.dst_port = $NGINX_PORT
	                        AND h.attributes->>'tcp.span_id' = t.span_id)
	      ORDER BY t.start_time LIMIT 10) m
	JOIN spans s ON s.src_port = m.src_port AND s.dst_port = $NGINX_PORT
	 AND s.start_time BETWEEN m.start_time - interval '1 s' AND m.start_time + interval '1 s'
	ORDER BY m.start_time, s.start_time" | base64 -w0)"
put capture.status_json "$(psql_q "SELECT row_to_json(s) FROM capture_status() s" | base64 -w0)"
put capture.spans_by_reason "$(psql_q "SELECT coalesce(string_agg(r || '=' || n, ' ' ORDER BY n DESC), '')
	FROM (SELECT attributes->>'tcp.close_reason' AS r, count(*) AS n FROM (SELECT * FROM spans WHERE protocol = 'tcp') spans
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
	FROM (SELECT * FROM spans WHERE protocol = 'tcp') spans WHERE dst_port = $NGINX_PORT
	  AND start_time BETWEEN to_timestamp($WIN0) AND to_timestamp($WIN1)")"

bench_capture_stop spans_in_window

if ((BENCH_THIRD_RUN)); then
	sleep "$BENCH_PAUSE"
	log "run 3: baseline again, no capture, ${BENCH_DURATION}s"
	wrk_run baseline2 "$BENCH_DURATION"
fi

bench_nginx_stop_count baseline promisc capture baseline2

# --------------------------------------------------------------------------
# summary, JSON, Markdown

JSON="$BENCH_RESULTS_DIR/capture_bench-$STAMP.json"
MD="$BENCH_RESULTS_DIR/capture_bench-$STAMP.md"
bench_put_meta

python3 - "$RESULTS" "$JSON" "$MD" "$REPO/bench" <<'PY'
import base64, json, sys

tsv, json_path, md_path, libdir = sys.argv[1:5]
sys.path.insert(0, libdir)
from benchlib import load_tsv, load_runs, parse_status, ratio, server_log_lines  # noqa: E402

raw = load_tsv(tsv)
g = raw.get
STATUS_COLS = ["state", "pid", "packets", "bytes", "spans_written", "spans_dropped",
               "events_dropped", "kernel_drops", "flow_table_full", "flows_tracked", "last_error"]


def status(s):
    return parse_status(s, STATUS_COLS)


clk = int(g("meta.clk_tck"))
runs = load_runs(g, ("baseline", "promisc", "capture", "baseline2"), clk)
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

interesting, problems = server_log_lines(g)
# The bench's own ANALYZE spans cancels an autovacuum of the table: not a problem.
problems = [l for l in problems if "canceling autovacuum task" not in l]

thr_ratio = ratio(cap["requests_per_s"] or 0, base["requests_per_s"] or 0)
thr_ratio2 = None
if "baseline2" in runs:
    mean = (base["requests_per_s"] + runs["baseline2"]["requests_per_s"]) / 2
    thr_ratio2 = ratio(cap["requests_per_s"], mean)

http_on = g("capture.http_setting") == "on"
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
        "mid_stream_sample": base64.b64decode(g("capture.mid_stream_sample") or "")
        .decode("utf-8", "replace").splitlines(),
        "http_parsing": g("capture.http_setting"),
        "http_spans": int(g("capture.http_spans") or 0) if http_on else None,
        "connections_with_response_but_no_http_span":
            int(g("capture.connections_without_http_span") or 0) if http_on else None,
        "no_http_span_sample": base64.b64decode(g("capture.no_http_sample") or "")
        .decode("utf-8", "replace").splitlines(),
        "status": json.loads(base64.b64decode(g("capture.status_json") or "") or "null"),
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
    ("HTTP spans (connections with a response but none)", lambda n: (
        f"{result['capture']['http_spans']:,} ({result['capture']['connections_with_response_but_no_http_span']:,})"
        if n == "capture" and result["capture"]["http_parsing"] == "on" else "–")),
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
if c["http_parsing"] == "on":
    out.append(f"http spans (one per connection)      {c['http_spans']}   "
               f"connections with a response but no http span: "
               f"{c['connections_with_response_but_no_http_span']}")
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
