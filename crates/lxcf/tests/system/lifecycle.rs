//! A joint container from sysgen to erase, checked with virsh and from inside.

use std::os::unix::fs::MetadataExt;

use crate::common::*;

#[test]
fn joint_container_lifecycle() {
    let Some(env) = Env::new() else { return };
    let web = env.name("web");
    let o = env.lxcf(&["sysgen", &web]).ok("sysgen");
    assert!(o.stderr.contains("created"), "{}", o.stderr);

    // libvirt and lxcf agree on what exists.
    assert_eq!(env.domains(), vec![web.clone()]);
    let list = list_json(&env);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], web.as_str());
    assert_eq!(list[0]["model"], "joint");
    assert_eq!(list[0]["state"], "running");
    let ip = list[0]["ip"].as_str().unwrap().to_string();
    assert_eq!(ip, format!("{}2", env.gateway.trim_end_matches('1')), "lowest free address");

    // The domain XML carries lxcf's metadata and the read-only /usr.
    let xml = virsh(&["dumpxml", &web]).ok("dumpxml").stdout;
    assert!(xml.contains("lxcf:container") && xml.contains(&format!("<lxcf:ip>{ip}</lxcf:ip>")), "{xml}");
    assert!(xml.contains("<target dir='/usr'/>") && xml.contains("<readonly/>"), "{xml}");

    // systemd boots to `running`.
    env.assert_running(&web);

    // Identity: its own hostname and machine-id, the address libvirt set.
    assert_eq!(env.exec(&web, &["/bin/hostname"]).ok("hostname").stdout.trim(), web);
    let mid = env.exec(&web, &["/bin/cat", "/etc/machine-id"]).ok("machine-id").stdout;
    let host_mid = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    assert_eq!(mid.trim().len(), 32);
    assert_ne!(mid.trim(), host_mid.trim());
    let addr = env.exec(&web, &["/sbin/ip", "-4", "-o", "addr", "show", "eth0"]).ok("ip addr").stdout;
    assert!(addr.contains(&format!("{ip}/24")), "{addr}");
    assert!(env.hosts_text().contains(&format!("{ip}\t{web}\n")), "{}", env.hosts_text());
    assert!(env.hosts_text().contains("# a line lxcf must keep\n"));

    // /usr is the host's, read-only.
    let ino = std::fs::metadata("/usr/bin/env").unwrap().ino().to_string();
    assert_eq!(env.exec(&web, &["/usr/bin/stat", "-c", "%i", "/usr/bin/env"]).ok("stat").stdout.trim(), ino);
    let t = env.exec(&web, &["/usr/bin/touch", "/usr/lxcf-test-marker"]);
    assert_ne!(t.code, 0);
    assert!(t.stderr.contains("Read-only file system"), "{}", t.stderr);
    // /etc and /var are its own: writable and not the host's.
    env.exec(&web, &["/usr/bin/touch", "/etc/lxcf-test-marker"]).ok("touch /etc");
    assert!(!std::path::Path::new("/etc/lxcf-test-marker").exists());
    assert!(env.root.join(&web).join("etc/lxcf-test-marker").exists());

    // It answers on its address from the host.
    assert!(ping(&ip), "no answer from {ip}");

    // stop, start, autostart.
    env.lxcf(&["stop", &web]).ok("stop");
    // A clean shutdown by init, not a kill.
    assert_eq!(virsh(&["domstate", "--reason", &web]).stdout.trim(), "shut off (shutdown)");
    env.lxcf(&["start", &web]).ok("start");
    assert_eq!(virsh(&["domstate", &web]).stdout.trim(), "running");
    env.assert_running(&web);
    env.lxcf(&["sysstart", &web]).ok("sysstart");
    assert!(virsh(&["dominfo", &web]).stdout.contains("Autostart:      enable"));
    assert_eq!(list_json(&env)[0]["autostart"], true);
    env.lxcf(&["sysstart", "-d", &web]).ok("sysstart -d");
    assert!(virsh(&["dominfo", &web]).stdout.contains("Autostart:      disable"));
    // The network starts at boot too.
    assert!(virsh(&["net-info", &env.net]).stdout.lines().any(|l| l.starts_with("Autostart:") && l.ends_with("yes")));

    // Erase leaves nothing: domain, directory, hosts line.
    env.lxcf(&["erase", &web]).ok("erase");
    assert!(env.domains().is_empty());
    assert!(!env.root.join(&web).exists());
    assert!(!env.hosts_text().contains(&web));
    assert_eq!(env.hosts_text(), "127.0.0.1\tlocalhost\n# a line lxcf must keep\n");
    assert!(list_json(&env).is_empty());
}

#[test]
fn two_containers_have_distinct_identities() {
    let Some(env) = Env::new() else { return };
    let (a, b) = (env.name("a"), env.name("b"));
    env.lxcf(&["sysgen", &a]).ok("sysgen a");
    env.lxcf(&["sysgen", &b]).ok("sysgen b");
    env.assert_running(&a);
    env.assert_running(&b);
    let id = |n: &str| env.exec(n, &["/bin/cat", "/etc/machine-id"]).ok("machine-id").stdout;
    assert_ne!(id(&a), id(&b));
    // D-Bus reads the same id, not the host's.
    let dbus = env.exec(&a, &["/bin/cat", "/var/lib/dbus/machine-id"]);
    if dbus.code == 0 {
        assert_eq!(dbus.stdout, id(&a));
    }
    // The host's SSH host keys are not in either.
    let keys = crate::common::walk(&env.root.join(&a).join("etc/ssh"), 1);
    assert!(keys.iter().all(|k| !k.to_string_lossy().contains("ssh_host_")), "{keys:?}");
    // Host logs are not inherited.
    let logs: Vec<_> = crate::common::walk(&env.root.join(&b).join("var/log"), 1)
        .into_iter()
        .filter(|p| p.is_file() && std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .filter(|p| std::fs::metadata(p).unwrap().modified().unwrap() < std::time::SystemTime::now() - std::time::Duration::from_secs(600))
        .collect();
    assert!(logs.is_empty(), "old host logs copied: {logs:?}");
    env.lxcf(&["erase", &a]).ok("erase a");
    env.lxcf(&["erase", &b]).ok("erase b");
    assert!(env.domains().is_empty());
}
