use liblxcf::config::Config;
use liblxcf::layout::Model;

use super::batch::{self, Targets};
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Container names: each becomes a hostname, libvirt domain and directory.
    #[command(flatten)]
    pub targets: Targets,
    /// Override the configured model for these containers.
    #[arg(long, value_parser = ["joint", "separate"])]
    pub model: Option<String>,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let rt = super::connect(cfg)?;
    super::check_limits(&rt, &names)?;
    let model = a.model.map(|m| m.parse::<Model>().expect("clap checked the value"));
    batch::run(
        "sysgen",
        &a.targets,
        &names,
        |n| Ok(liblxcf::ops::sysgen(cfg, &rt, n, model)?),
        |c| format!("created ({} model, {}) and started", c.meta.model, c.meta.ip),
    )
}
