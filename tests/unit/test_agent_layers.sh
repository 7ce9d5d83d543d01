#!/usr/bin/env bash
# tests/unit/test_agent_layers.sh: the #include lines keep the layers (README "Layout"):
#  1. no include circle between files anywhere in agent/, gossip/, store/, plugins/;
#  2. no include circle between the modules of agent/ (a module is x.c with x.h, so that
#     a.c -> b.h and b.c -> a.h is a circle; an internal header x_int.h belongs to module x).
#     Outside agent/ each folder is one library with its own internal headers (gossip's
#     transport.c and antientropy.c include each other's header on purpose), so there the
#     folder is the unit;
#  3. no include circle between the rooms of agent/ (agent/base, agent/ctl, ...) nor between
#     the top-level folders;
#  4. nothing below agent/ (gossip/, store/, plugins/) includes a header of agent/.
# The checker first runs on three small trees that each break one rule and must fail on each
# (so that it cannot pass by checking nothing), then on the real tree.
# Usage: test_agent_layers.sh [SOURCE_DIR]   (default: $SHOAL_SOURCE_DIR, else the repo)
set -u

root=${1:-${SHOAL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}}

# The project's own #include "dir/file.h" lines under @1, one "FROM_FILE HEADER" per line.
includes() {
	(cd "$1" && grep -rHo --include='*.c' --include='*.h' '^#include "[a-z_/]*\.h"' \
		agent gossip store plugins 2>/dev/null) |
		sed -E 's|^([^:]*):#include "([^"]*)"$|\1 \2|'
}

module() { # path -> module name: drop the extension and an _int suffix
	local m=${1%.*}
	echo "${m%_int}"
}

room() { # path -> agent/<room> for agent/<room>/x, else the top-level folder
	case $1 in
	agent/*/*) echo "$1" | cut -d/ -f1-2 ;;
	*) echo "${1%%/*}" ;;
	esac
}

# tsort exits non-zero and names the members when its input has a loop.
loops() { # label; edges "A B" on stdin
	local out
	if ! out=$(tsort 2>&1 >/dev/null); then
		echo "FAIL: include circle between $1:"
		echo "$out" | sed 's/^tsort: /  /'
		return 1
	fi
}

check() { # tree -> 0 if it keeps every rule, else 1 with the reasons on stdout
	local tree=$1 bad=0 edges
	edges=$(includes "$tree")
	[ -n "$edges" ] || { echo "FAIL: no #include lines found under $tree"; return 1; }
	while read -r from hdr; do
		echo "$from $hdr"
	done <<<"$edges" | loops "files" || bad=1
	while read -r from hdr; do
		case $from in agent/*) ;; *) continue ;; esac
		a=$(module "$from") b=$(module "$hdr")
		[ "$a" != "$b" ] && echo "$a $b"
	done <<<"$edges" | loops "modules of agent/" || bad=1
	while read -r from hdr; do
		a=$(room "$from") b=$(room "$hdr")
		[ "$a" != "$b" ] && echo "$a $b"
	done <<<"$edges" | loops "rooms and folders" || bad=1
	if grep -E '^(gossip|store|plugins)/[^ ]* agent/' <<<"$edges"; then
		echo "FAIL: the lines above include agent/ from below it"
		bad=1
	fi
	return $bad
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoal-layers.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

mk() { # tree file include...
	local t=$1 f=$2
	shift 2
	mkdir -p "$t/$(dirname "$f")"
	for h in "$@"; do echo "#include \"$h\""; done >"$t/$f"
}

# A sound tree, then broken copies of it; the checker must pass the first only.
mk "$tmp/ok" store/store.h
mk "$tmp/ok" store/db.c store/store_int.h
mk "$tmp/ok" store/store_int.h store/store.h
mk "$tmp/ok" agent/base/log.c agent/base/log.h
mk "$tmp/ok" agent/base/log.h
mk "$tmp/ok" agent/fleet/fleet.c agent/fleet/fleet_int.h agent/base/log.h
mk "$tmp/ok" agent/fleet/fleet_int.h agent/fleet/fleet.h
mk "$tmp/ok" agent/fleet/fleet.h store/store.h
mk "$tmp/ok" agent/fleet/ops.c agent/fleet/fleet_int.h
for t in headercircle filecircle roomcircle below; do cp -r "$tmp/ok" "$tmp/$t"; done
mk "$tmp/headercircle" store/store.h store/store_int.h
mk "$tmp/filecircle" agent/fleet/ops.h
mk "$tmp/filecircle" agent/fleet/fleet.c agent/fleet/fleet_int.h agent/fleet/ops.h
mk "$tmp/filecircle" agent/fleet/ops.c agent/fleet/fleet_int.h agent/fleet/ops.h
mk "$tmp/roomcircle" agent/base/log.c agent/base/log.h agent/fleet/fleet.h
mk "$tmp/below" store/db.c store/store_int.h agent/base/log.h

fail=0
check "$tmp/ok" >"$tmp/out" || { echo "FAIL: a sound tree is refused:"; cat "$tmp/out"; fail=1; }
for t in headercircle filecircle roomcircle below; do
	if check "$tmp/$t" >"$tmp/out"; then
		echo "FAIL: the checker misses a broken tree ($t)"
		fail=1
	fi
done
[ $fail = 0 ] || exit 1

if ! check "$root"; then
	echo "the include graph of $root breaks the layers (see README \"Layout\")"
	exit 1
fi
echo "ok: $(includes "$root" | wc -l) #include lines: no circle between files, modules of agent/," \
	"its rooms or the folders; nothing below agent/ includes it"
