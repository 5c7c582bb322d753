use liblxcf::config::Config;
use liblxcf::layout::Model;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Container name: becomes its hostname, libvirt domain and directory.
    pub name: String,
    /// Override the configured model for this container.
    #[arg(long, value_parser = ["joint", "separate"])]
    pub model: Option<String>,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    let model = a.model.map(|m| m.parse::<Model>().expect("clap checked the value"));
    let c = liblxcf::ops::sysgen(cfg, &rt, &a.name, model)?;
    eprintln!("{}: created ({} model, {}) and started", c.name, c.meta.model, c.meta.ip);
    Ok(())
}
