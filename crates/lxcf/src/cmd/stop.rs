use std::time::Duration;

use liblxcf::config::Config;

use super::batch::{self, Targets};
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
    /// Seconds to wait for a clean shutdown before stopping it hard.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let rt = super::connect(cfg)?;
    let timeout = Duration::from_secs(a.timeout);
    batch::run(
        "stop",
        &a.targets,
        &names,
        |n| Ok(liblxcf::ops::stop(cfg, &rt, n, timeout)?),
        |stopped| if *stopped { "stopped" } else { "already stopped" }.into(),
    )
}
