use super::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

/// Entries under a directory: path, type, mode, and contents or link target.
pub type Tree = Vec<(PathBuf, String)>;

/// Every entry under `dir`.
pub fn tree(dir: &Path) -> Tree {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.is_file() {
                format!("file {:o} {}", m.mode() & 0o7777, String::from_utf8_lossy(&fs::read(&p).unwrap()))
            } else {
                format!("special {:o} {}", m.mode(), m.rdev())
            };
            out.push((p.strip_prefix(dir).unwrap().to_path_buf(), what));
        }
    }
    out.sort();
    out
}

fn whiteout(p: &Path) {
    // Unprivileged since Linux 5.8, as overlayfs itself creates them.
    rustix::fs::mknodat(rustix::fs::CWD, p, FileType::CharacterDevice, Mode::from_raw_mode(0), 0).unwrap();
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A container tree and an upper directory with one of each kind of change.
fn sample(dst: &Path, src: &Path) {
    for d in ["a", "gonedir/sub", "opq", "typ", "keep"] {
        fs::create_dir_all(dst.join(d)).unwrap();
    }
    fs::write(dst.join("a/f"), "old").unwrap();
    fs::write(dst.join("a/untouched"), "same").unwrap();
    fs::write(dst.join("gone"), "x").unwrap();
    fs::write(dst.join("gonedir/sub/x"), "x").unwrap();
    fs::write(dst.join("opq/old"), "x").unwrap();
    fs::write(dst.join("typ/inside"), "x").unwrap();

    fs::create_dir_all(src.join("a")).unwrap();
    fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(src.join("a/f"), "new").unwrap();
    fs::write(src.join("a/added"), "added").unwrap();
    whiteout(&src.join("gone"));
    whiteout(&src.join("gonedir"));
    fs::create_dir(src.join("opq")).unwrap();
    fs::write(src.join("opq/fresh"), "fresh").unwrap();
    if is_root() {
        rustix::fs::setxattr(src.join("opq"), "trusted.overlay.opaque", b"y", XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(src.join("a"), "trusted.overlay.impure", b"y", XattrFlags::empty()).unwrap();
        rustix::fs::setxattr(src.join("a/f"), "trusted.overlay.origin", b"\0\x01", XattrFlags::empty()).unwrap();
    }
    fs::write(src.join("typ"), "now a file").unwrap();
    fs::create_dir_all(src.join("new/deep")).unwrap();
    fs::write(src.join("new/deep/file"), "deep").unwrap();
    symlink("a/f", src.join("link")).unwrap();
    fs::create_dir(src.join("empty.d")).unwrap();
}

fn run(kind: Kind, src: &Path, dst: &Path, hook: &mut dyn FnMut(&Path)) -> Result<Stats> {
    let (s, d) = (open(src).unwrap(), open(dst).unwrap());
    merge(&s, &d, &mut Merge { kind, dst_label: dst, after_entry: hook })
}

#[test]
fn overlay_upper_is_applied() {
    let t = tempfile::tempdir().unwrap();
    let (dst, src) = (t.path().join("dst"), t.path().join("src"));
    sample(&dst, &src);
    let stats = run(Kind::Overlay, &src, &dst, &mut |_| {}).unwrap();
    assert_eq!(fs::read_to_string(dst.join("a/f")).unwrap(), "new");
    assert_eq!(fs::read_to_string(dst.join("a/added")).unwrap(), "added");
    assert_eq!(fs::read_to_string(dst.join("a/untouched")).unwrap(), "same");
    assert_eq!(fs::metadata(dst.join("a")).unwrap().mode() & 0o7777, 0o750, "directory metadata applied");
    assert!(!dst.join("gone").exists() && !dst.join("gonedir").exists(), "whiteouts delete");
    assert_eq!(fs::read_to_string(dst.join("typ")).unwrap(), "now a file");
    assert_eq!(fs::read_to_string(dst.join("new/deep/file")).unwrap(), "deep");
    assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("a/f"));
    assert!(dst.join("keep").is_dir());
    if is_root() {
        assert!(!dst.join("opq/old").exists(), "an opaque directory replaces");
        assert_eq!(xattr_names(&dst.join("a/f"), None).unwrap(), Vec::<CString>::new(), "overlay xattrs dropped");
        assert!(xattr_names(&dst.join("opq"), None).unwrap().is_empty());
    }
    assert!(dst.join("opq/fresh").exists());
    assert_eq!(fs::read_dir(&src).unwrap().count(), 0, "the upper is consumed");
    assert!(stats.moved >= 6 && stats.removed >= 3, "{stats:?}");
}

/// A merge stopped after any entry (a crash) and run again gives the same tree as
/// one that ran through.
#[test]
fn interrupted_merge_resumes() {
    let t = tempfile::tempdir().unwrap();
    let (dst, src) = (t.path().join("ref/dst"), t.path().join("ref/src"));
    sample(&dst, &src);
    let mut total = 0;
    run(Kind::Overlay, &src, &dst, &mut |_| total += 1).unwrap();
    let want = tree(&dst);
    for stop in 0..total {
        let base = t.path().join(format!("run{stop}"));
        let (dst, src) = (base.join("dst"), base.join("src"));
        sample(&dst, &src);
        let mut n = 0;
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = run(Kind::Overlay, &src, &dst, &mut |_| {
                if n == stop {
                    panic!("crash");
                }
                n += 1;
            });
        }));
        assert!(crashed.is_err());
        run(Kind::Overlay, &src, &dst, &mut |_| {}).unwrap();
        assert_eq!(tree(&dst), want, "resumed after {stop} entries");
        assert_eq!(fs::read_dir(&src).unwrap().count(), 0);
    }
}

#[test]
fn symlinks_in_the_destination_are_replaced_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("file"), "host").unwrap();
    let (dst, src) = (t.path().join("dst"), t.path().join("src"));
    fs::create_dir_all(&dst).unwrap();
    symlink(outside.join("file"), dst.join("f")).unwrap();
    symlink("../outside/dir", dst.join("d")).unwrap();
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/planted"), "x").unwrap();
    fs::write(src.join("f"), "new").unwrap();
    let before = tree(&outside);

    // A deploy refuses to turn the link into a directory, and changes nothing.
    let (s, d) = (open(&src).unwrap(), open(&dst).unwrap());
    let e = check_deploy(&s, &d, &dst).unwrap_err();
    assert!(matches!(e, MergeError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("is a symlink in the destination but a directory"), "{e}");
    // An overlay commit replaces both links.
    run(Kind::Overlay, &src, &dst, &mut |_| {}).unwrap();
    assert_eq!(tree(&outside), before, "nothing outside changed");
    assert_eq!(fs::read_to_string(dst.join("f")).unwrap(), "new");
    assert!(dst.join("d/planted").is_file() && !fs::symlink_metadata(dst.join("d")).unwrap().file_type().is_symlink());
}

#[test]
fn deploy_adds_and_replaces_but_never_deletes() {
    let t = tempfile::tempdir().unwrap();
    let (dst, src) = (t.path().join("dst"), t.path().join("src"));
    fs::create_dir_all(dst.join("conf.d")).unwrap();
    fs::write(dst.join("conf.d/local"), "mine").unwrap();
    fs::write(dst.join("conf.d/app"), "old").unwrap();
    fs::create_dir_all(src.join("conf.d")).unwrap();
    fs::write(src.join("conf.d/app"), "new").unwrap();
    fs::write(src.join("conf.d/more"), "more").unwrap();
    let (s, d) = (open(&src).unwrap(), open(&dst).unwrap());
    check_deploy(&s, &d, &dst).unwrap();
    run(Kind::Deploy, &src, &dst, &mut |_| {}).unwrap();
    assert_eq!(fs::read_to_string(dst.join("conf.d/app")).unwrap(), "new");
    assert_eq!(fs::read_to_string(dst.join("conf.d/more")).unwrap(), "more");
    assert_eq!(fs::read_to_string(dst.join("conf.d/local")).unwrap(), "mine", "not deleted");
}

/// Across filesystems (/dev/shm is a tmpfs) entries are copied, then renamed.
#[test]
fn across_filesystems_entries_are_copied() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm");
        return;
    }
    let a = tempfile::tempdir_in(shm).unwrap();
    let b = tempfile::tempdir().unwrap();
    let (src, dst) = (a.path().join("src"), b.path().join("dst"));
    sample(&dst, &src);
    let reference = tempfile::tempdir().unwrap();
    let (rsrc, rdst) = (reference.path().join("src"), reference.path().join("dst"));
    sample(&rdst, &rsrc);
    run(Kind::Overlay, &rsrc, &rdst, &mut |_| {}).unwrap();
    run(Kind::Overlay, &src, &dst, &mut |_| {}).unwrap();
    assert_eq!(tree(&dst), tree(&rdst));
    assert_eq!(fs::read_dir(&src).unwrap().count(), 0);
    assert!(!dst.join(SCRATCH).exists());
}
