#!/usr/bin/env bats
# The registry client against stand-in registries on loopback (tests/lib/registry_stub.py):
# credentials go only to the registry they were given for (and its declared token realm), and
# a response over its size limit is refused with bounded memory and no retries.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/registry_client
	mkdir -p "$WORK"
}

setup() {
	load helpers
	STACK_BASIC="Basic $(printf '%s:%s' "$TCDIST_REGISTRY_USERNAME" "$TCDIST_REGISTRY_PASSWORD" | base64 -w0)"
}

teardown() {
	if [[ -s $WORK/stub.pid ]]; then
		kill "$(cat "$WORK/stub.pid")" 2>/dev/null || true
		rm -f "$WORK/stub.pid"
	fi
}

# start_stub MODE: a stand-in registry; sets STUB (127.0.0.1:PORT) and STUB_LOG.
start_stub() {
	STUB_LOG=$WORK/stub-$1-$BATS_TEST_NUMBER.log
	rm -f "$WORK/stub.port" "$STUB_LOG"
	touch "$STUB_LOG"
	python3 "$TCDIST_TOP/tests/lib/registry_stub.py" "$1" "$WORK/stub.port" "$STUB_LOG" 3>&- &
	echo $! >"$WORK/stub.pid"
	for _ in $(seq 100); do [ -s "$WORK/stub.port" ] && break; sleep 0.05; done
	STUB=127.0.0.1:$(cat "$WORK/stub.port")
}

# Requests the stub logged with an Authorization header.
authorized_requests() { awk '$3 != "-"' "$STUB_LOG"; }

@test "credentials given for the stack registry are not sent to another registry (401)" {
	start_stub basic
	run --separate-stderr "$TCVERIFY" pull "$STUB/x:y" --registry-plain-http --store "$WORK/store"
	echo "stderr: $stderr"; cat "$STUB_LOG"
	[ "$status" -eq 2 ]
	[[ $stderr == *"no credentials for $STUB"* ]]
	[ -s "$STUB_LOG" ]
	[ -z "$(authorized_requests)" ]
}

@test "credentials given for the stack registry are not sent to another registry (404)" {
	start_stub not-found
	run --separate-stderr "$TCVERIFY" pull "$STUB/x:y" --registry-plain-http --store "$WORK/store"
	echo "stderr: $stderr"; cat "$STUB_LOG"
	[ "$status" -eq 2 ]
	[[ $stderr == *"not found"* ]]
	[ -z "$(authorized_requests)" ]
}

@test "a user name and password without the registry they are for: exit 2 with a hint" {
	run --separate-stderr env -u TCDIST_REGISTRY_CREDENTIALS_HOST \
		"$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/go:any" --store "$WORK/store"
	[ "$status" -eq 2 ]
	[[ $stderr == *"need the registry they are for"* ]]
	[[ $stderr == *"--registry-credentials-host"* ]]
}

@test "a plain-HTTP loopback token realm gets no credentials that were given for another registry" {
	start_stub bearer-self
	run --separate-stderr "$TCVERIFY" pull "$STUB/x:y" --registry-plain-http --store "$WORK/store"
	echo "stderr: $stderr"; cat "$STUB_LOG"
	[ "$status" -eq 2 ]
	# The anonymous token was fetched, and nothing carried the stack's credentials.
	grep -q "^GET /token?" "$STUB_LOG"
	[ "$(grep -c Basic "$STUB_LOG")" -eq 0 ]
}

@test "a plain-HTTP loopback token realm gets the credentials given for its registry, the registry only the token" {
	start_stub bearer-self
	run --separate-stderr "$TCVERIFY" pull "$STUB/x:y" --registry-plain-http \
		--registry-credentials-host "$STUB" --store "$WORK/store"
	echo "stderr: $stderr"; cat "$STUB_LOG"
	[ "$status" -eq 2 ]
	[[ $stderr == *"refused the credentials"* ]]
	[ "$(grep -c "^GET /token?.* $STACK_BASIC\$" "$STUB_LOG")" -ge 1 ]
	[ "$(grep -v '^GET /token?' "$STUB_LOG" | grep -c Basic)" -eq 0 ]
	grep -q "^GET /v2/x/manifests/y Bearer stub-token$" "$STUB_LOG"
}

@test "a token realm over plain HTTP off loopback is refused and never contacted" {
	start_stub bearer-far
	run --separate-stderr "$TCVERIFY" pull "$STUB/x:y" --registry-plain-http \
		--registry-credentials-host "$STUB" --store "$WORK/store"
	echo "stderr: $stderr"; cat "$STUB_LOG"
	[ "$status" -eq 2 ]
	[[ $stderr == *"http://registry.invalid/token"*"nothing was sent"* ]]
	[ "$(wc -l <"$STUB_LOG")" -eq 1 ]
	[ -z "$(authorized_requests)" ]
}

@test "a manifest over 4 MiB is refused: exit 42, bounded memory, no retry" {
	start_stub huge
	run --separate-stderr /usr/bin/time -v -o "$WORK/time.txt" \
		"$TCVERIFY" pull "$STUB/x:y" --registry-plain-http --store "$WORK/store"
	echo "stderr: $stderr"; cat "$STUB_LOG"; cat "$WORK/time.txt"
	[ "$status" -eq 42 ]
	[[ $stderr == *"manifest $STUB/x:y"*"4194304-byte document limit"* ]]
	[ "$(grep -c '/manifests/' "$STUB_LOG")" -eq 1 ]
	rss_kb=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.txt")
	[ "$rss_kb" -lt 65536 ]
	# Nothing was installed.
	[ -z "$(find "$WORK/store" -mindepth 1 -maxdepth 1 ! -name '.*' 2>/dev/null)" ]
}
