#!/usr/bin/env bats
# Release lifecycle on the real stack: tags bound to what their signatures name, channels
# (promote, rollback, expiry, refresh), yanks that survive their deletion from the registry,
# and who may promote. Each attack is what someone with push rights to the registry (or a
# hostile mirror) can do: move a tag, replay an older statement, delete one. Every refusal
# exits 42 and leaves the store's entries as they were.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/lifecycle
	mkdir -p "$WORK"
	# A repository of its own on every run: the stack's registry keeps earlier runs' state.
	export REPO
	REPO=$TCDIST_REGISTRY/toolchains/life-$(date +%s%N)
	publish_job_releases 3 life
}

setup() {
	load helpers
	# The stack's own policy: it names the stack's promoter for toolchains/*.
	export TCVERIFY_POLICY=$STACK_POLICY
	STORE=$(mktemp -d "$WORK/store.XXXXXX")
	# Made now, so that a snapshot before the first refusal already holds its bookkeeping.
	"$TCVERIFY" ls --store "$STORE" >/dev/null
}

# pull REF [ARGS…]: a direct-mode pull into this test's store.
pull() {
	"$TCVERIFY" pull "$@" --store "$STORE"
}

# move_tag TAG DIGEST: points TAG at the release DIGEST, as anyone with push rights can.
move_tag() {
	copy_image "$REPO@$2" "$REPO:$1"
}

@test "a release moved to another tag is refused (tag-binding); by digest it verifies" {
	move_tag v9 "$D1"
	before=$(store_snapshot "$STORE")
	run --separate-stderr pull "$REPO:v9"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[tag-binding]"* ]]
	[[ $stderr == *'names tag "v1", not the tag "v9"'* ]]
	[ "$(store_snapshot "$STORE")" = "$before" ]
	run --separate-stderr pull "$REPO@$D1"
	[ "$status" -eq 0 ]
	run --separate-stderr pull "$REPO:v1"
	[ "$status" -eq 0 ]
	# A reference with tag and digest binds both.
	run --separate-stderr pull "$REPO:v9@$D1"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[tag-binding]"* ]]
	# Publishing the same tree under a second tag signs it for that tag too.
	run --separate-stderr "$DISTD" publish "$WORK/tree1" --ref "$REPO:v1-again"
	[ "$status" -eq 0 ]
	[ "${lines[-1]}" = "$D1" ]
	[[ $stderr == *"attached signatures"* ]]
	run --separate-stderr pull "$REPO:v1-again"
	[ "$status" -eq 0 ]
}

@test "promote: the channel tag serves the release, signed by the promoter" {
	run --separate-stderr "$DISTD" promote "$REPO@$D1" --channel stable
	[ "$status" -eq 0 ]
	first=${output##*$'\n'}
	run --separate-stderr pull "$REPO:stable" --json
	[ "$status" -eq 0 ]
	python3 - "$output" "$D1" "$first" "$TCDIST_PROMOTER_ID" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
assert out["digest"] == sys.argv[2], out
head = out["lifecycle"]["channel"]
assert head["channel"] == "stable" and head["sequence"] == int(sys.argv[3]), head
assert head["promoter"] == sys.argv[4], head
PY
	# A promotion by digest only: a tag could move while it is signed.
	run --separate-stderr "$DISTD" promote "$REPO:v1" --channel stable
	[ "$status" -ne 0 ]
	[[ $stderr == *"name the release by digest"* ]]
}

@test "an older channel head replayed after a newer one was seen is refused (channel-rollback)" {
	"$DISTD" promote "$REPO@$D1" --channel replay 2>/dev/null
	"$DISTD" promote "$REPO@$D2" --channel replay 2>/dev/null
	run --separate-stderr pull "$REPO:replay" --json
	[ "$status" -eq 0 ]
	newest=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["lifecycle"]["channel"]["sequence"])' "$output")
	# The tag moved back to the old release, whose old head is still attached to it.
	move_tag replay "$D1"
	before=$(store_snapshot "$STORE")
	run --separate-stderr pull "$REPO:replay"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[channel-rollback]"* ]]
	[[ $stderr == *"this store has seen head $newest"* ]]
	[ "$(store_snapshot "$STORE")" = "$before" ]
}

@test "a channel statement for another release than the tag serves is refused (channel-binding)" {
	"$DISTD" promote "$REPO@$D3" --channel beta 2>/dev/null
	# D3's channel statement listed among D2's referrers, and the channel tag moved to D2.
	accept='Accept: application/vnd.oci.image.index.v1+json'
	registry_api GET "manifests/sha256-${D2#sha256:}" -H "$accept" >"$WORK/d2.json"
	registry_api GET "manifests/sha256-${D3#sha256:}" -H "$accept" >"$WORK/d3.json"
	python3 - "$WORK/d2.json" "$WORK/d3.json" >"$WORK/merged.json" <<'PY'
import json, sys
d2, d3 = (json.load(open(p)) for p in sys.argv[1:])
channel = [m for m in d3["manifests"] if m.get("annotations", {}).get("dev.tcdist.channel") == "beta"]
assert channel, d3
d2["manifests"] += channel
json.dump(d2, sys.stdout)
PY
	registry_api PUT "manifests/sha256-${D2#sha256:}" \
		-H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary "@$WORK/merged.json"
	move_tag beta "$D2"
	before=$(store_snapshot "$STORE")
	run --separate-stderr pull "$REPO:beta"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[channel-binding]"* ]]
	[ "$(store_snapshot "$STORE")" = "$before" ]
}

@test "an expired channel head is refused (channel-expired) until distd refresh re-signs it" {
	"$DISTD" promote "$REPO@$D1" --channel edge --expires 1s 2>/dev/null
	sleep 2
	before=$(store_snapshot "$STORE")
	run --separate-stderr pull "$REPO:edge"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[channel-expired]"* ]]
	[ "$(store_snapshot "$STORE")" = "$before" ]
	# An operator may take it anyway, on the record.
	run --separate-stderr "$TCVERIFY" verify "$REPO:edge" --store "$STORE" --allow-expired \
		--audit-log "$WORK/audit.jsonl"
	[ "$status" -eq 0 ]
	[[ $stderr == *"waived by the caller: allow-expired: channel \"edge\""* ]]
	grep -q '"waived":\["allow-expired: ' "$WORK/audit.jsonl"
	# Not through the agent: it takes no waivers from jobs.
	run --separate-stderr job_tcverify "$STACK_AGENT" verify "$REPO:edge" --allow-expired
	[ "$status" -eq 2 ]
	[[ $stderr == *"error: --allow-expired is not honoured through the agent"* ]]
	run --separate-stderr "$DISTD" refresh "$REPO" --channel edge --within 1h
	[ "$status" -eq 0 ]
	run --separate-stderr pull "$REPO:edge"
	[ "$status" -eq 0 ]
	# A head far from expiry is kept as it is.
	run --separate-stderr "$DISTD" refresh "$REPO" --channel edge --within 1h
	[ "$status" -eq 0 ]
	[[ $stderr == *"kept"* ]]
}

@test "a yanked release is refused by tag, channel and digest, and stays refused after the yank is deleted" {
	"$DISTD" promote "$REPO@$D3" --channel rc 2>/dev/null
	run --separate-stderr pull "$REPO:rc"
	[ "$status" -eq 0 ]
	run --separate-stderr "$DISTD" yank "$REPO@$D3" --reason "CVE-2026-0001 in the patched net/http"
	[ "$status" -eq 0 ]
	before=$(store_snapshot "$STORE")
	for ref in "$REPO:v3" "$REPO:rc" "$REPO@$D3"; do
		run --separate-stderr pull "$ref"
		[ "$status" -eq 42 ]
		[[ $stderr == *"[yanked]"* ]]
		[[ $stderr == *"CVE-2026-0001 in the patched net/http"* ]]
	done
	[ "$(store_snapshot "$STORE")" = "$before" ]
	# A yanked release is never promoted.
	run --separate-stderr "$DISTD" promote "$REPO@$D3" --channel other
	[ "$status" -ne 0 ]
	[[ $stderr == *"is yanked"* ]]
	# By digest, an operator may take it anyway, on the record; never by tag.
	run --separate-stderr pull "$REPO@$D3" --allow-yanked
	[ "$status" -eq 0 ]
	run --separate-stderr pull "$REPO:v3" --allow-yanked
	[ "$status" -eq 42 ]
	# The channel's next head names the yank list, for verifiers that never saw it.
	"$DISTD" refresh "$REPO" --channel rc --within 30d 2>/dev/null
	# Deleting the yank list from the registry does not bring the release back.
	registry_api GET manifests/tcdist-yanks -o /dev/null -D "$WORK/yanks.headers" \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json'
	yanks=$(awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' "$WORK/yanks.headers" | tr -d '\r')
	[ -n "$yanks" ]
	registry_api DELETE "manifests/$yanks"
	run --separate-stderr pull "$REPO:v3"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[yanked]"* ]]
	# A store that never saw the yank learns of it from the channel's head, and refuses.
	fresh=$(mktemp -d "$WORK/store.XXXXXX")
	run --separate-stderr "$TCVERIFY" pull "$REPO:rc" --store "$fresh"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[yanked]"* ]]
	[[ $stderr == *"the channel head names it"* ]]
	# The promoters put the yank back; the release's referrers still list the deleted list,
	# which does not stop a new one from being attached.
	run --separate-stderr "$DISTD" yank "$REPO@$D3" --reason "CVE-2026-0001, yanked again"
	[ "$status" -eq 0 ]
	fresh=$(mktemp -d "$WORK/store.XXXXXX")
	run --separate-stderr "$TCVERIFY" pull "$REPO:v3" --store "$fresh"
	[ "$status" -eq 42 ]
	[[ $stderr == *"yanked again"* ]]
}

@test "a channel head signed by an identity the policy does not name as promoter is refused" {
	"$DISTD" promote "$REPO@$D2" --channel lts 2>/dev/null
	sed 's|^promoters = .*|promoters = { spiffe_id = "spiffe://tcdist.test/release/manager" }|' \
		"$STACK_POLICY" >"$WORK/other-promoter.toml"
	run --separate-stderr pull "$REPO:lts" --policy "$WORK/other-promoter.toml"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[promoter-allowed]"* ]]
	[[ $stderr == *"promoter $TCDIST_PROMOTER_ID is not allowed"* ]]
	# The release signer is no promoter either: promotions are a separate rule.
	run --separate-stderr "$DISTD" promote "$REPO@$D2" --channel lts2 --promoter-id "$TCDIST_SIGNER_ID"
	[ "$status" -eq 0 ]
	run --separate-stderr pull "$REPO:lts2"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[promoter-allowed]"* ]]
}

@test "sigstore-js verifies a channel head and a yank list as bundles signed by the promoter" {
	load "$TCDIST_TOP/tests/lib/sigstore_clients.bash"
	require_sigstore_js
	"$DISTD" promote "$REPO@$D2" --channel js 2>/dev/null
	forge=$TCDIST_TOP/tests/lib/forge.py
	python3 "$forge" bundle --repo "${REPO#*/}" --digest "$D2" \
		--predicate https://tcdist.dev/attestation/channel/v1 >"$WORK/channel.bundle.json"
	run sigstore_js_verify "$WORK/channel.bundle.json" "$STACK_TRUST" "${D2#sha256:}" "$TCDIST_PROMOTER_ID"
	echo "$output"
	[ "$status" -eq 0 ]
	run sigstore_js_verify "$WORK/channel.bundle.json" "$STACK_TRUST" "${D2#sha256:}" "$TCDIST_SIGNER_ID"
	[ "$status" -eq 1 ]
	# A yank list is attached to the release it withdrew.
	"$DISTD" yank "$REPO@$D1" --reason "superseded" 2>/dev/null
	python3 "$forge" bundle --repo "${REPO#*/}" --digest "$D1" \
		--predicate https://tcdist.dev/attestation/yanks/v1 >"$WORK/yanks.bundle.json"
	run sigstore_js_verify "$WORK/yanks.bundle.json" "$STACK_TRUST" "${D1#sha256:}" "$TCDIST_PROMOTER_ID"
	echo "$output"
	[ "$status" -eq 0 ]
}
