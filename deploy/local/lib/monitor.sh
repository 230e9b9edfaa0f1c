# shellcheck shell=bash
# The log monitor (distd monitor) as a service: it follows the stack's transparency log from
# entry 0, reads the daemon's ledger as spiffe://tcdist.test/distd/monitor (a `read` grant),
# and appends every new alert to $STACK_DIR/monitor/alerts.jsonl (its alert hook). State in
# $STACK_DIR/monitor/state; metrics on the port in $STACK_DIR/monitor/metrics-port.

MONITOR_START_TIMEOUT=30
MONITOR_INTERVAL=5s

_monitor_paths() {
	MONITOR_DIR=$STACK_DIR/monitor
	MONITOR_STATE=$MONITOR_DIR/state
	MONITOR_ALERTS=$MONITOR_DIR/alerts.jsonl
	MONITOR_ENV_FILE=$MONITOR_DIR/env
	MONITOR_PORT_FILE=$MONITOR_DIR/metrics-port
	MONITOR_PIDFILE=$MONITOR_DIR/pid
	MONITOR_LOG=$MONITOR_DIR/monitor.log
	MONITOR_ARGS_FILE=$MONITOR_DIR/args
	MONITOR_MATCH="monitor --state $MONITOR_STATE"
}

_monitor_url() { printf 'http://127.0.0.1:%s\n' "$(<"$MONITOR_PORT_FILE")"; }

monitor_up() {
	_monitor_paths
	local bin pid restart=0
	mkdir -p "$MONITOR_DIR" "$MONITOR_STATE"
	chmod 700 "$MONITOR_DIR"
	MONITOR_PORT=$(owned_port monitor "$MONITOR_PORT_FILE" "$MONITOR_PIDFILE" "$MONITOR_MATCH")
	bin=$(_policy_distd)
	# What stack.env gives clients of the components before this one.
	local c
	for c in "${STACK_COMPONENTS[@]}"; do
		[[ $c == monitor ]] && break
		"${c}_env"
	done | write_file_atomic "$MONITOR_ENV_FILE" 600
	{
		printf '%s\n' "$bin"
		stat -L -c %d:%i -- "$bin"
		sha256sum "$MONITOR_ENV_FILE"
	} >"$MONITOR_ARGS_FILE.new"
	replace_if_changed "$MONITOR_ARGS_FILE.new" "$MONITOR_ARGS_FILE" && restart=1
	if pidfile_alive "$MONITOR_PIDFILE" "$MONITOR_MATCH"; then
		if ((!restart)) && wait_http "$(_monitor_url)/healthz" "$MONITOR_START_TIMEOUT" 200 "$MONITOR_PIDFILE" "$MONITOR_MATCH"; then
			log "monitor: already running (pid $(pidfile_pid "$MONITOR_PIDFILE"))"
			return 0
		fi
		log "monitor: binary or environment changed; restarting"
		stop_pidfile "$MONITOR_PIDFILE" "$MONITOR_MATCH" 10
	fi
	local keep=() v
	for v in PATH HOME USER LANG TMPDIR; do
		[[ -n ${!v:-} ]] && keep+=("$v=${!v}")
	done
	log "monitor: starting $bin monitor, metrics on http://127.0.0.1:$MONITOR_PORT (log $MONITOR_LOG)"
	# shellcheck disable=SC2016 # $0 and $@ expand in the child shell
	start_daemon "$MONITOR_PIDFILE" "$MONITOR_LOG" env -i "${keep[@]}" \
		bash -c 'cd "${0%/*}" && . "$0" && exec "$@"' "$MONITOR_ENV_FILE" \
		"$bin" monitor --state "$MONITOR_STATE" --interval "$MONITOR_INTERVAL" \
		--metrics-listen "127.0.0.1:$MONITOR_PORT" \
		--alert-hook "cat >>$(printf '%q' "$MONITOR_ALERTS"); echo >>$(printf '%q' "$MONITOR_ALERTS")"
	if ! wait_http "$(_monitor_url)/healthz" "$MONITOR_START_TIMEOUT" 200 "$MONITOR_PIDFILE" "$MONITOR_MATCH"; then
		warn "monitor: last lines of $MONITOR_LOG:"
		tail -n 20 "$MONITOR_LOG" >&2 || true
		stop_pidfile "$MONITOR_PIDFILE" "$MONITOR_MATCH" 5
		die "the log monitor did not come up"
	fi
	pid=$(pidfile_pid "$MONITOR_PIDFILE")
	log "monitor: up (pid $pid)"
}

monitor_down() {
	_monitor_paths
	stop_pidfile "$MONITOR_PIDFILE" "$MONITOR_MATCH" 10
}

monitor_env() {
	_monitor_paths
	export_line TCDIST_MONITOR_SERVICE_STATE "$MONITOR_STATE"
	export_line TCDIST_MONITOR_ALERTS "$MONITOR_ALERTS"
	export_line TCDIST_MONITOR_METRICS_URL "$(_monitor_url)/metrics"
	export_line TCDIST_MONITOR_LOG "$MONITOR_LOG"
}

monitor_status() {
	_monitor_paths
	if pidfile_alive "$MONITOR_PIDFILE" "$MONITOR_MATCH"; then
		printf 'monitor: running (pid %s), metrics %s/metrics, alerts %s\n' \
			"$(pidfile_pid "$MONITOR_PIDFILE")" "$(_monitor_url)" "$MONITOR_ALERTS"
	else
		printf 'monitor: stopped\n'
		return 1
	fi
}
