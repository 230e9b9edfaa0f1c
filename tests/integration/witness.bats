#!/usr/bin/env bats
# Witnesses, against the stack's three litewitness instances (C2SP tlog-witness) and its real
# Rekor, which asks them to cosign each checkpoint: distd checks the quorum (2 of 3) on the
# checkpoint the log answers with, asks the witnesses itself when it is short, and attaches
# the cosigned checkpoint beside the bundle; with too few witnesses publishing fails and
# nothing is tagged.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/witness
	mkdir -p "$WORK"
	export REPO=$TCDIST_REGISTRY/toolchains/witness
}

setup() {
	load helpers
}

teardown() {
	# Whatever a test stopped runs again for the next.
	if [[ -n ${STOPPED:-} ]]; then
		"$TCDIST_TOP/deploy/local/stack" up >/dev/null 2>&1
	fi
}

# publish_unique TAG: a release of a tree of its own (so it is signed anew), published as TAG;
# prints distd's stderr on failure. Sets STATUS and DIGEST.
publish_unique() {
	make_job_tree "$BATS_TEST_TMPDIR/tree-$1" "go1.26.8-witness-$(date +%s%N)"
	run --separate-stderr "$DISTD" publish "$BATS_TEST_TMPDIR/tree-$1" --ref "$REPO:$1"
	echo "stderr: $stderr"
	STATUS=$status
	DIGEST=${output##*$'\n'}
}

# witnessed DIGEST: the witnessed-checkpoint annotation of the release's bundle referrer.
witnessed() {
	registry_api GET "manifests/sha256-${1#sha256:}" -H 'Accept: application/vnd.oci.image.index.v1+json' |
		python3 -c '
import json, sys
for m in json.load(sys.stdin)["manifests"]:
    w = m.get("annotations", {}).get("dev.tcdist.witnessed-checkpoint")
    if w: print(w)'
}

# check_witnessed JSON MIN: the cosigned checkpoint is signed by the log, cosigned by at least
# MIN of the stack's witnesses (each checked with its key from witnesses.toml), and its inclusion
# proof leads from the log's entry at logIndex to the checkpoint's root.
check_witnessed() {
	local entry
	entry=$(python3 "$TCDIST_TOP/tests/lib/rekor_submit.py" fetch-entry "$TCDIST_REKOR_TILES_URL" \
		"$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["logIndex"])' "$1")" \
		--public-key "$TCDIST_REKOR_PUBLIC_KEY" --origin "$TCDIST_REKOR_ORIGIN" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["entry"])')
	python3 - "$1" "$2" "$TCDIST_WITNESSES" "$entry" "$TCDIST_TOP/tests/lib" <<'PY'
import base64, json, sys, tomllib
sys.path.insert(0, sys.argv[5])
from rekor_submit import leaf_hash, root_from_inclusion
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
w = json.loads(sys.argv[1])
minimum, witnesses = int(sys.argv[2]), tomllib.load(open(sys.argv[3], "rb"))["witness"]
body, sigs = w["checkpoint"].split("\n\n", 1)
body += "\n"
keys = {}
for entry in witnesses:
    name, hint, key = entry["key"].split("+", 2)
    keys[(name, bytes.fromhex(hint))] = Ed25519PublicKey.from_public_bytes(base64.b64decode(key)[1:])
cosigned = set()
for line in sigs.strip().split("\n"):
    _, name, sig = line.split(" ")
    raw = base64.b64decode(sig)
    key = keys.get((name, raw[:4]))
    if key is None:
        continue
    t = int.from_bytes(raw[4:12], "big")
    key.verify(raw[12:], f"cosignature/v1\ntime {t}\n".encode() + body.encode())
    cosigned.add(name)
assert len(cosigned) >= minimum, cosigned
origin, size, root = body.split("\n")[:3]
index, size = w["logIndex"], int(size)
entry = base64.b64decode(sys.argv[4])
node = root_from_inclusion(index, size, leaf_hash(entry), [base64.b64decode(h) for h in w["hashes"]])
assert node == base64.b64decode(root), "the inclusion proof does not lead to the root"
print(len(cosigned))
PY
}

stop_witness() {
	STOPPED=1
	kill "$(cat "$TCDIST_WITNESS_DIR/w$1/pid")"
}

# bundle_checkpoint DIGEST: the checkpoint in the release's bundle (its inclusion proof's).
bundle_checkpoint() {
	local referrer layer
	referrer=$(registry_api GET "manifests/sha256-${1#sha256:}" -H 'Accept: application/vnd.oci.image.index.v1+json' |
		python3 -c '
import json, sys
print(next(m["digest"] for m in json.load(sys.stdin)["manifests"]
           if "dev.tcdist.witnessed-checkpoint" in m.get("annotations", {})))')
	layer=$(registry_api GET "manifests/$referrer" -H 'Accept: application/vnd.oci.image.manifest.v1+json' |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
	registry_api GET "blobs/$layer" | python3 -c '
import json, sys
print(json.load(sys.stdin)["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"], end="")'
}

@test "a publish attaches the log's checkpoint, cosigned by the witnesses it asked, beside its bundle" {
	publish_unique v1
	[ "$STATUS" -eq 0 ]
	# The log asked them (rekor-tiles' witnessing), stopping at the quorum.
	[[ $stderr == *"checkpoint of size "*" cosigned by "[23]" of 3 witnesses ("*") through the log"* ]]
	run witnessed "$DIGEST"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 1 ]
	run check_witnessed "${lines[0]}" 2
	[ "$status" -eq 0 ]
	# The bundle's checkpoint carries the log's signature alone: Sigstore clients refuse
	# lines of keys they do not know.
	run bundle_checkpoint "$DIGEST"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^— ' <<<"$output")" -eq 1 ]
	[[ $output == *$'\n— rekor.tcdist.test '* ]]
}

@test "one witness down: the quorum of 2 of 3 is still met" {
	stop_witness 2
	publish_unique v2
	[ "$STATUS" -eq 0 ]
	[[ $stderr == *"cosigned by 2 of 3 witnesses (witness-1.tcdist.test, witness-3.tcdist.test) through the log"* ]]
	run check_witnessed "$(witnessed "$DIGEST")" 2
	[ "$output" = 2 ]
}

@test "two witnesses down: publishing fails cleanly, exit 3, nothing tagged" {
	stop_witness 1
	stop_witness 3
	publish_unique v3
	[ "$STATUS" -eq 3 ]
	[[ $stderr == *"no signature is attached and no tag moved"* ]]
	[[ $stderr == *"cosigned by 2 witnesses"*"1 cosigned (witness-2.tcdist.test)"* ]]
	run registry_api GET manifests/v3
	[ "$status" -ne 0 ]
}

# refused REF: pull exits 42 naming tlog-witness, and installs nothing.
refused_witness() {
	run --separate-stderr "$TCVERIFY" pull "$1" --store "$WORK/store" --policy "$STACK_POLICY"
	echo "status $status"
	echo "stderr: $stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[tlog-witness]"* ]]
	[ ! -e "$WORK/store/sha256-${2#sha256:}" ]
}

@test "tcverify checks the witnesses' quorum on the checkpoint beside the bundle, also with the log down" {
	publish_unique v4
	[ "$STATUS" -eq 0 ]
	run --separate-stderr "$TCVERIFY" verify "$REPO:v4" --json --store "$WORK/store" --policy "$STACK_POLICY"
	[ "$status" -eq 0 ]
	python3 -c '
import json, sys
w = json.loads(sys.argv[1])["signature"]["log"]["witnesses"]
assert w["status"] == "quorum" and len(w["cosigners"]) >= 2, w' "$output"
	# The log out of reach: the cosigned checkpoint travels with the release.
	sed "s|^url = .*|url = \"http://127.0.0.1:$(free_ports 1)\"|" "$STACK_POLICY" >"$BATS_TEST_TMPDIR/down.toml"
	run --separate-stderr "$TCVERIFY" verify "$REPO:v4" --json --store "$WORK/store-down" --policy "$BATS_TEST_TMPDIR/down.toml"
	[ "$status" -eq 0 ]
	[[ $output == *'"status":"quorum"'* ]]
}

@test "attack: a cosignature altered, or too few: 42" {
	publish_unique v5
	[ "$STATUS" -eq 0 ]
	# Each copy starts from the last: the quorum tamper keeps the first, intact, cosignature.
	for tamper in witness-cosignature witness-quorum; do
		python3 "$TCDIST_TOP/tests/lib/forge.py" copy --from toolchains/witness --to toolchains/witness \
			--digest "$DIGEST" --only bundle --tamper "$tamper"
		refused_witness "$REPO@$DIGEST" "$DIGEST"
		case $tamper in
		witness-cosignature) [[ $stderr == *"the cosignature of witness witness-"*" does not verify"* ]] ;;
		witness-quorum) [[ $stderr == *"1 of the required 2 witnesses cosigned"* ]] ;;
		esac
	done
}

@test "a release without its cosigned checkpoint is proven in the log's current one, cosigned now; offline: 42" {
	publish_unique v6
	[ "$STATUS" -eq 0 ]
	# As a release signed before the log was witnessed, or whose referrer was lost.
	python3 "$TCDIST_TOP/tests/lib/forge.py" copy --from toolchains/witness --to toolchains/witness \
		--digest "$DIGEST" --only bundle --tamper drop-witnessed
	run --separate-stderr "$TCVERIFY" verify "$REPO@$DIGEST" --json --store "$WORK/store-now" --policy "$STACK_POLICY"
	echo "stderr: $stderr"
	[ "$status" -eq 0 ]
	python3 -c '
import json, sys
log = json.loads(sys.argv[1])["signature"]["log"]
w = log["witnesses"]
assert w["status"] == "quorum" and w["fetched"] is True and len(w["cosigners"]) >= 2, w
assert w["tree_size"] > log["log_index"], (w, log)' "$output"
	run --separate-stderr "$TCVERIFY" pull "$REPO@$DIGEST" --offline --store "$WORK/store-offline" --policy "$STACK_POLICY"
	echo "stderr: $stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[tlog-witness] the signature carries no checkpoint of log stack cosigned by its witnesses, and the log was not contacted for a current one (offline)"* ]]
	[ ! -d "$WORK/store-offline/sha256-"* ]
}

@test "attack: a release logged in a fork of the log, verified with the log up or out of reach: 42" {
	start_forked_log "$BATS_TEST_TMPDIR/fork"
	make_job_tree "$BATS_TEST_TMPDIR/tree-fork" "go1.26.8-fork-$(date +%s%N)"
	# An attacker's distd: the witnesses would not cosign the fork's checkpoint.
	TCDIST_REKOR_URL=$FORK_URL env -u TCDIST_WITNESSES "$DISTD" publish "$BATS_TEST_TMPDIR/tree-fork" \
		--ref "$REPO:fork" >/dev/null 2>&1
	kill "$FORK_PID"
	# With the real log up, its current checkpoint, which the witnesses cosign, lacks the entry.
	run --separate-stderr "$TCVERIFY" pull "$REPO:fork" --store "$WORK/store-fork" --policy "$STACK_POLICY"
	echo "$stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[tlog-witness] the signature carries no checkpoint of log stack cosigned by its witnesses; entry "*" is not in the log's current checkpoint"* ]]
	[ ! -d "$WORK/store-fork/sha256-"* ]
	sed "s|^url = .*|url = \"http://127.0.0.1:$(free_ports 1)\"|" "$STACK_POLICY" >"$BATS_TEST_TMPDIR/down.toml"
	run --separate-stderr "$TCVERIFY" pull "$REPO:fork" --store "$WORK/store-fork" --policy "$BATS_TEST_TMPDIR/down.toml"
	echo "$stderr"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[tlog-witness] the signature carries no checkpoint of log stack cosigned by its witnesses"* ]]
	[ ! -d "$WORK/store-fork/sha256-"* ]
}
