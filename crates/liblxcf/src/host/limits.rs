//! Host limits that decide how many containers fit, checked before `sysgen` and
//! `start` so that a container is refused with a reason instead of dying silently.
//!
//! The kernel counts some resources per user, and every container runs as the
//! host's root (and its service users are the host's uids too): at the distribution
//! default of 128 inotify instances per user, the 16th systemd container fails to
//! start with a bare "Child process unexpected exit status 1". Others bite later:
//! inotify watches, kernel keys (per uid, shared by the same service user in every
//! container), ptys, threads and PIDs, the neighbour table of the bridge, open files.
//! `scripts/setup-host` raises them (/etc/sysctl.d/90-lxcf.conf); this module
//! estimates what the running containers plus the new ones need and compares.
//!
//! The per-container figures are what a joint container of a Debian 12 host takes
//! when idle (systemd, journald, dbus, cron, PostgreSQL), rounded up with room to
//! grow. Where the kernel shows the live total (ptys, threads, open files) that is
//! used instead of an estimate for the containers already running. The proc root
//! is a parameter so that the arithmetic is unit-tested on fake files.

use std::path::{Path, PathBuf};

/// What a limit is compared with.
#[derive(Debug, Clone, Copy)]
enum Base {
    /// An estimate: the host itself needs this many, each running container `per`.
    Estimate(u64),
    /// The kernel's live count, in this file under the proc root (first number,
    /// or the number after `/` in /proc/loadavg), plus `extra`.
    Live(&'static str, u64),
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    /// sysctl name.
    key: &'static str,
    /// What one more container needs.
    per: u64,
    base: Base,
    /// What to suggest (setup-host's value where it sets one).
    suggest: u64,
}

const RULES: &[Rule] = &[
    // About 8 per systemd container (systemd, journald, logind, udev-less services);
    // the host's own root processes (systemd, udev, libvirtd) take up to a few dozen.
    // At the default of 128 this refuses the 13th container; the 15th would come up
    // degraded and the 16th die.
    Rule { key: "fs.inotify.max_user_instances", per: 8, base: Base::Estimate(32), suggest: 1_048_576 },
    // 31 measured per idle container; services that watch trees take more.
    Rule { key: "fs.inotify.max_user_watches", per: 256, base: Base::Estimate(1024), suggest: 1_048_576 },
    // Kernel keys, counted per uid: systemd makes keyrings for its services, and
    // every container's are the host root's (about 10 keys, 200 bytes each
    // container measured). Service users showed none; LXD's maxkeys/maxbytes are
    // for unprivileged containers, where each container's root is another uid.
    Rule { key: "kernel.keys.root_maxkeys", per: 16, base: Base::Estimate(64), suggest: 1_000_000 },
    Rule { key: "kernel.keys.root_maxbytes", per: 512, base: Base::Estimate(4096), suggest: 25_000_000 },
    // Containers allocate ptys in their own devpts instances, which may use at most
    // pty.max minus pty.reserve (kept for the host's own instance). Two each measured
    // (the console and its getty).
    Rule { key: "kernel.pty.max", per: 4, base: Base::Live("sys/kernel/pty/nr", 0), suggest: 16384 },
    // Threads and PIDs: the live count of tasks, plus room for each new container
    // (14 measured idle; PostgreSQL under load and cron jobs take more).
    Rule { key: "kernel.pid_max", per: 128, base: Base::Live("loadavg", 1024), suggest: 4_194_304 },
    Rule { key: "kernel.threads-max", per: 128, base: Base::Live("loadavg", 1024), suggest: 4_194_304 },
    // One neighbour entry per container on the host's bridge (and one IPv6 entry).
    Rule { key: "net.ipv4.neigh.default.gc_thresh3", per: 1, base: Base::Estimate(256), suggest: 8192 },
    Rule { key: "net.ipv6.neigh.default.gc_thresh3", per: 1, base: Base::Estimate(256), suggest: 8192 },
    Rule { key: "fs.file-max", per: 2048, base: Base::Live("sys/fs/file-nr", 4096), suggest: 9_223_372_036_854_775_807 },
];

/// A limit below what the containers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub key: &'static str,
    pub have: u64,
    pub need: u64,
    pub suggest: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "host limits too low for {total} running containers: {}",
    short.iter().map(|s| format!("{} is {} but needs about {}", s.key, s.have, s.need)).collect::<Vec<_>>().join(", ")
)]
pub struct LimitError {
    /// Running containers, counting the new ones.
    pub total: u64,
    pub short: Vec<Shortfall>,
}

impl LimitError {
    pub fn hint(&self) -> String {
        let set: Vec<String> = self.short.iter().map(|s| format!("{}={}", s.key, s.suggest.max(s.need))).collect();
        format!("run scripts/setup-host (it writes /etc/sysctl.d/90-lxcf.conf), or raise them now: sysctl -w {}", set.join(" "))
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = if path.ends_with("loadavg") {
        // "0.58 0.99 1.07 1/129 27156": the number after '/' counts every task.
        text.split_whitespace().nth(3)?.split('/').nth(1)?
    } else {
        text.split_whitespace().next()?
    };
    field.parse().ok()
}

fn sysctl_path(proc: &Path, key: &str) -> PathBuf {
    proc.join("sys").join(key.replace('.', "/"))
}

/// The limits that `running` containers plus `adding` new ones would exceed. A
/// limit the kernel does not have (no such file) is not checked.
pub fn shortfalls(proc: &Path, running: u64, adding: u64) -> Vec<Shortfall> {
    let mut out = Vec::new();
    for r in RULES {
        let Some(have) = read_u64(&sysctl_path(proc, r.key)) else {
            tracing::debug!("host limit {} not found; not checked", r.key);
            continue;
        };
        let mut need = match r.base {
            Base::Estimate(host) => host + (running + adding) * r.per,
            Base::Live(file, extra) => match read_u64(&proc.join(file)) {
                Some(live) => live + extra + adding * r.per,
                None => continue,
            },
        };
        if r.key == "kernel.pty.max" {
            // Only max - reserve are open to containers' devpts instances; say it as
            // the limit the user sets.
            need += read_u64(&sysctl_path(proc, "kernel.pty.reserve")).unwrap_or(0);
        }
        if have < need {
            out.push(Shortfall { key: r.key, have, need, suggest: r.suggest });
        }
    }
    out
}

/// Refuses when the host cannot hold `running` + `adding` containers.
pub fn check(proc: &Path, running: u64, adding: u64) -> Result<(), LimitError> {
    let short = shortfalls(proc, running, adding);
    if short.is_empty() {
        Ok(())
    } else {
        Err(LimitError { total: running + adding, short })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A proc tree with setup-host's values (tuned) or a Debian 12 host's defaults.
    fn fake(tuned: bool) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let set = |key: &str, v: &str| {
            let p = sysctl_path(t.path(), key);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, format!("{v}\n")).unwrap();
        };
        let big = tuned;
        set("fs.inotify.max_user_instances", if big { "1048576" } else { "128" });
        set("fs.inotify.max_user_watches", if big { "1048576" } else { "8192" });
        set("kernel.keys.root_maxkeys", "1000000");
        set("kernel.keys.root_maxbytes", "25000000");
        set("kernel.pty.max", "4096");
        set("kernel.pty.reserve", "1024");
        set("kernel.pty.nr", "3");
        set("kernel.pid_max", if big { "4194304" } else { "32768" });
        set("kernel.threads-max", "192729");
        set("net.ipv4.neigh.default.gc_thresh3", if big { "8192" } else { "1024" });
        set("net.ipv6.neigh.default.gc_thresh3", if big { "8192" } else { "1024" });
        fs::write(t.path().join("sys/fs/file-nr"), "898\t0\t2466174\n").unwrap();
        set("fs.file-max", "2466174");
        fs::write(t.path().join("loadavg"), "0.58 0.99 1.07 1/129 27156\n").unwrap();
        t
    }

    #[test]
    fn defaults_refuse_before_containers_break() {
        let p = fake(true);
        let d = fake(false);
        // Seen on such a host: the 15th container comes up degraded, the 16th dies.
        assert!(check(d.path(), 0, 12).is_ok());
        assert!(check(d.path(), 11, 1).is_ok());
        let e = check(d.path(), 12, 1).unwrap_err();
        assert_eq!(e.total, 13);
        assert_eq!(e.short.len(), 1, "{e}");
        assert_eq!(e.short[0].key, "fs.inotify.max_user_instances");
        assert_eq!((e.short[0].have, e.short[0].need), (128, 32 + 13 * 8));
        assert!(e.to_string().starts_with("host limits too low for 13 running containers: fs.inotify.max_user_instances is 128"), "{e}");
        assert!(e.hint().contains("scripts/setup-host"), "{}", e.hint());
        assert!(e.hint().contains("sysctl -w fs.inotify.max_user_instances=1048576"), "{}", e.hint());
        // The same host after setup-host holds hundreds.
        assert!(check(p.path(), 14, 1).is_ok());
        assert_eq!(check(p.path(), 0, 500), Ok(()));
    }

    #[test]
    fn every_limit_is_checked_and_all_shortfalls_reported() {
        let p = fake(false);
        // Keys are plenty by default: make them short too.
        fs::write(sysctl_path(p.path(), "kernel.keys.root_maxkeys"), "200\n").unwrap();
        fs::write(sysctl_path(p.path(), "kernel.keys.root_maxbytes"), "20000\n").unwrap();
        let e = check(p.path(), 100, 900).unwrap_err();
        let keys: Vec<&str> = e.short.iter().map(|s| s.key).collect();
        for k in [
            "fs.inotify.max_user_instances",
            "fs.inotify.max_user_watches",
            "kernel.keys.root_maxkeys",
            "kernel.keys.root_maxbytes",
            "kernel.pty.max",
            "kernel.pid_max",
            "net.ipv4.neigh.default.gc_thresh3",
            "net.ipv6.neigh.default.gc_thresh3",
        ] {
            assert!(keys.contains(&k), "{k} missing in {keys:?}");
        }
        // Plenty of these even then.
        assert!(!keys.contains(&"fs.file-max") && !keys.contains(&"kernel.threads-max"), "{keys:?}");
    }

    #[test]
    fn live_counts_are_used_where_the_kernel_has_them() {
        let p = fake(true);
        // 4096 ptys, 1024 reserved: 3072 for containers, 3 in use.
        assert!(shortfalls(p.path(), 0, 767).iter().all(|s| s.key != "kernel.pty.max"));
        let s = shortfalls(p.path(), 0, 768);
        let pty = s.iter().find(|s| s.key == "kernel.pty.max").unwrap();
        assert_eq!(pty.need, 3 + 768 * 4 + 1024);
        // Tasks: 129 now; each container ~128 more. The running count does not matter.
        fs::write(p.path().join("loadavg"), "0 0 0 1/30000 1\n").unwrap();
        fs::write(sysctl_path(p.path(), "kernel.pid_max"), "32768\n").unwrap();
        assert!(shortfalls(p.path(), 1000, 13).iter().all(|s| s.key != "kernel.pid_max"));
        let s = shortfalls(p.path(), 0, 14);
        let pid = s.iter().find(|s| s.key == "kernel.pid_max").unwrap();
        assert_eq!((pid.have, pid.need), (32768, 30000 + 1024 + 14 * 128));
    }

    #[test]
    fn missing_limits_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(check(t.path(), 1000, 1000), Ok(()));
        // Garbage is treated as missing rather than as zero.
        let p = sysctl_path(t.path(), "fs.inotify.max_user_instances");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "lots\n").unwrap();
        assert_eq!(check(t.path(), 1000, 1000), Ok(()));
    }
}
