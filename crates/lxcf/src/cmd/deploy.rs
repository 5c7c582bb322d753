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

/// A deploy interrupted after its commit mark, finished by this command.
pub fn print_finished(d: &liblxcf::maint::deploy::Deployed) {
    eprintln!("lxcf: an interrupted `lxcf deploy {}` was finished: deployed in {}", d.path.display(), d.containers.join(", "));
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
