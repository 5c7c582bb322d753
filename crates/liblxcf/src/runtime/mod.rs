//! The container runtime, behind one trait on a runtime-neutral description of a
//! container ([`Spec`]). The rest of lxcf never sees how a runtime stores a
//! container; libvirt's XML is written and read only in [`libvirt`]. A second
//! runtime (systemd-nspawn, for distributions that dropped libvirt-LXC) would be one
//! more module implementing [`Runtime`].
//!
//! What a runtime does not do itself (the CPU set of a running container, network
//! rates, cgroups it does not place) lxcf does through [`crate::host`], from the
//! facts a runtime gives about a running container ([`Live`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::NetConfig;
use crate::container::State;
use crate::resources::{Setting, Settings};
use crate::rootfs::layout::Model;

pub mod libvirt;

/// A runtime's error: what lxcf asked, of which object, and what the runtime said.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to libvirt at {uri}: {msg}")]
    Connect { uri: String, msg: String },
    #[error("cannot {op} {object}: {msg}")]
    Op { op: &'static str, object: String, msg: String },
    /// The connection to the runtime broke during the command (libvirtd stopped).
    #[error("cannot {op} {object}: the connection to libvirt was lost ({msg})")]
    Lost { op: &'static str, object: String, msg: String },
}

/// What lxcf records about a container with the runtime (libvirt: lxcf's element in
/// the domain's `<metadata>`). The runtime is the one place this lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub model: Model,
    pub ip: Ipv4Addr,
    /// The container's root directory on the host: its `/`.
    pub root: PathBuf,
    pub network: String,
    /// lxcf version that created it.
    pub version: String,
    /// The first of the container's 65536 host user and group IDs (its root's),
    /// `None`: a privileged container, its root the host's root (docs/SECURITY.md).
    pub ids: Option<u32>,
    /// The lxcf executable that made or last defined the container: the runtime's
    /// start hook runs it to give an unprivileged container its ID-mapped trees.
    pub exe: Option<PathBuf>,
}

/// A directory of the host seen inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    /// The path inside the container.
    pub target: PathBuf,
    pub readonly: bool,
}

/// A network interface of the container, its address set before init starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The runtime's network it is attached to.
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// `None`: the runtime makes one.
    pub mac: Option<String>,
}

/// A container as lxcf describes it to a runtime. The container boots the
/// `/sbin/init` of its root; how the runtime gets there is the runtime's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub uuid: uuid::Uuid,
    /// lxcf's record; `meta.root` is the container's `/`.
    pub meta: Meta,
    /// Host directories bound in, from the model's layout table.
    pub mounts: Vec<Mount>,
    pub interfaces: Vec<Interface>,
    pub resources: Settings,
    /// Capabilities root inside lacks beyond the runtime's own drops ([`DROPPED_CAPS`]
    /// for a new container; none for one made before lxcf had the policy).
    pub dropped_caps: Vec<String>,
    /// The runtime's own definition this spec was read from, opaque to lxcf. A spec
    /// defined with it keeps what lxcf has no field for (devices or tuning added
    /// with virsh): `lxcf clone` derives NEW from SRC's spec this way.
    pub native: Option<Native>,
}

/// The capability policy of new containers: what root inside lacks beyond what
/// libvirt-LXC drops itself (sys_module, sys_time, mknod, audit_control, mac_admin,
/// sys_resource). The table in the README says why each is dropped and why the
/// others are kept.
pub const DROPPED_CAPS: &[&str] = &["sys_rawio", "mac_override", "sys_pacct", "syslog", "wake_alarm", "block_suspend", "linux_immutable"];

/// A runtime's own definition of a container; only the runtime that made it reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Native(pub(crate) String);

/// A container the runtime knows, lxcf's or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub state: State,
    pub autostart: bool,
    /// Defined to outlive a stop; `false`: a transient domain, gone when it stops.
    pub persistent: bool,
    /// `None`: not made by lxcf.
    pub meta: Option<Meta>,
}

/// A running container as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// The runtime's process that supervises the container (libvirt_lxc): its
    /// cgroups are the container's, and its one child is the container's init.
    pub monitor: u32,
    /// The host end of the container's first interface.
    pub host_veth: Option<String>,
}

/// What a running container uses, as the runtime counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU time of all its processes since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use (its memory cgroup's usage: resident pages and page cache).
    pub memory_bytes: u64,
}

/// The operations lxcf needs from a container runtime.
pub trait Runtime: Send + Sync {
    /// Every container, lxcf's and others', by name.
    fn list(&self) -> Result<Vec<Instance>, RuntimeError>;
    fn get(&self, name: &str) -> Result<Option<Instance>, RuntimeError>;
    /// The persistent definition.
    fn spec(&self, name: &str) -> Result<Spec, RuntimeError>;
    /// Defines a new persistent container, its resource settings included; fails if
    /// the name is taken.
    fn define(&self, spec: &Spec) -> Result<(), RuntimeError>;
    fn undefine(&self, name: &str) -> Result<(), RuntimeError>;
    fn start(&self, name: &str) -> Result<(), RuntimeError>;
    /// Asks init to shut down, waits up to `timeout`, then pulls the plug.
    fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), RuntimeError>;
    /// [`Runtime::shutdown`] for several containers at once: each init is asked
    /// first, then all are waited for together, so stopping N containers takes
    /// about as long as the slowest, not the sum. This default is one by one.
    fn shutdown_all(&self, names: &[&str], timeout: Duration) -> Result<(), RuntimeError> {
        names.iter().try_for_each(|n| self.shutdown(n, timeout))
    }
    /// Stops at once.
    fn destroy(&self, name: &str) -> Result<(), RuntimeError>;
    fn set_autostart(&self, name: &str, on: bool) -> Result<(), RuntimeError>;
    /// Creates the network if missing, starts it, marks it autostart. Errors if a
    /// network of that name exists with another address.
    fn ensure_network(&self, net: &NetConfig) -> Result<(), RuntimeError>;
    /// Records one resource setting in the persistent definition and, with `live`,
    /// applies it to the running container where the runtime can. `Ok(true)`: it
    /// took effect live; `Ok(false)` with `live`: lxcf must apply it (through the
    /// host) itself.
    fn set_resource(&self, name: &str, s: &Setting, live: bool) -> Result<bool, RuntimeError>;
    /// The running container's supervisor and interface; `None` when it is not running.
    fn live(&self, name: &str) -> Result<Option<Live>, RuntimeError>;
    /// CPU time and memory of those of `names` that are running. One call for all:
    /// `list` reads them twice for CPU %, and per-name lookups would double its
    /// requests. Only these: reading a container that another client is starting or
    /// stopping waits for that to finish.
    fn usage(&self, names: &[&str]) -> Result<BTreeMap<String, Usage>, RuntimeError>;
    /// Hands the caller's terminal to the running container's console until the
    /// user leaves it; `force` takes it from another client. The exit status.
    fn console(&self, name: &str, force: bool) -> Result<i32, RuntimeError>;
}
