//! The resource commands (cpun, cpurate, numa, memlimit, memswlimit, blkio_r/w,
//! blkioops_r/w, net_in/out): one family with one shape, NAME [DEVICE] VALUE, so one
//! module. Each change applies at once to a running container and is kept for its
//! later starts.

use std::path::PathBuf;

use liblxcf::resources::{Request, Throttle};

use super::Ctx;
use crate::exit::Failure;

// Values are taken as typed, `-5` included, so that lxcf (not the option parser)
// says what is wrong with them.

#[derive(clap::Args)]
pub struct Cpun {
    pub name: String,
    /// CPU numbers like 0-3,6 (online CPUs of this host); `all` or `unlimited`: every CPU.
    #[arg(value_name = "CPUS", allow_hyphen_values = true)]
    pub cpus: String,
}

#[derive(clap::Args)]
pub struct Cpurate {
    pub name: String,
    /// Share of the whole host's CPU time, a whole percent from 1 to 100: 50 on a
    /// 4-CPU host is 2 CPUs' worth (CFS quota = 100000 µs × online CPUs × PERCENT / 100
    /// per 100000 µs). 100 or `unlimited`: no limit.
    #[arg(value_name = "PERCENT", allow_hyphen_values = true)]
    pub percent: String,
}

#[derive(clap::Args)]
pub struct Numa {
    pub name: String,
    /// NUMA nodes to take memory from, like 0 or 0-1; `all` or `unlimited`: every node.
    #[arg(value_name = "NODES", allow_hyphen_values = true)]
    pub nodes: String,
}

#[derive(clap::Args)]
pub struct Memlimit {
    pub name: String,
    /// Bytes, or with K, M, G, T (powers of 1024): 512M, 1.5G. Whole KiB, at least 64M
    /// (systemd in the container needs that much to boot). `unlimited`: no limit
    /// (refused while memswlimit is set).
    #[arg(value_name = "SIZE", allow_hyphen_values = true)]
    pub size: String,
}

#[derive(clap::Args)]
pub struct Memswlimit {
    pub name: String,
    /// Memory plus swap, at least memlimit (which must be set); sizes as for memlimit.
    /// `unlimited`: no limit.
    #[arg(value_name = "SIZE", allow_hyphen_values = true)]
    pub size: String,
}

#[derive(clap::Args)]
pub struct Blkio {
    pub name: String,
    /// A block device (/dev/sda) or any path on one (resolved to its whole disk).
    pub device: PathBuf,
    /// Bytes per second, with K, M, G, T (powers of 1024): 500K, 10M. 0 or `unlimited`: no limit.
    #[arg(value_name = "RATE", allow_hyphen_values = true)]
    pub rate: String,
}

#[derive(clap::Args)]
pub struct Blkioops {
    pub name: String,
    /// A block device (/dev/sda) or any path on one (resolved to its whole disk).
    pub device: PathBuf,
    /// Operations per second, a whole number. 0 or `unlimited`: no limit.
    #[arg(value_name = "IOPS", allow_hyphen_values = true)]
    pub iops: String,
}

#[derive(clap::Args)]
pub struct Net {
    pub name: String,
    /// Bytes per second, with K, M, G, T (powers of 1024): 500K, 10M. 0 or `unlimited`: no limit.
    #[arg(value_name = "RATE", allow_hyphen_values = true)]
    pub rate: String,
}

pub fn cpun(ctx: &Ctx, a: Cpun) -> Result<(), Failure> {
    run(ctx, &a.name, Request::Cpun(a.cpus))
}

pub fn cpurate(ctx: &Ctx, a: Cpurate) -> Result<(), Failure> {
    run(ctx, &a.name, Request::Cpurate(a.percent))
}

pub fn numa(ctx: &Ctx, a: Numa) -> Result<(), Failure> {
    run(ctx, &a.name, Request::Numa(a.nodes))
}

pub fn memlimit(ctx: &Ctx, a: Memlimit) -> Result<(), Failure> {
    run(ctx, &a.name, Request::Memlimit(a.size))
}

pub fn memswlimit(ctx: &Ctx, a: Memswlimit) -> Result<(), Failure> {
    run(ctx, &a.name, Request::Memswlimit(a.size))
}

pub fn blkio(ctx: &Ctx, t: Throttle, a: Blkio) -> Result<(), Failure> {
    run(ctx, &a.name, Request::Blkio(t, a.device, a.rate))
}

pub fn blkioops(ctx: &Ctx, t: Throttle, a: Blkioops) -> Result<(), Failure> {
    run(ctx, &a.name, Request::Blkio(t, a.device, a.iops))
}

pub fn net_in(ctx: &Ctx, a: Net) -> Result<(), Failure> {
    run(ctx, &a.name, Request::NetIn(a.rate))
}

pub fn net_out(ctx: &Ctx, a: Net) -> Result<(), Failure> {
    run(ctx, &a.name, Request::NetOut(a.rate))
}

fn run(ctx: &Ctx, name: &str, req: Request) -> Result<(), Failure> {
    let name = super::name(name)?;
    let done = ctx.open()?.tune(&name, &[req])?;
    let when = if done.live { "now and at every start" } else { "from its next start" };
    for c in done.changes {
        eprintln!("{name}: {c} ({when})");
    }
    Ok(())
}
