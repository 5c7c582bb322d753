//! A fake machine for unit tests: an in-memory [`Runtime`] and the [`Host`] under it,
//! sharing one state, with failures on demand. What a real runtime applies live
//! itself (CPU quota, memory, block I/O) the fake runtime does; what libvirt-LXC
//! leaves to lxcf (CPU set, NUMA nodes, network rates) reaches the running
//! container only through the fake host, as on a real machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::config::NetConfig;
use crate::container::State;
use crate::host::cgroup::{Kernel, Version};
use crate::host::limits::LimitError;
use crate::host::{Effective, Host, HostError};
use crate::resources::{IdSet, ResourceError, Setting, Settings};
use crate::runtime::{Instance, Live, Runtime, RuntimeError, Spec, Usage};

pub struct Container {
    pub spec: Spec,
    pub state: State,
    pub autostart: bool,
    /// What the running container has.
    pub live: Settings,
    /// The lxcfs (its generation) whose files the running container reads.
    pub lxcfs: Option<u32>,
}

impl Container {
    /// Its namespaces are gone, and lxcfs's files with them.
    fn stopped(&mut self) {
        self.state = State::Stopped;
        self.lxcfs = None;
    }
}

#[derive(Default)]
pub struct Machine {
    pub containers: BTreeMap<String, Container>,
    /// Instances lxcf did not make: name only.
    pub foreign: BTreeSet<String>,
    pub networks: BTreeSet<String>,
    /// Operations that fail, by the `op` names used in [`RuntimeError::Op`]; for
    /// `set_resource`, by the setting's command, once, after the definition changed.
    pub failing: BTreeSet<&'static str>,
    /// Every `set_resource` and host change, in order: (container, command, live).
    pub calls: Vec<(String, &'static str, bool)>,
    /// What `usage` returns for a running container; each call adds `busy_ns` of CPU
    /// time, as if the container kept one CPU busy for that long between samples.
    pub usage: BTreeMap<String, Usage>,
    pub busy_ns: u64,
    /// The most containers the host's limits allow to run at once.
    pub limit: Option<u64>,
    /// The running lxcfs (a generation: restarting it makes a new one).
    pub lxcfs: Option<u32>,
}

#[derive(Default)]
pub struct Fake(Mutex<Machine>);

fn missing(name: &str) -> RuntimeError {
    RuntimeError::Op { op: "find", object: name.into(), msg: "no such domain".into() }
}

impl Fake {
    pub fn state(&self) -> MutexGuard<'_, Machine> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fail(&self, op: &'static str) {
        self.state().failing.insert(op);
    }

    pub fn set_usage(&self, name: &str, u: Usage) {
        self.state().usage.insert(name.into(), u);
    }

    pub fn set_busy_ns(&self, ns: u64) {
        self.state().busy_ns = ns;
    }

    /// A container of another tool, which lxcf must leave alone.
    pub fn add_foreign(&self, name: &str) {
        self.state().foreign.insert(name.into());
    }

    pub fn names(&self) -> Vec<String> {
        let s = self.state();
        s.containers.keys().chain(&s.foreign).cloned().collect()
    }

    fn check(&self, op: &'static str, object: &str) -> Result<(), RuntimeError> {
        if self.state().failing.contains(op) {
            return Err(RuntimeError::Op { op, object: object.into(), msg: "injected failure".into() });
        }
        Ok(())
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Container) -> T) -> Result<T, RuntimeError> {
        self.state().containers.get_mut(name).map(f).ok_or_else(|| missing(name))
    }

    /// The monitor "PID" of a running container: its index, from 1000.
    fn monitor_of(&self, name: &str) -> Option<u32> {
        let s = self.state();
        let i = s.containers.keys().position(|n| n == name)?;
        s.containers[name].state.is_active().then_some(1000 + i as u32)
    }

    fn by_monitor(&self, monitor: u32) -> Option<String> {
        let s = self.state();
        s.containers.keys().nth(monitor.checked_sub(1000)? as usize).cloned()
    }

    fn live_mut(&self, live: &Live, f: impl FnOnce(&mut Settings)) -> Result<(), HostError> {
        let name = self.by_monitor(live.monitor).ok_or(HostError::NoInit(live.monitor))?;
        self.with(&name, |c| f(&mut c.live)).map_err(|_| HostError::NoInit(live.monitor))
    }
}

impl Runtime for Fake {
    fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        self.check("list", "domains")?;
        let s = self.state();
        let mut out: Vec<Instance> = s
            .containers
            .iter()
            .map(|(name, c)| Instance {
                name: name.clone(),
                state: c.state,
                autostart: c.autostart,
                persistent: true,
                meta: Some(c.spec.meta.clone()),
            })
            .collect();
        out.extend(s.foreign.iter().map(|n| Instance {
            name: n.clone(),
            state: State::Stopped,
            autostart: false,
            persistent: true,
            meta: None,
        }));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Option<Instance>, RuntimeError> {
        Ok(self.list()?.into_iter().find(|i| i.name == name))
    }

    fn spec(&self, name: &str) -> Result<Spec, RuntimeError> {
        self.check("read the definition of", name)?;
        self.with(name, |c| c.spec.clone())
    }

    fn define(&self, spec: &Spec) -> Result<(), RuntimeError> {
        self.check("define", &spec.name)?;
        let mut s = self.state();
        if s.containers.contains_key(&spec.name) || s.foreign.contains(&spec.name) {
            return Err(RuntimeError::Op { op: "define", object: spec.name.clone(), msg: "domain already exists".into() });
        }
        let c = Container { spec: spec.clone(), state: State::Stopped, autostart: false, live: Settings::default(), lxcfs: None };
        s.containers.insert(spec.name.clone(), c);
        Ok(())
    }

    fn undefine(&self, name: &str) -> Result<(), RuntimeError> {
        self.check("undefine", name)?;
        self.state().containers.remove(name).map(drop).ok_or_else(|| missing(name))
    }

    fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.check("start", name)?;
        // As libvirt does: the definition's settings take effect.
        self.with(name, |c| {
            c.state = State::Running;
            c.live = c.spec.resources.clone();
        })
    }

    fn shutdown(&self, name: &str, _timeout: Duration) -> Result<(), RuntimeError> {
        self.check("shut down", name)?;
        self.with(name, Container::stopped)
    }

    fn destroy(&self, name: &str) -> Result<(), RuntimeError> {
        self.check("stop", name)?;
        self.with(name, Container::stopped)
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<(), RuntimeError> {
        self.check("set autostart of", name)?;
        self.with(name, |c| c.autostart = on)
    }

    fn ensure_network(&self, net: &NetConfig) -> Result<(), RuntimeError> {
        self.check("start network", &net.name)?;
        self.state().networks.insert(net.name.clone());
        Ok(())
    }

    fn set_resource(&self, name: &str, s: &Setting, live: bool) -> Result<bool, RuntimeError> {
        let mut st = self.state();
        st.calls.push((name.into(), s.command(), live));
        let c = st.containers.get_mut(name).ok_or_else(|| missing(name))?;
        c.spec.resources.apply(s);
        // A failure after the definition changed: the caller must put it back.
        if st.failing.remove(s.command()) {
            return Err(RuntimeError::Op { op: "change", object: name.into(), msg: "injected failure".into() });
        }
        // libvirt-LXC applies these live itself; the others are lxcf's to apply.
        let by_runtime = !matches!(s, Setting::Cpus(_) | Setting::Nodes(_) | Setting::Net { .. });
        if live && by_runtime {
            st.containers.get_mut(name).expect("checked").live.apply(s);
        }
        Ok(live && by_runtime)
    }

    fn live(&self, name: &str) -> Result<Option<Live>, RuntimeError> {
        Ok(self.monitor_of(name).map(|monitor| Live { monitor, host_veth: Some(format!("vnet-{name}")) }))
    }

    fn usage(&self, names: &[&str]) -> Result<BTreeMap<String, Usage>, RuntimeError> {
        self.check("read usage of", "domains")?;
        let running: Vec<String> =
            self.list()?.into_iter().filter(|i| i.state.is_active() && names.contains(&i.name.as_str())).map(|i| i.name).collect();
        let mut s = self.state();
        let busy = s.busy_ns;
        let mut out = BTreeMap::new();
        for n in running {
            let e = s.usage.entry(n.clone()).or_default();
            e.cpu_ns += busy;
            out.insert(n, *e);
        }
        Ok(out)
    }

    fn console(&self, name: &str, _force: bool) -> Result<i32, RuntimeError> {
        self.with(name, |_| 0)
    }
}

/// A host with CPUs 0-3, NUMA nodes 0-1 and one disk, /dev/sda.
impl Host for Fake {
    fn cpus(&self) -> Result<IdSet, HostError> {
        Ok(IdSet::parse("0-3").expect("valid"))
    }

    fn nodes(&self) -> Result<IdSet, HostError> {
        Ok(IdSet::parse("0-1").expect("valid"))
    }

    fn disk_of(&self, path: &Path) -> Result<PathBuf, ResourceError> {
        if path.starts_with("/proc") {
            return Err(ResourceError::NotBlock { path: path.into() });
        }
        Ok("/dev/sda".into())
    }

    fn device_name(&self, id: &str) -> String {
        if id == "8:0" {
            "/dev/sda".into()
        } else {
            id.into()
        }
    }

    fn check_limits(&self, running: u64, adding: u64) -> Result<(), LimitError> {
        match self.state().limit {
            Some(max) if running + adding > max => Err(LimitError {
                total: running + adding,
                short: vec![crate::host::limits::Shortfall {
                    key: "fs.inotify.max_user_instances",
                    have: 32 + 8 * max,
                    need: 32 + 8 * (running + adding),
                    suggest: 1_048_576,
                }],
            }),
            _ => Ok(()),
        }
    }

    fn init_of(&self, monitor: u32) -> Result<Option<u32>, HostError> {
        Ok(self.by_monitor(monitor).map(|_| monitor + 1))
    }

    fn effective(&self, live: &Live) -> Result<Effective, HostError> {
        let name = self.by_monitor(live.monitor).ok_or(HostError::NoInit(live.monitor))?;
        let s = self.with(&name, |c| c.live.clone()).map_err(|_| HostError::NoInit(live.monitor))?;
        let kernel = Kernel {
            cpus: s.cpus.map_or("0-3".into(), |c| c.to_string()),
            mems: s.nodes.map_or("0-1".into(), |n| n.to_string()),
            cfs_quota: s.cpu_quota.map(|q| q.quota),
            cfs_period: 100_000,
            mem: s.mem,
            memsw: Ok(s.memsw),
            io: s.blkio.into_iter().map(|((_, t), v)| (("8:0".to_string(), t), v)).collect(),
        };
        Ok(Effective { cgroup: Version::V1, kernel, net_in: s.net_in, net_out: s.net_out })
    }

    fn set_cpus(&self, live: &Live, cpus: Option<&IdSet>) -> Result<(), HostError> {
        self.live_mut(live, |s| s.cpus = cpus.cloned())
    }

    fn set_mems(&self, live: &Live, nodes: Option<&IdSet>) -> Result<(), HostError> {
        self.live_mut(live, |s| s.nodes = nodes.cloned())
    }

    fn shape(&self, name: &str, live: &Live, inbound: Option<u64>, outbound: Option<u64>) -> Result<(), HostError> {
        {
            let mut s = self.state();
            s.calls.push((name.into(), "shape", true));
            if s.failing.contains("shape") {
                return Err(HostError::Shape { name: name.into(), msg: "injected failure".into() });
            }
        }
        self.live_mut(live, |s| {
            s.net_in = inbound;
            s.net_out = outbound;
        })
    }

    fn remove_cgroups(&self, _name: &str) -> Result<usize, HostError> {
        Ok(0)
    }

    fn kill(&self, live: &Live) -> Result<bool, HostError> {
        let Some(name) = self.by_monitor(live.monitor) else { return Ok(false) };
        self.state().calls.push((name.clone(), "kill", true));
        Ok(self
            .with(&name, |c| {
                let was = c.state.is_active();
                c.stopped();
                was
            })
            .unwrap_or(false))
    }

    fn unmount_below(&self, _dir: &Path) -> Result<usize, HostError> {
        Ok(0)
    }

    fn mounts_below(&self, _dir: &Path) -> Result<Vec<PathBuf>, HostError> {
        Ok(Vec::new())
    }

    fn cgroup_names(&self) -> Result<BTreeSet<String>, HostError> {
        Ok(BTreeSet::new())
    }

    fn lxcfs_up(&self) -> bool {
        self.state().lxcfs.is_some()
    }

    fn lxcfs_view(&self, live: &Live) -> Result<crate::host::lxcfs::View, HostError> {
        use crate::host::lxcfs::View;
        let name = self.by_monitor(live.monitor).ok_or(HostError::NoInit(live.monitor))?;
        let up = self.state().lxcfs;
        Ok(self
            .with(&name, |c| match c.lxcfs {
                None => View::Off,
                Some(g) if Some(g) == up => View::On,
                Some(_) => View::Stale,
            })
            .unwrap_or(View::Off))
    }

    fn lxcfs_bind(&self, live: &Live) -> Result<usize, HostError> {
        let name = self.by_monitor(live.monitor).ok_or(HostError::NoInit(live.monitor))?;
        let up = self.state().lxcfs.ok_or(HostError::LxcfsDown)?;
        self.state().calls.push((name.clone(), "lxcfs", true));
        self.with(&name, |c| c.lxcfs = Some(up)).map_err(|_| HostError::NoInit(live.monitor))?;
        Ok(crate::host::lxcfs::FILES.len())
    }
}
