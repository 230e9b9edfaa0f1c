# shellcheck shell=bash
# tcdist for Buildkite: the logic shared by the agent hooks (deploy/buildkite/hooks/environment,
# hooks/pre-exit) and the plugin hooks (deploy/buildkite/plugin/hooks/environment, pre-exit).
#
# Sourced, never executed. Buildkite *sources* hooks (its wrapper runs `. hook`, then records
# the exported environment and exits with the hook's status), so nothing here calls `exit`,
# changes shell options or leaves traps; every fallible command is guarded, so the functions
# also behave when a caller runs with `set -euo pipefail`.
#
#   tcdist_use_toolchain --settings FILE [--platform OS/ARCH] [--] REF
#
# asks the build-host agent (`tcverify agent`) to verify and install REF (`tcverify pull
# --agent`), then exports the job environment that `tcverify env --agent` prints
# (X_GO_RUNTIME_ROOT, GOROOT, PATH, GOTOOLCHAIN) into the calling shell. On failure it exports
# nothing, prints a summary on stderr (`tcdist: toolchain REF failed verification (exit 42):
# …`), annotates the build when `buildkite-agent` is on PATH, and returns tcverify's exit
# status (42 verification or policy, 3 registry/network or the agent unavailable (retryable),
# 2 configuration, 4 local store), which the agent reports as the job's exit status. The pull
# names the job (BUILDKITE_JOB_ID, BUILDKITE_RETRY_COUNT), so the agent records what it served
# it for the job's outcome report.
#
#   tcdist_report_outcome --settings FILE
#
# reports how the job ended (`tcverify report --if-served`) from the pre-exit hooks: passed,
# failed or cancelled, from BUILDKITE_COMMAND_EXIT_STATUS and BUILDKITE_JOB_CANCELLED. It never
# fails the job: it prints at most one line and returns 0.
#
# What is trusted (policy, trusted root, store, registry credentials) is the agent's alone. The
# job chooses the release and the platform, nothing else: tcverify runs with an empty
# environment, and its path and the agent's socket come only from FILE, installed with the
# hooks by the host's operator (`KEY=ABSOLUTE-PATH` lines):
#
#   socket=/run/tcdist/agent.sock      (the default)
#   tcverify=/usr/local/bin/tcverify   (the default)

tcdist_use_toolchain() {
	local settings="" platform="" ref tmp digest="" env_ref status=0 line
	local _tcdist_socket _tcdist_tcverify
	while (($# > 0)); do
		case $1 in
		--settings | --platform)
			if (($# < 2)); then
				_tcdist_fail 2 "" config "tcdist_use_toolchain: $1 needs a value" ""
				return 2
			fi
			case $1 in
			--settings) settings=$2 ;;
			--platform) platform=$2 ;;
			esac
			shift 2
			;;
		--)
			shift
			break
			;;
		-*)
			_tcdist_fail 2 "" config "tcdist_use_toolchain: unknown option $1" ""
			return 2
			;;
		*) break ;;
		esac
	done
	ref=${1:-}
	if (($# != 1)) || [[ -z $ref ]]; then
		_tcdist_fail 2 "" config "no toolchain reference given" \
			"name the release to use, e.g. registry.example:5000/toolchains/go:1.26.8-tc.1"
		return 2
	fi
	_tcdist_settings "$settings" "$ref" || return 2
	if [[ ! -x $_tcdist_tcverify || -d $_tcdist_tcverify ]]; then
		_tcdist_fail 2 "$ref" config "tcverify not found at $_tcdist_tcverify" \
			"install tcverify there, or name it as tcverify=PATH in $settings"
		return 2
	fi

	# tcverify sees nothing of the job's environment but what the agent needs to answer.
	local -a run=(env -i PATH=/usr/bin:/bin) opts=(--agent "$_tcdist_socket") job_opts=()
	if [[ -n $platform ]]; then opts+=(--platform "$platform"); fi
	# The job this pull is for, so that the agent records what it serves it for the job's
	# outcome (the pre-exit hook). An ID that is not a Buildkite job ID (a UUID) is left out:
	# the job is then not judged, and never fails for it.
	if _tcdist_is_job_id "${BUILDKITE_JOB_ID:-}"; then
		job_opts=(--job-id "$BUILDKITE_JOB_ID" --retry "$(_tcdist_count "${BUILDKITE_RETRY_COUNT:-}")")
	fi

	if ! tmp=$(mktemp -d "${TMPDIR:-/tmp}/tcdist-hook.XXXXXX"); then
		_tcdist_fail 4 "$ref" store "cannot create a temporary directory in ${TMPDIR:-/tmp}" ""
		return 4
	fi

	printf 'tcdist: verifying and installing toolchain %s\n' "$ref" >&2
	_tcdist_run "$tmp/pull" "${run[@]}" "$_tcdist_tcverify" pull --json "${opts[@]}" \
		"${job_opts[@]}" -- "$ref" || status=$?
	if ((status != 0)); then
		_tcdist_fail_from "$status" "$ref" "$tmp/pull.err"
		rm -rf -- "$tmp"
		return "$status"
	fi

	# Pin `tcverify env` to the digest this pull verified, so that a tag moved by a
	# concurrent job on this host between the two calls cannot swap the toolchain.
	line=$(<"$tmp/pull.out")
	if [[ $line =~ \"digest\":\"(sha256:[0-9a-f]{64})\" ]]; then
		digest=${BASH_REMATCH[1]}
	fi
	if [[ $ref == *@* ]]; then
		env_ref=$ref
	elif [[ -n $digest ]]; then
		env_ref=$ref@$digest
	else
		printf 'tcdist: warning: no digest in the output of tcverify pull --json; using %s unpinned\n' \
			"$ref" >&2
		env_ref=$ref
	fi

	# A toolchain this hook (or the agent hook) put on PATH earlier in the job makes way
	# for this one, so that only one toolchain's bin is on PATH.
	local job_path=$PATH
	if [[ -n ${X_GO_RUNTIME_ROOT:-} ]]; then
		job_path=$(_tcdist_path_without "$X_GO_RUNTIME_ROOT/bin" "$PATH")
	fi
	# The job's PATH and GOEXPERIMENT shape the answer (PATH is extended; GOEXPERIMENT must
	# match the toolchain's baseline); they do not reach what is trusted.
	local -a job_vars=(PATH="$job_path")
	if [[ -n ${GOEXPERIMENT+set} ]]; then job_vars+=(GOEXPERIMENT="$GOEXPERIMENT"); fi
	_tcdist_run "$tmp/env" env -i "${job_vars[@]}" "$_tcdist_tcverify" env --format sh \
		"${opts[@]}" -- "$env_ref" || status=$?
	if ((status != 0)); then
		_tcdist_fail_from "$status" "$ref" "$tmp/env.err"
		rm -rf -- "$tmp"
		return "$status"
	fi
	# Only `export NAME='value'` lines are evaluated; anything else is refused.
	local q="'" export_re bad=""
	export_re="^export [A-Za-z_][A-Za-z0-9_]*=${q}([^${q}]|${q}\\\\${q}${q})*${q}\$"
	while IFS= read -r line || [[ -n $line ]]; do
		[[ $line =~ $export_re ]] || bad="unexpected output from tcverify env: $line"
	done <"$tmp/env.out"
	if [[ -z $bad ]] && ! grep -q "^export GOROOT=" "$tmp/env.out"; then
		bad="tcverify env printed no GOROOT"
	fi
	if [[ -n $bad ]]; then
		_tcdist_fail 1 "$ref" other "$bad" ""
		rm -rf -- "$tmp"
		return 1
	fi
	eval "$(<"$tmp/env.out")"
	rm -rf -- "$tmp"
	printf 'tcdist: using toolchain %s%s: GOROOT=%s\n' "$ref" "${digest:+ ($digest)}" "${GOROOT:-}" >&2
	return 0
}

# _tcdist_settings FILE REF: sets _tcdist_socket and _tcdist_tcverify from FILE (defaults when
# it does not exist). Only known keys with absolute paths; anything else fails REF (exit 2).
_tcdist_settings() {
	local file=$1 ref=$2 _tcdist_settings_error
	if ! _tcdist_read_settings "$file"; then
		_tcdist_fail 2 "$ref" config "$_tcdist_settings_error" \
			"write socket=/ABSOLUTE/PATH or tcverify=/ABSOLUTE/PATH"
		return 2
	fi
}

# _tcdist_read_settings FILE: sets _tcdist_socket and _tcdist_tcverify from FILE, or returns 1
# with the problem in _tcdist_settings_error.
_tcdist_read_settings() {
	local file=$1 line
	_tcdist_socket=/run/tcdist/agent.sock
	_tcdist_tcverify=/usr/local/bin/tcverify
	[[ -n $file && -e $file ]] || return 0
	while IFS= read -r line || [[ -n $line ]]; do
		[[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
		if [[ $line =~ ^socket=(/.*)$ ]]; then
			_tcdist_socket=${BASH_REMATCH[1]}
		elif [[ $line =~ ^tcverify=(/.*)$ ]]; then
			_tcdist_tcverify=${BASH_REMATCH[1]}
		else
			_tcdist_settings_error="$file: not a setting: $line"
			return 1
		fi
	done <"$file"
}

# _tcdist_is_job_id VALUE: whether VALUE looks like a Buildkite job ID (a UUID: hex digits and
# dashes, listed rather than ranged so no locale widens them).
_tcdist_is_job_id() {
	[[ -n $1 && ${#1} -le 64 && $1 != *[!0123456789abcdefABCDEF-]* ]]
}

# _tcdist_count VALUE: VALUE as a count (decimal digits, at most 9), else 0.
_tcdist_count() {
	if [[ -n $1 && ${#1} -le 9 && $1 != *[!0123456789]* ]]; then
		printf '%d' "$((10#$1))"
	else
		printf '0'
	fi
}

# tcdist_report_outcome --settings FILE: reports how this job ended to the build-host agent,
# which records it with what it served the job's pull. Only a job the agent is waiting on is
# recorded (`--if-served`): a job it served nothing, or whose outcome it has (reported by the
# plugin's pre-exit hook), is left alone, quietly. Returns 0 whatever happens, with at most one
# line on stderr.
#
# The result, from the variables the Buildkite agent sets before its pre-exit hooks:
# - cancelled: BUILDKITE_JOB_CANCELLED=true (the job was cancelled, or timed out; agent
#   v3.93.1 and later);
# - passed: BUILDKITE_COMMAND_EXIT_STATUS=0;
# - failed: any other exit status (-1: the command was killed by a signal), or none: the
#   command never ran (a hook, the checkout or a plugin failed before it).
tcdist_report_outcome() {
	local settings="" id=${BUILDKITE_JOB_ID:-} pipeline=${BUILDKITE_PIPELINE_SLUG:-} status
	local _tcdist_socket _tcdist_tcverify _tcdist_settings_error out rc=0 reason line
	local -a flags=() limit=()
	if [[ ${1:-} == --settings ]]; then settings=${2:-}; fi
	# Not a Buildkite job, or not an ID its pull could have named: nothing to report.
	_tcdist_is_job_id "$id" || return 0
	if ! _tcdist_read_settings "$settings"; then
		printf 'tcdist: outcome of job %s not reported: %s\n' "$id" "$_tcdist_settings_error" >&2
		return 0
	fi
	status=${BUILDKITE_COMMAND_EXIT_STATUS:-}
	if [[ ${status#-} != "$(_tcdist_count "${status#-}")" ]]; then
		status=1
	fi
	if [[ ${BUILDKITE_JOB_CANCELLED:-} == true ]]; then flags+=(--cancelled); fi
	[[ -n $pipeline ]] || pipeline="(unknown)"
	# An agent that accepts but never answers must not hold the job's end.
	if command -v timeout >/dev/null 2>&1; then limit=(timeout 10); fi
	out=$("${limit[@]}" env -i PATH=/usr/bin:/bin "$_tcdist_tcverify" report --if-served --json \
		--agent "$_tcdist_socket" --job-id "$id" --pipeline "$pipeline" --exit-status "$status" \
		--retry "$(_tcdist_count "${BUILDKITE_RETRY_COUNT:-}")" "${flags[@]}" </dev/null 2>&1) &&
		rc=0 || rc=$?
	if ((rc == 0)); then
		if [[ $out =~ \"recorded\":true.*\"result\":\"([a-z]+)\" ]]; then
			printf 'tcdist: outcome of job %s reported to the tcdist agent: %s\n' "$id" \
				"${BASH_REMATCH[1]}" >&2
		elif [[ $out == *'"reason":"late"'* ]]; then
			# The job ran past the agent's outcome_window: it was counted lost.
			reason=$out
			if [[ $out =~ \"message\":\"([^\"]*)\" ]]; then reason=${BASH_REMATCH[1]}; fi
			printf 'tcdist: outcome of job %s not reported: %s\n' "$id" "$reason" >&2
		fi
		# Otherwise the agent served this job nothing, or has its outcome already (from the
		# plugin's pre-exit hook, which runs first): nothing to say.
		return 0
	fi
	reason=""
	while IFS= read -r line; do
		if [[ $line == "tcverify: error: "* && -z $reason ]]; then
			reason=${line#tcverify: error: }
		fi
	done <<<"$out"
	if ((rc == 124)); then reason="the agent at $_tcdist_socket did not answer within 10s"; fi
	if ((rc == 126 || rc == 127)); then reason="cannot run $_tcdist_tcverify"; fi
	[[ -n $reason ]] || reason=${out:-tcverify printed no message}
	printf 'tcdist: outcome of job %s not reported (exit %d): %s\n' "$id" "$rc" "${reason//$'\n'/ }" >&2
	return 0
}

# _tcdist_run PREFIX CMD...: runs CMD with stdout to PREFIX.out and stderr both to our
# stderr (live, into the job log) and to PREFIX.err; returns CMD's status.
_tcdist_run() {
	local prefix=$1 status=0
	shift
	{
		"$@" </dev/null 2>&1 >"$prefix.out" && status=0 || status=$?
		printf '%s\n' "$status" >"$prefix.status"
	} | tee "$prefix.err" >&2
	status=1
	if [[ -s $prefix.status ]]; then
		read -r status <"$prefix.status" || status=1
	fi
	return "$status"
}

# _tcdist_path_without ENTRY PATHVALUE: PATHVALUE without the elements equal to ENTRY.
_tcdist_path_without() {
	local drop=$1 rest=$2: entry out="" first=1
	while [[ -n $rest ]]; do
		entry=${rest%%:*}
		rest=${rest#*:}
		[[ $entry == "$drop" ]] && continue
		if ((first)); then
			out=$entry
			first=0
		else
			out=$out:$entry
		fi
	done
	printf '%s' "$out"
}

# _tcdist_fail_from STATUS REF ERRFILE: the failure report for a tcverify run, with the
# reason and hint taken from its stderr.
_tcdist_fail_from() {
	local status=$1 ref=$2 err=$3 line reason="" hint="" last="" kind
	while IFS= read -r line || [[ -n $line ]]; do
		case $line in
		"tcverify: error: "*) reason=${reason:+$reason; }${line#tcverify: error: } ;;
		"tcverify: hint: "*) hint=${hint:+$hint; }${line#tcverify: hint: } ;;
		esac
		[[ $line == *[![:space:]]* ]] && last=$line
	done <"$err"
	[[ -n $reason ]] || reason=${last:-tcverify printed no message}
	case $status in
	42) kind=verification ;;
	3) kind=unavailable ;;
	2) kind=config ;;
	4) kind=store ;;
	*) kind=other ;;
	esac
	_tcdist_fail "$status" "$ref" "$kind" "$reason" "$hint"
}

# _tcdist_fail STATUS REF KIND REASON HINT: prints the summary on stderr and annotates the
# build (when buildkite-agent is on PATH). KIND: verification, unavailable, config, store, other.
_tcdist_fail() {
	local status=$1 ref=${2:-(none)} kind=$3 reason=$4 hint=$5 what advice
	case $kind in
	verification)
		what="failed verification (exit $status)"
		advice="the job is aborted and the toolchain was not put on PATH. Do not retry: a verification failure is not transient."
		;;
	unavailable)
		what="could not be fetched: registry or network unavailable (exit $status, retryable)"
		advice="the job is aborted and nothing was installed. This is retryable: retrying the job later may succeed."
		;;
	config)
		what="could not be used: configuration error (exit $status)"
		advice="the job is aborted. Fix the configuration; retrying will not help."
		;;
	store)
		what="could not be installed: local store error on this agent (exit $status)"
		advice="the job is aborted. Check the agent's store (TCVERIFY_STORE): permissions and free space."
		;;
	*)
		what="could not be used: tcverify failed (exit $status)"
		advice="the job is aborted."
		;;
	esac
	printf 'tcdist: toolchain %s %s: %s\n' "$ref" "$what" "$reason" >&2
	if [[ -n $hint ]]; then
		printf 'tcdist: hint: %s\n' "$hint" >&2
	fi
	printf 'tcdist: %s\n' "$advice" >&2
	# Expand this section of the Buildkite log, where the agent folds hook output.
	if [[ ${BUILDKITE:-} == true ]]; then
		printf '^^^ +++\n'
	fi

	command -v buildkite-agent >/dev/null 2>&1 || return 0
	local body fence='```'
	body="**tcdist**: toolchain \`$ref\` $what${BUILDKITE_LABEL:+ in step \"$BUILDKITE_LABEL\"}.

$fence
$reason${hint:+
hint: $hint}
$fence

$advice"
	if ! buildkite-agent annotate --style error --context tcdist "$body" >&2; then
		printf 'tcdist: warning: buildkite-agent annotate failed; the failure is only in this log\n' >&2
	fi
	return 0
}
