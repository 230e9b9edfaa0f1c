"""The benchmark behind tests/bench/rollout: pulls by channel with and without a rollout,
interleaved, as separate processes (direct mode), medians in milliseconds."""
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
BIN, REG = env["TCDIST_BIN"], env["TCDIST_REGISTRY"]
REPO = f"{REG}/toolchains/bench-rollout-{int(time.time())}"


def sh(cmd):
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout


def tree(path, version):
    os.makedirs(f"{path}/bin")
    os.makedirs(f"{path}/pkg/tool/linux_amd64")
    with open(f"{path}/VERSION", "w") as f:
        f.write(f"{version}\ntime 2026-01-01T00:00:00Z\n")
    with open(f"{path}/bin/go", "w") as f:
        f.write("#!/bin/sh\necho go \"$@\"\n")
    os.chmod(f"{path}/bin/go", 0o755)
    # Some bytes, so a cold pull downloads and extracts something.
    with open(f"{path}/payload", "wb") as f:
        f.write(os.urandom(4 << 20))


digests = []
for n in (1, 2):
    tree(f"{work}/tree{n}", f"go1.26.8-bench{n}")
    digests.append(sh([f"{BIN}/distd", "publish", f"{work}/tree{n}", "--ref", f"{REPO}:v{n}"]).strip().splitlines()[-1])
current, candidate = digests
for channel in ("plain", "rollout"):
    sh([f"{BIN}/distd", "promote", f"{REPO}@{current}", "--channel", channel])
# 50%: one host of each arm. Long enough to outlast the runs.
sh([f"{BIN}/distd", "rollout", "start", f"{REPO}@{candidate}", "--channel", "rollout",
    "--stages", "50%,100%", "--expires", "2h"])


def arm_of(host):
    store = f"{work}/probe"
    shutil.rmtree(store, ignore_errors=True)
    out = json.loads(sh([f"{BIN}/tcverify", "pull", f"{REPO}:rollout", "--store", store, "--host-id", host, "--json"]))
    return out["rollout"]["arm"] if out.get("rollout") else None


hosts = {}
for i in range(64):
    host = f"spiffe://tcdist.test/host/bench-{i}"
    hosts.setdefault(arm_of(host), host)
    if "candidate" in hosts and "current" in hosts:
        break

CASES = {
    "no rollout": ("plain", hosts["current"]),
    "rollout, current arm": ("rollout", hosts["current"]),
    "rollout, candidate arm": ("rollout", hosts["candidate"]),
}


def pull(channel, host, store):
    start = time.monotonic()
    subprocess.run([f"{BIN}/tcverify", "pull", f"{REPO}:{channel}", "--store", store, "--host-id", host],
                   env=env, check=True, capture_output=True)
    return (time.monotonic() - start) * 1000


results = {}
warm_stores = {}
for name, (channel, host) in CASES.items():
    warm_stores[name] = f"{work}/warm-{channel}-{host.rsplit('/', 1)[1]}"
    pull(channel, host, warm_stores[name])
for _ in range(runs):
    for name, (channel, host) in CASES.items():
        results.setdefault(f"warm: {name}", []).append(pull(channel, host, warm_stores[name]))
        cold = f"{work}/cold"
        if os.path.exists(cold):
            subprocess.run(["chmod", "-R", "u+w", cold], check=True)
            shutil.rmtree(cold)
        results.setdefault(f"cold: {name}", []).append(pull(channel, host, cold))

# The registry's access log (one line a request): what each case asks of this repository
# (the stack's daemon reads its own line's meanwhile).
ACCESS_LOG = os.path.join(os.environ["TCDIST_STACK_DIR"], "registry", "registry.log")
REPO_PATH = f" /v2/{REPO.split('/', 1)[1]}/"


def requests(channel, host, store):
    def count():
        with open(ACCESS_LOG, errors="replace") as f:
            return sum(line.startswith("127.0.0.1 - ") and REPO_PATH in line for line in f)
    before = count()
    pull(channel, host, store)
    return count() - before


print("registry requests of one warm pull:",
      ", ".join(f"{name}: {requests(channel, host, warm_stores[name])}"
                for name, (channel, host) in CASES.items()))
print(f"pull by channel, direct mode, {runs} interleaved runs each (median, min-max ms)")
for name, values in results.items():
    print(f"  {name:32} {statistics.median(values):8.1f}   {min(values):.1f}-{max(values):.1f}")
for kind in ("warm", "cold"):
    base = statistics.median(results[f"{kind}: no rollout"])
    for arm in ("current", "candidate"):
        value = statistics.median(results[f"{kind}: rollout, {arm} arm"])
        print(f"  {kind} {arm} arm / no rollout: {value / base:.2f}x ({value - base:+.1f} ms)")
