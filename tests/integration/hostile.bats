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

@test "pull rejects a deep path" {
	assert_refused deep-path "path has 201 components, over the limit of 128"
}

@test "pull rejects a PAX size that disagrees with the entry's header" {
	assert_refused pax-size-mismatch "a PAX size of 4 for an entry whose header says 8"
}

@test "pull rejects a GNU long name over the record limit" {
	assert_refused longname-huge "header record limit exceeded (a GNU long name of 1048576 bytes"
}

# A ~200-byte layer whose first header announces a 6 GiB PAX record: refused from the header,
# once, in bounded memory.
@test "pull rejects a PAX header announcing gigabytes, in bounded memory, without retries" {
	python3 "$TCDIST_TOP/tests/lib/hostile_image.py" pax-huge "$WORK/pax-huge" v1
	push_layout "$WORK/pax-huge" v1 "$TCDIST_REGISTRY/hostile/pax-huge:v1"
	layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' \
		"$(layout_manifest_file "$WORK/pax-huge")")
	gets_before=$(count_blob_gets "$layer")
	before=$(store_snapshot "$STORE")
	run --separate-stderr /usr/bin/time -f 'peak-rss-kb %M' \
		"$TCVERIFY" pull "$TCDIST_REGISTRY/hostile/pax-huge:v1" --store "$STORE"
	echo "status $status; stderr: $stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"layer $layer: header record limit exceeded (a PAX header of 6442450944 bytes"* ]]
	rss=$(sed -n 's/^peak-rss-kb //p' <<<"$stderr")
	echo "peak RSS ${rss} KiB"
	((rss <= 64 * 1024))
	[ "$(count_blob_gets "$layer")" -eq $((gets_before + 1)) ]
	[ "$before" = "$(store_snapshot "$STORE")" ]
}

# An OCI layout travels by hand: every file in it is forged input until hashed.
layout_manifest_file() {
	local layout=$1 index manifest
	index=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")
	manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
		"$layout/blobs/sha256/${index#sha256:}")
	echo "$layout/blobs/sha256/${manifest#sha256:}"
}

# make_layouts: a signed release in $WORK/layout-good (tag a) and another one in
# $WORK/layout-other, whose blobs a forger can copy over the signed names.
make_layouts() {
	rm -rf "$WORK/layout-good" "$WORK/layout-other" "$WORK/lay-good" "$WORK/lay-other"
	make_small_tree "$WORK/lay-good"
	make_small_tree "$WORK/lay-other"
	# Content of their own, so neither is in the store already.
	echo "layout $RANDOM $$ $BATS_TEST_NUMBER" >"$WORK/lay-good/README"
	echo "forged $RANDOM" >"$WORK/lay-other/bin/go"
	"$DISTD" publish "$WORK/lay-good" --ref "$TCDIST_REGISTRY/hostile/layout:a" --oci-layout "$WORK/layout-good" >/dev/null
	"$DISTD" publish "$WORK/lay-other" --oci-layout "$WORK/layout-other" --repository hostile/layout >/dev/null
}

# assert_layout_refused TEXT: pulling the good layout exits 42 naming TEXT, store unchanged.
assert_layout_refused() {
	local before
	before=$(store_snapshot "$STORE")
	run --separate-stderr "$TCVERIFY" pull "oci-layout:$WORK/layout-good:a" --store "$STORE"
	echo "status $status; stderr: $stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"$1"* ]]
	[ -z "$output" ]
	[ "$before" = "$(store_snapshot "$STORE")" ]
}

@test "layout: an index blob replaced under its signed digest name is refused" {
	make_layouts
	good=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/layout-good/index.json")
	other=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/layout-other/index.json")
	cp -n "$WORK"/layout-other/blobs/sha256/* "$WORK/layout-good/blobs/sha256/" || true
	cp -f "$WORK/layout-other/blobs/sha256/${other#sha256:}" "$WORK/layout-good/blobs/sha256/${good#sha256:}"
	assert_layout_refused "release index: "
	[[ $stderr == *"expected $good"* ]]
}

@test "layout: a layer blob replaced under its signed digest name is refused" {
	make_layouts
	layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$(layout_manifest_file "$WORK/layout-good")")
	file=$WORK/layout-good/blobs/sha256/${layer#sha256:}
	python3 - "$file" <<'PY'
import sys
path = sys.argv[1]
data = bytearray(open(path, "rb").read())
data[len(data) // 2] ^= 0xFF
open(path, "wb").write(data)
PY
	assert_layout_refused "layer $layer: digest mismatch"
}

@test "layout: a layer blob shorter or longer than its descriptor is wrong content, not retried" {
	make_layouts
	layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$(layout_manifest_file "$WORK/layout-good")")
	file=$WORK/layout-good/blobs/sha256/${layer#sha256:}
	size=$(stat -c %s "$file")
	cp "$file" "$WORK/layer.orig"
	truncate -s $((size - 7)) "$file"
	assert_layout_refused "blob $layer ($file): size mismatch: descriptor says $size bytes, got $((size - 7))"
	[[ $stderr != *attempt* ]]
	cp "$WORK/layer.orig" "$file"
	printf 'trailing' >>"$file"
	assert_layout_refused "blob $layer ($file): size mismatch: descriptor says $size bytes, got $((size + 8))"
	[[ $stderr != *attempt* ]]
}

@test "layout: a blob that is a FIFO or a link to /dev/zero is refused" {
	make_layouts
	layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"])' "$(layout_manifest_file "$WORK/layout-good")")
	file=$WORK/layout-good/blobs/sha256/${layer#sha256:}
	rm "$file"
	mkfifo "$file"
	assert_layout_refused "is not a regular file"
	rm "$file"
	ln -s /dev/zero "$file"
	assert_layout_refused "is a symbolic link, not a regular file"
}

@test "layout: an index.json that links to /dev/zero is refused" {
	make_layouts
	rm "$WORK/layout-good/index.json"
	ln -s /dev/zero "$WORK/layout-good/index.json"
	assert_layout_refused "is a symbolic link, not a regular file"
}
