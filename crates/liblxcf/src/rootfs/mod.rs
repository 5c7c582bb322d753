//! Container roots: what each model takes from the host ([`layout`]), the copy
//! engine ([`copy`]), how roots are stored ([`storage`]), building a root
//! ([`create`]), giving it its own identity ([`identity`]), and file operations
//! confined to a root ([`scoped`]).

pub mod copy;
pub mod identity;
pub mod layout;
pub mod scoped;
pub mod storage;

use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};

use crate::error::{self, IoError};
use copy::Stats;
use layout::{Action, Model, Prune, ENTRIES, EXCLUDED};
use scoped::ScopedError;
use storage::Backend;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Scoped(#[from] ScopedError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("the source tree {} has no /{what}; it must be a full system", source_dir.display())]
    Incomplete { source_dir: PathBuf, what: &'static str },
}

type Result<T> = std::result::Result<T, RootfsError>;

fn io<'a, E: Into<std::io::Error>>(op: &'static str, path: &'a Path) -> impl FnOnce(E) -> RootfsError + 'a {
    move |e| RootfsError::Io(error::io(op, path)(e))
}

/// A new root, as [`create`] made it.
#[derive(Debug)]
pub struct Built {
    pub backend: Backend,
    /// Started as a btrfs snapshot of the source rather than empty.
    pub snapshot: bool,
    /// What the copy engine copied.
    pub stats: Stats,
}

/// Creates the root `dest` (which must not exist) and fills it from `source` by the
/// layout table. On failure nothing is left at `dest`.
///
/// Where the model copies /usr (the bulk of a root), `source` is the top of a btrfs
/// subvolume and `dest` can be a subvolume of the same filesystem, `dest` starts as
/// a snapshot of `source` that [`build`] trims to what a copy would have made: no
/// inode is created for what is kept, so the root is there in a fraction of the
/// copy's time. (For the joint model the trim would delete all of /usr from the
/// snapshot: a copy of /etc and /var is cheaper.) Elsewhere the root starts empty
/// ([`storage::create_root`]) and the copy engine fills it.
///
/// A snapshot keeps what a copy drops: inode flags (`chattr`). lxcf clears the
/// immutable and append-only flags where it deletes, and in /etc, where it writes
/// the container's identity. If the snapshot cannot be trimmed all the same, the
/// root is copied.
pub fn create(model: Model, source: &Path, dest: &Path, skip: &[&Path], ctl: &copy::Control) -> Result<Built> {
    let bulk = ENTRIES.iter().any(|e| e.path == "usr" && e.action(model) == Action::Copy);
    if bulk && storage::snapshot(source, dest)? {
        crate::fault::crash_point("rootfs:snapshot");
        match fill(model, source, dest, Base::Snapshot, skip, ctl) {
            Ok(stats) => return Ok(Built { backend: Backend::Btrfs, snapshot: true, stats }),
            Err(e) => {
                tracing::warn!("{}: the snapshot of {} could not be trimmed ({e}); copying instead", dest.display(), source.display());
                storage::remove_root(dest)?;
            }
        }
    }
    let backend = storage::create_root(dest)?;
    match fill(model, source, dest, Base::Empty, skip, ctl) {
        Ok(stats) => Ok(Built { backend, snapshot: false, stats }),
        Err(e) => {
            if let Err(r) = storage::remove_root(dest) {
                tracing::error!("could not remove the partial root: {r}");
            }
            Err(e)
        }
    }
}

/// What `dest` holds when [`fill`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// Nothing: an empty directory.
    Empty,
    /// A snapshot of the whole source subvolume, made by [`create`].
    Snapshot,
}

/// Fills the existing, empty directory `dest` from `source` following the layout
/// table. `skip` are directories never copied (lxcf's own container root).
pub fn build(model: Model, source: &Path, dest: &Path, skip: &[&Path], ctl: &copy::Control) -> Result<Stats> {
    fill(model, source, dest, Base::Empty, skip, ctl)
}

fn fill(model: Model, source: &Path, dest: &Path, base: Base, skip: &[&Path], ctl: &copy::Control) -> Result<Stats> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let skip_dirs: Vec<(u64, u64)> = skip.iter().filter_map(|p| copy::dir_id(p).ok()).collect();
    let mut trim = match base {
        Base::Empty => None,
        Base::Snapshot => Some(Trim::new(model, source, dest, &skip_dirs)?),
    };
    let mut jobs = Vec::new();
    for entry in ENTRIES {
        let src = source.join(entry.path);
        let dst = dest.join(entry.path);
        let kept = trim.as_ref().is_some_and(|t| t.kept.contains(entry.path));
        match entry.action(model) {
            action @ (Action::Copy | Action::Mirror) => match std::fs::symlink_metadata(&src) {
                Ok(m) if m.is_dir() => match trim.as_mut().filter(|_| kept) {
                    Some(t) => jobs.extend(t.prune(Path::new(entry.path), &skip_dirs)?),
                    None => {
                        let opts = copy::Options { prune: prunes(Path::new(entry.path)).unwrap_or_default(), skip_dirs: skip_dirs.clone() };
                        jobs.push(copy::Job::new(src, dst, opts));
                    }
                },
                Ok(_) if kept => {}
                Ok(_) => copy::copy_entry(&src, &dst)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && action == Action::Mirror => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(RootfsError::Incomplete { source_dir: source.into(), what: entry.path })
                }
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
    let total = copy::copy_trees(&jobs, ctl)?;
    crate::fault::crash_point("rootfs:copied");
    if let Some(t) = trim {
        t.finish()?;
    }
    Ok(total)
}

/// How the copy of the directory `rel` (relative to the source) leaves out what
/// [`EXCLUDED`] lists: the prune list for a copy job of it, relative to it. `None`
/// if a copy does not create it at all.
fn prunes(rel: &Path) -> Option<Vec<(PathBuf, Prune)>> {
    let (mut out, mut top) = (Vec::new(), None);
    for x in EXCLUDED {
        let x_path = Path::new(x.path);
        if rel == x_path && x.prune == Prune::Contents {
            top = Some(Prune::Contents);
        } else if rel.starts_with(x_path) {
            match x.prune {
                Prune::Skip | Prune::Contents => return None,
                // Directories are kept below it, files nowhere.
                Prune::Files => top = top.or(Some(Prune::Files)),
            }
        } else if let Ok(inside) = x_path.strip_prefix(rel) {
            out.push((inside.to_path_buf(), x.prune));
        }
    }
    // An empty directory is all there is of it, whatever its parents' prune.
    out.extend(top.map(|p| (PathBuf::new(), p)));
    Some(out)
}

/// A snapshot of the source being trimmed to what a copy would have made.
///
/// A copy leaves out: top-level entries the layout does not copy, [`EXCLUDED`]
/// paths, `skip` directories and other mounts (see [`copy`]). A snapshot holds
/// what a copy cannot see (what is under a mount point, on the source subvolume) and lacks
/// what a copy enters (subvolumes inside the source: empty directories in a snapshot;
/// tops on another mount): the first is deleted, the second copied. Deleting entries
/// moves their directories' times, which are set back to the source's at the end.
/// The snapshot is new and private (`NAME.partial`), but what it holds came from
/// the source: nothing here follows a symlink in it.
struct Trim<'a> {
    source: PathBuf,
    dest: &'a Path,
    /// Top-level entries of the snapshot that stay (relative).
    kept: std::collections::BTreeSet<&'static str>,
    /// Mount points below the source, relative to it.
    mounts: Vec<PathBuf>,
    /// Subvolumes directly inside the source's, relative to it.
    subvolumes: Vec<PathBuf>,
    /// The skip directories on the source's subvolume, relative to it.
    skip: Vec<PathBuf>,
    /// Directories whose entries changed, relative.
    touched: std::collections::BTreeSet<PathBuf>,
}

impl<'a> Trim<'a> {
    fn new(model: Model, source: &Path, dest: &'a Path, skip_dirs: &[(u64, u64)]) -> Result<Trim<'a>> {
        let source = std::fs::canonicalize(source).map_err(io("resolve", source))?;
        let below = |p: &Path| p.strip_prefix(&source).ok().filter(|r| !r.as_os_str().is_empty()).map(Path::to_path_buf);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(io("read", Path::new("/proc/self/mountinfo")))?;
        let mounts = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter_map(|m| below(Path::new(&crate::host::cgroup::unescape_mountinfo(m))))
            .collect();
        // The skip directories on the source's subvolume, by identity as the copy
        // engine finds them: lxcf's root may be reached by another path (a bind mount).
        let top = statx(&source).map_err(io("stat", &source))?;
        let mut skip = Vec::new();
        for &(dev, ino) in skip_dirs {
            if dev == copy::dev_of(&top) {
                skip.push(storage::path_in_subvolume(&source, ino)?);
            }
        }
        let subvolumes = storage::child_subvolumes(&source)?
            .into_iter()
            .filter(|rel| copy::dir_id(&source.join(rel)).is_ok_and(|id| !skip_dirs.contains(&id)))
            .collect();
        let mut t = Trim { source, dest, kept: Default::default(), mounts, subvolumes, skip, touched: Default::default() };

        // The top: what the layout copies stays where it is on the source subvolume.
        for e in std::fs::read_dir(dest).map_err(io("read", dest))? {
            let name = e.map_err(io("read", dest))?.file_name();
            let entry = ENTRIES.iter().find(|e| std::ffi::OsStr::new(e.path) == name);
            let keep = match entry.map(|e| e.action(model)) {
                Some(Action::Copy | Action::Mirror) => match statx(&t.source.join(&name)) {
                    Ok(st) if FileType::from_raw_mode(st.stx_mode as _) == FileType::Directory => {
                        copy::dev_of(&st) == copy::dev_of(&top) && st.stx_mnt_id == top.stx_mnt_id
                    }
                    Ok(_) => true,
                    Err(_) => false,
                },
                _ => false,
            };
            match entry {
                Some(e) if keep => drop(t.kept.insert(e.path)),
                _ => t.remove(Path::new(&name))?,
            }
        }
        // As create_root makes it: no ACL or other attribute of the source's top
        // (a default ACL would be inherited by what is created in it), but its label.
        rustix::fs::chown(dest, Some(rustix::fs::Uid::ROOT), Some(rustix::fs::Gid::ROOT)).map_err(|e| io("chown", dest)(e))?;
        std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(io("chmod", dest))?;
        let fd = rustix::fs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io("open", dest)(e))?;
        let xattrs = copy::xattrs_fd(&fd).map_err(|e| io("read the xattrs of", dest)(e))?;
        for (name, _) in xattrs.iter().filter(|(n, _)| !n.to_bytes().starts_with(b"security.")) {
            rustix::fs::fremovexattr(&fd, name.as_c_str()).map_err(|e| io("remove an xattr of", dest)(e))?;
        }
        Ok(t)
    }

    /// Trims the kept top-level directory `top`; returns copy jobs for what the
    /// snapshot lacks in it.
    fn prune(&mut self, top: &Path, skip_dirs: &[(u64, u64)]) -> Result<Vec<copy::Job>> {
        for x in EXCLUDED.iter().filter(|x| Path::new(x.path).starts_with(top)) {
            let rel = Path::new(x.path);
            match x.prune {
                Prune::Skip => self.remove(rel)?,
                Prune::Contents => self.remove_inside(rel, false)?,
                Prune::Files => self.remove_inside(rel, true)?,
            }
        }
        for rel in [self.skip.clone(), self.mounts.clone()].concat() {
            if rel.starts_with(top) {
                self.remove(&rel)?;
            }
        }
        let mut jobs = Vec::new();
        for rel in self.subvolumes.clone() {
            let hidden = self.skip.iter().chain(&self.mounts).any(|p| rel.starts_with(p));
            if !rel.starts_with(top) || hidden {
                continue;
            }
            // The empty directory in its place; a copy goes there, if a copy has it.
            self.remove(&rel)?;
            if let Some(prune) = prunes(&rel) {
                let opts = copy::Options { prune, skip_dirs: skip_dirs.to_vec() };
                jobs.push(copy::Job::new(self.source.join(&rel), self.dest.join(&rel), opts));
            }
        }
        Ok(jobs)
    }

    /// `rel` if it is a directory of the snapshot reached without a symlink.
    fn real_dir(&self, rel: &Path) -> bool {
        rel.ancestors().all(|a| a.as_os_str().is_empty() || std::fs::symlink_metadata(self.dest.join(a)).is_ok_and(|m| m.is_dir()))
    }

    fn remove(&mut self, rel: &Path) -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if !self.real_dir(parent) {
            return Ok(());
        }
        let p = self.dest.join(rel);
        let remove = || match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        match remove() {
            // An immutable or append-only entry (chattr) in the way: not in a copy.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                self.unflag(parent, false)?;
                self.unflag(rel, true)?;
                remove()
            }
            r => r,
        }
        .map_err(io("remove", &p))?;
        self.touched.insert(parent.to_path_buf());
        Ok(())
    }

    /// Clears the immutable and append-only flags of `rel` (and, with `deep`, of all
    /// below it). Only directories and regular files carry them.
    fn unflag(&self, rel: &Path, deep: bool) -> Result<()> {
        use rustix::fs::IFlags;
        let p = self.dest.join(rel);
        let Ok(m) = std::fs::symlink_metadata(&p) else { return Ok(()) };
        if !(m.is_dir() || m.is_file()) || !self.real_dir(rel.parent().unwrap_or(Path::new(""))) {
            return Ok(());
        }
        let fd = rustix::fs::open(&p, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io("open", &p)(e))?;
        let flags = rustix::fs::ioctl_getflags(&fd).map_err(|e| io("read the flags of", &p)(e))?;
        if flags.intersects(IFlags::IMMUTABLE | IFlags::APPEND) {
            rustix::fs::ioctl_setflags(&fd, flags - IFlags::IMMUTABLE - IFlags::APPEND).map_err(|e| io("clear the flags of", &p)(e))?;
        }
        if deep && m.is_dir() {
            for e in std::fs::read_dir(&p).map_err(io("read", &p))? {
                self.unflag(&rel.join(e.map_err(io("read", &p))?.file_name()), true)?;
            }
        }
        Ok(())
    }

    /// Removes what is in the directory `rel`; only the files (below it too) with `files_only`.
    fn remove_inside(&mut self, rel: &Path, files_only: bool) -> Result<()> {
        if !self.real_dir(rel) {
            return Ok(());
        }
        let p = self.dest.join(rel);
        for e in std::fs::read_dir(&p).map_err(io("read", &p))? {
            let e = e.map_err(io("read", &p))?;
            let child = rel.join(e.file_name());
            if files_only && e.file_type().map_err(io("stat", &p))?.is_dir() {
                self.remove_inside(&child, true)?;
            } else {
                self.remove(&child)?;
            }
        }
        Ok(())
    }

    /// Gives the directories whose entries changed their times on the source back.
    fn finish(self) -> Result<()> {
        // lxcf writes the container's identity there next.
        if self.kept.contains("etc") {
            self.unflag(Path::new("etc"), true)?;
        }
        for rel in self.touched.iter().filter(|r| !r.as_os_str().is_empty()) {
            let (src, dst) = (self.source.join(rel), self.dest.join(rel));
            let Ok(st) = statx(&src) else { continue };
            if !self.real_dir(rel) || FileType::from_raw_mode(st.stx_mode as _) != FileType::Directory {
                continue;
            }
            rustix::fs::utimensat(rustix::fs::CWD, &dst, &copy::times(&st), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io("set times of", &dst)(e))?;
        }
        Ok(())
    }
}

fn statx(p: &Path) -> std::io::Result<rustix::fs::Statx> {
    Ok(rustix::fs::statx(rustix::fs::CWD, p, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A small host-like tree: merged /usr, /etc with identity files, /var with logs.
    fn host(src: &Path) {
        for d in [
            "usr/bin",
            "usr/lib",
            "usr/sbin",
            "etc/ssh",
            "etc/network/interfaces.d",
            "etc/systemd/network",
            "var/log/journal/abc",
            "var/log/app",
            "var/lib/dbus",
            "var/lib/pkg",
            "var/tmp",
            "root",
            "home/user",
        ] {
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

    pub(crate) fn built(model: Model) -> (tempfile::TempDir, PathBuf) {
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
    fn prunes_below_and_above() {
        let p = |s: &str| prunes(Path::new(s));
        let var = p("var").unwrap();
        assert!(var.contains(&("log".into(), Prune::Files)) && var.contains(&("log/journal".into(), Prune::Contents)), "{var:?}");
        assert!(var.contains(&("lib/dbus/machine-id".into(), Prune::Skip)));
        assert_eq!(p("usr"), Some(vec![]));
        // Inside an emptied or skipped path: not there at all.
        assert_eq!(p("var/tmp/sv"), None);
        assert_eq!(p("etc/machine-id"), None);
        // The emptied path itself: an empty directory, even below a files-only path.
        assert_eq!(p("var/tmp"), Some(vec![("".into(), Prune::Contents)]));
        assert_eq!(p("var/log/journal"), Some(vec![("".into(), Prune::Contents)]));
        // Below a files-only path: its directories.
        assert_eq!(p("var/cache/apt/sub"), Some(vec![("".into(), Prune::Files)]));
        assert_eq!(p("var/log/x/y"), Some(vec![("".into(), Prune::Files)]));
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
