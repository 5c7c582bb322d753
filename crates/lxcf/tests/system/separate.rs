//! One separate-model container (it copies all of /usr, ~5 GiB here), checked once.

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
    assert_eq!(
        std::fs::read(env.root.join(&c).join("usr/bin/env")).unwrap(),
        std::fs::read("/usr/bin/env").unwrap()
    );
    env.exec(&c, &["/usr/bin/touch", "/usr/lxcf-test-marker"]).ok("touch /usr inside");
    assert!(env.root.join(&c).join("usr/lxcf-test-marker").exists());
    assert!(!std::path::Path::new("/usr/lxcf-test-marker").exists());
    // File capabilities survive the copy (ping has cap_net_raw on Debian).
    let caps = |p: &std::path::Path| {
        let mut buf = vec![0u8; 64];
        rustix::fs::getxattr(p, "security.capability", &mut buf[..]).ok().map(|n| buf[..n].to_vec())
    };
    let host_ping = std::path::Path::new("/usr/bin/ping");
    if let Some(c0) = caps(host_ping) {
        assert_eq!(caps(&env.root.join(&c).join("usr/bin/ping")), Some(c0));
    }

    // Shared fixture: `lxcf update` of a separate container (issue 4).
    crate::update::separate_container_gets_packages_in_its_own_usr(&env, &c);

    env.lxcf(&["erase", &c]).ok("erase");
    assert!(!env.root.join(&c).exists());
    assert!(env.domains().is_empty());
}
