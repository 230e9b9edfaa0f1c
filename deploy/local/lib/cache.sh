# shellcheck shell=bash
# Component "cache": a pull-through cache of the stack's registry, as a region's mirror:
# Debian's docker-registry (distribution 2.8) in proxy mode on https://127.0.0.1:<port>,
# with the registry's TLS certificate (127.0.0.1), its own storage, and the registry's
# credentials for the origin only (clients need none). Comes after "registry".
#
# The mirror configuration clients read is a containerd certs.d-style directory:
#   $STACK_DIR/cache/certs.d/127.0.0.1:<registry port>/hosts.toml
# naming the cache for manifests by digest and blobs (tags stay with the origin).
# stack.env exports it as TCDIST_CACHE_MIRRORS (a job or a direct-mode pull passes it with
# --mirrors or TCVERIFY_MIRRORS); the stack's agent config names it as `mirrors`.
#
# State in $STACK_DIR/cache/:
#   port, http-secret   persisted across `up`s
#   config.yml          generated from cache.yml.in
#   cache.log pid data/ log (appended), pidfile, cached blobs and manifests
#   certs.d/            the mirror configuration

CACHE_START_TIMEOUT=30

_cache_paths() {
	_registry_paths
	CACHE_DIR=$STACK_DIR/cache
	CACHE_DATA=$CACHE_DIR/data
	CACHE_PIDFILE=$CACHE_DIR/pid
	CACHE_LOG=$CACHE_DIR/cache.log
	CACHE_CONFIG=$CACHE_DIR/config.yml
	CACHE_SECRET_FILE=$CACHE_DIR/http-secret
	CACHE_PORT_FILE=$CACHE_DIR/port
	CACHE_MIRRORS=$CACHE_DIR/certs.d
	CACHE_MATCH="docker-registry serve $CACHE_CONFIG"
	[[ -s $REG_PORT_FILE ]] && REG_PORT=$(<"$REG_PORT_FILE")
}

_cache_url() { printf 'https://127.0.0.1:%s/v2/' "$CACHE_PORT"; }

# _cache_mirrors: the hosts.toml naming the cache as the registry's mirror.
_cache_mirrors() {
	local dir=$CACHE_MIRRORS/127.0.0.1:$REG_PORT
	mkdir -p "$dir"
	chmod 755 "$CACHE_MIRRORS" "$dir"
	printf '# The stack registry'"'"'s pull-through cache (deploy/local/lib/cache.sh).\nserver = "https://127.0.0.1:%s"\n\n[host."https://127.0.0.1:%s"]\n  capabilities = ["pull"]\n  ca = "%s"\n' \
		"$REG_PORT" "$CACHE_PORT" "$REG_CA" | write_file_atomic "$dir/hosts.toml" 644
}

cache_up() {
	_cache_paths
	ensure_apt_pkg docker-registry docker-registry
	mkdir -p "$CACHE_DIR" "$CACHE_DATA"
	chmod 755 "$CACHE_DIR"
	chmod 700 "$CACHE_DATA"
	REG_PORT=$(<"$REG_PORT_FILE")
	[[ -s $CACHE_SECRET_FILE ]] || random_hex 32 | write_file_atomic "$CACHE_SECRET_FILE" 600
	CACHE_PORT=$(owned_port cache "$CACHE_PORT_FILE" "$CACHE_PIDFILE" "$CACHE_MATCH")
	_cache_mirrors

	local new=$CACHE_CONFIG.new restart=0 code
	render_template "$STACK_HOME/cache.yml.in" "$new" \
		"PORT=$CACHE_PORT" \
		"DATA_DIR=$(yaml_dq "$CACHE_DATA")" \
		"HTTP_SECRET=$(<"$CACHE_SECRET_FILE")" \
		"TLS_CERT=$(yaml_dq "$REG_CERT")" \
		"TLS_KEY=$(yaml_dq "$REG_KEY")" \
		"REMOTE_URL=https://127.0.0.1:$REG_PORT" \
		"REMOTE_USERNAME=$REGISTRY_USERNAME" \
		"REMOTE_PASSWORD=$(<"$REG_PASSWORD_FILE")"
	replace_if_changed "$new" "$CACHE_CONFIG" && restart=1
	[[ $REG_CERT -nt $CACHE_PIDFILE ]] && restart=1

	if pidfile_alive "$CACHE_PIDFILE" "$CACHE_MATCH"; then
		code=$(http_code "$(_cache_url)" --cacert "$REG_CA")
		if ((restart == 0)) && [[ $code == 200 ]]; then
			log "cache: already running (pid $(pidfile_pid "$CACHE_PIDFILE")) at 127.0.0.1:$CACHE_PORT"
			return 0
		fi
		log "cache: restarting (configuration changed, or /v2/ answers $code)"
		stop_pidfile "$CACHE_PIDFILE" "$CACHE_MATCH"
	fi

	log "cache: starting on 127.0.0.1:$CACHE_PORT, pulling through from 127.0.0.1:$REG_PORT (log $CACHE_LOG)"
	# The origin's certificate is the stack CA's: the cache trusts it through SSL_CERT_FILE.
	start_daemon "$CACHE_PIDFILE" "$CACHE_LOG" env -u REGISTRY_AUTH_FILE SSL_CERT_FILE="$REG_CA" \
		"$(command -v docker-registry)" serve "$CACHE_CONFIG"
	wait_http "$(_cache_url)" "$CACHE_START_TIMEOUT" "200" "$CACHE_PIDFILE" "$CACHE_MATCH" \
		--cacert "$REG_CA" || {
		warn "cache: /v2/ did not answer; last lines of $CACHE_LOG:"
		tail -n 30 "$CACHE_LOG" >&2 || true
		stop_pidfile "$CACHE_PIDFILE" "$CACHE_MATCH" 5
		die "cache did not come up"
	}
	log "cache: up (pid $(pidfile_pid "$CACHE_PIDFILE")) at https://127.0.0.1:$CACHE_PORT"
}

cache_down() {
	_cache_paths
	stop_pidfile "$CACHE_PIDFILE" "$CACHE_MATCH" 15
}

cache_env() {
	_cache_paths
	export_line TCDIST_CACHE "127.0.0.1:$(<"$CACHE_PORT_FILE")"
	export_line TCDIST_CACHE_LOG "$CACHE_LOG"
	export_line TCDIST_CACHE_PIDFILE "$CACHE_PIDFILE"
	export_line TCDIST_CACHE_MIRRORS "$CACHE_MIRRORS"
}

cache_status() {
	_cache_paths
	local port='?' code
	[[ -s $CACHE_PORT_FILE ]] && port=$(<"$CACHE_PORT_FILE")
	if pidfile_alive "$CACHE_PIDFILE" "$CACHE_MATCH"; then
		CACHE_PORT=$port
		code=$(http_code "$(_cache_url)" --cacert "$REG_CA")
		printf 'cache: running (pid %s) https://127.0.0.1:%s/v2/ -> %s\n' \
			"$(pidfile_pid "$CACHE_PIDFILE")" "$port" "$code"
		[[ $code == 200 ]]
	else
		printf 'cache: stopped (port %s)\n' "$port"
		return 1
	fi
}
