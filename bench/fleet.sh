#!/bin/sh
# Fleet figures (issue 6), each next to a baseline measured in the same run:
#  1. `lxcf sysgen -n N` (joint) until all N report systemd running (or degraded),
#     against a plain script that does the same work one container at a time
#     (cp -a /etc /var, hostname, virsh define, virsh start);
#  2. memory per idle container: the drop in the host's MemAvailable (caches dropped
#     before both readings), the container's memory cgroup as libvirt reports it,
#     and the PSS of its processes;
#  3. `lxcf list` with N running, and `lxcf erase -n N`.
#
#   sudo bench/fleet.sh [N] [LXCF]        N defaults to 50
#   ORDER="lxcf script"                   which goes first (default: script lxcf)
#   JOBS=4                                lxcf sysgen -j (default: lxcf's own)
#   SEPARATE=1                            also one separate container's memory (copies ~5 GiB)
#
# Own root, hosts file and isolated network (lxcfbench6, 10.219.0.0/24, no forwarding);
# everything is removed at the end, also when interrupted.
set -eu
n=${1:-50}
lxcf=${2:-$(dirname "$0")/../target/release/lxcf}
order=${ORDER:-script lxcf}
[ -x "$lxcf" ] || { echo "build first: cargo build --release -p lxcf" >&2; exit 1; }
lxcf=$(realpath "$lxcf")
V="virsh -q -c lxc:///"
pfx=lxcfb6-
work=$(mktemp -d /opt/lxcf-bench-fleet.XXXXXX)

cleanup() {
    for d in $($V list --all --name | grep "^$pfx" || true); do
        $V destroy "$d" >/dev/null 2>&1 || true
        $V undefine "$d" >/dev/null 2>&1 || true
    done
    $V net-destroy lxcfbench6 >/dev/null 2>&1 || true
    $V net-undefine lxcfbench6 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$(dirname "$0")/common.sh"
bench_config joint lxcfbench6 10.219.0.0/24

secs() { echo "$2 - $1" | bc; }
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; }
mem_available_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }

# The PID of a running container's init: the only child of libvirt's controller,
# whose PID is the domain's ID.
init_of() {
    id=$($V domid "$1" 2>/dev/null) || return 0
    cat "/proc/$id/task/$id/children" 2>/dev/null || true
}

# Waits until every named container's systemd says running or degraded. nsenter
# (util-linux) rather than virsh lxc-enter-namespace: the same answer without a
# libvirt connection per poll, so that polling 50 containers stays cheap.
wait_booted() {
    left="$*"
    while [ -n "$left" ]; do
        next=""
        for c in $left; do
            pid=$(init_of "$c")
            s=""
            [ -n "$pid" ] && s=$(nsenter -t $pid -m -u -i -n -p -- /bin/systemctl is-system-running 2>/dev/null || true)
            case "$s" in running | degraded) ;; *) next="$next $c" ;; esac
        done
        left=$next
        [ -z "$left" ] || sleep 0.2
    done
}

# PSS (KiB) of a container's processes: those in its cpuacct cgroup, which systemd
# inside leaves alone.
pss_kib() {
    id=$($V domid "$1")
    kib=0
    for p in $(cat /sys/fs/cgroup/cpuacct/machine/lxc-"$id"-"$1".libvirt-lxc/cgroup.procs 2>/dev/null || true); do
        k=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        kib=$((kib + ${k:-0}))
    done
    echo $kib
}

names() { for i in $(seq 1 "$n"); do printf '%s%s%04d ' "$pfx" "$1" "$i"; done; }

# The baseline: what an administrator's script would do, one container at a time.
script_run() {
    mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    cpus=$(nproc)
    mkdir -p "$work/script"
    i=0
    for c in $(names s); do
        i=$((i + 1))
        r="$work/script/$c"
        mkdir -p "$r"
        # A live /var: files that vanish while cp reads (dpkg, logs) are not errors here.
        cp -a --one-file-system /etc /var "$r/" 2>/dev/null || true
        for d in dev proc sys tmp run boot home media mnt opt srv root usr; do mkdir -p "$r/$d"; done
        for l in bin sbin lib lib64; do [ -L "/$l" ] && ln -s "$(readlink "/$l")" "$r/$l"; done
        echo "$c" >"$r/etc/hostname"
        cat >"$work/script/$c.xml" <<XML
<domain type='lxc'>
  <name>$c</name>
  <memory unit='KiB'>$mem</memory>
  <vcpu>$cpus</vcpu>
  <os><type>exe</type>
$init_xml
  </os>
  <devices>
    <filesystem type='mount'><source dir='$r'/><target dir='/'/></filesystem>
    <filesystem type='mount'><source dir='/usr'/><target dir='/usr'/><readonly/></filesystem>
    <interface type='network'>
      <source network='lxcfbench6'/>
      <ip address='10.219.0.$((100 + i))' family='ipv4' prefix='24'/>
    </interface>
    <console type='pty'/>
  </devices>
</domain>
XML
        $V define "$work/script/$c.xml" >/dev/null
        $V start "$c" >/dev/null
    done
}

# Stops and undefines a run's domains, keeping their files until the end: deleting
# ~270,000 files would slow the next run's file creation (ext4 recently_deleted).
unload() {
    for c in $(names "$1"); do
        $V destroy "$c" >/dev/null 2>&1 || true
        $V undefine "$c" >/dev/null 2>&1 || true
    done
}

echo "fleet bench: N=$n, $(nproc) CPUs, $(uname -r), order: $order"
# The network exists before either run starts: neither pays for creating it.
"$lxcf" sysgen "${pfx}warm" 2>"$work/warm.log" || { cat "$work/warm.log" >&2; exit 1; }
# The script's containers boot with the same init as lxcf's (their own cgroups; see
# docs/ARCHITECTURE.md): without it, on a host without systemd-machined, their
# systemd units would share cgroups at the host's roots and the two halves would not
# make the same containers.
init_xml=$($V dumpxml "${pfx}warm" | sed -n '/<init>/,/<\/os>/p' | grep -v '</os>')
"$lxcf" erase "${pfx}warm" 2>/dev/null
for who in $order; do
    settle
    sleep 5
    t0=$(now)
    case $who in
    script)
        script_run
        t1=$(now)
        wait_booted $(names s)
        t2=$(now)
        printf 'script: %d containers created in %.1f s, all booted after %.1f s\n' "$n" "$(secs "$t0" "$t1")" "$(secs "$t0" "$t2")"
        script_total=$(secs "$t0" "$t2")
        unload s
        ;;
    lxcf)
        avail0=$(mem_available_kib)
        t0=$(now)
        # shellcheck disable=SC2086
        "$lxcf" sysgen ${JOBS:+-j $JOBS} -n "$n" "${pfx}b" 2>"$work/sysgen.log" || { tail -5 "$work/sysgen.log"; exit 1; }
        t1=$(now)
        wait_booted $(names b)
        t2=$(now)
        printf 'lxcf sysgen -n %d: returned after %.1f s, all booted after %.1f s\n' "$n" "$(secs "$t0" "$t1")" "$(secs "$t0" "$t2")"
        lxcf_total=$(secs "$t0" "$t2")

        # Memory of idle containers: let them settle, then caches out of the picture.
        sleep 30
        settle
        avail1=$(mem_available_kib)
        printf 'joint: MemAvailable drop per container %.1f MiB\n' "$(echo "($avail0 - $avail1) / $n / 1024" | bc -l)"
        "$lxcf" list --json >"$work/list.json"
        python3 - "$work/list.json" <<'PY'
import json, sys
l = [c for c in json.load(open(sys.argv[1])) if c["memory_bytes"] is not None]
print("joint: memory cgroup (libvirt) per container %.1f MiB (mean of %d)" % (sum(c["memory_bytes"] for c in l) / len(l) / 2**20, len(l)))
PY
        pss_total=0
        sampled=0
        for c in $(names b | tr ' ' '\n' | head -5); do
            pss_total=$((pss_total + $(pss_kib "$c")))
            sampled=$((sampled + 1))
        done
        printf 'joint: PSS of its processes per container %.1f MiB (mean of %d)\n' "$(echo "$pss_total / $sampled / 1024" | bc -l)" "$sampled"

        # list with N running: the median of 7.
        for i in 1 2 3 4 5 6 7; do
            a=$(now)
            "$lxcf" list >/dev/null
            b=$(now)
            secs "$a" "$b"
        done | sort -n | sed -n 4p | xargs printf 'lxcf list, %d running: %.3f s (median of 7)\n' "$n"

        a=$(now)
        "$lxcf" erase -n "$n" "${pfx}b" 2>/dev/null
        b=$(now)
        printf 'lxcf erase -n %d: %.1f s\n' "$n" "$(secs "$a" "$b")"
        ;;
    esac
done
printf 'ratio lxcf / script (all booted): %.2f\n' "$(echo "$lxcf_total / $script_total" | bc -l)"

if [ "${SEPARATE:-0}" = 1 ]; then
    unload s
    rm -rf "$work/script"
    settle
    sleep 5
    avail0=$(mem_available_kib)
    "$lxcf" sysgen --model separate "${pfx}sep1" 2>/dev/null
    wait_booted "${pfx}sep1"
    sleep 30
    settle
    avail1=$(mem_available_kib)
    printf 'separate: MemAvailable drop for one container %.1f MiB\n' "$(echo "($avail0 - $avail1) / 1024" | bc -l)"
    "$lxcf" list --json | python3 -c 'import json,sys; c=json.load(sys.stdin)[0]; print("separate: memory cgroup (libvirt) %.1f MiB" % (c["memory_bytes"] / 2**20))'
    printf 'separate: PSS of its processes %.1f MiB\n' "$(echo "$(pss_kib "${pfx}sep1") / 1024" | bc -l)"
    "$lxcf" erase "${pfx}sep1" 2>/dev/null
fi
