//! Parsing, arithmetic and the checks before any change: no root needed.

use super::*;

/// The fake machine's host: CPUs 0-3, NUMA nodes 0-1, one disk, /dev/sda.
fn host() -> crate::fake::Fake {
    crate::fake::Fake::default()
}

#[test]
fn sizes_are_exact_powers_of_1024() {
    let ok = [
        ("0", 0),
        ("1", 1),
        ("2147483648", 2 << 30),
        ("500K", 500 << 10),
        ("500k", 500 << 10),
        ("512M", 512 << 20),
        ("2G", 2 << 30),
        ("1.5G", 1610612736),
        ("0.5K", 512),
        ("1T", 1 << 40),
        (" 10M ", 10 << 20),
        ("16777215T", 16777215 << 40),
    ];
    for (s, want) in ok {
        assert_eq!(parse_bytes(s), Ok(want), "{s}");
    }
    let bad = [
        ("", "not a number"),
        ("M", "not a number"),
        ("-5", "negative"),
        ("-5M", "negative"),
        ("1.3M", "not a whole number of bytes"),
        ("0.1", "not a whole number of bytes"),
        ("1.", "not a number"),
        (".5G", "not a number"),
        ("10X", "not a number"),
        ("1e6", "not a number"),
        ("10 M", "not a number"),
        ("16777216T", "too large"),
        ("18446744073709551616", "too large"),
        ("99999999999999999999999999999999999999999", "too large"),
    ];
    for (s, why) in bad {
        let e = parse_bytes(s).unwrap_err().to_string();
        assert!(e.contains(why), "{s}: {e}");
    }
}

#[test]
fn sizes_print_in_the_largest_exact_unit() {
    for (n, s) in [(0, "0"), (1000, "1000"), (1024, "1K"), (1610612736, "1536M"), (2 << 30, "2G"), (3 << 40, "3T")] {
        assert_eq!(fmt_size(n), s);
        assert_eq!(parse_bytes(s), Ok(n), "printing and parsing agree");
    }
}

#[test]
fn id_lists() {
    let s = IdSet::parse("0-3,6").unwrap();
    assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 6]);
    assert_eq!(s.to_string(), "0-3,6");
    assert_eq!(IdSet::parse("3,1,2,2").unwrap().to_string(), "1-3", "sorted, merged, deduplicated");
    assert_eq!(IdSet::parse("0\n").unwrap().to_string(), "0", "as /sys writes it");
    assert!(IdSet::parse("").unwrap().is_empty(), "an empty cpuset file");
    for bad in ["0-", "-1", "3-1", "a", "1,,2", "1-2-3", "0x1", "70000", "1 2"] {
        assert!(IdSet::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn cpurate_is_quota_over_period_times_online_cpus() {
    // 50 % of a 4-CPU host is two CPUs' worth: 200000 µs per 100000 µs.
    assert_eq!(CpuQuota::from_percent(50, 4), Some(CpuQuota { period: 100_000, quota: 200_000 }));
    assert_eq!(CpuQuota::from_percent(30, 2), Some(CpuQuota { period: 100_000, quota: 60_000 }));
    assert_eq!(CpuQuota::from_percent(1, 1), Some(CpuQuota { period: 100_000, quota: 1_000 }), "the kernel's minimum, 1 ms");
    assert_eq!(CpuQuota::from_percent(100, 4), None, "100 % is no limit");
    let q = CpuQuota::from_percent(37, 3).unwrap();
    assert_eq!(q.quota, 111_000);
    assert_eq!(q.percent(3), 37.0, "and back, exactly");
    assert_eq!(CpuQuota { period: 100_000, quota: 150_000 }.percent(4), 37.5);
}

fn plan1(r: Request) -> Result<Vec<Setting>, ResourceError> {
    plan(&[r], &Settings::default(), &host())
}

#[test]
fn each_command_parses() {
    let q = |p| Some(CpuQuota { period: 100_000, quota: p });
    let cases = [
        (Request::Cpun("1-2".into()), Setting::Cpus(Some(IdSet::parse("1-2").unwrap()))),
        (Request::Cpun("all".into()), Setting::Cpus(None)),
        (Request::Cpun("unlimited".into()), Setting::Cpus(None)),
        (Request::Cpurate("25".into()), Setting::CpuQuota(q(100_000))),
        (Request::Cpurate("25%".into()), Setting::CpuQuota(q(100_000))),
        (Request::Cpurate("100".into()), Setting::CpuQuota(None)),
        (Request::Cpurate("unlimited".into()), Setting::CpuQuota(None)),
        (Request::Numa("1".into()), Setting::Nodes(Some(IdSet::parse("1").unwrap()))),
        (Request::Numa("all".into()), Setting::Nodes(None)),
        (Request::Memlimit("1.5G".into()), Setting::Mem(Some(1610612736))),
        (Request::Memlimit("unlimited".into()), Setting::Mem(None)),
        (Request::Memswlimit("Unlimited".into()), Setting::Memsw(None)),
        (Request::Blkio(Throttle::ReadBps, "/".into(), "10M".into()), Setting::Blkio("/dev/sda".into(), Throttle::ReadBps, Some(10 << 20))),
        (Request::Blkio(Throttle::WriteBps, "/x".into(), "0".into()), Setting::Blkio("/dev/sda".into(), Throttle::WriteBps, None)),
        (Request::Blkio(Throttle::ReadIops, "/x".into(), "300".into()), Setting::Blkio("/dev/sda".into(), Throttle::ReadIops, Some(300))),
        (
            Request::Blkio(Throttle::WriteIops, "/x".into(), "unlimited".into()),
            Setting::Blkio("/dev/sda".into(), Throttle::WriteIops, None),
        ),
        (Request::NetIn("1M".into()), Setting::Net { inbound: Some(1 << 20), outbound: None }),
        (Request::NetOut("0".into()), Setting::Net { inbound: None, outbound: None }),
    ];
    for (r, want) in cases {
        assert_eq!(plan1(r.clone()).unwrap(), vec![want], "{r:?}");
    }
}

#[test]
fn bad_input_is_refused_with_its_reason() {
    let cases: Vec<(Request, &str)> = vec![
        (Request::Cpurate("0".into()), "invalid cpurate `0`: outside 1..100"),
        (Request::Cpurate("101".into()), "outside 1..100"),
        (Request::Cpurate("-5".into()), "outside 1..100"),
        (Request::Cpurate("50.5".into()), "not a whole percent"),
        (Request::Cpurate("x".into()), "not a whole percent"),
        (Request::Cpun("4".into()), "CPU 4 is not online on this host (online: 0-3)"),
        (Request::Cpun("0-9".into()), "CPU 4 is not online"),
        (Request::Cpun("1,,2".into()), "invalid cpun"),
        (Request::Cpun("".into()), "empty list"),
        (Request::Numa("2".into()), "NUMA node 2 does not exist on this host (nodes with memory: 0-1)"),
        (Request::Numa("0-".into()), "invalid numa `0-`: `0-` lacks a number"),
        (Request::Memlimit("0".into()), "zero"),
        (Request::Memlimit("0K".into()), "zero"),
        (Request::Memlimit("1000".into()), "not a whole number of KiB"),
        (Request::Memlimit("9000000T".into()), "too large"),
        (Request::Memlimit("-1G".into()), "negative"),
        (Request::Memswlimit("abc".into()), "not a number"),
        // Zero pages, or too few for systemd to boot: the container would be killed.
        (Request::Memlimit("1024".into()), "invalid memlimit `1024`: below the minimum of 64M"),
        (Request::Memlimit("1K".into()), "below the minimum of 64M"),
        (Request::Memlimit("65535K".into()), "below the minimum of 64M"),
        (Request::Memswlimit("32M".into()), "invalid memswlimit `32M`: below the minimum of 64M"),
        (Request::Blkio(Throttle::ReadBps, "/proc/1".into(), "1M".into()), "/proc/1 is not on a block device"),
        (Request::Blkio(Throttle::ReadBps, "/".into(), "-1".into()), "invalid blkio_r `-1`: negative"),
        (Request::Blkio(Throttle::ReadIops, "/".into(), "1K".into()), "invalid blkioops_r `1K`: not a whole number"),
        (Request::Blkio(Throttle::WriteIops, "/".into(), "-3".into()), "negative"),
        (Request::Blkio(Throttle::WriteBps, "/".into(), "9223372036854775808".into()), "too large"),
        (Request::NetIn("fast".into()), "invalid net_in `fast`"),
        (Request::NetOut("-10M".into()), "invalid net_out `-10M`: negative"),
    ];
    for (r, want) in cases {
        let e = plan1(r.clone()).unwrap_err();
        assert!(e.to_string().contains(want), "{r:?}: {e}");
        assert!(e.is_usage() && e.hint().is_some(), "{r:?}");
    }
}

/// The minimum is accepted, for both limits; sysgen's options go through the same plan.
#[test]
fn the_memory_minimum_is_allowed() {
    assert_eq!(MIN_MEMORY, 64 << 20);
    assert_eq!(plan1(Request::Memlimit("64M".into())).unwrap(), vec![Setting::Mem(Some(64 << 20))]);
    assert_eq!(plan1(Request::Memlimit("65536K".into())).unwrap(), vec![Setting::Mem(Some(64 << 20))]);
    let both = plan(&[Request::Memlimit("64M".into()), Request::Memswlimit("64M".into())], &Settings::default(), &host()).unwrap();
    assert_eq!(both, vec![Setting::Mem(Some(64 << 20)), Setting::Memsw(Some(64 << 20))]);
    // The hint says what is allowed.
    let e = plan1(Request::Memlimit("1024".into())).unwrap_err();
    assert!(e.is_usage() && e.hint().unwrap().contains("at least 64M"), "{:?}", e.hint());
}

#[test]
fn one_bad_request_refuses_them_all() {
    let reqs = [Request::Memlimit("1G".into()), Request::Cpurate("30".into()), Request::Cpun("7".into())];
    assert!(matches!(plan(&reqs, &Settings::default(), &host()), Err(ResourceError::NoCpu { cpu: 7, .. })));
}

#[test]
fn memory_and_swap_stay_ordered() {
    let none = Settings::default();
    let with = |mem, memsw| Settings { mem, memsw, ..Settings::default() };
    let g = |n: u64| n << 30;
    // memswlimit alone, or below memlimit, is refused.
    assert!(matches!(plan(&[Request::Memswlimit("2G".into())], &none, &host()), Err(ResourceError::MemswWithoutMem)));
    let e = plan(&[Request::Memswlimit("1G".into())], &with(Some(g(2)), None), &host()).unwrap_err();
    assert_eq!(e.to_string(), "memswlimit 1G is below memlimit 2G");
    let e = plan(&[Request::Memlimit("3G".into())], &with(Some(g(1)), Some(g(2))), &host()).unwrap_err();
    assert_eq!(e.to_string(), "memswlimit 2G is below memlimit 3G");
    let e = plan(&[Request::Memlimit("unlimited".into())], &with(Some(g(1)), Some(g(2))), &host()).unwrap_err();
    assert!(matches!(e, ResourceError::MemswNeedsMem { .. }), "{e}");
    // Equal is fine; removing memswlimit first is fine.
    assert!(plan(&[Request::Memswlimit("1G".into())], &with(Some(g(1)), None), &host()).is_ok());
    assert!(plan(&[Request::Memswlimit("unlimited".into())], &with(Some(g(1)), Some(g(2))), &host()).is_ok());
    // Other settings do not trip over an odd pair made elsewhere (virsh).
    assert!(plan(&[Request::Cpurate("10".into())], &with(None, Some(g(1))), &host()).is_ok());

    // Both at once: each step keeps memory <= memory+swap.
    let order = |cur: &Settings, mem: &str, memsw: &str| -> Vec<&'static str> {
        let reqs = [Request::Memswlimit(memsw.into()), Request::Memlimit(mem.into())];
        plan(&reqs, cur, &host()).unwrap().iter().map(Setting::command).collect()
    };
    assert_eq!(order(&none, "1G", "2G"), ["memlimit", "memswlimit"], "from nothing: memory first");
    assert_eq!(order(&with(Some(g(1)), Some(g(2))), "3G", "4G"), ["memswlimit", "memlimit"], "raising past the old memsw");
    assert_eq!(order(&with(Some(g(3)), Some(g(4))), "1G", "2G"), ["memlimit", "memswlimit"], "lowering");
    assert!(plan(&[Request::Memlimit("2G".into()), Request::Memswlimit("1G".into())], &none, &host()).is_err());
}

#[test]
fn requests_merge() {
    // The later of two requests for one setting wins; the two rates go together.
    let cur = Settings { net_out: Some(5), ..Settings::default() };
    let p = plan(
        &[
            Request::Cpurate("10".into()),
            Request::NetIn("1K".into()),
            Request::Cpurate("20".into()),
            Request::Blkio(Throttle::ReadBps, "/a".into(), "1".into()),
            Request::Blkio(Throttle::WriteBps, "/a".into(), "2".into()),
        ],
        &cur,
        &host(),
    )
    .unwrap();
    assert_eq!(
        p,
        vec![
            Setting::CpuQuota(Some(CpuQuota { period: 100_000, quota: 80_000 })),
            Setting::Blkio("/dev/sda".into(), Throttle::ReadBps, Some(1)),
            Setting::Blkio("/dev/sda".into(), Throttle::WriteBps, Some(2)),
            Setting::Net { inbound: Some(1024), outbound: Some(5) },
        ]
    );
}

#[test]
fn settings_apply_and_restore() {
    let mut s = Settings { mem: Some(1 << 30), ..Settings::default() };
    let before = s.clone();
    let changes = [
        Setting::Mem(None),
        Setting::Blkio("/dev/sda".into(), Throttle::ReadIops, Some(10)),
        Setting::Net { inbound: Some(1), outbound: None },
        Setting::Cpus(Some(IdSet::parse("1").unwrap())),
    ];
    let backs: Vec<Setting> = changes.iter().map(|c| s.restoring(c)).collect();
    for c in &changes {
        s.apply(c);
    }
    assert_eq!(s.blkio.len(), 1);
    for b in backs.iter().rev() {
        s.apply(b);
    }
    assert_eq!(s, before);
}

#[test]
fn sysgen_blkio_options() {
    assert_eq!(
        Request::blkio(Throttle::ReadBps, "/dev/sda,10M").unwrap(),
        Request::Blkio(Throttle::ReadBps, "/dev/sda".into(), "10M".into())
    );
    assert_eq!(
        Request::blkio(Throttle::WriteIops, "/srv/a,b,5").unwrap(),
        Request::Blkio(Throttle::WriteIops, "/srv/a,b".into(), "5".into()),
        "the last comma splits"
    );
    assert!(Request::blkio(Throttle::ReadBps, "/dev/sda").unwrap_err().to_string().contains("expected DEVICE,RATE"));
    assert!(Request::blkio(Throttle::ReadBps, ",5").is_err());
}

#[test]
fn changes_read_as_commands() {
    assert_eq!(Setting::Mem(Some(512 << 20)).to_string(), "memlimit 512M");
    assert_eq!(Setting::CpuQuota(CpuQuota::from_percent(30, 2)).to_string(), "cpurate: quota 60000 µs per 100000 µs");
    assert_eq!(Setting::Blkio("/dev/sda".into(), Throttle::ReadIops, Some(100)).to_string(), "blkioops_r /dev/sda 100");
    assert_eq!(Setting::Net { inbound: None, outbound: Some(1 << 20) }.to_string(), "net_in unlimited, net_out 1M");
    assert_eq!(Setting::Cpus(None).to_string(), "cpun all");
}

/// A new container's definition gets its settings in an order libvirt takes: memory
/// before memory+swap when both are new, memory+swap first when memory grows above
/// the old memory+swap; removed throttles are removed.
#[test]
fn changes_from_one_set_of_settings_to_another() {
    let g = |n: u64| n << 30;
    let mut want = Settings { mem: Some(g(1)), memsw: Some(g(2)), net_out: Some(1 << 20), ..Settings::default() };
    want.blkio.insert(("/dev/sda".into(), Throttle::ReadBps), 1 << 20);
    let c = Settings::default().changes_to(&want);
    assert_eq!(
        c,
        [
            Setting::Mem(Some(g(1))),
            Setting::Memsw(Some(g(2))),
            Setting::Blkio("/dev/sda".into(), Throttle::ReadBps, Some(1 << 20)),
            Setting::Net { inbound: None, outbound: Some(1 << 20) }
        ]
    );
    let mut now = Settings::default();
    for s in &c {
        now.apply(s);
    }
    assert_eq!(now, want);
    let bigger = Settings { mem: Some(g(3)), memsw: Some(g(4)), ..Settings::default() };
    assert_eq!(want.changes_to(&bigger)[..2], [Setting::Memsw(Some(g(4))), Setting::Mem(Some(g(3)))]);
    assert!(want.changes_to(&bigger).contains(&Setting::Blkio("/dev/sda".into(), Throttle::ReadBps, None)));
    assert!(want.changes_to(&want).is_empty());
}
