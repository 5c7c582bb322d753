//! `lxcf start`, `stop`, `erase`, `sysstart`: each on several containers at once.

use std::time::Duration;

use super::intent::{self, Intent};
use super::Hold;
use crate::error::{self, Error, Result};
use crate::fault::crash_point;
use crate::maint::update;
use crate::name::Name;
use crate::net::Hosts;
use crate::Lxcf;

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
        // Waits for another command on it (an erase, say): started or not, never half.
        let _lock = self.name_lock_wait(name)?;
        let (i, meta) = self.lxcf_instance(name)?;
        if i.state.is_active() {
            return Ok(false);
        }
        if !meta.root.is_dir() {
            return Err(Error::RootMissing { name: name.into(), dir: meta.root });
        }
        if update::pending_for(&self.cfg, name) {
            return Err(Error::UpdatePending(name.into()));
        }
        self.rt.ensure_network(&self.cfg.network)?;
        self.rt.start(name)?;
        crash_point("start:started");
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
            let _lock = self.name_lock_wait(n)?;
            let (i, _) = self.lxcf_instance(n)?;
            if !i.state.is_active() {
                return Ok(false);
            }
            self.rt.shutdown(n, timeout)?;
            Ok(true)
        }))
    }

    /// `lxcf unprivilege NAME`: a stopped privileged container (one made with
    /// `--privileged` or by an lxcf before 0.2) gets a range of host IDs and the
    /// capability policy, from its next start on. Its files keep their owners: a
    /// root is stored with the owners the container sees, privileged or not, and the
    /// ID-mapped mounts show them shifted. Returns the first ID of its range.
    pub fn unprivilege(&self, name: &Name) -> Result<u32> {
        let _update = self.enter(Hold::Shared)?;
        let _lock = self.name_lock_wait(name)?;
        let (i, meta) = self.lxcf_instance(name)?;
        if let Some(b) = meta.ids {
            return Ok(b);
        }
        if i.state.is_active() {
            return Err(Error::Running(name.to_string()));
        }
        crate::host::idmap::supported(&self.cfg.root)?;
        let mut spec = self.rt.spec(name)?;
        let had_record = self.recorded(name);
        let base = self.take_ids(name)?;
        spec.meta.ids = Some(base);
        spec.meta.exe = std::env::current_exe().ok();
        if spec.dropped_caps.is_empty() {
            spec.dropped_caps = crate::runtime::DROPPED_CAPS.iter().map(|c| c.to_string()).collect();
        }
        if let Err(e) = self.rt.define(&spec) {
            let undone = if had_record { self.record_root_ids(name, None) } else { self.forget_root(name) };
            if let Err(u) = undone {
                tracing::error!("{name}: cannot give back its range of IDs: {u}");
            }
            return Err(e.into());
        }
        Ok(base)
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
        if !self.cfg.root.exists() {
            // Nothing of lxcf's here; a domain of another configuration is refused below.
            return self.remove_everything(name);
        }
        let _name_lock = self.name_lock(name)?;
        let pending = self.begin(name, Intent::Erase)?;
        let done = self.remove_everything(name);
        match &done {
            Ok(_) | Err(Error::NotFound(_) | Error::Foreign(_) | Error::OtherRoot { .. } | Error::NotOurs { .. }) => pending.done(),
            // Kept: the next lxcf command, or `lxcf erase` again, finishes it.
            Err(_) => pending.keep(),
        }
        done
    }

    /// Stops, undefines and removes everything of `name`: its domain (if lxcf's),
    /// hosts line, root and partial root (if lxcf recorded them as its own), cgroups
    /// and record. Idempotent: what a killed sysgen, clone or erase left is removed by
    /// running it again. There is no clean shutdown first: what the container would
    /// save is deleted next, and a systemd still booting would hold the erase up for
    /// the whole timeout.
    pub(crate) fn remove_everything(&self, name: &str) -> Result<Erased> {
        let hosts = Hosts::new(&self.cfg.hosts);
        let mut done = Erased::default();
        let mut ours = self.recorded(name);
        // A start that slips in between the stop and the undefine (`virsh start`)
        // leaves a transient domain: look again until there is none.
        for _ in 0..10 {
            let Some(i) = self.rt.get(name)? else { break };
            let meta = i.meta.as_ref().ok_or_else(|| Error::Foreign(name.into()))?;
            self.check_root(name, meta)?;
            ours = true;
            if i.state.is_active() {
                self.kill(name)?;
            }
            crash_point("erase:stopped");
            if i.persistent {
                self.undefine(name)?;
            }
            done.domain = true;
        }
        if self.rt.get(name)?.is_some() {
            return Err(Error::Busy(name.into()));
        }
        crash_point("erase:undefined");
        if hosts.entries()?.iter().any(|e| e.name == name) {
            let _lock = self.global_lock()?;
            done.hosts_line = hosts.remove(name)?;
        }
        crash_point("erase:hosts");
        for dir in [self.container_dir(name), self.partial_dir(name)] {
            match std::fs::symlink_metadata(&dir) {
                Ok(_) if !ours => return Err(intent::not_ours(name, &dir)),
                Ok(_) => {
                    self.remove_root(&dir)?;
                    done.dir = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(error::io("stat", &dir)(e).into()),
            }
        }
        crash_point("erase:removed");
        if let Err(e) = self.host.remove_cgroups(name) {
            tracing::warn!("{name}: {}", error::chain(&e));
        }
        self.forget_root(name)?;
        if done == Erased::default() {
            return Err(Error::NotFound(name.into()));
        }
        Ok(done)
    }

    /// Stops a container at once: its init is killed (with it, every process in the
    /// container), then the runtime is told. libvirt's own destroy signals init with
    /// SIGTERM first, which systemd ignores, and waits seconds before SIGKILL.
    pub(crate) fn kill(&self, name: &str) -> Result<()> {
        if let Some(live) = self.rt.live(name)? {
            if self.host.kill(&live)? {
                let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while std::time::Instant::now() < until && self.rt.get(name)?.is_some_and(|i| i.state.is_active()) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
        // What is left of it, if anything: the runtime's own hard stop.
        Ok(self.rt.destroy(name)?)
    }
}
