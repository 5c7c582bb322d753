# lxcf: the first half of a container's init (libvirt runs it as PID 1, with
# /bin/sh -c). It gives the container a cgroup of its own in every hierarchy,
# then runs the second half in a cgroup namespace rooted there.
#
# libvirt-LXC places the container in a cgroup of its own only for the
# controllers it manages, and only when systemd-machined is not there to do it
# for the others. A systemd booting in the container would then make its
# init.scope and system.slice at the roots of the host's name=systemd, pids,
# memory and devices hierarchies, shared by every container: limits set on the
# container would miss its services and its device rules would not hold. So
# every hierarchy libvirt did not place it in gets /lxcf/NAME, and the namespace
# shows the container its own cgroups as the root, as on a host of its own.
#
# In a user namespace (an unprivileged container) root here cannot make or
# enter cgroups of the host's: lxcf's libvirt hook does it from the host once
# libvirt has started this process, and gives them to the container's root; this
# waits for that (bounded), and the second half mounts the hierarchies.
# $1: the second half, run as `/bin/sh -c "$1"` in the new namespace.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin
fail() {
    echo "lxcf init: $1; the container does not start" >&2
    exit 1
}
name=${LIBVIRT_LXC_NAME:?}
cg=$(cat /proc/$$/cgroup) || fail "cannot read /proc/$$/cgroup"
# The cgroup libvirt made for the container: where it put the cpu controller
# (cgroup v1), or the one line of cgroup v2.
base=$(printf '%s\n' "$cg" | sed -n 's/^[0-9]*:\(.*,\)\{0,1\}cpu\(,.*\)\{0,1\}:\(.*\)$/\3/p')
[ -n "$base" ] || base=$(printf '%s\n' "$cg" | sed -n 's/^0:://p')
[ -n "$base" ] && [ "$base" != / ] || fail "libvirt gave it no cgroup of its own"
leaf=${base##*/}
c=/sys/fs/cgroup
read -r _ _ span </proc/self/uid_map
if [ "$span" != 4294967295 ]; then
    i=0
    while grep -qv -e "/lxcf/$name\$" -e "/$leaf\$" -e '^0::' /proc/$$/cgroup; do
        i=$((i + 1))
        [ $i -le 600 ] || fail "its cgroups were not given to it (is lxcf's libvirt hook installed?)"
        sleep 0.05
    done
elif [ "$(stat -f -c %T $c)" != cgroup2fs ]; then
    mount -o remount,rw $c || fail "cannot make $c writable"
    printf '%s\n' "$cg" | while IFS=: read -r id ctrls path; do
        [ "${path##*/}" = "$leaf" ] && continue
        case $id:$ctrls in
        0:) dir=unified type=cgroup2 opts=rw ;;
        *:name=*) dir=${ctrls#name=} type=cgroup opts=none,$ctrls ;;
        *) dir=$ctrls type=cgroup opts=$ctrls ;;
        esac
        if ! mountpoint -q $c/$dir; then
            mkdir -p $c/$dir && mount -t $type -o "$opts" cgroup $c/$dir || fail "cannot mount the $dir cgroups"
        fi
        mkdir -p "$c/$dir/lxcf/$name" && echo $$ >"$c/$dir/lxcf/$name/cgroup.procs" ||
            fail "cannot move into $c/$dir/lxcf/$name"
    done || exit 1
fi
exec unshare --cgroup /bin/sh -c "$1" lxcf-init || fail "cannot make a cgroup namespace (unshare)"
