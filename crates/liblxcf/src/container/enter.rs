//! Running a command inside a running container (`lxcf exec`), as
//! `virsh lxc-enter-namespace` does, with the exit status passed through and the
//! caller's stdin, stdout and stderr connected.
//!
//! The parent keeps a pidfd of the container's init (so a reused PID cannot send us
//! elsewhere), moves its *children* into the container's PID namespace, forks, and
//! moves its own children back. The child, before anything else:
//! 1. joins the cgroups at the root of the container's cgroup namespace (what its
//!    own cgroup mounts show as their roots): CPU, memory and tasks are accounted
//!    to the container, its device rules apply to the command, and inside it the
//!    command is in the root cgroup, as `virsh lxc-enter-namespace` puts it;
//! 2. enters init's user (if another), IPC, UTS, network, cgroup and mount
//!    namespaces in one setns; entering the mount namespace also sets its root and
//!    working directory to the container's root (setns(2)), so no chroot is needed;
//! 3. drops from its capability bounding set what init's lacks, so the command has
//!    no more power than the container's own root processes;
//! 4. restores SIGINT and SIGQUIT (the parent ignores them while it waits, as
//!    system(3) does) and execs the command, searched in the container's PATH, with
//!    a fresh environment (see [`environment`]).
//!
//! Everything the child needs is prepared before the fork: after fork in a
//! possibly multi-threaded process the child only makes system calls.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::process::{Pid, PidfdFlags};

use crate::host::cgroup::{cgroup_mounts, CgroupMount};
use rustix::thread::{LinkNameSpaceType, ThreadNameSpaceType};

#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("no command given")]
    NoCommand,
    #[error("an argument of the command contains a NUL byte")]
    Nul,
    #[error("cannot read {} of the container's init", path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("process {0} is not in a container: it shares the host's mount namespace")]
    NotContained(u32),
    #[error("cannot {step} for the command in the container")]
    Enter { step: &'static str, source: io::Error },
    #[error("cannot run `{cmd}` in the container")]
    Exec { cmd: String, source: io::Error },
}

impl EnterError {
    /// The exit status a shell gives for a command it cannot run: 127 not found, 126 otherwise.
    pub fn exit_status(&self) -> Option<u8> {
        match self {
            EnterError::Exec { source, .. } if source.kind() == io::ErrorKind::NotFound => Some(127),
            EnterError::Exec { .. } => Some(126),
            _ => None,
        }
    }
}

fn inspect<'a>(path: &'a Path) -> impl FnOnce(io::Error) -> EnterError + 'a {
    move |source| EnterError::Inspect { path: path.to_path_buf(), source }
}

/// The environment of the command: a root login's basics, not the caller's
/// variables (which describe the host). TERM and the locale come along so that
/// terminal programs and messages work as in the caller's session.
pub fn environment(caller: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = [
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LOGNAME", "root"),
        ("SHELL", "/bin/sh"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    for (k, v) in caller {
        let key = k.as_bytes();
        if key == b"TERM" || key == b"LANG" || key == b"LANGUAGE" || key.starts_with(b"LC_") {
            env.push((k, v));
        }
    }
    env
}

/// The `cgroup.procs` files to write to so that a process joins the cgroups that
/// the container's own cgroup mounts (`container`, read from its init's mountinfo)
/// show as their roots, found through `ours` (our mounts of whole hierarchies).
/// lxcf's container init (virt/init) gives the container a cgroup namespace with
/// those roots: libvirt's cgroups for the container, lxcf's for the hierarchies
/// libvirt left alone. A container whose mounts show a hierarchy's root is joined
/// to nothing there.
fn cgroup_procs_files(container: &[CgroupMount], ours: &[CgroupMount]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for c in container {
        if c.root == "/" || c.root.is_empty() {
            continue;
        }
        let mount = ours.iter().filter(|m| m.root == "/").find(|m| {
            if c.ctrls.is_empty() {
                m.ctrls.is_empty()
            } else {
                !m.ctrls.is_empty() && c.ctrls.iter().all(|w| m.ctrls.contains(w))
            }
        });
        match mount {
            Some(m) => out.push(m.at.join(c.root.trim_start_matches('/')).join("cgroup.procs")),
            None => tracing::debug!("cgroup hierarchy `{}` is not mounted here; not joined", c.ctrls.join(",")),
        }
    }
    out
}

/// Capabilities (numbers) that `last_cap` allows but the bounding set `capbnd`
/// (hex, from /proc/PID/status) does not hold.
fn caps_to_drop(status: &str, last_cap: u32) -> Vec<u32> {
    let bnd =
        status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).unwrap_or(u64::MAX);
    (0..=last_cap.min(63)).filter(|c| bnd & (1 << c) == 0).collect()
}

fn ns_id(path: &Path) -> Result<u64, EnterError> {
    Ok(std::fs::metadata(path).map_err(inspect(path))?.ino())
}

/// Everything the child needs, made before the fork.
pub struct Plan {
    pidfd: OwnedFd,
    /// Our own PID namespace, to move our later children back into.
    own_pid_ns: OwnedFd,
    namespaces: ThreadNameSpaceType,
    cgroup_procs: Vec<CString>,
    drop_caps: Vec<u32>,
    // The strings, and NULL-terminated arrays of pointers into them for execvpe.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    cmd: String,
}

fn cstring(s: &OsStr) -> Result<CString, EnterError> {
    CString::new(s.as_bytes()).map_err(|_| EnterError::Nul)
}

fn pointers(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// Prepares running `argv` with `env` in the container whose init is `init`.
/// `proc` is the host's /proc (a parameter for tests).
pub fn prepare(proc: &Path, init: u32, argv: &[OsString], env: &[(OsString, OsString)]) -> Result<Plan, EnterError> {
    let Some(first) = argv.first() else { return Err(EnterError::NoCommand) };
    let dir = proc.join(init.to_string());
    let ns = |n: &str| dir.join("ns").join(n);
    let own = |n: &str| proc.join("self/ns").join(n);
    if ns_id(&ns("mnt"))? == ns_id(&own("mnt"))? {
        return Err(EnterError::NotContained(init));
    }
    let pid = Pid::from_raw(init as i32).ok_or(EnterError::NotContained(init))?;
    let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(|e| inspect(&dir)(e.into()))?;
    let own_pid_ns = std::fs::File::open(own("pid")).map_err(inspect(&own("pid")))?.into();
    let mut namespaces = ThreadNameSpaceType::MOUNT
        | ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME
        | ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION
        | ThreadNameSpaceType::NETWORK
        | ThreadNameSpaceType::CONTROL_GROUP;
    // Entering one's own user namespace again is refused (EINVAL): only when it differs.
    if ns_id(&ns("user"))? != ns_id(&own("user"))? {
        namespaces |= ThreadNameSpaceType::USER;
    }

    let status_path = dir.join("status");
    let status = std::fs::read_to_string(&status_path).map_err(inspect(&status_path))?;
    let last_cap = std::fs::read_to_string(proc.join("sys/kernel/cap_last_cap")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let drop_caps = caps_to_drop(&status, last_cap);

    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(inspect(&p));
    let theirs = read(dir.join("mountinfo"))?;
    let ours = read(proc.join("self/mountinfo"))?;
    let cgroup_procs = cgroup_procs_files(&cgroup_mounts(&theirs), &cgroup_mounts(&ours))
        .iter()
        .map(|p| cstring(p.as_os_str()))
        .collect::<Result<_, _>>()?;

    let argv = argv.iter().map(|a| cstring(a)).collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan {
        pidfd,
        own_pid_ns,
        namespaces,
        cgroup_procs,
        drop_caps,
        argv_ptrs: pointers(&argv),
        envp_ptrs: pointers(&envp),
        _argv: argv,
        _envp: envp,
        cmd: first.to_string_lossy().into_owned(),
    })
}

/// What the child reports when a step fails, by index.
const STEPS: [&str; 5] =
    ["join the container's cgroups", "enter the container's namespaces", "change directory to /", "drop capabilities", "run"];
const STEP_EXEC: u8 = 4;

/// The child after fork: only system calls on data prepared in `plan`. Returns the
/// step that failed and its error; on success exec does not return.
fn child(plan: &Plan) -> (u8, rustix::io::Errno) {
    use rustix::fs::{Mode, OFlags};
    for p in &plan.cgroup_procs {
        // "0" is the writing process itself.
        let r = rustix::fs::open(p.as_c_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).and_then(|fd| rustix::io::write(&fd, b"0"));
        if let Err(e) = r {
            return (0, e);
        }
    }
    if let Err(e) = rustix::thread::move_into_thread_name_spaces(plan.pidfd.as_fd(), plan.namespaces) {
        return (1, e);
    }
    if let Err(e) = rustix::process::chdir(c"/") {
        return (2, e);
    }
    for &c in &plan.drop_caps {
        let set = rustix::thread::CapabilitySet::from_bits_retain(1 << c);
        if let Err(e) = rustix::thread::remove_capability_from_bounding_set(set) {
            return (3, e);
        }
    }
    // SAFETY: SIG_DFL is a valid disposition; the parent ignores these while it waits
    // and ignored signals stay ignored across exec.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGQUIT, libc::SIG_DFL);
    }
    // SAFETY: both arrays are NULL-terminated and point into CStrings owned by `plan`,
    // alive until exec replaces the process image.
    unsafe { libc::execvpe(plan.argv_ptrs[0], plan.argv_ptrs.as_ptr(), plan.envp_ptrs.as_ptr()) };
    (STEP_EXEC, rustix::io::Errno::from_raw_os_error(io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOENT)))
}

/// Ignores SIGINT and SIGQUIT until dropped: Ctrl-C is for the command in the
/// container (it is in the terminal's foreground group too), not for lxcf waiting on it.
struct IgnoreInterrupts(libc::sighandler_t, libc::sighandler_t);

impl IgnoreInterrupts {
    fn new() -> IgnoreInterrupts {
        // SAFETY: SIG_IGN is a valid disposition; the previous ones are restored on drop.
        unsafe { IgnoreInterrupts(libc::signal(libc::SIGINT, libc::SIG_IGN), libc::signal(libc::SIGQUIT, libc::SIG_IGN)) }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        // SAFETY: restores the dispositions `new` returned.
        unsafe {
            libc::signal(libc::SIGINT, self.0);
            libc::signal(libc::SIGQUIT, self.1);
        }
    }
}

/// Runs the prepared command and waits for it: its exit status, or 128 + the
/// signal that killed it (as shells report it).
pub fn run(plan: &Plan) -> Result<i32, EnterError> {
    let step = |step: &'static str| move |e: rustix::io::Errno| EnterError::Enter { step, source: e.into() };
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(step("make a pipe"))?;
    // Our next child is born in the container's PID namespace (setns with
    // CLONE_NEWPID only changes where children go); we move back right after fork.
    rustix::thread::move_into_thread_name_spaces(plan.pidfd.as_fd(), ThreadNameSpaceType::PROCESS_ID)
        .map_err(step("enter the container's PID namespace"))?;
    let ignore = IgnoreInterrupts::new();
    // SAFETY: the child runs only system calls on memory prepared before the fork
    // (see `child`) and leaves through exec or _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(rd);
        let (i, errno) = child(plan);
        let mut msg = [0u8; 5];
        msg[0] = i;
        msg[1..].copy_from_slice(&errno.raw_os_error().to_ne_bytes());
        let _ = rustix::io::write(&wr, &msg);
        let code = if i == STEP_EXEC && errno == rustix::io::Errno::NOENT { 127 } else { 126 };
        // SAFETY: leaves the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    let fork_error = io::Error::last_os_error();
    let back = rustix::thread::move_into_link_name_space(plan.own_pid_ns.as_fd(), Some(LinkNameSpaceType::ProcessID));
    drop(wr);
    if pid < 0 {
        return Err(EnterError::Enter { step: "start a process", source: fork_error });
    }
    // Nothing comes through the pipe unless the child failed before or at exec.
    let mut msg = [0u8; 5];
    let mut got = 0;
    while got < msg.len() {
        match rustix::io::read(&rd, &mut msg[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    let status = loop {
        let mut st = 0;
        // SAFETY: waits for our own child; `st` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break st;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(EnterError::Enter { step: "wait for the command", source: e });
        }
    };
    drop(ignore);
    back.map_err(step("return to lxcf's PID namespace"))?;
    if got == msg.len() {
        let errno = io::Error::from_raw_os_error(i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]));
        return Err(match msg[0] {
            STEP_EXEC => EnterError::Exec { cmd: plan.cmd.clone(), source: errno },
            i => EnterError::Enter { step: STEPS.get(i as usize).copied().unwrap_or("start"), source: errno },
        });
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    })
}

impl crate::Lxcf {
    /// Runs `argv` in the running container `name` with the caller's stdin, stdout
    /// and stderr and the environment `env` (see [`environment`]); its exit status,
    /// or 128 + the signal that killed it.
    pub fn exec(&self, name: &crate::Name, argv: &[OsString], env: &[(OsString, OsString)]) -> crate::Result<i32> {
        let _ = self.enter(super::Hold::Nothing)?;
        let init = self.running_init(name)?;
        let plan = prepare(Path::new("/proc"), init, argv, env)?;
        Ok(run(&plan)?)
    }

    /// Hands the caller's terminal to the running container's console until the user
    /// leaves it (Ctrl-]); `force` takes it from another client. The exit status.
    pub fn console(&self, name: &crate::Name, force: bool) -> crate::Result<i32> {
        let _ = self.enter(super::Hold::Nothing)?;
        self.running_init(name)?;
        Ok(self.rt.console(name, force)?)
    }

    /// The host PID of the init of a running lxcf container of this configuration.
    fn running_init(&self, name: &str) -> crate::Result<u32> {
        self.lxcf_instance(name)?;
        let not_running = || crate::Error::NotRunning(name.into());
        let live = self.rt.live(name)?.ok_or_else(not_running)?;
        self.host.init_of(live.monitor)?.ok_or_else(not_running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
42 31 0:38 /sub /mnt/elsewhere rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn joins_the_roots_of_the_containers_cgroup_mounts() {
        // A container's /sys/fs/cgroup as the host sees it through /proc/INIT/mountinfo
        // (roots relative to the host's cgroup namespace).
        let theirs = "\
88 118 0:29 /machine/lxc-1-web1.libvirt-lxc /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
91 118 0:32 /machine/lxc-1-web1.libvirt-lxc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
92 118 0:36 /machine/lxc-1-web1.libvirt-lxc /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_prio,net_cls
95 118 0:37 /lxcf/web1 /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
87 118 0:38 /lxcf/web1 /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
89 118 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
96 118 0:39 /lxcf/web1 /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
";
        let files = cgroup_procs_files(&cgroup_mounts(theirs), &cgroup_mounts(MOUNTINFO));
        let p = |s: &str| PathBuf::from(format!("/sys/fs/cgroup/{s}/cgroup.procs"));
        assert_eq!(
            files,
            [
                p("cpu/machine/lxc-1-web1.libvirt-lxc"),
                p("memory/machine/lxc-1-web1.libvirt-lxc"),
                p("net_cls,net_prio/machine/lxc-1-web1.libvirt-lxc"),
                p("systemd/lxcf/web1"),
                p("unified/lxcf/web1"),
            ]
        );
        // A hierarchy at its root is not joined; one not mounted here (cpuset) is left
        // out rather than guessed; our own mount of a subtree (/mnt/elsewhere) is not used.
        let m = cgroup_mounts(MOUNTINFO);
        assert_eq!(m.last().unwrap(), &CgroupMount { ctrls: vec![], root: "/sub".into(), at: "/mnt/elsewhere".into() });
    }

    #[test]
    fn capabilities_init_lacks_are_dropped() {
        // What libvirt leaves a container's init here: no sys_module (16), sys_rawio (17),
        // sys_time (25), mknod (27), audit_control (30), mac_admin/override (32, 33), ...
        let status = "Name:\tsystemd\nPPid:\t25335\nCapBnd:\t000001fdb4feffff\n";
        let drop = caps_to_drop(status, 40);
        assert!(drop.contains(&16) && drop.contains(&25) && drop.contains(&27), "{drop:?}");
        assert!(!drop.contains(&0) && !drop.contains(&21), "chown and sys_admin stay: {drop:?}");
        assert_eq!(caps_to_drop("CapBnd:\t000001ffffffffff\n", 40), Vec::<u32>::new());
    }

    #[test]
    fn environment_is_fresh() {
        let caller = [("TERM", "xterm"), ("LANG", "C.UTF-8"), ("LC_TIME", "C"), ("SSH_AUTH_SOCK", "/tmp/x"), ("PATH", "/home/u/bin")]
            .into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = environment(caller);
        let get = |k: &str| env.iter().find(|(a, _)| a == k).map(|(_, v)| v.to_str().unwrap());
        assert_eq!(get("PATH"), Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
        assert_eq!(get("HOME"), Some("/root"));
        assert_eq!(get("TERM"), Some("xterm"));
        assert_eq!(get("LC_TIME"), Some("C"));
        assert_eq!(get("SSH_AUTH_SOCK"), None);
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_container() {
        // Our own process shares our mount namespace.
        let me = std::process::id();
        let e = prepare(Path::new("/proc"), me, &[OsString::from("true")], &[]).err().unwrap();
        assert!(matches!(e, EnterError::NotContained(p) if p == me), "{e}");
        assert!(matches!(prepare(Path::new("/proc"), me, &[], &[]), Err(EnterError::NoCommand)));
    }
}
