#!/usr/bin/env bash
# bench/service_map_bench.sh - how fast the service map queries are on a
# large spans table (issue 5).
#
#   bash bench/service_map_bench.sh [--spans N] [--hours H] [--runs R]
#                                   [--port P] [--keep]
#
# Starts a throw-away PostgreSQL 15 cluster with tests/lib/pgcluster.sh (no
# capabilities, no capture: the worker is not involved), creates the
# extension, fills spans with N synthetic rows (default 10
# million; bench/service_map_gen.sql: 54 nodes, ~130 edges, HTTP with
# keep-alive and plain TCP, over the last H hours, default 3) and times
# service_map_nodes, service_map_edges and service_map_dot over windows of
# 15 minutes, 1 hour and the whole table, R runs each (default 5, median
# reported), beside a bare count(*) of the window's rows as the floor.
#
# pgcluster.sh runs the server in the network namespace ${EBPFC_NS}-node; the
# script creates an empty one (loopback only: the server listens on a Unix
# socket) when it does not exist, and removes what it created.
#
# Results: bench/results/service_map_bench-<UTC stamp>.md (and on stdout).
# Extra postgresql.conf lines: BENCH_PG_CONF (newline-separated); the
# default is deploy/configmap.yaml's memory settings.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPANS=10000000
HOURS=3
RUNS=5
PORT=5533
KEEP=0
while (($#)); do
	case "$1" in
	--spans) SPANS="$2"; shift ;;
	--hours) HOURS="$2"; shift ;;
	--runs) RUNS="$2"; shift ;;
	--port) PORT="$2"; shift ;;
	--keep) KEEP=1 ;;
	-h | --help) sed -n '2,24p' "$0"; exit 0 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
for v in SPANS HOURS RUNS PORT; do
	[[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "$v must be a positive whole number" >&2; exit 2; }
done
((EUID == 0)) || { echo "run as root (pgcluster.sh starts the server as postgres)" >&2; exit 1; }

export EBPFC_NS="${EBPFC_NS:-ebpfsmb}"
export EBPFC_PG_EXTRA_CONF="${BENCH_PG_CONF:-shared_buffers = '512MB'
work_mem = '32MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'}"
# shellcheck source=../tests/lib/pgcluster.sh
source "$REPO/tests/lib/pgcluster.sh"

log() { printf '[service_map_bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

WORK="$(mktemp -d /tmp/ebpfc-smbench.XXXXXX)"
chmod 755 "$WORK"
MADE_NS=0
cleanup() {
	set +e
	if ((KEEP)); then
		log "kept: cluster in $WORK/pg (bash tests/lib/pgcluster.sh psql $WORK/pg), netns ${EBPFC_NS}-node"
		return
	fi
	pg_stop "$WORK/pg" >/dev/null 2>&1
	((MADE_NS)) && ip netns del "${EBPFC_NS}-node"
	rm -rf "$WORK"
}
trap cleanup EXIT

if ! ip netns list | grep -q "^${EBPFC_NS}-node\b"; then
	ip netns add "${EBPFC_NS}-node"
	ip -n "${EBPFC_NS}-node" link set lo up
	MADE_NS=1
fi

pg_start "$WORK/pg" --no-caps --port "$PORT"
psql_b() { pg_psql "$WORK/pg" -d postgres -q "$@"; }
# SQL files are read by psql running as postgres
cp "$REPO/bench/service_map_gen.sql" "$WORK/gen.sql"
sed 's/@extschema@/public/g' "$REPO/bench/service_map_rollup.sql" >"$WORK/rollup.sql"
cat >"$WORK/insert_cost.sql" <<'SQL'
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
CREATE TEMP TABLE src AS
    SELECT s.*, (row_number() OVER (ORDER BY start_time) - 1) / 2000 AS b
    FROM (SELECT * FROM spans ORDER BY start_time DESC LIMIT 100000) s;
CREATE INDEX ON src (b);
ANALYZE src;
CREATE PROCEDURE pg_temp.ins(tag text) LANGUAGE plpgsql AS $d$
DECLARE t timestamptz := clock_timestamp();
BEGIN
    FOR i IN 0 .. 49 LOOP
        INSERT INTO spans SELECT trace_id, span_id, parent_span_id, name, kind, start_time,
            end_time, status, protocol, interface, src_addr, dst_addr, src_port, dst_port,
            bytes_sent, bytes_received, packets_sent, packets_received, attributes, http_method,
            http_target, http_status, src_pod, src_namespace, src_workload, src_workload_kind,
            src_node, dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_node
        FROM src WHERE b = i;
        COMMIT;
    END LOOP;
    RAISE NOTICE '% %', tag, round((extract(epoch FROM clock_timestamp() - t) * 1000)::numeric, 1);
END
$d$;
ALTER TABLE spans DISABLE TRIGGER spans_service_map_rollup;
CALL pg_temp.ins('without');
ALTER TABLE spans ENABLE TRIGGER spans_service_map_rollup;
CALL pg_temp.ins('with');
ALTER TABLE spans DISABLE TRIGGER spans_service_map_rollup;
CALL pg_temp.ins('without');
ALTER TABLE spans ENABLE TRIGGER spans_service_map_rollup;
CALL pg_temp.ins('with');
SQL
chmod 644 "$WORK"/*.sql

psql_b -c "CREATE EXTENSION ebpf_capture"

log "generating $SPANS spans over $HOURS hours"
t0=$SECONDS
psql_b -v nspans="$SPANS" -v hours="$HOURS" -f "$WORK/gen.sql" >/dev/null
gen_s=$((SECONDS - t0))
log "generated in ${gen_s}s; VACUUM ANALYZE"
psql_b -c "VACUUM ANALYZE spans"
table_size="$(psql_b -Atc "SELECT pg_size_pretty(pg_table_size('spans'))
                            || ' table, ' || pg_size_pretty(pg_indexes_size('spans')) || ' indexes'")"

# bench_query LABEL WINDOW_SQL QUERY: median and min of RUNS executions in ms.
# The query's every column is folded into one md5 so that no output column
# can be planned away.
cat >"$WORK/timer.sql" <<'SQL'
CREATE OR REPLACE FUNCTION pg_temp.time_query(q text, runs int)
RETURNS TABLE (median_ms numeric, min_ms numeric, out_rows bigint) LANGUAGE plpgsql AS $f$
DECLARE
    t timestamptz; ms float8[] := '{}'; n bigint;
BEGIN
    FOR i IN 1 .. runs + 1 LOOP
        t := clock_timestamp();
        EXECUTE 'SELECT sum(length(md5(x::text))) / 32 FROM (' || q || ') x' INTO n;
        IF i > 1 THEN  -- the first run warms the cache
            ms := ms || extract(epoch FROM clock_timestamp() - t)::float8 * 1000;
        END IF;
    END LOOP;
    RETURN QUERY SELECT round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(ms) v)::numeric, 1),
                        round((SELECT min(v) FROM unnest(ms) v)::numeric, 1), n;
END
$f$;
SQL
chmod 644 "$WORK/timer.sql"

measure() {  # measure TAG: one table of timings
	local tag="$1" w q label
	printf '\n### %s\n\n| query | window | rows in window | median ms | min ms | rows out |\n|---|---|---|---|---|---|\n' "$tag"
	for w in "15 minutes" "1 hour" "$HOURS hours"; do
		local lo="(SELECT max(start_time) FROM spans) - interval '$w'"
		local hi="(SELECT max(start_time) FROM spans) + interval '1 us'"
		local inwin
		inwin="$(psql_b -Atc "SELECT count(*) FROM spans WHERE start_time >= $lo AND start_time < $hi")"
		for label in "count(*) of the window|SELECT count(*) FROM spans WHERE start_time >= $lo AND start_time < $hi" \
			"service_map_edges|SELECT * FROM service_map_edges($lo, $hi)" \
			"service_map_nodes|SELECT * FROM service_map_nodes($lo, $hi)" \
			"service_map_dot|SELECT service_map_dot($lo, $hi)"; do
			q="${label#*|}"
			local res
			res="$(psql_b -At -F '|' -f "$WORK/timer.sql" -c "SELECT * FROM pg_temp.time_query(\$q\$$q\$q\$, $RUNS)")"
			printf '| %s | %s | %s | %s |\n' "${label%%|*}" "$w" "$inwin" "$res"
		done
	done
}

{
	printf '# service_map_bench %s\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf -- '- %s spans over %s hours (generated in %s s): %s\n' "$SPANS" "$HOURS" "$gen_s" "$table_size"
	printf -- '- PostgreSQL %s, %s CPUs, %s\n' "$(psql_b -Atc 'SHOW server_version')" "$(nproc)" \
		"$(echo "$EBPFC_PG_EXTRA_CONF" | tr '\n' ',' | sed 's/,$//')"
	printf -- '- windows end at the newest span; each query run %s times after one warm-up run\n' "$RUNS"
	measure "service_map_* on spans as the extension creates it (b-tree on start_time, hash on trace_id)"

	# The proposed rollup (bench/service_map_rollup.sql): backfilled once here
	# (the generator wrote everything in one statement), then maintained by
	# its trigger; what that costs the worker's batches is measured below.
	psql_b -f "$WORK/rollup.sql" >/dev/null
	t0=$(date +%s.%N)
	psql_b -c "SELECT _service_map_rollup_backfill('-infinity', 'infinity')" >/dev/null
	t1=$(date +%s.%N)
	printf '\n### with the rollup (bench/service_map_rollup.sql)\n\n'
	printf -- '- backfill of %s spans: %.1f s, %s rollup rows, %s\n' "$SPANS" "$(echo "$t1 - $t0" | bc)" \
		"$(psql_b -Atc 'SELECT count(*) FROM service_map_minutes')" \
		"$(psql_b -Atc "SELECT pg_size_pretty(pg_total_relation_size('service_map_minutes'))")"
	psql_b -c "VACUUM ANALYZE service_map_minutes"
	printf '\n| query | window | median ms | min ms | rows out |\n|---|---|---|---|---|\n'
	for w in "15 minutes" "1 hour" "$HOURS hours"; do
		lo="(SELECT max(start_time) FROM spans) - interval '$w'"
		hi="(SELECT max(start_time) FROM spans) + interval '1 us'"
		res="$(psql_b -At -F '|' -f "$WORK/timer.sql" -c "SELECT * FROM pg_temp.time_query(\$q\$SELECT * FROM service_map_edges_rollup($lo, $hi)\$q\$, $RUNS)")"
		printf '| service_map_edges_rollup | %s | %s |\n' "$w" "$res"
	done

	# The trigger's cost per batch: 50 batches of 2000 spans (copies of the
	# newest rows, so the same mix and density), one INSERT each as the
	# worker does, without and with the trigger, twice.
	printf '\n| insert of 50 batches x 2000 spans | total ms | us per span |\n|---|---|---|\n'
	psql_b -At -f "$WORK/insert_cost.sql" 2>&1 | sed -n 's/.*NOTICE:  //p' |
		while read -r mode ms; do
			printf '| %s the rollup trigger | %s | %s |\n' "$mode" "$ms" "$(echo "scale=2; $ms * 1000 / 100000" | bc)"
		done
} | tee "$WORK/result.md"
mkdir -p "$REPO/bench/results"
out="$REPO/bench/results/service_map_bench-$(date -u +%Y%m%dT%H%M%SZ).md"
cp "$WORK/result.md" "$out"
log "results: $out"
