use liblxcf::config::Config;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// The container to copy; it must be stopped.
    pub src: String,
    /// The new container's name: its hostname, libvirt domain and directory.
    pub new: String,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    // NEW starts: the same check as sysgen and start make.
    super::check_limits(&rt, std::slice::from_ref(&a.new))?;
    let c = liblxcf::ops::clone(cfg, &rt, &a.src, &a.new)?;
    let storage = c.storage.map(|s| s.as_str()).unwrap_or("-");
    eprintln!("{}: cloned from {} ({} model, {}, {storage}) and started", c.name, a.src, c.meta.model, c.meta.ip);
    Ok(())
}
