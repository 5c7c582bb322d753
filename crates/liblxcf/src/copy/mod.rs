//! Faithful tree copy: the host's /etc, /var (and /usr for separate containers)
//! into a new container root.
//!
//! Why our own: no crate copies owner, mode, nanosecond times, xattrs (file
//! capabilities, ACLs, SELinux labels), hard links, holes and special files while
//! staying on one mount and never following a symlink; `cp -a` does, but it has no
//! exclusion list and we would parse its errors.
//!
//! Everything is done relative to directory file descriptors opened with
//! `O_NOFOLLOW`, so a symlink in the source (which may be a container root, when
//! cloning) can never redirect a read or a write outside the two trees.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, StatxFlags, Timespec, Timestamps, XattrFlags, CWD,
};
use rustix::io::Errno;

use crate::layout::Prune;

#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}: {source}", path.display())]
pub struct CopyError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

type Result<T> = std::result::Result<T, CopyError>;

/// What to leave out of a copy.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Paths relative to the source top and how much of them to keep.
    pub prune: Vec<(PathBuf, Prune)>,
    /// Directories (device, inode) never entered: lxcf's own container root when it
    /// lies inside a copied tree.
    pub skip_dirs: Vec<(u64, u64)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub special: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    /// Entries on other mounts, not copied.
    pub other_mounts: u64,
}

/// Identity of a directory for [`Options::skip_dirs`].
pub fn dir_id(path: &Path) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::statx(CWD, path, AtFlags::empty(), StatxFlags::BASIC_STATS)?;
    Ok((dev_of(&st), st.stx_ino))
}

/// Copies the directory `src` to `dst`, which must not exist yet. Its parent must.
pub fn copy_tree(src: &Path, dst: &Path, opts: &Options) -> Result<Stats> {
    let src_fd = rustix::fs::open(src, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(err("open", src))?;
    let top = statx_fd(&src_fd).map_err(err("stat", src))?;
    let (parent, name) = split(dst)?;
    let dst_parent = rustix::fs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(err("open", parent))?;
    let mut c = Copier {
        opts,
        src_root: src.to_path_buf(),
        dst_root: dst.to_path_buf(),
        mnt_id: (top.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(top.stx_mnt_id),
        dev: dev_of(&top),
        links: HashMap::new(),
        stats: Stats::default(),
        reflink: true,
    };
    c.dir(&src_fd, &top, &dst_parent, name, Path::new(""), false)?;
    Ok(c.stats)
}

/// Copies one entry that is not a directory (a file, symlink or special file) from
/// `src` to `dst`, faithfully, as [`copy_tree`] would.
pub fn copy_entry(src: &Path, dst: &Path) -> Result<()> {
    let (sparent, sname) = split(src)?;
    let (dparent, dname) = split(dst)?;
    let open = |p: &Path| {
        rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(err("open", p))
    };
    let (sfd, dfd) = (open(sparent)?, open(dparent)?);
    let st = rustix::fs::statx(&sfd, sname, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS)
        .map_err(err("stat", src))?;
    if FileType::from_raw_mode(st.stx_mode as _) == FileType::Directory || sname != dname {
        return Err(CopyError {
            op: "copy",
            path: src.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "only a non-directory to the same name"),
        });
    }
    let mut c = Copier {
        opts: &Options::default(),
        src_root: sparent.to_path_buf(),
        dst_root: dparent.to_path_buf(),
        mnt_id: None,
        dev: dev_of(&st),
        links: HashMap::new(),
        stats: Stats::default(),
        reflink: true,
    };
    let name = CString::new(sname.as_bytes()).map_err(|_| err("copy", src)(Errno::INVAL))?;
    c.entry(&sfd, &dfd, &name, Path::new(""), false)
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> CopyError + 'a {
    move |e| CopyError { op, path: path.to_path_buf(), source: e.into() }
}

fn split(dst: &Path) -> Result<(&Path, &OsStr)> {
    match (dst.parent(), dst.file_name()) {
        (Some(p), Some(n)) => Ok((if p.as_os_str().is_empty() { Path::new(".") } else { p }, n)),
        _ => Err(CopyError {
            op: "create",
            path: dst.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "destination needs a parent and a name"),
        }),
    }
}

struct Copier<'a> {
    opts: &'a Options,
    src_root: PathBuf,
    dst_root: PathBuf,
    mnt_id: Option<u64>,
    dev: u64,
    /// Files with several links already copied: (dev, ino) -> path relative to the top.
    links: HashMap<(u64, u64), PathBuf>,
    stats: Stats,
    /// FICLONE is tried until the filesystem says it cannot.
    reflink: bool,
}

fn dev_of(st: &rustix::fs::Statx) -> u64 {
    ((st.stx_dev_major as u64) << 32) | st.stx_dev_minor as u64
}

fn statx_fd(fd: &OwnedFd) -> rustix::io::Result<rustix::fs::Statx> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
}

fn ts(t: &rustix::fs::StatxTimestamp) -> Timespec {
    Timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec as _ }
}

fn times(st: &rustix::fs::Statx) -> Timestamps {
    Timestamps { last_access: ts(&st.stx_atime), last_modification: ts(&st.stx_mtime) }
}

impl Copier<'_> {
    fn src_path(&self, rel: &Path) -> PathBuf {
        self.src_root.join(rel)
    }

    fn dst_path(&self, rel: &Path) -> PathBuf {
        self.dst_root.join(rel)
    }

    fn prune_of(&self, rel: &Path) -> Option<Prune> {
        self.opts.prune.iter().find(|(p, _)| p == rel).map(|(_, k)| *k)
    }

    fn same_mount(&self, st: &rustix::fs::Statx) -> bool {
        match self.mnt_id {
            Some(id) if st.stx_mask & StatxFlags::MNT_ID.bits() != 0 => st.stx_mnt_id == id,
            _ => dev_of(st) == self.dev,
        }
    }

    /// Copies the directory `src` (already open, stat `st`) to `dst_parent/name`.
    /// `files_pruned`: only directories are copied below here ([`Prune::Files`]).
    fn dir(
        &mut self,
        src: &OwnedFd,
        st: &rustix::fs::Statx,
        dst_parent: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        files_pruned: bool,
    ) -> Result<()> {
        let dpath = || self.dst_path(rel);
        rustix::fs::mkdirat(dst_parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| self.err("create directory", dpath(), e))?;
        let dst = rustix::fs::openat(
            dst_parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("open", dpath(), e))?;
        self.stats.dirs += 1;

        let prune = self.prune_of(rel);
        if prune != Some(Prune::Contents) {
            let files_pruned = files_pruned || prune == Some(Prune::Files);
            let mut entries: Vec<CString> = Vec::new();
            let dir = rustix::fs::Dir::read_from(src).map_err(|e| self.err("read directory", self.src_path(rel), e))?;
            for entry in dir {
                let entry = entry.map_err(|e| self.err("read directory", self.src_path(rel), e))?;
                let n = entry.file_name();
                if n != c"." && n != c".." {
                    entries.push(n.to_owned());
                }
            }
            // Sorted: the same tree always copies in the same order (hard links, errors).
            entries.sort();
            for n in entries {
                self.entry(src, &dst, &n, rel, files_pruned)?;
            }
        }
        self.finish(src, &dst, st, rel)
    }

    fn entry(&mut self, src_dir: &OwnedFd, dst_dir: &OwnedFd, name: &CStr, parent_rel: &Path, files_pruned: bool) -> Result<()> {
        let os_name = OsStr::from_bytes(name.to_bytes());
        let rel = parent_rel.join(os_name);
        let st = match rustix::fs::statx(src_dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID) {
            Ok(st) => st,
            // Gone since its directory was read: the source is a live host (dpkg, log
            // rotation). There is nothing left to copy.
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.err("stat", self.src_path(&rel), e)),
        };
        if !self.same_mount(&st) {
            tracing::debug!(path = %self.src_path(&rel).display(), "not copied: on another mount");
            self.stats.other_mounts += 1;
            return Ok(());
        }
        if self.prune_of(&rel) == Some(Prune::Skip) {
            return Ok(());
        }
        let ftype = FileType::from_raw_mode(st.stx_mode as _);
        if files_pruned && ftype != FileType::Directory {
            return Ok(());
        }
        match ftype {
            FileType::Directory => {
                if self.opts.skip_dirs.contains(&(dev_of(&st), st.stx_ino)) {
                    tracing::debug!(path = %self.src_path(&rel).display(), "not copied: lxcf's container root");
                    return Ok(());
                }
                let fd = match rustix::fs::openat(
                    src_dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(()), // gone meanwhile, as above
                    Err(e) => return Err(self.err("open", self.src_path(&rel), e)),
                };
                self.dir(&fd, &st, dst_dir, os_name, &rel, files_pruned)
            }
            FileType::RegularFile => self.file(src_dir, dst_dir, name, &st, &rel),
            FileType::Symlink => self.symlink(src_dir, dst_dir, name, &st, &rel),
            _ => self.special(src_dir, dst_dir, name, &st, &rel),
        }
    }

    fn hardlink(&mut self, dst_dir: &OwnedFd, name: &CStr, st: &rustix::fs::Statx, rel: &Path) -> Result<bool> {
        if st.stx_nlink < 2 {
            return Ok(false);
        }
        let key = (dev_of(st), st.stx_ino);
        if let Some(first) = self.links.get(&key) {
            let target = self.dst_path(first);
            rustix::fs::linkat(CWD, &target, dst_dir, name, AtFlags::empty())
                .map_err(|e| self.err("hard-link", self.dst_path(rel), e))?;
            self.stats.hardlinks += 1;
            return Ok(true);
        }
        self.links.insert(key, rel.to_path_buf());
        Ok(false)
    }

    fn file(&mut self, src_dir: &OwnedFd, dst_dir: &OwnedFd, name: &CStr, st: &rustix::fs::Statx, rel: &Path) -> Result<()> {
        // Opened before a hard link is recorded: a file gone meanwhile (as in
        // `entry`) is skipped without leaving a link target that was never made.
        let src = match rustix::fs::openat(src_dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.err("open", self.src_path(rel), e)),
        };
        if self.hardlink(dst_dir, name, st, rel)? {
            return Ok(());
        }
        let dst = rustix::fs::openat(
            dst_dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err("create", self.dst_path(rel), e))?;
        self.data(&src, &dst, st).map_err(|e| self.err("copy data to", self.dst_path(rel), e))?;
        self.stats.files += 1;
        self.stats.bytes += st.stx_size;
        self.finish(&src, &dst, st, rel)
    }

    /// File contents: a reflink where the filesystem can, else copy_file_range over
    /// the data extents only, so holes stay holes.
    fn data(&mut self, src: &OwnedFd, dst: &OwnedFd, st: &rustix::fs::Statx) -> rustix::io::Result<()> {
        let size = st.stx_size;
        if size == 0 {
            return Ok(());
        }
        if self.reflink {
            match rustix::fs::ioctl_ficlone(dst, src) {
                Ok(()) => return Ok(()),
                // Not supported here or across these filesystems: never again for this copy.
                Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::NOTTY | Errno::PERM) => {
                    self.reflink = false
                }
                Err(e) => return Err(e),
            }
        }
        let sparse = st.stx_blocks * 512 < size;
        let mut off: u64 = 0;
        while off < size {
            let (start, end) = if sparse {
                let start = match rustix::fs::seek(src, rustix::fs::SeekFrom::Data(off)) {
                    Ok(s) => s,
                    Err(Errno::NXIO) => break, // only a hole is left
                    Err(e) => return Err(e),
                };
                let end = rustix::fs::seek(src, rustix::fs::SeekFrom::Hole(start))?;
                (start, end)
            } else {
                (off, size)
            };
            let mut pos_in = start;
            let mut pos_out = start;
            while pos_in < end {
                let want = (end - pos_in).min(1 << 30) as usize;
                let n = match rustix::fs::copy_file_range(src, Some(&mut pos_in), dst, Some(&mut pos_out), want) {
                    Ok(n) => n,
                    Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                        copy_plain(src, dst, &mut pos_in, &mut pos_out, end)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break; // the file shrank while we copied it
                }
            }
            off = end;
        }
        // A trailing hole: extend to the full size without writing.
        rustix::fs::ftruncate(dst, size)?;
        Ok(())
    }

    fn symlink(&mut self, src_dir: &OwnedFd, dst_dir: &OwnedFd, name: &CStr, st: &rustix::fs::Statx, rel: &Path) -> Result<()> {
        let target = match rustix::fs::readlinkat(src_dir, name, Vec::new()) {
            Ok(t) => t,
            Err(Errno::NOENT) => return Ok(()), // gone meanwhile, as in `entry`
            Err(e) => return Err(self.err("read link", self.src_path(rel), e)),
        };
        rustix::fs::symlinkat(&*target, dst_dir, name).map_err(|e| self.err("create link", self.dst_path(rel), e))?;
        rustix::fs::chownat(
            dst_dir,
            name,
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err("change owner of", self.dst_path(rel), e))?;
        self.copy_xattrs_path(src_dir, dst_dir, name, rel)?;
        rustix::fs::utimensat(dst_dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("set times of", self.dst_path(rel), e))?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn special(&mut self, src_dir: &OwnedFd, dst_dir: &OwnedFd, name: &CStr, st: &rustix::fs::Statx, rel: &Path) -> Result<()> {
        if self.hardlink(dst_dir, name, st, rel)? {
            return Ok(());
        }
        let ftype = FileType::from_raw_mode(st.stx_mode as _);
        let dev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
        rustix::fs::mknodat(dst_dir, name, ftype, Mode::from_raw_mode(0o600), dev)
            .map_err(|e| self.err("create", self.dst_path(rel), e))?;
        rustix::fs::chownat(
            dst_dir,
            name,
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err("change owner of", self.dst_path(rel), e))?;
        rustix::fs::chmodat(dst_dir, name, Mode::from_raw_mode((st.stx_mode & 0o7777) as _), AtFlags::empty())
            .map_err(|e| self.err("change mode of", self.dst_path(rel), e))?;
        self.copy_xattrs_path(src_dir, dst_dir, name, rel)?;
        rustix::fs::utimensat(dst_dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("set times of", self.dst_path(rel), e))?;
        self.stats.special += 1;
        Ok(())
    }

    /// Owner, then mode (chown clears set-id bits). Xattrs come after this, as chown
    /// also drops `security.capability`; times come last of all.
    fn owner_mode(&self, fd: &OwnedFd, st: &rustix::fs::Statx, rel: &Path) -> Result<()> {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(st.stx_uid)),
            Some(rustix::fs::Gid::from_raw(st.stx_gid)),
        )
        .map_err(|e| self.err("change owner of", self.dst_path(rel), e))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode((st.stx_mode & 0o7777) as _))
            .map_err(|e| self.err("change mode of", self.dst_path(rel), e))
    }

    /// Owner, mode, xattrs, times, in that order, for a file or directory open as `dst`.
    fn finish(&self, src: &OwnedFd, dst: &OwnedFd, st: &rustix::fs::Statx, rel: &Path) -> Result<()> {
        self.owner_mode(dst, st, rel)?;
        self.copy_xattrs_fd(src, dst, rel)?;
        rustix::fs::futimens(dst, &times(st)).map_err(|e| self.err("set times of", self.dst_path(rel), e))
    }

    fn copy_xattrs_fd(&self, src: &OwnedFd, dst: &OwnedFd, rel: &Path) -> Result<()> {
        let names = match list_fd(src) {
            Ok(n) => n,
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(self.err("list xattrs of", self.src_path(rel), e)),
        };
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = CString::new(name).expect("split at NUL");
            let value = get_fd(src, &name).map_err(|e| self.err("read xattrs of", self.src_path(rel), e))?;
            rustix::fs::fsetxattr(dst, &*name, &value, XattrFlags::empty())
                .map_err(|e| self.err("set xattrs of", self.dst_path(rel), e))?;
        }
        Ok(())
    }

    /// Symlinks and special files cannot be opened for their xattrs; go by path, through
    /// the already-open parent directories (`/proc/self/fd/N/NAME`), so that no path
    /// component is looked up again.
    fn copy_xattrs_path(&self, src_dir: &OwnedFd, dst_dir: &OwnedFd, name: &CStr, rel: &Path) -> Result<()> {
        let src = fd_path(src_dir, name);
        let dst = fd_path(dst_dir, name);
        let names = match list_path(&src) {
            Ok(n) => n,
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(self.err("list xattrs of", self.src_path(rel), e)),
        };
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = CString::new(name).expect("split at NUL");
            let value = get_path(&src, &name).map_err(|e| self.err("read xattrs of", self.src_path(rel), e))?;
            rustix::fs::lsetxattr(&dst, &*name, &value, XattrFlags::empty())
                .map_err(|e| self.err("set xattrs of", self.dst_path(rel), e))?;
        }
        Ok(())
    }

    fn err(&self, op: &'static str, path: PathBuf, e: Errno) -> CopyError {
        CopyError { op, path, source: e.into() }
    }
}

/// Plain read/write for files copy_file_range refuses (some FUSE or proc-like files).
fn copy_plain(src: &OwnedFd, dst: &OwnedFd, pos_in: &mut u64, pos_out: &mut u64, end: u64) -> rustix::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while *pos_in < end {
        let want = ((end - *pos_in) as usize).min(buf.len());
        let n = rustix::io::pread(src, &mut buf[..want], *pos_in)?;
        if n == 0 {
            return Ok(());
        }
        let mut done = 0;
        while done < n {
            done += rustix::io::pwrite(dst, &buf[done..n], *pos_out + done as u64)?;
        }
        *pos_in += n as u64;
        *pos_out += n as u64;
    }
    Ok(())
}

/// The xattr calls need a buffer of the right size; the size can change between the
/// query and the read (ERANGE), so retry.
fn with_size(query: impl Fn() -> rustix::io::Result<usize>, read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>) -> rustix::io::Result<Vec<u8>> {
    loop {
        let len = query()?;
        let mut buf = vec![0u8; len];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn list_fd(fd: &impl AsFd) -> rustix::io::Result<Vec<u8>> {
    with_size(|| rustix::fs::flistxattr_query(fd), |b| rustix::fs::flistxattr(fd, b))
}

fn get_fd(fd: &impl AsFd, name: &CStr) -> rustix::io::Result<Vec<u8>> {
    with_size(|| rustix::fs::fgetxattr_query(fd, name), |b| rustix::fs::fgetxattr(fd, name, b))
}

fn fd_path(dir: &OwnedFd, name: &CStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name.to_bytes()));
    p
}

fn list_path(p: &Path) -> rustix::io::Result<Vec<u8>> {
    with_size(|| rustix::fs::llistxattr_query(p), |b| rustix::fs::llistxattr(p, b))
}

fn get_path(p: &Path, name: &CStr) -> rustix::io::Result<Vec<u8>> {
    with_size(|| rustix::fs::lgetxattr_query(p, name), |b| rustix::fs::lgetxattr(p, name, b))
}

#[cfg(test)]
mod tests;
