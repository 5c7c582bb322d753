//! Moving one directory tree into another, entry by entry, by `rename`.
//!
//! Two users: `lxcf update` commits an overlayfs upper directory into the
//! container's tree ([`Kind::Overlay`]: whiteouts delete, opaque directories
//! replace, overlayfs's own `trusted.overlay.*` xattrs are dropped), and `lxcf
//! deploy` moves a staged copy into place ([`Kind::Deploy`]: an entry never
//! changes type, so a container's directory is never replaced by a file).
//!
//! Each entry appears atomically (rename over the old one), and every step
//! consumes its source entry, so a merge interrupted by a crash finishes
//! correctly when run again on what is left: that is what makes the commit of
//! `lxcf update` restartable. Order matters for that: a destination is removed
//! before the mark that says "replace" (the opaque xattr) is dropped.
//!
//! Everything goes through directory file descriptors opened with `O_NOFOLLOW`:
//! the destination is a container's tree, whose root user may have planted
//! symlinks anywhere, and none of them is ever followed.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::rootfs::copy;

/// How the source tree is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An overlayfs upper directory: whiteouts and opaque directories mean deletion.
    Overlay,
    /// A plain tree: entries are added or replaced, never deleted or changed in type.
    Deploy,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Io(#[from] crate::error::IoError),
    #[error("{} is a {found} in the destination but a {want} in what is copied there; not replaced", path.display())]
    Conflict { path: PathBuf, found: &'static str, want: &'static str },
}

type Result<T> = std::result::Result<T, MergeError>;

/// What a merge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Entries moved (renamed or, across filesystems, copied) into place.
    pub moved: u64,
    /// Destination entries deleted by whiteouts or replaced by opaque directories.
    pub removed: u64,
    /// Existing directories whose contents were merged.
    pub merged_dirs: u64,
}

/// Where the two trees are, for messages, and a hook called after each entry.
pub struct Merge<'a> {
    pub kind: Kind,
    /// Shown in errors as the destination's path.
    pub dst_label: &'a Path,
    /// Called with the path (relative to the top) of every entry handled; the
    /// crash tests of `lxcf update` kill the process from here.
    pub after_entry: &'a mut dyn FnMut(&Path),
}

/// Name of the scratch directory used when a rename crosses filesystems.
const SCRATCH: &str = ".lxcf-merge.tmp";
const OVERLAY_XATTR: &[u8] = b"trusted.overlay.";

fn ftype(st: &rustix::fs::Statx) -> FileType {
    FileType::from_raw_mode(st.stx_mode as _)
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::Directory => "directory",
        FileType::RegularFile => "file",
        FileType::Symlink => "symlink",
        _ => "special file",
    }
}

/// An overlayfs whiteout: a character device with device number 0:0.
fn is_whiteout(st: &rustix::fs::Statx) -> bool {
    ftype(st) == FileType::CharacterDevice && st.stx_rdev_major == 0 && st.stx_rdev_minor == 0
}

fn stat_at(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<Option<rustix::fs::Statx>> {
    match rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_dir(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// `/proc/self/fd/N/NAME`: a path that starts at an open directory, for the calls
/// that take only paths. Only NAME is looked up, without following it.
pub fn fd_path(dir: &impl AsRawFd, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

fn names(dir: &OwnedFd) -> rustix::io::Result<Vec<CString>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    // Sorted: the same tree is always merged in the same order (crash tests count entries).
    out.sort();
    Ok(out)
}

/// Removes `name` in `dir`, a whole tree if it is a directory, never following a symlink.
pub fn remove_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<()> {
    let c = CString::new(name.as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    match stat_at(dir, &c)? {
        None => Ok(()),
        // std's remove_dir_all opens every level with O_NOFOLLOW (CVE-2022-21658 fix).
        Some(st) if ftype(&st) == FileType::Directory => std::fs::remove_dir_all(fd_path(dir, name)),
        Some(_) => match rustix::fs::unlinkat(dir, &c, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        },
    }
}

/// Checks, without changing anything, that merging `src` into `dst` with
/// [`Kind::Deploy`] would not have to change the type of an entry.
pub fn check_deploy(src: &OwnedFd, dst: &OwnedFd, dst_label: &Path) -> Result<()> {
    check_dir(src, dst, dst_label, Path::new(""))
}

fn check_dir(src: &OwnedFd, dst: &OwnedFd, label: &Path, rel: &Path) -> Result<()> {
    let io = |op: &'static str, p: &Path| {
        let path = label.join(p);
        move |e: Errno| MergeError::Io(crate::error::IoError { op, path, source: e.into() })
    };
    for n in names(src).map_err(io("read directory", rel))? {
        let r = rel.join(OsStr::from_bytes(n.to_bytes()));
        let s = stat_at(src, &n).map_err(io("stat", &r))?.expect("listed just now");
        let Some(d) = stat_at(dst, &n).map_err(io("stat", &r))? else { continue };
        let (st, dt) = (ftype(&s), ftype(&d));
        match (st == FileType::Directory, dt == FileType::Directory) {
            (true, true) => {
                let (sd, dd) = (open_dir(src, &n).map_err(io("open", &r))?, open_dir(dst, &n).map_err(io("open", &r))?);
                check_dir(&sd, &dd, label, &r)?;
            }
            (false, false) => {}
            _ => return Err(MergeError::Conflict { path: label.join(&r), found: type_name(dt), want: type_name(st) }),
        }
    }
    Ok(())
}

/// Moves every entry of the directory `src` into the directory `dst`. The two
/// top directories themselves are left as they are (their metadata included).
pub fn merge(src: &OwnedFd, dst: &OwnedFd, m: &mut Merge) -> Result<Stats> {
    let mut stats = Stats::default();
    merge_dir(src, dst, m, Path::new(""), &mut stats)?;
    Ok(stats)
}

fn merge_dir(src: &OwnedFd, dst: &OwnedFd, m: &mut Merge, rel: &Path, stats: &mut Stats) -> Result<()> {
    let label = m.dst_label.to_path_buf();
    let io = |op: &'static str, p: &Path| {
        let path = label.join(p);
        move |e: Errno| MergeError::Io(crate::error::IoError { op, path, source: e.into() })
    };
    let mut changed = false;
    for n in names(src).map_err(io("read directory", rel))? {
        changed = true;
        let name = OsStr::from_bytes(n.to_bytes());
        let r = rel.join(name);
        let Some(s) = stat_at(src, &n).map_err(io("stat", &r))? else { continue };
        let d = stat_at(dst, &n).map_err(io("stat", &r))?;
        let (st, dt) = (ftype(&s), d.as_ref().map(ftype));
        let overlay = m.kind == Kind::Overlay;

        if overlay && is_whiteout(&s) {
            if d.is_some() {
                remove_at(dst, name).map_err(|e| io_err("remove", label.join(&r), e))?;
                stats.removed += 1;
            }
            rustix::fs::unlinkat(src, &n, AtFlags::empty()).map_err(io("remove", &r))?;
        } else if st == FileType::Directory {
            let opaque =
                overlay && xattr_fd(src, &n, c"trusted.overlay.opaque").map_err(io("read xattrs of", &r))?.as_deref() == Some(b"y");
            match dt {
                Some(FileType::Directory) if !opaque => {
                    let sd = open_dir(src, &n).map_err(io("open", &r))?;
                    let dd = open_dir(dst, &n).map_err(io("open", &r))?;
                    merge_dir(&sd, &dd, m, &r, stats)?;
                    sync_meta(&sd, &dd, m.kind).map_err(io("set metadata of", &r))?;
                    stats.merged_dirs += 1;
                    rustix::fs::unlinkat(src, &n, AtFlags::REMOVEDIR).map_err(io("remove", &r))?;
                }
                Some(found) => {
                    if !overlay {
                        return Err(MergeError::Conflict { path: label.join(&r), found: type_name(found), want: "directory" });
                    }
                    // Opaque, or over a non-directory: the old entry goes first,
                    // then the opaque mark with the other overlay xattrs.
                    remove_at(dst, name).map_err(|e| io_err("remove", label.join(&r), e))?;
                    stats.removed += 1;
                    strip_tree(src, &n).map_err(io("remove overlay xattrs of", &r))?;
                    move_in(src, dst, name, &label.join(&r))?;
                    stats.moved += 1;
                }
                None => {
                    if overlay {
                        strip_tree(src, &n).map_err(io("remove overlay xattrs of", &r))?;
                    }
                    move_in(src, dst, name, &label.join(&r))?;
                    stats.moved += 1;
                }
            }
        } else {
            if dt == Some(FileType::Directory) {
                if !overlay {
                    return Err(MergeError::Conflict { path: label.join(&r), found: "directory", want: type_name(st) });
                }
                remove_at(dst, name).map_err(|e| io_err("remove", label.join(&r), e))?;
                stats.removed += 1;
            }
            if overlay {
                strip_entry(src, &n).map_err(io("remove overlay xattrs of", &r))?;
            }
            move_in(src, dst, name, &label.join(&r))?;
            stats.moved += 1;
        }
        (m.after_entry)(&r);
    }
    // The renames into this directory are on disk before the merge is said done
    // (and the update's journal removed).
    if changed {
        rustix::fs::fsync(dst).map_err(io("sync", rel))?;
    }
    Ok(())
}

fn io_err(op: &'static str, path: PathBuf, source: std::io::Error) -> MergeError {
    MergeError::Io(crate::error::IoError { op, path, source })
}

/// Renames `name` from `src` to `dst`, replacing a non-directory there. Across
/// filesystems (a container root on a btrfs subvolume, say) the entry is copied
/// into a scratch directory beside its destination, renamed from there, and
/// only then removed from the source, so a crash at any point can be resumed.
fn move_in(src: &OwnedFd, dst: &OwnedFd, name: &OsStr, label: &Path) -> Result<()> {
    match rustix::fs::renameat(src, name, dst, name) {
        Ok(()) => return Ok(()),
        Err(Errno::XDEV) => {}
        Err(e) => return Err(io_err("move into place", label.to_path_buf(), e.into())),
    }
    let scratch = OsStr::new(SCRATCH);
    remove_at(dst, scratch).map_err(|e| io_err("clear", label.with_file_name(SCRATCH), e))?;
    rustix::fs::mkdirat(dst, scratch, Mode::from_raw_mode(0o700)).map_err(|e| io_err("create", label.with_file_name(SCRATCH), e.into()))?;
    let result = (|| {
        let tmp = rustix::fs::openat(dst, scratch, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_err("open", label.with_file_name(SCRATCH), e.into()))?;
        let (from, to) = (fd_path(src, name), fd_path(&tmp, name));
        if std::fs::symlink_metadata(&from).map_err(|e| io_err("stat", from.clone(), e))?.is_dir() {
            copy::copy_tree(&from, &to, &copy::Options::default())?;
        } else {
            copy::copy_entry(&from, &to)?;
        }
        rustix::fs::renameat(&tmp, name, dst, name).map_err(|e| io_err("move into place", label.to_path_buf(), e.into()))
    })();
    let _ = rustix::fs::unlinkat(dst, scratch, AtFlags::REMOVEDIR);
    result?;
    remove_at(src, name).map_err(|e| io_err("remove", fd_path(src, name), e))
}

fn xattr_fd(dir: &OwnedFd, name: &CStr, key: &CStr) -> rustix::io::Result<Option<Vec<u8>>> {
    let p = fd_path(dir, OsStr::from_bytes(name.to_bytes()));
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(&p, key, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(buf))
        }
        Err(Errno::NODATA | Errno::OPNOTSUPP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The xattr names of a path (not followed) or, with `fd`, of an open file.
fn xattr_names(p: &Path, fd: Option<&OwnedFd>) -> rustix::io::Result<Vec<CString>> {
    let mut buf = vec![0u8; 4096];
    let n = loop {
        let r = match fd {
            Some(fd) => rustix::fs::flistxattr(fd, &mut buf[..]),
            None => rustix::fs::llistxattr(p, &mut buf[..]),
        };
        match r {
            Ok(n) => break n,
            Err(Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    };
    Ok(buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()).map(|s| CString::new(s).expect("split at NUL")).collect())
}

/// Drops overlayfs's bookkeeping xattrs (origin, impure, opaque...) from one entry.
fn strip_entry(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<()> {
    let p = fd_path(dir, OsStr::from_bytes(name.to_bytes()));
    for x in xattr_names(&p, None)? {
        if x.to_bytes().starts_with(OVERLAY_XATTR) {
            match rustix::fs::lremovexattr(&p, &x) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// [`strip_entry`] for a whole tree.
fn strip_tree(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<()> {
    strip_entry(dir, name)?;
    let sub = open_dir(dir, name)?;
    for n in names(&sub)? {
        match stat_at(&sub, &n)? {
            Some(st) if ftype(&st) == FileType::Directory => strip_tree(&sub, &n)?,
            Some(_) => strip_entry(&sub, &n)?,
            None => {}
        }
    }
    Ok(())
}

/// Gives the existing directory `dst` the owner, mode, xattrs and times of `src`.
/// For an overlay, xattrs `src` lacks were removed by the command and go too;
/// a deploy only adds.
fn sync_meta(src: &OwnedFd, dst: &OwnedFd, kind: Kind) -> rustix::io::Result<()> {
    let st = rustix::fs::statx(src, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS)?;
    rustix::fs::fchown(dst, Some(rustix::fs::Uid::from_raw(st.stx_uid)), Some(rustix::fs::Gid::from_raw(st.stx_gid)))?;
    rustix::fs::fchmod(dst, Mode::from_raw_mode((st.stx_mode & 0o7777) as _))?;
    let keep = |x: &CString| !x.to_bytes().starts_with(OVERLAY_XATTR);
    let src_names: Vec<CString> = xattr_names(Path::new(""), Some(src))?.into_iter().filter(keep).collect();
    if kind == Kind::Overlay {
        for x in xattr_names(Path::new(""), Some(dst))?.into_iter().filter(keep) {
            if !src_names.contains(&x) {
                rustix::fs::fremovexattr(dst, &x)?;
            }
        }
    }
    for x in &src_names {
        let mut buf = vec![0u8; 64 * 1024];
        let n = rustix::fs::fgetxattr(src, x, &mut buf[..])?;
        rustix::fs::fsetxattr(dst, x, &buf[..n], XattrFlags::empty())?;
    }
    let ts = |t: &rustix::fs::StatxTimestamp| Timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec as _ };
    rustix::fs::futimens(dst, &Timestamps { last_access: ts(&st.stx_atime), last_modification: ts(&st.stx_mtime) })
}

/// Opens a directory for [`merge`] by path, without following a symlink at its end.
pub fn open(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?)
}

#[cfg(test)]
pub(crate) mod tests;
