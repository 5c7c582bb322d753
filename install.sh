#!/bin/sh
# Installs lxcf on this Debian or Fedora host: the packages it needs, a running
# libvirtd, the `lxcf` binary in /usr/local/bin and a default /etc/lxcf/lxcf.conf.
#
#   sudo ./install.sh && sudo lxcf sysgen web1
set -eu
cd "$(dirname "$0")"
scripts/setup-host --build
. scripts/find-cargo
cargo build --release --locked -p lxcf
install -m 0755 target/release/lxcf /usr/local/bin/lxcf
if [ ! -e /etc/lxcf/lxcf.conf ]; then
    install -D -m 0644 etc/lxcf.conf /etc/lxcf/lxcf.conf
fi
echo "install.sh: lxcf installed as /usr/local/bin/lxcf; configuration in /etc/lxcf/lxcf.conf" >&2
