# tests/integration/brain_lib.sh: helpers for the cluster brain's integration tests (sourced):
# agents_lib.sh (agents, keyring, cleanup, waits) plus releases of `web` that pass or fail their
# health check, and predicates on what each node runs.
LIB_NAME=brain
. "$(dirname "${BASH_SOURCE[0]}")/agents_lib.sh"

# make_artifact NAME VERSION GOOD(1|0): a copy of examples/web-v1 with its own version label;
# a bad one fails its check. Short intervals and a 3 s start deadline keep the tests quick.
make_artifact() {
	local name=$1 version=$2 good=$3 d=$WORK/art/$1
	mkdir -p "$d/bin"
	cp "$SRC/examples/web-v1/bin/web" "$d/bin/web"
	sed -i "s/^VERSION=.*/VERSION=$version/" "$d/bin/web"
	if [ "$good" = 1 ]; then
		printf '#!/bin/sh\necho "web %s: ok"\n' "$version" >"$d/check.sh"
	else
		printf '#!/bin/sh\necho "web %s: 500" >&2\nexit 1\n' "$version" >"$d/check.sh"
	fi
	chmod +x "$d/check.sh" "$d/bin/web"
	write_release "$d" "$version" 3s
}

# import_all NAME: import $WORK/art/NAME on every node; sets ID to its id
import_all() {
	local i
	for i in $(seq 1 "$NODES"); do
		ID=$(ctl "$i" artifact import "$WORK/art/$1" 2>/dev/null) || die "import $1 on n$i"
	done
}

svc_json() { ctl "$1" --json services | tr -d ' \n'; }
# runs I REV: node I runs REV, not swapping
runs() { svc_json "$1" | grep -q "\"running_rev\":$2,[^}]*\"swapping\":false"; }
runs_healthy() { svc_json "$1" | grep -q "\"running_rev\":$2,[^}]*\"health\":\"healthy\""; }
all_run() { local i; for i in $(seq 1 "$NODES"); do runs "$i" "$1" || return 1; done; }
all_healthy() { local i; for i in $(seq 1 "$NODES"); do runs_healthy "$i" "$1" || return 1; done; }
desired_of() { svc_json "$1" | sed -n 's/.*"desired_rev":\([0-9]*\).*/\1/p'; }
running_of() { svc_json "$1" | sed -n 's/.*"running_rev":\([0-9]*\).*/\1/p'; }
