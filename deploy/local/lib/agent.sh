# shellcheck shell=bash
# Component "agent": the build-host agent service (`tcverify agent`), run as its
# own unix user as on a build host, with a root-owned config that names the
# stack's policy, trusted root, registry CA and credentials. Clients (the demo,
# the Buildkite hooks) reach it as jobs do: TCVERIFY_AGENT=$TCDIST_AGENT_SOCKET in
# an environment without stack.env's direct-mode settings, which tcverify refuses
# through the agent. Comes after "distd", to which it sends its jobs' outcomes.
#
# Users (created when missing; needs root, else the agent runs as the stack's
# user and says so): tcdist-agent (the service), group tcdist-clients (may
# connect to the socket; the stack's user is root and always may).
#
# State in $STACK_DIR/agent/:
#   etc/   root:tcdist-agent 0750: agent.toml, registry-ca.pem, docker/config.json
#   bin/   root 0755: the tcverify the agent runs (a copy, not writable by it)
#   store/ audit.log   tcdist-agent: what the agent installed, and its records
#   run/agent.sock     the socket (0660, group tcdist-clients)
#   pid agent.log args pidfile, log, last command line and config digest
#   metrics-port       the Prometheus metrics port on 127.0.0.1 (TCDIST_AGENT_METRICS_URL)
#   host-id            the agent's host ID, when it is set (TCDIST_AGENT_HOST_ID)
#   uid                the uid it runs as, which its SPIRE entry names
#
# Identity: SPIRE gives the agent's process (its user, running bin/tcverify) the
# SVID spiffe://tcdist.test/buildkite/agent (spire-config/entries.json). Its
# SPIFFE ID is the agent's host ID, and the agent sends its jobs' outcomes with
# it to the stack's daemon, which grants it `report` on the stack's line
# (docs/agent.md, "Sending outcomes to the daemon"). TCDIST_AGENT_HOST_ID set
# when `stack up` runs becomes the config's host_id instead, and the outcomes are
# then only spooled (the daemon takes a host's outcomes only under its SVID's
# SPIFFE ID); `stack env` exports it again.

AGENT_USER=tcdist-agent
AGENT_GROUP=tcdist-clients
AGENT_START_TIMEOUT=20

_agent_paths() {
	AGENT_DIR=$STACK_DIR/agent
	AGENT_ETC=$AGENT_DIR/etc
	AGENT_CONFIG=$AGENT_ETC/agent.toml
	AGENT_BIN=$AGENT_DIR/bin/tcverify
	AGENT_STORE=$AGENT_DIR/store
	AGENT_AUDIT=$AGENT_DIR/audit.log
	AGENT_SOCKET=$AGENT_DIR/run/agent.sock
	AGENT_PIDFILE=$AGENT_DIR/pid
	AGENT_LOG=$AGENT_DIR/agent.log
	AGENT_ARGS_FILE=$AGENT_DIR/args
	AGENT_METRICS_PORT_FILE=$AGENT_DIR/metrics-port
	AGENT_HOST_ID_FILE=$AGENT_DIR/host-id
	AGENT_UID_FILE=$AGENT_DIR/uid
	AGENT_MATCH="tcverify agent --config $AGENT_CONFIG"
}

# _agent_tcverify: the tcverify to install for the agent: TCVERIFY_BIN when set,
# else the tests' and the demo's build ($TCDIST_BIN), else the newer of the dev and
# release builds; built (dev) only when there is none.
_agent_tcverify() {
	local target=${CARGO_TARGET_DIR:-$STACK_HOME/../../target} candidate newest=
	if [[ -n ${TCVERIFY_BIN:-} ]]; then
		[[ -x $TCVERIFY_BIN ]] || die "agent: TCVERIFY_BIN=$TCVERIFY_BIN is not an executable"
		realpath -- "$TCVERIFY_BIN"
		return 0
	fi
	if [[ -n ${TCDIST_BIN:-} && -x $TCDIST_BIN/tcverify ]]; then
		realpath -- "$TCDIST_BIN/tcverify"
		return 0
	fi
	for candidate in "$target/debug/tcverify" "$target/release/tcverify"; do
		if [[ -x $candidate && (-z $newest || $candidate -nt $newest) ]]; then
			newest=$candidate
		fi
	done
	if [[ -z $newest ]]; then
		log "agent: no tcverify built yet; building it"
		(cd "$STACK_HOME/../.." && cargo build --quiet -p tcverify --bin tcverify) >&2 ||
			die "agent: building tcverify failed"
		newest=$target/debug/tcverify
	fi
	realpath -- "$newest"
}

# _agent_users: the service user and the clients' group, when we may create them.
# Sets AGENT_RUN_AS (empty: run as the stack's user).
_agent_users() {
	AGENT_RUN_AS=
	if ((EUID != 0)); then
		warn "agent: not root, so the agent runs as $(id -un), not as its own user"
		return 0
	fi
	getent group "$AGENT_GROUP" >/dev/null || groupadd --system "$AGENT_GROUP"
	if ! getent passwd "$AGENT_USER" >/dev/null; then
		log "agent: creating the system user $AGENT_USER"
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
			--user-group --groups "$AGENT_GROUP" "$AGENT_USER"
	fi
	# It must reach the stack dir: every directory above it searchable by others.
	if ! setpriv --reuid "$AGENT_USER" --regid "$AGENT_USER" --init-groups \
		test -x "$(dirname "$STACK_DIR")"; then
		warn "agent: $AGENT_USER cannot reach $STACK_DIR (a directory above it is not searchable by others), so the agent runs as $(id -un); put the stack (TCDIST_STACK_DIR) under a searchable directory to run it as its own user"
		return 0
	fi
	AGENT_RUN_AS=$AGENT_USER
}

# _agent_entry_uid: the uid the agent's SPIRE entry names: the one it ran as at
# the last up, else the stack's user's.
_agent_entry_uid() {
	if [[ -s $AGENT_UID_FILE ]]; then
		cat -- "$AGENT_UID_FILE"
	else
		id -u
	fi
}

# _agent_entry: the agent's SPIRE entry names the user it runs as. spire.sh
# applied the entries with the last up's (_agent_entry_uid); when the agent runs
# as another (the first up as root, which created its user), apply them again.
# The agent waits for SPIRE's next sync at its start (docs/agent.md, host_id).
_agent_entry() {
	local uid
	if [[ -n $AGENT_RUN_AS ]]; then
		uid=$(id -u "$AGENT_RUN_AS")
	else
		uid=$(id -u)
	fi
	if [[ $uid != "$(_agent_entry_uid)" ]]; then
		_spire_paths
		_spire_apply_entries "$uid"
	fi
	printf '%s\n' "$uid" >"$AGENT_UID_FILE"
}

# _agent_files: the root-owned config and what it names; the agent's own dirs.
# Sets AGENT_RESTART=1 when the binary or the config changed.
_agent_files() {
	local owner=${AGENT_RUN_AS:-$(id -un)} group
	group=$(id -gn "$owner")
	# The agent's user must reach the stack's public trust files (policy.toml,
	# trust/); every secret there stays in a directory of mode 0700.
	chmod 711 "$STACK_DIR"
	mkdir -p "$AGENT_ETC/docker" "$AGENT_DIR/bin" "$AGENT_STORE" "$AGENT_DIR/run"
	chown root:"$group" "$AGENT_ETC" "$AGENT_ETC/docker" 2>/dev/null || true
	chmod 750 "$AGENT_ETC" "$AGENT_ETC/docker"
	chmod 755 "$AGENT_DIR" "$AGENT_DIR/bin"
	chown "$owner:$group" "$AGENT_STORE" "$AGENT_DIR/run"
	chmod 755 "$AGENT_STORE" "$AGENT_DIR/run"
	touch "$AGENT_AUDIT" && chown "$owner:$group" "$AGENT_AUDIT" && chmod 640 "$AGENT_AUDIT"

	cp "$REG_CA" "$AGENT_ETC/registry-ca.pem.new"
	chmod 644 "$AGENT_ETC/registry-ca.pem.new"
	replace_if_changed "$AGENT_ETC/registry-ca.pem.new" "$AGENT_ETC/registry-ca.pem" && AGENT_RESTART=1
	cp "$REG_AUTH_FILE" "$AGENT_ETC/docker/config.json.new"
	chown root:"$group" "$AGENT_ETC/docker/config.json.new" 2>/dev/null || true
	chmod 640 "$AGENT_ETC/docker/config.json.new"
	replace_if_changed "$AGENT_ETC/docker/config.json.new" "$AGENT_ETC/docker/config.json" && AGENT_RESTART=1
	if [[ -n ${TCDIST_AGENT_HOST_ID:-} ]]; then
		printf '%s\n' "$TCDIST_AGENT_HOST_ID" >"$AGENT_HOST_ID_FILE"
	else
		rm -f -- "$AGENT_HOST_ID_FILE"
	fi
	# The pull-through cache as the registry's mirror, with the registry's CA from the
	# agent's own copy ([registry] ca), since the stack's directory is not the agent's to read.
	_cache_paths
	mkdir -p "$AGENT_ETC/mirrors/127.0.0.1:$REG_PORT"
	chmod 755 "$AGENT_ETC/mirrors" "$AGENT_ETC/mirrors/127.0.0.1:$REG_PORT"
	grep -v '^  ca = ' "$CACHE_MIRRORS/127.0.0.1:$REG_PORT/hosts.toml" \
		>"$AGENT_ETC/mirrors/127.0.0.1:$REG_PORT/hosts.toml.new"
	chmod 644 "$AGENT_ETC/mirrors/127.0.0.1:$REG_PORT/hosts.toml.new"
	replace_if_changed "$AGENT_ETC/mirrors/127.0.0.1:$REG_PORT/hosts.toml.new" \
		"$AGENT_ETC/mirrors/127.0.0.1:$REG_PORT/hosts.toml" && AGENT_RESTART=1
	cp "$(_agent_tcverify)" "$AGENT_BIN.new"
	chmod 755 "$AGENT_BIN.new"
	replace_if_changed "$AGENT_BIN.new" "$AGENT_BIN" && AGENT_RESTART=1

	# Outcomes go to the daemon (which runs before the agent) with the agent's SVID, whose
	# SPIFFE ID is then the host ID: not when TCDIST_AGENT_HOST_ID names another.
	local report_to=
	if [[ -z ${TCDIST_AGENT_HOST_ID:-} ]]; then
		_spire_paths
		_distd_paths
		report_to=https://127.0.0.1:$(<"$DISTD_PORT_FILE")
	fi
	{
		printf '# The local stack'"'"'s build-host agent: generated by deploy/local/stack up.\n'
		printf 'socket = %s\n' "$(_policy_toml_str "$AGENT_SOCKET")"
		printf 'socket_mode = "0660"\n'
		[[ -n $AGENT_RUN_AS ]] && printf 'socket_group = %s\n' "$(_policy_toml_str "$AGENT_GROUP")"
		printf 'store = %s\n' "$(_policy_toml_str "$AGENT_STORE")"
		printf 'policy = %s\n' "$(_policy_toml_str "$POLICY_FILE")"
		printf 'trust = %s\n' "$(_policy_toml_str "$POLICY_TRUSTED_ROOT")"
		printf 'audit_log = %s\n' "$(_policy_toml_str "$AGENT_AUDIT")"
		printf 'fsck_interval = "1h"\n'
		printf 'mirrors = %s\n' "$(_policy_toml_str "$AGENT_ETC/mirrors")"
		[[ -n ${TCDIST_AGENT_HOST_ID:-} ]] && printf 'host_id = %s\n' "$(_policy_toml_str "$TCDIST_AGENT_HOST_ID")"
		if [[ -n $report_to ]]; then
			printf 'spiffe_endpoint_socket = %s\n' "$(_policy_toml_str "unix://$SPIRE_WORKLOAD_SOCKET")"
			printf 'spiffe_id = %s\n' "$(_policy_toml_str "$DISTD_REPORTER_ID")"
			printf 'report_to = %s\n' "$(_policy_toml_str "$report_to")"
			printf 'report_server_id = %s\n' "$(_policy_toml_str "$DISTD_SERVER_ID")"
			printf 'report_every = "2s"\n'
		fi
		printf 'metrics_listen = "127.0.0.1:%s"\n\n' "$AGENT_METRICS_PORT"
		printf '[registry]\n'
		printf 'ca = %s\n' "$(_policy_toml_str "$AGENT_ETC/registry-ca.pem")"
		printf 'docker_config = %s\n' "$(_policy_toml_str "$AGENT_ETC/docker")"
	} >"$AGENT_CONFIG.new"
	chmod 644 "$AGENT_CONFIG.new"
	replace_if_changed "$AGENT_CONFIG.new" "$AGENT_CONFIG" && AGENT_RESTART=1
	# The policy and trusted root are read at start: a new one needs a restart.
	sha256sum "$POLICY_FILE" "$POLICY_TRUSTED_ROOT" "$AGENT_CONFIG" "$AGENT_BIN" \
		"${AGENT_RUN_AS:-self}" >"$AGENT_ARGS_FILE.new" 2>/dev/null || true
	replace_if_changed "$AGENT_ARGS_FILE.new" "$AGENT_ARGS_FILE" && AGENT_RESTART=1
	return 0
}

# _agent_answers: the agent answers a request (one it refuses at once: a
# reference that does not parse, exit 2; exit 3 would mean no connection).
_agent_answers() {
	local rc=0
	[[ -S $AGENT_SOCKET ]] || return 1
	"$AGENT_BIN" verify "not a reference" --agent "$AGENT_SOCKET" >/dev/null 2>&1 || rc=$?
	((rc == 2))
}

agent_up() {
	_agent_paths
	_policy_paths
	_registry_paths
	AGENT_RESTART=0
	mkdir -p "$AGENT_DIR"
	AGENT_METRICS_PORT=$(owned_port agent "$AGENT_METRICS_PORT_FILE" "$AGENT_PIDFILE" "$AGENT_MATCH")
	_agent_users
	_agent_entry
	_agent_files
	if pidfile_alive "$AGENT_PIDFILE" "$AGENT_MATCH"; then
		if ((AGENT_RESTART == 0)) && _agent_answers; then
			log "agent: already running (pid $(pidfile_pid "$AGENT_PIDFILE")) on $AGENT_SOCKET"
			return 0
		fi
		log "agent: binary, config or trust changed; restarting"
		stop_pidfile "$AGENT_PIDFILE" "$AGENT_MATCH"
	fi
	local argv=("$AGENT_BIN" agent --config "$AGENT_CONFIG")
	if [[ -n $AGENT_RUN_AS ]]; then
		argv=(setpriv --reuid "$AGENT_RUN_AS" --regid "$AGENT_RUN_AS" --init-groups -- "${argv[@]}")
	fi
	log "agent: starting as ${AGENT_RUN_AS:-$(id -un)} on $AGENT_SOCKET (log $AGENT_LOG)"
	start_daemon "$AGENT_PIDFILE" "$AGENT_LOG" env -i PATH=/usr/bin:/bin "${argv[@]}"
	local deadline=$((SECONDS + AGENT_START_TIMEOUT))
	until _agent_answers; do
		if ! pidfile_alive "$AGENT_PIDFILE" "$AGENT_MATCH" || ((SECONDS >= deadline)); then
			warn "agent: it did not answer on $AGENT_SOCKET; last lines of $AGENT_LOG:"
			tail -n 20 "$AGENT_LOG" >&2 || true
			stop_pidfile "$AGENT_PIDFILE" "$AGENT_MATCH" 5
			die "the agent did not come up"
		fi
		sleep 0.1
	done
	log "agent: up (pid $(pidfile_pid "$AGENT_PIDFILE"))"
}

agent_down() {
	_agent_paths
	stop_pidfile "$AGENT_PIDFILE" "$AGENT_MATCH" 35
}

agent_env() {
	_agent_paths
	export_line TCDIST_AGENT_SOCKET "$AGENT_SOCKET"
	export_line TCDIST_AGENT_CONFIG "$AGENT_CONFIG"
	export_line TCDIST_AGENT_STORE "$AGENT_STORE"
	export_line TCDIST_AGENT_AUDIT_LOG "$AGENT_AUDIT"
	export_line TCDIST_AGENT_LOG "$AGENT_LOG"
	export_line TCDIST_AGENT_PIDFILE "$AGENT_PIDFILE"
	export_line TCDIST_AGENT_METRICS_URL "http://127.0.0.1:$(<"$AGENT_METRICS_PORT_FILE")/metrics"
	export_line TCDIST_AGENT_USER "$AGENT_USER"
	export_line TCDIST_AGENT_GROUP "$AGENT_GROUP"
	export_line TCDIST_AGENT_BIN "$AGENT_BIN"
	# The values of the agent's SPIRE entry, for spire-config/apply-entries.
	export_line TCDIST_SPIRE_BUILD_AGENT_UID "$(_agent_entry_uid)"
	export_line TCDIST_SPIRE_BUILD_AGENT_PATH "$AGENT_BIN"
	if [[ -s $AGENT_HOST_ID_FILE ]]; then
		export_line TCDIST_AGENT_HOST_ID "$(<"$AGENT_HOST_ID_FILE")"
	fi
}

agent_status() {
	_agent_paths
	if pidfile_alive "$AGENT_PIDFILE" "$AGENT_MATCH" && _agent_answers; then
		printf 'agent: running (pid %s) on %s\n' "$(pidfile_pid "$AGENT_PIDFILE")" "$AGENT_SOCKET"
	else
		printf 'agent: stopped\n'
		return 1
	fi
}
