//! One module per subcommand. Each parses and checks its arguments, asks the
//! library's front ([`liblxcf::Lxcf`]) and prints; none of them knows the runtime.

pub mod batch;
pub mod check;
pub mod clone;
pub mod completions;
pub mod console;
pub mod deploy;
pub mod erase;
pub mod exec;
pub mod list;
pub mod lxcfs;
pub mod show;
pub mod start;
pub mod stop;
pub mod sysgen;
pub mod sysstart;
pub mod tune;
pub mod unprivilege;
pub mod update;

use std::sync::Arc;

use liblxcf::{Config, Lxcf, Name};

use crate::exit::Failure;

/// What every command gets: the configuration, and the front once it is needed
/// (after the arguments are checked, so that a bad argument is reported as such
/// even when libvirtd is down).
pub struct Ctx {
    pub cfg: Config,
}

impl Ctx {
    pub fn open(&self) -> Result<Lxcf, Failure> {
        Ok(Lxcf::open(self.cfg.clone())?.with_reporter(Arc::new(crate::progress::Terminal)))
    }
}

/// A container name from the command line.
pub fn name(s: &str) -> Result<Name, Failure> {
    Ok(Name::new(s).map_err(liblxcf::Error::from)?)
}
