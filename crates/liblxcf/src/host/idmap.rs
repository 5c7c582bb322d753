//! ID-mapped mounts: a tree of the host seen with its owners shifted, without a
//! single owner changed on disk (mount_setattr(2) with MOUNT_ATTR_IDMAP, Linux 5.12
//! and later; ext4, btrfs, xfs and overlayfs allow it here).
//!
//! An unprivileged container's root user is host ID BASE (its user namespace maps
//! 0..65536 to BASE..BASE+65536). Its root directory and the host trees it shares
//! (the joint model's /usr) keep the owners the container sees (root's files are
//! owned by 0); mounted ID-mapped with the same map, they appear inside owned as on
//! the host: root's files by root, set-user-ID-root programs work, and what the
//! container writes lands on disk with the owners it sees.
//!
//! The kernel takes the map from a user namespace: a short-lived child process
//! unshares one, the parent (root) writes its maps and keeps a descriptor of it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use super::HostError;
use crate::error;

/// How many IDs a container gets.
pub const COUNT: u32 = 65536;

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A user namespace that maps 0..count to base..base+count, for uids and gids.
pub fn userns(base: u32, count: u32) -> Result<OwnedFd, HostError> {
    let fail = |what: &'static str| move |e: Errno| HostError::from(error::io(what, Path::new("/proc/self/ns/user"))(e));
    let (ready_r, ready_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(fail("make a pipe for"))?;
    let (done_r, done_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(fail("make a pipe for"))?;
    // SAFETY: the child makes only system calls (unshare, write, read, _exit) on
    // descriptors made before the fork; unshare(CLONE_NEWUSER) needs a process of one
    // thread, which a forked child is.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; the child leaves through _exit.
        unsafe {
            // Only its two pipe ends stay open: the copy of the other write end would
            // keep the read below from ever ending, and inherited descriptors (a lock
            // file's) would keep their flock held while it lives.
            let (a, b) = (ready_w.as_raw_fd().min(done_r.as_raw_fd()) as u32, ready_w.as_raw_fd().max(done_r.as_raw_fd()) as u32);
            for (lo, hi) in [(3, a.saturating_sub(1)), (a + 1, b - 1), (b + 1, u32::MAX)] {
                if lo <= hi {
                    libc::syscall(libc::SYS_close_range, lo, hi, 0);
                }
            }
            let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
            let _ = libc::write(ready_w.as_raw_fd(), [ok as u8].as_ptr().cast(), 1);
            let mut b = [0u8; 1];
            let _ = libc::read(done_r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    if pid < 0 {
        return Err(fail("fork a process for")(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))));
    }
    drop((ready_w, done_r));
    let result = (|| {
        let mut ok = [0u8; 1];
        let n = rustix::io::read(&ready_r, &mut ok).map_err(fail("wait for"))?;
        if n != 1 || ok[0] != 1 {
            return Err(HostError::NoUserns);
        }
        let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
        let map = format!("0 {base} {count}\n");
        for f in ["uid_map", "gid_map"] {
            let p = proc.join(f);
            std::fs::write(&p, &map).map_err(error::io("write", &p))?;
        }
        let ns = proc.join("ns/user");
        let fd = std::fs::File::open(&ns).map_err(error::io("open", &ns))?;
        Ok(OwnedFd::from(fd))
    })();
    drop(done_w);
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result
}

/// Mounts `source` at `target` (an existing directory) with the owners mapped by the
/// user namespace `userns`, read-only with `readonly`. Only `source` itself, not
/// what is mounted below it.
pub fn mount(source: &Path, target: &Path, userns: &OwnedFd, readonly: bool) -> Result<(), HostError> {
    let tree = clone_tree(source)?;
    if let Err(e) = map_owners(&tree, userns, readonly) {
        return Err(match e {
            Errno::INVAL | Errno::PERM | Errno::NOSYS | Errno::OPNOTSUPP => HostError::NoIdmap { path: source.to_path_buf() },
            e => error::io("map the owners of", source)(e).into(),
        });
    }
    rustix::mount::move_mount(&tree, c"", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(error::io("mount the owner-mapped tree at", target))?;
    Ok(())
}

/// A detached copy of the mount at `dir` (only that one, not those below it).
fn clone_tree(dir: &Path) -> Result<OwnedFd, HostError> {
    Ok(rustix::mount::open_tree(rustix::fs::CWD, dir, OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC)
        .map_err(error::io("clone the mount of", dir))?)
}

/// mount_setattr(2) with MOUNT_ATTR_IDMAP (and RDONLY) on a detached tree; libc and
/// rustix have no wrapper for it.
fn map_owners(tree: &OwnedFd, userns: &OwnedFd, readonly: bool) -> Result<(), Errno> {
    let mut attr = libc::mount_attr {
        attr_set: MOUNT_ATTR_IDMAP | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_fd().as_raw_fd() as u64,
    };
    // SAFETY: a descriptor we own, an empty path with AT_EMPTY_PATH, and a
    // mount_attr of the size we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
    }
    Ok(())
}

/// Whether something is mounted on `path` (statx's mount-root attribute).
pub fn is_mountpoint(path: &Path) -> bool {
    rustix::fs::statx(rustix::fs::CWD, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW, rustix::fs::StatxFlags::BASIC_STATS)
        .is_ok_and(|st| (st.stx_attributes & st.stx_attributes_mask).contains(rustix::fs::StatxAttributes::MOUNT_ROOT))
}

/// Whether the filesystem of `dir` can be mounted ID-mapped here (and user
/// namespaces work): tried on a clone of its mount, never attached anywhere.
pub fn supported(dir: &Path) -> Result<(), HostError> {
    let ns = userns(1 << 30, COUNT)?;
    map_owners(&clone_tree(dir)?, &ns, false).map_err(|_| HostError::NoIdmap { path: dir.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// As root (CI): a tree mounted ID-mapped shows its files with the owners
    /// shifted, and a read-only one refuses writes; nothing changes on disk.
    #[test]
    fn owners_are_shifted_by_the_mount_only() {
        if !rustix::process::geteuid().is_root() {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI runs the unit tests as root");
            return;
        }
        let t = tempfile::tempdir_in("/var/tmp").unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("f"), "x").unwrap();
        std::os::unix::fs::chown(src.join("f"), Some(0), Some(0)).unwrap();
        let ns = userns(2_000_000, COUNT).unwrap();
        // In a mount namespace of this thread's own, gone with it.
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: a mount namespace for this thread alone (it shares no fs state).
                unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS | rustix::thread::UnshareFlags::FS) }.unwrap();
                rustix::mount::mount_change(
                    c"/",
                    rustix::mount::MountPropagationFlags::REC | rustix::mount::MountPropagationFlags::PRIVATE,
                )
                .unwrap();
                mount(&src, &dst, &ns, true).unwrap();
                let m = std::fs::metadata(dst.join("f")).unwrap();
                assert_eq!((m.uid(), m.gid()), (2_000_000, 2_000_000));
                assert_eq!(std::fs::write(dst.join("g"), "y").unwrap_err().raw_os_error(), Some(libc::EROFS));
            })
            .join()
            .unwrap();
        });
        assert_eq!(std::fs::metadata(src.join("f")).unwrap().uid(), 0, "on disk as it was");
        supported(t.path()).unwrap();
    }
}
