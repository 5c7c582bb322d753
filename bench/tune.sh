#!/bin/sh
# How long a live resource change takes: each lxcf command against the virsh (or
# tc) call that does the same by hand, alternating, on one running joint container.
# Usage: bench/tune.sh [REPS] [LXCF]   (root, libvirtd running, release build)
# Works in its own root, hosts file and isolated network; removes them at the end.
set -eu
reps=${1:-10}
lxcf=${2:-$(dirname "$0")/../target/release/lxcf}
[ -x "$lxcf" ] || { echo "build first: cargo build --release -p lxcf" >&2; exit 1; }
work=$(mktemp -d /opt/lxcf-bench-tune.XXXXXX)
name=lxcfbt-1
v() { virsh -q -c lxc:/// "$@"; }
cleanup() {
    v destroy "$name" >/dev/null 2>&1 || true
    v undefine "$name" >/dev/null 2>&1 || true
    v net-destroy lxcfbtune >/dev/null 2>&1 || true
    v net-undefine lxcfbtune >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
. "$(dirname "$0")/common.sh"
bench_config joint lxcfbtune 10.214.13.0/24
"$lxcf" sysgen "$name" --memlimit 1G --net_in 1M 2>/dev/null
sync
echo 3 >/proc/sys/vm/drop_caches
veth=$(v domiflist "$name" | awk 'NR == 1 { print $1 }')
# The whole disk under / (what blkio throttles name), as a device node for virsh.
sysdev=$(readlink -f "/sys/dev/block/$(stat -c '%Hd:%Ld' /)")
[ -e "$sysdev/partition" ] && sysdev=$(dirname "$sysdev")
disk=/dev/$(sed -n 's/^DEVNAME=//p' "$sysdev/uevent")

# time_ms CMD...: milliseconds the command takes (its output discarded).
time_ms() {
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
    echo $((($(date +%s%N) - t0) / 1000000))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# bench LABEL "LXCF ARGS with %s" "BASELINE with %s" VALUE1 VALUE2: alternate the
# two values so that every run changes something.
bench() {
    label=$1 ours=$2 base=$3 a=$4 b=$5
    : >"$work/ours"
    : >"$work/base"
    i=0
    while [ $i -lt "$reps" ]; do
        val=$a
        [ $((i % 2)) = 0 ] || val=$b
        # shellcheck disable=SC2046,SC2059
        time_ms $(printf "$ours" "$val") >>"$work/ours"
        # shellcheck disable=SC2046,SC2059
        time_ms $(printf "$base" "$val") >>"$work/base"
        i=$((i + 1))
    done
    mo=$(median <"$work/ours")
    mb=$(median <"$work/base")
    printf '%-28s lxcf %6s ms   baseline %6s ms   ratio %s\n' "$label" "$mo" "$mb" "$(echo "scale=2; $mo / $mb" | bc | sed "s/^\./0./")"
}

ncpu=$(nproc)
printf '%s: live changes on a running joint container\n' "$("$lxcf" --version)"
bench "memlimit (virsh memtune)" "$lxcf memlimit $name %s" "virsh -q -c lxc:/// memtune $name --live --config --hard-limit %s" 524288K 786432K
bench "cpurate (virsh schedinfo)" "$lxcf cpurate $name %s" \
    "virsh -q -c lxc:/// schedinfo $name --live --config vcpu_quota=%s000" 30 60
bench "blkio_r (virsh blkiotune)" "$lxcf blkio_r $name / %s" \
    "virsh -q -c lxc:/// blkiotune $name --live --config --device-read-bytes-sec $disk,%s" 10485760 20971520
bench "net_in (tc qdisc replace)" "$lxcf net_in $name %s" \
    "tc qdisc replace dev $veth root tbf rate %sbps burst 104857 latency 100ms" 1048576 2097152
bench "show (virsh dumpxml)" "$lxcf show %s" "virsh -q -c lxc:/// dumpxml %s" "$name" "$name"
echo "($reps runs of each, alternating, medians; $ncpu CPUs; disk $disk)"
