use liblxcf::config::Config;

use super::batch::{self, Targets};
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
    /// Disable: no longer start it at boot.
    #[arg(short = 'd', long = "disable")]
    pub disable: bool,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let rt = super::connect(cfg)?;
    let what = if a.disable { "no longer starts" } else { "starts" };
    batch::run(
        "sysstart",
        &a.targets,
        &names,
        |n| Ok(liblxcf::ops::sysstart(cfg, &rt, n, !a.disable)?),
        |()| format!("{what} when the host boots"),
    )
}
