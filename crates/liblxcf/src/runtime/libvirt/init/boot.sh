# lxcf: the second half of a container's init, in its cgroup namespace: mount
# each cgroup hierarchy again so that it shows the container's own cgroups as
# its root, as systemd expects, then boot.
set -u
c=/sys/fs/cgroup
# Read first: the loop adds mounts to the table it would otherwise still be reading.
mounts=$(grep -E '^[^ ]+ [^ ]+ cgroup2? ' /proc/self/mounts)
printf '%s\n' "$mounts" | while read -r _ dir type opts _; do
    umount "$dir" && mount -t "$type" -o "$opts" "$type" "$dir" || {
        echo "lxcf init: cannot mount $dir again in the container's cgroup namespace" >&2
        exit 1
    }
done || exit 1
[ "$(stat -f -c %T $c)" = cgroup2fs ] || mount -o remount,ro $c
exec /sbin/init
