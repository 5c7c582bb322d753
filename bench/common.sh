# Sourced by the bench scripts: what they share.

# bench_config MODEL NET SUBNET [ROOT [SOURCE]]: lxcf's configuration for a bench in
# $work: an empty hosts file of its own, containers under ROOT (default $work/lxc),
# built from SOURCE (default lxcf's, /), on the isolated network NET (bridge NETbr,
# no forwarding). An empty MODEL keeps lxcf's default. Exports LXCF_CONFIG.
bench_config() {
    : >"$work/hosts"
    {
        if [ -n "$1" ]; then printf '[Model]\nmodel=%s\n' "$1"; fi
        printf '[Paths]\nroot=%s\nhosts=%s\n' "${4:-$work/lxc}" "$work/hosts"
        if [ -n "${5:-}" ]; then printf 'source=%s\n' "$5"; fi
        printf '[Network]\nname=%s\nbridge=%sbr\nsubnet=%s\nforward=none\n' "$2" "$2" "$3"
    } >"$work/lxcf.conf"
    export LXCF_CONFIG="$work/lxcf.conf"
}

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# since_running NAME T0: waits until systemd in the running container NAME says
# running (or degraded), as root inside; prints the seconds since T0.
since_running() {
    id=$(virsh -q -c lxc:/// domid "$1")
    init=$(cut -d' ' -f1 "/proc/$id/task/$id/children")
    while :; do
        state=$(nsenter -t "$init" -a -S 0 -G 0 -- /bin/systemctl is-system-running 2>/dev/null || true)
        case "$state" in running | degraded) break ;; esac
        sleep 0.05
    done
    echo "$(now) - $2" | bc
}

# median: of the numbers on stdin, one per line.
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# btrfs_host: a btrfs image at $work/bt holding a host-like tree, the subvolume
# $work/bt/host (a copy of the host's /usr /etc /var and the links beside them, not
# timed), as on a host whose / is a btrfs subvolume (Fedora's default). Needs ~12
# GiB free under $work. The caller's EXIT trap calls btrfs_host_cleanup.
btrfs_host() {
    truncate -s 24G "$work/btrfs.img"
    mkfs.btrfs -q -f "$work/btrfs.img" >/dev/null
    bt_dev=$(losetup -f --show "$work/btrfs.img")
    mkdir -p "$work/bt"
    mount "$bt_dev" "$work/bt"
    # A libvirtd in a mount namespace of its own that does not see this mount (see
    # scripts/setup-host): mount it there too.
    pid=$(pgrep -xo libvirtd || true)
    if [ -n "$pid" ] && [ "$(stat -f -c %T "/proc/$pid/root$work/bt")" != btrfs ]; then
        nsenter -t "$pid" -m -- mount "$bt_dev" "$work/bt"
        bt_ns=$pid
    fi
    btrfs subvolume create "$work/bt/host" >/dev/null
    for d in usr etc var bin sbin lib lib64 lib32 libx32; do
        if [ -e "/$d" ] || [ -L "/$d" ]; then cp -a "/$d" "$work/bt/host/"; fi
    done
    mkdir -p "$work/bt/host/root"
    sync
}

btrfs_host_cleanup() {
    [ -n "${bt_ns:-}" ] && nsenter -t "$bt_ns" -m -- umount "$work/bt" 2>/dev/null || true
    mountpoint -q "$work/bt" 2>/dev/null && umount "$work/bt"
    [ -n "${bt_dev:-}" ] && losetup -d "$bt_dev" 2>/dev/null || true
}
