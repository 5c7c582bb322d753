//! Network rates: recorded in the domain's metadata (libvirt has no place for them
//! that works here), shaped with tc by lxcf's libvirt hook.
//!
//! libvirt-LXC has no live interface tuning, and its start-time `<bandwidth>` needs
//! the sfq qdisc, which this project's kernels may lack (htb and tbf work; the police
//! action does not). So the shaping is a tbf qdisc on the host end of the veth
//! (traffic into the container) and on eth0 in the container's network namespace
//! (traffic out of it). The one implementation is the hook script
//! `etc/libvirt/hooks/lxc.d/lxcf`: libvirt runs it at every start, also starts lxcf
//! did not make (autostart, `virsh start`), and lxcf runs the same text, compiled in,
//! for a change on a running container or right after its own starts (where the hook
//! is not installed, or libvirtd has not seen it yet).
//!
//! A limit on eth0 inside the container can be removed by the container's own root
//! (it holds CAP_NET_ADMIN in its namespace); the inbound limit on the host side
//! cannot.

use std::io::Write;
use std::process::{Command, Stdio};

/// The hook, as installed at [`HOOK_PATH`].
pub const HOOK: &str = include_str!("../../../../etc/libvirt/hooks/lxc.d/lxcf");
/// Where scripts/setup-host installs it. A directory of hooks (libvirt 6.5 and later)
/// leaves any hook of the administrator's own in place.
pub const HOOK_PATH: &str = "/etc/libvirt/hooks/lxc.d/lxcf";

/// The namespace of lxcf's resource metadata in a domain: settings libvirt has no
/// element for.
pub const NS: &str = "https://lxcf.github.io/xmlns/resources/1";
/// Its prefix, which the hook's parser relies on: libvirt writes the key given to
/// virDomainSetMetadata as the prefix.
pub const PREFIX: &str = "lxcfres";

/// The metadata element for these rates (0: none), as virDomainSetMetadata takes it:
/// without a namespace, which libvirt adds from the key ([`PREFIX`]) and [`NS`].
/// Written even without rates, so that the hook removes limits set earlier.
pub fn meta_element(inbound: Option<u64>, outbound: Option<u64>) -> String {
    format!("<resources><net_in>{}</net_in><net_out>{}</net_out></resources>", inbound.unwrap_or(0), outbound.unwrap_or(0))
}

/// The rates in a domain's XML (bytes per second; `None`: no limit).
pub fn parse_meta(doc: &roxmltree::Document) -> (Option<u64>, Option<u64>) {
    let Some(el) = doc.descendants().find(|n| n.has_tag_name((NS, "resources"))) else { return (None, None) };
    let field = |name: &str| {
        el.children()
            .find(|n| n.has_tag_name((NS, name)))
            .and_then(|n| n.text())
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|&v| v > 0)
    };
    (field("net_in"), field("net_out"))
}

/// Runs the hook as libvirt runs it once a domain has started, on the running
/// domain's XML: sets or removes the limits it records.
pub fn apply(name: &str, live_xml: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .args(["-c", HOOK, "lxcf-hook", name, "started", "begin", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    // A write error means the script exited early; its status says why.
    let _ = child.stdin.take().expect("piped").write_all(live_xml.as_bytes());
    let out = child.wait_with_output().map_err(|e| format!("cannot wait for the shaping script: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.trim().strip_prefix("lxcf hook: ").unwrap_or(err.trim()).to_string());
    }
    Ok(())
}

/// Where a running container's traffic is shaped: the libvirt_lxc controller's pid
/// (the domain id), the host end of its veth, and its init's pid.
pub struct Ends {
    pub controller: u32,
    pub host_dev: Option<String>,
}

impl Ends {
    pub fn from_live_xml(doc: &roxmltree::Document) -> Option<Ends> {
        let controller = doc.root_element().attribute("id")?.parse().ok()?;
        let host_dev = doc
            .descendants()
            .filter(|n| n.has_tag_name("interface"))
            .flat_map(|i| i.children())
            .find(|n| n.has_tag_name("target"))
            .and_then(|t| t.attribute("dev"))
            .map(str::to_string);
        Some(Ends { controller, host_dev })
    }

    /// The container's init: the controller's one child.
    pub fn init(&self) -> Option<u32> {
        let c = self.controller;
        std::fs::read_to_string(format!("/proc/{c}/task/{c}/children")).ok()?.split_whitespace().next()?.parse().ok()
    }

    /// The rates in effect: the tbf on the host end, and on eth0 inside.
    pub fn read(&self) -> Result<(Option<u64>, Option<u64>), String> {
        let inbound = match &self.host_dev {
            Some(dev) => tbf_rate(Command::new("tc").args(["-j", "qdisc", "show", "dev", dev]))?,
            None => None,
        };
        let init = self.init().ok_or_else(|| format!("no init process under libvirt_lxc (pid {})", self.controller))?;
        let outbound = tbf_rate(
            Command::new("nsenter").arg(format!("--net=/proc/{init}/ns/net")).args(["--", "tc", "-j", "qdisc", "show", "dev", "eth0"]),
        )?;
        Ok((inbound, outbound))
    }
}

/// The rate (bytes/s) of the root tbf in `tc -j qdisc show` output.
fn tbf_rate(cmd: &mut Command) -> Result<Option<u64>, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    parse_tc(&out.stdout).map_err(|e| format!("{cmd:?}: {e}"))
}

fn parse_tc(json: &[u8]) -> Result<Option<u64>, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("unexpected output: {e}"))?;
    Ok(v.as_array().into_iter().flatten().find(|q| q["kind"] == "tbf" && q["root"] == true).and_then(|q| q["options"]["rate"].as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        assert_eq!(meta_element(Some(1 << 20), None), "<resources><net_in>1048576</net_in><net_out>0</net_out></resources>");
        // As libvirt returns it: namespaced, with its own line breaks and indentation.
        let x = format!(
            "<domain>\n  <metadata>\n    <lxcfres:resources xmlns:lxcfres=\"{NS}\">\n      <lxcfres:net_in>0</lxcfres:net_in>\n      \
             <lxcfres:net_out>500</lxcfres:net_out>\n    </lxcfres:resources>\n  </metadata>\n</domain>"
        );
        assert_eq!(parse_meta(&roxmltree::Document::parse(&x).unwrap()), (None, Some(500)));
    }

    #[test]
    fn tc_output_is_read() {
        let j = br#"[{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,"options":{"rate":1048576,"burst":131072,"lat":99999}}]"#;
        assert_eq!(parse_tc(j), Ok(Some(1048576)));
        assert_eq!(parse_tc(br#"[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]"#), Ok(None));
        assert!(parse_tc(b"garbage").is_err());
    }

    #[test]
    fn ends_of_a_running_domain() {
        let x = "<domain type='lxc' id='25335'><devices><filesystem><target dir='/'/></filesystem>\
                 <interface type='network'><target dev='vnet96'/><guest dev='eth0'/></interface></devices></domain>";
        let e = Ends::from_live_xml(&roxmltree::Document::parse(x).unwrap()).unwrap();
        assert_eq!((e.controller, e.host_dev.as_deref()), (25335, Some("vnet96")));
        assert!(Ends::from_live_xml(&roxmltree::Document::parse("<domain type='lxc'/>").unwrap()).is_none());
    }

    /// The hook leaves other domains and other operations alone, and says what is wrong
    /// with a domain it cannot shape, without touching anything.
    #[test]
    fn hook_ignores_what_is_not_its_business() {
        let run = |op: &str, xml: &str| {
            let mut c = Command::new("sh")
                .args(["-c", HOOK, "hook", "web1", op, "begin", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let _ = c.stdin.take().unwrap().write_all(xml.as_bytes());
            let o = c.wait_with_output().unwrap();
            (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
        };
        let ours = format!(
            "<domain type='lxc'>\n<metadata><lxcfres:resources xmlns:lxcfres=\"{NS}\"><lxcfres:net_in>1000</lxcfres:net_in>\
             </lxcfres:resources></metadata>\n</domain>\n"
        );
        assert_eq!(run("prepare", &ours), (true, String::new()));
        assert_eq!(run("started", "<domain type='lxc' id='1'>\n</domain>\n"), (true, String::new()));
        let (ok, err) = run("started", &ours);
        assert!(!ok && err.contains("lxcf hook: web1: the domain XML has no id"), "{err}");
    }
}
