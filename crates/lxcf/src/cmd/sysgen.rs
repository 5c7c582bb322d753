use liblxcf::container::Create;
use liblxcf::resources::{Request, Throttle};
use liblxcf::rootfs::layout::Model;

use super::batch::{self, Targets};
use super::Ctx;
use crate::exit::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// Container names: each becomes a hostname, libvirt domain and directory.
    #[command(flatten)]
    pub targets: Targets,
    /// Override the configured model for these containers.
    #[arg(long, value_parser = ["joint", "separate"])]
    pub model: Option<String>,
    /// Without a user namespace: root inside is root on the host (see the README).
    #[arg(long)]
    pub privileged: bool,
    /// Resource settings, as the commands of the same names take them (see `lxcf
    /// help cpun` and so on). All are checked before anything is built.
    #[command(flatten)]
    pub res: Resources,
}

#[derive(clap::Args)]
#[command(next_help_heading = "Resource settings (as the commands of the same names)")]
pub struct Resources {
    /// CPUs, like 0-3,6.
    #[arg(long, value_name = "CPUS", allow_hyphen_values = true)]
    pub cpun: Option<String>,
    /// Percent of the host's CPU time, 1..100.
    #[arg(long, value_name = "PERCENT", allow_hyphen_values = true)]
    pub cpurate: Option<String>,
    /// NUMA nodes, like 0-1.
    #[arg(long, value_name = "NODES", allow_hyphen_values = true)]
    pub numa: Option<String>,
    /// Memory limit, like 2G (at least 64M).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memlimit: Option<String>,
    /// Memory+swap limit, at least --memlimit.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memswlimit: Option<String>,
    /// Disk read bytes/s; repeat for more disks.
    #[arg(long = "blkio_r", alias = "blkio-r", value_name = "DEVICE,RATE")]
    pub blkio_r: Vec<String>,
    /// Disk write bytes/s.
    #[arg(long = "blkio_w", alias = "blkio-w", value_name = "DEVICE,RATE")]
    pub blkio_w: Vec<String>,
    /// Disk read operations/s.
    #[arg(long = "blkioops_r", alias = "blkioops-r", value_name = "DEVICE,IOPS")]
    pub blkioops_r: Vec<String>,
    /// Disk write operations/s.
    #[arg(long = "blkioops_w", alias = "blkioops-w", value_name = "DEVICE,IOPS")]
    pub blkioops_w: Vec<String>,
    /// Network bytes/s into the container.
    #[arg(long = "net_in", alias = "net-in", value_name = "RATE", allow_hyphen_values = true)]
    pub net_in: Option<String>,
    /// Network bytes/s out of the container.
    #[arg(long = "net_out", alias = "net-out", value_name = "RATE", allow_hyphen_values = true)]
    pub net_out: Option<String>,
}

impl Resources {
    fn requests(self) -> Result<Vec<Request>, liblxcf::Error> {
        let mut r = Vec::new();
        r.extend(self.cpun.map(Request::Cpun));
        r.extend(self.cpurate.map(Request::Cpurate));
        r.extend(self.numa.map(Request::Numa));
        r.extend(self.memlimit.map(Request::Memlimit));
        r.extend(self.memswlimit.map(Request::Memswlimit));
        for (t, args) in [
            (Throttle::ReadBps, self.blkio_r),
            (Throttle::WriteBps, self.blkio_w),
            (Throttle::ReadIops, self.blkioops_r),
            (Throttle::WriteIops, self.blkioops_w),
        ] {
            for a in args {
                r.push(Request::blkio(t, &a).map_err(liblxcf::Error::from)?);
            }
        }
        r.extend(self.net_in.map(Request::NetIn));
        r.extend(self.net_out.map(Request::NetOut));
        Ok(r)
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let names = a.targets.names()?;
    let create = Create {
        model: a.model.map(|m| m.parse::<Model>().expect("clap checked the value")),
        resources: a.res.requests()?,
        privileged: a.privileged.then_some(true),
    };
    let lx = ctx.open()?;
    batch::run(
        "sysgen",
        &a.targets,
        &names,
        |jobs, each| lx.sysgen(&names, &create, jobs, each),
        |c| format!("created ({} model, {}) and started", c.meta.model, c.meta.ip),
    )
}
