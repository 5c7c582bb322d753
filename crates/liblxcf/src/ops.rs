//! The commands, as steps with undo: sysgen, erase, start, stop, sysstart, list.
//!
//! A failing step runs the undo of every earlier step ([`Undo`]), also when the
//! failure is a panic, so a failed command leaves no directory, domain or hosts
//! line behind.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::layout::Model;
use crate::lock::{self, Lock, LockError};
use crate::name::{self, NameError};
use crate::net::{self, Hosts, NetError};
use crate::resources::{ResourceError, Setting};
use crate::rootfs::{self, Identity, RootfsError};
use crate::scoped::Root;
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
    pub meta: Meta,
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
        .and_then(|m| {
            m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
        })
        .unwrap_or(1 << 20)
}

fn host_cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

/// Creates a container and starts it: `lxcf sysgen`.
pub fn sysgen(cfg: &Config, rt: &dyn Runtime, name: &str, model: Option<Model>) -> Result<Container> {
    sysgen_with(cfg, rt, name, model, &[])
}

/// [`sysgen`] with resource settings, checked already (`tune::sysgen` checks them),
/// put in the definition before the first start.
pub fn sysgen_with(cfg: &Config, rt: &dyn Runtime, name: &str, model: Option<Model>, settings: &[Setting]) -> Result<Container> {
    name::validate(name)?;
    let model = model.unwrap_or(cfg.model);
    ensure_root(cfg)?;
    let hosts = Hosts::new(&cfg.hosts);
    let dir = container_dir(cfg, name);
    let partial = partial_dir(cfg, name);
    let mut undo = Undo::default();

    // Reserve name, address, directory and hosts line under the host-wide lock;
    // build the root (the slow part) without it. The name lock is held to the end,
    // so that `erase` cannot remove the directory while it is being built.
    let lock = global_lock(cfg)?;
    let _name_lock = name_lock(cfg, name)?;
    if let Some(by) = taken_by(cfg, rt, &hosts, name)? {
        return Err(Error::Taken { name: name.into(), by });
    }
    let ip = net::allocate(cfg.network.subnet, cfg.network.gateway, &used_ips(cfg, &rt.domains()?, &hosts)?)?;
    rt.ensure_network(&cfg.network)?;
    std::fs::create_dir(&partial).map_err(io("create", &partial))?;
    let renamed = std::rc::Rc::new(std::cell::Cell::new(false));
    {
        let (renamed, partial, dir) = (renamed.clone(), partial.clone(), dir.clone());
        undo.push(format!("remove {}", partial.display()), move || {
            let p = if renamed.get() { &dir } else { &partial };
            std::fs::remove_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))
        });
    }
    hosts.add(ip, name)?;
    let h = &hosts;
    undo.push(format!("remove {name} from {}", cfg.hosts.display()), move || {
        let _lock = global_lock(cfg).map_err(|e| e.to_string())?;
        h.remove(name).map(drop).map_err(|e| e.to_string())
    });
    drop(lock);
    tracing::info!("{name}: address {ip}, building a {model} root in {}", partial.display());

    let t = std::time::Instant::now();
    let skip = crate::copy::dir_id(&cfg.root).map_err(io("stat", &cfg.root))?;
    let stats = rootfs::build(model, &cfg.source, &partial, &[skip])?;
    tracing::info!(
        "{name}: root built in {:.2} s ({} files, {} MiB)",
        t.elapsed().as_secs_f64(),
        stats.files,
        stats.bytes >> 20
    );
    let root = Root::open(&partial).map_err(RootfsError::from)?;
    rootfs::apply_identity(&root, &Identity { name, ip, gateway: cfg.network.gateway })?;
    drop(root);
    rustix::fs::renameat_with(rustix::fs::CWD, &partial, rustix::fs::CWD, &dir, rustix::fs::RenameFlags::NOREPLACE)
        .map_err(|e| io("rename", &partial)(e.into()))?;
    renamed.set(true);

    let meta = Meta { model, ip, root: dir.clone(), network: cfg.network.name.clone(), version: VERSION.into() };
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
    rt.define(&xml::domain_xml(&spec))?;
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
    Ok(Container { name: name.into(), state: State::Running, autostart: false, meta })
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
                std::fs::remove_dir_all(&dir).map_err(io("remove", &dir))?;
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
        .filter_map(|d| {
            let meta = d.meta?;
            (meta.root.parent() == Some(cfg.root.as_path())).then_some(Container {
                name: d.name,
                state: d.state,
                autostart: d.autostart,
                meta,
            })
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests;
