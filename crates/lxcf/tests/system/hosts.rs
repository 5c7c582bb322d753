//! The host's hosts file where it is not a plain file of its directory: bind-mounted
//! over the configured path (as container runtimes and some installers do with
//! /etc/hosts). lxcf must change the mounted file, in place, and nothing under it.

use std::process::Command;

use crate::common::*;

/// lxcf runs in a mount namespace of its own (`unshare -m`) where a file of the test
/// is bind-mounted over the configured hosts file: the mount goes with that
/// namespace, also when the test fails, and no other process sees it.
#[test]
fn a_bind_mounted_hosts_file_is_rewritten_in_place() {
    let Some(env) = Env::new() else { return };
    let bound = env.dir.path().join("hosts.bound");
    let original = "127.0.0.1\tlocalhost\n# the bound file: lxcf keeps this line\n";
    std::fs::write(&bound, original).unwrap();
    let under = env.hosts_text();
    let lxcf_over_a_mount = |args: &[&str]| {
        run(Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", "mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"", "sh"])
            .arg(&bound)
            .arg(&env.hosts)
            .arg(LXCF)
            .args(args)
            .env("LXCF_CONFIG", &env.config))
    };
    let c = env.name("h");
    // Before: rename over a mount point failed with EBUSY and sysgen undid itself.
    let o = lxcf_over_a_mount(&["sysgen", &c]).ok("sysgen with a bind-mounted hosts file");
    let ip = o.stderr.split(", ").nth(1).and_then(|s| s.split(')').next()).unwrap_or_default().to_string();
    let text = std::fs::read_to_string(&bound).unwrap();
    assert!(text.starts_with(original) && text.contains(&format!("{ip}\t{c}\n")), "{text}");
    assert_eq!(env.hosts_text(), under, "the file under the mount is untouched");
    lxcf_over_a_mount(&["erase", &c]).ok("erase");
    assert_eq!(std::fs::read_to_string(&bound).unwrap(), original, "the line is gone, the rest as it was");
    assert_eq!(env.hosts_text(), under);
}
