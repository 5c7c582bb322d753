//! lxcfs's view (issue 12): inside a container, `free`, `top`, `uptime`, /proc/cpuinfo
//! and /sys/devices/system/cpu tell the container's limits, not the host's. Without
//! lxcfs's files, each check here sees the host (24 GiB, 2 CPUs, its uptime).
//!
//! The readers run through `lxcf exec`, which puts them in the container's cgroups:
//! lxcfs answers for the cgroups of the process that reads.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::faults::assert_clean;

const LXCFS: &str = "/var/lib/lxcfs";

/// Whether lxcfs serves its files here (under `CI=true` it must: setup-host starts it).
fn lxcfs_ready() -> bool {
    if std::fs::metadata(Path::new(LXCFS).join("proc/meminfo")).is_ok() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("lxcfs is not running: scripts/setup-host starts it");
    }
    eprintln!("skipped: lxcfs is not running (scripts/start-lxcfs)");
    false
}

fn inside(env: &Env, name: &str, script: &str) -> String {
    env.lxcf(&["exec", name, "--", "/bin/sh", "-c", script]).ok(script).stdout
}

/// `free -b`'s total memory and swap.
fn free(env: &Env, name: &str) -> (u64, u64) {
    let out = inside(env, name, "free -b");
    let field = |row: &str| -> u64 {
        let l = out.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row} in {out}"));
        l.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("Mem:"), field("Swap:"))
}

fn view(env: &Env, name: &str) -> serde_json::Value {
    let o = env.lxcf(&["show", name, "--json"]).ok("show --json");
    serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["lxcfs"].clone()
}

/// Host swap for the time of a test: lxcfs shows a container no more swap than the
/// host has (none on a fresh machine).
struct Swap(std::path::PathBuf);

impl Swap {
    fn on(path: std::path::PathBuf) -> Swap {
        run(Command::new("fallocate").args(["-l", "1G"]).arg(&path)).ok("fallocate");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        run(Command::new("mkswap").arg(&path)).ok("mkswap");
        run(Command::new("swapon").arg(&path)).ok("swapon");
        Swap(path)
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.0).status();
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_container_sees_its_own_memory_cpus_and_uptime() {
    let Some(env) = Env::new() else { return };
    if !lxcfs_ready() {
        return;
    }
    let t0 = Instant::now();
    let (u, p) = (env.name("u"), env.name("p"));
    env.lxcf(&["sysgen", &u]).ok("sysgen");
    env.lxcf(&["sysgen", "--privileged", &p]).ok("sysgen --privileged");
    for c in [&u, &p] {
        assert_eq!(view(&env, c), "on", "{c}");
        env.lxcf(&["memlimit", c, "512M"]).ok("memlimit");
        assert_eq!(free(&env, c).0, 512 << 20, "{c}: free's total is its memlimit");
    }
    let listed = list_json(&env);
    assert!(listed.iter().all(|c| c["lxcfs"] == "on"), "{listed:?}");

    // uptime: its own, not the host's.
    let up = |text: &str| -> f64 { text.split_whitespace().next().unwrap().parse().unwrap() };
    let age = t0.elapsed().as_secs_f64();
    let own = up(&inside(&env, &u, "cat /proc/uptime"));
    let host = up(&std::fs::read_to_string("/proc/uptime").unwrap());
    assert!(own <= age + 5.0, "container uptime {own} s, made {age} s ago");
    assert!(host > age + 5.0, "the host ({host} s) must be older than the container for this check to mean anything");
    for cmd in ["top -bn1", "vmstat", "ps aux", "uptime"] {
        inside(&env, &u, cmd);
    }

    // A live change shows at once, without a restart.
    env.lxcf(&["memlimit", &u, "256M"]).ok("memlimit live");
    assert_eq!(free(&env, &u).0, 256 << 20);

    // CPUs: the cpuset (nproc follows it through the affinity mask), and the CFS
    // quota: at cpurate 50 on a 2-CPU host, one CPU's worth.
    let ncpu = std::fs::read_to_string("/proc/cpuinfo").unwrap().lines().filter(|l| l.starts_with("processor")).count();
    if ncpu >= 2 {
        env.lxcf(&["cpun", &u, "0"]).ok("cpun 0");
        assert_eq!(inside(&env, &u, "nproc").trim(), "1");
        assert_eq!(inside(&env, &u, "grep -c ^processor /proc/cpuinfo").trim(), "1");
        env.lxcf(&["cpun", &u, "all"]).ok("cpun all");
        assert_eq!(inside(&env, &u, "grep -c ^processor /proc/cpuinfo").trim(), ncpu.to_string());
        env.lxcf(&["cpurate", &u, &(100 / ncpu).to_string()]).ok("cpurate: one CPU's worth");
        assert_eq!(inside(&env, &u, "getconf _NPROCESSORS_ONLN").trim(), "1");
        assert_eq!(inside(&env, &u, "grep -c ^processor /proc/cpuinfo").trim(), "1");
        assert_eq!(inside(&env, &u, "cat /sys/devices/system/cpu/online").trim(), "0");
    }

    // Swap: lxcfs shows memswlimit, at most the host's swap.
    let _swap = Swap::on(env.dir.path().join("swap"));
    env.lxcf(&["memswlimit", &u, "600M"]).ok("memswlimit");
    assert_eq!(free(&env, &u).1, 600 << 20, "SwapTotal follows memswlimit");
    env.lxcf(&["memswlimit", &u, "700M"]).ok("memswlimit live");
    assert_eq!(free(&env, &u).1, 700 << 20);

    // The mounts live in the containers' namespaces only: none on the host, none
    // left when they stop.
    let host_lxcfs = || std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(" - fuse.lxcfs ")).count();
    assert_eq!(host_lxcfs(), 1, "only lxcfs's own mount on the host");
    env.lxcf(&["erase", &u, &p]).ok("erase");
    assert_eq!(host_lxcfs(), 1);
    assert_clean(&env, "erasing containers with lxcfs's view");
}

/// Starts lxcfs again however the test ends: the host's containers need it.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/start-lxcfs");
        let _ = Command::new(script).env("LXCF", LXCF).status();
    }
}

/// Kills the lxcfs serving /var/lib/lxcfs (the one setup-host started) and waits
/// until its files fail.
fn kill_lxcfs() {
    let pids = run(Command::new("pgrep").args(["-x", "-f", "(/usr/bin/)?lxcfs .*/var/lib/lxcfs"])).stdout;
    let pids: Vec<i32> = pids.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert!(!pids.is_empty(), "no lxcfs process");
    for pid in pids {
        let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), rustix::process::Signal::KILL);
    }
    let until = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(Path::new(LXCFS).join("proc/meminfo")).is_ok() {
        assert!(Instant::now() < until, "lxcfs still answers after SIGKILL");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lxcfs_killed_and_started_again() {
    // Alone: every running container on the host loses lxcfs's view meanwhile.
    let Some(env) = Env::with(Opts { alone: true, ..Opts::default() }) else { return };
    if !lxcfs_ready() {
        return;
    }
    let (a, b) = (env.name("a"), env.name("b"));
    env.lxcf(&["sysgen", &a, &b]).ok("sysgen");
    env.lxcf(&["memlimit", &a, "300M"]).ok("memlimit");
    env.lxcf(&["stop", &b]).ok("stop b");

    let restart = Restart;
    kill_lxcfs();
    let o = env.lxcf(&["exec", &a, "--", "free", "-b"]);
    assert_ne!(o.code, 0, "free reads a dead lxcfs: {}", o.stdout);
    assert_eq!(view(&env, &a), "stale");
    let o = env.lxcf(&["check", "--json"]);
    assert_ne!(o.code, 0, "check finds the stale view");
    assert!(o.stdout.contains("\"lxcfs-view\"") && o.stdout.contains(&a), "{}", o.stdout);
    // A start without lxcfs: the container runs, the user is told why it has no view.
    let o = env.lxcf(&["start", &b]).ok("start without lxcfs");
    assert!(o.stderr.contains("lxcfs is not running") && o.stderr.contains("lxcf lxcfs"), "{}", o.stderr);
    assert_eq!(view(&env, &b), "off");
    let o = env.lxcf(&["lxcfs", &a]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("lxcfs is not running"), "{}", o.stderr);

    // lxcfs back (its start script rebinds every running container).
    drop(restart);
    assert_eq!(free(&env, &a).0, 300 << 20, "free works again, with no restart");
    assert_eq!(view(&env, &a), "on");
    assert_eq!(view(&env, &b), "on");
    env.lxcf(&["erase", &a, &b]).ok("erase");
    assert_clean(&env, "lxcfs's restart");
}
