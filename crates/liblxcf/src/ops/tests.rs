//! The commands against the fake runtime, in temporary directories: no root, no libvirt.

use super::*;
use crate::storage::Backend;
use crate::virt::fake::Fake;
use std::fs;
use std::os::unix::fs::symlink;

pub(crate) struct Env {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) cfg: Config,
    pub(crate) rt: Fake,
}

pub(crate) fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("host");
    for d in ["usr/bin", "etc", "var/lib", "var/log", "root"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    symlink("usr/bin", src.join("bin")).unwrap();
    fs::write(src.join("etc/hostname"), "host\n").unwrap();
    fs::write(src.join("etc/machine-id"), "0123456789abcdef0123456789abcdef\n").unwrap();
    let hosts = tmp.path().join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let text = format!(
        "[Model]\nmodel=joint\n[Paths]\nroot={}\nsource={}\nhosts={}\n[Network]\nname=tnet\nsubnet=10.7.0.0/29\n",
        tmp.path().join("lxc").display(),
        src.display(),
        hosts.display()
    );
    let cfg = Config::parse(Path::new("test.conf"), &text).unwrap();
    Env { tmp, cfg, rt: Fake::default() }
}

/// Everything a command could change: the files under the root (lock files aside),
/// the hosts file and the domains.
pub(crate) fn snapshot(e: &Env) -> (Vec<PathBuf>, String, Vec<String>) {
    let mut files = Vec::new();
    if e.cfg.root.exists() {
        let mut stack = vec![e.cfg.root.clone()];
        while let Some(d) = stack.pop() {
            for ent in fs::read_dir(&d).unwrap() {
                let p = ent.unwrap().path();
                if p.file_name().unwrap() == ".lxcf" {
                    continue;
                }
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p.clone());
                }
                files.push(p);
            }
        }
    }
    files.sort();
    let hosts = fs::read_to_string(&e.cfg.hosts).unwrap();
    let doms = e.rt.domains.borrow().keys().cloned().collect();
    (files, hosts, doms)
}

#[test]
fn sysgen_creates_and_starts() {
    let e = env();
    let c = sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    assert_eq!(c.meta.model, Model::Joint);
    assert_eq!(c.meta.ip.to_string(), "10.7.0.2");
    let dir = e.cfg.root.join("web1");
    assert_eq!(fs::read_to_string(dir.join("etc/hostname")).unwrap(), "web1\n");
    assert!(!e.cfg.root.join("web1.partial").exists());
    assert!(fs::read_to_string(&e.cfg.hosts).unwrap().contains("10.7.0.2\tweb1"));
    let l = list(&e.cfg, &e.rt).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].name.as_str(), l[0].state), ("web1", State::Running));
    assert!(e.rt.networks.borrow().contains("tnet"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&e.cfg.root).unwrap().permissions().mode() & 0o777, 0o700);

    // The model can be chosen per container.
    let c = sysgen(&e.cfg, &e.rt, "db1", Some(Model::Separate)).unwrap();
    assert_eq!((c.meta.model, c.meta.ip.to_string().as_str()), (Model::Separate, "10.7.0.3"));
    assert!(e.cfg.root.join("db1/usr/bin").is_dir());
}

#[test]
fn bad_names_change_nothing() {
    let e = env();
    let before = snapshot(&e);
    for n in ["", "a/b", "..", "a b", "Web1", "-x", &"x".repeat(64)] {
        let err = sysgen(&e.cfg, &e.rt, n, None).unwrap_err();
        assert!(matches!(err, Error::Name(_)), "{n}: {err}");
        assert!(err.hint().is_some());
    }
    assert_eq!(snapshot(&e), before);
}

#[test]
fn taken_names_change_nothing() {
    let e = env();
    sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    // A libvirt domain lxcf did not make.
    e.rt.define("<domain type='lxc'><name>other</name></domain>").unwrap();
    fs::create_dir_all(e.cfg.root.join("somedir")).unwrap();
    Hosts::new(&e.cfg.hosts).add("10.7.0.6".parse().unwrap(), "inhosts").unwrap();
    let before = snapshot(&e);
    for (n, why) in [("web1", "lxcf container"), ("other", "libvirt domain"), ("somedir", "exists"), ("inhosts", "hosts")] {
        let err = sysgen(&e.cfg, &e.rt, n, None).unwrap_err();
        assert!(matches!(err, Error::Taken { .. }), "{n}: {err}");
        assert!(err.to_string().contains(why), "{n}: {err}");
    }
    assert_eq!(snapshot(&e), before);
}

#[test]
fn failure_at_each_late_step_undoes_all() {
    for op in ["define", "start", "start network"] {
        let e = env();
        sysgen(&e.cfg, &e.rt, "keep", None).unwrap();
        let before = snapshot(&e);
        e.rt.fail(op);
        let err = sysgen(&e.cfg, &e.rt, "web1", None).unwrap_err();
        assert!(err.to_string().contains("injected"), "{op}: {err}");
        assert_eq!(snapshot(&e), before, "after a failing {op}");
    }
}

#[test]
fn failure_while_building_undoes_all() {
    let e = env();
    let before = snapshot(&e);
    // No /etc in the source: the root cannot be built.
    fs::remove_dir_all(e.cfg.source.join("etc")).unwrap();
    let err = sysgen(&e.cfg, &e.rt, "web1", None).unwrap_err();
    assert!(err.to_string().contains("/etc"), "{err}");
    assert_eq!(snapshot(&e).1, before.1);
    assert!(!e.cfg.root.join("web1.partial").exists());
    assert!(!e.cfg.root.join("web1").exists());
    assert!(e.rt.domains.borrow().is_empty());
}

#[test]
fn full_subnet_is_refused() {
    let e = env();
    // 10.7.0.0/29: hosts .1 to .6, .1 is the gateway: five containers.
    for i in 0..5 {
        sysgen(&e.cfg, &e.rt, &format!("c{i}"), None).unwrap();
    }
    let before = snapshot(&e);
    let err = sysgen(&e.cfg, &e.rt, "c5", None).unwrap_err();
    assert!(matches!(err, Error::Net(NetError::Full { .. })), "{err}");
    assert!(err.hint().unwrap().contains("subnet"));
    assert_eq!(snapshot(&e), before);
    // An erased container's address is reused.
    erase(&e.cfg, &e.rt, "c1").unwrap();
    assert_eq!(sysgen(&e.cfg, &e.rt, "c5", None).unwrap().meta.ip.to_string(), "10.7.0.3");
}

#[test]
fn erase_removes_everything() {
    let e = env();
    let before = snapshot(&e);
    sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    let done = erase(&e.cfg, &e.rt, "web1").unwrap();
    assert_eq!(done, Erased { domain: true, dir: true, hosts_line: true });
    let after = snapshot(&e);
    assert_eq!((after.1, after.2), (before.1, before.2));
    assert!(after.0.is_empty(), "{:?}", after.0);
    assert!(matches!(erase(&e.cfg, &e.rt, "web1"), Err(Error::NotFound(_))));
}

#[test]
fn erase_refuses_others_and_cleans_leftovers() {
    let e = env();
    e.rt.define("<domain type='lxc'><name>other</name></domain>").unwrap();
    assert!(matches!(erase(&e.cfg, &e.rt, "other"), Err(Error::Foreign(_))));
    assert!(e.rt.domains.borrow().contains_key("other"));
    assert!(matches!(erase(&e.cfg, &e.rt, "Bad/"), Err(Error::Name(_))));
    // What a killed sysgen leaves: a partial directory and a hosts line.
    fs::create_dir_all(e.cfg.root.join("half.partial/etc")).unwrap();
    Hosts::new(&e.cfg.hosts).add("10.7.0.2".parse().unwrap(), "half").unwrap();
    let done = erase(&e.cfg, &e.rt, "half").unwrap();
    assert_eq!(done, Erased { domain: false, dir: true, hosts_line: true });
    assert!(!e.cfg.root.join("half.partial").exists());
}

#[test]
fn erase_waits_for_nobody_but_refuses_a_busy_name() {
    let e = env();
    sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    let held = name_lock(&e.cfg, "web1").unwrap();
    assert!(matches!(erase(&e.cfg, &e.rt, "web1"), Err(Error::Busy(_))));
    drop(held);
    erase(&e.cfg, &e.rt, "web1").unwrap();
}

#[test]
fn start_stop_sysstart() {
    let e = env();
    sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    assert!(!start(&e.cfg, &e.rt, "web1").unwrap(), "already running");
    assert!(stop(&e.cfg, &e.rt, "web1", Duration::from_secs(1)).unwrap());
    assert!(!stop(&e.cfg, &e.rt, "web1", Duration::from_secs(1)).unwrap());
    assert!(start(&e.cfg, &e.rt, "web1").unwrap());
    sysstart(&e.cfg, &e.rt, "web1", true).unwrap();
    assert!(list(&e.cfg, &e.rt).unwrap()[0].autostart);
    sysstart(&e.cfg, &e.rt, "web1", false).unwrap();
    assert!(!list(&e.cfg, &e.rt).unwrap()[0].autostart);
    for r in [start(&e.cfg, &e.rt, "nope").map(drop), sysstart(&e.cfg, &e.rt, "nope", true)] {
        assert!(matches!(r, Err(Error::NotFound(_))));
    }
    // A root removed behind lxcf's back is reported as such, not as a libvirt error.
    stop(&e.cfg, &e.rt, "web1", Duration::from_secs(1)).unwrap();
    fs::remove_dir_all(e.cfg.root.join("web1")).unwrap();
    assert!(matches!(start(&e.cfg, &e.rt, "web1"), Err(Error::RootMissing { .. })));
}

#[test]
fn other_roots_are_not_touched() {
    let e = env();
    sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    let mut other = e.cfg.clone();
    other.root = e.tmp.path().join("elsewhere");
    assert!(list(&other, &e.rt).unwrap().is_empty());
    assert!(matches!(erase(&other, &e.rt, "web1"), Err(Error::OtherRoot { .. })));
    assert!(matches!(stop(&other, &e.rt, "web1", Duration::from_secs(1)), Err(Error::OtherRoot { .. })));
    assert_eq!(list(&e.cfg, &e.rt).unwrap().len(), 1);
}

#[test]
fn own_root_inside_the_source_is_not_copied() {
    let mut e = env();
    // The containers' root lies inside the copied /var of the source.
    e.cfg.root = e.cfg.source.join("var/lib/lxcf");
    sysgen(&e.cfg, &e.rt, "a", None).unwrap();
    sysgen(&e.cfg, &e.rt, "b", None).unwrap();
    assert!(e.cfg.root.join("b/var/lib").is_dir());
    assert!(!e.cfg.root.join("b/var/lib/lxcf").exists(), "b must not contain a copy of a");
}

/// A stopped container with a file of its own in its root.
fn stopped_source(e: &Env) {
    sysgen(&e.cfg, &e.rt, "web1", Some(Model::Separate)).unwrap();
    stop(&e.cfg, &e.rt, "web1", Duration::from_secs(1)).unwrap();
    fs::write(e.cfg.root.join("web1/usr/bin/mine"), b"installed in web1").unwrap();
    fs::create_dir_all(e.cfg.root.join("web1/var/lib/systemd")).unwrap();
    fs::write(e.cfg.root.join("web1/var/lib/systemd/random-seed"), b"web1's seed").unwrap();
}

#[test]
fn clone_copies_the_root_and_gives_a_new_identity() {
    let e = env();
    stopped_source(&e);
    let c = clone(&e.cfg, &e.rt, "web1", "web2").unwrap();
    assert_eq!((c.meta.model, c.meta.ip.to_string().as_str(), c.state), (Model::Separate, "10.7.0.3", State::Running));
    assert_eq!(c.storage, Some(Backend::Dir));
    let (a, b) = (e.cfg.root.join("web1"), e.cfg.root.join("web2"));
    assert_eq!(fs::read(b.join("usr/bin/mine")).unwrap(), b"installed in web1");
    assert_eq!(fs::read_to_string(b.join("etc/hostname")).unwrap(), "web2\n");
    assert_eq!(fs::read_to_string(a.join("etc/hostname")).unwrap(), "web1\n", "the source is untouched");
    assert_ne!(fs::read(a.join("etc/machine-id")).unwrap(), fs::read(b.join("etc/machine-id")).unwrap());
    assert!(!b.join("var/lib/systemd/random-seed").exists());
    assert!(a.join("var/lib/systemd/random-seed").exists());
    assert!(fs::read_to_string(b.join("etc/hosts")).unwrap().contains("10.7.0.3\tweb2"));
    assert!(!e.cfg.root.join("web2.partial").exists());
    let hosts = fs::read_to_string(&e.cfg.hosts).unwrap();
    assert!(hosts.contains("10.7.0.2\tweb1") && hosts.contains("10.7.0.3\tweb2"), "{hosts}");
    let x = e.rt.domains.borrow()["web2"].0.clone();
    assert!(!x.contains("<mac"), "libvirt makes a new MAC: {x}");
    assert!(x.contains("<name>web2</name>") && x.contains(&format!("<source dir='{}'/>", b.display())), "{x}");
    let l = list(&e.cfg, &e.rt).unwrap();
    assert_eq!(l.iter().map(|c| (c.name.as_str(), c.state)).collect::<Vec<_>>(), [("web1", State::Stopped), ("web2", State::Running)]);
    assert!(l.iter().all(|c| c.storage == Some(Backend::Dir)));
    // A clone of a clone, and erase of both.
    stop(&e.cfg, &e.rt, "web2", Duration::from_secs(1)).unwrap();
    assert_eq!(clone(&e.cfg, &e.rt, "web2", "web3").unwrap().meta.ip.to_string(), "10.7.0.4");
    for n in ["web2", "web3"] {
        erase(&e.cfg, &e.rt, n).unwrap();
    }
    assert_eq!(list(&e.cfg, &e.rt).unwrap().len(), 1);
}

#[test]
fn clone_refuses_bad_input_and_changes_nothing() {
    let e = env();
    stopped_source(&e);
    sysgen(&e.cfg, &e.rt, "busy", None).unwrap();
    fs::create_dir_all(e.cfg.root.join("somedir")).unwrap();
    let before = snapshot(&e);
    let cases: Vec<(&str, &str, fn(&Error) -> bool)> = vec![
        ("nope", "web9", |e| matches!(e, Error::NotFound(_))),
        ("web1", "Bad/", |e| matches!(e, Error::Name(_))),
        ("web1", "busy", |e| matches!(e, Error::Taken { .. })),
        ("web1", "somedir", |e| matches!(e, Error::Taken { .. })),
        ("web1", "web1", |e| matches!(e, Error::Taken { .. })),
        ("busy", "web9", |e| matches!(e, Error::Running(_))),
    ];
    for (src, new, want) in cases {
        let err = clone(&e.cfg, &e.rt, src, new).unwrap_err();
        assert!(want(&err), "clone {src} {new}: {err}");
        assert!(err.hint().is_some(), "clone {src} {new}: {err} has a hint");
    }
    let err = clone(&e.cfg, &e.rt, "busy", "web9").unwrap_err();
    assert_eq!(err.to_string(), "container `busy` is running; only a stopped container can be cloned");
    assert_eq!(err.hint().unwrap(), "stop it first: `lxcf stop busy`");
    assert_eq!(snapshot(&e), before);
}

#[test]
fn clone_failing_late_undoes_all() {
    for op in ["define", "start", "read the XML of"] {
        let e = env();
        stopped_source(&e);
        let before = snapshot(&e);
        e.rt.fail(op);
        let err = clone(&e.cfg, &e.rt, "web1", "web2").unwrap_err();
        assert!(err.to_string().contains("injected"), "{op}: {err}");
        assert_eq!(snapshot(&e), before, "after a failing {op}");
    }
}
