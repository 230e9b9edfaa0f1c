#!/usr/bin/env bats
# The rollout judge in the publisher daemon, on the real stack. Eight build hosts — each a
# `tcverify agent` with an SVID of its own (spiffe://tcdist.test/fleet/host-N) — pull a channel
# during a rollout; their jobs report how they ended; each agent sends its outcomes to this
# suite's daemon, which counts each only for the sending host's own arm and stage, judges the
# stage every second, and halts a candidate that fails more often with its brake identity, after
# which every host gets the current release again. Dry runs, the daemon killed mid-stage, and
# outcomes the daemon must drop are tested too. Each channel is used by one test.

# shellcheck disable=SC2154 # run --separate-stderr sets $stderr
bats_require_minimum_version 1.5.0

HOSTS=8

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/rollout_judge
	rm -rf "$WORK"
	mkdir -p "$WORK"
	export REPO
	REPO=$TCDIST_REGISTRY/toolchains/judge-$(date +%s%N)
	local n digest
	for n in 1 2; do
		make_job_tree "$WORK/tree$n" "go1.26.8-judge$n"
		digest=$("$DISTD" publish "$WORK/tree$n" --ref "$REPO:v$n" 2>/dev/null)
		export "D$n=${digest##*$'\n'}"
	done
	for channel in c-halt c-drop c-dry c-resume c-ctl; do
		"$DISTD" promote "$REPO@$D1" --channel "$channel" 2>/dev/null
	done
	export PORT OPS_PORT
	read -r PORT OPS_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
	cat >"$WORK/lines.toml" <<EOF
[[line]]
name = "judged"
repository = "$REPO"
go_source = "$WORK/no-source"
go_source_digest = "sha256:$(printf '0%.0s' {1..64})"
patches = "$WORK/no-patches"
platforms = ["linux/amd64"]
channels = ["c-halt", "c-drop", "c-dry", "c-resume", "c-ctl"]
EOF
	write_config judging false
	write_config dry true
	local i
	for ((i = 1; i <= HOSTS; i++)); do
		start_host "$i"
	done
	start_daemon judging
}

teardown_file() {
	stop_daemon
	local pid_file
	for pid_file in "$WORK"/h*/pid; do
		if [ -f "$pid_file" ]; then
			kill "$(cat "$pid_file")" 2>/dev/null || true
		fi
	done
}

setup() {
	load helpers
	export TCVERIFY_POLICY=$STACK_POLICY
}

teardown() {
	# A test that swapped in another daemon (the dry run) gives the judging one back, also when
	# it failed: the next tests need it.
	if [ "$(cat "$WORK/daemon.name" 2>/dev/null)" != judging ]; then
		stop_daemon
		start_daemon judging
	fi
}

# write_config NAME DRY_RUN: serve-NAME.toml, a daemon for the line "judged" that judges every
# second; the fleet's hosts and the stack user's job identity may report.
write_config() {
	cat >"$WORK/serve-$1.toml" <<EOF
listen = "127.0.0.1:$PORT"
ops_listen = "127.0.0.1:$OPS_PORT"
identity = "spiffe://tcdist.test/distd/server"
lines = "lines.toml"
state_dir = "state-$1"

[judge]
interval = "1s"
dry_run = $2

[[grant]]
spiffe_id = "spiffe://tcdist.test/release/manager"
lines = ["*"]
actions = ["read", "promote"]

[[grant]]
path_prefix = "spiffe://tcdist.test/fleet"
lines = ["judged"]
actions = ["report"]

[[grant]]
spiffe_id = "spiffe://tcdist.test/ci/job"
lines = ["judged"]
actions = ["report"]
EOF
}

# start_daemon NAME: distd serve with serve-NAME.toml, ready.
start_daemon() {
	echo "$1" >"$WORK/daemon.name"
	("$DISTD" serve --config "$WORK/serve-$1.toml" >>"$WORK/daemon.log" 2>&1 &
		echo $! >"$WORK/daemon.pid") 3>&-
	for _ in $(seq 150); do
		curl -sf "http://127.0.0.1:$OPS_PORT/readyz" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	tail -n 20 "$WORK/daemon.log" >&3
	return 1
}

# stop_daemon [SIGNAL]: stops it (SIGTERM unless given) and waits until it is gone.
stop_daemon() {
	local pid
	pid=$(cat "$WORK/daemon.pid" 2>/dev/null) || return 0
	kill "-${1:-TERM}" "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# start_host N: host N's agent, as spiffe://tcdist.test/fleet/host-N, reporting every second.
start_host() {
	local dir=$WORK/h$1
	mkdir -p "$dir/store"
	cat >"$dir/agent.toml" <<EOF
socket = "$dir/agent.sock"
store = "$dir/store"
policy = "$STACK_POLICY"
trust = "$STACK_TRUST"
spiffe_endpoint_socket = "$SPIFFE_ENDPOINT_SOCKET"
spiffe_id = "spiffe://tcdist.test/fleet/host-$1"
report_to = "https://127.0.0.1:$PORT"
report_server_id = "spiffe://tcdist.test/distd/server"
report_every = "1s"
# A halt reaches an agent when its cached verification ends (at most the cache time).
verification_cache = "1s"

[registry]
ca = "$TCDIST_REGISTRY_CA"
docker_config = "$DOCKER_CONFIG"
EOF
	("$TCVERIFY" agent --config "$dir/agent.toml" >>"$dir/agent.log" 2>&1 &
		echo $! >"$dir/pid") 3>&-
	for _ in $(seq 100); do
		[ -S "$dir/agent.sock" ] && return 0
		sleep 0.1
	done
	cat "$dir/agent.log" >&3
	return 1
}

# on_host N ARGS…: tcverify ARGS… through host N's agent.
on_host() {
	local n=$1
	shift
	job_tcverify "$WORK/h$n/agent.sock" "$@"
}

# arm_of N CHANNEL: host N's arm for a pull of CHANNEL (candidate, current or none).
arm_of() {
	on_host "$1" pull "$REPO:$2" --json 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin).get("rollout")
print(r["arm"] if r else "none")'
}

# start_balanced CHANNEL STAGES [ARGS…]: starts a rollout of D2 whose draw puts at least one
# host in each arm (eight hosts at 50%: one draw in 128 puts them all in one; a new start
# draws a new salt). Sets CANDIDATES and CONTROLS to the hosts of each arm.
start_balanced() {
	local channel=$1 stages=$2 try i
	shift 2
	for try in 1 2 3 4 5; do
		"$DISTD" rollout start "$REPO@$D2" --channel "$channel" --stages "$stages" "$@" \
			2>"$WORK/start.err" >/dev/null || {
			cat "$WORK/start.err" >&3
			return 1
		}
		CANDIDATES=() CONTROLS=()
		for ((i = 1; i <= HOSTS; i++)); do
			case $(arm_of "$i" "$channel") in
			candidate) CANDIDATES+=("$i") ;;
			current) CONTROLS+=("$i") ;;
			*)
				echo "host $i: no arm in a pull of $channel: $(on_host "$i" pull "$REPO:$channel" --json 2>&1)" >&3
				return 1
				;;
			esac
		done
		((${#CANDIDATES[@]} > 0 && ${#CONTROLS[@]} > 0)) && return 0
		"$DISTD" rollout abort "$REPO" --channel "$channel" --reason "unbalanced draw $try" 2>/dev/null
	done
	return 1
}

# run_jobs CHANNEL JOBS CANDIDATE_EXIT CONTROL_EXIT: JOBS jobs on every host, each pulling the
# channel with its job ID and reporting its exit status by its host's arm.
run_jobs() {
	local channel=$1 jobs=$2 i j id status
	for ((i = 1; i <= HOSTS; i++)); do
		status=$4
		[[ " ${CANDIDATES[*]} " == *" $i "* ]] && status=$3
		for ((j = 0; j < jobs; j++)); do
			id=$(cat /proc/sys/kernel/random/uuid)
			on_host "$i" pull "$REPO:$channel" --job-id "$id" >/dev/null 2>&1
			on_host "$i" report --job-id "$id" --pipeline app --exit-status "$status" >/dev/null 2>&1
		done
	done
}

# rollout_field CHANNEL KEY: a field of the channel's rollout, as `distd rollout status` reads it.
rollout_field() {
	"$DISTD" rollout status "$REPO" --channel "$1" --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["rollout"][sys.argv[1]])' "$2"
}

# wait_for COMMAND…: until COMMAND succeeds, up to 60 s.
wait_for() {
	for _ in $(seq 120); do
		"$@" && return 0
		sleep 0.5
	done
	return 1
}

# verdicts STATE CHANNEL: the verdict entries of CHANNEL in state-STATE's journal, one JSON a line.
verdicts() {
	grep -F "\"channel\":\"$2\"" "$WORK/state-$1/rollouts/verdicts.jsonl" 2>/dev/null
}

metric() {
	curl -fsS "http://127.0.0.1:$OPS_PORT/metrics" | awk -v name="$1" '$1 == name { print $2 }'
}

@test "a candidate that fails far more often is halted by the daemon's judge, and every host gets the current release again" {
	start_balanced c-halt 50%:0s:20:2,100% --expires 5m
	run_jobs c-halt 6 1 0
	halted() { [ "$(rollout_field c-halt state)" = halted ]; }
	wait_for halted
	# Signed by the judge's brake identity, with the verdict as its reason.
	[ "$(rollout_field c-halt signer)" = "$TCDIST_JUDGE_ID" ]
	reason=$(rollout_field c-halt reason)
	[[ $reason == "judge: stage 1 (50%): the candidate's failure rate 100.00% against the control's 0.00%"* ]]
	# The verdict that halted it is in the journal with its inputs, and recomputes the same.
	verdicts judging c-halt | grep '"verdict":"worse"' | tail -n 1 >"$WORK/halt.json"
	python3 - "$WORK/halt.json" "${#CANDIDATES[@]}" "${#CONTROLS[@]}" <<'PY'
import json, sys
entry = json.load(open(sys.argv[1]))
assert entry["action"].startswith("halt (statement "), entry["action"]
assert not entry["dry_run"] and entry["stage"] == 1
inputs = entry["record"]["inputs"]
c, k = inputs["candidate"], inputs["control"]
assert c["jobs"] > 0 and c["failed"] == c["jobs"], c
assert k["jobs"] > 0 and k["failed"] == 0, k
assert c["hosts"] <= int(sys.argv[2]) and k["hosts"] <= int(sys.argv[3]), (c, k)
assert entry["record"]["failures"]["lower"] > 0, entry["record"]["failures"]
PY
	python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["record"]))' \
		"$WORK/halt.json" >"$WORK/halt-record.json"
	run "$DISTD" rollout verdict --record "$WORK/halt-record.json"
	[ "$status" -eq 0 ]
	[[ $output == *"record: agrees"* ]]
	# Every host, the candidate's included, is served the current release again.
	for i in "${CANDIDATES[@]}" "${CONTROLS[@]}"; do
		out=$(on_host "$i" pull "$REPO:c-halt" --json 2>/dev/null)
		[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["digest"])' "$out")" = "$D1" ]
	done
	[ "$(metric 'distd_rollout_halts_total{line="judged",channel="c-halt"}')" = 1 ]
	[ -n "$(metric 'distd_rollout_outcomes_total{line="judged",channel="c-halt",arm="candidate",result="failed"}')" ]
	grep -q "ALERT rollout of judged/c-halt stage 1 (halted)" "$WORK/daemon.log"
}

# svid_files DIR: the stack user's own SVID (ci/job, what a shell gets) as cert.pem, key.pem
# and bundle.pem, for curl.
svid_files() {
	mkdir -p "$1"
	"$TCDIST_SPIRE_BIN_DIR/spire-agent" api fetch x509 -socketPath "${SPIFFE_ENDPOINT_SOCKET#unix://}" \
		-write "$1" >/dev/null
	mv "$1/svid.0.pem" "$1/cert.pem" && mv "$1/svid.0.key" "$1/key.pem" && mv "$1/bundle.0.pem" "$1/bundle.pem"
}

# send FILE: POSTs the batch in FILE to the daemon as ci/job, with its SVID; prints the HTTP status,
# a space, and the answer. The daemon's certificate is checked against the trust bundle (its
# SPIFFE ID is distd ctl's concern, not this test's).
send() {
	python3 - "$WORK/svid" "$PORT" "$1" <<'PY'
import http.client, ssl, sys
svid, port, path = sys.argv[1:]
body = open(path, "rb").read()
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.load_verify_locations(f"{svid}/bundle.pem")
context.load_cert_chain(f"{svid}/cert.pem", f"{svid}/key.pem")
connection = http.client.HTTPSConnection("127.0.0.1", int(port), context=context)
connection.request("POST", "/v1/outcomes", body, {"Content-Type": "application/json"})
answer = connection.getresponse()
print(answer.status, answer.read().decode())
PY
}

@test "the daemon counts a record only for its sender's own host, arm, release and stage, and caps a busy host" {
	svid_files "$WORK/svid"
	"$DISTD" rollout start "$REPO@$D2" --channel c-drop --stages 50%:1h:20:2,100% --expires 5m \
		2>/dev/null >/dev/null
	me=spiffe://tcdist.test/ci/job
	# What the daemon will take, from the plan as a verifier reads it: this host's arm.
	out=$("$TCVERIFY" pull "$REPO:c-drop" --store "$WORK/drop-store" --host-id "$me" --json 2>/dev/null)
	read -r arm release sequence < <(python3 -c '
import json, sys
o = json.loads(sys.argv[1]); r = o["rollout"]
print("candidate" if r["arm"] == "candidate" else "control", o["digest"], r["sequence"])' "$out")
	other=$([ "$release" = "$D1" ] && echo "$D2" || echo "$D1")
	other_arm=$([ "$arm" = candidate ] && echo control || echo candidate)
	python3 - "$me" "$arm" "$release" "$sequence" "$other" "$other_arm" "$D1" >"$WORK/batch.json" <<'PY'
import json, sys
from datetime import datetime, timedelta, timezone
me, arm, release, sequence, other, other_arm, d1 = sys.argv[1:]
# The host's clock 10 minutes behind the daemon's: its pull looks older than the daemon's last
# read of the rollouts, and still counts (the statement's sequence is newer than that read).
now = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
def record(job, **changes):
    r = {"host_id": me, "job_id": job, "pipeline": "app", "arm": arm, "release": release,
         "channel": "c-drop", "sequence": int(sequence), "stage": 1, "result": "failed",
         "retry": 0, "exit_status": 1, "served_at": now, "time": now}
    r.update(changes)
    return r
records = [record(f"mine-{i}") for i in range(30)]
records += [
    record("another-host", host_id="spiffe://tcdist.test/fleet/host-1"),
    record("other-arm", arm=other_arm, release=other),
    record("other-arm-same-release", arm=other_arm),
    record("other-release", release="sha256:" + "e" * 64),
    record("other-channel", channel="c-halt"),
    record("later-stage", stage=2),
    record("earlier-rollout", sequence=int(sequence) - 1),
]
print(json.dumps({"records": records}))
PY
	run send "$WORK/batch.json"
	[ "$status" -eq 0 ]
	[[ $output == "200 "* ]]
	python3 - "${output#200 }" <<'PY'
import json, sys
answer = json.loads(sys.argv[1])
assert answer == {"accepted": 30, "dropped": {"host-mismatch": 1, "arm-mismatch": 2,
                  "not-in-rollout": 2, "stale-stage": 2}}, answer
PY
	# Kept as sent, under the daemon's own name for the host, for the judge.
	stage_file=$(find "$WORK/state-judging/rollouts/judged/c-drop" -name stage-1.jsonl)
	[ "$(wc -l <"$stage_file")" -eq 30 ]
	# The next verdict counts this one host's 30 jobs; with a stage of two hosts per arm, it
	# keeps ⌈30 / 2⌉ of them.
	capped() { verdicts judging c-drop | tail -n 1 | grep -q '"capped":15'; }
	wait_for capped
	verdicts judging c-drop | tail -n 1 | python3 -c "
import json, sys
inputs = json.load(sys.stdin)['record']['inputs']
counts = inputs['$arm']
assert (counts['jobs'], counts['hosts'], counts['capped']) == (15, 1, 15), counts"
	# A batch over the limit, and one that is not a batch, are refused; nothing is kept.
	python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); b["records"] *= 34; print(json.dumps(b))' \
		"$WORK/batch.json" >"$WORK/too-many.json"
	run send "$WORK/too-many.json"
	[[ $output == "400 "*"at most 1000 records, not 1258"* ]]
	echo '{"records": [{"host_id": 1}]}' >"$WORK/junk.json"
	run send "$WORK/junk.json"
	[[ $output == 4[0-9][0-9]" "* ]]
	[ "$(wc -l <"$stage_file")" -eq 30 ]
	"$DISTD" rollout abort "$REPO" --channel c-drop --reason "test over" 2>/dev/null
}

@test "in a dry run the judge records the verdict it would act on and signs nothing" {
	stop_daemon
	start_daemon dry
	start_balanced c-dry 50%:0s:20:2,100% --expires 5m
	run_jobs c-dry 6 1 0
	judged_worse() { verdicts dry c-dry | grep -q '"verdict":"worse"'; }
	wait_for judged_worse
	entry=$(verdicts dry c-dry | grep '"verdict":"worse"' | tail -n 1)
	python3 -c 'import json,sys; e=json.loads(sys.argv[1]); assert e["dry_run"] and e["action"] == "halt", e' "$entry"
	# Still running, as the promoter signed it.
	[ "$(rollout_field c-dry state)" = running ]
	[ "$(rollout_field c-dry signer)" = "$TCDIST_PROMOTER_ID" ]
	[ -z "$(metric 'distd_rollout_halts_total{line="judged",channel="c-dry"}')" ]
	"$DISTD" rollout abort "$REPO" --channel c-dry --reason "test over" 2>/dev/null
}

@test "the judge keeps a holding rollout alive, and a daemon killed mid-stage goes on from its journal" {
	# A long soak: the stage holds. A short lifetime: the judge re-signs it within seconds.
	start_balanced c-resume 50%:1h:20:2,100% --expires 20s
	run_jobs c-resume 2 0 0
	looked() { [ "$(verdicts judging c-resume | grep -c '"jobs":[1-9]')" -ge 2 ]; }
	wait_for looked
	resigned() { [ "$(rollout_field c-resume signer)" = "$TCDIST_JUDGE_ID" ]; }
	wait_for resigned
	[ "$(rollout_field c-resume state)" = running ]
	stop_daemon KILL
	before=$(verdicts judging c-resume | tail -n 1)
	n=$(verdicts judging c-resume | wc -l)
	start_daemon judging
	after_restart() { [ "$(verdicts judging c-resume | wc -l)" -gt "$n" ]; }
	wait_for after_restart
	# The first verdict of the new daemon.
	after=$(verdicts judging c-resume | sed -n "$((n + 1))p")
	python3 - "$before" "$after" <<'PY'
import json, sys
before, after = (json.loads(a) for a in sys.argv[1:])
b, a = before["record"]["inputs"], after["record"]["inputs"]
assert a["look"] == b["look"] + 1, (b["look"], a["look"])
for arm in ("candidate", "control"):
    assert a[arm]["jobs"] >= b[arm]["jobs"] > 0 or b[arm]["jobs"] == 0, (arm, b[arm], a[arm])
assert a["candidate"]["jobs"] + a["control"]["jobs"] >= b["candidate"]["jobs"] + b["control"]["jobs"] > 0
assert after["record"]["verdict"] == "hold", after["record"]
PY
	"$DISTD" rollout abort "$REPO" --channel c-resume --reason "test over" 2>/dev/null
}

# ctl ARGS…: distd ctl against this suite's daemon.
ctl() {
	"$DISTD" ctl --server "https://127.0.0.1:$PORT" --server-id spiffe://tcdist.test/distd/server "$@"
}

@test "operators start, read and halt a rollout through the daemon; a host may report but not move it" {
	manager=spiffe://tcdist.test/release/manager
	run --separate-stderr ctl --as "$manager" rollout start judged "$D2" --channel c-ctl --share 25%
	[ "$status" -eq 0 ]
	python3 -c '
import json, sys
a = json.loads(sys.argv[1])
assert (a["channel"], a["state"], a["stage"], a["share"]) == ("c-ctl", "running", 1, "25%"), a' "$output"
	[ "$(rollout_field c-ctl signer)" = "$TCDIST_PROMOTER_ID" ]
	run --separate-stderr ctl --as "$manager" rollout status judged
	[ "$status" -eq 0 ]
	python3 -c '
import json, sys
s = json.loads(sys.argv[1])
c = next(c for c in s["channels"] if c["channel"] == "c-ctl")
assert c["rollout"]["state"] == "running" and c["rollout"]["candidate"] == sys.argv[2], c' "$output" "$D2"
	# The job identity may report outcomes here, not move rollouts.
	run --separate-stderr ctl --as spiffe://tcdist.test/ci/job rollout halt judged --channel c-ctl --reason no
	[ "$status" -eq 2 ]
	[[ $stderr == *"may not promote"* ]]
	run --separate-stderr ctl --as "$manager" rollout halt judged --channel c-ctl --reason "by hand"
	[ "$status" -eq 0 ]
	[ "$(rollout_field c-ctl state)" = halted ]
	[ "$(rollout_field c-ctl reason)" = "by hand" ]
	grep -q '"action":"promote","line":"judged","target":"c-ctl rollout halt' "$WORK/state-judging/audit.log"
}
