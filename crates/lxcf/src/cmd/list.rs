use liblxcf::config::Config;

use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// JSON for scripts: an array of objects.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cfg: &Config, a: Args) -> Result<(), Failure> {
    let rt = super::connect(cfg)?;
    let list = liblxcf::ops::list(cfg, &rt)?;
    if a.json {
        let v: Vec<_> = list
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "state": c.state.as_str(),
                    "model": c.meta.model.as_str(),
                    "ip": c.meta.ip.to_string(),
                    "autostart": c.autostart,
                    "root": c.meta.root,
                    "storage": c.storage.map(|s| s.as_str()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("plain values"));
        return Ok(());
    }
    let w = list.iter().map(|c| c.name.len()).max().unwrap_or(0).max(4);
    println!("{:w$}  {:8}  {:8}  {:15}  {:9}  STORAGE", "NAME", "STATE", "MODEL", "IP", "AUTOSTART");
    for c in &list {
        println!(
            "{:w$}  {:8}  {:8}  {:15}  {:9}  {}",
            c.name,
            c.state.as_str(),
            c.meta.model.as_str(),
            c.meta.ip.to_string(),
            if c.autostart { "yes" } else { "no" },
            c.storage.map(|s| s.as_str()).unwrap_or("missing")
        );
    }
    Ok(())
}
