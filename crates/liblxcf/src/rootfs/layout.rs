//! The two container models of the talk, as data.
//!
//! Every top-level path of a container root is one row of [`ENTRIES`], with what
//! each model does with it. The root builder ([`crate::rootfs`]) and the domain XML
//! ([`crate::runtime::libvirt::xml`]) both read this table; there is no other place that knows
//! which model copies what.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// Everything copied, /usr included: private installs possible.
    Separate,
    /// /usr bind-mounted read-only from the host: fast creation, shared programs.
    Joint,
}

impl Model {
    pub fn as_str(self) -> &'static str {
        match self {
            Model::Separate => "separate",
            Model::Joint => "joint",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model's name that is neither.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model `{0}` must be `joint` or `separate`")]
pub struct UnknownModel(pub String);

impl FromStr for Model {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<Model, UnknownModel> {
        match s.trim() {
            "separate" => Ok(Model::Separate),
            "joint" => Ok(Model::Joint),
            other => Err(UnknownModel(other.into())),
        }
    }
}

/// What happens to one top-level path of the container root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Copied from the source tree (with [`EXCLUDED`] applied).
    Copy,
    /// Bind-mounted read-only from the source tree at start; the root holds an empty mount point.
    BindReadOnly,
    /// As on the source: a symlink stays the same symlink (`/bin -> usr/bin` on merged-/usr
    /// hosts), a real directory is copied, and a path the source lacks is not created.
    Mirror,
    /// Mounted at start by libvirt or systemd; the root holds an empty directory of this mode.
    AtStart(u32),
    /// An empty directory of this mode.
    Empty(u32),
    /// The directory with only the source's `.bashrc` in it.
    BashrcOnly,
}

pub struct Entry {
    /// Relative to the root, without a leading `/`.
    pub path: &'static str,
    pub separate: Action,
    pub joint: Action,
}

impl Entry {
    pub fn action(&self, model: Model) -> Action {
        match model {
            Model::Separate => self.separate,
            Model::Joint => self.joint,
        }
    }
}

const fn same(path: &'static str, action: Action) -> Entry {
    Entry { path, separate: action, joint: action }
}

/// The talk's tables, "Separate model (2/2)" and "Joint model (2/2)", row for row.
/// lib32 and libx32 follow lib64: mirrored where a (multi-arch) host has them.
pub const ENTRIES: &[Entry] = &[
    Entry { path: "usr", separate: Action::Copy, joint: Action::BindReadOnly },
    same("etc", Action::Copy),
    same("var", Action::Copy),
    same("bin", Action::Mirror),
    same("sbin", Action::Mirror),
    same("lib", Action::Mirror),
    same("lib64", Action::Mirror),
    same("lib32", Action::Mirror),
    same("libx32", Action::Mirror),
    same("dev", Action::AtStart(0o755)),
    same("proc", Action::AtStart(0o555)),
    same("sys", Action::AtStart(0o555)),
    same("tmp", Action::AtStart(0o1777)),
    same("run", Action::AtStart(0o755)),
    same("boot", Action::Empty(0o755)),
    same("home", Action::Empty(0o755)),
    same("media", Action::Empty(0o755)),
    same("mnt", Action::Empty(0o755)),
    same("opt", Action::Empty(0o755)),
    same("srv", Action::Empty(0o755)),
    same("root", Action::BashrcOnly),
];

/// The host directories a container of `model` sees bound read-only from `source`
/// (the joint model's /usr).
pub fn mounts(model: Model, source: &std::path::Path) -> Vec<crate::runtime::Mount> {
    ENTRIES
        .iter()
        .filter(|e| e.action(model) == Action::BindReadOnly)
        .map(|e| crate::runtime::Mount { source: source.join(e.path), target: std::path::Path::new("/").join(e.path), readonly: true })
        .collect()
}

/// How much of an excluded path is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Not created at all.
    Skip,
    /// The directory is created (owner, mode kept) but nothing inside it.
    Contents,
    /// The directory tree is kept with its owners and modes, but no files: services
    /// find their log or cache directories with the right owner, without the host's data.
    Files,
}

pub struct Exclusion {
    /// Relative to the source root.
    pub path: &'static str,
    pub prune: Prune,
    pub why: &'static str,
}

/// What a container does not inherit from the host even though its parent is copied.
pub const EXCLUDED: &[Exclusion] = &[
    Exclusion { path: "var/log", prune: Prune::Files, why: "the host's logs" },
    Exclusion { path: "var/log/journal", prune: Prune::Contents, why: "the host's journal, filed under the host's machine-id" },
    Exclusion { path: "var/tmp", prune: Prune::Contents, why: "temporary files" },
    Exclusion { path: "var/crash", prune: Prune::Contents, why: "the host's crash dumps" },
    Exclusion { path: "var/lib/systemd/coredump", prune: Prune::Contents, why: "the host's core dumps" },
    Exclusion { path: "var/cache/apt", prune: Prune::Files, why: "downloaded packages and apt's caches" },
    Exclusion { path: "var/cache/man", prune: Prune::Contents, why: "man page cache" },
    Exclusion { path: "var/cache/dnf", prune: Prune::Contents, why: "downloaded packages and metadata" },
    Exclusion { path: "var/cache/yum", prune: Prune::Contents, why: "downloaded packages and metadata" },
    Exclusion { path: "var/cache/PackageKit", prune: Prune::Contents, why: "downloaded packages" },
    Exclusion { path: "var/lib/libvirt", prune: Prune::Contents, why: "the host's libvirt state: its domains, networks and leases" },
    Exclusion { path: "var/lib/dhcp", prune: Prune::Contents, why: "the host's DHCP leases" },
    Exclusion { path: "var/lib/systemd/random-seed", prune: Prune::Skip, why: "the host's entropy seed must not be shared" },
    Exclusion { path: "var/lib/dbus/machine-id", prune: Prune::Skip, why: "the host's machine-id; see rootfs::identity" },
    Exclusion { path: "etc/machine-id", prune: Prune::Skip, why: "the host's machine-id; a new one is written" },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_differ_only_in_usr() {
        for e in ENTRIES {
            if e.path == "usr" {
                assert_eq!(e.action(Model::Separate), Action::Copy);
                assert_eq!(e.action(Model::Joint), Action::BindReadOnly);
            } else {
                assert_eq!(e.separate, e.joint, "{}", e.path);
            }
        }
    }

    #[test]
    fn table_is_the_talks() {
        let find = |p: &str| ENTRIES.iter().find(|e| e.path == p).unwrap().separate;
        for p in ["etc", "var"] {
            assert_eq!(find(p), Action::Copy);
        }
        for p in ["bin", "sbin", "lib", "lib64"] {
            assert_eq!(find(p), Action::Mirror);
        }
        for p in ["dev", "proc", "sys", "tmp", "run"] {
            assert!(matches!(find(p), Action::AtStart(_)), "{p}");
        }
        for p in ["boot", "home", "media", "mnt", "opt", "srv"] {
            assert!(matches!(find(p), Action::Empty(_)), "{p}");
        }
        assert_eq!(find("root"), Action::BashrcOnly);
    }

    #[test]
    fn exclusions_lie_inside_copied_trees() {
        for x in EXCLUDED {
            let top = x.path.split('/').next().unwrap();
            let e = ENTRIES.iter().find(|e| e.path == top).unwrap();
            assert_eq!(e.separate, Action::Copy, "{}", x.path);
        }
    }

    #[test]
    fn model_parses() {
        assert_eq!("joint".parse::<Model>(), Ok(Model::Joint));
        assert_eq!(" separate ".parse::<Model>(), Ok(Model::Separate));
        assert!("Joint".parse::<Model>().is_err());
    }
}
