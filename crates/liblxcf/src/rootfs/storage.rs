//! Where container roots live, chosen automatically from the filesystem of
//! `[Paths] root`:
//!
//! - on btrfs each root is a subvolume: a clone is a snapshot (instant, shares
//!   everything until written), erasing deletes the subvolume (the filesystem frees
//!   it in the background);
//! - elsewhere a plain directory.
//!
//! Independently of this, the copy engine shares file data by reflink wherever
//! the source and the root share a filesystem that can (btrfs, xfs).
//!
//! The btrfs calls are the kernel's ioctls (what `btrfs subvolume create/snapshot/
//! delete` do), so lxcf needs no btrfs-progs at run time.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use crate::rootfs::copy::{self, Control, Stats};

/// What failed, on which path.
pub type StorageError = crate::error::IoError;

type Result<T> = std::result::Result<T, StorageError>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> StorageError + 'a {
    crate::error::io(op, path)
}

/// How a container root is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A btrfs subvolume.
    Btrfs,
    /// A plain directory.
    Dir,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Btrfs => "btrfs",
            Backend::Dir => "dir",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inode number of every btrfs subvolume's top directory.
const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

// The field's and the constants' types differ between architectures.
#[allow(clippy::unnecessary_cast)]
fn magic(st: &rustix::fs::StatFs) -> i64 {
    st.f_type as i64
}

#[allow(clippy::unnecessary_cast)]
const BTRFS: i64 = libc::BTRFS_SUPER_MAGIC as i64;
#[allow(clippy::unnecessary_cast)]
const XFS: i64 = libc::XFS_SUPER_MAGIC as i64;
#[allow(clippy::unnecessary_cast)]
const EXT4: i64 = libc::EXT4_SUPER_MAGIC as i64;
#[allow(clippy::unnecessary_cast)]
const TMPFS: i64 = libc::TMPFS_MAGIC as i64;

fn on_btrfs(fd: &impl AsFd) -> rustix::io::Result<bool> {
    Ok(magic(&rustix::fs::fstatfs(fd)?) == BTRFS)
}

/// The filesystem type's name for messages and `lxcf list`: btrfs, xfs, ext4 or other.
pub fn fs_name(path: &Path) -> std::io::Result<&'static str> {
    Ok(match magic(&rustix::fs::statfs(path)?) {
        BTRFS => "btrfs",
        XFS => "xfs",
        EXT4 => "ext4",
        TMPFS => "tmpfs",
        _ => "other",
    })
}

/// Which backend the root at `path` uses; `None` if it does not exist.
pub fn backend_of(path: &Path) -> Option<Backend> {
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).ok()?;
    Some(if is_subvolume(&fd).ok()? { Backend::Btrfs } else { Backend::Dir })
}

fn is_subvolume(fd: &OwnedFd) -> rustix::io::Result<bool> {
    let st = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::INO)?;
    Ok(st.stx_ino == BTRFS_FIRST_FREE_OBJECTID && on_btrfs(fd)?)
}

fn split(path: &Path) -> Result<(OwnedFd, &OsStr)> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (if p.as_os_str().is_empty() { Path::new(".") } else { p }, n),
        _ => return Err(io("use", path)(Errno::INVAL)),
    };
    Ok((open_dir(parent)?, name))
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(io("open", path))
}

/// Creates an empty root at `path` (mode 0755): a subvolume where its parent is on btrfs.
pub fn create_root(path: &Path) -> Result<Backend> {
    let (parent, name) = split(path)?;
    if on_btrfs(&parent).map_err(io("stat", path))? {
        btrfs::subvol_create(&parent, name).map_err(io("create btrfs subvolume", path))?;
        return Ok(Backend::Btrfs);
    }
    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)).map_err(io("create", path))?;
    // The umask may have taken bits away.
    rustix::fs::chmodat(&parent, name, Mode::from_raw_mode(0o755), AtFlags::empty()).map_err(io("chmod", path))?;
    Ok(Backend::Dir)
}

/// Removes a root, whichever backend it uses, without ever leaving it: it does not
/// enter another mount (a bind mount left in a stopped container's root would
/// otherwise take the host's data with it; the caller unmounts what it knows of
/// first, this refuses what remains), and clears the immutable and append-only
/// flags (chattr) that a container's root user may have set where they stand in
/// the way. A subvolume that holds other subvolumes (made inside the container) is
/// removed file by file, as a directory.
pub fn remove_root(path: &Path) -> Result<()> {
    let (parent, name) = split(path)?;
    let fd = match rustix::fs::openat(&parent, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
    {
        Ok(fd) => fd,
        // Not a directory (a symlink or file put there): removed as it is.
        Err(Errno::NOTDIR | Errno::LOOP) => return unlink(&parent, name, path, false),
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io("open", path)(e)),
    };
    let top = rustix::fs::statx(&fd, c"", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).map_err(io("stat", path))?;
    let parent_mnt = rustix::fs::statx(&parent, c"", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).map_err(io("stat", path))?;
    if top.stx_mnt_id != parent_mnt.stx_mnt_id {
        return Err(io("remove (it is a mount point)", path)(Errno::BUSY));
    }
    if is_subvolume(&fd).unwrap_or(false) {
        match btrfs::subvol_destroy(&parent, name) {
            Ok(()) => return Ok(()),
            Err(Errno::NOTEMPTY) => tracing::debug!("{}: holds subvolumes; removing it file by file", path.display()),
            Err(e) => return Err(io("delete btrfs subvolume", path)(e)),
        }
    }
    remove_inside(&fd, path, top.stx_mnt_id)?;
    drop(fd);
    // Since Linux 4.18 rmdir also removes an empty subvolume.
    unlink(&parent, name, path, true)
}

/// Removes everything in the directory `dir` (at `path`), staying on the mount `mnt`.
fn remove_inside(dir: &OwnedFd, path: &Path, mnt: u64) -> Result<()> {
    let names: Vec<std::ffi::OsString> = names_in(dir).map_err(io("read", path))?;
    for name in names {
        let p = path.join(&name);
        match unlink(dir, &name, &p, false) {
            Ok(()) => continue,
            Err(e) if e.source.raw_os_error() == Some(libc::EISDIR) => {}
            Err(e) => return Err(e),
        }
        let sub =
            match rustix::fs::openat(dir, &name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(io("open", &p)(e)),
            };
        let st = rustix::fs::statx(&sub, c"", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).map_err(io("stat", &p))?;
        if st.stx_mnt_id != mnt {
            return Err(io("remove (another file system is mounted there)", &p)(Errno::BUSY));
        }
        remove_inside(&sub, &p, mnt)?;
        drop(sub);
        unlink(dir, &name, &p, true)?;
    }
    Ok(())
}

/// The names in a directory, `.` and `..` aside.
fn names_in(dir: &OwnedFd) -> rustix::io::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// unlinkat, clearing the immutable and append-only flags of the entry and of its
/// directory when they forbid it (EPERM), once.
fn unlink(dir: &OwnedFd, name: &OsStr, path: &Path, is_dir: bool) -> Result<()> {
    let flags = if is_dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::PERM) => {}
        Err(e) => return Err(io("remove", path)(e)),
    }
    unflag(dir).map_err(io("clear the flags of the directory of", path))?;
    // Only files and directories carry the flags; opening anything else (a device
    // node planted by the container) could act on a device.
    let kind = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode));
    if matches!(kind, Ok(rustix::fs::FileType::RegularFile | rustix::fs::FileType::Directory)) {
        if let Ok(fd) = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
        {
            unflag(&fd).map_err(io("clear the flags of", path))?;
        }
    }
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

/// Clears the immutable and append-only flags of an open file or directory. Files
/// that have no flags (devices, FIFOs: ENOTTY) are left as they are.
pub(crate) fn unflag(fd: &OwnedFd) -> rustix::io::Result<()> {
    use rustix::fs::IFlags;
    let flags = match rustix::fs::ioctl_getflags(fd) {
        Ok(f) => f,
        Err(Errno::NOTTY | Errno::INVAL | Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    if flags.intersects(IFlags::IMMUTABLE | IFlags::APPEND) {
        rustix::fs::ioctl_setflags(fd, flags - IFlags::IMMUTABLE - IFlags::APPEND)?;
    }
    Ok(())
}

/// How [`clone_root`] made the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloned {
    /// A btrfs snapshot.
    Snapshot,
    /// A copy (with reflinks where the filesystem shares data).
    Copy(Stats),
}

/// Makes `dst` (which must not exist) a faithful copy of the root `src`: a snapshot
/// where `src` is a subvolume and `dst` can be one on the same filesystem, else a
/// new root filled by the copy engine.
pub fn clone_root(src: &Path, dst: &Path, ctl: &Control) -> Result<(Backend, Cloned)> {
    if snapshot(src, dst)? {
        return Ok((Backend::Btrfs, Cloned::Snapshot));
    }
    let backend = create_root(dst)?;
    let job = copy::Job { src: src.into(), dst: dst.into(), into: true, opts: Default::default() };
    match copy::copy_trees(&[job], ctl) {
        Ok(stats) => Ok((backend, Cloned::Copy(stats))),
        Err(e) => {
            if let Err(r) = remove_root(dst) {
                tracing::error!("could not remove the partial copy: {r}");
            }
            Err(e)
        }
    }
}

/// Makes `dst` (which must not exist) a writable snapshot of `src` if `src` is the
/// top of a btrfs subvolume and `dst` can be a subvolume of the same filesystem.
/// `false`: it cannot; nothing was created.
pub fn snapshot(src: &Path, dst: &Path) -> Result<bool> {
    let (parent, name) = split(dst)?;
    let sfd = open_dir(src)?;
    if !(is_subvolume(&sfd).map_err(io("stat", src))? && on_btrfs(&parent).map_err(io("stat", dst))?) {
        return Ok(false);
    }
    match btrfs::snapshot(&sfd, &parent, name) {
        Ok(()) => Ok(true),
        // Another btrfs filesystem.
        Err(Errno::XDEV) => Ok(false),
        // A swap file is active in it: btrfs does not snapshot that.
        Err(Errno::TXTBSY) => {
            tracing::info!("{}: not snapshotted (an active swap file is in it); copying instead", src.display());
            Ok(false)
        }
        Err(e) => Err(io("snapshot", src)(e)),
    }
}

/// Where the directory with inode `ino` lies in the subvolume whose top is `top`,
/// relative to it.
pub fn path_in_subvolume(top: &Path, ino: u64) -> Result<PathBuf> {
    let fd = open_dir(top)?;
    let p = btrfs::ino_lookup(&fd, ino).map_err(io("look up an inode in", top))?;
    // The kernel ends it with a slash; a relative path of plain names it is.
    Ok(p.components().collect())
}

/// The subvolumes directly inside the subvolume whose top is `top`, as paths
/// relative to it. A snapshot holds an empty directory in their place.
pub fn child_subvolumes(top: &Path) -> Result<Vec<PathBuf>> {
    let fd = open_dir(top)?;
    let mut out = Vec::new();
    let mut min_treeid = 0;
    loop {
        let (refs, more) = btrfs::rootrefs(&fd, min_treeid).map_err(io("list the subvolumes in", top))?;
        for &(treeid, dirid) in &refs {
            let (dir, name) = btrfs::lookup_user(&fd, dirid, treeid).map_err(io("look up a subvolume in", top))?;
            out.push(dir.join(name));
        }
        match (more, refs.last()) {
            (true, Some(&(last, _))) => min_treeid = last + 1,
            _ => return Ok(out),
        }
    }
}

/// The btrfs ioctls lxcf uses, from linux/btrfs.h.
mod btrfs {
    use super::*;
    use rustix::ioctl::{ioctl, opcode, Setter, Updater};

    /// `struct btrfs_ioctl_vol_args`: a file descriptor and a NUL-terminated name.
    #[repr(C)]
    pub struct VolArgs {
        fd: i64,
        name: [u8; 4088], // BTRFS_PATH_NAME_MAX + 1
    }

    const MAGIC: u8 = 0x94;
    const SNAP_CREATE: rustix::ioctl::Opcode = opcode::write::<VolArgs>(MAGIC, 1);
    const SUBVOL_CREATE: rustix::ioctl::Opcode = opcode::write::<VolArgs>(MAGIC, 14);
    const SNAP_DESTROY: rustix::ioctl::Opcode = opcode::write::<VolArgs>(MAGIC, 15);

    fn args(fd: i64, name: &OsStr) -> rustix::io::Result<VolArgs> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() >= 4088 || b.contains(&0) || b.contains(&b'/') {
            return Err(Errno::INVAL);
        }
        let mut a = VolArgs { fd, name: [0; 4088] };
        a.name[..b.len()].copy_from_slice(b);
        Ok(a)
    }

    pub fn subvol_create(parent: &OwnedFd, name: &OsStr) -> rustix::io::Result<()> {
        // SAFETY: SUBVOL_CREATE takes a pointer to a btrfs_ioctl_vol_args, which
        // VolArgs is (repr(C), same fields and size); the kernel only reads it.
        unsafe { ioctl(parent, Setter::<SUBVOL_CREATE, VolArgs>::new(args(0, name)?)) }
    }

    pub fn snapshot(src: &OwnedFd, parent: &OwnedFd, name: &OsStr) -> rustix::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: as above; `fd` is the open source subvolume, alive during the call.
        unsafe { ioctl(parent, Setter::<SNAP_CREATE, VolArgs>::new(args(src.as_raw_fd() as i64, name)?)) }
    }

    /// `struct btrfs_ioctl_get_subvol_rootref_args`.
    #[repr(C)]
    pub struct RootRefArgs {
        min_treeid: u64,
        rootref: [[u64; 2]; 255], // treeid, dirid
        num_items: u8,
        align: [u8; 7],
    }

    /// `struct btrfs_ioctl_ino_lookup_user_args`.
    #[repr(C)]
    pub struct LookupUserArgs {
        dirid: u64,
        treeid: u64,
        name: [u8; 256],  // BTRFS_VOL_NAME_MAX + 1
        path: [u8; 3824], // BTRFS_INO_LOOKUP_USER_PATH_MAX
    }

    /// `struct btrfs_ioctl_ino_lookup_args`.
    #[repr(C)]
    pub struct LookupArgs {
        treeid: u64,
        objectid: u64,
        name: [u8; 4080], // BTRFS_INO_LOOKUP_PATH_MAX
    }

    const INO_LOOKUP: rustix::ioctl::Opcode = opcode::read_write::<LookupArgs>(MAGIC, 18);
    const GET_SUBVOL_ROOTREF: rustix::ioctl::Opcode = opcode::read_write::<RootRefArgs>(MAGIC, 61);
    const INO_LOOKUP_USER: rustix::ioctl::Opcode = opcode::read_write::<LookupUserArgs>(MAGIC, 62);

    /// (tree id, id of the directory holding it) of the subvolumes in the one of `fd`,
    /// from `min_treeid` on; `true` if there are more.
    pub fn rootrefs(fd: &OwnedFd, min_treeid: u64) -> rustix::io::Result<(Vec<(u64, u64)>, bool)> {
        let mut a = RootRefArgs { min_treeid, rootref: [[0; 2]; 255], num_items: 0, align: [0; 7] };
        // SAFETY: the kernel reads and writes a btrfs_ioctl_get_subvol_rootref_args,
        // which RootRefArgs is (repr(C), same fields and size).
        let more = match unsafe { ioctl(fd, Updater::<GET_SUBVOL_ROOTREF, RootRefArgs>::new(&mut a)) } {
            Ok(()) => false,
            // The buffer is full and there are more; what fitted was written.
            Err(Errno::OVERFLOW) => true,
            Err(e) => return Err(e),
        };
        Ok((a.rootref[..a.num_items as usize].iter().map(|r| (r[0], r[1])).collect(), more))
    }

    /// The path of inode `ino` in the subvolume of `fd` (root only).
    pub fn ino_lookup(fd: &OwnedFd, ino: u64) -> rustix::io::Result<PathBuf> {
        let mut a = LookupArgs { treeid: 0, objectid: ino, name: [0; 4080] };
        // SAFETY: as above, for btrfs_ioctl_ino_lookup_args.
        unsafe { ioctl(fd, Updater::<INO_LOOKUP, LookupArgs>::new(&mut a))? };
        Ok(c_path(&a.name))
    }

    /// A NUL-terminated name the kernel wrote.
    fn c_path(b: &[u8]) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]))
    }

    /// The path of directory `dirid` relative to `fd` (a subvolume's top) and the name
    /// of subvolume `treeid` in it.
    pub fn lookup_user(fd: &OwnedFd, dirid: u64, treeid: u64) -> rustix::io::Result<(PathBuf, PathBuf)> {
        let mut a = LookupUserArgs { dirid, treeid, name: [0; 256], path: [0; 3824] };
        // SAFETY: as above, for btrfs_ioctl_ino_lookup_user_args.
        unsafe { ioctl(fd, Updater::<INO_LOOKUP_USER, LookupUserArgs>::new(&mut a))? };
        Ok((c_path(&a.path), c_path(&a.name)))
    }

    pub fn subvol_destroy(parent: &OwnedFd, name: &OsStr) -> rustix::io::Result<()> {
        // SAFETY: as above.
        unsafe { ioctl(parent, Setter::<SNAP_DESTROY, VolArgs>::new(args(0, name)?)) }
    }

    #[test]
    fn args_are_the_kernels_size() {
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<RootRefArgs>(), 4096);
        assert_eq!(std::mem::size_of::<LookupUserArgs>(), 4096);
        assert_eq!(std::mem::size_of::<LookupArgs>(), 4096);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_directories_off_btrfs() {
        let tmp = tempfile::tempdir().unwrap();
        if fs_name(tmp.path()).unwrap() == "btrfs" {
            return;
        }
        let root = tmp.path().join("c1");
        assert_eq!(create_root(&root).unwrap(), Backend::Dir);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777, 0o755);
        assert_eq!(backend_of(&root), Some(Backend::Dir));
        std::fs::create_dir_all(root.join("etc/x")).unwrap();
        std::fs::write(root.join("etc/x/f"), b"x").unwrap();
        let (b, how) = clone_root(&root, &tmp.path().join("c2"), &Control::default()).unwrap();
        assert_eq!(b, Backend::Dir);
        assert!(matches!(how, Cloned::Copy(s) if s.files == 1));
        assert_eq!(std::fs::read(tmp.path().join("c2/etc/x/f")).unwrap(), b"x");
        remove_root(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(backend_of(&root), None);
        // Whatever else is there is removed without following it.
        std::fs::create_dir(tmp.path().join("target")).unwrap();
        std::fs::write(tmp.path().join("target/keep"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("target"), &root).unwrap();
        remove_root(&root).unwrap();
        assert!(root.symlink_metadata().is_err() && tmp.path().join("target/keep").exists());
        // A clone never lands on an existing directory.
        assert!(clone_root(&tmp.path().join("c2"), &tmp.path().join("c2"), &Control::default()).is_err());
        assert!(tmp.path().join("c2/etc/x/f").exists());
    }
}
