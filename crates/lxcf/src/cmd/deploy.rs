use std::path::PathBuf;

use liblxcf::config::Config;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// A host file or directory; it goes to the same path in the containers.
    pub path: PathBuf,
    /// Only these containers (default: all).
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub to: Vec<String>,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    let to = (!a.to.is_empty()).then_some(a.to.as_slice());
    let d = liblxcf::deploy::deploy(cfg, &rt, &a.path, to)?;
    for n in &d.containers {
        eprintln!("{n}: {} deployed", d.path.display());
    }
    Ok(())
}
