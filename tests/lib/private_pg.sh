#!/usr/bin/env bash
# private_pg.sh DIR - a private copy of Debian's PostgreSQL 15 under DIR
# (DIR/usr/lib/postgresql/15, DIR/usr/share/postgresql/15), for
# `make install DESTDIR=DIR`. PostgreSQL finds its libraries and extension
# files relative to its binary, so a server started from the copy loads the
# extension installed there and nothing from the system's directories.
set -euo pipefail
dir="${1:?usage: private_pg.sh DIR}"
# the installation pg_config names: its binaries' directory and its share
# directory (Debian: /usr/lib/postgresql/15/bin, /usr/share/postgresql/15)
pkglib="$(dirname "$(pg_config --bindir)")"
share="$(pg_config --sharedir)"
if [[ -x "$dir$(pg_config --bindir)/postgres" && -d "$dir$share" ]]; then
	exit 0
fi
mkdir -p "$dir$(dirname "$pkglib")" "$dir$(dirname "$share")"
cp -a "$pkglib" "$dir$(dirname "$pkglib")/"
cp -a "$share" "$dir$(dirname "$share")/"
# The server runs as postgres and must be able to reach its own files.
chmod 755 "$dir"
echo "private_pg: PostgreSQL 15 copied to $dir"
