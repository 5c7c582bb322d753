use liblxcf::config::Config;

use super::batch::{self, Targets};
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let rt = super::connect(cfg)?;
    super::check_limits(&rt, &names)?;
    // Once, before the parallel starts: each start makes sure the network runs, and
    // two creating a missing network at once would collide.
    liblxcf::virt::Runtime::ensure_network(&rt, &cfg.network).map_err(|e| Failure::from(liblxcf::ops::Error::from(e)))?;
    batch::run(
        "start",
        &a.targets,
        &names,
        |n| Ok(liblxcf::ops::start(cfg, &rt, n)?),
        |started| if *started { "started" } else { "already running" }.into(),
    )
}
