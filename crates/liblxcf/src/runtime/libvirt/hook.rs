//! What lxcf's libvirt hook (`etc/libvirt/hooks/lxc.d/lxcf`) asks of the lxcf
//! executable: `lxcf hook-prepare NAME`, run by libvirtd before it starts an
//! unprivileged container, with the domain XML on stdin. It mounts the trees the
//! domain's filesystems name under [`xml::IDMAP_DIR`] with the container's owners
//! mapped, in libvirtd's mount namespace (where the hook runs). It must not call
//! libvirt: libvirtd waits for the hook.

use std::path::{Path, PathBuf};

use super::xml;
use crate::error::{self, Error, Result};
use crate::host::idmap;

/// An ID-mapped mount: the host tree, where it goes, read-only.
pub type IdMount = (PathBuf, PathBuf, bool);

/// The first host ID of `name`'s domain and the ID-mapped mounts it needs.
pub fn mounts_of(name: &str, domain_xml: &str) -> Result<(u32, Vec<IdMount>)> {
    let bad = |what: &str| Error::Runtime(crate::runtime::RuntimeError::Op { op: "prepare", object: name.into(), msg: what.into() });
    let spec = xml::parse_spec(domain_xml).map_err(|e| bad(&e.to_string()))?;
    let base = spec.meta.ids.ok_or_else(|| bad("it has no range of host IDs"))?;
    let dir = Path::new(xml::IDMAP_DIR).join(name);
    let mut out = vec![(spec.meta.root.clone(), dir.join("root"), false)];
    for m in &spec.mounts {
        out.push((m.source.clone(), dir.join("host").join(m.source.strip_prefix("/").unwrap_or(&m.source)), m.readonly));
    }
    Ok((base, out))
}

/// Mounts them (again, if an earlier start left them).
pub fn prepare(name: &str, domain_xml: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let (base, mounts) = mounts_of(name, domain_xml)?;
    let top = Path::new(xml::IDMAP_DIR);
    // Traversable by every container's root, listable by none.
    for d in [top.parent().unwrap_or(top), top] {
        std::fs::DirBuilder::new().recursive(true).mode(0o711).create(d).map_err(error::io("create", d))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).map_err(error::io("chmod", d))?;
    }
    // The container's own: its root may enter, no one else but the host's root.
    let dir = top.join(name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(error::io("create", &dir)(e).into()),
        _ => {}
    }
    std::os::unix::fs::chown(&dir, Some(base), Some(base)).map_err(error::io("chown", &dir))?;
    let ns = idmap::userns(base, idmap::COUNT)?;
    for (src, at, readonly) in mounts {
        std::fs::create_dir_all(&at).map_err(error::io("create", &at))?;
        while idmap::is_mountpoint(&at) {
            rustix::mount::unmount(&at, rustix::mount::UnmountFlags::DETACH).map_err(error::io("unmount", &at))?;
        }
        idmap::mount(&src, &at, &ns, readonly)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mounts_follow_the_definition() {
        let x = "<domain type='lxc'><name>u1</name><uuid>00000000-0000-0000-0000-000000000000</uuid><metadata>\
                 <lxcf:container xmlns:lxcf='https://lxcf.github.io/xmlns/container/1'><lxcf:model>joint</lxcf:model>\
                 <lxcf:ip>10.0.0.2</lxcf:ip><lxcf:root>/opt/lxc/u1</lxcf:root><lxcf:network>n</lxcf:network>\
                 <lxcf:version>0.2.0</lxcf:version><lxcf:ids>1065536</lxcf:ids></lxcf:container></metadata><devices>\
                 <filesystem type='mount'><source dir='/run/lxcf/idmap/u1/root'/><target dir='/'/></filesystem>\
                 <filesystem type='mount'><source dir='/run/lxcf/idmap/u1/host/usr'/><target dir='/usr'/><readonly/></filesystem>\
                 </devices></domain>";
        let (base, m) = mounts_of("u1", x).unwrap();
        assert_eq!(base, 1_065_536);
        assert_eq!(
            m,
            vec![
                ("/opt/lxc/u1".into(), "/run/lxcf/idmap/u1/root".into(), false),
                ("/usr".into(), "/run/lxcf/idmap/u1/host/usr".into(), true)
            ]
        );
    }
}
