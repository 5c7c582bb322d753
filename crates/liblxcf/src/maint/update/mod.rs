//! `lxcf update`: one package command for the host and its containers, all or nothing.
//!
//! Joint containers share the host's /usr, but each has its own /etc and /var:
//! config files, the package database, what maintainer scripts wrote. A package
//! change must reach all of them and the host together (the talk's "How LXCF
//! maintain runtime on Joint model"). The command is passed through untouched, so
//! dpkg, apt, rpm and dnf work alike.
//!
//! The transaction:
//! 1. Stop the containers ([`journal`] first records who was running).
//! 2. For each container, run the command in a [`sandbox`]: an overlay over the
//!    whole container root whose upper directory collects every change, and for a
//!    joint container a throw-away overlay over the host's /usr (the talk's
//!    "dummy" /usr). Nothing in the container changes yet.
//! 3. If any run fails, discard every upper directory: nothing changed anywhere.
//! 4. Run the command on the host. If it fails, discard the containers' uppers.
//! 5. Mark the journal `commit`, move each upper into its container ([`merge`]),
//!    and start the containers that were running.
//!
//! A crash before step 5 leaves the containers as they were; the next lxcf command
//! ([`recover`]) discards the uppers and starts them again. From step 5 on, the
//! merge is restartable, and the next command finishes it.
//!
//! Locking: an update (and `lxcf deploy`) holds `ROOT/.lxcf/update.lock`
//! exclusively; every other lxcf command holds it shared ([`shared_lock`]), so
//! that nothing starts, stops or erases a container in the middle of an update.

pub mod child;
pub mod journal;
pub mod sandbox;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::container::{Container, Undo};
use crate::error::Error;
use crate::lock::{self, Lock};
use crate::maint::merge::{self, Kind, Merge, MergeError};
use crate::name::Name;
use crate::rootfs::layout::Model;
use crate::runtime::RuntimeError;
use crate::Lxcf;

pub use journal::{Journal, JournalError, Member, Phase};

/// How long a container gets to shut down cleanly before it is stopped hard
/// (the default of `lxcf stop`).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The time limit of each run of the command (each container's, the host's) when
/// none is given: an hour. A package manager that has not finished by then waits
/// for input it will never get, or is stuck; while it runs, the containers stay
/// down and every other lxcf command waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot stop the containers for the update")]
    Stop(#[source] RuntimeError),
    #[error("the update is committed for some containers but not yet for `{name}`")]
    Commit { name: String, source: MergeError },
}

impl UpdateError {
    pub fn hint(&self) -> Option<String> {
        match self {
            UpdateError::Commit { .. } => Some("fix the cause, then run any lxcf command (say `lxcf list`): it finishes the commit".into()),
            UpdateError::Journal(_) => {
                Some("the journal lies in the containers root under .lxcf/update; see `lxcf update` in the README".into())
            }
            _ => None,
        }
    }
}

impl From<JournalError> for Error {
    fn from(e: JournalError) -> Error {
        Error::Update(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

use crate::error::io;

/// How one run of the command ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The run could not be set up (a mount failed, the program is missing...).
    pub error: Option<String>,
    /// The run was killed because it reached this time limit.
    pub timed_out: Option<Duration>,
    pub seconds: f64,
}

impl Outcome {
    pub fn failed_to_start(error: impl Into<String>, seconds: f64) -> Outcome {
        Outcome { error: Some(error.into()), seconds, ..Outcome::default() }
    }

    pub fn success(&self) -> bool {
        self.error.is_none() && self.timed_out.is_none() && self.code == Some(0)
    }

    /// "exit status 1", "killed by signal 9", "timed out after 2 s", or why it could not run.
    pub fn describe(&self) -> String {
        match (&self.error, self.code, self.signal) {
            (Some(e), _, _) => e.clone(),
            (None, _, _) if self.timed_out.is_some() => {
                format!("timed out after {} s and killed", self.timed_out.unwrap_or_default().as_secs_f64())
            }
            (None, Some(c), _) => format!("exit status {c}"),
            (None, None, Some(s)) => format!("killed by signal {s}"),
            _ => "no exit status".into(),
        }
    }
}

/// One container's run: everything a [`Runner`] needs.
pub struct Job<'a> {
    pub name: &'a str,
    pub model: Model,
    /// The container's root directory.
    pub root: &'a Path,
    /// A fresh directory for this run; changes to the container go to [`upper`] in it.
    pub work: &'a Path,
    pub command: &'a [OsString],
    /// The run is killed when it lasts longer; `None`: no limit.
    pub timeout: Option<Duration>,
}

/// Where a run's changes to the container root are collected.
pub fn upper(work: &Path) -> PathBuf {
    work.join("upper")
}

/// Runs the command for a container and on the host. The real one is
/// [`sandbox::Sandbox`]; tests use a fake that writes into the upper directory.
pub trait Runner: Send + Sync {
    /// Runs the command for a container; every change must land in [`upper`]`(job.work)`.
    fn container(&self, job: &Job) -> Outcome;
    /// Runs the command on the host, killed after `timeout` (`None`: no limit).
    fn host(&self, command: &[OsString], timeout: Option<Duration>) -> Outcome;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Changed, and the change is kept.
    Updated,
    /// The command failed here.
    Failed,
    /// The command succeeded here, but its changes were discarded (another target failed).
    RolledBack,
    /// Not run, because another target had failed.
    NotRun,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Updated => "updated",
            Status::Failed => "failed",
            Status::RolledBack => "rolled back",
            Status::NotRun => "not run",
        }
    }
}

/// A container or the host, in the report.
#[derive(Debug, Clone)]
pub struct Target {
    /// The container's name, or `host`.
    pub name: String,
    /// `None` for the host.
    pub model: Option<Model>,
    pub status: Status,
    pub outcome: Option<Outcome>,
    /// From the stop to the restart, for containers that were running.
    pub downtime: Option<f64>,
    /// Set if the container could not be started again after the update.
    pub restart_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub targets: Vec<Target>,
    /// How long each phase took, in order: `stop`, `containers`, `host`, `commit`, `start`.
    pub phases: Vec<(&'static str, f64)>,
    /// True when every target succeeded and the changes were kept.
    pub committed: bool,
    /// An interrupted earlier update that was finished or rolled back first.
    pub recovered: Option<Recovered>,
}

impl Report {
    /// The first target whose command failed.
    pub fn failed(&self) -> Option<&Target> {
        self.targets.iter().find(|t| t.status == Status::Failed)
    }
}

/// Progress, for the command line.
#[derive(Debug)]
pub enum Event<'a> {
    Recovered(&'a Recovered),
    Stopping(&'a str),
    Running(&'a str),
    Ran(&'a str, &'a Outcome),
    Committed(&'a str),
    Started(&'a str),
}

/// What was asked.
pub struct Request<'a> {
    pub command: &'a [OsString],
    /// Only these containers, and not the host.
    pub to: Option<&'a [Name]>,
    /// The time limit of each run (each container's, the host's); `None`: no limit.
    /// [`DEFAULT_TIMEOUT`] is the usual one.
    pub timeout: Option<Duration>,
}

impl Lxcf {
    /// The containers of this configuration, or the named ones (each must exist).
    /// Changes nothing: bad names are reported before anything is done.
    pub(crate) fn select(&self, names: Option<&[Name]>) -> Result<Vec<Container>> {
        let all = match names {
            None => self.containers()?,
            Some(names) => {
                let mut out: Vec<Container> = Vec::new();
                for n in names {
                    if out.iter().any(|c| c.name == n.as_str()) {
                        continue;
                    }
                    let (d, meta) = self.lxcf_instance(n)?;
                    out.push(Container::of(d, meta));
                }
                out
            }
        };
        for c in &all {
            if !c.meta.root.is_dir() {
                return Err(Error::RootMissing { name: c.name.clone(), dir: c.meta.root.clone() });
            }
        }
        Ok(all)
    }

    /// `lxcf update`: runs the command for the containers and the host, all or
    /// nothing. A failing command is not an error: the report says where it failed,
    /// and nothing was changed.
    /// An interrupted update is finished or rolled back first, under the same lock,
    /// and reported as [`Event::Recovered`].
    pub fn update(&self, req: &Request, progress: &mut dyn FnMut(Event)) -> Result<Report> {
        update(self, req, progress)
    }
}

/// `ROOT/.lxcf/update`: the journal and the runs' work directories.
pub fn update_dir(cfg: &Config) -> PathBuf {
    cfg.root.join(".lxcf/update")
}

fn lock_path(cfg: &Config) -> PathBuf {
    cfg.root.join(".lxcf/update.lock")
}

/// Held by update and deploy.
pub fn exclusive_lock(cfg: &Config) -> Result<Lock> {
    Ok(lock::exclusive(&lock_path(cfg))?)
}

/// The exclusive lock if nobody holds the lock at all.
pub(crate) fn try_exclusive_lock(cfg: &Config) -> Result<Option<Lock>> {
    Ok(lock::try_exclusive(&lock_path(cfg))?)
}

/// Held by every other command for its whole run; `None` while there is no
/// containers root yet (nothing to protect, and nothing is created for it).
pub fn shared_lock(cfg: &Config) -> Result<Option<Lock>> {
    if !cfg.root.is_dir() {
        return Ok(None);
    }
    Ok(Some(lock::shared(&lock_path(cfg))?))
}

/// An interrupted update's journal is waiting for [`recover`].
pub fn pending(cfg: &Config) -> bool {
    update_dir(cfg).join(journal::FILE).exists()
}

/// An interrupted update that `name` takes part in is not finished: its root may be
/// half committed, so it must not start.
pub fn pending_for(cfg: &Config, name: &str) -> bool {
    pending(cfg) && Journal::read(&update_dir(cfg)).ok().flatten().is_none_or(|j| j.members.iter().any(|m| m.name == name))
}

use crate::fault::crash_point;

/// Runs the command for the containers and the host: `lxcf update`.
/// A failing command is not an error: the report says where it failed, and
/// nothing was changed.
fn update(lx: &Lxcf, req: &Request, progress: &mut dyn FnMut(Event)) -> Result<Report> {
    assert!(!req.command.is_empty(), "the command line requires a command");
    let (cfg, rt, runner) = (&lx.cfg, &*lx.rt, &*lx.runner);
    let host = req.to.is_none();
    if !cfg.root.is_dir() {
        // No containers root, so no containers: the host alone (named ones do not exist).
        lx.select(req.to)?;
        return Ok(host_only(runner, req, progress, None));
    }
    let _lock = exclusive_lock(cfg)?;
    let recovered = recover_locked(lx)?;
    if let Some(r) = &recovered {
        progress(Event::Recovered(r));
    }
    // A deploy killed after its commit mark is finished before the containers are
    // stopped and overlaid.
    crate::maint::deploy::recover_locked(lx)?;
    let containers = lx.select(req.to)?;
    if containers.is_empty() {
        return Ok(host_only(runner, req, progress, recovered));
    }

    let dir = update_dir(cfg);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("remove leftovers in", &dir))?;
    }
    create_private_dir(&dir)?;
    let mut journal = Journal {
        phase: Phase::Run,
        command: req.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        host,
        host_started: false,
        members: containers
            .iter()
            .map(|c| Member {
                name: c.name.clone(),
                model: c.meta.model.to_string(),
                root: c.meta.root.clone(),
                was_running: c.state.is_active(),
            })
            .collect(),
    };
    journal.write(&dir)?;
    // Until the commit mark is written, any way out (an error, a panic) rolls back.
    let mut undo = Undo::default();
    {
        let (dir, j) = (dir.clone(), journal.clone());
        undo.push("roll the update back", move || rollback(lx, &dir, &j).map(drop));
    }

    let mut phases = Vec::new();
    let mut phase = |name: &'static str, since: Instant| {
        let s = since.elapsed().as_secs_f64();
        tracing::info!("{name}: {s:.3} s");
        phases.push((name, s));
        Instant::now()
    };
    let running: Vec<&str> = containers.iter().filter(|c| c.state.is_active()).map(|c| c.name.as_str()).collect();
    let down_since = Instant::now();
    for n in &running {
        progress(Event::Stopping(n));
    }
    rt.shutdown_all(&running, STOP_TIMEOUT).map_err(|e| Error::Update(UpdateError::Stop(e)))?;
    let t = phase("stop", down_since);
    crash_point("update:stopped");

    let works: Vec<PathBuf> = containers.iter().map(|c| dir.join(&c.name)).collect();
    for w in &works {
        create_private_dir(w)?;
        create_private_dir(&upper(w))?;
    }
    let jobs: Vec<Job> = containers
        .iter()
        .zip(&works)
        .map(|(c, w)| Job { name: &c.name, model: c.meta.model, root: &c.meta.root, work: w, command: req.command, timeout: req.timeout })
        .collect();
    let outcomes = run_all(runner, &jobs, progress);
    let t = phase("containers", t);
    let mut targets: Vec<Target> = containers
        .iter()
        .zip(outcomes)
        .map(|(c, o)| Target {
            name: c.name.clone(),
            model: Some(c.meta.model),
            status: match &o {
                None => Status::NotRun,
                Some(o) if o.success() => Status::RolledBack,
                Some(_) => Status::Failed,
            },
            outcome: o,
            downtime: None,
            restart_error: None,
        })
        .collect();
    let host_target = |status, outcome| Target { name: "host".into(), model: None, status, outcome, downtime: None, restart_error: None };
    if targets.iter().any(|t| t.status != Status::RolledBack) {
        if host {
            targets.push(host_target(Status::NotRun, None));
        }
        drop(undo);
        return Ok(Report { targets, committed: false, phases, recovered });
    }
    crash_point("update:ran");

    if host {
        journal.host_started = true;
        journal.write(&dir)?;
        progress(Event::Running("host"));
        let o = runner.host(req.command, req.timeout);
        progress(Event::Ran("host", &o));
        if !o.success() {
            targets.push(host_target(Status::Failed, Some(o)));
            drop(undo);
            return Ok(Report { targets, committed: false, phases, recovered });
        }
        targets.push(host_target(Status::Updated, Some(o)));
    }
    let t = phase("host", t);
    crash_point("update:host");

    // The point of no return: the uppers are on disk, then the journal says commit.
    for w in &works {
        discard_scratch(w)?;
        sync_tree(&upper(w))?;
    }
    journal.phase = Phase::Commit;
    journal.write(&dir)?;
    undo.commit();
    crash_point("update:committed");
    for m in &journal.members {
        commit_member(&dir, m)?;
        crash_point(&format!("update:merged:{}", m.name));
        progress(Event::Committed(&m.name));
    }
    let t = phase("commit", t);
    let restarts = restart(lx, &journal, progress);
    phase("start", t);
    finish(&dir)?;
    for t in targets.iter_mut() {
        if t.model.is_some() {
            t.status = Status::Updated;
        }
        if let Some(r) = restarts.get(&t.name) {
            match r {
                Ok(at) => t.downtime = Some(at.duration_since(down_since).as_secs_f64()),
                Err(e) => t.restart_error = Some(e.to_string()),
            }
        }
    }
    Ok(Report { targets, committed: true, phases, recovered })
}

fn host_only(runner: &dyn Runner, req: &Request, progress: &mut dyn FnMut(Event), recovered: Option<Recovered>) -> Report {
    let mut targets = Vec::new();
    if req.to.is_none() {
        progress(Event::Running("host"));
        let o = runner.host(req.command, req.timeout);
        progress(Event::Ran("host", &o));
        let status = if o.success() { Status::Updated } else { Status::Failed };
        targets.push(Target { name: "host".into(), model: None, status, outcome: Some(o), downtime: None, restart_error: None });
    }
    let committed = targets.iter().all(|t| t.status == Status::Updated);
    Report { targets, committed, phases: Vec::new(), recovered }
}

fn create_private_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(io("create", p))?;
    Ok(())
}

/// Runs the jobs, as many at once as there are CPUs; after a failure no new one
/// starts. `None`: not run.
fn run_all(runner: &dyn Runner, jobs: &[Job], progress: &mut dyn FnMut(Event)) -> Vec<Option<Outcome>> {
    let mut out: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(jobs.len());
    let (next, failed) = (&AtomicUsize::new(0), &AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Outcome)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            s.spawn(move || loop {
                if failed.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(job) = jobs.get(i) else { break };
                let o = runner.container(job);
                if !o.success() {
                    failed.store(true, Ordering::SeqCst);
                }
                if tx.send((i, o)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, o) in rx {
            progress(Event::Ran(jobs[i].name, &o));
            out[i] = Some(o);
        }
    });
    out
}

/// Removes everything of a run but its upper directory (the overlay's work
/// directory, the mount point, the throw-away /usr).
fn discard_scratch(work: &Path) -> Result<()> {
    let keep = upper(work);
    for e in std::fs::read_dir(work).map_err(io("read", work))? {
        let p = e.map_err(io("read", work))?.path();
        if p != keep {
            std::fs::remove_dir_all(&p).map_err(io("remove", &p))?;
        }
    }
    Ok(())
}

/// Puts the files and directories of an upper on disk: they must be there
/// before the journal says they are to be committed. (The overlay was mounted
/// `volatile`, so the package manager's own fsyncs did not reach them.) Only this
/// tree is flushed, not the whole filesystem with the other containers' data.
pub(crate) fn sync_tree(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let e = e.map_err(io("read", dir))?;
        let t = e.file_type().map_err(io("stat", &e.path()))?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            std::fs::File::open(e.path()).and_then(|f| f.sync_all()).map_err(io("sync", &e.path()))?;
        }
    }
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io("sync", dir))?;
    Ok(())
}

/// Applies one container's upper directory to its root; restartable.
fn commit_member(dir: &Path, m: &Member) -> Result<()> {
    let work = dir.join(&m.name);
    let up = upper(&work);
    if up.is_dir() {
        if !m.root.is_dir() {
            tracing::warn!("{}: root {} is gone; its part of the update is dropped", m.name, m.root.display());
        } else {
            let err = |source: std::io::Error| UpdateError::Commit {
                name: m.name.clone(),
                source: MergeError::Io(crate::error::IoError { op: "open", path: m.root.clone(), source }),
            };
            let src = merge::open(&up).map_err(err)?;
            let dst = merge::open(&m.root).map_err(err)?;
            let mut n = 0u64;
            let mut hook = |_: &Path| {
                n += 1;
                crash_point(&format!("update:commit:{}:{n}", m.name));
            };
            let stats = merge::merge(&src, &dst, &mut Merge { kind: Kind::Overlay, dst_label: &m.root, after_entry: &mut hook })
                .map_err(|source| UpdateError::Commit { name: m.name.clone(), source })?;
            tracing::info!(
                "{}: committed ({} moved, {} removed, {} directories merged)",
                m.name,
                stats.moved,
                stats.removed,
                stats.merged_dirs
            );
        }
    }
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io("remove", &work))?;
    }
    Ok(())
}

/// Starts the members that were running and are stopped now. Each result is the
/// time its start returned, or why it failed.
///
/// One after the other: starting several domains at once on one libvirt
/// connection (threads) once left a container running but unmanageable here
/// (libvirt 9.0 lost its monitor: "End of file while reading data" in its log,
/// `lxc-enter-namespace` failing), so starts are not overlapped.
fn restart(lx: &Lxcf, j: &Journal, progress: &mut dyn FnMut(Event)) -> BTreeMap<String, std::result::Result<Instant, RuntimeError>> {
    let rt = &*lx.rt;
    let mut out = BTreeMap::new();
    let mut names = Vec::new();
    for m in j.members.iter().filter(|m| m.was_running) {
        match rt.get(&m.name) {
            Ok(Some(d)) if d.state.is_active() => {
                out.insert(m.name.clone(), Ok(Instant::now()));
            }
            Ok(Some(_)) => names.push(m.name.as_str()),
            Ok(None) => {
                let gone = RuntimeError::Op { op: "start", object: m.name.clone(), msg: "its domain is gone".into() };
                out.insert(m.name.clone(), Err(gone));
            }
            Err(e) => {
                out.insert(m.name.clone(), Err(e));
            }
        }
    }
    let network = rt.ensure_network(&lx.cfg.network);
    for name in names {
        let r = match network.clone().and_then(|()| rt.start(name)) {
            Ok(()) => {
                progress(Event::Started(name));
                Ok(Instant::now())
            }
            Err(e) => {
                tracing::error!("{name}: cannot start it again: {e}");
                Err(e)
            }
        };
        out.insert(name.to_string(), r);
    }
    out
}

/// Removes the journal, then the rest of the update directory.
fn finish(dir: &Path) -> Result<()> {
    let j = dir.join(journal::FILE);
    std::fs::remove_file(&j).map_err(io("remove", &j))?;
    std::fs::remove_dir_all(dir).map_err(io("remove", dir))?;
    Ok(())
}

/// Discards every run's changes and starts the containers that were running.
/// The journal goes last, so that a crash in here is rolled back again.
fn rollback(lx: &Lxcf, dir: &Path, j: &Journal) -> Result<Vec<String>> {
    for m in &j.members {
        let w = dir.join(&m.name);
        if w.exists() {
            std::fs::remove_dir_all(&w).map_err(io("remove", &w))?;
        }
    }
    crash_point("update:discarded");
    let restarted = restart(lx, j, &mut |_| {});
    finish(dir)?;
    let mut names = Vec::new();
    for (name, r) in restarted {
        r?;
        names.push(name);
    }
    Ok(names)
}

/// What [`recover`] did about an interrupted update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub command: Vec<String>,
    /// Finished (true) or rolled back (false).
    pub committed: bool,
    pub containers: Vec<String>,
    /// Rolled back after the command had started on the host: the host may be changed.
    pub host_started: bool,
}

/// Finishes or rolls back an update that was interrupted (a crash, a kill).
/// Waits for an update that is still running. `None`: there was nothing to do.
pub(crate) fn recover(lx: &Lxcf) -> Result<Option<Recovered>> {
    if !pending(&lx.cfg) {
        return Ok(None);
    }
    let _lock = exclusive_lock(&lx.cfg)?;
    recover_locked(lx)
}

/// [`recover`], under the exclusive update lock.
pub(crate) fn recover_locked(lx: &Lxcf) -> Result<Option<Recovered>> {
    let dir = update_dir(&lx.cfg);
    let Some(j) = Journal::read(&dir)? else { return Ok(None) };
    let committed = j.phase == Phase::Commit;
    if committed {
        for m in &j.members {
            commit_member(&dir, m)?;
        }
        restart(lx, &j, &mut |_| {});
        finish(&dir)?;
    } else {
        rollback(lx, &dir, &j)?;
    }
    Ok(Some(Recovered {
        command: j.command,
        committed,
        containers: j.members.into_iter().map(|m| m.name).collect(),
        host_started: !committed && j.host_started,
    }))
}

#[cfg(test)]
pub(crate) mod tests;
