//! Containers made by lxcf 0.1.0 keep working: its domain XML, as `virsh dumpxml
//! --inactive` gave it before the front was reworked (fixtures/domain-0.1.0.xml,
//! with a memlimit, cpurate, cpun and net_in), defined for a root that lxcf built,
//! then listed, started, tuned, stopped, cloned, updated and erased by this lxcf.

use crate::common::*;

/// The fixture with this test's names, paths and addresses.
fn old_xml(env: &Env, name: &str, uuid: &str, ip: &str) -> String {
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total = mem.lines().find(|l| l.starts_with("MemTotal:")).unwrap().split_whitespace().nth(1).unwrap().to_string();
    include_str!("fixtures/domain-0.1.0.xml")
        .replace("@NAME@", name)
        .replace("@UUID@", uuid)
        .replace("@ROOTDIR@", env.root.to_str().unwrap())
        .replace("@IP@", ip)
        .replace("@GATEWAY@", &env.gateway)
        .replace("@NETWORK@", &env.net)
        .replace("@MAC@", "52:54:00:7e:57:01")
        .replace("@MEMORY@", &total)
}

#[test]
fn a_container_of_the_first_version_is_run_by_this_one() {
    let Some(env) = Env::new() else { return };
    let old = env.name("old");
    // Its root, address and hosts line as sysgen makes them; then its domain is
    // replaced by the one the first version wrote.
    env.lxcf(&["sysgen", &old]).ok("sysgen");
    let ip = list_json(&env)[0]["ip"].as_str().unwrap().to_string();
    env.lxcf(&["stop", &old]).ok("stop");
    virsh(&["undefine", &old]).ok("undefine");
    let file = env.dir.path().join("old.xml");
    std::fs::write(&file, old_xml(&env, &old, "07b96599-6552-45a8-a424-9aa6b3abb877", &ip)).unwrap();
    virsh(&["define", file.to_str().unwrap()]).ok("virsh define");

    // Listed as before.
    let l = list_json(&env);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0]["name"].as_str(), l[0]["model"].as_str(), l[0]["state"].as_str()),
        (Some(old.as_str()), Some("joint"), Some("stopped"))
    );
    assert_eq!(l[0]["ip"].as_str(), Some(ip.as_str()));

    // Started with its settings, systemd up, its rate on the wire.
    env.lxcf(&["start", &old]).ok("start");
    env.assert_running(&old);
    let show = |name: &str| -> serde_json::Value {
        serde_json::from_str(&env.lxcf(&["show", name, "--json"]).ok("show").stdout).expect("show --json")
    };
    let setting = |v: &serde_json::Value, s: &str| v["settings"].as_array().unwrap().iter().find(|r| r["setting"] == s).unwrap().clone();
    let s = show(&old);
    assert_eq!(setting(&s, "memlimit")["configured"], 1u64 << 30);
    assert_eq!(setting(&s, "memlimit")["effective"], 1u64 << 30);
    assert_eq!(setting(&s, "cpun")["effective"], "0");
    assert_eq!(setting(&s, "net_in")["effective"], 1u64 << 20, "the first version's rate, applied by this lxcf's start");

    // Tuned live.
    env.lxcf(&["memlimit", &old, "2G"]).ok("memlimit");
    assert_eq!(setting(&show(&old), "memlimit")["effective"], 2u64 << 30);

    // Stopped, cloned: the clone has the settings and this lxcf's init.
    env.lxcf(&["stop", &old]).ok("stop");
    let new = env.name("new");
    env.lxcf(&["clone", &old, &new]).ok("clone");
    env.assert_running(&new);
    assert_eq!(setting(&show(&new), "memlimit")["effective"], 2u64 << 30);
    let xml = virsh(&["dumpxml", "--inactive", &new]).ok("dumpxml").stdout;
    assert!(xml.contains("lxcf-init") && !xml.contains("52:54:00:7e:57:01"), "{xml}");

    // Updated, with the clone, all or nothing.
    env.lxcf(&["update", "--to", &old, &new, "--", "sh", "-c", "echo updated > /etc/lxcf-compat"]).ok("update");
    for n in [&old, &new] {
        assert_eq!(std::fs::read_to_string(env.root.join(n).join("etc/lxcf-compat")).unwrap(), "updated\n", "{n}");
    }

    // Erased, both, with nothing left.
    env.lxcf(&["erase", &old, &new]).ok("erase");
    assert!(env.domains().is_empty());
    assert!(!env.root.join(&old).exists() && !env.root.join(&new).exists());
    assert_eq!(env.hosts_text(), "127.0.0.1\tlocalhost\n# a line lxcf must keep\n");
}
