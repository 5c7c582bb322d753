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
    batch::run("erase", &a.targets, &names, |jobs, each| lx.erase(&names, jobs, each), |_| "erased".into())
}
