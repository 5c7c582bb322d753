#!/bin/sh
# Time of `lxcf update dpkg -i SMALL.deb` for 1, 3 and 10 joint containers, next to
# the same `dpkg -i` on the host alone in the same run, and the containers' downtime.
#
# Usage: bench/update.sh [REPS] [COUNTS] [LXCF]     (root, libvirtd running; Debian host)
#   REPS    repetitions per count (default 3); COUNTS default "1 3 10"
#
# Works in its own root, hosts file and isolated network (lxcfbench4, 10.217.0.0/24,
# no forwarding); removes them, and the package from the host, at the end.
set -eu
reps=${1:-3}
counts=${2:-"1 3 10"}
lxcf=${3:-$(dirname "$0")/../target/release/lxcf}
[ -x "$lxcf" ] || { echo "build first: cargo build --release -p lxcf" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "needs dpkg (a Debian host)" >&2; exit 1; }
pkg=lxcf-bench-hello
work=$(mktemp -d /opt/lxcf-bench-update.XXXXXX)
virsh() { command virsh -q -c lxc:/// "$@"; }
cleanup() {
    dpkg --purge "$pkg" >/dev/null 2>&1 || true
    for d in $(virsh list --all --name | grep '^lxcfb4-' || true); do
        virsh destroy "$d" >/dev/null 2>&1 || true
        virsh undefine "$d" >/dev/null 2>&1 || true
    done
    virsh net-destroy lxcfbench4 >/dev/null 2>&1 || true
    virsh net-undefine lxcfbench4 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A small package: a program, a conffile, a postinst writing to /var.
p=$work/pkg
mkdir -p "$p/DEBIAN" "$p/usr/bin" "$p/etc"
printf 'Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: lxcf bench <root@localhost>\nDescription: lxcf bench package\n' "$pkg" >"$p/DEBIAN/control"
echo "/etc/$pkg.conf" >"$p/DEBIAN/conffiles"
printf '#!/bin/sh\nset -e\nmkdir -p /var/lib/%s\nhostname > /var/lib/%s/state\n' "$pkg" "$pkg" >"$p/DEBIAN/postinst"
printf '#!/bin/sh\necho hello\n' >"$p/usr/bin/$pkg"
echo "greeting=hello" >"$p/etc/$pkg.conf"
chmod 755 "$p/DEBIAN/postinst" "$p/usr/bin/$pkg"
deb=$work/$pkg.deb
dpkg-deb --root-owner-group -b "$p" "$deb" >/dev/null

. "$(dirname "$0")/common.sh"
bench_config joint lxcfbench4 10.217.0.0/24

sub() { echo "$1 - $2" | bc; }
running() { # every container's systemd reports running (or degraded)
    for c in $names; do
        s=$(virsh lxc-enter-namespace "$c" --noseclabel -- /bin/systemctl is-system-running 2>/dev/null || true)
        case "$s" in running | degraded) ;; *) return 1 ;; esac
    done
}
wait_running() {
    i=0
    until running; do
        i=$((i + 1))
        [ $i -lt 3000 ] || { echo "containers did not come up in 300 s" >&2; exit 1; }
        sleep 0.1
    done
}
# From lxcf's JSON report (pretty-printed, one key per line): the longest
# stop-to-start, and the time of each phase.
downtime() {
    awk -F': ' '/"downtime_seconds"/ { v = $2; sub(/,$/, "", v); if (v != "null" && v + 0 > m) m = v + 0 } END { printf "%.3f\n", m }'
}
phases() {
    awk '/"phase_seconds"/ { f = 1; next } f && /}/ { f = 0 } f { gsub(/[":,]/, ""); printf "%s %.2f ", $1, $2 }'
}

fail() {
    echo "lxcf update failed:" >&2
    cat "$work/err" >&2
    exit 1
}

sync
echo 3 >/proc/sys/vm/drop_caches
made=0
echo "count rep | host dpkg -i | lxcf update | ratio | down: stop..start | update..all systemd running | update --purge | phases of the update (s)"
for n in $counts; do
    while [ $made -lt "$n" ]; do
        "$lxcf" sysgen "lxcfb4-$made" >/dev/null 2>&1
        made=$((made + 1))
    done
    names=$(seq -f 'lxcfb4-%g' 0 $((n - 1)))
    # The extra containers of an earlier, larger count would be updated too: none here,
    # counts go up. Wait until every container has booted, so stops are real shutdowns.
    wait_running
    for r in $(seq 1 "$reps"); do
        t0=$(now); dpkg -i "$deb" >/dev/null; t1=$(now)
        dpkg --purge "$pkg" >/dev/null
        t2=$(now); "$lxcf" update --json dpkg -i "$deb" >"$work/out.json" 2>"$work/err" || fail; t3=$(now)
        wait_running; t4=$(now)
        down=$(downtime <"$work/out.json")
        t5=$(now); "$lxcf" update dpkg --purge "$pkg" 2>"$work/err" || fail; t6=$(now)
        wait_running
        host=$(sub "$t1" "$t0"); upd=$(sub "$t3" "$t2")
        printf '%5s %3s | %8.3f s | %8.3f s | %5.1f | %8.3f s | %8.3f s | %8.3f s | %s\n' "$n" "$r" \
            "$host" "$upd" "$(echo "$upd / $host" | bc -l)" "$down" "$(sub "$t4" "$t2")" "$(sub "$t6" "$t5")" \
            "$(phases <"$work/out.json")"
    done
done
