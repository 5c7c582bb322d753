//! Crash points: named places where a test build of lxcf kills itself with
//! SIGKILL, as a power cut or `kill -9` would, so that the tests can prove that
//! the next command finds every such state and repairs it.
//!
//! Only builds with debug assertions (the ones `cargo test` makes) honour them; in
//! a release build [`crash_point`] is empty and the environment is never read.
//!
//! - `LXCF_TEST_CRASH=STEP` dies at the step named STEP (`sysgen:defined`,
//!   `update:commit:web1:3`, ...);
//! - `LXCF_TEST_CRASH=@K` dies at the K-th crash point this process passes (the
//!   chaos run picks K at random);
//! - `LXCF_TEST_STEPS=FILE` appends the name of every step passed to FILE, so a
//!   test can learn the steps of a command and then kill it at each;
//! - `LXCF_TEST_PAUSE=STEP:FILE` creates FILE at STEP and waits there until FILE is
//!   removed, so that a test can break something (stop libvirtd) at that moment.

/// Passes the crash point `step` (see the module's header).
#[cfg(debug_assertions)]
pub fn crash_point(step: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PASSED: AtomicU64 = AtomicU64::new(0);
    let n = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(f) = std::env::var_os("LXCF_TEST_STEPS") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(f) {
            let _ = writeln!(f, "{step}");
        }
    }
    if let Some(p) = std::env::var_os("LXCF_TEST_PAUSE") {
        let p = p.to_string_lossy().into_owned();
        // Steps have colons in their names; the file is after the last one.
        if let Some((at, file)) = p.rsplit_once(':').filter(|(at, _)| *at == step) {
            tracing::warn!("LXCF_TEST_PAUSE: waiting at {at} until {file} is removed");
            if std::fs::write(file, b"").is_ok() {
                while std::path::Path::new(file).exists() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }
    let Some(want) = std::env::var_os("LXCF_TEST_CRASH") else { return };
    let want = want.to_string_lossy();
    let hit = match want.strip_prefix('@') {
        Some(k) => k.parse::<u64>().is_ok_and(|k| k == n),
        None => want == step,
    };
    if hit {
        tracing::warn!("LXCF_TEST_CRASH: killing myself at {step}");
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn crash_point(_step: &str) {}
