#!/usr/bin/env bats
# Staged rollouts on the real stack: a promoter starts a plan, each host decides its own arm
# from the plan's salt and its host ID, the judge's identity (the policy's brakes) halts and
# advances only along the plan, and whatever a registry replays or a statement lacks, a host
# falls back to the channel's current release. Each channel is used by one test.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/rollout
	mkdir -p "$WORK"
	export REPO
	REPO=$TCDIST_REGISTRY/toolchains/roll-$(date +%s%N)
	publish_job_releases 4 roll
}

setup() {
	load helpers
	# The stack's own policy: promoters and brakes (the judge) for toolchains/*.
	export TCVERIFY_POLICY=$STACK_POLICY
	STORE=$(mktemp -d "$WORK/store.XXXXXX")
}

# pull_as HOST REF [ARGS…]: a direct-mode pull into this test's store as host HOST.
pull_as() {
	local host=$1
	shift
	"$TCVERIFY" pull "$@" --store "$STORE" --host-id "$host" --json
}

# field JSON PATH: a field of pull --json's output, by a Python subscript path.
field() {
	python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(eval("v"+sys.argv[2]))' "$1" "$2"
}

# as_judge ARGS…: distd signing with the judge's identity (the policy's brakes).
as_judge() {
	"$DISTD" "$@" --promoter-id "$TCDIST_JUDGE_ID"
}

# arms CHANNEL N: "HOST ARM DIGEST" for hosts 0..N-1 of a fresh store each.
arms() {
	local channel=$1 n=$2 i out
	for ((i = 0; i < n; i++)); do
		STORE=$(mktemp -d "$WORK/store.XXXXXX")
		out=$(pull_as "spiffe://tcdist.test/host/h$i" "$REPO:$channel" 2>/dev/null) || return 1
		printf 'h%s %s %s\n' "$i" "$(field "$out" '["rollout"]["arm"]')" \
			"$(field "$out" '["digest"]')"
	done
}

@test "a host in the cohort gets the candidate, the others the current release, each the same on every pull" {
	"$DISTD" promote "$REPO@$D1" --channel c-cohort 2>/dev/null
	run --separate-stderr "$DISTD" rollout start "$REPO@$D2" --channel c-cohort \
		--stages 50%:1h:400:20,75%,100%
	[ "$status" -eq 0 ]
	sequence=${output##*$'\n'}
	arms c-cohort 16 >"$WORK/cohort.1"
	# 16 hosts at 50%: all in one arm has a chance of 2^-15.
	grep -q " candidate $D2\$" "$WORK/cohort.1"
	grep -q " current $D1\$" "$WORK/cohort.1"
	[ "$(grep -cv -e " candidate $D2\$" -e " current $D1\$" "$WORK/cohort.1")" -eq 0 ]
	arms c-cohort 16 >"$WORK/cohort.2"
	diff "$WORK/cohort.1" "$WORK/cohort.2"
	# What a pull reports: the rollout's statement, stage, share, arm and why.
	host=$(awk '$2 == "candidate" { print $1; exit }' "$WORK/cohort.1")
	run --separate-stderr pull_as "spiffe://tcdist.test/host/$host" "$REPO:c-cohort"
	[ "$status" -eq 0 ]
	python3 - "$output" "$sequence" "$D1" "$D2" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
r = out["rollout"]
assert r["sequence"] == int(sys.argv[2]) and r["state"] == "running", r
assert (r["stage"], r["stages"], r["share"], r["arm"]) == (1, 3, "50%", "candidate"), r
assert r["current"] == sys.argv[3] and r["candidate"] == sys.argv[4], r
assert "below 5000 (50%)" in r["reason"], r
assert out["lifecycle"]["channel"]["channel"] == "c-cohort", out
PY
	# Widening keeps every host that was in: a host in at 50% is in at 75%.
	run --separate-stderr "$DISTD" rollout advance "$REPO" --channel c-cohort
	[ "$status" -eq 0 ]
	arms c-cohort 16 >"$WORK/cohort.3"
	while read -r h arm _; do
		if [[ $arm == candidate ]]; then grep -q "^$h candidate " "$WORK/cohort.3"; fi
	done <"$WORK/cohort.1"
	[ "$(grep -c ' candidate ' "$WORK/cohort.3")" -ge "$(grep -c ' candidate ' "$WORK/cohort.1")" ]
	# A host without a host ID is in no candidate arm.
	run --separate-stderr "$TCVERIFY" pull "$REPO:c-cohort" --store "$STORE" --json
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D1" ]
	[[ $(field "$output" '["rollout"]["reason"]') == *"no host ID"* ]]
}

@test "a halt sends every host back; a registry that undoes it is refused where the halt was seen, and a fresh host gets the candidate only until the statement expires" {
	"$DISTD" promote "$REPO@$D1" --channel c-halt 2>/dev/null
	# 99.99%: a host is out with a chance of 1 in 10,000.
	"$DISTD" rollout start "$REPO@$D2" --channel c-halt --stages 99.99%,100% --expires 40s 2>/dev/null
	expires_at=$(($(date +%s) + 40))
	host=h0
	seen=$(mktemp -d "$WORK/store.XXXXXX")
	STORE=$seen run --separate-stderr pull_as "spiffe://tcdist.test/host/$host" "$REPO:c-halt"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D2" ]
	# Every statement of the channel is listed under D1's referrers tag.
	accept='Accept: application/vnd.oci.image.index.v1+json'
	registry_api GET "manifests/sha256-${D1#sha256:}" -H "$accept" >"$WORK/before-halt.json"
	run --separate-stderr as_judge rollout halt "$REPO" --channel c-halt --reason "failures 14% against 5%"
	[ "$status" -eq 0 ]
	STORE=$seen run --separate-stderr pull_as "spiffe://tcdist.test/host/$host" "$REPO:c-halt"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D1" ]
	[ "$(field "$output" '["rollout"]["reason"]')" = "the rollout is halted: failures 14% against 5%" ]
	# The registry puts the referrers back as they were before the halt.
	registry_api PUT "manifests/sha256-${D1#sha256:}" \
		-H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary "@$WORK/before-halt.json"
	before=$(store_snapshot "$seen")
	STORE=$seen run --separate-stderr pull_as "spiffe://tcdist.test/host/$host" "$REPO:c-halt"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[rollout-rollback]"* ]]
	[ "$(store_snapshot "$seen")" = "$before" ]
	# A host that never saw the halt gets the candidate while the replayed statement lasts...
	STORE=$(mktemp -d "$WORK/store.XXXXXX") run --separate-stderr \
		pull_as "spiffe://tcdist.test/host/$host" "$REPO:c-halt"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D2" ]
	# ...and the current release once it expired: nobody re-signs a halted rollout.
	sleep $((expires_at - $(date +%s) + 1))
	STORE=$(mktemp -d "$WORK/store.XXXXXX") run --separate-stderr \
		pull_as "spiffe://tcdist.test/host/$host" "$REPO:c-halt"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D1" ]
	[[ $(field "$output" '["rollout"]["reason"]') == *"expired"* ]]
}

@test "the judge advances along the plan after the stage's soak, and a widening it signs otherwise is refused (rollout-brake-widening)" {
	"$DISTD" promote "$REPO@$D1" --channel c-brake 2>/dev/null
	"$DISTD" rollout start "$REPO@$D2" --channel c-brake --stages 5%:3s,25%:1h,60%:1h,100% 2>/dev/null
	sleep 4
	run --separate-stderr as_judge rollout advance "$REPO" --channel c-brake
	[ "$status" -eq 0 ]
	run --separate-stderr pull_as spiffe://tcdist.test/host/any "$REPO:c-brake"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["rollout"]["share"]')" = "25%" ]
	[ "$(field "$output" '["rollout"]["authority"]')" = "brake" ]
	# Before stage 2's hour has passed, the judge's next advance is refused by every host.
	run --separate-stderr as_judge rollout advance "$REPO" --channel c-brake
	[ "$status" -eq 0 ]
	[[ $stderr == *"verifiers accept this advance from a promoter only"* ]]
	before=$(store_snapshot "$STORE")
	run --separate-stderr pull_as spiffe://tcdist.test/host/any "$REPO:c-brake"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[rollout-brake-widening]"* ]]
	[[ $stderr == *"before its soak time of 1h"* ]]
	[ "$(store_snapshot "$STORE")" = "$before" ]
	# A share beyond the plan is a new plan, which only promoters sign.
	run --separate-stderr as_judge rollout advance "$REPO" --channel c-brake --share 90%
	[ "$status" -eq 0 ]
	run --separate-stderr pull_as spiffe://tcdist.test/host/any "$REPO:c-brake"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[rollout-brake-plan]"* ]]
	# A promoter's halt, newer than both, is accepted.
	"$DISTD" rollout halt "$REPO" --channel c-brake --reason "the judge misbehaved" 2>/dev/null
	run --separate-stderr pull_as spiffe://tcdist.test/host/any "$REPO:c-brake"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D1" ]
}

@test "a registry that rewrites the statements' unsigned hints changes no host's arm" {
	"$DISTD" promote "$REPO@$D1" --channel c-hints 2>/dev/null
	"$DISTD" rollout start "$REPO@$D2" --channel c-hints --stages 50%,100% 2>/dev/null
	arms c-hints 8 >"$WORK/hints.honest"
	grep -q " candidate $D2\$" "$WORK/hints.honest"
	grep -q " current $D1\$" "$WORK/hints.honest"
	# The referrer manifest's annotations repeat the candidate, salt and share, so a pull can
	# start on the candidate early. Rewritten: every host is hinted into the candidate's arm
	# (100%), with another salt, then hinted a release that is no candidate at all.
	accept='Accept: application/vnd.oci.image.index.v1+json'
	registry_api GET "manifests/sha256-${D1#sha256:}" -H "$accept" >"$WORK/hints.json"
	for lie in "10000 $D2" "10000 $D3"; do
		read -r share candidate <<<"$lie"
		python3 - "$WORK/hints.json" "$share" "$candidate" >"$WORK/hints-lie.json" <<'PY'
import json, sys
index = json.load(open(sys.argv[1]))
for m in index["manifests"]:
    a = m.get("annotations") or {}
    if "dev.tcdist.rollout.share" in a:
        a.update({"dev.tcdist.rollout.share": sys.argv[2], "dev.tcdist.rollout.candidate": sys.argv[3],
                  "dev.tcdist.rollout.salt": "ab" * 32})
print(json.dumps(index))
PY
		registry_api PUT "manifests/sha256-${D1#sha256:}" \
			-H 'Content-Type: application/vnd.oci.image.index.v1+json' --data-binary "@$WORK/hints-lie.json"
		arms c-hints 8 >"$WORK/hints.lied"
		diff "$WORK/hints.honest" "$WORK/hints.lied"
	done
}

@test "a rollout signed by an identity that is neither promoter nor brake does not count" {
	"$DISTD" promote "$REPO@$D1" --channel c-signer 2>/dev/null
	run --separate-stderr "$DISTD" rollout start "$REPO@$D2" --channel c-signer --share 99% \
		--promoter-id "$TCDIST_SIGNER_ID"
	[ "$status" -eq 0 ]
	for i in 0 1 2; do
		run --separate-stderr pull_as "spiffe://tcdist.test/host/h$i" "$REPO:c-signer"
		[ "$status" -eq 0 ]
		[ "$(field "$output" '["digest"]')" = "$D1" ]
	done
	[[ $(field "$output" '["lifecycle"]["ignored"]') == *"[rollout-signer-allowed]"* ]]
}

@test "a yanked candidate is never served, and never rolled out" {
	"$DISTD" promote "$REPO@$D1" --channel c-yank 2>/dev/null
	"$DISTD" rollout start "$REPO@$D4" --channel c-yank --stages 99.99%,100% 2>/dev/null
	run --separate-stderr pull_as spiffe://tcdist.test/host/y "$REPO:c-yank"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D4" ]
	"$DISTD" yank "$REPO@$D4" --reason "miscompiles crypto/sha256 on arm64" 2>/dev/null
	run --separate-stderr pull_as spiffe://tcdist.test/host/y "$REPO:c-yank"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D1" ]
	[[ $(field "$output" '["rollout"]["reason"]') == *"miscompiles crypto/sha256"* ]]
	run --separate-stderr "$DISTD" rollout start "$REPO@$D4" --channel c-yank2 --share 5%
	[ "$status" -ne 0 ]
	[[ $stderr == *"is yanked"* ]]
}

@test "a promotion during a rollout ends it; distd refresh keeps it running; finish makes the candidate the head" {
	"$DISTD" promote "$REPO@$D1" --channel c-life 2>/dev/null
	"$DISTD" rollout start "$REPO@$D2" --channel c-life --stages 99.99%,100% 2>/dev/null
	run --separate-stderr pull_as spiffe://tcdist.test/host/l "$REPO:c-life"
	[ "$(field "$output" '["digest"]')" = "$D2" ]
	# A second start while one runs is refused.
	run --separate-stderr "$DISTD" rollout start "$REPO@$D3" --channel c-life --share 5%
	[ "$status" -ne 0 ]
	[[ $stderr == *"already rolling out"* ]]
	# The channel's head and its rollout share one sequence: a newer head ends the rollout.
	"$DISTD" promote "$REPO@$D1" --channel c-life 2>/dev/null
	run --separate-stderr pull_as spiffe://tcdist.test/host/l "$REPO:c-life"
	[ "$status" -eq 0 ]
	[ "$(field "$output" '["digest"]')" = "$D1" ]
	[[ $(field "$output" '["rollout"]["reason"]') == *"older than channel head"* ]]
	# Refresh re-signs the head and, after it, the running rollout.
	"$DISTD" rollout start "$REPO@$D2" --channel c-life --stages 99.99%,100% 2>/dev/null
	run --separate-stderr "$DISTD" refresh "$REPO" --channel c-life --within 30d
	[ "$status" -eq 0 ]
	run --separate-stderr "$DISTD" rollout status "$REPO" --channel c-life --json
	[ "$status" -eq 0 ]
	python3 - "$output" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
assert s["rollout"]["sequence"] == s["head_sequence"] + 1 and s["rollout"]["live"], s
assert s["rollout"]["state"] == "running", s
PY
	run --separate-stderr pull_as spiffe://tcdist.test/host/l "$REPO:c-life"
	[ "$(field "$output" '["digest"]')" = "$D2" ]
	# Finishing signs the rollout's end, then the head naming the candidate, and moves the tag.
	run --separate-stderr "$DISTD" rollout finish "$REPO" --channel c-life
	[ "$status" -eq 0 ]
	for host in l m n; do
		run --separate-stderr pull_as "spiffe://tcdist.test/host/$host" "$REPO:c-life"
		[ "$status" -eq 0 ]
		[ "$(field "$output" '["digest"]')" = "$D2" ]
	done
	run --separate-stderr "$DISTD" rollout status "$REPO" --channel c-life
	[ "$status" -eq 0 ]
	[[ $output == *"serves $D2"* ]]
}

@test "a job cannot choose its arm through the build-host agent" {
	run --separate-stderr job_tcverify "$STACK_AGENT" pull "$REPO:v1" --host-id spiffe://tcdist.test/host/mine
	[ "$status" -eq 2 ]
	[[ $stderr == *"error: --host-id is not honoured through the agent"* ]]
	run --separate-stderr env -i PATH=/usr/bin:/bin TCVERIFY_AGENT="$STACK_AGENT" \
		TCVERIFY_HOST_ID=spiffe://tcdist.test/host/mine "$TCVERIFY" pull "$REPO:v1"
	[ "$status" -eq 2 ]
	[[ $stderr == *"error: TCVERIFY_HOST_ID (--host-id) is not honoured through the agent"* ]]
}
