//! The commands against the fake machine, in temporary directories: no root, no libvirt.

use super::lifecycle::Erased;
use super::*;
use crate::fake::Fake;
use crate::net::NetError;
use crate::rootfs::layout::Model;
use crate::Config;
use std::fs;
use std::os::unix::fs::symlink;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct Env {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) lx: Lxcf,
    pub(crate) fake: Arc<Fake>,
}

/// A host tree and a configuration in a temporary directory, on a fake machine.
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
        // Privileged: the fake machine has no user namespaces (unprivileged
        // containers are tested on real ones, tests/system/unprivileged.rs).
        "[Model]\nmodel=joint\nprivileged=yes\n[Paths]\nroot={}\nsource={}\nhosts={}\n[Network]\nname=tnet\nsubnet=10.7.0.0/29\n",
        tmp.path().join("lxc").display(),
        src.display(),
        hosts.display()
    );
    let cfg = Config::parse(Path::new("test.conf"), &text).unwrap();
    Env::on(tmp, cfg)
}

fn one<T>(mut r: Vec<(Name, Result<T>)>) -> Result<T> {
    assert_eq!(r.len(), 1);
    r.pop().unwrap().1
}

impl Env {
    pub(crate) fn on(tmp: tempfile::TempDir, cfg: Config) -> Env {
        let fake = Arc::new(Fake::default());
        Env { tmp, lx: Lxcf::new(cfg, fake.clone(), fake.clone()), fake }
    }

    /// The same machine seen through another configuration.
    pub(crate) fn with_cfg(&self, cfg: Config) -> Lxcf {
        Lxcf::new(cfg, self.fake.clone(), self.fake.clone())
    }

    pub(crate) fn cfg(&self) -> &Config {
        &self.lx.cfg
    }

    pub(crate) fn sysgen(&self, name: &str) -> Result<Container> {
        self.create(name, &Create::default())
    }

    pub(crate) fn sysgen_model(&self, name: &str, model: Model) -> Result<Container> {
        self.create(name, &Create { model: Some(model), ..Create::default() })
    }

    pub(crate) fn create(&self, name: &str, c: &Create) -> Result<Container> {
        one(self.lx.sysgen(&[Name::new(name)?], c, 1, &|_, _| {})?)
    }

    pub(crate) fn erase(&self, name: &str) -> Result<Erased> {
        one(self.lx.erase(&[Name::new(name)?], 1, &|_, _| {})?)
    }

    pub(crate) fn start(&self, name: &str) -> Result<bool> {
        one(self.lx.start(&[Name::new(name)?], 1, &|_, _| {})?)
    }

    pub(crate) fn stop(&self, name: &str) -> Result<bool> {
        one(self.lx.stop(&[Name::new(name)?], Duration::from_secs(1), 1, &|_, _| {})?)
    }

    pub(crate) fn sysstart(&self, name: &str, on: bool) -> Result<()> {
        one(self.lx.sysstart(&[Name::new(name)?], on, 1, &|_, _| {})?)
    }

    pub(crate) fn list(&self) -> Result<Vec<Container>> {
        self.lx.containers()
    }

    pub(crate) fn clone_c(&self, src: &str, new: &str) -> Result<Container> {
        self.lx.clone_container(&Name::new(src)?, &Name::new(new)?)
    }
}

/// Everything a command could change: the files under the root (lock files aside),
/// the hosts file and the containers.
pub(crate) fn snapshot(e: &Env) -> (Vec<PathBuf>, String, Vec<String>) {
    let mut files = Vec::new();
    let root = &e.cfg().root;
    if root.exists() {
        let mut stack = vec![root.clone()];
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
    let hosts = fs::read_to_string(&e.cfg().hosts).unwrap();
    (files, hosts, e.fake.names())
}

#[test]
fn sysgen_creates_and_starts() {
    let e = env();
    let c = e.sysgen("web1").unwrap();
    assert_eq!(c.meta.model, Model::Joint);
    assert_eq!(c.meta.ip.to_string(), "10.7.0.2");
    let dir = e.cfg().root.join("web1");
    assert_eq!(fs::read_to_string(dir.join("etc/hostname")).unwrap(), "web1\n");
    assert!(!e.cfg().root.join("web1.partial").exists());
    assert!(fs::read_to_string(&e.cfg().hosts).unwrap().contains("10.7.0.2\tweb1"));
    let l = e.list().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].name.as_str(), l[0].state), ("web1", State::Running));
    assert!(e.fake.state().networks.contains("tnet"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&e.cfg().root).unwrap().permissions().mode() & 0o777, 0o700);

    // The model can be chosen per container.
    let c = e.sysgen_model("db1", Model::Separate).unwrap();
    assert_eq!((c.meta.model, c.meta.ip.to_string().as_str()), (Model::Separate, "10.7.0.3"));
    assert!(e.cfg().root.join("db1/usr/bin").is_dir());
}

#[test]
fn bad_names_change_nothing() {
    let e = env();
    let before = snapshot(&e);
    for n in ["", "a/b", "..", "a b", "Web1", "-x", &"x".repeat(64)] {
        let err = e.sysgen(n).unwrap_err();
        assert!(matches!(err, Error::Name(_)), "{n}: {err}");
        assert!(err.hint().is_some());
    }
    assert_eq!(snapshot(&e), before);
}

#[test]
fn taken_names_change_nothing() {
    let e = env();
    e.sysgen("web1").unwrap();
    // A libvirt domain lxcf did not make.
    e.fake.add_foreign("other");
    fs::create_dir_all(e.cfg().root.join("somedir")).unwrap();
    Hosts::new(&e.cfg().hosts).add("10.7.0.6".parse().unwrap(), "inhosts").unwrap();
    let before = snapshot(&e);
    for (n, why) in [("web1", "lxcf container"), ("other", "libvirt domain"), ("somedir", "exists"), ("inhosts", "hosts")] {
        let err = e.sysgen(n).unwrap_err();
        assert!(matches!(err, Error::Taken { .. }), "{n}: {err}");
        assert!(err.to_string().contains(why), "{n}: {err}");
    }
    assert_eq!(snapshot(&e), before);
}

#[test]
fn failure_at_each_late_step_undoes_all() {
    for op in ["define", "start", "start network"] {
        let e = env();
        e.sysgen("keep").unwrap();
        let before = snapshot(&e);
        e.fake.fail(op);
        let err = e.sysgen("web1").unwrap_err();
        assert!(err.to_string().contains("injected"), "{op}: {err}");
        assert_eq!(snapshot(&e), before, "after a failing {op}");
    }
}

#[test]
fn failure_while_building_undoes_all() {
    let e = env();
    let before = snapshot(&e);
    // No /etc in the source: the root cannot be built.
    fs::remove_dir_all(e.cfg().source.join("etc")).unwrap();
    let err = e.sysgen("web1").unwrap_err();
    assert!(err.to_string().contains("/etc"), "{err}");
    assert_eq!(snapshot(&e).1, before.1);
    assert!(!e.cfg().root.join("web1.partial").exists());
    assert!(!e.cfg().root.join("web1").exists());
    assert!(e.fake.names().is_empty());
}

#[test]
fn full_subnet_is_refused() {
    let e = env();
    // 10.7.0.0/29: hosts .1 to .6, .1 is the gateway: five containers.
    for i in 0..5 {
        e.sysgen(&format!("c{i}")).unwrap();
    }
    let before = snapshot(&e);
    let err = e.sysgen("c5").unwrap_err();
    assert!(matches!(err, Error::Net(NetError::Full { .. })), "{err}");
    assert!(err.hint().unwrap().contains("subnet"));
    assert_eq!(snapshot(&e), before);
    // An erased container's address is reused.
    e.erase("c1").unwrap();
    assert_eq!(e.sysgen("c5").unwrap().meta.ip.to_string(), "10.7.0.3");
}

#[test]
fn erase_removes_everything() {
    let e = env();
    let before = snapshot(&e);
    e.sysgen("web1").unwrap();
    let done = e.erase("web1").unwrap();
    assert_eq!(done, Erased { domain: true, dir: true, hosts_line: true });
    let after = snapshot(&e);
    assert_eq!((after.1, after.2), (before.1, before.2));
    assert!(after.0.is_empty(), "{:?}", after.0);
    assert!(matches!(e.erase("web1"), Err(Error::NotFound(_))));
}

#[test]
fn erase_refuses_others_and_cleans_leftovers() {
    let e = env();
    e.fake.add_foreign("other");
    assert!(matches!(e.erase("other"), Err(Error::Foreign(_))));
    assert!(e.fake.names().contains(&"other".to_string()));
    assert!(matches!(e.erase("Bad/"), Err(Error::Name(_))));
    // What a killed sysgen leaves: a partial directory lxcf recorded, a hosts line.
    fs::create_dir_all(e.cfg().root.join("half.partial/etc")).unwrap();
    e.lx.record_root_ids("half", None).unwrap();
    Hosts::new(&e.cfg().hosts).add("10.7.0.2".parse().unwrap(), "half").unwrap();
    let done = e.erase("half").unwrap();
    assert_eq!(done, Erased { domain: false, dir: true, hosts_line: true });
    assert!(!e.cfg().root.join("half.partial").exists());
    assert!(!e.lx.recorded("half"));
}

/// `[Paths] root` may hold directories of others (`/srv/lxc/backup`): erase removes
/// only roots lxcf recorded, or that an lxcf domain names.
#[test]
fn a_directory_lxcf_did_not_make_is_not_erased() {
    let e = env();
    fs::create_dir_all(e.cfg().root.join("backup/data")).unwrap();
    fs::create_dir_all(e.cfg().root.join("other.partial")).unwrap();
    let before = snapshot(&e);
    for n in ["backup", "other"] {
        let err = e.erase(n).unwrap_err();
        assert!(matches!(err, Error::NotOurs { .. }), "{n}: {err}");
        assert_eq!(err.kind(), crate::Kind::Conflict);
        assert!(err.to_string().contains("was not made by lxcf"), "{err}");
    }
    assert_eq!(snapshot(&e), before);
}

/// What records a killed command: its intent, whose lock is free. The next command
/// (any) undoes a sysgen or clone, finishes an erase, puts a resource change back,
/// and says so.
#[test]
fn the_next_command_settles_what_a_killed_one_left() {
    #[derive(Default)]
    struct Notes(std::sync::Mutex<Vec<String>>);
    impl crate::Reporter for Notes {
        fn found(&self, what: &str) {
            self.0.lock().unwrap().push(what.into());
        }
    }
    let e = env();
    let before = snapshot(&e);
    let notes = Arc::new(Notes::default());
    let lx = e.with_cfg(e.cfg().clone()).with_reporter(notes.clone());
    for n in ["web1", "db1", "app"] {
        e.sysgen(n).unwrap();
    }
    let app = Name::new("app").unwrap();
    e.lx.tune(&app, &[crate::resources::Request::Cpun("1".into())]).unwrap();
    let was = e.fake.state().containers["app"].spec.resources.clone();
    // A sysgen killed after it had done everything but forget its intent.
    e.lx.begin("web1", intent::Intent::Sysgen).unwrap().keep();
    // An erase killed after it stopped and undefined db1.
    e.lx.begin("db1", intent::Intent::Erase).unwrap().keep();
    e.fake.state().containers.remove("db1");
    // A resource change killed after it was made: its intent still says how it was.
    e.lx.begin("app", intent::Intent::Tune { before: crate::resources::Settings::default() }).unwrap().keep();
    lx.containers().unwrap();
    assert!(notes.0.lock().unwrap().is_empty(), "only commands recover: {:?}", notes.0.lock().unwrap());

    let names = lx.list(Duration::from_millis(1)).unwrap().into_iter().map(|s| s.container.name).collect::<Vec<_>>();
    assert_eq!(names, ["app"]);
    let mut notes = notes.0.lock().unwrap().clone();
    notes.sort();
    assert_eq!(
        notes,
        [
            "an interrupted `lxcf erase db1` was finished",
            "an interrupted `lxcf sysgen web1` was undone",
            "an interrupted resource change of app was put back"
        ]
    );
    assert_ne!(was, crate::resources::Settings::default());
    let s = e.fake.state();
    assert_eq!((s.containers["app"].spec.resources.cpus.clone(), s.containers["app"].live.cpus.clone()), (None, None));
    drop(s);
    let (files, hosts, _) = snapshot(&e);
    assert!(files.iter().all(|f| f.starts_with(e.cfg().root.join("app"))), "{files:?}");
    assert_eq!(hosts.lines().filter(|l| l.contains("web1") || l.contains("db1")).count(), 0, "{hosts}");
    assert!(!e.lx.recorded("web1") && !e.lx.recorded("db1") && e.lx.recorded("app"));
    assert_ne!(snapshot(&e), before);
    // Nothing is left to settle.
    assert!(e.lx.intent_names().unwrap().is_empty());
}

/// A name whose intent's lock is held belongs to a command still running: left alone.
#[test]
fn an_intent_whose_command_runs_is_left_alone() {
    let e = env();
    e.sysgen("web1").unwrap();
    let held = e.lx.name_lock("web1").unwrap();
    e.lx.begin("web1", intent::Intent::Sysgen).unwrap().keep();
    e.list().unwrap();
    e.lx.list(Duration::from_millis(1)).unwrap();
    assert_eq!(e.list().unwrap().len(), 1);
    drop(held);
    e.lx.list(Duration::from_millis(1)).unwrap();
    assert!(e.list().unwrap().is_empty());
}

#[test]
fn check_finds_and_repairs_what_is_safe() {
    let e = env();
    e.sysgen("web1").unwrap();
    e.sysgen("db1").unwrap();
    let hosts = Hosts::new(&e.cfg().hosts);
    hosts.remove("web1").unwrap();
    hosts.add("10.7.0.5".parse().unwrap(), "ghost").unwrap();
    fs::create_dir_all(e.cfg().root.join("half.partial/etc")).unwrap();
    e.lx.record_root_ids("half", None).unwrap();
    e.lx.record_root_ids("gone", None).unwrap();
    fs::remove_dir_all(e.cfg().root.join("db1")).unwrap();
    fs::create_dir_all(e.cfg().root.join("stray")).unwrap();
    let r = e.lx.check(false).unwrap();
    let found: Vec<(&str, &str)> = r.findings.iter().map(|f| (f.check, f.name.as_str())).collect();
    for want in [
        ("hosts-missing", "web1"),
        ("hosts-stale", "ghost"),
        ("partial", "half"),
        ("record", "gone"),
        ("root-missing", "db1"),
        ("orphan-root", "stray"),
    ] {
        assert!(found.contains(&want), "{want:?} in {found:?}");
    }
    assert!(r.findings.iter().all(|f| !f.repaired));
    let r = e.lx.check(true).unwrap();
    let left: Vec<&str> = r.left().map(|f| f.check).collect();
    assert_eq!(left, ["root-missing", "orphan-root"], "{r:?}");
    assert!(e.cfg().root.join("stray").exists(), "not lxcf's: not touched");
    let r = e.lx.check(false).unwrap();
    assert_eq!(r.findings.iter().map(|f| f.check).collect::<Vec<_>>(), ["root-missing", "orphan-root"]);
}

#[test]
fn erase_waits_for_nobody_but_refuses_a_busy_name() {
    let e = env();
    e.sysgen("web1").unwrap();
    let held = e.lx.name_lock("web1").unwrap();
    assert!(matches!(e.erase("web1"), Err(Error::Busy(_))));
    drop(held);
    e.erase("web1").unwrap();
}

#[test]
fn start_stop_sysstart() {
    let e = env();
    e.sysgen("web1").unwrap();
    assert!(!e.start("web1").unwrap(), "already running");
    assert!(e.stop("web1").unwrap());
    assert!(!e.stop("web1").unwrap());
    assert!(e.start("web1").unwrap());
    e.sysstart("web1", true).unwrap();
    assert!(e.list().unwrap()[0].autostart);
    e.sysstart("web1", false).unwrap();
    assert!(!e.list().unwrap()[0].autostart);
    for r in [e.start("nope").map(drop), e.sysstart("nope", true)] {
        assert!(matches!(r, Err(Error::NotFound(_))));
    }
    // A root removed behind lxcf's back is reported as such, not as a libvirt error.
    e.stop("web1").unwrap();
    fs::remove_dir_all(e.cfg().root.join("web1")).unwrap();
    assert!(matches!(e.start("web1"), Err(Error::RootMissing { .. })));
}

#[test]
fn other_roots_are_not_touched() {
    let e = env();
    e.sysgen("web1").unwrap();
    let mut other = e.cfg().clone();
    other.root = e.tmp.path().join("elsewhere");
    let other = e.with_cfg(other);
    let web1 = [Name::new("web1").unwrap()];
    assert!(other.containers().unwrap().is_empty());
    assert!(matches!(one(other.erase(&web1, 1, &|_, _| {}).unwrap()), Err(Error::OtherRoot { .. })));
    assert!(matches!(one(other.stop(&web1, Duration::from_secs(1), 1, &|_, _| {}).unwrap()), Err(Error::OtherRoot { .. })));
    assert_eq!(e.list().unwrap().len(), 1);
}

#[test]
fn own_root_inside_the_source_is_not_copied() {
    let e = env();
    // The containers' root lies inside the copied /var of the source.
    let mut cfg = e.cfg().clone();
    cfg.root = cfg.source.join("var/lib/lxcf");
    let e = Env::on(e.tmp, cfg);
    e.sysgen("a").unwrap();
    e.sysgen("b").unwrap();
    assert!(e.cfg().root.join("b/var/lib").is_dir());
    assert!(!e.cfg().root.join("b/var/lib/lxcf").exists(), "b must not contain a copy of a");
}

/// A stopped container with a file of its own in its root.
fn stopped_source(e: &Env) {
    e.sysgen_model("web1", Model::Separate).unwrap();
    e.stop("web1").unwrap();
    fs::write(e.cfg().root.join("web1/usr/bin/mine"), b"installed in web1").unwrap();
    fs::create_dir_all(e.cfg().root.join("web1/var/lib/systemd")).unwrap();
    fs::write(e.cfg().root.join("web1/var/lib/systemd/random-seed"), b"web1's seed").unwrap();
}

#[test]
fn clone_copies_the_root_and_gives_a_new_identity() {
    let e = env();
    stopped_source(&e);
    let c = e.clone_c("web1", "web2").unwrap();
    assert_eq!((c.meta.model, c.meta.ip.to_string().as_str(), c.state), (Model::Separate, "10.7.0.3", State::Running));
    assert_eq!(c.storage, Some(Backend::Dir));
    let (a, b) = (e.cfg().root.join("web1"), e.cfg().root.join("web2"));
    assert_eq!(fs::read(b.join("usr/bin/mine")).unwrap(), b"installed in web1");
    assert_eq!(fs::read_to_string(b.join("etc/hostname")).unwrap(), "web2\n");
    assert_eq!(fs::read_to_string(a.join("etc/hostname")).unwrap(), "web1\n", "the source is untouched");
    assert_ne!(fs::read(a.join("etc/machine-id")).unwrap(), fs::read(b.join("etc/machine-id")).unwrap());
    assert!(!b.join("var/lib/systemd/random-seed").exists());
    assert!(a.join("var/lib/systemd/random-seed").exists());
    assert!(fs::read_to_string(b.join("etc/hosts")).unwrap().contains("10.7.0.3\tweb2"));
    assert!(!e.cfg().root.join("web2.partial").exists());
    let hosts = fs::read_to_string(&e.cfg().hosts).unwrap();
    assert!(hosts.contains("10.7.0.2\tweb1") && hosts.contains("10.7.0.3\tweb2"), "{hosts}");
    let x = e.fake.state().containers["web2"].spec.clone();
    assert!(x.interfaces.iter().all(|i| i.mac.is_none()), "the runtime makes a new MAC: {x:?}");
    assert_eq!((x.name.as_str(), x.meta.root.as_path()), ("web2", b.as_path()));
    let l = e.list().unwrap();
    assert_eq!(l.iter().map(|c| (c.name.as_str(), c.state)).collect::<Vec<_>>(), [("web1", State::Stopped), ("web2", State::Running)]);
    assert!(l.iter().all(|c| c.storage == Some(Backend::Dir)));
    // A clone of a clone, and erase of both.
    e.stop("web2").unwrap();
    assert_eq!(e.clone_c("web2", "web3").unwrap().meta.ip.to_string(), "10.7.0.4");
    for n in ["web2", "web3"] {
        e.erase(n).unwrap();
    }
    assert_eq!(e.list().unwrap().len(), 1);
}

#[test]
fn clone_refuses_bad_input_and_changes_nothing() {
    let e = env();
    stopped_source(&e);
    e.sysgen("busy").unwrap();
    fs::create_dir_all(e.cfg().root.join("somedir")).unwrap();
    let before = snapshot(&e);
    type Case<'a> = (&'a str, &'a str, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        ("nope", "web9", |e| matches!(e, Error::NotFound(_))),
        ("web1", "Bad/", |e| matches!(e, Error::Name(_))),
        ("web1", "busy", |e| matches!(e, Error::Taken { .. })),
        ("web1", "somedir", |e| matches!(e, Error::Taken { .. })),
        ("web1", "web1", |e| matches!(e, Error::Taken { .. })),
        ("busy", "web9", |e| matches!(e, Error::Running(_))),
    ];
    for (src, new, want) in cases {
        let err = e.clone_c(src, new).unwrap_err();
        assert!(want(&err), "clone {src} {new}: {err}");
        assert!(err.hint().is_some(), "clone {src} {new}: {err} has a hint");
    }
    let err = e.clone_c("busy", "web9").unwrap_err();
    assert_eq!(err.to_string(), "container `busy` is running; only a stopped container can be cloned");
    assert_eq!(err.hint().unwrap(), "stop it first: `lxcf stop busy`");
    assert_eq!(snapshot(&e), before);
}

#[test]
fn clone_failing_late_undoes_all() {
    for op in ["define", "start", "read the definition of"] {
        let e = env();
        stopped_source(&e);
        let before = snapshot(&e);
        e.fake.fail(op);
        let err = e.clone_c("web1", "web2").unwrap_err();
        assert!(err.to_string().contains("injected"), "{op}: {err}");
        assert_eq!(snapshot(&e), before, "after a failing {op}");
    }
}
