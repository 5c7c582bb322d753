//! [`Runtime`] on libvirt's LXC driver, through the `virt` crate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain as VDomain;
use virt::error::ErrorNumber;
use virt::sys;

use super::{xml, Domain, Runtime, State, Usage, VirtError};
use crate::config::NetConfig;
use crate::resources::{Effective, Setting, Settings};

pub struct Libvirt {
    conn: Connect,
    uri: String,
}

pub(super) fn op<'a>(op: &'static str, object: &'a str) -> impl FnOnce(virt::error::Error) -> VirtError + 'a {
    move |e| VirtError::Op { op, object: object.to_string(), msg: e.message().to_string() }
}

fn is(e: &virt::error::Error, n: ErrorNumber) -> bool {
    e.code() == virt::enumutil::Enum::Known(n)
}

impl Libvirt {
    pub fn connect(uri: &str) -> Result<Libvirt, VirtError> {
        // libvirt prints every error to stderr by default; we report them ourselves.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| VirtError::Connect { uri: uri.into(), msg: e.message().to_string() })?;
        Ok(Libvirt { conn, uri: uri.into() })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn lookup(&self, name: &str) -> Result<Option<VDomain>, VirtError> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if is(&e, ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(op("look up", name)(e)),
        }
    }

    pub(super) fn get(&self, name: &str) -> Result<VDomain, VirtError> {
        self.lookup(name)?.ok_or_else(|| VirtError::Op { op: "find", object: name.into(), msg: "no such domain".into() })
    }

    fn describe(&self, d: &VDomain) -> Result<Domain, VirtError> {
        let name = d.name().map_err(op("read name of", "domain"))?;
        let (state, _) = d.state().map_err(op("read state of", &name))?;
        use virt::domain::DomainState as S;
        let state = match state {
            virt::enumutil::Enum::Known(S::Running | S::Blocked) => State::Running,
            virt::enumutil::Enum::Known(S::Paused | S::PMSuspended) => State::Paused,
            virt::enumutil::Enum::Known(S::Shutdown) => State::Stopping,
            virt::enumutil::Enum::Known(S::Shutoff) => State::Stopped,
            virt::enumutil::Enum::Known(S::Crashed) => State::Crashed,
            _ => State::Unknown,
        };
        let autostart = d.autostart().map_err(op("read autostart of", &name))?;
        let meta = match d.metadata(sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(xml::NS), 0) {
            Ok(x) => xml::parse_meta(&x),
            Err(e) if is(&e, ErrorNumber::NoDomainMetadata) => None,
            Err(e) => return Err(op("read metadata of", &name)(e)),
        };
        Ok(Domain { name, state, autostart, meta })
    }

    fn wait_inactive(&self, d: &VDomain, name: &str, timeout: Duration) -> Result<bool, VirtError> {
        let until = Instant::now() + timeout;
        loop {
            if !d.is_active().map_err(op("read state of", name))? {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Runtime for Libvirt {
    fn domains(&self) -> Result<Vec<Domain>, VirtError> {
        let all = self.conn.list_all_domains(0).map_err(op("list", "domains"))?;
        let mut out = Vec::with_capacity(all.len());
        for d in &all {
            match self.describe(d) {
                Ok(x) => out.push(x),
                // Undefined between the listing and now: it no longer exists.
                Err(VirtError::Op { .. }) if matches!(d.is_persistent(), Err(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn domain(&self, name: &str) -> Result<Option<Domain>, VirtError> {
        match self.lookup(name)? {
            Some(d) => Ok(Some(self.describe(&d)?)),
            None => Ok(None),
        }
    }

    fn xml(&self, name: &str) -> Result<String, VirtError> {
        self.get(name)?.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(op("read the XML of", name))
    }

    fn define(&self, xml: &str) -> Result<(), VirtError> {
        let name = roxmltree::Document::parse(xml)
            .ok()
            .and_then(|d| d.descendants().find(|n| n.has_tag_name("name")).and_then(|n| n.text()).map(str::to_string))
            .unwrap_or_else(|| "domain".into());
        // virDomainDefineXML replaces a domain of the same name and UUID; with a fresh
        // UUID it refuses an existing name, which is what we want.
        self.conn.define_domain_xml(xml).map(drop).map_err(op("define", &name))
    }

    fn undefine(&self, name: &str) -> Result<(), VirtError> {
        self.get(name)?.undefine().map_err(op("undefine", name))?;
        // And the cgroups its init made (see cgroupfs); libvirt removes only its own.
        // A leftover is harmless (the container reuses it), so it is only reported.
        let removed = std::fs::read_to_string("/proc/self/mountinfo").and_then(|mi| crate::cgroupfs::remove_container_cgroups(&mi, name));
        if let Err(e) = removed {
            tracing::warn!("{name}: {e}");
        }
        Ok(())
    }

    fn start(&self, name: &str) -> Result<(), VirtError> {
        // One start at a time from this process: starting domains at once from
        // threads on one connection once left a container running without libvirt's
        // monitor ("End of file while reading data"; see docs/ARCHITECTURE.md).
        // Batches build roots in parallel; the start itself takes a fraction of a second.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        self.get(name)?.create().map_err(op("start", name))
    }

    fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), VirtError> {
        let d = self.get(name)?;
        if !d.is_active().map_err(op("read state of", name))? {
            return Ok(());
        }
        // For LXC libvirt tells init through /dev/initctl, which systemd serves.
        match d.shutdown() {
            Ok(()) => {}
            Err(e) if is(&e, ErrorNumber::OperationInvalid) => return Ok(()), // stopped meanwhile
            Err(e) => return Err(op("shut down", name)(e)),
        }
        if self.wait_inactive(&d, name, timeout)? {
            return Ok(());
        }
        tracing::warn!("{name} did not stop within {} s; stopping it hard", timeout.as_secs());
        self.destroy(name)
    }

    fn shutdown_all(&self, names: &[&str], timeout: Duration) -> Result<(), VirtError> {
        let mut asked = Vec::new();
        for name in names {
            let d = self.get(name)?;
            if !d.is_active().map_err(op("read state of", name))? {
                continue;
            }
            match d.shutdown() {
                Ok(()) => asked.push((*name, d)),
                Err(e) if is(&e, ErrorNumber::OperationInvalid) => {} // stopped meanwhile
                Err(e) => return Err(op("shut down", name)(e)),
            }
        }
        let until = Instant::now() + timeout;
        for (name, d) in &asked {
            if !self.wait_inactive(d, name, until.saturating_duration_since(Instant::now()))? {
                tracing::warn!("{name} did not stop within {} s; stopping it hard", timeout.as_secs());
                self.destroy(name)?;
            }
        }
        Ok(())
    }

    fn destroy(&self, name: &str) -> Result<(), VirtError> {
        let d = self.get(name)?;
        if d.is_active().map_err(op("read state of", name))? {
            self.lift_live_io_limits(&d, name);
        }
        match d.destroy() {
            Ok(()) => Ok(()),
            Err(e) if is(&e, ErrorNumber::OperationInvalid) => Ok(()), // not running
            Err(e) => Err(op("stop", name)(e)),
        }
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<(), VirtError> {
        self.get(name)?.set_autostart(on).map(drop).map_err(op("set autostart of", name))
    }

    fn ensure_network(&self, net: &NetConfig) -> Result<(), VirtError> {
        let n = match self.conn.lookup_network_by_name(&net.name) {
            Ok(n) => {
                let x = n.xml_desc(0).map_err(op("read network", &net.name))?;
                let want = (net.gateway, net.subnet.prefix_len());
                match xml::network_addr(&x) {
                    Some((a, p, _)) if (a, p) == want => {}
                    found => {
                        let found = found.map(|(a, p, _)| format!("{a}/{p}")).unwrap_or_else(|| "no IPv4 address".into());
                        return Err(VirtError::Op {
                            op: "use network",
                            object: net.name.clone(),
                            msg: format!(
                                "it exists with {found}, but the config wants {}/{}; fix [Network] in the config or remove the network",
                                net.gateway,
                                net.subnet.prefix_len()
                            ),
                        });
                    }
                }
                n
            }
            Err(e) if is(&e, ErrorNumber::NoNetwork) => {
                self.conn.define_network_xml(&xml::network_xml(net)).map_err(op("define network", &net.name))?
            }
            Err(e) => return Err(op("look up network", &net.name)(e)),
        };
        if !n.is_active().map_err(op("read state of network", &net.name))? {
            n.create().map_err(op("start network", &net.name))?;
        }
        if !n.autostart().map_err(op("read autostart of network", &net.name))? {
            n.set_autostart(true).map_err(op("set autostart of network", &net.name))?;
        }
        Ok(())
    }

    // Resource settings: in virt::tune, which says which way each takes.
    fn resources(&self, name: &str) -> Result<Settings, VirtError> {
        self.settings_of(name)
    }

    fn set_resource(&self, name: &str, s: &Setting, live: bool) -> Result<(), VirtError> {
        self.change_setting(name, s, live)
    }

    fn reapply(&self, name: &str) -> Result<(), VirtError> {
        self.reapply_net(name)
    }

    fn effective(&self, name: &str) -> Result<Option<Effective>, VirtError> {
        self.effective_of(name)
    }

    fn usage(&self, names: &[&str]) -> Result<BTreeMap<String, Usage>, VirtError> {
        let active = self.conn.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE).map_err(op("list", "running domains"))?;
        let mut out = BTreeMap::new();
        for d in &active {
            // The name is kept by the client: no request.
            let Ok(name) = d.name() else { continue };
            if !names.contains(&name.as_str()) {
                continue;
            }
            // One request gives both: for LXC, libvirt reads the container's cpuacct
            // and memory cgroups (memory in KiB), on cgroup v1 and v2 alike.
            match d.info() {
                Ok(i) if i.state != virt::enumutil::Enum::Known(virt::domain::DomainState::Shutoff) => {
                    out.insert(name, Usage { cpu_ns: i.cpu_time, memory_bytes: i.memory * 1024 });
                }
                Ok(_) => {}
                // Stopped and undefined since the listing.
                Err(e) if is(&e, ErrorNumber::NoDomain) || is(&e, ErrorNumber::OperationInvalid) => {}
                Err(e) => return Err(op("read usage of", &name)(e)),
            }
        }
        Ok(out)
    }

    fn init_pid(&self, name: &str) -> Result<Option<u32>, VirtError> {
        let Some(d) = self.lookup(name)? else { return Ok(None) };
        // An LXC domain's ID is the PID of its libvirt_lxc controller, and the
        // container's init is the controller's only child. (libvirt's own
        // virDomainLxcOpenNamespace is in libvirt-lxc, which the virt crate does not bind.)
        let Some(controller) = d.id() else { return Ok(None) };
        let tasks = format!("/proc/{controller}/task");
        let children = std::fs::read_dir(&tasks)
            .map_err(|e| VirtError::Op { op: "find the init of", object: name.into(), msg: format!("{tasks}: {e}") })?
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()).collect::<Vec<_>>())
            .collect::<Vec<_>>();
        match children.as_slice() {
            [pid] => Ok(Some(*pid)),
            [] => Ok(None), // stopping, or not yet started
            more => Err(VirtError::Op {
                op: "find the init of",
                object: name.into(),
                msg: format!("its controller (PID {controller}) has {} children", more.len()),
            }),
        }
    }
}
