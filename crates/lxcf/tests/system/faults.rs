//! Faults: lxcf killed with SIGKILL at every step of its commands (the crash points
//! of a debug build, `fault::crash_point`), hostile content in a root, a full disk,
//! libvirtd going away, commands racing on the same names. After each, the next
//! command repairs what it finds, and `lxcf check` finds every invariant holding.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The crash points a command passes, in order, from a run of it.
fn steps(env: &Env, args: &[&str]) -> Vec<String> {
    let file = env.dir.path().join("steps");
    let _ = std::fs::remove_file(&file);
    run(Command::new(LXCF).env("LXCF_CONFIG", &env.config).env("LXCF_TEST_STEPS", &file).args(args)).ok(&format!("{args:?}"));
    let mut out: Vec<String> = Vec::new();
    for l in std::fs::read_to_string(&file).unwrap().lines() {
        if !out.iter().any(|s| s == l) {
            out.push(l.to_string());
        }
    }
    out
}

/// Runs lxcf with `LXCF_TEST_CRASH=step`; it must die of SIGKILL there.
fn killed_at(env: &Env, step: &str, args: &[&str]) {
    let o = run(Command::new(LXCF).env("LXCF_CONFIG", &env.config).env("LXCF_TEST_CRASH", step).args(args));
    assert_eq!(o.code, -1, "{args:?} at {step} was not killed: {}", o.stderr);
}

/// `lxcf check` finds nothing.
pub fn assert_clean(env: &Env, after: &str) {
    let o = env.lxcf(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("check --json after {after}: {e}: {}", o.stderr));
    assert_eq!(v["findings"], serde_json::json!([]), "after {after}");
    assert_eq!(o.code, 0, "after {after}: {}", o.stderr);
}

/// Nothing of `name` exists: no domain, root, partial root or hosts line.
fn gone(env: &Env, name: &str) {
    assert!(!env.domains().contains(&name.to_string()), "{name}'s domain");
    assert!(!env.root.join(name).exists() && !env.root.join(format!("{name}.partial")).exists(), "{name}'s root");
    assert!(!env.hosts_text().contains(&format!("\t{name}\n")), "{name}'s hosts line");
}

#[test]
fn sysgen_clone_erase_tune_and_start_killed_at_every_step() {
    let Some(env) = Env::new() else { return };

    // sysgen: undone by the next command, whatever the step.
    let probe = env.name("probe");
    let sysgen_steps = steps(&env, &["sysgen", &probe]);
    for want in ["new:reserved", "rootfs:copied", "sysgen:built", "new:renamed", "new:defined", "new:started", "new:done"] {
        assert!(sysgen_steps.iter().any(|s| s == want), "{want} in {sysgen_steps:?}");
    }
    env.lxcf(&["erase", &probe]).ok("erase probe");
    for (i, step) in sysgen_steps.iter().enumerate() {
        let n = env.name(&format!("s{i}"));
        killed_at(&env, step, &["sysgen", &n]);
        let o = env.lxcf(&["list"]).ok("list");
        assert!(o.stderr.contains(&format!("an interrupted `lxcf sysgen {n}` was undone")), "{step}: {}", o.stderr);
        gone(&env, &n);
        assert_clean(&env, &format!("sysgen killed at {step}"));
    }

    // clone: the same, and the source is untouched.
    let src = env.name("src");
    env.lxcf(&["sysgen", &src]).ok("sysgen src");
    env.lxcf(&["stop", &src]).ok("stop src");
    let probe = env.name("cprobe");
    let clone_steps = steps(&env, &["clone", &src, &probe]);
    assert!(clone_steps.iter().any(|s| s == "clone:copied"), "{clone_steps:?}");
    env.lxcf(&["erase", &probe]).ok("erase cprobe");
    for (i, step) in clone_steps.iter().enumerate() {
        let n = env.name(&format!("c{i}"));
        killed_at(&env, step, &["clone", &src, &n]);
        let o = env.lxcf(&["list"]).ok("list");
        assert!(o.stderr.contains(&format!("an interrupted `lxcf clone {src} {n}` was undone")), "{step}: {}", o.stderr);
        gone(&env, &n);
        assert_clean(&env, &format!("clone killed at {step}"));
    }
    assert_eq!(list_json(&env).iter().map(|c| c["name"].as_str().unwrap().to_string()).collect::<Vec<_>>(), vec![src.clone()]);

    // erase: finished by the next command.
    let probe = env.name("eprobe");
    env.lxcf(&["sysgen", &probe]).ok("sysgen eprobe");
    let erase_steps = steps(&env, &["erase", &probe]);
    assert_eq!(erase_steps, ["erase:stopped", "erase:undefined", "erase:hosts", "erase:removed"]);
    for (i, step) in erase_steps.iter().enumerate() {
        let n = env.name(&format!("e{i}"));
        env.lxcf(&["sysgen", &n]).ok("sysgen");
        killed_at(&env, step, &["erase", &n]);
        let o = env.lxcf(&["list"]).ok("list");
        assert!(o.stderr.contains(&format!("an interrupted `lxcf erase {n}` was finished")), "{step}: {}", o.stderr);
        gone(&env, &n);
        assert_clean(&env, &format!("erase killed at {step}"));
    }

    // A resource change killed after the definition changed: put back, definition
    // and running container alike.
    let t = env.name("t");
    env.lxcf(&["sysgen", &t]).ok("sysgen t");
    let show = |n: &str| -> serde_json::Value { serde_json::from_str(&env.lxcf(&["show", n, "--json"]).ok("show").stdout).unwrap() };
    let before = show(&t);
    killed_at(&env, "tune:cpun", &["cpun", &t, "0"]);
    let o = env.lxcf(&["list"]).ok("list");
    assert!(o.stderr.contains(&format!("an interrupted resource change of {t} was put back")), "{}", o.stderr);
    assert_eq!(show(&t), before);
    assert_clean(&env, "cpun killed");

    // start of two, killed after the first started: each is started or not, and
    // the next start finishes the job.
    let (a, b) = (env.name("a"), env.name("b"));
    for n in [&a, &b] {
        env.lxcf(&["sysgen", n]).ok("sysgen");
        env.lxcf(&["stop", n]).ok("stop");
    }
    killed_at(&env, "start:started", &["start", &a, &b]);
    assert_clean(&env, "start killed");
    env.lxcf(&["start", &a, &b]).ok("start again");
    for n in [&a, &b] {
        assert_eq!(virsh(&["domstate", n]).stdout.trim(), "running");
    }
    assert_clean(&env, "the end");
}

/// A small host-like tree for separate roots: what the layout copies, and little of it.
fn small_source(dir: &Path) {
    for d in ["usr/bin", "usr/lib", "etc", "var/lib/pkg", "var/log", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::write(dir.join("usr/bin/prog"), "#!/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/hostname"), "src\n").unwrap();
    std::fs::write(dir.join("var/lib/pkg/status"), "installed\n").unwrap();
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
}

/// A separate root killed while it is built, copied (ext4) or snapshotted (btrfs):
/// the next command removes what was made. (The steps after the root is complete are
/// the joint model's, above.)
#[test]
fn separate_roots_killed_while_built_by_copy_and_by_snapshot() {
    let Some(env) = Env::new() else { return };
    // The copy: a small source tree beside the root.
    let src = env.dir.path().join("src");
    small_source(&src);
    let text = std::fs::read_to_string(&env.config).unwrap().replace("model=joint", "model=separate");
    std::fs::write(&env.config, text.replace("[Paths]\n", &format!("[Paths]\nsource={}\n", src.display()))).unwrap();
    for step in ["new:reserved", "rootfs:copied", "sysgen:built", "new:identity", "new:renamed"] {
        let n = env.name("sep");
        killed_at(&env, step, &["sysgen", &n]);
        let o = env.lxcf(&["list"]).ok("list");
        assert!(o.stderr.contains("was undone"), "{step}: {}", o.stderr);
        gone(&env, &n);
        assert_clean(&env, &format!("separate sysgen killed at {step}"));
    }

    // The snapshot: source and roots on one btrfs, the source a subvolume's top.
    let img = Image::new("btrfs", env.dir.path().join("btrfs.img"), &env.dir.path().join("img"));
    run(Command::new("btrfs").args(["-q", "subvolume", "create"]).arg(img.mnt.join("src"))).ok("subvolume");
    small_source(&img.mnt.join("src"));
    let conf = env.dir.path().join("btrfs.conf");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text
        .lines()
        .map(|l| match l.split_once('=') {
            Some(("root", _)) => format!("root={}", img.mnt.join("lxc").display()),
            Some(("source", _)) => format!("source={}", img.mnt.join("src").display()),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, text + "\n").unwrap();
    let lx = |args: &[&str], crash: Option<&str>| {
        let mut c = Command::new(LXCF);
        c.env("LXCF_CONFIG", &conf).args(args);
        if let Some(s) = crash {
            c.env("LXCF_TEST_CRASH", s);
        }
        run(&mut c)
    };
    for step in ["new:reserved", "rootfs:snapshot", "rootfs:copied", "new:identity", "new:renamed"] {
        let n = env.name("snap");
        assert_eq!(lx(&["sysgen", &n], Some(step)).code, -1, "{step}");
        assert!(lx(&["list"], None).stderr.contains("was undone"), "{step}");
        assert!(!img.mnt.join("lxc").join(&n).exists() && !img.mnt.join("lxc").join(format!("{n}.partial")).exists());
        let o = lx(&["check", "--json"], None);
        assert_eq!(o.code, 0, "snapshot killed at {step}: {}", o.stdout);
    }
    // No subvolume is left but the source.
    let subs = run(Command::new("btrfs").args(["subvolume", "list", "-o"]).arg(&img.mnt)).ok("list").stdout;
    assert_eq!(subs.lines().count(), 1, "{subs}");
}

/// Erase removes the root and nothing else, whatever the container put in it or
/// someone mounted there: immutable and append-only files (chattr, which root in a
/// privileged container may use; an unprivileged one lacks linux_immutable), a
/// host directory bind-mounted into the stopped root.
#[test]
fn erase_leaves_the_host_alone_whatever_the_root_holds() {
    let Some(env) = Env::new() else { return };
    let h = env.name("h");
    env.lxcf(&["sysgen", "--privileged", &h]).ok("sysgen");
    env.assert_running(&h);
    env.exec(
        &h,
        &[
            "/bin/sh",
            "-c",
            "echo x > /etc/lxcf-i && chattr +i /etc/lxcf-i && mkdir /var/lxcf-a && touch /var/lxcf-a/f && chattr +a /var/lxcf-a",
        ],
    )
    .ok("chattr inside");
    env.lxcf(&["stop", &h]).ok("stop");
    let host = env.dir.path().join("hostdata");
    std::fs::create_dir_all(host.join("deep")).unwrap();
    std::fs::write(host.join("keep"), "the host's").unwrap();
    std::fs::write(host.join("deep/keep"), "the host's too").unwrap();
    let mnt = env.root.join(&h).join("mnt");
    run(Command::new("mount").arg("--bind").arg(&host).arg(&mnt)).ok("bind");
    let unmount = scopeguard(|| {
        run(Command::new("umount").arg("-l").arg(&mnt));
    });
    env.lxcf(&["erase", &h]).ok("erase");
    drop(unmount);
    assert_eq!(std::fs::read_to_string(host.join("keep")).unwrap(), "the host's");
    assert_eq!(std::fs::read_to_string(host.join("deep/keep")).unwrap(), "the host's too");
    gone(&env, &h);
    assert_clean(&env, "erase");

    // A directory in the root that lxcf did not make is not erased.
    let other = env.root.join(env.name("other"));
    std::fs::create_dir_all(other.join("data")).unwrap();
    let o = env.lxcf(&["erase", &env.name("other")]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(o.stderr.contains("was not made by lxcf"), "{}", o.stderr);
    assert!(other.join("data").is_dir());
}

/// Runs `f` when dropped, also when the test fails.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct G<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for G<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    G(Some(f))
}

/// Bytes free on the filesystem of `p`.
fn free(p: &Path) -> u64 {
    let s = rustix::fs::statvfs(p).unwrap();
    s.f_bavail * s.f_frsize
}

/// Fills the filesystem of `dir` so that `left` bytes stay free; the filler goes
/// when the returned guard is dropped.
fn fill(dir: &Path, left: u64) -> impl Drop {
    let f = dir.join(".lxcf-test-filler");
    let size = free(dir).saturating_sub(left);
    run(Command::new("fallocate").arg("-l").arg(size.to_string()).arg(&f)).ok("fallocate");
    scopeguard(move || {
        let _ = std::fs::remove_file(&f);
    })
}

/// The roots' filesystem full during sysgen, clone and update: a clear error,
/// nothing left behind, and the next command works once there is room.
#[test]
fn a_full_disk_changes_nothing() {
    let Some(env) = Env::with(Opts { storage: Some("ext4"), size: "600M", ..Opts::default() }) else { return };
    let a = env.name("a");
    let before = env.snapshot();
    let room = fill(&env.root, 30 << 20);
    let o = env.lxcf(&["sysgen", &a]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("No space left on device"), "{}", o.stderr);
    crate::bad_input::one_line(&o);
    assert_eq!(env.snapshot(), before);
    assert_clean(&env, "sysgen on a full disk");
    drop(room);
    env.lxcf(&["sysgen", &a]).ok("sysgen with room");

    env.lxcf(&["stop", &a]).ok("stop");
    let b = env.name("b");
    let before = env.snapshot();
    let room = fill(&env.root, 30 << 20);
    let o = env.lxcf(&["clone", &a, &b]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("No space left on device"), "{}", o.stderr);
    assert_eq!(env.snapshot(), before);
    assert_clean(&env, "clone on a full disk");

    // update: the command's writes fill the disk; rolled back.
    let big = "head -c 100000000 /dev/zero > /var/lxcf-big";
    let o = env.lxcf(&["update", "--to", &a, "--", "sh", "-c", big]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(!env.root.join(&a).join("var/lxcf-big").exists());
    assert_eq!(env.snapshot(), before);
    assert_clean(&env, "update on a full disk");
    drop(room);
    env.lxcf(&["clone", &a, &b]).ok("clone with room");
    env.lxcf(&["update", "--to", &a, "--", "sh", "-c", "echo ok > /var/lxcf-small"]).ok("update with room");
    assert!(env.root.join(&a).join("var/lxcf-small").exists());
    assert_clean(&env, "the end");
}

/// libvirtd stopped while containers run and in the middle of a sysgen: the
/// containers keep running, lxcf says libvirtd is unreachable (exit 6, the hint),
/// and once it is back the half-made container is undone and everything works.
#[test]
fn libvirtd_going_away_loses_nothing() {
    let Some(env) = Env::with(Opts { alone: true, ..Opts::default() }) else { return };
    let a = env.name("a");
    env.lxcf(&["sysgen", &a]).ok("sysgen");
    env.assert_running(&a);
    let init = init_pid(&a);

    // What libvirt 9.0 was seen to leave after a live change raced a stop: the
    // status file of a stopped transient domain, which a restarted libvirtd loads
    // as a domain nothing can start, undefine or read the metadata of.
    let z = env.name("z");
    env.lxcf(&["sysgen", &z]).ok("sysgen z");
    let status = Path::new("/run/libvirt/lxc").join(format!("{z}.xml"));
    let stale = std::fs::read_to_string(&status).unwrap();
    let at = stale.find("<domstatus ").unwrap();
    let end = at + stale[at..].find('>').unwrap() + 1;
    let stale = format!("{}<domstatus state='shutoff' reason='destroyed' pid='0'>{}", &stale[..at], &stale[end..]);
    env.lxcf(&["erase", &z]).ok("erase z");
    let _planted = scopeguard({
        let status = status.clone();
        move || drop(std::fs::remove_file(status))
    });
    std::fs::write(&status, stale).unwrap();

    // Paused after its domain was defined; libvirtd goes away; then it goes on.
    let b = env.name("b");
    let pause = env.dir.path().join("paused");
    let child = Command::new(LXCF)
        .env("LXCF_CONFIG", &env.config)
        .env("LXCF_TEST_PAUSE", format!("new:defined:{}", pause.display()))
        .args(["sysgen", &b])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    while !pause.exists() {
        // Fail, rather than hang, should it finish without pausing.
        if let Some(status) = child.try_wait().unwrap() {
            panic!("sysgen did not pause at new:defined: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let restart = scopeguard(start_libvirtd);
    stop_libvirtd();
    std::fs::remove_file(&pause).unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("hint: is libvirtd running?"), "{stderr}");

    let o = env.lxcf(&["list"]);
    assert_eq!(o.code, 6, "{}", o.stderr);
    assert!(o.stderr.contains("cannot connect to libvirt"), "{}", o.stderr);
    assert!(Path::new(&format!("/proc/{init}")).exists(), "{a} keeps running without libvirtd");

    drop(restart);
    let o = env.lxcf(&["list"]).ok("list");
    assert!(o.stderr.contains(&format!("an interrupted `lxcf sysgen {b}` was undone")), "{}", o.stderr);
    gone(&env, &b);
    assert_eq!(init_pid(&a), init, "{a} was not restarted");
    assert_eq!(virsh(&["domstate", &a]).stdout.trim(), "running");
    // The stale domain neither breaks the listing above nor holds its name.
    assert!(!env.domains().contains(&z), "{z}'s stale domain is still listed");
    env.lxcf(&["sysgen", &z]).ok("sysgen z again");
    env.lxcf(&["erase", &z]).ok("erase z again");
    env.lxcf(&["sysgen", &b]).ok("sysgen b");
    assert_clean(&env, "libvirtd back");
}

fn stop_libvirtd() {
    let pid = run(Command::new("pgrep").args(["-xo", "libvirtd"])).ok("pgrep libvirtd").stdout.trim().to_string();
    run(Command::new("kill").arg(&pid)).ok("kill libvirtd");
    while Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// As the test machine starts it: scripts/setup-host (its quirks included).
fn start_libvirtd() {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup-host");
    run(&mut Command::new(setup)).ok("setup-host");
}

/// Several processes run sysgen, clone, start, stop, erase and resource changes on
/// the same few names at once, for a fixed number of commands each (a fixed seed):
/// whatever each command's fate, no invariant breaks and no transient domain is left.
#[test]
fn commands_racing_on_the_same_names_lose_nothing() {
    let Some(env) = Env::new() else { return };
    let names: Vec<String> = (1..=3).map(|i| env.name(&format!("r{i}"))).collect();
    let workers: Vec<_> = (0..3u64)
        .map(|w| {
            let (config, names) = (env.config.clone(), names.clone());
            std::thread::spawn(move || {
                let mut seed = 0x9e3779b97f4a7c15u64 ^ (w + 1);
                let mut next = |n: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % n
                };
                for _ in 0..12 {
                    let n = &names[next(names.len() as u64) as usize];
                    let other = &names[next(names.len() as u64) as usize];
                    let args: Vec<&str> = match next(7) {
                        0 | 1 => vec!["sysgen", n],
                        2 => vec!["erase", n],
                        3 => vec!["start", n],
                        4 => vec!["stop", n],
                        5 => vec!["clone", other, n],
                        _ => vec!["cpurate", n, "50"],
                    };
                    // Any outcome is allowed (taken, busy, not found...): only what
                    // is left afterwards is checked.
                    run(Command::new(LXCF).env("LXCF_CONFIG", &config).args(&args));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_clean(&env, "the race");
    for n in &names {
        if let Some(c) = list_json(&env).into_iter().find(|c| c["name"] == n.as_str()) {
            assert!(env.root.join(n).is_dir(), "{n} has its root");
            assert!(env.hosts_text().contains(&format!("{}\t{n}\n", c["ip"].as_str().unwrap())), "{n}'s hosts line");
        } else {
            gone(&env, n);
        }
    }
    let transient = virsh(&["list", "--all", "--transient", "--name"]).stdout;
    assert!(!transient.lines().any(|l| l.starts_with(&env.prefix)), "{transient}");
}
