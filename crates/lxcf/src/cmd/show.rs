//! `lxcf show NAME [--json]`: every resource setting, as configured and as in effect,
//! and where the container's root is and how it is stored.

use liblxcf::host::lxcfs::View;

use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    pub name: String,
    /// JSON for scripts: no limit is null, sizes and rates are bytes (per second),
    /// cpurate a percent, CPU and node lists strings.
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let name = super::name(&a.name)?;
    let r = ctx.open()?.show(&name)?;
    if a.json {
        let rows: Vec<_> = r
            .rows
            .iter()
            .map(|row| {
                serde_json::json!({
                    "setting": row.setting,
                    "device": row.device,
                    "configured": row.configured.to_json(),
                    "effective": row.effective.as_ref().map(|v| v.to_json()),
                })
            })
            .collect();
        let v = serde_json::json!({
            "name": r.name,
            "state": r.state.as_str(),
            "cgroup": r.cgroup,
            "root": r.root,
            "storage": r.storage.map(|s| s.as_str()),
            "privileged": r.ids.is_none(),
            "ids": r.ids.map(|b| serde_json::json!({"first": b, "count": liblxcf::IDS_PER_CONTAINER})),
            "dropped_capabilities": r.dropped_caps,
            "lxcfs": r.lxcfs.map(|v| v.as_str()),
            "settings": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("plain values"));
        return Ok(());
    }
    match r.cgroup {
        Some(v) => println!("{}: {}, values in effect read from its cgroup ({v}) and tc", r.name, r.state.as_str()),
        None => println!("{}: {}, the configured values take effect at its next start", r.name, r.state.as_str()),
    }
    println!("root: {} ({})", r.root.display(), r.storage.map_or("missing", |s| s.as_str()));
    match r.ids {
        Some(b) => println!("ids: host {b}-{} are its 0-65535 (unprivileged)", b as u64 + liblxcf::IDS_PER_CONTAINER as u64 - 1),
        None => println!("ids: the host's own (privileged: root inside is root on the host)"),
    }
    if !r.dropped_caps.is_empty() {
        println!("capabilities dropped (beyond libvirt's): {}", r.dropped_caps.join(" "));
    }
    match r.lxcfs {
        Some(View::On) => println!("lxcfs: on (its /proc and /sys/devices/system/cpu files show its own limits)"),
        Some(View::Stale) => println!("lxcfs: stale (lxcfs restarted; `lxcf lxcfs {}` binds it again)", r.name),
        Some(View::Off) => println!("lxcfs: off (the host's /proc files; {})", liblxcf::error::LXCFS_HINT),
        None => {}
    }
    let cells: Vec<[String; 4]> = r
        .rows
        .iter()
        .map(|row| {
            [
                row.setting.to_string(),
                row.device.clone().unwrap_or_default(),
                row.configured.to_string(),
                row.effective.as_ref().map_or("-".into(), |v| v.to_string()),
            ]
        })
        .collect();
    let head = ["SETTING", "DEVICE", "CONFIGURED", "IN EFFECT"].map(String::from);
    let w: Vec<usize> = (0..4).map(|i| cells.iter().chain([&head]).map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    for c in [&head].into_iter().chain(&cells) {
        println!("{:w0$}  {:w1$}  {:w2$}  {}", c[0], c[1], c[2], c[3], w0 = w[0], w1 = w[1], w2 = w[2]);
    }
    Ok(())
}
