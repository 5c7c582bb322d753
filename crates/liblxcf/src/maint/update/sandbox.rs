//! The real [`Runner`]: the command, chrooted into a container root whose changes
//! all land in an overlay's upper directory.
//!
//! Each container's run gets a thread of its own, which unshares its mount, UTS,
//! PID, network, IPC and cgroup namespaces (per thread, as `unshare` allows for
//! these): the mounts below exist only for that thread and its child, and vanish
//! with them, so a killed lxcf leaves no mount on the host. The network namespace
//! has only a loopback interface (up): a package script reaches neither the host's
//! services nor the network, and cannot change the host's interfaces or firewall.
//! In the thread:
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
//! maintainer script's `start-stop-daemon --stop` cannot hit host processes), and
//! with `no_new_privs`. A daemon a script leaves behind dies with it; the run is
//! killed when lxcf dies or its time limit expires ([`super::child`], which also
//! keeps the tail of its output).
//!
//! On the host the command runs in lxcf's namespaces (it updates the host), but
//! in a session of its own (so that a timed-out run is killed with all its
//! processes, and it cannot prompt on lxcf's terminal), killed when lxcf dies, and
//! with `no_new_privs` too: as root it gains nothing from set-user-ID programs or
//! file capabilities anyway, and AppArmor still lets an unconfined process change
//! to a profile under it.
//!
//! Both get the same environment, and only it ([`environment`]): `PATH` (fixed:
//! `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`), `HOME=/root`,
//! `USER=root`, `LOGNAME=root`, `SHELL=/bin/sh`, `DEBIAN_FRONTEND=noninteractive`
//! (stdin is empty: debconf must not ask), and from lxcf's own environment `TERM`,
//! `LANG`, `LANGUAGE` and every `LC_*`. Nothing else of the caller's (a `sudo`'s
//! variables, a developer's `LD_LIBRARY_PATH`, proxies) reaches a package script.
//!
//! Mount points inside the container tree are opened with `openat2(RESOLVE_IN_ROOT)`
//! and mounted on through `/proc/self/fd/N`, so a symlink planted by the
//! container's root user cannot redirect a mount. The command itself runs as root
//! with the container's configuration (its dpkg hooks, say): as in the talk, the
//! host's and the containers' administrators are assumed to be the same people.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags, Timestamps};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;

use super::child::{self, Kill, Parent};
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
    /// The command's whole environment ([`environment`]).
    env: Vec<(OsString, OsString)>,
}

impl Sandbox {
    pub fn new(cfg: &Config) -> Sandbox {
        Sandbox {
            source: cfg.source.clone(),
            containers_root: cfg.root.clone(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            env: environment(std::env::vars_os()),
        }
    }

    /// `c` with the command's environment and nothing else.
    fn command(&self, argv: &[OsString]) -> Command {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]).env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// `PATH` in the command's environment: root's usual one, not the caller's, which
/// may name directories that exist on the host only.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command's environment, from lxcf's own (`caller`): the fixed variables, then
/// the caller's terminal type and locale (see the module's header).
pub fn environment(caller: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = [
        ("PATH", PATH),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LOGNAME", "root"),
        ("SHELL", "/bin/sh"),
        ("DEBIAN_FRONTEND", "noninteractive"),
    ]
    .iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let kept = |k: &OsStr| {
        let k = k.as_bytes();
        k == b"TERM" || k == b"LANG" || k == b"LANGUAGE" || k.starts_with(b"LC_")
    };
    let mut from_caller: Vec<(OsString, OsString)> = caller.into_iter().filter(|(k, _)| kept(k)).collect();
    from_caller.sort();
    env.extend(from_caller);
    env
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
        // A thread of its own: the namespaces it unshares die with it. It forks the
        // command and waits for it, so it also lives exactly as long as the child
        // (whose PR_SET_PDEATHSIG fires when the forking thread exits).
        let r = std::thread::scope(|s| s.spawn(|| self.isolated(job, t)).join());
        match r {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::failed_to_start(crate::error::chain(&e), t.elapsed().as_secs_f64()),
            Err(_) => Outcome::failed_to_start("the run panicked", t.elapsed().as_secs_f64()),
        }
    }

    fn host(&self, command: &[OsString], timeout: Option<Duration>) -> Outcome {
        let t = Instant::now();
        let parent = match Parent::open() {
            Ok(p) => p,
            Err(e) => return Outcome::failed_to_start(format!("cannot open a pidfd of lxcf: {e}"), 0.0),
        };
        let parent_fd = parent.raw();
        let mut c = self.command(command);
        // SAFETY: between fork and exec the child makes only system calls, on
        // values prepared before the fork; no allocation, no lock. `parent` lives
        // until `supervise` has returned.
        unsafe {
            c.pre_exec(move || {
                // A session, so a process group, of its own: the time limit kills the
                // group; and no controlling terminal to prompt on.
                rustix::process::setsid()?;
                Parent::die_with(parent_fd)?;
                rustix::thread::set_no_new_privs(true)?;
                Ok(())
            });
        }
        let o = child::supervise(c, Kill::Group, timeout, &command[0], t);
        drop(parent);
        o
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
        let namespaces = UnshareFlags::NEWNS
            | UnshareFlags::NEWUTS
            | UnshareFlags::NEWPID
            | UnshareFlags::NEWNET
            | UnshareFlags::NEWIPC
            | UnshareFlags::NEWCGROUP;
        // SAFETY: namespaces for this thread alone (none of these needs a
        // single-threaded process, as a user namespace would). NEWNS also unshares
        // this thread's root and working directory (CLONE_FS); the file descriptor
        // table stays shared, so no other thread loses a descriptor.
        unsafe { rustix::thread::unshare_unsafe(namespaces) }.map_err(fail("make namespaces"))?;
        loopback_up().map_err(fail("bring up the loopback interface"))?;
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
        let parent = Parent::open().map_err(fail("open a pidfd of lxcf"))?;
        let parent_fd = parent.raw();
        let mut c = self.command(job.command);
        // SAFETY: between fork and exec the child makes only system calls, on
        // values prepared before the fork; no allocation, no lock. `top` and
        // `parent` live until `supervise` has returned.
        unsafe {
            c.pre_exec(move || {
                // lxcf dies, the run dies (and with PID 1 of its namespace, all of it).
                Parent::die_with(parent_fd)?;
                rustix::process::fchdir(BorrowedFd::borrow_raw(top_fd))?;
                rustix::process::chroot(c".")?;
                // A procfs of the new PID namespace: only this process can mount it.
                rustix::mount::mount(c"proc", c"/proc", c"proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None)?;
                if rustix::process::chdir(cwd.as_c_str()).is_err() {
                    rustix::process::chdir(c"/")?;
                }
                // Last: set-user-ID programs and file capabilities of the container
                // give nothing from here on.
                rustix::thread::set_no_new_privs(true)?;
                Ok(())
            });
        }
        let o = child::supervise(c, Kill::Child, job.timeout, &job.command[0], t);
        drop((top, parent));
        Ok(o)
    }
}

/// Sets the loopback interface of this thread's (new) network namespace up: it
/// starts down, and a package script may talk to a service on 127.0.0.1.
fn loopback_up() -> std::io::Result<()> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an ifreq, which `req`
    // is, for the interface named in it; `sock` is an open socket.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    //! The host run needs no root: it is checked here. Container runs (namespaces,
    //! mounts) are checked by the system tests.
    use super::*;
    use std::time::Duration;

    fn sandbox() -> Sandbox {
        let cfg = Config::parse(Path::new("test.conf"), "[Paths]\nroot=/nonexistent/lxc\n").unwrap();
        let mut s = Sandbox::new(&cfg);
        s.env = environment([("TERM".into(), "xterm-test".into()), ("LC_TIME".into(), "C".into()), ("SECRET".into(), "x".into())]);
        s
    }

    fn sh(script: &str) -> Vec<OsString> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn the_environment_is_the_documented_set() {
        let caller: Vec<(OsString, OsString)> = [
            ("PATH", "/home/me/.cargo/bin:/usr/bin"),
            ("HOME", "/home/me"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "C.UTF-8"),
            ("LANGUAGE", "de"),
            ("TERM", "xterm"),
            ("LD_LIBRARY_PATH", "/opt/lib"),
            ("SUDO_USER", "me"),
            ("http_proxy", "http://proxy:3128"),
        ]
        .iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let env = environment(caller);
        let text: Vec<String> = env.iter().map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).collect();
        assert_eq!(
            text,
            [
                format!("PATH={PATH}").as_str(),
                "HOME=/root",
                "USER=root",
                "LOGNAME=root",
                "SHELL=/bin/sh",
                "DEBIAN_FRONTEND=noninteractive",
                "LANG=de_DE.UTF-8",
                "LANGUAGE=de",
                "LC_ALL=C.UTF-8",
                "TERM=xterm",
            ]
        );

        // And the run gets exactly that.
        let o = sandbox().host(&["/usr/bin/env".into()], None);
        assert!(o.success(), "{o:?}");
        let mut got: Vec<&str> = o.stdout.lines().collect();
        got.sort();
        let mut want: Vec<String> = sandbox().env.iter().map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn the_host_run_has_no_new_privs_and_a_session_of_its_own() {
        let o = sandbox().host(&sh("grep NoNewPrivs /proc/self/status; cut -d' ' -f6 /proc/$$/stat; echo $$"), None);
        assert!(o.success(), "{o:?}");
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert_eq!(lines[0], "NoNewPrivs:\t1");
        assert_eq!(lines[1], lines[2], "the shell leads its session");
    }

    #[test]
    fn the_time_limit_kills_the_host_run_with_its_process_group() {
        // A background process in the command's group, and the command waiting for it.
        let o = sandbox().host(&sh("sleep 1000 & echo $!; wait"), Some(Duration::from_secs(1)));
        assert!(!o.success());
        assert_eq!((o.timed_out, o.signal, o.code), (Some(Duration::from_secs(1)), Some(9), None), "{o:?}");
        assert_eq!(o.describe(), "timed out after 1 s and killed");
        let pid: i32 = o.stdout.trim().parse().unwrap();
        // Killed with the group: gone, or a zombie until init reaps it.
        let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(s) => s.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        };
        let until = Instant::now() + Duration::from_secs(30);
        while !dead() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(dead(), "the background sleep {pid} outlived the time limit");
    }

    #[test]
    fn only_the_tail_of_a_flood_is_kept() {
        // 5 MB of whole lines on stdout, then a last line; a short stderr is kept whole.
        let o = sandbox().host(&sh("yes 0123456789 | head -c 4999995; echo END; echo oops >&2"), None);
        assert!(o.success(), "{}", o.describe());
        let cut = 4_999_995 + 4 - child::TAIL;
        assert!(o.stdout.starts_with(&format!("[... {cut} bytes cut]\n")), "{}", &o.stdout[..60]);
        assert!(o.stdout.ends_with("0123456789\nEND\n"));
        assert_eq!(o.stdout.len(), format!("[... {cut} bytes cut]\n").len() + child::TAIL);
        assert_eq!(o.stderr, "oops\n");
    }

    #[test]
    fn a_process_left_behind_holding_the_output_does_not_keep_lxcf_waiting() {
        // The background sleep keeps stdout open after the command exits.
        let t = Instant::now();
        let o = sandbox().host(&sh("sleep 1000 & echo $!; echo done"), None);
        assert!(o.success(), "{o:?}");
        let mut lines = o.stdout.lines();
        let pid: i32 = lines.next().unwrap().parse().unwrap();
        assert_eq!(lines.next(), Some("done"));
        assert!(t.elapsed() < Duration::from_secs(500), "waited for the sleep");
        let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::KILL);
    }

    #[test]
    fn a_missing_program_is_reported() {
        let o = sandbox().host(&["/nonexistent/program".into()], None);
        assert!(o.describe().starts_with("cannot run /nonexistent/program: "), "{}", o.describe());
    }
}
