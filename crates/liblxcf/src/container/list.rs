//! `lxcf list` with what each running container uses now: CPU % and memory, as
//! virt-manager's list shows them.
//!
//! CPU % needs two readings of the CPU time. All running containers are read once,
//! then again after one short window ([`WINDOW`]) common to all of them, so that
//! `list` stays fast however many containers there are (one window, not one per
//! container). 100 % is one CPU kept busy, as `top` counts; a container using two
//! CPUs shows 200 %. A 0.1 s window is enough to tell idle from busy; the figure
//! is the average over that window, not over the container's lifetime.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Container, Hold};
use crate::error::Result;
use crate::host::lxcfs::View;
use crate::runtime::Usage;
use crate::Lxcf;

/// Time between the two readings of CPU time.
pub const WINDOW: Duration = Duration::from_millis(100);

/// A container and, when it runs, what it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub container: Container,
    pub live: Option<Live>,
    /// Whether it reads lxcfs's files; `None` when it is not running.
    pub lxcfs: Option<View>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    /// Average over the window; 100 = one CPU.
    pub cpu_percent: f64,
    /// CPU time since it started.
    pub cpu_ns: u64,
    pub memory_bytes: u64,
}

/// CPU % between two readings `dt` apart; 100 = one CPU busy all the time.
pub fn cpu_percent(before: u64, after: u64, dt: Duration) -> f64 {
    if dt.is_zero() {
        return 0.0;
    }
    after.saturating_sub(before) as f64 / dt.as_nanos() as f64 * 100.0
}

impl Lxcf {
    /// The containers of this configuration, by name, with CPU % over `window` and
    /// memory in use for the running ones (`status::WINDOW` is `lxcf list`'s).
    pub fn list(&self, window: Duration) -> Result<Vec<Status>> {
        let _update = self.enter(Hold::Shared)?;
        let list = self.containers()?;
        let running: Vec<&str> = list.iter().filter(|c| c.state.is_active()).map(|c| c.name.as_str()).collect();
        let (t0, first) = self.sample(&running);
        // Each reading visits the containers in the same order at about the same pace,
        // so the time between the starts of the two readings is each one's interval,
        // give or take the jitter of one request.
        let (t1, second) = if first.is_empty() {
            (t0, BTreeMap::new())
        } else {
            std::thread::sleep(window.saturating_sub(t0.elapsed()));
            self.sample(&running)
        };
        let dt = t1.duration_since(t0);
        Ok(list
            .into_iter()
            .map(|c| {
                let live = match (first.get(&c.name), second.get(&c.name)) {
                    (Some(a), Some(b)) => {
                        Some(Live { cpu_percent: cpu_percent(a.cpu_ns, b.cpu_ns, dt), cpu_ns: b.cpu_ns, memory_bytes: b.memory_bytes })
                    }
                    _ => None,
                };
                let lxcfs = if c.state.is_active() { self.view_of(&c.name).ok().flatten() } else { None };
                Status { container: c, live, lxcfs }
            })
            .collect())
    }

    /// The containers under this configuration's root, by name.
    pub(crate) fn containers(&self) -> Result<Vec<Container>> {
        Ok(self
            .rt
            .list()?
            .into_iter()
            .filter_map(|mut i| {
                let meta = i.meta.take()?;
                (meta.root.parent() == Some(self.cfg.root.as_path())).then(|| Container::of(i, meta))
            })
            .collect())
    }

    /// When the reading started, and what it found; nothing when it failed (the list
    /// is still worth showing without figures).
    fn sample(&self, names: &[&str]) -> (Instant, BTreeMap<String, Usage>) {
        let t = Instant::now();
        let u = self.rt.usage(names).unwrap_or_else(|e| {
            tracing::debug!("no usage figures: {e}");
            BTreeMap::new()
        });
        tracing::debug!("usage of {} running containers read in {:?}", u.len(), t.elapsed());
        (t, u)
    }
}

/// Bytes the way `ls -h` and virt-manager write them: 512B, 52.3M, 1.2G.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_of_one_cpu() {
        let s = Duration::from_secs(1);
        assert_eq!(cpu_percent(0, 1_000_000_000, s), 100.0);
        assert_eq!(cpu_percent(0, 2_000_000_000, s), 200.0);
        assert_eq!(cpu_percent(500, 250_000_500, s), 25.0);
        assert_eq!(cpu_percent(10, 5, s), 0.0, "a counter that went back (restart) is not negative");
        assert_eq!(cpu_percent(0, 5, Duration::ZERO), 0.0);
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(52_300 * 1024), "51M");
        assert_eq!(human_bytes(3 << 30), "3.0G");
    }

    fn fake_with(names: &[(&str, bool)]) -> crate::container::tests::Env {
        let e = crate::container::tests::env();
        for (n, running) in names {
            e.sysgen(n).unwrap();
            if !running {
                e.lx.rt.destroy(n).unwrap();
            } else {
                e.fake.set_usage(n, Usage { cpu_ns: 0, memory_bytes: 50 << 20 });
            }
        }
        e
    }

    #[test]
    fn running_containers_get_figures_from_one_window() {
        let e = fake_with(&[("a", true), ("b", false), ("c", true)]);
        // Each reading adds 50 ms of CPU time: over a 100 ms window that is about 50 %.
        e.fake.set_busy_ns(50_000_000);
        let t = Instant::now();
        let s = e.lx.list(Duration::from_millis(100)).unwrap();
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(100));
        assert_eq!(s.iter().map(|x| x.container.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(s[1].live.is_none());
        for x in [&s[0], &s[2]] {
            let l = x.live.unwrap();
            assert_eq!(l.memory_bytes, 50 << 20);
            assert_eq!(l.cpu_ns, 100_000_000);
            // 50 ms over a window of at least 100 ms (longer on a loaded machine).
            assert!(l.cpu_percent > 0.0 && l.cpu_percent <= 50.0 + 1e-9, "{}", l.cpu_percent);
        }
    }

    #[test]
    fn nothing_running_means_no_wait() {
        let e = fake_with(&[("a", false)]);
        let t = Instant::now();
        let s = e.lx.list(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(s[0].live.is_none());
    }
}
