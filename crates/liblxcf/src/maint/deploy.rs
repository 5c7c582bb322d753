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
//! The destination is found with `openat2(RESOLVE_IN_ROOT)` ([`crate::rootfs::scoped`]):
//! a symlink in the container (`/etc/x -> /host/file`, `../../..`) resolves inside
//! the container's root, and a symlink at the destination itself is replaced,
//! never written through.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::container::Hold;
use crate::error::{self, Error};
use crate::maint::merge::{self, Kind, Merge, MergeError};
use crate::maint::update;
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
}

impl DeployError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            DeployError::NoContainers => "create one first (`lxcf sysgen NAME`)".into(),
            DeployError::Hidden { .. } => "deploy to another path, or with --to only to containers where it is seen".into(),
            DeployError::Merge { source: MergeError::Conflict { .. }, .. } => {
                "remove or rename it in that container first; nothing was deployed anywhere".into()
            }
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

/// One container's part: the staged tree and where it goes.
struct Plan {
    name: String,
    /// The staging directory; its only entry goes into `anchor`.
    stage: PathBuf,
    /// The deepest existing directory on the way to the destination, in the container.
    anchor: OwnedFd,
    /// `anchor`'s path inside the container, for messages.
    anchor_path: PathBuf,
}

/// Removes the staging directory however deploy ends.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                tracing::error!("cannot remove {}: {e}", self.0.display());
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
        let staging = Staging(self.lock_dir().join("deploy"));
        if staging.0.exists() {
            std::fs::remove_dir_all(&staging.0).map_err(io("remove leftovers in", &staging.0))?;
        }
        create_private_dir(&staging.0)?;
        let skip = copy::dir_id(&cfg.root).map_err(io("stat", &cfg.root))?;

        let mut plans = Vec::new();
        for c in &containers {
            let root = Root::open(&c.meta.root).map_err(|e| DeployError::Target { name: c.name.clone(), msg: error::chain(&e) })?;
            let (anchor, anchor_path, missing) = anchor(&root, &parent, &c.name)?;
            let stage = staging.0.join(&c.name);
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
            plans.push(Plan { name: c.name.clone(), stage, anchor, anchor_path });
        }

        // Everything is copied and fits: now move it in, container by container.
        let mut done = Vec::new();
        for p in &plans {
            let stage_fd = merge::open(&p.stage).map_err(io("open", &p.stage))?;
            let mut m = Merge { kind: Kind::Deploy, dst_label: &p.anchor_path, after_entry: &mut |_| {} };
            merge::merge(&stage_fd, &p.anchor, &mut m).map_err(|source| DeployError::Merge { name: p.name.clone(), source })?;
            done.push(p.name.clone());
        }
        Ok(Deployed { path: dest, containers: done })
    }
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
