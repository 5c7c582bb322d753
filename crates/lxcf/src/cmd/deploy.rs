use std::path::PathBuf;

use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// A host file or directory; it goes to the same path in the containers.
    pub path: PathBuf,
    /// Only these containers (default: all).
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub to: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let to = a.to.iter().map(|n| super::name(n)).collect::<Result<Vec<_>, _>>()?;
    let lx = ctx.open()?;
    let d = lx.deploy(&a.path, (!to.is_empty()).then_some(to.as_slice()))?;
    for n in &d.containers {
        eprintln!("{n}: {} deployed", d.path.display());
    }
    Ok(())
}
