//! The container's own view of its machine: lxcfs's files over the container's
//! /proc/{meminfo,cpuinfo,stat,uptime,loadavg,diskstats,swaps} and
//! /sys/devices/system/cpu, so that `free`, `top`, `uptime`, monitoring agents and
//! databases size themselves for the container's limits, not for the host.
//!
//! lxcfs (a FUSE file system, one daemon for the host, mounted at `/var/lib/lxcfs`)
//! answers each read for the cgroups of the process that reads. lxcf binds its files
//! into a running container's mount namespace from the host: each file is cloned as
//! a detached mount here (open_tree(2)), then a forked child enters the container's
//! mount namespace and attaches the clones over the container's files
//! (move_mount(2)). Nothing is mounted on the host and nothing is written into the
//! container's root, so stopping or erasing a container leaves no lxcfs mount
//! behind: the mounts die with its namespace. The same call works for privileged
//! and unprivileged containers (the host's root may enter any mount namespace).
//!
//! lxcfs restarted (an upgrade) or killed: the mounts in running containers still
//! name the old FUSE connection and fail with "Transport endpoint is not
//! connected". Binding again replaces each mount of an lxcfs (its device number is
//! not the live one's) by a clone of the live one; `lxcf lxcfs` does that for every
//! running container, and lxcf's start script for lxcfs (and the systemd drop-in)
//! run it once lxcfs is up.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::mount::OpenTreeFlags;

use super::HostError;
use crate::error;

/// Where lxcfs is mounted on hosts that package it.
pub const DIR: &str = "/var/lib/lxcfs";

/// What lxcf binds, relative to lxcfs's mount and to the container's `/`.
pub const FILES: [&str; 8] =
    ["proc/meminfo", "proc/cpuinfo", "proc/stat", "proc/uptime", "proc/loadavg", "proc/diskstats", "proc/swaps", "sys/devices/system/cpu"];

/// Whether a running container reads lxcfs's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Every file lxcfs offers is the running lxcfs's.
    On,
    /// Some are an lxcfs that is gone (restarted or killed): `lxcf lxcfs` binds them again.
    Stale,
    /// Some or all are the kernel's (lxcfs was not running when it started).
    Off,
}

impl View {
    pub fn as_str(self) -> &'static str {
        match self {
            View::On => "on",
            View::Stale => "stale",
            View::Off => "off",
        }
    }
}

/// The running lxcfs's device number (`major:minor`, as mountinfo writes it), or
/// `None` when lxcfs is not mounted at `dir` or its daemon is gone.
pub fn live_device(dir: &Path) -> Option<String> {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    let fs = rustix::fs::statfs(dir).ok()?;
    if fs.f_type as i64 != FUSE_SUPER_MAGIC {
        return None;
    }
    // A dead FUSE mount still answers statfs on its mount point from the cache at
    // times; a file below it does not.
    rustix::fs::stat(dir.join("proc/meminfo")).ok()?;
    let st = rustix::fs::stat(dir).ok()?;
    Some(format!("{}:{}", rustix::fs::major(st.st_dev), rustix::fs::minor(st.st_dev)))
}

/// One mount of a mount table: its device, where it is, its type.
struct Mount<'a> {
    dev: &'a str,
    at: PathBuf,
    fstype: &'a str,
}

fn mounts(mountinfo: &str) -> Vec<Mount<'_>> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some(Mount { dev: f.get(2)?, at: PathBuf::from(super::cgroup::unescape_mountinfo(f.get(4)?)), fstype: f.get(sep + 1)? })
        })
        .collect()
}

/// The container's view, from its init's mount table. `live`: the running lxcfs's
/// device; `offered`: the files it serves (all of [`FILES`] when it is not running).
pub fn view(mountinfo: &str, live: Option<&str>, offered: &[&str]) -> View {
    let table = mounts(mountinfo);
    let mut stale = false;
    let mut all_on = true;
    for f in offered {
        let at = Path::new("/").join(f);
        // The last mount listed on a path is the one on top.
        match table.iter().rev().find(|m| m.at == at) {
            Some(m) if m.fstype == "fuse.lxcfs" => {
                if Some(m.dev) != live {
                    stale = true;
                }
            }
            _ => all_on = false,
        }
    }
    if stale {
        View::Stale
    } else if all_on && live.is_some() {
        View::On
    } else {
        View::Off
    }
}

/// The files of [`FILES`] that the lxcfs at `dir` serves (an older lxcfs has fewer).
pub fn offered(dir: &Path) -> Vec<&'static str> {
    FILES.iter().copied().filter(|f| dir.join(f).exists()).collect()
}

/// Binds the lxcfs at `dir` into the mount namespace of process `init` (`proc`:
/// the host's /proc), over whatever lxcfs mounts are there already. Returns how many
/// files it bound.
pub fn bind(proc: &Path, dir: &Path, init: u32) -> Result<usize, HostError> {
    let live = live_device(dir).ok_or(HostError::LxcfsDown)?;
    let mi_path = proc.join(init.to_string()).join("mountinfo");
    let mi = std::fs::read_to_string(&mi_path).map_err(error::io("read", &mi_path))?;
    let table = mounts(&mi);
    let offered = offered(dir);
    let mut steps = Vec::new();
    for f in &offered {
        let src = dir.join(f);
        let tree = rustix::mount::open_tree(rustix::fs::CWD, &src, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC)
            .map_err(error::io("clone the mount of", &src))?;
        let at = Path::new("/").join(f);
        // Each lxcfs mount on it goes first: a dead one answers nothing, and a live
        // one would only be stacked on.
        let old = table.iter().filter(|m| m.at == at && m.fstype == "fuse.lxcfs").count();
        let target = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).expect("no NUL in lxcf's paths");
        steps.push((tree, target, old));
    }
    let ns_path = proc.join(init.to_string()).join("ns/mnt");
    let ns = OwnedFd::from(std::fs::File::open(&ns_path).map_err(error::io("open", &ns_path))?);
    in_namespace(&ns, &steps).map_err(|(i, e)| {
        let at = steps.get(i).map_or_else(|| ns_path.clone(), |s| PathBuf::from(s.1.to_string_lossy().into_owned()));
        HostError::from(error::io("bind lxcfs's file over (in the container)", &at)(e))
    })?;
    tracing::debug!("bound {} lxcfs files (device {live}) into the mount namespace of pid {init}", steps.len());
    Ok(steps.len())
}

/// In a forked child (setns into a mount namespace needs a process of one thread):
/// enter `ns`, unmount each step's old mounts, attach its tree. Err: the failed
/// step's index (`usize::MAX`: entering) and errno.
fn in_namespace(ns: &OwnedFd, steps: &[(OwnedFd, std::ffi::CString, usize)]) -> Result<(), (usize, rustix::io::Errno)> {
    use rustix::io::Errno;
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| (usize::MAX, e))?;
    // SAFETY: between fork and _exit the child makes only system calls, on
    // descriptors and C strings made before the fork: no allocation, no lock.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            let report = |step: usize, errno: i32| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&(step as u64).to_ne_bytes());
                b[8..12].copy_from_slice(&errno.to_ne_bytes());
                libc::write(w.as_raw_fd(), b.as_ptr().cast(), 16);
                libc::_exit(1);
            };
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                report(usize::MAX, *libc::__errno_location());
            }
            for (i, (tree, at, old)) in steps.iter().enumerate() {
                for _ in 0..*old {
                    libc::umount2(at.as_ptr(), libc::MNT_DETACH);
                }
                let rc = libc::syscall(
                    libc::SYS_move_mount,
                    tree.as_fd().as_raw_fd(),
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    at.as_ptr(),
                    0x0000_0004 as libc::c_uint, // MOVE_MOUNT_F_EMPTY_PATH
                );
                if rc != 0 {
                    report(i, *libc::__errno_location());
                }
            }
            libc::_exit(0);
        }
    }
    if pid < 0 {
        return Err((usize::MAX, Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))));
    }
    drop(w);
    let mut b = [0u8; 16];
    let n = rustix::io::read(&r, &mut b).unwrap_or(0);
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if n == 16 {
        let step = u64::from_ne_bytes(b[..8].try_into().expect("8 bytes")) as usize;
        let errno = i32::from_ne_bytes(b[8..12].try_into().expect("4 bytes"));
        return Err((step, Errno::from_raw_os_error(errno)));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err((usize::MAX, Errno::CHILD));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
100 90 0:50 / / rw - ext4 /dev/vda rw
101 100 0:5 / /proc rw - proc proc rw
102 101 0:60 /meminfo /proc/meminfo rw - fuse fuse rw
103 102 0:77 /proc/meminfo /proc/meminfo rw - fuse.lxcfs lxcfs rw
104 101 0:77 /proc/uptime /proc/uptime rw - fuse.lxcfs lxcfs rw
";

    #[test]
    fn the_view_follows_the_top_mounts() {
        let two = ["proc/meminfo", "proc/uptime"];
        assert_eq!(view(TABLE, Some("0:77"), &two), View::On);
        // lxcfs restarted: a new device.
        assert_eq!(view(TABLE, Some("0:78"), &two), View::Stale);
        assert_eq!(view(TABLE, None, &two), View::Stale);
        // A file it offers that is not bound.
        assert_eq!(view(TABLE, Some("0:77"), &["proc/meminfo", "proc/stat"]), View::Off);
        // libvirt's own meminfo alone.
        let bare: String = TABLE.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(view(&bare, Some("0:77"), &two), View::Off);
    }

    #[test]
    fn no_lxcfs_at_a_plain_directory() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(live_device(d.path()), None);
        assert!(matches!(bind(Path::new("/proc"), d.path(), std::process::id()), Err(HostError::LxcfsDown)));
    }
}
