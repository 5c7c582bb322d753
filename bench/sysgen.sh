#!/bin/sh
# Time from `lxcf sysgen` to systemd `running` inside, for the joint and the
# separate model. Usage: bench/sysgen.sh [REPS] [LXCF] [btrfs]   (root, libvirtd running)
# Works in its own root, hosts file and isolated network; removes them at the end.
# With `btrfs`: the containers are built from a host-like tree that is a btrfs
# subvolume on an image, into roots on the same image (see btrfs_host in common.sh).
set -eu
reps=${1:-3}
lxcf=${2:-$(dirname "$0")/../target/release/lxcf}
[ -x "$lxcf" ] || { echo "build first: cargo build --release -p lxcf" >&2; exit 1; }
work=$(mktemp -d /opt/lxcf-bench-sysgen.XXXXXX)
cleanup() {
    for d in $(virsh -q -c lxc:/// list --all --name | grep '^lxcfb-' || true); do
        virsh -q -c lxc:/// destroy "$d" >/dev/null 2>&1 || true
        virsh -q -c lxc:/// undefine "$d" >/dev/null 2>&1 || true
    done
    virsh -q -c lxc:/// net-destroy lxcfbench >/dev/null 2>&1 || true
    virsh -q -c lxc:/// net-undefine lxcfbench >/dev/null 2>&1 || true
    btrfs_host_cleanup
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
. "$(dirname "$0")/common.sh"
if [ "${3:-}" = btrfs ]; then
    btrfs_host
    bench_config "" lxcfbench 10.214.0.0/24 "$work/bt/lxc" "$work/bt/host"
else
    bench_config "" lxcfbench 10.214.0.0/24
fi
# Start from settled caches: see bench/src/rootfs.rs on ext4 and recent deletions.
sync
echo 3 >/proc/sys/vm/drop_caches

for model in joint separate; do
    for i in $(seq 1 "$reps"); do
        name="lxcfb-$model-$i"
        t0=$(now)
        "$lxcf" sysgen --model "$model" "$name" 2>/dev/null
        t1=$(now)
        state=""
        while :; do
            state=$(virsh -q -c lxc:/// lxc-enter-namespace "$name" --noseclabel -- /bin/systemctl is-system-running 2>/dev/null || true)
            case "$state" in running | degraded) break ;; esac
            sleep 0.05
        done
        t2=$(now)
        printf '%s rep %s: sysgen %.2f s, to systemd %s %.2f s\n' "$model" "$i" \
            "$(echo "$t1 - $t0" | bc)" "$state" "$(echo "$t2 - $t0" | bc)"
    done
    # Each model from a clean state: erase now, settle, drop caches.
    for i in $(seq 1 "$reps"); do "$lxcf" erase "lxcfb-$model-$i" 2>/dev/null; done
    sync
    echo 3 >/proc/sys/vm/drop_caches
done
