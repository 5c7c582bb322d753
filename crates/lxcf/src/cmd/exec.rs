use std::ffi::OsString;

use liblxcf::container::enter;

use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// A running container.
    pub name: String,
    /// The command and its arguments, after `--`; searched in the container's PATH.
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<OsString>,
}

/// The command's exit status, passed through.
pub fn run(ctx: &Ctx, a: Args) -> Result<u8, Failure> {
    let name = super::name(&a.name)?;
    let env = enter::environment(std::env::vars_os());
    let status = ctx.open()?.exec(&name, &a.cmd, &env)?;
    Ok(u8::try_from(status).unwrap_or(255))
}
