"""The local stack's environment for the benchmarks: this process's environment with
stack.env's exports applied (each value expanded by bash, as `source` would)."""
import os
import subprocess


def stack_environment():
    env = dict(os.environ)
    for line in open(os.path.join(env["TCDIST_STACK_DIR"], "stack.env")):
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            env[name] = subprocess.run(["bash", "-c", f"printf %s {value}"],
                                       capture_output=True, text=True).stdout
    return env
