# shellcheck shell=bash
# Component "witness": three C2SP tlog-witness witnesses (torchwood's litewitness, built once
# per version and cached), each with its own Ed25519 key held by an ssh-agent of its own, each
# knowing the stack's log (origin and key) from a SQLite database. The log asks them to
# cosign each checkpoint before it publishes it (rekor-tiles' --witness-policy-path, which
# publishes without the quorum when too few answer); distd checks the quorum on the checkpoint
# the log answers with and asks the witnesses itself when it is short. The stack's policy
# requires 2 of the 3. Started before the log, which reads their addresses when it starts; the
# log's key is made here when it is new.
#
# State in $STACK_DIR/witness/wN/: key key.pub (the witness key, ssh format), agent.sock
# agent.pid (its ssh-agent), db (litewitness's), port pid witness.log; and in
# $STACK_DIR/witness/: witnesses.toml, the witnesses' names, keys (C2SP vkeys) and URLs, and
# the quorum, as distd reads them (TCDIST_WITNESSES); log-policy, the same as the log reads it.

WITNESS_VERSION=v0.6.1
WITNESS_COUNT=3
WITNESS_QUORUM=2
WITNESS_START_TIMEOUT=30

_witness_paths() {
	WITNESS_DIR=$STACK_DIR/witness
	WITNESS_FILE=$WITNESS_DIR/witnesses.toml
	WITNESS_LOG_POLICY=$WITNESS_DIR/log-policy
	WITNESS_BIN_DIR=$(go_tools_dir)/litewitness-$WITNESS_VERSION/bin
}

# _witness_n_paths N: the paths of witness N.
_witness_n_paths() {
	W_DIR=$WITNESS_DIR/w$1
	W_NAME=witness-$1.$SPIRE_TRUST_DOMAIN
	W_KEY=$W_DIR/key
	W_SOCK=$W_DIR/agent.sock
	W_AGENT_PIDFILE=$W_DIR/agent.pid
	W_DB=$W_DIR/db
	W_PORT_FILE=$W_DIR/port
	W_PIDFILE=$W_DIR/pid
	W_LOG=$W_DIR/witness.log
	W_MATCH="litewitness -db $W_DB"
	W_AGENT_MATCH="ssh-agent -D -a $W_SOCK"
}

# _witness_vkey NAME ALG KEY_B64: a C2SP signed-note verifier key, NAME+HASH+BASE64(ALG||KEY).
_witness_vkey() {
	python3 - "$@" <<'PY'
import base64, hashlib, sys
name, alg, key = sys.argv[1], bytes([int(sys.argv[2])]), base64.b64decode(sys.argv[3])
digest = hashlib.sha256(name.encode() + b"\n" + alg + key).hexdigest()[:8]
print(f"{name}+{digest}+{base64.b64encode(alg + key).decode()}")
PY
}

# _witness_log_vkey: the stack log's verifier key (Ed25519, type 0x01, named by its origin).
_witness_log_vkey() {
	local raw
	raw=$(openssl pkey -pubin -in "$REKOR_PUB" -outform DER | tail -c 32 | base64 -w0)
	_witness_vkey "$REKOR_ORIGIN" 1 "$raw"
}

# _witness_key_vkey: witness N's cosignature/v1 verifier key (type 0x04).
_witness_key_vkey() {
	local raw
	raw=$(cut -d' ' -f2 "$W_KEY.pub" | base64 -d | tail -c 32 | base64 -w0)
	_witness_vkey "$W_NAME" 4 "$raw"
}

_witness_url() { printf 'http://127.0.0.1:%s\n' "$(<"$W_PORT_FILE")"; }

# _witness_up N LOG_VKEY: witness N running, knowing the log.
_witness_up() {
	local n=$1 log_vkey=$2 port fingerprint
	_witness_n_paths "$n"
	mkdir -p "$W_DIR"
	chmod 700 "$W_DIR"
	[[ -s $W_KEY ]] || ssh-keygen -q -t ed25519 -N '' -C "$W_NAME" -f "$W_KEY"
	if ! pidfile_alive "$W_AGENT_PIDFILE" "$W_AGENT_MATCH"; then
		rm -f "$W_SOCK"
		start_daemon "$W_AGENT_PIDFILE" "$W_DIR/agent.log" ssh-agent -D -a "$W_SOCK"
		for _ in $(seq 50); do [[ -S $W_SOCK ]] && break; sleep 0.1; done
	fi
	SSH_AUTH_SOCK=$W_SOCK ssh-add -q "$W_KEY" 2>/dev/null || die "witness $n: ssh-add failed"
	# The log, and its key, once: a witness never forgets the tree size it cosigned.
	if ! "$WITNESS_BIN_DIR/witnessctl" list-logs -db "$W_DB" 2>/dev/null | grep -qF "\"$REKOR_ORIGIN\""; then
		"$WITNESS_BIN_DIR/witnessctl" add-log -db "$W_DB" -origin "$REKOR_ORIGIN" >/dev/null
	fi
	if ! "$WITNESS_BIN_DIR/witnessctl" list-logs -db "$W_DB" | grep -qF "$log_vkey"; then
		"$WITNESS_BIN_DIR/witnessctl" add-key -db "$W_DB" -origin "$REKOR_ORIGIN" -key "$log_vkey" >/dev/null
	fi
	port=$(owned_port "witness $n" "$W_PORT_FILE" "$W_PIDFILE" "$W_MATCH")
	if pidfile_alive "$W_PIDFILE" "$W_MATCH"; then
		log "witness $n: already running (pid $(pidfile_pid "$W_PIDFILE")) at $(_witness_url)"
		return 0
	fi
	fingerprint=$(ssh-keygen -l -E sha256 -f "$W_KEY.pub" | cut -d' ' -f2)
	start_daemon "$W_PIDFILE" "$W_LOG" "$WITNESS_BIN_DIR/litewitness" -db "$W_DB" \
		-name "$W_NAME" -key "$fingerprint" -ssh-agent "$W_SOCK" -listen "127.0.0.1:$port"
	# It serves only POST /add-checkpoint: a GET of it answers 405 once it listens.
	wait_http "$(_witness_url)/add-checkpoint" "$WITNESS_START_TIMEOUT" 405 "$W_PIDFILE" "$W_MATCH" ||
		die "witness $n did not come up (log $W_LOG)"
	log "witness $n: up (pid $(pidfile_pid "$W_PIDFILE")) at $(_witness_url) as $W_NAME"
}

witness_up() {
	_witness_paths
	_rekor_paths
	need_cmd ssh-agent ssh-add ssh-keygen openssl
	ensure_go_tool litewitness "$WITNESS_VERSION" \
		"filippo.io/torchwood/cmd/litewitness@$WITNESS_VERSION" \
		"filippo.io/torchwood/cmd/witnessctl@$WITNESS_VERSION" >/dev/null
	mkdir -p "$WITNESS_DIR" "$REKOR_DIR" "$STACK_DIR/trust"
	chmod 700 "$WITNESS_DIR" "$REKOR_DIR"
	_rekor_key
	local n log_vkey
	log_vkey=$(_witness_log_vkey)
	for ((n = 1; n <= WITNESS_COUNT; n++)); do
		_witness_up "$n" "$log_vkey"
	done
	{
		printf '# The local stack'"'"'s witnesses: generated by deploy/local/stack up.\n'
		printf 'quorum = %s\n' "$WITNESS_QUORUM"
		for ((n = 1; n <= WITNESS_COUNT; n++)); do
			_witness_n_paths "$n"
			printf '\n[[witness]]\nname = "%s"\nkey = "%s"\nurl = "%s"\n' \
				"$W_NAME" "$(_witness_key_vkey)" "$(_witness_url)"
		done
	} | write_file_atomic "$WITNESS_FILE" 644
	# The log's witness policy (tessera's format): each witness, and the quorum of them.
	{
		printf '# The local stack'"'"'s witnesses, as its log reads them: generated by deploy/local/stack up.\n'
		for ((n = 1; n <= WITNESS_COUNT; n++)); do
			_witness_n_paths "$n"
			printf 'witness w%s %s %s\n' "$n" "$(_witness_key_vkey)" "$(_witness_url)"
		done
		printf 'group stack %s' "$WITNESS_QUORUM"
		for ((n = 1; n <= WITNESS_COUNT; n++)); do printf ' w%s' "$n"; done
		printf '\nquorum stack\n'
	} | write_file_atomic "$WITNESS_LOG_POLICY" 644
}

witness_down() {
	_witness_paths
	local n
	for ((n = 1; n <= WITNESS_COUNT; n++)); do
		_witness_n_paths "$n"
		stop_pidfile "$W_PIDFILE" "$W_MATCH" 10
		stop_pidfile "$W_AGENT_PIDFILE" "$W_AGENT_MATCH" 5
	done
}

witness_env() {
	_witness_paths
	export_line TCDIST_WITNESSES "$WITNESS_FILE"
	export_line TCDIST_WITNESS_DIR "$WITNESS_DIR"
	export_line TCDIST_WITNESS_BIN_DIR "$WITNESS_BIN_DIR"
}

witness_status() {
	_witness_paths
	local n rc=0
	for ((n = 1; n <= WITNESS_COUNT; n++)); do
		_witness_n_paths "$n"
		if pidfile_alive "$W_PIDFILE" "$W_MATCH"; then
			printf 'witness %s: running (pid %s) at %s\n' "$n" "$(pidfile_pid "$W_PIDFILE")" "$(_witness_url)"
		else
			printf 'witness %s: stopped\n' "$n"
			rc=1
		fi
	done
	return "$rc"
}

# witness_policy: the policy lines of the stack log's witnesses (inside its
# [transparency_logs] table): their names, keys and addresses, the quorum, required.
witness_policy() {
	_witness_paths
	python3 - "$WITNESS_FILE" <<'PY'
import sys, tomllib
w = tomllib.load(open(sys.argv[1], "rb"))
print('witness = "required"')
print(f'witness_quorum = {w["quorum"]}')
print("witnesses = [")
for entry in w["witness"]:
    print(f'\t{{ name = "{entry["name"]}", key = "{entry["key"]}", url = "{entry["url"]}" }},')
print("]")
PY
}
