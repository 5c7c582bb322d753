use super::batch::{self, Targets};
use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
    /// Disable: no longer start it at boot.
    #[arg(short = 'd', long = "disable")]
    pub disable: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let lx = ctx.open()?;
    let what = if a.disable { "no longer starts" } else { "starts" };
    batch::run(
        "sysstart",
        &a.targets,
        &names,
        |jobs, each| lx.sysstart(&names, !a.disable, jobs, each),
        |()| format!("{what} when the host boots"),
    )
}
