#!/usr/bin/env bats
# The build-host agent service (`tcverify agent`, started by the stack as its own user) against
# the real stack. A second unix user, made here, plays the build job: it runs tcverify with an
# environment and flags it controls, and must neither change the store nor make the agent
# trust anything else. The agent's answers must be what direct mode prints.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/agent
	mkdir -p "$WORK"
	if ((EUID != 0)); then
		return 0
	fi
	export JOB_USER=tcdist-job
	getent passwd "$JOB_USER" >/dev/null ||
		useradd --no-create-home --home-dir /nonexistent --shell /bin/sh "$JOB_USER"
	usermod -a -G "$TCDIST_AGENT_GROUP" "$JOB_USER"
	# The job's own directory, and a tcverify it may run.
	export JOB_HOME
	JOB_HOME=$(mktemp -d /tmp/tcdist-job.XXXXXX)
	chmod 755 "$JOB_HOME"
	cp "$TCVERIFY" "$JOB_HOME/tcverify"
	chown -R "$JOB_USER" "$JOB_HOME"
	# A version of its own: an entry remembers the reference it was first pulled as.
	make_job_tree "$WORK/tree" go1.26.8-agent
	export REF=$TCDIST_REGISTRY/toolchains/agent-small:v1
	export DIGEST
	DIGEST=$("$DISTD" publish "$WORK/tree" --ref "$REF")
	DIGEST=${DIGEST##*$'\n'}
	export UNSIGNED=$TCDIST_REGISTRY/toolchains/agent-unsigned:v1
	copy_image "$REF" "$UNSIGNED"
	export GO_REF=$TCDIST_REGISTRY/toolchains/agent-go:v1
	export GO_DIGEST
	GO_DIGEST=$("$DISTD" publish "$(go env GOROOT)" --ref "$GO_REF")
	GO_DIGEST=${GO_DIGEST##*$'\n'}
}

setup() {
	load helpers
	if ((EUID != 0)); then
		skip "needs root, to make the job's unix user (the stack then runs the agent as its own user)"
	fi
	if [[ $(stat -c %U "$TCDIST_AGENT_STORE") != "$TCDIST_AGENT_USER" ]]; then
		skip "the stack's agent does not run as $TCDIST_AGENT_USER (see the stack's warning): its store is not out of the job's reach"
	fi
	ENTRY=$TCDIST_AGENT_STORE/${DIGEST/:/-}/linux-amd64
}

# as_job CMD...: CMD as the job's user, with a clean environment that names the agent.
as_job() {
	setpriv --reuid "$JOB_USER" --regid "$JOB_USER" --init-groups \
		env -i PATH=/usr/bin:/bin HOME="$JOB_HOME" TCVERIFY_AGENT="$STACK_AGENT" "$@"
}

# A test that stops the agent restarts it, whatever happened. A test that started a rollout on
# the stack daemon's channel (which other suites use) sets ABORT_ROLLOUT; it is aborted.
teardown() {
	if ((EUID == 0)) && ! pidfile_alive "$TCDIST_AGENT_PIDFILE" "tcverify agent"; then
		"$TCDIST_TOP/deploy/local/stack" up >/dev/null 2>&1
	fi
	if [[ -n ${ABORT_ROLLOUT:-} ]]; then
		TCVERIFY_POLICY=$STACK_POLICY "$DISTD" rollout abort "$ABORT_ROLLOUT" --channel "$SERVER_CHANNEL" \
			--reason "agent.bats: test over" >/dev/null 2>&1 || true
	fi
}

pidfile_alive() {
	local pid
	# cmdline separates the arguments with NULs.
	pid=$(cat "$1" 2>/dev/null) && [[ -n $pid ]] &&
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$2"
}

# remove_agent_entry DIGEST: deletes the entry (as root), so the next pull downloads it.
remove_agent_entry() {
	local entry=$TCDIST_AGENT_STORE/${1/:/-}/linux-amd64
	if [[ -d $entry ]]; then
		chmod -R u+w "$entry"
		rm -rf "$entry"
	fi
}

# agent_store_snapshot: everything in the agent's store but its bookkeeping, and its outcome
# spool (a job served earlier may be counted lost at any time).
agent_store_snapshot() {
	store_snapshot "$TCDIST_AGENT_STORE" | grep -v '^\./\.outcomes\| \./\.outcomes'
}

@test "a job pulls, verifies and gets its environment through the agent, printing what direct mode prints" {
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$REF"
	[ "$status" -eq 0 ]
	[ "$output" = "$ENTRY/toolchain" ]
	[ "$(stat -c %U "$ENTRY/toolchain/bin/go")" = "$TCDIST_AGENT_USER" ]
	[ "$(stat -c %a "$ENTRY/toolchain/bin/go")" = 555 ]
	# The same lines as direct mode, for the same release.
	run --separate-stderr as_job "$JOB_HOME/tcverify" verify "$REF"
	[ "$status" -eq 0 ]
	[ "$output" = "$("$TCVERIFY" verify "$REF" --store "$WORK/direct" 2>/dev/null)" ]
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$REF" --json
	[ "$status" -eq 0 ]
	python3 - "$output" "$ENTRY/toolchain" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
assert out["root"] == sys.argv[2] and out["downloaded"] is False, out
assert out["checks"] == ["digest-binding", "structure", "signature", "transparency-log", "lifecycle"], out
PY
	run --separate-stderr as_job "$JOB_HOME/tcverify" env "$REF"
	[ "$status" -eq 0 ]
	[[ $output == *"export GOROOT='$ENTRY/toolchain'"* ]]
	[[ $output == *"export PATH='$ENTRY/toolchain/bin:/usr/bin:/bin'"* ]]
	run --separate-stderr as_job env GOEXPERIMENT=greenteagc "$JOB_HOME/tcverify" env "$REF"
	[ "$status" -eq 42 ]
	[[ $stderr == *'GOEXPERIMENT mismatch: the job has "greenteagc"'* ]]
	[[ $stderr == *"tcverify: hint: set the job's GOEXPERIMENT"* ]]
}

@test "one release under another repository and tag: after its pull, env finds it by that reference" {
	as_job "$JOB_HOME/tcverify" pull "$REF" >/dev/null 2>&1
	# A repository of its own on every run: the store remembers what it verified.
	copy=$TCDIST_REGISTRY/toolchains/agent-small-copy-$(date +%s%N):v2
	copy_image "$REF" "$copy"
	# Signed for its own repository (the statement names the repository).
	"$DISTD" sign "$copy" >/dev/null 2>&1
	# Not pulled under that repository yet: its digest is not handed out for it.
	run --separate-stderr as_job "$JOB_HOME/tcverify" env "$copy@$DIGEST"
	[ "$status" -eq 42 ]
	repository=${copy#"$TCDIST_REGISTRY/"}
	[[ $stderr == *"verified for repository toolchains/agent-small, not ${repository%:v2}"* ]]
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$copy" --json
	[ "$status" -eq 0 ]
	python3 -c 'import json,sys; assert json.loads(sys.argv[1])["downloaded"] is False' "$output"
	for ref in "$copy" "$copy@$DIGEST" "$REF" "$REF@$DIGEST"; do
		run --separate-stderr as_job "$JOB_HOME/tcverify" env "$ref"
		echo "$ref: $status $stderr"
		[ "$status" -eq 0 ]
		[[ $output == *"export GOROOT='$ENTRY/toolchain'"* ]]
	done
}

@test "every refusal through the agent exits 42 with direct mode's message and hint, and installs nothing" {
	as_job "$JOB_HOME/tcverify" pull "$REF" >/dev/null 2>&1
	before=$(agent_store_snapshot)
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$UNSIGNED"
	[ "$status" -eq 42 ]
	[ -z "$output" ]
	direct=$("$TCVERIFY" pull "$UNSIGNED" --store "$WORK/direct" --policy "$STACK_POLICY" 2>&1 >/dev/null || true)
	[ "$stderr" = "$direct" ]
	[[ $stderr == *"signature-present"* ]]
	[ "$(agent_store_snapshot)" = "$before" ]
	# Errors other than refusals keep their codes: a tag that does not exist, a bad reference.
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$TCDIST_REGISTRY/toolchains/agent-none:v1"
	[ "$status" -eq 2 ]
	run --separate-stderr as_job "$JOB_HOME/tcverify" verify "no-host"
	[ "$status" -eq 2 ]
}

@test "attack: the job cannot change, add or remove anything in the agent's store" {
	as_job "$JOB_HOME/tcverify" pull "$REF" >/dev/null 2>&1
	before=$(agent_store_snapshot)
	for attempt in \
		"chmod u+w '$ENTRY/toolchain/bin'" \
		"printf planted >'$ENTRY/toolchain/bin/go'" \
		"rm -rf '$ENTRY'" \
		"mv '$ENTRY' '$JOB_HOME/moved'" \
		"mkdir '$TCDIST_AGENT_STORE/sha256-planted'" \
		"ln -s '$JOB_HOME' '$TCDIST_AGENT_STORE/.staging/planted'" \
		"printf x >'$TCDIST_AGENT_STORE/.tlog/planted'" \
		"printf '{}\n' >>'$TCDIST_AGENT_AUDIT_LOG'" \
		"rm -f '$STACK_AGENT'"; do
		run as_job sh -c "$attempt"
		echo "$attempt: $status $output"
		[ "$status" -ne 0 ]
	done
	[ "$(agent_store_snapshot)" = "$before" ]
	[ -S "$STACK_AGENT" ]
	run setpriv --reuid "$TCDIST_AGENT_USER" --regid "$TCDIST_AGENT_USER" --init-groups \
		"$TCDIST_STACK_DIR/agent/bin/tcverify" fsck --store "$TCDIST_AGENT_STORE" --dry-run
	[[ $output == *"intact $ENTRY"* ]]
}

@test "attack: the job's environment, config file and flags cannot change the agent's policy, trust, store or mode" {
	# A policy that would refuse the release (another signer), a trusted root and CA that are
	# not files of trust material, a store of the job's, offline mode, a config file naming them.
	printf 'version = 1\n[trust_domains."tcdist.test"]\nbundle = "/dev/null"\n[[repository]]\nname = "**"\nsigners = { spiffe_id = "spiffe://tcdist.test/someone-else" }\n' >"$JOB_HOME/policy.toml"
	printf 'policy = "%s"\nstore = "%s"\n' "$JOB_HOME/policy.toml" "$JOB_HOME/store" >"$JOB_HOME/tcverify.toml"
	chown -R "$JOB_USER" "$JOB_HOME"
	# tcverify's own settings the agent would not honour: refused (exit 2), naming the setting,
	# before the agent is asked.
	for setting in \
		TCVERIFY_POLICY="$JOB_HOME/policy.toml" \
		TCVERIFY_TRUST=/dev/null \
		TCVERIFY_STORE="$JOB_HOME/store" \
		TCVERIFY_OFFLINE=true \
		TCVERIFY_CONFIG="$JOB_HOME/tcverify.toml" \
		TCDIST_REGISTRY_CA=/dev/null \
		TCDIST_REGISTRY_PLAIN_HTTP=true \
		TCVERIFY_MAX_UNPACKED_BYTES=1; do
		run --separate-stderr as_job env "$setting" "$JOB_HOME/tcverify" pull "$REF" --json
		echo "$setting: $status $stderr"
		[ "$status" -eq 2 ]
		[ -z "$output" ]
		[[ $stderr == *"is not honoured through the agent"* || $stderr == *"are not honoured through the agent"* ]]
		[[ $stderr == *"hint: "*"direct mode"* ]]
	done
	for flags in "--policy $JOB_HOME/policy.toml" "--trust /dev/null" "--store $JOB_HOME/store" \
		"--offline" "--registry-ca /dev/null" "--max-unpacked-bytes 1"; do
		# shellcheck disable=SC2086 # one flag and its value per entry
		run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$REF" $flags
		echo "$flags: $status $stderr"
		[ "$status" -eq 2 ]
		[[ $stderr == *"error: ${flags%% *} is not honoured through the agent"* ]]
	done
	# Other processes' variables are not tcverify's settings: ignored, as before.
	for setting in SPIFFE_ENDPOINT_SOCKET=unix://"$JOB_HOME/spire.sock" DOCKER_CONFIG="$JOB_HOME"; do
		run --separate-stderr as_job env "$setting" "$JOB_HOME/tcverify" pull "$REF" --json
		echo "$setting: $status $stderr"
		[ "$status" -eq 0 ]
		python3 -c 'import json,sys; o=json.loads(sys.argv[1]); assert o["root"].startswith(sys.argv[2]) and o["log_freshness"]["status"] == "checked", o' \
			"$output" "$TCDIST_AGENT_STORE/"
		run --separate-stderr as_job env "$setting" "$JOB_HOME/tcverify" pull "$UNSIGNED"
		[ "$status" -eq 42 ]
	done
	[ ! -e "$JOB_HOME/store/sha256-${DIGEST#sha256:}" ]
}

@test "16 concurrent pulls of one release through the agent download it once" {
	mapfile -t layers < <(layer_digests "$GO_REF")
	[ "${#layers[@]}" -ge 3 ]
	remove_agent_entry "$GO_DIGEST"
	declare -A before
	# The agent reads blobs through the stack's pull-through cache, its mirror.
	for l in "${layers[@]}"; do before[$l]=$(count_blob_gets "$l" "$TCDIST_CACHE_LOG"); done
	for i in $(seq 16); do
		as_job "$JOB_HOME/tcverify" pull "$GO_REF" >"$WORK/out.$i" 2>"$WORK/err.$i" &
	done
	wait
	for i in $(seq 16); do
		cat "$WORK/err.$i"
		[ -s "$WORK/out.$i" ]
		[ "$(cat "$WORK/out.$i")" = "$(cat "$WORK/out.1")" ]
	done
	for l in "${layers[@]}"; do
		[ "$(($(count_blob_gets "$l" "$TCDIST_CACHE_LOG") - ${before[$l]}))" -eq 1 ]
	done
	as_job "$(cat "$WORK/out.1")/bin/go" version
}

@test "attack: a job holding 4000 idle connections to the socket does not stall another user's pulls" {
	job_tcverify "$STACK_AGENT" pull "$REF" >/dev/null
	limited=$(metric_at "$TCDIST_AGENT_METRICS_URL" tcdist_agent_connections_refused_total reason=per-peer-limit)
	timed_out=$(metric_at "$TCDIST_AGENT_METRICS_URL" tcdist_agent_connections_refused_total reason=request-timeout)
	coproc FLOOD { as_job python3 "$TCDIST_TOP/tests/lib/socket_flood.py" "$STACK_AGENT" 4000; }
	read -r -t 60 opened <&"${FLOOD[0]}"
	[ "$opened" = "open 4000" ]
	# Another user's warm pulls while the flood holds its connections: each answered, well
	# within the 5 s bound (docs/benchmarks.md has the figure).
	for i in 1 2 3; do
		start=$(date +%s%N)
		run --separate-stderr timeout 5 env -i PATH=/usr/bin:/bin TCVERIFY_AGENT="$STACK_AGENT" "$TCVERIFY" pull "$REF"
		echo "warm pull $i during the flood: status $status, $((($(date +%s%N) - start) / 1000000)) ms; $stderr"
		[ "$status" -eq 0 ]
		[[ $output == "$TCDIST_AGENT_STORE/"* ]]
	done
	# The job's connections beyond its cap were refused at once, and the ones it was let open
	# are closed once they have sent no request for request_timeout (5 s).
	[ "$(metric_at "$TCDIST_AGENT_METRICS_URL" tcdist_agent_connections_refused_total reason=per-peer-limit)" -ge $((limited + 4000 - 64)) ]
	wait_for_metric 15 $((timed_out + 64)) "$TCDIST_AGENT_METRICS_URL" tcdist_agent_connections_refused_total reason=request-timeout
	exec {FLOOD[1]}>&-
	read -r -t 30 summary <&"${FLOOD[0]}"
	echo "flood: $summary"
	[ "$summary" = "refused 3936 closed 64 idle 0" ]
	[ "$(metric_at "$TCDIST_AGENT_METRICS_URL" tcdist_agent_connections_open)" -eq 0 ]
}

@test "the agent killed with SIGKILL mid-pull restarts cleanly: no partial entry, the next pull installs it" {
	ref=$TCDIST_REGISTRY/toolchains/agent-go-killed:v1
	copy_image "$GO_REF" "$ref"
	"$DISTD" sign "$ref" >/dev/null 2>&1
	entry=$TCDIST_AGENT_STORE/${GO_DIGEST/:/-}/linux-amd64
	remove_agent_entry "$GO_DIGEST"
	as_job "$JOB_HOME/tcverify" pull "$ref" >/dev/null 2>"$WORK/killed.err" &
	client=$!
	for _ in $(seq 500); do
		if compgen -G "$TCDIST_AGENT_STORE/.staging/*/toolchain/*" >/dev/null; then break; fi
		sleep 0.02
	done
	kill -KILL "$(cat "$TCDIST_AGENT_PIDFILE")"
	status=0
	wait "$client" || status=$?
	[ "$status" -eq 3 ]
	[[ $(cat "$WORK/killed.err") == *"closed the connection without an answer"* ]]
	[ ! -e "$entry" ]
	"$TCDIST_TOP/deploy/local/stack" up >/dev/null 2>&1
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$ref"
	[ "$status" -eq 0 ]
	[ "$output" = "$entry/toolchain" ]
	as_job "$output/bin/go" version
	[ -z "$(ls -A "$TCDIST_AGENT_STORE/.staging")" ]
}

@test "an entry changed behind the store's back is found by fsck and replaced by the next pull" {
	as_job "$JOB_HOME/tcverify" pull "$REF" >/dev/null 2>&1
	# Only root (or the agent's user) can do this.
	chmod u+w "$ENTRY/toolchain/bin/go"
	printf '#!/bin/sh\necho planted\n' >"$ENTRY/toolchain/bin/go"
	chmod 555 "$ENTRY/toolchain/bin/go"
	run --separate-stderr as_job "$JOB_HOME/tcverify" env "$REF"
	[ "$status" -eq 42 ]
	[[ $stderr == *"bin/go is not the file that was installed"* ]]
	run setpriv --reuid "$TCDIST_AGENT_USER" --regid "$TCDIST_AGENT_USER" --init-groups \
		"$TCDIST_STACK_DIR/agent/bin/tcverify" fsck --store "$TCDIST_AGENT_STORE"
	[ "$status" -eq 42 ]
	[[ $output == *"quarantined $ENTRY to "* ]]
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$REF" --json
	[ "$status" -eq 0 ]
	python3 -c 'import json,sys; assert json.loads(sys.argv[1])["downloaded"] is True' "$output"
	run --separate-stderr as_job "$JOB_HOME/tcverify" env "$REF"
	[ "$status" -eq 0 ]
}

@test "an agent checks its store on its fsck_interval, and SIGTERM removes its socket" {
	# A second agent (as root, beside the stack's) with a one-second schedule.
	dir=$BATS_TEST_TMPDIR/agent2
	mkdir -p "$dir"
	cat >"$dir/agent.toml" <<EOF
socket = "$dir/agent.sock"
store = "$dir/store"
policy = "$STACK_POLICY"
trust = "$STACK_TRUST"
fsck_interval = "1s"
[registry]
ca = "$TCDIST_REGISTRY_CA"
docker_config = "$DOCKER_CONFIG"
EOF
	"$TCVERIFY" agent --config "$dir/agent.toml" 2>"$dir/agent.log" &
	agent=$!
	for _ in $(seq 100); do [[ -S $dir/agent.sock ]] && break; sleep 0.05; done
	root=$(job_tcverify "$dir/agent.sock" pull "$REF" 2>/dev/null)
	chmod u+w "$root/bin/go"
	printf '#!/bin/sh\necho planted\n' >"$root/bin/go"
	# The entry moves out before the round's report is written: wait for the report.
	for _ in $(seq 200); do grep -q "fsck: quarantined " "$dir/agent.log" && break; sleep 0.05; done
	kill -TERM "$agent"
	wait "$agent"
	cat "$dir/agent.log"
	[ ! -e "$root" ]
	grep -q "fsck: quarantined $(dirname "$root"): the tree differs from its manifest: bin/go: mode 0755 instead of 0555, content differs" "$dir/agent.log"
	[ -n "$(ls "$dir/store/.quarantine")" ]
	[ ! -e "$dir/agent.sock" ]
}

@test "the agent's metrics count requests by outcome, refusals by rule, cache hits and bytes" {
	metric() {
		curl -fsS "$TCDIST_AGENT_METRICS_URL" | awk -v name="$1" '$1 == name { print $2 }'
	}
	as_job "$JOB_HOME/tcverify" pull "$REF" >/dev/null 2>&1
	before_ok=$(metric 'tcdist_agent_requests_total{command="pull",outcome="ok"}')
	before_refused=$(metric 'tcdist_agent_refusals_total{rule="signature-present"}')
	before_hits=$(metric 'tcdist_agent_verification_cache_total{result="hit"}')
	as_job "$JOB_HOME/tcverify" pull "$REF" >/dev/null 2>&1
	run as_job "$JOB_HOME/tcverify" pull "$UNSIGNED"
	[ "$status" -eq 42 ]
	[ "$(metric 'tcdist_agent_requests_total{command="pull",outcome="ok"}')" = "$((before_ok + 1))" ]
	[ "$(metric 'tcdist_agent_refusals_total{rule="signature-present"}')" = "$((${before_refused:-0} + 1))" ]
	[ "$(metric 'tcdist_agent_verification_cache_total{result="hit"}')" -gt "${before_hits:-0}" ]
	[ "$(metric tcdist_agent_downloaded_bytes_total)" -gt 0 ]
	[ "$(metric 'tcdist_agent_request_duration_seconds_count{command="pull"}')" -gt 0 ]
	curl -fsS "$TCDIST_AGENT_METRICS_URL" | grep -qx '# TYPE tcdist_agent_requests_total counter'
	run curl -fsS "${TCDIST_AGENT_METRICS_URL%/metrics}/other"
	[ "$status" -ne 0 ]
}

@test "the agent's audit log holds every decision and its chain verifies" {
	as_job "$JOB_HOME/tcverify" pull "$REF" >/dev/null 2>&1
	run as_job "$JOB_HOME/tcverify" pull "$UNSIGNED"
	[ "$status" -eq 42 ]
	tail -n 2 "$TCDIST_AGENT_AUDIT_LOG" | python3 -c '
import json, sys
accept, reject = (json.loads(line) for line in sys.stdin)
assert accept["decision"] == "accept" and reject["decision"] == "reject", (accept, reject)
assert reject["rule"] == "signature-present", reject'
	run "$TCVERIFY" audit verify "$TCDIST_AGENT_AUDIT_LOG"
	[ "$status" -eq 0 ]
}

# new_job_id: a Buildkite-like job ID (a UUID) no earlier run used.
new_job_id() {
	cat /proc/sys/kernel/random/uuid
}

# report_as_job ID [FLAGS...]: `tcverify report` for job ID as the job's user.
report_as_job() {
	local id=$1
	shift
	as_job "$JOB_HOME/tcverify" report --job-id "$id" --pipeline app "$@"
}

@test "a job pulls with its ID and reports once; a second report and one for a job never served are refused" {
	id=$(new_job_id)
	metric() {
		curl -fsS "$TCDIST_AGENT_METRICS_URL" | awk -v name="$1" '$1 == name { print $2 }'
	}
	passed=$(metric 'tcdist_agent_outcomes_total{arm="none",result="passed"}')
	duplicates=$(metric 'tcdist_agent_report_refusals_total{reason="duplicate"}')
	unknown=$(metric 'tcdist_agent_report_refusals_total{reason="unknown-job"}')
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$REF" --job-id "$id" --retry 0
	[ "$status" -eq 0 ]
	[ "$output" = "$ENTRY/toolchain" ]
	run --separate-stderr report_as_job "$id" --exit-status 0
	echo "$status $output $stderr"
	[ "$status" -eq 0 ]
	[ "$output" = "job $id: passed, recorded (no rollout was running for its pull)" ]
	# Once per job: the second report is refused, whatever it says.
	run --separate-stderr report_as_job "$id" --exit-status 1
	[ "$status" -eq 2 ]
	[ -z "$output" ]
	[[ $stderr == *"tcverify: error: job $id: its outcome is recorded already (passed); a job reports once"* ]]
	# A job the agent never served cannot report.
	other=$(new_job_id)
	run --separate-stderr report_as_job "$other" --exit-status 0
	[ "$status" -eq 2 ]
	[[ $stderr == *"job $other: this agent served no pull for this job"* ]]
	[[ $stderr == *"tcverify: hint: report the job ID the pull named"* ]]
	# With --if-served (the hooks), a job the agent is not waiting on is left alone.
	run --separate-stderr report_as_job "$other" --exit-status 0 --if-served --json
	[ "$status" -eq 0 ]
	python3 -c 'import json,sys; o=json.loads(sys.argv[1]); assert o["recorded"] is False and o["reason"] == "unknown-job", o' "$output"
	# A report names the attempt its pull named.
	retried=$(new_job_id)
	as_job "$JOB_HOME/tcverify" pull "$REF" --job-id "$retried" --retry 1 >/dev/null 2>&1
	run --separate-stderr report_as_job "$retried" --exit-status 0
	[ "$status" -eq 2 ]
	[[ $stderr == *"pulled as attempt 1 (retry), not 0"* ]]
	run --separate-stderr report_as_job "$retried" --exit-status -1 --retry 1 --cancelled
	[ "$status" -eq 0 ]
	[[ $output == "job $retried: cancelled, recorded "* ]]
	[ "$(metric 'tcdist_agent_outcomes_total{arm="none",result="passed"}')" = "$((${passed:-0} + 1))" ]
	[ "$(metric 'tcdist_agent_report_refusals_total{reason="duplicate"}')" = "$((${duplicates:-0} + 1))" ]
	[ "$(metric 'tcdist_agent_report_refusals_total{reason="unknown-job"}')" = "$((${unknown:-0} + 1))" ]
	[ "$(metric 'tcdist_agent_retried_outcomes_total{arm="none",result="cancelled"}')" -ge 1 ]
}

@test "report has no direct mode, and a job's ID and pipeline are checked before the agent is asked" {
	run --separate-stderr env -u TCVERIFY_AGENT "$TCVERIFY" report --job-id j-1 --pipeline app --exit-status 0
	[ "$status" -eq 2 ]
	[[ $stderr == *"tcverify report has no direct mode: outcomes go to the build-host agent"* ]]
	run --separate-stderr env -u TCVERIFY_AGENT "$TCVERIFY" pull "$REF" --job-id j-1 --store "$WORK/direct"
	[ "$status" -eq 2 ]
	[[ $stderr == *"--job-id is for the build-host agent"* ]]
	for id in $'j\n1' $'j\e[2J' "j 1" "$(printf 'j%.0s' $(seq 256))"; do
		run --separate-stderr report_as_job "$id" --exit-status 0
		[ "$status" -eq 2 ]
		[[ $stderr == *"--job-id"* ]]
	done
}

# metric_at URL NAME [LABEL=VALUE...]: the value at URL (Prometheus text) of NAME with exactly
# these labels, in any order; 0 when there is none.
metric_at() {
	curl -fsS "$1" | python3 -c '
import re, sys
name, want = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
for line in sys.stdin:
    m = re.fullmatch(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)", line.strip())
    if m and m[1] == name and dict(re.findall(r"(\w+)=\"([^\"]*)\"", m[2] or "")) == want:
        print(int(float(m[3])))
        break
else:
    print(0)' "${@:2}"
}

# wait_for_metric SECONDS WANT URL NAME [LABEL=VALUE...]: until `metric_at URL NAME…` is at
# least WANT, for at most SECONDS.
wait_for_metric() {
	local seconds=$1 want=$2 got i
	shift 2
	for ((i = 0; i < seconds * 5; i++)); do
		got=$(metric_at "$@")
		((got >= want)) && return 0
		sleep 0.2
	done
	echo "$*: $got, not $want or more" >&2
	tail -n 5 "$TCDIST_AGENT_LOG" >&2
	return 1
}

@test "an outcome of a job served during a running rollout is spooled and sent with the agent's SVID; the daemon drops it when the rollout is not on its lines" {
	channel=c-outcome-$(date +%s%N)
	make_job_tree "$WORK/tree2" go1.26.8-agent-candidate
	candidate=$("$DISTD" publish "$WORK/tree2" --ref "${REF%:v1}:v2")
	candidate=${candidate##*$'\n'}
	TCVERIFY_POLICY=$STACK_POLICY "$DISTD" promote "${REF%:v1}@$DIGEST" --channel "$channel" 2>/dev/null
	TCVERIFY_POLICY=$STACK_POLICY "$DISTD" rollout start "${REF%:v1}@$candidate" --channel "$channel" --share 50% 2>/dev/null
	id=$(new_job_id)
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "${REF%:v1}:$channel" --job-id "$id" --json
	[ "$status" -eq 0 ]
	sent=$(metric_at "$TCDIST_AGENT_METRICS_URL" tcdist_agent_outcomes_sent_total)
	dropped=$(metric_at "$TCDIST_AGENT_METRICS_URL" tcdist_agent_outcomes_dropped_by_daemon_total reason=not-in-rollout)
	daemon_dropped=$(metric_at "$TCDIST_SERVER_OPS/metrics" distd_rollout_outcomes_dropped_total reason=not-in-rollout)
	run --separate-stderr report_as_job "$id" --exit-status 3
	[ "$status" -eq 0 ]
	[[ $output == "job $id: failed, recorded ("*" arm of channel \"$channel\" rollout "*", stage 1)" ]]
	spool=$TCDIST_AGENT_STORE/.outcomes/outcomes.jsonl
	[ "$(stat -c %U "$spool")" = "$TCDIST_AGENT_USER" ]
	# The job cannot write the spool.
	run as_job sh -c "printf '{}\n' >>'$spool'"
	[ "$status" -ne 0 ]
	# Within a round (2 s) the agent sends it to the stack's daemon, which has no rollout of this
	# repository's channel to count it for: dropped, and said so to the agent.
	wait_for_metric 20 $((sent + 1)) "$TCDIST_AGENT_METRICS_URL" tcdist_agent_outcomes_sent_total
	wait_for_metric 5 $((dropped + 1)) "$TCDIST_AGENT_METRICS_URL" tcdist_agent_outcomes_dropped_by_daemon_total reason=not-in-rollout
	wait_for_metric 5 $((daemon_dropped + 1)) "$TCDIST_SERVER_OPS/metrics" distd_rollout_outcomes_dropped_total reason=not-in-rollout
	# Answered for, it is not sent again: the spool no longer holds it.
	for _ in $(seq 50); do
		grep -qF "\"job_id\":\"$id\"" "$spool" || break
		sleep 0.2
	done
	run grep -qF "\"job_id\":\"$id\"" "$spool"
	[ "$status" -ne 0 ]
}

@test "a job served during a rollout on the stack daemon's line reaches the daemon, which keeps its outcome for the agent's arm and stage" {
	[[ -n ${TCDIST_SERVER_LINE:-} ]] || skip "the stack's daemon has no release line (no Go source found)"
	# The daemon takes outcomes for its line's channel only: a small current release and a
	# candidate of its repository, and a rollout that teardown aborts.
	repo=$TCDIST_SERVER_REPOSITORY
	# shellcheck disable=SC2153 # stack.env sets TCDIST_SERVER_LINES
	SERVER_CHANNEL=$(sed -n 's/^channels = \["\([^"]*\)".*/\1/p' "$TCDIST_SERVER_LINES")
	[ -n "$SERVER_CHANNEL" ]
	make_job_tree "$WORK/line-current" go1.26.8-agent-line-current
	make_job_tree "$WORK/line-candidate" go1.26.8-agent-line-candidate
	current=$("$DISTD" publish "$WORK/line-current" --ref "$repo:agent-current")
	current=${current##*$'\n'}
	candidate=$("$DISTD" publish "$WORK/line-candidate" --ref "$repo:agent-candidate")
	candidate=${candidate##*$'\n'}
	TCVERIFY_POLICY=$STACK_POLICY "$DISTD" promote "$repo@$current" --channel "$SERVER_CHANNEL" 2>/dev/null
	ABORT_ROLLOUT=$repo
	TCVERIFY_POLICY=$STACK_POLICY "$DISTD" rollout start "$repo@$candidate" --channel "$SERVER_CHANNEL" --share 50% 2>/dev/null
	id=$(new_job_id)
	run --separate-stderr as_job "$JOB_HOME/tcverify" pull "$repo:$SERVER_CHANNEL" --job-id "$id" --json
	[ "$status" -eq 0 ]
	arm=$(python3 -c 'import json,sys; print({"candidate": "candidate", "current": "control"}[json.loads(sys.argv[1])["rollout"]["arm"]])' "$output")
	served=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["digest"])' "$output")
	want=$current
	[ "$arm" = control ] || want=$candidate
	[ "$served" = "$want" ]
	labels=(line="$TCDIST_SERVER_LINE" channel="$SERVER_CHANNEL" arm="$arm" result=failed)
	counted=$(metric_at "$TCDIST_SERVER_OPS/metrics" distd_rollout_outcomes_total "${labels[@]}")
	run --separate-stderr report_as_job "$id" --exit-status 3
	[ "$status" -eq 0 ]
	# Within a round (2 s) the agent sends it with its SVID; the daemon counts it for the arm the
	# plan gives the agent's SPIFFE ID.
	wait_for_metric 20 $((counted + 1)) "$TCDIST_SERVER_OPS/metrics" distd_rollout_outcomes_total "${labels[@]}"
	# It keeps the agent's record for the stage: what the agent served the job, and how it ended.
	cat "$TCDIST_SERVER_STATE/rollouts/$TCDIST_SERVER_LINE/$SERVER_CHANNEL"/*/stage-1.jsonl |
		grep -F "\"job_id\":\"$id\"" | python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
assert len(lines) == 1, lines
record = json.loads(lines[0])
channel, served, arm = sys.argv[1:4]
assert record["host_id"] == "spiffe://tcdist.test/buildkite/agent", record
assert record["channel"] == channel and record["release"] == served and record["arm"] == arm, record
assert record["stage"] == 1 and record["sequence"] >= 2, record
assert record["result"] == "failed" and record["exit_status"] == 3 and record["retry"] == 0, record
assert record["pipeline"] == "app", record
' "$SERVER_CHANNEL" "$served" "$arm"
}

@test "pre-exit hook: reports the job's outcome once; with the agent down or its socket dead it exits 0 with one line" {
	# The hooks installed as an operator would, readable by the job's user.
	home=$(mktemp -d /tmp/tcdist-hooks.XXXXXX)
	chmod 755 "$home"
	cp -r "$TCDIST_TOP/deploy/buildkite" "$home/buildkite"
	printf 'socket=%s\ntcverify=%s\n' "$STACK_AGENT" "$JOB_HOME/tcverify" >"$home/buildkite/tcdist.conf"
	hook=$home/buildkite/hooks/pre-exit
	id=$(new_job_id)
	pre_exit() {
		as_job env BUILDKITE=true BUILDKITE_JOB_ID="$id" BUILDKITE_RETRY_COUNT=0 \
			BUILDKITE_PIPELINE_SLUG=app "$@" bash -c 'set -euo pipefail; . "$0"; echo "status $?"' "$hook"
	}
	as_job "$JOB_HOME/tcverify" pull "$REF" --job-id "$id" >/dev/null 2>&1
	run --separate-stderr pre_exit BUILDKITE_COMMAND_EXIT_STATUS=-1 BUILDKITE_JOB_CANCELLED=true
	echo "$output / $stderr"
	[ "$status" -eq 0 ]
	[ "$output" = "status 0" ]
	[ "$stderr" = "tcdist: outcome of job $id reported to the tcdist agent: cancelled" ]
	# Again (another pre-exit hook after this one): left alone, quietly.
	run --separate-stderr pre_exit BUILDKITE_COMMAND_EXIT_STATUS=0
	[ "$status" -eq 0 ]
	[ "$output" = "status 0" ]
	[ -z "$stderr" ]
	run --separate-stderr report_as_job "$id" --exit-status 0
	[ "$status" -eq 2 ]
	[[ $stderr == *"recorded already (cancelled)"* ]]
	# A job the agent served nothing: quiet.
	id=$(new_job_id)
	run --separate-stderr pre_exit BUILDKITE_COMMAND_EXIT_STATUS=0
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
	# The agent down: no socket at all, then a socket nobody listens on.
	printf 'socket=%s\ntcverify=%s\n' "$home/none.sock" "$JOB_HOME/tcverify" >"$home/buildkite/tcdist.conf"
	run --separate-stderr pre_exit BUILDKITE_COMMAND_EXIT_STATUS=0
	[ "$status" -eq 0 ]
	[ "$output" = "status 0" ]
	[[ $stderr == "tcdist: outcome of job $id not reported (exit 3): the agent at $home/none.sock: cannot connect: "* ]]
	[ "$(wc -l <<<"$stderr")" -eq 1 ]
	python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$home/dead.sock"
	chmod 777 "$home/dead.sock"
	printf 'socket=%s\ntcverify=%s\n' "$home/dead.sock" "$JOB_HOME/tcverify" >"$home/buildkite/tcdist.conf"
	run --separate-stderr pre_exit BUILDKITE_COMMAND_EXIT_STATUS=1
	[ "$status" -eq 0 ]
	[[ $stderr == "tcdist: outcome of job $id not reported (exit 3): the agent at $home/dead.sock: cannot connect: Connection refused"* ]]
	[ "$(wc -l <<<"$stderr")" -eq 1 ]
	rm -rf "$home"
}
