//! Addresses for containers, and the block of the host's hosts file that lxcf owns.
//!
//! Callers hold the host-wide lock ([`crate::lock`]) around allocate + add, so two
//! `lxcf sysgen` at once get different addresses and both lines survive.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no free address left in {subnet} ({used} in use)")]
    Full { subnet: Ipv4Net, used: usize },
    #[error("cannot {op} hosts file {}", path.display())]
    Hosts { op: &'static str, path: PathBuf, source: std::io::Error },
}

/// The lowest address of `subnet` that is not the network, broadcast, gateway or `used`.
pub fn allocate(subnet: Ipv4Net, gateway: Ipv4Addr, used: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, NetError> {
    subnet.hosts().find(|a| *a != gateway && !used.contains(a)).ok_or(NetError::Full { subnet, used: used.len() })
}

const BEGIN: &str = "# BEGIN lxcf: containers, managed by lxcf (changes inside this block are lost)";
const END: &str = "# END lxcf";

/// One `IP NAME` line of lxcf's block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub name: String,
}

/// The entries in lxcf's block of `text`.
pub fn parse_block(text: &str) -> Vec<HostEntry> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END {
            inside = false;
        } else if inside {
            let mut f = line.split_whitespace();
            if let (Some(ip), Some(name)) = (f.next(), f.next()) {
                if let Ok(ip) = ip.parse() {
                    out.push(HostEntry { ip, name: name.to_string() });
                }
            }
        }
    }
    out
}

/// `text` with lxcf's block replaced by `entries` (dropped when empty, appended when new).
/// Every line outside the block is kept as it was.
pub fn render(text: &str, entries: &[HostEntry]) -> String {
    let mut out = String::with_capacity(text.len() + 64 * entries.len());
    let block = |out: &mut String| {
        if !entries.is_empty() {
            out.push_str(BEGIN);
            out.push('\n');
            for e in entries {
                out.push_str(&format!("{}\t{}\n", e.ip, e.name));
            }
            out.push_str(END);
            out.push('\n');
        }
    };
    let mut inside = false;
    let mut placed = false;
    for line in text.split_inclusive('\n') {
        let bare = line.strip_suffix('\n').unwrap_or(line);
        if bare == BEGIN {
            inside = true;
            if !placed {
                block(&mut out);
                placed = true;
            }
        } else if bare == END && inside {
            inside = false;
        } else if !inside {
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    if !placed {
        block(&mut out);
    }
    out
}

/// The hosts file of the host (or of a test).
pub struct Hosts {
    pub path: PathBuf,
}

impl Hosts {
    pub fn new(path: &Path) -> Hosts {
        Hosts { path: path.to_path_buf() }
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> NetError + '_ {
        move |source| NetError::Hosts { op, path: self.path.clone(), source }
    }

    fn read(&self) -> Result<String, NetError> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(self.err("read")(e)),
        }
    }

    pub fn entries(&self) -> Result<Vec<HostEntry>, NetError> {
        Ok(parse_block(&self.read()?))
    }

    /// Adds `ip name`, replacing an older line for `name`.
    pub fn add(&self, ip: Ipv4Addr, name: &str) -> Result<(), NetError> {
        let text = self.read()?;
        let mut entries: Vec<HostEntry> = parse_block(&text).into_iter().filter(|e| e.name != name).collect();
        entries.push(HostEntry { ip, name: name.to_string() });
        self.write(&render(&text, &entries))
    }

    /// Removes `name`'s line; true if there was one.
    pub fn remove(&self, name: &str) -> Result<bool, NetError> {
        let text = self.read()?;
        let before = parse_block(&text);
        let entries: Vec<HostEntry> = before.iter().filter(|e| e.name != name).cloned().collect();
        if entries.len() == before.len() {
            return Ok(false);
        }
        self.write(&render(&text, &entries))?;
        Ok(true)
    }

    /// Temporary file in the same directory, same owner and mode, fsync, rename:
    /// readers see the old file or the new one, never a half-written one.
    fn write(&self, text: &str) -> Result<(), NetError> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.lxcf-{}", std::process::id()));
        let old = std::fs::metadata(&self.path).ok();
        let result = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
            if let Some(m) = &old {
                std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
                f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.err("write")(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<Ipv4Addr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn lowest_free_address() {
        let net: Ipv4Net = "192.168.125.0/24".parse().unwrap();
        let gw = "192.168.125.1".parse().unwrap();
        assert_eq!(allocate(net, gw, &set(&[])).unwrap().to_string(), "192.168.125.2");
        assert_eq!(allocate(net, gw, &set(&["192.168.125.2", "192.168.125.4"])).unwrap().to_string(), "192.168.125.3");
    }

    #[test]
    fn full_subnet() {
        let net: Ipv4Net = "10.0.0.0/30".parse().unwrap(); // hosts .1 and .2
        let gw = "10.0.0.1".parse().unwrap();
        assert_eq!(allocate(net, gw, &set(&[])).unwrap().to_string(), "10.0.0.2");
        let e = allocate(net, gw, &set(&["10.0.0.2"])).unwrap_err();
        assert!(e.to_string().contains("no free address left in 10.0.0.0/30"), "{e}");
    }

    #[test]
    fn block_round_trip_keeps_other_lines() {
        let text = "127.0.0.1 localhost\n# my comment\n10.1.1.1 myhost\n";
        let e1 = HostEntry { ip: "192.168.125.2".parse().unwrap(), name: "web1".into() };
        let e2 = HostEntry { ip: "192.168.125.3".parse().unwrap(), name: "db1".into() };
        let t1 = render(text, &[e1.clone(), e2.clone()]);
        assert!(t1.starts_with(text));
        assert_eq!(parse_block(&t1), vec![e1.clone(), e2.clone()]);
        let t2 = render(&(t1.clone() + "10.2.2.2 later\n"), std::slice::from_ref(&e2));
        assert_eq!(parse_block(&t2), vec![e2]);
        assert!(t2.contains("10.2.2.2 later\n") && t2.contains("10.1.1.1 myhost\n"));
        let t3 = render(&t2, &[]);
        assert_eq!(t3, text.to_string() + "10.2.2.2 later\n");
        assert_eq!(render("no newline", &[]), "no newline\n");
    }

    #[test]
    fn hosts_file_add_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let h = Hosts::new(&path);
        h.add("10.0.0.2".parse().unwrap(), "a").unwrap();
        h.add("10.0.0.3".parse().unwrap(), "b").unwrap();
        assert_eq!(h.entries().unwrap().len(), 2);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640, "mode kept");
        assert!(h.remove("a").unwrap());
        assert!(!h.remove("a").unwrap());
        assert!(h.remove("b").unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "127.0.0.1 localhost\n");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "no temporary file left");
    }
}
