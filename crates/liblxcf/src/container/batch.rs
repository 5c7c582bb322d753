//! Many containers with one command: the names of a batch (`-n 15 m` is m0001 ..
//! m0015, or several names given), and a bounded parallel runner that reports each
//! container as it finishes and keeps going when one fails.
//!
//! The runner only schedules; each container's work is a whole command of
//! [`crate::Lxcf`] with its own undo, so a failed container leaves nothing behind
//! while the others carry on. The commands are safe to run in threads of one
//! process: their locks ([`crate::lock`]) are flocks taken on a file opened anew
//! each time, and flock conflicts between open file descriptions, not processes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::name::{Name, NameError};

/// The largest `-n`: four digits.
pub const MAX_COUNT: u32 = 9999;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("-n {0} is out of range: it takes 1 to {MAX_COUNT}")]
    Count(u32),
    #[error("-n takes one name prefix, not {0} names")]
    Prefixes(usize),
    #[error("no container name given")]
    NoNames,
    #[error("the name `{0}` is given twice")]
    Twice(String),
    #[error("invalid container name")]
    Name(#[from] NameError),
}

impl BatchError {
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            BatchError::Count(_) | BatchError::Prefixes(_) => "`-n 15 m` means m0001 to m0015".into(),
            BatchError::Name(_) => "names are 1 to 63 lower-case letters, digits and `-`; with -n the prefix plus 4 digits".into(),
            _ => return None,
        })
    }
}

/// `PREFIX0001` .. `PREFIX{count:04}`, each checked by the name rules.
pub fn numbered(prefix: &str, count: u32) -> Result<Vec<Name>, BatchError> {
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(BatchError::Count(count));
    }
    Ok((1..=count).map(|i| Name::new(format!("{prefix}{i:04}"))).collect::<Result<_, _>>()?)
}

/// The containers a command acts on: the names given, or with `count` the one
/// prefix given, numbered. Every name is checked before anything starts.
pub fn targets(names: &[String], count: Option<u32>) -> Result<Vec<Name>, BatchError> {
    let names = match count {
        Some(n) if names.len() == 1 => numbered(&names[0], n)?,
        Some(_) => return Err(BatchError::Prefixes(names.len())),
        None if names.is_empty() => return Err(BatchError::NoNames),
        None => names.iter().map(|n| Name::new(n.as_str())).collect::<Result<_, _>>()?,
    };
    let mut seen = BTreeSet::new();
    for n in &names {
        if !seen.insert(n.as_str()) {
            return Err(BatchError::Twice(n.to_string()));
        }
    }
    Ok(names)
}

/// How many containers to work on at once unless the user says: two per CPU, at
/// least 2 and at most 8. Building a root is mostly file creation in the kernel and
/// starting a container waits on libvirtd, so a few more threads than CPUs keep the
/// CPUs busy; the cap keeps a big host from booting dozens at once (each boot costs
/// about a CPU-second, bench/fleet.sh). `-j` overrides it.
pub fn default_jobs() -> usize {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (2 * cpus).clamp(2, 8)
}

/// Runs `work` for every name, at most `jobs` at a time, and calls `report` as each
/// finishes (from the worker thread, so lines appear as containers complete). One
/// failure does not stop the others. The results come back in the order of `names`.
pub fn run<N, T, E, W, R>(names: &[N], jobs: usize, work: W, report: R) -> Vec<(N, Result<T, E>)>
where
    N: Clone + Sync,
    T: Send,
    E: Send,
    W: Fn(&N) -> Result<T, E> + Sync,
    R: Fn(&N, &Result<T, E>) + Sync,
{
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Result<T, E>>>> = Mutex::new((0..names.len()).map(|_| None).collect());
    let workers = jobs.clamp(1, names.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                let r = work(name);
                report(name, &r);
                slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    let slots = slots.into_inner().unwrap_or_else(|p| p.into_inner());
    names.iter().cloned().zip(slots.into_iter().map(|r| r.expect("every name was worked on"))).collect()
}

/// The names whose work failed, in order.
pub fn failed<N, T, E>(results: &[(N, Result<T, E>)]) -> Vec<&N> {
    results.iter().filter(|(_, r)| r.is_err()).map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn numbered_names() {
        assert_eq!(numbered("m", 3).unwrap(), ["m0001", "m0002", "m0003"]);
        assert_eq!(numbered("m", 9999).unwrap().last().unwrap(), "m9999");
        assert_eq!(numbered("", 1).unwrap(), ["0001"]);
        assert_eq!(numbered("m", 0), Err(BatchError::Count(0)));
        assert_eq!(numbered("m", 10000), Err(BatchError::Count(10000)));
        for bad in ["M", "a/b", "-x", "a_b"] {
            assert!(matches!(numbered(bad, 2), Err(BatchError::Name(_))), "{bad}");
        }
        // 59 characters and 4 digits make 63, the longest name.
        assert!(numbered(&"x".repeat(59), 2).is_ok());
        assert!(matches!(numbered(&"x".repeat(60), 2), Err(BatchError::Name(NameError::TooLong(_)))));
    }

    #[test]
    fn targets_are_checked_before_anything() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(targets(&s(&["web1", "db1"]), None).unwrap(), ["web1", "db1"]);
        assert_eq!(targets(&s(&["m"]), Some(2)).unwrap(), ["m0001", "m0002"]);
        assert_eq!(targets(&s(&["a", "b"]), Some(2)), Err(BatchError::Prefixes(2)));
        assert_eq!(targets(&[], None), Err(BatchError::NoNames));
        assert_eq!(targets(&s(&["a", "b", "a"]), None), Err(BatchError::Twice("a".into())));
        assert!(matches!(targets(&s(&["ok", "Bad"]), None), Err(BatchError::Name(_))));
        assert!(BatchError::Count(0).hint().unwrap().contains("m0001"));
    }

    #[test]
    fn runs_everything_in_parallel_within_the_bound_and_keeps_going() {
        let names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
        let busy = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let reported = Mutex::new(Vec::new());
        let out = run(
            &names,
            4,
            |n| {
                let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                busy.fetch_sub(1, Ordering::SeqCst);
                if n == "c3" || n == "c7" {
                    Err(format!("{n} failed"))
                } else {
                    Ok(n.len())
                }
            },
            |n, r| reported.lock().unwrap().push((n.to_string(), r.is_ok())),
        );
        // In parallel, never more than the bound.
        let peak = peak.load(Ordering::SeqCst);
        assert!((2..=4).contains(&peak), "{peak} at once");
        assert_eq!(out.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), names.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(failed(&out), ["c3", "c7"]);
        assert_eq!(out[3].1, Err("c3 failed".to_string()));
        assert_eq!(out[0].1, Ok(2));
        assert_eq!(reported.lock().unwrap().len(), 12);
    }

    #[test]
    fn odd_bounds() {
        let names = vec!["a".to_string()];
        assert_eq!(run(&names, 0, |_| Ok::<_, ()>(1), |_, _| {}).len(), 1);
        assert_eq!(run(&names, 64, |_| Ok::<_, ()>(1), |_, _| {}).len(), 1);
        assert!(run::<String, (), (), _, _>(&[], 4, |_| Ok(()), |_, _| {}).is_empty());
    }
}
