#!/usr/bin/env bash
# query_bench.sh - how fast are the queries users run, on the partitioned
# spans against the 0.1 layout (one plain table) and a BRIN variant?
#
# In a throw-away cluster with PostgreSQL's default settings, the same
# QUERY_ROWS span-like rows over the last 24 hours (http and tcp, trace ids
# that start with their time, a tenth with random caller-given ids, as
# traceparent ids are) go into three tables that take the name `spans` in
# turn:
#   shipped  the extension's: hourly partitions, b-trees on start_time and
#            trace_id
#   plain    one table with the same two b-trees (the 0.1 layout)
#   brin     hourly partitions, BRIN on start_time, b-tree on trace_id
# and each query is run QUERY_REPEATS times on each (median, ms):
#   latest      the 20 newest spans (ORDER BY start_time DESC LIMIT 20)
#   window      the http spans of a 5-minute window an hour ago, by status
#   trace       a whole trace by a capture-made id
#   trace_ext   a whole trace by a caller-given (random) id
#   edges       service_map_edges over the last 15 minutes (rollup + spans)
# Nothing here is a test.
#
# Usage (as root, from anywhere):  bench/query_bench.sh [-h]
#
# Environment (defaults in brackets):
#   QUERY_ROWS       rows per table [2000000]
#   QUERY_REPEATS    runs of each query [7]
#   BENCH_PG_PORT    port of the throw-away cluster [5494]
#   BENCH_RESULTS_DIR  where the Markdown goes [bench/results]
#   EBPFC_DESTDIR    a private PostgreSQL copy to use (tests/run.sh) []
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROWS="${QUERY_ROWS:-2000000}"
REPEATS="${QUERY_REPEATS:-7}"
PORT="${BENCH_PG_PORT:-5494}"
RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"
bench_require_root
[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || die "QUERY_ROWS: not a positive whole number: $ROWS"
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || die "QUERY_REPEATS: not a positive whole number: $REPEATS"
if [[ -n "${EBPFC_DESTDIR:-}" ]]; then
	PG_BIN="$EBPFC_DESTDIR$(pg_config --bindir)"
else
	PG_BIN="$(pg_config --bindir)"
fi
[[ -x "$PG_BIN/initdb" ]] || die "no initdb in $PG_BIN"

WORK="$(mktemp -d /tmp/ebpfc-query.XXXXXX)"
chmod 0755 "$WORK"
chown postgres "$WORK"
stop_cluster() {
	[[ -f "$WORK/data/postmaster.pid" ]] &&
		runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1
	return 0
}
trap 'stop_cluster; rm -rf "$WORK"' EXIT
sql() { runuser -u postgres -- "$PG_BIN/psql" -h "$WORK" -p "$PORT" -qAtX -v ON_ERROR_STOP=1 "$@"; }

log "cluster in $WORK (stock settings)"
runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust >/dev/null
cat >>"$WORK/data/postgresql.conf" <<EOF
shared_preload_libraries = 'ebpf_capture'
unix_socket_directories = '$WORK'
listen_addresses = ''
port = $PORT
EOF
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w start >/dev/null
sql -c "CREATE EXTENSION ebpf_capture"

# fill TABLE: QUERY_ROWS rows over the last 24 hours.
fill() {
	sql -c "
	INSERT INTO $1 (trace_id, span_id, name, kind, start_time, end_time, status, protocol,
	                interface, src_addr, dst_addr, src_port, dst_port, bytes_sent, bytes_received,
	                attributes, http_method, http_target, http_status, src_pod, src_namespace,
	                dst_pod, dst_namespace, dst_workload)
	SELECT CASE WHEN i % 10 = 0 THEN md5(i::text || 'ext')
	            ELSE lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0')
	                 || substr(md5(i::text), 1, 20) END,
	       substr(md5(i::text || 's'), 1, 16),
	       CASE WHEN i % 4 = 0 THEN 'tcp.connection' ELSE 'GET' END,
	       CASE WHEN i % 4 = 0 THEN 'CLIENT' ELSE 'SERVER' END,
	       t, t + interval '2 milliseconds',
	       CASE WHEN i % 50 = 0 THEN 'ERROR' ELSE 'UNSET' END,
	       CASE WHEN i % 4 = 0 THEN 'tcp' ELSE 'http' END, 'cni0',
	       ('10.1.' || (i % 20) || '.' || (i % 200))::inet, ('10.2.0.' || (i % 8))::inet,
	       30000 + i % 30000, 8080, 100, 2000,
	       CASE WHEN i % 4 = 0 THEN '{\"tcp.close_reason\": \"fin\"}'
	            ELSE '{\"server.address\": \"shop:8080\", \"network.protocol.version\": \"1.1\"}' END::jsonb,
	       CASE WHEN i % 4 = 0 THEN NULL ELSE 'GET' END,
	       CASE WHEN i % 4 = 0 THEN NULL ELSE '/api/items/' || (i % 1000) END,
	       CASE WHEN i % 4 = 0 THEN NULL WHEN i % 50 = 0 THEN 503 ELSE 200 END,
	       'client-' || (i % 20), 'shop', 'api-' || (i % 8), 'shop', 'api'
	FROM generate_series(1, $ROWS) i,
	     LATERAL (SELECT now() - interval '24 hours' + (i::float8 / $ROWS) * interval '24 hours'
	                     AS t) x"
}

log "filling the shipped spans ($ROWS rows over 24 hours)"
sql -c "SELECT _storage_premake('spans', interval '1 hour', interval '26 hours',
                                now() - interval '25 hours')" >/dev/null
fill spans
log "filling the plain table"
sql -c "CREATE TABLE spans_plain (LIKE spans INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        CREATE INDEX ON spans_plain (start_time); CREATE INDEX ON spans_plain (trace_id);"
fill spans_plain
log "filling the BRIN variant"
sql -c "CREATE TABLE spans_brin (LIKE spans INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
          PARTITION BY RANGE (start_time);
        CREATE TABLE spans_brin_late PARTITION OF spans_brin DEFAULT;
        CREATE INDEX ON spans_brin USING brin (start_time); CREATE INDEX ON spans_brin (trace_id);"
sql -c "SELECT _storage_premake('spans_brin', interval '1 hour', interval '26 hours',
                                now() - interval '25 hours')" >/dev/null
fill spans_brin
sql -c "SELECT service_map_refresh(now() - interval '1 hour', now())" >/dev/null
sql -c "VACUUM ANALYZE"
TRACE="$(sql -c "SELECT trace_id FROM spans WHERE start_time > now() - interval '3 hours'
                 AND trace_id LIKE lpad(to_hex((extract(epoch FROM start_time) * 1000)::bigint),
                                        12, '0') || '%' LIMIT 1")"
TRACE_EXT="$(sql -c "SELECT md5(($ROWS / 2 * 10)::text || 'ext')")"
log "sizes: $(sql -c "SELECT string_agg(t || ' ' || pg_size_pretty(s), ', ') FROM (
	SELECT 'shipped' t, sum(pg_total_relation_size(relid)) s FROM pg_partition_tree('spans')
	UNION ALL SELECT 'plain', pg_total_relation_size('spans_plain')
	UNION ALL SELECT 'brin', sum(pg_total_relation_size(relid)) FROM pg_partition_tree('spans_brin')) x")"

declare -A Q=(
	[latest]="SELECT span_id, start_time FROM spans ORDER BY start_time DESC LIMIT 20"
	[window]="SELECT http_status, count(*) FROM spans WHERE protocol = 'http' AND start_time >= now() - interval '65 minutes' AND start_time < now() - interval '60 minutes' GROUP BY 1"
	[trace]="SELECT * FROM spans WHERE trace_id = '$TRACE'"
	[trace_ext]="SELECT * FROM spans WHERE trace_id = '$TRACE_EXT'"
	[edges]="SELECT * FROM service_map_edges('15 minutes')"
)
ORDER=(latest window trace trace_ext edges)

# time_query SQL: the median of REPEATS runs, in ms (psql's \timing).
time_query() {
	local i out
	out="$( (
		echo '\timing on'
		for ((i = 0; i < REPEATS; i++)); do echo "$1;"; done
	) | sql 2>&1 | awk '/^Time:/ { print $2 }' | sort -n)"
	awk -v n="$REPEATS" '{ a[NR] = $1 } END { printf "%.2f", (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }' <<<"$out"
}

declare -A R
for layout in shipped plain brin; do
	case "$layout" in
	plain) sql -c "BEGIN; ALTER TABLE spans RENAME TO spans_shipped; ALTER TABLE spans_plain RENAME TO spans; COMMIT" ;;
	brin) sql -c "BEGIN; ALTER TABLE spans RENAME TO spans_plain; ALTER TABLE spans_brin RENAME TO spans; COMMIT" ;;
	esac
	for q in "${ORDER[@]}"; do
		R[$layout.$q]="$(time_query "${Q[$q]}")"
		log "$layout $q: ${R[$layout.$q]} ms"
	done
done

mkdir -p "$RESULTS_DIR"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
MD="$RESULTS_DIR/query_bench-$STAMP.md"
{
	echo "# query_bench $STAMP ($(git -C "$REPO" describe --always 2>/dev/null))"
	echo
	echo "$ROWS rows over 24 hours in each layout; median of $REPEATS runs, ms; PostgreSQL's default settings"
	echo
	echo "| query | shipped (hourly partitions, b-trees) | plain (0.1) | partitions, BRIN on start_time |"
	echo "|---|---|---|---|"
	for q in "${ORDER[@]}"; do
		echo "| $q | ${R[shipped.$q]} | ${R[plain.$q]} | ${R[brin.$q]} |"
	done
} >"$MD"
cat "$MD"
echo "Markdown: $MD"
