//! One run of `lxcf update`'s command, watched from start to end: a time limit,
//! the tail of its output, and its death with lxcf.
//!
//! - **Time limit.** A run that has not ended when its limit expires is killed
//!   with everything it started: in a container the command is PID 1 of a PID
//!   namespace of its own, and when it dies the kernel kills every other process
//!   in there; on the host it leads a session (and so a process group) of its own,
//!   and the group is killed. (A host process that made a session of its own,
//!   as daemons do, has left the group and is not killed.) The outcome says it
//!   timed out; the update then rolls back as for any failure.
//! - **Output.** stdout and stderr are read as they come (poll(2) on both pipes
//!   and on a pidfd of the child, in the one thread that forked it), and only the
//!   last [`TAIL`] bytes of each are kept, so memory stays bounded whatever the
//!   command prints. What was dropped is said at the start: `[... N bytes cut]`.
//!   When the command has exited, what is left in the pipes is read without
//!   waiting: a process it left behind that still holds a pipe cannot keep lxcf
//!   waiting.
//! - **Death with lxcf.** The child asks for SIGKILL when its parent dies
//!   (PR_SET_PDEATHSIG). The kernel sends it when the *thread* that forked exits,
//!   not the process, so [`supervise`] forks and waits in the same call, on the
//!   caller's thread: the thread outlives the child whatever the caller's
//!   threads do. ([`Command::spawn`] also blocks until the child has exec'd, so the
//!   thread cannot leave before the signal is armed.) lxcf dying between the fork
//!   and the prctl is caught by [`Parent::die_with`]. The signal reaches the first
//!   process only (a fork clears it): in a container that is enough, PID 1 takes
//!   its namespace along; on the host a [`Watchman`] kills the command's process
//!   group when lxcf's process ends, so a maintainer script dpkg was running dies
//!   too.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};

use super::Outcome;

/// How much of each of stdout and stderr a run keeps: its last 64 KiB.
pub const TAIL: usize = 64 * 1024;

/// After the command exited, at most this much more is read from each pipe: a
/// process it left behind may go on writing.
const DRAIN: usize = 4 * 1024 * 1024;

/// How a run that exceeds its time limit is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// The child is PID 1 of its own PID namespace: killing it kills them all.
    Child,
    /// The child leads its own process group (`setsid` before exec): the group is killed.
    Group,
}

/// lxcf's own process, as the child sees it between fork and exec.
pub struct Parent(OwnedFd);

impl Parent {
    /// A pidfd of lxcf (close-on-exec: the command does not keep it).
    pub fn open() -> std::io::Result<Parent> {
        Ok(Parent(rustix::process::pidfd_open(rustix::process::getpid(), PidfdFlags::empty())?))
    }

    /// The descriptor, for a `pre_exec` closure (which must not allocate).
    pub fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// In the child, between fork and exec: SIGKILL when lxcf dies. If lxcf died
    /// before the signal was armed, nothing would ever send it, so the pidfd (readable
    /// once lxcf has exited) is checked after. `getppid` cannot tell: in a PID
    /// namespace of its own the child's parent is always 0.
    ///
    /// # Safety
    /// `fd` must be [`Parent::raw`] of a `Parent` that outlives the spawn.
    pub unsafe fn die_with(fd: i32) -> std::io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        // SAFETY: the caller keeps the descriptor open until the spawn returns.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let now = Timespec { tv_sec: 0, tv_nsec: 0 };
        if rustix::event::poll(&mut fds, Some(&now))? > 0 {
            return Err(Errno::SRCH.into());
        }
        Ok(())
    }
}

/// A forked copy of lxcf, in a session of its own (so a Ctrl-C on lxcf's terminal
/// does not reach it), that waits for lxcf's process to end and then kills the host
/// command's process group. lxcf stops it when the command has ended, before the
/// command is reaped: until then the group's ID cannot be reused.
struct Watchman(Pid);

impl Watchman {
    fn start(group: Pid) -> std::io::Result<Watchman> {
        let lxcf = rustix::process::pidfd_open(rustix::process::getpid(), PidfdFlags::empty())?;
        let (fd, group) = (lxcf.as_raw_fd(), group.as_raw_pid());
        // SAFETY: lxcf has threads, so the child may only make async-signal-safe
        // calls: setsid, poll, kill and _exit are system calls on values prepared
        // before the fork; no allocation, no lock, no return into Rust code.
        match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            0 => unsafe {
                libc::setsid();
                let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                // Readable when every thread of lxcf has exited.
                while libc::poll(&mut p, 1, -1) < 0 && *libc::__errno_location() == libc::EINTR {}
                libc::kill(-group, libc::SIGKILL);
                libc::_exit(0)
            },
            pid => Ok(Watchman(Pid::from_raw(pid).expect("fork returns a positive PID"))),
        }
    }
}

impl Drop for Watchman {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, Signal::KILL);
        let _ = rustix::process::waitpid(Some(self.0), rustix::process::WaitOptions::empty());
    }
}

/// The last [`TAIL`] bytes of a stream, and how many came before them.
#[derive(Debug, Default)]
pub struct Tail {
    buf: VecDeque<u8>,
    cut: u64,
}

impl Tail {
    pub fn push(&mut self, data: &[u8]) {
        let data = if data.len() > TAIL {
            self.cut += (data.len() - TAIL) as u64;
            &data[data.len() - TAIL..]
        } else {
            data
        };
        let over = (self.buf.len() + data.len()).saturating_sub(TAIL);
        self.buf.drain(..over);
        self.cut += over as u64;
        self.buf.extend(data);
    }

    /// As text, with `[... N bytes cut]` on a line of its own first when something was dropped.
    pub fn text(mut self) -> String {
        let mut bytes: &[u8] = self.buf.make_contiguous();
        if self.cut > 0 {
            // The cut may have split a character: its remaining bytes go too.
            let partial = bytes.iter().take(3).take_while(|b| (**b & 0xc0) == 0x80).count();
            bytes = &bytes[partial..];
            let cut = self.cut + partial as u64;
            return format!("[... {cut} bytes cut]\n{}", String::from_utf8_lossy(bytes));
        }
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// One of the child's output pipes.
struct Pipe {
    fd: Option<OwnedFd>,
    tail: Tail,
}

impl Pipe {
    /// Reads once (the caller knows it will not block): how much; 0 at the end
    /// of the stream, after which the pipe is closed.
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let Some(fd) = &self.fd else { return 0 };
        let r = loop {
            match rustix::io::read(fd, &mut *buf) {
                Err(Errno::INTR) => continue,
                r => break r,
            }
        };
        match r {
            Ok(n) if n > 0 => {
                self.tail.push(&buf[..n]);
                n
            }
            // The end, or an error no retry would mend.
            _ => {
                self.fd = None;
                0
            }
        }
    }
}

/// Runs `c` with stdin empty, stdout and stderr piped, and waits for it, at most
/// `timeout` (`None`: no limit); `kill` says how a timed-out run is killed. Forks
/// and waits on the calling thread (see the module's header). `program` names the
/// command in the outcome when it cannot start; `t` is when the run began.
pub fn supervise(mut c: Command, kill: Kill, timeout: Option<Duration>, program: &OsStr, t: Instant) -> Outcome {
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return Outcome::failed_to_start(format!("cannot run {}: {e}", program.to_string_lossy()), t.elapsed().as_secs_f64()),
    };
    let pid = Pid::from_child(&child);
    let mut out = Pipe { fd: child.stdout.take().map(OwnedFd::from), tail: Tail::default() };
    let mut err = Pipe { fd: child.stderr.take().map(OwnedFd::from), tail: Tail::default() };
    // The child is not reaped before the wait below, so its PID, and the pidfd, stay its own.
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::failed_to_start(format!("cannot watch {}: {e}", program.to_string_lossy()), t.elapsed().as_secs_f64());
        }
    };
    // On the host, what the command starts must die with lxcf too.
    let watchman = match kill {
        Kill::Child => None,
        Kill::Group => match Watchman::start(pid) {
            Ok(w) => Some(w),
            Err(e) => {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                let _ = child.wait();
                return Outcome::failed_to_start(
                    format!("cannot start a watch over {}: {e}", program.to_string_lossy()),
                    t.elapsed().as_secs_f64(),
                );
            }
        },
    };
    // Killed while its pidfd is open and before the wait reaps it: no PID reuse possible.
    let terminate = || {
        let r = match kill {
            Kill::Child => rustix::process::pidfd_send_signal(&pidfd, Signal::KILL),
            Kill::Group => rustix::process::kill_process_group(pid, Signal::KILL),
        };
        if let Err(e) = r {
            tracing::warn!("cannot kill {}: {e}", program.to_string_lossy());
        }
    };
    let deadline = timeout.map(|d| t + d);
    let mut timed_out = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let wait = match deadline {
            Some(d) if !timed_out => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    terminate();
                    timed_out = true;
                    continue;
                }
                Some(Timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ })
            }
            _ => None,
        };
        let exited = {
            let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
            let pipes: Vec<BorrowedFd> = [&out, &err].iter().filter_map(|p| p.fd.as_ref().map(|f| f.as_fd())).collect();
            fds.extend(pipes.iter().map(|f| PollFd::new(f, PollFlags::IN)));
            match rustix::event::poll(&mut fds, wait.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    // Not expected. Without poll there is no time limit: the run
                    // is ended rather than waited for blindly.
                    tracing::error!("cannot watch {}, killing it: {e}", program.to_string_lossy());
                    terminate();
                    break;
                }
            }
            !fds[0].revents().is_empty()
        };
        for p in [&mut out, &mut err] {
            if ready(p) {
                p.read(&mut buf);
            }
        }
        if exited {
            break;
        }
    }
    // Whatever the command wrote before it exited, without waiting for more.
    for p in [&mut out, &mut err] {
        let mut read = 0;
        while read < DRAIN && ready(p) {
            match p.read(&mut buf) {
                0 => break,
                n => read += n,
            }
        }
        p.fd = None;
    }
    // Stopped before the wait reaps the command and frees its group's ID.
    drop(watchman);
    let status = child.wait();
    let seconds = t.elapsed().as_secs_f64();
    match status {
        Ok(s) => Outcome {
            code: s.code(),
            signal: s.signal(),
            stdout: out.tail.text(),
            stderr: err.tail.text(),
            error: None,
            timed_out: if timed_out { timeout } else { None },
            seconds,
        },
        Err(e) => Outcome::failed_to_start(format!("cannot wait for {}: {e}", program.to_string_lossy()), seconds),
    }
}

/// The pipe can be read now without blocking (data, or its end).
fn ready(p: &Pipe) -> bool {
    let Some(fd) = &p.fd else { return false };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes_and_counts_the_rest() {
        let mut t = Tail::default();
        t.push(b"hello\n");
        assert_eq!(t.text(), "hello\n");

        let mut t = Tail::default();
        for _ in 0..100 {
            t.push(&[b'x'; 1000]);
        }
        t.push(b"END\n");
        let s = t.text();
        let cut = 100_000 + 4 - TAIL;
        assert!(s.starts_with(&format!("[... {cut} bytes cut]\n")), "{}", &s[..40]);
        assert!(s.ends_with("xxEND\n"));
        assert_eq!(s.len() - s.find('\n').unwrap() - 1, TAIL);

        // One write larger than the tail.
        let mut t = Tail::default();
        t.push(&vec![b'y'; 3 * TAIL]);
        assert!(t.text().starts_with(&format!("[... {} bytes cut]\ny", 2 * TAIL)));

        // A character split by the cut is dropped whole, not shown as garbage.
        let mut t = Tail::default();
        t.push("é".as_bytes());
        t.push(&vec![b'z'; TAIL - 1]);
        assert_eq!(t.text(), format!("[... 2 bytes cut]\n{}", "z".repeat(TAIL - 1)));
    }
}
