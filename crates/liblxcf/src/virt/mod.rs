//! The container runtime. Only this module talks to libvirt; the rest of lxcf sees
//! the [`Runtime`] trait, so operations are unit-tested against [`fake::Fake`], and
//! a second runtime (systemd-nspawn) could be added behind the same trait.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::NetConfig;
use crate::layout::Model;
use crate::resources::{Effective, Setting, Settings};

pub mod libvirt;
pub mod tune;
pub mod xml;

#[cfg(test)]
pub mod fake;

#[derive(Debug, thiserror::Error)]
pub enum VirtError {
    #[error("cannot connect to libvirt at {uri}: {msg}")]
    Connect { uri: String, msg: String },
    #[error("cannot {op} {object}: {msg}")]
    Op { op: &'static str, object: String, msg: String },
    #[error("timed out after {secs} s waiting for {name} to {what}")]
    Timeout { name: String, what: &'static str, secs: u64 },
}

/// What lxcf records about a container in the domain's `<metadata>`; libvirt is
/// the one place this lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub model: Model,
    pub ip: Ipv4Addr,
    /// The container's root directory on the host.
    pub root: PathBuf,
    pub network: String,
    /// lxcf version that created it.
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    /// Being shut down.
    Stopping,
    Stopped,
    Crashed,
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Crashed => "crashed",
            State::Unknown => "unknown",
        }
    }

    pub fn is_active(self) -> bool {
        !matches!(self, State::Stopped | State::Crashed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub name: String,
    pub state: State,
    pub autostart: bool,
    /// `None`: a libvirt domain that lxcf did not make.
    pub meta: Option<Meta>,
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
pub trait Runtime {
    /// Every domain, lxcf's and others'.
    fn domains(&self) -> Result<Vec<Domain>, VirtError>;
    fn domain(&self, name: &str) -> Result<Option<Domain>, VirtError>;
    /// The persistent (inactive) domain XML, as libvirt keeps it.
    fn xml(&self, name: &str) -> Result<String, VirtError>;
    /// Defines a persistent domain from XML; fails if the name is taken.
    fn define(&self, xml: &str) -> Result<(), VirtError>;
    fn undefine(&self, name: &str) -> Result<(), VirtError>;
    fn start(&self, name: &str) -> Result<(), VirtError>;
    /// Asks init to shut down, waits up to `timeout`, then pulls the plug.
    fn shutdown(&self, name: &str, timeout: Duration) -> Result<(), VirtError>;
    /// Stops at once.
    fn destroy(&self, name: &str) -> Result<(), VirtError>;
    /// [`Runtime::shutdown`] for several containers at once: each init is asked
    /// first, then all are waited for together, so stopping N containers takes
    /// about as long as the slowest, not the sum. This default is one by one.
    fn shutdown_all(&self, names: &[&str], timeout: Duration) -> Result<(), VirtError> {
        names.iter().try_for_each(|n| self.shutdown(n, timeout))
    }
    fn set_autostart(&self, name: &str, on: bool) -> Result<(), VirtError>;
    /// Creates the network if missing, starts it, marks it autostart. Errors if a
    /// network of that name exists with another address.
    fn ensure_network(&self, net: &NetConfig) -> Result<(), VirtError>;
    /// The resource settings in the persistent definition.
    fn resources(&self, name: &str) -> Result<Settings, VirtError>;
    /// Changes one resource setting in the persistent definition and, with `live`, in
    /// the running container.
    fn set_resource(&self, name: &str, s: &Setting, live: bool) -> Result<(), VirtError>;
    /// Sets, on a container that has just started, what the runtime does not set at
    /// start by itself: the network rates. (lxcf's libvirt hook does the same for
    /// starts lxcf does not make.)
    fn reapply(&self, name: &str) -> Result<(), VirtError>;
    /// The limits in effect, read back from the kernel; `None` when it is not running.
    fn effective(&self, name: &str) -> Result<Option<Effective>, VirtError>;
    /// CPU time and memory of those of `names` that are running. One call for all:
    /// `list` reads them twice for CPU %, and per-name lookups would double its
    /// requests. Only these: reading a domain that another client is starting or
    /// stopping waits for that to finish.
    fn usage(&self, names: &[&str]) -> Result<BTreeMap<String, Usage>, VirtError>;
    /// The PID, in the host's PID namespace, of the container's init; `None` when
    /// it is not running.
    fn init_pid(&self, name: &str) -> Result<Option<u32>, VirtError>;
}
