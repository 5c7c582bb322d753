//! The real [`Runner`]: the command, chrooted into a container root whose changes
//! all land in an overlay's upper directory.
//!
//! Each container's run gets a thread of its own, which unshares its mount, UTS
//! and PID namespaces (per thread, as `unshare` allows for these): the mounts
//! below exist only for that thread and its child, and vanish with them, so a
//! killed lxcf leaves no mount on the host. In the thread:
//!
//! - an overlay over the whole container root (lower: the root, upper: kept for
//!   the commit), mounted on the run's own `merged` directory;
//! - joint model: an overlay over the host's /usr with a throw-away upper on
//!   `merged/usr` (the talk's "dummy" /usr: the package manager unpacks into it,
//!   and the host's /usr gets the real files when the command runs on the host);
//! - a minimal /dev (tmpfs with the usual character devices), a read-only /sys,
//!   empty /run and /tmp (tmpfs: no running systemd is seen, nothing kept);
//! - each host file or directory named by an argument (`dpkg -i /root/x.deb`),
//!   bound read-only at the same path, the mount point removed afterwards;
//! - the container's name as hostname.
//!
//! The command then runs as PID 1 of the new PID namespace, chrooted into
//! `merged`, with a fresh /proc that shows only its own processes (so a
//! maintainer script's `start-stop-daemon --stop` cannot hit host processes). A
//! daemon a script leaves behind dies with it, and the child is killed if lxcf dies.
//!
//! Mount points inside the container tree are opened with `openat2(RESOLVE_IN_ROOT)`
//! and mounted on through `/proc/self/fd/N`, so a symlink planted by the
//! container's root user cannot redirect a mount. The command itself runs as root
//! with the container's configuration (its dpkg hooks, say): as in the talk, the
//! host's and the containers' administrators are assumed to be the same people.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags, Timestamps};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

use super::{upper, Job, Outcome, Runner};
use crate::config::Config;
use crate::rootfs::layout::Model;
use crate::rootfs::scoped::Root;

pub struct Sandbox {
    /// The host tree whose /usr joint containers share.
    source: PathBuf,
    /// Never bound into a container: the containers root and its parents.
    containers_root: PathBuf,
    /// lxcf's working directory: relative arguments are resolved from it, and the
    /// command starts in the same directory inside when it exists there.
    cwd: PathBuf,
}

impl Sandbox {
    pub fn new(cfg: &Config) -> Sandbox {
        Sandbox {
            source: cfg.source.clone(),
            containers_root: cfg.root.clone(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        }
    }
}

/// A step of setting a run up that failed: what, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what}")]
pub struct SetupError {
    what: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

type Setup<T> = std::result::Result<T, SetupError>;

fn fail<E: Into<Box<dyn std::error::Error + Send + Sync>>>(what: impl std::fmt::Display) -> impl FnOnce(E) -> SetupError {
    move |e| SetupError { what: what.to_string(), source: e.into() }
}

impl Runner for Sandbox {
    fn container(&self, job: &Job) -> Outcome {
        let t = Instant::now();
        // A thread of its own: the namespaces it unshares die with it.
        let r = std::thread::scope(|s| s.spawn(|| self.isolated(job, t)).join());
        match r {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::failed_to_start(crate::error::chain(&e), t.elapsed().as_secs_f64()),
            Err(_) => Outcome::failed_to_start("the run panicked", t.elapsed().as_secs_f64()),
        }
    }

    fn host(&self, command: &[OsString]) -> Outcome {
        let t = Instant::now();
        let mut c = Command::new(&command[0]);
        c.args(&command[1..]);
        finish(c.output(), &command[0], t)
    }
}

fn finish(r: std::io::Result<std::process::Output>, program: &OsString, t: Instant) -> Outcome {
    let seconds = t.elapsed().as_secs_f64();
    match r {
        Ok(o) => Outcome {
            code: o.status.code(),
            signal: o.status.signal(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            error: None,
            seconds,
        },
        Err(e) => Outcome::failed_to_start(format!("cannot run {}: {e}", program.to_string_lossy()), seconds),
    }
}

fn mkdir(p: &Path, mode: u32) -> Setup<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(mode).create(p).map_err(fail(format_args!("create {}", p.display())))
}

fn open_path(p: &Path) -> Setup<OwnedFd> {
    rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(fail(format_args!("open {}", p.display())))
}

/// Mounts an overlay on `target`. Every path is an open file descriptor, so
/// nothing is looked up again by the kernel. No redirects, no metacopy: the upper
/// must hold whole files and plain directories for the commit. `volatile`: the
/// fsyncs of the package manager are skipped; lxcf syncs once before the commit.
fn overlay(lower: &OwnedFd, upper: &OwnedFd, work: &OwnedFd, target: &Path) -> Setup<()> {
    let base = format!(
        "lowerdir=/proc/self/fd/{},upperdir=/proc/self/fd/{},workdir=/proc/self/fd/{},redirect_dir=off,metacopy=off,index=off,xino=off",
        lower.as_raw_fd(),
        upper.as_raw_fd(),
        work.as_raw_fd()
    );
    let with_volatile = CString::new(format!("{base},volatile")).expect("no NUL");
    match rustix::mount::mount(c"overlay", target, c"overlay", MountFlags::empty(), with_volatile.as_c_str()) {
        Ok(()) => Ok(()),
        // Kernels before 5.10 do not know `volatile`.
        Err(rustix::io::Errno::INVAL) => {
            let plain = CString::new(base).expect("no NUL");
            rustix::mount::mount(c"overlay", target, c"overlay", MountFlags::empty(), plain.as_c_str())
                .map_err(fail(format_args!("mount an overlay on {}", target.display())))
        }
        Err(e) => Err(fail(format_args!("mount an overlay on {}", target.display()))(e)),
    }
}

/// `/proc/self/fd/N`: the open file itself, for calls that take only a path.
fn fd_link(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A mount point inside the container tree: a directory, reached without leaving it.
fn mount_point(root: &Root, p: &str) -> Setup<OwnedFd> {
    root.open_at(Path::new(p), OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW)
        .map_err(fail(format_args!("use the container's /{p} as a directory")))
}

/// A host path bound read-only into the container for the run.
#[derive(Default)]
struct Bind {
    /// The bind mount itself, for unmounting.
    mounted: Option<OwnedFd>,
    /// What was created for the mount point (deepest last), to be removed after.
    created: Vec<PathBuf>,
    /// The existing directory that got the first new entry, and its times before.
    parent_times: Option<(PathBuf, Timestamps)>,
}

impl Sandbox {
    fn isolated(&self, job: &Job, t: Instant) -> Setup<Outcome> {
        // SAFETY: mount, UTS and PID namespaces for this thread alone. NEWNS also
        // unshares this thread's root and working directory (CLONE_FS); the file
        // descriptor table stays shared, so no other thread loses a descriptor.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWPID) }
            .map_err(fail("make namespaces"))?;
        // Nothing mounted here may propagate back to the host.
        rustix::mount::mount_change(c"/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
            .map_err(fail("make the mounts private"))?;
        rustix::system::sethostname(job.name.as_bytes()).map_err(fail("set the hostname"))?;

        let merged = job.work.join("merged");
        mkdir(&job.work.join("work"), 0o700)?;
        mkdir(&merged, 0o755)?;
        let (lower, up, wk) = (open_path(job.root)?, open_path(&upper(job.work))?, open_path(&job.work.join("work"))?);
        overlay(&lower, &up, &wk, &merged)?;
        let result = self.inside(job, &merged, t);
        // Everything under merged goes at once: the overlays, /dev, /proc, the binds.
        let _ = rustix::mount::unmount(&merged, UnmountFlags::DETACH);
        result
    }

    fn inside(&self, job: &Job, merged: &Path, t: Instant) -> Setup<Outcome> {
        let root = Root::open(merged).map_err(fail("open the overlay"))?;
        if job.model == Model::Joint {
            let usr = mount_point(&root, "usr")?;
            let (uu, uw) = (job.work.join("usr-upper"), job.work.join("usr-work"));
            mkdir(&uu, 0o755)?;
            mkdir(&uw, 0o700)?;
            overlay(&open_path(&self.source.join("usr"))?, &open_path(&uu)?, &open_path(&uw)?, &fd_link(&usr))?;
        }
        let nosuid = MountFlags::NOSUID | MountFlags::NODEV;
        let dev = mount_point(&root, "dev")?;
        rustix::mount::mount(c"tmpfs", fd_link(&dev), c"tmpfs", MountFlags::NOSUID | MountFlags::NOEXEC, c"mode=755,size=1m")
            .map_err(fail("mount /dev"))?;
        populate_dev(&root)?;
        let sys = mount_point(&root, "sys")?;
        rustix::mount::mount(c"sysfs", fd_link(&sys), c"sysfs", nosuid | MountFlags::NOEXEC | MountFlags::RDONLY, None)
            .map_err(fail("mount /sys"))?;
        for (p, data) in [("run", c"mode=755"), ("tmp", c"mode=1777")] {
            let fd = mount_point(&root, p)?;
            rustix::mount::mount(c"tmpfs", fd_link(&fd), c"tmpfs", nosuid, data).map_err(fail(format_args!("mount /{p}")))?;
        }
        mount_point(&root, "proc")?;

        let mut binds = Vec::new();
        let result = (|| {
            for (host, is_dir) in self.named_paths(&job.command[1..]) {
                let mut b = Bind::default();
                let r = bind(&root, &host, is_dir, &mut b);
                binds.push(b);
                r?;
            }
            self.spawn(&root, job, t)
        })();
        for b in binds.into_iter().rev() {
            unbind(&root, b);
        }
        result
    }

    /// Existing host files and directories named by the arguments (absolute, or
    /// relative to lxcf's working directory), as real paths. Not: the kernel's
    /// trees, `/`, the containers root or anything above or inside it.
    fn named_paths(&self, command: &[OsString]) -> Vec<(PathBuf, bool)> {
        let mut out: Vec<(PathBuf, bool)> = Vec::new();
        for a in command {
            let p = self.cwd.join(a);
            let Ok(real) = std::fs::canonicalize(&p) else { continue };
            let Ok(m) = std::fs::metadata(&real) else { continue };
            if !(m.is_file() || m.is_dir()) || out.iter().any(|(o, _)| *o == real) {
                continue;
            }
            let kernel = ["/proc", "/sys", "/dev"].iter().any(|k| real.starts_with(k));
            let containers = real.starts_with(&self.containers_root) || self.containers_root.starts_with(&real);
            if kernel || containers || real == Path::new("/") {
                continue;
            }
            out.push((real, m.is_dir()));
        }
        out
    }

    fn spawn(&self, root: &Root, job: &Job, t: Instant) -> Setup<Outcome> {
        let top = root.open_at(Path::new("/"), OFlags::PATH | OFlags::DIRECTORY).map_err(fail("open the container root"))?;
        let inside = root.open_at(&self.cwd, OFlags::PATH | OFlags::DIRECTORY).is_ok();
        let cwd = CString::new(if inside { self.cwd.as_os_str().as_bytes() } else { b"/" }).map_err(fail("use the working directory"))?;
        let top_fd = top.as_raw_fd();
        let mut c = Command::new(&job.command[0]);
        c.args(&job.command[1..]);
        // SAFETY: between fork and exec the child makes only system calls, on
        // values prepared before the fork; no allocation, no lock.
        unsafe {
            c.pre_exec(move || {
                // lxcf dies, the run dies (and with PID 1 of its namespace, all of it).
                rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
                rustix::process::fchdir(BorrowedFd::borrow_raw(top_fd))?;
                rustix::process::chroot(c".")?;
                // A procfs of the new PID namespace: only this process can mount it.
                rustix::mount::mount(c"proc", c"/proc", c"proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None)?;
                if rustix::process::chdir(cwd.as_c_str()).is_err() {
                    rustix::process::chdir(c"/")?;
                }
                Ok(())
            });
        }
        let o = finish(c.output(), &job.command[0], t);
        drop(top);
        Ok(o)
    }
}

/// Character devices a package script may use, as libvirt gives a container.
fn populate_dev(root: &Root) -> Setup<()> {
    let dev = root.open_at(Path::new("/dev"), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW).map_err(fail("open /dev"))?;
    for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] {
        rustix::fs::mknodat(&dev, name, FileType::CharacterDevice, Mode::from_raw_mode(0o666), rustix::fs::makedev(major, minor))
            .and_then(|()| rustix::fs::chmodat(&dev, name, Mode::from_raw_mode(0o666), AtFlags::empty()))
            .map_err(fail(format_args!("create /dev/{name}")))?;
    }
    for (name, target) in
        [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")]
    {
        rustix::fs::symlinkat(target, &dev, name).map_err(fail(format_args!("create /dev/{name}")))?;
    }
    rustix::fs::mkdirat(&dev, "shm", Mode::from_raw_mode(0o1777))
        .and_then(|()| rustix::fs::chmodat(&dev, "shm", Mode::from_raw_mode(0o1777), AtFlags::empty()))
        .map_err(fail("create /dev/shm"))
}

/// Binds the host path `host` read-only at the same path in the container tree,
/// if the container has nothing there (its own files are never hidden), creating
/// the mount point and missing parents through the overlay. `b` records what was
/// done, for [`unbind`], also when this fails half-way.
fn bind(root: &Root, host: &Path, is_dir: bool, b: &mut Bind) -> Setup<()> {
    let what = || format!("make {} visible in the container", host.display());
    let parts: Vec<Component> = host.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let mut cur = PathBuf::from("/");
    for (i, c) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let parent = cur.clone();
        cur.push(c);
        match root.file_type(&cur).map_err(fail(what()))? {
            Some(FileType::Directory) if !last => continue,
            // The container has its own (or a symlink there): leave it alone.
            Some(_) => return Ok(()),
            None => {}
        }
        let pfd = root.open_at(&parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW).map_err(fail(what()))?;
        if b.parent_times.is_none() {
            let st = rustix::fs::statx(&pfd, c"", AtFlags::EMPTY_PATH, StatxFlags::BASIC_STATS).map_err(fail(what()))?;
            let ts = |t: &rustix::fs::StatxTimestamp| rustix::fs::Timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec as _ };
            b.parent_times = Some((parent.clone(), Timestamps { last_access: ts(&st.stx_atime), last_modification: ts(&st.stx_mtime) }));
        }
        let name = c.as_os_str();
        if !last || is_dir {
            rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755)).map_err(fail(what()))?;
        } else {
            rustix::fs::openat(
                &pfd,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(fail(what()))?;
        }
        b.created.push(cur.clone());
    }
    let flags = OFlags::PATH | OFlags::NOFOLLOW;
    let point = root.open_at(host, flags).map_err(fail(what()))?;
    rustix::mount::mount_bind(host, fd_link(&point)).map_err(fail(what()))?;
    // Reopened: now the descriptor is the bind mount itself.
    let mounted = root.open_at(host, flags).map_err(fail(what()))?;
    let ro = rustix::mount::mount_remount(fd_link(&mounted), MountFlags::BIND | MountFlags::RDONLY, c"");
    b.mounted = Some(mounted);
    ro.map_err(fail(what()))
}

/// Undoes [`bind`]: the mount, then what was created for it (only if the command
/// left it empty), then the parent's times, so the upper keeps no trace.
fn unbind(root: &Root, b: Bind) {
    if let Some(m) = b.mounted {
        let _ = rustix::mount::unmount(fd_link(&m), UnmountFlags::DETACH);
    }
    for p in b.created.iter().rev() {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else { continue };
        let Ok(pfd) = root.open_at(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) else { continue };
        let flags = if root.file_type(p).ok().flatten() == Some(FileType::Directory) { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        if rustix::fs::unlinkat(&pfd, name, flags).is_err() {
            return; // the command put something there: it stays, and so do its parents
        }
    }
    if let Some((p, times)) = b.parent_times {
        if let Ok(fd) = root.open_at(&p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
            let _ = rustix::fs::futimens(&fd, &times);
        }
    }
}
