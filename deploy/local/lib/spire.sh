# shellcheck shell=bash
# Component "spire": a SPIRE server and one agent (trust domain tcdist.test), built
# from source once per version and cached (ensure_go_tool). The agent attests
# with a one-time join token and serves the SPIFFE Workload API on a Unix socket;
# its unix workload attestor discovers the caller's executable path, so the
# release signer's identity goes to the registered distd binaries only. The
# registration entries come from spire-config/entries.json through
# spire-config/apply-entries (idempotent; re-run by every `up`). The build-host
# agent's entry names the agent's user and its copy of tcverify (lib/agent.sh):
# the user is the one the agent ran as at the last `up` (the stack's before the
# first); when it runs as another, agent.sh applies the entries again. The server
# loads one external plugin, the CredentialComposer in
# spire-config/credentialcomposer-codesigning (built per source digest and
# cached, ensure_go_tool --src), which adds the codeSigning extended key usage
# to the release signer's X509-SVIDs.
#
# State in $STACK_DIR/spire/:
#   server/server.conf agent/agent.conf  rendered from spire-config/local/*.conf.in
#   server/data/ agent/data/             SQLite datastore, CA keys; agent SVID and keys
#   server/server.log agent/agent.log    logs (appended across restarts)
#   server.sock                          server API (spire-server CLI)
#   *-port, */pid, */cmd                 persisted ports, pidfiles, last command lines
#   bootstrap-bundle.pem                 the server CA the agent trusts at its first start
# all private (the directory is 0700); $STACK_DIR/spire-public/workload.sock, the
# Workload API (SPIFFE_ENDPOINT_SOCKET), alone in a directory every user may
# traverse (0755), as SPIRE means it: any workload may ask, and the attestation
# decides what it gets (the build-host agent runs as another user); and
# $STACK_DIR/trust/tcdist.test.bundle.pem (the trust domain's CAs, PEM).

SPIRE_VERSION=v1.13.3
SPIRE_TRUST_DOMAIN=tcdist.test
SPIRE_AGENT_ID=spiffe://$SPIRE_TRUST_DOMAIN/agent/local
SPIRE_SIGNER_ID=spiffe://$SPIRE_TRUST_DOMAIN/distd/signer
# Signs channel heads and yank lists (the policy's promoters).
SPIRE_PROMOTER_ID=spiffe://$SPIRE_TRUST_DOMAIN/distd/promoter
# Halts rollouts and advances them along their promoter-signed plan (the policy's brakes:
# the daemon's judge).
SPIRE_JUDGE_ID=spiffe://$SPIRE_TRUST_DOMAIN/distd/judge
# Co-signs releases it rebuilt to the same digest (distd rebuild).
SPIRE_REBUILDER_ID=spiffe://$SPIRE_TRUST_DOMAIN/distd/rebuilder
SPIRE_START_TIMEOUT=60
# How long `up` waits for the agent to serve this shell's identity (entries reach
# the agent with its next sync, every 5 s).
SPIRE_SYNC_TIMEOUT=30

_spire_paths() {
	SPIRE_CONFIG_DIR=$(realpath -- "$STACK_HOME/../../spire-config")
	SPIRE_DIR=$STACK_DIR/spire
	SPIRE_BIN_DIR=$(go_tools_dir)/spire-$SPIRE_VERSION/bin
	SPIRE_CC_SRC=$SPIRE_CONFIG_DIR/credentialcomposer-codesigning
	SPIRE_SERVER_DIR=$SPIRE_DIR/server
	SPIRE_SERVER_CONF=$SPIRE_SERVER_DIR/server.conf
	SPIRE_SERVER_DATA=$SPIRE_SERVER_DIR/data
	SPIRE_SERVER_LOG=$SPIRE_SERVER_DIR/server.log
	SPIRE_SERVER_PIDFILE=$SPIRE_SERVER_DIR/pid
	SPIRE_SERVER_CMDFILE=$SPIRE_SERVER_DIR/cmd
	SPIRE_SERVER_SOCKET=$SPIRE_DIR/server.sock
	SPIRE_SERVER_PORT_FILE=$SPIRE_DIR/server-port
	SPIRE_SERVER_HEALTH_PORT_FILE=$SPIRE_DIR/server-health-port
	SPIRE_AGENT_DIR=$SPIRE_DIR/agent
	SPIRE_AGENT_CONF=$SPIRE_AGENT_DIR/agent.conf
	SPIRE_AGENT_DATA=$SPIRE_AGENT_DIR/data
	SPIRE_AGENT_LOG=$SPIRE_AGENT_DIR/agent.log
	SPIRE_AGENT_PIDFILE=$SPIRE_AGENT_DIR/pid
	SPIRE_AGENT_CMDFILE=$SPIRE_AGENT_DIR/cmd
	SPIRE_AGENT_TOKEN_FILE=$SPIRE_AGENT_DIR/join-token
	SPIRE_AGENT_HEALTH_PORT_FILE=$SPIRE_DIR/agent-health-port
	SPIRE_WORKLOAD_DIR=$STACK_DIR/spire-public
	SPIRE_WORKLOAD_SOCKET=$SPIRE_WORKLOAD_DIR/workload.sock
	SPIRE_BOOTSTRAP_BUNDLE=$SPIRE_DIR/bootstrap-bundle.pem
	SPIRE_BUNDLE=$STACK_DIR/trust/$SPIRE_TRUST_DOMAIN.bundle.pem
	# What /proc/<pid>/cmdline of *our* server and agent contains.
	SPIRE_SERVER_MATCH="spire-server run -config $SPIRE_SERVER_CONF"
	SPIRE_AGENT_MATCH="spire-agent run -config $SPIRE_AGENT_CONF"
}

# _spire_binary_paths NAME OVERRIDE: the absolute, resolved paths of the tcdist
# binary NAME that the stack registers, colon-separated: OVERRIDE alone when set;
# otherwise $TCDIST_BIN/NAME (tests/lib/build.sh) and the dev and release builds
# in the cargo target dir (tests and the demo use debug, benchmarks release).
# The unix attestor reports /proc/<pid>/exe, which is resolved too.
_spire_binary_paths() {
	local name=$1 override=$2 target p out=() seen=:
	if [[ -n $override ]]; then
		realpath -m -- "$override"
		return 0
	fi
	target=$(realpath -m -- "${CARGO_TARGET_DIR:-$STACK_HOME/../../target}")
	for p in ${TCDIST_BIN:+"$TCDIST_BIN/$name"} "$target/debug/$name" "$target/release/$name"; do
		p=$(realpath -m -- "$p")
		[[ $seen == *":$p:"* ]] && continue
		seen+=$p:
		out+=("$p")
	done
	(
		IFS=:
		printf '%s\n' "${out[*]}"
	)
}

_spire_server() { "$SPIRE_BIN_DIR/spire-server" "$@" -socketPath "$SPIRE_SERVER_SOCKET"; }

# _spire_wait_ready NAME PORT PIDFILE MATCH LOG: wait for the health listener's
# /ready; on failure show the log tail.
_spire_wait_ready() {
	local name=$1 port=$2 pidfile=$3 match=$4 logfile=$5
	if ! wait_http "http://127.0.0.1:$port/ready" "$SPIRE_START_TIMEOUT" 200 "$pidfile" "$match"; then
		warn "spire: $name did not become ready; last lines of $logfile:"
		tail -n 30 "$logfile" >&2 || true
		return 1
	fi
}

# _spire_write_bundles: the bootstrap bundle for the agent, and the trust
# domain bundle for clients. The latter keeps CA certificates it held before
# (the server rotates its CA), so releases signed under an earlier CA still
# chain; current CAs come first.
_spire_write_bundles() {
	local pem merged
	pem=$(_spire_server bundle show -format pem) || die "spire: bundle show failed"
	[[ $pem == *"BEGIN CERTIFICATE"* ]] || die "spire: bundle show returned no certificate"
	printf '%s\n' "$pem" | write_file_atomic "$SPIRE_BOOTSTRAP_BUNDLE" 644
	mkdir -p "$(dirname "$SPIRE_BUNDLE")"
	merged=$(
		python3 - "$SPIRE_BOOTSTRAP_BUNDLE" "$SPIRE_BUNDLE" <<'PY'
import re, sys
pat = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)
def certs(path):
    try:
        with open(path) as f:
            return pat.findall(f.read())
    except FileNotFoundError:
        return []
out = []
for c in certs(sys.argv[1]) + certs(sys.argv[2]):
    if c not in out:
        out.append(c)
print("\n".join(out))
PY
	)
	printf '%s\n' "$merged" | write_file_atomic "$SPIRE_BUNDLE" 644
}

# _spire_agent_attested: the agent holds an SVID that is valid for at least
# another 2 minutes and that the server knows (not banned), so it can start
# without a join token.
_spire_agent_attested() {
	local data=$SPIRE_AGENT_DATA/agent-data.json pem id
	[[ -s $data ]] || return 1
	pem=$(python3 -c '
import base64, json, sys
svid = json.load(open(sys.argv[1])).get("svid") or []
print(base64.b64decode(svid[0]).decode() if svid else "")' "$data" 2>/dev/null) || return 1
	[[ -n $pem ]] || return 1
	openssl x509 -noout -checkend 120 <<<"$pem" >/dev/null 2>&1 || return 1
	id=$(openssl x509 -noout -ext subjectAltName <<<"$pem" 2>/dev/null |
		grep -o "URI:spiffe://$SPIRE_TRUST_DOMAIN/spire/agent/[^, ]*" | head -n1) || return 1
	id=${id#URI:}
	[[ -n $id ]] || return 1
	_spire_server agent show -spiffeID "$id" -output json 2>/dev/null |
		python3 -c 'import json, sys; sys.exit(1 if json.load(sys.stdin).get("banned") else 0)' 2>/dev/null
}

# _spire_credential_composer: build (or find cached) the codeSigning
# CredentialComposer plugin; set SPIRE_CC_BIN and SPIRE_CC_SHA256, which the
# server configuration pins (plugin_cmd, plugin_checksum).
_spire_credential_composer() {
	local bin
	bin=$(ensure_go_tool --src "$SPIRE_CC_SRC" spire-credentialcomposer-codesigning "$SPIRE_VERSION" .)
	SPIRE_CC_BIN=$bin/credentialcomposer-codesigning
	[[ -x $SPIRE_CC_BIN ]] || die "spire: $bin lacks credentialcomposer-codesigning; remove $(dirname "$bin") to reinstall"
	SPIRE_CC_SHA256=$(sha256sum "$SPIRE_CC_BIN" | cut -d' ' -f1)
}

_spire_server_up() {
	local port=$1 health=$2 restart=0 new=$SPIRE_SERVER_CONF.new argv
	render_template "$SPIRE_CONFIG_DIR/local/server.conf.in" "$new" \
		"SERVER_PORT=$port" \
		"SERVER_SOCKET=$(yaml_dq "$SPIRE_SERVER_SOCKET")" \
		"DATA_DIR=$(yaml_dq "$SPIRE_SERVER_DATA")" \
		"LOG_FILE=$(yaml_dq "$SPIRE_SERVER_LOG")" \
		"HEALTH_PORT=$health" \
		"CC_CODESIGNING_CMD=$(yaml_dq "$SPIRE_CC_BIN")" \
		"CC_CODESIGNING_SHA256=$SPIRE_CC_SHA256"
	replace_if_changed "$new" "$SPIRE_SERVER_CONF" && restart=1
	argv=("$SPIRE_BIN_DIR/spire-server" run -config "$SPIRE_SERVER_CONF")
	printf '%s\n' "${argv[@]}" >"$SPIRE_SERVER_CMDFILE.new"
	replace_if_changed "$SPIRE_SERVER_CMDFILE.new" "$SPIRE_SERVER_CMDFILE" && restart=1

	if pidfile_alive "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH"; then
		if ((restart)); then
			log "spire: server configuration or binary changed; restarting the server"
		elif _spire_server healthcheck >/dev/null 2>&1; then
			log "spire: server already running (pid $(pidfile_pid "$SPIRE_SERVER_PIDFILE"))"
			return 0
		else
			warn "spire: server pid $(pidfile_pid "$SPIRE_SERVER_PIDFILE") runs but is not healthy; restarting"
		fi
		stop_pidfile "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH" 15
	fi
	rm -f "$SPIRE_SERVER_SOCKET"
	log "spire: starting the server on 127.0.0.1:$port (log $SPIRE_SERVER_LOG)"
	start_daemon "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_LOG" "${argv[@]}"
	if ! _spire_wait_ready server "$health" "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH" "$SPIRE_SERVER_LOG" ||
		! _spire_server healthcheck >/dev/null; then
		stop_pidfile "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH" 5
		die "spire: the server did not come up"
	fi
	log "spire: server up (pid $(pidfile_pid "$SPIRE_SERVER_PIDFILE"))"
}

# _spire_agent_start HEALTH_PORT WITH_TOKEN: start the agent (with a fresh join
# token when WITH_TOKEN is 1) and wait until it is ready.
_spire_agent_start() {
	local health=$1 with_token=$2 token argv
	argv=("$SPIRE_BIN_DIR/spire-agent" run -config "$SPIRE_AGENT_CONF")
	if ((with_token)); then
		# A stale SVID would be preferred over the token; drop it.
		rm -f "$SPIRE_AGENT_DATA/agent-data.json"
		token=$(_spire_server token generate -spiffeID "$SPIRE_AGENT_ID" -ttl 600 -output json |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["value"])') ||
			die "spire: could not generate a join token"
		(umask 077 && printf '%s\n' "$token" >"$SPIRE_AGENT_TOKEN_FILE")
		argv+=(-joinTokenFile "$SPIRE_AGENT_TOKEN_FILE")
		log "spire: starting the agent with a new join token (alias $SPIRE_AGENT_ID; log $SPIRE_AGENT_LOG)"
	else
		log "spire: starting the agent with its stored SVID (log $SPIRE_AGENT_LOG)"
	fi
	rm -f "$SPIRE_WORKLOAD_SOCKET"
	start_daemon "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_LOG" "${argv[@]}"
	local rc=0
	_spire_wait_ready agent "$health" "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_MATCH" "$SPIRE_AGENT_LOG" || rc=1
	# The token is single-use: consumed now, or useless.
	rm -f "$SPIRE_AGENT_TOKEN_FILE"
	if ((rc)); then
		stop_pidfile "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_MATCH" 5
		return 1
	fi
}

_spire_agent_up() {
	local port=$1 health=$2 restart=0 new=$SPIRE_AGENT_CONF.new
	render_template "$SPIRE_CONFIG_DIR/local/agent.conf.in" "$new" \
		"SERVER_PORT=$port" \
		"BOOTSTRAP_BUNDLE=$(yaml_dq "$SPIRE_BOOTSTRAP_BUNDLE")" \
		"WORKLOAD_SOCKET=$(yaml_dq "$SPIRE_WORKLOAD_SOCKET")" \
		"DATA_DIR=$(yaml_dq "$SPIRE_AGENT_DATA")" \
		"LOG_FILE=$(yaml_dq "$SPIRE_AGENT_LOG")" \
		"HEALTH_PORT=$health"
	replace_if_changed "$new" "$SPIRE_AGENT_CONF" && restart=1
	printf '%s\n' "$SPIRE_BIN_DIR/spire-agent" run -config "$SPIRE_AGENT_CONF" >"$SPIRE_AGENT_CMDFILE.new"
	replace_if_changed "$SPIRE_AGENT_CMDFILE.new" "$SPIRE_AGENT_CMDFILE" && restart=1

	if pidfile_alive "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_MATCH"; then
		if ((restart)); then
			log "spire: agent configuration or binary changed; restarting the agent"
		elif "$SPIRE_BIN_DIR/spire-agent" healthcheck -socketPath "$SPIRE_WORKLOAD_SOCKET" >/dev/null 2>&1; then
			log "spire: agent already running (pid $(pidfile_pid "$SPIRE_AGENT_PIDFILE"))"
			return 0
		else
			warn "spire: agent pid $(pidfile_pid "$SPIRE_AGENT_PIDFILE") runs but is not healthy; restarting"
		fi
		stop_pidfile "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_MATCH" 15
	fi

	if _spire_agent_attested; then
		# The server may still refuse the stored SVID (e.g. after its CA was
		# replaced): then attest anew.
		_spire_agent_start "$health" 0 ||
			{ warn "spire: the agent did not start with its stored SVID; attesting anew" &&
				_spire_agent_start "$health" 1; } ||
			die "spire: the agent did not come up"
	else
		_spire_agent_start "$health" 1 || die "spire: the agent did not come up"
	fi
	log "spire: agent up (pid $(pidfile_pid "$SPIRE_AGENT_PIDFILE"))"
}

# _spire_wait_identity: wait until the Workload API issues an X.509-SVID to this
# shell (the uid-only entry), i.e. the agent has synced the entries.
_spire_wait_identity() {
	local deadline=$((SECONDS + SPIRE_SYNC_TIMEOUT))
	until "$SPIRE_BIN_DIR/spire-agent" api fetch x509 -silent -timeout 2s \
		-socketPath "$SPIRE_WORKLOAD_SOCKET" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			warn "spire: the Workload API issued no identity to uid $(id -u) within ${SPIRE_SYNC_TIMEOUT}s"
			return 0
		fi
		sleep 0.5
	done
}

spire_up() {
	_spire_paths
	ensure_go_tool --cgo --tool-module tcdist-spire-tools spire "$SPIRE_VERSION" \
		"github.com/spiffe/spire/cmd/spire-server@$SPIRE_VERSION" \
		"github.com/spiffe/spire/cmd/spire-agent@$SPIRE_VERSION" >/dev/null
	[[ -x $SPIRE_BIN_DIR/spire-server && -x $SPIRE_BIN_DIR/spire-agent ]] ||
		die "spire: $SPIRE_BIN_DIR lacks spire-server or spire-agent; remove it to reinstall"
	_spire_credential_composer
	local s
	for s in "$SPIRE_SERVER_SOCKET" "$SPIRE_WORKLOAD_SOCKET"; do
		((${#s} < 108)) || die "spire: socket path too long for a Unix socket (${#s} bytes): $s; use a shorter TCDIST_STACK_DIR"
	done
	mkdir -p "$SPIRE_SERVER_DIR" "$SPIRE_AGENT_DIR" "$SPIRE_SERVER_DATA" "$SPIRE_AGENT_DATA" \
		"$SPIRE_WORKLOAD_DIR"
	chmod 700 "$SPIRE_DIR"
	chmod 755 "$SPIRE_WORKLOAD_DIR"

	local port health_server health_agent
	port=$(owned_port spire "$SPIRE_SERVER_PORT_FILE" "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH")
	health_server=$(owned_port spire "$SPIRE_SERVER_HEALTH_PORT_FILE" "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH")
	health_agent=$(owned_port spire "$SPIRE_AGENT_HEALTH_PORT_FILE" "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_MATCH")

	_spire_server_up "$port" "$health_server"
	_spire_write_bundles
	_agent_paths
	_spire_apply_entries "$(_agent_entry_uid)"
	_spire_agent_up "$port" "$health_agent"
	_spire_wait_identity
	log "spire: Workload API at unix://$SPIRE_WORKLOAD_SOCKET; signer $SPIRE_SIGNER_ID"
}

# _spire_apply_entries BUILD_AGENT_UID: spire-config/entries.json, for this
# stack's binaries and its build-host agent: the agent's copy of tcverify, run
# as BUILD_AGENT_UID.
_spire_apply_entries() {
	local out
	_agent_paths
	out=$(TCDIST_SPIRE_BIN_DIR=$SPIRE_BIN_DIR \
		TCDIST_SPIRE_SERVER_SOCKET=$SPIRE_SERVER_SOCKET \
		TCDIST_SPIRE_DISTD_PATHS=$(_spire_binary_paths distd "${TCDIST_DISTD_BIN:-}") \
		TCDIST_SPIRE_TCVERIFY_PATHS=$(_spire_binary_paths tcverify "${TCVERIFY_BIN:-}") \
		TCDIST_SPIRE_BUILD_AGENT_UID=$1 \
		TCDIST_SPIRE_BUILD_AGENT_PATH=$AGENT_BIN \
		"$SPIRE_CONFIG_DIR/apply-entries" 2>&1) || {
		printf '%s\n' "$out" >&2
		die "spire: applying spire-config/entries.json failed"
	}
	log "spire: ${out##*$'\n'}"
}

spire_down() {
	_spire_paths
	stop_pidfile "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_MATCH" 15
	stop_pidfile "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH" 15
}

spire_env() {
	_spire_paths
	export_line SPIFFE_ENDPOINT_SOCKET "unix://$SPIRE_WORKLOAD_SOCKET"
	export_line TCDIST_SIGNER_ID "$SPIRE_SIGNER_ID"
	export_line TCDIST_PROMOTER_ID "$SPIRE_PROMOTER_ID"
	export_line TCDIST_REBUILDER_ID "$SPIRE_REBUILDER_ID"
	export_line TCDIST_JUDGE_ID "$SPIRE_JUDGE_ID"
	export_line TCDIST_SPIRE_TRUST_DOMAIN "$SPIRE_TRUST_DOMAIN"
	export_line TCDIST_SPIRE_BUNDLE "$SPIRE_BUNDLE"
	export_line TCDIST_SPIRE_SERVER_SOCKET "$SPIRE_SERVER_SOCKET"
	export_line TCDIST_SPIRE_BIN_DIR "$SPIRE_BIN_DIR"
	export_line TCDIST_SPIRE_DISTD_PATHS "$(_spire_binary_paths distd "${TCDIST_DISTD_BIN:-}")"
	export_line TCDIST_SPIRE_TCVERIFY_PATHS "$(_spire_binary_paths tcverify "${TCVERIFY_BIN:-}")"
	export_line TCDIST_SPIRE_SERVER_LOG "$SPIRE_SERVER_LOG"
	export_line TCDIST_SPIRE_AGENT_LOG "$SPIRE_AGENT_LOG"
}

spire_status() {
	_spire_paths
	local rc=0 port='?'
	[[ -s $SPIRE_SERVER_PORT_FILE ]] && port=$(<"$SPIRE_SERVER_PORT_FILE")
	if pidfile_alive "$SPIRE_SERVER_PIDFILE" "$SPIRE_SERVER_MATCH"; then
		if _spire_server healthcheck >/dev/null 2>&1; then
			printf 'spire-server: running (pid %s) 127.0.0.1:%s, healthy\n' "$(pidfile_pid "$SPIRE_SERVER_PIDFILE")" "$port"
		else
			printf 'spire-server: running (pid %s) 127.0.0.1:%s, NOT healthy\n' "$(pidfile_pid "$SPIRE_SERVER_PIDFILE")" "$port"
			rc=1
		fi
	else
		printf 'spire-server: stopped (port %s)\n' "$port"
		rc=1
	fi
	if pidfile_alive "$SPIRE_AGENT_PIDFILE" "$SPIRE_AGENT_MATCH"; then
		if "$SPIRE_BIN_DIR/spire-agent" healthcheck -socketPath "$SPIRE_WORKLOAD_SOCKET" >/dev/null 2>&1; then
			printf 'spire-agent:  running (pid %s) unix://%s, healthy\n' "$(pidfile_pid "$SPIRE_AGENT_PIDFILE")" "$SPIRE_WORKLOAD_SOCKET"
		else
			printf 'spire-agent:  running (pid %s) unix://%s, NOT healthy\n' "$(pidfile_pid "$SPIRE_AGENT_PIDFILE")" "$SPIRE_WORKLOAD_SOCKET"
			rc=1
		fi
	else
		printf 'spire-agent:  stopped\n'
		rc=1
	fi
	return "$rc"
}
