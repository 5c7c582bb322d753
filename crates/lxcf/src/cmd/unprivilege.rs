//! `lxcf unprivilege NAME`: a stopped privileged container gets a user namespace.

use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// The container (stopped).
    pub name: String,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let name = super::name(&a.name)?;
    let base = ctx.open()?.unprivilege(&name)?;
    println!("{name}: unprivileged from its next start: its root is host ID {base}");
    Ok(())
}
