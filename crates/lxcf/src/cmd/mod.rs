//! One module per subcommand.

pub mod erase;
pub mod list;
pub mod show;
pub mod start;
pub mod stop;
pub mod sysgen;
pub mod sysstart;
pub mod tune;
pub mod update;
pub mod deploy;

use liblxcf::config::Config;
use liblxcf::virt::libvirt::Libvirt;

use crate::exit::Failure;

pub fn connect(cfg: &Config) -> Result<Libvirt, Failure> {
    Libvirt::connect(&cfg.uri).map_err(|e| Failure::from(liblxcf::ops::Error::from(e)))
}
