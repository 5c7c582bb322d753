//! Network rates: shaped with tc by lxcf's libvirt hook and by lxcf, one script for both.
//!
//! libvirt-LXC has no live interface tuning, and its start-time `<bandwidth>` needs
//! the sfq qdisc, which this project's kernels may lack (htb and tbf work; the police
//! action does not). So the shaping is a tbf qdisc on the host end of the veth
//! (traffic into the container) and on eth0 in the container's network namespace
//! (traffic out of it). The one implementation is the hook script
//! `etc/libvirt/hooks/lxc.d/lxcf`: libvirt runs it at every start, also starts lxcf
//! did not make (autostart, `virsh start`), with the domain's XML; lxcf runs the
//! same text, compiled in, with `--shape` and the values, for a change on a running
//! container or right after its own starts (where the hook is not installed, or
//! libvirtd has not seen it yet).
//!
//! A limit on eth0 inside the container can be removed by the container's own root
//! (it holds CAP_NET_ADMIN in its namespace); the inbound limit on the host side
//! cannot.

use std::process::Command;

use super::HostError;

/// The hook, as installed at [`HOOK_PATH`].
pub const HOOK: &str = include_str!("../../../../etc/libvirt/hooks/lxc.d/lxcf");
/// Where scripts/setup-host installs it. A directory of hooks (libvirt 6.5 and later)
/// leaves any hook of the administrator's own in place.
pub const HOOK_PATH: &str = "/etc/libvirt/hooks/lxc.d/lxcf";

/// Sets (or removes, for `None`) the limits of the container `name` whose init is
/// `init` and whose veth's host end is `host_dev`.
pub fn apply(name: &str, init: u32, host_dev: &str, inbound: Option<u64>, outbound: Option<u64>) -> Result<(), HostError> {
    let rate = |r: Option<u64>| r.unwrap_or(0).to_string();
    let out = Command::new("sh")
        .args(["-c", HOOK, "lxcf-hook", "--shape", name, &init.to_string(), host_dev, &rate(inbound), &rate(outbound)])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HostError::Shape { name: name.into(), msg: format!("cannot run sh: {e}") })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        let msg = err.strip_prefix("lxcf hook: ").and_then(|e| e.strip_prefix(name)).and_then(|e| e.strip_prefix(": ")).unwrap_or(err);
        return Err(HostError::Shape { name: name.into(), msg: msg.to_string() });
    }
    Ok(())
}

/// The rates in effect: the tbf on the host end, and on eth0 inside.
pub fn read(host_dev: Option<&str>, init: u32) -> Result<(Option<u64>, Option<u64>), HostError> {
    let inbound = match host_dev {
        Some(dev) => tbf_rate(Command::new("tc").args(["-j", "qdisc", "show", "dev", dev]))?,
        None => None,
    };
    let outbound = tbf_rate(
        Command::new("nsenter").arg(format!("--net=/proc/{init}/ns/net")).args(["--", "tc", "-j", "qdisc", "show", "dev", "eth0"]),
    )?;
    Ok((inbound, outbound))
}

/// The rate (bytes/s) of the root tbf in `tc -j qdisc show` output.
fn tbf_rate(cmd: &mut Command) -> Result<Option<u64>, HostError> {
    let line = format!("{cmd:?}");
    let failed = |msg: String| HostError::Command { cmd: line.clone(), msg };
    let out = cmd.output().map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    parse_tc(&out.stdout).map_err(|e| failed(format!("unexpected output: {e}")))
}

fn parse_tc(json: &[u8]) -> Result<Option<u64>, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(json)?;
    Ok(v.as_array().into_iter().flatten().find(|q| q["kind"] == "tbf" && q["root"] == true).and_then(|q| q["options"]["rate"].as_u64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Stdio;

    #[test]
    fn tc_output_is_read() {
        let j = br#"[{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,"options":{"rate":1048576,"burst":131072,"lat":99999}}]"#;
        assert_eq!(parse_tc(j).unwrap(), Some(1048576));
        assert_eq!(parse_tc(br#"[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]"#).unwrap(), None);
        assert!(parse_tc(b"garbage").is_err());
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
        let ns = crate::runtime::libvirt::tune::NET_NS;
        let ours = format!(
            "<domain type='lxc'>\n<metadata><lxcfres:resources xmlns:lxcfres=\"{ns}\"><lxcfres:net_in>1000</lxcfres:net_in>\
             </lxcfres:resources></metadata>\n</domain>\n"
        );
        assert_eq!(run("prepare", &ours), (true, String::new()));
        assert_eq!(run("started", "<domain type='lxc' id='1'>\n</domain>\n"), (true, String::new()));
        let (ok, err) = run("started", &ours);
        assert!(!ok && err.contains("lxcf hook: web1: the domain XML has no id"), "{err}");
    }

    /// lxcf's own use of the script: values on the command line; a bad one is refused
    /// before tc runs.
    #[test]
    fn shape_mode_checks_its_arguments() {
        // No such process: refused before any tc runs (pid_max is at most 2^22).
        let e = apply("web1", 999_999_999, "lxcft-nodev", Some(1), None).unwrap_err().to_string();
        assert_eq!(e, "cannot shape the network of web1: no init process 999999999");
        let o = Command::new("sh").args(["-c", HOOK, "hook", "--shape", "web1", "x", "lxcft-nodev", "0", "0"]).output().unwrap();
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("`x` is not a process id"), "{o:?}");
        let o = Command::new("sh").args(["-c", HOOK, "hook", "--shape", "web1", "1", "lxcft-nodev", "1M", "0"]).output().unwrap();
        assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("`1M` is not a rate"), "{o:?}");
    }
}
