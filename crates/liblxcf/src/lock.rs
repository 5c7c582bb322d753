//! Host-wide and per-container advisory locks (flock). The kernel drops them when
//! the process dies, so a killed lxcf never leaves a stale lock behind.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

#[derive(Debug, thiserror::Error)]
#[error("cannot lock {}", path.display())]
pub struct LockError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

fn open(path: &Path) -> Result<File, LockError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LockError { path: path.into(), source })?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| LockError { path: path.into(), source })
}

/// Waits for the lock.
pub fn exclusive(path: &Path) -> Result<Lock, LockError> {
    let file = open(path)?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive).map_err(|e| LockError { path: path.into(), source: e.into() })?;
    Ok(Lock { _file: file })
}

/// Waits for a shared hold: many may hold it at once, but not with an exclusive holder.
pub fn shared(path: &Path) -> Result<Lock, LockError> {
    let file = open(path)?;
    rustix::fs::flock(&file, FlockOperation::LockShared).map_err(|e| LockError { path: path.into(), source: e.into() })?;
    Ok(Lock { _file: file })
}

/// Takes the lock if nobody holds it.
pub fn try_exclusive(path: &Path) -> Result<Option<Lock>, LockError> {
    let file = open(path)?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(Lock { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(LockError { path: path.into(), source: e.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("sub/lock");
        let l = exclusive(&p).unwrap();
        assert!(try_exclusive(&p).unwrap().is_none());
        drop(l);
        assert!(try_exclusive(&p).unwrap().is_some());
    }

    #[test]
    fn shared_holders_exclude_an_exclusive_one() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("lock");
        let (a, b) = (shared(&p).unwrap(), shared(&p).unwrap());
        assert!(try_exclusive(&p).unwrap().is_none());
        drop((a, b));
        assert!(try_exclusive(&p).unwrap().is_some());
    }
}
