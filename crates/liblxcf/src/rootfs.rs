//! Building a container root from the host (the layout table) and giving it its
//! own identity.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::copy::{self, CopyError, Stats};
use crate::layout::{Action, Model, ENTRIES, EXCLUDED};
use crate::scoped::{Root, ScopedError};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Scoped(#[from] ScopedError),
    #[error("cannot {op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the source tree {} has no /{what}; it must be a full system", source_dir.display())]
    Incomplete { source_dir: PathBuf, what: &'static str },
}

type Result<T> = std::result::Result<T, RootfsError>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io { op, path: path.to_path_buf(), source }
}

/// Fills the existing, empty directory `dest` from `source` following the layout table.
/// `skip_dirs` are directories never copied (lxcf's own container root).
pub fn build(model: Model, source: &Path, dest: &Path, skip_dirs: &[(u64, u64)], ctl: &copy::Control) -> Result<Stats> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut copies: Vec<&str> = Vec::new();
    for entry in ENTRIES {
        let src = source.join(entry.path);
        let dst = dest.join(entry.path);
        match entry.action(model) {
            Action::Copy => match std::fs::symlink_metadata(&src) {
                Ok(m) if m.is_dir() => copies.push(entry.path),
                Ok(_) => copy::copy_entry(&src, &dst)?,
                Err(_) => return Err(RootfsError::Incomplete { source_dir: source.into(), what: entry.path }),
            },
            Action::Mirror => match std::fs::symlink_metadata(&src) {
                Ok(m) if m.is_dir() => copies.push(entry.path),
                Ok(_) => copy::copy_entry(&src, &dst)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("stat", &src)(e)),
            },
            Action::BindReadOnly | Action::AtStart(_) | Action::Empty(_) | Action::BashrcOnly => {
                let mode = match entry.action(model) {
                    Action::AtStart(m) | Action::Empty(m) => m,
                    Action::BashrcOnly => 0o700,
                    _ => 0o755,
                };
                std::fs::DirBuilder::new().mode(mode).create(&dst).map_err(io("create", &dst))?;
                // The umask may have cleared bits (sticky /tmp): set the mode exactly.
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", &dst))?;
                if entry.action(model) == Action::BashrcOnly {
                    let rc = src.join(".bashrc");
                    if rc.exists() {
                        copy::copy_entry(&rc, &dst.join(".bashrc"))?;
                    }
                }
            }
        }
    }
    // All trees with one set of workers: /usr (separate) dwarfs the rest, and the
    // workers share its directories.
    let jobs: Vec<copy::Job> = copies
        .iter()
        .map(|top| {
            let opts = copy::Options {
                prune: EXCLUDED
                    .iter()
                    .filter_map(|x| x.path.strip_prefix(top).and_then(|r| r.strip_prefix('/')).map(|r| (r.into(), x.prune)))
                    .collect(),
                skip_dirs: skip_dirs.to_vec(),
            };
            copy::Job::new(source.join(top), dest.join(top), opts)
        })
        .collect();
    let total = copy::copy_trees(&jobs, ctl)?;
    Ok(total)
}

/// Everything that makes a container itself rather than a copy of the host.
pub struct Identity<'a> {
    pub name: &'a str,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

const SSH_KEYGEN_UNIT: &str = "\
# Written by lxcf: the host's SSH host keys are not copied into containers,
# so each container makes its own at first boot.
[Unit]
Description=Generate this container's SSH host keys
Before=ssh.service sshd.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
";

/// Writes the container's identity into its root. Every path is resolved inside
/// the root ([`crate::scoped`]): a root copied from a host or cloned from another
/// container may hold symlinks that point anywhere.
pub fn apply_identity(root: &Root, id: &Identity) -> Result<()> {
    let p = Path::new;
    root.write(p("/etc/hostname"), format!("{}\n", id.name).as_bytes(), 0o644)?;

    // A fresh machine-id. systemd would otherwise take D-Bus's copy of the host's.
    root.write(p("/etc/machine-id"), format!("{}\n", uuid::Uuid::new_v4().simple()).as_bytes(), 0o444)?;
    if root.file_type(p("/var/lib/dbus"))?.is_some() {
        root.symlink(p("/var/lib/dbus/machine-id"), p("/etc/machine-id"))?;
    }

    // No host SSH host keys; new ones at first boot.
    for n in root.list(p("/etc/ssh"))? {
        if n.to_string_lossy().starts_with("ssh_host_") {
            root.remove(&p("/etc/ssh").join(&n))?;
        }
    }
    if root.file_type(p("/etc/ssh/sshd_config"))?.is_some() {
        root.mkdir_all(p("/etc/systemd/system/multi-user.target.wants"), 0o755)?;
        root.write(p("/etc/systemd/system/lxcf-ssh-keygen.service"), SSH_KEYGEN_UNIT.as_bytes(), 0o644)?;
        root.symlink(
            p("/etc/systemd/system/multi-user.target.wants/lxcf-ssh-keygen.service"),
            p("../lxcf-ssh-keygen.service"),
        )?;
    }

    root.write(
        p("/etc/fstab"),
        b"# Written by lxcf: libvirt mounts this container's filesystems; the host's mounts are not here.\n",
        0o644,
    )?;
    root.write(
        p("/etc/hosts"),
        format!(
            "127.0.0.1\tlocalhost\n{}\t{}\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
            id.ip, id.name
        )
        .as_bytes(),
        0o644,
    )?;
    network_config(root, id)?;
    Ok(())
}

/// libvirt sets eth0's address and route before init starts. The host's network
/// configuration (DHCP on its own interface names, static addresses) must not run
/// in the container and fight it; the loopback stays configured.
fn network_config(root: &Root, id: &Identity) -> Result<()> {
    let p = Path::new;
    // Debian ifupdown.
    if root.file_type(p("/etc/network/interfaces"))?.is_some() {
        root.write(
            p("/etc/network/interfaces"),
            b"# Written by lxcf: eth0 is configured by libvirt before the container starts.\nauto lo\niface lo inet loopback\n",
            0o644,
        )?;
    }
    for n in root.list(p("/etc/network/interfaces.d"))? {
        root.remove(&p("/etc/network/interfaces.d").join(n))?;
    }
    // systemd-networkd, netplan, Fedora's ifcfg files, NetworkManager profiles.
    for (dir, keep) in [
        ("/etc/systemd/network", None),
        ("/etc/netplan", None),
        ("/etc/sysconfig/network-scripts", Some("ifcfg-lo")),
        ("/etc/NetworkManager/system-connections", None),
    ] {
        for n in root.list(p(dir))? {
            let s = n.to_string_lossy();
            let host_specific = match dir {
                "/etc/systemd/network" => s.ends_with(".network") || s.ends_with(".netdev"),
                "/etc/netplan" => s.ends_with(".yaml"),
                "/etc/sysconfig/network-scripts" => s.starts_with("ifcfg-") && Some(&*s) != keep,
                _ => true,
            };
            if host_specific {
                root.remove(&p(dir).join(&n))?;
            }
        }
    }
    if root.file_type(p("/etc/NetworkManager"))?.is_some() {
        root.mkdir_all(p("/etc/NetworkManager/conf.d"), 0o755)?;
        root.write(
            p("/etc/NetworkManager/conf.d/90-lxcf.conf"),
            b"# Written by lxcf: libvirt configures eth0.\n[keyfile]\nunmanaged-devices=interface-name:eth0\n",
            0o644,
        )?;
    }
    // Name service through the network's dnsmasq, unless a resolver manager owns the file.
    match root.file_type(p("/etc/resolv.conf"))? {
        Some(rustix::fs::FileType::Symlink) => {}
        _ => root.write(p("/etc/resolv.conf"), format!("nameserver {}\n", id.gateway).as_bytes(), 0o644)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A small host-like tree: merged /usr, /etc with identity files, /var with logs.
    fn host(src: &Path) {
        for d in ["usr/bin", "usr/lib", "usr/sbin", "etc/ssh", "etc/network/interfaces.d", "etc/systemd/network",
            "var/log/journal/abc", "var/log/app", "var/lib/dbus", "var/lib/pkg", "var/tmp", "root", "home/user"]
        {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        fs::write(src.join("usr/bin/prog"), b"#!/bin/sh\n").unwrap();
        symlink("usr/bin", src.join("bin")).unwrap();
        symlink("usr/sbin", src.join("sbin")).unwrap();
        symlink("usr/lib", src.join("lib")).unwrap();
        fs::write(src.join("etc/machine-id"), b"0123456789abcdef0123456789abcdef\n").unwrap();
        fs::write(src.join("var/lib/dbus/machine-id"), b"0123456789abcdef0123456789abcdef\n").unwrap();
        fs::write(src.join("etc/hostname"), b"thehost\n").unwrap();
        fs::write(src.join("etc/fstab"), b"/dev/vda / ext4 defaults 0 1\n").unwrap();
        fs::write(src.join("etc/ssh/sshd_config"), b"").unwrap();
        fs::write(src.join("etc/ssh/ssh_host_ed25519_key"), b"secret").unwrap();
        fs::write(src.join("etc/ssh/ssh_host_ed25519_key.pub"), b"pub").unwrap();
        fs::write(src.join("etc/network/interfaces"), b"auto eth0\niface eth0 inet dhcp\n").unwrap();
        fs::write(src.join("etc/network/interfaces.d/eth1"), b"iface eth1 inet dhcp\n").unwrap();
        fs::write(src.join("etc/systemd/network/10-eth.network"), b"[Match]\n").unwrap();
        fs::write(src.join("etc/resolv.conf"), b"nameserver 10.0.0.53\n").unwrap();
        fs::write(src.join("var/log/syslog"), b"host log").unwrap();
        fs::write(src.join("var/log/app/app.log"), b"host log").unwrap();
        fs::write(src.join("var/log/journal/abc/system.journal"), b"j").unwrap();
        fs::write(src.join("var/lib/pkg/status"), b"installed").unwrap();
        fs::write(src.join("var/tmp/junk"), b"j").unwrap();
        fs::write(src.join("root/.bashrc"), b"# rc").unwrap();
        fs::write(src.join("root/.secret"), b"s").unwrap();
        fs::write(src.join("home/user/file"), b"u").unwrap();
    }

    fn built(model: Model) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        host(&src);
        let dest = tmp.path().join("c1");
        fs::create_dir(&dest).unwrap();
        build(model, &src, &dest, &[], &Default::default()).unwrap();
        (tmp, dest)
    }

    #[test]
    fn joint_follows_the_table() {
        let (_t, d) = built(Model::Joint);
        assert!(d.join("usr").is_dir() && fs::read_dir(d.join("usr")).unwrap().count() == 0, "usr is a mount point");
        assert_eq!(fs::read_link(d.join("bin")).unwrap(), Path::new("usr/bin"));
        assert!(!d.join("lib64").exists(), "lib64 only where the host has it");
        assert_eq!(fs::read(d.join("var/lib/pkg/status")).unwrap(), b"installed");
        assert_eq!(fs::read(d.join("root/.bashrc")).unwrap(), b"# rc");
        assert!(!d.join("root/.secret").exists());
        assert_eq!(fs::metadata(d.join("root")).unwrap().permissions().mode() & 0o7777, 0o700);
        assert_eq!(fs::metadata(d.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
        for e in ["home", "boot", "mnt", "opt", "srv", "media", "dev", "proc", "sys", "run"] {
            assert_eq!(fs::read_dir(d.join(e)).unwrap().count(), 0, "{e} is empty");
        }
        // Exclusions.
        assert!(d.join("var/log/app").is_dir());
        assert!(!d.join("var/log/syslog").exists() && !d.join("var/log/app/app.log").exists());
        assert_eq!(fs::read_dir(d.join("var/log/journal")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(d.join("var/tmp")).unwrap().count(), 0);
        assert!(!d.join("etc/machine-id").exists());
        assert!(!d.join("var/lib/dbus/machine-id").exists());
    }

    #[test]
    fn separate_copies_usr() {
        let (_t, d) = built(Model::Separate);
        assert_eq!(fs::read(d.join("usr/bin/prog")).unwrap(), b"#!/bin/sh\n");
    }

    #[test]
    fn identity_is_new() {
        let (_t, d) = built(Model::Joint);
        let r = Root::open(&d).unwrap();
        let id = Identity { name: "web1", ip: "192.168.125.2".parse().unwrap(), gateway: "192.168.125.1".parse().unwrap() };
        apply_identity(&r, &id).unwrap();
        assert_eq!(fs::read_to_string(d.join("etc/hostname")).unwrap(), "web1\n");
        let mid = fs::read_to_string(d.join("etc/machine-id")).unwrap();
        assert_eq!(mid.trim().len(), 32);
        assert!(mid.trim().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(mid.trim(), "0123456789abcdef0123456789abcdef");
        assert_eq!(fs::read_link(d.join("var/lib/dbus/machine-id")).unwrap(), Path::new("/etc/machine-id"));
        assert!(!d.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(!d.join("etc/ssh/ssh_host_ed25519_key.pub").exists());
        assert!(d.join("etc/systemd/system/multi-user.target.wants/lxcf-ssh-keygen.service").exists());
        assert!(!fs::read_to_string(d.join("etc/fstab")).unwrap().contains("/dev/vda"));
        let hosts = fs::read_to_string(d.join("etc/hosts")).unwrap();
        assert!(hosts.contains("192.168.125.2\tweb1") && hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
        let ifaces = fs::read_to_string(d.join("etc/network/interfaces")).unwrap();
        assert!(!ifaces.contains("eth0") || ifaces.starts_with('#') && !ifaces.contains("dhcp"), "{ifaces}");
        assert!(!d.join("etc/network/interfaces.d/eth1").exists());
        assert!(!d.join("etc/systemd/network/10-eth.network").exists());
        assert_eq!(fs::read_to_string(d.join("etc/resolv.conf")).unwrap(), "nameserver 192.168.125.1\n");
        // Two containers never share a machine-id.
        apply_identity(&r, &id).unwrap();
        assert_ne!(fs::read_to_string(d.join("etc/machine-id")).unwrap(), mid);
    }

    #[test]
    fn source_without_etc_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("c");
        fs::create_dir(&dest).unwrap();
        let e = build(Model::Joint, tmp.path(), &dest, &[], &Default::default()).unwrap_err().to_string();
        assert!(e.contains("has no /etc"), "{e}");
    }
}
