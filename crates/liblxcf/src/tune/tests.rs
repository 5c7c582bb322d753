//! The resource commands against the fake runtime and a fake host: what changes, in
//! which order, live or not, and that nothing changes (or everything is put back)
//! when something is wrong.

use super::*;
use crate::ops::tests::{env, snapshot};
use crate::resources::tests::FakeHost;
use crate::resources::{CpuQuota, IdSet};

fn req(r: &[Request]) -> Vec<Request> {
    r.to_vec()
}

fn calls(e: &crate::ops::tests::Env) -> Vec<(&'static str, bool)> {
    e.rt.calls.borrow().iter().map(|(_, c, live)| (*c, *live)).collect()
}

#[test]
fn a_running_container_changes_now_and_later() {
    let e = env();
    crate::ops::sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    e.rt.calls.borrow_mut().clear();
    let done = set_on(&e.cfg, &e.rt, &FakeHost, "web1", &req(&[Request::Cpurate("50".into())])).unwrap();
    assert!(done.live);
    assert_eq!(done.changes, vec![Setting::CpuQuota(Some(CpuQuota { period: 100_000, quota: 200_000 }))]);
    assert_eq!(calls(&e), [("cpurate", true)]);
    let conf = e.rt.config.borrow()["web1"].clone();
    assert_eq!(conf.cpu_quota, Some(CpuQuota { period: 100_000, quota: 200_000 }));
    assert_eq!(e.rt.live.borrow()["web1"], conf);

    // Stopped: the definition only; the next start brings it.
    crate::ops::stop(&e.cfg, &e.rt, "web1", std::time::Duration::from_secs(1)).unwrap();
    let done = set_on(&e.cfg, &e.rt, &FakeHost, "web1", &req(&[Request::Memlimit("1G".into())])).unwrap();
    assert!(!done.live);
    assert_eq!(e.rt.live.borrow()["web1"].mem, None);
    e.rt.calls.borrow_mut().clear();
    crate::ops::start(&e.cfg, &e.rt, "web1").unwrap();
    assert_eq!(e.rt.live.borrow()["web1"].mem, Some(1 << 30));
    assert_eq!(calls(&e), [("reapply", true)], "lxcf's own start shapes the network too");
}

#[test]
fn bad_input_changes_nothing() {
    let e = env();
    crate::ops::sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    set_on(&e.cfg, &e.rt, &FakeHost, "web1", &req(&[Request::Memlimit("1G".into())])).unwrap();
    e.rt.calls.borrow_mut().clear();
    let conf = e.rt.config.borrow().clone();
    let before = snapshot(&e);
    let bad: Vec<Vec<Request>> = vec![
        vec![Request::Cpurate("0".into())],
        vec![Request::Cpun("9".into())],
        vec![Request::Numa("5".into())],
        vec![Request::Memlimit("0".into())],
        vec![Request::Memswlimit("512M".into())],
        vec![Request::Blkio(Throttle::ReadBps, "/proc".into(), "1M".into())],
        vec![Request::NetIn("-1".into())],
        // Good requests before a bad one are not applied either.
        vec![Request::Cpurate("20".into()), Request::Memlimit("4G".into()), Request::Numa("7".into())],
    ];
    for r in bad {
        let err = set_on(&e.cfg, &e.rt, &FakeHost, "web1", &r).unwrap_err();
        assert!(matches!(err, crate::ops::Error::Resource(ref x) if x.is_usage()), "{r:?}: {err}");
    }
    let err = set_on(&e.cfg, &e.rt, &FakeHost, "ghost", &req(&[Request::Cpurate("20".into())])).unwrap_err();
    assert!(matches!(err, crate::ops::Error::NotFound(_)), "{err}");
    assert!(calls(&e).is_empty(), "no change was even tried: {:?}", calls(&e));
    assert_eq!(*e.rt.config.borrow(), conf);
    assert_eq!(snapshot(&e), before);
}

#[test]
fn a_failure_half_way_puts_everything_back() {
    let e = env();
    crate::ops::sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    set_on(&e.cfg, &e.rt, &FakeHost, "web1", &req(&[Request::Memlimit("1G".into()), Request::Memswlimit("2G".into())])).unwrap();
    let conf = e.rt.config.borrow()["web1"].clone();
    let live = e.rt.live.borrow()["web1"].clone();
    e.rt.calls.borrow_mut().clear();
    // The definition takes the new memswlimit, then the running container refuses it.
    e.rt.fail("memswlimit");
    let r = req(&[Request::Cpurate("10".into()), Request::Memlimit("3G".into()), Request::Memswlimit("4G".into())]);
    assert!(set_on(&e.cfg, &e.rt, &FakeHost, "web1", &r).is_err());
    assert_eq!(e.rt.config.borrow()["web1"], conf, "the definition is as before");
    assert_eq!(e.rt.live.borrow()["web1"], live, "and the running container");
    assert_eq!(
        calls(&e),
        [("cpurate", true), ("memswlimit", true), ("memswlimit", true), ("cpurate", true)],
        "memswlimit is raised first (above the old one), fails, and is put back; then cpurate"
    );
}

#[test]
fn sysgen_puts_settings_in_the_definition_before_the_first_start() {
    let e = env();
    let r =
        req(&[Request::Memswlimit("2G".into()), Request::Memlimit("1G".into()), Request::Cpun("1-2".into()), Request::NetOut("1M".into())]);
    sysgen_on(&e.cfg, &e.rt, &FakeHost, "web1", None, &r).unwrap();
    assert_eq!(calls(&e), [("memlimit", false), ("memswlimit", false), ("cpun", false), ("net_in/net_out", false), ("reapply", true)]);
    let live = e.rt.live.borrow()["web1"].clone();
    assert_eq!((live.mem, live.memsw, live.net_out), (Some(1 << 30), Some(2 << 30), Some(1 << 20)));
    assert_eq!(live.cpus, Some(IdSet::parse("1-2").unwrap()));
}

#[test]
fn sysgen_with_bad_settings_builds_nothing() {
    let e = env();
    let before = snapshot(&e);
    let r = req(&[Request::Memlimit("1G".into()), Request::Cpurate("101".into())]);
    assert!(sysgen_on(&e.cfg, &e.rt, &FakeHost, "web1", None, &r).is_err());
    assert_eq!(snapshot(&e), before);
    // A setting libvirt refuses after the domain was defined: the whole sysgen is undone.
    e.rt.fail("cpun");
    assert!(sysgen_on(&e.cfg, &e.rt, &FakeHost, "web1", None, &req(&[Request::Cpun("1".into())])).is_err());
    assert_eq!(snapshot(&e), before);
    // So is a failure to shape the network once it runs.
    e.rt.fail("reapply");
    assert!(sysgen_on(&e.cfg, &e.rt, &FakeHost, "web1", None, &req(&[Request::NetIn("1M".into())])).is_err());
    assert_eq!(snapshot(&e), before);
}

#[test]
fn a_start_whose_rates_fail_is_stopped() {
    let e = env();
    crate::ops::sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    crate::ops::stop(&e.cfg, &e.rt, "web1", std::time::Duration::from_secs(1)).unwrap();
    e.rt.fail("reapply");
    assert!(crate::ops::start(&e.cfg, &e.rt, "web1").is_err());
    assert_eq!(e.rt.domain("web1").unwrap().unwrap().state, State::Stopped);
}

#[test]
fn show_reports_configured_and_effective() {
    let e = env();
    crate::ops::sysgen(&e.cfg, &e.rt, "web1", None).unwrap();
    let r = req(&[
        Request::Cpurate("25".into()),
        Request::Memlimit("512M".into()),
        Request::Blkio(Throttle::WriteIops, "/".into(), "100".into()),
        Request::NetIn("1M".into()),
    ]);
    set_on(&e.cfg, &e.rt, &FakeHost, "web1", &r).unwrap();
    let sys = e.tmp.path().join("no-sys");
    let rep = show_on(&e.cfg, &e.rt, &FakeHost, &sys, "web1").unwrap();
    assert_eq!((rep.state, rep.cgroup), (State::Running, Some("v1")));
    assert_eq!((rep.root, rep.storage), (e.cfg.root.join("web1"), Some(crate::storage::Backend::Dir)));
    let row = |s: &str, dev: Option<&str>| rep.rows.iter().find(|r| r.setting == s && r.device.as_deref() == dev).cloned().unwrap();
    assert_eq!(row("cpurate", None).configured, Value::Percent(25.0));
    assert_eq!(row("cpurate", None).effective, Some(Value::Percent(25.0)));
    assert_eq!(row("memlimit", None).configured.to_string(), "512M");
    assert_eq!(row("memswlimit", None).configured, Value::Unlimited);
    assert_eq!(row("cpun", None).configured.to_string(), "all");
    assert_eq!(row("blkioops_w", Some("/dev/sda")).configured, Value::Count(100));
    assert_eq!(row("blkioops_w", Some("/dev/sda")).effective, Some(Value::Count(100)));
    assert_eq!(row("blkio_r", Some("-")).configured, Value::Unlimited);
    assert_eq!(row("net_in", None).effective, Some(Value::Bytes(1 << 20)));
    assert_eq!(row("net_in", None).configured.to_json(), serde_json::json!(1048576));
    assert_eq!(row("net_out", None).configured.to_json(), serde_json::Value::Null);
    assert_eq!(rep.rows.len(), 11);

    crate::ops::stop(&e.cfg, &e.rt, "web1", std::time::Duration::from_secs(1)).unwrap();
    let rep = show_on(&e.cfg, &e.rt, &FakeHost, &sys, "web1").unwrap();
    assert!(rep.cgroup.is_none() && rep.rows.iter().all(|r| r.effective.is_none()));
    assert_eq!(rep.rows.iter().find(|r| r.setting == "memlimit").unwrap().configured, Value::Bytes(512 << 20));
}
