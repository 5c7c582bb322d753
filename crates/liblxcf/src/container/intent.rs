//! Intents and records: what lxcf is doing to a container, written down before the
//! first change, so that a command killed at any point (kill -9, a power cut) is
//! undone or finished by the next lxcf command; and which roots lxcf made, so that
//! `erase` never removes a directory that is not its own.
//!
//! - `ROOT/.lxcf/intent/NAME`: the command in progress on NAME (JSON, replaced
//!   atomically). It exists only while NAME's lock is held by the command; an intent
//!   whose lock is free belongs to a process that died. sysgen and clone are undone
//!   (all or nothing), erase is finished, a resource change is put back.
//! - `ROOT/.lxcf/roots/NAME`: lxcf made `ROOT/NAME` (or `NAME.partial`); written before
//!   the root is created, removed after it is gone. Containers of lxcf 0.1.0 have
//!   none; their domain's metadata is their record.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{self, Error, Result};
use crate::lock::{self, Lock};
use crate::resources::Settings;
use crate::Lxcf;

/// A command in progress on a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Intent {
    /// Creating it: undone if not finished.
    Sysgen,
    /// Creating it from `src`: undone if not finished.
    Clone { src: String },
    /// Removing it: finished.
    Erase,
    /// Changing its resources from `before`: put back if not finished.
    Tune { before: Settings },
}

impl Intent {
    fn describe(&self, name: &str) -> String {
        match self {
            Intent::Sysgen => format!("`lxcf sysgen {name}`"),
            Intent::Clone { src } => format!("`lxcf clone {src} {name}`"),
            Intent::Erase => format!("`lxcf erase {name}`"),
            Intent::Tune { .. } => format!("resource change of {name}"),
        }
    }
}

/// An intent being carried out; settled when dropped without [`Pending::done`]: the
/// command failed (its own undo ran already) or panicked.
pub(crate) struct Pending<'a> {
    lx: &'a Lxcf,
    name: String,
    intent: Intent,
    done: bool,
}

impl Pending<'_> {
    /// The command failed and left its intent for the next command (or a retry) to
    /// settle: nothing is done now.
    pub fn keep(mut self) {
        self.done = true;
    }

    /// The command finished: nothing to undo or finish.
    pub fn done(mut self) {
        self.done = true;
        if let Err(e) = self.lx.forget_intent(&self.name) {
            tracing::warn!("{}: {}", self.name, error::chain(&e));
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.lx.settle(&self.name, &self.intent).and_then(|()| self.lx.forget_intent(&self.name)) {
            Ok(()) => {}
            // Kept: the next lxcf command tries again.
            Err(e) => tracing::error!("{}: cannot clean up after {}: {}", self.name, self.intent.describe(&self.name), error::chain(&e)),
        }
    }
}

/// Writes `data` to `path` atomically and durably (temporary file, fsync, rename,
/// fsync of the directory).
fn write_durably(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(error::io("create", dir))?;
    let tmp = dir.join(format!(".{}.tmp", path.file_name().expect("a file name").to_string_lossy()));
    let mut f = std::fs::File::create(&tmp).map_err(error::io("create", &tmp))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(error::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(error::io("replace", path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(error::io("sync", dir))?;
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(error::io("remove", path)(e).into()),
        _ => Ok(()),
    }
}

impl Lxcf {
    fn intent_path(&self, name: &str) -> PathBuf {
        self.lock_dir().join("intent").join(name)
    }

    pub(crate) fn record_path(&self, name: &str) -> PathBuf {
        self.lock_dir().join("roots").join(name)
    }

    /// Records `intent` for `name`, whose lock the caller holds.
    pub(crate) fn begin(&self, name: &str, intent: Intent) -> Result<Pending<'_>> {
        let text = serde_json::to_vec(&intent).expect("plain data");
        write_durably(&self.intent_path(name), &text)?;
        Ok(Pending { lx: self, name: name.into(), intent, done: false })
    }

    fn forget_intent(&self, name: &str) -> Result<()> {
        remove_file(&self.intent_path(name))
    }

    /// Records that lxcf makes `ROOT/name`, before it does.
    /// Records `ROOT/name` as lxcf's, with the first of its host IDs if it has a range.
    pub(crate) fn record_root_ids(&self, name: &str, ids: Option<u32>) -> Result<()> {
        write_durably(&self.record_path(name), ids.map(|b| format!("ids={b}\n")).unwrap_or_default().as_bytes())
    }

    /// Whether lxcf recorded `ROOT/name` as its own.
    pub(crate) fn recorded(&self, name: &str) -> bool {
        self.record_path(name).exists()
    }

    pub(crate) fn forget_root(&self, name: &str) -> Result<()> {
        remove_file(&self.record_path(name))
    }

    /// The names that have an intent recorded.
    pub(crate) fn intent_names(&self) -> Result<Vec<String>> {
        Ok(names_in(&self.lock_dir().join("intent"))?.into_iter().filter(|n| !n.starts_with('.')).collect())
    }

    /// The names lxcf recorded roots for.
    pub(crate) fn records(&self) -> Result<Vec<String>> {
        names_in(&self.lock_dir().join("roots"))
    }

    /// Undoes or finishes what `intent` was doing to `name`. Idempotent.
    fn settle(&self, name: &str, intent: &Intent) -> Result<()> {
        match intent {
            Intent::Sysgen | Intent::Clone { .. } | Intent::Erase => match self.remove_everything(name) {
                // Nothing was left of it: settled already.
                Ok(_) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            },
            Intent::Tune { before } => self.restore(name, before),
        }
    }

    /// Finds intents of commands that died and settles them: what a killed sysgen,
    /// clone, erase or resource change left is undone or finished. Each is reported.
    pub(crate) fn recover_intents(&self) -> Result<()> {
        for name in names_in(&self.lock_dir().join("intent"))? {
            if name.starts_with('.') {
                continue;
            }
            // Held: the command is still running (or waiting for its lock).
            let Some(_lock): Option<Lock> = lock::try_exclusive(&self.lock_dir().join(format!("{name}.lock")))? else { continue };
            let path = self.intent_path(&name);
            let intent: Intent = match std::fs::read(&path) {
                Ok(t) => serde_json::from_slice(&t).map_err(|e| error::io("parse", &path)(std::io::Error::other(e)))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(error::io("read", &path)(e).into()),
            };
            let what = intent.describe(&name);
            self.settle(&name, &intent)?;
            self.forget_intent(&name)?;
            let done = match intent {
                Intent::Sysgen | Intent::Clone { .. } => "was undone",
                Intent::Erase => "was finished",
                Intent::Tune { .. } => "was put back",
            };
            self.report.found(&format!("an interrupted {what} {done}"));
        }
        Ok(())
    }
}

/// The names in a directory; none if it does not exist.
fn names_in(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error::io("read", dir)(e).into()),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(error::io("read", dir))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}

/// Not an lxcf root: a directory in the containers root that lxcf has no record of.
pub(crate) fn not_ours(name: &str, dir: &Path) -> Error {
    Error::NotOurs { name: name.into(), dir: dir.to_path_buf() }
}
