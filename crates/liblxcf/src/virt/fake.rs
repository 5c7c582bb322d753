//! An in-memory [`Runtime`] for unit tests, with failures on demand.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{xml, Domain, Runtime, State, Usage, VirtError};
use crate::config::NetConfig;
use crate::resources::cgroup::{Kernel, Version};
use crate::resources::{Effective, Setting, Settings};

#[derive(Default)]
pub struct Fake {
    pub domains: RefCell<BTreeMap<String, (String, State, bool)>>,
    pub networks: RefCell<BTreeSet<String>>,
    /// Operations that fail, by the `op` names used in [`VirtError::Op`]; for
    /// `set_resource`, by the setting's command, once, after the definition changed.
    pub failing: RefCell<BTreeSet<&'static str>>,
    /// Resource settings by domain: the definition, and what the running container has.
    pub config: RefCell<BTreeMap<String, Settings>>,
    pub live: RefCell<BTreeMap<String, Settings>>,
    /// Every `set_resource` and `reapply`, in order: (domain, command, live).
    pub calls: RefCell<Vec<(String, &'static str, bool)>>,
    /// What `usage` returns for a running domain; each call adds `busy_ns` of CPU
    /// time, as if the container kept one CPU busy for that long between samples.
    pub usage: RefCell<BTreeMap<String, Usage>>,
    pub busy_ns: std::cell::Cell<u64>,
}

impl Fake {
    pub fn fail(&self, op: &'static str) {
        self.failing.borrow_mut().insert(op);
    }

    fn check(&self, op: &'static str, object: &str) -> Result<(), VirtError> {
        if self.failing.borrow().contains(op) {
            return Err(VirtError::Op { op, object: object.into(), msg: "injected failure".into() });
        }
        Ok(())
    }

    fn missing(name: &str) -> VirtError {
        VirtError::Op { op: "find", object: name.into(), msg: "no such domain".into() }
    }

    fn set_state(&self, name: &str, state: State) -> Result<(), VirtError> {
        let mut d = self.domains.borrow_mut();
        d.get_mut(name).ok_or_else(|| Self::missing(name))?.1 = state;
        Ok(())
    }
}

impl Runtime for Fake {
    fn domains(&self) -> Result<Vec<Domain>, VirtError> {
        self.check("list", "domains")?;
        Ok(self
            .domains
            .borrow()
            .iter()
            .map(|(name, (x, state, autostart))| Domain {
                name: name.clone(),
                state: *state,
                autostart: *autostart,
                meta: xml::parse_meta(x),
            })
            .collect())
    }

    fn domain(&self, name: &str) -> Result<Option<Domain>, VirtError> {
        Ok(self.domains()?.into_iter().find(|d| d.name == name))
    }

    fn xml(&self, name: &str) -> Result<String, VirtError> {
        self.check("read the XML of", name)?;
        let d = self.domains.borrow();
        let (x, _, _) = d.get(name).ok_or_else(|| Self::missing(name))?;
        // libvirt adds a MAC address to every interface it defines.
        Ok(x.replace("<interface type='network'>\n", "<interface type='network'>\n      <mac address='52:54:00:00:00:01'/>\n"))
    }

    fn define(&self, x: &str) -> Result<(), VirtError> {
        let doc = roxmltree::Document::parse(x).expect("lxcf writes well-formed XML");
        let name = doc.descendants().find(|n| n.has_tag_name("name")).and_then(|n| n.text()).unwrap().to_string();
        self.check("define", &name)?;
        let mut d = self.domains.borrow_mut();
        if d.contains_key(&name) {
            return Err(VirtError::Op { op: "define", object: name, msg: "domain already exists".into() });
        }
        d.insert(name, (x.to_string(), State::Stopped, false));
        Ok(())
    }

    fn undefine(&self, name: &str) -> Result<(), VirtError> {
        self.check("undefine", name)?;
        self.domains.borrow_mut().remove(name).map(drop).ok_or_else(|| Self::missing(name))
    }

    fn start(&self, name: &str) -> Result<(), VirtError> {
        self.check("start", name)?;
        self.set_state(name, State::Running)?;
        // As libvirt does: the definition's settings take effect.
        let config = self.config.borrow().get(name).cloned().unwrap_or_default();
        self.live.borrow_mut().insert(name.into(), config);
        Ok(())
    }

    fn shutdown(&self, name: &str, _timeout: Duration) -> Result<(), VirtError> {
        self.check("shut down", name)?;
        self.set_state(name, State::Stopped)
    }

    fn destroy(&self, name: &str) -> Result<(), VirtError> {
        self.check("stop", name)?;
        self.set_state(name, State::Stopped)
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<(), VirtError> {
        self.check("set autostart of", name)?;
        let mut d = self.domains.borrow_mut();
        d.get_mut(name).ok_or_else(|| Self::missing(name))?.2 = on;
        Ok(())
    }

    fn ensure_network(&self, net: &NetConfig) -> Result<(), VirtError> {
        self.check("start network", &net.name)?;
        self.networks.borrow_mut().insert(net.name.clone());
        Ok(())
    }

    fn resources(&self, name: &str) -> Result<Settings, VirtError> {
        self.domains.borrow().get(name).ok_or_else(|| Self::missing(name))?;
        Ok(self.config.borrow().get(name).cloned().unwrap_or_default())
    }

    fn set_resource(&self, name: &str, s: &Setting, live: bool) -> Result<(), VirtError> {
        self.domains.borrow().get(name).ok_or_else(|| Self::missing(name))?;
        self.calls.borrow_mut().push((name.into(), s.command(), live));
        self.config.borrow_mut().entry(name.into()).or_default().apply(s);
        // A failure after the definition changed: the caller must put it back.
        if self.failing.borrow_mut().remove(s.command()) {
            return Err(VirtError::Op { op: "change", object: name.into(), msg: "injected failure".into() });
        }
        if live {
            self.live.borrow_mut().entry(name.into()).or_default().apply(s);
        }
        Ok(())
    }

    fn reapply(&self, name: &str) -> Result<(), VirtError> {
        self.calls.borrow_mut().push((name.into(), "reapply", true));
        self.check("reapply", name)
    }

    fn effective(&self, name: &str) -> Result<Option<Effective>, VirtError> {
        if !self.domain(name)?.ok_or_else(|| Self::missing(name))?.state.is_active() {
            return Ok(None);
        }
        let s = self.live.borrow().get(name).cloned().unwrap_or_default();
        let kernel = Kernel {
            cpus: s.cpus.map_or("0-3".into(), |c| c.to_string()),
            mems: s.nodes.map_or("0".into(), |n| n.to_string()),
            cfs_quota: s.cpu_quota.map(|q| q.quota),
            cfs_period: 100_000,
            mem: s.mem,
            memsw: Ok(s.memsw),
            io: s.blkio.into_iter().map(|((d, t), v)| ((d.display().to_string(), t), v)).collect(),
        };
        Ok(Some(Effective { cgroup: Version::V1, kernel, net_in: s.net_in, net_out: s.net_out }))
    }

    fn usage(&self, names: &[&str]) -> Result<BTreeMap<String, Usage>, VirtError> {
        self.check("read usage of", "domains")?;
        let mut u = self.usage.borrow_mut();
        let mut out = BTreeMap::new();
        for d in self.domains()?.into_iter().filter(|d| d.state.is_active() && names.contains(&d.name.as_str())) {
            let e = u.entry(d.name.clone()).or_default();
            e.cpu_ns += self.busy_ns.get();
            out.insert(d.name, *e);
        }
        Ok(out)
    }

    fn init_pid(&self, name: &str) -> Result<Option<u32>, VirtError> {
        Ok(self.domain(name)?.filter(|d| d.state.is_active()).map(|_| 1))
    }
}
