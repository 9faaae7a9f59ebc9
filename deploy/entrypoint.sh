#!/usr/bin/env bash
# ebpf-capture-entrypoint - the image's entrypoint (deploy/Dockerfile installs
# this file as /usr/local/bin/ebpf-capture-entrypoint).
#
#   ebpf-capture-entrypoint postgres [ARGS...]   run the server (the default)
#   ebpf-capture-entrypoint -c name=value ...    the same: "postgres" is implied
#   ebpf-capture-entrypoint prepare-data         as root: create $PGDATA for
#                                                the postgres user, then exit
#                                                (the DaemonSet's init container)
#   ebpf-capture-entrypoint COMMAND [ARGS...]    any other command, as it is
#
# Running the server, as the postgres user (started as root, it prepares
# $PGDATA and re-runs itself as postgres, keeping the supplementary groups it
# was given, such as a pod's fsGroup, but root's):
#
#  1. An empty $PGDATA is initialised (initdb, UTF-8, locale C.UTF-8).
#     Local connections are trusted; network clients authenticate with
#     scram-sha-256 and the superuser's password, $POSTGRES_PASSWORD (or
#     POSTGRES_HOST_AUTH_METHOD names another method, e.g. trust).
#     POSTGRES_INITDB_ARGS adds initdb options.
#  2. On that first start, and on every start of an image whose ebpf_capture
#     version differs from the one recorded in $PGDATA/ebpf_capture.version,
#     the server is started on a private Unix socket only (no TCP), with the
#     same arguments (so the same configuration file and preloaded library),
#     and every file in $EBPF_CAPTURE_INIT_DIR (default
#     /docker-entrypoint-initdb.d) runs against it in name order: *.sh
#     (PGHOST, PGPORT and PGUSER point at that server), *.sql (psql). The
#     DaemonSet mounts the ConfigMap's init-capture.sh there: it creates the
#     extension and starts the capture, or updates the extension to the
#     image's version. Scripts there must therefore be safe to run again.
#     Then that server stops and the version is recorded; a failure stops the
#     container instead (it is retried on the next start).
#  3. The server is exec'd with the arguments given (PID 1 in a container).
set -Eeuo pipefail

PG_BINDIR=/usr/lib/postgresql/15/bin
export PATH="$PG_BINDIR:$PATH"
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
INIT_DIR="${EBPF_CAPTURE_INIT_DIR:-/docker-entrypoint-initdb.d}"
CONTROL=/usr/share/postgresql/15/extension/ebpf_capture.control
VERSION_FILE="$PGDATA/ebpf_capture.version"
# The init step's server listens on this port of its private socket directory.
INIT_PORT=5432
INIT_TIMEOUT_S="${EBPF_CAPTURE_INIT_TIMEOUT:-300}"

log() { printf 'ebpf-capture-entrypoint: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# As root: $PGDATA (and the socket directory) owned by postgres, mode 0700.
prepare_data() {
	if [[ "$(id -u)" != 0 ]]; then
		die "prepare-data must run as root (it gives $PGDATA to the postgres user)"
	fi
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 0700 "$PGDATA"
	chmod 2775 /var/run/postgresql
	log "$PGDATA is ready for the postgres user"
}

# The extension's version this image carries.
image_version() {
	local v
	v="$(sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$CONTROL")"
	[[ -n "$v" ]] || die "no default_version in $CONTROL"
	printf '%s\n' "$v"
}

init_data_dir() {
	local method="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	if [[ -z "${POSTGRES_PASSWORD:-}" && "$method" != trust ]]; then
		die "POSTGRES_PASSWORD is not set: network clients authenticate with the superuser's" \
			"password ($method). Set it (the DaemonSet takes it from the Secret" \
			"ebpf-capture-postgres), or set POSTGRES_HOST_AUTH_METHOD=trust to let every" \
			"network client in without one."
	fi
	local pwfile
	pwfile="$(mktemp)"
	printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
	local extra=()
	if [[ -n "${POSTGRES_INITDB_ARGS:-}" ]]; then
		read -r -a extra <<<"$POSTGRES_INITDB_ARGS"
	fi
	log "initialising $PGDATA"
	if ! initdb -D "$PGDATA" --username=postgres --pwfile="$pwfile" --encoding=UTF8 \
		--locale=C.UTF-8 --auth-local=trust --auth-host="$method" "${extra[@]}" >&2; then
		rm -f "$pwfile"
		die "initdb failed"
	fi
	rm -f "$pwfile"
	printf '\n# ebpf-capture-entrypoint: network clients\nhost all all all %s\n' "$method" \
		>>"$PGDATA/pg_hba.conf"
}

INIT_PID=""
INIT_SOCKDIR=""

stop_init_server() {
	if [[ -n "$INIT_PID" ]] && kill -0 "$INIT_PID" 2>/dev/null; then
		pg_ctl -D "$PGDATA" -m fast -w -t "$INIT_TIMEOUT_S" stop >&2 || kill -QUIT "$INIT_PID" || true
		wait "$INIT_PID" || true
	fi
	INIT_PID=""
	if [[ -n "$INIT_SOCKDIR" ]]; then
		rm -rf "$INIT_SOCKDIR"
		INIT_SOCKDIR=""
	fi
}

# run_init_scripts SERVER_ARGS... : the init step (2. above).
run_init_scripts() {
	INIT_SOCKDIR="$(mktemp -d /tmp/ebpf-capture-init.XXXXXX)"
	trap stop_init_server EXIT
	log "starting the server on $INIT_SOCKDIR only, for the init scripts in $INIT_DIR"
	"$@" -c listen_addresses= -c unix_socket_directories="$INIT_SOCKDIR" -c port="$INIT_PORT" &
	INIT_PID=$!
	local waited=0
	until pg_isready -q -h "$INIT_SOCKDIR" -p "$INIT_PORT"; do
		kill -0 "$INIT_PID" 2>/dev/null || die "the server exited during the init step"
		((waited < INIT_TIMEOUT_S * 10)) || die "the server was not ready in ${INIT_TIMEOUT_S} s"
		sleep 0.1
		waited=$((waited + 1))
	done

	local f
	shopt -s nullglob
	for f in "$INIT_DIR"/*; do
		case "$f" in
		*.sh)
			log "running $f"
			PGHOST="$INIT_SOCKDIR" PGPORT="$INIT_PORT" PGUSER=postgres bash "$f" ||
				die "$f failed (exit $?)"
			;;
		*.sql)
			log "running $f"
			psql -X -v ON_ERROR_STOP=1 -h "$INIT_SOCKDIR" -p "$INIT_PORT" -U postgres \
				-d postgres -f "$f" || die "$f failed"
			;;
		*) log "ignoring $f (neither *.sh nor *.sql)" ;;
		esac
	done
	shopt -u nullglob

	stop_init_server
	trap - EXIT
}

# The groups the server runs with when started as root: postgres' own (as
# initgroups gives them) and the supplementary groups this process was given,
# but root's group 0. Those are the runtime's: a pod's fsGroup and
# supplementalGroups (the kubelet gives them to every container of the pod),
# docker run --group-add. The TLS key is readable through fsGroup only.
postgres_groups() {
	{
		id -G postgres
		id -G
	} | tr ' ' '\n' | grep -vx 0 | sort -un | paste -sd, -
}

run_server() {
	if [[ "$(id -u)" == 0 ]]; then
		prepare_data
		exec setpriv --reuid=postgres --regid=postgres --groups="$(postgres_groups)" -- "$0" "$@"
	fi
	if [[ "$(id -un)" != postgres ]]; then
		log "warning: running as $(id -un), not postgres"
	fi
	if ! mkdir -p "$PGDATA" 2>/dev/null || [[ ! -w "$PGDATA" ]]; then
		die "$PGDATA is not writable by $(id -un) (uid $(id -u)): run" \
			"'ebpf-capture-entrypoint prepare-data' as root first (the DaemonSet's init" \
			"container does)"
	fi

	local first=0 version recorded=""
	if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
		init_data_dir
		first=1
	fi
	version="$(image_version)"
	if [[ -f "$VERSION_FILE" ]]; then
		recorded="$(<"$VERSION_FILE")"
	fi
	if ((first)); then
		run_init_scripts "$@"
	elif [[ "$recorded" != "$version" ]]; then
		log "$VERSION_FILE says ${recorded:-nothing (an earlier image)}; this image carries ebpf_capture $version"
		run_init_scripts "$@"
	fi
	if [[ "$recorded" != "$version" ]]; then
		printf '%s\n' "$version" >"$VERSION_FILE"
	fi
	log "starting: $*"
	exec "$@"
}

main() {
	if (($# == 0)); then
		set -- postgres
	fi
	if [[ "$1" == -* ]]; then
		set -- postgres "$@"
	fi
	case "$1" in
	postgres | "$PG_BINDIR/postgres") run_server "$@" ;;
	prepare-data) prepare_data ;;
	*) exec "$@" ;;
	esac
}

main "$@"
