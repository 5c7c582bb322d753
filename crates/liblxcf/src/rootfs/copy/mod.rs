//! Faithful tree copy: the host's /etc, /var (and /usr for separate containers)
//! into a new container root, and a whole container root when cloning.
//!
//! Why our own: no crate copies owner, mode, nanosecond times, xattrs (file
//! capabilities, ACLs, SELinux labels), hard links, holes and special files while
//! staying on one mount and never following a symlink; `cp -a` does, but it has no
//! exclusion list, runs on one core and we would parse its errors.
//!
//! Everything is done relative to directory file descriptors: a directory is
//! opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`
//! from the top of its tree, every entry in it by name with `O_NOFOLLOW`, so a
//! symlink in the source (which may be a container root, when cloning) can never
//! redirect a read or a write outside the two trees.
//!
//! Several workers share the directories of all the trees of one copy ([`copy_trees`]):
//! the work is mostly in the kernel (inode creation, page-cache copies), which
//! scales with cores and overlaps with I/O. Each worker takes a directory, creates
//! its entries and queues its subdirectories. Directories get their owner, mode,
//! xattrs and times in a second pass, once everything inside them exists: creating
//! an entry moves its directory's mtime, a set-group-ID directory or a default ACL
//! would change what is created inside it, and the permissions of a directory the
//! host's root cannot enter anyway do not matter while it is being filled.
//!
//! File data goes by reflink (FICLONE) where source and destination share a
//! filesystem that can (btrfs, xfs), else by copy_file_range over the data extents
//! only, so holes stay holes; each file falls back on its own when a reflink fails.

mod walk;

pub(crate) use walk::times;

#[cfg(test)]
mod tests;

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, StatxFlags, CWD};
use rustix::io::Errno;

use crate::rootfs::layout::Prune;

/// A copy failed: what was done to which path, and why.
pub use crate::error::IoError as CopyError;

type Result<T> = std::result::Result<T, CopyError>;

/// What to leave out of one tree's copy.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Paths relative to the source top and how much of them to keep.
    pub prune: Vec<(PathBuf, Prune)>,
    /// Directories (device, inode) never entered: lxcf's own container root when it
    /// lies inside a copied tree.
    pub skip_dirs: Vec<(u64, u64)>,
}

/// One tree of a copy.
#[derive(Debug, Clone)]
pub struct Job {
    pub src: PathBuf,
    /// Created by the copy; or, with `into`, an existing empty directory (a btrfs
    /// subvolume made for it) that gets the source top's owner, mode and times.
    pub dst: PathBuf,
    pub into: bool,
    pub opts: Options,
}

impl Job {
    pub fn new(src: impl Into<PathBuf>, dst: impl Into<PathBuf>, opts: Options) -> Job {
        Job { src: src.into(), dst: dst.into(), into: false, opts }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub special: u64,
    pub hardlinks: u64,
    pub bytes: u64,
    /// Regular files whose data was shared by a reflink rather than copied.
    pub reflinked: u64,
    /// Entries on other mounts, not copied.
    pub other_mounts: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.special += o.special;
        self.hardlinks += o.hardlinks;
        self.bytes += o.bytes;
        self.reflinked += o.reflinked;
        self.other_mounts += o.other_mounts;
    }
}

/// Counters a progress display reads while a copy runs.
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    /// Entries created so far (files, directories, links, special files).
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Bytes of file data copied or shared so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn add(&self, files: u64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        if bytes != 0 {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// How a copy runs.
#[derive(Clone, Copy)]
pub struct Control<'a> {
    /// Threads working at once.
    pub workers: usize,
    pub progress: Option<&'a Progress>,
    /// Tests: called with a regular file's path relative to its tree's top just
    /// before it is opened, to change the source at that moment.
    #[cfg(test)]
    pub before_open: Option<&'a (dyn Fn(&Path) + Sync)>,
}

impl Default for Control<'_> {
    fn default() -> Self {
        Control {
            workers: default_workers(),
            progress: None,
            #[cfg(test)]
            before_open: None,
        }
    }
}

/// Two workers per core: a worker often waits (for a block read on a cold cache,
/// for writeback when dirty pages pile up), and another then keeps the core busy.
/// Measured on 2 cores in docs/PERFORMANCE.md; more than that only adds contention
/// on the directories and the journal.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8) * 2
}

/// Identity of a directory for [`Options::skip_dirs`].
pub fn dir_id(path: &Path) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::statx(CWD, path, AtFlags::empty(), StatxFlags::BASIC_STATS)?;
    Ok((dev_of(&st), st.stx_ino))
}

/// Copies the directory `src` to `dst`, which must not exist yet. Its parent must.
pub fn copy_tree(src: &Path, dst: &Path, opts: &Options) -> Result<Stats> {
    copy_trees(&[Job::new(src, dst, opts.clone())], &Control::default())
}

/// Copies several trees at once with one set of workers. On an error the copy
/// stops and the error is returned; what was made is left for the caller to remove.
pub fn copy_trees(jobs: &[Job], ctl: &Control) -> Result<Stats> {
    walk::run(jobs, ctl)
}

/// Copies one entry that is not a directory (a file, symlink or special file) from
/// `src` to `dst`, faithfully, as [`copy_tree`] would.
pub fn copy_entry(src: &Path, dst: &Path) -> Result<()> {
    let (sparent, sname) = split(src)?;
    let (dparent, dname) = split(dst)?;
    let st = rustix::fs::statx(CWD, src, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS).map_err(err("stat", src))?;
    if FileType::from_raw_mode(st.stx_mode as _) == FileType::Directory || sname != dname {
        return Err(CopyError {
            op: "copy",
            path: src.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "only a non-directory to the same name"),
        });
    }
    walk::run_entry(sparent, dparent, sname)
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> CopyError + 'a {
    move |e| CopyError { op, path: path.to_path_buf(), source: e.into() }
}

fn split(p: &Path) -> Result<(&Path, &OsStr)> {
    match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => Ok((if d.as_os_str().is_empty() { Path::new(".") } else { d }, n)),
        _ => Err(CopyError {
            op: "use",
            path: p.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path with a parent and a name is needed"),
        }),
    }
}

pub(crate) fn dev_of(st: &rustix::fs::Statx) -> u64 {
    ((st.stx_dev_major as u64) << 32) | st.stx_dev_minor as u64
}

/// The xattr calls need a buffer of the right size. Most files have none, so a
/// small buffer is tried first (one syscall instead of two); the size can change
/// between a query and the read (ERANGE), so that path retries.
fn with_size(
    query: impl Fn() -> rustix::io::Result<usize>,
    read: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut small = [0u8; 256];
    match read(&mut small) {
        Ok(n) => return Ok(small[..n].to_vec()),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e),
    }
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

/// Name and value of every xattr, from a list and a get call; none where the
/// filesystem has no xattrs.
fn collect_xattrs(
    list: impl Fn() -> rustix::io::Result<Vec<u8>>,
    get: impl Fn(&CStr) -> rustix::io::Result<Vec<u8>>,
) -> rustix::io::Result<Vec<(CString, Vec<u8>)>> {
    let names = match list() {
        Ok(n) => n,
        Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).expect("split at NUL");
        match get(&name) {
            Ok(v) => out.push((name, v)),
            Err(Errno::NODATA) => {} // removed meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The xattrs of an open file or directory.
pub(crate) fn xattrs_fd(fd: &impl AsFd) -> rustix::io::Result<Vec<(CString, Vec<u8>)>> {
    collect_xattrs(
        || with_size(|| rustix::fs::flistxattr_query(fd), |b| rustix::fs::flistxattr(fd, b)),
        |n| with_size(|| rustix::fs::fgetxattr_query(fd, n), |b| rustix::fs::fgetxattr(fd, n, b)),
    )
}

/// The same for a symlink or special file, which cannot be opened: by path through
/// the already-open parent (`/proc/self/fd/N/NAME`), so that no other path
/// component is looked up again.
fn xattrs_at(dir: &OwnedFd, name: &OsStr) -> rustix::io::Result<Vec<(CString, Vec<u8>)>> {
    let p = fd_path(dir, name);
    collect_xattrs(
        || with_size(|| rustix::fs::llistxattr_query(&p), |b| rustix::fs::llistxattr(&p, b)),
        |n| with_size(|| rustix::fs::lgetxattr_query(&p, n), |b| rustix::fs::lgetxattr(&p, n, b)),
    )
}

fn fd_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

/// Reads one xattr of a path (not following a symlink); for tests and callers
/// that check a copy.
pub fn get_xattr(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let name = CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    Ok(with_size(|| rustix::fs::lgetxattr_query(p, &name), |b| rustix::fs::lgetxattr(p, &name, b))?)
}

fn os(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}
