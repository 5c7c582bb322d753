//! Errors: one I/O error for every module, the front's [`Error`] with what a user
//! or a script can tell from it (its [`Kind`], which is the CLI's exit status, and a
//! hint), and the cause chain printed once.
//!
//! Convention (as cloud-hypervisor does it): each error's message says what failed,
//! never its cause; the cause is its `source`, and [`chain`] prints the whole chain
//! on one line, each link once. Module errors are leaves or wrap their causes the
//! same way; [`Error`] gathers them for the commands.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;
use crate::container::batch::BatchError;
use crate::container::enter::EnterError;
use crate::host::limits::LimitError;
use crate::host::HostError;
use crate::lock::LockError;
use crate::maint::deploy::DeployError;
use crate::maint::update::UpdateError;
use crate::name::NameError;
use crate::net::NetError;
use crate::resources::ResourceError;
use crate::rootfs::RootfsError;
use crate::runtime::RuntimeError;

/// A failed file system call: what was done, to which path, and why (the source).
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", path.display())]
pub struct IoError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// `map_err(io("read", path))`: for std's and rustix's errors alike.
pub fn io<'a, E: Into<io::Error>>(op: &'static str, path: &'a Path) -> impl FnOnce(E) -> IoError + 'a {
    move |e| IoError { op, path: path.to_path_buf(), source: e.into() }
}

/// The message of `e` and of each of its causes, once each, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// What kind of failure it is, for a script: the CLI's exit status, the API's too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Something failed on the way (libvirt, the filesystem).
    Failure = 1,
    /// Bad arguments.
    Usage = 2,
    /// No such container.
    NotFound = 3,
    /// The name is taken, or another lxcf is working on it, or (clone) the source runs.
    Conflict = 4,
    /// Not root.
    Permission = 5,
    /// The runtime (libvirtd) cannot be reached.
    Unavailable = 6,
    /// The configuration file is unreadable or wrong.
    Config = 7,
    /// The host's limits cannot hold more containers.
    Limits = 8,
    /// `exec`: the command exists in the container but cannot be run (as shells say).
    CannotRun = 126,
    /// `exec`: no such command in the container (as shells say).
    CommandNotFound = 127,
}

/// Why a command of the front failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid container name")]
    Name(#[source] NameError),
    #[error(transparent)]
    Batch(#[from] BatchError),
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
    #[error("container `{0}` is running; only a stopped container can be cloned")]
    Running(String),
    #[error("container `{0}` is not running")]
    NotRunning(String),
    #[error("{} was not made by lxcf (it has no record of it); lxcf leaves it alone", dir.display())]
    NotOurs { name: String, dir: PathBuf },
    #[error("an interrupted `lxcf update` of `{0}` is not finished")]
    UpdatePending(String),
    #[error(transparent)]
    Ids(#[from] crate::container::ids::Exhausted),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Limits(#[from] LimitError),
    #[error(transparent)]
    Update(#[from] UpdateError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Enter(#[from] EnterError),
}

impl From<NameError> for Error {
    fn from(e: NameError) -> Error {
        Error::Name(e)
    }
}

impl From<crate::rootfs::scoped::ScopedError> for Error {
    fn from(e: crate::rootfs::scoped::ScopedError) -> Error {
        Error::Rootfs(e.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to give containers lxcfs's view when lxcfs was not running.
pub const LXCFS_HINT: &str =
    "start lxcfs (`scripts/start-lxcfs`, or `systemctl start lxcfs`), then `lxcf lxcfs` binds its files into running containers";

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Config(_) => Kind::Config,
            Error::Name(_) | Error::Batch(_) => Kind::Usage,
            Error::Resource(r) if r.is_usage() => Kind::Usage,
            Error::Deploy(d) if d.is_usage() => Kind::Usage,
            Error::NotFound(_) | Error::Deploy(DeployError::NoContainers) => Kind::NotFound,
            Error::Taken { .. }
            | Error::Busy(_)
            | Error::Foreign(_)
            | Error::OtherRoot { .. }
            | Error::Running(_)
            | Error::NotOurs { .. }
            | Error::UpdatePending(_) => Kind::Conflict,
            Error::Runtime(RuntimeError::Connect { .. } | RuntimeError::Lost { .. }) => Kind::Unavailable,
            Error::Limits(_) => Kind::Limits,
            Error::Enter(e) => match e.exit_status() {
                Some(127) => Kind::CommandNotFound,
                Some(_) => Kind::CannotRun,
                None => Kind::Failure,
            },
            _ => Kind::Failure,
        }
    }

    /// A line telling the user what they can do about it, where there is something.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Config(_) => "see the config keys in the README".into(),
            Error::Name(_) => "use 1 to 63 lower-case letters, digits and `-`, starting with a letter or digit (like web1)".into(),
            Error::Batch(e) => return e.hint(),
            Error::Taken { name, .. } => format!("choose another name, or remove the old one first (`lxcf erase {name}`)"),
            Error::NotFound(_) => "`lxcf list` shows the containers".into(),
            Error::Busy(_) => "wait for the other lxcf command to finish".into(),
            Error::RootMissing { name, .. } => format!("`lxcf erase {name}` removes what is left of it"),
            Error::Running(name) => format!("stop it first: `lxcf stop {name}`"),
            Error::NotRunning(name) => format!("`lxcf start {name}` starts it"),
            Error::NotOurs { .. } => "remove it yourself if it is not needed".into(),
            Error::UpdatePending(_) => "`lxcf check` tells why it cannot be finished; fix that, then run any lxcf command".into(),
            Error::Ids(_) => "erase containers you no longer need, or make it `--privileged` (see the README)".into(),
            Error::Host(HostError::LxcfsDown) => LXCFS_HINT.into(),
            Error::Host(HostError::NoUserns | HostError::NoIdmap { .. }) => {
                "this kernel or file system cannot run unprivileged containers; make it `--privileged` (see the README)".into()
            }
            Error::Runtime(RuntimeError::Connect { .. } | RuntimeError::Lost { .. }) => {
                "is libvirtd running? `scripts/setup-host` starts it (or `systemctl start libvirtd`)".into()
            }
            Error::Net(NetError::Full { .. }) => {
                "erase containers you no longer need, or give [Network] subnet a larger network in the config".into()
            }
            Error::Resource(e) => return e.hint(),
            Error::Limits(e) => e.hint(),
            Error::Update(e) => return e.hint(),
            Error::Deploy(e) => return e.hint(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cause is printed once: no message repeats its source's text.
    #[test]
    fn the_chain_names_each_cause_once() {
        let e = Error::from(io("read", Path::new("/x/y"))(io::Error::from_raw_os_error(libc::ENOENT)));
        assert_eq!(chain(&e), "cannot read /x/y: No such file or directory (os error 2)");
        let e = Error::from(crate::name::validate("A").unwrap_err());
        assert_eq!(chain(&e), "invalid container name: name `A` may only contain lower-case letters, digits and `-`");
        let e = Error::from(RootfsError::from(io("copy", Path::new("/a"))(rustix::io::Errno::NOSPC)));
        assert_eq!(chain(&e), "cannot copy /a: No space left on device (os error 28)");
    }
}
