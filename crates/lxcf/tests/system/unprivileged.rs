//! Unprivileged containers (issue 11): a user namespace and a range of host IDs of
//! their own, the host's trees ID-mapped and read-only, a capability policy. Each
//! check here held the other way for the containers of lxcf 0.1.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use crate::common::*;
use crate::faults::assert_clean;

/// The first host ID of `name`'s range, as `lxcf show --json` gives it.
fn first_id(env: &Env, name: &str) -> Option<u64> {
    let o = env.lxcf(&["show", name, "--json"]).ok("show --json");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["privileged"], v["ids"].is_null(), "{v}");
    v["ids"]["first"].as_u64()
}

fn uid_map(env: &Env, name: &str) -> Vec<String> {
    env.exec(name, &["/bin/cat", "/proc/self/uid_map"]).ok("uid_map").stdout.split_whitespace().map(String::from).collect()
}

/// errno of open_by_handle_at(2) on the container's `/`, through python3's ctypes
/// (0: it opened): with CAP_DAC_READ_SEARCH of the host, any file of the file
/// system could be opened by its handle.
const BY_HANDLE: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(8 + 128)
ctypes.c_uint.from_buffer(buf).value = 128
mnt = ctypes.c_int()
if libc.name_to_handle_at(-100, b"/etc", buf, ctypes.byref(mnt), 0) != 0:
    raise SystemExit("name_to_handle_at: " + os.strerror(ctypes.get_errno()))
fd = libc.open_by_handle_at(os.open("/", os.O_RDONLY), buf, 0)
print(0 if fd >= 0 else ctypes.get_errno())
"#;

#[test]
fn root_in_a_joint_container_owns_nothing_of_the_host() {
    let Some(env) = Env::new() else { return };
    let c = env.name("u");
    env.lxcf(&["sysgen", &c]).ok("sysgen");
    env.assert_running(&c);
    let base = first_id(&env, &c).expect("a new container has a range");
    assert!(base >= 1_000_000, "{base}");
    assert_eq!(uid_map(&env, &c), ["0", &base.to_string(), "65536"]);

    // The host's /usr: its owners as on the host, read-only, not to be remounted.
    assert_eq!(env.exec(&c, &["/usr/bin/stat", "-c", "%u:%g", "/usr/bin/passwd"]).ok("stat").stdout.trim(), "0:0");
    env.exec(&c, &["/bin/su", "-s", "/bin/true", "nobody"]).ok("setuid root works inside");
    let o = env.exec(&c, &["/bin/mount", "-o", "remount,bind,rw", "/usr"]);
    assert_ne!(o.code, 0, "remounting /usr read-write: {}", o.stdout);
    assert_ne!(env.exec(&c, &["/usr/bin/touch", "/usr/lxcf-pwned"]).code, 0);
    assert!(!std::path::Path::new("/usr/lxcf-pwned").exists());

    // What root inside must not do to the host.
    assert_ne!(env.exec(&c, &["/bin/mknod", "/tmp/lxcf-disk", "b", "8", "0"]).code, 0, "mknod of a disk");
    assert_ne!(env.exec(&c, &["/bin/date", "-s", "@0"]).code, 0, "setting the clock");
    assert_ne!(env.exec(&c, &["/bin/sh", "-c", "echo 0 > /proc/sys/kernel/sysrq"]).code, 0, "a host sysctl");
    let o = env.exec(&c, &["/bin/sh", "-c", "touch /etc/lxcf-i && chattr +i /etc/lxcf-i"]);
    assert_ne!(o.code, 0, "an immutable file, which erase would have to undo");
    let by_handle = env.exec(&c, &["/usr/bin/python3", "-c", BY_HANDLE]).ok("python3").stdout;
    assert_eq!(by_handle.trim(), "1", "open_by_handle_at: EPERM expected");
    let init = init_pid(&c);
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let bnd = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).map(|h| u64::from_str_radix(h.trim(), 16).unwrap()).unwrap();
    for (cap, bit) in [("sys_rawio", 17), ("sys_module", 16), ("sys_time", 25), ("mac_override", 32), ("mac_admin", 33)] {
        assert_eq!(bnd & (1 << bit), 0, "{cap} in CapBnd {bnd:x}");
    }

    // On the host: what it makes and what it runs belong to its range.
    env.exec(&c, &["/usr/bin/touch", "/root/made-inside"]).ok("touch inside");
    let m = std::fs::metadata(format!("/proc/{init}/root/root/made-inside")).unwrap();
    assert_eq!((m.uid() as u64, m.gid() as u64), (base, base));
    let ps = run(Command::new("ps").args(["-o", "uid=", "--ppid", &init.to_string()])).ok("ps").stdout;
    let uids: Vec<u64> = ps.split_whitespace().map(|u| u.parse().unwrap()).collect();
    assert!(!uids.is_empty() && uids.iter().all(|&u| (base..base + 65536).contains(&u)), "{uids:?} outside {base}");
    // lxcf's own exec is root inside too.
    assert_eq!(env.lxcf(&["exec", &c, "--", "id", "-u"]).ok("lxcf exec").stdout.trim(), "0");
    assert_clean(&env, "an unprivileged container");
}

#[test]
fn privileged_only_on_request_and_converted_when_stopped() {
    let Some(env) = Env::new() else { return };
    let p = env.name("p");
    env.lxcf(&["sysgen", "--privileged", &p]).ok("sysgen --privileged");
    env.assert_running(&p);
    assert_eq!(first_id(&env, &p), None);
    assert_eq!(uid_map(&env, &p), ["0", "0", "4294967295"]);
    let listed = list_json(&env).into_iter().find(|c| c["name"] == p.as_str()).unwrap();
    assert_eq!(listed["privileged"], true);
    env.exec(&p, &["/usr/bin/touch", "/root/made-privileged"]).ok("touch");

    // Running: refused, nothing changed.
    let o = env.lxcf(&["unprivilege", &p]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("is running") && o.stderr.contains("lxcf stop"), "{}", o.stderr);
    assert_eq!(first_id(&env, &p), None);

    env.lxcf(&["stop", &p]).ok("stop");
    env.lxcf(&["unprivilege", &p]).ok("unprivilege");
    env.lxcf(&["start", &p]).ok("start");
    env.assert_running(&p);
    let base = first_id(&env, &p).expect("a range after unprivilege");
    assert_eq!(uid_map(&env, &p), ["0", &base.to_string(), "65536"]);
    // Its files kept the owners it sees.
    assert_eq!(env.exec(&p, &["/usr/bin/stat", "-c", "%u", "/root/made-privileged"]).ok("stat").stdout.trim(), "0");
    assert_clean(&env, "unprivilege");
}

/// Made at the same moment, containers still get ranges that never meet: under
/// one configuration, and under two with roots of their own (IDs are the host's).
#[test]
fn concurrent_containers_never_share_a_range() {
    let Some(env) = Env::new() else { return };
    let Some(other) = Env::new() else { return };
    let names: Vec<(String, &Env)> =
        vec![(env.name("r0"), &env), (env.name("r1"), &env), (other.name("r2"), &other), (other.name("r3"), &other)];
    let workers: Vec<_> = names
        .iter()
        .map(|(n, e)| {
            let (config, n) = (e.config.clone(), n.clone());
            std::thread::spawn(move || run(Command::new(LXCF).env("LXCF_CONFIG", &config).args(["sysgen", &n])).ok("sysgen"))
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut firsts: Vec<u64> = names.iter().map(|(n, e)| first_id(e, n).unwrap()).collect();
    firsts.sort();
    for w in firsts.windows(2) {
        assert!(w[1] >= w[0] + 65536, "ranges meet: {firsts:?}");
    }
    assert_clean(&env, "four at once");
    assert_clean(&other, "four at once");
}

#[test]
fn a_bad_privileged_setting_is_refused() {
    let Some(env) = Env::new() else { return };
    let conf = env.dir.path().join("bad.conf");
    std::fs::write(&conf, "[Model]\nprivileged=maybe\n").unwrap();
    let o = run(Command::new(LXCF).arg("--config").arg(&conf).args(["list"]));
    assert_eq!(o.code, 7, "{}", o.stderr);
    assert!(o.stderr.contains("line 2") && o.stderr.contains("expected yes or no"), "{}", o.stderr);
}
