//! The transaction against the fake machine and a fake runner that writes into
//! the upper directories as a package manager would: no root, no libvirt.

use super::*;
use crate::container::State;
use crate::maint::merge::tests::{tree, Tree};
use std::fs;
use std::sync::{Arc, Mutex};

pub(crate) use crate::container::tests::Env;

/// A host tree, a containers root and these containers (running), on the fake machine.
pub(crate) fn env(containers: &[(&str, Model)]) -> Env {
    // Not under /tmp: deploy refuses paths that are under /tmp in a container.
    let tmp = tempfile::Builder::new().prefix("lxcf-unit-").tempdir_in("/var/tmp").unwrap();
    let src = tmp.path().join("host");
    for d in ["usr/bin", "etc", "var/lib", "var/log", "root"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(src.join("etc/old.conf"), "from the host\n").unwrap();
    let text = format!(
        "[Paths]\nroot={}\nsource={}\nhosts={}\n[Network]\nname=tnet\nsubnet=10.7.0.0/24\n",
        tmp.path().join("lxc").display(),
        src.display(),
        tmp.path().join("hosts").display()
    );
    fs::write(tmp.path().join("hosts"), "").unwrap();
    let cfg = Config::parse(Path::new("test.conf"), &text).unwrap();
    let e = Env::on(tmp, cfg);
    for (n, m) in containers {
        e.sysgen_model(n, *m).unwrap();
    }
    e
}

/// Writes what a package install would into the upper; fails where told.
#[derive(Default)]
struct FakeRunner {
    fail_in: Option<&'static str>,
    /// This one reaches its time limit, as a command waiting for input would.
    times_out_in: Option<&'static str>,
    host_fails: bool,
    ran: Mutex<Vec<String>>,
    /// The time limit each run was given.
    timeouts: Mutex<Vec<Option<Duration>>>,
}

impl Runner for FakeRunner {
    fn container(&self, job: &Job) -> Outcome {
        self.ran.lock().unwrap().push(job.name.into());
        self.timeouts.lock().unwrap().push(job.timeout);
        let up = upper(job.work);
        fs::create_dir_all(up.join("etc/pkg")).unwrap();
        fs::write(up.join("etc/pkg/pkg.conf"), format!("conffile of {}\n", job.name)).unwrap();
        fs::create_dir_all(up.join("var/lib/pkg")).unwrap();
        fs::write(up.join("var/lib/pkg/status"), format!("installed in {}\n", job.name)).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, up.join("etc/old.conf"), rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0)
            .unwrap();
        if self.fail_in == Some(job.name) {
            return Outcome { code: Some(1), stderr: "postinst: failed\n".into(), ..Outcome::default() };
        }
        if self.times_out_in == Some(job.name) {
            return Outcome { signal: Some(9), timed_out: job.timeout, stdout: "Continue? [Y/n]".into(), ..Outcome::default() };
        }
        Outcome { code: Some(0), ..Outcome::default() }
    }

    fn host(&self, _: &[OsString], timeout: Option<Duration>) -> Outcome {
        self.ran.lock().unwrap().push("host".into());
        self.timeouts.lock().unwrap().push(timeout);
        Outcome { code: Some(if self.host_fails { 2 } else { 0 }), ..Outcome::default() }
    }
}

fn cmd() -> Vec<OsString> {
    vec!["dpkg".into(), "-i".into(), "/tmp/pkg.deb".into()]
}

fn state(e: &Env, n: &str) -> State {
    e.lx.rt.get(n).unwrap().unwrap().state
}

/// Every container's tree and state.
fn snapshot(e: &Env) -> Vec<(String, Tree, State)> {
    e.list().unwrap().into_iter().map(|c| (c.name.clone(), tree(&c.meta.root), c.state)).collect()
}

/// The front of `e` with `r` as its runner.
fn with(e: &Env, r: &Arc<FakeRunner>) -> Lxcf {
    e.with_cfg(e.cfg().clone()).with_runner(r.clone())
}

fn names(n: &[&str]) -> Vec<Name> {
    n.iter().map(|n| Name::new(*n).unwrap()).collect()
}

fn run(e: &Env, r: &Arc<FakeRunner>, to: Option<&[Name]>) -> (Report, Vec<String>) {
    run_for(e, r, to, None)
}

fn run_for(e: &Env, r: &Arc<FakeRunner>, to: Option<&[Name]>, timeout: Option<Duration>) -> (Report, Vec<String>) {
    let mut events = Vec::new();
    let c = cmd();
    let report = with(e, r).update(&Request { command: &c, to, timeout }, &mut |ev| events.push(format!("{ev:?}"))).unwrap();
    (report, events)
}

#[test]
fn every_run_succeeds_and_everything_is_kept() {
    let e = env(&[("a", Model::Joint), ("b", Model::Joint), ("c", Model::Separate)]);
    e.stop("b").unwrap();
    let r = Arc::new(FakeRunner::default());
    let (report, events) = run(&e, &r, None);
    assert!(report.committed, "{report:?}");
    assert_eq!(
        report.targets.iter().map(|t| (t.name.as_str(), t.status)).collect::<Vec<_>>(),
        [("a", Status::Updated), ("b", Status::Updated), ("c", Status::Updated), ("host", Status::Updated)]
    );
    for n in ["a", "b", "c"] {
        let root = e.cfg().root.join(n);
        assert_eq!(fs::read_to_string(root.join("etc/pkg/pkg.conf")).unwrap(), format!("conffile of {n}\n"));
        assert_eq!(fs::read_to_string(root.join("var/lib/pkg/status")).unwrap(), format!("installed in {n}\n"));
        assert!(!root.join("etc/old.conf").exists(), "{n}: the removal is applied");
    }
    // The host ran last, once; the containers that ran before run again, b stays stopped.
    assert_eq!(r.ran.lock().unwrap().last().unwrap(), "host");
    assert_eq!((state(&e, "a"), state(&e, "b"), state(&e, "c")), (State::Running, State::Stopped, State::Running));
    assert!(report.targets[0].downtime.is_some() && report.targets[1].downtime.is_none());
    assert!(events.iter().any(|e| e == "Stopping(\"a\")") && !events.iter().any(|e| e == "Stopping(\"b\")"), "{events:?}");
    assert!(events.iter().any(|e| e == "Started(\"c\")"), "{events:?}");
    assert!(!update_dir(e.cfg()).exists());
}

#[test]
fn a_failing_container_changes_nothing_anywhere() {
    let e = env(&[("a", Model::Joint), ("b", Model::Joint), ("c", Model::Joint)]);
    let before = snapshot(&e);
    let r = Arc::new(FakeRunner { fail_in: Some("b"), ..FakeRunner::default() });
    let (report, _) = run(&e, &r, None);
    assert!(!report.committed);
    let failed = report.failed().unwrap();
    assert_eq!((failed.name.as_str(), failed.outcome.as_ref().unwrap().stderr.as_str()), ("b", "postinst: failed\n"));
    assert_eq!(failed.outcome.as_ref().unwrap().describe(), "exit status 1");
    let host = report.targets.iter().find(|t| t.name == "host").unwrap();
    assert_eq!(host.status, Status::NotRun);
    assert!(!r.ran.lock().unwrap().contains(&"host".to_string()), "the host is not touched");
    for t in &report.targets {
        assert_ne!(t.status, Status::Updated, "{}", t.name);
    }
    assert_eq!(snapshot(&e), before, "trees and states as before");
    assert!(!update_dir(e.cfg()).exists());
}

#[test]
fn a_failing_host_changes_no_container() {
    let e = env(&[("a", Model::Joint), ("b", Model::Separate)]);
    let before = snapshot(&e);
    let r = Arc::new(FakeRunner { host_fails: true, ..FakeRunner::default() });
    let (report, _) = run(&e, &r, None);
    assert!(!report.committed);
    assert_eq!(report.failed().unwrap().name, "host");
    assert_eq!(report.targets[0].status, Status::RolledBack);
    assert_eq!(snapshot(&e), before);
}

#[test]
fn to_names_only_those_and_not_the_host() {
    let e = env(&[("a", Model::Joint), ("b", Model::Joint), ("c", Model::Joint)]);
    let c_before = tree(&e.cfg().root.join("c"));
    let r = Arc::new(FakeRunner::default());
    let names = names(&["a", "b", "a"]);
    let (report, events) = run(&e, &r, Some(&names));
    assert!(report.committed);
    assert_eq!(report.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    // Containers run in parallel: which of the two ran first is not fixed.
    let mut ran = r.ran.lock().unwrap().clone();
    ran.sort();
    assert_eq!(ran, ["a", "b"]);
    assert!(e.cfg().root.join("b/etc/pkg/pkg.conf").exists());
    assert_eq!(tree(&e.cfg().root.join("c")), c_before);
    assert!(!events.iter().any(|e| e.contains("\"c\"")), "c is not even stopped: {events:?}");
}

#[test]
fn unknown_names_are_refused_before_anything_happens() {
    let e = env(&[("a", Model::Joint)]);
    let before = snapshot(&e);
    let r = Arc::new(FakeRunner::default());
    let c = cmd();
    let names = names(&["a", "nope"]);
    let err = with(&e, &r).update(&Request { command: &c, to: Some(&names), timeout: None }, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::NotFound(ref n) if n == "nope"), "{err}");
    assert!(r.ran.lock().unwrap().is_empty());
    assert_eq!(snapshot(&e), before);
}

#[test]
fn without_containers_the_host_alone() {
    let e = env(&[]);
    let r = Arc::new(FakeRunner::default());
    let (report, _) = run(&e, &r, None);
    assert!(report.committed);
    assert_eq!(*r.ran.lock().unwrap(), ["host"]);
}

/// The state a crash leaves: the journal in `phase`, the containers stopped, an upper for each.
fn crashed(e: &Env, phase: Phase) {
    let dir = update_dir(e.cfg());
    fs::create_dir_all(&dir).unwrap();
    let mut members = Vec::new();
    for c in e.list().unwrap() {
        let up = upper(&dir.join(&c.name));
        fs::create_dir_all(up.join("etc")).unwrap();
        fs::write(up.join("etc/new.conf"), &c.name).unwrap();
        members.push(Member { name: c.name.clone(), model: c.meta.model.to_string(), root: c.meta.root.clone(), was_running: true });
        e.lx.rt.destroy(&c.name).unwrap();
    }
    Journal { phase, command: vec!["dpkg".into()], host: true, host_started: true, members }.write(&dir).unwrap();
}

#[test]
fn a_crash_before_the_commit_is_rolled_back() {
    let e = env(&[("a", Model::Joint), ("b", Model::Separate)]);
    let before = snapshot(&e);
    crashed(&e, Phase::Run);
    assert!(pending(e.cfg()));
    let r = recover(&e.lx).unwrap().unwrap();
    assert!(!r.committed && r.host_started);
    assert_eq!(r.containers, ["a", "b"]);
    assert_eq!(snapshot(&e), before, "as before, and running again");
    assert!(!pending(e.cfg()) && !update_dir(e.cfg()).exists());
    assert_eq!(recover(&e.lx).unwrap(), None);
}

#[test]
fn a_crash_during_the_commit_is_finished() {
    let e = env(&[("a", Model::Joint), ("b", Model::Joint)]);
    crashed(&e, Phase::Commit);
    // a was committed before the crash: its upper is gone already.
    fs::remove_dir_all(update_dir(e.cfg()).join("a")).unwrap();
    fs::write(e.cfg().root.join("a/etc/new.conf"), "a").unwrap();
    let r = recover(&e.lx).unwrap().unwrap();
    assert!(r.committed && !r.host_started);
    for n in ["a", "b"] {
        assert_eq!(fs::read_to_string(e.cfg().root.join(n).join("etc/new.conf")).unwrap(), n);
        assert_eq!(state(&e, n), State::Running);
    }
    assert!(!update_dir(e.cfg()).exists());
}

#[test]
fn an_update_first_recovers_an_interrupted_one() {
    let e = env(&[("a", Model::Joint)]);
    crashed(&e, Phase::Commit);
    let r = Arc::new(FakeRunner::default());
    let (report, events) = run(&e, &r, None);
    assert!(report.recovered.as_ref().unwrap().committed);
    assert!(events[0].starts_with("Recovered"), "{events:?}");
    assert!(e.cfg().root.join("a/etc/new.conf").exists() && e.cfg().root.join("a/etc/pkg/pkg.conf").exists());
}

#[test]
fn a_stop_failure_rolls_back() {
    let e = env(&[("a", Model::Joint), ("b", Model::Joint)]);
    let before = snapshot(&e);
    e.fake.fail("shut down");
    let c = cmd();
    let r = Arc::new(FakeRunner::default());
    let err = with(&e, &r).update(&Request { command: &c, to: None, timeout: None }, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Update(UpdateError::Stop(_))), "{err}");
    assert!(r.ran.lock().unwrap().is_empty());
    assert_eq!(snapshot(&e), before);
    assert!(!pending(e.cfg()));
}

/// An update that cannot be finished (here its journal is damaged) is reported by
/// every command, which then goes on: `list` works. Containers that may take part in
/// it refuse to start until it is finished; with a readable journal, only its members.
#[test]
fn an_update_that_cannot_finish_blocks_only_its_members() {
    #[derive(Default)]
    struct Notes(Mutex<Vec<String>>);
    impl crate::Reporter for Notes {
        fn found(&self, what: &str) {
            self.0.lock().unwrap().push(what.into());
        }
    }
    let e = env(&[("a", Model::Joint), ("b", Model::Joint)]);
    e.stop("a").unwrap();
    e.stop("b").unwrap();
    let dir = update_dir(e.cfg());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(journal::FILE), "{ damaged").unwrap();

    let notes = Arc::new(Notes::default());
    let lx = e.with_cfg(e.cfg().clone()).with_reporter(notes.clone());
    assert_eq!(lx.list(std::time::Duration::from_millis(1)).unwrap().len(), 2, "list works");
    assert!(notes.0.lock().unwrap()[0].starts_with("an interrupted `lxcf update` cannot be finished: "), "{:?}", notes.0.lock().unwrap());
    let one = |n: &str| lx.start(&[Name::new(n).unwrap()], 1, &|_, _| {}).unwrap().pop().unwrap().1;
    let err = one("a").unwrap_err();
    assert!(matches!(err, Error::UpdatePending(ref n) if n == "a"), "{err}");
    assert_eq!(err.kind(), crate::Kind::Conflict);

    // Readable: only the members are held back.
    let m = Member { name: "a".into(), model: "joint".into(), root: e.cfg().root.join("a"), was_running: false };
    let j = Journal { phase: Phase::Commit, command: vec!["dpkg".into()], host: true, host_started: true, members: vec![m] };
    j.write(&dir).unwrap();
    assert!(pending_for(e.cfg(), "a") && !pending_for(e.cfg(), "b"));
    fs::write(dir.join(journal::FILE), "{ damaged").unwrap();
    assert!(pending_for(e.cfg(), "b"), "unreadable: any container may take part");
}

#[test]
fn every_run_gets_the_time_limit() {
    let e = env(&[("a", Model::Joint), ("b", Model::Separate)]);
    let r = Arc::new(FakeRunner::default());
    let limit = Some(Duration::from_secs(7));
    let (report, _) = run_for(&e, &r, None, limit);
    assert!(report.committed);
    assert_eq!(*r.timeouts.lock().unwrap(), [limit; 3], "a, b and the host");
    let r = Arc::new(FakeRunner::default());
    run_for(&e, &r, None, None);
    assert_eq!(*r.timeouts.lock().unwrap(), [None; 3]);
}

#[test]
fn a_run_that_times_out_rolls_back_like_a_failure() {
    let e = env(&[("a", Model::Joint), ("b", Model::Joint)]);
    let before = snapshot(&e);
    let r = Arc::new(FakeRunner { times_out_in: Some("b"), ..FakeRunner::default() });
    let (report, _) = run_for(&e, &r, None, Some(Duration::from_secs(2)));
    assert!(!report.committed);
    let failed = report.failed().unwrap();
    assert_eq!(failed.name, "b");
    assert_eq!(failed.outcome.as_ref().unwrap().describe(), "timed out after 2 s and killed");
    assert!(!r.ran.lock().unwrap().contains(&"host".to_string()), "the host is not touched");
    assert_eq!(snapshot(&e), before, "trees and states as before: running again");
    assert!(!pending(e.cfg()));
}
