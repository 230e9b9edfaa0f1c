#!/usr/bin/env bats
# The local stack's Rekor v2 transparency log (rekor-tiles, POSIX backend) and the nginx that
# serves its tiles: what stack.env exports, that real entries are accepted and show up in the
# signed checkpoint and the tiles exactly as a client reads them, that the tiles are read-only,
# and that a second `up` keeps the log and its key. Requests are built and answers checked by
# tests/lib/rekor_submit.py, which shares no code with tcdist.

bats_require_minimum_version 1.5.0

REKOR_SUBMIT=$TCDIST_TOP/tests/lib/rekor_submit.py

setup() {
	load helpers
	SERVER_PIDFILE=$TCDIST_STACK_DIR/rekor/pid
	TILES_PIDFILE=$TCDIST_STACK_DIR/rekor/tiles/pid
}

teardown() {
	# A second log started by a test (recorded PID only).
	if [[ -n ${SECOND_PID:-} ]]; then
		kill "$SECOND_PID" 2>/dev/null || true
		wait "$SECOND_PID" 2>/dev/null || true
	fi
}

# rekor ARGS...: rekor_submit.py with the stack's log key and origin where a command needs them.
rekor() {
	python3 "$REKOR_SUBMIT" "$@"
}

# served_size: the tree size of the checkpoint the tiles server serves (signature checked).
served_size() {
	rekor checkpoint "$TCDIST_REKOR_TILES_URL/checkpoint" \
		--public-key "$TCDIST_REKOR_PUBLIC_KEY" --origin "$TCDIST_REKOR_ORIGIN"
}

# wait_size N: until the served checkpoint's size is at least N (a few seconds at most:
# checkpoints are published every second).
wait_size() {
	local i size
	for ((i = 0; i < 50; i++)); do
		size=$(served_size) && ((size >= $1)) && return 0
		sleep 0.2
	done
	echo "served checkpoint size ${size:-?}, want $1" >&2
	return 1
}

@test "stack.env exports the log's endpoints, key, origin, storage and binary, and they exist" {
	[[ $TCDIST_REKOR_URL =~ ^http://127\.0\.0\.1:[0-9]+$ ]]
	[[ $TCDIST_REKOR_TILES_URL =~ ^http://127\.0\.0\.1:[0-9]+$ ]]
	[ "$TCDIST_REKOR_URL" != "$TCDIST_REKOR_TILES_URL" ]
	[ "$TCDIST_REKOR_ORIGIN" = rekor.tcdist.test ]
	[ "$TCDIST_REKOR_PUBLIC_KEY" = "$TCDIST_STACK_DIR/trust/rekor.pub" ]
	[ "$TCDIST_REKOR_STORAGE" = "$TCDIST_STACK_DIR/rekor/storage" ]
	[ -s "$TCDIST_REKOR_STORAGE/checkpoint" ]
	[ -x "$TCDIST_REKOR_BIN" ]
	[ -s "$TCDIST_REKOR_KEY" ] && [ "$(stat -c %a "$TCDIST_REKOR_KEY")" = 600 ]
	[ -f "$TCDIST_REKOR_LOG" ]
	# The log key is ed25519; the exported public key is the private key's.
	run openssl pkey -pubin -in "$TCDIST_REKOR_PUBLIC_KEY" -noout -text
	[ "$status" -eq 0 ]
	[[ $output == "ED25519 Public-Key:"* ]]
	[ "$(openssl pkey -in "$TCDIST_REKOR_KEY" -pubout)" = "$(cat "$TCDIST_REKOR_PUBLIC_KEY")" ]
	# The log ID: SHA-256(origin "\n" 0x01 raw key), the C2SP signed-note key ID.
	want=$({
		printf '%s\n\001' "$TCDIST_REKOR_ORIGIN"
		openssl pkey -pubin -in "$TCDIST_REKOR_PUBLIC_KEY" -outform DER | tail -c 32
	} | openssl dgst -sha256 -binary | base64 -w0)
	[ "$TCDIST_REKOR_LOG_ID" = "$want" ]
	run "$TCDIST_TOP/deploy/local/stack" status
	[ "$status" -eq 0 ]
	[[ $output == *"rekor:        running"*"accepts entries"* ]]
	[[ $output == *"rekor-tiles:  running"*"checkpoint signed by the log key"* ]]
}

@test "the log and its tiles server listen on loopback only and talk to nothing else" {
	command -v ss >/dev/null || skip "ss (iproute2) not installed"
	local server nginx workers addr n=0 pat
	server=$(cat "$SERVER_PIDFILE")
	nginx=$(cat "$TILES_PIDFILE")
	mapfile -t workers < <(pgrep -P "$nginx")
	[ "${#workers[@]}" -ge 1 ]
	pat=$(printf 'pid=%s,|' "$server" "$nginx" "${workers[@]}")
	pat=${pat%|}
	while read -r addr; do
		[[ $addr == 127.0.0.1:* ]] || {
			echo "listens on $addr" >&2
			return 1
		}
		n=$((n + 1))
	done < <(ss -Hltnp | grep -E "$pat" | awk '{ print $4 }' | sort -u)
	# The server: HTTP, gRPC, metrics; nginx: the tiles.
	[ "$n" -eq 4 ]
	# Every connection they hold is between loopback addresses (the HTTP gateway calls gRPC).
	while read -r local peer; do
		[[ $local == 127.0.0.1:* && $peer == 127.0.0.1:* ]] || {
			echo "connection $local -> $peer" >&2
			return 1
		}
	done < <(ss -Htnp state established | grep -E "$pat" | awk '{ print $3, $4 }')
	run ss -Hlunp
	[[ $output != *"pid=$server,"* ]]
}

@test "a hashedrekord entry is logged: 201, its proof verifies, the signed checkpoint grows by one" {
	local d=$BATS_TEST_TMPDIR
	before=$(served_size)
	rekor submit "$TCDIST_REKOR_URL" --kind hashedrekord >"$d/response.json"
	run rekor verify "$d/response.json" --public-key "$TCDIST_REKOR_PUBLIC_KEY" --origin "$TCDIST_REKOR_ORIGIN"
	[ "$status" -eq 0 ]
	[ "$output" = "{\"logIndex\": $before, \"treeSize\": $((before + 1)), \"kind\": \"hashedrekord\"}" ]
	python3 - "$d/response.json" "$TCDIST_REKOR_LOG_ID" <<'PY'
import json, sys
tle = json.load(open(sys.argv[1]))
assert tle["logId"] == {"keyId": sys.argv[2]}, tle["logId"]
assert tle["kindVersion"] == {"kind": "hashedrekord", "version": "0.0.2"}, tle["kindVersion"]
# No signed entry timestamp in Rekor v2.
assert tle["integratedTime"] == "0" and tle["inclusionPromise"] is None
PY
	wait_size $((before + 1))
	[ "$(served_size)" -eq $((before + 1)) ]
	# The checkpoint as served: origin, size, root hash, blank line, one signature by the log.
	curl -sSf -D "$d/headers" -o "$d/checkpoint" "$TCDIST_REKOR_TILES_URL/checkpoint"
	[ "$(sed -n 1p "$d/checkpoint")" = "$TCDIST_REKOR_ORIGIN" ]
	[ "$(sed -n 2p "$d/checkpoint")" = $((before + 1)) ]
	[ -z "$(sed -n 4p "$d/checkpoint")" ]
	[[ $(sed -n 5p "$d/checkpoint") == "— $TCDIST_REKOR_ORIGIN "* ]]
	grep -qi '^content-type: text/plain' "$d/headers"
	grep -qi '^cache-control: no-store' "$d/headers"
	# And the entry is in the tiles, at its index, byte for byte.
	run rekor fetch-entry "$TCDIST_REKOR_TILES_URL" "$before" \
		--public-key "$TCDIST_REKOR_PUBLIC_KEY" --origin "$TCDIST_REKOR_ORIGIN"
	[ "$status" -eq 0 ]
	python3 - "$d/response.json" "$output" <<'PY'
import json, sys
tle, got = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
assert got["entry"] == tle["canonicalizedBody"], "the tiles hold another entry"
PY
}

@test "a dsse entry is logged: 201, the body records the payload hash and the signature" {
	local d=$BATS_TEST_TMPDIR
	before=$(served_size)
	rekor submit "$TCDIST_REKOR_URL" --kind dsse --request-out "$d/request.json" >"$d/response.json"
	run rekor verify "$d/response.json" --public-key "$TCDIST_REKOR_PUBLIC_KEY" --origin "$TCDIST_REKOR_ORIGIN"
	[ "$status" -eq 0 ]
	[[ $output == *'"kind": "dsse"'* ]]
	python3 - "$d/request.json" "$d/response.json" <<'PY'
import base64, hashlib, json, sys
req = json.load(open(sys.argv[1]))["dsseRequestV002"]
tle = json.load(open(sys.argv[2]))
body = json.loads(base64.b64decode(tle["canonicalizedBody"]))
assert (body["kind"], body["apiVersion"]) == ("dsse", "0.0.2")
spec = body["spec"]["dsseV002"]
payload = base64.b64decode(req["envelope"]["payload"])
assert spec["payloadHash"] == {"algorithm": "SHA2_256",
                               "digest": base64.b64encode(hashlib.sha256(payload).digest()).decode()}
assert [s["content"] for s in spec["signatures"]] == [req["envelope"]["signatures"][0]["sig"]]
assert spec["signatures"][0]["verifier"] == req["verifiers"][0]
PY
	wait_size $((before + 1))
	# A request the log cannot verify is refused, and adds nothing.
	python3 - "$d/request.json" "$d/bad.json" <<'PY'
import base64, json, sys
req = json.load(open(sys.argv[1]))
env = req["dsseRequestV002"]["envelope"]
env["payload"] = base64.b64encode(base64.b64decode(env["payload"]) + b" ").decode()
json.dump(req, open(sys.argv[2], "w"))
PY
	run curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary "@$d/bad.json" "$TCDIST_REKOR_URL/api/v2/log/entries"
	[ "$output" = 400 ]
	sleep 1.5
	[ "$(served_size)" -eq $((before + 1)) ]
}

@test "the tiles server is read-only and serves only the checkpoint and the tiles" {
	local d=$BATS_TEST_TMPDIR url=$TCDIST_REKOR_TILES_URL m code
	# At least one entry, so that there are tiles.
	rekor submit "$TCDIST_REKOR_URL" >/dev/null
	size=$(served_size)
	tile=$(rekor fetch-entry "$url" $((size - 1)) --public-key "$TCDIST_REKOR_PUBLIC_KEY" \
		--origin "$TCDIST_REKOR_ORIGIN" | python3 -c 'import json, sys; print(json.load(sys.stdin)["tile"])')
	run curl -sS -o /dev/null -w '%{http_code} %{content_type}' "$url/$tile"
	[ "$output" = "200 application/octet-stream" ]
	cp "$TCDIST_REKOR_STORAGE/checkpoint" "$d/checkpoint.before"
	for m in PUT POST DELETE PATCH; do
		for p in checkpoint "$tile" tile/new; do
			code=$(curl -sS -o /dev/null -w '%{http_code}' -X "$m" --data-binary 'tcdist' "$url/$p")
			[[ $code == 403 || $code == 405 ]] || {
				echo "$m /$p answered $code" >&2
				return 1
			}
		done
	done
	[ ! -e "$TCDIST_REKOR_STORAGE/tile/new" ]
	# (The log may republish its checkpoint meanwhile: compare what nginx could have written.)
	[ "$(sed -n 1,2p "$TCDIST_REKOR_STORAGE/checkpoint")" = "$(sed -n 1,2p "$d/checkpoint.before")" ]
	# The log's private state and anything else are not served.
	for p in .state/treeState .state/version tile/../.state/version index.html ""; do
		code=$(curl -sS --path-as-is -o /dev/null -w '%{http_code}' "$url/$p")
		[ "$code" = 404 ]
	done
	# GET and HEAD are.
	[ "$(curl -sS -o /dev/null -w '%{http_code}' -I "$url/checkpoint")" = 200 ]
}

@test "a second log started from the exported binary and key signs a forked checkpoint" {
	local d=$BATS_TEST_TMPDIR http grpc metrics i
	read -r http grpc metrics < <(free_ports 3)
	mkdir "$d/fork"
	"$TCDIST_REKOR_BIN" serve --storage-dir "$d/fork" --signer-filepath "$TCDIST_REKOR_KEY" \
		--hostname "$TCDIST_REKOR_ORIGIN" --http-address 127.0.0.1 --http-port "$http" \
		--grpc-address 127.0.0.1 --grpc-port "$grpc" --http-metrics-port "$metrics" \
		--checkpoint-interval 1s >"$d/fork.log" 2>&1 3>&- &
	SECOND_PID=$!
	for ((i = 0; i < 100; i++)); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/healthz")" = 200 ] && break
		kill -0 "$SECOND_PID" || {
			cat "$d/fork.log" >&2
			return 1
		}
		sleep 0.1
	done
	rekor submit "http://127.0.0.1:$http" >"$d/response.json"
	run rekor verify "$d/response.json" --public-key "$TCDIST_REKOR_PUBLIC_KEY" --origin "$TCDIST_REKOR_ORIGIN"
	[ "$status" -eq 0 ]
	[[ $output == '{"logIndex": 0, "treeSize": 1,'* ]]
	# Its checkpoint verifies with the stack's log key, yet it is another tree.
	run rekor checkpoint "$d/fork/checkpoint" --public-key "$TCDIST_REKOR_PUBLIC_KEY" --origin "$TCDIST_REKOR_ORIGIN"
	[ "$output" = 1 ]
	[ "$(sed -n 3p "$d/fork/checkpoint")" != "$(sed -n 3p "$TCDIST_REKOR_STORAGE/checkpoint")" ]
}

@test "stack up again is harmless: same daemons, same log key, the log kept" {
	local d=$BATS_TEST_TMPDIR
	rekor submit "$TCDIST_REKOR_URL" >/dev/null
	before_size=$(served_size)
	before_pids=$(cat "$SERVER_PIDFILE" "$TILES_PIDFILE")
	cp "$TCDIST_REKOR_KEY" "$d/key.before"
	cp "$TCDIST_REKOR_PUBLIC_KEY" "$d/pub.before"
	# shellcheck disable=SC2154 # run --separate-stderr sets $stderr
	for i in 1 2; do
		run --separate-stderr "$TCDIST_TOP/deploy/local/stack" up
		[ "$status" -eq 0 ]
		[ "$output" = "$TCDIST_STACK_DIR/stack.env" ]
		[[ $stderr == *"rekor: log already running"* ]]
		[[ $stderr == *"rekor: tiles server already running"* ]]
		[[ $stderr != *"generating the log's signing key"* ]]
	done
	[ "$(cat "$SERVER_PIDFILE" "$TILES_PIDFILE")" = "$before_pids" ]
	cmp "$TCDIST_REKOR_KEY" "$d/key.before"
	cmp "$TCDIST_REKOR_PUBLIC_KEY" "$d/pub.before"
	[ "$(served_size)" -eq "$before_size" ]
	# stack.env names the same log.
	run bash -c '. "$1" && printf "%s %s %s" "$TCDIST_REKOR_URL" "$TCDIST_REKOR_TILES_URL" "$TCDIST_REKOR_LOG_ID"' _ "$TCDIST_STACK_DIR/stack.env"
	[ "$output" = "$TCDIST_REKOR_URL $TCDIST_REKOR_TILES_URL $TCDIST_REKOR_LOG_ID" ]
}
