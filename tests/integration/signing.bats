#!/usr/bin/env bats
# Signatures and identities, against the stack's real SPIRE, timestamp authority and registry:
# publish signs with the SVID from the Workload API, pull accepts only what the stack's policy
# allows, and every tampering in the attack matrix is refused with exit 42, the rule named and
# the store unchanged. Forged certificates and signatures come from tests/lib/forge.py.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/signing
	mkdir -p "$WORK/forged"
	make_small_tree "$WORK/small"
	make_small_tree "$WORK/other"
	printf 'other\n' >"$WORK/other/src/fmt/other.go"
	export TCVERIFY_POLICY=$STACK_POLICY
	export SIGNED=$TCDIST_REGISTRY/toolchains/signed:v1
	# Through files, so a publish that fails fails the setup (a pipeline would hide it).
	"$DISTD" publish "$WORK/small" --ref "$SIGNED" >"$WORK/signed.out"
	"$DISTD" publish "$WORK/other" --ref "$TCDIST_REGISTRY/toolchains/signed-other:v1" >"$WORK/other.out"
	SIGNED_DIGEST=$(tail -n1 "$WORK/signed.out")
	OTHER_DIGEST=$(tail -n1 "$WORK/other.out")
	export SIGNED_DIGEST OTHER_DIGEST
	python3 "$FORGE" ca --out "$WORK/forged" --name rogue-ca --trust-domain tcdist.test
	python3 "$FORGE" ca --out "$WORK/forged" --name evil-ca --trust-domain evil.test
}

setup() {
	load helpers
	export TCVERIFY_POLICY=$STACK_POLICY
	mkdir -p "$WORK/store"
	store_snapshot "$WORK/store" >"$BATS_TEST_TMPDIR/store.before"
}

# A test that changed the SPIRE entries sets RESTORE_ENTRIES; they are put back, pass or fail.
teardown() {
	if [[ -n ${RESTORE_ENTRIES:-} ]]; then
		"$TCDIST_TOP/spire-config/apply-entries" >/dev/null
	fi
	if [[ -f $WORK/rogue-tsa.pid ]]; then
		kill "$(cat "$WORK/rogue-tsa.pid")" 2>/dev/null || true
		rm -f "$WORK/rogue-tsa.pid"
	fi
}

FORGE=$TCDIST_TOP/tests/lib/forge.py

# copy_unsigned NAME: the signed release copied to toolchains/NAME without any signature;
# prints the reference.
copy_unsigned() {
	local ref=$TCDIST_REGISTRY/toolchains/$1:v1
	skopeo copy --quiet --all --preserve-digests \
		--src-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --src-authfile "$REGISTRY_AUTH_FILE" \
		--dest-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --dest-authfile "$REGISTRY_AUTH_FILE" \
		"docker://$SIGNED" "docker://$ref" >&2
	echo "$ref"
}

# refused REF RULE: pull exits 42, names RULE, prints nothing on stdout, installs nothing.
refused() {
	run --separate-stderr "$TCVERIFY" pull "$1" --store "$WORK/store"
	echo "status $status"
	echo "stderr: $stderr"
	[ "$status" -eq 42 ]
	[ -z "$output" ]
	[[ $stderr == *"[$2]"* ]]
	store_snapshot "$WORK/store" | diff "$BATS_TEST_TMPDIR/store.before" -
}

# mint NAME TTL [SPIFFE_ID]: an X.509-SVID issued by the stack's SPIRE server, as files.
mint() {
	local dir=$WORK/minted/$1
	mkdir -p "$dir"
	"$TCDIST_SPIRE_BIN_DIR/spire-server" x509 mint -socketPath "$TCDIST_SPIRE_SERVER_SOCKET" \
		-spiffeID "${3:-$TCDIST_SIGNER_ID}" -ttl "$2" -write "$dir" >/dev/null
	echo "$dir"
}

@test "publish signs with the Workload API SVID; pull verifies; --json and the audit log name signer and time" {
	run --separate-stderr "$TCVERIFY" pull "$SIGNED" --store "$WORK/store" --json --audit-log "$WORK/audit.log"
	[ "$status" -eq 0 ]
	python3 - "$output" "$SIGNED_DIGEST" "$TCDIST_SIGNER_ID" <<'PY'
import json, sys
out, digest, signer = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert out["digest"] == digest, out
assert out["signature"]["signer"] == signer, out
assert out["checks"] == ["digest-binding", "structure", "signature", "transparency-log", "lifecycle"], out
sig = out["signature"]
assert sig["encoding"] == "bundle" and sig["repository"] == "toolchains/signed", sig
assert sig["timestamp_authority"] == "stack", sig
PY
	python3 - "$WORK/audit.log" "$SIGNED_DIGEST" <<'PY'
import json, sys
record = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert record["decision"] == "accept" and record["digest"] == sys.argv[2], record
assert record["signer"].startswith("spiffe://tcdist.test/"), record
PY
}

@test "each encoding verifies on its own: the bundle referrer, and cosign's .sig tag" {
	# Only the bundle carries a transparency-log entry; cosign's tag alone passes only a policy
	# that requires no log.
	python3 - "$STACK_POLICY" >"$WORK/no-log-policy.toml" <<'PY'
import re, sys
print(re.sub(r"\[transparency_logs\.[^]]*\]\n(?:[^[\n][^\n]*\n)*\n?", "", open(sys.argv[1]).read()), end="")
PY
	[ -z "$(grep transparency_logs "$WORK/no-log-policy.toml")" ]
	export TCVERIFY_POLICY=$WORK/no-log-policy.toml
	ref=$(copy_unsigned only-cosign)
	"$DISTD" sign "$ref" >/dev/null
	python3 "$FORGE" detach --repo toolchains/only-cosign --digest "$SIGNED_DIGEST" --encoding bundle
	run --separate-stderr "$TCVERIFY" verify "$ref" --json
	[ "$status" -eq 0 ]
	[[ $output == *'"encoding":"cosign-tag"'* ]]
	ref=$(copy_unsigned only-bundle)
	"$DISTD" sign "$ref" >/dev/null
	python3 "$FORGE" detach --repo toolchains/only-bundle --digest "$SIGNED_DIGEST" --encoding cosign
	run --separate-stderr "$TCVERIFY" verify "$ref" --json
	[ "$status" -eq 0 ]
	[[ $output == *'"encoding":"bundle"'* ]]
	# With both detached, nothing verifies.
	python3 "$FORGE" detach --repo toolchains/only-bundle --digest "$SIGNED_DIGEST" --encoding bundle
	refused "$ref" signature-format
}

@test "a refused pull writes a reject record naming the rule" {
	ref=$(copy_unsigned audit-unsigned)
	run "$TCVERIFY" verify "$ref" --audit-log "$WORK/audit-reject.log"
	[ "$status" -eq 42 ]
	python3 - "$WORK/audit-reject.log" <<'PY'
import json, sys
record = json.loads(open(sys.argv[1]).read())
assert record["decision"] == "reject" and record["rule"] == "signature-present", record
assert record["digest"].startswith("sha256:"), record
PY
}

@test "the audit log is hash-chained: audit verify finds an edited, inserted or removed record, and a cut end against an earlier head" {
	log=$BATS_TEST_TMPDIR/audit.log
	unsigned=$(copy_unsigned "audit-chain-$(date +%s%N)")
	"$TCVERIFY" verify "$SIGNED" --audit-log "$log" >/dev/null
	run "$TCVERIFY" verify "$unsigned" --audit-log "$log"
	[ "$status" -eq 42 ]
	"$TCVERIFY" pull "$SIGNED" --store "$WORK/store" --audit-log "$log" >/dev/null
	run --separate-stderr "$TCVERIFY" audit verify "$log"
	[ "$status" -eq 0 ]
	[[ $output =~ ^$log:\ 3\ records,\ chain\ intact,\ head\ (sha256:[0-9a-f]{64})$ ]]
	head=${BASH_REMATCH[1]}
	[ "$head" = "sha256:$(tail -n1 "$log" | tr -d '\n' | sha256sum | cut -d' ' -f1)" ]
	# breaks LOG LINE TEXT: audit verify of LOG exits 42 naming LINE and TEXT.
	breaks() {
		run --separate-stderr "$TCVERIFY" audit verify "$1" --head "$head"
		echo "$stderr"
		[ "$status" -eq 42 ]
		[[ $stderr == *"audit log $1, line $2: "*"$3"* ]]
	}
	# The reject turned into an accept.
	sed '2s/"decision":"reject"/"decision":"accept"/' "$log" >"$BATS_TEST_TMPDIR/edited.log"
	breaks "$BATS_TEST_TMPDIR/edited.log" 3 "the record before it was edited"
	# The reject removed.
	sed 2d "$log" >"$BATS_TEST_TMPDIR/removed.log"
	breaks "$BATS_TEST_TMPDIR/removed.log" 2 "seq is 3, expected 2"
	# An accept inserted (a copy of the first record).
	sed 1p "$log" >"$BATS_TEST_TMPDIR/inserted.log"
	breaks "$BATS_TEST_TMPDIR/inserted.log" 2 "seq is 1, expected 2"
	# The newest record cut off: still a whole chain, but the earlier head is gone.
	head -n 2 "$log" >"$BATS_TEST_TMPDIR/cut.log"
	run "$TCVERIFY" audit verify "$BATS_TEST_TMPDIR/cut.log"
	[ "$status" -eq 0 ]
	breaks "$BATS_TEST_TMPDIR/cut.log" 3 "the head $head seen earlier is not in the log"
	# The log goes on from its head, and the old head stays in it.
	"$TCVERIFY" verify "$SIGNED" --audit-log "$log" >/dev/null
	run "$TCVERIFY" audit verify "$log" --head "$head"
	[ "$status" -eq 0 ]
	[[ $output == *": 4 records, chain intact"* ]]
}

@test "attack: signatures removed (release copied without them)" {
	refused "$(copy_unsigned stripped)" signature-present
}

@test "attack: the tag moved to an unsigned index" {
	ref=$TCDIST_REGISTRY/toolchains/swapped:v1
	"$DISTD" publish "$WORK/small" --ref "$ref" >/dev/null
	"$TCVERIFY" verify "$ref" >/dev/null
	skopeo copy --quiet --all --preserve-digests \
		--src-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --src-authfile "$REGISTRY_AUTH_FILE" \
		--dest-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --dest-authfile "$REGISTRY_AUTH_FILE" \
		"docker://$TCDIST_REGISTRY/toolchains/signed-other:v1" "docker://$ref" >&2
	refused "$ref" signature-present
}

@test "attack: signatures copied from another repository (the payload names the repository)" {
	ref=$(copy_unsigned foreign-repository)
	python3 "$FORGE" copy --from toolchains/signed --to toolchains/foreign-repository --digest "$SIGNED_DIGEST"
	refused "$ref" payload-subject
}

@test "attack: another release's signatures attached to this one (signature over another digest)" {
	ref=$TCDIST_REGISTRY/toolchains/replayed:v1
	skopeo copy --quiet --all --preserve-digests \
		--src-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --src-authfile "$REGISTRY_AUTH_FILE" \
		--dest-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --dest-authfile "$REGISTRY_AUTH_FILE" \
		"docker://$TCDIST_REGISTRY/toolchains/signed-other:v1" "docker://$ref" >&2
	python3 "$FORGE" copy --from toolchains/signed --to toolchains/replayed --digest "$SIGNED_DIGEST" --onto "$OTHER_DIGEST"
	refused "$ref" payload-subject
}

@test "attack: bundle payload tampered" {
	ref=$(copy_unsigned tampered-bundle)
	python3 "$FORGE" copy --from toolchains/signed --to toolchains/tampered-bundle --digest "$SIGNED_DIGEST" --only bundle --tamper payload
	refused "$ref" signature-valid
}

@test "attack: cosign .sig payload tampered" {
	ref=$(copy_unsigned tampered-cosign)
	python3 "$FORGE" copy --from toolchains/signed --to toolchains/tampered-cosign --digest "$SIGNED_DIGEST" --only cosign --tamper payload
	refused "$ref" signature-valid
}

@test "attack: signature bytes flipped in both encodings" {
	ref=$(copy_unsigned flipped-signatures)
	python3 "$FORGE" copy --from toolchains/signed --to toolchains/flipped-signatures --digest "$SIGNED_DIGEST" --tamper signature
	run --separate-stderr "$TCVERIFY" pull "$ref" --store "$WORK/store"
	[ "$status" -eq 42 ]
	# Both signatures were examined and both failures are reported.
	[[ $stderr == *"no signature is acceptable"* ]]
	[[ $stderr == *"bundle referrer"*"cosign signature"* ]]
}

@test "attack: timestamp removed (no proven signing time)" {
	ref=$(copy_unsigned no-timestamp)
	python3 "$FORGE" copy --from toolchains/signed --to toolchains/no-timestamp --digest "$SIGNED_DIGEST" --only bundle --tamper drop-timestamp
	refused "$ref" signing-time
}

@test "attack: signer ID not allowed by the policy (a real SVID of the trust domain)" {
	ref=$(copy_unsigned wrong-id)
	dir=$(mint wrong-id 10m spiffe://tcdist.test/ci/job)
	"$DISTD" sign "$ref" --signer-id spiffe://tcdist.test/ci/job --svid-cert "$dir/svid.pem" \
		--svid-key "$dir/key.pem" --svid-bundle "$dir/bundle.pem" --ledger "$WORK/offline-ledger.jsonl" >/dev/null
	refused "$ref" signer-allowed
}

@test "attack: the signer's path in another trust domain" {
	ref=$(copy_unsigned other-domain)
	python3 "$FORGE" cert --out "$WORK/forged" --name other-domain --issuer "$WORK/forged/evil-ca" \
		--uri spiffe://evil.test/distd/signer
	"$DISTD" sign "$ref" --signer-id spiffe://evil.test/distd/signer --svid-cert "$WORK/forged/other-domain.pem" \
		--svid-key "$WORK/forged/other-domain.key" --svid-bundle "$WORK/forged/evil-ca.pem" --ledger "$WORK/offline-ledger.jsonl" >/dev/null
	refused "$ref" trust-domain-known
}

@test "attack: the signer's ID on a leaf from a CA that is not the trust domain's" {
	ref=$(copy_unsigned rogue-ca)
	python3 "$FORGE" cert --out "$WORK/forged" --name rogue-leaf --issuer "$WORK/forged/rogue-ca" \
		--uri "$TCDIST_SIGNER_ID"
	"$DISTD" sign "$ref" --svid-cert "$WORK/forged/rogue-leaf.pem" --svid-key "$WORK/forged/rogue-leaf.key" \
		--svid-bundle "$WORK/forged/rogue-ca.pem" --ledger "$WORK/offline-ledger.jsonl" >/dev/null
	refused "$ref" svid-chain
}

@test "attack: a CA-flagged leaf" {
	ref=$(copy_unsigned ca-leaf)
	python3 "$FORGE" cert --out "$WORK/forged" --name ca-leaf --issuer "$WORK/forged/rogue-ca" \
		--uri "$TCDIST_SIGNER_ID" --ca
	python3 "$FORGE" sign --repo toolchains/ca-leaf --digest "$SIGNED_DIGEST" \
		--cert "$WORK/forged/ca-leaf.pem" --key "$WORK/forged/ca-leaf.key" --tsa "$TCDIST_TSA_URL"
	refused "$ref" svid-format
}

@test "attack: a leaf with two URI SANs" {
	ref=$(copy_unsigned two-sans)
	python3 "$FORGE" cert --out "$WORK/forged" --name two-sans --issuer "$WORK/forged/rogue-ca" \
		--uri "$TCDIST_SIGNER_ID" --uri spiffe://tcdist.test/other
	python3 "$FORGE" sign --repo toolchains/two-sans --digest "$SIGNED_DIGEST" \
		--cert "$WORK/forged/two-sans.pem" --key "$WORK/forged/two-sans.key" --tsa "$TCDIST_TSA_URL"
	refused "$ref" svid-format
}

@test "attack: an expired leaf and no timestamp" {
	ref=$(copy_unsigned expired-no-timestamp)
	python3 "$FORGE" cert --out "$WORK/forged" --name expired --issuer "$WORK/forged/rogue-ca" \
		--uri "$TCDIST_SIGNER_ID" --not-before -7200 --not-after -3600
	python3 "$FORGE" sign --repo toolchains/expired-no-timestamp --digest "$SIGNED_DIGEST" \
		--cert "$WORK/forged/expired.pem" --key "$WORK/forged/expired.key"
	refused "$ref" signing-time
}

@test "attack: a timestamp from a TSA the policy does not trust" {
	ref=$(copy_unsigned rogue-tsa)
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	# Stopped by teardown, pass or fail; fd 3 closed, so it never holds bats' output open.
	"$TCDIST_TSA_BIN" --host 127.0.0.1 --port "$port" --timestamp-signer memory >"$WORK/rogue-tsa.log" 2>&1 3>&- &
	echo $! >"$WORK/rogue-tsa.pid"
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "http://127.0.0.1:$port/api/v1/timestamp/certchain" && break
		sleep 0.1
	done
	curl -fsS "http://127.0.0.1:$port/api/v1/timestamp/certchain" >"$WORK/rogue-tsa-chain.pem"
	"$DISTD" sign "$ref" --tsa-url "http://127.0.0.1:$port" --tsa-chain "$WORK/rogue-tsa-chain.pem" >/dev/null
	refused "$ref" signing-time
}

@test "attack: the repository is not covered by the policy" {
	ref=$TCDIST_REGISTRY/elsewhere/go:v1
	"$DISTD" publish "$WORK/small" --ref "$ref" >/dev/null
	refused "$ref" repository-covered
}

@test "max_svid_lifetime: a signer SVID that lives longer than the policy allows is refused; the default accepts it" {
	# The stack signs with 15-minute SVIDs; a policy that allows at most 5 minutes refuses them.
	sed 's|^version = 1$|&\nmax_svid_lifetime = "5m"|' "$STACK_POLICY" >"$WORK/short-lived.toml"
	TCVERIFY_POLICY=$WORK/short-lived.toml refused "$SIGNED" svid-lifetime
	[[ $stderr == *"longer than the policy's max_svid_lifetime of 5m"* ]]
	run --separate-stderr "$TCVERIFY" verify "$SIGNED" --store "$WORK/store"
	echo "$stderr"
	[ "$status" -eq 0 ]
}

@test "an SVID that has since expired still verifies: the timestamp proves it signed in time" {
	ref=$(copy_unsigned signed-then-expired)
	dir=$(mint short-lived 20s)
	"$DISTD" sign "$ref" --svid-cert "$dir/svid.pem" --svid-key "$dir/key.pem" \
		--svid-bundle "$dir/bundle.pem" --min-svid-lifetime 5 --ledger "$WORK/offline-ledger.jsonl" >/dev/null
	not_after=$(openssl x509 -in "$dir/svid.pem" -noout -enddate | cut -d= -f2)
	while [ "$(date +%s)" -le "$(date -d "$not_after" +%s)" ]; do sleep 1; done
	run --separate-stderr "$TCVERIFY" pull "$ref" --store "$WORK/store" --json
	echo "$stderr"
	[ "$status" -eq 0 ]
	store_snapshot "$WORK/store" >"$BATS_TEST_TMPDIR/store.before"

	# Signed after the leaf expired: the timestamp lies outside its validity.
	ref=$(copy_unsigned signed-after-expiry)
	python3 "$FORGE" sign --repo toolchains/signed-after-expiry --digest "$SIGNED_DIGEST" \
		--cert "$dir/svid.pem" --key "$dir/key.pem" --tsa "$TCDIST_TSA_URL"
	refused "$ref" signing-time-in-validity
}

@test "distd refuses an SVID that expires too soon, or is not its configured signer" {
	dir=$(mint too-short 30s)
	ref=$(copy_unsigned refused-by-distd)
	run "$DISTD" sign "$ref" --svid-cert "$dir/svid.pem" --svid-key "$dir/key.pem" --svid-bundle "$dir/bundle.pem" \
		--ledger "$WORK/offline-ledger.jsonl"
	[ "$status" -ne 0 ]
	[[ $output == *"at least 60s are required"* ]]
	run "$DISTD" sign "$ref" --signer-id spiffe://tcdist.test/someone-else
	[ "$status" -ne 0 ]
	[[ $output == *"did not issue spiffe://tcdist.test/someone-else"* ]]
}

@test "the signer keeps signing across an SVID rotation and waits for one when its SVID expires too soon" {
	RESTORE_ENTRIES=1
	TCDIST_SIGNER_SVID_TTL=60 "$TCDIST_TOP/spire-config/apply-entries" >/dev/null
	# Fresh repositories: the registry keeps the referrers of earlier runs.
	id=$(date +%s%N)
	# Wait until the agent hands out an SVID with the short TTL.
	serial_of() { grep -oE 'SVID serial [0-9a-f:]+' <<<"$1" | cut -d' ' -f3; }
	for i in $(seq 60); do
		out=$("$DISTD" sign "$(copy_unsigned "rotation-a-$id-$i")" --min-svid-lifetime 5 2>&1 >/dev/null)
		until=$(grep -oE 'valid until [^)]+' <<<"$out" | cut -d' ' -f3)
		[ $(($(date -d "$until" +%s) - $(date +%s))) -le 60 ] && break
		sleep 2
	done
	first=$(serial_of "$out")
	# Once that SVID has under 45 s left (the agent rotates it at 30 s), a signing that needs
	# 45 s waits for the agent's next SVID and signs with it.
	pause=$(($(date -d "$until" +%s) - $(date +%s) - 44))
	[ "$pause" -le 0 ] || sleep "$pause"
	out=$("$DISTD" sign "$(copy_unsigned rotation-b-$id)" --min-svid-lifetime 45 2>&1 >/dev/null)
	second=$(serial_of "$out")
	echo "serials: $first $second"
	echo "$out"
	[[ $out == *"under the 45s needed to sign; waiting for the agent to rotate it"* ]]
	[ -n "$first" ] && [ -n "$second" ] && [ "$first" != "$second" ]
	"$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/rotation-a-$id-$i:v1" >/dev/null
	"$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/rotation-b-$id:v1" >/dev/null
	# A lifetime longer than the entry's TTL is refused at once: no rotation would give it.
	run "$DISTD" sign "$(copy_unsigned rotation-c-$id)" --min-svid-lifetime 61
	[ "$status" -ne 0 ]
	[[ $output == *"at least 61s are required to sign"* ]]
}

@test "configuration errors exit 2 and say what to fix" {
	printf 'version = 1\n[[repository]]\nname = "toolchains/*"\nsigners = { any_of = [] }\n' >"$WORK/bad.toml"
	run --separate-stderr "$TCVERIFY" policy check "$WORK/bad.toml"
	[ "$status" -eq 2 ]
	[[ $stderr == *"bad.toml:4:"* ]]
	run --separate-stderr "$TCVERIFY" verify "$SIGNED" --policy "$WORK/bad.toml"
	[ "$status" -eq 2 ]
	run --separate-stderr env -u TCVERIFY_POLICY "$TCVERIFY" verify "$SIGNED"
	[ "$status" -eq 2 ]
	[[ $stderr == *"TCVERIFY_POLICY"* ]]
	sed "s|bundle = .*|bundle = \"$WORK/missing.pem\"|" "$STACK_POLICY" >"$WORK/missing-trust.toml"
	run --separate-stderr "$TCVERIFY" verify "$SIGNED" --policy "$WORK/missing-trust.toml"
	[ "$status" -eq 2 ]
	[[ $stderr == *"missing.pem"* ]]
	sed 's|^bundle = .*|workload_api = true|' "$STACK_POLICY" >"$WORK/agent-trust.toml"
	run --separate-stderr "$TCVERIFY" verify "$SIGNED" --policy "$WORK/agent-trust.toml"
	[ "$status" -eq 0 ]
	run --separate-stderr env SPIFFE_ENDPOINT_SOCKET="unix://$WORK/no-agent.sock" \
		"$TCVERIFY" verify "$SIGNED" --policy "$WORK/agent-trust.toml"
	[ "$status" -eq 2 ]
	[[ $stderr == *"no-agent.sock"* ]]
}
