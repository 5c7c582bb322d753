//! `lxcf check`: the invariants lxcf keeps, checked against what exists, and the
//! repairs that are safe. The fault tests run it after every fault they inject;
//! administrators run it after a crash, a manual change or a restore from backup.
//!
//! The invariants:
//! - every lxcf container (a domain with lxcf's metadata under this root) has its
//!   root directory, a hosts line with its address, a persistent definition;
//! - every directory in the root is a container's, or `NAME.partial` being built
//!   under NAME's lock; every record of a root (`.lxcf/roots`) has its root;
//! - no address or MAC address is used twice;
//! - nothing of a container that no longer exists remains: no hosts line, no
//!   `/lxcf/NAME` cgroup, no mount below its root;
//! - no command was interrupted without being finished or undone (intents, the
//!   update journal).
//!
//! Names another lxcf command is working on (their lock is held) are skipped.
//! `repair` fixes what cannot lose anything: leftovers of killed commands, hosts
//! lines, cgroups, mounts, stale records, transient domains. What would delete a
//! container's data (a root without a domain, a domain without a root) is reported
//! with the command that does it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::container::Hold;
use crate::error::{self, Result};
use crate::lock;
use crate::maint::update;
use crate::net::Hosts;
use crate::Lxcf;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which invariant: `root-missing`, `orphan-root`, `partial`, `intent`, `update`,
    /// `hosts-missing`, `hosts-stale`, `ip-twice`, `mac-twice`, `ids-twice`, `transient`,
    /// `cgroup`, `mount`, `record`, `lxcfs-view`.
    pub check: &'static str,
    pub name: String,
    pub detail: String,
    /// Repaired by `--repair`.
    pub repaired: bool,
    /// What the administrator can do when it was not repaired.
    pub hint: Option<String>,
}

/// What `lxcf check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// Findings that remain (not repaired).
    pub fn left(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.repaired)
    }
}

impl Lxcf {
    /// Checks every invariant; with `repair`, fixes what is safe to fix.
    pub fn check(&self, repair: bool) -> Result<Report> {
        // Nothing is recovered on the way in: that is what the check looks at.
        let _update = if repair { None } else { update::shared_lock(&self.cfg)? };
        let mut r = Report::default();
        let mut add = |check: &'static str, name: &str, detail: String, repaired: bool, hint: Option<String>| {
            r.findings.push(Finding { check, name: name.into(), detail, repaired, hint })
        };
        if update::pending(&self.cfg) {
            let fixed = repair && self.enter(Hold::Nothing).is_ok() && !update::pending(&self.cfg);
            add(
                "update",
                "",
                "an interrupted `lxcf update` is not finished".into(),
                fixed,
                Some("run any lxcf command; it says why it cannot finish it".into()),
            );
        }
        let root = &self.cfg.root;
        if !root.is_dir() {
            return Ok(r);
        }
        let busy = |name: &str| lock::try_exclusive(&self.lock_dir().join(format!("{name}.lock"))).map(|l| l.is_none());
        for name in self.intent_names()? {
            if busy(&name)? {
                continue;
            }
            let fixed = repair && self.recover_intents().is_ok() && !self.intent_names()?.contains(&name);
            add(
                "intent",
                &name,
                "a command on it was interrupted and is not finished or undone".into(),
                fixed,
                Some("run any lxcf command; it says why it cannot".into()),
            );
        }

        let instances = self.rt.list()?;
        let ours: BTreeMap<String, _> = instances
            .iter()
            .filter_map(|i| Some((i.name.clone(), (i, i.meta.clone()?))))
            .filter(|(n, (_, m))| m.root == self.container_dir(n))
            .collect();
        let hosts = Hosts::new(&self.cfg.hosts);
        let lines = hosts.entries()?;

        // Each container: its root, its definition, its hosts line.
        let mut ips: BTreeMap<(String, Ipv4Addr), Vec<String>> = BTreeMap::new();
        let mut macs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, (i, meta)) in &ours {
            if busy(name)? {
                continue;
            }
            ips.entry((meta.network.clone(), meta.ip)).or_default().push(name.clone());
            if !i.persistent {
                let fixed = repair && self.kill(name).is_ok();
                add(
                    "transient",
                    name,
                    "runs without a persistent definition (started while being erased?)".into(),
                    fixed,
                    Some(format!("`virsh destroy {name}`")),
                );
                continue;
            }
            if i.state.is_active() {
                self.check_view(name, repair, &mut add);
            }
            if let Ok(spec) = self.rt.spec(name) {
                for mac in spec.interfaces.into_iter().filter_map(|i| i.mac) {
                    macs.entry(mac).or_default().push(name.clone());
                }
            }
            if !meta.root.is_dir() {
                add(
                    "root-missing",
                    name,
                    format!("its root {} is missing", meta.root.display()),
                    false,
                    Some(format!("`lxcf erase {name}` removes what is left of it")),
                );
            }
            if meta.network == self.cfg.network.name && !lines.iter().any(|l| &l.name == name && l.ip == meta.ip) {
                let fixed = repair && self.with_global_lock(|| Ok(hosts.add(meta.ip, name)?)).is_ok();
                add("hosts-missing", name, format!("{} has no line `{} {name}`", self.cfg.hosts.display(), meta.ip), fixed, None);
            }
        }
        for ((net, ip), names) in ips.iter().filter(|(_, n)| n.len() > 1) {
            add(
                "ip-twice",
                &names.join(","),
                format!("{ip} on {net} is the address of {}", names.join(" and ")),
                false,
                Some("erase all but one of them".into()),
            );
        }
        // Two containers whose host IDs meet: root in one owns the other's files.
        let ranged: Vec<(&String, crate::container::ids::Range)> =
            instances.iter().filter_map(|i| Some((&i.name, crate::container::ids::range(i.meta.as_ref()?.ids?)))).collect();
        for (k, (a, ra)) in ranged.iter().enumerate() {
            for (b, rb) in &ranged[k + 1..] {
                // IDs are the host's: a container of another root counts, when it meets one of ours.
                if ra.0 < rb.1 && rb.0 < ra.1 && (ours.contains_key(*a) || ours.contains_key(*b)) {
                    add(
                        "ids-twice",
                        &format!("{a},{b}"),
                        format!("host IDs {}-{} of {a} meet {}-{} of {b}", ra.0, ra.1 - 1, rb.0, rb.1 - 1),
                        false,
                        Some("erase one of them, or make a copy of it with `lxcf clone` (a clone gets a range of its own)".into()),
                    );
                }
            }
        }
        for (mac, names) in macs.iter().filter(|(_, n)| n.len() > 1) {
            add(
                "mac-twice",
                &names.join(","),
                format!("MAC address {mac} is used by {}", names.join(" and ")),
                false,
                Some("erase all but one of them".into()),
            );
        }

        // What exists without a container.
        for l in &lines {
            if !ours.contains_key(&l.name) && !busy(&l.name)? {
                let fixed = repair && self.with_global_lock(|| Ok(hosts.remove(&l.name).map(drop)?)).is_ok();
                add("hosts-stale", &l.name, format!("{} has a line for it, but it does not exist", self.cfg.hosts.display()), fixed, None);
            }
        }
        for entry in std::fs::read_dir(root).map_err(error::io("read", root))? {
            let entry = entry.map_err(error::io("read", root))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            // Only directories named as containers can be roots: not .lxcf, not a
            // file system's lost+found, not the administrator's files.
            let is_dir = entry.file_type().map_err(error::io("stat", &entry.path()))?.is_dir();
            if !is_dir || crate::Name::new(file.trim_end_matches(".partial")).is_err() {
                continue;
            }
            if let Some(name) = file.strip_suffix(".partial") {
                if busy(name)? || ours.contains_key(name) {
                    continue;
                }
                let fixed = repair && self.recorded(name) && self.remove_root(&entry.path()).is_ok();
                let hint = (!self.recorded(name)).then(|| "lxcf has no record of it: remove it yourself if it is not needed".to_string());
                add("partial", name, format!("{} is left of an interrupted build", entry.path().display()), fixed, hint);
            } else if !ours.contains_key(&file) && !busy(&file)? {
                let hint = if self.recorded(&file) {
                    format!("`lxcf erase {file}` removes it")
                } else {
                    "lxcf has no record of it: remove it yourself if it is not needed".into()
                };
                add("orphan-root", &file, format!("{} has no container", entry.path().display()), false, Some(hint));
            }
        }
        for name in self.records()? {
            if name.starts_with('.') || ours.contains_key(&name) || busy(&name)? {
                continue;
            }
            let exists = self.container_dir(&name).exists() || root.join(format!("{name}.partial")).exists();
            if !exists {
                let fixed = repair && self.forget_root(&name).is_ok();
                add("record", &name, "lxcf records a root for it, but there is none".into(), fixed, None);
            }
        }
        let gone = |n: &str| !instances.iter().any(|i| i.name == n);
        for name in self.host.cgroup_names()?.into_iter().filter(|n| gone(n)) {
            if busy(&name)? {
                continue;
            }
            let fixed = repair && self.host.remove_cgroups(&name).is_ok();
            add("cgroup", &name, format!("its cgroups /lxcf/{name} remain"), fixed, None);
        }
        let mut mounted: BTreeSet<String> = BTreeSet::new();
        for m in self.host.mounts_below(root)? {
            if let Some(name) =
                m.strip_prefix(root).ok().and_then(|r| r.components().next()).map(|c| c.as_os_str().to_string_lossy().into_owned())
            {
                if name != ".lxcf" && !ours.get(&name).is_some_and(|(i, _)| i.state.is_active()) {
                    mounted.insert(name);
                }
            }
        }
        for name in mounted {
            if busy(&name)? {
                continue;
            }
            let dir = self.container_dir(&name);
            let fixed = repair && self.host.unmount_below(&dir).is_ok();
            add("mount", &name, format!("something is mounted below {} while it does not run", dir.display()), fixed, None);
        }
        Ok(r)
    }

    /// A running container reads lxcfs's files when lxcfs runs, and never a gone
    /// lxcfs's (those fail with ENOTCONN). Repaired by binding them again.
    fn check_view(&self, name: &str, repair: bool, add: &mut impl FnMut(&'static str, &str, String, bool, Option<String>)) {
        use crate::host::lxcfs::View;
        let Ok(Some(live)) = self.rt.live(name) else { return };
        let up = self.host.lxcfs_up();
        let detail = match self.host.lxcfs_view(&live) {
            Ok(View::Stale) => "its /proc files are those of an lxcfs that is gone (they fail: Transport endpoint is not connected)",
            Ok(View::Off) if up => "it runs without lxcfs's view of its own machine although lxcfs runs",
            _ => return,
        };
        let fixed = repair && up && self.host.lxcfs_bind(&live).is_ok();
        add("lxcfs-view", name, detail.into(), fixed, Some(crate::error::LXCFS_HINT.into()));
    }

    fn with_global_lock(&self, f: impl FnOnce() -> Result<()>) -> Result<()> {
        let _lock = lock::exclusive(&self.lock_dir().join("lock"))?;
        f()
    }
}
