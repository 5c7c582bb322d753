//! libvirt XML: a [`Spec`] written as a domain (with lxcf's `<metadata>`), a domain
//! read back as a [`Spec`], a spec derived from another's domain, and the network.
//!
//! Written with `format!` and an escaper (the documents are small and fixed in
//! shape); read back with roxmltree. Edits of an existing domain replace byte ranges
//! of the text libvirt gave, so everything lxcf does not know stays as it was.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::tune;
use crate::config::{Forward, NetConfig};
use crate::runtime::{Interface, Meta, Mount, Native, Spec};

/// The XML namespace of lxcf's metadata element in a domain.
pub const NS: &str = "https://lxcf.github.io/xmlns/container/1";
/// Its prefix in the XML we write (libvirt keeps it).
pub const PREFIX: &str = "lxcf";

/// A domain XML lxcf cannot use.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("unreadable domain XML")]
    Parse(#[from] roxmltree::Error),
    #[error("no {0} in the domain XML")]
    Missing(&'static str),
    #[error("{what} `{value}` in the domain XML: {why}")]
    Value { what: &'static str, value: String, why: String },
}

type Result<T> = std::result::Result<T, XmlError>;

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

/// The metadata element alone, as libvirt stores and returns it.
pub fn meta_xml(m: &Meta) -> String {
    let ids = m.ids.map(|b| format!("<{p}:ids>{b}</{p}:ids>", p = PREFIX)).unwrap_or_default();
    let exe = m.exe.as_ref().map(|e| format!("<{p}:exe>{}</{p}:exe>", path_str(e), p = PREFIX)).unwrap_or_default();
    format!(
        "<{p}:container xmlns:{p}=\"{NS}\"><{p}:model>{}</{p}:model><{p}:ip>{}</{p}:ip><{p}:root>{}</{p}:root>\
         <{p}:network>{}</{p}:network><{p}:version>{}</{p}:version>{ids}{exe}</{p}:container>",
        m.model,
        m.ip,
        path_str(&m.root),
        esc(&m.network),
        esc(&m.version),
        p = PREFIX,
    )
}

/// Where the start hook mounts an unprivileged container's trees ID-mapped, in
/// libvirtd's mount namespace: `root` (its root directory) and `host/PATH` (each
/// host directory shared into it). The directories are traversable by the
/// container's root, which lxcf's root directory (0700) is not.
pub const IDMAP_DIR: &str = "/run/lxcf/idmap";

/// The directory a filesystem of `name`'s domain has as its source: `real` itself
/// for a privileged container, its ID-mapped mount otherwise.
fn fs_source(name: &str, ids: Option<u32>, real: &Path, root: bool) -> PathBuf {
    match ids {
        None => real.to_path_buf(),
        Some(_) if root => Path::new(IDMAP_DIR).join(name).join("root"),
        Some(_) => Path::new(IDMAP_DIR).join(name).join("host").join(real.strip_prefix("/").unwrap_or(real)),
    }
}

/// The host directory behind a filesystem source `fs_source` made (any name).
fn real_source(src: &str) -> PathBuf {
    let p = Path::new(src);
    match p.strip_prefix(IDMAP_DIR).ok().map(|r| r.components().collect::<Vec<_>>()) {
        Some(c) if c.len() > 2 && c[1].as_os_str() == "host" => c[2..].iter().fold(PathBuf::from("/"), |acc, x| acc.join(x)),
        _ => p.to_path_buf(),
    }
}

fn idmap_xml(base: u32) -> String {
    format!(
        "  <idmap>\n    <uid start='0' target='{base}' count='{n}'/>\n    <gid start='0' target='{base}' count='{n}'/>\n  </idmap>\n",
        n = crate::host::idmap::COUNT
    )
}

fn features_xml(dropped: &[String]) -> String {
    if dropped.is_empty() {
        return String::new();
    }
    let mut x = String::from("  <features>\n    <capabilities policy='default'>\n");
    for c in dropped {
        let _ = writeln!(x, "      <{c} state='off'/>");
    }
    x.push_str("    </capabilities>\n  </features>\n");
    x
}

/// The container's init: `/bin/sh -c PLACE lxcf-init BOOT`, which gives it cgroups
/// of its own and then execs `/sbin/init` (see the scripts in `init/`): libvirt
/// places a container in cgroups of its own only for the controllers it manages.
/// Written into the definition rather than into the root, so that it is the same for
/// every container and changes with lxcf, and `virsh dumpxml` shows all of it.
pub const INIT_PLACE: &str = include_str!("init/place.sh");
pub const INIT_BOOT: &str = include_str!("init/boot.sh");

fn init_xml() -> String {
    let mut x = String::from("    <init>/bin/sh</init>\n");
    for arg in ["-c", INIT_PLACE, "lxcf-init", INIT_BOOT] {
        let _ = writeln!(x, "    <initarg>{}</initarg>", esc(arg));
    }
    x
}

fn interface_xml(i: &Interface) -> String {
    let mac = i.mac.as_ref().map(|m| format!("      <mac address='{}'/>\n", esc(m))).unwrap_or_default();
    format!(
        "    <interface type='network'>\n{mac}      <source network='{net}'/>\n      <ip address='{ip}' family='ipv4' prefix='{pfx}'/>\n      \
         <route family='ipv4' address='0.0.0.0' prefix='0' gateway='{gw}'/>\n    </interface>\n",
        net = esc(&i.network),
        ip = i.ip,
        pfx = i.prefix_len,
        gw = i.gateway,
    )
}

/// A new domain for `s`, without its resource settings (the driver sets those
/// through libvirt's calls, as for any later change). libvirt-LXC turns `<memory>`
/// into the container's memory limit: `memory_kib` is the host's total, so that
/// there is none until one is asked for.
pub fn domain_xml(s: &Spec, memory_kib: u64, vcpus: u32) -> String {
    let mut x = String::new();
    let _ = write!(
        x,
        "<domain type='lxc'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <metadata>\n    {meta}\n  </metadata>\n  \
         <memory unit='KiB'>{memory_kib}</memory>\n  <vcpu>{vcpus}</vcpu>\n  <os>\n    <type>exe</type>\n{init}  </os>\n\
         {idmap}{features}  <clock offset='utc'/>\n  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  \
         <on_crash>destroy</on_crash>\n  \
         <devices>\n    <filesystem type='mount'>\n      <source dir='{root}'/>\n      <target dir='/'/>\n    </filesystem>\n",
        name = esc(&s.name),
        uuid = s.uuid,
        meta = meta_xml(&s.meta),
        root = path_str(&fs_source(&s.name, s.meta.ids, &s.meta.root, true)),
        init = init_xml(),
        idmap = s.meta.ids.map(idmap_xml).unwrap_or_default(),
        features = features_xml(&s.dropped_caps),
    );
    for m in &s.mounts {
        let ro = if m.readonly { "      <readonly/>\n" } else { "" };
        let _ = write!(
            x,
            "    <filesystem type='mount'>\n      <source dir='{}'/>\n      <target dir='{}'/>\n{ro}    </filesystem>\n",
            path_str(&fs_source(&s.name, s.meta.ids, &m.source, false)),
            path_str(&m.target),
        );
    }
    for i in &s.interfaces {
        x.push_str(&interface_xml(i));
    }
    x.push_str("    <console type='pty'/>\n  </devices>\n</domain>\n");
    x
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.is_element() && c.has_tag_name(tag))
}

fn attr_range(n: roxmltree::Node<'_, '_>, name: &str) -> Option<std::ops::Range<usize>> {
    n.attributes().find(|a| a.name() == name && a.namespace().is_none()).map(|a| a.range_value())
}

fn is_ipv4(n: &roxmltree::Node) -> bool {
    n.attribute("family").is_none_or(|f| f == "ipv4")
}

/// `native`'s domain made into `s`'s (`lxcf clone`): everything is kept (the model's
/// mounts, resource tuning, devices, whatever was added to it since) except what
/// makes a domain itself: name, UUID, lxcf's metadata, the root filesystem's source,
/// the interfaces' network, address, gateway and MAC address (dropped where `s` has
/// none, so that libvirt makes a new one). The init is this lxcf's, as in
/// [`domain_xml`]: the source may have been made by an older one.
pub fn derive(native: &str, s: &Spec) -> Result<String> {
    let doc = roxmltree::Document::parse(native)?;
    let dom = doc.root_element();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    // The text of an element, which must exist.
    let mut text = |tag: &'static str, value: String| -> Result<()> {
        let e = child(dom, tag).ok_or(XmlError::Missing(tag))?;
        let t = e.first_child().filter(|t| t.is_text()).ok_or(XmlError::Missing(tag))?;
        edits.push((t.range(), esc(&value)));
        Ok(())
    };
    text("name", s.name.clone())?;
    text("uuid", s.uuid.to_string())?;
    let m = doc.descendants().find(|n| n.has_tag_name((NS, "container"))).ok_or(XmlError::Missing("lxcf metadata"))?;
    edits.push((m.range(), meta_xml(&s.meta)));
    // The old init's elements go, each with the indentation before it; the new one
    // takes the place of the first, or follows <type>.
    let os = child(dom, "os").ok_or(XmlError::Missing("<os>"))?;
    let ty = child(os, "type").ok_or(XmlError::Missing("<os><type>"))?;
    let mut init = Some(format!("\n{}", init_xml().trim_end()));
    for n in os.children().filter(|n| n.has_tag_name("init") || n.has_tag_name("initarg")) {
        let indent = n.prev_sibling().filter(|t| t.is_text() && t.text().is_some_and(|t| t.trim().is_empty()));
        edits.push((indent.map_or(n.range().start, |t| t.range().start)..n.range().end, init.take().unwrap_or_default()));
    }
    if let Some(init) = init {
        edits.push((ty.range().end..ty.range().end, init));
    }
    // The user namespace is the new container's own (or none).
    let mut idmap = s.meta.ids.map(idmap_xml);
    for n in dom.children().filter(|n| n.has_tag_name("idmap")) {
        let indent = n.prev_sibling().filter(|t| t.is_text() && t.text().is_some_and(|t| t.trim().is_empty()));
        let text = idmap.take().map(|x| format!("\n{}", x.trim_end())).unwrap_or_default();
        edits.push((indent.map_or(n.range().start, |t| t.range().start)..n.range().end, text));
    }
    if let Some(x) = idmap {
        edits.push((os.range().end..os.range().end, format!("\n{}", x.trim_end())));
    }
    // The capability policy, for a source made before lxcf had one.
    if child(dom, "features").is_none() && !s.dropped_caps.is_empty() {
        edits.push((os.range().end..os.range().end, format!("\n{}", features_xml(&s.dropped_caps).trim_end())));
    }
    let devices = child(dom, "devices").ok_or(XmlError::Missing("<devices>"))?;
    let mut has_root = false;
    for f in devices.children().filter(|f| f.has_tag_name("filesystem")) {
        let is_root = child(f, "target").and_then(|t| t.attribute("dir")) == Some("/");
        let Some(src) = child(f, "source").filter(|n| n.attribute("dir").is_some()) else { continue };
        let r = attr_range(src, "dir").ok_or(XmlError::Missing("filesystem source"))?;
        let real = if is_root { s.meta.root.clone() } else { real_source(src.attribute("dir").unwrap_or_default()) };
        edits.push((r, path_str(&fs_source(&s.name, s.meta.ids, &real, is_root))));
        has_root |= is_root;
    }
    if !has_root {
        return Err(XmlError::Missing("root filesystem"));
    }
    for (i, want) in devices.children().filter(|n| n.has_tag_name("interface")).zip(&s.interfaces) {
        if let Some(r) = child(i, "source").and_then(|s| attr_range(s, "network")) {
            edits.push((r, esc(&want.network)));
        }
        for ip in i.children().filter(|n| n.has_tag_name("ip") && is_ipv4(n)) {
            edits.extend(attr_range(ip, "address").map(|r| (r, want.ip.to_string())));
            edits.extend(attr_range(ip, "prefix").map(|r| (r, want.prefix_len.to_string())));
        }
        for route in i.children().filter(|n| n.has_tag_name("route") && is_ipv4(n)) {
            edits.extend(attr_range(route, "gateway").map(|r| (r, want.gateway.to_string())));
        }
        for mac in i.children().filter(|n| n.has_tag_name("mac")) {
            match &want.mac {
                Some(m) => edits.extend(attr_range(mac, "address").map(|r| (r, esc(m)))),
                None => edits.push((mac.range(), String::new())),
            }
        }
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = native.to_string();
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
    meta_of(&doc)
}

fn meta_of(doc: &roxmltree::Document) -> Option<Meta> {
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
        ids: field("ids").and_then(|b| b.parse().ok()),
        exe: field("exe").map(PathBuf::from),
    })
}

/// An lxcf container's domain XML as a [`Spec`], the XML itself as its native part.
pub fn parse_spec(xml: &str) -> Result<Spec> {
    let doc = roxmltree::Document::parse(xml)?;
    let dom = doc.root_element();
    let text = |tag: &'static str| child(dom, tag).and_then(|n| n.text()).map(str::trim).ok_or(XmlError::Missing(tag));
    let name = text("name")?.to_string();
    let uuid = text("uuid")?;
    let uuid = uuid.parse().map_err(|e: uuid::Error| XmlError::Value { what: "uuid", value: uuid.into(), why: e.to_string() })?;
    let meta = meta_of(&doc).ok_or(XmlError::Missing("lxcf metadata"))?;
    let devices = child(dom, "devices");
    let devices = || devices.into_iter().flat_map(|d| d.children()).filter(|n| n.is_element());
    let mut mounts = Vec::new();
    for f in devices().filter(|n| n.has_tag_name("filesystem")) {
        let (Some(source), Some(target)) =
            (child(f, "source").and_then(|s| s.attribute("dir")), child(f, "target").and_then(|t| t.attribute("dir")))
        else {
            continue;
        };
        if target != "/" {
            mounts.push(Mount { source: real_source(source), target: PathBuf::from(target), readonly: child(f, "readonly").is_some() });
        }
    }
    let mut interfaces = Vec::new();
    for i in devices().filter(|n| n.has_tag_name("interface")) {
        let Some(network) = child(i, "source").and_then(|s| s.attribute("network")) else { continue };
        let Some(ip) = i.children().find(|n| n.has_tag_name("ip") && is_ipv4(n)) else { continue };
        let addr = |a: Option<&str>, what: &'static str| -> Result<Ipv4Addr> {
            let a = a.ok_or(XmlError::Missing(what))?;
            a.parse().map_err(|_| XmlError::Value { what, value: a.into(), why: "not an IPv4 address".into() })
        };
        let gateway = i.children().find(|n| n.has_tag_name("route") && is_ipv4(n)).and_then(|r| r.attribute("gateway"));
        interfaces.push(Interface {
            network: network.to_string(),
            ip: addr(ip.attribute("address"), "interface address")?,
            prefix_len: ip.attribute("prefix").and_then(|p| p.parse().ok()).unwrap_or(24),
            gateway: addr(gateway, "interface route gateway")?,
            mac: child(i, "mac").and_then(|m| m.attribute("address")).map(str::to_string),
        });
    }
    let resources = tune::settings_of(&doc)?;
    let dropped_caps = child(dom, "features")
        .and_then(|f| child(f, "capabilities"))
        .into_iter()
        .flat_map(|c| c.children())
        .filter(|c| c.is_element() && c.attribute("state") == Some("off"))
        .map(|c| c.tag_name().name().to_string())
        .collect();
    Ok(Spec { name, uuid, meta, mounts, interfaces, resources, dropped_caps, native: Some(Native(xml.to_string())) })
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
    let ip = doc.descendants().find(|n| n.has_tag_name("ip") && is_ipv4(n))?;
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
    use crate::resources::Settings;
    use crate::rootfs::layout::Model;

    fn spec(model: Model) -> Spec {
        let meta = Meta {
            model,
            ip: "192.168.125.7".parse().unwrap(),
            root: "/opt/lxc/<web&1>".into(),
            network: "lxcfnet1".into(),
            version: "0.1.0".into(),
            ids: None,
            exe: None,
        };
        let mounts = match model {
            Model::Joint => vec![Mount { source: "/usr".into(), target: "/usr".into(), readonly: true }],
            Model::Separate => vec![],
        };
        let iface =
            Interface { network: "lxcfnet1".into(), ip: meta.ip, prefix_len: 24, gateway: "192.168.125.1".parse().unwrap(), mac: None };
        Spec {
            name: "web1".into(),
            uuid: uuid::Uuid::nil(),
            meta,
            mounts,
            interfaces: vec![iface],
            resources: Settings::default(),
            dropped_caps: crate::runtime::DROPPED_CAPS.iter().map(|c| c.to_string()).collect(),
            native: None,
        }
    }

    fn xml_of(s: &Spec) -> String {
        domain_xml(s, 1024, 2)
    }

    #[test]
    fn joint_binds_usr_read_only() {
        let s = spec(Model::Joint);
        let x = xml_of(&s);
        let doc = roxmltree::Document::parse(&x).expect("well-formed");
        let fs: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("filesystem")).collect();
        assert_eq!(fs.len(), 2);
        let usr = fs.iter().find(|f| f.descendants().any(|n| n.attribute("dir") == Some("/usr"))).unwrap();
        assert!(usr.children().any(|n| n.has_tag_name("readonly")));
        assert!(usr.descendants().any(|n| n.has_tag_name("source") && n.attribute("dir") == Some("/usr")));
        assert_eq!(parse_meta(&x), Some(s.meta.clone()), "metadata round-trips, escaping included");
        let ip = doc.descendants().find(|n| n.has_tag_name("ip") && n.has_attribute("address")).unwrap();
        assert_eq!(ip.attribute("address"), Some("192.168.125.7"));
        let route = doc.descendants().find(|n| n.has_tag_name("route")).unwrap();
        assert_eq!(route.attribute("gateway"), Some("192.168.125.1"));
    }

    #[test]
    fn a_spec_round_trips() {
        for model in [Model::Joint, Model::Separate] {
            let s = spec(model);
            let x = xml_of(&s);
            let back = parse_spec(&x).unwrap();
            assert_eq!(back.native.as_ref().map(|n| n.0.as_str()), Some(x.as_str()));
            assert_eq!(Spec { native: None, ..back }, s);
        }
    }

    #[test]
    fn init_prepares_cgroups_then_boots_systemd() {
        let x = xml_of(&spec(Model::Joint));
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
        let s = spec(Model::Separate);
        let x = xml_of(&s);
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
        assert!(matches!(
            parse_spec("<domain><name>a</name><uuid>00000000-0000-0000-0000-000000000000</uuid></domain>"),
            Err(XmlError::Missing(_))
        ));
    }

    /// The clone's spec: SRC's with NEW's identity.
    fn derived_spec(src: &Spec) -> Spec {
        let mut s = src.clone();
        s.name = "web2".into();
        s.uuid = uuid::Uuid::new_v4();
        s.meta.ip = "10.1.2.3".parse().unwrap();
        s.meta.root = "/opt/lxc/web2".into();
        s.meta.network = "net2".into();
        s.interfaces =
            vec![Interface { network: "net2".into(), ip: s.meta.ip, prefix_len: 16, gateway: "10.1.0.1".parse().unwrap(), mac: None }];
        s
    }

    /// An unprivileged container: its user namespace, its trees through their
    /// ID-mapped mounts, read back as the host's trees; a clone gets its own of all.
    #[test]
    fn an_unprivileged_domain_maps_its_ids_and_trees() {
        let mut s = spec(Model::Joint);
        s.meta.ids = Some(1_065_536);
        let x = xml_of(&s);
        assert!(
            x.contains("<uid start='0' target='1065536' count='65536'/>") && x.contains("<gid start='0' target='1065536' count='65536'/>")
        );
        assert!(
            x.contains("<source dir='/run/lxcf/idmap/web1/root'/>") && x.contains("<source dir='/run/lxcf/idmap/web1/host/usr'/>"),
            "{x}"
        );
        assert!(x.contains("<sys_rawio state='off'/>"), "{x}");
        let back = parse_spec(&x).unwrap();
        assert_eq!(back.meta, s.meta);
        assert_eq!(back.mounts, s.mounts);
        let mut s2 = derived_spec(&back);
        s2.meta.ids = Some(1_131_072);
        let y = derive(&x, &s2).unwrap();
        assert!(y.contains("target='1131072'") && !y.contains("1065536"), "{y}");
        assert!(
            y.contains("<source dir='/run/lxcf/idmap/web2/root'/>") && y.contains("<source dir='/run/lxcf/idmap/web2/host/usr'/>"),
            "{y}"
        );
        assert_eq!(y.matches("<idmap>").count(), 1);
        // From a privileged source: the map is added.
        let z = derive(&xml_of(&spec(Model::Joint)), &s2).unwrap();
        assert!(z.contains("target='1131072'") && z.contains("/run/lxcf/idmap/web2/host/usr"), "{z}");
        // And to a privileged clone: it goes.
        s2.meta.ids = None;
        let p = derive(&x, &s2).unwrap();
        assert!(!p.contains("<idmap>") && p.contains("<source dir='/usr'/>"), "{p}");
    }

    #[test]
    fn derived_xml_is_a_new_domain_with_the_same_settings() {
        let s = spec(Model::Joint);
        // What libvirt returns: our XML plus a MAC and tuning added later.
        let src = xml_of(&s)
            .replace("<interface type='network'>\n", "<interface type='network'>\n      <mac address='52:54:00:12:34:56'/>\n")
            .replace("<vcpu>2</vcpu>", "<vcpu>2</vcpu>\n  <memtune><hard_limit unit='KiB'>524288</hard_limit></memtune>\n  <cputune><shares>512</shares></cputune>");
        let s2 = derived_spec(&parse_spec(&src).unwrap());
        let x = derive(&src, &s2).unwrap();
        let doc = roxmltree::Document::parse(&x).expect("well-formed");
        let text = |t: &str| doc.descendants().find(|n| n.has_tag_name(t)).and_then(|n| n.text()).unwrap().to_string();
        assert_eq!(text("name"), "web2");
        assert_eq!(text("uuid"), s2.uuid.to_string());
        assert_eq!(parse_meta(&x), Some(s2.meta.clone()));
        assert!(!x.contains("<mac "), "{x}");
        assert!(x.contains("<source dir='/opt/lxc/web2'/>") && x.contains("<source dir='/usr'/>"), "{x}");
        assert!(x.contains("<source network='net2'/>"), "{x}");
        assert!(x.contains("<ip address='10.1.2.3' family='ipv4' prefix='16'/>"), "{x}");
        assert!(x.contains("gateway='10.1.0.1'"), "{x}");
        assert!(x.contains("<hard_limit unit='KiB'>524288</hard_limit>") && x.contains("<shares>512</shares>"), "{x}");
        assert_eq!(parse_spec(&x).unwrap().resources.mem, Some(512 << 20));
        assert!(derive("<domain/>", &s2).is_err());
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
        let s = spec(Model::Joint);
        let x = xml_of(&s);
        let a = x.find("    <init>").unwrap();
        let b = x.find("  </os>").unwrap();
        let mut s2 = s.clone();
        s2.name = "web2".into();
        for old in
            ["    <init>/sbin/init</init>\n", "    <init>/bin/sh</init>\n    <initarg>-c</initarg>\n    <initarg>old</initarg>\n", ""]
        {
            let src = format!("{}{old}{}", &x[..a], &x[b..]);
            let d = derive(&src, &s2).unwrap();
            assert_eq!(d, x.replace("<name>web1</name>", "<name>web2</name>"), "from {old:?}");
        }
    }

    /// The XML lxcf 0.1.0 wrote, as libvirt keeps it (the system tests' fixture):
    /// read as a spec with every field and setting.
    #[test]
    fn the_first_versions_domains_are_read() {
        let x = include_str!("../../../../lxcf/tests/system/fixtures/domain-0.1.0.xml")
            .replace("@NAME@", "old1")
            .replace("@UUID@", "07b96599-6552-45a8-a424-9aa6b3abb877")
            .replace("@ROOTDIR@", "/opt/lxc")
            .replace("@IP@", "10.214.1.2")
            .replace("@GATEWAY@", "10.214.1.1")
            .replace("@NETWORK@", "lxcfnet1")
            .replace("@MAC@", "52:54:00:d7:76:ea")
            .replace("@MEMORY@", "24683656");
        let s = parse_spec(&x).unwrap();
        assert_eq!((s.name.as_str(), s.meta.model, s.meta.root.as_path()), ("old1", Model::Joint, Path::new("/opt/lxc/old1")));
        assert_eq!(s.mounts, [Mount { source: "/usr".into(), target: "/usr".into(), readonly: true }]);
        assert_eq!(s.interfaces.len(), 1);
        let i = &s.interfaces[0];
        assert_eq!((i.ip.to_string(), i.gateway.to_string(), i.prefix_len), ("10.214.1.2".into(), "10.214.1.1".into(), 24));
        assert_eq!(i.mac.as_deref(), Some("52:54:00:d7:76:ea"));
        let r = &s.resources;
        assert_eq!((r.mem, r.net_in, r.cpus.as_ref().map(|c| c.to_string())), (Some(1 << 30), Some(1 << 20), Some("0".into())));
        assert!(r.cpu_quota.is_some());
        // A clone of it: this lxcf's init, the same settings.
        let d = derive(&x, &derived_spec(&s)).unwrap();
        assert_eq!(parse_spec(&d).unwrap().resources, s.resources);
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
