#!/usr/bin/env bash
# run_unprivileged.sh - the tests that need no root, no network namespace and
# no capability: `bash tests/run_unprivileged.sh` as any user.
#
# Stages: build the extension and install it into a private copy of
# PostgreSQL 15 under build/unprivileged (nothing system-wide is touched), the
# GoogleTest unit tests of the PostgreSQL-free core, the libFuzzer smoke runs,
# the documentation check (tests/docs/check_docs.py, when present), and
# pg_regress (api, storage, writes, service_map) against a throw-away server
# of that copy, run by the current user (by postgres when run as root) on a
# Unix socket only. The regression database is not ebpf_capture.database:
# nothing here starts a capture.
#
# Needs the Debian packages tests/install-deps.sh installs (as root, once).
# tests/run.sh runs this first, then the tests that need root.
#
# The last line printed is "N passed, M failed"; exits non-zero if anything
# failed. Environment: EBPFC_UNPRIVILEGED_DIR (where the copy and the server
# live, default build/unprivileged), WERROR (default 1: warnings are errors).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

DIR="${EBPFC_UNPRIVILEGED_DIR:-$REPO/build/unprivileged}"
PGROOT="$DIR/pg"
PG_BINDIR="$PGROOT$(pg_config --bindir)"
PGDATA_DIR="$DIR/cluster"
PORT=55432
export WERROR="${WERROR:-1}"
REGRESS_UNPRIVILEGED="api storage writes service_map"

passed=0
failed=0
failures=()

say() { printf '\n=== %s\n' "$*"; }
run_stage() {
	local name="$1"
	shift
	say "$name"
	if "$@"; then
		passed=$((passed + 1))
		printf '=== PASS: %s\n' "$name"
		return 0
	fi
	failed=$((failed + 1))
	failures+=("$name")
	printf '=== FAIL: %s\n' "$name"
	return 1
}

# The server refuses to run as root: as root, it runs as postgres.
as_server() {
	if ((EUID == 0)); then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

stop_server() {
	if [[ -f "$PGDATA_DIR/data/postmaster.pid" ]]; then
		as_server "$PG_BINDIR/pg_ctl" -D "$PGDATA_DIR/data" -m immediate -w -t 30 stop \
			>/dev/null 2>&1 || true
	fi
}

on_exit() {
	local rc=$?
	set +e
	stop_server
	if ((failed == 0)); then
		rm -rf "$PGDATA_DIR"
	elif [[ -f "$PGDATA_DIR/server.log" ]]; then
		echo "server log kept in $PGDATA_DIR/server.log"
	fi
	if ((${#failures[@]})); then
		printf '\nfailed: %s\n' "${failures[*]}"
	fi
	printf '%d passed, %d failed\n' "$passed" "$failed"
	if ((rc == 0 && failed > 0)); then
		rc=1
	fi
	exit "$rc"
}
trap on_exit EXIT

build() {
	mkdir -p "$DIR"
	bash tests/lib/private_pg.sh "$PGROOT" >/dev/null
	make -j2 && make install DESTDIR="$PGROOT" >/dev/null
}
run_stage "build (make, make install into $PGROOT)" build || exit 1
run_stage "make unit" make unit || true
run_stage "make fuzz-smoke" make fuzz-smoke || true
if [[ -f tests/docs/check_docs.py ]]; then
	run_stage "documentation (tests/docs/check_docs.py)" python3 tests/docs/check_docs.py || true
	# the check itself: a removed entry, a broken link, a new setting are caught
	run_stage "documentation check's self-test (check_docs.py --self-test)" \
		python3 tests/docs/check_docs.py --self-test || true
fi

start_server() {
	stop_server
	rm -rf "$PGDATA_DIR"
	mkdir -p "$PGDATA_DIR"
	if ((EUID == 0)); then
		chown postgres: "$PGDATA_DIR"
		chmod 755 "$DIR"
	fi
	as_server "$PG_BINDIR/initdb" -D "$PGDATA_DIR/data" -U postgres --auth=trust --no-sync \
		--encoding=UTF8 --locale=C.UTF-8 >"$PGDATA_DIR/initdb.log" 2>&1 || {
		cat "$PGDATA_DIR/initdb.log" >&2
		return 1
	}
	as_server tee -a "$PGDATA_DIR/data/postgresql.conf" >/dev/null <<-EOF
		shared_preload_libraries = 'ebpf_capture'
		unix_socket_directories = '$PGDATA_DIR'
		listen_addresses = ''
		port = $PORT
		fsync = off
		ebpf_capture.database = 'postgres'
	EOF
	as_server "$PG_BINDIR/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/server.log" -w -t 60 start \
		>/dev/null
}

installcheck() {
	start_server || return 1
	if make installcheck REGRESS="$REGRESS_UNPRIVILEGED" PGHOST="$PGDATA_DIR" PGPORT="$PORT" \
		PGUSER=postgres; then
		return 0
	fi
	if [[ -f build/regress/regression.diffs ]]; then
		echo "--- build/regress/regression.diffs (first 200 lines)"
		head -n 200 build/regress/regression.diffs
	fi
	return 1
}
run_stage "pg_regress ($REGRESS_UNPRIVILEGED), unprivileged server" installcheck || true
