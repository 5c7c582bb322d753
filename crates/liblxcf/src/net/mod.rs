//! Addresses for containers, and the block of the host's hosts file that lxcf owns.
//!
//! Callers hold the host-wide lock ([`crate::lock`]) around allocate + add, so two
//! `lxcf sysgen` at once get different addresses and both lines survive.
//!
//! The hosts file is replaced atomically (a new file renamed over it), except where
//! that would break it: a symbolic link (/etc/hosts -> /run/...) is followed and its
//! target replaced, the link kept; a file that is a mount point of its own (bind
//! mounted over /etc/hosts) is rewritten in place, as rename cannot replace it.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no free address left in {subnet} ({used} in use)")]
    Full { subnet: Ipv4Net, used: usize },
    #[error("cannot {op} hosts file {}", path.display())]
    Hosts { op: &'static str, path: PathBuf, source: std::io::Error },
}

/// The lowest address of `subnet` that is not the network, broadcast, gateway or `used`.
pub fn allocate(subnet: Ipv4Net, gateway: Ipv4Addr, used: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, NetError> {
    subnet.hosts().find(|a| *a != gateway && !used.contains(a)).ok_or(NetError::Full { subnet, used: used.len() })
}

const BEGIN: &str = "# BEGIN lxcf: containers, managed by lxcf (changes inside this block are lost)";
const END: &str = "# END lxcf";

/// One `IP NAME` line of lxcf's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub name: String,
}

/// The entries in lxcf's block of `text`.
pub fn parse_block(text: &str) -> Vec<HostEntry> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END {
            inside = false;
        } else if inside {
            let mut f = line.split_whitespace();
            if let (Some(ip), Some(name)) = (f.next(), f.next()) {
                if let Ok(ip) = ip.parse() {
                    out.push(HostEntry { ip, name: name.to_string() });
                }
            }
        }
    }
    out
}

/// `text` with lxcf's block replaced by `entries` (dropped when empty, appended when new).
/// Every line outside the block is kept as it was.
pub fn render(text: &str, entries: &[HostEntry]) -> String {
    let mut out = String::with_capacity(text.len() + 64 * entries.len());
    let block = |out: &mut String| {
        if !entries.is_empty() {
            out.push_str(BEGIN);
            out.push('\n');
            for e in entries {
                out.push_str(&format!("{}\t{}\n", e.ip, e.name));
            }
            out.push_str(END);
            out.push('\n');
        }
    };
    let mut inside = false;
    let mut placed = false;
    for line in text.split_inclusive('\n') {
        let bare = line.strip_suffix('\n').unwrap_or(line);
        if bare == BEGIN {
            inside = true;
            if !placed {
                block(&mut out);
                placed = true;
            }
        } else if bare == END && inside {
            inside = false;
        } else if !inside {
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    if !placed {
        block(&mut out);
    }
    out
}

/// The hosts file of the host (or of a test).
pub struct Hosts {
    pub path: PathBuf,
}

impl Hosts {
    pub fn new(path: &Path) -> Hosts {
        Hosts { path: path.to_path_buf() }
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> NetError + '_ {
        move |source| NetError::Hosts { op, path: self.path.clone(), source }
    }

    fn read(&self) -> Result<String, NetError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(self.err("read")(e)),
        }
    }

    pub fn entries(&self) -> Result<Vec<HostEntry>, NetError> {
        Ok(parse_block(&self.read()?))
    }

    /// Adds `ip name`, replacing an older line for `name`.
    pub fn add(&self, ip: Ipv4Addr, name: &str) -> Result<(), NetError> {
        let text = self.read()?;
        let mut entries: Vec<HostEntry> = parse_block(&text).into_iter().filter(|e| e.name != name).collect();
        entries.push(HostEntry { ip, name: name.to_string() });
        self.write(&render(&text, &entries))
    }

    /// Removes `name`'s line; true if there was one.
    pub fn remove(&self, name: &str) -> Result<bool, NetError> {
        let text = self.read()?;
        let before = parse_block(&text);
        let entries: Vec<HostEntry> = before.iter().filter(|e| e.name != name).cloned().collect();
        if entries.len() == before.len() {
            return Ok(false);
        }
        self.write(&render(&text, &entries))?;
        Ok(true)
    }

    /// The file whose text to change: the hosts file, or where its symbolic links lead
    /// (each relative link read against its own directory). A target that does not
    /// exist yet is returned as it is, to be created.
    fn target(&self) -> Result<PathBuf, NetError> {
        let mut p = self.path.clone();
        // As many links as the kernel follows in one path (MAXSYMLINKS).
        for _ in 0..40 {
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let link = std::fs::read_link(&p).map_err(self.err("resolve"))?;
                    // An absolute link replaces the whole path (Path::join).
                    p = p.parent().unwrap_or(Path::new("/")).join(link);
                }
                _ => return Ok(p),
            }
        }
        Err(self.err("resolve")(std::io::Error::from_raw_os_error(libc::ELOOP)))
    }

    /// Writes `text` as the whole file, under the caller's host-wide lock.
    fn write(&self, text: &str) -> Result<(), NetError> {
        let target = self.target()?;
        let at = &target;
        let err = |op| move |source| NetError::Hosts { op, path: at.clone(), source };
        if is_mount_point(&target).map_err(err("inspect"))? {
            return rewrite_in_place(&target, text).map_err(err("rewrite"));
        }
        match replace(&target, text) {
            // A mount point statx could not tell (a bind mount from the same
            // filesystem on a kernel without STATX_MNT_ID): rename refuses it.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EXDEV)) => {
                rewrite_in_place(&target, text).map_err(err("rewrite"))
            }
            r => r.map_err(err("write")),
        }
    }
}

/// Whether `path` is a mount point of its own, as a file bind-mounted over another
/// is: it lies on another mount than its directory. A missing file is not.
fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file = match statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID) {
        Ok(f) => f,
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let parent = statx(CWD, dir, AtFlags::empty(), StatxFlags::MNT_ID)?;
    let has_mnt_id = |x: &rustix::fs::Statx| x.stx_mask & StatxFlags::MNT_ID.bits() != 0;
    if has_mnt_id(&file) && has_mnt_id(&parent) {
        return Ok(file.stx_mnt_id != parent.stx_mnt_id);
    }
    Ok((file.stx_dev_major, file.stx_dev_minor) != (parent.stx_dev_major, parent.stx_dev_minor))
}

/// Temporary file in the same directory, same owner and mode, fsync, rename:
/// readers see the old file or the new one, never a half-written one.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.lxcf-{}", std::process::id()));
    let old = std::fs::metadata(path).ok();
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        if let Some(m) = &old {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
            f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Rewrites a file that is a mount point in place (same inode: owner and mode stay).
/// rename cannot replace a mount point (EBUSY), and where the mount is another
/// namespace's, renaming over the name would replace only what lies under it.
///
/// Not atomic for readers: one reading meanwhile may see the new text followed by the
/// rest of the old. Written first and cut to length after, so that no reader ever
/// sees an empty or shortened file (a missing localhost line breaks resolvers);
/// writers are kept out by the host-wide lock the callers hold.
fn rewrite_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    f.write_all(text.as_bytes())?;
    f.set_len(text.len() as u64)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<Ipv4Addr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn lowest_free_address() {
        let net: Ipv4Net = "192.168.125.0/24".parse().unwrap();
        let gw = "192.168.125.1".parse().unwrap();
        assert_eq!(allocate(net, gw, &set(&[])).unwrap().to_string(), "192.168.125.2");
        assert_eq!(allocate(net, gw, &set(&["192.168.125.2", "192.168.125.4"])).unwrap().to_string(), "192.168.125.3");
    }

    #[test]
    fn full_subnet() {
        let net: Ipv4Net = "10.0.0.0/30".parse().unwrap(); // hosts .1 and .2
        let gw = "10.0.0.1".parse().unwrap();
        assert_eq!(allocate(net, gw, &set(&[])).unwrap().to_string(), "10.0.0.2");
        let e = allocate(net, gw, &set(&["10.0.0.2"])).unwrap_err();
        assert!(e.to_string().contains("no free address left in 10.0.0.0/30"), "{e}");
    }

    #[test]
    fn block_round_trip_keeps_other_lines() {
        let text = "127.0.0.1 localhost\n# my comment\n10.1.1.1 myhost\n";
        let e1 = HostEntry { ip: "192.168.125.2".parse().unwrap(), name: "web1".into() };
        let e2 = HostEntry { ip: "192.168.125.3".parse().unwrap(), name: "db1".into() };
        let t1 = render(text, &[e1.clone(), e2.clone()]);
        assert!(t1.starts_with(text));
        assert_eq!(parse_block(&t1), vec![e1.clone(), e2.clone()]);
        let t2 = render(&(t1.clone() + "10.2.2.2 later\n"), std::slice::from_ref(&e2));
        assert_eq!(parse_block(&t2), vec![e2]);
        assert!(t2.contains("10.2.2.2 later\n") && t2.contains("10.1.1.1 myhost\n"));
        let t3 = render(&t2, &[]);
        assert_eq!(t3, text.to_string() + "10.2.2.2 later\n");
        assert_eq!(render("no newline", &[]), "no newline\n");
    }

    #[test]
    fn hosts_file_add_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let h = Hosts::new(&path);
        h.add("10.0.0.2".parse().unwrap(), "a").unwrap();
        h.add("10.0.0.3".parse().unwrap(), "b").unwrap();
        assert_eq!(h.entries().unwrap().len(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
        assert!(h.remove("a").unwrap());
        assert!(!h.remove("a").unwrap());
        assert!(h.remove("b").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "127.0.0.1 localhost\n");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "no temporary file left");
    }

    /// /etc/hosts -> ../run/hosts (as on hosts that generate it): the target changes,
    /// the link stays a link. Before, rename replaced the link with a plain file.
    #[test]
    fn symlinked_hosts_file_changes_its_target() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let (etc, run) = (tmp.path().join("etc"), tmp.path().join("run"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(run.join("net")).unwrap();
        let target = run.join("net/hosts");
        std::fs::write(&target, "127.0.0.1 localhost\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        // A chain: etc/hosts -> hosts.d (relative) -> run/net/hosts (absolute).
        symlink("hosts.d", etc.join("hosts")).unwrap();
        symlink(&target, etc.join("hosts.d")).unwrap();
        let link = etc.join("hosts");
        let h = Hosts::new(&link);
        h.add("10.0.0.2".parse().unwrap(), "a").unwrap();
        h.add("10.0.0.3".parse().unwrap(), "b").unwrap();
        assert!(h.remove("a").unwrap());
        for l in [&link, &etc.join("hosts.d")] {
            assert!(std::fs::symlink_metadata(l).unwrap().file_type().is_symlink(), "{} is still a link", l.display());
        }
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(text.starts_with("127.0.0.1 localhost\n") && text.contains("10.0.0.3\tb\n") && !text.contains("\ta\n"), "{text}");
        assert_eq!(h.entries().unwrap(), vec![HostEntry { ip: "10.0.0.3".parse().unwrap(), name: "b".into() }]);
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
        // No temporary file left beside the link or the target.
        assert_eq!(std::fs::read_dir(&etc).unwrap().count(), 2);
        assert_eq!(std::fs::read_dir(run.join("net")).unwrap().count(), 1);
        // A link whose target does not exist yet: the target is made, the link kept.
        let dangling = etc.join("hosts.new");
        symlink("../run/hosts.new", &dangling).unwrap();
        Hosts::new(&dangling).add("10.0.0.4".parse().unwrap(), "c").unwrap();
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
        assert_eq!(parse_block(&std::fs::read_to_string(run.join("hosts.new")).unwrap()).len(), 1);
        // A loop is an error, not a hang.
        symlink("loop2", etc.join("loop1")).unwrap();
        symlink("loop1", etc.join("loop2")).unwrap();
        let e = Hosts::new(&etc.join("loop1")).add("10.0.0.5".parse().unwrap(), "d").unwrap_err();
        assert!(matches!(&e, NetError::Hosts { source, .. } if source.raw_os_error() == Some(libc::ELOOP)), "{e}");
    }

    /// A hosts file bind-mounted over /etc/hosts (container runtimes, some
    /// installers): rename refuses a mount point (EBUSY), so it is rewritten in
    /// place; the file under the mount is not touched. Root only: it mounts, in a
    /// mount namespace of a thread of its own, which takes the mount with it when
    /// the thread ends, also when the test fails.
    #[test]
    fn bind_mounted_hosts_file_is_rewritten_in_place() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to bind-mount");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (source, under) = (tmp.path().join("hosts.source"), tmp.path().join("hosts"));
        std::fs::write(&source, "127.0.0.1 localhost\n# the bound file, with a long line that the new text is shorter than\n").unwrap();
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o604)).unwrap();
        std::os::unix::fs::chown(&source, Some(12345), Some(23456)).unwrap();
        std::fs::write(&under, "# under the mount\n").unwrap();
        let (s, u) = (source.clone(), under.clone());
        let seen = std::thread::spawn(move || {
            use rustix::mount::{mount_bind, mount_change, MountPropagationFlags};
            // SAFETY: a mount namespace for this thread alone (it also unshares the
            // thread's root and working directory); the descriptor table stays shared.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.unwrap();
            mount_change(c"/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE).unwrap();
            mount_bind(&s, &u).unwrap();
            assert!(is_mount_point(&u).unwrap() && !is_mount_point(&s).unwrap());
            assert_eq!(std::fs::rename(&s, &u).unwrap_err().raw_os_error(), Some(libc::EBUSY), "what the old rename met");
            let h = Hosts::new(&u);
            h.add("10.0.0.2".parse().unwrap(), "a").unwrap();
            h.add("10.0.0.3".parse().unwrap(), "b").unwrap();
            assert!(h.remove("a").unwrap());
            let entries = h.entries().unwrap();
            let dir = std::fs::read_dir(u.parent().unwrap()).unwrap().count();
            (entries, std::fs::read_to_string(&u).unwrap(), dir)
        })
        .join()
        .unwrap();
        let (entries, text, files) = seen;
        assert_eq!(entries, vec![HostEntry { ip: "10.0.0.3".parse().unwrap(), name: "b".into() }]);
        assert_eq!(files, 2, "no temporary file left");
        // The bound file changed in place: same inode, owner and mode, nothing left of
        // the old longer text.
        assert_eq!(std::fs::read_to_string(&source).unwrap(), text);
        assert!(text.starts_with("127.0.0.1 localhost\n# the bound file") && text.ends_with("10.0.0.3\tb\n# END lxcf\n"), "{text}");
        let m = std::fs::metadata(&source).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o604, 12345, 23456));
        assert_eq!(std::fs::read_to_string(&under).unwrap(), "# under the mount\n", "the file under the mount is untouched");
    }
}
