//! Bad input: a clear one-line error, a non-zero exit, and nothing changed.

use crate::common::*;

/// The error is one line (plus, at most, one hint line).
pub(crate) fn one_line(o: &Out) {
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(!lines.is_empty() && lines[0].starts_with("lxcf: error: "), "{}", o.stderr);
    assert!(lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("hint: ")), "{}", o.stderr);
}

#[test]
fn invalid_names_are_refused() {
    let Some(env) = Env::new() else { return };
    let before = env.snapshot();
    let long = "a".repeat(64);
    for name in ["", &long, "a/b", "..", "a b", "Web1", "-web", "web-", "a_b"] {
        for cmd in ["sysgen", "erase", "start", "stop", "sysstart"] {
            // `--`: a name starting with `-` would otherwise be read as an option.
            let o = env.lxcf(&[cmd, "--", name]);
            assert_eq!(o.code, 2, "{cmd} `{name}`: {}", o.stderr);
            one_line(&o);
            assert!(o.stderr.contains("invalid container name"), "{}", o.stderr);
        }
    }
    assert_eq!(env.snapshot(), before);
}

#[test]
fn taken_names_are_refused() {
    let Some(env) = Env::new() else { return };
    let mine = env.name("mine");
    env.lxcf(&["sysgen", &mine]).ok("sysgen");
    // A libvirt domain lxcf did not make.
    let foreign = env.name("foreign");
    let xml = env.dir.path().join("foreign.xml");
    std::fs::write(
        &xml,
        format!("<domain type='lxc'><name>{foreign}</name><memory>65536</memory><os><type>exe</type><init>/bin/sh</init></os></domain>"),
    )
    .unwrap();
    virsh(&["define", xml.to_str().unwrap()]).ok("virsh define");
    // A directory in the containers' root.
    let dir = env.name("dir");
    std::fs::create_dir_all(env.root.join(&dir)).unwrap();

    let before = env.snapshot();
    for (name, why) in [(&mine, "lxcf container"), (&foreign, "libvirt domain"), (&dir, "exists")] {
        let o = env.lxcf(&["sysgen", name]);
        assert_eq!(o.code, 4, "{name}: {}", o.stderr);
        one_line(&o);
        assert!(o.stderr.contains("is taken") && o.stderr.contains(why), "{}", o.stderr);
    }
    // lxcf does not touch a domain it did not make.
    for cmd in ["erase", "stop", "start"] {
        let o = env.lxcf(&[cmd, &foreign]);
        assert_eq!(o.code, 4, "{cmd}: {}", o.stderr);
        one_line(&o);
    }
    assert_eq!(env.snapshot(), before);
}

#[test]
fn unknown_containers_are_reported() {
    let Some(env) = Env::new() else { return };
    let before = env.snapshot();
    let ghost = env.name("ghost");
    for cmd in ["erase", "start", "stop", "sysstart"] {
        let o = env.lxcf(&[cmd, &ghost]);
        assert_eq!(o.code, 3, "{cmd}: {}", o.stderr);
        one_line(&o);
        assert!(o.stderr.contains(&format!("no container named `{ghost}`")), "{}", o.stderr);
    }
    assert_eq!(env.snapshot(), before);
}

#[test]
fn unreachable_libvirtd_is_explained() {
    let Some(env) = Env::new() else { return };
    let conf = env.dir.path().join("nolibvirt.conf");
    let text = std::fs::read_to_string(&env.config).unwrap() + "[Libvirt]\nuri=lxc:///system?socket=/nonexistent/libvirt-sock\n";
    std::fs::write(&conf, text).unwrap();
    let before = env.snapshot();
    for args in [vec!["sysgen", "x1"], vec!["list"], vec!["erase", "x1"]] {
        let o = run(std::process::Command::new(LXCF).env("LXCF_CONFIG", &conf).args(&args));
        assert_eq!(o.code, 6, "{args:?}: {}", o.stderr);
        one_line(&o);
        assert!(o.stderr.contains("cannot connect to libvirt"), "{}", o.stderr);
        assert!(o.stderr.contains("hint: is libvirtd running?"), "{}", o.stderr);
    }
    assert_eq!(env.snapshot(), before);
}

#[test]
fn full_subnet_is_refused() {
    // A /30 has two host addresses: the gateway and one container.
    let Some(env) = Env::with(Opts { prefix_len: 30, ..Opts::default() }) else { return };
    env.lxcf(&["sysgen", &env.name("only")]).ok("sysgen");
    let before = env.snapshot();
    let o = env.lxcf(&["sysgen", &env.name("more")]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    one_line(&o);
    assert!(o.stderr.contains("no free address left in"), "{}", o.stderr);
    assert!(o.stderr.contains("hint:"), "{}", o.stderr);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn only_root_may_run_lxcf() {
    let Some(env) = Env::new() else { return };
    // A copy of the binary that an unprivileged user can reach.
    let bin = tempfile::Builder::new().prefix("lxcf-nobody-").tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = bin.path().join("lxcf");
    std::fs::copy(LXCF, &exe).unwrap();
    let before = env.snapshot();
    for args in [vec!["sysgen", "x1"], vec!["erase", "x1"], vec!["list"]] {
        let o = run(std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe)
            .arg("--config")
            .arg(&env.config)
            .args(&args));
        assert_eq!(o.code, 5, "{args:?}: {}", o.stderr);
        one_line(&o);
        assert!(o.stderr.contains("must be run as root"), "{}", o.stderr);
    }
    assert_eq!(env.snapshot(), before);
}

#[test]
fn malformed_config_names_the_line() {
    let Some(env) = Env::new() else { return };
    let conf = env.dir.path().join("bad.conf");
    std::fs::write(&conf, "[Model]\nmodel=joint\n[Network]\nsubnet=10.1.2.3.4/24\n").unwrap();
    let o = run(std::process::Command::new(LXCF).arg("--config").arg(&conf).args(["sysgen", "x1"]));
    assert_eq!(o.code, 7, "{}", o.stderr);
    one_line(&o);
    assert!(o.stderr.contains("line 4") && o.stderr.contains("10.1.2.3.4/24"), "{}", o.stderr);
    std::fs::write(&conf, "[Model]\nmodel=shared\n").unwrap();
    let o = run(std::process::Command::new(LXCF).arg("--config").arg(&conf).args(["list"]));
    assert_eq!(o.code, 7);
    assert!(o.stderr.contains("line 2") && o.stderr.contains("`joint` or `separate`"), "{}", o.stderr);
}
