//! Cgroups: a running container's, found from its runtime's monitor process's
//! /proc/PID/cgroup, read back for `lxcf show`, and written where the runtime cannot
//! make a change live (the CPU set and the NUMA nodes of a running LXC domain); the
//! cgroup file systems of a mountinfo; and the cgroups lxcf makes for each container.
//!
//! libvirt-LXC gives a container cgroups of its own only for the controllers it
//! manages, and only when systemd-machined is not there to place it in the others.
//! For every other hierarchy the container's init (runtime/libvirt/init/place.sh)
//! makes `/lxcf/NAME` and moves there before systemd starts;
//! [`remove_container_cgroups`] removes them when the container is undefined. The
//! path is fixed per name, so a container restarted finds its own again and nothing
//! piles up.
//!
//! Hosts have either cgroup v1 (one hierarchy per controller under
//! /sys/fs/cgroup/CONTROLLER; "hybrid" hosts add an empty v2 tree at
//! /sys/fs/cgroup/unified, which lxcf ignores like libvirt does) or v2 (one tree with
//! `cgroup.controllers` at its root). [`Cgroups::detect`] tells which.
//!
//! The roots are parameters, so the code runs against fake trees in the tests.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{self, IoError};
use crate::resources::{IdSet, Throttle};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("unexpected content in {}: `{text}`", path.display())]
    Parse { path: PathBuf, text: String },
    #[error("process {pid} is in no {what} cgroup")]
    NoGroup { pid: u32, what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// The cgroup file system of a host.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub root: PathBuf,
    pub version: Version,
}

impl Cgroups {
    /// Which version is mounted at `root`: v2 has `cgroup.controllers` at the top,
    /// v1 (also hybrid) a directory per controller.
    pub fn detect(root: &Path) -> Cgroups {
        let version = if root.join("cgroup.controllers").exists() { Version::V2 } else { Version::V1 };
        Cgroups { root: root.to_path_buf(), version }
    }

    /// The cgroup of process `pid`, from `proc`/PID/cgroup.
    pub fn of_pid(&self, proc: &Path, pid: u32) -> Result<Group, CgroupError> {
        let path = proc.join(pid.to_string()).join("cgroup");
        let text = std::fs::read_to_string(&path).map_err(error::io("read", &path))?;
        let mut dirs = BTreeMap::new();
        for line in text.lines() {
            // ID:CONTROLLERS:PATH; v2 is `0::PATH`.
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(rel)) = (f.next(), f.next(), f.next()) else { continue };
            let rel = rel.trim_start_matches('/');
            match self.version {
                Version::V2 if ctrls.is_empty() => {
                    dirs.insert(String::new(), self.root.join(rel));
                }
                Version::V1 if !ctrls.is_empty() => {
                    // Co-mounted controllers live under their joined name (cpu,cpuacct),
                    // usually with a symlink per controller; separate ones under their own.
                    let joined = self.root.join(ctrls);
                    for c in ctrls.split(',') {
                        let mount = if joined.exists() { joined.clone() } else { self.root.join(c) };
                        dirs.insert(c.to_string(), mount.join(rel));
                    }
                }
                _ => {}
            }
        }
        if dirs.is_empty() {
            return Err(CgroupError::NoGroup { pid, what: self.version.as_str().into() });
        }
        Ok(Group { version: self.version, dirs })
    }
}

/// One cgroup: the directory of each v1 controller, or the one v2 directory.
#[derive(Debug, Clone)]
pub struct Group {
    pub version: Version,
    dirs: BTreeMap<String, PathBuf>,
}

/// The limits in effect, as the kernel reports them. `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub cpus: String,
    pub mems: String,
    /// CFS quota and period, µs.
    pub cfs_quota: Option<u64>,
    pub cfs_period: u64,
    pub mem: Option<u64>,
    /// `Err` when the kernel does not account swap (v1 without swapaccount=1).
    pub memsw: Result<Option<u64>, String>,
    /// `MAJ:MIN` and throttle: value. Only set throttles appear.
    pub io: BTreeMap<(String, Throttle), u64>,
}

/// Above this the kernel's memory limit means "none": v1 reports its maximum as
/// PAGE_COUNTER_MAX pages (just under 2^63 bytes), never a real amount.
const V1_UNLIMITED: u64 = 1 << 62;

fn v1_file(t: Throttle) -> &'static str {
    match t {
        Throttle::ReadBps => "blkio.throttle.read_bps_device",
        Throttle::WriteBps => "blkio.throttle.write_bps_device",
        Throttle::ReadIops => "blkio.throttle.read_iops_device",
        Throttle::WriteIops => "blkio.throttle.write_iops_device",
    }
}

fn v2_key(t: Throttle) -> &'static str {
    match t {
        Throttle::ReadBps => "rbps",
        Throttle::WriteBps => "wbps",
        Throttle::ReadIops => "riops",
        Throttle::WriteIops => "wiops",
    }
}

impl Group {
    /// The directory holding `controller`'s files.
    pub fn dir(&self, controller: &str) -> Result<&Path, CgroupError> {
        let key = if self.version == Version::V2 { "" } else { controller };
        self.dirs
            .get(key)
            .map(PathBuf::as_path)
            .ok_or_else(|| CgroupError::NoGroup { pid: 0, what: format!("{controller} ({})", self.version.as_str()) })
    }

    fn read(&self, controller: &str, file: &str) -> Result<String, CgroupError> {
        let path = self.dir(controller)?.join(file);
        std::fs::read_to_string(&path).map(|s| s.trim().to_string()).map_err(|e| error::io("read", &path)(e).into())
    }

    fn num(&self, controller: &str, file: &str) -> Result<Option<u64>, CgroupError> {
        let text = self.read(controller, file)?;
        let path = || self.dir(controller).map(|d| d.join(file)).unwrap_or_default();
        match text.as_str() {
            "max" | "-1" => Ok(None),
            t => t.parse::<u64>().map(Some).map_err(|_| CgroupError::Parse { path: path(), text: text.clone() }),
        }
    }

    /// Everything `lxcf show` reports as in effect.
    pub fn kernel(&self) -> Result<Kernel, CgroupError> {
        let mut k = Kernel {
            cpus: self.read("cpuset", "cpuset.cpus.effective").or_else(|_| self.read("cpuset", "cpuset.cpus"))?,
            mems: self.read("cpuset", "cpuset.mems.effective").or_else(|_| self.read("cpuset", "cpuset.mems"))?,
            cfs_quota: None,
            cfs_period: 0,
            mem: None,
            memsw: Ok(None),
            io: BTreeMap::new(),
        };
        match self.version {
            Version::V1 => {
                k.cfs_quota = self.num("cpu", "cpu.cfs_quota_us")?;
                k.cfs_period = self.num("cpu", "cpu.cfs_period_us")?.unwrap_or(0);
                k.mem = self.num("memory", "memory.limit_in_bytes")?.filter(|&v| v < V1_UNLIMITED);
                k.memsw = match self.num("memory", "memory.memsw.limit_in_bytes") {
                    Ok(v) => Ok(v.filter(|&v| v < V1_UNLIMITED)),
                    Err(CgroupError::Io(IoError { source, .. })) if source.kind() == std::io::ErrorKind::NotFound => {
                        Err("swap is not accounted on this host (boot with swapaccount=1)".into())
                    }
                    Err(e) => return Err(e),
                };
                for t in Throttle::ALL {
                    for line in self.read("blkio", v1_file(t))?.lines() {
                        if let Some((dev, v)) = line.split_once(' ') {
                            if let Ok(v) = v.trim().parse::<u64>() {
                                k.io.insert((dev.to_string(), t), v);
                            }
                        }
                    }
                }
            }
            Version::V2 => {
                let max = self.read("cpu", "cpu.max")?;
                let mut f = max.split_whitespace();
                k.cfs_quota = f.next().and_then(|q| q.parse().ok());
                k.cfs_period = f.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                k.mem = self.num("memory", "memory.max")?;
                // libvirt's swap_hard_limit is memory+swap; v2 limits swap alone.
                k.memsw = match self.num("memory", "memory.swap.max") {
                    Ok(swap) => Ok(k.mem.zip(swap).map(|(m, s)| m.saturating_add(s))),
                    Err(CgroupError::Io(IoError { source, .. })) if source.kind() == std::io::ErrorKind::NotFound => {
                        Err("swap is not accounted on this host".into())
                    }
                    Err(e) => return Err(e),
                };
                // io.max: `MAJ:MIN rbps=max wbps=1048576 riops=max wiops=max`.
                for line in self.read("io", "io.max")?.lines() {
                    let mut f = line.split_whitespace();
                    let Some(dev) = f.next() else { continue };
                    for kv in f {
                        let Some((key, v)) = kv.split_once('=') else { continue };
                        if let (Some(t), Ok(v)) = (Throttle::ALL.into_iter().find(|t| v2_key(*t) == key), v.parse::<u64>()) {
                            k.io.insert((dev.to_string(), t), v);
                        }
                    }
                }
            }
        }
        Ok(k)
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let path = self.dir(controller)?.join(file);
        std::fs::write(&path, value).map_err(|e| error::io("write", &path)(e).into())
    }

    /// The parent's value of a cpuset file: what "no limit" means for this group.
    fn parent_cpuset(&self, file: &str) -> Result<String, CgroupError> {
        let dir = self.dir("cpuset")?;
        let parent = dir.parent().unwrap_or(dir);
        let eff = parent.join(format!("{file}.effective"));
        let path = if eff.exists() { eff } else { parent.join(file) };
        std::fs::read_to_string(&path).map(|s| s.trim().to_string()).map_err(|e| error::io("read", &path)(e).into())
    }

    /// Sets the CPUs the container may use (`None`: all its parent has) and moves
    /// every task onto them.
    ///
    /// Writing cpuset.cpus is not enough to widen the set: since Linux 6.2 the kernel
    /// keeps each task's own affinity request (libvirt_lxc sets one at start, which
    /// every process of the container inherits) and intersects it with the cpuset.
    /// So the affinity of each task is set too.
    pub fn set_cpus(&self, cpus: Option<&IdSet>) -> Result<(), CgroupError> {
        let value = match cpus {
            Some(c) => c.to_string(),
            None => self.parent_cpuset("cpuset.cpus")?,
        };
        self.write("cpuset", "cpuset.cpus", &value)?;
        let set = IdSet::parse(&value).map_err(|_| CgroupError::Parse { path: self.dir("cpuset").unwrap().into(), text: value })?;
        let mut mask = rustix::thread::CpuSet::new();
        for c in set.iter() {
            mask.set(c as usize);
        }
        let tasks = if self.version == Version::V1 { "tasks" } else { "cgroup.threads" };
        // Tasks forked while we walk inherit their parent's old mask; walk again until
        // a pass finds none we have not seen (three passes at most: a fork bomb must not
        // keep us here).
        let mut done = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let mut new = false;
            for dir in walk(self.dir("cpuset")?) {
                let Ok(text) = std::fs::read_to_string(dir.join(tasks)) else { continue };
                for tid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    if done.insert(tid) {
                        new = true;
                        let pid = rustix::process::Pid::from_raw(tid);
                        match rustix::thread::sched_setaffinity(pid, &mask) {
                            // Gone meanwhile, or a kernel thread that may not move.
                            Ok(()) | Err(rustix::io::Errno::SRCH) | Err(rustix::io::Errno::INVAL) => {}
                            Err(e) => return Err(error::io("set the CPU affinity of a task in", &dir)(e).into()),
                        }
                    }
                }
            }
            if !new {
                break;
            }
        }
        Ok(())
    }

    /// Sets the NUMA nodes the container may allocate from (`None`: all its parent
    /// has). New allocations follow at once; pages already allocated stay where they
    /// are, as cpuset.memory_migrate is off in libvirt-LXC's cgroups (and at start,
    /// libvirt sets cpuset.mems before anything is allocated).
    pub fn set_mems(&self, nodes: Option<&IdSet>) -> Result<(), CgroupError> {
        let value = match nodes {
            Some(n) => n.to_string(),
            None => self.parent_cpuset("cpuset.mems")?,
        };
        self.write("cpuset", "cpuset.mems", &value)
    }
}

/// `dir` and every directory below it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// The parent, in each hierarchy, of the cgroups lxcf makes for containers.
pub const LXCF_CGROUP: &str = "lxcf";

/// A cgroup hierarchy mounted somewhere, from a mountinfo.
#[derive(Debug, PartialEq)]
pub struct CgroupMount {
    /// The v1 controllers (`cpu,cpuacct`, `name=systemd`); empty for cgroup v2.
    pub ctrls: Vec<String>,
    /// The cgroup the mount shows as its root, relative to the cgroup namespace
    /// of the process reading the mountinfo.
    pub root: String,
    pub at: PathBuf,
}

/// Every cgroup (v1 and v2) mount of a mountinfo.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        let Some((left, right)) = l.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let ctrls = match right[0] {
            "cgroup2" => Vec::new(),
            "cgroup" => {
                let known = ["rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "nsdelegate"];
                right[2]
                    .split(',')
                    .filter(|o| !known.contains(o) && !o.starts_with("release_agent=") && !o.starts_with("xattr"))
                    .map(String::from)
                    .collect()
            }
            _ => continue,
        };
        let root = unescape_mountinfo(left[3]).to_string_lossy().into_owned();
        out.push(CgroupMount { ctrls, root, at: PathBuf::from(unescape_mountinfo(left[4])) });
    }
    out
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
pub fn unescape_mountinfo(s: &str) -> OsString {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.len() >= i + 4 && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    OsStr::from_bytes(&out).to_os_string()
}

/// Removes `/lxcf/NAME` and what the container's systemd made under it, in every
/// hierarchy of `mountinfo` (the caller's).
/// Call it once the container has stopped: a cgroup with processes cannot go (the
/// error says which). Returns how many cgroups went.
pub fn remove_container_cgroups(mountinfo: &str, name: &str) -> Result<usize, IoError> {
    let mut removed = 0;
    for m in cgroup_mounts(mountinfo).iter().filter(|m| m.root == "/") {
        // `/lxcf` itself stays: a container starting meanwhile may be making its
        // own cgroup in it (`mkdir -p`).
        removed += remove_tree(&m.at.join(LXCF_CGROUP).join(name))?;
    }
    Ok(removed)
}

/// The names that have `/lxcf/NAME` in some hierarchy of `mountinfo`.
pub fn container_cgroup_names(mountinfo: &str) -> Result<std::collections::BTreeSet<String>, IoError> {
    let mut out = std::collections::BTreeSet::new();
    for m in cgroup_mounts(mountinfo).iter().filter(|m| m.root == "/") {
        let dir = m.at.join(LXCF_CGROUP);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(error::io("read", &dir)(e)),
        };
        for e in rd {
            let e = e.map_err(error::io("read", &dir))?;
            if e.file_type().map_err(error::io("stat", &e.path()))?.is_dir() {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

/// Removes a cgroup and its descendants, deepest first (a cgroup file system only
/// lets empty directories go, with rmdir). A missing one is not an error.
fn remove_tree(dir: &Path) -> Result<usize, IoError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(error::io("read", dir)(e)),
    };
    let mut n = 0;
    for e in entries {
        let e = e.map_err(error::io("read", dir))?;
        if e.file_type().map_err(error::io("stat", &e.path()))?.is_dir() {
            n += remove_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(n + 1),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(n),
        Err(e) => Err(error::io("remove cgroup", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const GROUP: &str = "machine/lxc-42-web1.libvirt-lxc";

    /// A hybrid v1 host as this project's machine has it, with process 42 in GROUP.
    fn v1_host() -> (tempfile::TempDir, Cgroups, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cgroup");
        let proc = t.path().join("proc");
        write(
            &proc.join("42/cgroup"),
            &format!("12:pids:/\n7:blkio:/{GROUP}\n4:memory:/{GROUP}\n3:cpuset:/{GROUP}\n2:cpu,cpuacct:/{GROUP}\n1:name=systemd:/\n0::/\n"),
        );
        std::fs::create_dir_all(root.join("unified")).unwrap();
        let g = |c: &str, f: &str, v: &str| write(&root.join(c).join(GROUP).join(f), v);
        g("cpuset", "cpuset.cpus", "1\n");
        g("cpuset", "cpuset.mems", "0\n");
        g("cpuset", "tasks", "");
        write(&root.join("cpuset/machine/cpuset.cpus"), "0-3\n");
        write(&root.join("cpuset/machine/cpuset.mems"), "0-1\n");
        g("cpu,cpuacct", "cpu.cfs_quota_us", "60000\n");
        g("cpu,cpuacct", "cpu.cfs_period_us", "100000\n");
        g("memory", "memory.limit_in_bytes", "2147483648\n");
        g("memory", "memory.memsw.limit_in_bytes", "9223372036854771712\n");
        g("blkio", "blkio.throttle.read_bps_device", "254:0 10485760\n");
        g("blkio", "blkio.throttle.write_bps_device", "");
        g("blkio", "blkio.throttle.read_iops_device", "");
        g("blkio", "blkio.throttle.write_iops_device", "254:0 100\n");
        let cg = Cgroups::detect(&root);
        (t, cg, proc)
    }

    #[test]
    fn v1_is_read_back() {
        let (_t, cg, proc) = v1_host();
        assert_eq!(cg.version, Version::V1, "hybrid counts as v1");
        let g = cg.of_pid(&proc, 42).unwrap();
        assert!(g.dir("cpu").unwrap().ends_with(format!("cpu,cpuacct/{GROUP}")));
        let k = g.kernel().unwrap();
        assert_eq!((k.cpus.as_str(), k.mems.as_str()), ("1", "0"));
        assert_eq!((k.cfs_quota, k.cfs_period), (Some(60000), 100000));
        assert_eq!(k.mem, Some(2 << 30));
        assert_eq!(k.memsw, Ok(None), "v1's maximum means no limit");
        assert_eq!(k.io.get(&("254:0".into(), Throttle::ReadBps)), Some(&10485760));
        assert_eq!(k.io.get(&("254:0".into(), Throttle::WriteIops)), Some(&100));
        assert_eq!(k.io.len(), 2);
    }

    #[test]
    fn v1_cpuset_is_written_and_unset_means_the_parent() {
        let (_t, cg, proc) = v1_host();
        let g = cg.of_pid(&proc, 42).unwrap();
        g.set_cpus(Some(&IdSet::parse("0,2-3").unwrap())).unwrap();
        assert_eq!(std::fs::read_to_string(g.dir("cpuset").unwrap().join("cpuset.cpus")).unwrap(), "0,2-3");
        g.set_cpus(None).unwrap();
        assert_eq!(std::fs::read_to_string(g.dir("cpuset").unwrap().join("cpuset.cpus")).unwrap(), "0-3");
        g.set_mems(Some(&IdSet::parse("1").unwrap())).unwrap();
        assert_eq!(std::fs::read_to_string(g.dir("cpuset").unwrap().join("cpuset.mems")).unwrap(), "1");
        g.set_mems(None).unwrap();
        assert_eq!(std::fs::read_to_string(g.dir("cpuset").unwrap().join("cpuset.mems")).unwrap(), "0-1");
    }

    #[test]
    fn v2_is_read_back() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("cgroup");
        let proc = t.path().join("proc");
        let grp = "machine.slice/machine-lxc\\x2d42\\x2dweb1.scope";
        write(&proc.join("42/cgroup"), &format!("0::/{grp}\n"));
        write(&root.join("cgroup.controllers"), "cpuset cpu io memory pids\n");
        let g = |f: &str, v: &str| write(&root.join(grp).join(f), v);
        g("cpuset.cpus.effective", "0-1\n");
        g("cpuset.mems.effective", "0\n");
        g("cpu.max", "max 100000\n");
        g("memory.max", "1073741824\n");
        g("memory.swap.max", "1073741824\n");
        g("io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=50\n");
        let cg = Cgroups::detect(&root);
        assert_eq!(cg.version, Version::V2);
        let k = cg.of_pid(&proc, 42).unwrap().kernel().unwrap();
        assert_eq!((k.cfs_quota, k.cfs_period), (None, 100000));
        assert_eq!((k.mem, k.memsw), (Some(1 << 30), Ok(Some(2 << 30))), "memsw is memory.max + memory.swap.max");
        assert_eq!(k.io.get(&("8:0".into(), Throttle::ReadBps)), Some(&1048576));
        assert_eq!(k.io.get(&("8:0".into(), Throttle::WriteIops)), Some(&50));
        assert_eq!(k.io.len(), 2);
    }

    #[test]
    fn a_process_outside_cgroups_is_an_error() {
        let (_t, cg, proc) = v1_host();
        write(&proc.join("7/cgroup"), "0::/\n");
        assert!(matches!(cg.of_pid(&proc, 7), Err(CgroupError::NoGroup { pid: 7, .. })));
        assert!(matches!(cg.of_pid(&proc, 8), Err(CgroupError::Io(_))));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), OsString::from("/a b"));
        assert_eq!(unescape_mountinfo("/plain"), OsString::from("/plain"));
        assert_eq!(unescape_mountinfo("/end\\"), OsString::from("/end\\"));
    }

    #[test]
    fn mounts_with_their_controllers_and_roots() {
        let mi = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 /lxcf/a /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
        let m = cgroup_mounts(mi);
        let ctrls: Vec<_> = m.iter().map(|m| m.ctrls.join(",")).collect();
        assert_eq!(ctrls, ["cpu", "net_cls,net_prio", "name=systemd", ""]);
        assert_eq!(m[2].root, "/lxcf/a");
        assert_eq!(m[3].at, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    /// On a plain directory tree standing in for cgroup mounts (rmdir works alike).
    #[test]
    fn a_containers_cgroups_go_and_only_those() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("memory"), t.path().join("systemd"));
        for d in ["lxcf/web1/system.slice/cron.service", "lxcf/web1/init.scope", "lxcf/web2/init.scope", "machine"] {
            std::fs::create_dir_all(a.join(d)).unwrap();
        }
        std::fs::create_dir_all(b.join("lxcf/web1/init.scope")).unwrap();
        let mi = format!(
            "1 0 0:1 / {} rw - cgroup cgroup rw,memory\n2 0 0:2 / {} rw - cgroup cgroup rw,name=systemd\n",
            a.display(),
            b.display()
        );
        assert_eq!(remove_container_cgroups(&mi, "web1").unwrap(), 4 + 2);
        assert!(!a.join("lxcf/web1").exists() && a.join("lxcf/web2/init.scope").is_dir() && a.join("machine").is_dir());
        assert!(!b.join("lxcf/web1").exists() && b.join("lxcf").is_dir());
        assert_eq!(remove_container_cgroups(&mi, "web1").unwrap(), 0, "nothing left: not an error");
    }
}
