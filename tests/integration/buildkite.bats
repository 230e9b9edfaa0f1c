#!/usr/bin/env bats
# The Buildkite agent hook and plugin (deploy/buildkite) against the real local stack. Each
# job sources the hooks in a fresh bash the way the agent's hook wrapper does (`. hook`, then
# the hook's status is the job's), and must either export the toolchain's job environment or
# fail the job with tcverify's exit code, a clear message and a build annotation.
# `buildkite-agent` is a recording test double (the agent is not part of the stack).

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/buildkite
	mkdir -p "$WORK"
	export AGENT_HOOK=$TCDIST_TOP/deploy/buildkite/hooks/environment
	export PLUGIN_HOOK=$TCDIST_TOP/deploy/buildkite/plugin/hooks/environment

	make_job_tree "$WORK/small" go1.26.8
	export SMALL=$TCDIST_REGISTRY/buildkite/small:v1
	SMALL_DIGEST=$("$DISTD" publish "$WORK/small" --ref "$SMALL" | tail -n1)
	export SMALL_DIGEST
	make_job_tree "$WORK/other" go1.26.9
	export OTHER=$TCDIST_REGISTRY/buildkite/other:v1
	OTHER_DIGEST=$("$DISTD" publish "$WORK/other" --ref "$OTHER" | tail -n1)
	export OTHER_DIGEST

	python3 "$TCDIST_TOP/tests/lib/hostile_image.py" dotdot "$WORK/dotdot" v1
	export HOSTILE=$TCDIST_REGISTRY/buildkite/dotdot:v1
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
}

# job [NAME=VALUE...] -- HOOK...: one job in a fresh bash with the job environment given
# (its store defaults to a per-test one), sourcing each HOOK in turn as the agent does until
# one fails. Then, from a child process (so only exported variables count), it prints the
# environment the job's command would see, runs `go version` if all hooks passed, and exits
# with the failing hook's status. JOB_STRICT=1 runs it under `set -euo pipefail`, like an
# agent whose shell is `bash -e -c` or an existing hook that sources ours.
job() {
	local -a vars=() agent_policy=(TCVERIFY_POLICY="$TCVERIFY_POLICY")
	while [[ $1 != -- ]]; do
		vars+=("$1")
		# A job given the plugin's policy option has no agent-wide policy, so the test sees
		# which one the hook exported.
		[[ $1 == BUILDKITE_PLUGIN_TCDIST_POLICY=* ]] && agent_policy=()
		shift
	done
	shift
	# shellcheck disable=SC2016 # the job script expands in the job's bash
	run --separate-stderr env -u GOROOT -u GOEXPERIMENT -u GOTOOLCHAIN -u X_GO_RUNTIME_ROOT \
		-u TCVERIFY_POLICY -u TCVERIFY_TRUST -u TCVERIFY -u TCDIST_TOOLCHAIN -u BUILDKITE_PLUGIN_NAME \
		PATH="$JOB_PATH" TCVERIFY_STORE="$BATS_TEST_TMPDIR/store" "${agent_policy[@]}" "${vars[@]}" bash -c '
		if [ -n "${JOB_STRICT:-}" ]; then set -euo pipefail; fi
		status=0
		for hook in "$@"; do
			. "$hook"
			status=$?
			[ "$status" -eq 0 ] || break
		done
		env | grep -E "^(X_GO_RUNTIME_ROOT|GOROOT|GOTOOLCHAIN|TCVERIFY_POLICY|TCVERIFY_TRUST|PATH)=" | sort
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

# root_of DIGEST STORE: where tcverify installs that release for this platform.
root_of() {
	echo "$2/${1/:/-}/linux-amd64/toolchain"
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

@test "plugin hook: exports GOROOT, X_GO_RUNTIME_ROOT, PATH, GOTOOLCHAIN; go runs from the pulled root" {
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_PLUGIN_TCDIST_STORE="$BATS_TEST_TMPDIR/plugin-store" -- "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST" "$BATS_TEST_TMPDIR/plugin-store")"
	# Without the policy option, the agent's policy applies and is left as it was.
	[ "$(value TCVERIFY_POLICY)" = "$TCVERIFY_POLICY" ]
	[[ $stderr == *"tcdist: using toolchain $SMALL ($SMALL_DIGEST)"* ]]
	# The store option was used, not TCVERIFY_STORE; no annotation on success.
	[ ! -e "$BATS_TEST_TMPDIR/store" ]
	[ "$(agent_calls)" -eq 0 ]
}

@test "plugin hook: policy is exported as TCVERIFY_POLICY (absolute), platform is passed on" {
	cp "$TCVERIFY_POLICY" "$BATS_TEST_TMPDIR/policy.json"
	cd "$BATS_TEST_TMPDIR"
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_PLUGIN_TCDIST_POLICY=policy.json BUILDKITE_PLUGIN_TCDIST_PLATFORM=linux/amd64 -- "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	[ "$(value TCVERIFY_POLICY)" = "$BATS_TEST_TMPDIR/policy.json" ]
	assert_job_env "$(root_of "$SMALL_DIGEST" "$BATS_TEST_TMPDIR/store")"

	# On failure the policy is not exported either.
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_PLUGIN_TCDIST_POLICY=policy.json BUILDKITE_PLUGIN_TCDIST_PLATFORM=linux/riscv64 -- "$PLUGIN_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"no toolchain for linux/riscv64"* ]]
	assert_nothing_exported
	[ -z "$(value TCVERIFY_POLICY)" ]
}

@test "plugin hook: trust is exported as TCVERIFY_TRUST (absolute) and verifies with a policy that names only signers" {
	printf 'version = 1\n[[repository]]\nname = "**"\nsigners = { spiffe_id = "%s" }\n' \
		"$TCDIST_SIGNER_ID" >"$BATS_TEST_TMPDIR/signers-only.toml"
	cp "$STACK_TRUST" "$BATS_TEST_TMPDIR/trusted_root.json"
	cd "$BATS_TEST_TMPDIR"
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_PLUGIN_TCDIST_POLICY=signers-only.toml BUILDKITE_PLUGIN_TCDIST_TRUST=trusted_root.json -- "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	[ "$(value TCVERIFY_TRUST)" = "$BATS_TEST_TMPDIR/trusted_root.json" ]
	assert_job_env "$(root_of "$SMALL_DIGEST" "$BATS_TEST_TMPDIR/store")"

	# Without the trusted root that policy trusts nothing: a configuration error.
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_PLUGIN_TCDIST_POLICY=signers-only.toml -- "$PLUGIN_HOOK"
	[ "$status" -eq 2 ]
	assert_nothing_exported

	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_PLUGIN_TCDIST_POLICY=signers-only.toml BUILDKITE_PLUGIN_TCDIST_TRUST=missing.json -- "$PLUGIN_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"configuration error (exit 2): trusted root file missing.json does not exist"* ]]
	assert_nothing_exported
	[ -z "$(value TCVERIFY_TRUST)" ]
}

@test "plugin hook: a policy file that does not exist fails the job (exit 2) before any pull" {
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$SMALL" \
		BUILDKITE_PLUGIN_TCDIST_POLICY="$BATS_TEST_TMPDIR/missing.json" -- "$PLUGIN_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"tcdist: toolchain $SMALL could not be used: configuration error (exit 2): policy file $BATS_TEST_TMPDIR/missing.json does not exist"* ]]
	assert_nothing_exported
	[ -z "$(value TCVERIFY_POLICY)" ]
	[ ! -e "$BATS_TEST_TMPDIR/store" ]
	[ "$(agent_calls)" -eq 1 ]
}

@test "plugin hook vendored as ./deploy/buildkite/plugin: options named after BUILDKITE_PLUGIN_NAME" {
	# The agent names a vendored plugin after its directory: "plugin".
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_NAME=PLUGIN BUILDKITE_PLUGIN_PLUGIN_TOOLCHAIN="$SMALL" -- "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST" "$BATS_TEST_TMPDIR/store")"
}

@test "plugin hook without the toolchain option: exit 2 naming the option, annotated" {
	job TCVERIFY="$TCVERIFY" -- "$PLUGIN_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"configuration error (exit 2): the plugin's \`toolchain\` option is required (BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN is not set)"* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist "* ]]
}

@test "agent hook, linked into an agent hooks dir, tcverify from PATH: exports the job environment" {
	mkdir -p "$BATS_TEST_TMPDIR/agent/hooks"
	ln -s "$AGENT_HOOK" "$BATS_TEST_TMPDIR/agent/hooks/environment"
	JOB_PATH=$TCDIST_BIN:$JOB_PATH
	job TCDIST_TOOLCHAIN="$SMALL" -- "$BATS_TEST_TMPDIR/agent/hooks/environment"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST" "$BATS_TEST_TMPDIR/store")"
	[ "$(agent_calls)" -eq 0 ]
}

@test "agent hook without TCDIST_TOOLCHAIN does nothing" {
	job TCVERIFY=/nonexistent/tcverify -- "$AGENT_HOOK"
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
	[ "$(value PATH)" = "$JOB_PATH" ]
	[ -z "$(value GOROOT)" ]
	[ -z "$(value X_GO_RUNTIME_ROOT)" ]
	[ ! -e "$BATS_TEST_TMPDIR/store" ]
	[ "$(agent_calls)" -eq 0 ]
}

@test "GOEXPERIMENT differs from the toolchain's baseline: exit 42 with both values, annotated" {
	job TCVERIFY="$TCVERIFY" TCDIST_TOOLCHAIN="$SMALL" GOEXPERIMENT=arenas -- "$AGENT_HOOK"
	[ "$status" -eq 42 ]
	[[ $stderr == *"tcdist: toolchain $SMALL failed verification (exit 42): "*'GOEXPERIMENT mismatch: the job has "arenas", the toolchain was built for ""'* ]]
	[[ $stderr == *"Do not retry"* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist **tcdist**: toolchain \`$SMALL\` failed verification (exit 42)"* ]]
	grep -qF 'the job has "arenas", the toolchain was built for ""' "$FAKE_AGENT_LOG"
}

@test "hostile release (entry with '..'): exit 42, do-not-retry message, annotation, nothing installed" {
	job TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$HOSTILE" BUILDKITE_LABEL=":go: build" -- "$PLUGIN_HOOK"
	[ "$status" -eq 42 ]
	[[ $stderr == *"tcdist: toolchain $HOSTILE failed verification (exit 42): "*"entry \"toolchain/../escaped\" refused: path contains '..'"* ]]
	[[ $stderr == *"Do not retry"* ]]
	[[ $stderr != *retryable* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist **tcdist**: toolchain \`$HOSTILE\` failed verification (exit 42) in step \":go: build\"." ]]
	grep -qF "path contains '..'" "$FAKE_AGENT_LOG"
	[ -z "$(compgen -G "$BATS_TEST_TMPDIR/store/sha256-*")" ]
	[ ! -e "$BATS_TEST_TMPDIR/store/escaped" ]
}

@test "registry unavailable: exit 3 and the message says retryable" {
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	job TCVERIFY="$TCVERIFY" TCDIST_TOOLCHAIN="127.0.0.1:$port/buildkite/small:v1" TCDIST_REGISTRY_RETRIES=0 -- "$AGENT_HOOK"
	[ "$status" -eq 3 ]
	[[ $stderr == *"tcdist: toolchain 127.0.0.1:$port/buildkite/small:v1 could not be fetched: registry or network unavailable (exit 3, retryable): "* ]]
	[[ $stderr == *"retrying the job later may succeed"* ]]
	[[ $stderr != *"failed verification"* ]]
	assert_nothing_exported
	[ "$(agent_calls)" -eq 1 ]
	[[ $(head -n1 "$FAKE_AGENT_LOG") == "annotate --style error --context tcdist "*"(exit 3, retryable)"* ]]
}

@test "tcverify missing: exit 2 naming TCVERIFY" {
	job TCVERIFY=/nonexistent/tcverify TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
	[ "$status" -eq 2 ]
	[[ $stderr == *"tcverify not found (TCVERIFY=/nonexistent/tcverify"* ]]
	assert_nothing_exported
}

@test "plugin after the agent hook: the plugin's toolchain wins and only its bin is on PATH" {
	job TCVERIFY="$TCVERIFY" TCDIST_TOOLCHAIN="$SMALL" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$OTHER" -- \
		"$AGENT_HOOK" "$PLUGIN_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$OTHER_DIGEST" "$BATS_TEST_TMPDIR/store")"
	[[ $(value PATH) != *"${SMALL_DIGEST/:/-}"* ]]
}

@test "under set -euo pipefail: a good toolchain is exported, a refused one fails the job with 42" {
	job JOB_STRICT=1 TCVERIFY="$TCVERIFY" TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST" "$BATS_TEST_TMPDIR/store")"

	job JOB_STRICT=1 TCVERIFY="$TCVERIFY" BUILDKITE_PLUGIN_TCDIST_TOOLCHAIN="$HOSTILE" -- "$PLUGIN_HOOK"
	[ "$status" -eq 42 ]
	[[ $stderr == *"failed verification (exit 42)"* ]]
	# errexit ends the job right at the failing hook: nothing after it ran.
	[ -z "$output" ]
}

@test "a tag moved after the pull: the job gets the digest it verified" {
	# Stand-in for a concurrent job on this host moving the tag between `pull` and `env`:
	# a tcverify wrapper that, after a pull of the tag, installs another release under it.
	cat >"$BATS_TEST_TMPDIR/tcverify" <<EOF
#!/bin/sh
"$TCVERIFY" "\$@" || exit \$?
if [ "\$1" = pull ]; then
	"$DISTD" publish "$WORK/other" --ref "$TCDIST_REGISTRY/buildkite/moving:v1" >/dev/null 2>&1 &&
	"$TCVERIFY" pull "$TCDIST_REGISTRY/buildkite/moving:v1" >/dev/null 2>&1
fi
EOF
	chmod 755 "$BATS_TEST_TMPDIR/tcverify"
	"$DISTD" publish "$WORK/small" --ref "$TCDIST_REGISTRY/buildkite/moving:v1" >/dev/null
	job TCVERIFY="$BATS_TEST_TMPDIR/tcverify" TCDIST_TOOLCHAIN="$TCDIST_REGISTRY/buildkite/moving:v1" -- "$AGENT_HOOK"
	[ "$status" -eq 0 ]
	assert_job_env "$(root_of "$SMALL_DIGEST" "$BATS_TEST_TMPDIR/store")"
	# The tag did move: unpinned, tcverify env would now give the other release.
	run --separate-stderr env TCVERIFY_STORE="$BATS_TEST_TMPDIR/store" "$TCVERIFY" env "$TCDIST_REGISTRY/buildkite/moving:v1"
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
	job TCVERIFY="$BATS_TEST_TMPDIR/tcverify" TCDIST_TOOLCHAIN="$SMALL" -- "$AGENT_HOOK"
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
assert set(c["properties"]) == {"toolchain", "policy", "trust", "store", "platform"}, c
assert all(v["type"] == "string" for v in c["properties"].values()), c
assert c["required"] == ["toolchain"], c
assert c["additionalProperties"] is False, c
PY
	for option in TOOLCHAIN POLICY TRUST STORE PLATFORM; do
		grep -q "var=\${prefix}$option" "$PLUGIN_HOOK"
	done
}

@test "shellcheck: hooks and library" {
	command -v shellcheck >/dev/null || skip "shellcheck not installed"
	cd "$TCDIST_TOP/deploy/buildkite"
	shellcheck -x hooks/environment plugin/hooks/environment plugin/lib/tcdist.bash
}
