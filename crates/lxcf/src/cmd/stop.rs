use std::time::Duration;

use super::batch::{self, Targets};
use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
    /// Seconds to wait for a clean shutdown before stopping it hard.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let lx = ctx.open()?;
    let timeout = Duration::from_secs(a.timeout);
    batch::run(
        "stop",
        &a.targets,
        &names,
        |jobs, each| lx.stop(&names, timeout, jobs, each),
        |stopped| if *stopped { "stopped" } else { "already stopped" }.into(),
    )
}
