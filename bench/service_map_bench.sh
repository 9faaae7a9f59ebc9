#!/usr/bin/env bash
# bench/service_map_bench.sh - how fast the service map queries are on a
# large spans table, and what keeping their rollup costs (issue 5).
#
#   bash bench/service_map_bench.sh [--spans N] [--hours H] [--runs R]
#                                   [--port P] [--keep]
#
# Starts a throw-away PostgreSQL 15 cluster with tests/lib/pgcluster.sh (no
# capabilities, no capture: the worker is not involved), creates the
# extension, fills spans with N synthetic rows (default 10 million;
# bench/service_map_gen.sql: 54 nodes, ~130 edges, HTTP with keep-alive and
# plain TCP, over the last H hours, default 3), builds the per-minute rollup
# from them with service_map_refresh() (the worker keeps it batch by batch;
# the generator wrote in one statement) and times service_map_nodes,
# service_map_edges and service_map_dot over windows of 15 minutes, 1 hour
# and the whole table that end at the newest span (so both ends fall inside
# a minute and the partial minutes are read from spans), R runs each
# (default 5, median reported). Beside them: a bare count(*) of the window's
# rows, and the same aggregation read from the spans table alone (what the
# map cost without the rollup).
#
# Then the rollup's cost per batch: 50 batches of 2000 spans inserted as the
# worker does (one INSERT per batch), without and with the worker's rollup
# upsert of the same batch (its rows pre-aggregated per minute, bucket and
# pod pair, as the worker's C++ does before the statement), twice.
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
	-h | --help) sed -n '2,35p' "$0"; exit 0 ;;
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
cat >"$WORK/insert_cost.sql" <<'SQL'
\set ON_ERROR_STOP 1
SET client_min_messages = notice;
CREATE TEMP TABLE src AS
    SELECT s.*, (row_number() OVER (ORDER BY start_time) - 1) / 2000 AS b
    FROM (SELECT * FROM spans ORDER BY start_time DESC LIMIT 100000) s;
CREATE INDEX ON src (b);
ANALYZE src;
CREATE PROCEDURE pg_temp.ins(tag text, rollup boolean) LANGUAGE plpgsql AS $d$
DECLARE t timestamptz := clock_timestamp();
BEGIN
    FOR i IN 0 .. 49 LOOP
        INSERT INTO spans SELECT trace_id, span_id, parent_span_id, name, kind, start_time,
            end_time, status, protocol, interface, src_addr, dst_addr, src_port, dst_port,
            bytes_sent, bytes_received, packets_sent, packets_received, attributes, http_method,
            http_target, http_status, src_pod, src_namespace, src_workload, src_workload_kind,
            src_node, dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_node
        FROM src WHERE b = i;
        IF rollup THEN
            -- the worker's statement (span_store.cpp), fed the batch folded
            -- per minute, bucket and pod pair as its C++ folds it
            INSERT INTO service_map_minutes AS m (minute, src_id, dst_id, bucket, src_title,
                src_subtitle, dst_title, dst_subtitle, spans, errors, bytes_sent, bytes_received)
            SELECT mi, _service_map_node_id(sns, sw, sp, sn, sa),
                   _service_map_node_id(dns, dw, dp, dn, da), bk,
                   min(_service_map_node_title(sw, sp, sn, sa)),
                   min(_service_map_node_subtitle(sns, sw, swk, sp, sn)),
                   min(_service_map_node_title(dw, dp, dn, da)),
                   min(_service_map_node_subtitle(dns, dw, dwk, dp, dn)),
                   sum(n), sum(e), sum(bs), sum(br)
            FROM (SELECT _service_map_minute(start_time) AS mi,
                         CASE WHEN protocol = 'http' THEN _service_map_bucket(end_time - start_time)
                              ELSE 0::smallint END AS bk,
                         src_pod AS sp, src_namespace AS sns, src_workload AS sw,
                         src_workload_kind AS swk, src_node AS sn,
                         CASE WHEN src_pod IS NULL AND src_node IS NULL THEN src_addr END AS sa,
                         dst_pod AS dp, dst_namespace AS dns, dst_workload AS dw,
                         dst_workload_kind AS dwk, dst_node AS dn,
                         CASE WHEN dst_pod IS NULL AND dst_node IS NULL THEN dst_addr END AS da,
                         count(*) AS n, count(*) FILTER (WHERE status = 'ERROR') AS e,
                         coalesce(sum(bytes_sent) FILTER (WHERE protocol = 'tcp'), 0) AS bs,
                         coalesce(sum(bytes_received) FILTER (WHERE protocol = 'tcp'), 0) AS br
                  FROM src WHERE b = i
                  GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14) u
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
            ON CONFLICT (minute, src_id, dst_id, bucket, client_node) DO UPDATE
            SET spans = m.spans + EXCLUDED.spans, errors = m.errors + EXCLUDED.errors,
                bytes_sent = m.bytes_sent + EXCLUDED.bytes_sent,
                bytes_received = m.bytes_received + EXCLUDED.bytes_received;
        END IF;
        COMMIT;
    END LOOP;
    RAISE NOTICE '% %', tag, round((extract(epoch FROM clock_timestamp() - t) * 1000)::numeric, 1);
END
$d$;
-- the pre-aggregation is C++ in the worker, not SQL: time it apart, to
-- subtract it
CREATE PROCEDURE pg_temp.fold_only() LANGUAGE plpgsql AS $d$
DECLARE t timestamptz := clock_timestamp(); n bigint;
BEGIN
    FOR i IN 0 .. 49 LOOP
        SELECT count(*) INTO n FROM (SELECT 1 FROM src WHERE b = i
            GROUP BY _service_map_minute(start_time),
                     CASE WHEN protocol = 'http' THEN _service_map_bucket(end_time - start_time)
                          ELSE 0::smallint END,
                     src_pod, src_namespace, src_workload, src_workload_kind, src_node,
                     CASE WHEN src_pod IS NULL AND src_node IS NULL THEN src_addr END,
                     dst_pod, dst_namespace, dst_workload, dst_workload_kind, dst_node,
                     CASE WHEN dst_pod IS NULL AND dst_node IS NULL THEN dst_addr END) x;
    END LOOP;
    RAISE NOTICE 'fold %', round((extract(epoch FROM clock_timestamp() - t) * 1000)::numeric, 1);
END
$d$;
CALL pg_temp.ins('without', false);
CALL pg_temp.ins('with', true);
CALL pg_temp.ins('without', false);
CALL pg_temp.ins('with', true);
CALL pg_temp.fold_only();
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
			"aggregation from spans alone (no rollup)|SELECT * FROM _service_map_rollup_of_spans($lo, $hi)" \
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
	# The generator wrote every span in one statement, not through the
	# worker: build the rollup the way a user would after such a load.
	t0=$(date +%s.%N)
	psql_b -c "SELECT service_map_refresh(min(start_time), max(start_time) + interval '1 us') FROM spans" >/dev/null
	t1=$(date +%s.%N)
	psql_b -c "VACUUM ANALYZE service_map_minutes"
	printf -- '- rollup built from %s spans by service_map_refresh in %.1f s: %s rows, %s\n' "$SPANS" \
		"$(echo "$t1 - $t0" | bc)" "$(psql_b -Atc 'SELECT count(*) FROM service_map_minutes')" \
		"$(psql_b -Atc "SELECT pg_size_pretty(pg_total_relation_size('service_map_minutes'))")"
	measure "service_map_* (rollup for whole minutes, spans for the partial minutes at both ends)"

	# What the rollup costs the worker's batches: 50 batches of 2000 spans
	# (copies of the newest rows, so the same mix and density), one INSERT
	# each as the worker does, without and with its rollup upsert, twice.
	printf '\n| insert of 50 batches x 2000 spans | total ms | us per span |\n|---|---|---|\n'
	psql_b -At -f "$WORK/insert_cost.sql" 2>&1 | sed -n 's/.*NOTICE:  //p' |
		while read -r mode ms; do
			case "$mode" in
			fold) label="the pre-aggregation alone, in SQL (C++ in the worker)" ;;
			*) label="$mode the rollup upsert" ;;
			esac
			printf '| %s | %s | %s |\n' "$label" "$ms" "$(echo "scale=2; $ms * 1000 / 100000" | bc)"
		done
} | tee "$WORK/result.md"
mkdir -p "$REPO/bench/results"
out="$REPO/bench/results/service_map_bench-$(date -u +%Y%m%dT%H%M%SZ).md"
cp "$WORK/result.md" "$out"
log "results: $out"
