use liblxcf::config::Config;

use super::batch::{self, Targets};
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub targets: Targets,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let rt = super::connect(cfg)?;
    batch::run("erase", &a.targets, &names, |n| Ok(liblxcf::ops::erase(cfg, &rt, n)?), |_| "erased".into())
}
