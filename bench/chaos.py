#!/usr/bin/env python3
"""The chaos run: random lxcf commands killed with SIGKILL at a random crash point,
each followed by the next command (which repairs what it finds) and `lxcf check`.

    bench/chaos.py [ITERATIONS] [LXCF] [SEED]     (root, libvirtd running)

The network is isolated, on LXCF_CHAOS_SUBNET (default 10.219.77.0/24).
LXCF must be a debug build (`cargo build -p lxcf`): only debug builds honour
LXCF_TEST_CRASH (liblxcf::fault). Each iteration picks a command (sysgen, clone,
erase, start, stop, a resource change, deploy, update) on a few names and a crash
point K from 1 to 14 (`LXCF_TEST_CRASH=@K`: the K-th point it passes; a command that
passes fewer finishes normally). Then `lxcf list` runs (every command first settles
what a killed one left) and `lxcf check --json` counts what is broken.

Prints: iterations, kills, repairs (lines saying what was undone or finished),
violations (findings of `lxcf check` after the repair), and each violation.
Works in its own root, hosts file and isolated network; removes them at the end.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 100
here = os.path.dirname(os.path.abspath(__file__))
lxcf = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "target", "debug", "lxcf")
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
rng = random.Random(seed)
if not os.access(lxcf, os.X_OK):
    sys.exit("build first: cargo build -p lxcf (a debug build: crash points)")

work = tempfile.mkdtemp(prefix="lxcf-chaos-", dir="/var/tmp")
net = "lxcfchaos"
conf = os.path.join(work, "lxcf.conf")
with open(os.path.join(work, "hosts"), "w") as f:
    f.write("127.0.0.1\tlocalhost\n")
with open(conf, "w") as f:
    f.write(f"[Model]\nmodel=joint\n[Paths]\nroot={work}/lxc\nhosts={work}/hosts\n"
            f"[Network]\nname={net}\nbridge={net}br\nsubnet={os.environ.get('LXCF_CHAOS_SUBNET', '10.219.77.0/24')}\nforward=none\n")
env = dict(os.environ, LXCF_CONFIG=conf)
env.pop("LXCF_TEST_CRASH", None)
deployed = os.path.join(work, "deployed.conf")
with open(deployed, "w") as f:
    f.write("chaos\n")
names = [f"chaos{i}" for i in range(1, 5)]


def lx(*args, crash=None):
    e = dict(env, LXCF_TEST_CRASH=f"@{crash}") if crash else env
    return subprocess.run([lxcf, *args], env=e, capture_output=True, text=True)


def command():
    n, m = rng.choice(names), rng.choice(names)
    return rng.choice([
        ["sysgen", n], ["sysgen", n, m], ["clone", m, n], ["erase", n], ["start", n, m], ["stop", n],
        ["cpun", n, "0"], ["cpurate", n, str(rng.randint(10, 100))], ["memlimit", n, rng.choice(["256M", "1G", "unlimited"])],
        ["net_in", n, rng.choice(["1M", "0"])], ["deploy", deployed], ["update", "--to", n, "--", "sh", "-c", "echo x > /var/lxcf-chaos"],
    ])


kills = repairs = 0
violations = []
try:
    for i in range(iterations):
        cmd = command()
        crash = rng.randint(1, 14)
        r = lx(*cmd, crash=crash)
        killed = r.returncode == -9
        kills += killed
        after = lx("list")
        repairs += sum(1 for line in after.stderr.splitlines() if "an interrupted" in line)
        check = lx("check", "--json")
        try:
            found = json.loads(check.stdout)["findings"]
        except (ValueError, KeyError):
            found = [{"check": "check failed", "detail": check.stderr.strip()}]
        for v in found:
            violations.append((i, " ".join(cmd), crash if killed else None, v))
        print(f"{i + 1}/{iterations}: {' '.join(cmd)} {'killed at @%d' % crash if killed else 'exit %d' % r.returncode}"
              f"{'' if not found else ' VIOLATIONS: %d' % len(found)}", file=sys.stderr)
finally:
    for n in names:
        lx("erase", n)
    for n in [d for d in subprocess.run(["virsh", "-q", "-c", "lxc:///", "list", "--all", "--name"],
                                        capture_output=True, text=True).stdout.split() if d.startswith("chaos")]:
        subprocess.run(["virsh", "-q", "-c", "lxc:///", "destroy", n], capture_output=True)
        subprocess.run(["virsh", "-q", "-c", "lxc:///", "undefine", n], capture_output=True)
    subprocess.run(["virsh", "-q", "-c", "lxc:///", "net-destroy", net], capture_output=True)
    subprocess.run(["virsh", "-q", "-c", "lxc:///", "net-undefine", net], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)

print(f"chaos: seed {seed}, {iterations} iterations, {kills} kills, {repairs} repairs, {len(violations)} violations")
for i, cmd, crash, v in violations:
    print(f"  iteration {i + 1} ({cmd}, killed at {crash}): {v.get('check')}: {v.get('detail')}")
sys.exit(1 if violations else 0)
