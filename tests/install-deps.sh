#!/usr/bin/env bash
# install-deps.sh - install every Debian 12 package the build and the tests
# need. Idempotent: when everything is installed it only runs dpkg-query.
set -euo pipefail

PACKAGES=(
	postgresql-15 postgresql-server-dev-15
	libbpf-dev bpftool clang llvm libelf-dev zlib1g-dev
	libcurl4-openssl-dev nlohmann-json3-dev libgtest-dev libclang-rt-14-dev openssl
	nginx-light curl wrk tshark tcpdump tcpreplay iproute2 iputils-ping nftables
	python3 python3-pytest python3-psycopg2 python3-yaml
	make g++ clang-format libcap2-bin util-linux procps
	graphviz gnuplot-nox
	redis-server redis-tools
	buildah mmdebstrap
)
# kubectl (for `kubectl kustomize deploy/`): Debian's kubernetes-client, unless
# a kubectl is installed already (another package's /usr/bin/kubectl would
# make dpkg refuse kubernetes-client's).
if ! command -v kubectl >/dev/null 2>&1; then
	PACKAGES+=(kubernetes-client)
fi

# Node.js for the tests' OTLP receiver (tests/otlp): Debian's, unless a node
# is installed already.
if ! command -v node >/dev/null 2>&1; then
	PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
	if [[ "$status" != ii* ]]; then
		missing+=("$pkg")
	fi
done

install_packages() {
	if ((${#missing[@]} == 0)); then
		echo "install-deps: all ${#PACKAGES[@]} packages present"
		return 0
	fi
	if ((EUID != 0)); then
		echo "install-deps: missing packages (${missing[*]}) and not root" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# tshark asks whether non-root users may capture; answer it up front.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
	apt-get update
	# No package's service is started by the install (redis-server's would
	# stay running on the host's loopback): the tests start their own servers
	# inside the pod namespaces. policy-rc.d answers "not now" to every start.
	local policy=/usr/sbin/policy-rc.d own_policy=0
	if [[ ! -e "$policy" ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	apt-get install -y --no-install-recommends "${missing[@]}" || {
		((own_policy)) && rm -f "$policy"
		return 1
	}
	((own_policy)) && rm -f "$policy"
	return 0
}
install_packages

# The OTLP receiver's decoder: the OpenTelemetry JavaScript protobuf code,
# from the npm registry, at the versions tests/otlp/package-lock.json pins.
OTLP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/otlp"
if [[ ! -f "$OTLP_DIR/node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js" ]]; then
	echo "install-deps: npm ci in tests/otlp"
	(cd "$OTLP_DIR" && npm ci --ignore-scripts --no-audit --no-fund)
fi
