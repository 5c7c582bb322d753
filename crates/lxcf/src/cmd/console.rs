//! `lxcf console NAME`: the terminal goes to the running container's console until
//! the user leaves it with Ctrl-].

use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// A running container.
    pub name: String,
    /// Take the console over from another client that holds it.
    #[arg(long)]
    pub force: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<u8, Failure> {
    let name = super::name(&a.name)?;
    let status = ctx.open()?.console(&name, a.force)?;
    Ok(u8::try_from(status).unwrap_or(1))
}
