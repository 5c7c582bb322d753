use std::ffi::OsString;
use std::path::Path;

use liblxcf::config::Config;
use liblxcf::enter;

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
pub fn run(cfg: &Config, a: Args) -> Result<u8, Failure> {
    let rt = super::connect(cfg)?;
    let init = super::running_init(cfg, &rt, &a.name)?;
    drop(rt);
    let env = enter::environment(std::env::vars_os());
    let plan = enter::prepare(Path::new("/proc"), init, &a.cmd, &env)?;
    let status = enter::run(&plan)?;
    Ok(u8::try_from(status).unwrap_or(255))
}
