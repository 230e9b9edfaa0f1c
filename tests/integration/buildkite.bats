#!/usr/bin/env bats
# The Buildkite agent hook and plugin (deploy/buildkite) against the real local stack and its
# build-host agent. The hooks are installed into a directory of their own with a tcdist.conf
# naming the stack's agent socket and tcverify, as an operator would. Each job sources the
# hooks in a fresh bash the way the agent's hook wrapper does (`. hook`, then the hook's status
# is the job's), and must either export the toolchain's job environment or fail the job with
# tcverify's exit code, a clear message and a build annotation. The job's environment and the
# step's options choose the release and platform, never what is trusted.
# `buildkite-agent` is a recording test double (the agent is not part of the stack).

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/buildkite
	mkdir -p "$WORK"

	make_job_tree "$WORK/small" go1.26.8-bk
	export SMALL=$TCDIST_REGISTRY/toolchains/bk-small:v1
	SMALL_DIGEST=$("$DISTD" publish "$WORK/small" --ref "$SMALL")
	export SMALL_DIGEST=${SMALL_DIGEST##*$'\n'}
	make_job_tree "$WORK/other" go1.26.9-bk
	export OTHER=$TCDIST_REGISTRY/toolchains/bk-other:v1
	OTHER_DIGEST=$("$DISTD" publish "$WORK/other" --ref "$OTHER")
	export OTHER_DIGEST=${OTHER_DIGEST##*$'\n'}

	python3 "$TCDIST_TOP/tests/lib/hostile_image.py" dotdot "$WORK/dotdot" v1
	export HOSTILE=$TCDIST_REGISTRY/toolchains/bk-dotdot:v1
	push_layout "$WORK/dotdot" v1 "$HOSTILE"

	export FAKE_AGENT_DIR=$WORK/fake-agent
	mkdir -p "$FAKE_AGENT_DIR"
	cat >"$FAKE_AGENT_DIR/buildkite-agent" <<'EOF'
#!/bin/sh
# Test double for the Buildkite agent CLI: records each call (its arguments on one line; a
# multi-line body adds lines), then a line "--".
printf '%s\n' "$*" -- >>"${FAKE_AGENT_LOG:?}"
EOF
	chmod 755 "$FAKE_AGENT_DIR/buildkite-agent"
}

setup() {
	load helpers
	export FAKE_AGENT_LOG=$BATS_TEST_TMPDIR/agent-calls
	# The PATH a job starts with: the agent CLI (double) and this machine's tools.
	export JOB_PATH=$FAKE_AGENT_DIR:$PATH
	install_hooks "$TCVERIFY"
}

# install_hooks TCVERIFY: deploy/buildkite installed under the test's directory, with a
# tcdist.conf (beside the agent hook and beside the plugin) naming the stack's agent socket
# and TCVERIFY. Sets AGENT_HOOK and PLUGIN_HOOK.
install_hooks() {
	local home=$BATS_TEST_TMPDIR/installed
	rm -rf "$home"
	cp -r "$TCDIST_TOP/deploy/buildkite" "$home"
	printf 'socket=%s\ntcverify=%s\n' "$STACK_AGENT" "$1" | tee "$home/tcdist.conf" >"$home/plugin/tcdist.conf"
	AGENT_HOOK=$home/hooks/environment
	PLUGIN_HOOK=$home/plugin/hooks/environment
}

# job [NAME=VALUE...] -- HOOK...: one job in a fresh bash with the job environment given,
# sourcing each HOOK in turn as the agent does until one fails. Then, from a child process (so
# only exported variables count), it prints the environment the job's command would see, runs
# `go version` if all hooks passed, and exits with the failing hook's status. JOB_STRICT=1
# runs it under `set -euo pipefail`, like an agent whose shell is `bash -e -c` or an existing
# hook that sources ours.
job() {
	local -a vars=()
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	# shellcheck disable=SC2016 # the job script expands in the job's bash
	run --separate-stderr env -u GOROOT -u GOEXPERIMENT -u GOTOOLCHAIN -u X_GO_RUNTIME_ROOT \
		-u TCVERIFY_POLICY -u TCVERIFY_TRUST -u TCVERIFY_STORE -u TCVERIFY -u TCDIST_TOOLCHAIN \
		-u BUILDKITE_PLUGIN_NAME PATH="$JOB_PATH" "${vars[@]}" bash -c '
		if [ -n "${JOB_STRICT:-}" ]; then set -euo pipefail; fi
		status=0
		for hook in "$@"; do
			. "$hook"
			status=$?
			[ "$status" -eq 0 ] || break
		done
		env | grep -E "^(X_GO_RUNTIME_ROOT|GOROOT|GOTOOLCHAIN|PATH)=" | sort
		if [ "$status" -eq 0 ]; then
			echo "go=$(command -v go)"
			go version
		fi
		exit "$status"' job "$@"
	echo "status $status"
	echo "stdout: $output"
	echo "stderr: $stderr"
}

# value NAME: NAME's value in what job printed ("" when absent).
value() {
	sed -n "s/^$1=//p" <<<"$output"
}

# root_of DIGEST: where the agent installs that release for this platform.
root_of() {
	echo "$TCDIST_AGENT_STORE/${1/:/-}/linux-amd64/toolchain"
}

# annotations: the number of buildkite-agent calls the double recorded.
agent_calls() {
	if [[ -f $FAKE_AGENT_LOG ]]; then grep -c '^--$' "$FAKE_AGENT_LOG"; else echo 0; fi
}

# assert_job_env ROOT: the job sees ROOT's environment and runs ROOT's go.
assert_job_env() {
	local root=$1
	[ "$(value GOROOT)" = "$root" ]
	[ "$(value X_GO_RUNTIME_ROOT)" = "$root" ]
	[ "$(value GOTOOLCHAIN)" = local ]
	[ "$(value PATH)" = "$root/bin:$JOB_PATH" ]
	[ "$(value go)" = "$root/bin/go" ]
	[ "${lines[-1]}" = "small-go version" ]
}

# assert_nothing_exported: a failed job's environment is untouched.
assert_nothing_exported() {
	[ -z "$(value GOROOT)" ]
	[ -z "$(value X_GO_RUNTIME_ROOT)" ]
	[ -z "$(value GOTOOLCHAIN)" ]
	[ "$(value PATH)" = "$JOB_PATH" ]
}

@test "plugin hook: exports GOROOT, X_GO_RUNTIME_ROOT, PATH, GOTOOLCHAIN; go runs from the agent's store" {
	job BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" -- "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST")"
	[[ $stderr == *"tcdist: using toolchain $SMALL ($SMALL_DIGEST)"* ]]
	[ "$(agent_calls)" -eq 0 ]
}

@test "plugin hook: the platform option is passed to the agent" {
	job BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" BUILDKITE_PLUGIN_TCDIST_PLATFORM=linux/amd64 -- "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST")"
	job BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" BUILDKITE_PLUGIN_TCDIST_PLATFORM=linux/riscv64 -- "$PLUGIN_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"no toolchain for linux/riscv64"* ]]
	assert_nothing_exported
}

@test "attack: a step's policy, trust or store option fails the job (exit 2) before any pull" {
	printf 'version = 1\n[[repository]]\nname = "**"\nsigners = { spiffe_id = "%s" }\n' \
		"$TCDIST_SIGNER_ID" >"$BATS_TEST_TMPDIR/policy.toml"
	for option in POLICY TRUST STORE; do
		job BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
			"BUILDKITE_PLUGIN_TCDIST_$option=$BATS_TEST_TMPDIR/policy.toml" -- "$PLUGIN_HOOK"
		[ "$status" -eq 2 ]
		[[ $stderr == *"configuration error (exit 2): the plugin has no \`${option,,}\` option: the policy, trusted root and store are the build-host agent's"* ]]
		[[ $stderr != *"verifying and installing"* ]]
		assert_nothing_exported
	done
}

@test "attack: the job's environment cannot change tcverify, the agent, the library, the policy, trust or store" {
	# A tcverify, a library and an agent socket of the job's: none of them may be used.
	printf '#!/bin/sh\ntouch %s/planted-ran\n' "$BATS_TEST_TMPDIR" >"$BATS_TEST_TMPDIR/tcverify"
	chmod 755 "$BATS_TEST_TMPDIR/tcverify"
	printf 'tcdist_use_toolchain() { touch %s/planted-lib; }\n' "$BATS_TEST_TMPDIR" >"$BATS_TEST_TMPDIR/lib.bash"
	printf 'version = 1\n[[repository]]\nname = "**"\nsigners = { spiffe_id = "spiffe://tcdist.test/someone-else" }\n' \
		>"$BATS_TEST_TMPDIR/policy.toml"
	for setting in \
		TCVERIFY="$BATS_TEST_TMPDIR/tcverify" \
		TCDIST_BUILDKITE_LIB="$BATS_TEST_TMPDIR/lib.bash" \
		TCVERIFY_AGENT="$BATS_TEST_TMPDIR/agent.sock" \
		TCVERIFY_POLICY="$BATS_TEST_TMPDIR/policy.toml" \
		TCVERIFY_TRUST=/dev/null \
		TCVERIFY_STORE="$BATS_TEST_TMPDIR/store" \
		TCVERIFY_OFFLINE=true \
		TCVERIFY_CONFIG="$BATS_TEST_TMPDIR/policy.toml" \
		TCDIST_REGISTRY_CA=/dev/null \
		DOCKER_CONFIG="$BATS_TEST_TMPDIR"; do
		job "$setting" TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
		[ "$status" -eq 0 ]
		assert_job_env "$(root_of "$SMALL_DIGEST")"
		job "$setting" TCDIST_TOOLCHAIN="$HOSTILE" -- "$AGENT_HOOK"
		[ "$status" -eq 42 ]
	done
	[ ! -e "$BATS_TEST_TMPDIR/planted-ran" ]
	[ ! -e "$BATS_TEST_TMPDIR/planted-lib" ]
	[ ! -e "$BATS_TEST_TMPDIR/store" ]
}

@test "plugin hook vendored as ./deploy/buildkite/plugin: options named after BUILDKITE_PLUGIN_NAME" {
	# The agent names a vendored plugin after its directory: "plugin".
	job BUILDKITE_PLUGIN_NAME=PLUGIN BUILDKITE_PLUGIN_PLUGIN_TOOLCHAIN="$SMALL" -- "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST")"
}

@test "plugin hook without the toolchain option: exit 2 naming the option, annotated" {
	job -- "$PLUGIN_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"configuration error (exit 2): the plugin's \`toolchain\` option is required (BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN is not set)"* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist "* ]]
}

@test "agent hook, linked into an agent hooks dir: exports the job environment" {
	mkdir -p "$BATS_TEST_TMPDIR/agent/hooks"
	ln -s "$AGENT_HOOK" "$BATS_TEST_TMPDIR/agent/hooks/environment"
	job TCDIST_TOOLCHAIN="$SMALL" -- "$BATS_TEST_TMPDIR/agent/hooks/environment"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST")"
	[ "$(agent_calls)" -eq 0 ]
}

@test "agent hook without TCDIST_TOOLCHAIN does nothing" {
	job -- "$AGENT_HOOK"
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
	[ "$(value PATH)" = "$JOB_PATH" ]
	[ -z "$(value GOROOT)" ]
	[ -z "$(value X_GO_RUNTIME_ROOT)" ]
	[ "$(agent_calls)" -eq 0 ]
}

@test "GOEXPERIMENT differs from the toolchain's baseline: exit 42 with both values, annotated" {
	job TCDIST_TOOLCHAIN="$SMALL" GOEXPERIMENT=arenas -- "$AGENT_HOOK"
	[ "$status" -eq 42 ]
	[[ $stderr == *"tcdist: toolchain $SMALL failed verification (exit 42): "*'GOEXPERIMENT mismatch: the job has "arenas", the toolchain was built for ""'* ]]
	[[ $stderr == *"Do not retry"* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist **tcdist**: toolchain \`$SMALL\` failed verification (exit 42)"* ]]
	grep -qF 'the job has "arenas", the toolchain was built for ""' "$FAKE_AGENT_LOG"
}

@test "hostile release (entry with '..'): exit 42, do-not-retry message, annotation, nothing installed" {
	before=$(store_snapshot "$TCDIST_AGENT_STORE")
	job BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$HOSTILE" BUILDKITE_LABEL=":go: build" -- "$PLUGIN_HOOK"
	[ "$status" -eq 42 ]
	[[ $stderr == *"tcdist: toolchain $HOSTILE failed verification (exit 42): "*"entry \"toolchain/../escaped\" refused: path contains '..'"* ]]
	[[ $stderr == *"Do not retry"* ]]
	[[ $stderr != *retryable* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist **tcdist**: toolchain \`$HOSTILE\` failed verification (exit 42) in step \":go: build\"." ]]
	grep -qF "path contains '..'" "$FAKE_AGENT_LOG"
	[ "$(store_snapshot "$TCDIST_AGENT_STORE")" = "$before" ]
}

@test "registry unavailable: exit 3 and the message says retryable" {
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	job TCDIST_TOOLCHAIN="127.0.0.1:$port/toolchains/bk-small:v1" -- "$AGENT_HOOK"
	[ "$status" -eq 3 ]
	[[ $stderr == *"tcdist: toolchain 127.0.0.1:$port/toolchains/bk-small:v1 could not be fetched: registry or network unavailable (exit 3, retryable): "* ]]
	[[ $stderr == *"retrying the job later may succeed"* ]]
	[[ $stderr != *"failed verification"* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist "*"(exit 3, retryable)"* ]]
}

@test "the agent is not running: exit 3, retryable, naming the socket" {
	printf 'socket=%s\ntcverify=%s\n' "$BATS_TEST_TMPDIR/none.sock" "$TCVERIFY" >"$BATS_TEST_TMPDIR/installed/tcdist.conf"
	job TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
	[ "$status" -eq 3 ]
	[[ $stderr == *"the agent at $BATS_TEST_TMPDIR/none.sock: cannot connect"* ]]
	[[ $stderr == *"retryable"* ]]
	assert_nothing_exported
}

@test "tcverify missing, or tcdist.conf malformed: exit 2 naming the file" {
	install_hooks /nonexistent/tcverify
	job TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"tcverify not found at /nonexistent/tcverify"* ]]
	assert_nothing_exported
	printf 'socket=relative.sock\n' >"$BATS_TEST_TMPDIR/installed/tcdist.conf"
	job TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"tcdist.conf: not a setting: socket=relative.sock"* ]]
	assert_nothing_exported
}

@test "plugin after the agent hook: the plugin's toolchain wins and only its bin is on PATH" {
	job TCDIST_TOOLCHAIN="$SMALL" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$OTHER" -- \
		"$AGENT_HOOK" "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$OTHER_DIGEST")"
	[[ $(value PATH) != *"${SMALL_DIGEST/:/-}"* ]]
}

@test "under set -euo pipefail: a good toolchain is exported, a refused one fails the job with 42" {
	job JOB_STRICT=1 TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST")"

	job JOB_STRICT=1 BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$HOSTILE" -- "$PLUGIN_HOOK"
	[ "$status" -eq 42 ]
	[[ $stderr == *"failed verification (exit 42)"* ]]
	# errexit ends the job right at the failing hook: nothing after it ran.
	[ -z "$output" ]
}

@test "a tag moved after the pull: the job gets the digest it verified" {
	# Stand-in for a concurrent job on this host moving the tag between `pull` and `env`:
	# a tcverify wrapper that, after a pull of the tag, has the agent install another release
	# under it.
	moving=$TCDIST_REGISTRY/toolchains/bk-moving:v1
	cat >"$BATS_TEST_TMPDIR/tcverify" <<EOF
#!/bin/sh
"$TCVERIFY" "\$@" || exit \$?
if [ "\$1" = pull ]; then
	# The hook runs tcverify with an empty environment; publishing needs the stack's.
	. "$TCDIST_STACK_DIR/stack.env"
	"$DISTD" publish "$WORK/other" --ref "$moving" >/dev/null 2>&1 &&
	env -i PATH=/usr/bin:/bin TCVERIFY_AGENT="$STACK_AGENT" "$TCVERIFY" pull "$moving" >/dev/null 2>&1
fi
EOF
	chmod 755 "$BATS_TEST_TMPDIR/tcverify"
	install_hooks "$BATS_TEST_TMPDIR/tcverify"
	"$DISTD" publish "$WORK/small" --ref "$moving" >/dev/null
	job TCDIST_TOOLCHAIN="$moving" -- "$AGENT_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST")"
	# The tag did move: unpinned, tcverify env would now give the other release.
	run --separate-stderr job_tcverify "$STACK_AGENT" env "$moving"
	[ "$status" -eq 0 ]
	[[ $output == *"${OTHER_DIGEST/:/-}"* ]]
}

@test "tcverify env output other than export lines is refused, not evaluated" {
	cat >"$BATS_TEST_TMPDIR/tcverify" <<EOF
#!/bin/sh
if [ "\$1" = env ]; then
	echo "export GOROOT='/x'; touch '$BATS_TEST_TMPDIR/evaluated' #'"
	exit 0
fi
exec "$TCVERIFY" "\$@"
EOF
	chmod 755 "$BATS_TEST_TMPDIR/tcverify"
	install_hooks "$BATS_TEST_TMPDIR/tcverify"
	job TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
	[ "$status" -eq 1 ]
	[[ $stderr == *"tcverify failed (exit 1): unexpected output from tcverify env: export GOROOT='/x'; touch"* ]]
	[ ! -e "$BATS_TEST_TMPDIR/evaluated" ]
	assert_nothing_exported
}

@test "plugin.yml declares exactly the options the plugin hook reads" {
	python3 -c 'import yaml' 2>/dev/null || skip "python3 yaml module not installed"
	python3 - "$TCDIST_TOP/deploy/buildkite/plugin/plugin.yml" <<'PY'
import sys, yaml
p = yaml.safe_load(open(sys.argv[1]))
assert p["name"] == "tcdist", p
assert p["requirements"] == ["tcverify"], p
c = p["configuration"]
assert set(c["properties"]) == {"toolchain", "platform"}, c
assert all(v["type"] == "string" for v in c["properties"].values()), c
assert c["required"] == ["toolchain"], c
assert c["additionalProperties"] is False, c
PY
	for option in TOOLCHAIN PLATFORM; do
		grep -q "var=\${prefix}$option" "$PLUGIN_HOOK"
	done
}

@test "shellcheck: hooks and library" {
	command -v shellcheck >/dev/null || skip "shellcheck not installed"
	cd "$TCDIST_TOP/deploy/buildkite"
	shellcheck -x hooks/environment hooks/pre-exit plugin/hooks/environment plugin/hooks/pre-exit \
		plugin/lib/tcdist.bash
}

# job_to_end [NAME=VALUE...] -- ENV_HOOK... -- PRE_EXIT_HOOK...: one job from its environment
# hooks to its pre-exit hooks, in a fresh bash as the agent runs them (the command's exit
# status is what the job's variables say). Prints each pre-exit hook's status.
job_to_end() {
	local -a vars=()
	while [[ $1 != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	# shellcheck disable=SC2016 # the job script expands in the job's bash
	run --separate-stderr env -u TCDIST_TOOLCHAIN -u BUILDKITE_PLUGIN_NAME PATH="$JOB_PATH" \
		"${vars[@]}" bash -c '
		set -euo pipefail
		while [ "$1" != -- ]; do
			. "$1" || exit
			shift
		done
		shift
		for hook in "$@"; do
			. "$hook"
			echo "pre-exit $?"
		done' job "$@"
	echo "status $status"
	echo "stdout: $output"
	echo "stderr: $stderr"
}

@test "pre-exit hooks: the job's outcome is reported once, after the plugin's the agent's hook is quiet" {
	id=$(cat /proc/sys/kernel/random/uuid)
	job_to_end BUILDKITE=true BUILDKITE_JOB_ID="$id" BUILDKITE_RETRY_COUNT=0 BUILDKITE_PIPELINE_SLUG=app \
		TCDIST_TOOLCHAIN="$SMALL" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$OTHER" BUILDKITE_COMMAND_EXIT_STATUS=1 \
		-- "$AGENT_HOOK" "$PLUGIN_HOOK" -- "${PLUGIN_HOOK%environment}pre-exit" "${AGENT_HOOK%environment}pre-exit"
	[ "$status" -eq 0 ]
	[ "$output" = $'pre-exit 0\npre-exit 0' ]
	[ "$(grep -c '^tcdist: outcome' <<<"$stderr")" -eq 1 ]
	[[ $stderr == *"tcdist: outcome of job $id reported to the tcdist agent: failed"* ]]
	# The job was recorded when its toolchain was pulled: a report now is a second one.
	run --separate-stderr job_tcverify "$STACK_AGENT" report --job-id "$id" --pipeline app --exit-status 0
	[ "$status" -eq 2 ]
	[[ $stderr == *"recorded already (failed)"* ]]
	[ "$(agent_calls)" -eq 0 ]
}

@test "pre-exit hook: cancelled, or a command that never ran; a job with no toolchain or no job ID: nothing" {
	id=$(cat /proc/sys/kernel/random/uuid)
	job_to_end BUILDKITE_JOB_ID="$id" BUILDKITE_PIPELINE_SLUG=app TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_COMMAND_EXIT_STATUS=-1 BUILDKITE_JOB_CANCELLED=true -- "$AGENT_HOOK" -- "${AGENT_HOOK%environment}pre-exit"
	[ "$output" = "pre-exit 0" ]
	[[ $stderr == *"tcdist: outcome of job $id reported to the tcdist agent: cancelled"* ]]
	# A job whose command never ran (a later hook failed): failed.
	id=$(cat /proc/sys/kernel/random/uuid)
	job_to_end BUILDKITE_JOB_ID="$id" BUILDKITE_PIPELINE_SLUG=app TCDIST_TOOLCHAIN="$SMALL" \
		-- "$AGENT_HOOK" -- "${AGENT_HOOK%environment}pre-exit"
	[ "$output" = "pre-exit 0" ]
	[[ $stderr == *"tcdist: outcome of job $id reported to the tcdist agent: failed"* ]]
	# No toolchain asked for: the agent served nothing, and the hook says nothing.
	job_to_end BUILDKITE_JOB_ID="$(cat /proc/sys/kernel/random/uuid)" BUILDKITE_PIPELINE_SLUG=app \
		BUILDKITE_COMMAND_EXIT_STATUS=0 -- "$AGENT_HOOK" -- "${AGENT_HOOK%environment}pre-exit"
	[ "$output" = "pre-exit 0" ]
	[ -z "$stderr" ]
	# A job ID that is not Buildkite's: the toolchain is still used, and nothing is reported.
	job_to_end BUILDKITE_JOB_ID=$'x\ny' BUILDKITE_PIPELINE_SLUG=app TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_COMMAND_EXIT_STATUS=0 -- "$AGENT_HOOK" -- "${AGENT_HOOK%environment}pre-exit"
	[ "$status" -eq 0 ]
	[ "$output" = "pre-exit 0" ]
	[[ $stderr != *"tcdist: outcome"* ]]
}

@test "pre-exit hook: a malformed tcdist.conf, a missing tcverify or a dead agent print one line and never fail the job" {
	id=$(cat /proc/sys/kernel/random/uuid)
	for conf in 'socket=relative.sock' "socket=$BATS_TEST_TMPDIR/none.sock"$'\n'"tcverify=$TCVERIFY" \
		"tcverify=/nonexistent/tcverify"; do
		printf '%s\n' "$conf" >"$BATS_TEST_TMPDIR/installed/tcdist.conf"
		job_to_end BUILDKITE_JOB_ID="$id" BUILDKITE_PIPELINE_SLUG=app BUILDKITE_COMMAND_EXIT_STATUS=0 \
			-- -- "${AGENT_HOOK%environment}pre-exit"
		[ "$status" -eq 0 ]
		[ "$output" = "pre-exit 0" ]
		[ "$(wc -l <<<"$stderr")" -eq 1 ]
		[[ $stderr == "tcdist: outcome of job $id not reported"* ]]
	done
}
