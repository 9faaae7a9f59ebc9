#!/usr/bin/env bash
# demo.sh - the bookinfo example, end to end on this machine, as root on
# Debian 12:
#
#   bash deploy/demo.sh
#
# Installs the Debian packages it needs, builds and installs the extension,
# builds a small "node" out of network namespaces (a bridge cni0 and five
# "pods" on it) and starts a throw-away PostgreSQL cluster inside the node
# namespace as the postgres user with CAP_BPF/CAP_NET_RAW/CAP_NET_ADMIN/
# CAP_PERFMON. Then the bookinfo application:
#
#   loadgen -> productpage -> details
#                          -> reviews -> ratings
#
# productpage is a Python service (deploy/bookinfo/productpage.py) that
# calls details and reviews for every page; details and ratings are nginx
# answering JSON (ratings fails every book id ending in 7 with a 503);
# reviews is an nginx reverse proxy to ratings over keep-alive connections.
# The pods get their names the way they would in a cluster: the worker
# lists and watches them on a Kubernetes API server, here the tests' fake
# one (tests/kube/fake_kube_api.py: TLS, bearer token, list + watch).
#
# The demo starts a capture on cni0, sends 200 page requests, each in its
# own W3C trace, and prints from SQL: the hops of one trace as a tree
# (trace_tree), the service map
# edges and nodes, and capture_status(). It writes the map as Graphviz DOT
# and renders it with dot to service_map.png in $EBPFC_DEMO_OUT (default
# ./ebpf_capture-demo). Everything else is removed at the end (set
# EBPFC_DEMO_KEEP=1 to keep the cluster, servers and namespaces running).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EBPFC_NS="${EBPFC_NS:-ebpfcdemo}"
export EBPFC_PODS=5
OUT="${EBPFC_DEMO_OUT:-$PWD/ebpf_capture-demo}"
REQUESTS="${EBPFC_DEMO_REQUESTS:-200}"
# shellcheck source=../tests/lib/topology.sh
source "$ROOT/tests/lib/topology.sh"
# shellcheck source=../tests/lib/pgcluster.sh
source "$ROOT/tests/lib/pgcluster.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

# The pods: which network namespace runs what.
PRODUCTPAGE=1 DETAILS=2 REVIEWS=3 RATINGS=4 LOADGEN=5
PORT=9080

say "Installing Debian packages (skipped when present)"
bash "$ROOT/tests/install-deps.sh"

say "Building and installing the extension"
make -C "$ROOT" -s -j2
make -C "$ROOT" -s install

WORK="$(mktemp -d /tmp/ebpfc-demo.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
	local pid
	if [[ "${EBPFC_DEMO_KEEP:-0}" == 1 ]]; then
		echo "kept: cluster in $WORK/pg (psql: bash tests/lib/pgcluster.sh psql $WORK/pg), namespaces ${EBPFC_NS}-*, server pids ${PIDS[*]}"
		return
	fi
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	pg_stop "$WORK/pg" >/dev/null 2>&1 || true
	topo_down
	rm -rf "$WORK"
}
trap cleanup EXIT

say "Building the node: bridge cni0 in netns ${EBPFC_NS}-node, pods ${EBPFC_NS}-pod1..5"
topo_up

say "Starting PostgreSQL in the node namespace (postgres user, capabilities bpf,net_raw,net_admin,perfmon)"
pg_start "$WORK/pg" --port 5497
psql_demo() { pg_psql "$WORK/pg" -d postgres -v ON_ERROR_STOP=1 "$@"; }

say "A Kubernetes API server (the tests' fake one) that knows the bookinfo pods"
mkdir -p "$WORK/kube"
chmod 755 "$WORK/kube"
# started directly, not through a shell function: $! must be the server itself
ip netns exec "$(topo_node_ns)" /usr/bin/python3 "$ROOT/tests/kube/fake_kube_api.py" \
	--dir "$WORK/kube" >"$WORK/kube.json" 2>"$WORK/kube.log" &
PIDS+=($!)
for _ in $(seq 100); do
	[[ -s "$WORK/kube.json" ]] && break
	sleep 0.1
done
[[ -s "$WORK/kube.json" ]] || die "the fake API server did not start: $(cat "$WORK/kube.log")"
api() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/kube.json" "$1"; }
chmod 644 "$WORK"/kube/*  # the postgres user reads the CA and the token
# kube OP JSON-ARGS : one call of the fake server's control endpoint
kube() {
	node_exec curl -sS --fail --max-time 10 -H 'Content-Type: application/json' \
		--data "{\"op\": \"$1\", \"args\": $2}" "$(api control_url)/control" >/dev/null
}
# deployment NAME HASH POD-SUFFIX POD : a Deployment's ReplicaSet and one of its pods
deployment() {
	local name="$1" hash="$2" suffix="$3" pod="$4"
	kube add_replicaset "{\"name\": \"$name-$hash\", \"namespace\": \"bookinfo\", \"deployment\": \"$name\"}"
	kube add_pod "{\"name\": \"$name-$hash-$suffix\", \"namespace\": \"bookinfo\",
		\"ip\": \"$(pod_ip4 "$pod")\", \"node\": \"node-a\",
		\"owner\": [\"ReplicaSet\", \"$name-$hash\"],
		\"labels\": {\"app\": \"${name%-v1}\", \"version\": \"v1\", \"pod-template-hash\": \"$hash\"}}"
}
deployment productpage-v1 6b746f74dc 7xk2p "$PRODUCTPAGE"
deployment details-v1 79f774bdb9 q8dpl "$DETAILS"
deployment reviews-v1 545db77b95 m4n7v "$REVIEWS"
deployment ratings-v1 b6994bb9 zl4dt "$RATINGS"
kube add_pod "{\"name\": \"loadgen\", \"namespace\": \"default\", \"ip\": \"$(pod_ip4 "$LOADGEN")\", \"node\": \"node-a\"}"
echo "API $(api url): 4 Deployments in namespace bookinfo, pod default/loadgen"

say "ebpf_capture.kube_api_url etc.; CREATE EXTENSION ebpf_capture; SELECT capture_start('cni0')"
psql_demo -q -c "ALTER SYSTEM SET ebpf_capture.kube_api_url = '$(api url)'" \
	-c "ALTER SYSTEM SET ebpf_capture.kube_token_file = '$(api token_file)'" \
	-c "ALTER SYSTEM SET ebpf_capture.kube_ca_file = '$(api ca_file)'" \
	-c "SELECT pg_reload_conf()" >/dev/null
psql_demo -c "CREATE EXTENSION ebpf_capture" -c "SELECT capture_start('cni0')"
for _ in $(seq 100); do
	ready="$(psql_demo -Atc "SELECT state = 'running' AND metadata_state = 'synced' AND pods_known >= 5
		FROM capture_status() WHERE interface = 'cni0'")"
	[[ "$ready" == t ]] && break
	sleep 0.2
done
[[ "$ready" == t ]] || die "capture not running with metadata synced: $(psql_demo -Atc 'SELECT * FROM capture_status()')"
psql_demo -c "SELECT interface, state, metadata_state, pods_known FROM capture_status()"

say "Starting bookinfo: productpage (python), details, reviews (proxy), ratings (nginx)"
# nginx_pod POD NAME LOCATIONS [HTTP-BLOCK] : nginx in the foreground in a pod
nginx_pod() {
	local pod="$1" name="$2"
	cat >"$WORK/$name.conf" <<NGINX
worker_processes 1;
pid $WORK/$name.pid;
error_log $WORK/$name-error.log;
events { worker_connections 256; }
http {
  access_log off;
  default_type application/json;
  ${4:-}
  server {
    listen $(pod_ip4 "$pod"):$PORT;
    $3
  }
}
NGINX
	ip netns exec "$(topo_pod_ns "$pod")" nginx -c "$WORK/$name.conf" -g 'daemon off;' \
		>"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
}
nginx_pod "$RATINGS" ratings '
    location ~ "^/ratings/[0-9]*7$" { return 503 "{\"error\": \"ratings overloaded\"}\n"; }
    location ~ "^/ratings/([0-9]+)$" {
      return 200 "{\"id\": $1, \"ratings\": {\"Reviewer1\": 5, \"Reviewer2\": 4}}\n";
    }'
nginx_pod "$DETAILS" details '
    location ~ "^/details/([0-9]+)$" {
      return 200 "{\"id\": $1, \"author\": \"William Shakespeare\", \"year\": 1595, \"type\": \"paperback\"}\n";
    }'
nginx_pod "$REVIEWS" reviews '
    location /reviews/ {
      proxy_pass http://ratings/ratings/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }' "upstream ratings { server $(pod_ip4 "$RATINGS"):$PORT; keepalive 4; }"
ip netns exec "$(topo_pod_ns "$PRODUCTPAGE")" /usr/bin/python3 "$ROOT/deploy/bookinfo/productpage.py" \
	"$(pod_ip4 "$PRODUCTPAGE")" "$PORT" "http://$(pod_ip4 "$DETAILS"):$PORT" \
	"http://$(pod_ip4 "$REVIEWS"):$PORT" >"$WORK/productpage.log" 2>&1 &
PIDS+=($!)
for pod in "$PRODUCTPAGE" "$DETAILS" "$REVIEWS" "$RATINGS"; do
	for _ in $(seq 100); do
		ip netns exec "$(topo_pod_ns "$pod")" ss -Hltn "sport = :$PORT" | grep -q . && break
		sleep 0.1
	done
done

say "Traffic: loadgen sends $REQUESTS requests GET /productpage?id=N, each in its own trace"
START="$(psql_demo -Atc "SELECT now()")"
RESULT="$(pod_exec "$LOADGEN" /usr/bin/python3 "$ROOT/deploy/bookinfo/loadgen.py" \
	"http://$(pod_ip4 "$PRODUCTPAGE"):$PORT" "$REQUESTS")"
echo "loadgen: $RESULT"
TRACE="$(/usr/bin/python3 -c 'import json, sys; print(json.loads(sys.argv[1])["first_trace"])' "$RESULT")"
# four hops per page: loadgen -> productpage -> details, -> reviews -> ratings
want=$((4 * REQUESTS))
for _ in $(seq 150); do
	have="$(psql_demo -Atc "SELECT count(*) FROM spans WHERE protocol = 'http' AND start_time >= '$START'")"
	((have >= want)) && break
	sleep 0.2
done
echo "HTTP spans recorded: $have of $want"

say "One request, every hop, as a tree: SELECT ... FROM trace_tree('$TRACE')"
psql_demo -c "SELECT src_workload AS caller, dst_workload AS callee, http_method AS method,
       http_target AS target, http_status AS status,
       round(extract(epoch FROM end_time - start_time) * 1000, 3) AS latency_ms,
       depth, span_id, parent_span_id
FROM trace_tree('$TRACE')"

say "Connections: SELECT ... FROM spans WHERE protocol = 'tcp' (first 8)"
psql_demo -c "SELECT src_pod, dst_pod, dst_port, bytes_sent, bytes_received, status,
       attributes->>'tcp.close_reason' AS closed_by
FROM spans WHERE protocol = 'tcp' AND start_time >= '$START' ORDER BY start_time LIMIT 8"

END="$(psql_demo -Atc "SELECT now()")"
say "The service map: SELECT source, target, mainstat, secondarystat FROM service_map_edges(...)"
psql_demo -c "SELECT source, target, mainstat, secondarystat
FROM service_map_edges('$START', '$END') ORDER BY source, target"
psql_demo -c "SELECT id, subtitle, mainstat, secondarystat, round(arc__errors::numeric, 3) AS errors
FROM service_map_nodes('$START', '$END')"

mkdir -p "$OUT"
psql_demo -Atc "SELECT service_map_dot('$START', '$END')" >"$OUT/service_map.dot"
dot -Tpng -Gdpi=110 -o "$OUT/service_map.png" "$OUT/service_map.dot"
say "The map as a picture: $OUT/service_map.png (from $OUT/service_map.dot)"

say "SELECT * FROM capture_status()"
psql_demo -x -c "SELECT * FROM capture_status()"

say "SELECT capture_stop('cni0')"
psql_demo -c "SELECT capture_stop('cni0')"
