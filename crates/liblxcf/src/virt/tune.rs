//! Resource settings of libvirt-LXC domains: reading them from the domain XML, and
//! which way each change takes.
//!
//! The domain's persistent definition is the one record of every setting; lxcf keeps
//! nothing else. Each change goes to the definition (kept for later starts) and,
//! when the container runs, to the kernel at once:
//!
//! | command | definition | running container |
//! |---|---|---|
//! | cpurate | `<cputune>` period/quota, virDomainSetSchedulerParametersFlags | the same call, AFFECT_LIVE (cpu.cfs_quota_us) |
//! | memlimit, memswlimit | `<memtune>` hard_limit/swap_hard_limit, virDomainSetMemoryParameters | the same call, AFFECT_LIVE |
//! | blkio_r/w, blkioops_r/w | `<blkiotune><device>`, virDomainSetBlkioParameters (through virt-sys: the virt crate has no setter) | the same call, AFFECT_LIVE |
//! | cpun | `<vcpu cpuset=...>`: the XML is redefined, libvirt-LXC has no call for it (virDomainPinVcpu and PinEmulator are unsupported) | cpuset.cpus and every task's affinity, written by lxcf ([`cgroup::Group::set_cpus`]) |
//! | numa | `<numatune>`: redefined, virDomainSetNumaParameters is unsupported for LXC, even for the definition | cpuset.mems, written by lxcf |
//! | net_in, net_out | lxcf's `<metadata>` element, virDomainSetMetadata | the same call, AFFECT_LIVE, then the hook script shapes with tc ([`netshape`]) |
//!
//! libvirt applies all of them at start except the network rates, which its hook
//! (or lxcf, after its own starts) sets.

use std::ffi::{CStr, CString};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use virt::domain::{Domain as VDomain, MemoryParameters, SchedBandwidth, SchedulerInfo};
use virt::sys;

use super::libvirt::{op, Libvirt};
use super::{xml::esc, Runtime, VirtError};
use crate::resources::cgroup::Cgroups;
use crate::resources::netshape::{self, Ends};
use crate::resources::{CpuQuota, Effective, IdSet, Setting, Settings, Throttle, CFS_PERIOD_US};

/// A size element of libvirt's XML (`<hard_limit unit='KiB'>`), in bytes.
fn scaled(n: roxmltree::Node) -> Option<u64> {
    let v: u64 = n.text()?.trim().parse().ok()?;
    let unit: u64 = match n.attribute("unit").unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    v.checked_mul(unit)
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(tag))
}

fn num<T: std::str::FromStr>(n: Option<roxmltree::Node>) -> Option<T> {
    n?.text()?.trim().parse().ok()
}

/// The settings in a domain's XML. What libvirt writes for "no limit" (a missing
/// element, quota -1, a hard_limit at its maximum) reads as `None`.
pub fn settings(xml: &str) -> Result<Settings, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("unreadable domain XML: {e}"))?;
    let dom = doc.root_element();
    let mut s = Settings::default();
    if let Some(c) = child(dom, "vcpu").and_then(|v| v.attribute("cpuset")) {
        s.cpus = Some(IdSet::parse(c).map_err(|e| format!("vcpu cpuset `{c}`: {e}"))?);
    }
    if let Some(ct) = child(dom, "cputune") {
        let quota: Option<i64> = num(child(ct, "quota"));
        let period: u64 = num(child(ct, "period")).unwrap_or(CFS_PERIOD_US);
        s.cpu_quota = quota.filter(|&q| q > 0).map(|q| CpuQuota { period, quota: q as u64 });
    }
    if let Some(n) = child(dom, "numatune").and_then(|n| child(n, "memory")).and_then(|m| m.attribute("nodeset")) {
        s.nodes = Some(IdSet::parse(n).map_err(|e| format!("numatune nodeset `{n}`: {e}"))?);
    }
    if let Some(m) = child(dom, "memtune") {
        let limit = |tag| child(m, tag).and_then(scaled).filter(|&b| b / 1024 < MemoryParameters::VALUE_UNLIMITED);
        s.mem = limit("hard_limit");
        s.memsw = limit("swap_hard_limit");
    }
    if let Some(b) = child(dom, "blkiotune") {
        for dev in b.children().filter(|c| c.has_tag_name("device")) {
            let Some(path) = child(dev, "path").and_then(|p| p.text()) else { continue };
            for t in Throttle::ALL {
                if let Some(v) = num::<u64>(child(dev, t.xml_element())).filter(|&v| v > 0) {
                    s.blkio.insert((PathBuf::from(path.trim()), t), v);
                }
            }
        }
    }
    (s.net_in, s.net_out) = netshape::parse_meta(&doc);
    Ok(s)
}

/// Where the root element closes: new elements go there (libvirt does not mind the order).
fn end_of_domain(xml: &str) -> Option<usize> {
    xml.rfind("</domain>")
}

/// The XML with `<vcpu cpuset=...>` set to `cpus`, or removed.
pub fn with_cpuset(xml: &str, cpus: Option<&IdSet>) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("unreadable domain XML: {e}"))?;
    let Some(v) = child(doc.root_element(), "vcpu") else {
        let mut out = xml.to_string();
        if let (Some(c), Some(at)) = (cpus, end_of_domain(xml)) {
            out.insert_str(at, &format!("  <vcpu placement='static' cpuset='{c}'>{}</vcpu>\n", c.len()));
        }
        return Ok(out);
    };
    let mut el = String::from("<vcpu");
    for a in v.attributes().filter(|a| a.name() != "cpuset") {
        let _ = write!(el, " {}='{}'", a.name(), esc(a.value()));
    }
    if let Some(c) = cpus {
        let _ = write!(el, " cpuset='{c}'");
    }
    let _ = write!(el, ">{}</vcpu>", esc(v.text().unwrap_or("1").trim()));
    Ok(format!("{}{el}{}", &xml[..v.range().start], &xml[v.range().end..]))
}

/// The XML with `<numatune>` binding memory to `nodes` (strict, as cpuset.mems does),
/// or without `<numatune>`.
pub fn with_numatune(xml: &str, nodes: Option<&IdSet>) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("unreadable domain XML: {e}"))?;
    let mut out = match child(doc.root_element(), "numatune") {
        Some(n) => format!("{}{}", &xml[..n.range().start], &xml[n.range().end..]),
        None => xml.to_string(),
    };
    if let Some(n) = nodes {
        let at = end_of_domain(&out).ok_or("the domain XML does not end in </domain>")?;
        out.insert_str(at, &format!("  <numatune>\n    <memory mode='strict' nodeset='{n}'/>\n  </numatune>\n"));
    }
    Ok(out)
}

fn blkio_field(t: Throttle) -> &'static CStr {
    match t {
        Throttle::ReadBps => sys::VIR_DOMAIN_BLKIO_DEVICE_READ_BPS,
        Throttle::WriteBps => sys::VIR_DOMAIN_BLKIO_DEVICE_WRITE_BPS,
        Throttle::ReadIops => sys::VIR_DOMAIN_BLKIO_DEVICE_READ_IOPS,
        Throttle::WriteIops => sys::VIR_DOMAIN_BLKIO_DEVICE_WRITE_IOPS,
    }
}

/// virDomainSetBlkioParameters with one `PATH,VALUE` string parameter (0 removes
/// the throttle). Through virt-sys because the virt crate has no blkio setter.
fn set_blkio(d: &VDomain, t: Throttle, dev: &Path, value: u64, flags: u32) -> Result<(), virt::error::Error> {
    let text = CString::new(format!("{},{value}", dev.display())).map_err(|_| virt::error::Error::last_error())?;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let (mut n, mut max) = (0, 0);
    // SAFETY: `params`, `n` and `max` describe an empty list, as virTypedParamsAddString
    // requires; it allocates the list and copies both strings into it.
    if unsafe { sys::virTypedParamsAddString(&mut params, &mut n, &mut max, blkio_field(t).as_ptr(), text.as_ptr()) } < 0 {
        return Err(virt::error::Error::last_error());
    }
    // SAFETY: `d` owns a valid domain pointer for the duration of the call; `params`
    // holds `n` initialised parameters.
    let rc = unsafe { sys::virDomainSetBlkioParameters(d.as_ptr(), params, n, flags) };
    let result = if rc < 0 { Err(virt::error::Error::last_error()) } else { Ok(()) };
    // SAFETY: `params` and `n` are what virTypedParamsAddString made; freed once.
    unsafe { sys::virTypedParamsFree(params, n) };
    result
}

fn kib(bytes: Option<u64>) -> u64 {
    bytes.map_or(MemoryParameters::VALUE_UNLIMITED, |b| b / 1024)
}

fn host_error<'a>(op: &'static str, name: &'a str) -> impl FnOnce(String) -> VirtError + 'a {
    move |msg| VirtError::Op { op, object: name.to_string(), msg }
}

/// The running container's cgroup, found from its libvirt_lxc controller (the domain id).
fn group(d: &VDomain, name: &str) -> Result<crate::resources::cgroup::Group, VirtError> {
    let id = d.id().ok_or_else(|| host_error("find the cgroup of", name)("it is not running".into()))?;
    Cgroups::host().of_pid(Path::new("/proc"), id).map_err(|e| host_error("find the cgroup of", name)(e.to_string()))
}

impl Libvirt {
    fn redefine(&self, d: &VDomain, name: &str, edit: impl FnOnce(&str) -> Result<String, String>) -> Result<(), VirtError> {
        let x = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(op("read the definition of", name))?;
        let new = edit(&x).map_err(host_error("edit the definition of", name))?;
        self.define(&new)
    }

    /// Removes the running container's block I/O throttles, not its definition's.
    /// A process whose writes wait in a throttle sleeps uninterruptibly, where
    /// SIGKILL does not reach it, and libvirt's destroy gives up ("Some processes
    /// refused to die": seen with PostgreSQL's start-up writes at 1 MB/s). Before a
    /// hard stop only; failures are reported, the stop goes on.
    pub(super) fn lift_live_io_limits(&self, d: &VDomain, name: &str) {
        let limits = match d.xml_desc(0).map_err(|e| e.to_string()).and_then(|x| settings(&x)) {
            Ok(s) => s.blkio,
            Err(e) => return tracing::warn!("{name}: cannot read its I/O limits: {e}"),
        };
        for (dev, t) in limits.keys() {
            if let Err(e) = set_blkio(d, *t, dev, 0, sys::VIR_DOMAIN_AFFECT_LIVE) {
                tracing::warn!("{name}: cannot lift its I/O limit on {}: {e}", dev.display());
            }
        }
    }

    pub(super) fn settings_of(&self, name: &str) -> Result<Settings, VirtError> {
        let x = self.get(name)?.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(op("read the definition of", name))?;
        settings(&x).map_err(host_error("read the settings of", name))
    }

    pub(super) fn change_setting(&self, name: &str, s: &Setting, live: bool) -> Result<(), VirtError> {
        let d = self.get(name)?;
        let flags = sys::VIR_DOMAIN_AFFECT_CONFIG | if live { sys::VIR_DOMAIN_AFFECT_LIVE } else { 0 };
        let what = s.command();
        let failed = |e: virt::error::Error| VirtError::Op { op: "change", object: format!("{what} of {name}"), msg: e.message().into() };
        match s {
            Setting::CpuQuota(q) => {
                // -1: no quota. The period stays as it is when the quota goes.
                let vcpu_bw = SchedBandwidth { period: q.map(|q| q.period), quota: Some(q.map_or(-1, |q| q.quota as i64)) };
                d.set_scheduler_parameters_flags(&SchedulerInfo { vcpu_bw, ..Default::default() }, flags).map_err(failed)
            }
            Setting::Mem(b) => {
                d.set_memory_parameters(MemoryParameters { hard_limit: Some(kib(*b)), ..Default::default() }, flags).map_err(failed)
            }
            Setting::Memsw(b) => {
                d.set_memory_parameters(MemoryParameters { swap_hard_limit: Some(kib(*b)), ..Default::default() }, flags).map_err(failed)
            }
            Setting::Blkio(dev, t, v) => set_blkio(&d, *t, dev, v.unwrap_or(0), flags).map_err(failed),
            Setting::Cpus(c) => {
                self.redefine(&d, name, |x| with_cpuset(x, c.as_ref()))?;
                if live {
                    group(&d, name)?.set_cpus(c.as_ref()).map_err(|e| host_error("change the CPUs of", name)(e.to_string()))?;
                }
                Ok(())
            }
            Setting::Nodes(n) => {
                self.redefine(&d, name, |x| with_numatune(x, n.as_ref()))?;
                if live {
                    group(&d, name)?.set_mems(n.as_ref()).map_err(|e| host_error("change the NUMA nodes of", name)(e.to_string()))?;
                }
                Ok(())
            }
            Setting::Net { inbound, outbound } => {
                let meta = netshape::meta_element(*inbound, *outbound);
                d.set_metadata(sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(&meta), Some(netshape::PREFIX), Some(netshape::NS), flags)
                    .map_err(failed)?;
                if live {
                    self.reapply_net(name)?;
                }
                Ok(())
            }
        }
    }

    pub(super) fn reapply_net(&self, name: &str) -> Result<(), VirtError> {
        let d = self.get(name)?;
        let x = d.xml_desc(0).map_err(op("read the running definition of", name))?;
        if !x.contains(netshape::NS) {
            return Ok(());
        }
        netshape::apply(name, &x).map_err(host_error("shape the network of", name))
    }

    pub(super) fn effective_of(&self, name: &str) -> Result<Option<Effective>, VirtError> {
        let d = self.get(name)?;
        if !d.is_active().map_err(op("read state of", name))? {
            return Ok(None);
        }
        let x = d.xml_desc(0).map_err(op("read the running definition of", name))?;
        let read = host_error("read the limits in effect of", name);
        let doc = roxmltree::Document::parse(&x).map_err(|e| host_error("read the limits in effect of", name)(e.to_string()))?;
        let Some(ends) = Ends::from_live_xml(&doc) else { return Err(read("no domain id: it stopped meanwhile?".into())) };
        let kernel = Cgroups::host()
            .of_pid(Path::new("/proc"), ends.controller)
            .and_then(|g| g.kernel())
            .map_err(|e| host_error("read the limits in effect of", name)(e.to_string()))?;
        let (net_in, net_out) = ends.read().map_err(read)?;
        Ok(Some(Effective { cgroup: Cgroups::host().version, kernel, net_in, net_out }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A definition as `virsh dumpxml --inactive` gives it, with every setting.
    const FULL: &str = "<domain type='lxc'>\n  <name>web1</name>\n  <metadata>\n    \
        <lxcfres:resources xmlns:lxcfres=\"https://lxcf.github.io/xmlns/resources/1\">\n      \
        <lxcfres:net_in>1048576</lxcfres:net_in>\n      <lxcfres:net_out>0</lxcfres:net_out>\n    </lxcfres:resources>\n  </metadata>\n  \
        <memory unit='KiB'>24683656</memory>\n  <blkiotune>\n    <device>\n      <path>/dev/vda</path>\n      \
        <read_bytes_sec>10485760</read_bytes_sec>\n      <write_iops_sec>100</write_iops_sec>\n    </device>\n  </blkiotune>\n  \
        <memtune>\n    <hard_limit unit='KiB'>1048576</hard_limit>\n    <swap_hard_limit unit='KiB'>2097152</swap_hard_limit>\n  </memtune>\n  \
        <vcpu placement='static' cpuset='1'>2</vcpu>\n  <cputune>\n    <period>100000</period>\n    <quota>60000</quota>\n  </cputune>\n  \
        <numatune>\n    <memory mode='strict' nodeset='0'/>\n  </numatune>\n  <os>\n    <type arch='x86_64'>exe</type>\n  </os>\n</domain>\n";

    /// One lxcf wrote at sysgen, before any setting.
    const PLAIN: &str = "<domain type='lxc'>\n  <name>web1</name>\n  <memory unit='KiB'>1024</memory>\n  \
        <vcpu placement='static'>2</vcpu>\n  <cputune>\n    <quota>-1</quota>\n  </cputune>\n  \
        <memtune>\n    <hard_limit unit='KiB'>9007199254740991</hard_limit>\n  </memtune>\n</domain>\n";

    #[test]
    fn settings_are_read_from_the_definition() {
        let s = settings(FULL).unwrap();
        assert_eq!(s.cpus, Some(IdSet::parse("1").unwrap()));
        assert_eq!(s.cpu_quota, Some(CpuQuota { period: 100000, quota: 60000 }));
        assert_eq!(s.nodes, Some(IdSet::parse("0").unwrap()));
        assert_eq!((s.mem, s.memsw), (Some(1 << 30), Some(2 << 30)));
        assert_eq!(s.blkio.get(&("/dev/vda".into(), Throttle::ReadBps)), Some(&10485760));
        assert_eq!(s.blkio.get(&("/dev/vda".into(), Throttle::WriteIops)), Some(&100));
        assert_eq!(s.blkio.len(), 2);
        assert_eq!((s.net_in, s.net_out), (Some(1 << 20), None));
        assert_eq!(settings(PLAIN).unwrap(), Settings::default(), "libvirt's ways of saying no limit");
    }

    #[test]
    fn cpuset_is_set_kept_and_removed() {
        let x = with_cpuset(PLAIN, Some(&IdSet::parse("0,2-3").unwrap())).unwrap();
        assert!(x.contains("<vcpu placement='static' cpuset='0,2-3'>2</vcpu>"), "{x}");
        assert_eq!(settings(&x).unwrap().cpus, Some(IdSet::parse("0,2-3").unwrap()));
        let x = with_cpuset(&x, None).unwrap();
        assert!(x.contains("<vcpu placement='static'>2</vcpu>"), "{x}");
        assert_eq!(x, PLAIN, "removing restores the original");
        let none = with_cpuset("<domain type='lxc'>\n</domain>\n", Some(&IdSet::parse("1").unwrap())).unwrap();
        assert_eq!(settings(&none).unwrap().cpus, Some(IdSet::parse("1").unwrap()));
    }

    #[test]
    fn numatune_is_replaced_and_removed() {
        let x = with_numatune(FULL, Some(&IdSet::parse("0-1").unwrap())).unwrap();
        assert_eq!(x.matches("<numatune>").count(), 1, "{x}");
        assert_eq!(settings(&x).unwrap().nodes, Some(IdSet::parse("0-1").unwrap()));
        let x = with_numatune(&x, None).unwrap();
        assert!(!x.contains("numatune"), "{x}");
        let s = settings(&x).unwrap();
        assert_eq!((s.nodes, s.cpus), (None, Some(IdSet::parse("1").unwrap())), "the rest is untouched");
    }
}
