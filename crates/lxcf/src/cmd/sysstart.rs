use liblxcf::config::Config;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
    /// Disable: no longer start it at boot.
    #[arg(short = 'd', long = "disable")]
    pub disable: bool,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    liblxcf::ops::sysstart(cfg, &rt, &a.name, !a.disable)?;
    let what = if a.disable { "no longer starts" } else { "starts" };
    eprintln!("{}: {what} when the host boots", a.name);
    Ok(())
}
