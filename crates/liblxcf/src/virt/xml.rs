//! libvirt XML: the domain of a container, lxcf's `<metadata>` in it, and the network.
//!
//! Written with `format!` and an escaper (the documents are small and fixed in
//! shape); read back with roxmltree.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::config::{Forward, NetConfig};
use crate::layout::{Action, ENTRIES};

use super::Meta;

/// The XML namespace of lxcf's metadata element in a domain.
pub const NS: &str = "https://lxcf.github.io/xmlns/container/1";
/// Its prefix in the XML we write (libvirt keeps it).
pub const PREFIX: &str = "lxcf";

/// Escapes text for an XML attribute or element.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn path_str(p: &Path) -> String {
    esc(&p.to_string_lossy())
}

/// Everything a container's domain is made from.
pub struct DomainSpec<'a> {
    pub name: &'a str,
    pub uuid: uuid::Uuid,
    pub meta: &'a Meta,
    /// The tree read-only binds come from (the host's `/`).
    pub source: &'a Path,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// libvirt's `<memory>` is the container's memory limit; lxcf sets the host's
    /// total so that there is no limit until one is asked for.
    pub memory_kib: u64,
    pub vcpus: u32,
}

/// The metadata element alone, as libvirt stores and returns it.
pub fn meta_xml(m: &Meta) -> String {
    format!(
        "<{p}:container xmlns:{p}=\"{NS}\"><{p}:model>{}</{p}:model><{p}:ip>{}</{p}:ip><{p}:root>{}</{p}:root>\
         <{p}:network>{}</{p}:network><{p}:version>{}</{p}:version></{p}:container>",
        m.model,
        m.ip,
        path_str(&m.root),
        esc(&m.network),
        esc(&m.version),
        p = PREFIX,
    )
}

/// The container's init: `/bin/sh -c PLACE lxcf-init BOOT`, which gives it cgroups
/// of its own and then execs `/sbin/init` (see the scripts in `init/`). Written
/// into the definition rather than into the root, so that it is the same for every
/// container and changes with lxcf, and `virsh dumpxml` shows all of it.
pub const INIT_PLACE: &str = include_str!("init/place.sh");
pub const INIT_BOOT: &str = include_str!("init/boot.sh");

fn init_xml() -> String {
    let mut x = String::from("    <init>/bin/sh</init>\n");
    for arg in ["-c", INIT_PLACE, "lxcf-init", INIT_BOOT] {
        let _ = writeln!(x, "    <initarg>{}</initarg>", esc(arg));
    }
    x
}

pub fn domain_xml(s: &DomainSpec) -> String {
    let m = s.meta;
    let mut x = String::new();
    let _ = write!(
        x,
        "<domain type='lxc'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <metadata>\n    {meta}\n  </metadata>\n  \
         <memory unit='KiB'>{mem}</memory>\n  <vcpu>{vcpus}</vcpu>\n  <os>\n    <type>exe</type>\n{init}  </os>\n  \
         <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n  \
         <devices>\n    <filesystem type='mount'>\n      <source dir='{root}'/>\n      <target dir='/'/>\n    </filesystem>\n",
        name = esc(s.name),
        uuid = s.uuid,
        meta = meta_xml(m),
        mem = s.memory_kib,
        vcpus = s.vcpus,
        root = path_str(&m.root),
        init = init_xml(),
    );
    for e in ENTRIES {
        if e.action(m.model) == Action::BindReadOnly {
            let _ = write!(
                x,
                "    <filesystem type='mount'>\n      <source dir='{}'/>\n      <target dir='/{}'/>\n      <readonly/>\n    </filesystem>\n",
                path_str(&s.source.join(e.path)),
                e.path
            );
        }
    }
    let _ = write!(
        x,
        "    <interface type='network'>\n      <source network='{net}'/>\n      <ip address='{ip}' family='ipv4' prefix='{pfx}'/>\n      \
         <route family='ipv4' address='0.0.0.0' prefix='0' gateway='{gw}'/>\n    </interface>\n    \
         <console type='pty'/>\n  </devices>\n</domain>\n",
        net = esc(&m.network),
        ip = m.ip,
        pfx = s.prefix_len,
        gw = s.gateway,
    );
    x
}

/// A new container's domain XML derived from another's (`lxcf clone`), as libvirt
/// returns it: everything is kept (model, resource tuning, devices, whatever was
/// added to it since) except what makes a domain itself: name, UUID, lxcf's
/// metadata, the root filesystem's source, the interfaces' network, address and
/// gateway, and their MAC addresses, which are dropped so that libvirt makes new ones.
/// The init is this lxcf's, as in [`domain_xml`]: the source may have been made by
/// an older one.
pub fn derive(src: &str, name: &str, uuid: uuid::Uuid, meta: &Meta, prefix_len: u8, gateway: Ipv4Addr) -> Result<String, String> {
    let doc = roxmltree::Document::parse(src).map_err(|e| format!("unreadable domain XML: {e}"))?;
    let dom = doc.root_element();
    fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
        n.children().find(|c| c.is_element() && c.has_tag_name(tag))
    }
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    // The text of an element, which must exist.
    let mut text = |tag: &str, value: String| -> Result<(), String> {
        let e = child(dom, tag).ok_or(format!("no <{tag}> in the domain XML"))?;
        let t = e.first_child().filter(|t| t.is_text()).ok_or(format!("empty <{tag}> in the domain XML"))?;
        edits.push((t.range(), esc(&value)));
        Ok(())
    };
    text("name", name.to_string())?;
    text("uuid", uuid.to_string())?;
    let m = doc.descendants().find(|n| n.has_tag_name((NS, "container"))).ok_or("no lxcf metadata in the domain XML")?;
    edits.push((m.range(), meta_xml(meta)));
    // The old init's elements go, each with the indentation before it; the new one
    // takes the place of the first, or follows <type>.
    let os = child(dom, "os").ok_or("no <os> in the domain XML")?;
    let ty = child(os, "type").ok_or("no <os><type> in the domain XML")?;
    let mut init = Some(format!("\n{}", init_xml().trim_end()));
    for n in os.children().filter(|n| n.has_tag_name("init") || n.has_tag_name("initarg")) {
        let indent = n.prev_sibling().filter(|t| t.is_text() && t.text().is_some_and(|t| t.trim().is_empty()));
        edits.push((indent.map_or(n.range().start, |t| t.range().start)..n.range().end, init.take().unwrap_or_default()));
    }
    if let Some(init) = init {
        edits.push((ty.range().end..ty.range().end, init));
    }
    fn attr(n: roxmltree::Node<'_, '_>, name: &str) -> Option<std::ops::Range<usize>> {
        n.attributes().find(|a| a.name() == name && a.namespace().is_none()).map(|a| a.range_value())
    }
    let devices = child(dom, "devices").ok_or("no <devices> in the domain XML")?;
    let root = devices
        .children()
        .filter(|f| f.has_tag_name("filesystem"))
        .find(|f| child(*f, "target").and_then(|t| t.attribute("dir")) == Some("/"))
        .and_then(|f| child(f, "source"))
        .and_then(|s| attr(s, "dir"))
        .ok_or("no root filesystem in the domain XML")?;
    edits.push((root, path_str(&meta.root)));
    for i in devices.children().filter(|n| n.has_tag_name("interface")) {
        if let Some(r) = child(i, "source").and_then(|s| attr(s, "network")) {
            edits.push((r, esc(&meta.network)));
        }
        for ip in i.children().filter(|n| n.has_tag_name("ip") && n.attribute("family").is_none_or(|f| f == "ipv4")) {
            edits.extend(attr(ip, "address").map(|r| (r, meta.ip.to_string())));
            edits.extend(attr(ip, "prefix").map(|r| (r, prefix_len.to_string())));
        }
        for route in i.children().filter(|n| n.has_tag_name("route") && n.attribute("family").is_none_or(|f| f == "ipv4")) {
            edits.extend(attr(route, "gateway").map(|r| (r, gateway.to_string())));
        }
        for mac in i.children().filter(|n| n.has_tag_name("mac")) {
            edits.push((mac.range(), String::new()));
        }
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = src.to_string();
    for (r, v) in edits {
        out.replace_range(r, &v);
    }
    Ok(out)
}

/// lxcf's metadata from a whole domain XML (namespaced), or from what
/// virDomainGetMetadata returns for our namespace (the bare element, namespace
/// dropped); `None` if there is none or it is not lxcf's.
pub fn parse_meta(xml: &str) -> Option<Meta> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let root = doc.root_element();
    let c = if root.has_tag_name("container") && root.tag_name().namespace().is_none() {
        root
    } else {
        doc.descendants().find(|n| n.has_tag_name((NS, "container")))?
    };
    let ns = c.tag_name().namespace();
    let field = |name: &str| {
        c.children()
            .find(|n| n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == ns)
            .and_then(|n| n.text())
            .map(str::trim)
            .map(str::to_string)
    };
    Some(Meta {
        model: field("model")?.parse().ok()?,
        ip: field("ip")?.parse().ok()?,
        root: field("root")?.into(),
        network: field("network")?,
        version: field("version").unwrap_or_default(),
    })
}

pub fn network_xml(n: &NetConfig) -> String {
    let forward = match n.forward {
        Forward::Nat => "  <forward mode='nat'/>\n",
        Forward::None => "",
    };
    format!(
        "<network>\n  <name>{}</name>\n{forward}  <bridge name='{}' stp='on' delay='0'/>\n  <ip address='{}' prefix='{}'/>\n</network>\n",
        esc(&n.name),
        esc(&n.bridge),
        n.gateway,
        n.subnet.prefix_len()
    )
}

/// The address, prefix length and bridge of a libvirt network's XML, to compare with the config.
pub fn network_addr(xml: &str) -> Option<(Ipv4Addr, u8, String)> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let ip = doc.descendants().find(|n| n.has_tag_name("ip") && n.attribute("family").is_none_or(|f| f == "ipv4"))?;
    let addr: Ipv4Addr = ip.attribute("address")?.parse().ok()?;
    let prefix = match (ip.attribute("prefix"), ip.attribute("netmask")) {
        (Some(p), _) => p.parse().ok()?,
        (None, Some(m)) => u32::from(m.parse::<Ipv4Addr>().ok()?).count_ones() as u8,
        _ => return None,
    };
    let bridge = doc.descendants().find(|n| n.has_tag_name("bridge")).and_then(|b| b.attribute("name")).unwrap_or("").to_string();
    Some((addr, prefix, bridge))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Model;

    fn meta(model: Model) -> Meta {
        Meta {
            model,
            ip: "192.168.125.7".parse().unwrap(),
            root: "/opt/lxc/<web&1>".into(),
            network: "lxcfnet1".into(),
            version: "0.1.0".into(),
        }
    }

    fn spec(m: &Meta) -> DomainSpec<'_> {
        DomainSpec {
            name: "web1",
            uuid: uuid::Uuid::nil(),
            meta: m,
            source: Path::new("/"),
            prefix_len: 24,
            gateway: "192.168.125.1".parse().unwrap(),
            memory_kib: 1024,
            vcpus: 2,
        }
    }

    #[test]
    fn joint_binds_usr_read_only() {
        let m = meta(Model::Joint);
        let x = domain_xml(&spec(&m));
        let doc = roxmltree::Document::parse(&x).expect("well-formed");
        let fs: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("filesystem")).collect();
        assert_eq!(fs.len(), 2);
        let usr = fs.iter().find(|f| f.descendants().any(|n| n.attribute("dir") == Some("/usr"))).unwrap();
        assert!(usr.children().any(|n| n.has_tag_name("readonly")));
        assert!(usr.descendants().any(|n| n.has_tag_name("source") && n.attribute("dir") == Some("/usr")));
        assert_eq!(parse_meta(&x), Some(m), "metadata round-trips, escaping included");
        let ip = doc.descendants().find(|n| n.has_tag_name("ip") && n.has_attribute("address")).unwrap();
        assert_eq!(ip.attribute("address"), Some("192.168.125.7"));
        let route = doc.descendants().find(|n| n.has_tag_name("route")).unwrap();
        assert_eq!(route.attribute("gateway"), Some("192.168.125.1"));
    }

    #[test]
    fn init_prepares_cgroups_then_boots_systemd() {
        let x = domain_xml(&spec(&meta(Model::Joint)));
        let doc = roxmltree::Document::parse(&x).unwrap();
        let text = |tag: &str| doc.descendants().filter(|n| n.has_tag_name(tag)).map(|n| n.text().unwrap_or("")).collect::<Vec<_>>();
        assert_eq!(text("init"), ["/bin/sh"]);
        // The scripts come back from the XML as written, quotes and `>` included.
        assert_eq!(text("initarg"), ["-c", INIT_PLACE, "lxcf-init", INIT_BOOT]);
        assert!(INIT_PLACE.contains("exec unshare --cgroup /bin/sh -c \"$1\""));
        assert!(INIT_BOOT.trim_end().ends_with("exec /sbin/init"));
    }

    #[test]
    fn separate_has_only_the_root() {
        let m = meta(Model::Separate);
        let x = domain_xml(&spec(&m));
        let doc = roxmltree::Document::parse(&x).unwrap();
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("filesystem")).count(), 1);
        assert_eq!(parse_meta(&x).unwrap().model, Model::Separate);
    }

    #[test]
    fn metadata_as_libvirt_returns_it() {
        // virDomainGetMetadata(ELEMENT, NS) gives the element without its namespace.
        let x = "<container>\n  <model>joint</model>\n  <ip>10.0.0.2</ip>\n  <root>/opt/lxc/a</root>\n  \
                 <network>lxcfnet1</network>\n  <version>0.1.0</version>\n</container>\n";
        let m = parse_meta(x).unwrap();
        assert_eq!((m.model, m.ip.to_string(), m.root), (Model::Joint, "10.0.0.2".into(), "/opt/lxc/a".into()));
    }

    #[test]
    fn foreign_metadata_is_not_ours() {
        assert_eq!(parse_meta("<domain><metadata><x:container xmlns:x='urn:other'/></metadata></domain>"), None);
        assert_eq!(parse_meta("not xml"), None);
    }

    #[test]
    fn derived_xml_is_a_new_domain_with_the_same_settings() {
        let m = meta(Model::Joint);
        // What libvirt returns: our XML plus a MAC and tuning added later.
        let src = domain_xml(&spec(&m))
            .replace("<interface type='network'>\n", "<interface type='network'>\n      <mac address='52:54:00:12:34:56'/>\n")
            .replace("<vcpu>2</vcpu>", "<vcpu>2</vcpu>\n  <memtune><hard_limit unit='KiB'>524288</hard_limit></memtune>\n  <cputune><shares>512</shares></cputune>");
        let mut m2 = m.clone();
        m2.ip = "10.1.2.3".parse().unwrap();
        m2.root = "/opt/lxc/web2".into();
        m2.network = "net2".into();
        let uuid = uuid::Uuid::new_v4();
        let x = derive(&src, "web2", uuid, &m2, 16, "10.1.0.1".parse().unwrap()).unwrap();
        let doc = roxmltree::Document::parse(&x).expect("well-formed");
        let text = |t: &str| doc.descendants().find(|n| n.has_tag_name(t)).and_then(|n| n.text()).unwrap().to_string();
        assert_eq!(text("name"), "web2");
        assert_eq!(text("uuid"), uuid.to_string());
        assert_eq!(parse_meta(&x), Some(m2));
        assert!(!x.contains("<mac"), "{x}");
        assert!(x.contains("<source dir='/opt/lxc/web2'/>") && x.contains("<source dir='/usr'/>"), "{x}");
        assert!(x.contains("<source network='net2'/>"), "{x}");
        assert!(x.contains("<ip address='10.1.2.3' family='ipv4' prefix='16'/>"), "{x}");
        assert!(x.contains("gateway='10.1.0.1'"), "{x}");
        assert!(x.contains("<hard_limit unit='KiB'>524288</hard_limit>") && x.contains("<shares>512</shares>"), "{x}");
        assert!(derive("<domain/>", "a", uuid, &m, 24, "10.0.0.1".parse().unwrap()).is_err());
        // The init comes through, once.
        let args = |x: &str| {
            let doc = roxmltree::Document::parse(x).unwrap();
            let os = doc.descendants().find(|n| n.has_tag_name("os")).unwrap();
            os.children().filter(|n| n.is_element()).map(|n| n.text().unwrap_or("").to_string()).collect::<Vec<_>>()
        };
        assert_eq!(args(&x), ["exe", "/bin/sh", "-c", INIT_PLACE, "lxcf-init", INIT_BOOT]);
        assert!(!x.contains("\n    \n"), "no blank lines left: {x}");
    }

    /// A source made before lxcf wrote its own init (`/sbin/init`), or by an older
    /// lxcf's scripts, gets this lxcf's init in the clone.
    #[test]
    fn derived_xml_has_this_lxcfs_init() {
        let m = meta(Model::Joint);
        let x = domain_xml(&spec(&m));
        let a = x.find("    <init>").unwrap();
        let b = x.find("  </os>").unwrap();
        for old in
            ["    <init>/sbin/init</init>\n", "    <init>/bin/sh</init>\n    <initarg>-c</initarg>\n    <initarg>old</initarg>\n", ""]
        {
            let src = format!("{}{old}{}", &x[..a], &x[b..]);
            let d = derive(&src, "web2", uuid::Uuid::nil(), &m, 24, "192.168.125.1".parse().unwrap()).unwrap();
            assert_eq!(d, x.replace("<name>web1</name>", "<name>web2</name>"), "from {old:?}");
        }
    }

    #[test]
    fn network_round_trip() {
        let cfg = crate::config::Config::defaults(Path::new("/x"));
        let x = network_xml(&cfg.network);
        assert!(x.contains("<forward mode='nat'/>"));
        assert_eq!(network_addr(&x), Some(("192.168.125.1".parse().unwrap(), 24, "lxcfbr1".into())));
        assert_eq!(
            network_addr("<network><bridge name='b'/><ip address='10.0.0.1' netmask='255.255.0.0'/></network>"),
            Some(("10.0.0.1".parse().unwrap(), 16, "b".into()))
        );
        let mut n = cfg.network.clone();
        n.forward = Forward::None;
        assert!(!network_xml(&n).contains("forward"));
    }
}
