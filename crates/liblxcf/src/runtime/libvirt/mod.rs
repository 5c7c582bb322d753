//! [`Runtime`] on libvirt's LXC driver, through the `virt` crate. This module and
//! its children are the only place that knows libvirt: its API, its XML ([`xml`]),
//! the way each resource setting reaches it ([`tune`]) and the init lxcf gives its
//! containers ([`xml::INIT_PLACE`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain as VDomain;
use virt::error::ErrorNumber;
use virt::sys;

use crate::config::NetConfig;
use crate::container::State;
use crate::resources::Setting;
use crate::runtime::{Instance, Live, Runtime, RuntimeError, Spec, Usage};

pub mod hook;
pub mod tune;
pub mod xml;

use tune::xml_error;

pub struct Libvirt {
    conn: Connect,
    uri: String,
}

pub(super) fn op<'a>(op: &'static str, object: &'a str) -> impl FnOnce(virt::error::Error) -> RuntimeError + 'a {
    move |e| {
        let (object, msg) = (object.to_string(), e.message().to_string());
        // libvirtd went away: its RPC layer fails every call on the connection.
        let lost = e.domain() == virt::enumutil::Enum::Known(virt::error::ErrorDomain::Rpc) || is(&e, ErrorNumber::NoConnect);
        if lost {
            RuntimeError::Lost { op, object, msg }
        } else {
            RuntimeError::Op { op, object, msg }
        }
    }
}

fn is(e: &virt::error::Error, n: ErrorNumber) -> bool {
    e.code() == virt::enumutil::Enum::Known(n)
}

impl Libvirt {
    pub fn connect(uri: &str) -> Result<Libvirt, RuntimeError> {
        // libvirt prints every error to stderr by default; we report them ourselves.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| RuntimeError::Connect { uri: uri.into(), msg: e.message().to_string() })?;
        Ok(Libvirt { conn, uri: uri.into() })
    }

    fn lookup(&self, name: &str) -> Result<Option<VDomain>, RuntimeError> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(d) if self.cleared_if_stale(&d, name)? => Ok(None),
            Ok(d) => Ok(Some(d)),
            Err(e) if is(&e, ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(op("look up", name)(e)),
        }
    }

    /// A transient domain exists only while it runs; libvirt 9.0 can still show a
    /// stopped one. Its stop removes the domain and its status file, yet a live
    /// change racing the stop can write the status file again, and a restarted
    /// libvirtd loads it: a stopped transient domain nothing can start, undefine
    /// or read the metadata of, which holds its name. One of lxcf's is removed as
    /// libvirt allows (defined from its own XML, then undefined) and `true` is
    /// returned; anything else is left as it is. The stale file in libvirt's state
    /// directory stays (it is libvirt's): a later restart shows the domain again,
    /// and it is cleared again.
    fn cleared_if_stale(&self, d: &VDomain, name: &str) -> Result<bool, RuntimeError> {
        let gone = |e: &virt::error::Error| is(e, ErrorNumber::NoDomain);
        match (d.is_persistent(), d.is_active()) {
            (Ok(false), Ok(false)) => {}
            (Err(e), _) | (_, Err(e)) if gone(&e) => return Ok(true),
            _ => return Ok(false),
        }
        let x = match d.xml_desc(0) {
            Ok(x) => x,
            Err(e) if gone(&e) => return Ok(true),
            Err(e) => return Err(op("read the definition of", name)(e)),
        };
        if xml::parse_meta(&x).is_none() {
            return Ok(false);
        }
        tracing::info!("{name}: removing the stopped transient domain libvirt kept");
        let defined = self.conn.define_domain_xml(&x).map_err(op("define", name))?;
        defined.undefine().map_err(op("undefine", name))?;
        Ok(true)
    }

    fn get_domain(&self, name: &str) -> Result<VDomain, RuntimeError> {
        self.lookup(name)?.ok_or_else(|| RuntimeError::Op { op: "find", object: name.into(), msg: "no such domain".into() })
    }

    fn describe(&self, d: &VDomain) -> Result<Instance, RuntimeError> {
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
        let persistent = d.is_persistent().map_err(op("read persistence of", &name))?;
        let meta = match d.metadata(sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(xml::NS), 0) {
            Ok(x) => xml::parse_meta(&x),
            Err(e) if is(&e, ErrorNumber::NoDomainMetadata) => None,
            Err(e) => return Err(op("read metadata of", &name)(e)),
        };
        Ok(Instance { name, state, autostart, persistent, meta })
    }

    fn wait_inactive(&self, d: &VDomain, name: &str, timeout: Duration) -> Result<bool, RuntimeError> {
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

    /// The host's memory, KiB, as /proc/meminfo's MemTotal: virNodeGetMemoryStats
    /// over all cells (virNodeGetInfo sums the NUMA nodes, which is less). Through
    /// virt-sys because the virt crate does not wrap this call.
    fn host_memory_kib(&self) -> Result<u64, RuntimeError> {
        let failed = || op("read the memory of", "the host")(virt::error::Error::last_error());
        let mut n: std::os::raw::c_int = 0;
        // SAFETY: with a null parameter array libvirt only writes the number of
        // parameters to `n`; the connection pointer is valid while `self` lives.
        let rc = unsafe {
            sys::virNodeGetMemoryStats(self.conn.as_ptr(), sys::VIR_NODE_MEMORY_STATS_ALL_CELLS, std::ptr::null_mut(), &mut n, 0)
        };
        if rc < 0 || n <= 0 {
            return Err(failed());
        }
        let mut params = vec![sys::virNodeMemoryStats { field: [0; 80], value: 0 }; n as usize];
        // SAFETY: `params` holds `n` elements, as libvirt asked for.
        let rc =
            unsafe { sys::virNodeGetMemoryStats(self.conn.as_ptr(), sys::VIR_NODE_MEMORY_STATS_ALL_CELLS, params.as_mut_ptr(), &mut n, 0) };
        if rc < 0 {
            return Err(failed());
        }
        params
            .iter()
            .take(n as usize)
            // SAFETY: libvirt writes NUL-terminated field names into the 80 bytes.
            .find(|p| unsafe { std::ffi::CStr::from_ptr(p.field.as_ptr()) } == sys::VIR_NODE_MEMORY_STATS_TOTAL)
            .map(|p| p.value)
            .ok_or_else(|| RuntimeError::Op {
                op: "read the memory of",
                object: "the host".into(),
                msg: "no total in its statistics".into(),
            })
    }

    /// virDomainDefineXML replaces a domain of the same name and UUID; with a fresh
    /// UUID it refuses an existing name, which is what a new container wants.
    fn define_xml(&self, xml: &str, name: &str) -> Result<(), RuntimeError> {
        self.conn.define_domain_xml(xml).map(drop).map_err(op("define", name))
    }
}

impl Runtime for Libvirt {
    fn list(&self) -> Result<Vec<Instance>, RuntimeError> {
        let all = self.conn.list_all_domains(0).map_err(op("list", "domains"))?;
        let mut out = Vec::with_capacity(all.len());
        for d in &all {
            match self.describe(d) {
                Ok(x) => out.push(x),
                // A stale transient domain of lxcf's fails there (its metadata): removed.
                Err(RuntimeError::Op { .. }) if self.cleared_if_stale(d, &d.name().map_err(op("read name of", "domain"))?)? => {}
                // Undefined between the listing and now: it no longer exists.
                Err(RuntimeError::Op { .. }) if d.is_persistent().is_err() => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Option<Instance>, RuntimeError> {
        match self.lookup(name)? {
            Some(d) => Ok(Some(self.describe(&d)?)),
            None => Ok(None),
        }
    }

    fn spec(&self, name: &str) -> Result<Spec, RuntimeError> {
        let x = self.get_domain(name)?.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(op("read the definition of", name))?;
        xml::parse_spec(&x).map_err(xml_error("read the definition of", name))
    }

    fn define(&self, spec: &Spec) -> Result<(), RuntimeError> {
        let name = spec.name.as_str();
        let x = match &spec.native {
            Some(native) => xml::derive(&native.0, spec).map_err(xml_error("derive a definition for", name))?,
            None => {
                let node = self.conn.node_info().map_err(op("read the CPUs of", "the host"))?;
                xml::domain_xml(spec, self.host_memory_kib()?, node.cpus)
            }
        };
        self.define_xml(&x, name)?;
        // The settings the spec has and the definition lacks, each through libvirt's
        // own call, as a later change would go (libvirt writes them as it reads them).
        let have = tune::settings(&x).map_err(xml_error("read the definition of", name))?;
        for s in have.changes_to(&spec.resources) {
            if let Err(e) = self.change_setting(name, &s, false) {
                if let Err(u) = self.undefine(name) {
                    tracing::error!("{name}: cannot undefine it after its settings failed: {u}");
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn undefine(&self, name: &str) -> Result<(), RuntimeError> {
        self.get_domain(name)?.undefine().map_err(op("undefine", name))
    }

    fn start(&self, name: &str) -> Result<(), RuntimeError> {
        // One start at a time from this process: starting domains at once from
        // threads on one connection once left a container running without libvirt's
        // monitor ("End of file while reading data"; see docs/ARCHITECTURE.md).
        // Batches build roots in parallel; the start itself takes a fraction of a second.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        self.get_domain(name)?.create().map_err(op("start", name))
    }

    fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), RuntimeError> {
        self.shutdown_all(&[name], timeout)
    }

    fn shutdown_all(&self, names: &[&str], timeout: Duration) -> Result<(), RuntimeError> {
        let mut asked = Vec::new();
        for name in names {
            let d = self.get_domain(name)?;
            if !d.is_active().map_err(op("read state of", name))? {
                continue;
            }
            // For LXC libvirt tells init through /dev/initctl, which systemd serves.
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

    fn destroy(&self, name: &str) -> Result<(), RuntimeError> {
        let d = self.get_domain(name)?;
        if d.is_active().map_err(op("read state of", name))? {
            self.lift_live_io_limits(&d, name);
        }
        match d.destroy() {
            Ok(()) => Ok(()),
            Err(e) if is(&e, ErrorNumber::OperationInvalid) => Ok(()), // not running
            Err(e) => Err(op("stop", name)(e)),
        }
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<(), RuntimeError> {
        self.get_domain(name)?.set_autostart(on).map(drop).map_err(op("set autostart of", name))
    }

    fn ensure_network(&self, net: &NetConfig) -> Result<(), RuntimeError> {
        let n = match self.conn.lookup_network_by_name(&net.name) {
            Ok(n) => {
                let x = n.xml_desc(0).map_err(op("read network", &net.name))?;
                let want = (net.gateway, net.subnet.prefix_len());
                match xml::network_addr(&x) {
                    Some((a, p, _)) if (a, p) == want => {}
                    found => {
                        let found = found.map(|(a, p, _)| format!("{a}/{p}")).unwrap_or_else(|| "no IPv4 address".into());
                        return Err(RuntimeError::Op {
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

    fn set_resource(&self, name: &str, s: &Setting, live: bool) -> Result<bool, RuntimeError> {
        self.change_setting(name, s, live)
    }

    fn live(&self, name: &str) -> Result<Option<Live>, RuntimeError> {
        let Some(d) = self.lookup(name)? else { return Ok(None) };
        // An LXC domain's ID is the PID of its libvirt_lxc controller.
        let Some(monitor) = d.id() else { return Ok(None) };
        let x = match d.xml_desc(0) {
            Ok(x) => x,
            Err(e) if is(&e, ErrorNumber::NoDomain) => return Ok(None),
            Err(e) => return Err(op("read the running definition of", name)(e)),
        };
        let doc = roxmltree::Document::parse(&x).map_err(|e| xml_error("read the running definition of", name)(xml::XmlError::Parse(e)))?;
        let host_veth = doc
            .descendants()
            .filter(|n| n.has_tag_name("interface"))
            .flat_map(|i| i.children())
            .find(|n| n.has_tag_name("target"))
            .and_then(|t| t.attribute("dev"))
            .map(str::to_string);
        Ok(Some(Live { monitor, host_veth }))
    }

    fn usage(&self, names: &[&str]) -> Result<BTreeMap<String, Usage>, RuntimeError> {
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

    /// `virsh console`: it already does what a console needs (raw terminal mode and
    /// its restoration, the Ctrl-] escape, libvirt's stream events both ways, taking
    /// over a console another client holds with --force), and virsh comes with
    /// libvirt's client package. The virt crate's open_console gives only the stream.
    fn console(&self, name: &str, force: bool) -> Result<i32, RuntimeError> {
        use std::os::unix::process::CommandExt;
        let mut virsh = std::process::Command::new("virsh");
        virsh.args(["-c", &self.uri, "console", name]);
        if force {
            virsh.arg("--force");
        }
        // virsh starts polkit's pkttyagent whenever it has a controlling terminal; the
        // agent puts the terminal back in line mode when it exits, which raced with
        // virsh's raw mode here (Ctrl-] then stayed in the line buffer). root needs no
        // polkit for libvirt's socket: in a session of its own virsh has no controlling
        // terminal and starts no agent, and still uses the terminal on stdin/stdout.
        // SAFETY: setsid is a plain system call, safe between fork and exec.
        unsafe {
            virsh.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
        }
        let status = virsh.status().map_err(|e| RuntimeError::Op {
            op: "open the console of",
            object: name.into(),
            msg: format!("cannot run virsh (libvirt's client): {e}"),
        })?;
        Ok(status.code().unwrap_or(1))
    }
}
