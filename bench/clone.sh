#!/bin/sh
# Time of `lxcf clone` of a stopped separate-model container, on the host's
# filesystem (ext4 here: a copy) and on a btrfs image (a snapshot), REPS times
# each; prints each time and the medians. The time is the whole command: the
# reservation, the copy or snapshot, the new identity, defining and starting NEW.
#
#   bench/clone.sh [REPS] [LXCF]     (root, libvirtd running, release build)
#
# On btrfs the source tree (a copy of the host's /usr /etc /var, not timed) and
# the container roots share the image, as on a host whose / is btrfs. Works in its
# own root, hosts file and isolated network (lxcfbench5, 10.218.0.0/24, no
# forwarding); removes containers, network, mounts and images at the end, also on
# failure. Needs about 5.5 GiB per ext4 clone kept until the end, and ~12 GiB for
# the btrfs image.
set -eu
reps=${1:-3}
lxcf=$(realpath "${2:-$(dirname "$0")/../target/release/lxcf}")
[ -x "$lxcf" ] || { echo "build first: cargo build --release -p lxcf" >&2; exit 1; }
work=$(mktemp -d /opt/lxcf-bench-clone.XXXXXX)
cleanup() {
    for d in $(virsh -q -c lxc:/// list --all --name | grep '^lxcfb5-' || true); do
        virsh -q -c lxc:/// destroy "$d" >/dev/null 2>&1 || true
        virsh -q -c lxc:/// undefine "$d" >/dev/null 2>&1 || true
    done
    virsh -q -c lxc:/// net-destroy lxcfbench5 >/dev/null 2>&1 || true
    virsh -q -c lxc:/// net-undefine lxcfbench5 >/dev/null 2>&1 || true
    btrfs_host_cleanup
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

. "$(dirname "$0")/common.sh"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run FS ROOT SOURCE: a separate container, stopped, cloned REPS times.
run() {
    fs=$1 root=$2 source=$3
    bench_config separate lxcfbench5 10.218.0.0/24 "$root" "$source"
    t0=$(now)
    "$lxcf" sysgen lxcfb5-src 2>/dev/null
    printf '%s: separate sysgen of the source container: %.2f s\n' "$fs" "$(echo "$(now) - $t0" | bc)"
    "$lxcf" stop lxcfb5-src 2>/dev/null
    sync
    : >"$work/times"
    for i in $(seq 1 "$reps"); do
        t0=$(now)
        "$lxcf" clone lxcfb5-src "lxcfb5-c$i" 2>/dev/null
        t=$(echo "$(now) - $t0" | bc)
        echo "$t" >>"$work/times"
        printf '%s rep %s: lxcf clone %.3f s\n' "$fs" "$i" "$t"
        "$lxcf" stop "lxcfb5-c$i" 2>/dev/null
    done
    printf '%s: median of %s: lxcf clone %.3f s\n' "$fs" "$reps" "$(median <"$work/times")"
    for d in $("$lxcf" list | awk 'NR > 1 {print $1}'); do "$lxcf" erase "$d" 2>/dev/null; done
}

sync
echo 3 >/proc/sys/vm/drop_caches
run "$(stat -f -c %T /opt | sed 's|ext2/ext3|ext4|')" "$work/lxc" /

# btrfs: an image holding a host-like tree (a subvolume) and the containers.
btrfs_host
run btrfs "$work/bt/lxc" "$work/bt/host"
