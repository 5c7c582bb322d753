//! `/etc/lxcf/lxcf.conf`: the INI file of the talk, its defaults and validation.
//!
//! A missing file means defaults. Unknown sections or keys are errors (a typo in
//! a key would otherwise silently leave a default in force on a production host).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use crate::rootfs::layout::Model;

/// Where the configuration is read from unless `--config` or `LXCF_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/lxcf/lxcf.conf";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}, line {line}: {msg}")]
    Syntax { path: PathBuf, line: usize, msg: String },
    #[error("config {path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// What to do with traffic leaving the container network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// libvirt NAT to the host's outside interfaces (the talk's default).
    Nat,
    /// No forwarding: containers reach only the host and each other.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub forward: Forward,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this was read from (or would have been).
    pub path: PathBuf,
    pub model: Model,
    /// New containers share the host's root user (`[Model] privileged=yes`); by
    /// default each has a user namespace and a range of host IDs of its own.
    pub privileged: bool,
    /// Directory holding one directory per container.
    pub root: PathBuf,
    /// The tree containers are built from (the host, `/`, unless testing).
    pub source: PathBuf,
    /// The hosts file that gets a line per container.
    pub hosts: PathBuf,
    pub uri: String,
    pub network: NetConfig,
}

impl Config {
    pub fn defaults(path: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            model: Model::Separate,
            privileged: false,
            root: PathBuf::from("/opt/lxc"),
            source: PathBuf::from("/"),
            hosts: PathBuf::from("/etc/hosts"),
            uri: "lxc:///".into(),
            network: NetConfig {
                name: "lxcfnet1".into(),
                bridge: "lxcfbr1".into(),
                subnet: "192.168.125.0/24".parse().expect("valid default subnet"),
                gateway: Ipv4Addr::new(192, 168, 125, 1),
                forward: Forward::Nat,
            },
        }
    }

    /// Reads `path`; a file that does not exist gives the defaults. The containers
    /// root is checked again with symlinks resolved, as far as it exists.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (cfg, text) = match std::fs::read_to_string(path) {
            Ok(text) => (Config::parse(path, &text)?, text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Config::defaults(path), String::new()),
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        let (root, source) = (resolved(&cfg.root), resolved(&cfg.source));
        if (root.as_path(), source.as_path()) != (cfg.root.as_path(), cfg.source.as_path()) {
            let line = line_of(&text, "Paths", "root");
            let bad = |msg: String| ConfigError::Syntax { path: path.to_path_buf(), line, msg };
            check_root(&root, &source, &bad).map_err(|e| match e {
                ConfigError::Syntax { path, line, msg } => {
                    ConfigError::Syntax { path, line, msg: format!("{msg} (`{}` leads to {})", cfg.root.display(), root.display()) }
                }
                e => e,
            })?;
        }
        Ok(cfg)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let ini = ini::Ini::load_from_str_noescape(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e.line,
            msg: e.msg.to_string(),
        })?;
        let mut cfg = Config::defaults(path);
        let mut subnet_set = false;
        let mut gateway_set = false;
        for (section, props) in ini.iter() {
            let section = section.unwrap_or("");
            for (key, value) in props.iter() {
                let line = line_of(text, section, key);
                let bad = |msg: String| ConfigError::Syntax { path: path.to_path_buf(), line, msg };
                let value = value.trim();
                match (section.to_ascii_lowercase().as_str(), key.to_ascii_lowercase().as_str()) {
                    ("model", "model") => {
                        cfg.model = value.parse().map_err(|e: crate::rootfs::layout::UnknownModel| bad(e.to_string()))?;
                    }
                    ("model", "privileged") => {
                        cfg.privileged = match value.to_ascii_lowercase().as_str() {
                            "yes" | "true" | "1" => true,
                            "no" | "false" | "0" => false,
                            _ => return Err(bad(format!("privileged=`{value}`: expected yes or no"))),
                        }
                    }
                    ("paths", "root") => cfg.root = absolute(value, &bad)?,
                    ("paths", "source") => cfg.source = absolute(value, &bad)?,
                    ("paths", "hosts") => cfg.hosts = absolute(value, &bad)?,
                    ("libvirt", "uri") => {
                        if value.is_empty() {
                            return Err(bad("uri must not be empty".into()));
                        }
                        cfg.uri = value.to_string();
                    }
                    ("network", "name") => {
                        crate::name::validate(value).map_err(|e| bad(format!("network name: {e}")))?;
                        cfg.network.name = value.to_string();
                    }
                    ("network", "bridge") => {
                        validate_bridge(value, &bad)?;
                        cfg.network.bridge = value.to_string();
                    }
                    ("network", "subnet") => {
                        let net: Ipv4Net =
                            value.parse().map_err(|_| bad(format!("subnet `{value}` is not an IPv4 network like 192.168.125.0/24")))?;
                        if net.network() != net.addr() {
                            return Err(bad(format!("subnet `{value}` has host bits set; did you mean {}?", net.trunc())));
                        }
                        if net.prefix_len() > 30 || net.prefix_len() < 8 {
                            return Err(bad(format!("subnet `{value}`: prefix length must be between 8 and 30")));
                        }
                        cfg.network.subnet = net;
                        subnet_set = true;
                    }
                    ("network", "gateway") => {
                        cfg.network.gateway = value.parse().map_err(|_| bad(format!("gateway `{value}` is not an IPv4 address")))?;
                        gateway_set = true;
                    }
                    ("network", "forward") => {
                        cfg.network.forward = match value {
                            "nat" => Forward::Nat,
                            "none" => Forward::None,
                            _ => return Err(bad(format!("forward `{value}` must be `nat` or `none`"))),
                        }
                    }
                    _ => {
                        let section = if section.is_empty() { "(no section)".to_string() } else { format!("[{section}]") };
                        return Err(bad(format!("unknown key `{key}` in {section}")));
                    }
                }
            }
        }
        let line = line_of(text, "Paths", "root");
        check_root(&cfg.root, &cfg.source, &|msg| ConfigError::Syntax { path: path.to_path_buf(), line, msg })?;
        // A new subnet without a gateway gets its first address, as libvirt's default does.
        if subnet_set && !gateway_set {
            cfg.network.gateway = first_host(cfg.network.subnet);
        }
        if !cfg.network.subnet.contains(&cfg.network.gateway)
            || cfg.network.gateway == cfg.network.subnet.network()
            || cfg.network.gateway == cfg.network.subnet.broadcast()
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                msg: format!("gateway {} is not a host address of subnet {}", cfg.network.gateway, cfg.network.subnet),
            });
        }
        Ok(cfg)
    }
}

/// Directories of a system (the host's, and the source's) that the containers root
/// must not be, nor hold: lxcf deletes and creates whole directories in its root
/// (`erase usr` must never reach the host's /usr), and a copied tree that held the
/// root would be copied without it (`root = /var/lib`: every container would lack
/// /var/lib) or into itself.
const SYSTEM_DIRS: &[&str] = &[
    "bin",
    "boot",
    "dev",
    "etc",
    "home",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "media",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "tmp",
    "usr",
    "var",
    "var/backups",
    "var/cache",
    "var/lib",
    "var/local",
    "var/log",
    "var/mail",
    "var/opt",
    "var/spool",
    "var/tmp",
];

/// Trees the containers root must not lie in: the kernel's, the ones gone at reboot,
/// and the ones every container sees (the joint model shares /usr read-only).
const NOT_INSIDE: &[&str] = &["bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "sys", "usr"];

/// Refuses a containers root that overlaps the host's or the source's system
/// directories (see [`SYSTEM_DIRS`]), or that the source lies in.
fn check_root(root: &Path, source: &Path, bad: Bad) -> Result<(), ConfigError> {
    let shown = root.display();
    if root == Path::new("/") {
        return Err(bad("the containers root cannot be `/`: lxcf creates and removes whole directories in it".into()));
    }
    if source.starts_with(root) {
        return Err(bad(format!("the source {} lies in the containers root {shown}", source.display())));
    }
    for top in [Path::new("/"), source] {
        for d in SYSTEM_DIRS {
            let sys = top.join(d);
            if sys.starts_with(root) {
                return Err(bad(format!(
                    "the containers root {shown} would hold the system directory {}: lxcf creates and removes whole directories in its root",
                    sys.display()
                )));
            }
        }
        for d in NOT_INSIDE {
            let sys = top.join(d);
            if root.starts_with(&sys) {
                return Err(bad(format!(
                    "the containers root {shown} lies in {}, a tree of the system, not a place for containers",
                    sys.display()
                )));
            }
        }
    }
    Ok(())
}

/// `p` with symlinks resolved as far as it exists (the rest kept as written).
fn resolved(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            return rest.iter().rev().fold(real, |acc: PathBuf, c| acc.join(c));
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// An error about the current line of the file, from its message.
type Bad<'a> = &'a dyn Fn(String) -> ConfigError;

fn absolute(value: &str, bad: Bad) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(value);
    if !p.is_absolute() {
        return Err(bad(format!("`{value}` must be an absolute path")));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(bad(format!("`{value}` must not contain `..`")));
    }
    Ok(p)
}

/// Linux interface names: 1..15 bytes, no `/`, no whitespace, not `.` or `..`.
fn validate_bridge(value: &str, bad: Bad) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > 15 {
        return Err(bad(format!("bridge `{value}` must be 1 to 15 characters (a Linux interface name)")));
    }
    if value == "." || value == ".." || value.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || !c.is_ascii()) {
        return Err(bad(format!("bridge `{value}` is not a valid interface name")));
    }
    Ok(())
}

/// rust-ini does not keep line numbers of keys; find the key's line ourselves for messages.
fn line_of(text: &str, section: &str, key: &str) -> usize {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix('[') {
            current = rest.trim_end_matches(']').trim().to_string();
        } else if current.eq_ignore_ascii_case(section) {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim() == key {
                    return i + 1;
                }
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/x/lxcf.conf"), text)
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::defaults(Path::new("/x/lxcf.conf")));
        assert_eq!(c.model, Model::Separate);
        assert_eq!(c.root, Path::new("/opt/lxc"));
        assert_eq!(c.network.subnet.to_string(), "192.168.125.0/24");
        assert_eq!(c.network.gateway.to_string(), "192.168.125.1");
        assert_eq!(c.network.forward, Forward::Nat);
    }

    #[test]
    fn shipped_config_is_the_defaults() {
        let c = parse(include_str!("../../../etc/lxcf.conf")).unwrap();
        assert_eq!(c, Config::defaults(Path::new("/x/lxcf.conf")));
    }

    #[test]
    fn missing_file_is_defaults() {
        let c = Config::load(Path::new("/nonexistent/lxcf.conf")).unwrap();
        assert_eq!(c.uri, "lxc:///");
    }

    #[test]
    fn talk_example_parses() {
        let c = parse("#\n# model = joint or separate\n#\n[Model]\nmodel=joint\n").unwrap();
        assert_eq!(c.model, Model::Joint);
    }

    #[test]
    fn all_keys() {
        let c = parse(
            "[Model]\nmodel = separate\n[Paths]\nroot=/srv/c\nhosts=/tmp/h\nsource=/mnt/src\n[Libvirt]\nuri=lxc:///system\n\
             [Network]\nname=n1\nbridge=br9\nsubnet=10.9.0.0/16\nforward=none\n",
        )
        .unwrap();
        assert_eq!(c.root, Path::new("/srv/c"));
        assert_eq!(c.hosts, Path::new("/tmp/h"));
        assert_eq!(c.source, Path::new("/mnt/src"));
        assert_eq!(c.uri, "lxc:///system");
        assert_eq!(c.network.name, "n1");
        assert_eq!(c.network.bridge, "br9");
        assert_eq!(c.network.gateway.to_string(), "10.9.0.1", "gateway defaults to the subnet's first host");
        assert_eq!(c.network.forward, Forward::None);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("[Model]\nmodel=joint\n[Network]\nsubnet=300.1.1.0/24\n").unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("300.1.1.0/24"), "{e}");
        let e = parse("[Model]\nmodle=joint\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unknown key `modle`"), "{e}");
        let e = parse("[Model]\nmodel=both\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("joint"), "{e}");
        let e = parse("[Paths]\nroot=opt/lxc\n").unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
        // rust-ini reports where it noticed the missing `]`: the end of the file.
        let e = parse("[Network\nname=x\n").unwrap_err().to_string();
        assert!(e.contains("line ") && e.contains("']'"), "{e}");
        let e = parse("[Network]\nbridge=averyveryverylongbridge\n").unwrap_err().to_string();
        assert!(e.contains("15"), "{e}");
        let e = parse("[Network]\nsubnet=10.0.0.5/24\n").unwrap_err().to_string();
        assert!(e.contains("10.0.0.0/24"), "{e}");
    }

    #[test]
    fn roots_that_overlap_a_system_are_refused() {
        for (root, why) in [
            ("/", "cannot be `/`"),
            ("/var", "would hold the system directory /var"),
            ("/var/lib", "would hold the system directory /var/lib"),
            ("/usr", "would hold the system directory /usr"),
            ("/opt", "would hold the system directory /opt"),
            ("/usr/local/lxc", "lies in /usr"),
            ("/etc/lxc", "lies in /etc"),
            ("/proc/lxc", "lies in /proc"),
            ("/run/lxc", "lies in /run"),
        ] {
            let e = parse(&format!("[Paths]\nroot={root}\n")).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("line 2"), "{root}: {e}");
        }
        // The source's trees too, and a source inside the root.
        let e = parse("[Paths]\nsource=/srv/host\nroot=/srv/host/var\n").unwrap_err().to_string();
        assert!(e.contains("would hold the system directory /srv/host/var"), "{e}");
        let e = parse("[Paths]\nroot=/data/lxc\nsource=/data/lxc/img\n").unwrap_err().to_string();
        assert!(e.contains("the source /data/lxc/img lies in the containers root"), "{e}");
        for ok in ["/opt/lxc", "/var/lib/lxcf", "/srv/lxc", "/home/lxc", "/tmp/lxcf-test-1/lxc", "/data"] {
            assert!(parse(&format!("[Paths]\nroot={ok}\n")).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_root_that_leads_to_a_system_directory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("lxc");
        std::os::unix::fs::symlink("/var", &link).unwrap();
        let conf = t.path().join("lxcf.conf");
        std::fs::write(&conf, format!("[Paths]\nroot={}\n", link.display())).unwrap();
        let e = Config::load(&conf).unwrap_err().to_string();
        assert!(e.contains("would hold the system directory /var") && e.contains("leads to /var"), "{e}");
        let deeper = t.path().join("lxc2");
        std::os::unix::fs::symlink("/usr/share", &deeper).unwrap();
        std::fs::write(&conf, format!("[Paths]\nroot={}/x/y\n", deeper.display())).unwrap();
        let e = Config::load(&conf).unwrap_err().to_string();
        assert!(e.contains("lies in /usr"), "{e}");
    }

    #[test]
    fn gateway_must_be_in_subnet() {
        let e = parse("[Network]\nsubnet=10.1.2.0/24\ngateway=10.1.3.1\n").unwrap_err().to_string();
        assert!(e.contains("not a host address"), "{e}");
        assert!(parse("[Network]\nsubnet=10.1.2.0/24\ngateway=10.1.2.0\n").is_err());
        assert!(parse("[Network]\nsubnet=10.1.2.0/24\ngateway=10.1.2.254\n").is_ok());
    }
}
