//! The commands, as steps with undo: sysgen, erase, start, stop, sysstart, list,
//! clone ([`clone`]: it shares the reservation, identity and start steps).
//!
//! A failing step runs the undo of every earlier step ([`Undo`]), also when the
//! failure is a panic, so a failed command leaves no directory, domain or hosts
//! line behind.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::layout::Model;
use crate::lock::{self, Lock, LockError};
use crate::name::{self, NameError};
use crate::net::{self, Hosts, NetError};
use crate::resources::{ResourceError, Setting};
use crate::rootfs::{self, Identity, RootfsError};
use crate::scoped::Root;
use crate::storage::{self, Backend, StorageError};
use crate::virt::{xml, Domain, Meta, Runtime, State, VirtError};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long `erase` lets a container shut down cleanly before stopping it hard.
const ERASE_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container name: {0}")]
    Name(#[from] NameError),
    #[error("the name `{name}` is taken: {by}")]
    Taken { name: String, by: String },
    #[error("no container named `{0}`")]
    NotFound(String),
    #[error("`{0}` is a libvirt domain that lxcf did not create; lxcf leaves it alone")]
    Foreign(String),
    #[error("container `{name}` lives in {}, not under this configuration's root {}", dir.display(), root.display())]
    OtherRoot { name: String, dir: PathBuf, root: PathBuf },
    #[error("container `{0}` is being created or erased by another lxcf")]
    Busy(String),
    #[error("the root of container `{name}` is missing: {}", dir.display())]
    RootMissing { name: String, dir: PathBuf },
    #[error("cannot {op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Virt(#[from] VirtError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("container `{0}` is running; only a stopped container can be cloned")]
    Running(String),
}

impl Error {
    /// A line telling the user what they can do about it, where there is something.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Name(_) => "use 1 to 63 lower-case letters, digits and `-`, starting with a letter or digit (like web1)".into(),
            Error::Taken { name, .. } => format!("choose another name, or remove the old one first (`lxcf erase {name}`)"),
            Error::NotFound(_) => "`lxcf list` shows the containers".into(),
            Error::Busy(_) => "wait for the other lxcf command to finish".into(),
            Error::RootMissing { name, .. } => format!("`lxcf erase {name}` removes what is left of it"),
            Error::Running(name) => format!("stop it first: `lxcf stop {name}`"),
            Error::Virt(VirtError::Connect { .. }) => {
                "is libvirtd running? `scripts/setup-host` starts it (or `systemctl start libvirtd`)".into()
            }
            Error::Net(NetError::Full { .. }) => {
                "erase containers you no longer need, or give [Network] subnet a larger network in the config".into()
            }
            Error::Resource(e) => return e.hint(),
            _ => return None,
        })
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// Undo steps, run newest first when dropped without [`Undo::commit`].
#[derive(Default)]
pub struct Undo<'a> {
    steps: Vec<(String, Box<dyn FnOnce() -> std::result::Result<(), String> + 'a>)>,
}

impl<'a> Undo<'a> {
    pub fn push(&mut self, what: impl Into<String>, f: impl FnOnce() -> std::result::Result<(), String> + 'a) {
        self.steps.push((what.into(), Box::new(f)));
    }

    /// Everything succeeded: keep it.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            tracing::info!("undoing: {what}");
            if let Err(e) = f() {
                tracing::error!("could not undo ({what}): {e}");
            }
        }
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
    /// An lxcf container's domain and its metadata, as `lxcf list` shows them.
    pub(crate) fn of(d: Domain, meta: Meta) -> Container {
        Container { name: d.name, state: d.state, autostart: d.autostart, storage: storage::backend_of(&meta.root), meta }
    }
}

/// Where the locks live: beside the containers, in a directory no container name can take.
pub(crate) fn lock_dir(cfg: &Config) -> PathBuf {
    cfg.root.join(".lxcf")
}

fn global_lock(cfg: &Config) -> Result<Lock> {
    Ok(lock::exclusive(&lock_dir(cfg).join("lock"))?)
}

fn name_lock(cfg: &Config, name: &str) -> Result<Lock> {
    lock::try_exclusive(&lock_dir(cfg).join(format!("{name}.lock")))?.ok_or_else(|| Error::Busy(name.into()))
}

/// NAME's lock, waiting for it: for short changes that may queue behind each other.
pub(crate) fn name_lock_wait(cfg: &Config, name: &str) -> Result<Lock> {
    Ok(lock::exclusive(&lock_dir(cfg).join(format!("{name}.lock")))?)
}

pub fn container_dir(cfg: &Config, name: &str) -> PathBuf {
    cfg.root.join(name)
}

fn partial_dir(cfg: &Config, name: &str) -> PathBuf {
    cfg.root.join(format!("{name}.partial"))
}

/// The containers root: made on first use, readable by root only. A container's
/// root user could otherwise plant a set-uid program that host users can run.
fn ensure_root(cfg: &Config) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&cfg.root) {
        Ok(()) => Ok(()),
        Err(e) => Err(io("create", &cfg.root)(e)),
    }
}

/// Who, if anyone, already uses `name`.
fn taken_by(cfg: &Config, rt: &dyn Runtime, hosts: &Hosts, name: &str) -> Result<Option<String>> {
    if let Some(d) = rt.domain(name)? {
        return Ok(Some(match d.meta {
            Some(_) => "an lxcf container of that name exists".into(),
            None => "a libvirt domain of that name exists".into(),
        }));
    }
    for dir in [container_dir(cfg, name), partial_dir(cfg, name)] {
        if std::fs::symlink_metadata(&dir).is_ok() {
            return Ok(Some(format!("{} exists", dir.display())));
        }
    }
    if hosts.entries()?.iter().any(|e| e.name == name) {
        return Ok(Some(format!("{} has a line for it in lxcf's block", hosts.path.display())));
    }
    Ok(None)
}

fn used_ips(cfg: &Config, domains: &[Domain], hosts: &Hosts) -> Result<BTreeSet<Ipv4Addr>> {
    let mut used: BTreeSet<Ipv4Addr> =
        domains.iter().filter_map(|d| d.meta.as_ref()).filter(|m| m.network == cfg.network.name).map(|m| m.ip).collect();
    used.extend(hosts.entries()?.into_iter().map(|e| e.ip));
    Ok(used)
}

fn host_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(1 << 20)
}

fn host_cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// A name reserved for a new container: its address and hosts line are taken
/// (their undo registered), and the name's lock is held until the command ends, so
/// that `erase` cannot remove the root while it is being made.
pub(crate) struct Reserved {
    pub ip: Ipv4Addr,
    /// Where the root is made, then renamed to `dir` when complete.
    pub partial: PathBuf,
    pub dir: PathBuf,
    _name_lock: Lock,
}

/// Reserves `name` for a new container under the host-wide lock: checks it is
/// free, allocates the lowest free address, makes sure the network exists and adds
/// the hosts line. The lock is released on return: making the root is the slow part.
pub(crate) fn reserve<'a>(cfg: &'a Config, rt: &'a dyn Runtime, hosts: &'a Hosts, name: &'a str, undo: &mut Undo<'a>) -> Result<Reserved> {
    name::validate(name)?;
    ensure_root(cfg)?;
    let _lock = global_lock(cfg)?;
    let name_lock = name_lock(cfg, name)?;
    if let Some(by) = taken_by(cfg, rt, hosts, name)? {
        return Err(Error::Taken { name: name.into(), by });
    }
    let ip = net::allocate(cfg.network.subnet, cfg.network.gateway, &used_ips(cfg, &rt.domains()?, hosts)?)?;
    rt.ensure_network(&cfg.network)?;
    hosts.add(ip, name)?;
    undo.push(format!("remove {name} from {}", cfg.hosts.display()), move || {
        let _lock = global_lock(cfg).map_err(|e| e.to_string())?;
        hosts.remove(name).map(drop).map_err(|e| e.to_string())
    });
    Ok(Reserved { ip, partial: partial_dir(cfg, name), dir: container_dir(cfg, name), _name_lock: name_lock })
}

/// Registers the removal of a new root: `partial` until [`install`] renames it.
pub(crate) fn undo_root<'a>(r: &Reserved, undo: &mut Undo<'a>) -> Rc<Cell<bool>> {
    let renamed = Rc::new(Cell::new(false));
    let (flag, partial, dir) = (renamed.clone(), r.partial.clone(), r.dir.clone());
    undo.push(format!("remove {}", partial.display()), move || {
        let p = if flag.get() { &dir } else { &partial };
        storage::remove_root(p).map_err(|e| e.to_string())
    });
    renamed
}

/// The last steps of a new container, whose root is complete in `r.partial`: its
/// identity, the rename to its final place, the domain (`xml`) with `settings` put in
/// its definition, the start, and what the runtime does not apply at start by
/// itself (network rates). On success every step is kept.
#[allow(clippy::too_many_arguments)]
pub(crate) fn install<'a>(
    cfg: &Config,
    rt: &'a dyn Runtime,
    name: &'a str,
    r: &Reserved,
    renamed: &Cell<bool>,
    xml: &str,
    settings: &[Setting],
    mut undo: Undo<'a>,
) -> Result<()> {
    let root = Root::open(&r.partial).map_err(RootfsError::from)?;
    rootfs::apply_identity(&root, &Identity { name, ip: r.ip, gateway: cfg.network.gateway })?;
    drop(root);
    rustix::fs::renameat_with(rustix::fs::CWD, &r.partial, rustix::fs::CWD, &r.dir, rustix::fs::RenameFlags::NOREPLACE)
        .map_err(|e| io("rename", &r.partial)(e.into()))?;
    renamed.set(true);
    rt.define(xml)?;
    undo.push(format!("undefine {name}"), move || rt.undefine(name).map_err(|e| e.to_string()));
    for s in settings {
        rt.set_resource(name, s, false)?;
    }
    let t = std::time::Instant::now();
    rt.start(name)?;
    tracing::info!("{name}: started in {:.2} s", t.elapsed().as_secs_f64());
    undo.push(format!("stop {name}"), move || rt.destroy(name).map_err(|e| e.to_string()));
    rt.reapply(name)?;
    undo.commit();
    Ok(())
}

/// Creates a container and starts it: `lxcf sysgen`.
pub fn sysgen(cfg: &Config, rt: &dyn Runtime, name: &str, model: Option<Model>) -> Result<Container> {
    sysgen_with(cfg, rt, name, model, &[])
}

/// [`sysgen`] with resource settings, checked already (`tune::sysgen` checks them),
/// put in the definition before the first start.
pub fn sysgen_with(cfg: &Config, rt: &dyn Runtime, name: &str, model: Option<Model>, settings: &[Setting]) -> Result<Container> {
    let model = model.unwrap_or(cfg.model);
    let hosts = Hosts::new(&cfg.hosts);
    let mut undo = Undo::default();
    let r = reserve(cfg, rt, &hosts, name, &mut undo)?;
    tracing::info!("{name}: address {}, building a {model} root in {}", r.ip, r.partial.display());
    let t = std::time::Instant::now();
    let progress = Arc::new(crate::copy::Progress::default());
    let bar = crate::progress::Bar::show(&format!("{name}: building its root"), progress.clone());
    let ctl = crate::copy::Control { progress: Some(&progress), ..Default::default() };
    // Registered first: a panic in the copy unwinds through the undo too.
    let renamed = undo_root(&r, &mut undo);
    let built = rootfs::create(model, &cfg.source, &r.partial, &[&cfg.root], &ctl)?;
    drop(bar);
    let (backend, stats) = (built.backend, built.stats);
    tracing::info!(
        "{name}: root built in {:.2} s ({}{} files, {} MiB copied, {} by reflink)",
        t.elapsed().as_secs_f64(),
        if built.snapshot { "a trimmed btrfs snapshot of the source; " } else { "" },
        stats.files,
        stats.bytes >> 20,
        stats.reflinked
    );

    let meta = Meta { model, ip: r.ip, root: r.dir.clone(), network: cfg.network.name.clone(), version: VERSION.into() };
    let spec = xml::DomainSpec {
        name,
        uuid: uuid::Uuid::new_v4(),
        meta: &meta,
        source: &cfg.source,
        prefix_len: cfg.network.subnet.prefix_len(),
        gateway: cfg.network.gateway,
        memory_kib: host_memory_kib(),
        vcpus: host_cpus(),
    };
    install(cfg, rt, name, &r, &renamed, &xml::domain_xml(&spec), settings, undo)?;
    Ok(Container { name: name.into(), state: State::Running, autostart: false, storage: Some(backend), meta })
}

/// The domain of an lxcf container of this configuration.
pub fn lxcf_domain(cfg: &Config, rt: &dyn Runtime, name: &str) -> Result<(Domain, Meta)> {
    name::validate(name)?;
    let d = rt.domain(name)?.ok_or_else(|| Error::NotFound(name.into()))?;
    let meta = d.meta.clone().ok_or_else(|| Error::Foreign(name.into()))?;
    check_root(cfg, name, &meta)?;
    Ok((d, meta))
}

/// A container made under another root (another configuration) is not ours to touch.
fn check_root(cfg: &Config, name: &str, meta: &Meta) -> Result<()> {
    if meta.root != container_dir(cfg, name) {
        return Err(Error::OtherRoot { name: name.into(), dir: meta.root.clone(), root: cfg.root.clone() });
    }
    Ok(())
}

/// What `erase` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub domain: bool,
    pub dir: bool,
    pub hosts_line: bool,
}

/// Stops and removes a container: domain, root directory, hosts line. Also cleans
/// up what a crashed `sysgen` left (a `.partial` directory, a hosts line).
pub fn erase(cfg: &Config, rt: &dyn Runtime, name: &str) -> Result<Erased> {
    name::validate(name)?;
    let hosts = Hosts::new(&cfg.hosts);
    let _name_lock = if cfg.root.exists() { Some(name_lock(cfg, name)?) } else { None };
    let mut done = Erased::default();
    if let Some(d) = rt.domain(name)? {
        let meta = d.meta.as_ref().ok_or_else(|| Error::Foreign(name.into()))?;
        check_root(cfg, name, meta)?;
        if d.state.is_active() {
            // A clean shutdown is also the quick one: systemd as PID 1 ignores the
            // SIGTERM of libvirt's destroy, which then waits before SIGKILL.
            rt.shutdown(name, ERASE_SHUTDOWN_TIMEOUT)?;
        }
        rt.undefine(name)?;
        done.domain = true;
    }
    if hosts.entries()?.iter().any(|e| e.name == name) {
        let _lock = global_lock(cfg)?;
        done.hosts_line = hosts.remove(name)?;
    }
    for dir in [container_dir(cfg, name), partial_dir(cfg, name)] {
        match std::fs::symlink_metadata(&dir) {
            Ok(_) => {
                storage::remove_root(&dir)?;
                done.dir = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("stat", &dir)(e)),
        }
    }
    if done == Erased::default() {
        return Err(Error::NotFound(name.into()));
    }
    Ok(done)
}

/// Starts a stopped container. `Ok(false)`: it was running already.
pub fn start(cfg: &Config, rt: &dyn Runtime, name: &str) -> Result<bool> {
    let (d, meta) = lxcf_domain(cfg, rt, name)?;
    if d.state.is_active() {
        return Ok(false);
    }
    if !meta.root.is_dir() {
        return Err(Error::RootMissing { name: name.into(), dir: meta.root });
    }
    rt.ensure_network(&cfg.network)?;
    rt.start(name)?;
    // A container must not run without the limits it has: stop it if they fail.
    if let Err(e) = rt.reapply(name) {
        if let Err(e2) = rt.destroy(name) {
            tracing::error!("could not stop {name} after its network rates failed: {e2}");
        }
        return Err(e.into());
    }
    Ok(true)
}

/// Shuts a container down (init first, then hard after `timeout`). `Ok(false)`: it was stopped.
pub fn stop(cfg: &Config, rt: &dyn Runtime, name: &str, timeout: Duration) -> Result<bool> {
    let (d, _) = lxcf_domain(cfg, rt, name)?;
    if !d.state.is_active() {
        return Ok(false);
    }
    rt.shutdown(name, timeout)?;
    Ok(true)
}

/// Starts the container when the host boots (libvirt autostart), or no longer.
pub fn sysstart(cfg: &Config, rt: &dyn Runtime, name: &str, on: bool) -> Result<()> {
    lxcf_domain(cfg, rt, name)?;
    rt.set_autostart(name, on)?;
    Ok(())
}

/// The containers under this configuration's root, by name.
pub fn list(cfg: &Config, rt: &dyn Runtime) -> Result<Vec<Container>> {
    Ok(rt
        .domains()?
        .into_iter()
        .filter_map(|mut d| {
            let meta = d.meta.take()?;
            (meta.root.parent() == Some(cfg.root.as_path())).then(|| Container::of(d, meta))
        })
        .collect())
}

mod clone;
pub use clone::clone;

#[cfg(test)]
pub(crate) mod tests;
