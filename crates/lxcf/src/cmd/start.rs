use liblxcf::config::Config;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    if liblxcf::ops::start(cfg, &rt, &a.name)? {
        eprintln!("{}: started", a.name);
    } else {
        eprintln!("{}: already running", a.name);
    }
    Ok(())
}
