# lxcf: the second half of a container's init, in its cgroup namespace: mount
# each cgroup hierarchy again so that it shows the container's own cgroups as
# its root, as systemd expects, then boot.
set -u
c=/sys/fs/cgroup
read -r _ _ span </proc/self/uid_map
fail() {
    echo "lxcf init: $1; the container does not start" >&2
    exit 1
}
# Read first: the loop adds mounts to the table it would otherwise still be reading.
mounts=$(grep -E '^[^ ]+ [^ ]+ cgroup2? ' /proc/self/mounts)
printf '%s\n' "$mounts" | while read -r _ dir type opts _; do
    umount "$dir" || fail "cannot unmount $dir"
    # In a user namespace, a v2 hierarchy beside v1 ones (hybrid) stays away: its
    # root is the host's, which the container's root may not write; systemd then
    # runs on the v1 hierarchies alone.
    [ "$type" = cgroup2 ] && [ "$dir" != $c ] && [ "$span" != 4294967295 ] && continue
    mount -t "$type" -o "$opts" "$type" "$dir" || fail "cannot mount $dir again in the container's cgroup namespace"
done || exit 1
if [ "$(stat -f -c %T $c)" != cgroup2fs ]; then
    # The hierarchies libvirt did not mount (a user namespace: only now can they be).
    grep -v '^0::' /proc/self/cgroup | while IFS=: read -r _ ctrls _; do
        case $ctrls in
        name=*) dir=${ctrls#name=} opts=none,$ctrls ;;
        *) dir=$ctrls opts=$ctrls ;;
        esac
        mountpoint -q $c/$dir && continue
        mkdir -p $c/$dir && mount -t cgroup -o "$opts" cgroup $c/$dir || fail "cannot mount the $dir cgroups"
    done || exit 1
    mount -o remount,ro $c 2>/dev/null || mount -o remount,bind,ro $c
fi
exec /sbin/init
