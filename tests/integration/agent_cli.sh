#!/usr/bin/env bash
# Integration test of agentctl against a real agentd: imports from a directory and from git
# tags, list/show/history for people and as JSON, every error class an import can hit, and the
# exit codes (0 done, 1 failed, 2 usage, 3 timed out, 4 unreachable).
# Needs AGENTD, AGENTCTL (set by ctest), git and jq (or python3) for JSON checks.
set -uo pipefail

: "${AGENTD:?AGENTD not set}" "${AGENTCTL:?AGENTCTL not set}"
SRC=${SHOAL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v git >/dev/null || { echo "SKIP: git not installed"; exit 77; }
if command -v jq >/dev/null; then
	json() { jq -e "$1" >/dev/null; }
	jget() { jq -r "$1"; }
elif command -v python3 >/dev/null; then
	json() { python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1]) else 1)' "$1"; }
	jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
else
	echo "SKIP: neither jq nor python3 to check JSON"; exit 77
fi

tmp=$(mktemp -d /tmp/shoal-agent-cli-XXXXXX)
agent_pid=
hang_pid=
cleanup() {
	[ -n "$agent_pid" ] && kill -KILL "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	[ -n "$hang_pid" ] && kill -KILL "$hang_pid" 2>/dev/null && wait "$hang_pid" 2>/dev/null
	if [ -n "${SHOAL_KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
sock=$tmp/agentd.sock
ctl() { "$AGENTCTL" -s "$sock" "$@"; }

# expect_exit CODE DESC -- CMD...: run CMD, compare its exit status.
expect_exit() {
	local want=$1 desc=$2; shift 3
	"$@" >"$tmp/out" 2>"$tmp/err"
	local got=$?
	if [ "$got" -ne "$want" ]; then
		fail "$desc: exit $got, want $want; stderr: $(head -c 300 "$tmp/err")"
	else
		ok "$desc (exit $got)"
	fi
}
# expect_error NAME DESC -- CMD...: the command fails (exit 1) with that stable error name.
expect_error() {
	local name=$1 desc=$2; shift 3
	"$@" --json >"$tmp/out" 2>"$tmp/err"
	local got=$?
	local err
	err=$(jget .error <"$tmp/out" 2>/dev/null)
	if [ "$got" -ne 1 ] || [ "$err" != "$name" ]; then
		fail "$desc: exit $got error '$err', want exit 1 error '$name'; stderr: $(head -c 300 "$tmp/err")"
	else
		ok "$desc ($name)"
	fi
}

# ---- no agent yet ---------------------------------------------------------------------------
expect_exit 4 "no agent: unreachable" -- ctl status
expect_exit 2 "no command" -- ctl
expect_exit 2 "unknown command" -- ctl frobnicate
expect_exit 2 "bad --timeout" -- ctl --timeout soon status
expect_exit 2 "artifact show without ID" -- ctl artifact show
expect_exit 2 "history without SERVICE" -- ctl history
expect_exit 2 "import: --ref without --git" -- ctl artifact import --ref v1
expect_exit 2 "import --git without --ref" -- ctl artifact import --git /tmp
expect_exit 2 "unknown option" -- ctl status --frob
# Every command of the contract exists: without its arguments it is a usage error (2), with
# them and no agent it cannot reach one (4).
for c in votes deploy rollback keyring join; do
	expect_exit 2 "'$c' without arguments" -- ctl "$c"
done
# a change without an operator key says how to make one, before it contacts anyone
out=$(SHOAL_OPERATOR_KEY= "$AGENTCTL" --socket "$tmp/none.sock" deploy web 0123abcd 2>&1)
rc=$?
[ "$rc" = 1 ] || fail "deploy without an operator key: exit $rc, want 1"
echo "$out" | grep -q "agentctl keygen FILE" || fail "deploy without a key does not say how: $out"
"$AGENTCTL" keygen "$tmp/op.key" >/dev/null || fail "agentctl keygen"
[ "$(stat -c %a "$tmp/op.key")" = 600 ] || fail "operator key is not mode 600"
"$AGENTCTL" keygen "$tmp/op.key" >/dev/null 2>&1 && fail "keygen overwrote an existing key"
export SHOAL_OPERATOR_KEY=$tmp/op.key
for c in members services events leave "votes web" "deploy web 0123abcd" "rollback web" \
	"keyring list" "join 127.0.0.1:7946"; do
	# shellcheck disable=SC2086 # the command's words are meant to split
	expect_exit 4 "'$c' with no agent" -- ctl $c
done
expect_exit 0 "--help" -- ctl --help
grep -q "Exit status" "$tmp/out" || fail "--help has no exit status section"
expect_exit 2 "agentd: bad flag" -- "$AGENTD" --log-level loud
expect_exit 2 "agentd: bad address" -- "$AGENTD" --bind nowhere
expect_exit 1 "agentd: missing explicit --config" -- "$AGENTD" --config "$tmp/missing.conf"
grep -q "missing.conf" "$tmp/err" || fail "agentd does not name the missing config file"
expect_exit 0 "agentd --version" -- "$AGENTD" --version
# a cluster key every local user can read is refused at start, with the fix in words
head -c 32 /dev/urandom | base64 -w0 >"$tmp/kr644"; echo >>"$tmp/kr644"; chmod 644 "$tmp/kr644"
expect_exit 1 "agentd: world-readable keyring" -- "$AGENTD" --config /dev/null \
	--socket "$tmp/kr.sock" --state-dir "$tmp/krstate" --socket-group "" \
	--bind "127.0.0.1:$((20000 + RANDOM % 20000))" --keyring "$tmp/kr644"
grep -q "is accessible to every local user (mode 0644): chmod 600 it" "$tmp/err" ||
	fail "agentd does not say why a 0644 keyring is refused: $(head -c 300 "$tmp/err")"

# ---- start the agent ------------------------------------------------------------------------
cat >"$tmp/agentd.conf" <<EOF
; test config
[agent]
node-name = cli-test
label = site=test
max-artifact-file-size = 64K
EOF
"$AGENTD" --config "$tmp/agentd.conf" --socket "$sock" --state-dir "$tmp/state" \
	2>"$tmp/agentd.log" &
agent_pid=$!
for _ in $(seq 1 150); do
	ctl ping >/dev/null 2>&1 && break
	kill -0 "$agent_pid" 2>/dev/null || { cat "$tmp/agentd.log"; echo "FAIL: agentd died"; exit 1; }
	sleep 0.1
done
expect_exit 0 "ping" -- ctl ping
expect_exit 0 "status" -- ctl status
grep -q "^Node: *cli-test" "$tmp/out" || fail "status does not show the node name: $(cat "$tmp/out")"
ctl --json status >"$tmp/status.json" || fail "status --json"
json '.name == "cli-test" and (.node_id | length) == 32 and .counts.artifacts == 0' \
	<"$tmp/status.json" || fail "status --json content: $(cat "$tmp/status.json")"
SHOAL_SOCKET=$sock "$AGENTCTL" ping >/dev/null || fail "SHOAL_SOCKET not honoured"
ok "SHOAL_SOCKET"

# ---- artifacts: directories -----------------------------------------------------------------
ex=$SRC/examples
if [ ! -f "$ex/web-v1/release.ini" ]; then
	# examples/ not there (yet): make equivalent ones.
	ex=$tmp/examples
	for v in 1 2; do
		mkdir -p "$ex/web-v$v/bin"
		printf '[release]\nservice = web\nruntime = exec\nversion = %s.0.0\n[exec]\ncommand = ./bin/web\n' \
			"$v" >"$ex/web-v$v/release.ini"
		printf '#!/bin/sh\nexec sleep 1000\n' >"$ex/web-v$v/bin/web"
		chmod +x "$ex/web-v$v/bin/web"
	done
fi
cp -r "$ex/web-v1" "$tmp/web1"
id1=$(ctl artifact import "$tmp/web1" 2>"$tmp/err")
[[ $id1 =~ ^[0-9a-f]{64}$ ]] || fail "import dir printed '$id1', want a 64-hex id; $(cat "$tmp/err")"
ok "import dir -> $id1"
id1b=$(cd "$tmp" && ctl artifact import web1 2>/dev/null)
[ "$id1b" = "$id1" ] || fail "relative re-import gave '$id1b', want $id1"
ok "relative path import, same content same id"
ctl --json artifact import "$tmp/web1" >"$tmp/out" 2>/dev/null
json ".new == false and .id == \"$id1\" and .imported_by.uid == $(id -u)" <"$tmp/out" ||
	fail "re-import --json: $(cat "$tmp/out")"

# ---- artifacts: git -------------------------------------------------------------------------
repo=$tmp/repo
git init -q "$repo"
git -C "$repo" config user.email t@example.org
git -C "$repo" config user.name "Shoal Test"
cp -r "$ex/web-v1/." "$repo/"
mkdir -p "$repo/alt"
printf '[release]\nservice = alt\nruntime = exec\n[exec]\ncommand = sleep 100\n' >"$repo/alt/release.ini"
git -C "$repo" add -A && git -C "$repo" commit -qm "web 1" && git -C "$repo" tag v1
rm -rf "${repo:?}/bin" "$repo/check.sh" "$repo/release.ini"
cp -r "$ex/web-v2/." "$repo/"
git -C "$repo" add -A && git -C "$repo" commit -qm "web 2" && git -C "$repo" tag -a v2 -m "release 2"

idg1=$(ctl artifact import --git "$repo" --ref v1 2>"$tmp/err")
[[ $idg1 =~ ^[0-9a-f]{64}$ ]] || fail "import --git v1 printed '$idg1'; $(cat "$tmp/err")"
ok "import git tag v1 -> $idg1"
idg2=$(cd "$tmp" && ctl artifact import --git repo --ref v2 2>"$tmp/err")
[[ $idg2 =~ ^[0-9a-f]{64}$ ]] || fail "import --git v2 printed '$idg2'; $(cat "$tmp/err")"
[ "$idg1" != "$idg2" ] || fail "v1 and v2 have the same id"
ida=$(ctl artifact import --git "$repo" --ref v2 --path alt 2>"$tmp/err")
[[ $ida =~ ^[0-9a-f]{64}$ ]] || fail "import --git --path alt printed '$ida'; $(cat "$tmp/err")"
ok "import git tag v2 and subdir"

ctl --json artifact show "$idg2" >"$tmp/show.json" || fail "show --json $idg2"
json '.git.tag == "v2" and (.git.commit | length) == 40 and .service == "web" and .git.message == "web 2"' \
	<"$tmp/show.json" || fail "show --json git info: $(cat "$tmp/show.json")"
json '[.file_list[].path] | index("release.ini") != null' <"$tmp/show.json" ||
	fail "show --json files: $(cat "$tmp/show.json")"
expect_exit 0 "show by 12-digit prefix" -- ctl artifact show "${idg1:0:12}"
grep -q "^Git commit: .*(tag v1)" "$tmp/out" || fail "show has no git line: $(cat "$tmp/out")"
grep -q "release.ini" "$tmp/out" || fail "show lists no files"

# ---- list ---------------------------------------------------------------------------------------
expect_exit 0 "list" -- ctl artifact list
head -1 "$tmp/out" | grep -q "^ID  *SERVICE  *VERSION" || fail "list header: $(head -1 "$tmp/out")"
n=$(grep -c . "$tmp/out")
[ "$n" -ge 4 ] || fail "list has $n lines, want header + at least 3 artifacts"
grep -q "^${idg1:0:12}  " "$tmp/out" || fail "list lacks the 12-digit id of v1"
# Columns are aligned: SERVICE starts at the same offset on every line.
awk '{ print index($0, $2) }' "$tmp/out" | sort -u | wc -l | grep -qx 1 ||
	fail "list columns not aligned: $(cat "$tmp/out")"
ctl --json artifact list >"$tmp/list.json" || fail "list --json"
json "length >= 3 and ([.[].id] | index(\"$idg2\")) != null" <"$tmp/list.json" ||
	fail "list --json: $(cat "$tmp/list.json")"
ctl --json artifact list alt >"$tmp/out" || fail "list alt"
json "length == 1 and .[0].id == \"$ida\"" <"$tmp/out" || fail "list alt: $(cat "$tmp/out")"
ctl artifact list nosuchservice >"$tmp/out" 2>&1 || fail "list of an unknown service fails"

# ---- bash completion (uses this agent through --socket) ----------------------------------------
comp=$SRC/packaging/agentctl.bash-completion
if [ -f "$comp" ]; then
	# A loaded machine may be slower than the interactive 2 s default.
	export AGENTCTL_COMPLETION_TIMEOUT=30s
	complete_words() { # complete_words WORD... : COMPREPLY for the last word
		(
			PATH=$(dirname "$AGENTCTL"):$PATH
			# shellcheck disable=SC1090
			source "$comp"
			COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
			_agentctl
			printf '%s\n' "${COMPREPLY[@]}"
		)
	}
	complete_words agentctl art | grep -qx artifact || fail "completion: 'art' -> artifact"
	complete_words agentctl artifact s | grep -qx show || fail "completion: artifact show"
	complete_words agentctl -s "$sock" artifact show "" >"$tmp/comp" 2>&1
	if ! grep -qx "${idg1:0:12}" "$tmp/comp"; then
		fail "completion: ids from the agent: got '$(tr '\n' ' ' <"$tmp/comp")', want ${idg1:0:12}"
		# Diagnostics: what the completion's own call returns now.
		ctl --timeout 30s artifact list; echo "agentctl artifact list: exit $?"
	fi
	complete_words agentctl -s "$sock" history "" >"$tmp/comp" 2>&1
	grep -qx alt "$tmp/comp" || fail "completion: services: got '$(tr '\n' ' ' <"$tmp/comp")'"
	complete_words agentctl artifact import --g | grep -qx -- --git || fail "completion: --git"
	ok "bash completion"
fi

# ---- --help and the man pages agree -----------------------------------------------------------
for pair in "$AGENTD:$SRC/packaging/agentd.8" "$AGENTCTL:$SRC/packaging/agentctl.1"; do
	bin=${pair%%:*} man=${pair#*:}
	[ -f "$man" ] || continue
	# captured once: `--help | grep -q` under pipefail fails with SIGPIPE as soon as the help
	# text is longer than one stdio buffer
	help=$("$bin" --help)
	for opt in $(grep -o -- '--[a-z][a-z-]*' <<<"$help" | sort -u); do
		grep -q -- "$(printf '%s' "$opt" | sed 's/-/\\\\-/g')" "$man" ||
			fail "$(basename "$bin") --help has $opt, $(basename "$man") does not"
	done
	for opt in $(grep -o -- '\\-\\-[a-z][a-z\\-]*' "$man" | sed 's/\\//g' | sort -u); do
		grep -q -- "$opt" <<<"$help" ||
			fail "$(basename "$man") documents $opt, $(basename "$bin") --help does not"
	done
done
ok "--help matches the man pages"

# ---- JSON escaping -------------------------------------------------------------------------
mkdir -p "$tmp/odd"
printf '[release]\nservice = odd\nruntime = exec\nversion = 1"q\\b\xc3\xa9\n[exec]\ncommand = sleep 1\n' \
	>"$tmp/odd/release.ini"
ido=$(ctl artifact import "$tmp/odd" 2>"$tmp/err")
if [[ $ido =~ ^[0-9a-f]{64}$ ]]; then
	ctl --json artifact show "$ido" >"$tmp/out"
	v=$(jget .version <"$tmp/out") || fail "JSON with quotes does not parse: $(cat "$tmp/out")"
	[ "$v" = $'1"q\\b\xc3\xa9' ] || fail "version round trip through JSON: '$v'"
	ok "JSON escaping"
else
	echo "note: release.ini refused an odd version ($(cat "$tmp/err")); JSON escaping covered by unit tests"
fi

# ---- history ----------------------------------------------------------------------------------
expect_exit 0 "history of a service without revisions" -- ctl history web
grep -q "no revisions" "$tmp/err" || fail "history does not say there are none"
ctl --json history web >"$tmp/out" || fail "history --json"
json 'length == 0' <"$tmp/out" || fail "history --json: $(cat "$tmp/out")"

# ---- errors ---------------------------------------------------------------------------------------
mkdir -p "$tmp/empty"
expect_error invalid_artifact "dir without release.ini" -- ctl artifact import "$tmp/empty"
expect_error not_found "missing dir" -- ctl artifact import "$tmp/nope"
mkdir -p "$tmp/escape" && cp "$tmp/web1/release.ini" "$tmp/escape/" && cp -r "$tmp/web1/bin" "$tmp/escape/"
[ -f "$tmp/web1/check.sh" ] && cp "$tmp/web1/check.sh" "$tmp/escape/"
ln -s ../../../../etc/passwd "$tmp/escape/passwd"
expect_error escapes_tree "symlink out of the tree" -- ctl artifact import "$tmp/escape"
mkdir -p "$tmp/big" && cp -r "$tmp/web1/." "$tmp/big/"
head -c 100000 /dev/zero >"$tmp/big/blob"
expect_error too_big "file over max-artifact-file-size (64K)" -- ctl artifact import "$tmp/big"
expect_error no_such_ref "unknown git ref" -- ctl artifact import --git "$repo" --ref v9
expect_error not_a_repo "not a repository" -- ctl artifact import --git "$tmp/empty" --ref v1
expect_error not_found "unknown artifact" -- ctl artifact show 0000000000
expect_error bad_request "bad id" -- ctl artifact show xyz
expect_error bad_request "bad service name" -- ctl history 'no/such'
expect_exit 1 "error without --json" -- ctl artifact show 0000000000
grep -q "(not_found)" "$tmp/err" || fail "human error lacks the stable name: $(cat "$tmp/err")"

# ---- timeout (exit 3): a listener that never answers ------------------------------------------
if command -v python3 >/dev/null; then
	python3 -c 'import socket,sys,time
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8); time.sleep(30)' \
		"$tmp/hang.sock" &
	hang_pid=$!
	for _ in $(seq 1 50); do [ -S "$tmp/hang.sock" ] && break; sleep 0.1; done
	start=$(date +%s%N)
	expect_exit 3 "timeout" -- "$AGENTCTL" -s "$tmp/hang.sock" --timeout 300ms status
	el=$((($(date +%s%N) - start) / 1000000))
	[ "$el" -lt 3000 ] || fail "--timeout 300ms took $el ms"
	kill -KILL "$hang_pid"; wait "$hang_pid" 2>/dev/null; hang_pid=
else
	echo "note: python3 missing, exit 3 not tested here"
fi

# ---- signals --------------------------------------------------------------------------------
kill -HUP "$agent_pid"
sleep 0.3
expect_exit 0 "alive after SIGHUP" -- ctl ping
kill -TERM "$agent_pid"
st=
for _ in $(seq 1 150); do
	if ! kill -0 "$agent_pid" 2>/dev/null; then wait "$agent_pid"; st=$?; break; fi
	sleep 0.1
done
[ "$st" = 0 ] || fail "agentd exit status after SIGTERM: '${st:-still running}'"
agent_pid=
[ ! -e "$sock" ] || fail "socket left behind after SIGTERM"
expect_exit 4 "unreachable after stop" -- ctl status
grep -q "configuration reloaded" "$tmp/agentd.log" || fail "SIGHUP not logged as a reload"
grep -q "imported artifact $id1" "$tmp/agentd.log" || fail "import (with uid) not logged"

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed; agent log:"
	tail -n 40 "$tmp/agentd.log"
	exit 1
fi
echo "all agentctl checks passed"
