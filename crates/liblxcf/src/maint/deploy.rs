//! `lxcf deploy PATH`: a host file or directory copied to the same path in every
//! container (or the named ones).
//!
//! For each container the tree is first copied, faithfully ([`crate::rootfs::copy`]:
//! owner, mode, times, xattrs), into a staging directory beside the containers
//! (`ROOT/.lxcf/deploy`, which no container can reach). Only when every copy is
//! made and no container has a directory where a file goes (or the reverse) is
//! anything moved into a container: by `rename`, entry by entry ([`crate::maint::merge`]),
//! so each file appears whole, at once. Bad input therefore changes nothing.
//!
//! All containers or none, also across a crash, a kill or a failure half-way: the
//! staged copies are put on disk (fsync), then the journal
//! (`ROOT/.lxcf/deploy/journal.json`: the path, and for each container its root and
//! the directory the copy goes into) is written. That is the commit mark. Before
//! it, any failure or crash discards the staging and no container has changed; from
//! it on, the deploy goes forward: the merge consumes each staged entry as it moves
//! it, so running it again on what is left finishes it. A failure after the mark
//! (a container put something in the way meanwhile, a disk filled up) keeps the
//! journal, and the next lxcf command ([`recover`], from `Lxcf::enter`, as for an
//! interrupted update) finishes the deploy once the cause is gone. The normal path
//! runs the same code after the mark as that recovery, so it is always exercised.
//!
//! The destination is found with `openat2(RESOLVE_IN_ROOT)` ([`crate::rootfs::scoped`]):
//! a symlink in the container (`/etc/x -> /host/file`, `../../..`) resolves inside
//! the container's root, and a symlink at the destination itself is replaced,
//! never written through.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::container::Hold;
use crate::error::{self, Error, IoError};
use crate::fault::crash_point;
use crate::maint::merge::{self, Kind, Merge, MergeError};
use crate::maint::update::{self, journal, JournalError};
use crate::name::Name;
use crate::rootfs::copy::{self, CopyError};
use crate::rootfs::layout::{self, Action, Model, Prune};
use crate::rootfs::scoped::Root;
use crate::Lxcf;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot deploy {}", path.display())]
    Source { path: PathBuf, source: std::io::Error },
    #[error("cannot deploy {}: name a file or a directory", path.display())]
    NoName { path: PathBuf },
    #[error("no containers to deploy to")]
    NoContainers,
    #[error("cannot deploy {} to `{name}`: {why}, so a file there would not be seen", path.display())]
    Hidden { name: String, path: PathBuf, why: &'static str },
    #[error("cannot deploy to `{name}`: {msg}")]
    Target { name: String, msg: String },
    #[error("cannot deploy to `{name}`")]
    Merge { name: String, source: MergeError },
    #[error("cannot copy {} for `{name}`", path.display())]
    Copy { name: String, path: PathBuf, source: CopyError },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the deploy of {} is committed, but not yet done in `{name}`", path.display())]
    Finish { name: String, path: PathBuf, source: MergeError },
}

impl DeployError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            DeployError::NoContainers => "create one first (`lxcf sysgen NAME`)".into(),
            DeployError::Hidden { .. } => "deploy to another path, or with --to only to containers where it is seen".into(),
            DeployError::Merge { source: MergeError::Conflict { .. }, .. } => {
                "remove or rename it in that container first; nothing was deployed anywhere".into()
            }
            DeployError::Finish { .. } => {
                "fix the cause (remove what is in the way in that container), then run any lxcf command (say `lxcf list`): it finishes the deploy".into()
            }
            DeployError::Journal(_) => "the journal lies in the containers root under .lxcf/deploy; see `lxcf deploy` in the README".into(),
            _ => return None,
        })
    }
}

impl DeployError {
    /// The user's input is wrong (as opposed to the host failing us).
    pub fn is_usage(&self) -> bool {
        matches!(self, DeployError::Source { .. } | DeployError::NoName { .. } | DeployError::Hidden { .. })
    }
}

type Result<T> = std::result::Result<T, Error>;

use crate::error::io;

/// What was deployed where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// The path in the containers (the host path, symlinks of its parents resolved).
    pub path: PathBuf,
    pub containers: Vec<String>,
}

/// The commit mark: everything is staged, on disk, and fits. Its members' staged
/// trees go into their containers, even after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// What is deployed, for messages.
    pub path: PathBuf,
    pub members: Vec<Member>,
}

/// One container's part: `ROOT/.lxcf/deploy/NAME`, whose entries go into `anchor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// The container's root directory.
    pub root: PathBuf,
    /// The deepest directory on the way to the destination that existed when the
    /// copy was staged, as a path inside the container (resolved in its root again
    /// when the merge runs).
    pub anchor: PathBuf,
}

/// `ROOT/.lxcf/deploy`: the staged copies and, from the commit mark on, the journal.
fn deploy_dir(cfg: &Config) -> PathBuf {
    cfg.root.join(".lxcf/deploy")
}

/// Removes the staging directory however a deploy ends before its commit mark;
/// disarmed (`None`) at the mark.
struct Staging(Option<PathBuf>);

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if p.exists() {
                if let Err(e) = std::fs::remove_dir_all(&p) {
                    tracing::error!("cannot remove {}: {e}", p.display());
                }
            }
        }
    }
}

impl Lxcf {
    /// `lxcf deploy PATH [--to NAME...]`: all or nothing across the containers'
    /// copies (see the module's header).
    pub fn deploy(&self, path: &Path, to: Option<&[Name]>) -> Result<Deployed> {
        let _ = self.enter(Hold::Nothing)?;
        self.deploy_locked(path, to)
    }

    fn deploy_locked(&self, path: &Path, to: Option<&[Name]>) -> Result<Deployed> {
        let cfg = &self.cfg;
        let abs = std::path::absolute(path).map_err(|source| DeployError::Source { path: path.into(), source })?;
        std::fs::symlink_metadata(&abs).map_err(|source| DeployError::Source { path: path.into(), source })?;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Err(DeployError::NoName { path: path.into() }.into());
        };
        if name == ".." || name == "." {
            return Err(DeployError::NoName { path: path.into() }.into());
        }
        let parent = std::fs::canonicalize(parent).map_err(|source| DeployError::Source { path: path.into(), source })?;
        let dest = parent.join(name);

        let containers = self.select(to)?;
        if containers.is_empty() {
            return Err(DeployError::NoContainers.into());
        }
        for c in &containers {
            if let Some(why) = hidden(c.meta.model, &dest) {
                return Err(DeployError::Hidden { name: c.name.clone(), path: dest, why }.into());
            }
        }
        let _lock = update::exclusive_lock(cfg)?;
        // Under the lock, an interrupted update or deploy is dealt with first (one
        // may have been killed since `enter` looked); leftovers are gone after this.
        if let Some(r) = update::recover_locked(self)? {
            self.report.recovered(&r);
        }
        recover_locked(self)?;
        let dir = deploy_dir(cfg);
        create_private_dir(&dir)?;
        let mut staging = Staging(Some(dir.clone()));
        let skip = copy::dir_id(&cfg.root).map_err(io("stat", &cfg.root))?;

        let mut members = Vec::new();
        for c in &containers {
            let root = Root::open(&c.meta.root).map_err(|e| DeployError::Target { name: c.name.clone(), msg: error::chain(&e) })?;
            let (anchor, anchor_path, missing) = anchor(&root, &parent, &c.name)?;
            let stage = dir.join(&c.name);
            create_private_dir(&stage)?;
            // Missing parents are made as on the host (owner, mode, times), empty but for the path.
            let mut at = stage.clone();
            let mut host_dir = parent.clone();
            for _ in &missing {
                host_dir.pop();
            }
            let mut made = Vec::new();
            for m in &missing {
                at.push(m);
                host_dir.push(m);
                let opts = copy::Options { prune: vec![(PathBuf::new(), Prune::Contents)], skip_dirs: vec![] };
                copy::copy_tree(&host_dir, &at, &opts).map_err(|source| DeployError::Copy {
                    name: c.name.clone(),
                    path: host_dir.clone(),
                    source,
                })?;
                made.push((at.clone(), host_dir.clone()));
            }
            let item = at.join(name);
            let copied = if std::fs::symlink_metadata(&abs).map_err(io("stat", &abs))?.is_dir() {
                copy::copy_tree(&abs, &item, &copy::Options { prune: vec![], skip_dirs: vec![skip] }).map(drop)
            } else {
                copy::copy_entry(&abs, &item)
            };
            copied.map_err(|source| DeployError::Copy { name: c.name.clone(), path: abs.clone(), source })?;
            // Creating the entries below changed the made parents' times: set them back.
            for (staged, host) in made.iter().rev() {
                restore_times(host, staged)?;
            }
            let stage_fd = merge::open(&stage).map_err(io("open", &stage))?;
            merge::check_deploy(&stage_fd, &anchor, &anchor_path).map_err(|source| DeployError::Merge { name: c.name.clone(), source })?;
            members.push(Member { name: c.name.clone(), root: c.meta.root.clone(), anchor: anchor_path });
            crash_point(&format!("deploy:staged:{}", c.name));
        }

        // Everything is copied and fits. On disk first, then the commit mark.
        update::sync_tree(&dir)?;
        crash_point("deploy:synced");
        let j = Journal { path: dest.clone(), members };
        journal::store(&dir, "deploy", &j).map_err(DeployError::from)?;
        staging.0 = None;
        crash_point("deploy:commit");
        finish(&dir, &j)?;
        Ok(Deployed { path: dest, containers: j.members.into_iter().map(|m| m.name).collect() })
    }
}

/// Moves each member's staged tree into its container, then removes the journal and
/// the staging directory. Restartable: a member whose stage is gone is done.
fn finish(dir: &Path, j: &Journal) -> Result<()> {
    for m in &j.members {
        commit_member(dir, m, &j.path)?;
        crash_point(&format!("deploy:merged:{}", m.name));
    }
    let file = dir.join(journal::FILE);
    std::fs::remove_file(&file).map_err(io("remove", &file))?;
    std::fs::remove_dir_all(dir).map_err(io("remove", dir))?;
    Ok(())
}

fn commit_member(dir: &Path, m: &Member, path: &Path) -> Result<()> {
    let stage = dir.join(&m.name);
    if !stage.exists() {
        return Ok(());
    }
    if !m.root.is_dir() {
        tracing::warn!("{}: root {} is gone; its part of the deploy of {} is dropped", m.name, m.root.display(), path.display());
    } else {
        let fail = |source: MergeError| DeployError::Finish { name: m.name.clone(), path: path.into(), source };
        let open_err = |p: PathBuf| move |e: Errno| fail(MergeError::Io(IoError { op: "open", path: p, source: e.into() }));
        let root = Root::open(&m.root).map_err(|e| fail(MergeError::Io(IoError { op: "open", path: m.root.clone(), source: e.source })))?;
        let anchor = root.open_at(&m.anchor, OFlags::RDONLY | OFlags::DIRECTORY).map_err(open_err(m.root.join(strip_root(&m.anchor))))?;
        let src = merge::open(&stage).map_err(|e| fail(MergeError::Io(IoError { op: "open", path: stage.clone(), source: e })))?;
        let mut n = 0u64;
        let mut hook = |_: &Path| {
            n += 1;
            crash_point(&format!("deploy:merge:{}:{n}", m.name));
        };
        merge::merge(&src, &anchor, &mut Merge { kind: Kind::Deploy, dst_label: &m.anchor, after_entry: &mut hook }).map_err(fail)?;
    }
    std::fs::remove_dir_all(&stage).map_err(io("remove", &stage))?;
    Ok(())
}

fn strip_root(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap_or(p)
}

/// Finishes a deploy interrupted after its commit mark (see the module's header),
/// and reports it; removes what one interrupted before its mark staged, when no
/// other command holds the update lock (a deploy staging now holds it). Called
/// by every command first, in `Lxcf::enter`.
pub(crate) fn recover(lx: &Lxcf) -> Result<()> {
    let dir = deploy_dir(&lx.cfg);
    if dir.join(journal::FILE).exists() {
        let _lock = update::exclusive_lock(&lx.cfg)?;
        recover_locked(lx)?;
    } else if dir.exists() {
        if let Some(_lock) = update::try_exclusive_lock(&lx.cfg)? {
            recover_locked(lx)?;
        }
    }
    Ok(())
}

/// [`recover`], under the exclusive update lock. `Some`: a deploy was finished.
pub(crate) fn recover_locked(lx: &Lxcf) -> Result<Option<Deployed>> {
    let dir = deploy_dir(&lx.cfg);
    let Some(j) = journal::load::<Journal>(&dir, "deploy").map_err(DeployError::from)? else {
        if dir.exists() {
            tracing::info!("removing what an interrupted deploy staged in {}", dir.display());
            std::fs::remove_dir_all(&dir).map_err(io("remove leftovers in", &dir))?;
        }
        return Ok(None);
    };
    finish(&dir, &j)?;
    let d = Deployed { path: j.path, containers: j.members.into_iter().map(|m| m.name).collect() };
    lx.report.deploy_finished(&d);
    Ok(Some(d))
}

/// Why `dest` is not seen inside a running container of `model`, if it is not:
/// its top directory is a mount made at start ([`layout::ENTRIES`]).
fn hidden(model: Model, dest: &Path) -> Option<&'static str> {
    let top = dest.components().find_map(|c| match c {
        Component::Normal(n) => n.to_str(),
        _ => None,
    })?;
    match layout::ENTRIES.iter().find(|e| e.path == top)?.action(model) {
        Action::AtStart(_) => Some("that directory is mounted afresh when the container starts"),
        Action::BindReadOnly => Some("that directory is the host's, shared read-only"),
        _ => None,
    }
}

fn create_private_dir(p: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(io("create", p))?;
    Ok(())
}

/// The deepest existing directory on the way to `dir` inside the container, its
/// path there, and the names below it that are missing. Symlinks on the way are
/// followed inside the container root only.
fn anchor(root: &Root, dir: &Path, name: &str) -> std::result::Result<(OwnedFd, PathBuf, Vec<OsString>), DeployError> {
    let target = |msg: String| DeployError::Target { name: name.into(), msg };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let names: Vec<OsString> = dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut cur = PathBuf::from("/");
    let mut fd = root.open_at(&cur, flags).map_err(|e| target(format!("cannot open its root: {e}")))?;
    for (i, n) in names.iter().enumerate() {
        let next = cur.join(n);
        match root.open_at(&next, flags) {
            Ok(f) => {
                fd = f;
                cur = next;
            }
            Err(Errno::NOENT) => match root.file_type(&next).map_err(|e| target(error::chain(&e)))? {
                None => return Ok((fd, cur, names[i..].to_vec())),
                Some(_) => return Err(target(format!("{} is a symlink that leads nowhere there", next.display()))),
            },
            Err(Errno::NOTDIR) => return Err(target(format!("{} is not a directory there", next.display()))),
            Err(e) => return Err(target(format!("cannot open {}: {e}", next.display()))),
        }
    }
    Ok((fd, cur, Vec::new()))
}

fn restore_times(host: &Path, staged: &Path) -> Result<()> {
    let st = rustix::fs::statx(rustix::fs::CWD, host, AtFlags::empty(), rustix::fs::StatxFlags::BASIC_STATS).map_err(io("stat", host))?;
    let ts = |t: &rustix::fs::StatxTimestamp| Timespec { tv_sec: t.tv_sec, tv_nsec: t.tv_nsec as _ };
    let times = Timestamps { last_access: ts(&st.stx_atime), last_modification: ts(&st.stx_mtime) };
    rustix::fs::utimensat(rustix::fs::CWD, staged, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io("set times of", staged))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maint::merge::tests::{tree, Tree};
    use crate::maint::update::tests::Env;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn env(n: usize) -> Env {
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let with: Vec<(&str, Model)> = names.iter().map(|n| (n.as_str(), Model::Joint)).collect();
        crate::maint::update::tests::env(&with)
    }

    fn roots(e: &Env) -> Vec<Tree> {
        (0..3).map(|i| e.cfg().root.join(format!("c{i}"))).filter(|p| p.exists()).map(|p| tree(&p)).collect()
    }

    #[test]
    fn a_file_reaches_every_container_with_its_metadata() {
        let e = env(3);
        let f = e.tmp.path().join("app.conf");
        fs::write(&f, "setting=1\n").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        let d = e.lx.deploy(&f, None).unwrap();
        assert_eq!(d.containers, ["c0", "c1", "c2"]);
        let host = fs::metadata(&f).unwrap();
        for i in 0..3 {
            // The same path inside: missing parents made.
            let p = e.cfg().root.join(format!("c{i}")).join(f.strip_prefix("/").unwrap());
            assert_eq!(fs::read_to_string(&p).unwrap(), "setting=1\n");
            let m = fs::metadata(&p).unwrap();
            assert_eq!((m.mode(), m.uid(), m.mtime(), m.mtime_nsec()), (host.mode(), host.uid(), host.mtime(), host.mtime_nsec()));
        }
        assert!(!e.cfg().root.join(".lxcf/deploy").exists());
    }

    #[test]
    fn a_directory_is_merged_file_by_file() {
        let e = env(2);
        let dir = e.tmp.path().join("conf.d");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a"), "a").unwrap();
        fs::write(dir.join("sub/b"), "b").unwrap();
        let inside = e.cfg().root.join("c1").join(dir.strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        fs::write(inside.join("local"), "mine").unwrap();
        fs::write(inside.join("a"), "old").unwrap();
        e.lx.deploy(&dir, Some(&[Name::new("c1").unwrap()])).unwrap();
        assert_eq!(fs::read_to_string(inside.join("a")).unwrap(), "a");
        assert_eq!(fs::read_to_string(inside.join("sub/b")).unwrap(), "b");
        assert_eq!(fs::read_to_string(inside.join("local")).unwrap(), "mine");
        assert!(!e.cfg().root.join("c0").join(dir.strip_prefix("/").unwrap()).exists(), "only the named container");
    }

    /// The container's view of a host path.
    fn inside(c: &Path, host: &Path) -> PathBuf {
        c.join(host.strip_prefix("/").unwrap())
    }

    #[test]
    fn hostile_symlinks_do_not_escape() {
        let e = env(1);
        let c = e.cfg().root.join("c0");
        let outside = e.tmp.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "host").unwrap();
        let before = tree(&outside);
        let src = e.tmp.path().join("src");
        for d in ["file", "abs", "rel"] {
            fs::create_dir_all(src.join(d)).unwrap();
            fs::write(src.join(d).join("x"), "deployed").unwrap();
            fs::create_dir_all(inside(&c, &src)).unwrap();
        }

        // The destination is a link to a host file: the link is replaced.
        fs::create_dir_all(inside(&c, &src.join("file"))).unwrap();
        symlink(outside.join("secret"), inside(&c, &src.join("file/x"))).unwrap();
        e.lx.deploy(&src.join("file/x"), None).unwrap();
        assert_eq!(fs::read_to_string(inside(&c, &src.join("file/x"))).unwrap(), "deployed");
        assert!(!fs::symlink_metadata(inside(&c, &src.join("file/x"))).unwrap().file_type().is_symlink());

        // A directory on the way links to a host directory: resolved inside the
        // container, where it leads nowhere, so refused...
        symlink(&outside, inside(&c, &src.join("abs"))).unwrap();
        let err = e.lx.deploy(&src.join("abs/x"), None).unwrap_err();
        assert!(err.to_string().contains("symlink that leads nowhere"), "{err}");
        // ... and where the container has that directory, the file lands in it.
        fs::create_dir_all(inside(&c, &outside)).unwrap();
        e.lx.deploy(&src.join("abs/x"), None).unwrap();
        assert_eq!(fs::read_to_string(inside(&c, &outside.join("x"))).unwrap(), "deployed");

        // `../../..` and more: stops at the container's root.
        symlink("../../../../../../../../../../..", inside(&c, &src.join("rel"))).unwrap();
        e.lx.deploy(&src.join("rel/x"), None).unwrap();
        assert_eq!(fs::read_to_string(c.join("x")).unwrap(), "deployed");

        assert_eq!(tree(&outside), before, "nothing outside the container changed");
        assert!(!Path::new("/x").exists());
    }

    /// Makes `dir` refuse new entries, even to root (the immutable flag), or, in a
    /// run without root, to the test's user (mode 0555), until dropped: a failure
    /// no check before the commit mark can see, as a full disk would be.
    struct Jam(PathBuf);

    impl Jam {
        fn new(dir: &Path) -> Jam {
            Jam::set(dir, true);
            Jam(dir.to_path_buf())
        }

        fn set(dir: &Path, on: bool) {
            use rustix::fs::IFlags;
            if rustix::process::geteuid().is_root() {
                let fd = fs::File::open(dir).unwrap();
                let flags = rustix::fs::ioctl_getflags(&fd).unwrap();
                rustix::fs::ioctl_setflags(&fd, if on { flags | IFlags::IMMUTABLE } else { flags - IFlags::IMMUTABLE }).unwrap();
            } else {
                fs::set_permissions(dir, fs::Permissions::from_mode(if on { 0o555 } else { 0o755 })).unwrap();
            }
        }
    }

    impl Drop for Jam {
        fn drop(&mut self) {
            Jam::set(&self.0, false);
        }
    }

    /// What the front end was told.
    #[derive(Default)]
    struct Told(std::sync::Mutex<Vec<Deployed>>);

    impl crate::Reporter for Told {
        fn deploy_finished(&self, d: &Deployed) {
            self.0.lock().unwrap().push(d.clone());
        }
    }

    fn deploy_dir_of(e: &Env) -> PathBuf {
        e.cfg().root.join(".lxcf/deploy")
    }

    #[test]
    fn a_failure_after_the_mark_is_finished_by_the_next_command() {
        let e = env(3);
        let told = std::sync::Arc::new(Told::default());
        let lx = e.with_cfg(e.cfg().clone()).with_reporter(told.clone());
        let dir = e.tmp.path().join("etc-app");
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("app.conf");
        fs::write(&f, "v2\n").unwrap();
        let c = |i: usize| inside(&e.cfg().root.join(format!("c{i}")), &f);
        for i in 0..3 {
            fs::create_dir_all(c(i).parent().unwrap()).unwrap();
            fs::write(c(i), "v1\n").unwrap();
        }
        // The third container refuses the file only when it is moved in.
        let jam = Jam::new(c(2).parent().unwrap());
        let err = lx.deploy(&f, None).unwrap_err();
        assert!(matches!(&err, Error::Deploy(DeployError::Finish { name, .. }) if name == "c2"), "{err}");
        assert!(err.to_string().contains("is committed, but not yet done in `c2`"), "{err}");
        assert!(err.hint().unwrap().contains("finishes the deploy"));
        // Past the mark: the others have it, and the journal says c2 is owed it.
        assert_eq!(fs::read_to_string(c(0)).unwrap(), "v2\n");
        assert_eq!(fs::read_to_string(c(2)).unwrap(), "v1\n");
        assert!(deploy_dir_of(&e).join("journal.json").exists());
        // Every command tries to finish it first; while it cannot, the command says so
        // and goes on with its own work.
        assert_eq!(lx.list(std::time::Duration::ZERO).unwrap().len(), 3);
        assert_eq!(fs::read_to_string(c(2)).unwrap(), "v1\n");
        assert!(deploy_dir_of(&e).join("journal.json").exists());
        drop(jam);
        lx.list(std::time::Duration::ZERO).unwrap();
        for i in 0..3 {
            assert_eq!(fs::read_to_string(c(i)).unwrap(), "v2\n", "c{i}");
        }
        assert!(!deploy_dir_of(&e).exists());
        let told = told.0.lock().unwrap();
        assert_eq!(told.len(), 1);
        assert_eq!((told[0].path.as_path(), told[0].containers.as_slice()), (f.as_path(), &["c0", "c1", "c2"].map(String::from)[..]));
    }

    #[test]
    fn what_a_deploy_killed_before_its_mark_staged_is_removed_and_changes_nothing() {
        let e = env(2);
        let before = roots(&e);
        // As a crash while staging leaves it: copies, no journal.
        let stage = deploy_dir_of(&e).join("c0");
        fs::create_dir_all(stage.join("etc")).unwrap();
        fs::write(stage.join("etc/new.conf"), "x").unwrap();
        e.lx.list(std::time::Duration::ZERO).unwrap();
        assert!(!deploy_dir_of(&e).exists());
        assert_eq!(roots(&e), before);
    }

    #[test]
    fn a_deploy_killed_after_its_mark_is_finished_by_the_next_command() {
        let e = env(2);
        // As a crash in the middle of c1's merge leaves it: c0 done (its stage gone),
        // c1's stage with one entry moved in and one to go.
        let dir = deploy_dir_of(&e);
        let stage = dir.join("c1");
        fs::create_dir_all(stage.join("etc/app")).unwrap();
        fs::write(stage.join("etc/app/b"), "b").unwrap();
        for i in 0..2 {
            let root = e.cfg().root.join(format!("c{i}"));
            fs::create_dir_all(root.join("etc/app")).unwrap();
            fs::write(root.join("etc/app/a"), "a").unwrap();
        }
        fs::write(e.cfg().root.join("c0/etc/app/b"), "b").unwrap();
        let members =
            (0..2).map(|i| Member { name: format!("c{i}"), root: e.cfg().root.join(format!("c{i}")), anchor: "/".into() }).collect();
        journal::store(&dir, "deploy", &Journal { path: "/etc/app".into(), members }).unwrap();

        let told = std::sync::Arc::new(Told::default());
        let lx = e.with_cfg(e.cfg().clone()).with_reporter(told.clone());
        lx.list(std::time::Duration::ZERO).unwrap();
        for i in 0..2 {
            let root = e.cfg().root.join(format!("c{i}"));
            assert_eq!(
                (fs::read_to_string(root.join("etc/app/a")).unwrap(), fs::read_to_string(root.join("etc/app/b")).unwrap()),
                ("a".into(), "b".into())
            );
        }
        assert!(!dir.exists());
        assert_eq!(told.0.lock().unwrap()[0].containers, ["c0", "c1"]);
    }

    #[test]
    fn bad_input_changes_nothing() {
        let e = env(2);
        let before = roots(&e);
        let f = e.tmp.path().join("f");
        fs::write(&f, "x").unwrap();
        let missing = e.tmp.path().join("missing");
        assert!(matches!(e.lx.deploy(&missing, None), Err(Error::Deploy(DeployError::Source { .. }))));
        assert!(matches!(e.lx.deploy(Path::new("/"), None), Err(Error::Deploy(DeployError::NoName { .. }))));
        let err = e.lx.deploy(&f, Some(&[Name::new("c0").unwrap(), Name::new("nope").unwrap()])).unwrap_err();
        assert!(err.to_string().contains("no container named `nope`"), "{err}");
        // A directory where the file goes, in one container: none gets it.
        fs::create_dir_all(e.cfg().root.join("c1").join(f.strip_prefix("/").unwrap())).unwrap();
        let before2 = roots(&e);
        let err = e.lx.deploy(&f, None).unwrap_err();
        assert!(crate::error::chain(&err).contains("is a directory in the destination but a file"), "{err}");
        assert!(err.hint().unwrap().contains("nothing was deployed"));
        assert_eq!(roots(&e), before2);
        assert_ne!(before, before2);
        let empty = env(0);
        assert!(matches!(empty.lx.deploy(&f, None), Err(Error::Deploy(DeployError::NoContainers))));
        // Where a container would not see it.
        let in_tmp = tempfile::NamedTempFile::new_in("/tmp").unwrap();
        let err = e.lx.deploy(in_tmp.path(), None).unwrap_err();
        assert!(err.to_string().contains("mounted afresh"), "{err}");
        assert!(matches!(e.lx.deploy(Path::new("/usr/bin/env"), None), Err(Error::Deploy(DeployError::Hidden { .. }))));
        assert_eq!(roots(&e), before2);
    }
}
