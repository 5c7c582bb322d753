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
