use liblxcf::config::Config;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    liblxcf::ops::erase(cfg, &rt, &a.name)?;
    eprintln!("{}: erased", a.name);
    Ok(())
}
