#!/usr/bin/env bats
# The local stack's publisher daemon (deploy/local/lib/distd.sh), which the demo and benchmarks
# share: stack.env names it, it answers its health checks, and over SPIFFE mutual TLS, with the
# SVIDs SPIRE gives distd ctl, it serves the release manager and refuses a reader's build; its
# line pins this machine's Go source by the digest distd itself computes; `stack up` again leaves
# it running. Nothing is built here (serve.bats builds, with daemons of its own).

# shellcheck disable=SC2154 # run --separate-stderr sets $stderr
bats_require_minimum_version 1.5.0

setup() {
	load helpers
	MANAGER=spiffe://tcdist.test/release/manager
	READER=spiffe://tcdist.test/ci/job
}

ctl() { "$DISTD" ctl "$@"; }

# wait_ready: the daemon's /readyz answers 200 within 30 s (a suite before this one may have
# changed SPIRE's entries, and the daemon follows its SVID live).
wait_ready() {
	for _ in $(seq 150); do
		curl -sf "$TCDIST_SERVER_OPS/readyz" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	curl -sS "$TCDIST_SERVER_OPS/readyz" >&2 || true
	tail -n 20 "$TCDIST_SERVER_LOG" >&2
	return 1
}

@test "stack.env names the daemon; it runs a registered distd with the stack's config and answers health checks" {
	[[ $TCDIST_SERVER =~ ^https://127\.0\.0\.1:[0-9]+$ ]]
	[ "$TCDIST_SERVER_ID" = spiffe://tcdist.test/distd/server ]
	[[ $TCDIST_SERVER_OPS =~ ^http://127\.0\.0\.1:[0-9]+$ ]]
	[ "$TCDIST_RELEASE_MANAGER_ID" = "$MANAGER" ]
	[ "$TCDIST_SERVER" = "https://127.0.0.1:$(cat "$TCDIST_STACK_DIR/distd/port")" ]
	[ "$TCDIST_SERVER_OPS" = "http://127.0.0.1:$(cat "$TCDIST_STACK_DIR/distd/ops-port")" ]
	[ "$TCDIST_SERVER_REPOSITORY" = "$TCDIST_REGISTRY/toolchains/go" ]
	[[ $TCDIST_SERVER_LINE =~ ^go1\.[0-9]+$ ]]
	[ -f "$TCDIST_SERVER_CONFIG" ] && [ -f "$TCDIST_SERVER_LINES" ] && [ -d "$TCDIST_SERVER_STATE" ]
	run curl -sf "$TCDIST_SERVER_OPS/healthz"
	[ "$status" -eq 0 ]
	wait_ready
	pid=$(cat "$TCDIST_SERVER_PIDFILE")
	# SPIRE attests it by its executable's path: one the stack registered.
	exe=$(readlink "/proc/$pid/exe")
	[[ ":$TCDIST_SPIRE_DISTD_PATHS:" == *":$exe:"* ]]
	[[ $(tr '\0' ' ' <"/proc/$pid/cmdline") == *" serve --config $TCDIST_SERVER_CONFIG "* ]]
	run "$TCDIST_TOP/deploy/local/stack" status
	[[ $output == *"distd: running (pid $pid) $TCDIST_SERVER, ready (ops $TCDIST_SERVER_OPS)"* ]]
	# Loopback only: the API and the ops listener.
	if command -v ss >/dev/null; then
		run bash -c "ss -Hltnp | awk -v p='pid=$pid,' 'index(\$0, p) { print \$4 }' | sort"
		[ "$output" = "$(printf '%s\n' "${TCDIST_SERVER#https://}" "${TCDIST_SERVER_OPS#http://}" | sort)" ]
	fi
}

@test "as the release manager, distd ctl reads the stack daemon's catalog and jobs over SPIFFE mTLS" {
	wait_ready
	run --separate-stderr ctl --as "$MANAGER" catalog
	[ "$status" -eq 0 ]
	python3 - "$output" "$TCDIST_SERVER_LINE" "$TCDIST_SERVER_REPOSITORY" <<'PY'
import json, sys
catalog, name, repository = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert [l["name"] for l in catalog["lines"]] == [name], catalog
line = catalog["lines"][0]
assert line["repository"] == repository, line
assert line["platforms"], line
PY
	run --separate-stderr ctl --as "$MANAGER" jobs
	[ "$status" -eq 0 ]
	# ctl checks the daemon's SVID: expecting another server ID, it refuses to talk.
	run --separate-stderr ctl --as "$MANAGER" --server-id spiffe://tcdist.test/someone-else catalog
	[ "$status" -ne 0 ]
	[ -z "$output" ]
}

@test "a reader may read the stack daemon's catalog but not build: 403, audited" {
	wait_ready
	run --separate-stderr ctl --as "$READER" catalog
	[ "$status" -eq 0 ]
	run --separate-stderr ctl --as "$READER" build "$TCDIST_SERVER_LINE"
	[ "$status" -eq 2 ]
	[[ $stderr == *"403 Forbidden: $READER may not build line \"$TCDIST_SERVER_LINE\""* ]]
	python3 - "$TCDIST_SERVER_STATE/audit.log" "$READER" "$TCDIST_SERVER_LINE" <<'PY'
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert (last["caller"], last["action"], last["line"], last["decision"]) == (sys.argv[2], "build", sys.argv[3], "denied"), last
PY
}

@test "the stack's line pins the Go source by the digest distd computes (refused before any build)" {
	pinned=$(sed -n 's/^go_source_digest = "\(.*\)"$/\1/p' "$TCDIST_SERVER_LINES")
	[[ $pinned =~ ^sha256:[0-9a-f]{64}$ ]]
	zero=sha256:$(printf '%064d' 0)
	sed "s/^go_source_digest = .*/go_source_digest = \"$zero\"/" "$TCDIST_SERVER_LINES" >"$BATS_TEST_TMPDIR/lines.toml"
	run --separate-stderr "$DISTD" release "$TCDIST_SERVER_LINE" --config "$BATS_TEST_TMPDIR/lines.toml"
	[ "$status" -eq 1 ]
	[[ $stderr == *" is $pinned, but line \"$TCDIST_SERVER_LINE\" pins $zero; nothing was built"* ]]
}

@test "stack up again leaves the daemon running: same process, same ports" {
	wait_ready
	before=$(cat "$TCDIST_SERVER_PIDFILE")
	run --separate-stderr "$TCDIST_TOP/deploy/local/stack" up
	[ "$status" -eq 0 ]
	[ "$output" = "$TCDIST_STACK_DIR/stack.env" ]
	[[ $stderr == *"distd: already running (pid $before) on $TCDIST_SERVER"* ]]
	[ "$(cat "$TCDIST_SERVER_PIDFILE")" = "$before" ]
	run bash -c '. "$1" && printf "%s %s" "$TCDIST_SERVER" "$TCDIST_SERVER_OPS"' _ "$TCDIST_STACK_DIR/stack.env"
	[ "$output" = "$TCDIST_SERVER $TCDIST_SERVER_OPS" ]
}
