//! Root building alone, against a plain copy of the same directories, in one run.
//!
//!     rootfs-bench [--model joint|separate] [--reps N] [--fs host|ext4|btrfs|xfs]
//!                  [--work DIR] [--workers N]
//!
//! Builds a container root with liblxcf's builder REPS times and copies the same
//! top-level directories with `cp -a` REPS times, alternating; prints each time
//! and the medians. An untimed round of each comes first, so that both read a
//! warm page cache.
//!
//! `--fs` says where the copies go:
//! - `host` (default): into WORK (default /opt) on the host's filesystem, from `/`.
//!   On ext4 without a journal (this machine kind) creating inodes soon after many
//!   were deleted is several times slower (ext4's `recently_deleted` check), so the
//!   copies are kept until the end (2 x (REPS + 1) trees: mind the disk).
//! - `ext4`: from `/` into a fresh ext4 image for every copy (loop-mounted under
//!   WORK, default /opt: outside the copied trees), so that no copy follows another's deletions.
//! - `btrfs`, `xfs`: one image of that filesystem holds a host-like source tree
//!   (copied in from `/` first, not timed) and the copies; the baseline is
//!   `cp -a --reflink=never`, a plain copy. On btrfs the tree is a subvolume (as /
//!   is on a btrfs host) and lxcf's root starts as its snapshot, trimmed to the
//!   layout (`rootfs::create`, as `lxcf sysgen` does); on xfs lxcf shares the data
//!   by reflinks.
//!
//! Images are sparse files; they are unmounted, detached and removed at the end,
//! also when the run fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use liblxcf::rootfs::copy::Control;
use liblxcf::rootfs::layout::{Action, Model, ENTRIES};

/// CPU time (user + system) used so far by this process (`who` = RUSAGE_SELF, all
/// threads) or by its waited-for children (RUSAGE_CHILDREN).
fn cpu(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the rusage struct we pass, which is plain data.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut ru), 0);
        ru
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Wall time and CPU time of one copy.
#[derive(Clone, Copy)]
struct Took {
    wall: f64,
    cpu: f64,
}

impl std::fmt::Display for Took {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3} s (cpu {:.2} s)", self.wall, self.cpu)
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn sh(cmd: &mut Command) {
    let st = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(st.success(), "{cmd:?} failed");
}

/// A loop-mounted filesystem image; gone when dropped.
struct Image {
    file: PathBuf,
    mnt: PathBuf,
}

impl Image {
    fn new(fs: &str, file: PathBuf, mnt: PathBuf, size: &str) -> Image {
        sh(Command::new("truncate").arg("-s").arg(size).arg(&file));
        let img = Image { file, mnt };
        let mkfs = format!("mkfs.{fs}");
        let mut c = Command::new(&mkfs);
        match fs {
            "ext4" => c.args(["-q", "-F"]),
            "xfs" => c.args(["-q", "-f", "-m", "reflink=1"]),
            _ => c.args(["-q", "-f"]),
        };
        sh(c.arg(&img.file));
        std::fs::create_dir_all(&img.mnt).unwrap();
        sh(Command::new("mount").arg("-o").arg("loop").arg(&img.file).arg(&img.mnt));
        img
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        // `mount -o loop` sets autoclear; detach by hand what is left anyway.
        if let Ok(o) = Command::new("losetup").arg("-j").arg(&self.file).output() {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                if let Some(dev) = l.split(':').next() {
                    let _ = Command::new("losetup").arg("-d").arg(dev).status();
                }
            }
        }
        let _ = std::fs::remove_dir(&self.mnt);
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The top-level directories a model copies.
fn copied(model: Model) -> Vec<&'static str> {
    ENTRIES.iter().filter(|e| e.action(model) == Action::Copy).map(|e| e.path).collect()
}

struct Bench {
    model: Model,
    source: PathBuf,
    ctl: Control<'static>,
    /// `cp` option for the baseline.
    cp_extra: Option<&'static str>,
}

impl Bench {
    fn lxcf(&self, dest: &Path) -> Took {
        let (t, c) = (Instant::now(), cpu(libc::RUSAGE_SELF));
        liblxcf::rootfs::create(self.model, &self.source, dest, &[], &self.ctl).expect("build");
        Took { wall: t.elapsed().as_secs_f64(), cpu: cpu(libc::RUSAGE_SELF) - c }
    }

    /// `cp -a` of the directories the model copies, one cp for all, as a shell user would.
    fn cp(&self, dest: &Path) -> Took {
        std::fs::create_dir(dest).unwrap();
        let dirs: Vec<PathBuf> = copied(self.model).iter().map(|p| self.source.join(p)).collect();
        let mut cmd = Command::new("cp");
        cmd.arg("-a");
        if let Some(x) = self.cp_extra {
            cmd.arg(x);
        }
        let (t, c) = (Instant::now(), cpu(libc::RUSAGE_CHILDREN));
        sh(cmd.args(&dirs).arg(dest));
        Took { wall: t.elapsed().as_secs_f64(), cpu: cpu(libc::RUSAGE_CHILDREN) - c }
    }
}

fn remove(p: &Path) {
    liblxcf::rootfs::storage::remove_root(p).expect("remove copy");
}

fn drop_caches() {
    sh(&mut Command::new("sync"));
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (run as root)");
}

fn main() {
    let mut model = Model::Separate;
    let mut reps = 3usize;
    let mut fs = "host".to_string();
    let mut work: Option<PathBuf> = None;
    let mut workers = liblxcf::rootfs::copy::default_workers();
    let mut source = PathBuf::from("/");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = v().parse().expect("joint or separate"),
            "--reps" => reps = v().parse().unwrap(),
            "--fs" => fs = v(),
            "--work" => work = Some(v().into()),
            "--workers" => workers = v().parse().unwrap(),
            "--source" => source = v().into(),
            // For profiling: one lxcf build from --source (given first) into DIR, kept.
            "--once" => {
                let dest = PathBuf::from(v());
                let b = Bench { model, source, ctl: Control { workers, progress: None }, cp_extra: None };
                println!("lxcf build {}", b.lxcf(&dest));
                return;
            }
            _ => panic!("unknown argument {a}; see the header of bench/src/rootfs.rs"),
        }
    }
    let ctl = Control { workers, progress: None };
    let pid = std::process::id();
    drop_caches();
    let (mut tl, mut tc) = (Vec::new(), Vec::new());
    match fs.as_str() {
        "host" => {
            let work = work.unwrap_or("/opt".into()).join(format!("lxcf-bench-{pid}"));
            std::fs::create_dir_all(&work).unwrap();
            let b = Bench { model, source: "/".into(), ctl, cp_extra: None };
            b.lxcf(&work.join("warm-lxcf"));
            b.cp(&work.join("warm-cp"));
            for i in 0..reps {
                let (l, c) = (b.lxcf(&work.join(format!("lxcf{i}"))), b.cp(&work.join(format!("cp{i}"))));
                println!("rep {i}: lxcf build {l}, cp -a {c}");
                tl.push(l);
                tc.push(c);
            }
            std::fs::remove_dir_all(&work).unwrap();
        }
        "ext4" => {
            let work = work.unwrap_or("/opt".into()).join(format!("lxcf-bench-{pid}"));
            std::fs::create_dir_all(&work).unwrap();
            let b = Bench { model, source: "/".into(), ctl, cp_extra: None };
            let fresh = || Image::new("ext4", work.join("ext4.img"), work.join("mnt"), "16G");
            for i in 0..=reps {
                let img = fresh();
                let l = b.lxcf(&img.mnt.join("lxcf"));
                drop(img);
                let img = fresh();
                let c = b.cp(&img.mnt.join("cp"));
                drop(img);
                if i == 0 {
                    println!("warm-up: lxcf build {l}, cp -a {c}");
                    continue;
                }
                println!("rep {}: lxcf build {l}, cp -a {c}", i - 1);
                tl.push(l);
                tc.push(c);
            }
            std::fs::remove_dir_all(&work).unwrap();
        }
        "btrfs" | "xfs" => {
            let work = work.unwrap_or("/opt".into()).join(format!("lxcf-bench-{pid}"));
            std::fs::create_dir_all(&work).unwrap();
            let img = Image::new(&fs, work.join(format!("{fs}.img")), work.join("mnt"), "24G");
            // A host-like tree on the image: what the model copies, plus the mirrored links.
            let src = img.mnt.join("host");
            if fs == "btrfs" {
                // As on a btrfs host (Fedora's default): / is a subvolume.
                sh(Command::new("btrfs").args(["-q", "subvolume", "create"]).arg(&src));
            } else {
                std::fs::create_dir(&src).unwrap();
            }
            let t = Instant::now();
            let mut tops: Vec<PathBuf> = copied(Model::Separate).iter().map(|p| Path::new("/").join(p)).collect();
            for m in ENTRIES.iter().filter(|e| e.separate == Action::Mirror) {
                if Path::new("/").join(m.path).symlink_metadata().is_ok() {
                    tops.push(Path::new("/").join(m.path));
                }
            }
            sh(Command::new("cp").arg("-a").args(&tops).arg(&src));
            std::fs::create_dir(src.join("root")).unwrap();
            println!("source tree copied onto {fs} in {:.1} s", t.elapsed().as_secs_f64());
            drop_caches();
            let b = Bench { model, source: src, ctl, cp_extra: Some("--reflink=never") };
            for i in 0..=reps {
                let (l, c) = (img.mnt.join("lxcf"), img.mnt.join("plain"));
                let tl_i = b.lxcf(&l);
                remove(&l);
                let tc_i = b.cp(&c);
                remove(&c);
                sh(&mut Command::new("sync"));
                if i == 0 {
                    println!("warm-up: lxcf build {tl_i}, plain copy {tc_i}");
                    continue;
                }
                println!("rep {}: lxcf build {tl_i}, plain copy {tc_i}", i - 1);
                tl.push(tl_i);
                tc.push(tc_i);
            }
            drop(img);
            std::fs::remove_dir_all(&work).unwrap();
        }
        other => panic!("--fs {other}: host, ext4, btrfs or xfs"),
    }
    let med = |v: &[Took], f: fn(&Took) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>());
    let (ml, mc) = (med(&tl, |t| t.wall), med(&tc, |t| t.wall));
    let (cl, cc) = (med(&tl, |t| t.cpu), med(&tc, |t| t.cpu));
    let base = if fs == "btrfs" || fs == "xfs" { "plain copy (cp -a --reflink=never)" } else { "cp -a" };
    println!(
        "{model} on {fs}, {workers} workers: median of {reps}: lxcf root build {ml:.3} s, {base} {mc:.3} s, ratio {:.3} \
         (cpu: {cl:.2} s vs {cc:.2} s)",
        ml / mc
    );
}
