//! `lxcf lxcfs [NAME...] [--wait SECS]`: binds lxcfs's files into running containers
//! whose view is missing or stale (lxcfs was not running at their start, or was
//! restarted since). lxcf's start script for lxcfs and its systemd drop-in run
//! `lxcf lxcfs --wait 10` once lxcfs is up.

use std::time::{Duration, Instant};

use liblxcf::host::lxcfs::{self, View};

use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Containers (running); every running container when none is given.
    pub names: Vec<String>,
    /// Wait up to SECS seconds for lxcfs to come up first.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let names = a.names.iter().map(|n| super::name(n)).collect::<Result<Vec<_>, _>>()?;
    let lx = ctx.open()?;
    let until = Instant::now() + Duration::from_secs(a.wait);
    while lxcfs::live_device(std::path::Path::new(lxcfs::DIR)).is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut failed = None;
    for (name, r) in lx.lxcfs(&names)? {
        match r {
            Ok(View::On) => println!("{name}: lxcfs's view was in place"),
            Ok(View::Stale) => println!("{name}: lxcfs's view bound again (lxcfs had restarted)"),
            Ok(View::Off) => println!("{name}: lxcfs's view bound"),
            Err(e) => {
                eprintln!("lxcf: {name}: {e}");
                failed = Some(Failure::from(e));
            }
        }
    }
    failed.map_or(Ok(()), Err)
}
