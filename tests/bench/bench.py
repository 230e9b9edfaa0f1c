"""The benchmark behind tests/bench/run: interleaved runs, medians, peak RSS."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from stackenv import stack_environment

work, runs = sys.argv[1], int(sys.argv[2])
env = stack_environment()
# The direct-mode figures are tcverify's own; the agent's are measured on their own below, as a
# job pulls: with an environment of its own (the agent refuses direct-mode settings).
AGENT = env.get("TCDIST_AGENT_SOCKET")
JOB_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "TCVERIFY_AGENT": AGENT or ""}
BIN = env["TCDIST_BIN"]
REG = env["TCDIST_REGISTRY"]
GOROOT = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()
CURL = ["curl", "-sf", "--cacert", env["TCDIST_REGISTRY_CA"], "-u",
        f'{env["TCDIST_REGISTRY_USERNAME"]}:{env["TCDIST_REGISTRY_PASSWORD"]}']
SKOPEO_AUTH = ["--authfile", env["REGISTRY_AUTH_FILE"]]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), env=env, check=True,
                          capture_output=True, text=True, executable="/bin/bash" if isinstance(cmd, str) else None, **kw)


def timed(cmd, cpu=False, run_env=None):
    """Wall seconds (to the millisecond: /usr/bin/time's own figure has 10 ms steps) and peak
    RSS (MB) of one command, RSS via /usr/bin/time; with cpu, the process's own CPU seconds
    (user + sys: its local work) instead of RSS."""
    start = time.monotonic()
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M %U %S"] + cmd, env=run_env or env,
                         check=True, capture_output=True, text=True)
    secs = time.monotonic() - start
    line = [l for l in out.stderr.splitlines() if l.startswith("TIME ")][-1]
    _, _, rss, user, system = line.split()
    if cpu:
        return secs, None, float(user) + float(system)
    return secs, int(rss) / 1024


def timed_shell(script):
    start = time.monotonic()
    sh(script)
    return time.monotonic() - start, None


def fresh(path):
    if os.path.exists(path):
        sh(["chmod", "-R", "u+w", path])
        shutil.rmtree(path)
    os.makedirs(path)
    return path


results = {}


def record(name, value):
    results.setdefault(name, []).append(value)


# Publish: cold (empty layer cache, new repository), raw tar|zstd|upload, and the no-op republish.
for i in range(runs):
    repo = f"toolchains/bench-publish-{i}"
    cache = fresh(f"{work}/cache-{i}")
    secs, rss = timed([f"{BIN}/distd", "publish", GOROOT, "--ref", f"{REG}/{repo}:v1", "--cache-dir", cache])
    record("publish cold (distd)", (secs, rss))
    secs, rss = timed([f"{BIN}/distd", "publish", GOROOT, "--ref", f"{REG}/{repo}:v1", "--cache-dir", cache])
    record("publish no-op republish (distd)", (secs, rss))
    loc = sh(CURL + ["-D", "-", "-o", "/dev/null", "-X", "POST", f"https://{REG}/v2/bench/raw-{i}/blobs/uploads/"]).stdout
    location = [l.split(": ", 1)[1].strip() for l in loc.splitlines() if l.lower().startswith("location:")][0]
    raw = (f"set -o pipefail; tar -C {GOROOT} -cf - . | zstd -3 -q -T0 | tee >(sha256sum | cut -d' ' -f1 > {work}/raw.sum) "
           f"| {' '.join(CURL)} -X PATCH -H 'Content-Type: application/octet-stream' --data-binary @- -D {work}/raw.hdr '{location}' && "
           f"sleep 0.1; loc=$(grep -i '^location:' {work}/raw.hdr | cut -d' ' -f2 | tr -d '\\r'); "
           f"{' '.join(CURL)} -X PUT \"$loc&digest=sha256:$(cat {work}/raw.sum)\" -o /dev/null")
    record("publish raw (tar | zstd -T0 | curl upload)", timed_shell(raw))

# The release the pulls use.
ref = f"{REG}/toolchains/bench-go:v1"
sh([f"{BIN}/distd", "publish", GOROOT, "--ref", ref, "--cache-dir", f"{work}/cache-0"])
report = json.loads(sh([f"{BIN}/tcverify", "verify", ref, "--json"]).stdout)
manifest = json.loads(sh(["skopeo", "inspect", "--cert-dir", env["TCDIST_REGISTRY_CERT_DIR"], *SKOPEO_AUTH, "--raw",
                          f"docker://{REG}/toolchains/bench-go@{report['manifest_digest']}"]).stdout)
layers = [l["digest"] for l in manifest["layers"]]

# Verification alone (signature, identity, time; no layers). Every run is a new process
# with new connections; the first one also meets cold page caches in the registry.
def registry_reads():
    """GET and HEAD requests in the registry's access log so far."""
    with open(env["TCDIST_REGISTRY_LOG"]) as log:
        return sum(1 for line in log if '"GET /v2/' in line or '"HEAD /v2/' in line)


tcverify_verify = [f"{BIN}/tcverify", "verify", ref]
# The same verification by cosign, with the trusted root tcdist exports (the stack's).
cosign = env.get("TCDIST_COSIGN")
cosign_verify = [cosign, "verify", "--trusted-root", env["TCVERIFY_TRUST"],
                 "--certificate-identity", env["TCDIST_SIGNER_ID"],
                 "--certificate-oidc-issuer-regexp", ".*", "--insecure-ignore-sct",
                 "--output", "text", f"{REG}/toolchains/bench-go@{report['digest']}"]
cosign_env = dict(env, SSL_CERT_FILE=env["TCDIST_REGISTRY_CA"])

# Cold: a process's first verification with a store that remembers no checkpoint of the log
# (so no consistency proof yet); cosign's first run of the session. Warm: the store remembers
# the log's checkpoint. Interleaved, so both tools meet the same load.
reads_before = registry_reads()
record("verify, cold (tcverify verify)", timed(tcverify_verify + ["--store", fresh(f"{work}/verify-store")], cpu=True))
verify_requests = registry_reads() - reads_before
if cosign:
    record("verify, cold (cosign verify, same release)", timed(cosign_verify, cpu=True, run_env=cosign_env))
for i in range(max(runs, 10)):
    store = fresh(f"{work}/verify-store")
    record("verify, cold (tcverify verify)", timed(tcverify_verify + ["--store", store], cpu=True))
    record("verify, warm (tcverify verify)", timed(tcverify_verify + ["--store", store], cpu=True))
    if cosign:
        record("verify, warm (cosign verify, same release)", timed(cosign_verify, cpu=True, run_env=cosign_env))
if not cosign:
    print("cosign is not installed: its comparison is skipped")

for base_name, base in [("tmpfs", "/dev/shm"), ("disk", work)]:
    for i in range(runs):
        store = fresh(f"{base}/tcbench-store")
        record(f"{base_name}: cold pull (tcverify)", timed([f"{BIN}/tcverify", "pull", ref, "--store", store]))
        record(f"{base_name}: warm pull (tcverify)", timed([f"{BIN}/tcverify", "pull", ref, "--store", store]))
        dest = fresh(f"{base}/tcbench-raw")
        raw = " & ".join(
            f"({' '.join(CURL)} https://{REG}/v2/toolchains/bench-go/blobs/{d} | zstd -d -q | tar -C {dest} -xf -)" for d in layers)
        record(f"{base_name}: raw curl | zstd -d | tar -x (parallel layers, no checks)", timed_shell(f"set -o pipefail; {raw} & wait"))
        dest = fresh(f"{base}/tcbench-raw")
        record(f"{base_name}: raw as above, then sync -f (durable, as tcverify is)",
               timed_shell(f"set -o pipefail; {raw} & wait; sync -f {dest}"))
        dest = fresh(f"{base}/tcbench-skopeo")
        script = (f"skopeo copy -q --src-cert-dir {env['TCDIST_REGISTRY_CERT_DIR']} --src-authfile {env['REGISTRY_AUTH_FILE']} "
                  f"docker://{ref} oci:{dest}/oci:v1 && "
                  + " && ".join(f"zstd -d -q -c {dest}/oci/blobs/sha256/{d.split(':')[1]} | tar -C {dest} -xf -" for d in layers))
        record(f"{base_name}: skopeo copy + zstd -d | tar -x", timed_shell(script))
    for path in ["tcbench-store", "tcbench-raw", "tcbench-skopeo"]:
        fresh(f"{base}/{path}")

# Through the build-host agent: the same release, its entry removed and the agent restarted
# (no verification cached) before each cold pull; warm pulls find the entry and the cached
# verification, but still resolve the tag at the registry.
def remove_entry(store, digest):
    entry = os.path.join(store, digest.replace(":", "-"))
    if os.path.exists(entry):
        sh(["chmod", "-R", "u+w", entry])
        shutil.rmtree(entry)
    # ext4 skips inodes freed in the last seconds when it allocates new ones (the
    # `recently_deleted` scan), so a pull right after a removal of ~15 000 files is slower than
    # one into a new store: both modes are measured after the same removal.


def restart_agent(digest):
    remove_entry(env["TCDIST_AGENT_STORE"], digest)
    with open(env["TCDIST_AGENT_PIDFILE"]) as pidfile:
        pid = int(pidfile.read())
    os.kill(pid, 15)
    while os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    sh(["deploy/local/stack", "up"])


if AGENT:
    agent_pull = [f"{BIN}/tcverify", "pull", ref]
    for i in range(runs):
        restart_agent(report["digest"])
        record("agent: cold pull (tcverify pull --agent)", timed(agent_pull, run_env=JOB_ENV))
        for _ in range(10):
            record("agent: warm pull (tcverify pull --agent)", timed(agent_pull, run_env=JOB_ENV))
        # The same conditions as the agent's cold pull: a store whose entry was just removed.
        store = f"{work}/tcbench-direct"
        remove_entry(store, report["digest"])
        record("agent: cold pull, direct mode in the same run (tcverify pull)",
               timed([f"{BIN}/tcverify", "pull", ref, "--store", store]))
        restart_agent(report["digest"])
        job = f"env -i PATH=\"$PATH\" TCVERIFY_AGENT={AGENT} {' '.join(agent_pull)}"
        clients = " & ".join(f"{job} >/dev/null" for _ in range(16))
        record("agent: 16 concurrent cold pulls of one release (all done)",
               timed_shell(f"set -o pipefail; {clients} & wait"))
    fresh(f"{work}/tcbench-direct")
else:
    print("the stack runs no agent: its figures are skipped")

print(f"\n{runs} runs per method, interleaved; medians (peak RSS where measured). Go root {GOROOT}, "
      f"{len(layers)} layers, {sum(l['size'] for l in manifest['layers']) / 1e6:.0f} MB compressed.\n")
print("| method | median s | min s | max s | peak RSS MB | CPU s (user+sys) |")
print("| --- | --- | --- | --- | --- | --- |")
for name, values in results.items():
    secs = [v[0] for v in values]
    rss = [v[1] for v in values if v[1] is not None]
    cpu = [v[2] for v in values if len(v) > 2]
    print(f"| {name} | {statistics.median(secs):.3f} | {min(secs):.3f} | {max(secs):.3f} | "
          f"{f'{max(rss):.0f}' if rss else ''} | {f'{statistics.median(cpu):.3f}' if cpu else ''} |")
print(f"\nOne verify makes {verify_requests} registry requests (GET/HEAD in the registry log).")
if cosign:
    for kind in ["cold", "warm"]:
        ours, theirs = (statistics.median(v[0] for v in results[f"verify, {kind} ({tool})"])
                        for tool in ["tcverify verify", "cosign verify, same release"])
        print(f"verify, {kind}: tcverify / cosign = {ours / theirs:.2f}")
