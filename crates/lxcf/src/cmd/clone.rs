use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// The container to copy; it must be stopped.
    pub src: String,
    /// The new container's name: its hostname, libvirt domain and directory.
    pub new: String,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let (src, new) = (super::name(&a.src)?, super::name(&a.new)?);
    let c = ctx.open()?.clone_container(&src, &new)?;
    let storage = c.storage.map(|s| s.as_str()).unwrap_or("-");
    eprintln!("{}: cloned from {} ({} model, {}, {storage}) and started", c.name, a.src, c.meta.model, c.meta.ip);
    Ok(())
}
