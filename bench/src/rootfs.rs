//! Root building alone, against `cp -a` of the same directories, in one run.
//!
//!     rootfs-bench [joint|separate] [REPS] [WORKDIR]
//!
//! Builds a container root from `/` with liblxcf's builder REPS times, and copies
//! the same top-level directories with `cp -a` REPS times, alternating, into
//! WORKDIR (default /opt: on the host's filesystem, outside the copied trees).
//! Caches are warmed by one untimed round first. Prints each time and the medians.
//!
//! On ext4 without a journal (this machine kind) creating inodes after many were
//! deleted is several times slower while the deleted inodes' table blocks sit in
//! the buffer cache (ext4's `recently_deleted` check, seen with perf). So the run
//! starts with `sync` and dropping the caches, then warms the source up, and
//! removes its copies only at the end; otherwise it would measure earlier deletions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use liblxcf::layout::{Action, Model, ENTRIES};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn lxcf_build(model: Model, dest: &Path) -> f64 {
    std::fs::create_dir(dest).unwrap();
    let t = Instant::now();
    liblxcf::rootfs::build(model, Path::new("/"), dest, &[], &Default::default()).expect("build");
    t.elapsed().as_secs_f64()
}

/// `cp -a` of the directories the model copies, one cp for all, as a shell user would.
fn cp_a(model: Model, dest: &Path) -> f64 {
    std::fs::create_dir(dest).unwrap();
    let dirs: Vec<PathBuf> =
        ENTRIES.iter().filter(|e| e.action(model) == Action::Copy).map(|e| Path::new("/").join(e.path)).collect();
    let t = Instant::now();
    let st = Command::new("cp").arg("-a").args(&dirs).arg(dest).status().unwrap();
    let el = t.elapsed().as_secs_f64();
    assert!(st.success(), "cp -a failed");
    el
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model: Model = args.get(1).map(|s| s.parse().expect("joint or separate")).unwrap_or(Model::Joint);
    let reps: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(5);
    let work = PathBuf::from(args.get(3).cloned().unwrap_or("/opt".into())).join(format!("lxcf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    Command::new("sync").status().unwrap();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (run as root)");
    // Warm-up round, not timed: both read the same files.
    lxcf_build(model, &work.join("warm-lxcf"));
    cp_a(model, &work.join("warm-cp"));
    let (mut tl, mut tc) = (Vec::new(), Vec::new());
    for i in 0..reps {
        let l = lxcf_build(model, &work.join(format!("lxcf{i}")));
        let c = cp_a(model, &work.join(format!("cp{i}")));
        println!("rep {i}: lxcf build {l:.3} s, cp -a {c:.3} s");
        tl.push(l);
        tc.push(c);
    }
    std::fs::remove_dir_all(&work).unwrap();
    let (ml, mc) = (median(&mut tl), median(&mut tc));
    println!("{model}: median of {reps}: lxcf root build {ml:.3} s, cp -a {mc:.3} s, ratio {:.2}", ml / mc);
}
