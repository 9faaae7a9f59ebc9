#!/usr/bin/env bash
# topology.sh - a Kubernetes-node-like network made of network namespaces.
#
#   ${EBPFC_NS}-node   holds the Linux bridge cni0 (10.213.0.1/24, fd00:ebc::1/64)
#   ${EBPFC_NS}-podI   I = 1..EBPFC_PODS, eth0 = 10.213.0.(10+I)/24, fd00:ebc::(10+I)/64,
#                      connected to cni0 through a veth pair (node end: vethI)
#
# Routed pods, the layouts of CNIs without a bridge (issue 18, docs/cni.md),
# built on demand in the same node namespace (`routed-up`):
#
#   ${EBPFC_NS}-remote  another node: the node's uplink0 (10.214.0.1/24) is a
#                       veth to its eth0 (10.214.0.2/24); the node's default
#                       route points there. "Its pods" are 10.214.8.1, routed
#                       natively, and 10.214.9.1, reached through VXLAN
#                       (vxlan.calico on both nodes, as Calico's VXLAN mode).
#   ${EBPFC_NS}-caliI   Calico-like, I = 1..N: host end cali + 11 hex digits
#                       (MAC ee:ee:ee:ee:ee:ee, proxy ARP), pod eth0
#                       10.213.1.I/32 and fd00:ebd:1::I/128 (MTU 1450, for
#                       VXLAN), default route via 169.254.1.1 (IPv6: the host
#                       end's link-local address); /32 and /128 routes on the
#                       node to the host end.
#   ${EBPFC_NS}-lxcI    Cilium-like: host end lxc + 12 hex digits, pod eth0
#                       10.213.2.I/32, default route via cilium_host's
#                       10.213.2.254 with a permanent neighbour entry for the
#                       host end's MAC; /32 routes on the node. The node also
#                       gets the cilium_host / cilium_net veth pair.
# Pods are plugged in the way CNI plugins do it: a veth pair made on the node
# with temporary names, one end moved into the pod's namespace, both renamed.
#
# Usage as a command:   topology.sh up|down|status
#                       topology.sh routed-up [calico|cilium|both] [N] | routed-down
#                       topology.sh routed-pod-add|routed-pod-del calico|cilium I
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
		"${EBPFC_NS}-node" | "${EBPFC_NS}-pod"[0-9]* | "${EBPFC_NS}-cali"[0-9]* | \
			"${EBPFC_NS}-lxc"[0-9]* | "${EBPFC_NS}-remote")
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

# --------------------------------------------------------------------------
# routed pods

routed_remote_ns() { printf '%s-remote\n' "${EBPFC_NS}"; }
routed_pod_ns() { printf '%s-%s%s\n' "${EBPFC_NS}" "$(routed_prefix "$1")" "$2"; }
routed_prefix() { case "$1" in calico) echo cali ;; cilium) echo lxc ;; *) return 1 ;; esac; }
routed_ip4() { case "$1" in calico) echo "10.213.1.$2" ;; cilium) echo "10.213.2.$2" ;; esac; }
routed_ip6() { if [[ "$1" == calico ]]; then echo "fd00:ebd:1::$2"; fi; }

# The host end's name: the prefix, then hex digits of a hash of the pod
# (11 for Calico, 12 for Cilium: 15 characters, as theirs).
routed_host_if() {
	local prefix digits hash
	prefix="$(routed_prefix "$1")"
	digits=$((15 - ${#prefix}))
	hash="$(printf '%s' "$(routed_pod_ns "$1" "$2")" | sha1sum)"
	printf '%s%s\n' "$prefix" "${hash:0:digits}"
}

ROUTED_NODE_IP=10.214.0.1 ROUTED_REMOTE_IP=10.214.0.2
ROUTED_REMOTE_POD_NATIVE=10.214.8.1 ROUTED_REMOTE_POD_VXLAN=10.214.9.1
ROUTED_CALICO_MAC=ee:ee:ee:ee:ee:ee ROUTED_CALICO_GW6=fe80::ecee:eeff:feee:eeee
ROUTED_CILIUM_GW=10.213.2.254

# The other node, the uplink and the VXLAN tunnel between them.
routed_remote_up() {
	local node remote
	node="$(topo_node_ns)"
	remote="$(routed_remote_ns)"
	ip netns exec "$node" sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 >/dev/null
	ip netns add "$remote"
	ip -n "$remote" link set lo up
	ip -n "$node" link add uplink0 type veth peer name eth0 netns "$remote"
	ip -n "$node" addr add "$ROUTED_NODE_IP/24" dev uplink0
	ip -n "$node" link set uplink0 up
	ip -n "$remote" addr add "$ROUTED_REMOTE_IP/24" dev eth0
	ip -n "$remote" link set eth0 up
	ip -n "$remote" addr add "$ROUTED_REMOTE_POD_NATIVE/32" dev lo
	ip -n "$remote" addr add "$ROUTED_REMOTE_POD_VXLAN/32" dev lo
	# A node's default route goes out through its uplink (proxy ARP answers
	# for 169.254.1.1 only because it is routed through another interface).
	ip -n "$node" route add default via "$ROUTED_REMOTE_IP" dev uplink0
	ip -n "$remote" route add 10.213.2.0/24 via "$ROUTED_NODE_IP" dev eth0
	# VXLAN as Calico sets it up: a device per node, static neighbour and
	# forwarding entries for the other node's device.
	ip -n "$node" link add vxlan.calico address 66:cc:00:00:00:01 type vxlan id 4096 \
		local "$ROUTED_NODE_IP" dev uplink0 dstport 4789 nolearning
	ip -n "$remote" link add vxlan.calico address 66:cc:00:00:00:02 type vxlan id 4096 \
		local "$ROUTED_REMOTE_IP" dev eth0 dstport 4789 nolearning
	ip -n "$node" addr add 10.213.1.254/32 dev vxlan.calico
	ip -n "$remote" addr add 10.214.9.254/32 dev vxlan.calico
	ip -n "$node" link set vxlan.calico up
	ip -n "$remote" link set vxlan.calico up
	ip -n "$node" neigh add 10.214.9.254 lladdr 66:cc:00:00:00:02 dev vxlan.calico nud permanent
	ip -n "$remote" neigh add 10.213.1.254 lladdr 66:cc:00:00:00:01 dev vxlan.calico nud permanent
	bridge -n "$node" fdb add 66:cc:00:00:00:02 dev vxlan.calico dst "$ROUTED_REMOTE_IP"
	bridge -n "$remote" fdb add 66:cc:00:00:00:01 dev vxlan.calico dst "$ROUTED_NODE_IP"
	ip -n "$node" route add 10.214.9.0/24 via 10.214.9.254 dev vxlan.calico onlink
	ip -n "$remote" route add 10.213.1.0/24 via 10.213.1.254 dev vxlan.calico onlink
	# Cilium's own pair on the node: both ends here, not a pod's.
	ip -n "$node" link add cilium_host type veth peer name cilium_net
	ip -n "$node" addr add "$ROUTED_CILIUM_GW/32" dev cilium_host
	ip -n "$node" link set cilium_host up
	ip -n "$node" link set cilium_net up
}

routed_pod_add() {
	local flavour="$1" i="$2" node pod host ip4 ip6 tmp
	node="$(topo_node_ns)"
	pod="$(routed_pod_ns "$flavour" "$i")" || return 1
	host="$(routed_host_if "$flavour" "$i")"
	ip4="$(routed_ip4 "$flavour" "$i")"
	ip6="$(routed_ip6 "$flavour" "$i")"
	tmp="tmp${flavour:0:3}$i"
	ip netns add "$pod"
	ip -n "$pod" link set lo up
	ip netns exec "$pod" sysctl -q -w net.ipv6.conf.all.accept_dad=0 >/dev/null
	ip netns exec "$pod" sysctl -q -w net.ipv6.conf.default.accept_dad=0 >/dev/null
	ip -n "$node" link add "${tmp}h" type veth peer name "${tmp}p"
	ip -n "$node" link set "${tmp}p" netns "$pod"
	ip -n "$pod" link set "${tmp}p" name eth0
	ip -n "$node" link set "${tmp}h" name "$host"
	ip -n "$pod" addr add "$ip4/32" dev eth0
	case "$flavour" in
	calico)
		ip -n "$node" link set "$host" address "$ROUTED_CALICO_MAC"
		ip netns exec "$node" sysctl -q -w "net.ipv4.conf.${host}.proxy_arp=1" \
			"net.ipv4.neigh.${host}.proxy_delay=0" >/dev/null
		ip -n "$node" link set "$host" up
		ip -n "$pod" addr add "$ip6/128" dev eth0 nodad
		ip -n "$pod" link set eth0 mtu 1450 up
		ip -n "$pod" route add 169.254.1.1 dev eth0 scope link
		ip -n "$pod" route add default via 169.254.1.1 dev eth0
		ip -n "$pod" -6 route add default via "$ROUTED_CALICO_GW6" dev eth0
		ip -n "$node" route add "$ip4/32" dev "$host" scope link
		ip -n "$node" -6 route add "$ip6/128" dev "$host"
		;;
	cilium)
		ip -n "$node" link set "$host" up
		ip -n "$pod" link set eth0 up
		ip -n "$pod" route add "$ROUTED_CILIUM_GW" dev eth0 scope link
		ip -n "$pod" route add default via "$ROUTED_CILIUM_GW" dev eth0
		ip -n "$pod" neigh replace "$ROUTED_CILIUM_GW" dev eth0 nud permanent \
			lladdr "$(ip -n "$node" -br link show "$host" | awk '{print $3}')"
		ip -n "$node" route add "$ip4/32" dev "$host" scope link
		;;
	esac
}

routed_pod_del() {
	ip netns del "$(routed_pod_ns "$1" "$2")" 2>/dev/null || true
}

# routed-up [calico|cilium|both] [N]: the other node and N pods of each flavour.
routed_up() {
	local which="${1:-both}" n="${2:-3}" flavour i node
	local flavours=(calico cilium)
	[[ "$which" == both ]] || flavours=("$which")
	routed_down
	routed_remote_up || return 1
	for flavour in "${flavours[@]}"; do
		for ((i = 1; i <= n; i++)); do
			routed_pod_add "$flavour" "$i" || return 1
		done
		# Pod to pod, and to the other node, through the node's routing.
		if ((n >= 2)) && ! ip netns exec "$(routed_pod_ns "$flavour" 1)" \
			ping -c 1 -W 2 -q "$(routed_ip4 "$flavour" 2)" >/dev/null 2>&1; then
			topo_log "FAILED: $flavour pod 1 cannot ping pod 2"
			return 1
		fi
	done
	topo_log "routed: ${flavours[*]} ($n pods each) and the remote node"
}

routed_down() {
	local ns node
	node="$(topo_node_ns)"
	while read -r ns _; do
		case "$ns" in
		"${EBPFC_NS}-cali"[0-9]* | "${EBPFC_NS}-lxc"[0-9]* | "${EBPFC_NS}-remote")
			ip netns del "$ns" 2>/dev/null || true
			;;
		esac
	done < <(ip netns list 2>/dev/null || true)
	ip -n "$node" link del vxlan.calico 2>/dev/null || true
	ip -n "$node" link del cilium_host 2>/dev/null || true
	ip netns exec "$node" sysctl -q -w net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 \
		>/dev/null 2>&1 || true
	return 0
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
	routed-up) routed_up "${@:2}" ;;
	routed-down) routed_down ;;
	routed-pod-add) routed_pod_add "$2" "$3" ;;
	routed-pod-del) routed_pod_del "$2" "$3" ;;
	*)
		echo "usage: $0 up|down|status|routed-up [calico|cilium|both] [N]|routed-down|routed-pod-add|routed-pod-del F I" >&2
		return 2
		;;
	esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	topo_main "$@"
fi
