#!/usr/bin/env bash
# run.sh - the whole test suite of ebpf_capture: `bash tests/run.sh` (as root).
#
# Two tiers. First what needs no root (tests/run_unprivileged.sh, which a
# contributor without root runs alone): the build into a private copy of
# PostgreSQL, the unit tests, the fuzz smoke runs, the documentation check and
# pg_regress on an unprivileged server. Then what needs root: the Debian
# packages (installed first of all), the extension installed for the server
# the tests run, the socket filter in this kernel, the Kubernetes client
# against the fake API, the network namespaces (tests/lib/topology.sh), a
# PostgreSQL 15 cluster inside the node namespace with the capabilities a
# capture needs (tests/lib/pgcluster.sh), pg_regress's errors test and the
# pytest integration tests. Clusters and namespaces are removed at exit.
#
# The last line printed is "N passed, M failed": every pytest test counts as
# one, every other stage as one. Exits non-zero if anything failed.
#
# Environment: EBPFC_NS (namespace prefix, default ebpfct), EBPFC_PGPORT
# (default 5499), EBPFC_PYTEST_ARGS (extra pytest arguments, e.g. "-k idle"),
# EBPFC_PYTEST_K (one pytest -k expression, spaces allowed: "test_08 or test_12"),
# EBPFC_SERVER_TESTS_ONLY=1 (skip the unprivileged tier and the filter and
# kube-client stages),
# EBPFC_DESTDIR (install the extension into a private copy of PostgreSQL under
# this directory, made on first use, instead of the system's: several
# checkouts can then run the suite at once, each with its own EBPFC_NS and
# EBPFC_PGPORT; the demo test still uses system-wide names).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

export EBPFC_NS="${EBPFC_NS:-ebpfct}"
export EBPFC_PODS="${EBPFC_PODS:-4}"
export EBPFC_PGPORT="${EBPFC_PGPORT:-5499}"
# Warnings are errors in our code (the Makefile's WERROR).
export WERROR="${WERROR:-1}"
PYTHON=/usr/bin/python3
PG_BINDIR=""
INSTALL_ARGS=()
if [[ -n "${EBPFC_DESTDIR:-}" ]]; then
	PG_BINDIR="$EBPFC_DESTDIR"
	INSTALL_ARGS=(DESTDIR="$EBPFC_DESTDIR")
fi
# Scoped by namespace prefix: another checkout running the suite at the same
# time (its own EBPFC_NS) keeps its clusters.
RUN_PREFIX="/tmp/ebpfc-$EBPFC_NS-run."

passed=0
failed=0
failures=()
PGDIR=""

say() { printf '\n=== %s\n' "$*"; }

stage_ok() {
	passed=$((passed + 1))
	printf '=== PASS: %s\n' "$1"
}

stage_fail() {
	failed=$((failed + 1))
	failures+=("$1")
	printf '=== FAIL: %s\n' "$1"
}

# run_stage NAME CMD... : one stage that counts as one test.
run_stage() {
	local name="$1"
	shift
	say "$name"
	if "$@"; then
		stage_ok "$name"
		return 0
	fi
	stage_fail "$name"
	return 1
}

# Stops a cluster left in DIR by this script or by the pytest fixtures.
stop_cluster_dir() {
	local dir="$1"
	if [[ -f "$dir/data/postmaster.pid" ]]; then
		runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop \
			>/dev/null 2>&1 || true
	fi
}

cleanup_leftovers() {
	local dir
	for dir in "${RUN_PREFIX}"* "/tmp/ebpfc-$EBPFC_NS-pg-"*; do
		[[ -d "$dir" ]] || continue
		stop_cluster_dir "$dir"
		rm -rf "$dir"
	done
	# servers a killed run with the same EBPFC_NS left in containers of the
	# image test (test_15_image.py): their data directories are in the pod's
	local pidfile
	for pidfile in "/var/tmp/ebpfc-image-pod-${EBPFC_NS}-"*/volumes/*/*/postmaster.pid; do
		[[ -f "$pidfile" ]] || continue
		kill -QUIT "$(head -n 1 "$pidfile")" 2>/dev/null || true
	done
	rm -rf "/var/tmp/ebpfc-image-pod-${EBPFC_NS}-"*
	clean_image_cache
}

# The image test's buildah storage and base tarball live for one run only
# (one directory per EBPFC_NS, so that runs side by side keep their own).
export EBPFC_IMAGE_CACHE="/var/tmp/ebpfc-image-cache-${EBPFC_NS}"
clean_image_cache() {
	if [[ -d "$EBPFC_IMAGE_CACHE" ]]; then
		bash tests/lib/image.sh clean >/dev/null 2>&1 || rm -rf "$EBPFC_IMAGE_CACHE"
	fi
}

on_exit() {
	local rc=$?
	set +e
	if [[ -n "$PGDIR" ]]; then
		bash tests/lib/pgcluster.sh stop "$PGDIR" >/dev/null 2>&1 || stop_cluster_dir "$PGDIR"
		if ((failed == 0)); then
			rm -rf "$PGDIR"
		else
			echo "server log kept in $PGDIR/server.log"
		fi
	fi
	bash tests/lib/topology.sh down >/dev/null 2>&1
	clean_image_cache
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

if ((EUID != 0)); then
	echo "tests/run.sh must run as root (packages, network namespaces, eBPF)" >&2
	exit 1
fi

# --------------------------------------------------------------------------
run_stage "install-deps" bash tests/install-deps.sh || exit 1
PG_BINDIR="$PG_BINDIR$(pg_config --bindir)"
export PG_BINDIR

cleanup_leftovers
bash tests/lib/topology.sh down

build() {
	if [[ -n "${EBPFC_DESTDIR:-}" ]]; then
		bash tests/lib/private_pg.sh "$EBPFC_DESTDIR" || return 1
	fi
	make -j2 && make install "${INSTALL_ARGS[@]}"
}
run_stage "build (make, make install)" build || exit 1

# The unprivileged tier: its stages count here one by one.
unprivileged_tier() {
	local log="$1" last p f
	set +e
	bash tests/run_unprivileged.sh 2>&1 | tee "$log"
	set -e
	last="$(tail -n 1 "$log")"
	if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
		p="${BASH_REMATCH[1]}" f="${BASH_REMATCH[2]}"
	else
		p=0 f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	if ((f > 0)); then
		failures+=("$(grep '^failed: ' "$log" | sed 's/^failed: //' || echo 'tests/run_unprivileged.sh')")
	fi
}
if [[ "${EBPFC_SERVER_TESTS_ONLY:-0}" != 1 ]]; then
	say "tests/run_unprivileged.sh (needs no root)"
	unprivileged_tier "$(mktemp /tmp/ebpfc-unprivileged.XXXXXX.log)"
	# The socket filter in this kernel, fed replayed connections with
	# BPF_PROG_TEST_RUN: its events, counters and flow entries.
	run_stage "socket filter in the kernel (make filter-check)" make filter-check || true
	# Its benchmark, short: it builds, and every replayed connection comes
	# back closed with its exact counts.
	run_stage "filter benchmark, short (make filter-bench)" make filter-bench FILTER_BENCH_ARGS="2000 1" || true
	# The Kubernetes client against the fake API server (TLS, watch, faults).
	run_stage "kube client vs fake API (make -C tests/kube check)" make -C tests/kube check || true
fi

run_stage "topology up" bash tests/lib/topology.sh up || exit 1

PGDIR="$(mktemp -d "${RUN_PREFIX}XXXXXX")"
run_stage "cluster start" bash tests/lib/pgcluster.sh start "$PGDIR" --port "$EBPFC_PGPORT" || exit 1

installcheck() {
	# The other pg_regress tests run in the unprivileged tier; this one
	# starts captures.
	if make installcheck REGRESS=errors PGHOST="$PGDIR" PGPORT="$EBPFC_PGPORT" PGUSER=postgres; then
		return 0
	fi
	local diffs
	for diffs in build/regress/regression.diffs regression.diffs; do
		if [[ -f "$diffs" ]]; then
			echo "--- $diffs (first 200 lines)"
			head -n 200 "$diffs"
			break
		fi
	done
	return 1
}
run_stage "pg_regress errors (make installcheck REGRESS=errors)" installcheck || true

# --------------------------------------------------------------------------
say "pytest tests/integration"
JUNIT="$PGDIR/pytest-junit.xml"
pytest_args=(-v -rfE -p no:cacheprovider --junitxml="$JUNIT")
if [[ -n "${EBPFC_PYTEST_ARGS:-}" ]]; then
	read -r -a extra <<<"$EBPFC_PYTEST_ARGS"
	pytest_args+=("${extra[@]}")
fi
if [[ -n "${EBPFC_PYTEST_K:-}" ]]; then
	pytest_args+=(-k "$EBPFC_PYTEST_K")
fi
set +e
EBPFC_TOPOLOGY_READY=1 EBPFC_PGDIR="$PGDIR" PYTHONDONTWRITEBYTECODE=1 \
	timeout 1500 "$PYTHON" -m pytest "${pytest_args[@]}" tests/integration
pytest_rc=$?
set -e

counts="$("$PYTHON" - "$JUNIT" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 0")
    sys.exit(0)
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = fails = skipped = 0
for s in suites:
    tests += int(s.get("tests", 0))
    fails += int(s.get("failures", 0)) + int(s.get("errors", 0))
    skipped += int(s.get("skipped", 0))
print(max(tests - fails - skipped, 0), fails)
EOF
)"
read -r py_passed py_failed <<<"$counts"
passed=$((passed + py_passed))
failed=$((failed + py_failed))
if ((pytest_rc != 0)); then
	failures+=("pytest (exit $pytest_rc)")
	# no test ran, or pytest itself broke: that is a failure too
	if ((py_failed == 0)); then
		failed=$((failed + 1))
	fi
fi
if ((py_passed == 0 && pytest_rc == 0)); then
	failures+=("pytest ran no test")
	failed=$((failed + 1))
fi
