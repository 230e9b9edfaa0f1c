#!/usr/bin/env bats
# The publisher's ledger and the log monitor, against the stack's real daemon, Rekor and
# SPIRE: what distd signs is in the daemon's ledger; `distd monitor` reads the stack's log
# and stays quiet about it, and alerts (with its own exit code per class) on a release the
# ledger does not hold, a forked log, a ledger that was changed, and entries it cannot read.
# Logs holding what no real log accepts (a junk entry) are written as static tiles under a
# test key (tests/lib/tlog_gen.py).

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/monitor
	rm -rf "$WORK"
	mkdir -p "$WORK"
	export REPO=$TCDIST_REGISTRY/toolchains/monitor
	# The monitor catches up on what earlier suites logged, and that is acknowledged: the
	# tests judge only what they add. before-rogue is where it stood before the rogue release.
	catch_up "$WORK/base"
	cp -a "$WORK/base" "$WORK/before-rogue"
	# Entries no tcdist identity signed, of both kinds the log holds.
	for kind in hashedrekord dsse; do
		python3 "$TCDIST_TOP/tests/lib/rekor_submit.py" submit "$TCDIST_REKOR_URL" \
			--kind "$kind" --verifier cert >"$WORK/other-$kind.json"
	done
	python3 -c '
import json, sys
for path in sys.argv[1:]:
    print(json.load(open(path))["canonicalizedBody"])' "$WORK"/other-*.json >"$WORK/unwatched.b64"
	# A release signed by the signer, recorded in a ledger that is not the daemon's.
	# Unique per run: publishing what is already signed adds no signature.
	make_job_tree "$WORK/rogue-tree" "go1.26.8-rogue-$(date +%s%N)"
	"$DISTD" publish "$WORK/rogue-tree" --ref "$REPO:rogue" --ledger "$WORK/elsewhere.jsonl" \
		>/dev/null 2>"$WORK/rogue.log"
	python3 - "$WORK/elsewhere.jsonl" >"$WORK/rogue.json" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
intent = next(r for r in records if r["kind"] == "intent")
logged = next(r for r in records if r["kind"] == "logged")
print(json.dumps({"index": logged["log_index"], "payload": intent["payload"]}))
PY
	python3 "$TCDIST_TOP/tests/lib/rekor_submit.py" fetch-entry "$TCDIST_REKOR_TILES_URL" \
		"$(json_field "$WORK/rogue.json" index)" --public-key "$TCDIST_REKOR_PUBLIC_KEY" \
		--origin "$TCDIST_REKOR_ORIGIN" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["entry"])' >"$WORK/rogue.b64"
	printf '%s\n' "$(printf '{"apiVersion":"0.0.2","kind":"intoto","spec":{}}' | base64 -w0)" \
		>"$WORK/junk.b64"
	catch_up "$WORK/base"
}

# catch_up DIR: a monitor round on state DIR, every alert acknowledged.
catch_up() {
	"$DISTD" monitor --once --state "$1" >/dev/null 2>&1 || true
	"$DISTD" monitor ack --state "$1" --all >/dev/null
}

setup() {
	load helpers
	STATE=$BATS_TEST_TMPDIR/state
	cp -a "$WORK/base" "$STATE"
}

teardown() {
	[[ -z ${SERVED_PID:-} ]] || kill "$SERVED_PID" 2>/dev/null || true
	[[ -z ${FORK_PID:-} ]] || kill "$FORK_PID" 2>/dev/null || true
	[[ -z ${FULL_DISK:-} ]] || umount "$FULL_DISK" 2>/dev/null || true
}

# json_field FILE KEY: one field of a JSON object in FILE.
json_field() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# monitor ARGS…: one round of the monitor on $STATE; alerts on stdout, one JSON per line.
monitor() {
	run --separate-stderr "$DISTD" monitor --once --state "$STATE" "$@"
	echo "status $status"
	echo "stdout: $output"
	echo "stderr: $stderr"
}

# alerts CLASS: the open alerts of CLASS from the last `monitor`, as "index identity" lines.
alerts() {
	python3 -c '
import json, sys
for line in sys.argv[2].splitlines():
    a = json.loads(line)
    if a["class"] == sys.argv[1]:
        print(a.get("index", "-"), a.get("identity", "-"))' "$1" "$output"
}

# generated_log NAME POOL COUNT [THEN…]: a static log of COUNT entries cycled from POOL, then
# the entries of each THEN file, served on loopback; writes $WORK/NAME.toml, the stack's
# policy with that log as its only log (without witnesses: no witness knows it).
generated_log() {
	local name=$1 pool=$2 count=$3
	shift 3
	python3 "$TCDIST_TOP/tests/lib/tlog_gen.py" "$WORK/$name" --origin "$name.tcdist.test" \
		--entries "$pool" --count "$count" --then "$@"
	serve_dir "$WORK/$name"
	sed -e "s|^public_key = .*|public_key = \"$WORK/$name/log.pub\"|" \
		-e "s|^origin = .*|origin = \"$name.tcdist.test\"|" \
		-e "s|^url = .*|url = \"$SERVED_URL\"|" \
		-e '/^witness = /d' -e '/^witness_quorum = /d' -e '/^witnesses = \[/,/^\]/d' \
		"$STACK_POLICY" >"$WORK/$name.toml"
}

@test "publish, promote and yank go through the daemon's ledger, and the monitor stays clean" {
	make_job_tree "$BATS_TEST_TMPDIR/tree" "go1.26.8-mon-$(date +%s%N)"
	digest=$("$DISTD" publish "$BATS_TEST_TMPDIR/tree" --ref "$REPO:v1" 2>/dev/null | tail -n 1)
	"$DISTD" promote "$REPO@$digest" --channel stable >/dev/null 2>&1
	"$DISTD" yank "$REPO@$digest" --reason "monitor test" >/dev/null 2>&1
	# The statements are intents and logged records of the daemon's ledger, by their signers.
	python3 - "$TCDIST_SERVER_LEDGER" "$digest" "$TCDIST_SIGNER_ID" "$TCDIST_PROMOTER_ID" <<'PY'
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
mine = [r for r in records if r["kind"] == "intent" and r["subject"] == sys.argv[2]]
assert {r["spiffe_id"] for r in mine} == {sys.argv[3], sys.argv[4]}, mine
assert all(r["appended_by"] == r["spiffe_id"] for r in mine), mine
logged = {r["intent"] for r in records if r["kind"] == "logged"}
assert all(r["seq"] in logged for r in mine), "an intent was never logged"
PY
	monitor
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	[[ $stderr == *"read $(curl -fsS "$TCDIST_REKOR_TILES_URL/checkpoint" | sed -n 2p) of"* ]]
	run "$DISTD" ledger verify
	[ "$status" -eq 0 ]
	[[ $output == "ledger ok: "*" records, head sha256:"* ]]
}

@test "a release the signer signed outside the ledger: unauthorized, named, with a portable proof" {
	rm -rf "$STATE"
	cp -a "$WORK/before-rogue" "$STATE"
	monitor
	[ "$status" -eq 12 ]
	index=$(json_field "$WORK/rogue.json" index)
	[ "$(alerts unauthorized)" = "$index $TCDIST_SIGNER_ID" ]
	line=$(grep "\"index\":$index," <<<"$output")
	payload=$(json_field "$WORK/rogue.json" payload)
	[[ $line == *"\"digest\":\"$payload\""* ]]
	# The proof stands alone: the entry, its inclusion proof, the checkpoint signed by the log.
	proof=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["proof"])' "$line")
	python3 - "$proof" "$index" "$TCDIST_TOP/tests/lib" <<'PY'
import base64, json, sys
sys.path.insert(0, sys.argv[3])
from rekor_submit import leaf_hash, root_from_inclusion
entry = json.load(open(sys.argv[1]))["entry"]
proof = entry["inclusionProof"]
index, size = int(sys.argv[2]), int(proof["treeSize"])
assert int(entry["logIndex"]) == index
node = root_from_inclusion(index, size, leaf_hash(base64.b64decode(entry["canonicalizedBody"])),
                           [base64.b64decode(h) for h in proof["hashes"]])
lines = proof["checkpoint"]["envelope"].split("\n")
assert base64.b64decode(lines[2]) == node, "the proof does not lead to the checkpoint's root"
assert int(lines[1]) == size
PY
	# Acknowledged, it no longer counts; the next round is clean.
	id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$line")
	run "$DISTD" monitor ack --state "$STATE" "$id"
	[ "$output" = "$id" ]
	monitor
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "a changed ledger: distd ledger verify exits 42 naming the line, the monitor says tamper" {
	cp "$TCDIST_SERVER_LEDGER" "$BATS_TEST_TMPDIR/ledger.jsonl"
	sed -i '1s/"seq":0,/"seq":0, /' "$BATS_TEST_TMPDIR/ledger.jsonl"
	run "$DISTD" ledger verify --ledger "$BATS_TEST_TMPDIR/ledger.jsonl"
	[ "$status" -eq 42 ]
	[[ $output == *"line 2: names sha256:"*"the ledger was changed"* ]]
	monitor --ledger "$BATS_TEST_TMPDIR/ledger.jsonl"
	[ "$status" -eq 13 ]
	[[ $output == *'"class":"tamper"'*"line 2"* ]]
	# The daemon's own ledger is pinned; one that does not extend it is tamper too.
	monitor
	: >"$BATS_TEST_TMPDIR/empty.jsonl"
	monitor --ledger "$BATS_TEST_TMPDIR/empty.jsonl"
	[ "$status" -eq 13 ]
	[[ $output == *"does not extend the one read before"* ]]
}

@test "attack: a full disk under a file ledger: signing fails cleanly, and the ledger keeps its chain" {
	[[ $EUID -eq 0 ]] || skip "a small tmpfs can only be mounted as root"
	FULL_DISK=$BATS_TEST_TMPDIR/disk
	mkdir -p "$FULL_DISK"
	mount -t tmpfs -o size=64k tmpfs "$FULL_DISK" || skip "mount -t tmpfs failed"
	# The rogue release's ledger, its last line padded (JSON allows trailing blanks) so that
	# its last page has room for only the start of the next line; the disk then filled.
	python3 - "$WORK/elsewhere.jsonl" "$FULL_DISK/ledger.jsonl" <<'PY'
import sys
lines = open(sys.argv[1], "rb").read().splitlines()
prefix = b"".join(line + b"\n" for line in lines[:-1])
pad = (4096 - 40 - len(prefix) - len(lines[-1]) - 1) % 4096
open(sys.argv[2], "wb").write(prefix + lines[-1] + b" " * pad + b"\n")
PY
	dd if=/dev/zero of="$FULL_DISK/filler" bs=4k 2>/dev/null || true
	before=$(sha256sum <"$FULL_DISK/ledger.jsonl")
	make_job_tree "$BATS_TEST_TMPDIR/tree" "go1.26.8-full-$(date +%s%N)"
	run --separate-stderr "$DISTD" publish "$BATS_TEST_TMPDIR/tree" --ref "$REPO:full-disk" \
		--ledger "$FULL_DISK/ledger.jsonl"
	echo "status $status, stderr: $stderr"
	[ "$status" -ne 0 ]
	[[ $stderr == *"appending to the ledger $FULL_DISK/ledger.jsonl"*"No space left on device"* ]]
	[ "$(sha256sum <"$FULL_DISK/ledger.jsonl")" = "$before" ]
	run registry_api GET manifests/full-disk
	[ "$status" -ne 0 ]
	run "$DISTD" ledger verify --ledger "$FULL_DISK/ledger.jsonl"
	[ "$status" -eq 0 ]
	# Room again: the next signing appends to the same chain.
	rm "$FULL_DISK/filler"
	run --separate-stderr "$DISTD" publish "$BATS_TEST_TMPDIR/tree" --ref "$REPO:full-disk" \
		--ledger "$FULL_DISK/ledger.jsonl"
	[ "$status" -eq 0 ]
	run "$DISTD" ledger verify --ledger "$FULL_DISK/ledger.jsonl"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ $output == "ledger ok: $(($(wc -l <"$WORK/elsewhere.jsonl") + 2)) records"* ]]
}

@test "a fork of the log under the same key: tamper, shown by two signed checkpoints" {
	start_forked_log "$BATS_TEST_TMPDIR/fork"
	python3 "$TCDIST_TOP/tests/lib/rekor_submit.py" submit "$FORK_URL" --kind hashedrekord >/dev/null
	serve_dir "$BATS_TEST_TMPDIR/fork"
	sed "s|^url = .*|url = \"$SERVED_URL\"|" "$STACK_POLICY" >"$BATS_TEST_TMPDIR/fork.toml"
	monitor --policy "$BATS_TEST_TMPDIR/fork.toml"
	[ "$status" -eq 13 ]
	[[ $output == *'"class":"tamper"'*"rekor.tcdist.test"*"a log only grows"* ]]
	proof=$(python3 -c '
import json, sys
for line in sys.argv[1].splitlines():
    a = json.loads(line)
    if a["class"] == "tamper": print(a["proof"])' "$output")
	[ "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["checkpoints"]))' "$proof")" -eq 2 ]
}

@test "a checkpoint the witnesses never saw (a fork shown from the start): tamper" {
	start_forked_log "$BATS_TEST_TMPDIR/fork"
	python3 "$TCDIST_TOP/tests/lib/rekor_submit.py" submit "$FORK_URL" --kind hashedrekord >/dev/null
	serve_dir "$BATS_TEST_TMPDIR/fork"
	sed "s|^url = .*|url = \"$SERVED_URL\"|" "$STACK_POLICY" >"$BATS_TEST_TMPDIR/fork.toml"
	# A monitor that never saw the real log: only the witnesses can tell.
	rm -rf "$STATE"
	monitor --policy "$BATS_TEST_TMPDIR/fork.toml"
	[ "$status" -eq 13 ]
	[[ $output == *'"class":"tamper"'*"showed a checkpoint of size 1 that its witnesses did not cosign"* ]]
	# And it read no entry of it.
	[[ $stderr != *"read 1 of 1"* ]]
}

@test "the real log's checkpoint served without cosignatures: the monitor asks the witnesses, who cosign it" {
	# What earlier tests logged is judged elsewhere; one entry more, that nobody watched signed.
	catch_up "$STATE"
	python3 "$TCDIST_TOP/tests/lib/rekor_submit.py" submit "$TCDIST_REKOR_URL" --kind hashedrekord >/dev/null
	cp -a "$TCDIST_REKOR_STORAGE" "$BATS_TEST_TMPDIR/bare"
	python3 - "$BATS_TEST_TMPDIR/bare/checkpoint" "$TCDIST_REKOR_ORIGIN" <<'PY'
import sys
path, origin = sys.argv[1], sys.argv[2]
body, lines = open(path).read().split("\n\n", 1)
assert "— witness-" in lines, lines
own = "".join(line + "\n" for line in lines.splitlines() if line.startswith(f"— {origin} "))
open(path, "w").write(f"{body}\n\n{own}")
PY
	serve_dir "$BATS_TEST_TMPDIR/bare"
	sed "s|^url = .*|url = \"$SERVED_URL\"|" "$STACK_POLICY" >"$BATS_TEST_TMPDIR/bare.toml"
	# Accepted (exit 0) only with the quorum's cosignatures, which the note served lacks.
	monitor --policy "$BATS_TEST_TMPDIR/bare.toml"
	[ "$status" -eq 0 ]
	size=$(sed -n 2p "$BATS_TEST_TMPDIR/bare/checkpoint")
	[[ $stderr == *"read $size of $size entries"* ]]
}

@test "a junk entry and then a rogue release: both alerted, malformed and unauthorized" {
	generated_log junk "$WORK/unwatched.b64" 300 "$WORK/junk.b64" "$WORK/rogue.b64"
	rm -rf "$STATE"
	monitor --policy "$WORK/junk.toml"
	[ "$status" -eq 12 ]
	[ "$(alerts malformed)" = "300 -" ]
	[ "$(alerts unauthorized)" = "301 $TCDIST_SIGNER_ID" ]
	[[ $output == *"entries of kind \\\"intoto\\\", version \\\"0.0.2\\\" are not known"* ]]
}

@test "an entry the monitor cannot parse alone: malformed, exit 11" {
	generated_log junk-only "$WORK/unwatched.b64" 10 "$WORK/junk.b64"
	rm -rf "$STATE"
	monitor --policy "$WORK/junk-only.toml"
	[ "$status" -eq 11 ]
	[ "$(alerts malformed)" = "10 -" ]
}

@test "killed mid-run, the monitor resumes where it saved and skips no entry" {
	generated_log long "$WORK/unwatched.b64" 20000 "$WORK/rogue.b64"
	rm -rf "$STATE"
	"$DISTD" monitor --once --state "$STATE" --policy "$WORK/long.toml" >/dev/null 2>&1 &
	pid=$!
	# Killed once it saved some progress and before it read the end.
	position() { python3 -c 'import json, sys; print(next(iter(json.load(open(sys.argv[1]))["logs"].values()))["position"])' "$STATE/state.json" 2>/dev/null || echo 0; }
	for _ in $(seq 300); do
		p=$(position)
		((p > 0)) && break
		sleep 0.05
	done
	kill -9 "$pid"
	wait "$pid" || true
	p=$(position)
	echo "killed at position $p" >&3
	((p > 0 && p < 20001))
	monitor --policy "$WORK/long.toml"
	[ "$status" -eq 12 ]
	[ "$(alerts unauthorized)" = "20000 $TCDIST_SIGNER_ID" ]
	[ "$(position)" -eq 20001 ]
}

@test "a log out of reach is an operational alert, exit 10" {
	read -r port < <(free_ports 1)
	sed "s|^url = .*|url = \"http://127.0.0.1:$port\"|" "$STACK_POLICY" >"$BATS_TEST_TMPDIR/down.toml"
	monitor --policy "$BATS_TEST_TMPDIR/down.toml" --max-lag 0s
	[ "$status" -eq 10 ]
	[[ $output == *'"class":"operational"'*"could not be read"* ]]
	# Within the allowed lag it is not worth an alert.
	monitor --policy "$BATS_TEST_TMPDIR/down.toml" --max-lag 1h
	[ "$status" -eq 0 ]
}

@test "the stack runs the monitor: it reports the rogue release to its hook and in its metrics" {
	index=$(json_field "$WORK/rogue.json" index)
	for _ in $(seq 100); do
		grep -q "\"index\":$index," "$TCDIST_MONITOR_ALERTS" 2>/dev/null && break
		sleep 0.2
	done
	grep "\"index\":$index," "$TCDIST_MONITOR_ALERTS" | grep -q '"class":"unauthorized"'
	run curl -fsS "$TCDIST_MONITOR_METRICS_URL"
	[[ $output == *"tcdist_monitor_position{log=\"$TCDIST_REKOR_ORIGIN\"}"* ]]
	[[ $output == *'tcdist_monitor_open_alerts{class="unauthorized"}'* ]]
}
