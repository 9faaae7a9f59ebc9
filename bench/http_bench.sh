#!/usr/bin/env bash
# http_bench.sh - HTTP keep-alive through cni0: does the capture write one
# http span per exchange, and what does that cost?
#
# One run measures, side by side, wrk (pod1) against nginx (pod2) over
# persistent connections (nginx: keepalive_timeout 65, keepalive_requests
# 100000, so every wrk connection carries thousands of requests):
#
#   1. baseline   - no capture
#   2. capture    - capture_start('cni0') running in the server's worker, with
#                   ebpf_capture.http on (the default)
#   3. baseline2  - no capture again (drift check; BENCH_THIRD_RUN=0 skips it)
#
# and reports requests completed (wrk's own count, cross-checked with nginx's
# access log) against the http spans recorded for the capture run
# (protocol = 'http', to nginx's port), their ratio (target 100 %), wrk
# throughput with capture / without (target >= 0.85), the capture worker's
# CPU microseconds per span, the capture_status() counters, and a check of
# the spans themselves (method, target, status, incomplete exchanges and why,
# exchanges per connection against nginx's log, the link to the connection's
# tcp span). The summary is printed and written as JSON and as a Markdown
# snippet to bench/results/http_bench-<UTC timestamp>.{json,md}.
#
# Before measuring it waits (at most BENCH_QUIET_TIMEOUT seconds) for the
# machine to be quiet, and says so in the summary when it was not.
#
# Nothing here is a test: the script fails only on a broken setup, never on
# a figure.
#
# Usage (as root, from anywhere):  bench/http_bench.sh [-h]
#
# Environment (defaults in brackets):
#   BENCH_DURATION     seconds per measured wrk run [10]
#   BENCH_CONNECTIONS  wrk connections [32]
#   BENCH_THREADS      wrk threads [2]
#   BENCH_PATH         the path wrk requests (the http_target expected) [/bench/keepalive]
#   BENCH_TRACEPARENT  1 = every request carries a random traceparent of its
#                      own (bench/traceparent.lua), so every http span keeps
#                      a caller's random trace id [0]
#   BENCH_KEEPALIVE_REQUESTS  nginx keepalive_requests [100000]
#   BENCH_WARMUP       seconds of unmeasured warm-up before run 1, 0 = none [3]
#   BENCH_PAUSE        seconds between runs [3]
#   BENCH_THIRD_RUN    1 = a second baseline after the capture run [1]
#   BENCH_DRAIN_TIMEOUT seconds to wait for the spans of the capture run [120]
#   BENCH_QUIET_TIMEOUT seconds to wait for a quiet machine, 0 = do not wait [600]
#   BENCH_QUIET_LOAD   quiet: 1-minute load average below this [0.7]
#   BENCH_QUIET_IDLE   quiet: CPUs at least this % idle over 5 s [90]
#   BENCH_SAMPLE_STATUS 1 = read capture_status() every 0.5 s during the capture
#                      run and report how the counters moved (costs a psql
#                      call per sample; for diagnosis, not for the figures) [0]
#   BENCH_PG_CONF      extra postgresql.conf lines, e.g.
#                      "ebpf_capture.ring_buffer_size = '64MB'" (reported) []
#   BENCH_PERF         1 = sample every CPU with `perf record` during each run
#                      (see capture_bench.sh) [0]
#   BENCH_PERF_KEEP    1 = also keep each run's perf.data there [0]
#   BENCH_SKIP_BUILD   1 = do not run make && make install [0]
#   BENCH_RESULTS_DIR  where the JSON/Markdown go [bench/results]
#   EBPFC_NS           namespace prefix [ebpfhb]  (capture_bench uses ebpfcb, tests ebpfct)
#   BENCH_PG_PORT      port of the throw-away cluster [5496]
#   NGINX_PORT         port nginx listens on in pod2 [8080]
#
# Setup details worth knowing when reading the figures:
#   - wrk stops after BENCH_DURATION with a request in flight on most of its
#     connections: nginx answers them (and logs them) after wrk stopped
#     counting, so up to BENCH_CONNECTIONS more exchanges cross the wire, and
#     are recorded, than wrk reports. nginx's access log counts them: spans
#     must equal its lines; spans - wrk requests must lie in [0, connections].
#   - wrk's exit closes its connections, so each one's tcp span is written
#     too (the cluster runs with ebpf_capture.idle_timeout = 5s for any
#     connection left half-open).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export EBPFC_NS="${EBPFC_NS:-ebpfhb}"
export EBPFC_PODS=2
BENCH_DURATION="${BENCH_DURATION:-10}"
BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-32}"
BENCH_THREADS="${BENCH_THREADS:-2}"
BENCH_PATH="${BENCH_PATH:-/bench/keepalive}"
BENCH_TRACEPARENT="${BENCH_TRACEPARENT:-0}"
BENCH_KEEPALIVE_REQUESTS="${BENCH_KEEPALIVE_REQUESTS:-100000}"
BENCH_WARMUP="${BENCH_WARMUP:-3}"
BENCH_PAUSE="${BENCH_PAUSE:-3}"
BENCH_THIRD_RUN="${BENCH_THIRD_RUN:-1}"
BENCH_DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-120}"
BENCH_QUIET_TIMEOUT="${BENCH_QUIET_TIMEOUT:-600}"
BENCH_QUIET_LOAD="${BENCH_QUIET_LOAD:-0.7}"
BENCH_QUIET_IDLE="${BENCH_QUIET_IDLE:-90}"
BENCH_SKIP_BUILD="${BENCH_SKIP_BUILD:-0}"
BENCH_PERF="${BENCH_PERF:-0}"
BENCH_PERF_KEEP="${BENCH_PERF_KEEP:-0}"
BENCH_SAMPLE_STATUS="${BENCH_SAMPLE_STATUS:-0}"
BENCH_PG_CONF="${BENCH_PG_CONF:-}"
BENCH_RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
BENCH_PG_PORT="${BENCH_PG_PORT:-5496}"
NGINX_PORT="${NGINX_PORT:-8080}"
IFACE=cni0
# A fixed, small body; its length is reported.
BODY="ebpf_capture bench: hello from pod2"

# The traffic: persistent connections, one request at a time on each.
BENCH_NAME=http_bench
WRK_ARGS=()
NGINX_KEEPALIVE="keepalive_timeout 65; keepalive_requests $BENCH_KEEPALIVE_REQUESTS;"
URL_PATH="$BENCH_PATH"
STATUS_COLS_SQL="state, coalesce(pid, 0), packets, bytes, spans_written, spans_dropped,
	events_dropped, kernel_drops, flow_table_full, flows_tracked,
	payload_dropped, http_connections, http_bound_hits, coalesce(last_error, '')"

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"

bench_require_root
bench_check_uint BENCH_DURATION BENCH_CONNECTIONS BENCH_THREADS BENCH_WARMUP BENCH_PAUSE \
	BENCH_DRAIN_TIMEOUT BENCH_QUIET_TIMEOUT BENCH_KEEPALIVE_REQUESTS BENCH_PG_PORT NGINX_PORT
((BENCH_DURATION > 0 && BENCH_CONNECTIONS > 0 && BENCH_THREADS > 0)) ||
	die "BENCH_DURATION, BENCH_CONNECTIONS and BENCH_THREADS must be positive"
((BENCH_CONNECTIONS >= BENCH_THREADS)) || die "wrk needs BENCH_CONNECTIONS >= BENCH_THREADS"
[[ "$BENCH_TRACEPARENT" == 0 || "$BENCH_TRACEPARENT" == 1 ]] ||
	die "BENCH_TRACEPARENT must be 0 or 1 (got '$BENCH_TRACEPARENT')"
((BENCH_TRACEPARENT == 0)) || WRK_ARGS=(-s "$REPO/bench/traceparent.lua")
[[ "$BENCH_PATH" =~ ^/[A-Za-z0-9/._~-]*$ ]] || die "BENCH_PATH must be a plain path (got '$BENCH_PATH')"
[[ "$BENCH_QUIET_LOAD" =~ ^[0-9]+(\.[0-9]+)?$ && "$BENCH_QUIET_IDLE" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
	die "BENCH_QUIET_LOAD and BENCH_QUIET_IDLE must be numbers"

# --------------------------------------------------------------------------
# dependencies, build, topology, cluster, nginx

bench_prepare
bench_build
bench_setup
put meta.http_guc "$(psql_q "SHOW ebpf_capture.http")"
put meta.keepalive_requests "$BENCH_KEEPALIVE_REQUESTS"
put meta.path "$BENCH_PATH"
put meta.traceparent "$BENCH_TRACEPARENT"
put meta.pg_conf "$(tr '\n' ';' <<<"$BENCH_PG_CONF" | sed 's/;$//')"
put meta.ring_buffer_size "$(psql_q "SHOW ebpf_capture.ring_buffer_size")"
put meta.batch_size "$(psql_q "SHOW ebpf_capture.batch_size")"
put meta.flush_interval "$(psql_q "SHOW ebpf_capture.flush_interval")"

# Spans to nginx that started in the capture run's window [WIN0, WIN1].
to_nginx() {
	printf "dst_port = %s AND dst_addr = '%s' AND start_time BETWEEN to_timestamp(%s) AND to_timestamp(%s)" \
		"$NGINX_PORT" "$SERVER_IP" "$WIN0" "$WIN1"
}
spans_all_window() { psql_q "SELECT count(*) FROM spans WHERE $(to_nginx)"; }
spans_http_window() { psql_q "SELECT count(*) FROM spans WHERE protocol = 'http' AND $(to_nginx)"; }

# established_to_nginx: TCP connections of pod1 to nginx still established.
established_to_nginx() {
	pod_exec 1 ss -Htn state established "( dport = :$NGINX_PORT )" 2>/dev/null | wc -l
}

# --------------------------------------------------------------------------
# the runs

if ((BENCH_QUIET_TIMEOUT > 0)); then
	bench_wait_quiet "$BENCH_QUIET_TIMEOUT" "$BENCH_QUIET_LOAD" "$BENCH_QUIET_IDLE"
else
	put meta.quiet ""
fi

if ((BENCH_WARMUP > 0)); then
	wrk_warmup "$BENCH_WARMUP"
fi

log "run 1: baseline, no capture, ${BENCH_DURATION}s"
wrk_run baseline "$BENCH_DURATION"
put baseline.established_after "$(established_to_nginx)"
sleep "$BENCH_PAUSE"

bench_capture_start

log "run 2: capture on $IFACE (worker pid $WORKER_PID), ${BENCH_DURATION}s"
W0="$(proc_ticks "$WORKER_PID")"
X0="$(ctx_switches "$WORKER_PID")"
C0="$(cluster_ticks)"
D0="$(now_s)"
BENCH_BG_PID=""
if ((BENCH_SAMPLE_STATUS)); then
	while :; do
		printf '%s|%s\n' "$(now_s)" "$(status_row)"
		sleep 0.5
	done >"$WORK/status_samples.txt" 2>/dev/null &
	BENCH_BG_PID=$!
fi
wrk_run capture "$BENCH_DURATION"
if [[ -n "$BENCH_BG_PID" ]]; then
	kill "$BENCH_BG_PID" 2>/dev/null || true
	wait "$BENCH_BG_PID" 2>/dev/null || true
	put capture.status_samples "$(base64 -w0 <"$WORK/status_samples.txt")"
fi
# wrk's exit closed its connections: none may be left to keep a tcp span open.
put capture.established_after "$(established_to_nginx)"
T0="$(got capture.t0)"
T1="$(got capture.t1)"
WIN0="$(awk -v t="$T0" 'BEGIN { printf "%.6f", t - 1 }')"
WIN1="$(awk -v t="$T1" 'BEGIN { printf "%.6f", t + 1 }')"
put capture.status_at_wrk_end "$(status_row)"

bench_drain spans_all_window
W1="$(proc_ticks "$WORKER_PID")"
X1="$(ctx_switches "$WORKER_PID")"
C1="$(cluster_ticks)"
put capture.drained "$DRAINED"
put capture.drain_seconds "$(awk -v a="$T1" -v b="$D1" 'BEGIN { printf "%.1f", b - a }')"
put capture.worker_ticks "${W0:-} ${W1:-}"
put capture.worker_ctx_switches "$((X1 - X0))"
put capture.cluster_ticks "$C0 $C1"
put capture.measure_seconds "$(awk -v a="$D0" -v b="$D1" 'BEGIN { printf "%.3f", b - a }')"
put capture.status_after "$(status_row)"

log "checking the spans"
# Fresh statistics: hundreds of thousands of rows arrived since CREATE EXTENSION.
psql_q "ANALYZE spans" >/dev/null
put capture.http_spans "$(spans_http_window)"
put capture.tcp_spans "$(psql_q "SELECT count(*) FROM spans WHERE protocol = 'tcp' AND $(to_nginx)")"
put capture.spans_port_all "$(psql_q "SELECT count(*) FROM spans WHERE dst_port = $NGINX_PORT")"
put capture.spans_protocols "$(psql_q "SELECT coalesce(string_agg(protocol || '=' || n, ' ' ORDER BY protocol), '')
	FROM (SELECT protocol, count(*) AS n FROM spans GROUP BY 1) s")"
# Spans that are not pod1 -> nginx (there should be none).
put capture.spans_other "$(psql_q "SELECT count(*) FROM spans
	WHERE NOT (dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP' AND src_addr = '$CLIENT_IP')")"
put capture.spans_other_sample "$(psql_q "SELECT protocol, start_time, end_time, status, src_addr, src_port,
	dst_addr, dst_port, http_method, http_target, http_status, attributes
	FROM spans WHERE NOT (dst_port = $NGINX_PORT AND dst_addr = '$SERVER_IP' AND src_addr = '$CLIENT_IP')
	ORDER BY start_time LIMIT 10" | base64 -w0)"
# Every http span: what it should be (GET of BENCH_PATH answered 200 with BODY,
# complete, from pod1, not an error) and how many are not.
put capture.http_check "$(psql_q "SELECT
	count(*),
	count(*) FILTER (WHERE http_method = 'GET'),
	count(*) FILTER (WHERE http_target = '$BENCH_PATH'),
	count(*) FILTER (WHERE http_status = 200),
	count(*) FILTER (WHERE attributes->>'http.incomplete' = 'false'),
	count(*) FILTER (WHERE attributes->>'http.incomplete' = 'true'),
	count(*) FILTER (WHERE http_method = 'GET' AND http_target = '$BENCH_PATH' AND http_status = 200
	                   AND attributes->>'http.incomplete' = 'false'),
	count(*) FILTER (WHERE src_addr = '$CLIENT_IP'),
	count(*) FILTER (WHERE status = 'ERROR'),
	count(*) FILTER (WHERE (attributes->>'http.response.body.size')::bigint = ${#BODY}),
	count(*) FILTER (WHERE attributes->>'server.address' = '$SERVER_IP' AND (attributes->>'server.port')::int = $NGINX_PORT),
	count(*) - count(DISTINCT (src_port, start_time, end_time)),
	count(DISTINCT attributes->>'tcp.span_id'),
	coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY end_time - start_time), '0'),
	coalesce(percentile_disc(0.99) WITHIN GROUP (ORDER BY end_time - start_time), '0'),
	count(*) FILTER (WHERE end_time < start_time)
	FROM spans WHERE protocol = 'http' AND $(to_nginx)")"
put capture.http_incomplete_reasons "$(psql_q "SELECT coalesce(string_agg(r || '=' || n, ' ' ORDER BY n DESC), '')
	FROM (SELECT coalesce(r, '(none)') AS r, count(*) AS n
	      FROM spans LEFT JOIN LATERAL jsonb_array_elements_text(attributes->'http.incomplete_reasons') r ON true
	      WHERE protocol = 'http' AND attributes->>'http.incomplete' = 'true' AND $(to_nginx)
	      GROUP BY 1) s")"
# The spans that are not as expected (the first 3 of each kind), and a random sample.
put capture.http_odd_sample "$(psql_q "SELECT start_time, end_time, src_port, http_method, http_target,
	http_status, status, attributes
	FROM (SELECT *, row_number() OVER (PARTITION BY attributes->'http.incomplete_reasons',
	                                   http_method, http_target, http_status ORDER BY start_time) AS k
	      FROM spans WHERE protocol = 'http' AND $(to_nginx)
	        AND NOT (http_method IS NOT DISTINCT FROM 'GET' AND http_target IS NOT DISTINCT FROM '$BENCH_PATH'
	                 AND http_status IS NOT DISTINCT FROM 200 AND attributes->>'http.incomplete' = 'false')) s
	WHERE k <= 3 ORDER BY start_time LIMIT 15" | base64 -w0)"
put capture.http_sample "$(psql_q "SELECT name, kind, status, src_addr || ':' || src_port, http_method,
	http_target, http_status, round(extract(epoch FROM end_time - start_time) * 1e6) || ' us',
	bytes_sent, bytes_received, attributes->>'http.incomplete'
	FROM spans WHERE protocol = 'http' AND $(to_nginx)
	ORDER BY random() LIMIT 5" | base64 -w0)"
# The connection each exchange travelled on: is its tcp span there?
# (Grouped first: a few dozen connections, not one probe per exchange.)
put capture.http_linked "$(psql_q "SELECT coalesce(sum(h.n), 0) FROM
	(SELECT attributes->>'tcp.span_id' AS sid, count(*) AS n FROM spans
	 WHERE protocol = 'http' AND $(to_nginx) GROUP BY 1) h
	WHERE h.sid IN (SELECT span_id FROM spans WHERE protocol = 'tcp')")"
# With BENCH_TRACEPARENT=1: the spans that joined their request's trace.
put capture.http_traced "$(psql_q "SELECT count(*) FROM spans
	WHERE protocol = 'http' AND parent_span_id IS NOT NULL AND $(to_nginx)")"
# wrk connects once to check the address before its connections: no payload.
put capture.tcp_empty "$(psql_q "SELECT count(*) FROM spans
	WHERE protocol = 'tcp' AND bytes_sent = 0 AND bytes_received = 0 AND $(to_nginx)")"
put capture.tcp_by_reason "$(psql_q "SELECT coalesce(string_agg(r || '=' || n, ' ' ORDER BY n DESC), '')
	FROM (SELECT attributes->>'tcp.close_reason' AS r, count(*) AS n FROM spans
	      WHERE protocol = 'tcp' AND $(to_nginx) GROUP BY 1) s")"
# http spans per client port (= per connection: wrk's ports are not reused
# within a run), compared with nginx's access log below.
psql_q "SELECT src_port, count(*) FROM spans WHERE protocol = 'http' AND $(to_nginx)
	GROUP BY 1 ORDER BY 1" | tr '|' ' ' >"$WORK/spans_per_port.txt"

bench_capture_stop spans_all_window

if ((BENCH_THIRD_RUN)); then
	sleep "$BENCH_PAUSE"
	log "run 3: baseline again, no capture, ${BENCH_DURATION}s"
	wrk_run baseline2 "$BENCH_DURATION"
	put baseline2.established_after "$(established_to_nginx)"
fi

bench_nginx_stop_count baseline capture baseline2
# nginx's responses per client port during the capture run, against the spans.
awk -v a="$T0" -v b="$T1" '$1 >= a && $1 <= b + 0.5 { n[$3]++ } END { for (p in n) print p, n[p] }' \
	"$NGINX_DIR/access.log" | sort -n >"$WORK/log_per_port.txt"
put capture.per_port "$(awk 'NR == FNR { s[$1] = $2; next } { l[$1] = $2 }
	END {
		for (p in l) { ports++; if (s[p] + 0 != l[p]) { diff++; if (shown++ < 10) out = out " " p ":" l[p] "/" s[p] + 0 } }
		for (p in s) if (!(p in l)) { extra++; diff++; if (shown++ < 10) out = out " " p ":0/" s[p] }
		printf "%d %d %d%s\n", ports, diff + 0, extra + 0, out
	}' "$WORK/spans_per_port.txt" "$WORK/log_per_port.txt")"

# --------------------------------------------------------------------------
# summary, JSON, Markdown

JSON="$BENCH_RESULTS_DIR/http_bench-$STAMP.json"
MD="$BENCH_RESULTS_DIR/http_bench-$STAMP.md"
bench_put_meta

python3 - "$RESULTS" "$JSON" "$MD" "$REPO/bench" <<'PY'
import base64, json, sys

tsv, json_path, md_path, libdir = sys.argv[1:5]
sys.path.insert(0, libdir)
from benchlib import (host_busy_s, load_runs, load_tsv, parse_status, ratio,  # noqa: E402
                      server_log_lines)

raw = load_tsv(tsv)
g = raw.get
STATUS_COLS = ["state", "pid", "packets", "bytes", "spans_written", "spans_dropped",
               "events_dropped", "kernel_drops", "flow_table_full", "flows_tracked",
               "payload_dropped", "http_connections", "http_bound_hits", "last_error"]


def status(s):
    return parse_status(s, STATUS_COLS)


def b64lines(key):
    return base64.b64decode(g(key) or "").decode("utf-8", "replace").splitlines()


clk = int(g("meta.clk_tck"))
names = [n for n in ("baseline", "capture", "baseline2") if g(n + ".t0")]
runs = load_runs(g, names, clk)
cap = runs["capture"]
base = runs["baseline"]
w = (g("capture.worker_ticks") or "").split()
worker_cpu_s = (int(w[1]) - int(w[0])) / clk if len(w) == 2 else None
c0, c1 = map(int, g("capture.cluster_ticks").split())
cluster_cpu_s = (c1 - c0) / clk
# CPU per request: wrk + nginx (their system time includes the packet path,
# bridge and socket filter, run in softirq on their behalf) + ksoftirqd + the
# cluster (for the capture run: including the drain after wrk). "others" is
# what the whole machine was busy beyond that: neighbours (approximate).
for name, r in runs.items():
    pg = cluster_cpu_s if name == "capture" else r["cluster_cpu_s"]
    r["cpu_s_accounted"] = round(r["wrk_cpu_s"] + r["nginx_cpu_s"] + r["ksoftirqd_cpu_s"] + pg, 3)
    ours_in_run = r["wrk_cpu_s"] + r["nginx_cpu_s"] + r["ksoftirqd_cpu_s"] + r["cluster_cpu_s"]
    r["others_cpu_s"] = round(max(0.0, host_busy_s(g, name, clk) - ours_in_run), 2)
    r["others_cpu_pct_of_machine"] = round(
        100.0 * r["others_cpu_s"] / ((r["window"][1] - r["window"][0]) * int(g("meta.cpus"))), 1)
    req = r.get("requests") or 0
    r["cpu_us_per_request"] = round(1e6 * r["cpu_s_accounted"] / req, 2) if req else None
    r["established_after_wrk"] = int(g(name + ".established_after") or 0)

requests = cap.get("requests", 0)
nginx_lines = cap["nginx_access_log"]["lines"]
http_spans = int(g("capture.http_spans"))
tcp_spans = int(g("capture.tcp_spans"))
hc = g("capture.http_check").split("|")
check = {
    "spans": int(hc[0]), "method_get": int(hc[1]), "target_path": int(hc[2]), "status_200": int(hc[3]),
    "incomplete_false": int(hc[4]), "incomplete_true": int(hc[5]), "all_as_expected": int(hc[6]),
    "src_pod1": int(hc[7]), "status_error": int(hc[8]), "response_body_size_ok": int(hc[9]),
    "host_header_ok": int(hc[10]), "duplicates": int(hc[11]), "connections": int(hc[12]),
    "median_duration": hc[13], "p99_duration": hc[14], "end_before_start": int(hc[15]),
}
reasons = {k: int(v) for k, v in (kv.rsplit("=", 1) for kv in g("capture.http_incomplete_reasons").split())}
tcp_by_reason = {k: int(v) for k, v in (kv.rsplit("=", 1) for kv in g("capture.tcp_by_reason").split())}
pp = g("capture.per_port").split()
per_port = {"connections_in_nginx_log": int(pp[0]), "ports_differing": int(pp[1]),
            "ports_only_in_spans": int(pp[2]), "differing_sample_log_over_spans": pp[3:]}
st_before = status(g("capture.status_before"))
st_wrk_end = status(g("capture.status_at_wrk_end"))
st_after = status(g("capture.status_after"))
st_stop = status(g("capture.status_after_stop"))
interesting, problems = server_log_lines(g)
# The bench's own ANALYZE spans cancels an autovacuum of the table: not a problem.
problems = [l for l in problems if "canceling autovacuum task" not in l]
spans_written = (st_after["spans_written"] - st_before["spans_written"]) if st_after and st_before else None

thr_ratio = ratio(cap["requests_per_s"] or 0, base["requests_per_s"] or 0)
thr_ratio2 = None
if "baseline2" in runs:
    thr_ratio2 = ratio(cap["requests_per_s"], (base["requests_per_s"] + runs["baseline2"]["requests_per_s"]) / 2)

meta = {k[5:]: g(k) for k in raw if k.startswith("meta.")}
# Runs during which the rest of the machine took more than 10 % of its CPU:
# their throughput is not comparable.
disturbed = [n for n in names if runs[n]["others_cpu_pct_of_machine"] > 10.0]
# capture_status() every 0.5 s during the capture run (BENCH_SAMPLE_STATUS=1):
# time since wrk started and how each counter of interest moved since the last.
samples = []
prev = None
t_start = float(g("capture.t0"))
for line in b64lines("capture.status_samples"):
    ts, _, row = line.partition("|")
    st = status(row)
    if not st or st["state"] != "running":
        continue
    keys = ("packets", "spans_written", "events_dropped", "payload_dropped", "http_bound_hits",
            "http_connections", "kernel_drops")
    cur = {k: st[k] for k in keys}
    if prev is not None:
        samples.append({"t": round(float(ts) - t_start, 2),
                        **{("d_" + k if k != "http_connections" else k): cur[k] - (prev[k] if k != "http_connections" else 0)
                           for k in keys}})
    prev = cur
quiet = meta.get("quiet")
result = {
    "meta": meta,
    "runs": runs,
    "capture": {
        "requests_completed_wrk": requests,
        "responses_nginx_access_log": nginx_lines,
        "http_spans_recorded": http_spans,
        "http_spans_over_wrk_requests": ratio(http_spans, requests),
        "http_spans_over_nginx_responses": ratio(http_spans, nginx_lines),
        "http_spans_minus_wrk_requests": http_spans - requests,
        "in_flight_bound": int(meta["connections"]),
        "tcp_spans_recorded": tcp_spans,
        "tcp_connections_opened_pod1": cap["tcp_active_opens_pod1"],
        "tcp_spans_by_close_reason": tcp_by_reason,
        "tcp_spans_without_payload": int(g("capture.tcp_empty")),
        "established_after_wrk": cap["established_after_wrk"],
        "http_spans_linked_to_tcp_span": int(g("capture.http_linked")),
        "http_spans_with_callers_trace_id": int(g("capture.http_traced")),
        "http_check": check,
        "http_incomplete_reasons": reasons,
        "http_odd_sample": b64lines("capture.http_odd_sample"),
        "http_sample": b64lines("capture.http_sample"),
        "per_connection_vs_nginx_log": per_port,
        "spans_to_nginx_port_any_time": int(g("capture.spans_port_all")),
        "spans_table_by_protocol": g("capture.spans_protocols"),
        "spans_not_pod1_to_nginx": int(g("capture.spans_other")),
        "spans_not_pod1_to_nginx_sample": b64lines("capture.spans_other_sample"),
        "spans_recorded_after_capture_stop": int(g("capture.spans_window_after_stop")),
        "spans_written_counter_delta": spans_written,
        "drained": g("capture.drained") == "1",
        "drain_seconds_after_wrk": float(g("capture.drain_seconds")),
        "worker_pid": int(g("capture.worker_pid")),
        "worker_cpu_s": worker_cpu_s,
        "worker_context_switches": int(g("capture.worker_ctx_switches")),
        "worker_cpu_us_per_http_span": round(1e6 * worker_cpu_s / http_spans, 2)
        if worker_cpu_s is not None and http_spans else None,
        "worker_cpu_us_per_span": round(1e6 * worker_cpu_s / (http_spans + tcp_spans), 2)
        if worker_cpu_s is not None and http_spans + tcp_spans else None,
        "worker_cpu_pct_of_one_core": round(100.0 * worker_cpu_s / float(g("capture.measure_seconds")), 1)
        if worker_cpu_s is not None else None,
        "cluster_cpu_s": round(cluster_cpu_s, 2),
        "cluster_cpu_us_per_http_span": round(1e6 * cluster_cpu_s / http_spans, 2) if http_spans else None,
        "measure_seconds": float(g("capture.measure_seconds")),
        "status_before": st_before,
        "status_at_wrk_end": st_wrk_end,
        "status_after": st_after,
        "status_after_stop": st_stop,
        "status_samples": samples,
        "state_after_stop": g("capture.state_after_stop"),
        "server_log_problems": problems[:50],
        "server_log_ebpf_capture": interesting[:50],
    },
    "runs_disturbed_by_neighbours": disturbed,
    "throughput_ratio_capture_over_baseline": thr_ratio,
    "throughput_ratio_capture_over_mean_baselines": thr_ratio2,
}
base_cpu = [runs[n]["cpu_us_per_request"] for n in ("baseline", "baseline2") if n in runs]
if cap["cpu_us_per_request"] and all(base_cpu):
    result["cpu_per_request_capture_minus_baselines_us"] = round(
        cap["cpu_us_per_request"] - sum(base_cpu) / len(base_cpu), 2)
if "baseline2" in runs:
    result["baseline_drift"] = ratio(runs["baseline2"]["requests_per_s"], base["requests_per_s"])
with open(json_path, "w") as fh:
    json.dump(result, fh, indent=2)
    fh.write("\n")

c = result["capture"]
heads = {"baseline": "no capture", "capture": "capture on cni0 (http on)", "baseline2": "no capture (again)"}


def fmt_int(v):
    return f"{v:,}" if isinstance(v, int) else "–"


def only_cap(n, text):
    return text if n == "capture" else "–"


drops = ("{events_dropped} / {payload_dropped} / {kernel_drops} / {flow_table_full} / {http_bound_hits} / "
         "{spans_dropped}".format(**st_after)) if st_after else "–"
rows = [
    ("wrk requests completed", lambda n: fmt_int(runs[n].get("requests"))),
    ("nginx responses (access log)", lambda n: fmt_int(runs[n]["nginx_access_log"]["lines"])),
    ("requests/s", lambda n: f"{runs[n]['requests_per_s']:,.0f}"),
    ("throughput vs. first baseline", lambda n: f"{runs[n]['requests_per_s'] / base['requests_per_s']:.3f}"),
    ("CPU per request (wrk+nginx+ksoftirqd+postgres)", lambda n: f"{runs[n]['cpu_us_per_request']} µs"),
    ("latency p50 / p99 (ms)", lambda n: f"{runs[n].get('latency_p50_ms', '–')} / {runs[n].get('latency_p99_ms', '–')}"),
    ("http spans (/ wrk requests, / nginx responses)", lambda n: only_cap(
        n, f"{http_spans:,} ({100.0 * (c['http_spans_over_wrk_requests'] or 0):.2f} %, "
           f"{100.0 * (c['http_spans_over_nginx_responses'] or 0):.2f} %)")),
    ("complete GET 200 of the path", lambda n: only_cap(n, f"{check['all_as_expected']:,}")),
    ("incomplete", lambda n: only_cap(n, f"{check['incomplete_true']:,}"
                                      + (f" ({', '.join(f'{k} {v}' for k, v in reasons.items())})" if reasons else ""))),
    ("tcp spans / connections", lambda n: only_cap(n, f"{tcp_spans} / {cap['tcp_active_opens_pod1']}")),
    ("http spans with the request's traceparent ids", lambda n: only_cap(
        n, f"{c['http_spans_with_callers_trace_id']:,}")),
    ("worker CPU per http span", lambda n: only_cap(n, f"{c['worker_cpu_us_per_http_span']} µs")),
    ("drops: events / payload / kernel / flow table / http bounds / spans", lambda n: only_cap(n, drops)),
]
m = meta
md = []
md.append(f"wrk {m['wrk']} `-t{m['threads']} -c{m['connections']} -d{m['duration']}s` (keep-alive) from pod1 "
          f"against nginx {m['nginx']} (1 worker, keepalive_timeout 65, keepalive_requests "
          f"{m['keepalive_requests']}, {m['body_bytes']}-byte body) in pod2, `GET {m['path']}`"
          + (" with a random `traceparent` each" if m.get("traceparent") == "1" else "")
          + " across the bridge "
          f"cni0; PostgreSQL {m['postgres']}, Linux {m['kernel']}, {m['cpus']} CPUs ({m['cpu_model']}); "
          f"ebpf_capture {m['git']}, ebpf_capture.http = {m['http_guc']}, "
          f"ring_buffer_size {m['ring_buffer_size']}" + (f", {m['pg_conf']}" if m.get("pg_conf") else "")
          + f", {m['stamp']}"
          + ("" if quiet == "1" else " — **the machine was not quiet**" if quiet == "0" else "")
          + (f" — **other processes took > 10 % of the machine during: {', '.join(disturbed)}**" if disturbed else "")
          + ".")
md.append("")
md.append("| | " + " | ".join(heads[n] for n in names) + " |")
md.append("|---|" + "---|" * len(names))
for label, fn in rows:
    md.append(f"| {label} | " + " | ".join(fn(n) for n in names) + " |")
md_text = "\n".join(md) + "\n"
with open(md_path, "w") as fh:
    fh.write(md_text)

# ---- summary
out = []
out.append("=" * 78)
out.append(f"ebpf_capture http bench  {m['stamp']}  (git {m['git']}, kernel {m['kernel']}, {m['cpus']} CPUs)")
out.append(f"wrk -t{m['threads']} -c{m['connections']} -d{m['duration']}s {m['url']}  (keep-alive; "
           f"nginx keepalive_requests {m['keepalive_requests']}; ebpf_capture.http = {m['http_guc']}, "
           f"ring_buffer_size {m['ring_buffer_size']}, batch_size {m['batch_size']}, "
           f"flush_interval {m['flush_interval']}" + (f"; BENCH_PG_CONF {m['pg_conf']}" if m.get("pg_conf") else "") + ")")
if quiet == "1":
    out.append(f"machine quiet before measuring: yes (waited {m['quiet_waited_s']} s; load {m['quiet_load1']}, "
               f"idle {m['quiet_idle_pct']} %)")
elif quiet == "0":
    out.append(f"machine quiet before measuring: NO - gave up after {m['quiet_waited_s']} s (load {m['quiet_load1']}, "
               f"idle {m['quiet_idle_pct']} %; busiest: {m['quiet_busiest']})")
else:
    out.append("machine quiet before measuring: not checked (BENCH_QUIET_TIMEOUT=0)")
out.append("-" * 78)
out.append(f"{'run':<11}{'requests':>10}{'nginx log':>10}{'req/s':>9}{'conns':>7}{'sock err':>9}"
           f"{'p50 ms':>8}{'p99 ms':>8}{'cpu%':>6}{'us/req':>8}{'others s':>9}")
for n in names:
    r = runs[n]
    se = sum(r["socket_errors"].values())
    out.append(f"{n:<11}{r.get('requests', 0):>10}{r['nginx_access_log']['lines']:>10}{r['requests_per_s']:>9.0f}"
               f"{r['tcp_active_opens_pod1']:>7}{se:>9}{r.get('latency_p50_ms', 0):>8}{r.get('latency_p99_ms', 0):>8}"
               f"{r['host_cpu_busy_pct']:>6}{r['cpu_us_per_request'] or 0:>8}{r['others_cpu_s']:>9}")
out.append(f"{'CPU s':<11}{'wrk':>8}{'nginx':>8}{'ksoftirqd':>10}{'postgres':>9}{'total':>8}")
for n in names:
    r = runs[n]
    pg = cluster_cpu_s if n == "capture" else r["cluster_cpu_s"]
    out.append(f"{n:<11}{r['wrk_cpu_s']:>8.2f}{r['nginx_cpu_s']:>8.2f}{r['ksoftirqd_cpu_s']:>10.2f}"
               f"{pg:>9.2f}{r['cpu_s_accounted']:>8.2f}")
out.append("  (us/req: wrk+nginx+ksoftirqd+postgres CPU per wrk request; postgres for the capture run includes"
           " the drain;\n   others s: CPU the rest of the machine used during the run - neighbours, approximate)")
out.append("neighbours' share of the machine during each run: "
           + ", ".join(f"{n} {runs[n]['others_cpu_pct_of_machine']} %" for n in names)
           + (f"   - DISTURBED: {', '.join(disturbed)} (throughput not comparable)" if disturbed else ""))
out.append("-" * 78)
out.append(f"requests completed (wrk)             {requests}")
out.append(f"responses sent (nginx access log)    {nginx_lines}   (wrk stops with <= {m['connections']} "
           f"requests in flight; nginx answers and logs them)")
out.append(f"http spans recorded in the window    {http_spans}   (after capture_stop: "
           f"{c['spans_recorded_after_capture_stop']} spans of both protocols)")
out.append(f"http spans / wrk requests            {100.0 * (c['http_spans_over_wrk_requests'] or 0):.3f} %   "
           f"(spans - requests = {c['http_spans_minus_wrk_requests']}, expected 0..{m['connections']})   target 100 %")
out.append(f"http spans / nginx responses         {100.0 * (c['http_spans_over_nginx_responses'] or 0):.3f} %   "
           f"(exact match expected)")
out.append(f"per connection vs nginx log          {per_port['connections_in_nginx_log']} connections, "
           f"{per_port['ports_differing']} differ (port:log/spans {' '.join(per_port['differing_sample_log_over_spans']) or '-'})")
out.append(f"throughput capture / baseline        {thr_ratio}"
           + (f"   (/ mean of both baselines: {thr_ratio2}; drift baseline2/baseline: {result['baseline_drift']})"
              if thr_ratio2 is not None else "") + "   target >= 0.85")
if "cpu_per_request_capture_minus_baselines_us" in result:
    out.append(f"CPU per request, capture - baseline  {result['cpu_per_request_capture_minus_baselines_us']:+.2f} us"
               "   (wrk+nginx+ksoftirqd+postgres)")
out.append(f"worker CPU                           {c['worker_cpu_s']:.2f} s over {c['measure_seconds']:.1f} s "
           f"({c['worker_cpu_pct_of_one_core']} % of a core) = {c['worker_cpu_us_per_http_span']} us per http span "
           f"({c['worker_cpu_us_per_span']} us per span of either protocol)")
out.append(f"whole cluster CPU (same interval)    {c['cluster_cpu_s']:.2f} s = {c['cluster_cpu_us_per_http_span']} us "
           f"per http span; worker context switches {c['worker_context_switches']}")
out.append(f"tcp spans / connections opened       {tcp_spans} / {cap['tcp_active_opens_pod1']}  "
           f"(by close reason {tcp_by_reason}; without payload {c['tcp_spans_without_payload']}; "
           f"still established after wrk: {c['established_after_wrk']})")
out.append(f"http spans linked to their tcp span  {c['http_spans_linked_to_tcp_span']} of {http_spans} "
           f"({check['connections']} distinct connections)")
if st_after:
    out.append("capture_status after the drain       "
               f"state={st_after['state']} packets={st_after['packets']} spans_written={st_after['spans_written']} "
               f"flows_tracked={st_after['flows_tracked']} http_connections={st_after['http_connections']}")
    out.append("  drops                              "
               f"events_dropped={st_after['events_dropped']} payload_dropped={st_after['payload_dropped']} "
               f"http_bound_hits={st_after['http_bound_hits']} spans_dropped={st_after['spans_dropped']} "
               f"kernel_drops={st_after['kernel_drops']} flow_table_full={st_after['flow_table_full']}"
               + (f" last_error={st_after['last_error']!r}" if st_after['last_error'] else ""))
out.append(f"span checks (http)                   GET={check['method_get']} target={m['path']}:{check['target_path']} "
           f"status200={check['status_200']} complete={check['incomplete_false']} incomplete={check['incomplete_true']}")
out.append(f"                                     all four as expected={check['all_as_expected']} "
           f"from pod1={check['src_pod1']} status ERROR={check['status_error']} "
           f"body size {m['body_bytes']}={check['response_body_size_ok']} Host ok={check['host_header_ok']} "
           f"duplicates={check['duplicates']} end<start={check['end_before_start']}")
out.append(f"                                     duration median {check['median_duration']}, "
           f"p99 {check['p99_duration']}")
out.append(f"incomplete reasons                   {reasons or '-'}")
if samples:
    out.append("capture_status every 0.5 s (t since wrk start: +packets +spans_written +payload_dropped "
               "+events_dropped +http_bound_hits):")
    out.append("  " + "  ".join(f"{s['t']}s:{s['d_packets']}/{s['d_spans_written']}/{s['d_payload_dropped']}/"
                                f"{s['d_events_dropped']}/{s['d_http_bound_hits']}" for s in samples))
for l in c["http_odd_sample"][:10]:
    out.append("  odd span: " + l)
for l in c["http_sample"][:5]:
    out.append("  sample:   " + l)
out.append(f"other spans (not pod1 -> nginx)      {c['spans_not_pod1_to_nginx']}; table by protocol: "
           f"{c['spans_table_by_protocol']}")
for l in c["spans_not_pod1_to_nginx_sample"][:10]:
    out.append("  other span: " + l)
out.append(f"drained                              {c['drained']} ({c['drain_seconds_after_wrk']} s after wrk ended); "
           f"state after capture_stop: {c['state_after_stop']}")
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
