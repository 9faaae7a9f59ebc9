#!/usr/bin/env bash
# image.sh - builds deploy/Dockerfile on this machine, without a registry.
#
#   image.sh build [NAME:TAG]   build the image (default ebpf-capture:VERSION,
#                               VERSION = default_version in ebpf_capture.control)
#   image.sh buildah ARGS...    run buildah on this script's storage
#   image.sh clean              remove the storage, the base tarball and the logs
#
# The Dockerfile's FROM is the build argument BASE_IMAGE (debian:bookworm-slim
# by default, from a registry). Here it is a local Debian 12 image instead:
# mmdebstrap makes a bookworm root file system from Debian's packages (variant
# "apt": the Essential packages and apt, which the Dockerfile's RUN steps need;
# like debian:bookworm-slim, without documentation, manual pages and
# translations), and buildah stores it as localhost/ebpfc-bookworm-base. The
# Dockerfile is then built with `buildah bud --isolation chroot --pull=never`.
#
# Everything lives in EBPFC_IMAGE_CACHE (default /var/tmp/ebpfc-image-cache):
# the buildah storage (root/, runroot/), base.tar and build.log. A second
# build reuses the base tarball and image; `clean` removes all of it
# (tests/run.sh does at its start and end, so nothing outlives one run).
#
# Printed on success (stdout), one per line:
#   base-seconds S    time spent making and importing the base (0 when reused)
#   build-seconds S   time of `buildah bud`
#   image NAME:TAG    the image built (also as localhost/NAME:TAG)
#   size-bytes N      its layers' size, uncompressed (tar streams as stored)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${EBPFC_IMAGE_CACHE:-/var/tmp/ebpfc-image-cache}"
DRIVER="${EBPFC_IMAGE_DRIVER:-overlay}"
BASE_NAME=localhost/ebpfc-bookworm-base:latest
MIRROR="${EBPFC_DEBIAN_MIRROR:-http://deb.debian.org}"

img_log() { printf 'image.sh: %s\n' "$*" >&2; }

bh() {
	buildah --root "$CACHE/root" --runroot "$CACHE/runroot" --storage-driver "$DRIVER" "$@"
}

now() { date +%s.%N; }
seconds_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f\n", b - a }'; }

extension_version() {
	sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" \
		"$REPO/ebpf_capture.control"
}

# The local bookworm base image; made once per cache directory.
make_base() {
	if [[ ! -s "$CACHE/base.tar" ]]; then
		img_log "mmdebstrap: a bookworm root file system in $CACHE/base.tar"
		local excl=()
		local p
		for p in 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
			'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
			'path-exclude=/usr/share/groff/*' 'path-exclude=/usr/share/lintian/*' \
			'path-exclude=/usr/share/locale/*'; do
			excl+=(--dpkgopt="$p")
		done
		mmdebstrap --variant=apt --format=tar --quiet "${excl[@]}" bookworm "$CACHE/base.tar.tmp" \
			"deb $MIRROR/debian bookworm main" \
			"deb $MIRROR/debian bookworm-updates main" \
			"deb $MIRROR/debian-security bookworm-security main" >&2
		mv "$CACHE/base.tar.tmp" "$CACHE/base.tar"
	fi
	local ctr
	ctr="$(bh from scratch)"
	bh add "$ctr" "$CACHE/base.tar" / >/dev/null
	bh config --cmd /bin/bash "$ctr"
	bh commit --quiet --rm "$ctr" "$BASE_NAME" >/dev/null
	img_log "base image $BASE_NAME"
}

cmd_build() {
	local name="${1:-ebpf-capture:$(extension_version)}"
	mkdir -p "$CACHE"
	exec 9>"$CACHE/.lock"
	flock 9
	local t0 base_s=0 build_s
	if ! bh inspect --type image "$BASE_NAME" >/dev/null 2>&1; then
		t0="$(now)"
		make_base
		base_s="$(seconds_since "$t0")"
	fi
	img_log "buildah bud deploy/Dockerfile -> $name (log: $CACHE/build.log)"
	t0="$(now)"
	if ! bh bud --isolation chroot --pull=never --layers=false \
		--build-arg BASE_IMAGE="$BASE_NAME" -f "$REPO/deploy/Dockerfile" -t "$name" \
		"$REPO" >"$CACHE/build.log" 2>&1; then
		img_log "buildah bud failed; last lines of $CACHE/build.log:"
		tail -n 60 "$CACHE/build.log" >&2
		return 1
	fi
	build_s="$(seconds_since "$t0")"
	local size
	# the layers as stored (uncompressed tar streams), from the manifest
	size="$(bh inspect --type image "$name" | python3 -c '
import json, sys
manifest = json.loads(json.load(sys.stdin)["Manifest"])
print(sum(layer["size"] for layer in manifest["layers"]))')"
	printf 'base-seconds %s\nbuild-seconds %s\nimage %s\nsize-bytes %s\n' \
		"$base_s" "$build_s" "$name" "$size"
}

cmd_clean() {
	[[ -d "$CACHE" ]] || return 0
	if command -v buildah >/dev/null 2>&1 && [[ -d "$CACHE/root" ]]; then
		bh rm --all >/dev/null 2>&1 || true
		bh rmi --all --force >/dev/null 2>&1 || true
	fi
	# anything still mounted below the cache (a container left mounted)
	local m
	while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$CACHE/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	rm -rf "$CACHE"
	img_log "removed $CACHE"
}

case "${1:-}" in
build)
	shift
	cmd_build "$@"
	;;
buildah)
	shift
	mkdir -p "$CACHE"
	exec buildah --root "$CACHE/root" --runroot "$CACHE/runroot" --storage-driver "$DRIVER" "$@"
	;;
clean) cmd_clean ;;
*)
	echo "usage: $0 build [NAME:TAG] | buildah ARGS... | clean" >&2
	exit 2
	;;
esac
