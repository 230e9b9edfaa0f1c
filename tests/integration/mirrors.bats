#!/usr/bin/env bats
# Mirrors: pulls through the stack's pull-through cache (the registry's mirror), and mirrors
# that fail in each way a mirror can: other bytes, down, a stale tag, a credentials challenge.
# Whatever a mirror does, every byte installed is the one the verified release names.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/mirrors
	mkdir -p "$WORK"
	# A repository of its own each run, so the cache (which keeps what it fetched per
	# repository) starts cold on a reused stack too.
	export REPO_PATH
	REPO_PATH=mirrors/go-$(date +%s%N)
	export REPO=$TCDIST_REGISTRY/$REPO_PATH
	for n in 1 2; do
		make_small_tree "$WORK/tree$n"
		head -c 2000000 /dev/urandom >"$WORK/tree$n/src/fmt/random.bin"
	done
	D1=$("$DISTD" publish "$WORK/tree1" --ref "$REPO:v1" 2>/dev/null | tail -n 1)
	D2=$("$DISTD" publish "$WORK/tree2" --ref "$REPO:v2" 2>/dev/null | tail -n 1)
	export D1 D2
}

teardown_file() {
	for pidfile in "$WORK"/proxy-*.pid; do
		[ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
	done
	true
}

setup() {
	load helpers
}

# start_proxy MODE NAME: a misbehaving proxy (tests/lib/registry_proxy.py) in front of the
# stack's pull-through cache; prints its port. Its log is $WORK/proxy-NAME.log.
start_proxy() {
	local mode=$1 name=$2
	# Its output is not ours: the caller's command substitution would wait for it to end.
	TCDIST_REGISTRY=$TCDIST_CACHE python3 "$TCDIST_TOP/tests/lib/registry_proxy.py" "$mode" \
		"$WORK/proxy-$name.port" "$WORK/proxy-$name.log" >/dev/null 2>"$WORK/proxy-$name.err" 3>&- &
	echo $! >"$WORK/proxy-$name.pid"
	for _ in $(seq 100); do [ -s "$WORK/proxy-$name.port" ] && break; sleep 0.05; done
	cat "$WORK/proxy-$name.port"
}

# mirrors_dir NAME URL [CAPABILITIES]: a certs.d directory naming URL as the stack registry's
# one mirror; prints its path.
mirrors_dir() {
	local dir=$WORK/mirrors-$1
	mkdir -p "$dir/$TCDIST_REGISTRY"
	printf 'server = "https://%s"\n[host."%s"]\ncapabilities = %s\n' \
		"$TCDIST_REGISTRY" "$2" "${3:-[\"pull\"]}" >"$dir/$TCDIST_REGISTRY/hosts.toml"
	echo "$dir"
}

@test "cold and warm pulls through the pull-through cache: layers come from the cache, the registry serves each once, every byte checked" {
	mapfile -t layers < <(layer_digests "$REPO:v1")
	declare -A cache_before origin_before origin_after_first
	for l in "${layers[@]}"; do
		cache_before[$l]=$(count_blob_gets "$l" "$TCDIST_CACHE_LOG")
		origin_before[$l]=$(count_blob_gets "$l")
	done
	run --separate-stderr "$TCVERIFY" pull "$REPO:v1" --mirrors "$TCDIST_CACHE_MIRRORS" --store "$WORK/cold" --json
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ $stderr != *"warning: mirror"* ]]
	root=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["root"])' "$output")
	diff -r -x TOOLCHAIN.json "$WORK/tree1" "$root"
	for l in "${layers[@]}"; do
		[ "$(($(count_blob_gets "$l" "$TCDIST_CACHE_LOG") - ${cache_before[$l]}))" -eq 1 ]
		# The cache's miss reaches the registry once.
		origin_after_first[$l]=$(count_blob_gets "$l")
		[ "$((origin_after_first[$l] - origin_before[$l]))" -eq 1 ]
	done
	# Warm: nothing is fetched again.
	run --separate-stderr "$TCVERIFY" pull "$REPO:v1" --mirrors "$TCDIST_CACHE_MIRRORS" --store "$WORK/cold" --json
	[ "$status" -eq 0 ]
	[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["downloaded"])' "$output")" = False ]
	# A second host's cold pull is served by the cache alone: the origin is not asked again.
	TCVERIFY_MIRRORS=$TCDIST_CACHE_MIRRORS "$TCVERIFY" pull "$REPO:v1" --store "$WORK/cold2" >/dev/null
	for l in "${layers[@]}"; do
		[ "$(($(count_blob_gets "$l" "$TCDIST_CACHE_LOG") - ${cache_before[$l]}))" -eq 2 ]
		[ "$(count_blob_gets "$l")" -eq "${origin_after_first[$l]}" ]
	done
}

@test "a mirror serving other bytes is skipped for each layer: the origin's are installed, with a warning and an audit field" {
	port=$(start_proxy tamper tamper)
	mirrors=$(mirrors_dir tamper "http://127.0.0.1:$port")
	run --separate-stderr "$TCVERIFY" pull "$REPO:v1" --mirrors "$mirrors" --store "$WORK/tamper" \
		--audit-log "$WORK/tamper-audit.jsonl"
	echo "$stderr"
	[ "$status" -eq 0 ]
	diff -r -x TOOLCHAIN.json "$WORK/tree1" "$output"
	[[ $stderr == *"warning: mirror http://127.0.0.1:$port skipped for layer sha256:"*"digest mismatch"* ]]
	grep -q "GET /v2/$REPO_PATH/blobs/sha256:" "$WORK/proxy-tamper.log"
	python3 - "$WORK/tamper-audit.jsonl" "http://127.0.0.1:$port" <<'PY'
import json, sys
record = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert record["decision"] == "accept", record
skips = record["mirrors_skipped"]
assert skips and all(s["mirror"] == sys.argv[2] for s in skips), skips
assert all("digest mismatch" in s["reason"] for s in skips), skips
assert any(s["object"].startswith("layer sha256:") for s in skips), skips
PY
}

@test "a mirror that is down is skipped; the origin serves the pull" {
	mirrors=$(mirrors_dir down "https://127.0.0.1:1")
	run --separate-stderr "$TCVERIFY" pull "$REPO:v1" --mirrors "$mirrors" --store "$WORK/down"
	echo "$stderr"
	[ "$status" -eq 0 ]
	diff -r -x TOOLCHAIN.json "$WORK/tree1" "$output"
	[[ $stderr == *"warning: mirror https://127.0.0.1:1 skipped for "* ]]
}

@test "a mirror that resolves tags and serves an older channel head is refused, as the registry would be" {
	"$DISTD" promote "$REPO@$D1" --channel m-stable 2>/dev/null
	port=$(start_proxy stale stale)
	mirrors=$(mirrors_dir stale "http://127.0.0.1:$port" '["pull", "resolve"]')
	run --separate-stderr "$TCVERIFY" pull "$REPO:m-stable" --mirrors "$mirrors" --store "$WORK/stale"
	[ "$status" -eq 0 ]
	grep -q "GET /v2/$REPO_PATH/manifests/m-stable " "$WORK/proxy-stale.log"
	"$DISTD" promote "$REPO@$D2" --channel m-stable 2>/dev/null
	"$TCVERIFY" pull "$REPO:m-stable" --store "$WORK/stale" >/dev/null 2>&1
	before=$(store_snapshot "$WORK/stale")
	run --separate-stderr "$TCVERIFY" pull "$REPO:m-stable" --mirrors "$mirrors" --store "$WORK/stale"
	echo "$stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[channel-rollback]"* ]]
	[ "$(store_snapshot "$WORK/stale")" = "$before" ]
}

@test "credentials reach a mirror only when they are configured for its host" {
	port=$(start_proxy basic-auth auth)
	mirrors=$(mirrors_dir auth "http://127.0.0.1:$port")
	# The registry's own credentials (stack.env's, and its docker config entry) are not the
	# mirror's: its challenge goes unanswered, the mirror is skipped, the registry serves.
	run --separate-stderr "$TCVERIFY" pull "$REPO:v2" --mirrors "$mirrors" --store "$WORK/auth1"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ $stderr == *"warning: mirror http://127.0.0.1:$port skipped for "* ]]
	grep -q "auth=none" "$WORK/proxy-auth.log"
	[ "$(grep -c -v "auth=none" "$WORK/proxy-auth.log")" -eq 0 ]
	# A docker config entry for the mirror's host: the mirror gets those, and only those.
	mkdir -p "$WORK/docker"
	python3 - "$DOCKER_CONFIG/config.json" "127.0.0.1:$port" >"$WORK/docker/config.json" <<'PY'
import base64, json, sys
config = json.load(open(sys.argv[1]))
config["auths"][sys.argv[2]] = {"auth": base64.b64encode(b"mirror-user:mirror-pass").decode()}
print(json.dumps(config))
PY
	: >"$WORK/proxy-auth.log"
	run --separate-stderr env DOCKER_CONFIG="$WORK/docker" "$TCVERIFY" pull "$REPO:v2" \
		--mirrors "$mirrors" --store "$WORK/auth2"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ $stderr != *"warning: mirror"* ]]
	grep -q "GET /v2/$REPO_PATH/blobs/sha256:.* auth=mirror-user" "$WORK/proxy-auth.log"
	[ "$(grep -c "auth=$TCDIST_REGISTRY_USERNAME" "$WORK/proxy-auth.log")" -eq 0 ]
}

@test "a mirror setting tcdist does not honour is refused before anything is fetched" {
	mirrors=$(mirrors_dir bad "https://127.0.0.1:1")
	printf 'skip_verify = true\n' >>"$mirrors/$TCDIST_REGISTRY/hosts.toml"
	run --separate-stderr "$TCVERIFY" pull "$REPO:v1" --mirrors "$mirrors" --store "$WORK/bad"
	[ "$status" -eq 2 ]
	[[ $stderr == *"mirrors $mirrors/$TCDIST_REGISTRY/hosts.toml: host \"https://127.0.0.1:1\": skip_verify is not honoured"* ]]
	[ ! -e "$WORK/bad" ] || [ -z "$(ls -A "$WORK/bad")" ]
}
