#!/usr/bin/env bash
# bench/repeat.sh - runs a throughput benchmark several times and summarizes
# what varies between runs (issues 2 and 3).
#
#   bash bench/repeat.sh N bench/capture_bench.sh
#   BENCH_PG_CONF="ebpf_capture.http = off" bash bench/repeat.sh 5 bench/capture_bench.sh
#   bash bench/repeat.sh 5 bench/http_bench.sh
#
# On two CPUs shared by the load generator, the server, the kernel and the
# database, two baselines of one run differ by up to 8 %, which is as much as
# the effect being measured. Each run already brackets its capture run with
# a baseline before and after; this repeats the whole run N times and
# reports, per run and as the median, the capture run's throughput over the
# mean of its two baselines, the completeness (spans over requests) and the
# worker's CPU per span. Every run's own JSON and Markdown stay in
# bench/results; the summary goes to stdout and to
# bench/results/repeat-<bench>-<UTC stamp>.md. The environment is passed on.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
(($# == 2)) || { usage >&2; exit 2; }
N="$1"
BENCH="$2"
[[ "$N" =~ ^[0-9]+$ && "$N" -gt 0 ]] || { echo "N must be a positive whole number" >&2; exit 2; }
[[ -f "$BENCH" ]] || { echo "no such benchmark: $BENCH" >&2; exit 2; }
NAME="$(basename "$BENCH" .sh)"
RESULTS="${BENCH_RESULTS_DIR:-$REPO/bench/results}"
mkdir -p "$RESULTS"

jsons=()
for i in $(seq "$N"); do
	printf '[repeat %(%H:%M:%S)T] run %d of %d: %s\n' -1 "$i" "$N" "$BENCH" >&2
	before="$(ls -t "$RESULTS"/"$NAME"-*.json 2>/dev/null | head -n 1 || true)"
	bash "$BENCH" >"$RESULTS/.repeat-$NAME-$i.log" 2>&1 || {
		echo "run $i failed; its output: $RESULTS/.repeat-$NAME-$i.log" >&2
		exit 1
	}
	after="$(ls -t "$RESULTS"/"$NAME"-*.json | head -n 1)"
	[[ "$after" != "$before" ]] || { echo "run $i wrote no JSON" >&2; exit 1; }
	jsons+=("$after")
	rm -f "$RESULTS/.repeat-$NAME-$i.log"
done

out="$RESULTS/repeat-$NAME-$(date -u +%Y%m%dT%H%M%SZ).md"
/usr/bin/python3 - "$NAME" "${BENCH_PG_CONF:-}" "${jsons[@]}" <<'PY' | tee "$out"
import json
import statistics
import sys

name, conf, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for p in paths:
    d = json.load(open(p))
    runs = d["runs"]
    c = d["capture"]
    if name == "capture_bench":
        complete = c["recorded_over_tcp_opens"]
        per_span = c["worker_cpu_ms_per_1000_spans"]  # ms per 1000 = us per span
    else:
        complete = c["http_spans_over_nginx_responses"]
        per_span = c.get("worker_cpu_us_per_http_span")
    rows.append(dict(
        file=p.rsplit("/", 1)[-1], base=runs["baseline"]["requests_per_s"],
        cap=runs["capture"]["requests_per_s"], base2=runs["baseline2"]["requests_per_s"],
        ratio=d["throughput_ratio_capture_over_mean_baselines"], complete=complete,
        per_span=per_span))
print(f"# {name} x {len(rows)}" + (f" ({conf})" if conf else ""))
print()
print("| run | baseline req/s | capture req/s | baseline again req/s | capture / mean of baselines "
      "| spans / requests | worker CPU per span |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    ps = f"{r['per_span']:.2f} µs" if r["per_span"] is not None else "–"
    print(f"| {r['file']} | {r['base']:,.0f} | {r['cap']:,.0f} | {r['base2']:,.0f} | "
          f"{r['ratio']:.3f} | {r['complete']:.4f} | {ps} |")
ratios = [r["ratio"] for r in rows]
print()
print(f"capture / mean of baselines: median {statistics.median(ratios):.3f}, "
      f"min {min(ratios):.3f}, max {max(ratios):.3f}")
spans = [r["per_span"] for r in rows if r["per_span"] is not None]
if spans:
    print(f"worker CPU per span: median {statistics.median(spans):.2f} µs")
print(f"spans / requests: min {min(r['complete'] for r in rows):.4f}")
PY
echo "summary: $out" >&2
