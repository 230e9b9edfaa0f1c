# shellcheck shell=bash
# tcdist for Buildkite: the logic shared by the agent hook (deploy/buildkite/hooks/environment)
# and the plugin hook (deploy/buildkite/plugin/hooks/environment).
#
# Sourced, never executed. Buildkite *sources* hooks (its wrapper runs `. hook`, then records
# the exported environment and exits with the hook's status), so nothing here calls `exit`,
# changes shell options or leaves traps; every fallible command is guarded, so the functions
# also behave when a caller runs with `set -euo pipefail`.
#
#   tcdist_use_toolchain [--store DIR] [--platform OS/ARCH] [--policy FILE] [--trust FILE] [--] REF
#
# verifies and installs REF with `tcverify pull`, then exports the job environment that
# `tcverify env` prints (X_GO_RUNTIME_ROOT, GOROOT, PATH, GOTOOLCHAIN) into the calling shell,
# plus TCVERIFY_POLICY when --policy is given and TCVERIFY_TRUST (a trusted root) when --trust
# is. On failure it exports nothing, prints a summary
# on stderr (`tcdist: toolchain REF failed verification (exit 42): …`), annotates the build
# when `buildkite-agent` is on PATH, and returns tcverify's exit status (42 verification or
# policy, 3 registry/network unavailable (retryable), 2 configuration, 4 local store), which
# the agent reports as the job's exit status.
#
# tcverify is `$TCVERIFY` when set, else `tcverify` on PATH. Registry settings and the store
# come from tcverify's own variables (TCDIST_REGISTRY_CA, TCDIST_REGISTRY_USERNAME/PASSWORD,
# TCDIST_REGISTRY_CREDENTIALS_HOST, DOCKER_CONFIG, TCVERIFY_STORE, TCVERIFY_PLATFORM, ...)
# unless given as options.

tcdist_use_toolchain() {
	local store="" platform="" policy="" trust="" ref tcv tmp digest="" env_ref status=0 line
	while (($# > 0)); do
		case $1 in
		--store | --platform | --policy | --trust)
			if (($# < 2)); then
				_tcdist_fail 2 "" config "tcdist_use_toolchain: $1 needs a value" ""
				return 2
			fi
			case $1 in
			--store) store=$2 ;;
			--platform) platform=$2 ;;
			--policy) policy=$2 ;;
			--trust) trust=$2 ;;
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

	if [[ -n ${TCVERIFY:-} ]]; then
		tcv=$TCVERIFY
	else
		tcv=$(command -v tcverify 2>/dev/null) || tcv=""
	fi
	if [[ -z $tcv || ! -x $tcv || -d $tcv ]]; then
		_tcdist_fail 2 "$ref" config "tcverify not found (TCVERIFY=${TCVERIFY:-unset}; not on PATH either)" \
			"install tcverify on the agent, or set TCVERIFY to its path"
		return 2
	fi

	# Absolute paths, so that tcverify calls later in the job find them from any directory.
	if [[ -n $policy ]]; then
		_tcdist_agent_file policy "$policy" "$ref" || return 2
		[[ $policy == /* ]] || policy=$PWD/$policy
	fi
	if [[ -n $trust ]]; then
		_tcdist_agent_file "trusted root" "$trust" "$ref" || return 2
		[[ $trust == /* ]] || trust=$PWD/$trust
	fi

	# `env` runs tcverify with the policy and trusted root, which the job gets only on success.
	local -a run=(env) opts=()
	if [[ -n $policy ]]; then run+=(TCVERIFY_POLICY="$policy"); fi
	if [[ -n $trust ]]; then run+=(TCVERIFY_TRUST="$trust"); fi
	if [[ -n $store ]]; then opts+=(--store "$store"); fi
	if [[ -n $platform ]]; then opts+=(--platform "$platform"); fi

	if ! tmp=$(mktemp -d "${TMPDIR:-/tmp}/tcdist-hook.XXXXXX"); then
		_tcdist_fail 4 "$ref" store "cannot create a temporary directory in ${TMPDIR:-/tmp}" ""
		return 4
	fi

	printf 'tcdist: verifying and installing toolchain %s\n' "$ref" >&2
	_tcdist_run "$tmp/pull" "${run[@]}" "$tcv" pull --json ${opts[@]+"${opts[@]}"} -- "$ref" || status=$?
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
	_tcdist_run "$tmp/env" "${run[@]}" PATH="$job_path" "$tcv" env --format sh \
		${opts[@]+"${opts[@]}"} -- "$env_ref" || status=$?
	if ((status != 0)); then
		_tcdist_fail_from "$status" "$ref" "$tmp/env.err"
		rm -rf -- "$tmp"
		return "$status"
	fi
	# Only `export NAME='value'` lines (single-quoted, embedded quotes as '\'') are
	# evaluated; anything else is refused.
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
	if [[ -n $policy ]]; then export TCVERIFY_POLICY=$policy; fi
	if [[ -n $trust ]]; then export TCVERIFY_TRUST=$trust; fi
	printf 'tcdist: using toolchain %s%s: GOROOT=%s\n' "$ref" "${digest:+ ($digest)}" "${GOROOT:-}" >&2
	return 0
}

# _tcdist_agent_file WHAT PATH REF: succeeds when PATH is a readable file on the agent; else
# a configuration failure for REF.
_tcdist_agent_file() {
	local what=$1 path=$2 ref=$3
	if [[ ! -f $path || ! -r $path ]]; then
		_tcdist_fail 2 "$ref" config "$what file $path does not exist or is not readable" \
			"give the $what as the path of a file on the agent"
		return 2
	fi
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
