//! Exit codes and the one-line error report.

use liblxcf::config::ConfigError;
use liblxcf::ops::Error;
use liblxcf::virt::VirtError;

/// What a script can tell apart by the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Something failed on the way (libvirt, the filesystem).
    Failure = 1,
    /// Bad arguments (clap uses 2 as well).
    Usage = 2,
    /// No such container.
    NotFound = 3,
    /// The name is taken, or another lxcf is working on it.
    Conflict = 4,
    /// Not root.
    Permission = 5,
    /// libvirtd cannot be reached.
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

pub struct Failure {
    pub code: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn config(e: ConfigError) -> Failure {
        Failure { code: Exit::Config, message: e.to_string(), hint: Some("see the config keys in the README".into()) }
    }
}

/// The cause chain, once, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !message.contains(&t) {
            message.push_str(": ");
            message.push_str(&t);
        }
        src = s.source();
    }
    message
}

impl From<liblxcf::limits::LimitError> for Failure {
    fn from(e: liblxcf::limits::LimitError) -> Failure {
        Failure { code: Exit::Limits, hint: Some(e.hint()), message: e.to_string() }
    }
}

impl From<liblxcf::enter::EnterError> for Failure {
    fn from(e: liblxcf::enter::EnterError) -> Failure {
        let code = match e.exit_status() {
            Some(127) => Exit::CommandNotFound,
            Some(_) => Exit::CannotRun,
            None => Exit::Failure,
        };
        Failure { code, hint: None, message: e.to_string() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match &e {
            Error::Name(_) => Exit::Usage,
            Error::Resource(r) if r.is_usage() => Exit::Usage,
            Error::NotFound(_) => Exit::NotFound,
            Error::Taken { .. } | Error::Busy(_) | Error::Foreign(_) | Error::OtherRoot { .. } | Error::Running(_) => Exit::Conflict,
            Error::Virt(VirtError::Connect { .. }) => Exit::Unavailable,
            _ => Exit::Failure,
        };
        Failure { code, hint: e.hint(), message: chain(&e) }
    }
}

impl From<liblxcf::update::Error> for Failure {
    fn from(e: liblxcf::update::Error) -> Failure {
        match e {
            liblxcf::update::Error::Ops(e) => e.into(),
            e => Failure { code: Exit::Failure, hint: e.hint(), message: chain(&e) },
        }
    }
}

impl From<liblxcf::deploy::DeployError> for Failure {
    fn from(e: liblxcf::deploy::DeployError) -> Failure {
        use liblxcf::deploy::DeployError as D;
        let code = match &e {
            D::Source { .. } | D::NoName { .. } | D::Hidden { .. } => Exit::Usage,
            D::NoContainers => Exit::NotFound,
            _ => Exit::Failure,
        };
        match e {
            D::Update(e) => e.into(),
            e => Failure { code, hint: e.hint(), message: chain(&e) },
        }
    }
}
