#!/bin/sh
# Installs lxcf on this Debian or Fedora host: the packages it needs, a running
# libvirtd, the `lxcf` binary in /usr/local/bin, its shell completions and man
# pages, and a default /etc/lxcf/lxcf.conf.
#
#   ./install.sh && lxcf sysgen web1          # as root
#   PREFIX=/opt/lxcf ./install.sh             # somewhere else than /usr/local
#
# Rust comes from rustup if the host has none (the distributions' is too old).
set -eu
cd "$(dirname "$0")"
prefix=${PREFIX:-/usr/local}
scripts/setup-host --build
LXCF_INSTALL_RUST=1
. scripts/find-cargo
cargo build --release --locked -p lxcf
install -D -m 0755 target/release/lxcf "$prefix/bin/lxcf"
# Completions and man pages are generated from the command definition, so they
# always match the binary. bash-completion looks in $XDG_DATA_DIRS, which has
# /usr/local/share by default.
lxcf="$prefix/bin/lxcf"
share="$prefix/share"
install -d "$share/bash-completion/completions" "$share/zsh/site-functions" \
    "$share/fish/vendor_completions.d" "$share/man/man1"
"$lxcf" completions bash >"$share/bash-completion/completions/lxcf"
"$lxcf" completions zsh >"$share/zsh/site-functions/_lxcf"
"$lxcf" completions fish >"$share/fish/vendor_completions.d/lxcf.fish"
"$lxcf" manpages "$share/man/man1"
if [ ! -e /etc/lxcf/lxcf.conf ]; then
    install -D -m 0644 etc/lxcf.conf /etc/lxcf/lxcf.conf
fi
echo "install.sh: lxcf installed as $lxcf (completions, man lxcf); configuration in /etc/lxcf/lxcf.conf" >&2
