//! The resource commands: cpun, cpurate, numa, memlimit, memswlimit, blkio_r/w,
//! blkioops_r/w, net_in/out ([`Lxcf::tune`]), and `show`.
//!
//! Every request is parsed and checked against the host and the container's other
//! settings before anything changes ([`resources::plan`]); then each change goes to
//! the definition and, on a running container, live. If one fails, the changes made
//! before it are put back, newest first.

use std::path::PathBuf;

use super::intent::Intent;
use super::{Hold, State, Undo};
use crate::error::Result;
use crate::fault::crash_point;
use crate::host::lxcfs::View;
use crate::name::Name;
use crate::resources::{self, fmt_size, CpuQuota, Request, Setting, Settings, Throttle};
use crate::rootfs::storage::{self, Backend};
use crate::Lxcf;

/// What [`set`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub changes: Vec<Setting>,
    /// Also in the running container (else from its next start).
    pub live: bool,
}

impl Lxcf {
    /// Applies the requests to container `name`, live if it runs: all are checked
    /// first, and a failure puts back what was changed before it.
    pub fn tune(&self, name: &Name, reqs: &[Request]) -> Result<Applied> {
        let _update = self.enter(Hold::Shared)?;
        self.lxcf_instance(name)?;
        // One change at a time per container (each reads the definition, then rewrites
        // it); a second waits its turn.
        let _lock = self.name_lock_wait(name)?;
        let (i, _) = self.lxcf_instance(name)?;
        let live = i.state.is_active();
        let mut now = self.rt.spec(name)?.resources;
        let changes = resources::plan(reqs, &now, &*self.host)?;
        let mut undo = Undo::default();
        undo.intent(self.begin(name, Intent::Tune { before: now.clone() })?);
        for c in &changes {
            // Registered first: a change can fail half-way (definition changed, kernel not).
            let back = now.restoring(c);
            undo.push(format!("put {} of {name} back", c.command()), move || self.set(name, &back, live));
            self.set(name, c, live)?;
            crash_point(&format!("tune:{}", c.command()));
            now.apply(c);
        }
        undo.commit();
        Ok(Applied { changes, live })
    }

    /// Puts `name`'s settings back to `before`: its definition and, if it runs, the
    /// container itself. What lxcf applies itself (CPUs, NUMA nodes, network rates)
    /// is applied again whether the definition changed or not: a command killed after
    /// changing the definition back may not have reached the kernel.
    pub(crate) fn restore(&self, name: &str, before: &Settings) -> Result<()> {
        let Some(i) = self.rt.get(name)? else { return Ok(()) };
        let live = i.state.is_active();
        for s in self.rt.spec(name)?.resources.changes_to(before) {
            self.set(name, &s, live)?;
        }
        if let Some(l) = self.rt.live(name)?.filter(|_| live) {
            for s in [Setting::Cpus(before.cpus.clone()), Setting::Nodes(before.nodes.clone())] {
                self.apply_live(name, &l, &s)?;
            }
            if before.net_in.is_some()
                || before.net_out.is_some()
                || self.host.effective(&l).is_ok_and(|e| e.net_in.is_some() || e.net_out.is_some())
            {
                self.apply_live(name, &l, &Setting::Net { inbound: before.net_in, outbound: before.net_out })?;
            }
        }
        Ok(())
    }

    /// One change: the definition, and the running container if `live`, by the
    /// runtime or, where it cannot, through the host.
    fn set(&self, name: &str, s: &Setting, live: bool) -> Result<()> {
        if self.rt.set_resource(name, s, live)? || !live {
            return Ok(());
        }
        match self.rt.live(name)? {
            Some(l) => self.apply_live(name, &l, s),
            None => Ok(()), // stopped meanwhile: the definition is what counts
        }
    }
}

/// A value in `lxcf show`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No limit.
    Unlimited,
    /// A CPU or node list.
    Ids(String),
    Percent(f64),
    /// Bytes, or bytes per second.
    Bytes(u64),
    /// Operations per second.
    Count(u64),
    /// Something the kernel cannot tell.
    Unknown(String),
}

impl Value {
    /// For `--json`: no limit is `null`, amounts are numbers, lists strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Unlimited => serde_json::Value::Null,
            Value::Ids(s) | Value::Unknown(s) => s.as_str().into(),
            Value::Percent(p) if p.fract() == 0.0 => (*p as u64).into(),
            Value::Percent(p) => (*p).into(),
            Value::Bytes(n) | Value::Count(n) => (*n).into(),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Unlimited => f.write_str("unlimited"),
            Value::Ids(s) | Value::Unknown(s) => f.write_str(s),
            Value::Percent(p) if p.fract() == 0.0 => write!(f, "{p}%"),
            Value::Percent(p) => write!(f, "{p:.2}%"),
            Value::Bytes(n) => f.write_str(&fmt_size(*n)),
            Value::Count(n) => write!(f, "{n}"),
        }
    }
}

/// One line of `lxcf show`: a setting, its device (block I/O), what the definition
/// holds and what the kernel has (`None` when the container is not running).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub setting: &'static str,
    pub device: Option<String>,
    pub configured: Value,
    pub effective: Option<Value>,
}

/// What `lxcf show NAME` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: String,
    pub state: State,
    /// `v1` or `v2` when running.
    pub cgroup: Option<&'static str>,
    /// Its root directory and how that is stored (`None`: missing).
    pub root: PathBuf,
    pub storage: Option<Backend>,
    /// The first of its host IDs; `None`: privileged.
    pub ids: Option<u32>,
    /// Capabilities root inside lacks beyond the runtime's own drops.
    pub dropped_caps: Vec<String>,
    /// Whether it reads lxcfs's files; `None` when it is not running.
    pub lxcfs: Option<View>,
    pub rows: Vec<Row>,
}

fn bytes(v: Option<u64>) -> Value {
    v.map_or(Value::Unlimited, Value::Bytes)
}

impl Lxcf {
    /// `lxcf show`: every setting, as configured and as in effect.
    pub fn show(&self, name: &Name) -> Result<Report> {
        let _update = self.enter(Hold::Shared)?;
        let (d, meta) = self.lxcf_instance(name)?;
        let spec = self.rt.spec(name)?;
        let (conf, dropped_caps) = (spec.resources, spec.dropped_caps);
        let live = self.rt.live(name)?;
        let eff = match &live {
            Some(l) => Some(self.host.effective(l)?),
            None => None,
        };
        // Reading it fails only as the container stops: then it has no view.
        let lxcfs = live.as_ref().and_then(|l| self.host.lxcfs_view(l).ok());
        let cpus = self.host.cpus()?.len() as u64;
        let k = eff.as_ref().map(|e| &e.kernel);
        let percent = |q: Option<CpuQuota>| q.map_or(Value::Unlimited, |q| Value::Percent(q.percent(cpus)));
        let ids = |s: Option<&resources::IdSet>| s.map_or(Value::Ids("all".into()), |s| Value::Ids(s.to_string()));
        let mut rows = vec![
            Row { setting: "cpun", device: None, configured: ids(conf.cpus.as_ref()), effective: k.map(|k| Value::Ids(k.cpus.clone())) },
            Row {
                setting: "cpurate",
                device: None,
                configured: percent(conf.cpu_quota),
                effective: k.map(|k| percent(k.cfs_quota.map(|quota| CpuQuota { period: k.cfs_period, quota }))),
            },
            Row { setting: "numa", device: None, configured: ids(conf.nodes.as_ref()), effective: k.map(|k| Value::Ids(k.mems.clone())) },
            Row { setting: "memlimit", device: None, configured: bytes(conf.mem), effective: k.map(|k| bytes(k.mem)) },
            Row {
                setting: "memswlimit",
                device: None,
                configured: bytes(conf.memsw),
                effective: k.map(|k| k.memsw.clone().map_or_else(Value::Unknown, bytes)),
            },
        ];
        // Block I/O: one line per throttle and device set in the definition or the kernel,
        // a `-` line for a throttle set nowhere.
        for t in Throttle::ALL {
            let amount = |v: u64| if t.is_iops() { Value::Count(v) } else { Value::Bytes(v) };
            let mut devs: std::collections::BTreeMap<String, (Value, Option<Value>)> = conf
                .blkio
                .iter()
                .filter(|((_, kind), _)| *kind == t)
                .map(|((dev, _), v)| (dev.display().to_string(), (amount(*v), k.map(|_| Value::Unlimited))))
                .collect();
            for ((id, kind), v) in k.map(|k| &k.io).into_iter().flatten() {
                if *kind == t {
                    devs.entry(self.host.device_name(id)).or_insert((Value::Unlimited, None)).1 = Some(amount(*v));
                }
            }
            if devs.is_empty() {
                devs.insert("-".into(), (Value::Unlimited, k.map(|_| Value::Unlimited)));
            }
            rows.extend(devs.into_iter().map(|(dev, (configured, effective))| Row {
                setting: t.command(),
                device: Some(dev),
                configured,
                effective,
            }));
        }
        rows.push(Row {
            setting: "net_in",
            device: None,
            configured: bytes(conf.net_in),
            effective: eff.as_ref().map(|e| bytes(e.net_in)),
        });
        rows.push(Row {
            setting: "net_out",
            device: None,
            configured: bytes(conf.net_out),
            effective: eff.as_ref().map(|e| bytes(e.net_out)),
        });
        let storage = storage::backend_of(&meta.root);
        Ok(Report {
            name: name.to_string(),
            state: d.state,
            cgroup: eff.map(|e| e.cgroup.as_str()),
            root: meta.root,
            storage,
            ids: meta.ids,
            dropped_caps,
            lxcfs,
            rows,
        })
    }
}

#[cfg(test)]
mod tests;
