use std::time::Duration;

use liblxcf::config::Config;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
    /// Seconds to wait for a clean shutdown before stopping it hard.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    if liblxcf::ops::stop(cfg, &rt, &a.name, Duration::from_secs(a.timeout))? {
        eprintln!("{}: stopped", a.name);
    } else {
        eprintln!("{}: already stopped", a.name);
    }
    Ok(())
}
