# shellcheck shell=bash
# Component "tsa": an RFC 3161 timestamp authority on http://127.0.0.1:<port>:
# sigstore timestamp-authority's API (v2.1.3) served by deploy/local/tsa-server,
# built once per version and source digest and cached (ensure_go_tool). It signs
# with a stack-local key whose chain (leaf, then root) is generated once with
# openssl, so timestamps stay verifiable across restarts. No NTP monitoring, no
# listener other than the API.
#
# State in $STACK_DIR/tsa/:
#   ca.pem ca-key.pem           the stack's TSA root (EC P-384, CA:TRUE, 10 years)
#   signer.pem signer-key.pem   the signing leaf (EC P-256, CA:FALSE, critical EKU
#                               timeStamping only, 5 years)
#   chain.pem                   signer.pem + ca.pem, as the server loads it
#   port args pid tsa.log       persisted port, last command line, pidfile, log
# and $STACK_DIR/trust/tsa-chain.pem (the chain, leaf first, root last).

TSA_VERSION=v2.1.3
TSA_CA_DAYS=3650
TSA_LEAF_DAYS=1825
TSA_START_TIMEOUT=30

_tsa_paths() {
	TSA_DIR=$STACK_DIR/tsa
	TSA_SRC=$STACK_HOME/tsa-server
	TSA_CA=$TSA_DIR/ca.pem
	TSA_CA_KEY=$TSA_DIR/ca-key.pem
	TSA_CERT=$TSA_DIR/signer.pem
	TSA_KEY=$TSA_DIR/signer-key.pem
	TSA_CHAIN=$TSA_DIR/chain.pem
	TSA_PORT_FILE=$TSA_DIR/port
	TSA_ARGS_FILE=$TSA_DIR/args
	TSA_PIDFILE=$TSA_DIR/pid
	TSA_LOG=$TSA_DIR/tsa.log
	TSA_TRUST_CHAIN=$STACK_DIR/trust/tsa-chain.pem
	# What /proc/<pid>/cmdline of *our* TSA contains.
	TSA_MATCH="tsa-server --certificate-chain-path $TSA_CHAIN"
}

# _tsa_pki: create the TSA root and signing leaf when missing, expiring or not
# matching. Sets TSA_RESTART=1 when anything was regenerated.
_tsa_pki() {
	local tmp
	if [[ -s $TSA_CA_KEY ]] && cert_ok "$TSA_CA" &&
		[[ -s $TSA_KEY ]] && cert_ok "$TSA_CERT" "$TSA_CA" timestampsign && [[ -s $TSA_CHAIN ]]; then
		return 0
	fi
	rm -rf "$TSA_DIR"/pki.*
	tmp=$(mktemp -d "$TSA_DIR/pki.XXXXXX")
	# Not in a condition, so errexit applies inside; a failure leaves only $tmp
	# behind (removed by the next run).
	(
		umask 077
		cd "$tmp" || exit 1
		if [[ -s $TSA_CA_KEY ]] && cert_ok "$TSA_CA"; then
			cp "$TSA_CA" ca.pem
			cp "$TSA_CA_KEY" ca-key.pem
		else
			log "tsa: generating the stack's TSA root"
			make_ca "tcdist local stack TSA root $(random_hex 4)" P-384 sha384 "$TSA_CA_DAYS"
		fi
		log "tsa: generating the timestamp signing certificate"
		issue_leaf signer "tcdist local stack TSA" P-256 sha384 "$TSA_LEAF_DAYS" \
			"extendedKeyUsage = critical, timeStamping"
		openssl verify -purpose timestampsign -CAfile ca.pem signer.pem >/dev/null
		cat signer.pem ca.pem >chain.pem
		chmod 644 ca.pem signer.pem chain.pem
		mv -f ca-key.pem "$TSA_CA_KEY"
		mv -f ca.pem "$TSA_CA"
		mv -f signer-key.pem "$TSA_KEY"
		mv -f signer.pem "$TSA_CERT"
		mv -f chain.pem "$TSA_CHAIN"
	)
	rm -rf "$tmp"
	TSA_RESTART=1
}

_tsa_url() { printf 'http://127.0.0.1:%s' "$TSA_PORT"; }

# _tsa_check: request a timestamp over a nonce file, as a client would, and
# verify the response against the root with the exported chain.
_tsa_check() {
	local tmp rc=0
	tmp=$(mktemp -d "$TSA_DIR/check.XXXXXX")
	random_hex 32 >"$tmp/data"
	if ! openssl ts -query -data "$tmp/data" -sha256 -cert -out "$tmp/query.tsq" 2>/dev/null; then
		rc=1
	elif ! curl -sS -f --max-time 10 -H 'Content-Type: application/timestamp-query' \
		--data-binary "@$tmp/query.tsq" -o "$tmp/reply.tsr" "$(_tsa_url)/api/v1/timestamp" 2>"$tmp/err"; then
		warn "tsa: POST /api/v1/timestamp failed: $(<"$tmp/err")"
		rc=1
	elif ! openssl ts -verify -in "$tmp/reply.tsr" -queryfile "$tmp/query.tsq" \
		-CAfile "$TSA_CA" -untrusted "$TSA_CERT" >"$tmp/err" 2>&1; then
		warn "tsa: the timestamp did not verify: $(<"$tmp/err")"
		rc=1
	fi
	rm -rf "$tmp"
	return "$rc"
}

# _tsa_wait TIMEOUT_S: wait until a real timestamp request succeeds.
_tsa_wait() {
	local deadline=$((SECONDS + $1))
	wait_http "$(_tsa_url)/ping" "$1" 200 "$TSA_PIDFILE" "$TSA_MATCH" || return 1
	until _tsa_check 2>/dev/null; do
		pidfile_alive "$TSA_PIDFILE" "$TSA_MATCH" || return 1
		((SECONDS < deadline)) || {
			_tsa_check
			return 1
		}
		sleep 0.2
	done
}

_tsa_fail() {
	warn "tsa: $1; last lines of $TSA_LOG:"
	tail -n 30 "$TSA_LOG" >&2 || true
	stop_pidfile "$TSA_PIDFILE" "$TSA_MATCH" 5
	die "the timestamp authority did not come up"
}

tsa_up() {
	_tsa_paths
	local bin
	bin=$(ensure_go_tool --src "$TSA_SRC" tsa-server "$TSA_VERSION" .)
	[[ -x $bin/tsa-server ]] || die "tsa: $bin lacks tsa-server; remove it to reinstall"
	mkdir -p "$TSA_DIR" "$STACK_DIR/trust"
	chmod 700 "$TSA_DIR"
	TSA_RESTART=0
	_tsa_pki
	TSA_PORT=$(owned_port tsa "$TSA_PORT_FILE" "$TSA_PIDFILE" "$TSA_MATCH")
	if ! cmp -s "$TSA_CHAIN" "$TSA_TRUST_CHAIN"; then
		write_file_atomic "$TSA_TRUST_CHAIN" 644 <"$TSA_CHAIN"
	fi

	# The first arguments make TSA_MATCH.
	local args=("$bin/tsa-server" --certificate-chain-path "$TSA_CHAIN"
		--timestamp-signer file --file-signer-key-path "$TSA_KEY"
		--host 127.0.0.1 --port "$TSA_PORT" --scheme http --log-type prod)
	printf '%s\n' "${args[@]}" >"$TSA_ARGS_FILE.new"
	replace_if_changed "$TSA_ARGS_FILE.new" "$TSA_ARGS_FILE" && TSA_RESTART=1

	if pidfile_alive "$TSA_PIDFILE" "$TSA_MATCH"; then
		if ((TSA_RESTART)); then
			log "tsa: signing material, binary or arguments changed; restarting"
		elif _tsa_check; then
			log "tsa: already running (pid $(pidfile_pid "$TSA_PIDFILE")) at $(_tsa_url)"
			return 0
		else
			warn "tsa: pid $(pidfile_pid "$TSA_PIDFILE") runs but does not timestamp; restarting"
		fi
		stop_pidfile "$TSA_PIDFILE" "$TSA_MATCH"
	fi

	log "tsa: starting on 127.0.0.1:$TSA_PORT (log $TSA_LOG)"
	start_daemon "$TSA_PIDFILE" "$TSA_LOG" "${args[@]}"
	_tsa_wait "$TSA_START_TIMEOUT" || _tsa_fail "no verifiable timestamp from $(_tsa_url)/api/v1/timestamp"
	log "tsa: up (pid $(pidfile_pid "$TSA_PIDFILE")) at $(_tsa_url)"
}

tsa_down() {
	_tsa_paths
	stop_pidfile "$TSA_PIDFILE" "$TSA_MATCH" 20
}

tsa_env() {
	_tsa_paths
	TSA_PORT=$(<"$TSA_PORT_FILE")
	export_line TCDIST_TSA_URL "$(_tsa_url)"
	export_line TCDIST_TSA_CHAIN "$TSA_TRUST_CHAIN"
	export_line TCDIST_TSA_LOG "$TSA_LOG"
	# The server binary, for tests that start a second, untrusted TSA.
	export_line TCDIST_TSA_BIN "$(head -n1 "$TSA_ARGS_FILE")"
}

tsa_status() {
	_tsa_paths
	local port='?'
	[[ -s $TSA_PORT_FILE ]] && port=$(<"$TSA_PORT_FILE")
	if pidfile_alive "$TSA_PIDFILE" "$TSA_MATCH"; then
		TSA_PORT=$port
		if _tsa_check 2>/dev/null; then
			printf 'tsa: running (pid %s) %s, timestamps verify\n' "$(pidfile_pid "$TSA_PIDFILE")" "$(_tsa_url)"
		else
			printf 'tsa: running (pid %s) %s, NOT answering\n' "$(pidfile_pid "$TSA_PIDFILE")" "$(_tsa_url)"
			return 1
		fi
	else
		printf 'tsa: stopped (port %s)\n' "$port"
		return 1
	fi
}
