#!/bin/sh
# Unprivileged against privileged containers (issue 11), in the same run: time from
# `lxcf sysgen` to systemd `running` inside for joint containers (REPS of each,
# alternating), and the build of a separate root (one of each).
# Usage: bench/unpriv.sh [REPS] [LXCF]   (root, libvirtd running, lxcf's hook installed)
set -eu
reps=${1:-5}
lxcf=${2:-$(dirname "$0")/../target/release/lxcf}
[ -x "$lxcf" ] || { echo "build first: cargo build --release -p lxcf" >&2; exit 1; }
work=$(mktemp -d /opt/lxcf-bench-unpriv.XXXXXX)
cleanup() {
    for d in $(virsh -q -c lxc:/// list --all --name | grep '^lxcfu-' || true); do
        "$lxcf" erase "$d" >/dev/null 2>&1 || true
    done
    virsh -q -c lxc:/// net-destroy lxcfbunp >/dev/null 2>&1 || true
    virsh -q -c lxc:/// net-undefine lxcfbunp >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
. "$(dirname "$0")/common.sh"
bench_config joint lxcfbunp 10.214.1.0/24

# Seconds from sysgen to systemd running (or degraded) inside, as root inside.
boot() {
    t0=$(now)
    "$lxcf" sysgen $2 "$1" >/dev/null 2>&1
    since_running "$1" "$t0"
}

: >"$work/priv"
: >"$work/unpriv"
for i in $(seq 1 "$reps"); do
    p=$(boot "lxcfu-p$i" --privileged)
    u=$(boot "lxcfu-u$i" "")
    echo "$p" >>"$work/priv"
    echo "$u" >>"$work/unpriv"
    printf 'joint rep %s: privileged %.2f s, unprivileged %.2f s\n' "$i" "$p" "$u"
    "$lxcf" erase "lxcfu-p$i" "lxcfu-u$i" >/dev/null 2>&1 || { "$lxcf" erase "lxcfu-p$i"; "$lxcf" erase "lxcfu-u$i"; } >/dev/null 2>&1
done
mp=$(median <"$work/priv")
mu=$(median <"$work/unpriv")
printf 'joint sysgen to running, median of %s: privileged %.2f s, unprivileged %.2f s, ratio %.3f (goal <= 1.15)\n' \
    "$reps" "$mp" "$mu" "$(echo "$mu / $mp" | bc -l)"

# Separate: the build (sysgen's own time, the copy of /usr included), one of each.
sync
echo 3 >/proc/sys/vm/drop_caches
t0=$(now); "$lxcf" sysgen --model separate --privileged lxcfu-sp >/dev/null 2>&1; sp=$(echo "$(now) - $t0" | bc)
"$lxcf" erase lxcfu-sp >/dev/null 2>&1
sync
echo 3 >/proc/sys/vm/drop_caches
t0=$(now); "$lxcf" sysgen --model separate lxcfu-su >/dev/null 2>&1; su=$(echo "$(now) - $t0" | bc)
"$lxcf" erase lxcfu-su >/dev/null 2>&1
printf 'separate sysgen: privileged %.2f s, unprivileged %.2f s, ratio %.3f (goal <= 1.1)\n' "$sp" "$su" "$(echo "$su / $sp" | bc -l)"
