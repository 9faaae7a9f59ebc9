#!/usr/bin/env bash
# install-deps.sh - install every Debian 12 package the build and the tests
# need. Idempotent: when everything is installed it only runs dpkg-query.
set -euo pipefail

PACKAGES=(
	postgresql-15 postgresql-server-dev-15
	libbpf-dev bpftool clang llvm libelf-dev zlib1g-dev
	libcurl4-openssl-dev nlohmann-json3-dev libgtest-dev libclang-rt-14-dev openssl
	nginx-light curl wrk tshark tcpdump iproute2 iputils-ping nftables
	python3 python3-pytest python3-psycopg2 python3-yaml
	make g++ clang-format libcap2-bin util-linux procps
	graphviz gnuplot-nox
	buildah mmdebstrap
)
# kubectl (for `kubectl kustomize deploy/`): Debian's kubernetes-client, unless
# a kubectl is installed already (another package's /usr/bin/kubectl would
# make dpkg refuse kubernetes-client's).
if ! command -v kubectl >/dev/null 2>&1; then
	PACKAGES+=(kubernetes-client)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	status="$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)"
	if [[ "$status" != ii* ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "install-deps: all ${#PACKAGES[@]} packages present"
	exit 0
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
apt-get install -y --no-install-recommends "${missing[@]}"
