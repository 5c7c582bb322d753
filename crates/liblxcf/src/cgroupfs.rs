//! The cgroup file systems a process sees (from a mountinfo), and the cgroups lxcf
//! makes for each container.
//!
//! libvirt-LXC gives a container cgroups of its own only for the controllers it
//! manages, and only when systemd-machined is not there to place it in the others.
//! For every other hierarchy the container's init (virt/init/place.sh) makes
//! `/lxcf/NAME` and moves there before systemd starts; [`remove_container_cgroups`]
//! removes them when the container is undefined. The path is fixed per name, so a
//! container restarted finds its own again and nothing piles up.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The parent, in each hierarchy, of the cgroups lxcf makes for containers.
pub const LXCF_CGROUP: &str = "lxcf";

/// A cgroup hierarchy mounted somewhere, from a mountinfo.
#[derive(Debug, PartialEq)]
pub struct CgroupMount {
    /// The v1 controllers (`cpu,cpuacct`, `name=systemd`); empty for cgroup v2.
    pub ctrls: Vec<String>,
    /// The cgroup the mount shows as its root, relative to the cgroup namespace
    /// of the process reading the mountinfo.
    pub root: String,
    pub at: PathBuf,
}

/// Every cgroup (v1 and v2) mount of a mountinfo.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        let Some((left, right)) = l.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let ctrls = match right[0] {
            "cgroup2" => Vec::new(),
            "cgroup" => {
                let known = ["rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "nsdelegate"];
                right[2]
                    .split(',')
                    .filter(|o| !known.contains(o) && !o.starts_with("release_agent=") && !o.starts_with("xattr"))
                    .map(String::from)
                    .collect()
            }
            _ => continue,
        };
        let root = unescape_mountinfo(left[3]).to_string_lossy().into_owned();
        out.push(CgroupMount { ctrls, root, at: PathBuf::from(unescape_mountinfo(left[4])) });
    }
    out
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
pub fn unescape_mountinfo(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.len() >= i + 4 && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsStr::from_bytes(&out).to_os_string()
}

/// Removes `/lxcf/NAME` and what the container's systemd made under it, in every
/// hierarchy of `mountinfo` (the caller's).
/// Call it once the container has stopped: a cgroup with processes cannot go (the
/// error says which). Returns how many cgroups went.
pub fn remove_container_cgroups(mountinfo: &str, name: &str) -> io::Result<usize> {
    let mut removed = 0;
    for m in cgroup_mounts(mountinfo).iter().filter(|m| m.root == "/") {
        // `/lxcf` itself stays: a container starting meanwhile may be making its
        // own cgroup in it (`mkdir -p`).
        removed += remove_tree(&m.at.join(LXCF_CGROUP).join(name))?;
    }
    Ok(removed)
}

/// Removes a cgroup and its descendants, deepest first (a cgroup file system only
/// lets empty directories go, with rmdir). A missing one is not an error.
fn remove_tree(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", dir.display()))),
    };
    let mut n = 0;
    for e in entries {
        let e = e?;
        if e.file_type()?.is_dir() {
            n += remove_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(n + 1),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(n),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot remove cgroup {}: {e}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), OsString::from("/a b"));
        assert_eq!(unescape_mountinfo("/plain"), OsString::from("/plain"));
        assert_eq!(unescape_mountinfo("/end\\"), OsString::from("/end\\"));
    }

    #[test]
    fn mounts_with_their_controllers_and_roots() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 /lxcf/a /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
        let m = cgroup_mounts(mi);
        let ctrls: Vec<_> = m.iter().map(|m| m.ctrls.join(",")).collect();
        assert_eq!(ctrls, ["cpu", "net_cls,net_prio", "name=systemd", ""]);
        assert_eq!(m[2].root, "/lxcf/a");
        assert_eq!(m[3].at, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    /// On a plain directory tree standing in for cgroup mounts (rmdir works alike).
    #[test]
    fn a_containers_cgroups_go_and_only_those() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("memory"), t.path().join("systemd"));
        for d in ["lxcf/web1/system.slice/cron.service", "lxcf/web1/init.scope", "lxcf/web2/init.scope", "machine"] {
            std::fs::create_dir_all(a.join(d)).unwrap();
        }
        std::fs::create_dir_all(b.join("lxcf/web1/init.scope")).unwrap();
        let mi = format!(
            "1 0 0:1 / {} rw - cgroup cgroup rw,memory\n2 0 0:2 / {} rw - cgroup cgroup rw,name=systemd\n",
            a.display(),
            b.display()
        );
        assert_eq!(remove_container_cgroups(&mi, "web1").unwrap(), 4 + 2);
        assert!(!a.join("lxcf/web1").exists() && a.join("lxcf/web2/init.scope").is_dir() && a.join("machine").is_dir());
        assert!(!b.join("lxcf/web1").exists() && b.join("lxcf").is_dir());
        assert_eq!(remove_container_cgroups(&mi, "web1").unwrap(), 0, "nothing left: not an error");
    }
}
