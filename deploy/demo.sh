#!/usr/bin/env bash
# demo.sh - ebpf_capture end to end on this machine, as root on Debian 12:
#
#   bash deploy/demo.sh
#
# Installs the Debian packages it needs, builds and installs the extension,
# builds a small "node" out of network namespaces (a bridge cni0 and four
# "pods" on it), starts a throw-away PostgreSQL cluster inside the node
# namespace as the postgres user with CAP_BPF/CAP_NET_RAW/CAP_NET_ADMIN/
# CAP_PERFMON, starts a capture on cni0, sends real traffic between the pods
# (curl -> nginx, curl -> python http.server over IPv6, a refused connection,
# a reset), and prints the spans from SQL. Everything is removed at the end
# (set EBPFC_DEMO_KEEP=1 to keep the cluster and namespaces running).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EBPFC_NS="${EBPFC_NS:-ebpfcdemo}"
export EBPFC_PODS=4
# shellcheck source=../tests/lib/topology.sh
source "$ROOT/tests/lib/topology.sh"
# shellcheck source=../tests/lib/pgcluster.sh
source "$ROOT/tests/lib/pgcluster.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

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
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	if [[ "${EBPFC_DEMO_KEEP:-0}" == 1 ]]; then
		echo "kept: cluster in $WORK (psql: bash tests/lib/pgcluster.sh psql $WORK), namespaces ${EBPFC_NS}-*"
		return
	fi
	pg_stop "$WORK" >/dev/null 2>&1 || true
	topo_down
	rm -rf "$WORK"
}
trap cleanup EXIT

say "Building the node: bridge cni0 in netns ${EBPFC_NS}-node, pods ${EBPFC_NS}-pod1..4"
topo_up

say "Starting PostgreSQL in the node namespace (postgres user, capabilities bpf,net_raw,net_admin,perfmon)"
pg_start "$WORK" --port 5497
psql_demo() { pg_psql "$WORK" -d postgres "$@"; }

say "CREATE EXTENSION ebpf_capture; SELECT capture_start('cni0')"
psql_demo -c "CREATE EXTENSION ebpf_capture" -c "SELECT capture_start('cni0')"
for _ in $(seq 50); do
	state="$(psql_demo -Atc "SELECT state FROM capture_status() WHERE interface = 'cni0'")"
	[[ "$state" == running ]] && break
	sleep 0.2
done
psql_demo -c "SELECT interface, pid, state, started_at FROM capture_status()"

say "Traffic: pod1 -> nginx in pod2, pod3 -> http.server in pod4 (IPv6), a refused port, a reset"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  server {
    listen $(pod_ip4 2):8080;
    location = / { return 200 "hello from pod2\n"; }
    location /missing { return 404; }
    location /big { return 200 "$(head -c 3000 /dev/zero | tr '\0' 'x')\n"; }
  }
}
NGINX
# started directly, not through a shell function: $! must be the server itself
ip netns exec "$(topo_pod_ns 2)" nginx -c "$WORK/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
PIDS+=($!)
mkdir -p "$WORK/www" && head -c 50000 /dev/urandom >"$WORK/www/blob.bin"
ip netns exec "$(topo_pod_ns 4)" /usr/bin/python3 -m http.server 8000 --bind "$(pod_ip6 4)" \
	--directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
for i in 1 2 3; do
	pod_exec 1 curl -sS -o /dev/null "http://$(pod_ip4 2):8080/"
	pod_exec 1 curl -sS -o /dev/null "http://$(pod_ip4 2):8080/big?page=$i"
done
# two requests on one keep-alive connection, in one W3C trace
pod_exec 1 curl -sS -o /dev/null -o /dev/null \
	-H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" \
	"http://$(pod_ip4 2):8080/" "http://$(pod_ip4 2):8080/missing"
pod_exec 3 curl -sS -g -o /dev/null "http://[$(pod_ip6 4)]:8000/blob.bin"
pod_exec 1 curl -sS -o /dev/null --max-time 2 "http://$(pod_ip4 3):9999/" 2>/dev/null || true
pod_exec 1 /usr/bin/python3 - "$(pod_ip4 2)" <<'PY'
import socket, struct, sys
s = socket.create_connection((sys.argv[1], 8080))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
s.recv(100)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()  # linger 0: the kernel sends a RST
PY
sleep 1.5

say "Connections: SELECT ... FROM spans WHERE protocol = 'tcp'"
psql_demo -c "SELECT src_addr, src_port, dst_addr, dst_port, bytes_sent, bytes_received,
       round(extract(epoch FROM end_time - start_time) * 1000, 2) AS ms, status,
       attributes->>'tcp.close_reason' AS closed_by,
       attributes->>'tcp.handshake_rtt_us' AS rtt_us
FROM spans WHERE protocol = 'tcp' ORDER BY start_time"

say "HTTP exchanges: SELECT ... FROM spans WHERE protocol = 'http'"
psql_demo -c "SELECT src_addr, dst_addr, dst_port, http_method, http_target, http_status,
       round(extract(epoch FROM end_time - start_time) * 1000, 3) AS latency_ms,
       bytes_received AS response_body, trace_id
FROM spans WHERE protocol = 'http' ORDER BY start_time"

say "SELECT * FROM capture_status()"
psql_demo -x -c "SELECT * FROM capture_status()"

say "SELECT capture_stop('cni0')"
psql_demo -c "SELECT capture_stop('cni0')"
