#!/usr/bin/env bats
# Concurrent pulls on one host, and pulls killed halfway.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/concurrency
	mkdir -p "$WORK"
	export REF=$TCDIST_REGISTRY/concurrency/go:v1
	"$DISTD" publish "$(go env GOROOT)" --ref "$REF" >/dev/null
}

setup() {
	load helpers
}

@test "8 parallel pulls of one release download each layer once and all succeed" {
	mapfile -t layers < <(layer_digests "$REF")
	[ "${#layers[@]}" -ge 3 ]
	declare -A before
	for l in "${layers[@]}"; do before[$l]=$(count_blob_gets "$l"); done
	for i in $(seq 8); do
		"$TCVERIFY" pull "$REF" --store "$WORK/store" >"$WORK/out.$i" 2>"$WORK/err.$i" &
	done
	wait
	for i in $(seq 8); do
		[ -s "$WORK/out.$i" ]
		[ "$(cat "$WORK/out.$i")" = "$(cat "$WORK/out.1")" ]
	done
	for l in "${layers[@]}"; do
		[ "$(($(count_blob_gets "$l") - ${before[$l]}))" -eq 1 ]
	done
	"$(cat "$WORK/out.1")/bin/go" version
}

@test "a pull killed with SIGKILL leaves no partial entry, and the next pull succeeds" {
	store=$WORK/killed-store
	"$TCVERIFY" pull "$REF" --store "$store" --jobs 1 >/dev/null 2>&1 &
	pid=$!
	# Kill it once extraction has started writing into staging.
	for _ in $(seq 200); do
		if compgen -G "$store/.staging/*/toolchain/*" >/dev/null; then break; fi
		sleep 0.02
	done
	kill -KILL "$pid"
	wait "$pid" || true
	[ -z "$(find "$store" -mindepth 1 -maxdepth 1 -name 'sha256-*' -print -quit)" ]
	run --separate-stderr "$TCVERIFY" pull "$REF" --store "$store"
	[ "$status" -eq 0 ]
	"$output/bin/go" version
	[ -z "$(ls -A "$store/.staging")" ]
}
