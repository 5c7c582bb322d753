//! An in-memory [`Runtime`] for unit tests, with failures on demand.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{xml, Domain, Runtime, State, VirtError};
use crate::config::NetConfig;

#[derive(Default)]
pub struct Fake {
    pub domains: RefCell<BTreeMap<String, (String, State, bool)>>,
    pub networks: RefCell<BTreeSet<String>>,
    /// Operations that fail, by the `op` names used in [`VirtError::Op`].
    pub failing: RefCell<BTreeSet<&'static str>>,
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
        self.set_state(name, State::Running)
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
}
