#!/usr/bin/env bats
# Store integrity against the real stack: every entry records the manifest of its tree (path,
# type, mode, size, content hash), `tcverify env` runs nothing from an entry whose files are
# not the ones installed, and `tcverify fsck` finds an entry changed behind the store's back,
# moves it to quarantine, and lets the next pull install a fresh copy. The attacks are what a
# build job running as the store's owner could do.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/store_integrity
	mkdir -p "$WORK"
	export TCVERIFY_POLICY=$STACK_POLICY
	make_job_tree "$WORK/tree" go1.26.8
	export REF=$TCDIST_REGISTRY/toolchains/integrity:v1
	"$DISTD" publish "$WORK/tree" --ref "$REF" >/dev/null
}

setup() {
	load helpers
	export TCVERIFY_POLICY=$STACK_POLICY
	export STORE=$BATS_TEST_TMPDIR/store
	ROOT=$("$TCVERIFY" pull "$REF" --store "$STORE" 2>/dev/null)
	ENTRY=$(dirname "$ROOT")
	MARK=$BATS_TEST_TMPDIR/planted-ran
}

# plant_go: replaces the entry's bin/go, as its owner can, with a script that leaves a mark.
plant_go() {
	chmod u+w "$ROOT/bin" "$ROOT/bin/go"
	printf '#!/bin/sh\ntouch %s\necho planted\n' "$MARK" >"$ROOT/bin/go"
}

# fsck_quarantines WHAT: fsck exits 42 naming WHAT, and the entry moved to quarantine.
fsck_quarantines() {
	run --separate-stderr "$TCVERIFY" fsck --store "$STORE"
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"store entry $ENTRY"*"$1"* ]]
	[[ $output == "quarantined $ENTRY to $STORE/.quarantine/"* ]]
	[ ! -e "$ENTRY" ]
	[ -d "$STORE/.quarantine/$(basename "$(dirname "$ENTRY")").linux-amd64".* ]
}

@test "pull records the tree's manifest; fsck finds the entry intact" {
	[ -f "$ENTRY/tree.txt" ]
	recorded=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tree_digest"])' "$ENTRY/release.json")
	[ "$recorded" = "sha256:$(sha256sum <"$ENTRY/tree.txt" | cut -d' ' -f1)" ]
	grep -qx "f 0555 [0-9]* [0-9a-f]\{64\} bin/go" "$ENTRY/tree.txt"
	grep -qx "l 0777 10 [0-9a-f]\{64\} lib/fmt-link" "$ENTRY/tree.txt"
	run --separate-stderr "$TCVERIFY" fsck --store "$STORE"
	[ "$status" -eq 0 ]
	[ "$output" = "intact $ENTRY" ]
	run --separate-stderr "$TCVERIFY" fsck --store "$STORE" --json
	python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["intact"] == [sys.argv[2]] and r["damaged"] == [], r' "$output" "$ENTRY"
}

@test "attack: bin/go replaced after the pull: env runs nothing and exits 42; fsck quarantines; the next pull installs a fresh copy" {
	plant_go
	run --separate-stderr "$TCVERIFY" env "$REF" --store "$STORE"
	[ "$status" -eq 42 ]
	[[ $stderr == *"store entry $ENTRY: bin/go is not the file that was installed"* ]]
	[ -z "$output" ]
	[ ! -e "$MARK" ]
	fsck_quarantines "bin/go: mode 0755 instead of 0555, content differs"
	run --separate-stderr "$TCVERIFY" pull "$REF" --store "$STORE" --json
	[ "$status" -eq 0 ]
	python3 -c 'import json,sys; assert json.loads(sys.argv[1])["downloaded"] is True' "$output"
	run --separate-stderr "$TCVERIFY" env "$REF" --store "$STORE"
	[ "$status" -eq 0 ]
	[[ $output == *"export GOROOT='$ROOT'"* ]]
	run "$TCVERIFY" fsck --store "$STORE"
	[ "$status" -eq 0 ]
	[ ! -e "$MARK" ]
}

@test "attack: same-size content with the original mode restored is still found" {
	chmod u+w "$ROOT" "$ROOT/VERSION"
	printf 'go1.26.9\n' >"$ROOT/VERSION"
	chmod 0444 "$ROOT/VERSION"
	chmod 0555 "$ROOT"
	fsck_quarantines "VERSION: content differs"
}

@test "attack: bin/go swapped for a symbolic link to a planted binary: env refuses it" {
	printf '#!/bin/sh\ntouch %s\n' "$MARK" >"$BATS_TEST_TMPDIR/go"
	chmod 0755 "$BATS_TEST_TMPDIR/go"
	chmod u+w "$ROOT/bin"
	rm -f "$ROOT/bin/go"
	ln -s "$BATS_TEST_TMPDIR/go" "$ROOT/bin/go"
	run --separate-stderr "$TCVERIFY" env "$REF" --store "$STORE"
	[ "$status" -eq 42 ]
	[[ $stderr == *"bin/go cannot be opened"* ]]
	[ ! -e "$MARK" ]
	fsck_quarantines "bin/go: type l instead of f"
}

@test "attack: a file added to the tree is found" {
	chmod u+w "$ROOT/bin"
	printf 'x\n' >"$ROOT/bin/gofmt"
	fsck_quarantines "bin/gofmt: added"
}

@test "attack: the manifest rewritten to match a planted file: the record's digest no longer matches" {
	plant_go
	chmod u+w "$ENTRY" "$ENTRY/tree.txt"
	hash=$(sha256sum <"$ROOT/bin/go" | cut -d' ' -f1)
	size=$(stat -c %s "$ROOT/bin/go")
	sed -i "s|^f 0555 [0-9]* [0-9a-f]* bin/go\$|f 0755 $size $hash bin/go|" "$ENTRY/tree.txt"
	run --separate-stderr "$TCVERIFY" env "$REF" --store "$STORE"
	[ "$status" -eq 42 ]
	[[ $stderr == *"tree.txt is sha256:"*", but the record says sha256:"* ]]
	[ ! -e "$MARK" ]
	fsck_quarantines "tree.txt is sha256:"
}

@test "an entry whose record has no tree digest (an older install) is refused by env and replaced" {
	chmod u+w "$ENTRY" "$ENTRY/release.json"
	python3 - "$ENTRY/release.json" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
del record["tree_digest"]
json.dump(record, open(sys.argv[1], "w"))
PY
	run --separate-stderr "$TCVERIFY" env "$REF" --store "$STORE"
	[ "$status" -eq 42 ]
	[[ $stderr == *"no tree digest was recorded"* ]]
	fsck_quarantines "no tree digest was recorded"
	run "$TCVERIFY" pull "$REF" --store "$STORE"
	[ "$status" -eq 0 ]
	run "$TCVERIFY" env "$REF" --store "$STORE"
	[ "$status" -eq 0 ]
}

@test "fsck --dry-run reports a damaged entry and moves nothing; an entry being pulled is left alone" {
	plant_go
	run --separate-stderr "$TCVERIFY" fsck --store "$STORE" --dry-run
	[ "$status" -eq 42 ]
	[ "$output" = "damaged $ENTRY" ]
	[ -d "$ENTRY" ]
	[ -z "$(ls -A "$STORE/.quarantine")" ]
	# A pull holding the entry's lock: fsck skips the entry rather than race it.
	exec {held}>"$(ls "$STORE/.locks/"*.lock)"
	flock "$held"
	run --separate-stderr "$TCVERIFY" fsck --store "$STORE"
	exec {held}>&-
	[ "$status" -eq 0 ]
	[ "$output" = "busy $ENTRY (being pulled; not checked)" ]
	[ -d "$ENTRY" ]
}
