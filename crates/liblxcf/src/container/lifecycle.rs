//! `lxcf start`, `stop`, `erase`, `sysstart`: each on several containers at once.

use std::time::Duration;

use super::Hold;
use crate::error::{self, Error, Result};
use crate::name::Name;
use crate::net::Hosts;
use crate::rootfs::storage;
use crate::Lxcf;

/// How long `erase` lets a container shut down cleanly before stopping it hard.
const ERASE_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// What `erase` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub domain: bool,
    pub dir: bool,
    pub hosts_line: bool,
}

/// `each`: told of every container as it finishes.
type Each<'a, T> = &'a (dyn Fn(&Name, &Result<T>) + Sync);

fn strs(names: &[Name]) -> Vec<&str> {
    names.iter().map(|n| n.as_str()).collect()
}

impl Lxcf {
    /// Starts stopped containers (`Ok(false)`: it was running). `Err`: none was
    /// started (host limits, the network).
    pub fn start(&self, names: &[Name], jobs: usize, each: Each<bool>) -> Result<Vec<(Name, Result<bool>)>> {
        let _update = self.enter(Hold::Shared)?;
        self.check_limits(&strs(names))?;
        // Once, before the parallel starts: each start makes sure the network runs, and
        // two creating a missing network at once would collide.
        self.rt.ensure_network(&self.cfg.network)?;
        Ok(self.each(names, jobs, each, |n| self.start_one(n)))
    }

    pub(crate) fn start_one(&self, name: &str) -> Result<bool> {
        let (i, meta) = self.lxcf_instance(name)?;
        if i.state.is_active() {
            return Ok(false);
        }
        if !meta.root.is_dir() {
            return Err(Error::RootMissing { name: name.into(), dir: meta.root });
        }
        self.rt.ensure_network(&self.cfg.network)?;
        self.rt.start(name)?;
        // A container must not run without the limits it has: stop it if they fail.
        if let Err(e) = self.reapply(name) {
            if let Err(e2) = self.rt.destroy(name) {
                tracing::error!("could not stop {name} after its network rates failed: {e2}");
            }
            return Err(e);
        }
        Ok(true)
    }

    /// Shuts containers down (init first, then hard after `timeout`). `Ok(false)`: it was stopped.
    pub fn stop(&self, names: &[Name], timeout: Duration, jobs: usize, each: Each<bool>) -> Result<Vec<(Name, Result<bool>)>> {
        let _update = self.enter(Hold::Shared)?;
        Ok(self.each(names, jobs, each, |n| {
            let (i, _) = self.lxcf_instance(n)?;
            if !i.state.is_active() {
                return Ok(false);
            }
            self.rt.shutdown(n, timeout)?;
            Ok(true)
        }))
    }

    /// Starts containers when the host boots (the runtime's autostart), or no longer.
    pub fn sysstart(&self, names: &[Name], on: bool, jobs: usize, each: Each<()>) -> Result<Vec<(Name, Result<()>)>> {
        let _update = self.enter(Hold::Shared)?;
        Ok(self.each(names, jobs, each, |n| {
            self.lxcf_instance(n)?;
            Ok(self.rt.set_autostart(n, on)?)
        }))
    }

    /// Stops and removes containers: definition, root directory, hosts line. Also
    /// cleans up what a crashed `sysgen` left (a `.partial` directory, a hosts line).
    pub fn erase(&self, names: &[Name], jobs: usize, each: Each<Erased>) -> Result<Vec<(Name, Result<Erased>)>> {
        let _update = self.enter(Hold::Shared)?;
        Ok(self.each(names, jobs, each, |n| self.erase_one(n)))
    }

    fn erase_one(&self, name: &str) -> Result<Erased> {
        let hosts = Hosts::new(&self.cfg.hosts);
        let _name_lock = if self.cfg.root.exists() { Some(self.name_lock(name)?) } else { None };
        let mut done = Erased::default();
        if let Some(i) = self.rt.get(name)? {
            let meta = i.meta.as_ref().ok_or_else(|| Error::Foreign(name.into()))?;
            self.check_root(name, meta)?;
            if i.state.is_active() {
                // A clean shutdown is also the quick one: systemd as PID 1 ignores the
                // SIGTERM of libvirt's destroy, which then waits before SIGKILL.
                self.rt.shutdown(name, ERASE_SHUTDOWN_TIMEOUT)?;
            }
            self.undefine(name)?;
            done.domain = true;
        }
        if hosts.entries()?.iter().any(|e| e.name == name) {
            let _lock = self.global_lock()?;
            done.hosts_line = hosts.remove(name)?;
        }
        for dir in [self.container_dir(name), self.partial_dir(name)] {
            match std::fs::symlink_metadata(&dir) {
                Ok(_) => {
                    storage::remove_root(&dir)?;
                    done.dir = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(error::io("stat", &dir)(e).into()),
            }
        }
        if done == Erased::default() {
            return Err(Error::NotFound(name.into()));
        }
        Ok(done)
    }
}
