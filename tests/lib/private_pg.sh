#!/usr/bin/env bash
# private_pg.sh DIR - a private copy of Debian's PostgreSQL 15 under DIR
# (DIR/usr/lib/postgresql/15, DIR/usr/share/postgresql/15), for
# `make install DESTDIR=DIR`. PostgreSQL finds its libraries and extension
# files relative to its binary, so a server started from the copy loads the
# extension installed there and nothing from the system's directories.
set -euo pipefail
dir="${1:?usage: private_pg.sh DIR}"
if [[ -x "$dir/usr/lib/postgresql/15/bin/postgres" && -d "$dir/usr/share/postgresql/15" ]]; then
	exit 0
fi
mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql"
cp -a /usr/lib/postgresql/15 "$dir/usr/lib/postgresql/"
cp -a /usr/share/postgresql/15 "$dir/usr/share/postgresql/"
# The server runs as postgres and must be able to reach its own files.
chmod 755 "$dir"
echo "private_pg: PostgreSQL 15 copied to $dir"
