//! The resource commands against the fake machine: what changes, in which order,
//! live or not, and that nothing changes (or everything is put back) when something
//! is wrong.

use super::*;
use crate::container::tests::{env, snapshot, Env};
use crate::container::Create;
use crate::resources::{CpuQuota, IdSet, Settings};

fn calls(e: &Env) -> Vec<(&'static str, bool)> {
    e.fake.state().calls.iter().map(|(_, c, live)| (*c, *live)).collect()
}

fn clear(e: &Env) {
    e.fake.state().calls.clear();
}

/// web1's definition and what it runs with.
fn settings(e: &Env) -> (Settings, Settings) {
    let s = e.fake.state();
    let c = &s.containers["web1"];
    (c.spec.resources.clone(), c.live.clone())
}

fn tune(e: &Env, name: &str, r: &[Request]) -> Result<Applied> {
    e.lx.tune(&Name::new(name)?, r)
}

#[test]
fn a_running_container_changes_now_and_later() {
    let e = env();
    e.sysgen("web1").unwrap();
    clear(&e);
    let done = tune(&e, "web1", &[Request::Cpurate("50".into())]).unwrap();
    assert!(done.live);
    assert_eq!(done.changes, vec![Setting::CpuQuota(Some(CpuQuota { period: 100_000, quota: 200_000 }))]);
    assert_eq!(calls(&e), [("cpurate", true)]);
    let (conf, live) = settings(&e);
    assert_eq!(conf.cpu_quota, Some(CpuQuota { period: 100_000, quota: 200_000 }));
    assert_eq!(live, conf);

    // What the runtime does not apply live, lxcf does through the host.
    clear(&e);
    tune(&e, "web1", &[Request::Cpun("1-2".into()), Request::NetOut("1M".into())]).unwrap();
    assert_eq!(calls(&e), [("cpun", true), ("net_in/net_out", true), ("shape", true)]);
    let (conf, live) = settings(&e);
    assert_eq!((live.cpus.clone(), live.net_out), (Some(IdSet::parse("1-2").unwrap()), Some(1 << 20)));
    assert_eq!(live, conf);

    // Stopped: the definition only; the next start brings it.
    e.stop("web1").unwrap();
    let done = tune(&e, "web1", &[Request::Memlimit("1G".into())]).unwrap();
    assert!(!done.live);
    assert_eq!(settings(&e).1.mem, None);
    clear(&e);
    e.start("web1").unwrap();
    assert_eq!(settings(&e).1.mem, Some(1 << 30));
    assert_eq!(calls(&e), [("shape", true)], "lxcf's own start shapes the network too");
}

#[test]
fn bad_input_changes_nothing() {
    let e = env();
    e.sysgen("web1").unwrap();
    tune(&e, "web1", &[Request::Memlimit("1G".into())]).unwrap();
    clear(&e);
    let conf = settings(&e);
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
        let err = tune(&e, "web1", &r).unwrap_err();
        assert!(matches!(err, crate::Error::Resource(ref x) if x.is_usage()), "{r:?}: {err}");
        assert_eq!(err.kind(), crate::Kind::Usage);
    }
    let err = tune(&e, "ghost", &[Request::Cpurate("20".into())]).unwrap_err();
    assert!(matches!(err, crate::Error::NotFound(_)), "{err}");
    assert!(calls(&e).is_empty(), "no change was even tried: {:?}", calls(&e));
    assert_eq!(settings(&e), conf);
    assert_eq!(snapshot(&e), before);
}

#[test]
fn a_failure_half_way_puts_everything_back() {
    let e = env();
    e.sysgen("web1").unwrap();
    tune(&e, "web1", &[Request::Memlimit("1G".into()), Request::Memswlimit("2G".into())]).unwrap();
    let before = settings(&e);
    clear(&e);
    // The definition takes the new memswlimit, then the running container refuses it.
    e.fake.fail("memswlimit");
    let r = [Request::Cpurate("10".into()), Request::Memlimit("3G".into()), Request::Memswlimit("4G".into())];
    assert!(tune(&e, "web1", &r).is_err());
    assert_eq!(settings(&e), before, "the definition and the running container are as before");
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
        vec![Request::Memswlimit("2G".into()), Request::Memlimit("1G".into()), Request::Cpun("1-2".into()), Request::NetOut("1M".into())];
    e.create("web1", &Create { resources: r, ..Create::default() }).unwrap();
    assert_eq!(calls(&e), [("shape", true)], "defined with its settings, started, then the network shaped");
    let (conf, live) = settings(&e);
    assert_eq!((live.mem, live.memsw, live.net_out), (Some(1 << 30), Some(2 << 30), Some(1 << 20)));
    assert_eq!(live.cpus, Some(IdSet::parse("1-2").unwrap()));
    assert_eq!(live, conf);
}

#[test]
fn sysgen_with_bad_settings_builds_nothing() {
    let e = env();
    let before = snapshot(&e);
    let r = vec![Request::Memlimit("1G".into()), Request::Cpurate("101".into())];
    assert!(e.create("web1", &Create { resources: r, ..Create::default() }).is_err());
    assert_eq!(snapshot(&e), before);
    // A failure to shape the network once it runs: the whole sysgen is undone.
    e.fake.fail("shape");
    assert!(e.create("web1", &Create { resources: vec![Request::NetIn("1M".into())], ..Create::default() }).is_err());
    assert_eq!(snapshot(&e), before);
}

#[test]
fn a_start_whose_rates_fail_is_stopped() {
    let e = env();
    e.create("web1", &Create { resources: vec![Request::NetIn("1M".into())], ..Create::default() }).unwrap();
    e.stop("web1").unwrap();
    e.fake.fail("shape");
    assert!(e.start("web1").is_err());
    assert_eq!(e.list().unwrap()[0].state, State::Stopped);
}

#[test]
fn show_reports_configured_and_effective() {
    let e = env();
    e.sysgen("web1").unwrap();
    let r = [
        Request::Cpurate("25".into()),
        Request::Memlimit("512M".into()),
        Request::Blkio(Throttle::WriteIops, "/".into(), "100".into()),
        Request::NetIn("1M".into()),
    ];
    tune(&e, "web1", &r).unwrap();
    let web1 = Name::new("web1").unwrap();
    let rep = e.lx.show(&web1).unwrap();
    assert_eq!((rep.state, rep.cgroup), (State::Running, Some("v1")));
    assert_eq!((rep.root, rep.storage), (e.cfg().root.join("web1"), Some(crate::rootfs::storage::Backend::Dir)));
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

    e.stop("web1").unwrap();
    let rep = e.lx.show(&web1).unwrap();
    assert!(rep.cgroup.is_none() && rep.rows.iter().all(|r| r.effective.is_none()));
    assert_eq!(rep.rows.iter().find(|r| r.setting == "memlimit").unwrap().configured, Value::Bytes(512 << 20));
}
