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
//! | cpun | `<vcpu cpuset=...>`: the XML is redefined, libvirt-LXC has no call for it (virDomainPinVcpu and PinEmulator are unsupported) | not here: lxcf writes cpuset.cpus and every task's affinity ([`crate::host`]) |
//! | numa | `<numatune>`: redefined, virDomainSetNumaParameters is unsupported for LXC, even for the definition | not here: lxcf writes cpuset.mems |
//! | net_in, net_out | lxcf's `<metadata>` element ([`NET_NS`]), virDomainSetMetadata | not here: lxcf shapes with tc ([`crate::host::netshape`]) |
//!
//! libvirt applies all of them at start except the network rates, which lxcf's hook
//! (or lxcf, after its own starts) sets.

use std::ffi::{CStr, CString};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use virt::domain::{Domain as VDomain, MemoryParameters, SchedBandwidth, SchedulerInfo};
use virt::sys;

use super::xml::{esc, XmlError};
use super::{op, Libvirt};
use crate::resources::{CpuQuota, IdSet, Setting, Settings, Throttle, CFS_PERIOD_US};
use crate::runtime::RuntimeError;

/// The namespace of lxcf's resource metadata in a domain: settings libvirt has no
/// element for (the network rates).
pub const NET_NS: &str = "https://lxcf.github.io/xmlns/resources/1";
/// Its prefix, which the hook's parser relies on: libvirt writes the key given to
/// virDomainSetMetadata as the prefix.
pub const NET_PREFIX: &str = "lxcfres";

/// The metadata element for these rates (0: none), as virDomainSetMetadata takes it:
/// without a namespace, which libvirt adds from the key ([`NET_PREFIX`]) and
/// [`NET_NS`]. Written even without rates, so that the hook removes limits set earlier.
pub fn net_element(inbound: Option<u64>, outbound: Option<u64>) -> String {
    format!("<resources><net_in>{}</net_in><net_out>{}</net_out></resources>", inbound.unwrap_or(0), outbound.unwrap_or(0))
}

/// The rates in a domain's XML (bytes per second; `None`: no limit).
fn parse_net(doc: &roxmltree::Document) -> (Option<u64>, Option<u64>) {
    let Some(el) = doc.descendants().find(|n| n.has_tag_name((NET_NS, "resources"))) else { return (None, None) };
    let field = |name: &str| {
        el.children()
            .find(|n| n.has_tag_name((NET_NS, name)))
            .and_then(|n| n.text())
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|&v| v > 0)
    };
    (field("net_in"), field("net_out"))
}

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

fn ids(what: &'static str, v: &str) -> Result<IdSet, XmlError> {
    IdSet::parse(v).map_err(|why| XmlError::Value { what, value: v.into(), why: why.to_string() })
}

/// The settings in a domain's XML. What libvirt writes for "no limit" (a missing
/// element, quota -1, a hard_limit at its maximum) reads as `None`.
pub fn settings(xml: &str) -> Result<Settings, XmlError> {
    settings_of(&roxmltree::Document::parse(xml)?)
}

pub(super) fn settings_of(doc: &roxmltree::Document) -> Result<Settings, XmlError> {
    let dom = doc.root_element();
    let mut s = Settings::default();
    if let Some(c) = child(dom, "vcpu").and_then(|v| v.attribute("cpuset")) {
        s.cpus = Some(ids("vcpu cpuset", c)?);
    }
    if let Some(ct) = child(dom, "cputune") {
        let quota: Option<i64> = num(child(ct, "quota"));
        let period: u64 = num(child(ct, "period")).unwrap_or(CFS_PERIOD_US);
        s.cpu_quota = quota.filter(|&q| q > 0).map(|q| CpuQuota { period, quota: q as u64 });
    }
    if let Some(n) = child(dom, "numatune").and_then(|n| child(n, "memory")).and_then(|m| m.attribute("nodeset")) {
        s.nodes = Some(ids("numatune nodeset", n)?);
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
    (s.net_in, s.net_out) = parse_net(doc);
    Ok(s)
}

/// Where the root element closes: new elements go there (libvirt does not mind the order).
fn end_of_domain(xml: &str) -> Result<usize, XmlError> {
    xml.rfind("</domain>").ok_or(XmlError::Missing("</domain>"))
}

/// The XML with `<vcpu cpuset=...>` set to `cpus`, or removed.
pub fn with_cpuset(xml: &str, cpus: Option<&IdSet>) -> Result<String, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let Some(v) = child(doc.root_element(), "vcpu") else {
        let mut out = xml.to_string();
        if let Some(c) = cpus {
            out.insert_str(end_of_domain(xml)?, &format!("  <vcpu placement='static' cpuset='{c}'>{}</vcpu>\n", c.len()));
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
pub fn with_numatune(xml: &str, nodes: Option<&IdSet>) -> Result<String, XmlError> {
    let doc = roxmltree::Document::parse(xml)?;
    let mut out = match child(doc.root_element(), "numatune") {
        Some(n) => format!("{}{}", &xml[..n.range().start], &xml[n.range().end..]),
        None => xml.to_string(),
    };
    if let Some(n) = nodes {
        let at = end_of_domain(&out)?;
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

pub(super) fn xml_error<'a>(op: &'static str, name: &'a str) -> impl FnOnce(XmlError) -> RuntimeError + 'a {
    move |e| RuntimeError::Op { op, object: name.to_string(), msg: crate::error::chain(&e) }
}

impl Libvirt {
    fn redefine(&self, d: &VDomain, name: &str, edit: impl FnOnce(&str) -> Result<String, XmlError>) -> Result<(), RuntimeError> {
        let x = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(op("read the definition of", name))?;
        let new = edit(&x).map_err(xml_error("edit the definition of", name))?;
        self.define_xml(&new, name)
    }

    /// Removes the running container's block I/O throttles, not its definition's.
    /// A process whose writes wait in a throttle sleeps uninterruptibly, where
    /// SIGKILL does not reach it, and libvirt's destroy gives up ("Some processes
    /// refused to die": seen with PostgreSQL's start-up writes at 1 MB/s). Before a
    /// hard stop only; failures are reported, the stop goes on.
    pub(super) fn lift_live_io_limits(&self, d: &VDomain, name: &str) {
        let limits =
            match d.xml_desc(0).map_err(|e| e.message().to_string()).and_then(|x| settings(&x).map_err(|e| crate::error::chain(&e))) {
                Ok(s) => s.blkio,
                Err(e) => return tracing::warn!("{name}: cannot read its I/O limits: {e}"),
            };
        for (dev, t) in limits.keys() {
            if let Err(e) = set_blkio(d, *t, dev, 0, sys::VIR_DOMAIN_AFFECT_LIVE) {
                tracing::warn!("{name}: cannot lift its I/O limit on {}: {}", dev.display(), e.message());
            }
        }
    }

    /// Records `s` in the definition and, with `live`, applies it where libvirt can
    /// (see the table above). `Ok(true)`: it took effect live.
    pub(super) fn change_setting(&self, name: &str, s: &Setting, live: bool) -> Result<bool, RuntimeError> {
        let d = self.get_domain(name)?;
        let flags = sys::VIR_DOMAIN_AFFECT_CONFIG | if live { sys::VIR_DOMAIN_AFFECT_LIVE } else { 0 };
        let what = s.command();
        let failed =
            |e: virt::error::Error| RuntimeError::Op { op: "change", object: format!("{what} of {name}"), msg: e.message().into() };
        match s {
            Setting::CpuQuota(q) => {
                // -1: no quota. The period stays as it is when the quota goes.
                let vcpu_bw = SchedBandwidth { period: q.map(|q| q.period), quota: Some(q.map_or(-1, |q| q.quota as i64)) };
                d.set_scheduler_parameters_flags(&SchedulerInfo { vcpu_bw, ..Default::default() }, flags).map_err(failed)?;
            }
            Setting::Mem(b) => {
                d.set_memory_parameters(MemoryParameters { hard_limit: Some(kib(*b)), ..Default::default() }, flags).map_err(failed)?;
            }
            Setting::Memsw(b) => {
                d.set_memory_parameters(MemoryParameters { swap_hard_limit: Some(kib(*b)), ..Default::default() }, flags)
                    .map_err(failed)?;
            }
            Setting::Blkio(dev, t, v) => set_blkio(&d, *t, dev, v.unwrap_or(0), flags).map_err(failed)?,
            Setting::Cpus(c) => {
                self.redefine(&d, name, |x| with_cpuset(x, c.as_ref()))?;
                return Ok(false);
            }
            Setting::Nodes(n) => {
                self.redefine(&d, name, |x| with_numatune(x, n.as_ref()))?;
                return Ok(false);
            }
            Setting::Net { inbound, outbound } => {
                // Live too when it runs: the hook reads the running definition.
                d.set_metadata(
                    sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                    Some(&net_element(*inbound, *outbound)),
                    Some(NET_PREFIX),
                    Some(NET_NS),
                    flags,
                )
                .map_err(failed)?;
                return Ok(false);
            }
        }
        Ok(live)
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
    fn net_metadata_round_trips() {
        assert_eq!(net_element(Some(1 << 20), None), "<resources><net_in>1048576</net_in><net_out>0</net_out></resources>");
        // As libvirt returns it: namespaced, with its own line breaks and indentation.
        let x = format!(
            "<domain>\n  <metadata>\n    <lxcfres:resources xmlns:lxcfres=\"{NET_NS}\">\n      <lxcfres:net_in>0</lxcfres:net_in>\n      \
             <lxcfres:net_out>500</lxcfres:net_out>\n    </lxcfres:resources>\n  </metadata>\n</domain>"
        );
        assert_eq!(parse_net(&roxmltree::Document::parse(&x).unwrap()), (None, Some(500)));
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
