use super::*;
use rustix::fs::{Mode, Timespec, Timestamps, XattrFlags};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

/// Every kind of entry a root holds, made without needing root.
fn sample(src: &Path) {
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::create_dir(src.join("empty")).unwrap();
    fs::write(src.join("a/file"), b"hello").unwrap();
    fs::write(src.join("a/exe"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("a/exe"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(src.join("a/b"), fs::Permissions::from_mode(0o1750)).unwrap();
    fs::hard_link(src.join("a/file"), src.join("a/b/link")).unwrap();
    symlink("../file", src.join("a/b/rel")).unwrap();
    symlink("/etc/passwd", src.join("a/abs")).unwrap();
    symlink("nowhere", src.join("a/dangling")).unwrap();
    // A symlink to a directory must be copied as a link, never entered.
    symlink("/usr", src.join("a/usrlink")).unwrap();
    rustix::fs::mknodat(CWD, src.join("a/fifo"), FileType::Fifo, Mode::from_raw_mode(0o640), 0).unwrap();
    // 4 MiB sparse file with 4 KiB of data in the middle.
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(4 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_at(&[7u8; 4096], 2 << 20).unwrap();
    // Nanosecond times, set last.
    let t = Timestamps {
        last_access: Timespec { tv_sec: 1_000_000_000, tv_nsec: 123_456_789 },
        last_modification: Timespec { tv_sec: 1_100_000_000, tv_nsec: 987_654_321 },
    };
    for p in ["a/file", "a/b/c", "a/b", "a"] {
        rustix::fs::utimensat(CWD, src.join(p), &t, AtFlags::empty()).unwrap();
    }
    rustix::fs::utimensat(CWD, src.join("a/abs"), &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

#[test]
fn copies_every_kind_faithfully() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    fs::create_dir(&src).unwrap();
    sample(&src);
    let stats = copy_tree(&src, &dst, &Options::default()).unwrap();
    // First, before reading anything moves an atime (relatime); compared with the
    // times set, as the copy itself read the source.
    for p in ["a/file", "a/b/c", "a/b", "a", "a/abs"] {
        let (s, d) = (meta(&src.join(p)), meta(&dst.join(p)));
        assert_eq!((d.mtime(), d.mtime_nsec()), (1_100_000_000, 987_654_321), "mtime of {p}");
        assert_eq!((d.atime(), d.atime_nsec()), (1_000_000_000, 123_456_789), "atime of {p}");
        assert_eq!((s.uid(), s.gid()), (d.uid(), d.gid()), "owner of {p}");
    }
    assert_eq!(fs::read(dst.join("a/file")).unwrap(), b"hello");
    assert_eq!(meta(&dst.join("a/exe")).mode() & 0o7777, 0o4755);
    assert_eq!(meta(&dst.join("a/b")).mode() & 0o7777, 0o1750);
    assert_eq!(meta(&dst.join("a/file")).ino(), meta(&dst.join("a/b/link")).ino(), "hard link kept");
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(fs::read_link(dst.join("a/b/rel")).unwrap(), Path::new("../file"));
    assert_eq!(fs::read_link(dst.join("a/abs")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(fs::read_link(dst.join("a/dangling")).unwrap(), Path::new("nowhere"));
    assert!(meta(&dst.join("a/usrlink")).file_type().is_symlink());
    assert!(fs::metadata(dst.join("empty")).unwrap().is_dir());
    use std::os::unix::fs::FileTypeExt;
    assert!(meta(&dst.join("a/fifo")).file_type().is_fifo());
    assert_eq!(meta(&dst.join("a/fifo")).mode() & 0o7777, 0o640);
    let (s, d) = (meta(&src.join("sparse")), meta(&dst.join("sparse")));
    assert_eq!(d.len(), 4 << 20);
    assert!(d.blocks() <= s.blocks() + 8, "sparse file stays sparse: {} vs {} blocks", d.blocks(), s.blocks());
    assert_eq!(fs::read(src.join("sparse")).unwrap(), fs::read(dst.join("sparse")).unwrap());
}

#[test]
fn user_xattrs_are_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    if rustix::fs::setxattr(src.join("f"), "user.lxcf", b"v1", XattrFlags::empty()).is_err() {
        eprintln!("skipped: {} does not take user xattrs", tmp.path().display());
        return;
    }
    rustix::fs::setxattr(&src, "user.dir", b"d", XattrFlags::empty()).unwrap();
    let dst = tmp.path().join("dst");
    copy_tree(&src, &dst, &Options::default()).unwrap();
    assert_eq!(get_xattr(&dst.join("f"), "user.lxcf").unwrap(), b"v1");
    assert_eq!(get_xattr(&dst, "user.dir").unwrap(), b"d");
}

#[test]
fn ownership_and_devices_when_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("owned"), b"x").unwrap();
    fs::set_permissions(src.join("owned"), fs::Permissions::from_mode(0o2755)).unwrap();
    std::os::unix::fs::lchown(src.join("owned"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(src.join("owned"), fs::Permissions::from_mode(0o2755)).unwrap();
    rustix::fs::mknodat(CWD, src.join("null"), FileType::CharacterDevice, Mode::from_raw_mode(0o666), rustix::fs::makedev(1, 3)).unwrap();
    symlink("x", src.join("l")).unwrap();
    std::os::unix::fs::lchown(src.join("l"), Some(42), Some(43)).unwrap();
    let dst = tmp.path().join("dst");
    copy_tree(&src, &dst, &Options::default()).unwrap();
    let m = meta(&dst.join("owned"));
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o2755));
    let m = meta(&dst.join("null"));
    assert_eq!(m.rdev(), meta(&src.join("null")).rdev());
    let m = meta(&dst.join("l"));
    assert_eq!((m.uid(), m.gid()), (42, 43));
}

/// A FUSE mount whose daemon is gone (here: the /dev/fuse descriptor closed
/// before any request was answered) fails every stat with ENOTCONN; like any
/// other mount it is left out, and the rest is copied.
#[test]
fn a_fuse_mount_without_its_daemon_is_left_out() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("dead")).unwrap();
    fs::write(src.join("kept"), b"x").unwrap();
    let fuse = fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").unwrap();
    let data = format!("fd={},rootmode=40000,user_id=0,group_id=0", std::os::fd::AsRawFd::as_raw_fd(&fuse));
    let data = std::ffi::CString::new(data).unwrap();
    rustix::mount::mount("lxcf-test", src.join("dead"), "fuse", rustix::mount::MountFlags::empty(), data.as_c_str()).unwrap();
    drop(fuse);
    let unmount = src.join("dead");
    let _unmount = Unmount(unmount);
    assert_eq!(rustix::fs::statx(CWD, src.join("dead"), AtFlags::empty(), StatxFlags::BASIC_STATS).unwrap_err(), Errno::NOTCONN);
    let dst = tmp.path().join("dst");
    let stats = copy_tree(&src, &dst, &Options::default()).unwrap();
    assert!(dst.join("kept").exists());
    assert!(!dst.join("dead").exists());
    assert_eq!(stats.other_mounts, 1);
}

struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn prune_and_skip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("log/app/sub")).unwrap();
    fs::write(src.join("log/syslog"), b"x").unwrap();
    fs::write(src.join("log/app/app.log"), b"x").unwrap();
    fs::set_permissions(src.join("log/app"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir_all(src.join("tmp/junk")).unwrap();
    fs::write(src.join("tmp/junk/f"), b"x").unwrap();
    fs::write(src.join("seed"), b"x").unwrap();
    fs::create_dir_all(src.join("lib/lxc/c1/etc")).unwrap();
    fs::write(src.join("keep"), b"x").unwrap();
    let opts = Options {
        prune: vec![("log".into(), Prune::Files), ("tmp".into(), Prune::Contents), ("seed".into(), Prune::Skip)],
        skip_dirs: vec![dir_id(&src.join("lib/lxc")).unwrap()],
    };
    let dst = tmp.path().join("dst");
    copy_tree(&src, &dst, &opts).unwrap();
    assert!(dst.join("log/app/sub").is_dir());
    assert_eq!(meta(&dst.join("log/app")).mode() & 0o777, 0o750);
    assert!(!dst.join("log/syslog").exists());
    assert!(!dst.join("log/app/app.log").exists());
    assert!(dst.join("tmp").is_dir());
    assert_eq!(fs::read_dir(dst.join("tmp")).unwrap().count(), 0);
    assert!(!dst.join("seed").exists());
    assert!(dst.join("lib").is_dir());
    assert!(!dst.join("lib/lxc").exists(), "lxcf's own root is never copied");
    assert!(dst.join("keep").exists());
}

#[test]
fn existing_destination_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::create_dir(tmp.path().join("dst")).unwrap();
    let e = copy_tree(&src, &tmp.path().join("dst"), &Options::default()).unwrap_err();
    assert!(e.to_string().contains("dst"), "{e}");
}

/// Callers that hold directories open name them as `/proc/self/fd/N` (merge does):
/// the parents are found through those links; the top of the source is still never
/// a symlink followed.
#[test]
fn parents_given_through_open_descriptors() {
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir_all(src.join("tree")).unwrap();
    fs::create_dir(&dst).unwrap();
    sample(&src.join("tree"));
    let (s, d) = (fs::File::open(&src).unwrap(), fs::File::open(&dst).unwrap());
    let fd = |f: &fs::File, rel: &str| PathBuf::from(format!("/proc/self/fd/{}/{rel}", f.as_raw_fd()));
    copy_tree(&fd(&s, "tree"), &fd(&d, "tree"), &Options::default()).unwrap();
    assert_eq!(fs::read(dst.join("tree/a/file")).unwrap(), b"hello");
    assert_eq!(meta(&dst.join("tree/a/exe")).mode() & 0o7777, 0o4755);
    copy_entry(&fd(&s, "tree/sparse"), &fd(&d, "sparse")).unwrap();
    assert_eq!(fs::read(dst.join("sparse")).unwrap(), fs::read(src.join("tree/sparse")).unwrap());

    symlink("tree", src.join("link")).unwrap();
    copy_tree(&src.join("link"), &dst.join("link"), &Options::default()).unwrap_err();
    assert!(fs::symlink_metadata(dst.join("link")).is_err(), "nothing made");
}

/// A live host's tree changes while it is copied: links and FIFOs that vanish at
/// any moment (between the directory read, the copy and the reading of their
/// xattrs) are skipped or copied as they were, never an error.
#[test]
fn entries_vanishing_during_the_copy_are_not_errors() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("e{i}")).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, n) in names.iter().enumerate() {
                    let p = src.join(n);
                    let _ = fs::remove_file(&p);
                    if i % 2 == 0 {
                        let _ = symlink("target", &p);
                    } else {
                        let _ = rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o600), 0);
                    }
                }
            }
        });
        let result = (|| {
            for round in 0..30 {
                copy_tree(&src, &t.path().join(format!("dst{round}")), &Options::default())?;
            }
            Ok::<(), CopyError>(())
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result.unwrap();
    });
}

/// A regular file replaced by a FIFO after its directory was read (a running
/// container's root user can do that to a tree lxcf copies) must not block the copy:
/// opening a FIFO for reading waits for a writer. A regular file replaced by another
/// is copied as the new one.
#[test]
fn a_fifo_swapped_in_for_a_file_does_not_hang_the_copy() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("fifo"), b"a file, then a FIFO").unwrap();
    fs::write(src.join("swapped"), b"old").unwrap();
    let root = src.clone();
    let swap = move |rel: &Path| {
        let src = &root;
        let p = src.join(rel);
        if rel == Path::new("fifo") && fs::symlink_metadata(&p).unwrap().is_file() {
            fs::remove_file(&p).unwrap();
            rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        } else if rel == Path::new("swapped") {
            fs::write(src.join("new"), b"the new one").unwrap();
            fs::rename(src.join("new"), &p).unwrap();
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (s, d) = (src.clone(), t.path().join("dst"));
    // Its own thread, not scoped: a blocked open would never return, and the test
    // must fail rather than hang.
    let swap: &'static (dyn Fn(&Path) + Sync) = Box::leak(Box::new(swap));
    std::thread::spawn(move || {
        let ctl = Control { before_open: Some(swap), ..Control::default() };
        let _ = tx.send(copy_trees(&[Job::new(&s, &d, Options::default())], &ctl).map_err(|e| e.to_string()));
    });
    // Far more than the copy takes; a blocked open never returns at all.
    match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(r) => r.map(drop).unwrap(),
        Err(_) => panic!("the copy hung on a FIFO"),
    }
    let dst = t.path().join("dst");
    assert!(!dst.join("fifo").exists(), "no longer what was listed: left out");
    assert_eq!(fs::read(dst.join("swapped")).unwrap(), b"the new one");
}
