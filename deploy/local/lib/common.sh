# shellcheck shell=bash
# Shared helpers for deploy/local/stack and its components.
#
# Sourced, never executed. Every component lives in lib/<component>.sh and defines
#   <component>_up      start it (idempotent), wait until it answers
#   <component>_down    stop what was started (only recorded PIDs), keep data
#   <component>_env     print `export NAME=value` lines for stack.env (stdout)
#   <component>_status  print one status line (stdout); return 0 when running
# The functions may use STACK_DIR (absolute), STACK_LIB and the helpers below.
# Everything that is not data for the caller goes to stderr.

# ---------------------------------------------------------------- logging

log() { printf 'stack: %s\n' "$*" >&2; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() {
	printf 'stack: error: %s\n' "$*" >&2
	exit 1
}

# need_cmd CMD...: fail unless every CMD is on PATH.
need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "required command not found: $c"
	done
}

# ---------------------------------------------------------------- files

# write_file_atomic PATH MODE: write stdin to PATH via a temp file in the same dir.
write_file_atomic() {
	local path=$1 mode=$2 tmp
	tmp=$(mktemp "${path}.tmp.XXXXXX")
	if ! cat >"$tmp"; then
		rm -f "$tmp"
		return 1
	fi
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$path"
}

# random_hex NBYTES: 2*NBYTES lowercase hex chars from /dev/urandom.
random_hex() {
	od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

# export_line NAME VALUE: one shell-quoted export line for stack.env.
export_line() {
	printf 'export %s=%q\n' "$1" "$2"
}

# render_template IN OUT KEY=VALUE...: replace every @KEY@ in IN by VALUE and
# write OUT atomically (mode 0600). Values are inserted verbatim; callers quote
# them for the target format (see yaml_dq).
render_template() {
	local in=$1 out=$2 content kv
	shift 2
	content=$(<"$in")
	for kv in "$@"; do
		content=${content//"@${kv%%=*}@"/"${kv#*=}"}
	done
	if [[ $content =~ @[A-Z_]+@ ]]; then
		die "template $in: unreplaced placeholder ${BASH_REMATCH[0]}"
	fi
	printf '%s\n' "$content" | write_file_atomic "$out" 600
}

# yaml_dq VALUE: VALUE escaped for use inside a YAML double-quoted string.
yaml_dq() {
	local v=${1//\\/\\\\}
	printf '%s' "${v//\"/\\\"}"
}

# replace_if_changed NEW FILE: move NEW over FILE when they differ (succeed),
# else remove NEW (fail).
replace_if_changed() {
	if cmp -s "$1" "$2"; then
		rm -f "$1"
		return 1
	fi
	mv -f "$1" "$2"
}

# ---------------------------------------------------------------- ports

# free_port: print a TCP port on 127.0.0.1 that is free right now.
free_port() {
	python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_is_free PORT: succeed when 127.0.0.1:PORT can be bound now. With
# SO_REUSEADDR, as the daemons (Go, nginx) bind: connections of a stopped daemon
# still in TIME_WAIT do not make its port look taken; a listener does.
port_is_free() {
	python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# persistent_port FILE: print the port stored in FILE; pick and store a free
# one when FILE is missing.
persistent_port() {
	local file=$1 port
	if [[ -s $file ]]; then
		port=$(<"$file")
		[[ $port =~ ^[0-9]+$ ]] || die "bad port in $file: $port"
	else
		port=$(free_port)
		printf '%s\n' "$port" | write_file_atomic "$file" 644
	fi
	printf '%s\n' "$port"
}

# owned_port COMPONENT FILE PIDFILE MATCH: the persisted port in FILE, re-picked
# when it is taken and the process that should hold it (PIDFILE, MATCH) is not
# ours.
owned_port() {
	local component=$1 file=$2 pidfile=$3 match=$4 port old
	port=$(persistent_port "$file")
	if ! pidfile_alive "$pidfile" "$match" && ! port_is_free "$port"; then
		old=$port
		port=$(free_port)
		printf '%s\n' "$port" | write_file_atomic "$file" 644
		warn "$component: port $old is taken by another process; using $port"
	fi
	printf '%s\n' "$port"
}

# ---------------------------------------------------------------- certificates

# cert_ok CERT [CA [PURPOSE]]: CERT exists, is valid for at least another day
# and (with CA) chains to CA, for PURPOSE (an `openssl verify -purpose`) if given.
cert_ok() {
	[[ -s $1 ]] || return 1
	openssl x509 -noout -checkend 86400 -in "$1" >/dev/null 2>&1 || return 1
	if [[ -n ${2:-} ]]; then
		openssl verify ${3:+-purpose "$3"} -CAfile "$2" "$1" >/dev/null 2>&1 || return 1
	fi
}

# make_ca CN CURVE DIGEST DAYS: ca.pem and ca-key.pem in the current directory,
# a self-signed EC CA that signs end entities only (pathlen 0).
make_ca() {
	local cn=$1 curve=$2 digest=$3 days=$4
	cat >ca.cnf <<-CNF
		[req]
		prompt = no
		distinguished_name = dn
		x509_extensions = v3_ca
		[dn]
		O = tcdist local stack
		CN = $cn
		[v3_ca]
		basicConstraints = critical, CA:TRUE, pathlen:0
		keyUsage = critical, keyCertSign, cRLSign
		subjectKeyIdentifier = hash
	CNF
	openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$curve" -out ca-key.pem 2>/dev/null
	openssl req -x509 -new -config ca.cnf -key ca-key.pem "-$digest" -days "$days" -out ca.pem
}

# issue_leaf NAME CN CURVE DIGEST DAYS EXTENSIONS: NAME.pem and NAME-key.pem in
# the current directory, an EC end entity for digital signatures issued by
# ca.pem; EXTENSIONS are further v3 extension lines (e.g. extendedKeyUsage).
issue_leaf() {
	local name=$1 cn=$2 curve=$3 digest=$4 days=$5 extensions=$6
	cat >"$name.cnf" <<-CNF
		[req]
		prompt = no
		distinguished_name = dn
		[dn]
		O = tcdist local stack
		CN = $cn
		[v3_leaf]
		basicConstraints = critical, CA:FALSE
		keyUsage = critical, digitalSignature
		$extensions
		subjectKeyIdentifier = hash
		authorityKeyIdentifier = keyid:always
	CNF
	openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$curve" -out "$name-key.pem" 2>/dev/null
	openssl req -new -config "$name.cnf" -key "$name-key.pem" -out "$name.csr"
	openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem \
		-set_serial "0x$(random_hex 16)" "-$digest" -days "$days" \
		-extfile "$name.cnf" -extensions v3_leaf -out "$name.pem" 2>/dev/null
}

# ---------------------------------------------------------------- HTTP

# http_code URL CURL_ARGS...: print the HTTP status (000 when nothing answers).
http_code() {
	local url=$1
	shift
	curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" 2>/dev/null || true
}

# wait_http URL TIMEOUT_S CODES PIDFILE MATCH [CURL_ARGS...]: poll URL until it
# answers with one of CODES (space-separated, e.g. "200 401"). Fails early when
# the process in PIDFILE (matching MATCH) dies, and after TIMEOUT_S seconds.
wait_http() {
	local url=$1 timeout=$2 codes=$3 pidfile=$4 match=$5 code deadline
	shift 5
	deadline=$((SECONDS + timeout))
	while :; do
		code=$(http_code "$url" "$@")
		if [[ " $codes " == *" $code "* ]]; then
			return 0
		fi
		if ! pidfile_alive "$pidfile" "$match"; then
			warn "process from $pidfile exited while waiting for $url"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			warn "$url did not answer with [$codes] within ${timeout}s (last status $code)"
			return 1
		fi
		sleep 0.2
	done
}

# ---------------------------------------------------------------- processes

# pid_matches PID MATCH: PID is alive and its command line contains MATCH.
pid_matches() {
	local pid=$1 match=$2 cmdline
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$match"* ]]
}

# pidfile_pid PIDFILE: print the PID recorded in PIDFILE (nothing if none).
pidfile_pid() {
	[[ -s $1 ]] || return 0
	local pid
	pid=$(<"$1")
	[[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
	return 0
}

# pidfile_alive PIDFILE MATCH: the recorded process runs and is ours.
pidfile_alive() {
	local pid
	pid=$(pidfile_pid "$1")
	[[ -n $pid ]] && pid_matches "$pid" "$2"
}

# start_daemon PIDFILE LOGFILE CMD ARGS...: start CMD in its own session,
# detached from the caller (survives the calling shell), stdin from /dev/null,
# stdout+stderr appended to LOGFILE. The PID written to PIDFILE is CMD's own
# (the wrapper shell records $$ and then execs CMD). Every fd above 2 is closed
# for the child, so the daemon neither holds the stack lock (fd 9) nor a
# caller's pipe (e.g. `out=$(stack up)` or a test harness's extra fds).
start_daemon() {
	local pidfile=$1 logfile=$2 i
	shift 2
	rm -f "$pidfile"
	printf '%s stack: starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$logfile"
	# shellcheck disable=SC2016 # $$, $0 and $@ expand in the child shell
	setsid nohup bash -c '
		for fd in /proc/$$/fd/*; do
			fd=${fd##*/}
			if ((fd > 2)); then eval "exec $fd>&-"; fi
		done
		echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
		"$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
	for ((i = 0; i < 50; i++)); do
		[[ -s $pidfile ]] && return 0
		sleep 0.1
	done
	die "process did not start: $*"
}

# stop_pidfile PIDFILE MATCH [TIMEOUT_S]: stop the process recorded in PIDFILE
# if it is alive and its command line contains MATCH (SIGTERM, then SIGKILL
# after TIMEOUT_S, default 10). Removes PIDFILE. Never touches other processes.
stop_pidfile() {
	local pidfile=$1 match=$2 timeout=${3:-10} pid deadline
	pid=$(pidfile_pid "$pidfile")
	if [[ -z $pid ]]; then
		rm -f "$pidfile"
		return 0
	fi
	if ! pid_matches "$pid" "$match"; then
		log "pid $pid from $pidfile is not running (or not $match); nothing to stop"
		rm -f "$pidfile"
		return 0
	fi
	log "stopping $match (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + timeout))
	while pid_matches "$pid" "$match"; do
		if ((SECONDS >= deadline)); then
			warn "$match (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
			break
		fi
		sleep 0.1
	done
	rm -f "$pidfile"
}

# nginx_http_prelude DIR: the lines an nginx `http {}` block of the stack's starts with: its
# access log and temp paths under DIR, no server version in answers.
nginx_http_prelude() {
	local d=$1
	cat <<-CONF
		    access_log "$d/access.log";
		    client_body_temp_path "$d/temp/body";
		    proxy_temp_path "$d/temp/proxy";
		    fastcgi_temp_path "$d/temp/fastcgi";
		    uwsgi_temp_path "$d/temp/uwsgi";
		    scgi_temp_path "$d/temp/scgi";
		    server_tokens off;
	CONF
}
