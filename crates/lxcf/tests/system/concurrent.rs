//! Several `lxcf sysgen` at once: distinct addresses, every hosts line kept.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::*;

#[test]
fn concurrent_sysgen() {
    let Some(env) = Env::new() else { return };
    let names: Vec<String> = (0..3).map(|i| env.name(&format!("c{i}"))).collect();
    // Started together, they race for the lock, the addresses and the hosts file.
    let spawned: Vec<_> =
        names.iter().map(|n| Command::new(LXCF).env("LXCF_CONFIG", &env.config).args(["sysgen", n]).spawn().unwrap()).collect();
    for mut c in spawned {
        assert!(c.wait().unwrap().success());
    }
    let list = list_json(&env);
    assert_eq!(list.len(), 3);
    let ips: BTreeSet<String> = list.iter().map(|c| c["ip"].as_str().unwrap().to_string()).collect();
    assert_eq!(ips.len(), 3, "distinct addresses: {ips:?}");
    let hosts = env.hosts_text();
    for c in &list {
        assert!(hosts.contains(&format!("{}\t{}\n", c["ip"].as_str().unwrap(), c["name"].as_str().unwrap())), "{hosts}");
    }
    for n in &names {
        env.lxcf(&["erase", n]).ok("erase");
    }
    let left = env.domains();
    assert!(left.is_empty(), "left after erase: {left:?}\n{}", virsh(&["list", "--all"]).stdout);
}
