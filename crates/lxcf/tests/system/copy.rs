//! The copy engine, checked by rsync: a tree holding every kind of file, copied by
//! liblxcf on ext4 (the host's filesystem), and on btrfs and xfs images where the
//! data must be shared by reflinks.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use liblxcf::rootfs::copy::{copy_tree, Options};

use crate::common::*;

fn sh(cmd: &str) {
    run(Command::new("sh").arg("-c").arg(cmd)).ok(cmd);
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every kind of file and metadata a root holds.
fn every_kind(src: &Path) {
    let p = |s: &str| src.join(s);
    for d in ["a/b/c", "empty", "sticky", "sgid", "private", "acl-dir"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    chmod(&p("sticky"), 0o1777);
    chmod(&p("sgid"), 0o2775);
    chmod(&p("private"), 0o700);
    std::fs::write(p("a/file"), b"hello").unwrap();
    for (f, mode) in [("a/setuid", 0o4755), ("a/setgid", 0o2755), ("a/none", 0o000), ("a/sticky-file", 0o1644)] {
        std::fs::write(p(f), b"#!/bin/sh\n").unwrap();
        chmod(&p(f), mode);
    }
    std::fs::write(p("a/empty"), b"").unwrap();
    // A few MiB of data, so copy_file_range and reflinks have real extents.
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(p("big"), &big).unwrap();
    // Sparse: data at 1 MiB and 5 MiB of 8 MiB; and a file that is only a hole.
    let f = std::fs::File::create(p("sparse")).unwrap();
    f.set_len(8 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_at(&[7u8; 8192], 1 << 20).unwrap();
    f.write_at(&[9u8; 4096], 5 << 20).unwrap();
    std::fs::File::create(p("hole")).unwrap().set_len(1 << 20).unwrap();
    // Hard links, across directories.
    std::fs::hard_link(p("a/file"), p("a/b/link")).unwrap();
    std::fs::hard_link(p("a/file"), p("link2")).unwrap();
    std::fs::hard_link(p("big"), p("a/b/c/big-link")).unwrap();
    // Symlinks: relative, absolute, dangling, to a directory outside the tree.
    symlink("../file", p("a/b/rel")).unwrap();
    symlink("/etc/passwd", p("a/abs")).unwrap();
    symlink("nowhere", p("a/dangling")).unwrap();
    symlink("/usr", p("a/usrlink")).unwrap();
    // Special files.
    sh(&format!("mkfifo -m 0640 {}", p("fifo").display()));
    drop(std::os::unix::net::UnixListener::bind(p("socket")).unwrap());
    sh(&format!("mknod -m 0666 {} c 1 3 && mknod -m 0660 {} b 7 250", p("null").display(), p("blockdev").display()));
    std::fs::hard_link(p("fifo"), p("a/fifo-link")).unwrap();
    // Owners.
    std::fs::write(p("a/owned"), b"x").unwrap();
    std::os::unix::fs::lchown(p("a/owned"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(p("a/abs"), Some(42), Some(43)).unwrap();
    std::os::unix::fs::lchown(p("a/b"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::lchown(p("null"), Some(0), Some(5)).unwrap();
    // Set-ID bits go with chown: set them again, as a package would.
    std::fs::write(p("a/owned-setuid"), b"x").unwrap();
    std::os::unix::fs::lchown(p("a/owned-setuid"), Some(1234), Some(5678)).unwrap();
    chmod(&p("a/owned-setuid"), 0o6755);
    // Extended attributes: user.*, a file capability, POSIX ACLs (access and default).
    rustix::fs::setxattr(p("a/file"), "user.lxcf", b"v1", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::setxattr(p("a"), "user.dir", b"d", rustix::fs::XattrFlags::empty()).unwrap();
    std::fs::write(p("capped"), b"\x7fELF").unwrap();
    chmod(&p("capped"), 0o755);
    sh(&format!("setcap cap_net_raw,cap_net_admin+ep {}", p("capped").display()));
    std::fs::write(p("acl-file"), b"x").unwrap();
    sh(&format!("setfacl -m u:1234:rwx,g:5678:r {}", p("acl-file").display()));
    sh(&format!("setfacl -m u:1234:rx -d -m u:1234:rwx,g:5678:rx {}", p("acl-dir").display()));
    // Nanosecond times, directories' last (after their contents).
    for (f, t) in [
        ("a/file", "2001-02-03 04:05:06.123456789"),
        ("big", "2010-01-01 00:00:00.5"),
        ("a/b/c", "2002-03-04 05:06:07.987654321"),
        ("a/b", "2003-01-01 00:00:00.000000001"),
        ("a", "2004-01-01 12:00:00.4"),
    ] {
        sh(&format!("touch -h -d '{t}' {}", p(f).display()));
    }
    sh(&format!("touch -h -d '2005-05-05 05:05:05.555555555' {}", p("a/abs").display()));
}

/// rsync's verdict on `dst` against `src`: every difference it sees, one per line
/// (nothing for a faithful copy). `--modify-window=-1`: nanoseconds count too.
fn rsync_diff(src: &Path, dst: &Path) -> String {
    let o = run(Command::new("rsync")
        .args(["-aHAXn", "--modify-window=-1", "--itemize-changes", "--delete"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display())))
    .ok("rsync");
    o.stdout
}

/// Copies an every-kind tree made under `dir` with the copy engine and checks it.
/// Returns the copy's statistics.
fn check_copy(dir: &Path) -> liblxcf::rootfs::copy::Stats {
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    std::fs::create_dir(&src).unwrap();
    every_kind(&src);
    let stats = copy_tree(&src, &dst, &Options::default()).expect("copy");
    assert_eq!(rsync_diff(&src, &dst), "", "rsync sees differences");
    // What rsync does not compare: holes, and the capability by another tool.
    let (s, d) = (std::fs::metadata(src.join("sparse")).unwrap(), std::fs::metadata(dst.join("sparse")).unwrap());
    assert!(d.blocks() <= s.blocks() + 8, "sparse stays sparse: {} blocks, source {}", d.blocks(), s.blocks());
    assert!(std::fs::metadata(dst.join("hole")).unwrap().blocks() <= 8);
    let caps = run(Command::new("getcap").arg(dst.join("capped"))).ok("getcap").stdout;
    assert!(caps.contains("cap_net_admin,cap_net_raw=ep"), "{caps}");
    assert_eq!(stats.hardlinks, 4, "{stats:?}");
    // The check itself sees a lost capability and a moved nanosecond.
    sh(&format!(
        "setcap -r {0} && touch -h -d '2001-02-03 04:05:06.123456788' {1}",
        dst.join("capped").display(),
        dst.join("a/file").display()
    ));
    let diff = rsync_diff(&src, &dst);
    assert!(diff.contains("capped") && diff.contains("a/file"), "{diff}");
    stats
}

#[test]
fn every_kind_of_file_survives_a_copy() {
    if !host_ready() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("lxcf-copy-").tempdir().unwrap();
    let stats = check_copy(tmp.path());
    assert_eq!(stats.reflinked, 0, "ext4 has no reflinks");
    assert_eq!(stats.files, 13, "{stats:?}");
}

#[test]
fn another_mount_inside_the_tree_is_not_entered() {
    if !host_ready() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("lxcf-copy-").tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("m")).unwrap();
    std::fs::write(src.join("kept"), b"x").unwrap();
    let img = Image::new("xfs", tmp.path().join("m.img"), &src.join("m"));
    std::fs::write(img.mnt.join("other-fs"), b"x").unwrap();
    let stats = copy_tree(&src, &tmp.path().join("dst"), &Options::default()).expect("copy");
    drop(img);
    assert_eq!(stats.other_mounts, 1);
    assert!(tmp.path().join("dst/kept").exists());
    assert!(!tmp.path().join("dst/m").exists(), "the mount point itself is another filesystem's root");
}

fn reflinks_on(fs: &str) {
    if !host_ready() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("lxcf-copy-").tempdir().unwrap();
    let img = Image::new(fs, tmp.path().join(format!("{fs}.img")), &tmp.path().join("mnt"));
    let stats = check_copy(&img.mnt);
    // Every non-empty regular file but the all-hole one is a reflink.
    assert!(stats.reflinked >= 9, "{stats:?}");
    // filefrag (e2fsprogs) reads the extent map: the copy's extents are shared.
    let frag = run(Command::new("filefrag").arg("-v").arg(img.mnt.join("dst/big"))).ok("filefrag").stdout;
    assert!(frag.contains("shared"), "{frag}");
}

#[test]
fn btrfs_copies_share_data() {
    reflinks_on("btrfs");
}

#[test]
fn xfs_copies_share_data() {
    reflinks_on("xfs");
}

/// Runs `COMMAND PATH` when the test ends (umount, swapoff), also when it fails.
struct Finally(&'static str, std::path::PathBuf);

impl Drop for Finally {
    fn drop(&mut self) {
        run(Command::new(self.0).arg(&self.1));
    }
}

/// A btrfs image (in a temporary directory) with an empty subvolume `host` on it,
/// the source of the builds below; `None` where the host cannot run the tests.
fn btrfs_source() -> Option<(tempfile::TempDir, Image, std::path::PathBuf)> {
    if !host_ready() {
        return None;
    }
    let tmp = tempfile::Builder::new().prefix("lxcf-copy-").tempdir().unwrap();
    let img = Image::new("btrfs", tmp.path().join("btrfs.img"), &tmp.path().join("mnt"));
    let src = img.mnt.join("host");
    sh(&format!("btrfs -q subvolume create {}", src.display()));
    Some((tmp, img, src))
}

/// A separate root built from a btrfs subvolume starts as its snapshot, trimmed to
/// the layout: rsync sees no difference from the root the copy engine builds from
/// the same source. The source holds what a snapshot gets wrong untrimmed: what
/// the layout leaves out, files under a mount point, lxcf's own root, and
/// subvolumes inside it (empty in a snapshot), one under a pruned path.
#[test]
fn a_root_from_a_btrfs_snapshot_equals_the_copy() {
    use liblxcf::rootfs;
    use liblxcf::rootfs::layout::{Action, Model, ENTRIES};
    let Some((_tmp, img, src)) = btrfs_source() else { return };
    let subvolume = |p: &Path| sh(&format!("btrfs -q subvolume create {}", p.display()));
    let p = |s: &str| src.join(s);
    for d in [
        "usr/bin",
        "usr/other",
        "etc/ssh",
        "var/log/app",
        "var/log/journal/abc",
        "var/tmp",
        "var/cache/apt/archives",
        "var/lib/pkg",
        "var/lib/dbus",
        "var/lib/lxcf/c1",
        "lib64",
        "home/user",
        "root",
        "opt/x",
        "srv",
    ] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    every_kind(&p("usr/kinds"));
    symlink("usr/bin", p("bin")).unwrap();
    for (f, data) in [
        ("usr/bin/prog", "#!/bin/sh\n"),
        ("lib64/ld.so", "ld"),
        ("etc/hostname", "thehost\n"),
        ("etc/machine-id", "0123\n"),
        ("var/log/syslog", "host log"),
        ("var/log/app/app.log", "host log"),
        ("var/log/journal/abc/system.journal", "j"),
        ("var/tmp/junk", "j"),
        ("var/cache/apt/archives/a.deb", "deb"),
        ("var/lib/pkg/status", "installed"),
        ("var/lib/dbus/machine-id", "0123\n"),
        ("var/lib/lxcf/c1/inside", "another container"),
        ("home/user/file", "u"),
        ("root/.bashrc", "# rc"),
        ("root/.secret", "s"),
        ("opt/x/y", "y"),
        ("usr/other/hidden", "under the mount"),
    ] {
        std::fs::write(p(f), data).unwrap();
    }
    // Subvolumes: one a copy enters (with one inside it), one in a pruned path
    // (a copy keeps its directories, not its files), one in an emptied path.
    subvolume(&p("var/lib/machines"));
    std::fs::write(p("var/lib/machines/image"), "machine").unwrap();
    subvolume(&p("var/lib/machines/inner"));
    std::fs::write(p("var/lib/machines/inner/f"), "inner").unwrap();
    subvolume(&p("var/cache/apt/sub"));
    std::fs::create_dir(p("var/cache/apt/sub/d")).unwrap();
    std::fs::write(p("var/cache/apt/sub/d/f"), "cached").unwrap();
    subvolume(&p("var/tmp/sv"));
    std::fs::write(p("var/tmp/sv/f"), "tmp").unwrap();
    sh(&format!(
        "touch -h -d '2003-03-03 03:03:03.3' {} {} {} {}",
        p("var/log").display(),
        p("var/lib").display(),
        p("var/cache/apt").display(),
        p("usr").display()
    ));
    // Another filesystem mounted inside /usr: a copy does not enter it.
    sh(&format!("mount -t tmpfs lxcf-test {}", p("usr/other").display()));
    let _tmpfs = Finally("umount", p("usr/other"));
    std::fs::write(p("usr/other/on-tmpfs"), "x").unwrap();

    // lxcf's own root, reached by another path, as the copy engine knows it: by identity.
    let skip = img.mnt.join("lxcf-root");
    std::fs::create_dir(&skip).unwrap();
    sh(&format!("mount --bind {} {}", p("var/lib/lxcf").display(), skip.display()));
    let _bind = Finally("umount", skip.clone());
    // chattr flags, which a snapshot keeps: on what the trim deletes, and in /etc,
    // where lxcf writes next.
    std::fs::write(p("etc/resolv.conf"), "nameserver 10.0.0.53\n").unwrap();
    // An attribute of the source's top, which a new root does not have.
    rustix::fs::setxattr(&src, "user.top", b"x", rustix::fs::XattrFlags::empty()).unwrap();
    sh(&format!(
        "chattr +a {} && chattr +i {} {}",
        p("var/log/app/app.log").display(),
        p("home/user/file").display(),
        p("etc/resolv.conf").display()
    ));
    let ctl = Default::default();
    let snap = img.mnt.join("snap");
    let built = rootfs::create(Model::Separate, &src, &snap, &[&skip], &ctl).expect("build from a snapshot");
    assert!(built.snapshot, "{built:?}");
    assert_eq!(built.backend, liblxcf::rootfs::storage::Backend::Btrfs);
    // Only the subvolumes were copied: image, inner/f; and directories.
    assert_eq!(built.stats.files, 2, "{built:?}");
    let copy = img.mnt.join("copy");
    std::fs::create_dir(&copy).unwrap();
    rootfs::build(Model::Separate, &src, &copy, &[&skip], &ctl).expect("copy");

    // What neither copies: made anew in both, at another time.
    for d in [&snap, &copy] {
        let made: Vec<_> =
            ENTRIES.iter().filter(|e| !matches!(e.separate, Action::Copy | Action::Mirror)).map(|e| d.join(e.path)).collect();
        run(Command::new("touch").args(["-h", "-d", "2000-01-01"]).arg(d).args(made)).ok("touch");
    }
    assert_eq!(rsync_diff(&copy, &snap), "", "rsync sees differences");
    // And it is what the layout wants, not just the same mistakes twice.
    let s = |r: &str| snap.join(r);
    assert_eq!(std::fs::read_to_string(s("var/lib/machines/inner/f")).unwrap(), "inner");
    assert!(s("var/cache/apt/sub/d").is_dir() && !s("var/cache/apt/sub/d/f").exists());
    assert!(s("var/log/app").is_dir() && !s("var/log/app/app.log").exists() && !s("var/log/syslog").exists());
    assert_eq!(std::fs::read_dir(s("var/tmp")).unwrap().count(), 0);
    assert!(!s("usr/other").exists(), "a mount point is another filesystem's root");
    assert!(!s("var/lib/lxcf").exists() && !s("etc/machine-id").exists());
    let lsattr = run(Command::new("lsattr").arg("-d").arg(s("etc/resolv.conf"))).ok("lsattr").stdout;
    assert!(!lsattr.split_whitespace().next().unwrap().contains('i'), "{lsattr}");
    assert_eq!(std::fs::read_dir(s("home")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s("opt")).unwrap().count(), 0);
    assert_eq!(std::fs::read_to_string(s("root/.bashrc")).unwrap(), "# rc");
    assert!(!s("root/.secret").exists());
    assert_eq!(std::fs::read_link(s("bin")).unwrap(), Path::new("usr/bin"));
    assert_eq!(std::fs::read_to_string(s("lib64/ld.so")).unwrap(), "ld");
    assert_eq!(rsync_diff(&p("usr/kinds"), &s("usr/kinds")), "");
    for d in ["var/log", "var/lib", "var/cache/apt", "usr"] {
        let (a, b) = (std::fs::metadata(p(d)).unwrap(), std::fs::metadata(s(d)).unwrap());
        assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()), "{d}: the source's time");
    }

    // The joint model copies no /usr: no snapshot (the trim would delete all of it).
    let joint = img.mnt.join("joint");
    let built = rootfs::create(Model::Joint, &src, &joint, &[&skip], &ctl).expect("joint");
    assert!(!built.snapshot && built.stats.files > 0, "{built:?}");
    // Nor from a source that is not a subvolume's top.
    let plain = img.mnt.join("plain");
    for d in ["usr/bin", "etc", "var"] {
        std::fs::create_dir_all(plain.join(d)).unwrap();
    }
    std::fs::write(plain.join("usr/bin/prog"), "p").unwrap();
    let built = rootfs::create(Model::Separate, &plain, &img.mnt.join("again"), &[&skip], &ctl).expect("plain source");
    assert!(!built.snapshot && built.stats.files == 1, "{built:?}");
    drop((_tmpfs, _bind));
    sh(&format!(
        "chattr -a -i {} {} {}",
        p("var/log/app/app.log").display(),
        p("home/user/file").display(),
        p("etc/resolv.conf").display()
    ));
    for d in ["snap", "joint", "again"] {
        liblxcf::rootfs::storage::remove_root(&img.mnt.join(d)).unwrap();
    }
}

/// btrfs does not snapshot a subvolume with an active swap file: the root is
/// copied instead, as on any other filesystem.
#[test]
fn a_source_with_an_active_swap_file_is_copied() {
    use liblxcf::rootfs::layout::Model;
    let Some((_tmp, img, src)) = btrfs_source() else { return };
    for d in ["usr/bin", "etc", "var"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("usr/bin/prog"), "p").unwrap();
    let swap = src.join("swapfile");
    sh(&format!("btrfs -q filesystem mkswapfile --size 16m {0} && swapon {0}", swap.display()));
    let on = Finally("swapoff", swap);
    let dest = img.mnt.join("c");
    let built = liblxcf::rootfs::create(Model::Separate, &src, &dest, &[], &Default::default()).expect("a copy");
    assert!(!built.snapshot && built.stats.files == 1, "{built:?}");
    assert_eq!(std::fs::read_to_string(dest.join("usr/bin/prog")).unwrap(), "p");
    drop(on);
}
