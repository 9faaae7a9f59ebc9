#!/usr/bin/env bash
# insert_growth.sh - what one span row costs PostgreSQL as the spans table
# grows, for four ways of making and indexing trace ids.
#
# toggle_bench.sh showed the worker's CPU per span rising from about 3.4 to
# 5.5 us over 1.5 million rows while trace ids were random and hash-indexed.
# This separates the trace_id index from the rest: in a throw-away cluster
# (shared_buffers 128 MB, as the benchmarks'), it fills `spans` with
# span-like rows (INSERT ... SELECT generate_series) to each size and times
# 100,000 more rows there, for
#
#   timed-btree   the shipped schema and ids: a b-tree on trace ids that start
#                 with the time in milliseconds, the rest random
#   random-btree  the same b-tree on random ids (what ids taken from a
#                 request's traceparent cost)
#   random-hash   the design before: a hash index on random ids
#   none          no index on trace_id (the start_time b-tree stays)
#
# Each variant gets a fresh cluster; each size is timed REPEATS times, after a
# CHECKPOINT each (so the full-page images a random insert costs are
# counted), and the median reported. The rows go through the executor, not
# the worker's direct path, so compare a variant with itself across sizes,
# and the variants at one size by their difference. Nothing here is a test.
#
# Usage (as root, from anywhere):  bench/insert_growth.sh [-h]
#
# Environment (defaults in brackets):
#   INSERT_GROWTH_SIZES  table sizes in millions of rows ["0 1 2 4"]
#   INSERT_GROWTH_REPEATS  timed runs of 100,000 rows at each size [5]
#   BENCH_PG_PORT        port of the throw-away cluster [5498]
#   BENCH_RESULTS_DIR    where the Markdown goes [bench/results]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="${INSERT_GROWTH_SIZES:-0 1 2 4}"
REPEATS="${INSERT_GROWTH_REPEATS:-5}"
PORT="${BENCH_PG_PORT:-5498}"
RESULTS_DIR="${BENCH_RESULTS_DIR:-$REPO/bench/results}"

# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/bench/lib.sh"
bench_args "$@"
bench_require_root
for n in $SIZES; do [[ "$n" =~ ^[0-9]+$ ]] || die "INSERT_GROWTH_SIZES: not a whole number: $n"; done
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || die "INSERT_GROWTH_REPEATS: not a positive whole number: $REPEATS"
PG_BIN="$(pg_config --bindir)"
[[ -x "$PG_BIN/initdb" ]] || die "no initdb in $PG_BIN"
[[ -f "$(pg_config --pkglibdir)/ebpf_capture.so" ]] || die "ebpf_capture is not installed (make install)"

WORK="$(mktemp -d /tmp/ebpfc-growth.XXXXXX)"
chmod 0755 "$WORK"
chown postgres "$WORK"
stop_cluster() {
	[[ -f "$WORK/data/postmaster.pid" ]] &&
		runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1
	return 0
}
trap 'stop_cluster; rm -rf "$WORK"' EXIT
sql() { runuser -u postgres -- "$PG_BIN/psql" -h "$WORK" -p "$PORT" -qAtX -v ON_ERROR_STOP=1 "$@"; }

# id_expr VARIANT: the SQL expression of a trace id. Both kinds are 12 hex
# digits and 20 from md5, so they cost the same to compute: the time in
# milliseconds, or a random 48-bit number.
id_expr() {
	case "$1" in
	timed-*) echo "lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || left(md5(random()::text), 20)" ;;
	*) echo "lpad(to_hex(floor(random() * 281474976710656)::bigint), 12, '0') || left(md5(random()::text), 20)" ;;
	esac
}

# variant NAME: a fresh cluster and table; prints one line per size.
variant() {
	local name="$1" have want t0 t1 r times
	stop_cluster
	rm -rf "$WORK/data"
	runuser -u postgres -- "$PG_BIN/initdb" -D "$WORK/data" -A trust >/dev/null
	cat >>"$WORK/data/postgresql.conf" <<EOF
port = $PORT
unix_socket_directories = '$WORK'
shared_preload_libraries = 'ebpf_capture'
shared_buffers = '128MB'
max_wal_size = '4GB'
# an autovacuum of the growing table, at whatever moment, is not the insert's
# cost: with it on, single sizes jumped by a microsecond between variants
autovacuum = off
EOF
	runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w start >/dev/null
	sql -c "CREATE EXTENSION ebpf_capture"
	case "$name" in
	none) sql -c "DROP INDEX spans_trace_id_idx" ;;
	random-hash) sql -c "DROP INDEX spans_trace_id_idx" -c "CREATE INDEX spans_trace_id_idx ON spans USING hash (trace_id)" ;;
	esac
	sql <<EOF
CREATE FUNCTION fill(n int, t0 timestamptz) RETURNS void LANGUAGE sql AS \$\$
INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, status, protocol, interface,
                   src_addr, dst_addr, src_port, dst_port, bytes_sent, bytes_received, packets_sent,
                   packets_received, attributes)
SELECT $(id_expr "$name"), left(md5(random()::text), 16), 'tcp', 'CLIENT',
       t0 + g * interval '40 microseconds', t0 + g * interval '40 microseconds' + interval '2 ms',
       'OK', 'tcp', 'cni0', '10.213.0.11', '10.213.0.12', 1024 + g % 60000, 8080, 61, 178, 5, 5,
       '{"tcp.close_reason": "fin", "tcp.reset": false, "tcp.mid_stream": false,
         "tcp.handshake_completed": true, "tcp.handshake_rtt_us": 9, "tcp.retransmits_sent": 0,
         "tcp.retransmits_received": 0}'
FROM generate_series(1, n) g \$\$;
EOF
	for size in $SIZES; do
		have="$(sql -c "SELECT count(*) FROM spans")"
		want=$((size * 1000000))
		if ((want > have)); then
			sql -c "SELECT fill($((want - have)), now() - interval '1 hour')" >/dev/null
		fi
		times=()
		for ((r = 0; r < REPEATS; r++)); do
			sql -c "CHECKPOINT"
			t0="$(now_s)"
			sql -c "SELECT fill(100000, now())" >/dev/null
			t1="$(now_s)"
			times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1e6 / 100000 }')")
		done
		printf '| %s | %s | %s | %s |\n' "$name" "$((want / 1000000))M" \
			"$(printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" \
			"${times[*]}"
	done
}

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/insert_growth-$(date -u +%Y%m%dT%H%M%SZ).md"
{
	echo "# insert_growth ($(git -C "$REPO" describe --always 2>/dev/null || echo unknown); PostgreSQL $("$PG_BIN/postgres" --version | awk '{ print $3 }'), $(nproc) CPUs)"
	echo
	echo "| trace_id index | rows already in spans | µs per row, median | each run of 100,000 rows |"
	echo "|---|---|---|---|"
	for v in timed-btree random-btree random-hash none; do
		log "variant $v"
		variant "$v"
	done
} | tee "$OUT"
log "written to $OUT"
