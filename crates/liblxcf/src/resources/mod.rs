//! Resource settings of a container: what the user types (sizes, rates, percents,
//! CPU and node lists), the settings as libvirt and lxcf record them, and the checks
//! that run before anything is changed.
//!
//! Units, exact and documented in the README:
//! - Sizes and byte rates: a whole number or a decimal fraction, optionally followed
//!   by K, M, G or T (powers of 1024): `1.5G` is 1610612736 bytes. A value that is not
//!   a whole number of bytes (`1.3M`) is refused rather than rounded.
//! - Memory limits are whole KiB, libvirt's unit; the kernel then rounds them down to
//!   whole pages, which `lxcf show` reports as the value in effect. They are at least
//!   [`MIN_MEMORY`].
//! - `cpurate P` (1..100 percent of the whole host) becomes a CFS quota of
//!   `CFS_PERIOD_US × online CPUs × P / 100` µs per `CFS_PERIOD_US`; exact, as the
//!   period is a multiple of 100. 100 means no quota.
//!
//! Pure computation: what the host has comes from [`crate::host::Host`], and
//! which way each setting reaches the kernel is the runtime's business
//! (`runtime::libvirt::tune`) or, where it cannot, the host's (`host::cgroup`,
//! `host::netshape`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use crate::host::{Host, HostError};

/// The CFS period lxcf uses: the kernel's default, 100 ms.
pub const CFS_PERIOD_US: u64 = 100_000;

/// The largest CPU or node number accepted in a list; far above any host, it keeps
/// `0-4000000000` from allocating a huge set.
const MAX_ID: u32 = 65_535;

/// The smallest memlimit and memswlimit lxcf sets. Below it the container does not
/// boot: the kernel kills its init (`memlimit NAME 1024` is zero pages). Measured on
/// this project's machines (Debian 12, joint model, the host's services enabled): an
/// idle container uses 26-35 MiB in its memory cgroup, page cache included; at 32 MiB
/// its systemd was killed by the OOM killer during boot, each time, when a service
/// started; at 48 MiB it booted to `running`. 64 MiB leaves room for that peak.
pub const MIN_MEMORY: u64 = 64 << 20;

/// The largest memory limit libvirt takes: `VIR_DOMAIN_MEMORY_PARAM_UNLIMITED`
/// (2^53 - 1 KiB) is its "no limit".
const MAX_MEM_KIB: u64 = (1 << 53) - 2;

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("invalid {what} `{value}`: {why}")]
    Invalid { what: &'static str, value: String, why: String },
    #[error("CPU {cpu} is not online on this host (online: {online})")]
    NoCpu { cpu: u32, online: IdSet },
    #[error("NUMA node {node} does not exist on this host (nodes with memory: {nodes})")]
    NoNode { node: u32, nodes: IdSet },
    #[error("memswlimit {} is below memlimit {}", fmt_size(*memsw), fmt_size(*mem))]
    MemswBelowMem { memsw: u64, mem: u64 },
    #[error("memswlimit needs a memlimit: memory+swap cannot be limited below an unlimited memory")]
    MemswWithoutMem,
    #[error("memlimit cannot be removed while memswlimit is {}", fmt_size(*memsw))]
    MemswNeedsMem { memsw: u64 },
    #[error("{} is not on a block device", path.display())]
    NotBlock { path: PathBuf },
    #[error("cannot find {}", path.display())]
    NoPath { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Host(#[from] HostError),
}

impl ResourceError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ResourceError::Invalid { what, .. } => help_for(what).into(),
            ResourceError::NoCpu { online, .. } => format!("use CPUs from {online}"),
            ResourceError::NoNode { nodes, .. } => format!("use nodes from {nodes}"),
            ResourceError::MemswBelowMem { .. } => "raise memswlimit first, or lower memlimit".into(),
            ResourceError::MemswWithoutMem => "set memlimit first (lxcf memlimit NAME SIZE)".into(),
            ResourceError::MemswNeedsMem { .. } => "remove memswlimit first (lxcf memswlimit NAME unlimited)".into(),
            ResourceError::NotBlock { .. } => {
                "give the block device itself (like /dev/sda), or a path on a disk filesystem (not tmpfs, overlay or btrfs)".into()
            }
            ResourceError::NoPath { .. } => "give an existing block device or a path on one".into(),
            ResourceError::Host(_) => return None,
        })
    }

    /// The user's input is wrong (as opposed to the host failing us).
    pub fn is_usage(&self) -> bool {
        !matches!(self, ResourceError::Host(_))
    }
}

fn help_for(what: &str) -> &'static str {
    match what {
        "cpurate" => "give a whole percent from 1 to 100 (100 or `unlimited`: no limit)",
        "cpun" | "numa" => "give a list like 0-3,6 (or `all`)",
        "memlimit" | "memswlimit" => "give a size of at least 64M, like 512M, 1.5G or 2147483648 bytes (whole KiB), or `unlimited`",
        "blkioops_r" | "blkioops_w" => "give a whole number of operations per second (0 or `unlimited`: no limit)",
        _ => "give bytes per second like 500K or 10M (0 or `unlimited`: no limit)",
    }
}

fn invalid(what: &'static str, value: &str, why: impl Into<String>) -> ResourceError {
    ResourceError::Invalid { what, value: value.into(), why: why.into() }
}

/// Why a CPU or node list is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("`{0}` lacks a number")]
    NoNumber(String),
    #[error("`{0}` is not a number")]
    NotNumber(String),
    #[error("{0} is too large")]
    TooLarge(String),
    #[error("range {0} runs backwards")]
    Backwards(String),
}

/// Why a size or rate is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BytesError {
    #[error("negative")]
    Negative,
    #[error("not a number (use digits with an optional K, M, G or T)")]
    NotNumber,
    #[error("too many decimal places")]
    TooManyDecimals,
    #[error("not a whole number of bytes")]
    NotWhole,
    #[error("too large")]
    TooLarge,
}

/// A set of CPU or NUMA node numbers, written like `0-3,6`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct IdSet(BTreeSet<u32>);

impl IdSet {
    /// The kernel's list format (`0-3,6`), as in cpuset.cpus and /sys. Empty text is
    /// the empty set (an empty cpuset file).
    pub fn parse(s: &str) -> Result<IdSet, ListError> {
        let mut set = BTreeSet::new();
        let s = s.trim();
        if s.is_empty() {
            return Ok(IdSet(set));
        }
        for item in s.split(',') {
            let num = |t: &str| -> Result<u32, ListError> {
                if t.is_empty() {
                    return Err(ListError::NoNumber(item.into()));
                }
                if !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ListError::NotNumber(t.into()));
                }
                match t.parse::<u32>() {
                    Ok(n) if n <= MAX_ID => Ok(n),
                    _ => Err(ListError::TooLarge(t.into())),
                }
            };
            let (a, b) = match item.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(item)?, num(item)?),
            };
            if a > b {
                return Err(ListError::Backwards(item.into()));
            }
            set.extend(a..=b);
        }
        Ok(IdSet(set))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// The first member that is not in `other`.
    pub fn first_outside(&self, other: &IdSet) -> Option<u32> {
        self.0.difference(&other.0).next().copied()
    }
}

impl FromIterator<u32> for IdSet {
    fn from_iter<I: IntoIterator<Item = u32>>(it: I) -> IdSet {
        IdSet(it.into_iter().collect())
    }
}

impl fmt::Display for IdSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut it = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(a) = it.next() {
            let mut b = a;
            while it.peek() == Some(&(b + 1)) {
                b = it.next().expect("peeked");
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// One of the four block I/O throttles, per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Throttle {
    ReadBps,
    WriteBps,
    ReadIops,
    WriteIops,
}

impl Throttle {
    pub const ALL: [Throttle; 4] = [Throttle::ReadBps, Throttle::WriteBps, Throttle::ReadIops, Throttle::WriteIops];

    /// lxcf's command for it.
    pub fn command(self) -> &'static str {
        match self {
            Throttle::ReadBps => "blkio_r",
            Throttle::WriteBps => "blkio_w",
            Throttle::ReadIops => "blkioops_r",
            Throttle::WriteIops => "blkioops_w",
        }
    }

    /// The child of `<blkiotune><device>` in libvirt's domain XML.
    pub fn xml_element(self) -> &'static str {
        match self {
            Throttle::ReadBps => "read_bytes_sec",
            Throttle::WriteBps => "write_bytes_sec",
            Throttle::ReadIops => "read_iops_sec",
            Throttle::WriteIops => "write_iops_sec",
        }
    }

    pub fn is_iops(self) -> bool {
        matches!(self, Throttle::ReadIops | Throttle::WriteIops)
    }
}

/// A CFS bandwidth limit, in µs of CPU time per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuQuota {
    pub period: u64,
    pub quota: u64,
}

impl CpuQuota {
    /// `percent` of `cpus` CPUs' time; 100 % (or more) is no limit.
    pub fn from_percent(percent: u64, cpus: u64) -> Option<CpuQuota> {
        (percent < 100).then(|| CpuQuota { period: CFS_PERIOD_US, quota: CFS_PERIOD_US * cpus * percent / 100 })
    }

    /// The share of `cpus` CPUs' time, in percent (not necessarily whole when the quota
    /// was set by someone else, or the number of CPUs changed since).
    pub fn percent(&self, cpus: u64) -> f64 {
        if self.period == 0 || cpus == 0 {
            return 0.0;
        }
        self.quota as f64 * 100.0 / (self.period * cpus) as f64
    }
}

/// Every setting lxcf manages, as recorded for a container; `None` (or no entry) is
/// no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// CPUs it may run on (cpun).
    pub cpus: Option<IdSet>,
    /// CPU time (cpurate).
    pub cpu_quota: Option<CpuQuota>,
    /// NUMA nodes it may take memory from (numa).
    pub nodes: Option<IdSet>,
    /// Memory, bytes (memlimit).
    pub mem: Option<u64>,
    /// Memory plus swap, bytes (memswlimit).
    pub memsw: Option<u64>,
    /// Per whole-disk device: bytes or operations per second.
    #[serde(with = "blkio_list")]
    pub blkio: BTreeMap<(PathBuf, Throttle), u64>,
    /// Network bytes per second into the container (net_in).
    pub net_in: Option<u64>,
    /// ... and out of it (net_out).
    pub net_out: Option<u64>,
}

/// The block I/O throttles as a list in JSON, whose map keys must be strings.
mod blkio_list {
    use super::Throttle;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    type Map = BTreeMap<(PathBuf, Throttle), u64>;

    pub fn serialize<S: Serializer>(m: &Map, s: S) -> Result<S::Ok, S::Error> {
        m.iter().map(|((d, t), v)| (d, t, v)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        Ok(Vec::<(PathBuf, Throttle, u64)>::deserialize(d)?.into_iter().map(|(d, t, v)| ((d, t), v)).collect())
    }
}

/// One change of a [`Settings`]; `None` removes the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Cpus(Option<IdSet>),
    CpuQuota(Option<CpuQuota>),
    Nodes(Option<IdSet>),
    Mem(Option<u64>),
    Memsw(Option<u64>),
    Blkio(PathBuf, Throttle, Option<u64>),
    /// Both directions at once: they live in one metadata element and one shaping run.
    Net {
        inbound: Option<u64>,
        outbound: Option<u64>,
    },
}

impl Setting {
    /// The lxcf command that makes this change.
    pub fn command(&self) -> &'static str {
        match self {
            Setting::Cpus(_) => "cpun",
            Setting::CpuQuota(_) => "cpurate",
            Setting::Nodes(_) => "numa",
            Setting::Mem(_) => "memlimit",
            Setting::Memsw(_) => "memswlimit",
            Setting::Blkio(_, t, _) => t.command(),
            Setting::Net { .. } => "net_in/net_out",
        }
    }
}

/// How a change reads in lxcf's messages: `memlimit 2G`, `cpurate 30% (quota 60000 µs per 100000 µs)`.
impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |v: &Option<u64>| v.map_or("unlimited".to_string(), fmt_size);
        let ids = |v: &Option<IdSet>| v.as_ref().map_or("all".to_string(), IdSet::to_string);
        match self {
            Setting::Cpus(c) => write!(f, "cpun {}", ids(c)),
            Setting::CpuQuota(None) => f.write_str("cpurate unlimited"),
            Setting::CpuQuota(Some(q)) => write!(f, "cpurate: quota {} µs per {} µs", q.quota, q.period),
            Setting::Nodes(n) => write!(f, "numa {}", ids(n)),
            Setting::Mem(m) => write!(f, "memlimit {}", size(m)),
            Setting::Memsw(m) => write!(f, "memswlimit {}", size(m)),
            Setting::Blkio(dev, t, v) if t.is_iops() => {
                write!(f, "{} {} {}", t.command(), dev.display(), v.map_or("unlimited".to_string(), |v| v.to_string()))
            }
            Setting::Blkio(dev, t, v) => write!(f, "{} {} {}", t.command(), dev.display(), size(v)),
            Setting::Net { inbound, outbound } => write!(f, "net_in {}, net_out {}", size(inbound), size(outbound)),
        }
    }
}

impl Settings {
    pub fn apply(&mut self, s: &Setting) {
        match s.clone() {
            Setting::Cpus(v) => self.cpus = v,
            Setting::CpuQuota(v) => self.cpu_quota = v,
            Setting::Nodes(v) => self.nodes = v,
            Setting::Mem(v) => self.mem = v,
            Setting::Memsw(v) => self.memsw = v,
            Setting::Blkio(dev, t, v) => match v {
                Some(v) if v > 0 => {
                    self.blkio.insert((dev, t), v);
                }
                _ => {
                    self.blkio.remove(&(dev, t));
                }
            },
            Setting::Net { inbound, outbound } => {
                self.net_in = inbound;
                self.net_out = outbound;
            }
        }
    }

    /// The change that puts back what these settings hold for what `s` changes.
    pub fn restoring(&self, s: &Setting) -> Setting {
        match s {
            Setting::Cpus(_) => Setting::Cpus(self.cpus.clone()),
            Setting::CpuQuota(_) => Setting::CpuQuota(self.cpu_quota),
            Setting::Nodes(_) => Setting::Nodes(self.nodes.clone()),
            Setting::Mem(_) => Setting::Mem(self.mem),
            Setting::Memsw(_) => Setting::Memsw(self.memsw),
            Setting::Blkio(dev, t, _) => Setting::Blkio(dev.clone(), *t, self.blkio.get(&(dev.clone(), *t)).copied()),
            Setting::Net { .. } => Setting::Net { inbound: self.net_in, outbound: self.net_out },
        }
    }
}

impl Settings {
    /// The changes that make these settings `want`, in an order libvirt and the
    /// kernel accept (memory stays at or below memory+swap after each step).
    pub fn changes_to(&self, want: &Settings) -> Vec<Setting> {
        let mut out = Vec::new();
        if self.cpus != want.cpus {
            out.push(Setting::Cpus(want.cpus.clone()));
        }
        if self.cpu_quota != want.cpu_quota {
            out.push(Setting::CpuQuota(want.cpu_quota));
        }
        if self.nodes != want.nodes {
            out.push(Setting::Nodes(want.nodes.clone()));
        }
        let mem = (self.mem != want.mem).then_some(Setting::Mem(want.mem));
        let memsw = (self.memsw != want.memsw).then_some(Setting::Memsw(want.memsw));
        // Memory first if it fits under the old memory+swap (no limit is infinite).
        let mem_first = match (want.mem, self.memsw) {
            (Some(m), Some(old)) => m <= old,
            _ => true,
        };
        if mem_first {
            out.extend(mem.into_iter().chain(memsw));
        } else {
            out.extend(memsw.into_iter().chain(mem));
        }
        for ((dev, t), v) in &want.blkio {
            if self.blkio.get(&(dev.clone(), *t)) != Some(v) {
                out.push(Setting::Blkio(dev.clone(), *t, Some(*v)));
            }
        }
        for (dev, t) in self.blkio.keys() {
            if !want.blkio.contains_key(&(dev.clone(), *t)) {
                out.push(Setting::Blkio(dev.clone(), *t, None));
            }
        }
        if (self.net_in, self.net_out) != (want.net_in, want.net_out) {
            out.push(Setting::Net { inbound: want.net_in, outbound: want.net_out });
        }
        out
    }
}

/// What a user asked for, as typed: one per command, or per `sysgen` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Cpun(String),
    Cpurate(String),
    Numa(String),
    Memlimit(String),
    Memswlimit(String),
    /// DEVICE (a block device or any path on one), RATE.
    Blkio(Throttle, PathBuf, String),
    NetIn(String),
    NetOut(String),
}

impl Request {
    /// A `sysgen` block I/O option: `DEVICE,RATE` (the comma as in virsh blkiotune;
    /// the last one splits, so a path may hold commas).
    pub fn blkio(t: Throttle, arg: &str) -> Result<Request, ResourceError> {
        let (dev, rate) = arg.rsplit_once(',').ok_or_else(|| invalid(t.command(), arg, "expected DEVICE,RATE (like /dev/sda,10M)"))?;
        if dev.is_empty() {
            return Err(invalid(t.command(), arg, "no device before the comma"));
        }
        Ok(Request::Blkio(t, dev.into(), rate.into()))
    }
}

/// Parses a size or byte rate: digits, an optional decimal fraction, an optional
/// K/M/G/T (powers of 1024). The result must be a whole number of bytes and fit in
/// 64 bits. Zero is returned as such; callers decide what it means.
pub fn parse_bytes(s: &str) -> Result<u64, BytesError> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(BytesError::Negative);
    }
    let (num, shift) = match t.as_bytes().last().map(|b| b.to_ascii_uppercase()) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        Some(b'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (num.contains('.') && frac.is_empty()) {
        return Err(BytesError::NotNumber);
    }
    if frac.len() > 12 {
        return Err(BytesError::TooManyDecimals);
    }
    // value = (int + frac / 10^d) × 2^shift, computed exactly in 128 bits.
    let scale = 10u128.pow(frac.len() as u32);
    let int: u128 = int.parse().map_err(|_| BytesError::TooLarge)?;
    let frac: u128 = if frac.is_empty() { 0 } else { frac.parse().expect("digits") };
    let scaled = int.checked_mul(scale).and_then(|v| v.checked_add(frac)).and_then(|v| v.checked_mul(1u128 << shift));
    let scaled = scaled.ok_or(BytesError::TooLarge)?;
    if scaled % scale != 0 {
        return Err(BytesError::NotWhole);
    }
    u64::try_from(scaled / scale).map_err(|_| BytesError::TooLarge)
}

/// The shortest exact way to write `bytes` with the units [`parse_bytes`] reads.
pub fn fmt_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn is_unlimited(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("unlimited")
}

fn parse_percent(v: &str) -> Result<Option<u64>, ResourceError> {
    if is_unlimited(v) {
        return Ok(None);
    }
    let t = v.trim().trim_end_matches('%');
    match t.parse::<u64>() {
        Ok(p @ 1..=100) if t.bytes().all(|b| b.is_ascii_digit()) => Ok((p < 100).then_some(p)),
        Ok(_) => Err(invalid("cpurate", v, "outside 1..100")),
        Err(_) if t.starts_with('-') => Err(invalid("cpurate", v, "outside 1..100")),
        Err(_) => Err(invalid("cpurate", v, "not a whole percent")),
    }
}

fn parse_ids(what: &'static str, v: &str) -> Result<Option<IdSet>, ResourceError> {
    let t = v.trim();
    if is_unlimited(t) || t.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let set = IdSet::parse(t).map_err(|why| invalid(what, v, why.to_string()))?;
    if set.is_empty() {
        return Err(invalid(what, v, "empty list"));
    }
    Ok(Some(set))
}

/// A list whose every member the host `has`; `missing` names the first that is not.
fn ids_within(
    what: &'static str,
    v: &str,
    has: impl FnOnce() -> Result<IdSet, ResourceError>,
    missing: fn(u32, IdSet) -> ResourceError,
) -> Result<Option<IdSet>, ResourceError> {
    let set = parse_ids(what, v)?;
    if let Some(set) = &set {
        let has = has()?;
        if let Some(id) = set.first_outside(&has) {
            return Err(missing(id, has));
        }
    }
    Ok(set)
}

fn parse_memory(what: &'static str, v: &str) -> Result<Option<u64>, ResourceError> {
    if is_unlimited(v) {
        return Ok(None);
    }
    let b = parse_bytes(v).map_err(|why| invalid(what, v, why.to_string()))?;
    if b == 0 {
        return Err(invalid(what, v, "zero (use `unlimited` to remove the limit)"));
    }
    if b % 1024 != 0 {
        return Err(invalid(what, v, "not a whole number of KiB (libvirt's unit)"));
    }
    if b / 1024 > MAX_MEM_KIB {
        return Err(invalid(what, v, "too large"));
    }
    if b < MIN_MEMORY {
        return Err(invalid(
            what,
            v,
            format!("below the minimum of {} (a container's systemd needs that much to boot)", fmt_size(MIN_MEMORY)),
        ));
    }
    Ok(Some(b))
}

/// A byte or operation rate; 0 and `unlimited` remove the limit (the convention of
/// libvirt's blkiotune and of the cgroup files).
fn parse_rate(what: &'static str, v: &str, iops: bool) -> Result<Option<u64>, ResourceError> {
    if is_unlimited(v) {
        return Ok(None);
    }
    let n = if iops {
        let t = v.trim();
        if t.starts_with('-') {
            return Err(invalid(what, v, "negative"));
        }
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(what, v, "not a whole number"));
        }
        t.parse::<u64>().map_err(|_| invalid(what, v, "too large"))?
    } else {
        parse_bytes(v).map_err(|why| invalid(what, v, why.to_string()))?
    };
    // The kernel's throttles are 64-bit, but libvirt reads them back as signed
    // (`long long`); tc's rate64 is 64-bit. Stay within both.
    if n > i64::MAX as u64 {
        return Err(invalid(what, v, "too large"));
    }
    Ok((n > 0).then_some(n))
}

/// Checks every request against the host and against `current` with all requests
/// applied, and turns them into the changes to make, in an order libvirt and the
/// kernel accept. Nothing is changed here: a bad request anywhere refuses them all.
pub fn plan(reqs: &[Request], current: &Settings, host: &dyn Host) -> Result<Vec<Setting>, ResourceError> {
    let mut out: Vec<Setting> = Vec::new();
    let mut net: Option<(Option<u64>, Option<u64>)> = None;
    for r in reqs {
        let s = match r {
            Request::Cpun(v) => {
                Setting::Cpus(ids_within("cpun", v, || Ok(host.cpus()?), |cpu, online| ResourceError::NoCpu { cpu, online })?)
            }
            Request::Cpurate(v) => {
                let cpus = host.cpus()?.len() as u64;
                Setting::CpuQuota(parse_percent(v)?.and_then(|p| CpuQuota::from_percent(p, cpus)))
            }
            Request::Numa(v) => {
                Setting::Nodes(ids_within("numa", v, || Ok(host.nodes()?), |node, nodes| ResourceError::NoNode { node, nodes })?)
            }
            Request::Memlimit(v) => Setting::Mem(parse_memory("memlimit", v)?),
            Request::Memswlimit(v) => Setting::Memsw(parse_memory("memswlimit", v)?),
            Request::Blkio(t, dev, v) => {
                let rate = parse_rate(t.command(), v, t.is_iops())?;
                Setting::Blkio(host.disk_of(dev)?, *t, rate)
            }
            Request::NetIn(v) | Request::NetOut(v) => {
                let what = if matches!(r, Request::NetIn(_)) { "net_in" } else { "net_out" };
                let rate = parse_rate(what, v, false)?;
                let n = net.get_or_insert((current.net_in, current.net_out));
                if matches!(r, Request::NetIn(_)) {
                    n.0 = rate;
                } else {
                    n.1 = rate;
                }
                continue;
            }
        };
        // A later request for the same setting wins.
        out.retain(|o| std::mem::discriminant(o) != std::mem::discriminant(&s) || !same_target(o, &s));
        out.push(s);
    }
    if let Some((inbound, outbound)) = net {
        out.push(Setting::Net { inbound, outbound });
    }

    let mut after = current.clone();
    for s in &out {
        after.apply(s);
    }
    let touches_memory = out.iter().any(|s| matches!(s, Setting::Mem(_) | Setting::Memsw(_)));
    match (after.mem, after.memsw) {
        _ if !touches_memory => {}
        (None, Some(_)) if out.iter().any(|s| matches!(s, Setting::Memsw(Some(_)))) => return Err(ResourceError::MemswWithoutMem),
        (None, Some(memsw)) => return Err(ResourceError::MemswNeedsMem { memsw }),
        (Some(mem), Some(memsw)) if memsw < mem => return Err(ResourceError::MemswBelowMem { memsw, mem }),
        _ => {}
    }
    // libvirt and the kernel want memory <= memory+swap after every step (no limit
    // counts as infinite). When both change: memory first if it fits under the old
    // memory+swap, else memory+swap first (then the old memory fits under the new).
    let pos = |f: fn(&Setting) -> bool| out.iter().position(f);
    if let (Some(m), Some(s)) = (pos(|s| matches!(s, Setting::Mem(_))), pos(|s| matches!(s, Setting::Memsw(_)))) {
        let mem_first = match (after.mem, current.memsw) {
            (Some(new_mem), Some(old_memsw)) => new_mem <= old_memsw,
            _ => true,
        };
        if mem_first != (m < s) {
            out.swap(m, s);
        }
    }
    Ok(out)
}

fn same_target(a: &Setting, b: &Setting) -> bool {
    match (a, b) {
        (Setting::Blkio(d1, t1, _), Setting::Blkio(d2, t2, _)) => d1 == d2 && t1 == t2,
        _ => true,
    }
}

#[cfg(test)]
pub(crate) mod tests;
