//! One separate-model container (it copies all of /usr, ~5 GiB here), checked once,
//! updated in its own /usr, and a clone of it (another copy), on a terminal to see
//! the progress bar.

use std::os::unix::fs::MetadataExt;

use crate::common::*;

#[test]
fn separate_container_has_a_private_usr() {
    let Some(env) = Env::with(Opts { model: "separate", ..Opts::default() }) else { return };
    let c = env.name("sep");
    env.lxcf(&["sysgen", &c]).ok("sysgen");
    assert_eq!(list_json(&env)[0]["model"], "separate");
    let xml = virsh(&["dumpxml", &c]).ok("dumpxml").stdout;
    assert!(!xml.contains("<target dir='/usr'/>"), "no /usr bind in separate: {xml}");
    env.assert_running(&c);

    // A copy: other inode, same content; writable inside without touching the host.
    let ino = std::fs::metadata("/usr/bin/env").unwrap().ino().to_string();
    assert_ne!(env.exec(&c, &["/usr/bin/stat", "-c", "%i", "/usr/bin/env"]).ok("stat").stdout.trim(), ino);
    assert_eq!(std::fs::read(env.root.join(&c).join("usr/bin/env")).unwrap(), std::fs::read("/usr/bin/env").unwrap());
    env.exec(&c, &["/usr/bin/touch", "/usr/lxcf-test-marker"]).ok("touch /usr inside");
    assert!(env.root.join(&c).join("usr/lxcf-test-marker").exists());
    assert!(!std::path::Path::new("/usr/lxcf-test-marker").exists());
    // File capabilities survive the copy (ping has cap_net_raw on Debian).
    let caps = |p: &std::path::Path| {
        let mut buf = [0u8; 64];
        rustix::fs::getxattr(p, "security.capability", &mut buf[..]).ok().map(|n| buf[..n].to_vec())
    };
    let host_ping = std::path::Path::new("/usr/bin/ping");
    if let Some(c0) = caps(host_ping) {
        assert_eq!(caps(&env.root.join(&c).join("usr/bin/ping")), Some(c0));
    }

    // Shared fixture: `lxcf update` of a separate container (issue 4).
    crate::update::separate_container_gets_packages_in_its_own_usr(&env, &c);

    // A clone copies the 5 GiB again; on a terminal it shows its progress.
    env.lxcf(&["stop", &c]).ok("stop");
    let c2 = env.name("sep2");
    let o = run(std::process::Command::new("script")
        .args(["-qefc", &format!("{LXCF} clone {c} {c2}"), "/dev/null"])
        .env("LXCF_CONFIG", &env.config)
        .stdin(std::process::Stdio::null()));
    assert_eq!(o.code, 0, "clone on a terminal: {}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains(" files, ") && o.stdout.contains("iB/s"), "a progress bar on the terminal: {}", o.stdout);
    assert!(o.stdout.contains(&format!("{c2}: cloned from {c}")), "{}", o.stdout);
    assert_eq!(list_json(&env).iter().find(|x| x["name"] == c2.as_str()).unwrap()["model"], "separate");
    env.assert_running(&c2);
    assert!(env.root.join(&c2).join("usr/lxcf-test-marker").exists(), "the clone has its source's /usr");
    assert!(env.root.join(&c2).join("usr/bin/lxcf-test-sep").is_file(), "and the package installed in it");
    if let Some(c0) = caps(host_ping) {
        assert_eq!(caps(&env.root.join(&c2).join("usr/bin/ping")), Some(c0));
    }

    for n in [&c, &c2] {
        env.lxcf(&["erase", n]).ok("erase");
        assert!(!env.root.join(n).exists());
    }
    assert!(env.domains().is_empty());
}
