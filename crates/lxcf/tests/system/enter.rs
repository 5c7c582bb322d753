//! Seeing and entering a running container: `exec`, `console`, and `list`'s live
//! figures, checked against virsh and the kernel's view of the processes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::pty::Pty;

#[test]
fn exec_console_and_live_list() {
    let Some(env) = Env::new() else { return };
    let c = env.name("e");
    env.lxcf(&["sysgen", &c]).ok("sysgen");
    env.assert_running(&c);

    // The exit status comes back; stdout and stderr are the command's.
    let o = env.lxcf(&["exec", &c, "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (7, "out\n", "err\n"));
    // Without `--` too, and the command is found in the container's PATH.
    assert_eq!(env.lxcf(&["exec", &c, "hostname"]).ok("hostname").stdout.trim(), c);
    // stdin is connected.
    let mut child = Command::new(LXCF)
        .env("LXCF_CONFIG", &env.config)
        .args(["exec", &c, "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello from the host\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()), (Some(0), "HELLO FROM THE HOST\n"));

    // It runs in the container's namespaces, root and cgroups, as what
    // `virsh lxc-enter-namespace` runs in.
    let init = init_pid(&c);
    let ns = |kind: &str| std::fs::read_link(format!("/proc/{init}/ns/{kind}")).unwrap().to_string_lossy().into_owned();
    let inside = env
        .lxcf(&["exec", &c, "--", "sh", "-c", "for n in mnt pid uts net ipc; do readlink /proc/self/ns/$n; done; cat /proc/1/comm; pwd"])
        .ok("namespaces")
        .stdout;
    let want: Vec<String> = ["mnt", "pid", "uts", "net", "ipc"].iter().map(|k| ns(k)).collect();
    assert_eq!(inside.lines().take(5).collect::<Vec<_>>(), want, "{inside}");
    assert!(inside.contains("\nsystemd\n/\n"), "PID 1 is the container's systemd, cwd its /: {inside}");
    let id = |via: Out| via.stdout;
    assert_eq!(id(env.lxcf(&["exec", &c, "--", "cat", "/etc/machine-id"])), id(env.exec(&c, &["/bin/cat", "/etc/machine-id"])));
    // In the container's cgroup namespace, at its root in every hierarchy: outside
    // its cgroups a path would read `/..` (tests/system/cgroups.rs has the host's view).
    let cg = env.lxcf(&["exec", &c, "--", "cat", "/proc/self/cgroup"]).ok("cgroup").stdout;
    assert!(cg.lines().count() >= 2 && cg.lines().all(|l| l.ends_with(":/")), "{cg}");
    // No more capabilities than the container's init.
    let capbnd = |s: &str| s.lines().find(|l| l.starts_with("CapBnd:")).unwrap().to_string();
    let init_status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let own = env.lxcf(&["exec", &c, "--", "cat", "/proc/self/status"]).ok("status").stdout;
    assert_eq!(capbnd(&own), capbnd(&init_status));
    // A fresh environment: not the caller's.
    let env_out = run(Command::new(LXCF).env("LXCF_CONFIG", &env.config).env("LXCF_TEST_SECRET", "x").args(["exec", &c, "env"]));
    assert!(env_out.stdout.contains("HOME=/root\n") && !env_out.stdout.contains("LXCF_TEST_SECRET"), "{}", env_out.stdout);
    // Commands that cannot run: the shell's statuses.
    let o = env.lxcf(&["exec", &c, "--", "/no/such/program"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    assert!(o.stderr.contains("cannot run `/no/such/program` in the container"), "{}", o.stderr);
    assert_eq!(env.lxcf(&["exec", &c, "--", "/etc/hostname"]).code, 126);
    assert_eq!(env.lxcf(&["exec", &c]).code, 2, "no command");

    // CPU % and memory, next to what libvirt and the kernel say.
    let idle = list_json(&env)[0]["cpu_percent"].as_f64().unwrap();
    let busy = Command::new(LXCF)
        .env("LXCF_CONFIG", &env.config)
        .args(["exec", &c, "--", "timeout", "8", "sh", "-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let list = list_json(&env);
    let me = &list[0];
    let cpu = me["cpu_percent"].as_f64().unwrap();
    // One shell spinning: well above idle, even on a 2-core machine shared with
    // other work (it got 10 % to 100 % here, depending on the load).
    assert!(cpu > idle + 5.0, "a busy loop shows as {cpu} %, idle as {idle} %");
    // The CPU time behind it grows by about the same: read twice, a second apart.
    let t0 = list_json(&env)[0]["cpu_time_ns"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let t1 = list_json(&env)[0]["cpu_time_ns"].as_u64().unwrap();
    assert!(t1 - t0 > 50_000_000, "{} ms of CPU in a busy second", (t1 - t0) / 1_000_000);
    let used_kib: u64 = virsh(&["dominfo", &c])
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Used memory:"))
        .and_then(|v| v.trim().trim_end_matches("KiB").trim().parse().ok())
        .unwrap();
    let mem = me["memory_bytes"].as_u64().unwrap();
    assert!(mem.abs_diff(used_kib * 1024) < (used_kib * 1024) / 2 + (4 << 20), "list {mem} B, virsh {used_kib} KiB");
    let table = env.lxcf(&["list"]).ok("list").stdout;
    assert!(table.lines().next().unwrap().ends_with("CPU%  MEMORY"), "{table}");
    let mut busy = busy;
    assert_eq!(busy.wait().unwrap().code(), Some(124), "timeout's status for a command it stopped");

    // The console: virsh's, on a terminal; Ctrl-] leaves it.
    let mut t = Pty::spawn(Command::new(LXCF).env("LXCF_CONFIG", &env.config).args(["console", &c]));
    t.expect("Connected to domain", Duration::from_secs(20));
    t.wait_raw(Duration::from_secs(20));
    t.send("\r");
    t.expect("login:", Duration::from_secs(20));
    // virsh drops keys typed while it is still setting the terminal up (it sets raw
    // mode again, flushing input): a person presses Ctrl-] again, and so does this.
    let mut code = None;
    for _ in 0..20 {
        t.send("\x1d");
        code = t.try_wait(Duration::from_secs(1));
        if code.is_some() {
            break;
        }
    }
    assert_eq!(code, Some(0), "Ctrl-] did not leave the console:\n{}", t.all());
    assert!(!t.all().contains("Authorization not available"), "no polkit agent on the terminal");

    // A stopped container has nothing to enter: a clear error, no libvirt message.
    env.lxcf(&["stop", &c]).ok("stop");
    for args in [vec!["exec", &c, "--", "true"], vec!["console", &c]] {
        let o = env.lxcf(&args);
        assert_eq!(o.code, 1, "{args:?}");
        assert!(o.stderr.contains(&format!("container `{c}` is not running")), "{}", o.stderr);
        assert!(o.stderr.contains(&format!("hint: `lxcf start {c}`")), "{}", o.stderr);
    }
    let stopped = &list_json(&env)[0];
    assert!(stopped["cpu_percent"].is_null() && stopped["memory_bytes"].is_null(), "{stopped}");
    assert_eq!(env.lxcf(&["exec", &env.name("nosuch"), "true"]).code, 3);
    env.lxcf(&["erase", &c]).ok("erase");
}

/// A line `KEY:\tVALUE` of /proc/PID/status.
fn status_field(status: &str, key: &str) -> String {
    let line = status.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} in {status}"));
    line.trim().to_string()
}

fn hex(status: &str, key: &str) -> u64 {
    u64::from_str_radix(&status_field(status, key), 16).unwrap()
}

/// Runs `cmd` with the caller's file `f` as its descriptor 100, not close-on-exec
/// (as a careless caller would pass one).
fn with_fd_100<'a>(cmd: &'a mut Command, f: &std::fs::File) -> &'a mut Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw = f.as_raw_fd();
    // SAFETY: dup2 only, between fork and exec; the new descriptor is not close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 100) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// A process as it was at birth: stopped by ptrace before its first instruction,
/// read from the host.
struct Birth {
    pid: i32,
    /// readlink of /proc/PID/ns/KIND.
    ns: Vec<(&'static str, String)>,
    /// (device, inode) of its root directory.
    root: (u64, u64),
    status: String,
    /// Its descriptors: number, readlink, fdinfo flags (octal).
    fds: Vec<(i32, String, u32)>,
}

const NS_KINDS: [&str; 7] = ["pid", "mnt", "net", "uts", "ipc", "cgroup", "user"];

fn namespaces(pid: i32) -> Vec<(&'static str, String)> {
    NS_KINDS.iter().map(|k| (*k, std::fs::read_link(format!("/proc/{pid}/ns/{k}")).unwrap().to_string_lossy().into_owned())).collect()
}

fn root_of(pid: i32) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/root/")).unwrap();
    (m.dev(), m.ino())
}

fn birth(pid: i32) -> Birth {
    let mut fds = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let n: i32 = e.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let link = std::fs::read_link(format!("/proc/{pid}/fd/{n}")).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")).unwrap_or_default();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).map(|f| u32::from_str_radix(f.trim(), 8).unwrap()).unwrap_or(0);
        fds.push((n, link, flags));
    }
    fds.sort();
    Birth { pid, ns: namespaces(pid), root: root_of(pid), status: std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap(), fds }
}

/// Runs `cmd` under ptrace, following every fork(2), and returns its exit code
/// and every process it forked, as each was at birth. Whatever a process does
/// after birth, it cannot undo what it was then, so this needs no timing.
///
/// Waits by PID only (never for any child): other tests run in threads of this
/// process and wait for their own children.
fn births(cmd: &mut Command) -> (i32, Vec<Birth>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: ptrace(TRACEME) only, between fork and exec: this thread traces the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let top = cmd.spawn().unwrap().id() as i32;
    // Tracees stopped at the end of a failed test are killed, not left stopped.
    let opts = libc::PTRACE_O_TRACEFORK | libc::PTRACE_O_TRACEEXEC | libc::PTRACE_O_EXITKILL;
    let mut traced = vec![top];
    let mut seen = std::collections::BTreeSet::from([top]);
    let mut out = Vec::new();
    let mut code = None;
    let mut started = false;
    let until = std::time::Instant::now() + Duration::from_secs(120);
    while code.is_none() || !traced.is_empty() {
        assert!(std::time::Instant::now() < until, "traced lxcf did not finish");
        let mut progressed = false;
        for pid in traced.clone() {
            let mut st = 0;
            // SAFETY: waits for a tracee of this thread; `st` is a valid out pointer.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
            if r == 0 {
                continue;
            }
            progressed = true;
            if r < 0 || libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                traced.retain(|p| *p != pid);
                if pid == top {
                    code = Some(if r > 0 && libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { -1 });
                }
                continue;
            }
            let (sig, event) = (libc::WSTOPSIG(st), (st >> 16) & 0xff);
            let mut inject = 0;
            if pid == top && !started {
                // The SIGTRAP of the first exec (TRACEME); options hold for every
                // process forked from here on.
                started = true;
                // SAFETY: a stopped tracee of this thread.
                assert_eq!(unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts) }, 0);
            } else if event == libc::PTRACE_EVENT_FORK {
                let mut new: libc::c_ulong = 0;
                // SAFETY: a stopped tracee; `new` is a valid out pointer.
                assert_eq!(unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut new) }, 0);
                traced.push(new as i32);
            } else if event != 0 {
                // The exec of the command (or of lxcf after setpriv): nothing to pass on.
            } else if seen.insert(pid) {
                // A new process's first stop (its SIGSTOP, which it never gets).
                out.push(birth(pid));
            } else {
                inject = sig;
            }
            // SAFETY: resumes a stopped tracee of this thread.
            assert_eq!(unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, inject) }, 0, "PTRACE_CONT {pid}");
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    (code.unwrap(), out)
}

/// Root in a container is hostile: `exec` must not hand it anything of the host.
/// No descriptor lxcf's caller leaked, no capability beyond the container's own, and
/// no process visible in the container before it is wholly inside.
#[test]
fn exec_brings_nothing_of_the_host_inside() {
    let Some(env) = Env::new() else { return };
    let c = env.name("x");
    env.lxcf(&["sysgen", &c]).ok("sysgen");
    env.assert_running(&c);
    let init = init_pid(&c) as i32;
    let init_status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let init_bnd = hex(&init_status, "CapBnd");
    let lxcf = || {
        let mut cmd = Command::new(LXCF);
        cmd.env("LXCF_CONFIG", &env.config);
        cmd
    };

    // A host file the caller left open without close-on-exec, at descriptor 100:
    // through /proc/PID/fd/100 a process inside would read (or, for a directory,
    // walk) the host's files.
    let secret = env.dir.path().join("host-secret");
    std::fs::write(&secret, "host secret\n").unwrap();
    let f = std::fs::File::open(&secret).unwrap();
    let o = run(with_fd_100(lxcf().args(["exec", &c, "--", "sh", "-c", "ls /proc/$$/fd; cat /proc/$$/fd/100 2>/dev/null"]), &f));
    assert_eq!((o.code, o.stdout.as_str()), (1, "0\n1\n2\n"), "only stdin, stdout and stderr come in: {}", o.stderr);

    // A caller with inheritable and ambient capabilities (as setpriv or capsh give
    // them): a root exec gains the inheritable set beyond the bounding set.
    let caps = ["--inh-caps", "+sys_module,+sys_time", "--ambient-caps", "+sys_time", "--"];
    let host = run(Command::new("setpriv").args(caps).args(["grep", "^Cap", "/proc/self/status"])).ok("setpriv on the host").stdout;
    assert_ne!(hex(&host, "CapInh"), 0, "the caller has inheritable capabilities: {host}");
    assert_ne!(hex(&host, "CapAmb"), 0, "and ambient ones: {host}");
    let o = run(Command::new("setpriv").args(caps).arg(LXCF).env("LXCF_CONFIG", &env.config).args([
        "exec",
        &c,
        "--",
        "grep",
        "^Cap",
        "/proc/self/status",
    ]))
    .ok("exec under setpriv");
    let inside = o.stdout;
    assert_eq!(hex(&inside, "CapInh"), 0, "{inside}");
    assert_eq!(hex(&inside, "CapAmb"), 0, "{inside}");
    assert_eq!(hex(&inside, "CapBnd"), init_bnd, "{inside}");
    for set in ["CapPrm", "CapEff"] {
        assert_eq!(hex(&inside, set) & !init_bnd, 0, "{set} beyond the container's bounding set: {inside}");
    }

    // Signals as a shell would give them: Rust ignores SIGPIPE in lxcf itself, and
    // an ignored signal stays ignored across exec (`yes | head` would not end).
    let ign = hex(&env.lxcf(&["exec", &c, "--", "grep", "SigIgn", "/proc/self/status"]).ok("SigIgn").stdout, "SigIgn");
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE] {
        assert_eq!(ign & (1 << (sig - 1)), 0, "signal {sig} ignored in the container: {ign:x}");
    }

    // Ctrl-C at a terminal signals the whole foreground group: lxcf, and whatever it
    // forked, outlive it and pass on the command's end (130 = 128 + SIGINT).
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut p =
        lxcf().args(["exec", &c, "--", "sh", "-c", "echo ready; exec sleep 60"]).process_group(0).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(p.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: signals the process group of the child we just started.
    assert_eq!(unsafe { libc::kill(-(p.id() as i32), libc::SIGINT) }, 0);
    assert_eq!(p.wait().unwrap().code(), Some(130), "lxcf ends with the command, not before it");

    // Every process lxcf forks, read at birth: one born in the container's PID
    // namespace is already in all its other namespaces and its root, without the
    // caller's descriptors or capabilities. (Before, it entered them only after it
    // had appeared there: a process inside could ptrace it, or open
    // /proc/PID/root, which was still the host's /, in the meantime.)
    let init_ns = namespaces(init);
    let mut cmd = Command::new("setpriv");
    cmd.args(caps).arg(LXCF).env("LXCF_CONFIG", &env.config).args(["exec", &c, "--", "true"]);
    let (code, born) = births(with_fd_100(&mut cmd, &f));
    assert_eq!(code, 0, "traced exec");
    let in_container: Vec<&Birth> = born.iter().filter(|b| b.ns[0] == init_ns[0]).collect();
    assert!(
        !in_container.is_empty(),
        "no process of lxcf's was born in the container: {:?}",
        born.iter().map(|b| b.pid).collect::<Vec<_>>()
    );
    for b in in_container {
        for (kind, id) in &b.ns {
            let want = &init_ns.iter().find(|(k, _)| k == kind).unwrap().1;
            assert_eq!(id, want, "process {} was born in the container's PID namespace but not in its {kind} namespace", b.pid);
        }
        assert_eq!(b.root, root_of(init), "process {} was born with a root that is not the container's", b.pid);
        assert_eq!((hex(&b.status, "CapInh"), hex(&b.status, "CapAmb")), (0, 0), "{}", b.status);
        assert_eq!(hex(&b.status, "CapBnd"), init_bnd, "{}", b.status);
        assert_eq!(hex(&b.status, "CapPrm") & !init_bnd, 0, "born with more than the container's capabilities: {}", b.status);
        for (n, link, flags) in &b.fds {
            // stdio, and the error pipe, which closes at exec.
            let ok = *n <= 2 || (link.starts_with("pipe:") && flags & libc::O_CLOEXEC as u32 != 0);
            assert!(ok, "process {} was born holding descriptor {n} ({link}, flags {flags:o})", b.pid);
        }
    }
    env.lxcf(&["erase", &c]).ok("erase");
}
