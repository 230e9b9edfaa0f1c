# shellcheck shell=bash
# Component "registry": Debian's docker-registry (distribution 2.8) on
# https://127.0.0.1:<port>, TLS from a stack-local CA, htpasswd (bcrypt) basic
# auth, filesystem storage under $STACK_DIR/registry/data.
#
# State in $STACK_DIR/registry/:
#   port, password, http-secret   persisted across `up`s
#   ca.pem ca-key.pem             the stack's CA (EC P-256, 30 days)
#   server.pem server-key.pem     the server leaf signed by it (127.0.0.1, localhost)
#   certs.d/ca.crt                the CA, as a cert dir for skopeo/containers
#   htpasswd config.yml           generated from the password and registry.yml.in
#   registry.log pid data/        log (appended), pidfile, blobs and manifests
# and $STACK_DIR/docker/config.json (auths for the registry; DOCKER_CONFIG,
# REGISTRY_AUTH_FILE).

REGISTRY_USERNAME=tcdist
REGISTRY_CERT_DAYS=30
REGISTRY_START_TIMEOUT=30

_registry_paths() {
	REG_DIR=$STACK_DIR/registry
	REG_DATA=$REG_DIR/data
	REG_PIDFILE=$REG_DIR/pid
	REG_LOG=$REG_DIR/registry.log
	REG_CONFIG=$REG_DIR/config.yml
	REG_CA=$REG_DIR/ca.pem
	REG_CA_KEY=$REG_DIR/ca-key.pem
	REG_CERT=$REG_DIR/server.pem
	REG_KEY=$REG_DIR/server-key.pem
	REG_CERTS_D=$REG_DIR/certs.d
	REG_HTPASSWD=$REG_DIR/htpasswd
	REG_PASSWORD_FILE=$REG_DIR/password
	REG_SECRET_FILE=$REG_DIR/http-secret
	REG_PORT_FILE=$REG_DIR/port
	REG_DOCKER_DIR=$STACK_DIR/docker
	REG_AUTH_FILE=$REG_DOCKER_DIR/config.json
	# What /proc/<pid>/cmdline of *our* registry contains (binary + our config).
	REG_MATCH="docker-registry serve $REG_CONFIG"
}

# _registry_tls: create the CA and the server leaf when missing, expiring or
# not matching. Sets REG_RESTART=1 when anything was regenerated.
_registry_tls() {
	local tmp
	if [[ -s $REG_CA_KEY ]] && cert_ok "$REG_CA" &&
		[[ -s $REG_KEY ]] && cert_ok "$REG_CERT" "$REG_CA"; then
		:
	else
		rm -rf "$REG_DIR"/tls.*
		tmp=$(mktemp -d "$REG_DIR/tls.XXXXXX")
		# Not in a condition, so errexit applies inside; a failure leaves
		# only $tmp behind (removed by the next run).
		(
			umask 077
			cd "$tmp" || exit 1
			if [[ -s $REG_CA_KEY ]] && cert_ok "$REG_CA"; then
				cp "$REG_CA" ca.pem
				cp "$REG_CA_KEY" ca-key.pem
			else
				log "registry: generating the stack CA"
				make_ca "tcdist local stack CA $(random_hex 4)" P-256 sha256 "$REGISTRY_CERT_DAYS"
			fi
			log "registry: generating the server certificate (127.0.0.1, localhost)"
			issue_leaf server 127.0.0.1 P-256 sha256 "$REGISTRY_CERT_DAYS" \
				"$(printf 'extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost')"
			openssl verify -CAfile ca.pem server.pem >/dev/null
			chmod 644 ca.pem server.pem
			mv -f ca-key.pem "$REG_CA_KEY"
			mv -f ca.pem "$REG_CA"
			mv -f server-key.pem "$REG_KEY"
			mv -f server.pem "$REG_CERT"
		)
		rm -rf "$tmp"
		REG_RESTART=1
	fi
	mkdir -p "$REG_CERTS_D"
	if ! cmp -s "$REG_CA" "$REG_CERTS_D/ca.crt"; then
		write_file_atomic "$REG_CERTS_D/ca.crt" 644 <"$REG_CA"
	fi
}

# _registry_credentials: persisted random password, bcrypt htpasswd file,
# persisted http secret. Sets REG_PASSWORD.
_registry_credentials() {
	local tmp
	if [[ ! -s $REG_PASSWORD_FILE ]]; then
		random_hex 16 | write_file_atomic "$REG_PASSWORD_FILE" 600
	fi
	REG_PASSWORD=$(<"$REG_PASSWORD_FILE")
	[[ $REG_PASSWORD =~ ^[0-9a-f]{32}$ ]] || die "registry: unexpected content in $REG_PASSWORD_FILE"
	if ! [[ -s $REG_HTPASSWD ]] ||
		! htpasswd -v -i "$REG_HTPASSWD" "$REGISTRY_USERNAME" <<<"$REG_PASSWORD" >/dev/null 2>&1 ||
		! grep -q "^$REGISTRY_USERNAME:\$2y\\$" "$REG_HTPASSWD"; then
		tmp=$(mktemp "$REG_HTPASSWD.tmp.XXXXXX")
		# bcrypt (distribution accepts nothing else); cost 5 because the
		# registry checks the hash on every request. -i keeps it out of argv.
		htpasswd -B -C 5 -i -c "$tmp" "$REGISTRY_USERNAME" <<<"$REG_PASSWORD" 2>/dev/null ||
			die "registry: htpasswd failed"
		chmod 600 "$tmp"
		mv -f "$tmp" "$REG_HTPASSWD"
		REG_RESTART=1
	fi
	if [[ ! -s $REG_SECRET_FILE ]]; then
		random_hex 32 | write_file_atomic "$REG_SECRET_FILE" 600
	fi
}

# _registry_docker_auth: $STACK_DIR/docker/config.json with auths for the registry.
_registry_docker_auth() {
	local auth
	auth=$(printf '%s:%s' "$REGISTRY_USERNAME" "$REG_PASSWORD" | base64 -w0)
	mkdir -p "$REG_DOCKER_DIR"
	chmod 700 "$REG_DOCKER_DIR"
	printf '{\n  "auths": {\n    "127.0.0.1:%s": { "auth": "%s" },\n    "localhost:%s": { "auth": "%s" }\n  }\n}\n' \
		"$REG_PORT" "$auth" "$REG_PORT" "$auth" | write_file_atomic "$REG_AUTH_FILE" 600
}

_registry_url() { printf 'https://127.0.0.1:%s/v2/' "$REG_PORT"; }

# _registry_fail MSG: show the log tail, stop what we started, exit.
_registry_fail() {
	warn "registry: $1; last lines of $REG_LOG:"
	tail -n 30 "$REG_LOG" >&2 || true
	stop_pidfile "$REG_PIDFILE" "$REG_MATCH" 5
	die "registry did not come up"
}

registry_up() {
	_registry_paths
	ensure_apt_pkg docker-registry docker-registry
	ensure_apt_pkg htpasswd apache2-utils
	mkdir -p "$REG_DIR" "$REG_DATA"
	chmod 700 "$REG_DIR"
	REG_RESTART=0

	_registry_tls
	_registry_credentials
	REG_PORT=$(owned_port registry "$REG_PORT_FILE" "$REG_PIDFILE" "$REG_MATCH")
	_registry_docker_auth

	local new=$REG_CONFIG.new code
	render_template "$STACK_HOME/registry.yml.in" "$new" \
		"PORT=$REG_PORT" \
		"DATA_DIR=$(yaml_dq "$REG_DATA")" \
		"HTTP_SECRET=$(<"$REG_SECRET_FILE")" \
		"TLS_CERT=$(yaml_dq "$REG_CERT")" \
		"TLS_KEY=$(yaml_dq "$REG_KEY")" \
		"HTPASSWD=$(yaml_dq "$REG_HTPASSWD")"
	replace_if_changed "$new" "$REG_CONFIG" && REG_RESTART=1

	if pidfile_alive "$REG_PIDFILE" "$REG_MATCH"; then
		if ((REG_RESTART)); then
			log "registry: configuration or TLS material changed; restarting"
			stop_pidfile "$REG_PIDFILE" "$REG_MATCH"
		else
			code=$(http_code "$(_registry_url)" --cacert "$REG_CA")
			if [[ $code == 200 || $code == 401 ]]; then
				log "registry: already running (pid $(pidfile_pid "$REG_PIDFILE")) at 127.0.0.1:$REG_PORT"
				return 0
			fi
			warn "registry: pid $(pidfile_pid "$REG_PIDFILE") runs but /v2/ answers $code; restarting"
			stop_pidfile "$REG_PIDFILE" "$REG_MATCH"
		fi
	fi

	log "registry: starting on 127.0.0.1:$REG_PORT (log $REG_LOG)"
	# docker-registry reads REGISTRY_* variables as config overrides; a shell that sourced
	# stack.env has REGISTRY_AUTH_FILE, which is not one.
	start_daemon "$REG_PIDFILE" "$REG_LOG" env -u REGISTRY_AUTH_FILE "$(command -v docker-registry)" serve "$REG_CONFIG"
	wait_http "$(_registry_url)" "$REGISTRY_START_TIMEOUT" "200 401" "$REG_PIDFILE" "$REG_MATCH" \
		--cacert "$REG_CA" || _registry_fail "/v2/ did not answer"
	code=$(http_code "$(_registry_url)" --cacert "$REG_CA" -u "$REGISTRY_USERNAME:$REG_PASSWORD")
	[[ $code == 200 ]] || _registry_fail "authenticated GET /v2/ answered $code, want 200"
	log "registry: up (pid $(pidfile_pid "$REG_PIDFILE")) at https://127.0.0.1:$REG_PORT"
}

registry_down() {
	_registry_paths
	stop_pidfile "$REG_PIDFILE" "$REG_MATCH" 15
}

registry_env() {
	_registry_paths
	REG_PORT=$(<"$REG_PORT_FILE")
	REG_PASSWORD=$(<"$REG_PASSWORD_FILE")
	export_line TCDIST_REGISTRY "127.0.0.1:$REG_PORT"
	export_line TCDIST_REGISTRY_URL "https://127.0.0.1:$REG_PORT"
	export_line TCDIST_REGISTRY_CA "$REG_CA"
	export_line TCDIST_REGISTRY_CERT_DIR "$REG_CERTS_D"
	# The user name and password are sent to this registry only.
	export_line TCDIST_REGISTRY_CREDENTIALS_HOST "127.0.0.1:$REG_PORT"
	export_line TCDIST_REGISTRY_USERNAME "$REGISTRY_USERNAME"
	export_line TCDIST_REGISTRY_PASSWORD "$REG_PASSWORD"
	export_line TCDIST_REGISTRY_LOG "$REG_LOG"
	export_line DOCKER_CONFIG "$REG_DOCKER_DIR"
	export_line REGISTRY_AUTH_FILE "$REG_AUTH_FILE"
}

registry_status() {
	_registry_paths
	local port='?' code
	[[ -s $REG_PORT_FILE ]] && port=$(<"$REG_PORT_FILE")
	if pidfile_alive "$REG_PIDFILE" "$REG_MATCH"; then
		REG_PORT=$port
		code=$(http_code "$(_registry_url)" --cacert "$REG_CA")
		printf 'registry: running (pid %s) https://127.0.0.1:%s/v2/ -> %s\n' \
			"$(pidfile_pid "$REG_PIDFILE")" "$port" "$code"
		[[ $code == 200 || $code == 401 ]]
	else
		printf 'registry: stopped (port %s)\n' "$port"
		return 1
	fi
}
