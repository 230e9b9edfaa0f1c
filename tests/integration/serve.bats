#!/usr/bin/env bats
# distd serve, attacked and driven as its users would: a release manager builds a line for
# linux/amd64 and linux/arm64 (and darwin/arm64), promotes and yanks through the API with the SVID
# SPIRE gives distd ctl; a reader's SVID is refused (403, audited); a client without an SVID of
# the trust domain never completes the handshake; the daemon follows its own SVID's rotation
# and re-signs channel heads before they expire; kill -9 and SIGTERM in the middle of a build leave the job interrupted and resumed, and no
# tag on anything unsigned.
#
# The line's platforms are those build.bats built (the host and the other linux architecture,
# and darwin/arm64 with TCDIST_TEST_DARWIN=1, from the cache under ~/.cache/tcdist/distd); the
# interruption tests use a line
# with its own version suffix, so make.bash really runs when they stop it.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	case $(uname -m) in
	x86_64) OTHER=linux/arm64 ;;
	aarch64) OTHER=linux/amd64 ;;
	*) skip "the daemon's line cross-builds from linux/amd64 and linux/arm64 hosts" ;;
	esac
	export WORK=$TCDIST_TEST_WORK/serve OTHER HOST PLATFORMS
	HOST=$(go env GOOS)/$(go env GOARCH)
	# The main line's platforms, space-separated.
	PLATFORMS="$HOST $OTHER${TCDIST_TEST_DARWIN:+ darwin/arm64}"
	mkdir -p "$WORK"
	export BUILD_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/tcdist/distd
	local go_src digest
	go_src=$(GOTOOLCHAIN=local go env GOROOT)
	# The source's digest, as distd computes it (a build of the host platform, cached).
	"$DISTD" build --go-root "$go_src" --out "$WORK/tree" --cache-dir "$BUILD_CACHE" >/dev/null 2>"$WORK/build.log"
	digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_digest"])' "$WORK/tree/TOOLCHAIN.json")
	export REPO SLOW_REPO EDGE_REPO
	REPO=$TCDIST_REGISTRY/toolchains/daemon-$(date +%s%N)
	SLOW_REPO=$TCDIST_REGISTRY/toolchains/daemon-slow-$(date +%s%N)
	EDGE_REPO=$TCDIST_REGISTRY/toolchains/daemon-edge-$(date +%s%N)
	printf 'TCDIST_VERSION_SUFFIX=interrupted%s\n' "$(date +%s%N)" >"$WORK/slow.env"
	cat >"$WORK/lines.toml" <<EOF
[[line]]
name = "go1.26"
repository = "$REPO"
go_source = "$go_src"
go_source_digest = "$digest"
patches = "$TCDIST_TOP/distd/patches/go1.26"
platforms = [$(printf '"%s", ' $PLATFORMS | sed 's/, $//')]
channels = ["stable"]

[[line]]
name = "slow"
repository = "$SLOW_REPO"
go_source = "$go_src"
go_source_digest = "$digest"
patches = "$TCDIST_TOP/distd/patches/go1.26"
build_config = "slow.env"
platforms = ["$HOST"]

# Heads valid for 30 minutes: inside refresh_within, so the daemon re-signs them every round.
[[line]]
name = "edge"
repository = "$EDGE_REPO"
go_source = "$go_src"
go_source_digest = "$digest"
patches = "$TCDIST_TOP/distd/patches/go1.26"
platforms = ["$HOST"]
channels = ["edge"]
channel_expires = "30m"
EOF
	read -r PORT OPS_PORT < <(free_ports 2)
	export PORT OPS_PORT
	cat >"$WORK/serve.toml" <<EOF
listen = "127.0.0.1:$PORT"
ops_listen = "127.0.0.1:$OPS_PORT"
identity = "spiffe://tcdist.test/distd/server"
lines = "lines.toml"
state_dir = "state"
cache_dir = "$BUILD_CACHE"
stop_grace = "10s"
refresh_every = "5s"
refresh_within = "1h"

[[grant]]
spiffe_id = "spiffe://tcdist.test/release/manager"
lines = ["*"]
actions = ["read", "build", "promote", "yank"]

[[grant]]
spiffe_id = "spiffe://tcdist.test/ci/job"
lines = ["*"]
actions = ["read"]
EOF
	# Not the stack's daemon (stack.env's TCDIST_SERVER): this suite's own, with its own config,
	# ports and state dir.
	export TCDIST_SERVER=https://127.0.0.1:$PORT TCDIST_SERVER_ID=spiffe://tcdist.test/distd/server
	start_daemon
}

teardown_file() {
	stop_daemon
	# What the hostile registry test started, when it failed halfway.
	local pid_file
	for pid_file in "$WORK"/hostile-*/*.pid; do
		[ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
	done
	# Work dirs that interrupted builds left behind in the shared cache.
	if [[ -f $WORK/work-before ]]; then
		comm -13 "$WORK/work-before" <(ls "$BUILD_CACHE/build/work") | while read -r dir; do
			rm -rf "${BUILD_CACHE:?}/build/work/$dir"
		done
	fi
}

setup() {
	load helpers
	load spire_helpers
	# helpers.bash sources stack.env, which names the stack's own daemon: this suite's is another.
	export TCDIST_SERVER=https://127.0.0.1:$PORT TCDIST_SERVER_ID=spiffe://tcdist.test/distd/server
	# A test that failed between stopping and starting the daemon does not take the next along.
	curl -sf "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null 2>&1 || start_daemon
}

teardown() {
	restore_entries
}

# start_daemon: starts distd serve in the background and waits until it is ready; its pid is
# in daemon.pid, and its exit status lands in daemon.exit.
start_daemon() {
	rm -f "$WORK/daemon.exit"
	(
		"$DISTD" serve --config "$WORK/serve.toml" >>"$WORK/daemon.log" 2>&1 &
		echo $! >"$WORK/daemon.pid"
		wait $!
		echo $? >"$WORK/daemon.exit"
	) >/dev/null 2>&1 3>&- &
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	tail -n 20 "$WORK/daemon.log" >&3
	return 1
}

stop_daemon() {
	local pid
	pid=$(cat "$WORK/daemon.pid" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

MANAGER=spiffe://tcdist.test/release/manager
READER=spiffe://tcdist.test/ci/job

ctl() { "$DISTD" ctl "$@"; }

# json FIELD: FIELD (a Python expression over j) of the JSON on stdin.
json() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

# The tags of REPO the registry lists (none for a repository it does not know).
tags_of() {
	curl -s --cacert "$TCDIST_REGISTRY_CA" "https://$TCDIST_REGISTRY/v2/${1#*/}/tags/list" |
		python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin).get("tags") or []))' 2>/dev/null || true
}

# wait_for_log ID TEXT: waits (up to 5 min) until job ID's log holds TEXT.
wait_for_log() {
	for _ in $(seq 600); do
		grep -qF "$2" "$WORK/state/jobs/$1.log" 2>/dev/null && return 0
		sleep 0.5
	done
	return 1
}

# live_in_group PGID: the processes of group PGID that still run (zombies left out: nobody may
# reap the orphans here).
live_in_group() {
	ps -eo pid=,pgid=,stat= | awk -v g="$1" '$2 == g && $3 !~ /^Z/ { print $1 }'
}

@test "a release manager builds the line's platforms through the API, promotes and yanks; the catalog shows it; metrics parse" {
	run --separate-stderr ctl --as "$MANAGER" build go1.26 --follow
	[ "$status" -eq 0 ]
	[ "$(json 'j["state"]' <<<"$output")" = succeeded ]
	digest=$(json 'j["release"]' <<<"$output")
	[[ $digest == sha256:* ]]
	[[ $stderr == *"attempt 1: distd release go1.26"* ]]
	[[ $stderr == *"channel \"stable\" head 1: $digest"* ]]
	# Each platform verifies on its own, and its binaries are built for it.
	for platform in $PLATFORMS; do
		run --separate-stderr "$TCVERIFY" verify "$REPO:stable" --platform "$platform" --store "$WORK/store" --json
		[ "$status" -eq 0 ]
		[ "$(json 'j["digest"]' <<<"$output")" = "$digest" ]
		run --separate-stderr "$TCVERIFY" pull "$REPO@$digest" --platform "$platform" --store "$WORK/store" --json
		[ "$status" -eq 0 ]
		root=$(json 'j["root"]' <<<"$output")
		for binary in bin/go bin/gofmt; do
			[ "$(binary_platform "$root/$binary")" = "$platform" ]
		done
	done
	# The catalog, as a reader: the release by its version tag, the channel's verified head.
	run --separate-stderr ctl --as "$READER" catalog
	[ "$status" -eq 0 ]
	python3 - "$output" "$digest" <<'PY'
import json, sys
catalog, digest = json.loads(sys.argv[1]), sys.argv[2]
line = next(l for l in catalog["lines"] if l["name"] == "go1.26")
assert [r["release"] for r in line["releases"]] == [digest], line
assert line["channels"][0]["release"] == digest and line["channels"][0]["sequence"] == 1, line
assert line["yanks"] == [], line
PY
	run --separate-stderr ctl --as "$MANAGER" promote go1.26 "$digest" --channel stable
	[ "$status" -eq 0 ]
	[ "$(json 'j["sequence"]' <<<"$output")" = 2 ]
	# Only the line's own channels.
	run --separate-stderr ctl --as "$MANAGER" promote go1.26 "$digest" --channel beta
	[ "$status" -eq 2 ]
	[[ $stderr == *'400 Bad Request: line "go1.26" feeds the channels ["stable"], not "beta"'* ]]
	run --separate-stderr ctl --as "$MANAGER" yank go1.26 "$digest" --reason "bad build"
	[ "$status" -eq 0 ]
	run --separate-stderr "$TCVERIFY" pull "$REPO:stable" --store "$WORK/store-after-yank"
	[ "$status" -eq 42 ]
	[[ $stderr == *"bad build"* ]]
	run --separate-stderr ctl --as "$READER" catalog
	[ "$(json 'j["lines"][0]["yanks"][0]["reason"]' <<<"$output")" = "bad build" ]
	# A yanked release is not promoted again.
	run --separate-stderr ctl --as "$MANAGER" promote go1.26 "$digest" --channel stable
	[ "$status" -eq 1 ]
	[[ $stderr == *"409 Conflict"*"is yanked (bad build)"* ]]
	# Metrics: the text format parses, and the build, signing, log, TSA and SVID series are there.
	curl -sf "http://127.0.0.1:$OPS_PORT/metrics" >"$WORK/metrics.txt"
	python3 - "$WORK/metrics.txt" "$PLATFORMS" <<'PY'
import re, sys
text, platforms = open(sys.argv[1]).read(), sys.argv[2].split()
sample = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (?P<value>-?[0-9.e+-]+|NaN|[+-]Inf)$')
series = {}
for line in text.splitlines():
    if line.startswith("#") or not line:
        continue
    m = sample.match(line)
    assert m, f"not a sample: {line!r}"
    series.setdefault(m.group("name"), []).append((line, float(m.group("value"))))
def value(prefix):
    return [v for l, v in sum(series.values(), []) if l.startswith(prefix)]
for platform in platforms:
    assert value(f'distd_build_duration_seconds_count{{platform="{platform}"'), platform
assert value('distd_jobs_total{line="go1.26",state="succeeded"}') == [1.0]
assert value('distd_signatures_total{signer="spiffe://tcdist.test/distd/signer"}') == [1.0]
assert value('distd_signatures_total{signer="spiffe://tcdist.test/distd/promoter"}')[0] >= 3
assert value('distd_timestamp_request_duration_seconds_count{outcome="ok"}')[0] >= 4
assert value('distd_log_entry_duration_seconds_count{outcome="ok"}')[0] >= 4
assert value('distd_svid_expiry_timestamp_seconds{spiffe_id="spiffe://tcdist.test/distd/server"}')[0] > 1.7e9
assert value('distd_channel_head_expiry_timestamp_seconds{line="go1.26",channel="stable"}')[0] > 1.7e9
assert value('distd_queue_depth') == [0.0]
assert value('distd_api_request_duration_seconds_count{route="/v1/lines/{line}/builds",status="202"}') == [1.0]
PY
}

@test "the daemon re-signs a channel head before it expires, and agents accept the new head" {
	run --separate-stderr ctl --as "$MANAGER" build edge --follow
	[ "$status" -eq 0 ]
	digest=$(json 'j["release"]' <<<"$output")
	[[ $stderr == *"channel \"edge\" head 1: $digest"* ]]
	run --separate-stderr "$TCVERIFY" pull "$EDGE_REPO:edge" --store "$WORK/store-edge" --json
	[ "$status" -eq 0 ]
	first_expiry=$(json 'j["lifecycle"]["channel"]["expires"]' <<<"$output")
	# The head expires within refresh_within (1h): the next round (every 5 s) signs head 2.
	for _ in $(seq 60); do
		sequence=$(ctl --as "$READER" catalog | json '[l for l in j["lines"] if l["name"] == "edge"][0]["channels"][0]["sequence"]')
		((sequence >= 2)) && break
		sleep 1
	done
	((sequence >= 2))
	# The same store, which remembers head 1, accepts the newer head for the same release.
	run --separate-stderr "$TCVERIFY" pull "$EDGE_REPO:edge" --store "$WORK/store-edge" --json
	[ "$status" -eq 0 ]
	[ "$(json 'j["digest"]' <<<"$output")" = "$digest" ]
	(($(json 'j["lifecycle"]["channel"]["sequence"]' <<<"$output") >= 2))
	# Signed later, so valid at least as long (RFC 3339 UTC times compare as text).
	[[ ! $(json 'j["lifecycle"]["channel"]["expires"]' <<<"$output") < "$first_expiry" ]]
	grep -q "distd: channel \"edge\" head 2: $digest" "$WORK/daemon.log"
	curl -sf "http://127.0.0.1:$OPS_PORT/metrics" | grep -q '^distd_channel_head_expiry_timestamp_seconds{line="edge",channel="edge"} '
}

@test "a reader's SVID may read but not build, promote, yank or cancel: 403 with the reason, audited" {
	digest=sha256:$(printf '%064d' 0)
	for request in "build go1.26" "promote go1.26 $digest --channel stable" "yank go1.26 $digest --reason r" "cancel 1"; do
		# shellcheck disable=SC2086 # one request's words
		run --separate-stderr ctl --as "$READER" $request
		[ "$status" -eq 2 ]
		[[ $stderr == *"403 Forbidden: $READER may not "*": its grants allow read on *"* ]]
	done
	python3 - "$WORK/state/audit.log" "$READER" <<'PY'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1])]
denied = {r["action"] for r in records if r["caller"] == sys.argv[2] and r["decision"] == "denied"}
assert denied == {"build", "promote", "yank"}, denied
assert all(r["reason"].startswith(sys.argv[2] + " may not") for r in records if r["decision"] == "denied")
PY
	run --separate-stderr ctl --as "$READER" jobs
	[ "$status" -eq 0 ]
	# An SVID of the trust domain that no grant names: refused too.
	dir=$WORK/minted-other
	mkdir -p "$dir"
	"$TCDIST_SPIRE_BIN_DIR/spire-server" x509 mint -socketPath "$TCDIST_SPIRE_SERVER_SOCKET" \
		-spiffeID spiffe://tcdist.test/someone -ttl 10m -write "$dir" >/dev/null
	run curl -sk --cert "$dir/svid.pem" --key "$dir/key.pem" "$TCDIST_SERVER/v1/catalog"
	[[ $output == *'"error":"spiffe://tcdist.test/someone has no grant on this daemon"'* ]]
}

@test "no client certificate, or one of another trust domain, does not complete the handshake" {
	run curl -sk "$TCDIST_SERVER/v1/catalog"
	[ "$status" -ne 0 ]
	[ -z "$output" ]
	# An SVID-shaped leaf naming the release manager, from a CA SPIRE never heard of.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
		-subj /CN=forged-ca -keyout "$WORK/forged-ca.key" -out "$WORK/forged-ca.pem" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=forged \
		-keyout "$WORK/forged.key" -out "$WORK/forged.csr" 2>/dev/null
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=URI:%s\n' \
		"$MANAGER" >"$WORK/forged.ext"
	openssl x509 -req -in "$WORK/forged.csr" -CA "$WORK/forged-ca.pem" -CAkey "$WORK/forged-ca.key" \
		-CAcreateserial -days 1 -extfile "$WORK/forged.ext" -out "$WORK/forged.pem" 2>/dev/null
	run curl -sk --cert "$WORK/forged.pem" --key "$WORK/forged.key" "$TCDIST_SERVER/v1/catalog"
	[ "$status" -ne 0 ]
	[ -z "$output" ]
	grep -q "TLS handshake failed: peer sent no certificates" "$WORK/daemon.log"
	grep -q "TLS handshake failed: invalid peer certificate: UnknownIssuer" "$WORK/daemon.log"
}

@test "the daemon serves with each new SVID SPIRE rotates in, without a restart" {
	RESTORE_ENTRIES=1
	TCDIST_SIGNER_SVID_TTL=60 "$APPLY" >/dev/null
	mint_dir=$WORK/minted-reader
	mkdir -p "$mint_dir"
	"$TCDIST_SPIRE_BIN_DIR/spire-server" x509 mint -socketPath "$TCDIST_SPIRE_SERVER_SOCKET" \
		-spiffeID "$READER" -ttl 10m -write "$mint_dir" >/dev/null
	serial() {
		openssl s_client -connect "127.0.0.1:$PORT" -cert "$mint_dir/svid.pem" -key "$mint_dir/key.pem" \
			</dev/null 2>/dev/null | openssl x509 -noout -serial
	}
	first=$(serial)
	[[ $first == serial=* ]]
	# The agent hands out a 60 s SVID, then rotates it at half its life.
	seen=("$first")
	for _ in $(seq 120); do
		now=$(serial)
		[[ ${seen[-1]} == "$now" ]] || seen+=("$now")
		((${#seen[@]} >= 3)) && break
		sleep 1
	done
	((${#seen[@]} >= 3))
	run --separate-stderr ctl --as "$READER" catalog
	[ "$status" -eq 0 ]
	# Back to the stack's TTL, and on until the agent hands it out: the suites after this one
	# sign, and a 60 s SVID is under the signer's minimum lifetime.
	restore_entries
	lifetime() {
		openssl s_client -connect "127.0.0.1:$PORT" -cert "$mint_dir/svid.pem" -key "$mint_dir/key.pem" \
			</dev/null 2>/dev/null | openssl x509 -noout -startdate -enddate |
			python3 -c '
import sys
from datetime import datetime
d = dict(line.strip().split("=", 1) for line in sys.stdin)
f = "%b %d %H:%M:%S %Y GMT"
print(int((datetime.strptime(d["notAfter"], f) - datetime.strptime(d["notBefore"], f)).total_seconds()))'
	}
	for _ in $(seq 90); do
		(($(lifetime) > 120)) && break
		sleep 1
	done
	(($(lifetime) > 120))
}

@test "kill -9 in the middle of a build: the restarted daemon kills the leftovers, marks the job interrupted and resumes it; no tag moved" {
	ls "$BUILD_CACHE/build/work" | sort >"$WORK/work-before"
	run --separate-stderr ctl --as "$MANAGER" build slow
	[ "$status" -eq 0 ]
	id=$(json 'j["id"]' <<<"$output")
	wait_for_log "$id" "running make.bash"
	wait_for_log "$id" "[make.bash] Building Go toolchain1"
	pgid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["process"]["pid"])' "$WORK/state/jobs/$id.json")
	kill -9 "$(cat "$WORK/daemon.pid")"
	# The job's leader dies with the daemon (gone, or a zombie nobody reaped); make.bash, in
	# its process group, outlives it.
	leader_gone() { [[ $(ps -o stat= -p "$pgid") == "" || $(ps -o stat= -p "$pgid") == Z* ]]; }
	for _ in $(seq 100); do leader_gone && break; sleep 0.1; done
	ps -o pid=,stat=,args= -g "$pgid" || true
	leader_gone
	[ -n "$(live_in_group "$pgid")" ]
	[ -z "$(tags_of "$SLOW_REPO")" ]
	start_daemon
	sleep 1
	[ -z "$(live_in_group "$pgid")" ]
	run --separate-stderr ctl --as "$READER" job "$id"
	[ "$(json 'j["state"]' <<<"$output")" = running ]
	[ "$(json 'j["attempts"]' <<<"$output")" = 2 ]
	[ "$(json '[h["state"] for h in j["history"]]' <<<"$output")" = "['queued', 'running', 'interrupted', 'running']" ]
	[ "$(json 'j["history"][2]["note"]' <<<"$output")" = "the daemon stopped while it ran" ]
	run --separate-stderr ctl --as "$MANAGER" cancel "$id"
	[ "$status" -eq 0 ]
	run --separate-stderr ctl --as "$READER" job "$id" --follow
	[ "$status" -eq 1 ]
	[ "$(json 'j["state"]' <<<"$output")" = cancelled ]
	[[ $stderr == *"cancelled by $MANAGER; stopping"* ]]
	[ -z "$(tags_of "$SLOW_REPO")" ]
	run --separate-stderr ctl --as "$MANAGER" cancel "$id"
	[ "$status" -eq 1 ]
	[[ $stderr == *"409 Conflict: job $id has ended (cancelled)"* ]]
}

@test "SIGTERM during a build: the job is stopped and left interrupted, the daemon exits 0, and the job resumes at the next start" {
	run --separate-stderr ctl --as "$MANAGER" build slow
	id=$(json 'j["id"]' <<<"$output")
	wait_for_log "$id" "running make.bash"
	pid=$(cat "$WORK/daemon.pid")
	kill -TERM "$pid"
	for _ in $(seq 300); do [[ -s $WORK/daemon.exit ]] && break; sleep 0.1; done
	[ "$(cat "$WORK/daemon.exit")" = 0 ]
	[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job"]["state"])' "$WORK/state/jobs/$id.json")" = interrupted ]
	grep -q "the daemon is stopping; stopping the job" "$WORK/state/jobs/$id.log"
	grep -q "stopped by SIGTERM before the release was finished" "$WORK/state/jobs/$id.log"
	[ -z "$(pgrep -f "distd release slow" | while read -r p; do live_in_group "$p"; done)" ]
	[ -z "$(tags_of "$SLOW_REPO")" ]
	start_daemon
	run --separate-stderr ctl --as "$READER" job "$id"
	[ "$(json 'j["state"]' <<<"$output")" = running ]
	[ "$(json 'j["attempts"]' <<<"$output")" = 2 ]
	run --separate-stderr ctl --as "$MANAGER" cancel "$id"
	[ "$status" -eq 0 ]
}

@test "a registry that sends a malformed or an endless tag list fails the catalog with the reason, and the daemon keeps serving" {
	local mode dir proxy port ops
	for mode in tags-malformed tags-huge; do
		dir=$WORK/hostile-$mode
		mkdir -p "$dir"
		python3 "$TCDIST_TOP/tests/lib/registry_proxy.py" "$mode" "$dir/proxy.port" "$dir/proxy.log" 3>&- &
		echo $! >"$dir/proxy.pid"
		for _ in $(seq 100); do [ -s "$dir/proxy.port" ] && break; sleep 0.05; done
		proxy=127.0.0.1:$(cat "$dir/proxy.port")
		read -r port ops < <(free_ports 2)
		sed -n '/^\[\[line\]\]$/,/^channels/p' "$WORK/lines.toml" | sed -n '1,/^channels/p' |
			sed "s|^repository = .*|repository = \"$proxy/toolchains/hostile\"|; s|^platforms = .*|platforms = [\"$HOST\"]|" >"$dir/lines.toml"
		cat >"$dir/serve.toml" <<EOF
listen = "127.0.0.1:$port"
ops_listen = "127.0.0.1:$ops"
identity = "spiffe://tcdist.test/distd/server"
lines = "lines.toml"
state_dir = "state"
cache_dir = "$BUILD_CACHE"

[[grant]]
spiffe_id = "$READER"
lines = ["*"]
actions = ["read"]
EOF
		# The proxy passes the stack registry's challenge on: the credentials are given for it.
		TCDIST_REGISTRY_PLAIN_HTTP=true TCDIST_REGISTRY_CREDENTIALS_HOST=$proxy \
			"$DISTD" serve --config "$dir/serve.toml" >"$dir/daemon.log" 2>&1 3>&- &
		echo $! >"$dir/daemon.pid"
		for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ops/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
		run --separate-stderr env TCDIST_SERVER="https://127.0.0.1:$port" "$DISTD" ctl --as "$READER" catalog
		echo "$mode: status $status; stderr: $stderr"
		[ "$status" -eq 1 ]
		[[ $stderr == *"409 Conflict: reading line \"go1.26\""*"tag list of toolchains/hostile: malformed: "* ]]
		case $mode in
		tags-malformed) [[ $stderr == *"not a valid tag list"* ]] ;;
		tags-huge) [[ $stderr == *"over the "*"-byte document limit"* ]] ;;
		esac
		# Still up: the ops listener answers and the API answers the next caller.
		curl -sf "http://127.0.0.1:$ops/healthz" >/dev/null
		run --separate-stderr env TCDIST_SERVER="https://127.0.0.1:$port" "$DISTD" ctl --as "$READER" jobs
		[ "$status" -eq 0 ]
		kill "$(cat "$dir/daemon.pid")" "$(cat "$dir/proxy.pid")"
		wait "$(cat "$dir/daemon.pid")" || true
	done
}
