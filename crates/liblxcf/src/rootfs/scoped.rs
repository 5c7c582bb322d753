//! File operations confined to a container root.
//!
//! A container's root user owns every file in its root, including symlinks such as
//! `/etc/resolv.conf -> /etc/shadow` or `/etc/x -> ../../..`. lxcf runs as root on
//! the host, so every path it touches inside a container is resolved by the kernel
//! with `openat2(RESOLVE_IN_ROOT)`: `..` and absolute symlinks stop at the container
//! root, as they would for a process chrooted there. The last component is never
//! followed when writing: it is replaced by `renameat`, or removed by `unlinkat`.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {} in {}", path.display(), root.display())]
pub struct ScopedError {
    pub op: &'static str,
    pub root: PathBuf,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

type Result<T> = std::result::Result<T, ScopedError>;

/// A directory that paths are resolved in, as if it were `/`.
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// openat2, tried again while it fails with EAGAIN: with RESOLVE_IN_ROOT or
/// RESOLVE_BENEATH the kernel gives up a lookup through `..` when any rename or
/// mount happened on the system meanwhile, and says to retry (openat2(2)). On a
/// busy host (other containers, other lxcf commands) that happens.
pub(crate) fn openat2(dir: &OwnedFd, path: &Path, flags: OFlags, resolve: ResolveFlags) -> std::result::Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) if tries < 1000 => tries += 1,
            r => return r,
        }
    }
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| ScopedError {
            op: "open",
            root: path.to_path_buf(),
            path: "/".into(),
            source: e.into(),
        })?;
        Ok(Root { path: path.to_path_buf(), fd })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str, rel: &Path, e: Errno) -> ScopedError {
        ScopedError { op, root: self.path.clone(), path: Path::new("/").join(rel), source: e.into() }
    }

    /// Opens `rel` (relative or absolute inside the root) with symlinks resolved in the root.
    pub fn open_at(&self, rel: &Path, flags: OFlags) -> std::result::Result<OwnedFd, Errno> {
        let rel = strip(rel);
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        openat2(&self.fd, rel, flags | OFlags::CLOEXEC, RESOLVE)
    }

    /// The directory holding `rel`, and `rel`'s last component.
    fn parent<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        let rel = strip(rel);
        let name = match rel.components().next_back() {
            Some(Component::Normal(n)) => n,
            _ => {
                return Err(self.err("use", rel, Errno::INVAL));
            }
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let fd = self.open_at(parent, OFlags::RDONLY | OFlags::DIRECTORY).map_err(|e| self.err("open", parent, e))?;
        Ok((fd, name))
    }

    /// Reads a file; `None` if it does not exist.
    pub fn read(&self, rel: &Path) -> Result<Option<Vec<u8>>> {
        match self.open_at(rel, OFlags::RDONLY) {
            Ok(fd) => {
                let mut f = std::fs::File::from(fd);
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut buf).map_err(|e| ScopedError {
                    op: "read",
                    root: self.path.clone(),
                    path: rel.to_path_buf(),
                    source: e,
                })?;
                Ok(Some(buf))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err("open", rel, e)),
        }
    }

    /// The type of `rel` itself (a symlink is reported as a symlink); `None` if absent.
    pub fn file_type(&self, rel: &Path) -> Result<Option<rustix::fs::FileType>> {
        let (dir, name) = match self.parent(rel) {
            Ok(x) => x,
            Err(e) if e.source.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(rustix::fs::FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err("stat", rel, e)),
        }
    }

    /// Replaces `rel` atomically with a root-owned file of `mode` holding `data`.
    /// Whatever `rel` was (a file, a symlink), it is replaced, never written through.
    pub fn write(&self, rel: &Path, data: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        let tmp = tmp_name(name);
        let fd = rustix::fs::openat(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| self.err("create", rel, e))?;
        let result = (|| {
            rustix::fs::fchown(&fd, Some(rustix::fs::Uid::ROOT), Some(rustix::fs::Gid::ROOT))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            let mut f = std::fs::File::from(fd);
            f.write_all(data).map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            f.sync_all().map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
            rustix::fs::renameat(&dir, &tmp, &dir, name)
        })();
        if let Err(e) = result {
            let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
            return Err(self.err("write", rel, e));
        }
        Ok(())
    }

    /// Removes the file or symlink `rel`; absent is fine.
    pub fn remove(&self, rel: &Path) -> Result<()> {
        let (dir, name) = match self.parent(rel) {
            Ok(x) => x,
            Err(e) if e.source.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err("remove", rel, e)),
        }
    }

    /// Replaces `rel` with a symlink to `target`.
    pub fn symlink(&self, rel: &Path, target: &Path) -> Result<()> {
        let (dir, name) = self.parent(rel)?;
        let tmp = tmp_name(name);
        rustix::fs::symlinkat(target, &dir, &tmp).map_err(|e| self.err("create link", rel, e))?;
        rustix::fs::renameat(&dir, &tmp, &dir, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&dir, &tmp, AtFlags::empty());
            self.err("replace", rel, e)
        })
    }

    /// Creates the directory `rel` (root-owned, `mode`) and missing parents.
    pub fn mkdir_all(&self, rel: &Path, mode: u32) -> Result<()> {
        let rel = strip(rel);
        let mut done = PathBuf::new();
        for c in rel.components() {
            done.push(c);
            let (dir, name) = self.parent(&done)?;
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(self.err("create directory", &done, e)),
            }
        }
        Ok(())
    }

    /// Names in directory `rel`; empty if it does not exist.
    pub fn list(&self, rel: &Path) -> Result<Vec<std::ffi::OsString>> {
        let fd = match self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("open", rel, e)),
        };
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::new(fd).map_err(|e| self.err("read", rel, e))? {
            let entry = entry.map_err(|e| self.err("read", rel, e))?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        names.sort();
        Ok(names)
    }
}

fn strip(rel: &Path) -> &Path {
    rel.strip_prefix("/").unwrap_or(rel)
}

fn tmp_name(name: &OsStr) -> PathBuf {
    let mut t = std::ffi::OsString::from(".");
    t.push(name);
    t.push(format!(".lxcf-{}", std::process::id()));
    PathBuf::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn hostile_symlinks_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, b"host secret").unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        // Absolute and relative escapes, and a symlinked directory.
        symlink(&outside, root.join("etc/abs")).unwrap();
        symlink("../../outside", root.join("etc/rel")).unwrap();
        symlink(tmp.path(), root.join("etc/dir")).unwrap();
        let r = Root::open(&root).unwrap();

        r.write(Path::new("/etc/abs"), b"new", 0o644).unwrap();
        r.write(Path::new("etc/rel"), b"new", 0o644).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"host secret");
        assert_eq!(fs::read(root.join("etc/abs")).unwrap(), b"new", "the link itself was replaced");

        // Writing through a symlinked directory lands inside the root (resolved there) or fails.
        let _ = r.write(Path::new("/etc/dir/outside"), b"pwned", 0o644);
        assert_eq!(fs::read(&outside).unwrap(), b"host secret");

        // Reading follows links, but only within the root.
        symlink("/../../../outside", root.join("etc/up")).unwrap();
        assert_eq!(r.read(Path::new("/etc/up")).unwrap(), None);
        r.remove(Path::new("/etc/dir")).unwrap();
        assert!(tmp.path().join("outside").exists());
        assert!(!root.join("etc/dir").exists());
    }

    #[test]
    fn write_read_list_mkdir() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Root::open(tmp.path()).unwrap();
        r.mkdir_all(Path::new("/a/b/c"), 0o755).unwrap();
        r.write(Path::new("/a/b/f"), b"x", 0o600).unwrap();
        assert_eq!(r.read(Path::new("a/b/f")).unwrap().unwrap(), b"x");
        assert_eq!(r.list(Path::new("/a/b")).unwrap(), vec!["c", "f"]);
        assert_eq!(r.file_type(Path::new("/a/b/f")).unwrap(), Some(rustix::fs::FileType::RegularFile));
        assert_eq!(r.file_type(Path::new("/nope/x")).unwrap(), None);
        r.symlink(Path::new("/a/l"), Path::new("b/f")).unwrap();
        assert_eq!(r.file_type(Path::new("/a/l")).unwrap(), Some(rustix::fs::FileType::Symlink));
        r.remove(Path::new("/a/b/f")).unwrap();
        r.remove(Path::new("/a/b/f")).unwrap();
        assert!(r.list(Path::new("/missing")).unwrap().is_empty());
    }
}

#[cfg(test)]
mod eagain_tests {
    use super::*;
    use std::fs;

    /// Lookups through `..` inside a root while renames happen elsewhere on the
    /// system: the kernel may say EAGAIN (openat2(2)); lxcf tries again rather than
    /// failing a command because another one renamed something.
    #[test]
    fn lookups_through_dotdot_survive_renames_elsewhere() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::write(root.join("x"), b"x").unwrap();
        let r = Root::open(&root).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let (p, q) = (t.path().join("p"), t.path().join("q"));
                fs::write(&p, b"").unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = fs::rename(&p, &q);
                    let _ = fs::rename(&q, &p);
                }
            });
            let result = (0..200_000).try_for_each(|_| r.open_at(Path::new("a/b/c/../../../x"), OFlags::PATH).map(drop));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(result, Ok(()));
        });
    }
}
