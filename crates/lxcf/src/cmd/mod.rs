//! One module per subcommand.

pub mod batch;
pub mod clone;
pub mod completions;
pub mod console;
pub mod deploy;
pub mod erase;
pub mod exec;
pub mod list;
pub mod show;
pub mod start;
pub mod stop;
pub mod sysgen;
pub mod sysstart;
pub mod tune;
pub mod update;

use liblxcf::config::Config;
use liblxcf::virt::libvirt::Libvirt;
use liblxcf::virt::Runtime;

use crate::exit::Failure;

pub fn connect(cfg: &Config) -> Result<Libvirt, Failure> {
    Libvirt::connect(&cfg.uri).map_err(|e| Failure::from(liblxcf::ops::Error::from(e)))
}

/// Refuses to start `names` when the host's limits cannot hold them (liblxcf::limits).
pub fn check_limits(rt: &Libvirt, names: &[String]) -> Result<(), Failure> {
    let domains = rt.domains().map_err(liblxcf::ops::Error::from)?;
    Ok(liblxcf::limits::check_start(&domains, std::path::Path::new("/proc"), names)?)
}

/// The init PID of a running lxcf container of this configuration.
pub fn running_init(cfg: &Config, rt: &Libvirt, name: &str) -> Result<u32, Failure> {
    liblxcf::ops::lxcf_domain(cfg, rt, name)?;
    rt.init_pid(name).map_err(liblxcf::ops::Error::from)?.ok_or_else(|| Failure {
        code: crate::exit::Exit::Failure,
        message: format!("container `{name}` is not running"),
        hint: Some(format!("`lxcf start {name}` starts it")),
    })
}
