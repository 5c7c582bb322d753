use liblxcf::container::list::{human_bytes, WINDOW};

use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// JSON for scripts: an array of objects.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let list = ctx.open()?.list(WINDOW)?;
    if a.json {
        let v: Vec<_> = list
            .iter()
            .map(|s| {
                let c = &s.container;
                serde_json::json!({
                    "name": c.name,
                    "state": c.state.as_str(),
                    "model": c.meta.model.as_str(),
                    "ip": c.meta.ip.to_string(),
                    "autostart": c.autostart,
                    "root": c.meta.root,
                    "privileged": c.meta.ids.is_none(),
                    "ids": c.meta.ids.map(|b| serde_json::json!({"first": b, "count": liblxcf::IDS_PER_CONTAINER})),
                    "storage": c.storage.map(|s| s.as_str()),
                    "cpu_percent": s.live.map(|l| (l.cpu_percent * 10.0).round() / 10.0),
                    "cpu_time_ns": s.live.map(|l| l.cpu_ns),
                    "memory_bytes": s.live.map(|l| l.memory_bytes),
                    "lxcfs": s.lxcfs.map(|v| v.as_str()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("plain values"));
        return Ok(());
    }
    let w = list.iter().map(|s| s.container.name.len()).max().unwrap_or(0).max(4);
    println!(
        "{:w$}  {:8}  {:8}  {:15}  {:9}  {:7}  {:10}  {:>6}  {:>6}",
        "NAME", "STATE", "MODEL", "IP", "AUTOSTART", "STORAGE", "IDS", "CPU%", "MEMORY"
    );
    for s in &list {
        let c = &s.container;
        let (cpu, mem) = match s.live {
            Some(l) => (format!("{:.1}", l.cpu_percent), human_bytes(l.memory_bytes)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:w$}  {:8}  {:8}  {:15}  {:9}  {:7}  {:10}  {cpu:>6}  {mem:>6}",
            c.name,
            c.state.as_str(),
            c.meta.model.as_str(),
            c.meta.ip.to_string(),
            if c.autostart { "yes" } else { "no" },
            c.storage.map(|s| s.as_str()).unwrap_or("missing"),
            c.meta.ids.map_or("privileged".to_string(), |b| b.to_string()),
        );
    }
    Ok(())
}
