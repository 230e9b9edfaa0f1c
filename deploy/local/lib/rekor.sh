# shellcheck shell=bash
# Component "rekor": a Rekor v2 transparency log (sigstore rekor-tiles, POSIX
# backend), built once per version and cached (ensure_go_tool), and nginx serving
# the log's tiles and checkpoint read-only. The log signs its checkpoints with a
# stack-local ed25519 key generated once, so the log and its key survive
# restarts. The write API (POST /api/v2/log/entries), gRPC and metrics listen on
# 127.0.0.1 only; no witness, nothing outside loopback is contacted.
# Request and response formats: deploy/local/rekor-notes.md.
#
# State in $STACK_DIR/rekor/:
#   key.pem                     the log's signing key (ed25519, PKCS#8 PEM)
#   storage/                    the log (C2SP tlog-tiles layout: checkpoint,
#                               tile/<L>/<N>, tile/entries/<N>; .state/ is private)
#   port grpc-port metrics-port persisted ports of the server
#   args pid rekor.log          last command line, pidfile, log
#   tiles/nginx.conf            nginx serving storage/ (generated)
#   tiles/port tiles/pid        its port and pidfile
#   tiles/error.log access.log  its logs; tiles/nginx.pid, tiles/temp/ are nginx's
# and $STACK_DIR/trust/rekor.pub (the log's public key, PEM SPKI).

# v2.2.1 is the last release that accepts `dsse` entries (v2.3.0 accepts only
# `hashedrekord`); verifiers of DSSE bundles need them (see rekor-notes.md).
REKOR_VERSION=v2.2.1
REKOR_ORIGIN=rekor.tcdist.test
# Entries are acknowledged once a checkpoint covers them: keep that short.
REKOR_CHECKPOINT_INTERVAL=1s
REKOR_START_TIMEOUT=30

_rekor_paths() {
	REKOR_DIR=$STACK_DIR/rekor
	REKOR_BIN_DIR=$(go_tools_dir)/rekor-tiles-$REKOR_VERSION/bin
	REKOR_KEY=$REKOR_DIR/key.pem
	REKOR_PUB=$STACK_DIR/trust/rekor.pub
	REKOR_STORAGE=$REKOR_DIR/storage
	REKOR_PORT_FILE=$REKOR_DIR/port
	REKOR_GRPC_PORT_FILE=$REKOR_DIR/grpc-port
	REKOR_METRICS_PORT_FILE=$REKOR_DIR/metrics-port
	REKOR_ARGS_FILE=$REKOR_DIR/args
	REKOR_PIDFILE=$REKOR_DIR/pid
	REKOR_LOG=$REKOR_DIR/rekor.log
	REKOR_TILES_DIR=$REKOR_DIR/tiles
	REKOR_TILES_CONF=$REKOR_TILES_DIR/nginx.conf
	REKOR_TILES_PORT_FILE=$REKOR_TILES_DIR/port
	REKOR_TILES_ARGS_FILE=$REKOR_TILES_DIR/args
	REKOR_TILES_PIDFILE=$REKOR_TILES_DIR/pid
	REKOR_TILES_LOG=$REKOR_TILES_DIR/error.log
	# What /proc/<pid>/cmdline of *our* server and nginx contains (nginx rewrites
	# its title to "nginx: master process <argv>").
	REKOR_MATCH="posix serve --storage-dir $REKOR_STORAGE"
	REKOR_TILES_MATCH="-c $REKOR_TILES_CONF"
}

_rekor_url() { printf 'http://127.0.0.1:%s' "$REKOR_PORT"; }
_rekor_tiles_url() { printf 'http://127.0.0.1:%s' "$REKOR_TILES_PORT"; }

# _rekor_key: generate the log key once; (re)write the exported public key.
# Sets REKOR_RESTART=1 when the key is new.
_rekor_key() {
	local pub
	if [[ ! -s $REKOR_KEY ]]; then
		if [[ -e $REKOR_STORAGE/checkpoint ]]; then
			warn "rekor: no log key, but a log in $REKOR_STORAGE: a new key will sign its checkpoints"
		fi
		log "rekor: generating the log's signing key (ed25519)"
		rm -f "$REKOR_KEY".tmp.*
		(
			umask 077
			tmp=$(mktemp "$REKOR_KEY.tmp.XXXXXX")
			openssl genpkey -algorithm ed25519 -out "$tmp"
			mv -f "$tmp" "$REKOR_KEY"
		)
		REKOR_RESTART=1
	fi
	pub=$(openssl pkey -in "$REKOR_KEY" -pubout) || die "rekor: cannot read the log key $REKOR_KEY"
	if [[ ! -s $REKOR_PUB || $pub != "$(<"$REKOR_PUB")" ]]; then
		printf '%s\n' "$pub" | write_file_atomic "$REKOR_PUB" 644
	fi
}

# _rekor_log_id: the log ID (32 bytes, binary): SHA-256(origin "\n" 0x01
# raw-ed25519-key), the C2SP signed-note key ID. Its first 4 bytes are the
# checkpoint's key hint.
_rekor_log_id() {
	{
		printf '%s\n\001' "$REKOR_ORIGIN"
		openssl pkey -pubin -in "$REKOR_PUB" -outform DER | tail -c 32
	} | openssl dgst -sha256 -binary
}

_rekor_key_hint_hex() { _rekor_log_id | head -c 4 | od -An -tx1 | tr -d ' \n'; }

# _rekor_checkpoint: print the checkpoint nginx serves; fail unless it names our
# origin and carries a signature with our key hint.
_rekor_checkpoint() {
	local cp line hint
	cp=$(curl -sS -f --max-time 5 "$(_rekor_tiles_url)/checkpoint" 2>/dev/null) || return 1
	[[ ${cp%%$'\n'*} == "$REKOR_ORIGIN" ]] || return 1
	line=$(grep -m1 "^— $REKOR_ORIGIN " <<<"$cp") || return 1
	hint=$(base64 -d <<<"${line##* }" 2>/dev/null | head -c 4 | od -An -tx1 | tr -d ' \n')
	[[ -n $hint && $hint == "$(_rekor_key_hint_hex)" ]] || return 1
	printf '%s\n' "$cp"
}

# _rekor_size: the tree size of the served checkpoint.
_rekor_size() {
	local cp
	cp=$(_rekor_checkpoint) || return 1
	sed -n 2p <<<"$cp"
}

# _rekor_check: the server is healthy and its write API answers (an empty
# request is refused with 400, so no entry is added).
_rekor_check() {
	[[ $(http_code "$(_rekor_url)/healthz") == 200 ]] || return 1
	[[ $(http_code "$(_rekor_url)/api/v2/log/entries" -X POST \
		-H 'Content-Type: application/json' --data '{}') == 400 ]]
}

# _rekor_wait CHECK PIDFILE MATCH TIMEOUT_S: until CHECK succeeds.
_rekor_wait() {
	local check=$1 pidfile=$2 match=$3 deadline=$((SECONDS + $4))
	until "$check" >/dev/null 2>&1; do
		pidfile_alive "$pidfile" "$match" || return 1
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

_rekor_fail() {
	local what=$1 logfile=$2 pidfile=$3 match=$4
	warn "rekor: $what; last lines of $logfile:"
	tail -n 30 "$logfile" >&2 || true
	stop_pidfile "$pidfile" "$match" 5
	die "the transparency log did not come up"
}

_rekor_server_up() {
	local bin=$1 grpc metrics args
	REKOR_PORT=$(owned_port rekor "$REKOR_PORT_FILE" "$REKOR_PIDFILE" "$REKOR_MATCH")
	grpc=$(owned_port rekor "$REKOR_GRPC_PORT_FILE" "$REKOR_PIDFILE" "$REKOR_MATCH")
	metrics=$(owned_port rekor "$REKOR_METRICS_PORT_FILE" "$REKOR_PIDFILE" "$REKOR_MATCH")
	# The first arguments make REKOR_MATCH. Every listener is on 127.0.0.1
	# (metrics bind to --http-address).
	args=("$bin" serve --storage-dir "$REKOR_STORAGE"
		--signer-filepath "$REKOR_KEY" --hostname "$REKOR_ORIGIN"
		--http-address 127.0.0.1 --http-port "$REKOR_PORT"
		--grpc-address 127.0.0.1 --grpc-port "$grpc"
		--http-metrics-port "$metrics"
		--checkpoint-interval "$REKOR_CHECKPOINT_INTERVAL")
	# The stack's witnesses (lib/witness.sh, started before): the log asks them to cosign each
	# checkpoint before publishing it, and publishes it without their quorum when too few
	# answer. A policy that changed (their addresses) restarts the log.
	_witness_paths
	if [[ -s $WITNESS_LOG_POLICY ]]; then
		cp "$WITNESS_LOG_POLICY" "$REKOR_DIR/witness-policy.new"
		replace_if_changed "$REKOR_DIR/witness-policy.new" "$REKOR_DIR/witness-policy" && REKOR_RESTART=1
		args+=(--witness-policy-path "$REKOR_DIR/witness-policy")
	fi
	printf '%s\n' "${args[@]}" >"$REKOR_ARGS_FILE.new"
	replace_if_changed "$REKOR_ARGS_FILE.new" "$REKOR_ARGS_FILE" && REKOR_RESTART=1

	if pidfile_alive "$REKOR_PIDFILE" "$REKOR_MATCH"; then
		if ((REKOR_RESTART)); then
			log "rekor: key, binary or arguments changed; restarting the log"
		elif _rekor_check; then
			log "rekor: log already running (pid $(pidfile_pid "$REKOR_PIDFILE")) at $(_rekor_url)"
			return 0
		else
			warn "rekor: pid $(pidfile_pid "$REKOR_PIDFILE") runs but does not answer; restarting"
		fi
		stop_pidfile "$REKOR_PIDFILE" "$REKOR_MATCH" 35
	fi

	log "rekor: starting the log on 127.0.0.1:$REKOR_PORT (log $REKOR_LOG)"
	# Not from inside the storage dir: tessera relinks old partial tiles by
	# paths relative to the working directory.
	(
		cd "$REKOR_DIR" || exit 1
		start_daemon "$REKOR_PIDFILE" "$REKOR_LOG" "${args[@]}"
	)
	_rekor_wait _rekor_check "$REKOR_PIDFILE" "$REKOR_MATCH" "$REKOR_START_TIMEOUT" ||
		_rekor_fail "no answer from $(_rekor_url)" "$REKOR_LOG" "$REKOR_PIDFILE" "$REKOR_MATCH"
	log "rekor: log up (pid $(pidfile_pid "$REKOR_PIDFILE")) at $(_rekor_url)"
}

# _rekor_nginx_conf: nginx.conf for the tiles server, on stdout.
_rekor_nginx_conf() {
	local d=$REKOR_TILES_DIR
	printf '# nginx for the local stack'"'"'s Rekor tiles: generated by deploy/local/stack up.\n'
	printf 'daemon off;\nmaster_process on;\nworker_processes 1;\n'
	# Run as the stack's user (nginx switches to "nobody" only when started as root).
	if [[ $(id -u) -eq 0 ]]; then
		printf 'user %s %s;\n' "$(id -un)" "$(id -gn)"
	fi
	cat <<-CONF
		pid "$d/nginx.pid";
		error_log "$REKOR_TILES_LOG" warn;
		events { worker_connections 256; }
		http {
		$(nginx_http_prelude "$d")
		    sendfile on;
		    types {}
		    default_type application/octet-stream;
		    server {
		        listen 127.0.0.1:$REKOR_TILES_PORT;
		        root "$REKOR_STORAGE";
		        # Read-only: any other method is refused (403).
		        location = /checkpoint {
		            limit_except GET { deny all; }
		            default_type text/plain;
		            charset utf-8;
		            etag off;
		            if_modified_since off;
		            add_header Cache-Control "no-store" always;
		        }
		        location /tile/ {
		            limit_except GET { deny all; }
		        }
		        # Nothing else (.state/ is the log's private state).
		        location / {
		            return 404;
		        }
		    }
		}
	CONF
}

_rekor_tiles_up() {
	local nginx=$1 args restart=0
	REKOR_TILES_PORT=$(owned_port rekor "$REKOR_TILES_PORT_FILE" "$REKOR_TILES_PIDFILE" "$REKOR_TILES_MATCH")
	mkdir -p "$REKOR_TILES_DIR/temp"
	_rekor_nginx_conf >"$REKOR_TILES_CONF.new"
	replace_if_changed "$REKOR_TILES_CONF.new" "$REKOR_TILES_CONF" && restart=1
	# -e: the error log before the configuration is read (else /var/log/nginx).
	args=("$nginx" -p "$REKOR_TILES_DIR/" -c "$REKOR_TILES_CONF" -e "$REKOR_TILES_LOG")
	printf '%s\n' "${args[@]}" >"$REKOR_TILES_ARGS_FILE.new"
	replace_if_changed "$REKOR_TILES_ARGS_FILE.new" "$REKOR_TILES_ARGS_FILE" && restart=1

	if pidfile_alive "$REKOR_TILES_PIDFILE" "$REKOR_TILES_MATCH"; then
		if ((restart)); then
			log "rekor: tiles server configuration changed; restarting nginx"
		elif _rekor_checkpoint >/dev/null; then
			log "rekor: tiles server already running (pid $(pidfile_pid "$REKOR_TILES_PIDFILE")) at $(_rekor_tiles_url)"
			return 0
		else
			warn "rekor: nginx pid $(pidfile_pid "$REKOR_TILES_PIDFILE") does not serve the checkpoint; restarting"
		fi
		stop_pidfile "$REKOR_TILES_PIDFILE" "$REKOR_TILES_MATCH" 15
	fi

	local out
	out=$("${args[@]}" -t -q 2>&1) || {
		printf '%s\n' "$out" >&2
		die "rekor: nginx refuses $REKOR_TILES_CONF"
	}
	log "rekor: starting nginx for the tiles on 127.0.0.1:$REKOR_TILES_PORT (log $REKOR_TILES_LOG)"
	start_daemon "$REKOR_TILES_PIDFILE" "$REKOR_TILES_LOG" "${args[@]}"
	_rekor_wait _rekor_checkpoint "$REKOR_TILES_PIDFILE" "$REKOR_TILES_MATCH" "$REKOR_START_TIMEOUT" ||
		_rekor_fail "no checkpoint signed by the log key from $(_rekor_tiles_url)/checkpoint" \
			"$REKOR_TILES_LOG" "$REKOR_TILES_PIDFILE" "$REKOR_TILES_MATCH"
	log "rekor: tiles server up (pid $(pidfile_pid "$REKOR_TILES_PIDFILE")) at $(_rekor_tiles_url), log size $(_rekor_size)"
}

# _rekor_nginx: the nginx binary (in /usr/sbin, which a user's PATH may lack).
_rekor_nginx() {
	PATH=$PATH:/usr/sbin:/sbin ensure_apt_pkg nginx nginx
	PATH=$PATH:/usr/sbin:/sbin command -v nginx
}

rekor_up() {
	_rekor_paths
	# The tiles server's paths go into nginx.conf unescaped.
	[[ $STACK_DIR != *[\"\\\$\;{}\']* ]] ||
		die "rekor: nginx cannot take the stack dir path $STACK_DIR (quotes, \\, \$, ;, {})"
	ensure_go_tool rekor-tiles "$REKOR_VERSION" \
		"github.com/sigstore/rekor-tiles/v2/cmd/rekor-server/posix@$REKOR_VERSION" >/dev/null
	[[ -x $REKOR_BIN_DIR/posix ]] || die "rekor: $REKOR_BIN_DIR lacks posix; remove it to reinstall"
	local nginx
	nginx=$(_rekor_nginx)
	mkdir -p "$REKOR_DIR" "$REKOR_STORAGE" "$REKOR_TILES_DIR" "$STACK_DIR/trust"
	chmod 700 "$REKOR_DIR"
	REKOR_RESTART=0
	_rekor_key
	_rekor_server_up "$REKOR_BIN_DIR/posix"
	_rekor_tiles_up "$nginx"
}

rekor_down() {
	_rekor_paths
	stop_pidfile "$REKOR_TILES_PIDFILE" "$REKOR_TILES_MATCH" 15
	# The server flushes its sequencer on SIGTERM (up to its 30 s --tlog-timeout).
	stop_pidfile "$REKOR_PIDFILE" "$REKOR_MATCH" 35
}

rekor_env() {
	_rekor_paths
	REKOR_PORT=$(<"$REKOR_PORT_FILE")
	REKOR_TILES_PORT=$(<"$REKOR_TILES_PORT_FILE")
	export_line TCDIST_REKOR_URL "$(_rekor_url)"
	export_line TCDIST_REKOR_TILES_URL "$(_rekor_tiles_url)"
	export_line TCDIST_REKOR_PUBLIC_KEY "$REKOR_PUB"
	export_line TCDIST_REKOR_ORIGIN "$REKOR_ORIGIN"
	export_line TCDIST_REKOR_LOG_ID "$(_rekor_log_id | base64 -w0)"
	export_line TCDIST_REKOR_STORAGE "$REKOR_STORAGE"
	# For tests that start a second log (same key, other storage).
	export_line TCDIST_REKOR_BIN "$(head -n1 "$REKOR_ARGS_FILE")"
	export_line TCDIST_REKOR_KEY "$REKOR_KEY"
	export_line TCDIST_REKOR_LOG "$REKOR_LOG"
}

rekor_status() {
	_rekor_paths
	local rc=0 size
	REKOR_PORT='?' REKOR_TILES_PORT='?'
	[[ -s $REKOR_PORT_FILE ]] && REKOR_PORT=$(<"$REKOR_PORT_FILE")
	[[ -s $REKOR_TILES_PORT_FILE ]] && REKOR_TILES_PORT=$(<"$REKOR_TILES_PORT_FILE")
	if pidfile_alive "$REKOR_PIDFILE" "$REKOR_MATCH"; then
		if _rekor_check; then
			printf 'rekor:        running (pid %s) %s, accepts entries\n' "$(pidfile_pid "$REKOR_PIDFILE")" "$(_rekor_url)"
		else
			printf 'rekor:        running (pid %s) %s, NOT answering\n' "$(pidfile_pid "$REKOR_PIDFILE")" "$(_rekor_url)"
			rc=1
		fi
	else
		printf 'rekor:        stopped (port %s)\n' "$REKOR_PORT"
		rc=1
	fi
	if pidfile_alive "$REKOR_TILES_PIDFILE" "$REKOR_TILES_MATCH"; then
		if size=$(_rekor_size); then
			printf 'rekor-tiles:  running (pid %s) %s, log size %s, checkpoint signed by the log key\n' \
				"$(pidfile_pid "$REKOR_TILES_PIDFILE")" "$(_rekor_tiles_url)" "$size"
		else
			printf 'rekor-tiles:  running (pid %s) %s, NO valid checkpoint\n' "$(pidfile_pid "$REKOR_TILES_PIDFILE")" "$(_rekor_tiles_url)"
			rc=1
		fi
	else
		printf 'rekor-tiles:  stopped (port %s)\n' "$REKOR_TILES_PORT"
		rc=1
	fi
	return "$rc"
}
