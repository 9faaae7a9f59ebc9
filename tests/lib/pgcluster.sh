#!/usr/bin/env bash
# pgcluster.sh - throw-away PostgreSQL 15 clusters for the tests.
#
#   pgcluster.sh start DIR [--no-preload] [--no-caps] [--port P] [--netns NS] [--listen ADDR]
#   pgcluster.sh stop DIR
#   pgcluster.sh restart DIR
#   pgcluster.sh psql DIR [psql args...]
#
# The server runs inside the node network namespace (${EBPFC_NS}-node, where
# cni0 lives) as the postgres user with the ambient capabilities the capture
# needs (CAP_NET_RAW, CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON); --no-caps starts it
# with none; --netns runs it in another namespace. It listens only on a Unix
# socket in DIR (and on TCP at ADDR with --listen). The port and the
# namespace are remembered in DIR/port and DIR/netns for restart. Extra postgresql.conf
# lines may be given in EBPFC_PG_EXTRA_CONF (newline-separated); EBPFC_PG_STOCK=1
# keeps fsync, synchronous_commit and full_page_writes at their defaults.
#
# Sourceable: pg_start, pg_stop, pg_restart, pg_psql, pg_port.

EBPFC_NS="${EBPFC_NS:-ebpfc}"
PG_BINDIR="${PG_BINDIR:-$(pg_config --bindir)}"
PG_CAPS="+net_raw,+bpf,+net_admin,+perfmon"

pg_log() { printf 'pgcluster: %s\n' "$*" >&2; }

# The port a cluster in DIR was started with (remembered in DIR/port).
pg_port() {
	cat "$1/port"
}

# pg_psql DIR ARGS... : psql as postgres against the cluster in DIR.
pg_psql() {
	local dir="$1"
	shift
	runuser -u postgres -- "$PG_BINDIR/psql" -h "$dir" -p "$(pg_port "$dir")" -U postgres \
		-X -v ON_ERROR_STOP=1 "$@"
}

# Run pg_ctl ARGS... in the node namespace as postgres, with or without caps.
_pg_ctl_in_node() {
	local dir="$1"
	shift
	local caps_args=()
	if [[ ! -e "$dir/nocaps" ]]; then
		caps_args=(--inh-caps="$PG_CAPS" --ambient-caps="$PG_CAPS")
	fi
	local netns="${EBPFC_NS}-node"
	if [[ -f "$dir/netns" ]]; then
		netns="$(cat "$dir/netns")"
	fi
	ip netns exec "$netns" \
		setpriv --reuid=postgres --regid=postgres --init-groups "${caps_args[@]}" \
		"$PG_BINDIR/pg_ctl" "$@"
}

_pg_server_start() {
	local dir="$1"
	if ! _pg_ctl_in_node "$dir" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
		pg_log "server in $dir failed to start; log tail:"
		tail -n 40 "$dir/server.log" >&2 || true
		return 1
	fi
}

pg_start() {
	local dir="" preload=1 caps=1 port=5499 netns="${EBPFC_NS}-node" listen=
	while (($#)); do
		case "$1" in
		--no-preload) preload=0 ;;
		--no-caps) caps=0 ;;
		--port)
			port="$2"
			shift
			;;
		--port=*) port="${1#--port=}" ;;
		--netns)
			netns="$2"
			shift
			;;
		--listen)
			listen="$2"
			shift
			;;
		-*)
			pg_log "unknown option $1"
			return 2
			;;
		*) dir="$1" ;;
		esac
		shift
	done
	if [[ -z "$dir" ]]; then
		pg_log "start: DIR missing"
		return 2
	fi
	if ! ip netns list | grep -q "^${netns}\b"; then
		pg_log "network namespace ${netns} does not exist (run topology.sh up)"
		return 1
	fi

	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
	# Leftovers of a previous run in the same DIR: stop that server, start afresh.
	if [[ -f "$dir/data/postmaster.pid" ]]; then
		pg_stop "$dir" || true
	fi
	rm -rf "$dir/data" "$dir/server.log" "$dir/nocaps" "$dir/port" "$dir/netns"
	chown postgres:postgres "$dir"
	chmod 0700 "$dir"
	printf '%s\n' "$port" >"$dir/port"
	printf '%s\n' "$netns" >"$dir/netns"
	if ((caps == 0)); then
		: >"$dir/nocaps"
	fi

	runuser -u postgres -- "$PG_BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync \
		--encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
		pg_log "initdb failed:"
		cat "$dir/initdb.log" >&2
		return 1
	}

	{
		echo "# added by tests/lib/pgcluster.sh"
		if ((preload)); then
			echo "shared_preload_libraries = 'ebpf_capture'"
		fi
		echo "unix_socket_directories = '$dir'"
		echo "listen_addresses = '$listen'"
		echo "port = $port"
		# Test clusters skip what keeps data across an operating system
		# crash; EBPFC_PG_STOCK=1 keeps the server's defaults (benchmarks).
		if [[ "${EBPFC_PG_STOCK:-0}" != 1 ]]; then
			echo "fsync = off"
			echo "synchronous_commit = off"
			echo "full_page_writes = off"
		fi
		echo "log_min_messages = info"
		echo "ebpf_capture.database = 'postgres'"
		# One-minute spans partitions: the tests cross partition boundaries
		# and see the launcher make and drop partitions within minutes.
		echo "ebpf_capture.partition_interval = '1min'"
		# The tests compare request targets byte for byte; the default
		# (redact) has a test of its own.
		echo "ebpf_capture.http_query = 'keep'"
		if [[ -n "${EBPFC_PG_EXTRA_CONF:-}" ]]; then
			printf '%s\n' "$EBPFC_PG_EXTRA_CONF"
		fi
	} >>"$dir/data/postgresql.conf"

	_pg_server_start "$dir" || return 1
	pg_log "started in $dir (port $port, preload=$preload, caps=$caps, netns $netns)"
}

pg_stop() {
	local dir="$1"
	if [[ ! -f "$dir/data/postmaster.pid" ]]; then
		return 0
	fi
	# pg_ctl stop only signals and waits; it needs no namespace or caps, but
	# must run as the data directory's owner.
	runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

pg_restart() {
	local dir="$1"
	pg_stop "$dir"
	_pg_server_start "$dir" || return 1
}

pg_main() {
	set -euo pipefail
	local cmd="${1:-}"
	shift || true
	case "$cmd" in
	start) pg_start "$@" ;;
	stop) pg_stop "$@" ;;
	restart) pg_restart "$@" ;;
	psql) pg_psql "$@" ;;
	*)
		echo "usage: $0 start DIR [--no-preload] [--no-caps] [--port P] [--netns NS] [--listen ADDR] | stop DIR | restart DIR | psql DIR [args]" >&2
		return 2
		;;
	esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	pg_main "$@"
fi
