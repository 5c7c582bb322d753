//! The update journal: what an `lxcf update` in progress has done, so that the
//! next lxcf command can finish or undo it after a crash.
//!
//! One small JSON file, replaced atomically (temporary file, fsync, rename, fsync
//! of the directory) at each change of phase. Before the phase is `commit`, a
//! crash means roll back; from then on, it means finish the commit. `lxcf deploy`
//! keeps its own journal with the same [`load`] and [`store`].

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where the update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Containers stopped, the command running: nothing is changed yet.
    Run,
    /// Every run succeeded: the containers' changes are being applied.
    Commit,
}

/// One container taking part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// `joint` or `separate`.
    pub model: String,
    /// The container's root directory.
    pub root: PathBuf,
    /// Started again at the end.
    pub was_running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub phase: Phase,
    /// The command, for messages (lossily converted to UTF-8).
    pub command: Vec<String>,
    /// The command runs on the host too (no `--to`).
    pub host: bool,
    /// The command was started on the host: after a crash before the commit, the
    /// host may have been changed even though the containers are rolled back.
    pub host_started: bool,
    pub members: Vec<Member>,
}

pub const FILE: &str = "journal.json";

/// A journal (update's or deploy's) that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} the {what} journal {}", path.display())]
pub struct JournalError {
    pub op: &'static str,
    /// `update` or `deploy`.
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Journal {
    /// The journal in `dir`, if there is one.
    pub fn read(dir: &Path) -> Result<Option<Journal>, JournalError> {
        load(dir, "update")
    }

    /// Replaces the journal in `dir` atomically and durably.
    pub fn write(&self, dir: &Path) -> Result<(), JournalError> {
        store(dir, "update", self)
    }
}

/// The journal [`FILE`] in `dir`, if there is one; `what` names it in errors.
pub fn load<T: DeserializeOwned>(dir: &Path, what: &'static str) -> Result<Option<T>, JournalError> {
    let path = dir.join(FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JournalError { op: "read", what, path, source: e.into() }),
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| JournalError { op: "parse", what, path, source: e.into() })
}

/// Replaces the journal [`FILE`] in `dir` with `value`, atomically and durably:
/// a temporary file, fsync, rename, fsync of the directory.
pub fn store<T: Serialize>(dir: &Path, what: &'static str, value: &T) -> Result<(), JournalError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let err = |op: &'static str| {
        let path = path.clone();
        move |e: std::io::Error| JournalError { op, what, path, source: e.into() }
    };
    let text = serde_json::to_vec_pretty(value).expect("plain data");
    let mut f = std::fs::File::create(&tmp).map_err(err("create"))?;
    f.write_all(&text).map_err(err("write"))?;
    f.sync_all().map_err(err("write"))?;
    std::fs::rename(&tmp, &path).map_err(err("replace"))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err("sync"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(Journal::read(t.path()).unwrap(), None);
        let j = Journal {
            phase: Phase::Run,
            command: vec!["dpkg".into(), "-i".into(), "/tmp/x.deb".into()],
            host: true,
            host_started: false,
            members: vec![Member { name: "web1".into(), model: "joint".into(), root: "/opt/lxc/web1".into(), was_running: true }],
        };
        j.write(t.path()).unwrap();
        assert_eq!(Journal::read(t.path()).unwrap(), Some(j.clone()));
        let text = std::fs::read_to_string(t.path().join(FILE)).unwrap();
        assert!(text.contains("\"phase\": \"run\""), "{text}");
        std::fs::write(t.path().join(FILE), "{").unwrap();
        assert!(Journal::read(t.path()).unwrap_err().to_string().contains("cannot parse the update journal"));
    }
}
