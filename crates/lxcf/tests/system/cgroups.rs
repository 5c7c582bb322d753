//! Each container in cgroups of its own in every hierarchy, its services too, as the
//! kernel shows it: /proc/PID/cgroup on the host, the container's own view through
//! util-linux's nsenter, and the cgroup files that hold its limits.
//!
//! The paths read are those of this project's machines: cgroup v1 ("hybrid") with
//! the hierarchies under /sys/fs/cgroup, and no systemd-machined.

use std::path::Path;

use crate::common::*;

/// `(controllers, path)` for each line of a /proc/PID/cgroup.
fn cgroups(pid: u32) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    parse(&text)
}

fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let mut f = l.splitn(3, ':');
            let _ = f.next();
            (f.next().unwrap().to_string(), f.next().unwrap().to_string())
        })
        .collect()
}

fn path_of(cg: &[(String, String)], ctrl: &str) -> String {
    cg.iter().find(|(c, _)| c.split(',').any(|c| c == ctrl)).unwrap_or_else(|| panic!("no {ctrl} in {cg:?}")).1.clone()
}

/// `path` is `dir` or below it.
fn within(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}")).trim().to_string()
}

#[test]
fn a_container_and_its_services_stay_in_cgroups_of_its_own() {
    let Some(env) = Env::new() else { return };
    let c = env.name("cg");
    env.lxcf(&["sysgen", &c, "--memlimit", "512M"]).ok("sysgen");
    env.assert_running(&c);

    // libvirt's cgroup for the container (its controller's, in cpu), and lxcf's for
    // the hierarchies libvirt leaves alone.
    let id: u32 = virsh(&["domid", &c]).ok("domid").stdout.trim().parse().unwrap();
    let base = path_of(&cgroups(id), "cpu");
    assert!(base.ends_with(&format!("-{c}.libvirt-lxc")), "{base}");
    let ours = format!("/lxcf/{c}");

    let init = init_pid(&c);
    let journald = run(std::process::Command::new("pgrep").args(["--ns", &init.to_string(), "--nslist", "pid", "-x", "systemd-journal"]))
        .ok("pgrep")
        .stdout
        .trim()
        .parse::<u32>()
        .expect("one journald in the container");
    let service = "/system.slice/systemd-journald.service";
    for (pid, what) in [(init, "init"), (journald, "journald")] {
        for (ctrl, path) in cgroups(pid) {
            assert!(within(&path, &base) || within(&path, &ours), "{what} in {ctrl} cgroup {path}, outside {base} and {ours}");
        }
    }
    // systemd made its units below the container's cgroups, not at the host's roots.
    let j = cgroups(journald);
    assert_eq!(path_of(&j, "memory"), format!("{base}{service}"));
    assert_eq!(path_of(&j, "devices"), format!("{base}{service}"));
    assert_eq!(path_of(&j, "name=systemd"), format!("{ours}{service}"));
    assert_eq!(path_of(&j, "pids"), format!("{ours}{service}"));
    assert!(!Path::new("/sys/fs/cgroup/memory").join(service.trim_start_matches('/')).exists() || is_host_systemd());

    // The limit is on the container's cgroup, above its services: they count in it.
    assert_eq!(read(&format!("/sys/fs/cgroup/memory{base}/memory.limit_in_bytes")), (512u64 << 20).to_string());
    let used: u64 = read(&format!("/sys/fs/cgroup/memory{base}/memory.usage_in_bytes")).parse().unwrap();
    let by_journald: u64 = read(&format!("/sys/fs/cgroup/memory{base}{service}/memory.usage_in_bytes")).parse().unwrap();
    assert!(by_journald > 0 && used >= by_journald, "container {used}, journald {by_journald}");
    // libvirt's device rules hold for the services too (v1 devices cgroups inherit).
    let devices = read(&format!("/sys/fs/cgroup/devices{base}{service}/devices.list"));
    assert!(!devices.contains("a *:* rwm") && devices.contains("c 1:3 rwm"), "{devices}");

    // Inside, through its cgroup namespace, the container's cgroups are the roots.
    let inside = run(std::process::Command::new("nsenter").args(["-t", &init.to_string(), "-C", "cat", &format!("/proc/{init}/cgroup")]))
        .ok("nsenter")
        .stdout;
    for (ctrl, path) in parse(&inside) {
        assert!(path == "/" || path == "/init.scope", "inside, init is in {ctrl} cgroup {path}:\n{inside}");
    }
    // A command run with `lxcf exec` joins them at that root.
    let exec = env.lxcf(&["exec", &c, "cat", "/proc/self/cgroup"]).ok("exec").stdout;
    for (ctrl, path) in parse(&exec) {
        assert_eq!(path, "/", "exec'd command in {ctrl}:\n{exec}");
    }

    // A restart finds lxcf's cgroups still there and boots into them again.
    env.lxcf(&["stop", &c]).ok("stop");
    assert!(Path::new(&format!("/sys/fs/cgroup/pids{ours}")).is_dir());
    env.lxcf(&["start", &c]).ok("start");
    env.assert_running(&c);
    assert_eq!(path_of(&cgroups(init_pid(&c)), "pids"), format!("{ours}/init.scope"));

    // Erasing the container removes them, in every hierarchy.
    env.lxcf(&["erase", &c]).ok("erase");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap() {
        let dir = h.unwrap().path().join(ours.trim_start_matches('/'));
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

/// With systemd as the host's PID 1 its own units are at the roots.
fn is_host_systemd() -> bool {
    read("/proc/1/comm") == "systemd"
}
