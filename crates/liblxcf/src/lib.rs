//! lxcf: divide one Linux host into long-lived system containers on libvirt-LXC.
//!
//! [`Lxcf`] is the front: made from the configuration, it owns the runtime, the
//! host and the paths, and its methods are the commands. It enforces every rule
//! itself (recovery of an interrupted update, the update lock, host limits before a
//! container starts, the network before starts, one command per container name at
//! a time), so any caller (the CLI, the daemon, a test) gets the same guarantees.
//!
//! The folders follow the concepts: [`container`] (lifecycle and the commands on
//! containers), [`rootfs`] (building a root: layout, copy, storage, identity),
//! [`runtime`] (the runtime trait on a neutral spec; libvirt), [`host`] (cgroups,
//! /proc, tc, limits), [`maint`] (update, deploy, merge), [`net`] (addresses and the
//! hosts block), [`resources`] (settings and their checks, pure).

use std::sync::Arc;

pub mod check;
pub mod config;
pub mod container;
pub mod error;
pub mod fault;
pub mod host;
pub mod lock;
pub mod maint;
pub mod name;
pub mod net;
pub mod resources;
pub mod rootfs;
pub mod runtime;

#[cfg(test)]
pub(crate) mod fake;

pub use config::Config;
pub use container::{Container, State};
pub use error::{Error, Kind, Result};
pub use name::Name;

/// How many host IDs an unprivileged container has (its 0 to COUNT-1).
pub const IDS_PER_CONTAINER: u32 = host::idmap::COUNT;

/// `lxcf hook-prepare NAME`: what the libvirt hook asks before an unprivileged
/// container starts (its trees mounted with its owners mapped), from the domain
/// definition libvirt gives the hook. Needs no configuration and never calls libvirt.
pub fn hook_prepare(name: &str, definition: &str) -> Result<()> {
    runtime::libvirt::hook::prepare(name, definition)
}

/// `lxcf hook-started NAME INIT`: what the libvirt hook asks once a container's init
/// runs: lxcfs's files bound into its mount namespace. Needs no configuration and
/// never calls libvirt. `Err(HostError::LxcfsDown)` when lxcfs is not running.
pub fn hook_started(init: u32) -> Result<usize> {
    Ok(host::lxcfs::bind(std::path::Path::new("/proc"), std::path::Path::new(host::lxcfs::DIR), init)?)
}

use host::Host;
use maint::update::{Recovered, Runner};
use rootfs::copy::Progress;
use runtime::Runtime;

/// What a front end shows while lxcf works; every method has a silent default.
pub trait Reporter: Send + Sync {
    /// An interrupted `lxcf update` was finished or rolled back before this command.
    fn recovered(&self, _r: &Recovered) {}
    /// Something lxcf found and repaired, or could not, before this command: what a
    /// killed command left, say. One line.
    fn found(&self, _what: &str) {}
    /// An `lxcf deploy` interrupted after its commit mark was finished before this command.
    fn deploy_finished(&self, _d: &maint::deploy::Deployed) {}
    /// A root is being copied (`what` says which); the value returned lives as long
    /// as the copy, so a progress display can end when it is dropped.
    fn copying(&self, _what: &str, _counters: Arc<Progress>) -> Box<dyn std::any::Any> {
        Box::new(())
    }
    /// Something the user should know that did not stop the command. One line.
    fn warn(&self, _what: &str) {}
}

struct Silent;

impl Reporter for Silent {}

/// The front: lxcf's commands on one configuration.
pub struct Lxcf {
    pub(crate) cfg: Config,
    pub(crate) rt: Arc<dyn Runtime>,
    pub(crate) host: Arc<dyn Host>,
    pub(crate) runner: Arc<dyn Runner>,
    pub(crate) report: Arc<dyn Reporter>,
}

impl Lxcf {
    /// lxcf on this host: the configured libvirt, the real host, the real update sandbox.
    pub fn open(cfg: Config) -> Result<Lxcf> {
        let rt = runtime::libvirt::Libvirt::connect(&cfg.uri)?;
        Ok(Lxcf::new(cfg, Arc::new(rt), Arc::new(host::System::default())))
    }

    /// lxcf on a given runtime and host (fakes, in tests).
    pub fn new(cfg: Config, rt: Arc<dyn Runtime>, host: Arc<dyn Host>) -> Lxcf {
        let runner = Arc::new(maint::update::sandbox::Sandbox::new(&cfg));
        Lxcf { cfg, rt, host, runner, report: Arc::new(Silent) }
    }

    pub fn with_reporter(mut self, r: Arc<dyn Reporter>) -> Lxcf {
        self.report = r;
        self
    }

    /// Another way to run `lxcf update`'s command (a fake, in tests).
    pub fn with_runner(mut self, r: Arc<dyn Runner>) -> Lxcf {
        self.runner = r;
        self
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }
}
