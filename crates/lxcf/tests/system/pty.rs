//! A program on a pseudo-terminal, driven as a person at a terminal would: type
//! keys, wait for text on the screen. For the LXCF shell (line editing needs a
//! terminal) and `lxcf console` (virsh needs one).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::pty::OpenptFlags;

pub struct Pty {
    master: File,
    child: Child,
    /// Everything the program wrote, and how much of it `expect` consumed.
    out: Arc<Mutex<Vec<u8>>>,
    seen: usize,
}

impl Pty {
    /// Starts `cmd` with a new terminal as stdin, stdout, stderr and controlling tty.
    pub fn spawn(cmd: &mut Command) -> Pty {
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let name = rustix::pty::ptsname(&master, Vec::new()).unwrap();
        let slave = File::options().read(true).write(true).open(name.to_str().unwrap()).unwrap();
        let size = rustix::termios::Winsize { ws_row: 40, ws_col: 132, ws_xpixel: 0, ws_ypixel: 0 };
        rustix::termios::tcsetwinsize(&slave, size).unwrap();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap())).stdout(Stdio::from(slave.try_clone().unwrap())).stderr(Stdio::from(slave));
        // SAFETY: only system calls between fork and exec: a new session whose
        // controlling terminal is the pty on stdin.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::io::stdin())?;
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let master = File::from(master);
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mut r, sink) = (master.try_clone().unwrap(), out.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the program and everything it started closed the terminal.
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty { master, child, out, seen: 0 }
    }

    /// Types `keys` (a `\r` is Enter).
    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Waits until `text` appears after what earlier calls consumed; returns the
    /// output up to and including it.
    pub fn expect(&mut self, text: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            {
                let out = self.out.lock().unwrap();
                let fresh = String::from_utf8_lossy(&out[self.seen..]).into_owned();
                if let Some(i) = fresh.find(text) {
                    let upto = fresh[..i + text.len()].to_string();
                    self.seen += upto.len();
                    return upto;
                }
                if Instant::now() > until {
                    panic!("no {text:?} within {timeout:?}; the terminal shows:\n{fresh}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the program put the terminal in raw mode (no line editing by
    /// the kernel), as full-screen programs and consoles do.
    pub fn wait_raw(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        // The master and the slave share one termios.
        while rustix::termios::tcgetattr(&self.master).unwrap().local_modes.contains(rustix::termios::LocalModes::ICANON) {
            assert!(Instant::now() < until, "the terminal is not raw after {timeout:?}:\n{}", self.all());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything shown so far (for assertions on the whole session).
    pub fn all(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// The program's exit code if it ends within `timeout`.
    pub fn try_wait(&mut self, timeout: Duration) -> Option<i32> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits for the program to end; its exit code.
    pub fn wait(mut self, timeout: Duration) -> i32 {
        let until = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {timeout:?}; the terminal shows:\n{}", self.all());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // A failed test must not leave the program behind (it is ours: kill by PID).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
