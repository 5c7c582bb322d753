//! A container's own identity, written into its root: hostname, a new machine-id,
//! no host SSH keys, its fstab, hosts file and network configuration.

use std::net::Ipv4Addr;
use std::path::Path;

use super::scoped::{Root, ScopedError};

type Result<T> = std::result::Result<T, ScopedError>;

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
/// the root ([`crate::rootfs::scoped`]): a root copied from a host or cloned from another
/// container may hold symlinks that point anywhere.
pub fn apply(root: &Root, id: &Identity) -> Result<()> {
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
        root.symlink(p("/etc/systemd/system/multi-user.target.wants/lxcf-ssh-keygen.service"), p("../lxcf-ssh-keygen.service"))?;
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
    use crate::rootfs::layout::Model;
    use std::fs;

    #[test]
    fn identity_is_new() {
        let (_t, d) = crate::rootfs::tests::built(Model::Joint);
        let r = Root::open(&d).unwrap();
        let id = Identity { name: "web1", ip: "192.168.125.2".parse().unwrap(), gateway: "192.168.125.1".parse().unwrap() };
        apply(&r, &id).unwrap();
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
        apply(&r, &id).unwrap();
        assert_ne!(fs::read_to_string(d.join("etc/machine-id")).unwrap(), mid);
    }
}
