#!/usr/bin/env bats
# Transient registry failures: retried with backoff, and interrupted blobs resumed with Range.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/resilience
	mkdir -p "$WORK"
	make_small_tree "$WORK/tree"
	head -c 3000000 /dev/urandom >"$WORK/tree/src/fmt/random.bin"
	"$DISTD" publish "$WORK/tree" --ref "$TCDIST_REGISTRY/resilience/go:v1" >/dev/null
	python3 "$TCDIST_TOP/tests/lib/registry_proxy.py" flaky "$WORK/port" "$WORK/proxy.log" &
	echo $! >"$WORK/proxy.pid"
	for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
}

teardown_file() {
	kill "$(cat "$WORK/proxy.pid")" 2>/dev/null || true
}

setup() {
	load helpers
}

@test "a 503 and cut-off blob downloads are retried and resumed; the pull succeeds" {
	proxy=127.0.0.1:$(cat "$WORK/port")
	# The proxy passes the stack registry's challenge on: the credentials are given for it.
	run --separate-stderr "$TCVERIFY" pull "$proxy/resilience/go:v1" --registry-plain-http \
		--registry-credentials-host "$proxy" --store "$WORK/store"
	echo "stderr: $stderr"; cat "$WORK/proxy.log"
	[ "$status" -eq 0 ]
	grep -q "injected 503" "$WORK/proxy.log"
	grep -q "^cut " "$WORK/proxy.log"
	grep -q "range=bytes=65536-" "$WORK/proxy.log"
	cmp "$WORK/tree/src/fmt/random.bin" "$output/src/fmt/random.bin"
}

@test "a registry that stays down: exit 3 after bounded retries" {
	run --separate-stderr "$TCVERIFY" pull "127.0.0.1:9/resilience/go:v1" --registry-plain-http \
		--registry-retries 2 --store "$WORK/store2"
	[ "$status" -eq 3 ]
	[[ $stderr == *"failed after 3 attempt(s)"* ]]
}
