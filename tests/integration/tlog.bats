#!/usr/bin/env bats
# The transparency log, against the stack's real Rekor v2 (rekor-tiles, tiles behind nginx):
# publish records the bundle's signature, pull accepts only a release whose entry, inclusion
# proof and checkpoint verify against the log the policy trusts, remembers the newest
# checkpoint and refuses a log that rewrote its history. Third-party Sigstore clients verify
# the same releases with the trusted root `distd trust-root export` writes.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/tlog
	mkdir -p "$WORK"
	export TCVERIFY_POLICY=$STACK_POLICY
	for name in a b c; do
		make_small_tree "$WORK/$name"
		printf '%s\n' "$name" >"$WORK/$name/src/fmt/$name.go"
	done
	# Some entries first, so later inclusion proofs are not empty.
	for name in a b; do
		"$DISTD" publish "$WORK/$name" --ref "$TCDIST_REGISTRY/toolchains/tlog-$name:v1" >/dev/null
	done
	"$DISTD" trust-root export --out "$WORK/trusted_root.json"
}

setup() {
	load helpers
	load "$TCDIST_TOP/tests/lib/sigstore_clients.bash"
	export TCVERIFY_POLICY=$STACK_POLICY
	mkdir -p "$WORK/store"
	store_snapshot "$WORK/store" >"$BATS_TEST_TMPDIR/store.before"
}

FORGE=$TCDIST_TOP/tests/lib/forge.py

# without_witnesses POLICY: the policy without its log's witnesses, for the tests of freshness
# itself: where witnesses count, the store remembers only checkpoints they cosigned, and a
# release without them is refused first (witness.bats).
without_witnesses() {
	sed -e '/^witness = /d' -e '/^witness_quorum = /d' -e '/^witnesses = \[/,/^\]/d' "$1"
}

log_size() {
	curl -fsS "$TCDIST_REKOR_TILES_URL/checkpoint" | sed -n 2p
}

# digest_of REPO: the index digest the repository's v1 tag names.
digest_of() {
	"$TCVERIFY" verify "$TCDIST_REGISTRY/$1:v1" --json --store "$WORK/verify-store" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])'
}

# copy_unsigned FROM TO: the release copied to another repository without its signatures.
copy_unsigned() {
	skopeo copy --quiet --all --preserve-digests \
		--src-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --src-authfile "$REGISTRY_AUTH_FILE" \
		--dest-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --dest-authfile "$REGISTRY_AUTH_FILE" \
		"docker://$TCDIST_REGISTRY/$1:v1" "docker://$TCDIST_REGISTRY/$2:v1" >&2
}

# refused REF RULE [ARGS...]: pull exits 42, names RULE, installs nothing.
refused() {
	local ref=$1 rule=$2
	shift 2
	run --separate-stderr "$TCVERIFY" pull "$ref" --store "$WORK/store" "$@"
	echo "status $status"
	echo "stderr: $stderr"
	[ "$status" -eq 42 ]
	[ -z "$output" ]
	[[ $stderr == *"[$rule]"* ]]
	store_snapshot "$WORK/store" | diff "$BATS_TEST_TMPDIR/store.before" -
}

# tampered MODE [ARGS...]: a release published to toolchains/tlog-MODE, whose bundle is then
# replaced by a copy with MODE applied; prints the reference.
tampered() {
	local mode=$1 repo=toolchains/tlog-$1
	shift
	"$DISTD" publish "$WORK/b" --ref "$TCDIST_REGISTRY/$repo:v1" >/dev/null
	python3 "$FORGE" copy --from "$repo" --to "$repo" --digest "$(digest_of "$repo")" \
		--only bundle --tamper "$mode" "$@"
	echo "$TCDIST_REGISTRY/$repo:v1"
}

@test "publish records one entry; pull verifies entry, proof and checkpoint; --json gives the log index" {
	before=$(log_size)
	run --separate-stderr "$DISTD" publish "$WORK/c" --ref "$TCDIST_REGISTRY/toolchains/tlog-c:v1"
	[ "$status" -eq 0 ]
	[[ $stderr == *"recorded in the transparency log at index $before"* ]]
	[ "$(log_size)" -eq "$((before + 1))" ]
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/tlog-c:v1" --store "$WORK/store" --json
	[ "$status" -eq 0 ]
	python3 - "$output" "$before" <<'PY'
import json, sys
out, index = json.loads(sys.argv[1]), int(sys.argv[2])
assert out["signature"]["log"]["log_index"] == index, out
assert "transparency-log" in out["checks"], out
assert out["signature"]["log"]["log"] == "stack", out
assert out["log_freshness"]["status"] == "checked", out
PY
	# The newest checkpoint seen is remembered in the store.
	[ -n "$(ls "$WORK/store/.tlog")" ]
}

@test "attack: no log entry (signed without the log)" {
	copy_unsigned toolchains/tlog-b toolchains/tlog-unlogged
	env -u TCDIST_REKOR_URL -u TCDIST_REKOR_PUBLIC_KEY -u TCDIST_REKOR_ORIGIN \
		"$DISTD" sign "$TCDIST_REGISTRY/toolchains/tlog-unlogged:v1" >/dev/null
	refused "$TCDIST_REGISTRY/toolchains/tlog-unlogged:v1" tlog-entry-present
}

@test "attack: the log entry removed from the bundle" {
	refused "$(tampered drop-tlog)" tlog-entry-present
}

@test "attack: the entry of another signature" {
	refused "$(tampered swap-tlog --tlog-from "toolchains/tlog-a@$(digest_of toolchains/tlog-a)")" tlog-entry-matches
}

@test "attack: the entry's body altered" {
	refused "$(tampered tlog-body)" tlog-entry-matches
}

@test "attack: the inclusion proof altered" {
	refused "$(tampered tlog-proof)" tlog-inclusion
}

@test "attack: the checkpoint signed by an unknown key" {
	refused "$(tampered tlog-checkpoint-key)" tlog-checkpoint
}

@test "attack: the checkpoint of another origin" {
	refused "$(tampered tlog-origin)" tlog-checkpoint
}

@test "attack: offline, with trust material that lacks the log's key" {
	python3 - "$WORK/other-log.pub" <<'PY'
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
key = ed25519.Ed25519PrivateKey.generate().public_key()
open(sys.argv[1], "wb").write(key.public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))
PY
	sed "s|^public_key = .*|public_key = \"$WORK/other-log.pub\"|" "$STACK_POLICY" >"$WORK/other-log-policy.toml"
	export TCVERIFY_POLICY=$WORK/other-log-policy.toml
	refused "$TCDIST_REGISTRY/toolchains/tlog-a:v1" tlog-entry-present --offline
}

@test "attack: a forked log (a second log from the same key) is refused once the real one was seen" {
	# The real log's current checkpoint, remembered in the store.
	"$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/store" >/dev/null
	store_snapshot "$WORK/store" >"$BATS_TEST_TMPDIR/store.before"
	start_forked_log "$WORK/fork"
	copy_unsigned toolchains/tlog-b toolchains/tlog-forked
	# An attacker's distd: the stack's witnesses would not cosign the fork.
	TCDIST_REKOR_URL=$FORK_URL env -u TCDIST_WITNESSES "$DISTD" sign "$TCDIST_REGISTRY/toolchains/tlog-forked:v1" >/dev/null
	kill "$FORK_PID"
	without_witnesses "$TCVERIFY_POLICY" >"$BATS_TEST_TMPDIR/no-witnesses.toml"
	TCVERIFY_POLICY=$BATS_TEST_TMPDIR/no-witnesses.toml \
		refused "$TCDIST_REGISTRY/toolchains/tlog-forked:v1" tlog-consistency
}

@test "log down at pull time: verified from the bundle's proof, and says freshness was not checked" {
	sed "s|^url = .*|url = \"http://127.0.0.1:9\"|" "$STACK_POLICY" >"$WORK/down-policy.toml"
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/store" \
		--policy "$WORK/down-policy.toml" --json
	[ "$status" -eq 0 ]
	[[ $stderr == *"freshness could not be checked"* ]]
	[[ $output == *'"status":"unchecked"'* ]]
}

# tlog_snapshot STORE: the remembered checkpoints, with their hashes.
tlog_snapshot() {
	(cd "$1" && find .tlog -printf '%p %y %s\n' 2>/dev/null | sort
		find .tlog -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum)
}

@test "log down, best effort: the checkpoint that could not be compared with the remembered one is named" {
	# Remember the log's current checkpoint, larger than tlog-a's, then lose the log.
	without_witnesses "$STACK_POLICY" >"$WORK/up-policy.toml"
	"$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/down-store" \
		--policy "$WORK/up-policy.toml" >/dev/null
	sed "s|^url = .*|url = \"http://127.0.0.1:9\"|" "$WORK/up-policy.toml" >"$WORK/down-policy.toml"
	tlog_snapshot "$WORK/down-store" >"$BATS_TEST_TMPDIR/tlog.before"
	run --separate-stderr "$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/down-store" \
		--policy "$WORK/down-policy.toml"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ $stderr == *"freshness could not be checked"* ]]
	[[ $stderr == *"the bundle's checkpoint (size "*") was not proven to be a prefix of the checkpoint remembered in the store"* ]]
	tlog_snapshot "$WORK/down-store" | diff "$BATS_TEST_TMPDIR/tlog.before" -
}

@test "freshness = required: with the log down, pull exits 3, names the log and changes nothing" {
	sed "s|^url = .*|url = \"http://127.0.0.1:9\"\nfreshness = \"required\"|" "$STACK_POLICY" >"$WORK/required-policy.toml"
	tlog_snapshot "$WORK/store" >"$BATS_TEST_TMPDIR/tlog.before"
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/store" \
		--policy "$WORK/required-policy.toml"
	echo "$stderr"
	[ "$status" -eq 3 ]
	[ -z "$output" ]
	[[ $stderr == *"checking the freshness of log stack"* ]]
	[[ $stderr == *"the log did not answer"* ]]
	store_snapshot "$WORK/store" | diff "$BATS_TEST_TMPDIR/store.before" -
	tlog_snapshot "$WORK/store" | diff "$BATS_TEST_TMPDIR/tlog.before" -
	# --offline cannot check freshness either.
	sed "s|^url = .*|&\nfreshness = \"required\"|" "$STACK_POLICY" >"$WORK/required-up-policy.toml"
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/store" \
		--policy "$WORK/required-up-policy.toml" --offline
	[ "$status" -eq 3 ]
	[[ $stderr == *"offline: the log was not contacted"* ]]
	# With the log up, the same policy verifies.
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/store" \
		--policy "$WORK/required-up-policy.toml" --json
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ $output == *'"status":"checked"'* ]]
}

@test "log down at publish time: publish fails cleanly and announces nothing" {
	make_small_tree "$WORK/d"
	printf 'd\n' >"$WORK/d/src/fmt/d.go"
	run --separate-stderr env TCDIST_REKOR_URL=http://127.0.0.1:9 \
		"$DISTD" publish "$WORK/d" --ref "$TCDIST_REGISTRY/toolchains/tlog-d:v1"
	echo "$stderr"
	[ "$status" -eq 3 ]
	[[ $stderr == *"nothing was announced"* ]]
	# The tag was not created, and no signature points at the release.
	run skopeo inspect --cert-dir "$TCDIST_REGISTRY_CERT_DIR" --authfile "$REGISTRY_AUTH_FILE" --raw \
		"docker://$TCDIST_REGISTRY/toolchains/tlog-d:v1"
	[ "$status" -ne 0 ]
}

@test "trusted root: CAs of the trust domain, the log's key and ID, the TSA chain" {
	python3 - "$WORK/trusted_root.json" "$TCDIST_REKOR_LOG_ID" "$TCDIST_REKOR_ORIGIN" <<'PY'
import json, sys
root, log_id, origin = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
assert root["mediaType"] == "application/vnd.dev.sigstore.trustedroot+json;version=0.1", root
assert root["tlogs"][0]["logId"]["keyId"] == log_id, root["tlogs"]
assert root["tlogs"][0]["baseUrl"] == "https://" + origin, root["tlogs"]
assert root["certificateAuthorities"][0]["uri"] == "spiffe://tcdist.test", root
assert len(root["timestampAuthorities"][0]["certChain"]["certificates"]) == 2, root
assert root["ctlogs"] == [], root
PY
}

@test "the stack exports its trusted root as TCVERIFY_TRUST" {
	[ -s "$STACK_TRUST" ]
	cmp "$STACK_TRUST" "$WORK/trusted_root.json"
}

# signers_only_policy FILE [LOG-TABLE]: a policy that names the stack's signer and nothing it
# trusts; LOG-TABLE is added as is.
signers_only_policy() {
	{
		printf 'version = 1\n\n[[repository]]\nname = "toolchains/*"\n'
		printf 'signers = { spiffe_id = "%s" }\n' "$TCDIST_SIGNER_ID"
		printf '%s\n' "${2:-}"
	} >"$1"
}

# edit_trusted_root OUT PYTHON: the stack's trusted root, changed by PYTHON (root is the
# document; key_id(origin, raw) gives an Ed25519 log key ID), written to OUT.
edit_trusted_root() {
	python3 - "$STACK_TRUST" "$1" "$2" <<'PY'
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
root = json.load(open(sys.argv[1]))
def key_id(origin, raw):
    return base64.b64encode(hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()).decode()
exec(sys.argv[3])
json.dump(root, open(sys.argv[2], "w"))
PY
}

@test "tcverify --trust: a policy that names only signers verifies with the stack's trusted root" {
	signers_only_policy "$WORK/signers-only.toml" \
		"$(printf '[transparency_logs.stack]\norigin = "%s"\nurl = "%s"' "$TCDIST_REKOR_ORIGIN" "$TCDIST_REKOR_TILES_URL")"
	run --separate-stderr env TCVERIFY_TRUST="$STACK_TRUST" "$TCVERIFY" pull \
		"$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/store" --policy "$WORK/signers-only.toml" --json
	echo "$stderr"
	[ "$status" -eq 0 ]
	python3 - "$output" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
assert out["signature"]["log"]["log"] == "stack", out
assert out["log_freshness"]["status"] == "checked", out
assert isinstance(out["signature"]["log"]["log_index"], int), out
PY
	# policy check shows what the trusted root brought.
	run "$TCVERIFY" policy check "$WORK/signers-only.toml" --trust "$STACK_TRUST"
	[ "$status" -eq 0 ]
	[[ $output == *"trusted root $STACK_TRUST: 1 X.509 authority, 1 timestamp authority, transparency logs [$TCDIST_REKOR_ORIGIN]"* ]]
	# Without the trusted root, nothing is trusted: a configuration error, not a verdict.
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --store "$WORK/store" \
		--policy "$WORK/signers-only.toml"
	[ "$status" -eq 2 ]
	[[ $stderr == *"no trusted root is given (--trust / TCVERIFY_TRUST)"* ]]
}

@test "attack: offline, with a trusted root whose log key is another" {
	edit_trusted_root "$WORK/other-log-root.json" '
raw = ed25519.Ed25519PrivateKey.generate().public_key()
log = root["tlogs"][0]
origin = log["baseUrl"].removeprefix("https://")
log["publicKey"]["rawBytes"] = base64.b64encode(raw.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
log["logId"]["keyId"] = log["checkpointKeyId"]["keyId"] = key_id(origin, raw.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
'
	signers_only_policy "$WORK/signers-only-offline.toml"
	TCVERIFY_TRUST=$WORK/other-log-root.json TCVERIFY_POLICY=$WORK/signers-only-offline.toml \
		refused "$TCDIST_REGISTRY/toolchains/tlog-a:v1" tlog-entry-present --offline
}

@test "attack: a trusted root that stopped trusting the CA, or the log's key, before the release was signed" {
	window='{"start": "2000-01-01T00:00:00Z", "end": "2001-01-01T00:00:00Z"}'
	edit_trusted_root "$WORK/expired-ca-root.json" "root['certificateAuthorities'][0]['validFor'] = $window"
	edit_trusted_root "$WORK/expired-log-root.json" "root['tlogs'][0]['publicKey']['validFor'] = $window"
	signers_only_policy "$WORK/signers-only-offline.toml"
	TCVERIFY_TRUST=$WORK/expired-ca-root.json TCVERIFY_POLICY=$WORK/signers-only-offline.toml \
		refused "$TCDIST_REGISTRY/toolchains/tlog-a:v1" svid-chain --offline
	[[ $stderr == *"is trusted at the signing time"* ]]
	TCVERIFY_TRUST=$WORK/expired-log-root.json TCVERIFY_POLICY=$WORK/signers-only-offline.toml \
		refused "$TCDIST_REGISTRY/toolchains/tlog-a:v1" tlog-checkpoint --offline
	[[ $stderr == *"is trusted from 2000-01-01T00:00:00Z until 2001-01-01T00:00:00Z, not at the signing time"* ]]
}

@test "a trusted root whose log ID is not its key's, or that lacks a log the policy requires, is a configuration error" {
	edit_trusted_root "$WORK/bad-id-root.json" '
root["tlogs"][0]["checkpointKeyId"]["keyId"] = base64.b64encode(b"\0" * 32).decode()
'
	signers_only_policy "$WORK/signers-only-offline.toml"
	run --separate-stderr "$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --offline \
		--policy "$WORK/signers-only-offline.toml" --trust "$WORK/bad-id-root.json"
	[ "$status" -eq 2 ]
	[[ $stderr == *"bad-id-root.json: not a usable trusted root: tlogs[0].checkpointKeyId: is not the key ID"* ]]
	edit_trusted_root "$WORK/no-log-root.json" 'root["tlogs"] = []'
	sed 's|^signers = .*|&\ntransparency_logs = ["'"$TCDIST_REKOR_ORIGIN"'"]|' "$WORK/signers-only-offline.toml" >"$WORK/requires-log.toml"
	run --separate-stderr "$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/tlog-a:v1" --offline \
		--policy "$WORK/requires-log.toml" --trust "$WORK/no-log-root.json"
	echo "$stderr"
	[ "$status" -eq 2 ]
	[[ $stderr == *"unknown transparency log \"$TCDIST_REKOR_ORIGIN\" (none is declared)"* ]]
}

@test "sigstore-js verifies a published release's bundle with the exported trusted root, and refuses a tampered one" {
	require_sigstore_js
	digest=$(digest_of toolchains/tlog-a)
	python3 "$FORGE" bundle --repo toolchains/tlog-a --digest "$digest" >"$WORK/a.bundle.json"
	run sigstore_js_verify "$WORK/a.bundle.json" "$WORK/trusted_root.json" "${digest#sha256:}" "$TCDIST_SIGNER_ID"
	echo "$output"
	[ "$status" -eq 0 ]
	python3 - "$WORK/a.bundle.json" >"$WORK/a.tampered.json" <<'PY'
import base64, json, sys
bundle = json.load(open(sys.argv[1]))
envelope = bundle["dsseEnvelope"]
statement = json.loads(base64.b64decode(envelope["payload"]))
statement["predicate"]["tag"] = "tampered"
envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
print(json.dumps(bundle))
PY
	run sigstore_js_verify "$WORK/a.tampered.json" "$WORK/trusted_root.json" "${digest#sha256:}" "$TCDIST_SIGNER_ID"
	echo "$output"
	[ "$status" -eq 1 ]
}

@test "cosign verify accepts a published release with the exported trusted root, and refuses a tampered one" {
	require_cosign
	ref=$TCDIST_REGISTRY/toolchains/tlog-a@$(digest_of toolchains/tlog-a)
	cosign_verify() {
		SSL_CERT_FILE=$TCDIST_REGISTRY_CA "$TCDIST_COSIGN" verify --trusted-root "$WORK/trusted_root.json" \
			--certificate-identity "$TCDIST_SIGNER_ID" --certificate-oidc-issuer-regexp '.*' \
			--insecure-ignore-sct --output text "$1"
	}
	run cosign_verify "$ref"
	echo "$output"
	[ "$status" -eq 0 ]
	copy_unsigned toolchains/tlog-a toolchains/tlog-cosign-tampered
	python3 "$FORGE" copy --from toolchains/tlog-a --to toolchains/tlog-cosign-tampered \
		--digest "$(digest_of toolchains/tlog-a)" --only bundle --tamper payload
	run cosign_verify "$TCDIST_REGISTRY/toolchains/tlog-cosign-tampered@$(digest_of toolchains/tlog-a)"
	echo "$output"
	[ "$status" -ne 0 ]
}
