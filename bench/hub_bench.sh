#!/usr/bin/env bash
# bench/hub_bench.sh - how long a hub takes to answer the cluster's service
# map (docs/hub.md), with 3 and with 30 node databases (issue 17).
#
#   bash bench/hub_bench.sh [--runs R] [--port P] [--keep]
#
# One PostgreSQL cluster holds 30 simulated node databases node01..node30
# (copies of one filled by bench/hub_gen.sql: a rollup of 40 edges every
# minute for 3 hours and more, spans at 20 per second around the windows'
# ends), reached over TCP by the hub's role with scram-sha-256. Two hub
# clusters, hub3 and hub30, find 3 and 30 of them through the fake
# Kubernetes API (tests/kube/fake_kube_api.py: pods in two namespaces, the
# database in the annotation ebpf-capture.io/database). In each of R rounds
# (default 7) both hubs answer, in turn, service_map_edges over the last 15
# minutes, 1 hour and 3 hours (windows that end now, so both ends fall
# inside a minute and each node reads spans for them), service_map_nodes
# over 15 minutes, and the 15 minutes aligned to whole minutes (rollup
# only); each in a session that asked before ("warm": its connections to
# the nodes open), then each in a new session ("cold": it connects to every
# node first). Beside them, one node's own share (_service_map_window_of on
# node01, in its database) and a node's own service_map_edges. Medians.
#
# All of it shares one machine: the nodes' shares, which in a cluster run on
# their own nodes at once, run here on the same cores one after another as
# the scheduler allows, so the 30-node figures are an upper bound of what
# the hub costs with 30 real nodes.
#
# Results: bench/results/hub_bench-<UTC stamp>.md (and on stdout).
# EBPFC_DESTDIR: use the private PostgreSQL there (tests/run.sh);
# BENCH_SKIP_BUILD=1: do not build and install first.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=7
PORT=5541
KEEP=0
while (($#)); do
	case "$1" in
	--runs) RUNS="$2"; shift ;;
	--port) PORT="$2"; shift ;;
	--keep) KEEP=1 ;;
	-h | --help) sed -n '2,34p' "$0"; exit 0 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
for v in RUNS PORT; do
	[[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "$v must be a positive whole number" >&2; exit 2; }
done
((EUID == 0)) || { echo "run as root (pgcluster.sh starts the servers as postgres)" >&2; exit 1; }

export EBPFC_NS="${EBPFC_NS:-ebpfhbb}"
NS="${EBPFC_NS}-node"
# shellcheck source=../tests/lib/pgcluster.sh
source "$REPO/tests/lib/pgcluster.sh"
log() { printf '[hub_bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

WORK="$(mktemp -d /tmp/ebpfc-hubbench.XXXXXX)"
chmod 755 "$WORK"
MADE_NS=0
API_PID=""
cleanup() {
	set +e
	[[ -n "$API_PID" ]] && kill "$API_PID" 2>/dev/null
	if ((KEEP)); then
		log "kept: clusters in $WORK/{nodes,hub3,hub30}, netns $NS"
		return
	fi
	for c in hub3 hub30 nodes; do pg_stop "$WORK/$c" >/dev/null 2>&1; done
	((MADE_NS)) && ip netns del "$NS"
	rm -rf "$WORK"
}
trap cleanup EXIT

if ! ip netns list | grep -q "^${NS}\b"; then
	ip netns add "$NS"
	ip -n "$NS" link set lo up
	MADE_NS=1
fi

# EBPFC_DESTDIR: a private PostgreSQL there (tests/run.sh); BENCH_SKIP_BUILD=1:
# what is installed already
if [[ -n "${EBPFC_DESTDIR:-}" ]]; then
	export PG_BINDIR="$EBPFC_DESTDIR/usr/lib/postgresql/15/bin"
fi
if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
	log "building and installing"
	make -C "$REPO" -j2 >/dev/null
	if [[ -n "${EBPFC_DESTDIR:-}" ]]; then
		bash "$REPO/tests/lib/private_pg.sh" "$EBPFC_DESTDIR" >/dev/null
		make -C "$REPO" install DESTDIR="$EBPFC_DESTDIR" >/dev/null
	else
		make -C "$REPO" install >/dev/null
	fi
fi

# the fake API, in the namespace: its URL, CA and token file
ip netns exec "$NS" /usr/bin/python3 "$REPO/tests/kube/fake_kube_api.py" --dir "$WORK/api" \
	>"$WORK/api.json" 2>"$WORK/api.log" &
API_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/api.json" ]] && break; sleep 0.1; done
[[ -s "$WORK/api.json" ]] || { cat "$WORK/api.log" >&2; exit 1; }
chmod -R a+rX "$WORK/api"
api() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/api.json" "$1"; }
API_URL="$(api url)"; API_CA="$(api ca_file)"; API_TOKEN="$(api token_file)"; API_CONTROL="$(api control_url)"
control() {
	ip netns exec "$NS" curl -sS --fail --max-time 10 -H 'Content-Type: application/json' \
		--data "$1" "$API_CONTROL/control" >/dev/null
}
PASSWORD="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$PASSWORD" >"$WORK/password"
chmod 644 "$WORK/password"

log "starting the node databases' cluster"
EBPFC_PG_EXTRA_CONF="max_connections = 300
shared_buffers = '512MB'
ebpf_capture.partition_interval = '1h'" \
	pg_start "$WORK/nodes" --no-caps --no-preload --port "$PORT" --netns "$NS" --listen 127.0.0.1
sed -i "1i host all ebpf_capture_hub 127.0.0.1/32 scram-sha-256" "$WORK/nodes/data/pg_hba.conf"
psql_n() { pg_psql "$WORK/nodes" -q "$@"; }
psql_n -d postgres -c "SELECT pg_reload_conf()" >/dev/null
T="$(psql_n -d postgres -Atc "SELECT now()")"
cp "$REPO/bench/hub_gen.sql" "$WORK/gen.sql"
psql_n -d postgres -c "CREATE DATABASE node_template"
psql_n -d node_template -c "CREATE EXTENSION ebpf_capture" \
	-c "SELECT _hub_node_access('ebpf_capture_hub', '$PASSWORD', true)" >/dev/null
# One cluster holds every simulated node: the role's connection limit (64,
# per node in a real cluster) would count the hubs' connections to all 30.
psql_n -d postgres -c "ALTER ROLE ebpf_capture_hub CONNECTION LIMIT -1" >/dev/null
log "filling node_template (t = $T)"
psql_n -d node_template -v t="$T" -f "$WORK/gen.sql"
for i in $(seq -w 1 30); do
	psql_n -d postgres -c "CREATE DATABASE node$i TEMPLATE node_template"
done
psql_n -d postgres -Atc "SELECT pg_size_pretty(pg_database_size('node01')) || ' per node database'" >&2

log "announcing the node databases (3 in namespace b3, 30 in b30)"
for i in $(seq -w 1 30); do
	for ns in b3 b30; do
		[[ "$ns" == b3 && 10#$i -gt 3 ]] && continue
		control "{\"op\":\"add_pod\",\"args\":{\"name\":\"ebpf-capture-node$i\",\"namespace\":\"$ns\",
			\"ip\":\"127.0.0.1\",\"node\":\"node$i\",\"labels\":{\"app.kubernetes.io/name\":\"ebpf-capture\"},
			\"ports\":{\"postgres\":$PORT},\"annotations\":{\"ebpf-capture.io/database\":\"node$i\"}}}"
	done
done

for n in 3 30; do
	log "starting hub$n"
	EBPFC_PG_EXTRA_CONF="ebpf_capture.kube_api_url = '$API_URL'
ebpf_capture.kube_ca_file = '$API_CA'
ebpf_capture.kube_token_file = '$API_TOKEN'
ebpf_capture.hub_namespace = 'b$n'
ebpf_capture.hub_password_file = '$WORK/password'" \
		pg_start "$WORK/hub$n" --no-caps --port "$((PORT + (n == 3 ? 1 : 2)))" --netns "$NS"
	pg_psql "$WORK/hub$n" -q -d postgres -c "CREATE EXTENSION ebpf_capture" -c "SELECT hub_start()" >/dev/null
done
for n in 3 30; do
	for _ in $(seq 300); do
		up="$(pg_psql "$WORK/hub$n" -d postgres -Atc "SELECT count(*) FILTER (WHERE state = 'up') FROM hub_status()")"
		[[ "$up" == "$n" ]] && break
		sleep 0.2
	done
	[[ "$up" == "$n" ]] || { pg_psql "$WORK/hub$n" -d postgres -c "SELECT * FROM hub_status()" >&2; exit 1; }
	log "hub$n reads $up node databases"
done

log "measuring, $RUNS rounds"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$REPO/bench/results"
OUT="$REPO/bench/results/hub_bench-$STAMP.md"
/usr/bin/python3 - "$WORK" "$PORT" "$RUNS" "$(git -C "$REPO" rev-parse --short HEAD)" >"$OUT" <<'PY'
import statistics, sys, time
import psycopg2

work, port, runs, commit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
hubs = {3: (f"{work}/hub3", port + 1), 30: (f"{work}/hub30", port + 2)}
node = (f"{work}/nodes", port)


def connect(where, db="postgres"):
    c = psycopg2.connect(host=where[0], port=where[1], user="postgres", dbname=db)
    c.autocommit = True
    return c


QUERIES = [
    ("edges, 15 min", "SELECT count(*) FROM service_map_edges(now() - interval '15 minutes', now())"),
    ("edges, 1 h", "SELECT count(*) FROM service_map_edges(now() - interval '1 hour', now())"),
    ("edges, 3 h", "SELECT count(*) FROM service_map_edges(now() - interval '3 hours', now())"),
    ("nodes, 15 min", "SELECT count(*) FROM service_map_nodes(now() - interval '15 minutes', now())"),
    ("edges, 15 whole minutes",
     "SELECT count(*) FROM service_map_edges(date_trunc('minute', now()) - interval '15 minutes', "
     "date_trunc('minute', now()))"),
]
times = {}  # (label, hub, warm/cold) -> [ms]
warm = {n: connect(h) for n, h in hubs.items()}
for n, c in warm.items():  # open the warm sessions' connections to the nodes
    with c.cursor() as cur:
        cur.execute(QUERIES[0][1])
rows = {}


def timed(conn, sql):
    with conn.cursor() as cur:
        t = time.perf_counter()
        cur.execute(sql)
        got = cur.fetchone()[0]
        ms = (time.perf_counter() - t) * 1000
    assert not conn.notices, conn.notices  # no node failed to answer
    return ms, got


for r in range(runs):
    for n in (3, 30):
        for label, sql in QUERIES:
            ms, got = timed(warm[n], sql)
            times.setdefault((label, n, "warm"), []).append(ms)
            rows[(label, n)] = got
        for label, sql in QUERIES:
            cold = connect(hubs[n])
            try:
                ms, _ = timed(cold, sql)
                times.setdefault((label, n, "cold"), []).append(ms)
            finally:
                cold.close()
            time.sleep(0.2)  # the nodes' sessions of that hub session end
share = []
own = []
nc = connect(node, "node01")
for r in range(runs):
    ms, _ = timed(nc, "SELECT count(*) FROM _service_map_window_of(now() - interval '15 minutes', now())")
    share.append(ms)
    ms, _ = timed(nc, QUERIES[0][1])
    own.append(ms)
med = lambda xs: statistics.median(xs)
print(f"# hub_bench ({commit}, {runs} rounds, medians in ms)\n")
print("Two hubs on one 2-vCPU machine with 30 simulated node databases (bench/hub_gen.sql): "
      "40 edges each, spans at 20/s around the windows' ends.\n")
print("| query | rows | 3 nodes, warm | 3 nodes, cold | 30 nodes, warm | 30 nodes, cold | 30/3 (warm) |")
print("|---|---|---|---|---|---|---|")
for label, _ in QUERIES:
    w3, c3 = med(times[(label, 3, "warm")]), med(times[(label, 3, "cold")])
    w30, c30 = med(times[(label, 30, "warm")]), med(times[(label, 30, "cold")])
    print(f"| {label} | {rows[(label, 3)]} / {rows[(label, 30)]} | {w3:.1f} | {c3:.1f} | "
          f"{w30:.1f} | {c30:.1f} | {w30 / w3:.1f} |")
print()
print(f"One node's share of a 15-minute window (_service_map_window_of on node01): "
      f"{med(share):.1f} ms; a node's own service_map_edges, 15 minutes: {med(own):.1f} ms.")
print()
print("Per round, 15 minutes, 30 nodes, warm: " +
      ", ".join(f"{x:.0f}" for x in times[("edges, 15 min", 30, "warm")]) + " ms; cold: " +
      ", ".join(f"{x:.0f}" for x in times[("edges, 15 min", 30, "cold")]) + " ms.")
PY
cat "$OUT"
log "results: $OUT"
