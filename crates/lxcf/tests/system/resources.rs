//! Resource control on running containers, checked where it takes effect: the
//! container's cgroup files, `tc`, /proc inside, and libvirt's definition (virsh).
//!
//! The cgroup checks read v1 files (cpu.cfs_quota_us, memory.limit_in_bytes, ...),
//! the layout of this project's machines (hybrid hosts count as v1).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::bad_input::one_line;
use crate::common::*;

/// The container's cgroup, found the way the kernel tells: /proc/PID/cgroup of its
/// libvirt_lxc controller (the domain id).
struct Cg {
    pid: u32,
}

impl Cg {
    fn of(name: &str) -> Cg {
        assert!(
            !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            "these checks read cgroup v1 files; this host has cgroup v2"
        );
        let id = virsh(&["domid", name]).ok("domid").stdout.trim().parse().expect("a running domain has an id");
        Cg { pid: id }
    }

    fn path(&self, ctrl: &str, file: &str) -> PathBuf {
        let text = std::fs::read_to_string(format!("/proc/{}/cgroup", self.pid)).unwrap();
        let line = text
            .lines()
            .find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == ctrl)))
            .unwrap_or_else(|| panic!("no {ctrl} cgroup in {text}"));
        let rel = line.splitn(3, ':').nth(2).unwrap().trim_start_matches('/');
        PathBuf::from("/sys/fs/cgroup").join(ctrl).join(rel).join(file)
    }

    fn read(&self, ctrl: &str, file: &str) -> String {
        let p = self.path(ctrl, file);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
    }

    fn num(&self, ctrl: &str, file: &str) -> i128 {
        self.read(ctrl, file).parse().unwrap()
    }

    /// The container's init (the controller's child), as the host sees it.
    fn init(&self) -> u32 {
        let c = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid)).unwrap();
        c.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// The CPUs init may run on, as the scheduler has them.
    fn init_cpus(&self) -> String {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.init())).unwrap();
        s.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string()
    }
}

fn host_cpus() -> (String, u64) {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap().trim().to_string();
    let n = online
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
            None => 1,
        })
        .sum();
    (online, n)
}

/// `MAJ:MIN` of the whole disk holding `/` (what blkio throttles name).
fn root_disk() -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    let (maj, min) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    assert_ne!(maj, 0, "the block I/O checks need / on a block device");
    let dir = std::fs::canonicalize(format!("/sys/dev/block/{maj}:{min}")).unwrap();
    let disk = if dir.join("partition").exists() { dir.parent().unwrap().to_path_buf() } else { dir };
    std::fs::read_to_string(disk.join("dev")).unwrap().trim().to_string()
}

/// The rate (bytes/s) of the root tbf qdisc in `tc qdisc show` output, if any.
fn tbf(tc_output: &str) -> Option<u64> {
    let line = tc_output.lines().find(|l| l.starts_with("qdisc tbf ") && l.contains(" root "))?;
    let rate = line.split_whitespace().skip_while(|w| *w != "rate").nth(1)?;
    // tc prints bits per second: 8388Kbit, 16Mbit.
    let (num, mult) = match rate.strip_suffix("bit").unwrap() {
        r if r.ends_with('K') => (&r[..r.len() - 1], 1_000f64),
        r if r.ends_with('M') => (&r[..r.len() - 1], 1_000_000f64),
        r if r.ends_with('G') => (&r[..r.len() - 1], 1_000_000_000f64),
        r => (r, 1f64),
    };
    Some((num.parse::<f64>().unwrap() * mult / 8.0).round() as u64)
}

/// The tbf rates on the host end of the veth and on eth0 inside, by tools we did not write.
fn tc_rates(env: &Env, name: &str) -> (Option<u64>, Option<u64>) {
    let iflist = virsh(&["domiflist", name]).ok("domiflist").stdout;
    let veth = iflist.lines().find_map(|l| l.split_whitespace().next()).expect("an interface");
    let host = run(std::process::Command::new("tc").args(["qdisc", "show", "dev", veth])).ok("tc").stdout;
    let inside = env.exec(name, &["/sbin/tc", "qdisc", "show", "dev", "eth0"]).ok("tc inside").stdout;
    (tbf(&host), tbf(&inside))
}

/// Within 2 % (tc prints rates rounded).
fn near(got: Option<u64>, want: u64) -> bool {
    got.is_some_and(|g| (g as f64 - want as f64).abs() <= want as f64 * 0.02)
}

fn set(env: &Env, args: &[&str]) {
    let o = env.lxcf(args).ok(&args.join(" "));
    assert!(o.stderr.contains("now and at every start"), "{args:?}: {}", o.stderr);
}

fn inactive_xml(name: &str) -> String {
    virsh(&["dumpxml", "--inactive", name]).ok("dumpxml").stdout
}

fn show_json(env: &Env, name: &str) -> String {
    env.lxcf(&["show", name, "--json"]).ok("show --json").stdout
}

#[test]
fn every_setting_live_kept_and_removed() {
    let Some(env) = Env::new() else { return };
    let c = env.name("tune");
    let (online, ncpus) = host_cpus();
    let disk = root_disk();
    let g = |n: i128| n << 30;

    // At creation: in the definition before the first start.
    env.lxcf(&["sysgen", &c, "--cpurate", "30", "--memlimit", "1G", "--memswlimit", "2G", "--net_in", "1M"]).ok("sysgen");
    let cg = Cg::of(&c);
    assert_eq!(cg.num("cpu", "cpu.cfs_quota_us"), 100_000 * ncpus as i128 * 30 / 100);
    assert_eq!(cg.num("cpu", "cpu.cfs_period_us"), 100_000);
    assert_eq!(cg.num("memory", "memory.limit_in_bytes"), g(1));
    assert_eq!(cg.num("memory", "memory.memsw.limit_in_bytes"), g(2));
    assert!(near(tc_rates(&env, &c).0, 1 << 20), "{:?}", tc_rates(&env, &c));
    let sched = virsh(&["schedinfo", &c]).ok("schedinfo").stdout;
    assert!(sched.contains(&format!("vcpu_quota     : {}", 30_000 * ncpus)), "{sched}");
    assert!(virsh(&["memtune", &c]).stdout.contains("hard_limit     : 1048576"));
    // The container sees its limit as its memory (libvirt's FUSE /proc/meminfo).
    env.assert_running(&c);
    let meminfo = env.exec(&c, &["/bin/grep", "MemTotal", "/proc/meminfo"]).ok("meminfo").stdout;
    assert_eq!(meminfo.split_whitespace().nth(1), Some("1048576"), "{meminfo}");

    // Live, one command at a time, each visible in the kernel at once.
    set(&env, &["cpun", &c, "0"]);
    assert_eq!(cg.read("cpuset", "cpuset.cpus"), "0");
    assert_eq!(cg.init_cpus(), "0");
    set(&env, &["cpurate", &c, "50"]);
    assert_eq!(cg.num("cpu", "cpu.cfs_quota_us"), 50_000 * ncpus as i128);
    set(&env, &["numa", &c, "0"]);
    assert_eq!(cg.read("cpuset", "cpuset.mems"), "0");
    set(&env, &["memlimit", &c, "512M"]);
    assert_eq!(cg.num("memory", "memory.limit_in_bytes"), 512 << 20);
    let meminfo = env.exec(&c, &["/bin/grep", "MemTotal", "/proc/meminfo"]).ok("meminfo").stdout;
    assert_eq!(meminfo.split_whitespace().nth(1), Some("524288"), "{meminfo}");
    set(&env, &["memswlimit", &c, "1.5G"]);
    assert_eq!(cg.num("memory", "memory.memsw.limit_in_bytes"), 1610612736);
    set(&env, &["blkio_r", &c, "/", "10M"]);
    set(&env, &["blkio_w", &c, "/usr", "5M"]);
    set(&env, &["blkioops_r", &c, "/", "300"]);
    set(&env, &["blkioops_w", &c, "/", "200"]);
    let throttles = [
        ("blkio.throttle.read_bps_device", 10 << 20),
        ("blkio.throttle.write_bps_device", 5 << 20),
        ("blkio.throttle.read_iops_device", 300),
        ("blkio.throttle.write_iops_device", 200),
    ];
    for (f, v) in throttles {
        assert_eq!(cg.read("blkio", f), format!("{disk} {v}"), "{f}");
    }
    // libvirt's live view agrees (lxcf goes through it for these).
    let bt = virsh(&["blkiotune", &c, "--live"]).ok("blkiotune").stdout;
    let line = |k: &str| bt.lines().find(|l| l.starts_with(k)).unwrap_or_default().to_string();
    assert!(line("device_read_bytes_sec").ends_with(",10485760"), "{bt}");
    assert!(line("device_write_iops_sec").ends_with(",200"), "{bt}");
    set(&env, &["net_in", &c, "2M"]);
    set(&env, &["net_out", &c, "500K"]);
    let (i, o) = tc_rates(&env, &c);
    assert!(near(i, 2 << 20) && near(o, 500 << 10), "{i:?} {o:?}");

    // libvirt's definition holds them: kept for the next start.
    let x = inactive_xml(&c);
    for want in [
        "cpuset='0'",
        "<quota>",
        "<memory mode='strict' nodeset='0'/>",
        "<hard_limit unit='KiB'>524288</hard_limit>",
        "<swap_hard_limit unit='KiB'>1572864</swap_hard_limit>",
        "<read_bytes_sec>10485760</read_bytes_sec>",
        "<write_iops_sec>200</write_iops_sec>",
        "<lxcfres:net_in>2097152</lxcfres:net_in>",
    ] {
        assert!(x.contains(want), "{want} not in {x}");
    }

    // Kept across stop and start: the same values in effect.
    let before = show_json(&env, &c);
    env.lxcf(&["stop", &c]).ok("stop");
    env.lxcf(&["start", &c]).ok("start");
    let cg = Cg::of(&c);
    assert_eq!(show_json(&env, &c), before);
    assert_eq!(cg.read("cpuset", "cpuset.cpus"), "0");
    assert_eq!(cg.num("cpu", "cpu.cfs_quota_us"), 50_000 * ncpus as i128);
    assert_eq!(cg.num("memory", "memory.limit_in_bytes"), 512 << 20);
    assert_eq!(cg.num("memory", "memory.memsw.limit_in_bytes"), 1610612736);
    for (f, v) in throttles {
        assert_eq!(cg.read("blkio", f), format!("{disk} {v}"), "{f} after restart");
    }
    let (i, o) = tc_rates(&env, &c);
    assert!(near(i, 2 << 20) && near(o, 500 << 10), "after restart: {i:?} {o:?}");

    // Every limit removed, live.
    set(&env, &["cpun", &c, "all"]);
    assert_eq!(cg.read("cpuset", "cpuset.cpus"), online);
    // It started bound to CPU 0: the tasks' own affinity widens too.
    assert_eq!(cg.init_cpus(), online);
    set(&env, &["cpurate", &c, "100"]);
    assert_eq!(cg.num("cpu", "cpu.cfs_quota_us"), -1);
    set(&env, &["numa", &c, "all"]);
    set(&env, &["memswlimit", &c, "unlimited"]);
    set(&env, &["memlimit", &c, "unlimited"]);
    assert!(cg.num("memory", "memory.limit_in_bytes") > 1 << 62);
    assert!(cg.num("memory", "memory.memsw.limit_in_bytes") > 1 << 62);
    set(&env, &["blkio_r", &c, "/", "0"]);
    set(&env, &["blkio_w", &c, "/", "unlimited"]);
    set(&env, &["blkioops_r", &c, "/", "0"]);
    set(&env, &["blkioops_w", &c, "/", "unlimited"]);
    for (f, _) in throttles {
        assert_eq!(cg.read("blkio", f), "", "{f}");
    }
    set(&env, &["net_in", &c, "0"]);
    set(&env, &["net_out", &c, "unlimited"]);
    assert_eq!(tc_rates(&env, &c), (None, None));

    // ... and for later starts: gone from the definition.
    let x = inactive_xml(&c);
    for gone in ["cpuset=", "numatune", "hard_limit", "<device>"] {
        assert!(!x.contains(gone), "{gone} still in {x}");
    }
    assert!(!x.contains("<quota>") || x.contains("<quota>-1</quota>"), "a quota is left in {x}");
    env.lxcf(&["stop", &c]).ok("stop");
    env.lxcf(&["start", &c]).ok("start");
    let cg = Cg::of(&c);
    assert_eq!(cg.num("cpu", "cpu.cfs_quota_us"), -1);
    assert_eq!(cg.read("cpuset", "cpuset.cpus"), online);
    // No memlimit: libvirt-LXC sets <memory>, which lxcf makes the host's total.
    let host_kib: i128 =
        std::fs::read_to_string("/proc/meminfo").unwrap().lines().next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(cg.num("memory", "memory.limit_in_bytes") >= host_kib * 1024);
    for (f, _) in throttles {
        assert_eq!(cg.read("blkio", f), "", "{f} after restart");
    }
    assert_eq!(tc_rates(&env, &c), (None, None));
    env.lxcf(&["erase", &c]).ok("erase");
}

#[test]
fn bad_resource_input_changes_nothing() {
    let Some(env) = Env::new() else { return };
    let c = env.name("bad");
    env.lxcf(&["sysgen", &c, "--memlimit", "1G", "--net_out", "1M"]).ok("sysgen");
    let ghost = env.name("ghost");
    let (_, ncpus) = host_cpus();
    let no_cpu = ncpus.to_string();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["cpurate", &ghost, "30"], 3, "no container named"),
        (vec!["show", &ghost], 3, "no container named"),
        (vec!["cpurate", &c, "0"], 2, "outside 1..100"),
        (vec!["cpurate", &c, "101"], 2, "outside 1..100"),
        (vec!["cpurate", &c, "-5"], 2, "outside 1..100"),
        (vec!["cpurate", &c, "half"], 2, "not a whole percent"),
        (vec!["cpun", &c, &no_cpu], 2, "is not online on this host"),
        (vec!["cpun", &c, "0-"], 2, "invalid cpun"),
        (vec!["cpun", &c, "1,,2"], 2, "invalid cpun"),
        (vec!["numa", &c, "99"], 2, "NUMA node 99 does not exist"),
        (vec!["numa", &c, "x"], 2, "invalid numa"),
        (vec!["memlimit", &c, "0"], 2, "zero"),
        (vec!["memlimit", &c, "99999999T"], 2, "too large"),
        (vec!["memlimit", &c, "1.3M"], 2, "not a whole number of bytes"),
        (vec!["memswlimit", &c, "512M"], 2, "memswlimit 512M is below memlimit 1G"),
        // Zero pages, or too little for systemd: the container would be killed at once.
        (vec!["memlimit", &c, "1024"], 2, "invalid memlimit `1024`: below the minimum of 64M"),
        (vec!["memlimit", &c, "32M"], 2, "below the minimum of 64M"),
        (vec!["memswlimit", &c, "16M"], 2, "invalid memswlimit `16M`: below the minimum of 64M"),
        (vec!["blkio_r", &c, "/proc", "10M"], 2, "is not on a block device"),
        (vec!["blkio_w", &c, "/nonexistent/path", "10M"], 2, "cannot find /nonexistent/path"),
        (vec!["blkio_r", &c, "/", "-1"], 2, "negative"),
        (vec!["blkioops_w", &c, "/", "lots"], 2, "not a whole number"),
        (vec!["net_in", &c, "-10M"], 2, "negative"),
        (vec!["net_out", &c, "fast"], 2, "not a number"),
    ];
    let show = show_json(&env, &c);
    let xml = inactive_xml(&c);
    let text = env.lxcf(&["show", &c]).ok("show").stdout;
    for (args, code, why) in &cases {
        let o = env.lxcf(args);
        assert_eq!(o.code, *code, "{args:?}: {}", o.stderr);
        one_line(&o);
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
        assert_eq!(show_json(&env, &c), show, "{args:?} changed something");
    }
    assert_eq!(env.lxcf(&["show", &c]).ok("show").stdout, text);
    assert_eq!(inactive_xml(&c), xml);

    // At creation, a bad setting among good ones stops sysgen before it builds anything.
    let before = env.snapshot();
    let o = env.lxcf(&["sysgen", &env.name("new"), "--memlimit", "1G", "--cpurate", "30", "--numa", "99"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    one_line(&o);
    let o = env.lxcf(&["sysgen", &env.name("new"), "--memlimit", "1024"]);
    assert!(o.code == 2 && o.stderr.contains("below the minimum of 64M"), "{}", o.stderr);
    one_line(&o);
    assert!(o.stderr.contains("hint: give a size of at least 64M"), "{}", o.stderr);
    let o = env.lxcf(&["sysgen", &env.name("new"), "--memlimit", "1G", "--memswlimit", "32M"]);
    assert!(o.code == 2 && o.stderr.contains("invalid memswlimit `32M`: below the minimum"), "{}", o.stderr);
    let o = env.lxcf(&["sysgen", &env.name("new"), "--blkio_r", "/dev/nonexistent-disk,1M"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    let o = env.lxcf(&["sysgen", &env.name("new"), "--blkio_r", "10M"]);
    assert!(o.code == 2 && o.stderr.contains("expected DEVICE,RATE"), "{}", o.stderr);
    assert_eq!(env.snapshot(), before);

    // Changes made at the same time wait for each other; none is lost (cpun and numa
    // rewrite the whole definition, which would drop a change made meanwhile).
    let cmds: [&[&str]; 6] = [
        &["cpun", &c, "0"],
        &["cpurate", &c, "40"],
        &["memlimit", &c, "768M"],
        &["numa", &c, "0"],
        &["net_in", &c, "2M"],
        &["blkio_w", &c, "/", "1M"],
    ];
    let spawned: Vec<_> =
        cmds.iter().map(|a| std::process::Command::new(LXCF).env("LXCF_CONFIG", &env.config).args(*a).spawn().unwrap()).collect();
    for mut p in spawned {
        assert!(p.wait().unwrap().success());
    }
    let v: serde_json::Value = serde_json::from_str(&show_json(&env, &c)).unwrap();
    let get = |s: &str| v["settings"].as_array().unwrap().iter().find(|r| r["setting"] == s).unwrap().clone();
    for (s, want) in [
        ("cpun", serde_json::json!("0")),
        ("numa", "0".into()),
        ("cpurate", 40.into()),
        ("memlimit", (768u64 << 20).into()),
        ("net_in", (2u64 << 20).into()),
        ("net_out", (1u64 << 20).into()),
        ("blkio_w", (1u64 << 20).into()),
    ] {
        assert_eq!((&get(s)["configured"], &get(s)["effective"]), (&want, &want), "{s}: {v}");
    }
    env.lxcf(&["erase", &c]).ok("erase");
}

/// Sends `bytes` to whoever connects (`send`), or reads until EOF, and says how long
/// it took from the connection to its end. Between the host and the container only.
fn timed_peer(listener: TcpListener, send: usize) -> std::thread::JoinHandle<(usize, Duration)> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let t = Instant::now();
        let mut n = 0;
        if send > 0 {
            let buf = vec![b'x'; 64 << 10];
            while n < send {
                let k = s.write(&buf[..(send - n).min(buf.len())]).unwrap();
                n += k;
            }
            s.shutdown(std::net::Shutdown::Write).unwrap();
            // The container closes once it has read it all.
            let _ = s.read(&mut [0u8; 1]);
        } else {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match s.read(&mut buf).unwrap() {
                    0 => break,
                    k => n += k,
                }
            }
        }
        (n, t.elapsed())
    })
}

/// Seconds to move `bytes` into (`inbound`) or out of the container over TCP.
fn transfer(env: &Env, name: &str, inbound: bool, bytes: usize) -> f64 {
    let l = TcpListener::bind((env.gateway.as_str(), 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let peer = timed_peer(l, if inbound { bytes } else { 0 });
    let dest = format!("/dev/tcp/{}/{port}", env.gateway);
    let script = if inbound { format!("cat <{dest} >/dev/null") } else { format!("head -c {bytes} /dev/zero >{dest}") };
    env.exec(name, &["/bin/bash", "-c", &script]).ok("transfer");
    let (n, took) = peer.join().unwrap();
    assert_eq!(n, bytes);
    took.as_secs_f64()
}

#[test]
fn network_rates_hold_at_every_start() {
    let Some(env) = Env::new() else { return };
    // The hook in place is the one of this tree (scripts/setup-host installs it).
    let installed = std::fs::read_to_string("/etc/libvirt/hooks/lxc.d/lxcf").unwrap_or_default();
    let ours = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../etc/libvirt/hooks/lxc.d/lxcf")).unwrap();
    assert!(installed == ours, "/etc/libvirt/hooks/lxc.d/lxcf is not this tree's hook: run scripts/setup-host");

    let c = env.name("net");
    env.lxcf(&["sysgen", &c, "--net_in", "1M", "--net_out", "512K"]).ok("sysgen");
    env.assert_running(&c);
    let mib = 1 << 20;
    // 4 MiB in at 1 MiB/s, 2 MiB out at 512 KiB/s: about 4 s each (less the first
    // tenth of a second the tbf burst lets through).
    let t_in = transfer(&env, &c, true, 4 * mib);
    let t_out = transfer(&env, &c, false, 2 * mib);
    eprintln!("limited: 4 MiB in {t_in:.2} s, 2 MiB out {t_out:.2} s");
    assert!((3.4..8.0).contains(&t_in), "inbound took {t_in:.2} s at 1 MiB/s");
    assert!((3.4..8.0).contains(&t_out), "outbound took {t_out:.2} s at 512 KiB/s");

    // Lifted live: the same transfers are several times faster.
    env.lxcf(&["net_in", &c, "unlimited"]).ok("net_in");
    env.lxcf(&["net_out", &c, "0"]).ok("net_out");
    let (f_in, f_out) = (transfer(&env, &c, true, 4 * mib), transfer(&env, &c, false, 2 * mib));
    eprintln!("unlimited: 4 MiB in {f_in:.2} s, 2 MiB out {f_out:.2} s");
    assert!(f_in * 4.0 < t_in && f_out * 4.0 < t_out, "{f_in:.2} {f_out:.2}");

    // Set again while running, then a start lxcf does not make: libvirt runs the hook.
    env.lxcf(&["net_in", &c, "1M"]).ok("net_in");
    virsh(&["shutdown", &c]).ok("virsh shutdown");
    let until = Instant::now() + Duration::from_secs(60);
    while virsh(&["domstate", &c]).stdout.trim() != "shut off" {
        assert!(Instant::now() < until, "{c} did not shut down");
        std::thread::sleep(Duration::from_millis(200));
    }
    virsh(&["start", &c]).ok("virsh start");
    env.assert_running(&c);
    assert!(near(tc_rates(&env, &c).0, mib as u64), "{:?}", tc_rates(&env, &c));
    assert_eq!(tc_rates(&env, &c).1, None);
    let t_in = transfer(&env, &c, true, 4 * mib);
    eprintln!("after virsh start: 4 MiB in {t_in:.2} s");
    assert!((3.4..8.0).contains(&t_in), "inbound took {t_in:.2} s after virsh start");
    env.lxcf(&["erase", &c]).ok("erase");
}
