# shellcheck shell=bash
# Component "distd": the publisher daemon (`distd serve`, docs/daemon.md), so the demo,
# tests and benchmarks share one. It serves the API over SPIFFE mutual TLS as
# spiffe://tcdist.test/distd/server and signs with the stack's signer and promoter SVIDs,
# so it runs a distd at a path SPIRE's entries register (the one policy.sh finds or
# builds). Comes after "policy" (the stack's signing and trust settings are all known
# then) and before "agent" (which reports job outcomes to it).
#
# Its config is generated from the stack's values at every up: one release line,
# goX.Y (from the Go source's VERSION), for $TCDIST_REGISTRY/toolchains/go: the
# machine's Go source (`go env GOROOT`), pinned by its source digest
# (`distd source-digest`, computed without building), the patch series
# distd/patches/goX.Y, linux/amd64 and linux/arm64 (the host's first; cross-built),
# channel stable. Grants: spiffe://tcdist.test/release/manager may read, build,
# promote and yank; spiffe://tcdist.test/ci/job (every process of the stack's user)
# may read; spiffe://tcdist.test/buildkite/agent (the build-host agent's SVID) may
# report job outcomes on the line.
#
# Its environment is what stack.env gives clients of the components before it
# (registry credentials, SPIFFE socket, signer and promoter IDs, TSA, Rekor, policy),
# plus PATH, HOME, USER, LANG, TMPDIR, XDG_CACHE_HOME, GOROOT_BOOTSTRAP and RUST_LOG
# from the caller of `up` (build jobs need Go on PATH); nothing else.
#
# State in $STACK_DIR/distd/ (0700):
#   serve.toml lines.toml   the config (rewritten at every up)
#   env                     the stack variables it runs with (0600: registry password)
#   state/                  job journal (jobs/N.json), job logs (jobs/N.log), audit.log
#   port ops-port           the API's and health/metrics ports on 127.0.0.1
#   pid distd.log args      PID, log (appended), digests of what it was started with
# Builds are cached in ${XDG_CACHE_HOME:-~/.cache}/tcdist/distd, shared with `distd build`.
#
# A change of the config, the environment or the binary (a rebuild replaces it, and
# SPIRE no longer attests a process whose executable was replaced) restarts it at
# the next up. `down` sends SIGTERM: a running build job is stopped and recorded as
# interrupted, and the next `up` runs it again.

DISTD_SERVER_ID=spiffe://$SPIRE_TRUST_DOMAIN/distd/server
DISTD_MANAGER_ID=spiffe://$SPIRE_TRUST_DOMAIN/release/manager
DISTD_READER_ID=spiffe://$SPIRE_TRUST_DOMAIN/ci/job
DISTD_REPORTER_ID=spiffe://$SPIRE_TRUST_DOMAIN/buildkite/agent
# Reads the ledger for distd monitor.
DISTD_MONITOR_ID=spiffe://$SPIRE_TRUST_DOMAIN/distd/monitor
DISTD_REPOSITORY=toolchains/go
DISTD_CHANNEL=stable
# /readyz needs the server's SVID: the agent serves it once it synced the entries.
DISTD_START_TIMEOUT=60
# Longer than the config's stop_grace, so a running job is stopped by the daemon.
DISTD_STOP_TIMEOUT=35

_distd_paths() {
	DISTD_DIR=$STACK_DIR/distd
	DISTD_CONFIG=$DISTD_DIR/serve.toml
	DISTD_LINES=$DISTD_DIR/lines.toml
	DISTD_ENV_FILE=$DISTD_DIR/env
	DISTD_STATE=$DISTD_DIR/state
	DISTD_PORT_FILE=$DISTD_DIR/port
	DISTD_OPS_PORT_FILE=$DISTD_DIR/ops-port
	DISTD_PIDFILE=$DISTD_DIR/pid
	DISTD_LOG=$DISTD_DIR/distd.log
	DISTD_ARGS_FILE=$DISTD_DIR/args
	# What /proc/<pid>/cmdline of *our* daemon contains (any distd binary, our config).
	DISTD_MATCH="serve --config $DISTD_CONFIG"
}

_distd_ops_url() { printf 'http://127.0.0.1:%s\n' "$(<"$DISTD_OPS_PORT_FILE")"; }

# _distd_line: sets DISTD_LINE (goX.Y), DISTD_GO_SOURCE, DISTD_GO_DIGEST and
# DISTD_PLATFORMS (TOML array items) for the machine's Go source; DISTD_LINE is
# empty when there is none to pin.
_distd_line() {
	local version goos goarch
	DISTD_LINE='' DISTD_GO_SOURCE='' DISTD_GO_DIGEST='' DISTD_PLATFORMS=''
	if ! DISTD_GO_SOURCE=$(GOTOOLCHAIN=local go env GOROOT 2>/dev/null) || [[ -z $DISTD_GO_SOURCE ]]; then
		warn "distd: no Go found (go env GOROOT); the daemon has no release line"
		return 0
	fi
	DISTD_GO_SOURCE=$(realpath -- "$DISTD_GO_SOURCE")
	version=$(head -n 1 "$DISTD_GO_SOURCE/VERSION" 2>/dev/null) || version=
	if [[ ! $version =~ ^go1\.([0-9]+)(\.[0-9]+)?$ ]]; then
		warn "distd: $DISTD_GO_SOURCE is not a Go release tree (VERSION: ${version:-none}); the daemon has no release line"
		return 0
	fi
	DISTD_GO_DIGEST=$("$(_policy_distd)" source-digest "$DISTD_GO_SOURCE") ||
		die "distd: computing the source digest of $DISTD_GO_SOURCE failed"
	DISTD_LINE=go1.${BASH_REMATCH[1]}
	[[ -d $STACK_HOME/../../distd/patches/$DISTD_LINE ]] ||
		warn "distd: there is no patch series distd/patches/$DISTD_LINE; builds of line $DISTD_LINE will fail"
	goos=$(GOTOOLCHAIN=local go env GOOS)
	goarch=$(GOTOOLCHAIN=local go env GOARCH)
	case $goos/$goarch in
	linux/amd64) DISTD_PLATFORMS='"linux/amd64", "linux/arm64"' ;;
	linux/arm64) DISTD_PLATFORMS='"linux/arm64", "linux/amd64"' ;;
	*) DISTD_PLATFORMS="\"$goos/$goarch\"" ;;
	esac
}

_distd_config() {
	local registry
	registry=127.0.0.1:$(<"$REG_PORT_FILE")
	_distd_line
	{
		printf '# The local stack'"'"'s release line: generated by deploy/local/stack up.\n'
		if [[ -n $DISTD_LINE ]]; then
			printf '[[line]]\n'
			printf 'name = %s\n' "$(_policy_toml_str "$DISTD_LINE")"
			printf 'repository = %s\n' "$(_policy_toml_str "$registry/$DISTD_REPOSITORY")"
			printf 'go_source = %s\n' "$(_policy_toml_str "$DISTD_GO_SOURCE")"
			printf 'go_source_digest = %s\n' "$(_policy_toml_str "$DISTD_GO_DIGEST")"
			printf 'patches = %s\n' "$(_policy_toml_str "$(realpath -m -- "$STACK_HOME/../../distd/patches/$DISTD_LINE")")"
			printf 'platforms = [%s]\n' "$DISTD_PLATFORMS"
			printf 'channels = [%s]\n' "$(_policy_toml_str "$DISTD_CHANNEL")"
		fi
	} | write_file_atomic "$DISTD_LINES" 644
	{
		printf '# The local stack'"'"'s publisher daemon: generated by deploy/local/stack up.\n'
		printf 'listen = "127.0.0.1:%s"\n' "$DISTD_PORT"
		printf 'ops_listen = "127.0.0.1:%s"\n' "$DISTD_OPS_PORT"
		printf 'identity = %s\n' "$(_policy_toml_str "$DISTD_SERVER_ID")"
		printf 'lines = "lines.toml"\n'
		printf 'state_dir = %s\n' "$(_policy_toml_str "$DISTD_STATE")"
		printf 'cache_dir = %s\n' "$(_policy_toml_str "${XDG_CACHE_HOME:-${HOME:?}/.cache}/tcdist/distd")"
		printf 'stop_grace = "20s"\n\n'
		printf '[[grant]]\n'
		printf 'spiffe_id = %s\n' "$(_policy_toml_str "$DISTD_MANAGER_ID")"
		printf 'lines = ["*"]\n'
		printf 'actions = ["read", "build", "promote", "yank"]\n\n'
		printf '[[grant]]\n'
		printf 'spiffe_id = %s\n' "$(_policy_toml_str "$DISTD_READER_ID")"
		printf 'lines = ["*"]\n'
		printf 'actions = ["read"]\n\n'
		printf '[[grant]]\n'
		printf 'spiffe_id = %s\n' "$(_policy_toml_str "$DISTD_MONITOR_ID")"
		printf 'lines = ["*"]\n'
		printf 'actions = ["read"]\n'
		# Every identity that signs records what it signed in the daemon's ledger.
		local id
		for id in "$SPIRE_SIGNER_ID" "$SPIRE_PROMOTER_ID" "$SPIRE_REBUILDER_ID" "$SPIRE_JUDGE_ID"; do
			printf '\n[[grant]]\n'
			printf 'spiffe_id = %s\n' "$(_policy_toml_str "$id")"
			printf 'lines = ["*"]\n'
			printf 'actions = ["ledger"]\n'
		done
		if [[ -n $DISTD_LINE ]]; then
			printf '\n[[grant]]\n'
			printf 'spiffe_id = %s\n' "$(_policy_toml_str "$DISTD_REPORTER_ID")"
			printf 'lines = [%s]\n' "$(_policy_toml_str "$DISTD_LINE")"
			printf 'actions = ["report"]\n'
			# The demo's simulated fleet (spire-config/entries.json: fleet/host-1 … host-8).
			printf '\n[[grant]]\n'
			printf 'path_prefix = %s\n' "$(_policy_toml_str "spiffe://$SPIRE_TRUST_DOMAIN/fleet")"
			printf 'lines = [%s]\n' "$(_policy_toml_str "$DISTD_LINE")"
			printf 'actions = ["report"]\n'
		fi
		# The judge halts a rollout that does worse with the stack's brake identity
		# (TCDIST_JUDGE_ID); every 5 s, so the demo's halt shows within seconds.
		printf '\n[judge]\n'
		printf 'interval = "5s"\n'
	} | write_file_atomic "$DISTD_CONFIG" 644
	# What stack.env gives clients of the components before this one.
	local c
	for c in "${STACK_COMPONENTS[@]}"; do
		[[ $c == distd ]] && break
		"${c}_env"
	done | write_file_atomic "$DISTD_ENV_FILE" 600
}

# _distd_ready: /readyz answers 200 (the daemon has its SVID and is not stopping).
_distd_ready() {
	[[ -s $DISTD_OPS_PORT_FILE ]] || return 1
	[[ $(http_code "$(_distd_ops_url)/readyz") == 200 ]]
}

# _distd_same_binary BIN: the running daemon executes BIN as it is now (not a file
# that was replaced since, which SPIRE no longer attests).
_distd_same_binary() {
	local pid
	pid=$(pidfile_pid "$DISTD_PIDFILE")
	[[ -n $pid ]] || return 1
	[[ $(stat -L -c %d:%i "/proc/$pid/exe" 2>/dev/null) == "$(stat -L -c %d:%i -- "$1")" ]]
}

distd_up() {
	_distd_paths
	_registry_paths
	_policy_paths
	local bin restart=0
	mkdir -p "$DISTD_DIR" "$DISTD_STATE"
	chmod 700 "$DISTD_DIR"
	DISTD_PORT=$(owned_port distd "$DISTD_PORT_FILE" "$DISTD_PIDFILE" "$DISTD_MATCH")
	DISTD_OPS_PORT=$(owned_port distd "$DISTD_OPS_PORT_FILE" "$DISTD_PIDFILE" "$DISTD_MATCH")
	bin=$(_policy_distd)
	_distd_config
	{
		printf '%s\n' "$bin"
		sha256sum "$DISTD_CONFIG" "$DISTD_LINES" "$DISTD_ENV_FILE"
	} >"$DISTD_ARGS_FILE.new"
	replace_if_changed "$DISTD_ARGS_FILE.new" "$DISTD_ARGS_FILE" && restart=1

	if pidfile_alive "$DISTD_PIDFILE" "$DISTD_MATCH"; then
		if ((restart)); then
			log "distd: config, environment or binary changed; restarting"
		elif ! _distd_same_binary "$bin"; then
			log "distd: $bin was rebuilt since the daemon started; restarting"
		elif wait_http "$(_distd_ops_url)/readyz" "$DISTD_START_TIMEOUT" 200 "$DISTD_PIDFILE" "$DISTD_MATCH"; then
			# (A daemon that just started, or whose SVID SPIRE is renewing, is given time.)
			log "distd: already running (pid $(pidfile_pid "$DISTD_PIDFILE")) on https://127.0.0.1:$DISTD_PORT"
			return 0
		else
			warn "distd: pid $(pidfile_pid "$DISTD_PIDFILE") runs but is not ready; restarting"
		fi
		stop_pidfile "$DISTD_PIDFILE" "$DISTD_MATCH" "$DISTD_STOP_TIMEOUT"
	fi

	local keep=() v
	for v in PATH HOME USER LANG TMPDIR XDG_CACHE_HOME GOROOT_BOOTSTRAP RUST_LOG; do
		[[ -n ${!v:-} ]] && keep+=("$v=${!v}")
	done
	log "distd: starting $bin serve on https://127.0.0.1:$DISTD_PORT as $DISTD_SERVER_ID, ops on http://127.0.0.1:$DISTD_OPS_PORT (log $DISTD_LOG)"
	# The wrapper shell moves to distd/, reads the stack's variables and execs distd: the PID
	# stays distd's.
	# shellcheck disable=SC2016 # $0 and $@ expand in the child shell
	start_daemon "$DISTD_PIDFILE" "$DISTD_LOG" env -i "${keep[@]}" \
		bash -c 'cd "${0%/*}" && . "$0" && exec "$@"' "$DISTD_ENV_FILE" \
		"$bin" serve --config "$DISTD_CONFIG"
	if ! wait_http "$(_distd_ops_url)/readyz" "$DISTD_START_TIMEOUT" 200 "$DISTD_PIDFILE" "$DISTD_MATCH"; then
		warn "distd: the daemon did not become ready; $(curl -sS --max-time 5 "$(_distd_ops_url)/readyz" 2>&1 || true)"
		warn "distd: last lines of $DISTD_LOG:"
		tail -n 20 "$DISTD_LOG" >&2 || true
		stop_pidfile "$DISTD_PIDFILE" "$DISTD_MATCH" 5
		die "the publisher daemon did not come up"
	fi
	log "distd: up (pid $(pidfile_pid "$DISTD_PIDFILE"))${DISTD_LINE:+; line $DISTD_LINE: $DISTD_GO_SOURCE at $DISTD_GO_DIGEST}"
}

distd_down() {
	_distd_paths
	stop_pidfile "$DISTD_PIDFILE" "$DISTD_MATCH" "$DISTD_STOP_TIMEOUT"
}

distd_env() {
	_distd_paths
	export_line TCDIST_SERVER "https://127.0.0.1:$(<"$DISTD_PORT_FILE")"
	export_line TCDIST_SERVER_ID "$DISTD_SERVER_ID"
	export_line TCDIST_SERVER_OPS "$(_distd_ops_url)"
	local line repository
	line=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$DISTD_LINES")
	repository=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$DISTD_LINES")
	if [[ -n $line ]]; then
		export_line TCDIST_SERVER_LINE "$line"
		export_line TCDIST_SERVER_REPOSITORY "$repository"
	fi
	export_line TCDIST_SERVER_CONFIG "$DISTD_CONFIG"
	export_line TCDIST_SERVER_LINES "$DISTD_LINES"
	export_line TCDIST_SERVER_STATE "$DISTD_STATE"
	export_line TCDIST_SERVER_LOG "$DISTD_LOG"
	export_line TCDIST_SERVER_PIDFILE "$DISTD_PIDFILE"
	export_line TCDIST_RELEASE_MANAGER_ID "$DISTD_MANAGER_ID"
	export_line TCDIST_MONITOR_ID "$DISTD_MONITOR_ID"
	# The daemon's ledger file (its own; clients append through the API).
	export_line TCDIST_SERVER_LEDGER "$DISTD_STATE/ledger.jsonl"
}

distd_status() {
	_distd_paths
	local port='?'
	[[ -s $DISTD_PORT_FILE ]] && port=$(<"$DISTD_PORT_FILE")
	if ! pidfile_alive "$DISTD_PIDFILE" "$DISTD_MATCH"; then
		printf 'distd: stopped (port %s)\n' "$port"
		return 1
	fi
	if _distd_ready; then
		printf 'distd: running (pid %s) https://127.0.0.1:%s, ready (ops %s)\n' \
			"$(pidfile_pid "$DISTD_PIDFILE")" "$port" "$(_distd_ops_url)"
	else
		printf 'distd: running (pid %s) https://127.0.0.1:%s, NOT ready: %s\n' \
			"$(pidfile_pid "$DISTD_PIDFILE")" "$port" \
			"$(curl -sS --max-time 5 "$(_distd_ops_url)/readyz" 2>&1 | head -c 200 || true)"
		return 1
	fi
}
