//! The host lxcf runs on, in one place: what it has (CPUs, NUMA nodes, disks, limits),
//! its cgroups, its processes, and the traffic shaping of containers' interfaces.
//! The runtime module talks only to the runtime, the resource module only computes;
//! whatever reads or writes the host's kernel interfaces is here, behind [`Host`],
//! so that the commands are unit-tested against a fake machine.
//!
//! [`System`] is the real one. Its roots (`/proc`, `/sys`, `/dev`,
//! `/sys/fs/cgroup`) are fields, so its readers also run against fake trees.

use std::path::{Path, PathBuf};

use crate::error::{self, IoError};
use crate::resources::{IdSet, ResourceError};
use crate::runtime::Live;

pub mod blockdev;
pub mod cgroup;
pub mod idmap;
pub mod limits;
pub mod lxcfs;
pub mod netshape;

use cgroup::{CgroupError, Cgroups, Kernel, Version};
use limits::LimitError;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("unexpected content in {}: `{text}`", path.display())]
    Parse { path: PathBuf, text: String },
    #[error("no init process under the container's monitor (pid {0})")]
    NoInit(u32),
    #[error("cannot shape the network of {name}: {msg}")]
    Shape { name: String, msg: String },
    #[error("{cmd} failed: {msg}")]
    Command { cmd: String, msg: String },
    #[error("this kernel does not let lxcf make user namespaces")]
    NoUserns,
    #[error("the file system of {} cannot be mounted with mapped owners (idmapped mounts)", path.display())]
    NoIdmap { path: PathBuf },
    #[error("lxcfs is not running (nothing live is mounted at {})", lxcfs::DIR)]
    LxcfsDown,
}

/// The limits in effect on a running container, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub cgroup: Version,
    pub kernel: Kernel,
    /// The tbf rates (bytes/s) on the host end of the veth and on eth0 inside.
    pub net_in: Option<u64>,
    pub net_out: Option<u64>,
}

/// What lxcf needs from the host.
pub trait Host: Send + Sync {
    /// The online CPUs.
    fn cpus(&self) -> Result<IdSet, HostError>;
    /// The NUMA nodes that have memory.
    fn nodes(&self) -> Result<IdSet, HostError>;
    /// The whole-disk block device (`/dev/...`) that `path` is, or lies on.
    fn disk_of(&self, path: &Path) -> Result<PathBuf, ResourceError>;
    /// `/dev/NAME` of a `MAJ:MIN`, or the number itself.
    fn device_name(&self, id: &str) -> String;
    /// Refuses when `running` containers plus `adding` new ones exceed a host limit.
    fn check_limits(&self, running: u64, adding: u64) -> Result<(), LimitError>;
    /// The container's init: the one child of its runtime's monitor; `None` while
    /// there is none (starting, stopping).
    fn init_of(&self, monitor: u32) -> Result<Option<u32>, HostError>;
    /// The limits in effect on a running container.
    fn effective(&self, live: &Live) -> Result<Effective, HostError>;
    /// Sets the CPUs (`None`: all) of a running container, every task of it included.
    fn set_cpus(&self, live: &Live, cpus: Option<&IdSet>) -> Result<(), HostError>;
    /// Sets the NUMA nodes (`None`: all) a running container takes memory from.
    fn set_mems(&self, live: &Live, nodes: Option<&IdSet>) -> Result<(), HostError>;
    /// Sets (or, with `None`, removes) a running container's network rates.
    fn shape(&self, name: &str, live: &Live, inbound: Option<u64>, outbound: Option<u64>) -> Result<(), HostError>;
    /// Removes the cgroups lxcf's init made for a container that no longer runs.
    fn remove_cgroups(&self, name: &str) -> Result<usize, HostError>;
    /// Kills a running container's init (and with it every process of its PID
    /// namespace) with SIGKILL. `false`: it had no init (any more).
    fn kill(&self, live: &Live) -> Result<bool, HostError>;
    /// Detaches whatever is mounted at or below `dir` in lxcf's mount namespace,
    /// deepest first; how many mounts went.
    fn unmount_below(&self, dir: &Path) -> Result<usize, HostError>;
    /// What is mounted at or below `dir` in lxcf's mount namespace.
    fn mounts_below(&self, dir: &Path) -> Result<Vec<PathBuf>, HostError>;
    /// The names that have `/lxcf/NAME` cgroups in some hierarchy.
    fn cgroup_names(&self) -> Result<std::collections::BTreeSet<String>, HostError>;
    /// Whether lxcfs runs (its files answer).
    fn lxcfs_up(&self) -> bool;
    /// Whether the running container reads lxcfs's files (see [`lxcfs`]).
    fn lxcfs_view(&self, live: &Live) -> Result<lxcfs::View, HostError>;
    /// Binds lxcfs's files into the running container, replacing stale ones; how many.
    fn lxcfs_bind(&self, live: &Live) -> Result<usize, HostError>;
}

/// The machine lxcf runs on.
pub struct System {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
    pub cgroups: Cgroups,
    /// Where lxcfs is mounted.
    pub lxcfs: PathBuf,
}

impl Default for System {
    fn default() -> System {
        System {
            proc: "/proc".into(),
            sys: "/sys".into(),
            dev: "/dev".into(),
            cgroups: Cgroups::detect(Path::new("/sys/fs/cgroup")),
            lxcfs: lxcfs::DIR.into(),
        }
    }
}

impl System {
    /// A CPU or node list file; `None` if the kernel has none.
    fn list(&self, rel: &str) -> Result<Option<IdSet>, HostError> {
        let path = self.sys.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(t) => IdSet::parse(&t).map(Some).map_err(|_| HostError::Parse { path, text: t.trim().into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error::io("read", &path)(e).into()),
        }
    }

    fn group(&self, live: &Live) -> Result<cgroup::Group, HostError> {
        Ok(self.cgroups.of_pid(&self.proc, live.monitor)?)
    }
}

impl Host for System {
    fn cpus(&self) -> Result<IdSet, HostError> {
        Ok(self.list("devices/system/cpu/online")?.unwrap_or_else(|| IdSet::from_iter([0])))
    }

    fn nodes(&self) -> Result<IdSet, HostError> {
        // has_memory: cpuset.mems only takes nodes with memory. A kernel without NUMA
        // support has no node directory and one node, 0.
        for f in ["devices/system/node/has_memory", "devices/system/node/online"] {
            if let Some(s) = self.list(f)? {
                return Ok(s);
            }
        }
        Ok(IdSet::from_iter([0]))
    }

    fn disk_of(&self, path: &Path) -> Result<PathBuf, ResourceError> {
        blockdev::disk_of(path, &self.sys, &self.dev)
    }

    fn device_name(&self, id: &str) -> String {
        blockdev::name_of(&self.sys, id)
    }

    fn check_limits(&self, running: u64, adding: u64) -> Result<(), LimitError> {
        limits::check(&self.proc, running, adding)
    }

    fn init_of(&self, monitor: u32) -> Result<Option<u32>, HostError> {
        // Every thread's children: the monitor may have forked from any of them.
        let tasks = self.proc.join(monitor.to_string()).join("task");
        let rd = match std::fs::read_dir(&tasks) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(error::io("read", &tasks)(e).into()),
        };
        let children: Vec<u32> = rd
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()).collect::<Vec<_>>())
            .collect();
        match children.as_slice() {
            [pid] => Ok(Some(*pid)),
            [] => Ok(None),
            more => Err(HostError::Parse { path: tasks, text: format!("{} children, not one", more.len()) }),
        }
    }

    fn effective(&self, live: &Live) -> Result<Effective, HostError> {
        let kernel = self.group(live)?.kernel()?;
        let init = self.init_of(live.monitor)?.ok_or(HostError::NoInit(live.monitor))?;
        let (net_in, net_out) = netshape::read(live.host_veth.as_deref(), init)?;
        Ok(Effective { cgroup: self.cgroups.version, kernel, net_in, net_out })
    }

    fn set_cpus(&self, live: &Live, cpus: Option<&IdSet>) -> Result<(), HostError> {
        Ok(self.group(live)?.set_cpus(cpus)?)
    }

    fn set_mems(&self, live: &Live, nodes: Option<&IdSet>) -> Result<(), HostError> {
        Ok(self.group(live)?.set_mems(nodes)?)
    }

    fn shape(&self, name: &str, live: &Live, inbound: Option<u64>, outbound: Option<u64>) -> Result<(), HostError> {
        let init = self.init_of(live.monitor)?.ok_or(HostError::NoInit(live.monitor))?;
        let dev = live
            .host_veth
            .as_deref()
            .ok_or_else(|| HostError::Shape { name: name.into(), msg: "it has no network interface to limit".into() })?;
        netshape::apply(name, init, dev, inbound, outbound)
    }

    fn remove_cgroups(&self, name: &str) -> Result<usize, HostError> {
        Ok(cgroup::remove_container_cgroups(&self.mountinfo()?, name)?)
    }

    fn kill(&self, live: &Live) -> Result<bool, HostError> {
        let Some(init) = self.init_of(live.monitor)? else { return Ok(false) };
        let Some(pid) = rustix::process::Pid::from_raw(init as i32) else { return Ok(false) };
        // A pidfd first, then a check that it is still the monitor's child: a PID
        // read from /proc may have been reused by another process meanwhile.
        let fd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(false),
            Err(e) => return Err(error::io("open a pidfd of", &self.proc.join(init.to_string()))(e).into()),
        };
        if self.init_of(live.monitor)? != Some(init) {
            return Ok(false);
        }
        match rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::SRCH) => Ok(false),
            Err(e) => Err(error::io("kill", &self.proc.join(init.to_string()))(e).into()),
        }
    }

    fn mounts_below(&self, dir: &Path) -> Result<Vec<PathBuf>, HostError> {
        Ok(self
            .mountinfo()?
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|m| PathBuf::from(cgroup::unescape_mountinfo(m)))
            .filter(|m| m.starts_with(dir))
            .collect())
    }

    fn cgroup_names(&self) -> Result<std::collections::BTreeSet<String>, HostError> {
        Ok(cgroup::container_cgroup_names(&self.mountinfo()?)?)
    }

    fn unmount_below(&self, dir: &Path) -> Result<usize, HostError> {
        let mut points = self.mounts_below(dir)?;
        // Deepest first; a path mounted over twice is listed twice.
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in &points {
            match rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH) {
                Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(error::io("unmount", p)(e).into()),
            }
        }
        Ok(points.len())
    }

    fn lxcfs_up(&self) -> bool {
        lxcfs::live_device(&self.lxcfs).is_some()
    }

    fn lxcfs_view(&self, live: &Live) -> Result<lxcfs::View, HostError> {
        let init = self.init_of(live.monitor)?.ok_or(HostError::NoInit(live.monitor))?;
        let mi = self.proc.join(init.to_string()).join("mountinfo");
        let table = std::fs::read_to_string(&mi).map_err(error::io("read", &mi))?;
        let dev = lxcfs::live_device(&self.lxcfs);
        let offered = if dev.is_some() { lxcfs::offered(&self.lxcfs) } else { lxcfs::FILES.to_vec() };
        Ok(lxcfs::view(&table, dev.as_deref(), &offered))
    }

    fn lxcfs_bind(&self, live: &Live) -> Result<usize, HostError> {
        let init = self.init_of(live.monitor)?.ok_or(HostError::NoInit(live.monitor))?;
        lxcfs::bind(&self.proc, &self.lxcfs, init)
    }
}

impl System {
    fn mountinfo(&self) -> Result<String, HostError> {
        let mi = self.proc.join("self/mountinfo");
        Ok(std::fs::read_to_string(&mi).map_err(error::io("read", &mi))?)
    }
}
