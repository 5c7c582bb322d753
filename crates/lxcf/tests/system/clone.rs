//! `lxcf clone`: bad input changes nothing; a clone keeps its source's model and
//! resource settings, gets its own identity and boots; on btrfs it is a snapshot.

use crate::common::*;

/// `virsh domiflist`'s MAC address of a domain's interface.
fn mac(name: &str) -> String {
    let o = virsh(&["domiflist", name]).ok("domiflist").stdout;
    o.split_whitespace().find(|w| w.len() == 17 && w.matches(':').count() == 5).unwrap_or_default().to_string()
}

fn ip_of(env: &Env, name: &str) -> String {
    list_json(env).iter().find(|c| c["name"] == name).unwrap()["ip"].as_str().unwrap().to_string()
}

#[test]
fn clone_refuses_bad_input() {
    let Some(env) = Env::new() else { return };
    let a = env.name("a");
    env.lxcf(&["sysgen", &a]).ok("sysgen");
    let taken = env.name("taken");
    std::fs::create_dir_all(env.root.join(&taken)).unwrap();
    let before = env.snapshot();
    let new = env.name("new");
    let check = |args: &[&str], code: i32, text: &str| {
        let o = env.lxcf(args);
        assert_eq!(o.code, code, "{args:?}: {}", o.stderr);
        assert!(o.stderr.starts_with("lxcf: error: ") && o.stderr.contains(text), "{args:?}: {}", o.stderr);
        assert!(o.stderr.lines().count() <= 2, "{}", o.stderr);
        assert_eq!(env.snapshot(), before, "{args:?} changed something");
        o
    };
    let o = check(&["clone", &a, &new], 4, &format!("container `{a}` is running"));
    assert!(o.stderr.contains(&format!("hint: stop it first: `lxcf stop {a}`")), "{}", o.stderr);
    check(&["clone", &env.name("ghost"), &new], 3, "no container named");
    check(&["clone", &a, "Bad/"], 2, "invalid container name");
    env.lxcf(&["stop", &a]).ok("stop");
    check(&["clone", &a, &a], 4, "is taken");
    check(&["clone", &a, &taken], 4, "is taken");
    env.lxcf(&["erase", &a]).ok("erase");
}

#[test]
fn clone_keeps_settings_and_gets_its_own_identity() {
    let Some(env) = Env::new() else { return };
    let (a, b) = (env.name("a"), env.name("b"));
    env.lxcf(&["sysgen", &a]).ok("sysgen");
    env.assert_running(&a);
    env.exec(&a, &["/usr/bin/touch", "/etc/lxcf-clone-marker"]).ok("touch");
    // Resource settings, made with virsh so that they do not depend on lxcf's own commands.
    virsh(&["memtune", &a, "--hard-limit", "1048576", "--config"]).ok("memtune");
    virsh(&["schedinfo", &a, "--config", "cpu_shares=512"]).ok("schedinfo");
    // And one kept in lxcf's own metadata, applied after every start.
    env.lxcf(&["net_in", &a, "1M"]).ok("net_in");
    env.lxcf(&["stop", &a]).ok("stop");
    let a_key = std::fs::read(env.root.join(&a).join("etc/ssh/ssh_host_ed25519_key.pub")).ok();

    let o = env.lxcf(&["clone", &a, &b]).ok("clone");
    assert!(o.stderr.contains(&format!("{b}: cloned from {a}")), "{}", o.stderr);
    assert_eq!(o.stderr.lines().count(), 1, "no progress bar without a terminal: {}", o.stderr);
    let list = list_json(&env);
    let c = list.iter().find(|c| c["name"] == b.as_str()).expect("listed");
    assert_eq!((c["state"].as_str(), c["model"].as_str(), c["storage"].as_str()), (Some("running"), Some("joint"), Some("dir")));
    let (ip_a, ip_b) = (ip_of(&env, &a), ip_of(&env, &b));
    assert_ne!(ip_a, ip_b);

    // The same settings, read back by virsh.
    assert!(virsh(&["memtune", &b]).ok("memtune").stdout.contains("1048576"));
    let sched = virsh(&["schedinfo", &b]).ok("schedinfo").stdout;
    assert!(sched.lines().any(|l| l.starts_with("cpu_shares") && l.trim_end().ends_with(" 512")), "{sched}");
    let show: serde_json::Value = serde_json::from_str(&env.lxcf(&["show", &b, "--json"]).ok("show").stdout).unwrap();
    let net_in = show["settings"].as_array().unwrap().iter().find(|r| r["setting"] == "net_in").unwrap();
    let mib = serde_json::json!(1u64 << 20);
    assert_eq!((&net_in["configured"], &net_in["effective"]), (&mib, &mib), "{show}");

    // Its own identity, and what it inherited.
    env.assert_running(&b);
    // lxcf's init: cgroups of its own (see cgroups.rs), under its own name.
    let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", init_pid(&b))).unwrap();
    assert!(cg.lines().any(|l| l.ends_with(&format!(":pids:/lxcf/{b}/init.scope"))), "{cg}");
    assert_eq!(env.exec(&b, &["/bin/hostname"]).ok("hostname").stdout.trim(), b);
    let mid = |n: &str| std::fs::read_to_string(env.root.join(n).join("etc/machine-id")).unwrap();
    assert_ne!(mid(&a), mid(&b));
    assert_eq!(env.exec(&b, &["/bin/cat", "/etc/machine-id"]).ok("machine-id").stdout, mid(&b));
    env.exec(&b, &["/usr/bin/test", "-e", "/etc/lxcf-clone-marker"]).ok("the clone has its source's files");
    let (mac_a, mac_b) = (mac(&a), mac(&b));
    assert!(!mac_b.is_empty() && mac_a != mac_b, "{mac_a} {mac_b}");
    let addr = env.exec(&b, &["/sbin/ip", "-4", "-o", "addr", "show", "eth0"]).ok("ip addr").stdout;
    assert!(addr.contains(&format!("{ip_b}/24")), "{addr}");
    assert!(env.hosts_text().contains(&format!("{ip_a}\t{a}\n")) && env.hosts_text().contains(&format!("{ip_b}\t{b}\n")));
    if let Some(k) = a_key {
        let kb = std::fs::read(env.root.join(&b).join("etc/ssh/ssh_host_ed25519_key.pub")).expect("b made its own key");
        assert_ne!(k, kb, "ssh host keys are not shared");
    }
    assert!(ping(&ip_b), "no answer from {ip_b}");
    assert_eq!(std::fs::read_to_string(env.root.join(&a).join("etc/hostname")).unwrap(), format!("{a}\n"));

    for n in [&a, &b] {
        env.lxcf(&["erase", n]).ok("erase");
    }
    assert!(env.domains().is_empty());
}

/// `btrfs subvolume show`'s value of `key` (UUID, Parent UUID).
fn subvol(path: &std::path::Path, key: &str) -> String {
    let o = run(std::process::Command::new("btrfs").args(["subvolume", "show"]).arg(path)).ok("btrfs subvolume show").stdout;
    o.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim_start_matches(':').trim().to_string())).unwrap_or_default()
}

#[test]
fn on_btrfs_roots_are_subvolumes_and_clones_snapshots() {
    let Some(env) = Env::with(Opts { storage: Some("btrfs"), ..Opts::default() }) else { return };
    let (a, b) = (env.name("a"), env.name("b"));
    env.lxcf(&["sysgen", &a]).ok("sysgen");
    assert_eq!(list_json(&env)[0]["storage"], "btrfs");
    let show: serde_json::Value = serde_json::from_str(&env.lxcf(&["show", &a, "--json"]).ok("show").stdout).unwrap();
    assert_eq!((&show["storage"], &show["root"]), (&serde_json::json!("btrfs"), &serde_json::json!(env.root.join(&a))));
    let text = env.lxcf(&["show", &a]).ok("show").stdout;
    assert!(text.contains(&format!("\nroot: {} (btrfs)\n", env.root.join(&a).display())), "{text}");
    let uuid_a = subvol(&env.root.join(&a), "UUID");
    assert_eq!(uuid_a.len(), 36, "a subvolume");
    // A root on a filesystem mounted after libvirtd started boots.
    env.assert_running(&a);
    let table = env.lxcf(&["list"]).ok("list").stdout;
    // The STORAGE column, after AUTOSTART and before the live figures.
    let col = |line: &str| line.split_whitespace().nth(5).map(str::to_string);
    let mut lines = table.lines();
    assert_eq!(col(lines.next().unwrap()).as_deref(), Some("STORAGE"), "{table}");
    assert_eq!(col(lines.find(|l| l.starts_with(&a)).unwrap()).as_deref(), Some("btrfs"), "{table}");

    env.lxcf(&["stop", &a]).ok("stop");
    let t = std::time::Instant::now();
    env.lxcf(&["clone", &a, &b]).ok("clone");
    eprintln!("clone on btrfs (snapshot, define, start): {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(subvol(&env.root.join(&b), "Parent UUID"), uuid_a, "a snapshot of a");
    env.assert_running(&b);
    assert_eq!(env.exec(&b, &["/bin/hostname"]).ok("hostname").stdout.trim(), b);
    let mid = |n: &str| std::fs::read_to_string(env.root.join(n).join("etc/machine-id")).unwrap();
    assert_ne!(mid(&a), mid(&b));
    assert!(list_json(&env).iter().all(|c| c["storage"] == "btrfs"));

    for n in [&a, &b] {
        env.lxcf(&["erase", n]).ok("erase");
    }
    let left = run(std::process::Command::new("btrfs").args(["subvolume", "list", "-o"]).arg(&env.root)).ok("list").stdout;
    assert_eq!(left.trim(), "", "subvolumes left");
    assert!(!env.root.join(&a).exists() && !env.root.join(&b).exists());
}
