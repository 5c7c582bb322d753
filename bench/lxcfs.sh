#!/bin/sh
# lxcfs's view (issue 12), in the same run: time from `lxcf start` to systemd
# `running` inside a joint container with lxcfs running (the view bound by the hook)
# against lxcfs stopped (no view), REPS of each, alternating; then the time to read
# /proc/meminfo 1000 times inside (lxcfs's file) against the host's own.
# Usage: bench/lxcfs.sh [REPS] [LXCF]   (root, libvirtd and lxcfs running, lxcf's hook installed)
# It stops the host's lxcfs for the "without" runs and starts it again (scripts/start-lxcfs).
set -eu
reps=${1:-5}
lxcf=${2:-$(dirname "$0")/../target/release/lxcf}
[ -x "$lxcf" ] || { echo "build first: cargo build --release -p lxcf" >&2; exit 1; }
start_lxcfs="$(cd "$(dirname "$0")/.." && pwd)/scripts/start-lxcfs"
work=$(mktemp -d /opt/lxcf-bench-lxcfs.XXXXXX)
cleanup() {
    LXCF=$lxcf "$start_lxcfs" >/dev/null 2>&1 || true
    "$lxcf" erase lxcfl-a >/dev/null 2>&1 || true
    virsh -q -c lxc:/// net-destroy lxcfblx >/dev/null 2>&1 || true
    virsh -q -c lxc:/// net-undefine lxcfblx >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
. "$(dirname "$0")/common.sh"
bench_config joint lxcfblx 10.214.12.0/24

# Seconds from `lxcf start` to systemd running (or degraded) inside.
boot() {
    t0=$(now)
    "$lxcf" start "$1" >/dev/null 2>&1
    since_running "$1" "$t0"
}
# SIGKILL: an lxcfs that exits cleanly removes its pidfile late, maybe after the
# next one has written it.
stop_lxcfs() {
    pkill -KILL -x -f '(/usr/bin/)?lxcfs .*/var/lib/lxcfs'
    while [ -e /var/lib/lxcfs/proc/meminfo ]; do sleep 0.05; done
}

"$lxcf" sysgen lxcfl-a >/dev/null
"$lxcf" memlimit lxcfl-a 1G >/dev/null
"$lxcf" stop lxcfl-a >/dev/null 2>&1
: >"$work/with"
: >"$work/without"
for i in $(seq 1 "$reps"); do
    w=$(boot lxcfl-a)
    [ "$("$lxcf" show lxcfl-a --json | sed -n 's/.*"lxcfs": "\([a-z]*\)".*/\1/p')" = on ] || { echo "no view with lxcfs running" >&2; exit 1; }
    "$lxcf" stop lxcfl-a >/dev/null 2>&1
    stop_lxcfs
    wo=$(boot lxcfl-a)
    "$lxcf" stop lxcfl-a >/dev/null 2>&1
    LXCF=$lxcf "$start_lxcfs" >/dev/null 2>&1
    echo "$w" >>"$work/with"
    echo "$wo" >>"$work/without"
    printf 'rep %s: start to running with the view %.2f s, without %.2f s\n' "$i" "$w" "$wo"
done
mw=$(median <"$work/with")
mo=$(median <"$work/without")
printf 'start to running, median of %s: with lxcfs %.2f s, without %.2f s, ratio %.3f (goal <= 1.1)\n' \
    "$reps" "$mw" "$mo" "$(echo "$mw / $mo" | bc -l)"

"$lxcf" start lxcfl-a >/dev/null 2>&1
# One process, 1000 opens and reads: the file's cost, not a process start's.
read_1000="import time
t = time.perf_counter()
for _ in range(1000):
    open('/proc/meminfo').read()
print('%.1f' % ((time.perf_counter() - t) * 1e6 / 1000))"
inside=$("$lxcf" exec lxcfl-a -- /usr/bin/python3 -c "$read_1000")
host=$(python3 -c "$read_1000")
printf 'reading /proc/meminfo 1000 times: %s us each inside (lxcfs), %s us each on the host, ratio %.1f\n' \
    "$inside" "$host" "$(echo "$inside / $host" | bc -l)"
