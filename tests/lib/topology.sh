#!/usr/bin/env bash
# topology.sh - a Kubernetes-node-like network made of network namespaces.
#
#   ${EBPFC_NS}-node   holds the Linux bridge cni0 (10.213.0.1/24, fd00:ebc::1/64)
#   ${EBPFC_NS}-podI   I = 1..EBPFC_PODS, eth0 = 10.213.0.(10+I)/24, fd00:ebc::(10+I)/64,
#                      connected to cni0 through a veth pair (node end: vethI)
#
# Usage as a command:   topology.sh up|down|status
# Usage as a library:   source topology.sh; topo_up; pod_exec 1 ping ...; topo_down
#
# Environment: EBPFC_NS (default ebpfc), EBPFC_PODS (default 4).
# Only addresses inside these namespaces are ever used.

EBPFC_NS="${EBPFC_NS:-ebpfc}"
EBPFC_PODS="${EBPFC_PODS:-4}"

topo_node_ns() { printf '%s-node\n' "${EBPFC_NS}"; }
topo_pod_ns() { printf '%s-pod%s\n' "${EBPFC_NS}" "$1"; }
pod_ip4() { printf '10.213.0.%d\n' "$((10 + $1))"; }
pod_ip6() { printf 'fd00:ebc::%d\n' "$((10 + $1))"; }

# pod_exec I CMD... : run CMD inside pod I's network namespace.
pod_exec() {
	local i="$1"
	shift
	ip netns exec "$(topo_pod_ns "$i")" "$@"
}

# node_exec CMD... : run CMD inside the node namespace (where cni0 lives).
node_exec() {
	ip netns exec "$(topo_node_ns)" "$@"
}

topo_log() { printf 'topology: %s\n' "$*" >&2; }

# Remove every namespace of ours: the node, the pods 1..EBPFC_PODS and any
# further podN left by a previous run with more pods.
topo_down() {
	local ns
	while read -r ns _; do
		case "$ns" in
		"${EBPFC_NS}-node" | "${EBPFC_NS}-pod"[0-9]*)
			ip netns del "$ns" 2>/dev/null || true
			;;
		esac
	done < <(ip netns list 2>/dev/null || true)
	return 0
}

topo_up() {
	local node i pod
	node="$(topo_node_ns)"
	topo_down

	ip netns add "$node"
	# bridge-nf would push bridged frames through iptables, which also drops
	# malformed IP headers before anything can capture them. The sysctls are
	# per network namespace (and only exist when br_netfilter is loaded).
	local knob
	for knob in bridge-nf-call-iptables bridge-nf-call-ip6tables bridge-nf-call-arptables; do
		ip netns exec "$node" sysctl -q -w "net.bridge.${knob}=0" >/dev/null 2>&1 || true
	done
	ip -n "$node" link set lo up
	ip netns exec "$node" sysctl -q -w net.ipv6.conf.all.accept_dad=0 >/dev/null
	ip netns exec "$node" sysctl -q -w net.ipv6.conf.default.accept_dad=0 >/dev/null
	ip -n "$node" link add cni0 type bridge stp_state 0 forward_delay 0 \
		nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0
	ip -n "$node" addr add 10.213.0.1/24 dev cni0
	ip -n "$node" addr add fd00:ebc::1/64 dev cni0 nodad
	ip -n "$node" link set cni0 up

	for ((i = 1; i <= EBPFC_PODS; i++)); do
		pod="$(topo_pod_ns "$i")"
		ip netns add "$pod"
		ip -n "$pod" link set lo up
		ip netns exec "$pod" sysctl -q -w net.ipv6.conf.all.accept_dad=0 >/dev/null
		ip netns exec "$pod" sysctl -q -w net.ipv6.conf.default.accept_dad=0 >/dev/null
		ip -n "$node" link add "veth$i" type veth peer name eth0 netns "$pod"
		ip -n "$node" link set "veth$i" master cni0
		ip -n "$node" link set "veth$i" up
		ip -n "$pod" addr add "$(pod_ip4 "$i")/24" dev eth0
		ip -n "$pod" addr add "$(pod_ip6 "$i")/64" dev eth0 nodad
		ip -n "$pod" link set eth0 up
		# No default route: nothing in a pod can reach beyond 10.213.0.0/24 and
		# fd00:ebc::/64 (a name lookup fails at once instead of timing out).
	done

	if ((EBPFC_PODS >= 2)); then
		# One packet, short timeout; a second try covers a bridge port that
		# became forwarding a moment late.
		if ! pod_exec 1 ping -c 1 -W 2 -q "$(pod_ip4 2)" >/dev/null 2>&1 &&
			! pod_exec 1 ping -c 1 -W 2 -q "$(pod_ip4 2)" >/dev/null 2>&1; then
			topo_log "FAILED: pod1 cannot ping pod2 ($(pod_ip4 2)) through cni0"
			ip -n "$node" -d link show cni0 >&2 || true
			ip -n "$node" link show master cni0 >&2 || true
			pod_exec 1 ip addr show dev eth0 >&2 || true
			return 1
		fi
	fi
	topo_log "up: node $node with cni0, ${EBPFC_PODS} pods"
}

topo_status() {
	local ns
	ip netns list | grep -E "^${EBPFC_NS}-(node|pod[0-9]+)" || true
	ns="$(topo_node_ns)"
	if ip netns list | grep -q "^${ns}\b"; then
		ip -n "$ns" -br addr show
	fi
}

topo_main() {
	set -euo pipefail
	case "${1:-}" in
	up) topo_up ;;
	down) topo_down ;;
	status) topo_status ;;
	*)
		echo "usage: $0 up|down|status" >&2
		return 2
		;;
	esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	topo_main "$@"
fi
