//! From "a block device or any path on one" to the whole disk that block I/O
//! throttles apply to.
//!
//! The kernel's throttles (blkio.throttle.* on v1, io.max on v2) take whole disks
//! only: a partition's major:minor is refused. So a path resolves to the device it
//! lives on (`st_dev`), or is (`st_rdev` of a device node), then to that partition's
//! disk through /sys/dev/block. libvirt wants a device node path, which it stats
//! itself, so the result is `/dev/NAME` checked to be that very device.
//! Filesystems without a backing block device (tmpfs, overlay, proc) and btrfs, whose
//! files report an anonymous device, are refused: there is no disk to name.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::HostError;
use crate::resources::ResourceError;

/// `MAJ:MIN` of a `dev_t`, as /sys/dev/block and the cgroup files write it.
pub fn dev_id(dev: u64) -> String {
    format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev))
}

/// The `DEVNAME=` of a device's uevent file in sysfs.
fn devname(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("uevent")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("DEVNAME=")).map(str::to_string)
}

/// The whole disk of `MAJ:MIN` (itself unless it is a partition): its `MAJ:MIN` and
/// its name under /dev, read from the sysfs tree at `sys`.
pub fn whole_disk(sys: &Path, id: &str) -> Option<(String, String)> {
    let dir = sys.join("dev/block").join(id);
    let dir = std::fs::canonicalize(&dir).ok()?;
    let disk = if dir.join("partition").exists() { dir.parent()?.to_path_buf() } else { dir };
    let id = std::fs::read_to_string(disk.join("dev")).ok()?.trim().to_string();
    Some((id, devname(&disk)?))
}

/// The device node under `dev` of the whole disk that holds `path` (or that `path`
/// is), using the sysfs tree at `sys`.
pub fn disk_of(path: &Path, sys: &Path, dev: &Path) -> Result<PathBuf, ResourceError> {
    let md = std::fs::metadata(path).map_err(|source| ResourceError::NoPath { path: path.to_path_buf(), source })?;
    let id = if md.file_type().is_block_device() { md.rdev() } else { md.dev() };
    let not_block = || ResourceError::NotBlock { path: path.to_path_buf() };
    if rustix::fs::major(id) == 0 {
        return Err(not_block());
    }
    let (disk_id, name) = whole_disk(sys, &dev_id(id)).ok_or_else(not_block)?;
    let node = dev.join(&name);
    match std::fs::metadata(&node) {
        Ok(m) if m.file_type().is_block_device() && dev_id(m.rdev()) == disk_id => Ok(node),
        _ => Err(HostError::Parse { path: node, text: format!("not block device {disk_id}") }.into()),
    }
}

/// The device node of `MAJ:MIN` for display (`/dev/NAME`), or the number itself.
pub fn name_of(sys: &Path, id: &str) -> String {
    devname(&sys.join("dev/block").join(id)).map(|n| format!("/dev/{n}")).unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs tree with disk 8:0 (sda) and its partition 8:1 (sda1).
    fn fake_sys() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let disk = t.path().join("devices/pci0/block/sda");
        let part = disk.join("sda1");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(disk.join("dev"), "8:0\n").unwrap();
        std::fs::write(disk.join("uevent"), "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n").unwrap();
        std::fs::write(part.join("dev"), "8:1\n").unwrap();
        std::fs::write(part.join("partition"), "1\n").unwrap();
        std::fs::write(part.join("uevent"), "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\n").unwrap();
        let links = t.path().join("dev/block");
        std::fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink("../../devices/pci0/block/sda", links.join("8:0")).unwrap();
        std::os::unix::fs::symlink("../../devices/pci0/block/sda/sda1", links.join("8:1")).unwrap();
        t
    }

    #[test]
    fn partitions_resolve_to_their_disk() {
        let sys = fake_sys();
        assert_eq!(whole_disk(sys.path(), "8:1"), Some(("8:0".into(), "sda".into())));
        assert_eq!(whole_disk(sys.path(), "8:0"), Some(("8:0".into(), "sda".into())));
        assert_eq!(whole_disk(sys.path(), "9:9"), None);
        assert_eq!(name_of(sys.path(), "8:1"), "/dev/sda1");
        assert_eq!(name_of(sys.path(), "9:9"), "9:9");
    }

    #[test]
    fn paths_without_a_disk_are_refused() {
        // /proc has an anonymous device; /dev/null is a character device on devtmpfs.
        for p in ["/proc/self", "/dev/null"] {
            let e = disk_of(Path::new(p), Path::new("/sys"), Path::new("/dev")).unwrap_err();
            assert!(matches!(e, ResourceError::NotBlock { .. }), "{p}: {e}");
        }
        let e = disk_of(Path::new("/nonexistent/x"), Path::new("/sys"), Path::new("/dev")).unwrap_err();
        assert_eq!(e.to_string(), "cannot find /nonexistent/x");
    }
}
