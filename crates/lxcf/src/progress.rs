//! A progress bar on stderr for long copies: files, bytes and rate, drawn by
//! indicatif from the copy's counters ([`liblxcf::rootfs::copy::Progress`]). Nothing at all
//! when stderr is not a terminal (scripts, logs, tests), and nothing for a copy
//! that ends within [`DELAY`] (a joint root), so short commands stay quiet; none
//! either while a [`Quiet`] lives (batches, which print a line per container).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};

use liblxcf::maint::update::Recovered;
use liblxcf::rootfs::copy::Progress;

/// How long a copy runs before the bar appears.
pub const DELAY: Duration = Duration::from_millis(700);

/// While one lives, no bar is shown in this process: several containers built at
/// once (`lxcf sysgen -n`) would each draw one on the same line, over the lines the
/// batch prints as each container finishes.
pub struct Quiet(());

static QUIET: AtomicUsize = AtomicUsize::new(0);

impl Quiet {
    pub fn new() -> Quiet {
        QUIET.fetch_add(1, Ordering::SeqCst);
        Quiet(())
    }
}

impl Default for Quiet {
    fn default() -> Quiet {
        Quiet::new()
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        QUIET.fetch_sub(1, Ordering::SeqCst);
    }
}

fn quiet() -> bool {
    QUIET.load(Ordering::SeqCst) != 0
}

/// Held by every unit test that makes a [`Quiet`], itself or through a batch: the
/// count is process-wide and tests run in parallel threads, so one test's guard
/// made another's "no guard left" check fail now and then.
#[cfg(test)]
pub(crate) static TEST_GUARDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The bar while a copy runs; cleared when dropped.
pub struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bar {
    /// Shows `what` with the counters of `p` until dropped, if stderr is a terminal.
    pub fn show(what: &str, p: Arc<Progress>) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        if quiet() || !std::io::stderr().is_terminal() {
            return Bar { stop, thread: None };
        }
        let (flag, what) = (stop.clone(), what.to_string());
        let thread = std::thread::spawn(move || draw(&what, &p, &flag));
        Bar { stop, thread: Some(thread) }
    }
}

fn draw(what: &str, p: &Progress, stop: &AtomicBool) {
    let start = Instant::now();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg} files, {binary_bytes} ({binary_bytes_per_sec}), {elapsed}")
            .expect("valid template"),
    );
    bar.set_prefix(what.to_string());
    let mut shown = false;
    while !stop.load(Ordering::Relaxed) {
        if !shown && start.elapsed() >= DELAY {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        bar.set_message(HumanCount(p.files()).to_string());
        bar.set_position(p.bytes());
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the library reports, shown on the terminal: copies as a bar, recoveries
/// of an interrupted update or deploy as lines.
pub struct Terminal;

impl liblxcf::Reporter for Terminal {
    fn recovered(&self, r: &Recovered) {
        crate::cmd::update::print_recovered(r);
    }

    fn found(&self, what: &str) {
        eprintln!("lxcf: {what}");
    }

    fn warn(&self, what: &str) {
        eprintln!("lxcf: warning: {what}");
    }

    fn deploy_finished(&self, d: &liblxcf::maint::deploy::Deployed) {
        crate::cmd::deploy::print_finished(d);
    }

    fn copying(&self, what: &str, counters: Arc<Progress>) -> Box<dyn std::any::Any> {
        Box::new(Bar::show(what, counters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_bar_while_a_quiet_guard_lives() {
        let _alone = TEST_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        let (a, b) = (Quiet::new(), Quiet::new());
        assert!(quiet());
        // Even on a terminal: no drawing thread.
        assert!(Bar::show("x", Arc::new(Progress::default())).thread.is_none());
        drop(a);
        assert!(quiet(), "the other guard still lives");
        drop(b);
        assert!(!quiet());
    }
}
