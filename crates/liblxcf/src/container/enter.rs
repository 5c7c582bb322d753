//! Running a command inside a running container (`lxcf exec`), as
//! `virsh lxc-enter-namespace` does, with the exit status passed through and the
//! caller's stdin, stdout and stderr connected.
//!
//! The container's root user is hostile (docs/ARCHITECTURE.md): a process that
//! appears in the container's PID namespace can be ptraced from inside, and its
//! /proc/PID/root, cwd and fd/N opened there. So nothing appears there before it is
//! wholly inside. lxcf keeps a pidfd of the container's init (so that a reused PID
//! cannot send us elsewhere) and forks an *intermediate* process that stays in the
//! host's PID namespace, where the container cannot see it, and:
//! 1. joins the cgroups at the root of the container's cgroup namespace (what its
//!    own cgroup mounts show as their roots): CPU, memory and tasks are accounted
//!    to the container, its device rules apply to the command, and inside it the
//!    command is in the root cgroup, as `virsh lxc-enter-namespace` puts it;
//! 2. enters init's user (if another), IPC, UTS, network, cgroup and mount
//!    namespaces and sets the PID namespace of its children, in one setns; entering
//!    the mount namespace also sets its root and working directory to the
//!    container's root (setns(2)), so no chroot is needed;
//! 3. closes every file descriptor but stdin, stdout, stderr and the error pipe:
//!    a descriptor inherited from lxcf's caller, opened from inside through
//!    /proc/PID/fd/N, would lead to the host's files;
//! 4. drops from its capability bounding set what init's lacks, keeps of its
//!    permitted and effective sets only what that bounding set holds, and clears the
//!    inheritable and ambient sets: a root process's exec gains the bounding set
//!    plus the inheritable set, so an inheritable capability would come back;
//! 5. makes itself not dumpable (its child keeps that until exec);
//! 6. forks the command's process, which is born in the container's PID namespace
//!    with all of the above, waits for it and exits with its exit status (128 +
//!    the signal that killed it), forwarding nothing else.
//!
//! The command's process restores SIGINT and SIGQUIT (lxcf and the intermediate
//! ignore them while they wait, as system(3) does), SIGPIPE (Rust ignores it) and
//! an empty signal mask, and execs the command, searched in the container's PATH,
//! with a fresh environment (see [`environment`]). A close-on-exec pipe reports a
//! failed step with its errno, or nothing when exec succeeded.
//!
//! Everything both children need is prepared before the first fork: after fork in
//! a possibly multi-threaded process a child only makes system calls.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};
use rustix::thread::{CapabilitySet, CapabilitySets, ThreadNameSpaceType};

use crate::host::cgroup::{cgroup_mounts, CgroupMount};

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
/// A hierarchy the container does not mount (the v2 one beside v1 ones in an
/// unprivileged container) is joined where its init is (`init_cgroup`, its
/// /proc/PID/cgroup as lxcf reads it).
fn cgroup_procs_files(container: &[CgroupMount], ours: &[CgroupMount], init_cgroup: &str) -> Vec<PathBuf> {
    let same = |a: &[String], b: &[String]| if a.is_empty() { b.is_empty() } else { !b.is_empty() && a.iter().all(|w| b.contains(w)) };
    let mut wanted: Vec<(Vec<String>, String)> = container.iter().map(|c| (c.ctrls.clone(), c.root.clone())).collect();
    for l in init_cgroup.lines() {
        let mut f = l.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
        let ctrls: Vec<String> = ctrls.split(',').filter(|c| !c.is_empty()).map(String::from).collect();
        if !container.iter().any(|c| same(&c.ctrls, &ctrls)) {
            wanted.push((ctrls, path.to_string()));
        }
    }
    let mut out = Vec::new();
    for (ctrls, root) in wanted {
        if root == "/" || root.is_empty() || root.starts_with("/..") {
            continue;
        }
        match ours.iter().filter(|m| m.root == "/").find(|m| same(&ctrls, &m.ctrls)) {
            Some(m) => out.push(m.at.join(root.trim_start_matches('/')).join("cgroup.procs")),
            None => tracing::debug!("cgroup hierarchy `{}` is not mounted here; not joined", ctrls.join(",")),
        }
    }
    out
}

/// The capability bounding set in `status` (the text of /proc/PID/status), limited
/// to the capabilities up to `last_cap`; all of them when it has none.
fn bounding_set(status: &str, last_cap: u32) -> u64 {
    let all = if last_cap >= 63 { u64::MAX } else { (1u64 << (last_cap + 1)) - 1 };
    let bnd = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    bnd.unwrap_or(u64::MAX) & all
}

/// Capabilities (numbers) that `last_cap` allows but the bounding set in `status`
/// (/proc/PID/status) does not hold.
fn caps_to_drop(status: &str, last_cap: u32) -> Vec<u32> {
    let bnd = bounding_set(status, last_cap);
    (0..=last_cap.min(63)).filter(|c| bnd & (1 << c) == 0).collect()
}

fn ns_id(path: &Path) -> Result<u64, EnterError> {
    Ok(std::fs::metadata(path).map_err(inspect(path))?.ino())
}

/// Everything the children need, made before the first fork.
pub struct Plan {
    pidfd: OwnedFd,
    /// Entered by the intermediate; PROCESS_ID only moves its children.
    namespaces: ThreadNameSpaceType,
    cgroup_procs: Vec<CString>,
    drop_caps: Vec<u32>,
    /// Init's bounding set: the most the command's process may hold.
    keep_caps: CapabilitySet,
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
    let mut namespaces = ThreadNameSpaceType::MOUNT
        | ThreadNameSpaceType::HOST_NAME_AND_NIS_DOMAIN_NAME
        | ThreadNameSpaceType::INTER_PROCESS_COMMUNICATION
        | ThreadNameSpaceType::NETWORK
        | ThreadNameSpaceType::CONTROL_GROUP
        | ThreadNameSpaceType::PROCESS_ID;
    // Entering one's own user namespace again is refused (EINVAL): only when it differs.
    if ns_id(&ns("user"))? != ns_id(&own("user"))? {
        namespaces |= ThreadNameSpaceType::USER;
    }

    let status_path = dir.join("status");
    let status = std::fs::read_to_string(&status_path).map_err(inspect(&status_path))?;
    let last_cap = std::fs::read_to_string(proc.join("sys/kernel/cap_last_cap")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    let drop_caps = caps_to_drop(&status, last_cap);
    let keep_caps = CapabilitySet::from_bits_retain(bounding_set(&status, last_cap));

    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(inspect(&p));
    let theirs = read(dir.join("mountinfo"))?;
    let ours = read(proc.join("self/mountinfo"))?;
    let init_cgroup = read(dir.join("cgroup"))?;
    let cgroup_procs = cgroup_procs_files(&cgroup_mounts(&theirs), &cgroup_mounts(&ours), &init_cgroup)
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
        namespaces,
        cgroup_procs,
        drop_caps,
        keep_caps,
        argv_ptrs: pointers(&argv),
        envp_ptrs: pointers(&envp),
        _argv: argv,
        _envp: envp,
        cmd: first.to_string_lossy().into_owned(),
    })
}

/// What a child reports when a step fails, by index.
const STEPS: [&str; 9] = [
    "join the container's cgroups",
    "enter the container's namespaces",
    "change directory to /",
    "close inherited file descriptors",
    "drop capabilities",
    "make the process not dumpable",
    "start a process",
    "wait for the command",
    "run",
];
const STEP_CGROUPS: u8 = 0;
const STEP_SETNS: u8 = 1;
const STEP_CHDIR: u8 = 2;
const STEP_FDS: u8 = 3;
const STEP_CAPS: u8 = 4;
const STEP_DUMPABLE: u8 = 5;
const STEP_FORK: u8 = 6;
const STEP_WAIT: u8 = 7;
const STEP_EXEC: u8 = 8;

/// The errno of the last failed libc call (reading it allocates nothing).
fn last_errno() -> Errno {
    Errno::from_raw_os_error(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
}

/// Reports a failed step through the error pipe and leaves the child with `code`.
fn fail(pipe: &OwnedFd, step: u8, errno: Errno, code: i32) -> ! {
    let mut msg = [0u8; 5];
    msg[0] = step;
    msg[1..].copy_from_slice(&errno.raw_os_error().to_ne_bytes());
    let _ = rustix::io::write(pipe, &msg);
    // SAFETY: leaves the child without running the parent's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// Closes every descriptor from 3 up except `keep`.
fn close_all_but(keep: RawFd) -> Result<(), Errno> {
    let max = libc::c_uint::MAX;
    let ranges = match libc::c_uint::try_from(keep) {
        Ok(k) if k >= 3 => [(3, k.saturating_sub(1)), (k.saturating_add(1), max)],
        _ => [(3, max), (1, 0)],
    };
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: only descriptors are closed; after this the child uses none but
        // `keep` (the plan's pidfd has served its purpose, and the OwnedFds that hold
        // the others are never dropped here: the child leaves by exec or _exit).
        if unsafe { libc::close_range(first, last, 0) } != 0 {
            return Err(last_errno());
        }
    }
    Ok(())
}

/// The intermediate's steps before it forks the command's process (module docs,
/// 1 to 5): only system calls on memory prepared in `plan`.
fn enter_all(plan: &Plan, pipe: &OwnedFd) -> Result<(), (u8, Errno)> {
    use rustix::fs::{Mode, OFlags};
    for p in &plan.cgroup_procs {
        // "0" is the writing process itself.
        let r = rustix::fs::open(p.as_c_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).and_then(|fd| rustix::io::write(&fd, b"0"));
        r.map_err(|e| (STEP_CGROUPS, e))?;
    }
    rustix::thread::move_into_thread_name_spaces(plan.pidfd.as_fd(), plan.namespaces).map_err(|e| (STEP_SETNS, e))?;
    if plan.namespaces.contains(ThreadNameSpaceType::USER) {
        // The host's root has no ID in the container's user namespace (it would run
        // as the overflow user): become its root, with no supplementary groups.
        let root = (rustix::process::Gid::ROOT, rustix::process::Uid::ROOT);
        rustix::thread::set_thread_groups(&[]).map_err(|e| (STEP_SETNS, e))?;
        rustix::thread::set_thread_res_gid(root.0, root.0, root.0).map_err(|e| (STEP_SETNS, e))?;
        rustix::thread::set_thread_res_uid(root.1, root.1, root.1).map_err(|e| (STEP_SETNS, e))?;
    }
    rustix::process::chdir(c"/").map_err(|e| (STEP_CHDIR, e))?;
    close_all_but(pipe.as_raw_fd()).map_err(|e| (STEP_FDS, e))?;
    for &c in &plan.drop_caps {
        let set = CapabilitySet::from_bits_retain(1 << c);
        rustix::thread::remove_capability_from_bounding_set(set).map_err(|e| (STEP_CAPS, e))?;
    }
    // The bounding set only limits what an exec grants; what the process holds now
    // is cut to it too, so that nothing in it outlasts the exec or can be taken over
    // (ptrace) before it.
    let now = rustix::thread::capabilities(None).map_err(|e| (STEP_CAPS, e))?;
    let sets = CapabilitySets {
        effective: now.effective & plan.keep_caps,
        permitted: now.permitted & plan.keep_caps,
        inheritable: CapabilitySet::empty(),
    };
    rustix::thread::set_capabilities(None, sets).map_err(|e| (STEP_CAPS, e))?;
    rustix::thread::clear_ambient_capability_set().map_err(|e| (STEP_CAPS, e))?;
    // Until its exec the command's process holds a copy of lxcf's memory. Not dumpable,
    // it cannot be ptraced or its /proc/PID files opened without CAP_SYS_PTRACE over
    // lxcf's user namespace: this keeps out the root of a container with a user
    // namespace of its own (a container without one has that capability, and finds
    // only what step 4 left). The exec makes the command dumpable again.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable).map_err(|e| (STEP_DUMPABLE, e))?;
    Ok(())
}

/// The intermediate process (host PID namespace): enters, forks the command's
/// process, relays its exit status. Never returns.
fn intermediate(plan: &Plan, pipe: &OwnedFd) -> ! {
    if let Err((step, e)) = enter_all(plan, pipe) {
        fail(pipe, step, e, 126);
    }
    // SAFETY: the child only makes system calls on memory prepared before the first
    // fork (see `command`) and leaves through exec or _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        command(plan, pipe);
    }
    if pid < 0 {
        fail(pipe, STEP_FORK, last_errno(), 126);
    }
    let status = loop {
        let mut st = 0;
        // SAFETY: waits for our own child; `st` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break st;
        }
        let e = last_errno();
        if e != Errno::INTR {
            fail(pipe, STEP_WAIT, e, 126);
        }
    };
    // SAFETY: as in `fail`.
    unsafe { libc::_exit(exit_code(status)) }
}

/// The command's process, in the container's PID namespace: signals as the caller
/// would give them, then exec. Never returns.
fn command(plan: &Plan, pipe: &OwnedFd) -> ! {
    // SAFETY: SIG_DFL is a valid disposition and the set is initialised by
    // sigemptyset before use. Ignored signals stay ignored across exec: lxcf and the
    // intermediate ignore SIGINT and SIGQUIT while they wait, and Rust ignores
    // SIGPIPE in every program, which a pipeline in the container must not inherit.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGQUIT, libc::SIG_DFL);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
    }
    // SAFETY: both arrays are NULL-terminated and point into CStrings owned by `plan`,
    // alive until exec replaces the process image.
    unsafe { libc::execvpe(plan.argv_ptrs[0], plan.argv_ptrs.as_ptr(), plan.envp_ptrs.as_ptr()) };
    let errno = last_errno();
    fail(pipe, STEP_EXEC, errno, if errno == Errno::NOENT { 127 } else { 126 })
}

/// A wait status as shells report it: the exit status, or 128 + the signal.
fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
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
    use rustix::pipe::PipeFlags;
    let step = |step: &'static str| move |e: Errno| EnterError::Enter { step, source: e.into() };
    // Non-blocking: read once both children have ended (below).
    let (rd, wr) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).map_err(step("make a pipe"))?;
    // The intermediate inherits these ignored, so Ctrl-C does not end it either.
    let ignore = IgnoreInterrupts::new();
    // SAFETY: the child only makes system calls on memory prepared before the fork
    // (see `intermediate`) and leaves through _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        intermediate(plan, &wr);
    }
    let fork_error = io::Error::last_os_error();
    drop(wr);
    if pid < 0 {
        return Err(EnterError::Enter { step: "start a process", source: fork_error });
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
    // Both children have ended, so a failure report is in the pipe by now. Reading
    // until end of file instead could wait forever: a process in the container may
    // open the pipe through /proc/PID/fd of the command's process before its exec
    // and keep it open. (It could also write a false report: that misleads only
    // about its own container.)
    let mut msg = [0u8; 5];
    let mut got = 0;
    while got < msg.len() {
        match rustix::io::read(&rd, &mut msg[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    if got == msg.len() {
        let errno = io::Error::from_raw_os_error(i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]));
        return Err(match msg[0] {
            STEP_EXEC => EnterError::Exec { cmd: plan.cmd.clone(), source: errno },
            i => EnterError::Enter { step: STEPS.get(i as usize).copied().unwrap_or("start"), source: errno },
        });
    }
    Ok(exit_code(status))
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
        let files = cgroup_procs_files(&cgroup_mounts(theirs), &cgroup_mounts(MOUNTINFO), "");
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
        // An unprivileged container mounts no v2 hierarchy beside v1 ones: its init's
        // place there is joined.
        let no_v2: String = theirs.lines().filter(|l| !l.contains("cgroup2")).map(|l| format!("{l}\n")).collect();
        let files = cgroup_procs_files(&cgroup_mounts(&no_v2), &cgroup_mounts(MOUNTINFO), "1:cpu:/machine/x\n0::/lxcf/web1\n");
        assert_eq!(files.last().unwrap(), &p("unified/lxcf/web1"));
        assert_eq!(files.len(), 5, "{files:?}");
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
        // What the command may hold is that bounding set, within what the kernel knows.
        assert_eq!(bounding_set(status, 40), 0x000001fdb4feffff);
        assert_eq!(bounding_set("CapBnd:\tffffffffffffffff\n", 40), (1 << 41) - 1);
        assert_eq!(bounding_set("Name:\tx\n", 40), (1 << 41) - 1, "no CapBnd line: the kernel's whole set");
        assert_eq!(bounding_set(status, 40) & !((1u64 << 16) | (1 << 25)), bounding_set(status, 40), "no sys_module, no sys_time");
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
