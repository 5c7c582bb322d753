//! The workers of a copy: a shared stack of directories to fill, the hard-link
//! table, and the per-entry operations.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, StatxFlags, Timespec, Timestamps, Uid, XattrFlags, CWD};
use rustix::io::Errno;

use super::{dev_of, os, xattrs_at, xattrs_fd, Control, CopyError, Job, Progress, Result, Stats};
use crate::rootfs::layout::Prune;

type Statx = rustix::fs::Statx;
type Xattrs = Vec<(CString, Vec<u8>)>;

/// Directories are looked up from the top of their tree without following any
/// symlink and without leaving the mount.
const BENEATH: ResolveFlags =
    ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS).union(ResolveFlags::NO_XDEV);

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// The parent directories the caller names (of the destination, or of a single
/// entry) are looked up as any path is, their last component included: callers
/// hand in `/proc/self/fd/N` paths of directories they hold open (`merge`).
const PARENT_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// One tree being copied, shared by the workers.
struct Tree<'a> {
    job: &'a Job,
    src: OwnedFd,
    dst: OwnedFd,
    mnt_id: Option<u64>,
    dev: u64,
    /// FICLONE is tried until the filesystems say they cannot, then never again.
    reflink: AtomicBool,
    /// copy_file_range likewise (it refuses some pairs of filesystems).
    cfr: AtomicBool,
}

/// A directory whose entries are still to be created.
struct Task {
    tree: usize,
    rel: PathBuf,
    st: Statx,
    /// Only directories are copied below here ([`Prune::Files`]).
    files_pruned: bool,
}

/// A directory whose own metadata is set once everything inside it exists.
struct DirMeta {
    tree: usize,
    rel: PathBuf,
    st: Statx,
    xattrs: Xattrs,
}

#[derive(Default)]
struct Queue {
    tasks: Vec<Task>,
    /// Workers inside a task; the copy is done when this is 0 and `tasks` is empty.
    busy: usize,
}

enum Link {
    /// The first path of this inode is being copied by another worker.
    Pending,
    Done {
        tree: usize,
        rel: PathBuf,
    },
    Failed,
}

struct Shared<'a> {
    trees: Vec<Tree<'a>>,
    queue: Mutex<Queue>,
    queued: Condvar,
    links: Mutex<HashMap<(u64, u64), Link>>,
    linked: Condvar,
    dirs: Mutex<Vec<DirMeta>>,
    stats: Mutex<Stats>,
    progress: Option<&'a Progress>,
    #[cfg(test)]
    before_open: Option<&'a (dyn Fn(&Path) + Sync)>,
    failed: AtomicBool,
    error: Mutex<Option<CopyError>>,
    /// Who creates the files: entries already owned so need no chown.
    uid: u32,
    gid: u32,
    /// Bits a create with mode M loses; an fchmod is needed only where it matters.
    umask: Option<u32>,
}

fn ts(t: &rustix::fs::StatxTimestamp) -> Timespec {
    Timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec as _ }
}

/// A file's access and modification times, for utimensat.
pub(crate) fn times(st: &Statx) -> Timestamps {
    Timestamps { last_access: ts(&st.stx_atime), last_modification: ts(&st.stx_mtime) }
}

fn open_beneath(top: &OwnedFd, rel: &Path) -> rustix::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    crate::rootfs::scoped::openat2(top, rel, DIR_FLAGS, BENEATH)
}

fn statx_at(dir: &OwnedFd, name: &CStr) -> rustix::io::Result<Statx> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
}

/// The process umask, without changing it (umask(2) would, for every thread).
fn current_umask() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let v = s.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(v.trim(), 8).ok()
}

pub(super) fn run(jobs: &[Job], ctl: &Control) -> Result<Stats> {
    let mut trees = Vec::new();
    let mut tops = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let src = rustix::fs::open(&job.src, DIR_FLAGS, Mode::empty()).map_err(super::err("open", &job.src))?;
        let st = rustix::fs::statx(&src, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
            .map_err(super::err("stat", &job.src))?;
        let (parent, name) = super::split(&job.dst)?;
        if !job.into {
            rustix::fs::mkdirat(CWD, &job.dst, Mode::from_raw_mode(0o700)).map_err(super::err("create directory", &job.dst))?;
        } else if !is_empty_dir(&job.dst)? {
            return Err(CopyError {
                op: "copy into",
                path: job.dst.clone(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the directory is not empty"),
            });
        }
        let pfd = rustix::fs::open(parent, PARENT_FLAGS, Mode::empty()).map_err(super::err("open", parent))?;
        let dst = rustix::fs::openat(&pfd, name, DIR_FLAGS, Mode::empty()).map_err(super::err("open", &job.dst))?;
        trees.push(Tree {
            job,
            src,
            dst,
            mnt_id: (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id),
            dev: dev_of(&st),
            reflink: AtomicBool::new(true),
            cfr: AtomicBool::new(true),
        });
        tops.push(Task { tree: i, rel: PathBuf::new(), st, files_pruned: false });
    }
    let sh = Shared::new(trees, tops, ctl);
    // Each top directory counts as one.
    sh.stats.lock().unwrap().dirs += jobs.len() as u64;
    let workers = ctl.workers.max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| sh.worker());
        }
    });
    if let Some(e) = sh.error.lock().unwrap().take() {
        return Err(e);
    }
    // Second pass: the directories' own metadata, now that their contents exist.
    let dirs = std::mem::take(&mut *sh.dirs.lock().unwrap());
    let chunk = dirs.len().div_ceil(workers).max(1);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| {
                let sh = &sh;
                s.spawn(move || part.iter().try_for_each(|d| sh.finish_dir(d)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("copy worker panicked")).collect()
    });
    results.into_iter().collect::<Result<()>>()?;
    Ok(sh.stats.into_inner().unwrap())
}

/// [`super::copy_entry`]: one non-directory, by the same code as a tree's entries.
pub(super) fn run_entry(sparent: &Path, dparent: &Path, name: &OsStr) -> Result<()> {
    let src = rustix::fs::open(sparent, PARENT_FLAGS, Mode::empty()).map_err(super::err("open", sparent))?;
    let dst = rustix::fs::open(dparent, PARENT_FLAGS, Mode::empty()).map_err(super::err("open", dparent))?;
    let st = rustix::fs::statx(&src, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS).map_err(super::err("stat", sparent))?;
    let job = Job::new(sparent, dparent, Default::default());
    let tree = Tree { job: &job, src, dst, mnt_id: None, dev: dev_of(&st), reflink: AtomicBool::new(true), cfr: AtomicBool::new(true) };
    let sh = Shared::new(vec![tree], Vec::new(), &super::Control::default());
    let name = CString::new(name.as_bytes()).map_err(|_| super::err("copy", &sparent.join(name))(Errno::INVAL))?;
    let t = &sh.trees[0];
    let mut stats = Stats::default();
    // Not a directory: the caller checked, and `entry` would only queue it.
    sh.entry(0, &t.src, &t.dst, &name, Path::new(""), false, &mut stats)
}

impl<'a> Shared<'a> {
    fn new(trees: Vec<Tree<'a>>, tasks: Vec<Task>, ctl: &Control<'a>) -> Shared<'a> {
        Shared {
            trees,
            queue: Mutex::new(Queue { tasks, busy: 0 }),
            queued: Condvar::new(),
            links: Mutex::new(HashMap::new()),
            linked: Condvar::new(),
            dirs: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            progress: ctl.progress,
            #[cfg(test)]
            before_open: ctl.before_open,
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            umask: current_umask(),
        }
    }

    fn src_path(&self, tree: usize, rel: &Path) -> PathBuf {
        self.trees[tree].job.src.join(rel)
    }

    fn dst_path(&self, tree: usize, rel: &Path) -> PathBuf {
        self.trees[tree].job.dst.join(rel)
    }

    fn src_err(&self, op: &'static str, tree: usize, rel: &Path) -> impl FnOnce(Errno) -> CopyError + '_ {
        let path = self.src_path(tree, rel);
        move |e| CopyError { op, path, source: e.into() }
    }

    fn dst_err(&self, op: &'static str, tree: usize, rel: &Path) -> impl FnOnce(Errno) -> CopyError + '_ {
        let path = self.dst_path(tree, rel);
        move |e| CopyError { op, path, source: e.into() }
    }

    fn fail(&self, e: CopyError) {
        let mut slot = self.error.lock().unwrap();
        // A worker waiting for a hard link's first copy learns of the failure with
        // ECANCELED; the failure itself is the better report.
        if slot.as_ref().is_none_or(|old| old.source.raw_os_error() == Some(Errno::CANCELED.raw_os_error())) {
            *slot = Some(e);
        }
        drop(slot);
        self.failed.store(true, Ordering::SeqCst);
        drop(self.queue.lock().unwrap());
        self.queued.notify_all();
        // Wake workers waiting for a hard link's first copy.
        drop(self.links.lock().unwrap());
        self.linked.notify_all();
    }

    fn worker(&self) {
        let mut stats = Stats::default();
        loop {
            let task = {
                let mut q = self.queue.lock().unwrap();
                loop {
                    if self.failed.load(Ordering::SeqCst) {
                        break None;
                    }
                    // Last in, first out: depth first keeps the stack short and the
                    // directories being written few.
                    if let Some(t) = q.tasks.pop() {
                        q.busy += 1;
                        break Some(t);
                    }
                    if q.busy == 0 {
                        break None;
                    }
                    q = self.queued.wait(q).unwrap();
                }
            };
            let Some(task) = task else {
                self.queued.notify_all();
                break;
            };
            if let Err(e) = self.fill_dir(task, &mut stats) {
                self.fail(e);
            }
            let mut q = self.queue.lock().unwrap();
            q.busy -= 1;
            if q.busy == 0 && q.tasks.is_empty() {
                self.queued.notify_all();
            }
        }
        self.stats.lock().unwrap().add(&stats);
    }

    fn push(&self, t: Task) {
        self.queue.lock().unwrap().tasks.push(t);
        self.queued.notify_one();
    }

    fn prune_of(&self, tree: usize, rel: &Path) -> Option<Prune> {
        self.trees[tree].job.opts.prune.iter().find(|(p, _)| p == rel).map(|(_, k)| *k)
    }

    fn same_mount(&self, tree: usize, st: &Statx) -> bool {
        let t = &self.trees[tree];
        match t.mnt_id {
            Some(id) if st.stx_mask & StatxFlags::MNT_ID.bits() != 0 => st.stx_mnt_id == id,
            _ => dev_of(st) == t.dev,
        }
    }

    /// Creates the entries of one directory; its subdirectories become new tasks.
    fn fill_dir(&self, t: Task, stats: &mut Stats) -> Result<()> {
        let tree = &self.trees[t.tree];
        let src = match open_beneath(&tree.src, &t.rel) {
            Ok(fd) => fd,
            // Gone since its parent was read, as in `entry`: so is its copy.
            Err(Errno::NOENT) if !t.rel.as_os_str().is_empty() => {
                rustix::fs::unlinkat(&tree.dst, &t.rel, AtFlags::REMOVEDIR).map_err(self.dst_err("remove", t.tree, &t.rel))?;
                return Ok(());
            }
            Err(e) => return Err(self.src_err("open", t.tree, &t.rel)(e)),
        };
        let dst = open_beneath(&tree.dst, &t.rel).map_err(self.dst_err("open", t.tree, &t.rel))?;
        let xattrs = xattrs_fd(&src).map_err(self.src_err("read xattrs of", t.tree, &t.rel))?;
        let prune = self.prune_of(t.tree, &t.rel);
        if prune != Some(Prune::Contents) {
            let files_pruned = t.files_pruned || prune == Some(Prune::Files);
            let mut entries: Vec<(u64, CString)> = Vec::new();
            let dir = rustix::fs::Dir::read_from(&src).map_err(self.src_err("read directory", t.tree, &t.rel))?;
            for entry in dir {
                let entry = entry.map_err(self.src_err("read directory", t.tree, &t.rel))?;
                let n = entry.file_name();
                if n != c"." && n != c".." {
                    entries.push((entry.ino(), n.to_owned()));
                }
            }
            // In inode order: on a cold cache the inode table is then read in order.
            entries.sort_unstable();
            for (_, n) in entries {
                if self.failed.load(Ordering::Relaxed) {
                    break;
                }
                self.entry(t.tree, &src, &dst, &n, &t.rel, files_pruned, stats)?;
            }
        }
        self.dirs.lock().unwrap().push(DirMeta { tree: t.tree, rel: t.rel, st: t.st, xattrs });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        tree: usize,
        src_dir: &OwnedFd,
        dst_dir: &OwnedFd,
        name: &CStr,
        parent_rel: &Path,
        files_pruned: bool,
        stats: &mut Stats,
    ) -> Result<()> {
        let rel = parent_rel.join(os(name));
        let st = match statx_at(src_dir, name) {
            Ok(st) => st,
            // Gone since its directory was read: the source is a live host (dpkg, log
            // rotation). There is nothing left to copy.
            Err(Errno::NOENT) => return Ok(()),
            // A FUSE mount whose daemon died (lxcfs, sshfs): a mount, so not copied.
            Err(Errno::NOTCONN) => {
                tracing::debug!(path = %self.src_path(tree, &rel).display(), "not copied: a FUSE mount without its daemon");
                stats.other_mounts += 1;
                return Ok(());
            }
            Err(e) => return Err(self.src_err("stat", tree, &rel)(e)),
        };
        if !self.same_mount(tree, &st) {
            tracing::debug!(path = %self.src_path(tree, &rel).display(), "not copied: on another mount");
            stats.other_mounts += 1;
            return Ok(());
        }
        if self.prune_of(tree, &rel) == Some(Prune::Skip) {
            return Ok(());
        }
        let ftype = FileType::from_raw_mode(st.stx_mode as _);
        if files_pruned && ftype != FileType::Directory {
            return Ok(());
        }
        match ftype {
            FileType::Directory => {
                if self.trees[tree].job.opts.skip_dirs.contains(&(dev_of(&st), st.stx_ino)) {
                    tracing::debug!(path = %self.src_path(tree, &rel).display(), "not copied: lxcf's container root");
                    return Ok(());
                }
                rustix::fs::mkdirat(dst_dir, name, Mode::from_raw_mode(0o700)).map_err(self.dst_err("create directory", tree, &rel))?;
                stats.dirs += 1;
                self.tick(0);
                self.push(Task { tree, rel, st, files_pruned });
                Ok(())
            }
            FileType::RegularFile => self.file(tree, src_dir, dst_dir, name, &st, &rel, stats),
            FileType::Symlink => self.symlink(tree, src_dir, dst_dir, name, &st, &rel, stats),
            _ => self.special(tree, src_dir, dst_dir, name, &st, &rel, stats),
        }
    }

    fn tick(&self, bytes: u64) {
        if let Some(p) = self.progress {
            p.add(1, bytes);
        }
    }

    /// For an inode with several links: `None` if this path is the first (the caller
    /// copies it and then calls [`Shared::settle`]), else where the first copy is.
    fn claim(&self, st: &Statx) -> std::result::Result<Option<(usize, PathBuf)>, Errno> {
        let key = (dev_of(st), st.stx_ino);
        let mut links = self.links.lock().unwrap();
        loop {
            match links.get(&key) {
                None => {
                    links.insert(key, Link::Pending);
                    return Ok(None);
                }
                Some(Link::Done { tree, rel }) => return Ok(Some((*tree, rel.clone()))),
                Some(Link::Failed) => return Err(Errno::CANCELED),
                Some(Link::Pending) if self.failed.load(Ordering::SeqCst) => return Err(Errno::CANCELED),
                Some(Link::Pending) => links = self.linked.wait(links).unwrap(),
            }
        }
    }

    fn settle(&self, st: &Statx, done: Option<(usize, PathBuf)>) {
        let key = (dev_of(st), st.stx_ino);
        let v = match done {
            Some((tree, rel)) => Link::Done { tree, rel },
            None => Link::Failed,
        };
        self.links.lock().unwrap().insert(key, v);
        self.linked.notify_all();
    }

    /// A later path of an inode already copied: a hard link to the copy.
    fn link(&self, tree: usize, first: (usize, PathBuf), dst_dir: &OwnedFd, name: &CStr, rel: &Path, stats: &mut Stats) -> Result<()> {
        // `first` lies below the destination top through directories this copy made.
        rustix::fs::linkat(&self.trees[first.0].dst, &first.1, dst_dir, name, AtFlags::empty()).map_err(self.dst_err(
            "hard-link",
            tree,
            rel,
        ))?;
        stats.hardlinks += 1;
        self.tick(0);
        Ok(())
    }

    /// Runs `make` for an entry, or hard-links it to its inode's first copy.
    #[allow(clippy::too_many_arguments)]
    fn linked_or(
        &self,
        tree: usize,
        dst_dir: &OwnedFd,
        name: &CStr,
        st: &Statx,
        rel: &Path,
        stats: &mut Stats,
        make: impl FnOnce(&mut Stats) -> Result<()>,
    ) -> Result<()> {
        if st.stx_nlink < 2 {
            return make(stats);
        }
        match self.claim(st) {
            Ok(Some(first)) => self.link(tree, first, dst_dir, name, rel, stats),
            Ok(None) => {
                let r = make(stats);
                self.settle(st, r.is_ok().then(|| (tree, rel.to_path_buf())));
                r
            }
            Err(e) => Err(self.dst_err("hard-link", tree, rel)(e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn file(
        &self,
        tree: usize,
        src_dir: &OwnedFd,
        dst_dir: &OwnedFd,
        name: &CStr,
        st: &Statx,
        rel: &Path,
        stats: &mut Stats,
    ) -> Result<()> {
        // Opened before a hard link is claimed: a file gone meanwhile (as in `entry`)
        // is skipped without leaving a link target that was never made. O_NONBLOCK: a
        // FIFO put in its place since the directory was read (a running container's
        // root user can) would otherwise block the open, and lxcf with it.
        #[cfg(test)]
        if let Some(h) = self.before_open {
            h(rel);
        }
        let src = match rustix::fs::openat(
            src_dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            // A socket or a device node swapped in meanwhile: not what was listed.
            Err(Errno::NXIO | Errno::NODEV) => return Ok(()),
            Err(e) => return Err(self.src_err("open", tree, rel)(e)),
        };
        // What is copied is what was opened: replaced meanwhile, the new file (with its
        // own metadata); no longer a regular file at all, left out like a vanished one.
        let now = rustix::fs::statx(&src, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS | StatxFlags::MNT_ID)
            .map_err(self.src_err("stat", tree, rel))?;
        if FileType::from_raw_mode(now.stx_mode as _) != FileType::RegularFile {
            return Ok(());
        }
        let st =
            if (now.stx_ino, now.stx_dev_major, now.stx_dev_minor) == (st.stx_ino, st.stx_dev_major, st.stx_dev_minor) { st } else { &now };
        self.linked_or(tree, dst_dir, name, st, rel, stats, |stats| {
            let mode = st.stx_mode as u32 & 0o7777;
            let dst = rustix::fs::openat(
                dst_dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                // The final permissions right away where the umask keeps them (set-ID
                // bits come after the owner, which would clear them).
                Mode::from_raw_mode(mode & 0o777),
            )
            .map_err(self.dst_err("create", tree, rel))?;
            let reflinked = self.data(tree, &src, &dst, st).map_err(self.dst_err("copy data to", tree, rel))?;
            stats.files += 1;
            stats.bytes += st.stx_size;
            stats.reflinked += reflinked as u64;
            self.owner_mode(tree, &dst, st, mode, rel)?;
            for (n, v) in xattrs_fd(&src).map_err(self.src_err("read xattrs of", tree, rel))? {
                rustix::fs::fsetxattr(&dst, &n, &v, XattrFlags::empty()).map_err(self.dst_err("set xattrs of", tree, rel))?;
            }
            rustix::fs::futimens(&dst, &times(st)).map_err(self.dst_err("set times of", tree, rel))?;
            self.tick(st.stx_size);
            Ok(())
        })
    }

    /// Owner, then mode where needed (chown clears set-ID bits). Xattrs come after
    /// this, as chown also drops `security.capability`; times come last of all.
    /// A new file is already ours, with the mode it was created with less the umask.
    fn owner_mode(&self, tree: usize, fd: &OwnedFd, st: &Statx, mode: u32, rel: &Path) -> Result<()> {
        let chown = (st.stx_uid, st.stx_gid) != (self.uid, self.gid);
        if chown {
            rustix::fs::fchown(fd, Some(Uid::from_raw(st.stx_uid)), Some(Gid::from_raw(st.stx_gid))).map_err(self.dst_err(
                "change owner of",
                tree,
                rel,
            ))?;
        }
        let kept = match self.umask {
            Some(u) => mode & 0o7000 == 0 && mode & u == 0,
            None => false,
        };
        if !kept {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(self.dst_err("change mode of", tree, rel))?;
        }
        Ok(())
    }

    /// File contents; `true` when they were shared by a reflink.
    fn data(&self, tree: usize, src: &OwnedFd, dst: &OwnedFd, st: &Statx) -> rustix::io::Result<bool> {
        let size = st.stx_size;
        if size == 0 {
            return Ok(false);
        }
        let t = &self.trees[tree];
        if t.reflink.load(Ordering::Relaxed) {
            match rustix::fs::ioctl_ficlone(dst, src) {
                Ok(()) => return Ok(true),
                // The filesystems cannot: not for any file of this tree.
                Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::NOSYS | Errno::NOTTY) => t.reflink.store(false, Ordering::Relaxed),
                // This file cannot (btrfs nodatacow, a swap file, inline data...): copy it.
                Err(_) => {}
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
                (start, rustix::fs::seek(src, rustix::fs::SeekFrom::Hole(start))?)
            } else {
                (off, size)
            };
            let (mut pos_in, mut pos_out) = (start, start);
            while pos_in < end {
                if !t.cfr.load(Ordering::Relaxed) {
                    copy_plain(src, dst, &mut pos_in, &mut pos_out, end)?;
                    break;
                }
                let want = (end - pos_in).min(1 << 30) as usize;
                match rustix::fs::copy_file_range(src, Some(&mut pos_in), dst, Some(&mut pos_out), want) {
                    Ok(0) => break, // the file shrank while we copied it
                    Ok(_) => {}
                    Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => t.cfr.store(false, Ordering::Relaxed),
                    Err(e) => return Err(e),
                }
            }
            off = end;
        }
        if sparse {
            // A trailing hole: extend to the full size without writing.
            rustix::fs::ftruncate(dst, size)?;
        }
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    fn symlink(
        &self,
        tree: usize,
        src_dir: &OwnedFd,
        dst_dir: &OwnedFd,
        name: &CStr,
        st: &Statx,
        rel: &Path,
        stats: &mut Stats,
    ) -> Result<()> {
        let target = match rustix::fs::readlinkat(src_dir, name, Vec::new()) {
            Ok(t) => t,
            Err(Errno::NOENT) => return Ok(()), // gone meanwhile, as in `entry`
            Err(e) => return Err(self.src_err("read link", tree, rel)(e)),
        };
        rustix::fs::symlinkat(&*target, dst_dir, name).map_err(self.dst_err("create link", tree, rel))?;
        self.at_meta(tree, src_dir, dst_dir, name, st, rel, false)?;
        stats.symlinks += 1;
        self.tick(0);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn special(
        &self,
        tree: usize,
        src_dir: &OwnedFd,
        dst_dir: &OwnedFd,
        name: &CStr,
        st: &Statx,
        rel: &Path,
        stats: &mut Stats,
    ) -> Result<()> {
        self.linked_or(tree, dst_dir, name, st, rel, stats, |stats| {
            let ftype = FileType::from_raw_mode(st.stx_mode as _);
            let dev = rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor);
            rustix::fs::mknodat(dst_dir, name, ftype, Mode::from_raw_mode(0o600), dev).map_err(self.dst_err("create", tree, rel))?;
            self.at_meta(tree, src_dir, dst_dir, name, st, rel, true)?;
            stats.special += 1;
            self.tick(0);
            Ok(())
        })
    }

    /// Owner, mode (not for symlinks, which have none), xattrs and times of an entry
    /// that cannot be opened, by name in its open parent.
    #[allow(clippy::too_many_arguments)]
    fn at_meta(&self, tree: usize, src_dir: &OwnedFd, dst_dir: &OwnedFd, name: &CStr, st: &Statx, rel: &Path, mode: bool) -> Result<()> {
        if (st.stx_uid, st.stx_gid) != (self.uid, self.gid) {
            rustix::fs::chownat(dst_dir, name, Some(Uid::from_raw(st.stx_uid)), Some(Gid::from_raw(st.stx_gid)), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(self.dst_err("change owner of", tree, rel))?;
        }
        if mode {
            rustix::fs::chmodat(dst_dir, name, Mode::from_raw_mode(st.stx_mode as u32 & 0o7777), AtFlags::empty())
                .map_err(self.dst_err("change mode of", tree, rel))?;
        }
        let xattrs = match xattrs_at(src_dir, os(name)) {
            Ok(x) => x,
            // Gone since it was read (a live host: another process removed it); the
            // copy is what it was then, as for entries that vanish before (`entry`).
            Err(Errno::NOENT) => Vec::new(),
            Err(e) => return Err(self.src_err("read xattrs of", tree, rel)(e)),
        };
        if !xattrs.is_empty() {
            let p = super::fd_path(dst_dir, os(name));
            for (n, v) in xattrs {
                rustix::fs::lsetxattr(&p, &n, &v, XattrFlags::empty()).map_err(self.dst_err("set xattrs of", tree, rel))?;
            }
        }
        rustix::fs::utimensat(dst_dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW).map_err(self.dst_err("set times of", tree, rel))
    }

    /// Owner, mode, xattrs and times of a directory whose contents are complete.
    fn finish_dir(&self, d: &DirMeta) -> Result<()> {
        let fd = open_beneath(&self.trees[d.tree].dst, &d.rel).map_err(self.dst_err("open", d.tree, &d.rel))?;
        let mode = d.st.stx_mode as u32 & 0o7777;
        if (d.st.stx_uid, d.st.stx_gid) != (self.uid, self.gid) {
            rustix::fs::fchown(&fd, Some(Uid::from_raw(d.st.stx_uid)), Some(Gid::from_raw(d.st.stx_gid))).map_err(self.dst_err(
                "change owner of",
                d.tree,
                &d.rel,
            ))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(self.dst_err("change mode of", d.tree, &d.rel))?;
        for (n, v) in &d.xattrs {
            rustix::fs::fsetxattr(&fd, n, v, XattrFlags::empty()).map_err(self.dst_err("set xattrs of", d.tree, &d.rel))?;
        }
        rustix::fs::futimens(&fd, &times(&d.st)).map_err(self.dst_err("set times of", d.tree, &d.rel))
    }
}

/// Plain read/write for files copy_file_range refuses (across some filesystems,
/// FUSE or proc-like files).
fn copy_plain(src: &impl AsFd, dst: &impl AsFd, pos_in: &mut u64, pos_out: &mut u64, end: u64) -> rustix::io::Result<()> {
    let mut buf = vec![0u8; ((end - *pos_in) as usize).min(1 << 20)];
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

fn is_empty_dir(p: &Path) -> Result<bool> {
    let fd = rustix::fs::open(p, DIR_FLAGS, Mode::empty()).map_err(super::err("open", p))?;
    for e in rustix::fs::Dir::read_from(&fd).map_err(super::err("read directory", p))? {
        let e = e.map_err(super::err("read directory", p))?;
        if e.file_name() != c"." && e.file_name() != c".." {
            return Ok(false);
        }
    }
    Ok(true)
}
