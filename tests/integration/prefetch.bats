#!/usr/bin/env bats
# Prefetch and the store budget: an agent (as root, beside the stack's) keeps the releases
# its channels name installed ahead of jobs, both arms during a rollout, and keeps its store
# within a budget without removing what a job is using, what its channels name or the last
# used. Everything against the stack's registry, log and policy.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/prefetch
	mkdir -p "$WORK"
	export REPO
	REPO=$TCDIST_REGISTRY/toolchains/prefetch-$(date +%s%N)
	publish_job_releases 4 pre
}

setup() {
	load helpers
	# The stack's own policy: promoters for toolchains/*.
	export TCVERIFY_POLICY=$STACK_POLICY
}

teardown() {
	if [[ -n ${AGENT_PID:-} ]]; then
		kill -TERM "$AGENT_PID" 2>/dev/null
		wait "$AGENT_PID" 2>/dev/null || true
	fi
}

# start_agent NAME CONFIG…: an agent for this test with the given config lines, as host
# spiffe://tcdist.test/host/prefetch; sets DIR, STORE, SOCKET, METRICS and AGENT_PID.
start_agent() {
	DIR=$BATS_TEST_TMPDIR/$1
	shift
	STORE=$DIR/store SOCKET=$DIR/agent.sock
	local port
	read -r port < <(free_ports 1)
	METRICS=http://127.0.0.1:$port/metrics
	mkdir -p "$DIR"
	{
		cat <<EOF
socket = "$SOCKET"
store = "$STORE"
policy = "$STACK_POLICY"
trust = "$STACK_TRUST"
host_id = "spiffe://tcdist.test/host/prefetch"
metrics_listen = "127.0.0.1:$port"
EOF
		printf '%s\n' "$@"
		cat <<EOF
[registry]
ca = "$TCDIST_REGISTRY_CA"
docker_config = "$DOCKER_CONFIG"
EOF
	} >"$DIR/agent.toml"
	"$TCVERIFY" agent --config "$DIR/agent.toml" 2>"$DIR/agent.log" 3>&- &
	AGENT_PID=$!
	for _ in $(seq 100); do [[ -S $SOCKET ]] && return 0; sleep 0.05; done
	cat "$DIR/agent.log" >&3
	return 1
}

# entry DIGEST: the store entry of DIGEST for this host.
entry() {
	echo "$STORE/${1/:/-}/linux-amd64"
}

# wait_for TEST SECONDS: until `test TEST` holds (e.g. "-d DIR"), at most SECONDS.
wait_for() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		# shellcheck disable=SC2086
		test $1 && return 0
		sleep 0.1
	done
	echo "not within $2 s: test $1" >&3
	cat "$DIR/agent.log" >&3
	return 1
}

# wait_logged TEXT SECONDS: until the agent's log has a line with TEXT, at most SECONDS.
wait_logged() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		grep -qF "$1" "$DIR/agent.log" && return 0
		sleep 0.1
	done
	echo "not logged within $2 s: $1" >&3
	cat "$DIR/agent.log" >&3
	return 1
}

metric() {
	curl -fsS "$METRICS" | awk -v name="$1" '$1 == name { print $2 }'
}

@test "a promotion reaches the agent's store within its prefetch interval, and a job's pull after it is warm" {
	"$DISTD" promote "$REPO@$D1" --channel p-stable 2>/dev/null
	start_agent promote "prefetch = [\"$REPO:p-stable\"]" 'prefetch_interval = "1s"' 'prefetch_jitter = "1s"'
	wait_for "-d $(entry "$D1")" 10
	"$DISTD" promote "$REPO@$D2" --channel p-stable 2>/dev/null
	# One interval, one jitter and the verification and install.
	wait_for "-d $(entry "$D2")" 10
	grep -q "prefetch $REPO:p-stable (linux/amd64): $D2 installed in " "$DIR/agent.log"
	hits=$(metric 'tcdist_agent_verification_cache_total{result="hit"}')
	run --separate-stderr job_tcverify "$SOCKET" pull "$REPO:p-stable" --json
	[ "$status" -eq 0 ]
	python3 - "$output" "$D2" "$(entry "$D2")/toolchain" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
assert out["digest"] == sys.argv[2] and out["root"] == sys.argv[3], out
assert out["downloaded"] is False, out
PY
	# The job's pull reused the verification the prefetch made.
	[ "$(metric 'tcdist_agent_verification_cache_total{result="hit"}')" -gt "${hits:-0}" ]
	[ "$(metric "tcdist_agent_prefetches_total{reference=\"$REPO:p-stable\",outcome=\"installed\"}")" -ge 2 ]
	[ "$(metric "tcdist_agent_prefetch_bytes_total{reference=\"$REPO:p-stable\"}")" -gt 0 ]
	[ "$(metric "tcdist_agent_prefetch_duration_seconds_count{reference=\"$REPO:p-stable\"}")" -ge 2 ]
}

@test "during a rollout the agent prefetches both arms, whichever this host is in" {
	"$DISTD" promote "$REPO@$D1" --channel p-roll 2>/dev/null
	"$DISTD" rollout start "$REPO@$D3" --channel p-roll --stages 50%:1h:400:20,100% >/dev/null 2>&1
	start_agent roll "prefetch = [\"$REPO:p-roll\"]" 'prefetch_interval = "1h"' 'prefetch_jitter = "0s"'
	wait_for "-d $(entry "$D1")" 15
	wait_for "-d $(entry "$D3")" 15
	grep -q "prefetch $REPO@$D1 (linux/amd64): $D1 installed\|prefetch $REPO@$D3 (linux/amd64): $D3 installed" "$DIR/agent.log"
	# Whichever arm this host is in, its job's pull is warm.
	run --separate-stderr job_tcverify "$SOCKET" pull "$REPO:p-roll" --json
	[ "$status" -eq 0 ]
	python3 -c 'import json,sys; o=json.loads(sys.argv[1]); assert o["downloaded"] is False and o["rollout"]["state"] == "running", o' "$output"
	[ "$(metric "tcdist_agent_prefetches_total{reference=\"$REPO:p-roll\",outcome=\"installed\"}")" -eq 2 ]
}

@test "the store budget removes the least recently used entries, never one a job is using, one its channel names, or the last used" {
	"$DISTD" promote "$REPO@$D4" --channel p-budget 2>/dev/null
	# A budget nothing fits: only what must stay does.
	start_agent budget "prefetch = [\"$REPO:p-budget\"]" 'prefetch_interval = "1h"' 'prefetch_jitter = "0s"' \
		'store_max_bytes = 1' 'store_keep_last_used = 1'
	wait_for "-d $(entry "$D4")" 15
	# Job a is still running with D1; job b has ended with D2; the newest pull is D3's.
	job_tcverify "$SOCKET" pull "$REPO@$D1" --job-id job-a >/dev/null
	job_tcverify "$SOCKET" pull "$REPO@$D2" --job-id job-b >/dev/null
	job_tcverify "$SOCKET" report --job-id job-b --pipeline p --exit-status 0 >/dev/null
	job_tcverify "$SOCKET" pull "$REPO@$D3" >/dev/null
	wait_for "! -e $(entry "$D2")" 10
	# Logged once the entry, moved out of the store at once, is deleted.
	wait_logged "store budget: removed $(entry "$D2") (" 10
	[ -x "$(entry "$D1")/toolchain/bin/go" ]
	[ -d "$(entry "$D3")" ]
	[ -d "$(entry "$D4")" ]
	[ "$(metric tcdist_agent_store_collected_total)" -eq 1 ]
	[ "$(metric tcdist_agent_store_over_budget)" -eq 1 ]
	[ "$(metric tcdist_agent_store_budget_bytes)" -eq 1 ]
	[ "$(metric tcdist_agent_store_bytes)" -eq "$(du -sB1 -c "$(entry "$D1")" "$(entry "$D3")" "$(entry "$D4")" | awk 'END { print $1 }')" ]
	# Once job a has reported, D1 is only the least recently used: the next install removes it.
	job_tcverify "$SOCKET" report --job-id job-a --pipeline p --exit-status 1 >/dev/null
	job_tcverify "$SOCKET" pull "$REPO@$D2" >/dev/null
	wait_logged "store budget: removed $(entry "$D3") (" 10
	grep -qF "store budget: removed $(entry "$D1") (" "$DIR/agent.log"
	[ ! -e "$(entry "$D1")" ]
	[ ! -e "$(entry "$D3")" ]
	[ -d "$(entry "$D2")" ]
	[ -d "$(entry "$D4")" ]
}

@test "an agent restarted with a budget keeps what was used before it started, within one outcome window" {
	start_agent before 'outcome_window = "1h"'
	job_tcverify "$SOCKET" pull "$REPO@$D1" --job-id job-before >/dev/null
	job_tcverify "$SOCKET" pull "$REPO@$D2" >/dev/null
	kill -TERM "$AGENT_PID"
	wait "$AGENT_PID" || true
	# The restarted agent does not know job-before, which may still be running with D1.
	cat >>"$DIR/agent.toml.budget" <<EOF
store_max_bytes = 1
store_keep_last_used = 0
EOF
	sed -i "/^outcome_window/r $DIR/agent.toml.budget" "$DIR/agent.toml"
	"$TCVERIFY" agent --config "$DIR/agent.toml" 2>>"$DIR/agent.log" 3>&- &
	AGENT_PID=$!
	wait_for "-S $SOCKET" 5
	job_tcverify "$SOCKET" pull "$REPO@$D3" >/dev/null
	# D3 was used after the start and is the one entry the budget may remove.
	wait_for "! -e $(entry "$D3")" 10
	[ -d "$(entry "$D1")" ]
	[ -d "$(entry "$D2")" ]
}
