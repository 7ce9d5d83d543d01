# tests/integration/fetch_lib.sh: helpers for the peer-to-peer artifact tests (sourced):
# agents_lib.sh (agents, keyring, cleanup, waits) plus multi-chunk releases and comparisons of
# what two nodes hold.
LIB_NAME=fetch
. "$(dirname "${BASH_SOURCE[0]}")/agents_lib.sh"

# make_artifact NAME VERSION MIB: examples/web-v1 plus MIB MiB of random data (multi-chunk).
make_artifact() {
	local name=$1 version=$2 mib=$3 d=$WORK/art/$1
	mkdir -p "$d/bin" "$d/data"
	cp "$SRC/examples/web-v1/bin/web" "$d/bin/web"
	sed -i "s/^VERSION=.*/VERSION=$version/" "$d/bin/web"
	printf '#!/bin/sh\necho "web %s: ok"\n' "$version" >"$d/check.sh"
	chmod +x "$d/check.sh" "$d/bin/web"
	head -c $((mib * 1024 * 1024 + 777)) /dev/urandom >"$d/data/blob.bin"
	write_release "$d" "$version" 5s
}

has_artifact() { ctl "$1" artifact show "$2" >/dev/null 2>&1; }

# same_artifact I J ID: both nodes hold ID with the same files (paths, modes, sizes, blobs)
files_of() { ctl "$1" --json artifact show "$2" | jq -c '.files // .manifest.files'; }
same_artifact() {
	local a b
	a=$(files_of "$1" "$3") && b=$(files_of "$2" "$3") || return 1
	[ -n "$a" ] && [ "$a" != null ] && [ "$a" = "$b" ]
}
