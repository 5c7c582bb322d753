//! Containers: the commands on them as methods of [`Lxcf`] (sysgen, clone, start,
//! stop, erase, sysstart in [`lifecycle`]; list; the resource commands and show in
//! [`tune`]; exec in [`enter`]), and the steps they share, each with its undo.
//!
//! A failing step runs the undo of every earlier step ([`Undo`]), also when the
//! failure is a panic, so a failed command leaves no directory, domain or hosts
//! line behind.

pub mod batch;
pub mod enter;
pub mod intent;
pub mod lifecycle;
pub mod list;
pub mod tune;
pub mod view;

mod clone;
pub mod ids;
mod sysgen;

#[cfg(test)]
pub(crate) mod tests;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{self, Error, Result};
use crate::fault::crash_point;
use crate::lock::{self, Lock};
use crate::maint::update;
use crate::name::Name;
use crate::net::{self, Hosts};
use crate::resources::Setting;
use crate::rootfs::identity::{self, Identity};
use crate::rootfs::scoped::Root;
use crate::rootfs::storage::{self, Backend};
use crate::runtime::{Instance, Meta, Spec};
use crate::Lxcf;

pub use sysgen::Create;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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

/// A container as `lxcf list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub state: State,
    pub autostart: bool,
    /// How its root is stored; `None` if the root is missing.
    pub storage: Option<Backend>,
    pub meta: Meta,
}

impl Container {
    /// An lxcf container's instance and its metadata, as `lxcf list` shows them.
    pub(crate) fn of(i: Instance, meta: Meta) -> Container {
        Container { name: i.name, state: i.state, autostart: i.autostart, storage: storage::backend_of(&meta.root), meta }
    }
}

/// One undo step: what it undoes, and how.
type Step<'a> = (String, Box<dyn FnOnce() -> Result<()> + 'a>);

/// Undo steps, run newest first when dropped without [`Undo::commit`]; then the
/// command's recorded intent, if it has one, is settled (what a failed step left
/// is cleaned up) and forgotten. A kill runs none of this: the next command finds
/// the intent ([`intent`]).
#[derive(Default)]
pub struct Undo<'a> {
    steps: Vec<Step<'a>>,
    intent: Option<intent::Pending<'a>>,
}

impl<'a> Undo<'a> {
    pub fn push(&mut self, what: impl Into<String>, f: impl FnOnce() -> Result<()> + 'a) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// The command's intent: settled after the steps are undone, forgotten on commit.
    pub(crate) fn intent(&mut self, p: intent::Pending<'a>) {
        self.intent = Some(p);
    }

    /// Everything succeeded: keep it.
    pub fn commit(mut self) {
        self.steps.clear();
        if let Some(p) = self.intent.take() {
            p.done();
        }
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            tracing::info!("undoing: {what}");
            if let Err(e) = f() {
                tracing::error!("could not undo ({what}): {}", error::chain(&e));
            }
        }
        // Dropped last: settles what the steps left.
        self.intent.take();
    }
}

/// What a command holds of `ROOT/.lxcf/update.lock` for its whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Shared: no update or deploy runs in the middle of the command.
    Shared,
    /// Nothing: update and deploy lock for themselves; exec and console may last a
    /// whole session and change nothing of lxcf's, so they do not hold updates back.
    Nothing,
}

impl Lxcf {
    /// Where every command starts: an interrupted `lxcf update` is finished or
    /// rolled back first, an interrupted `lxcf deploy` finished or discarded, then
    /// the update lock is held as `hold` says.
    pub(crate) fn enter(&self, hold: Hold) -> Result<Option<Lock>> {
        // What a killed command left is repaired first; what cannot be is reported and
        // does not stop this command (`lxcf check` says more): a container that cannot
        // be repaired must not keep every other one from being used.
        match update::recover(self) {
            Ok(Some(r)) => self.report.recovered(&r),
            Ok(None) => {}
            Err(e) => self.report.found(&format!("an interrupted `lxcf update` cannot be finished: {}", error::chain(&e))),
        }
        if let Err(e) = crate::maint::deploy::recover(self) {
            self.report.found(&format!("an interrupted `lxcf deploy` cannot be finished: {}", error::chain(&e)));
        }
        if self.cfg.root.is_dir() {
            // Roots hold setuid files owned by the host's root (an unprivileged
            // container's disk keeps the owners it sees): no one else may reach them.
            if let Err(e) = self.keep_root_private() {
                self.report.found(&format!("cannot make {} private (0700): {}", self.cfg.root.display(), error::chain(&e)));
            }
            if let Err(e) = self.recover_intents() {
                self.report.found(&format!("what an interrupted command left cannot be repaired: {}", error::chain(&e)));
            }
        }
        match hold {
            Hold::Shared => update::shared_lock(&self.cfg),
            Hold::Nothing => Ok(None),
        }
    }

    /// Where the locks live: beside the containers, in a directory no container name can take.
    pub(crate) fn lock_dir(&self) -> PathBuf {
        self.cfg.root.join(".lxcf")
    }

    fn global_lock(&self) -> Result<Lock> {
        Ok(lock::exclusive(&self.lock_dir().join("lock"))?)
    }

    /// NAME's lock if nobody holds it: for commands that must not wait behind another
    /// (creating or erasing NAME).
    fn name_lock(&self, name: &str) -> Result<Lock> {
        lock::try_exclusive(&self.lock_dir().join(format!("{name}.lock")))?.ok_or_else(|| Error::Busy(name.into()))
    }

    /// NAME's lock, waiting for it: for short changes that may queue behind each other.
    pub(crate) fn name_lock_wait(&self, name: &str) -> Result<Lock> {
        Ok(lock::exclusive(&self.lock_dir().join(format!("{name}.lock")))?)
    }

    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.cfg.root.join(name)
    }

    fn partial_dir(&self, name: &str) -> PathBuf {
        self.cfg.root.join(format!("{name}.partial"))
    }

    /// The containers root: made on first use, readable by root only. A container's
    /// root user could otherwise plant a set-uid program that host users can run.
    fn ensure_root(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.cfg.root).map_err(error::io("create", &self.cfg.root))?;
        self.keep_root_private()
    }

    /// The containers' root directory is 0700 whoever made it so otherwise.
    fn keep_root_private(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let root = &self.cfg.root;
        let mode = std::fs::metadata(root).map_err(error::io("stat", root))?.permissions().mode() & 0o7777;
        if mode != 0o700 {
            tracing::info!("{}: mode {mode:04o} made 0700", root.display());
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(error::io("chmod", root))?;
        }
        Ok(())
    }

    /// The instance of an lxcf container of this configuration.
    pub(crate) fn lxcf_instance(&self, name: &str) -> Result<(Instance, Meta)> {
        let i = self.rt.get(name)?.ok_or_else(|| Error::NotFound(name.into()))?;
        let meta = i.meta.clone().ok_or_else(|| Error::Foreign(name.into()))?;
        self.check_root(name, &meta)?;
        Ok((i, meta))
    }

    /// A container made under another root (another configuration) is not ours to touch.
    fn check_root(&self, name: &str, meta: &Meta) -> Result<()> {
        if meta.root != self.container_dir(name) {
            return Err(Error::OtherRoot { name: name.into(), dir: meta.root.clone(), root: self.cfg.root.clone() });
        }
        Ok(())
    }

    /// Who, if anyone, already uses `name`.
    fn taken_by(&self, hosts: &Hosts, name: &str) -> Result<Option<String>> {
        if let Some(i) = self.rt.get(name)? {
            return Ok(Some(match i.meta {
                Some(_) => "an lxcf container of that name exists".into(),
                None => "a libvirt domain of that name exists".into(),
            }));
        }
        for dir in [self.container_dir(name), self.partial_dir(name)] {
            if std::fs::symlink_metadata(&dir).is_ok() {
                return Ok(Some(format!("{} exists", dir.display())));
            }
        }
        if hosts.entries()?.iter().any(|e| e.name == name) {
            return Ok(Some(format!("{} has a line for it in lxcf's block", hosts.path.display())));
        }
        Ok(None)
    }

    /// The host IDs that are taken: every container's range (by its domain, and by
    /// the host-wide reservations of those still being made, whatever their root),
    /// the host's users and subordinate IDs.
    fn used_ids(&self, instances: &[Instance]) -> Vec<ids::Range> {
        let mut used = ids::host_ranges(Path::new("/etc"));
        used.extend(ids::reserved());
        used.extend(instances.iter().filter_map(|i| i.meta.as_ref()?.ids).map(ids::range));
        used
    }

    /// Takes a free range of host IDs for `name` under the host-wide lock, held from
    /// here on by its root record (and the host-wide reservation naming it).
    pub(crate) fn take_ids(&self, name: &str) -> Result<u32> {
        let _host = lock::exclusive(Path::new(ids::HOST_LOCK))?;
        let first = ids::allocate(&self.used_ids(&self.rt.list()?))?;
        self.record_root_ids(name, Some(first))?;
        ids::reserve(first, &self.record_path(name)).map_err(error::io("write", Path::new(ids::RESERVED)))?;
        Ok(first)
    }

    /// A new container's metadata, from what `reserve` gave it.
    pub(crate) fn meta(&self, model: crate::rootfs::layout::Model, r: &Reserved) -> Meta {
        Meta {
            model,
            ip: r.ip,
            root: r.dir.clone(),
            network: self.cfg.network.name.clone(),
            version: VERSION.into(),
            ids: r.ids,
            exe: std::env::current_exe().ok(),
        }
    }

    fn used_ips(&self, instances: &[Instance], hosts: &Hosts) -> Result<BTreeSet<Ipv4Addr>> {
        let mut used: BTreeSet<Ipv4Addr> =
            instances.iter().filter_map(|i| i.meta.as_ref()).filter(|m| m.network == self.cfg.network.name).map(|m| m.ip).collect();
        used.extend(hosts.entries()?.into_iter().map(|e| e.ip));
        Ok(used)
    }

    /// Refuses to start `names` when the host cannot hold them on top of the running
    /// containers (every running one counts, lxcf's or not; a name already running
    /// adds nothing).
    pub(crate) fn check_limits(&self, names: &[&str]) -> Result<()> {
        let all = self.rt.list()?;
        let (running, adding) = count_starts(&all, names);
        Ok(self.host.check_limits(running, adding)?)
    }

    /// Reserves `name` for a new container under the host-wide lock: checks it is
    /// free, allocates the lowest free address, makes sure the network exists and adds
    /// the hosts line. The lock is released on return: making the root is the slow part.
    pub(crate) fn reserve<'a>(
        &'a self,
        hosts: &'a Hosts,
        name: &'a str,
        intent: intent::Intent,
        privileged: bool,
        undo: &mut Undo<'a>,
    ) -> Result<Reserved> {
        self.ensure_root()?;
        let _lock = self.global_lock()?;
        let name_lock = self.name_lock(name)?;
        if let Some(by) = self.taken_by(hosts, name)? {
            return Err(Error::Taken { name: name.into(), by });
        }
        let instances = self.rt.list()?;
        // Before anything is made: a host that cannot map IDs, or has none left.
        if !privileged {
            crate::host::idmap::supported(&self.cfg.root)?;
        }
        undo.intent(self.begin(name, intent)?);
        let ids = match privileged {
            true => {
                self.record_root_ids(name, None)?;
                None
            }
            false => Some(self.take_ids(name)?),
        };
        let net = &self.cfg.network;
        let ip = net::allocate(net.subnet, net.gateway, &self.used_ips(&instances, hosts)?)?;
        self.rt.ensure_network(net)?;
        hosts.add(ip, name)?;
        crash_point("new:reserved");
        undo.push(format!("remove {name} from {}", self.cfg.hosts.display()), move || {
            let _lock = self.global_lock()?;
            hosts.remove(name)?;
            Ok(())
        });
        Ok(Reserved { ip, ids, partial: self.partial_dir(name), dir: self.container_dir(name), _name_lock: name_lock })
    }

    /// The last steps of a new container, whose root is complete in `r.partial`: its
    /// identity, the rename to its final place, the definition (`spec`, its
    /// resource settings included), the start, and what the runtime does not apply
    /// at start by itself (network rates). On success every step is kept.
    pub(crate) fn install<'a>(&'a self, name: &'a str, r: &Reserved, renamed: &Cell<bool>, spec: &Spec, mut undo: Undo<'a>) -> Result<()> {
        let root = Root::open(&r.partial)?;
        identity::apply(&root, &Identity { name, ip: r.ip, gateway: self.cfg.network.gateway })?;
        drop(root);
        crash_point("new:identity");
        rustix::fs::renameat_with(rustix::fs::CWD, &r.partial, rustix::fs::CWD, &r.dir, rustix::fs::RenameFlags::NOREPLACE)
            .map_err(error::io("rename", &r.partial))?;
        renamed.set(true);
        crash_point("new:renamed");
        self.rt.define(spec)?;
        undo.push(format!("undefine {name}"), move || self.undefine(name));
        crash_point("new:defined");
        let t = std::time::Instant::now();
        self.rt.start(name)?;
        tracing::info!("{name}: started in {:.2} s", t.elapsed().as_secs_f64());
        undo.push(format!("stop {name}"), move || Ok(self.rt.destroy(name)?));
        crash_point("new:started");
        self.reapply(name)?;
        crash_point("new:done");
        undo.commit();
        Ok(())
    }

    /// Undefines a stopped container, and removes the cgroups its init made, which
    /// the runtime does not know. A leftover cgroup is harmless (the container reuses
    /// it), so that failure is only reported.
    pub(crate) fn undefine(&self, name: &str) -> Result<()> {
        // Before the definition goes: `lxcf check` (of any root) never sees these
        // cgroups without their container.
        if let Err(e) = self.host.remove_cgroups(name) {
            tracing::warn!("{name}: {}", error::chain(&e));
        }
        self.rt.undefine(name)?;
        Ok(())
    }

    /// Sets, on a container that has just started, what the runtime does not set at
    /// start by itself: lxcfs's view (warned about, never fatal) and the network
    /// rates. (lxcf's libvirt hook does the same for starts lxcf does not make.)
    pub(crate) fn reapply(&self, name: &str) -> Result<()> {
        self.view_after_start(name);
        let r = self.rt.spec(name)?.resources;
        if r.net_in.is_none() && r.net_out.is_none() {
            return Ok(());
        }
        let Some(live) = self.rt.live(name)? else { return Ok(()) };
        self.apply_live(name, &live, &Setting::Net { inbound: r.net_in, outbound: r.net_out })
    }

    /// Applies `s` to the running container where the runtime could not.
    pub(crate) fn apply_live(&self, name: &str, live: &crate::runtime::Live, s: &Setting) -> Result<()> {
        match s {
            Setting::Cpus(c) => self.host.set_cpus(live, c.as_ref())?,
            Setting::Nodes(n) => self.host.set_mems(live, n.as_ref())?,
            Setting::Net { inbound, outbound } => self.host.shape(name, live, *inbound, *outbound)?,
            _ => {}
        }
        Ok(())
    }

    /// Runs `work` for each of `names`, `jobs` at a time, calling `each` as each
    /// finishes. One failure does not stop the others.
    pub(crate) fn each<T: Send>(
        &self,
        names: &[Name],
        jobs: usize,
        each: &(dyn Fn(&Name, &Result<T>) + Sync),
        work: impl Fn(&Name) -> Result<T> + Sync,
    ) -> Vec<(Name, Result<T>)> {
        batch::run(names, jobs, work, each)
    }
}

/// Running containers, and how many of `names` are not running yet.
fn count_starts(all: &[Instance], names: &[&str]) -> (u64, u64) {
    let running = all.iter().filter(|i| i.state.is_active()).count() as u64;
    let adding = names.iter().filter(|n| !all.iter().any(|i| i.name == **n && i.state.is_active())).count() as u64;
    (running, adding)
}

/// A name reserved for a new container: its address and hosts line are taken
/// (their undo registered), and the name's lock is held until the command ends, so
/// that `erase` cannot remove the root while it is being made.
pub(crate) struct Reserved {
    pub ip: Ipv4Addr,
    /// The first of its host IDs; `None`: privileged.
    pub ids: Option<u32>,
    /// Where the root is made, then renamed to `dir` when complete.
    pub partial: PathBuf,
    pub dir: PathBuf,
    _name_lock: Lock,
}

impl Lxcf {
    /// Registers the removal of a new root: `partial` until [`Lxcf::install`] renames it.
    pub(crate) fn undo_root<'a>(&'a self, r: &Reserved, undo: &mut Undo<'a>) -> Rc<Cell<bool>> {
        let renamed = Rc::new(Cell::new(false));
        let (flag, partial, dir) = (renamed.clone(), r.partial.clone(), r.dir.clone());
        undo.push(format!("remove {}", partial.display()), move || {
            let p: &Path = if flag.get() { &dir } else { &partial };
            self.remove_root(p)
        });
        renamed
    }

    /// Removes a container root: whatever is still mounted below it first (its
    /// data is not the container's), then the root without leaving it.
    pub(crate) fn remove_root(&self, dir: &Path) -> Result<()> {
        self.host.unmount_below(dir)?;
        Ok(storage::remove_root(dir)?)
    }
}
