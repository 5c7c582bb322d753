use super::batch::{self, Targets};
use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let lx = ctx.open()?;
    batch::run(
        "start",
        &a.targets,
        &names,
        |jobs, each| lx.start(&names, jobs, each),
        |started| if *started { "started" } else { "already running" }.into(),
    )
}
