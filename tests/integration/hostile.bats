#!/usr/bin/env bats
# Attack matrix: hostile registry content is refused with exit 42, a message naming the rule,
# and a store left exactly as it was.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/hostile
	export STORE=$WORK/store
	mkdir -p "$WORK"
	# A store that already holds a toolchain, so "unchanged" covers existing entries.
	make_small_tree "$WORK/good"
	"$DISTD" publish "$WORK/good" --ref "$TCDIST_REGISTRY/hostile/good:v1" >/dev/null
	"$TCVERIFY" pull "$TCDIST_REGISTRY/hostile/good:v1" --store "$STORE" >/dev/null
}

setup() {
	load helpers
}

# assert_refused CASE RULE [tcverify args...]: push the hostile image CASE, pull it, and expect
# exit 42, RULE in the message, nothing on stdout and an unchanged store.
assert_refused() {
	local case=$1 rule=$2
	shift 2
	python3 "$TCDIST_TOP/tests/lib/hostile_image.py" "$case" "$WORK/$case" v1
	push_layout "$WORK/$case" v1 "$TCDIST_REGISTRY/hostile/$case:v1"
	local before
	before=$(store_snapshot "$STORE")
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/hostile/$case:v1" --store "$STORE" "$@"
	echo "status $status; stderr: $stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"$rule"* ]]
	[ -z "$output" ]
	[ "$before" = "$(store_snapshot "$STORE")" ]
	[ ! -e /tmp/tcdist-escaped ]
}

@test "pull rejects an entry with '..'" {
	assert_refused dotdot "entry \"toolchain/../escaped\" refused: path contains '..'"
}

@test "pull rejects an absolute path" {
	assert_refused absolute "refused: absolute path"
}

@test "pull rejects an entry outside the toolchain root" {
	assert_refused outside-root "refused: path is outside the toolchain root"
}

@test "pull rejects a symlink escaping the root" {
	assert_refused symlink-escape "symlink target \"../../../../etc\" escapes the toolchain root"
}

@test "pull rejects an absolute symlink" {
	assert_refused symlink-absolute "symlink target \"/etc\" escapes the toolchain root"
}

@test "pull rejects a hard link to an absolute path" {
	assert_refused hardlink-escape "hard link target \"/etc/passwd\""
}

@test "pull rejects a hard link climbing out of the root" {
	assert_refused hardlink-parent "hard link target \"toolchain/../../etc/passwd\""
}

@test "pull rejects a file written through an earlier symlink" {
	assert_refused write-through-symlink "entry \"toolchain/link/evil\" refused: path passes through a symlink"
}

@test "pull rejects a device node" {
	assert_refused device "refused: entry type Char"
}

@test "pull rejects a fifo" {
	assert_refused fifo "refused: entry type Fifo"
}

@test "pull rejects setuid bits" {
	assert_refused setuid "setuid, setgid or sticky bit set (mode 4755)"
}

@test "pull rejects an entry that appears twice" {
	assert_refused duplicate "entry \"toolchain/a\" refused: entry appears twice"
}

@test "pull rejects a layer whose unpacked size is over the budget" {
	assert_refused bomb "unpacked size limit exceeded" --max-unpacked-bytes $((64 << 20))
}

@test "pull rejects a blob whose bytes do not match its digest (flipped in registry storage)" {
	make_small_tree "$WORK/flip"
	echo "unique $RANDOM $$" >"$WORK/flip/README"
	ref=$TCDIST_REGISTRY/hostile/flip:v1
	"$DISTD" publish "$WORK/flip" --ref "$ref" >/dev/null
	layer=$(skopeo inspect --cert-dir "$TCDIST_REGISTRY_CERT_DIR" --authfile "$REGISTRY_AUTH_FILE" "docker://$ref" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["Layers"][-1])')
	file=$(registry_blob_file "$layer")
	[ -f "$file" ]
	python3 - "$file" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0xFF
open(path, "wb").write(data)
PY
	before=$(store_snapshot "$STORE")
	run --separate-stderr "$TCVERIFY" pull "$ref" --store "$STORE"
	echo "status $status; stderr: $stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"layer $layer: digest mismatch"* ]]
	[ "$before" = "$(store_snapshot "$STORE")" ]
}

@test "pull rejects an index pinned by digest when the registry serves other bytes" {
	ref=$TCDIST_REGISTRY/hostile/good
	wrong=sha256:$(printf 'not the index' | sha256sum | cut -d' ' -f1)
	run --separate-stderr "$TCVERIFY" pull "$ref@$wrong" --store "$STORE"
	# The registry has no manifest under that digest: not found, not installed.
	[ "$status" -ne 0 ]
	[ -z "$output" ]
}
