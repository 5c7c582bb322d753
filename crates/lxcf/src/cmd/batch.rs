//! What the commands that take NAME share: several names or `-n COUNT PREFIX`, run
//! in parallel by the library with a line per container and a summary.

use std::time::Instant;

use liblxcf::container::batch;
use liblxcf::Name;

use crate::exit::{Exit, Failure};

#[derive(clap::Args)]
pub struct Targets {
    /// Container names; with -n, the one name prefix.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
    /// Act on PREFIX0001 to PREFIX<COUNT> (COUNT 1 to 9999).
    #[arg(short = 'n', value_name = "COUNT")]
    pub count: Option<u32>,
    /// Containers worked on at once [default: two per CPU, 2 to 8].
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
}

impl Targets {
    /// Every name, checked before anything is done to any of them.
    pub fn names(&self) -> Result<Vec<Name>, Failure> {
        Ok(batch::targets(&self.names, self.count).map_err(liblxcf::Error::from)?)
    }

    pub fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(batch::default_jobs)
    }
}

/// Told of each container as it finishes.
pub type Each<'a, T> = &'a (dyn Fn(&Name, &liblxcf::Result<T>) + Sync);

/// Runs `work` (a command of the front on `names`, `jobs` at a time, calling back
/// as each finishes); `done` says in a few words what happened to one container.
/// One container: its error is the command's error, as before batches existed.
/// Several: a line for each as it finishes, a summary, and an error that lists the
/// failures.
pub fn run<T: Send>(
    verb: &str,
    t: &Targets,
    names: &[Name],
    work: impl FnOnce(usize, Each<T>) -> liblxcf::Result<Vec<(Name, liblxcf::Result<T>)>>,
    done: impl Fn(&T) -> String + Sync,
) -> Result<(), Failure> {
    if let [name] = names {
        let mut results = work(1, &|_, _| {})?;
        let r = results.pop().map(|(_, r)| r).expect("one result per name")?;
        eprintln!("{name}: {}", done(&r));
        return Ok(());
    }
    // A line per container as it finishes; copy progress bars would garble them.
    let _quiet = crate::progress::Quiet::new();
    let start = Instant::now();
    let each = |name: &Name, r: &liblxcf::Result<T>| match r {
        Ok(x) => eprintln!("{name}: {}", done(x)),
        Err(e) => eprintln!("{name}: error: {}", liblxcf::error::chain(e)),
    };
    let results = work(t.jobs(), &each)?;
    let secs = start.elapsed().as_secs_f64();
    let failed: Vec<String> = batch::failed(&results).into_iter().map(|n| n.to_string()).collect();
    if failed.is_empty() {
        eprintln!("{verb}: {} containers in {secs:.1} s", names.len());
        return Ok(());
    }
    // The failures' common exit code, if they share one (all `not found`, say).
    let codes: Vec<Exit> = results.iter().filter_map(|(_, r)| r.as_ref().err()).map(|e| e.kind()).collect();
    let code = if codes.iter().all(|c| *c == codes[0]) { codes[0] } else { Exit::Failure };
    Err(Failure {
        code,
        message: format!("{verb}: {} of {} containers failed ({secs:.1} s): {}", failed.len(), names.len(), failed.join(", ")),
        hint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(names: &[&str]) -> (Targets, Vec<Name>) {
        let t = Targets { names: names.iter().map(|s| s.to_string()).collect(), count: None, jobs: Some(2) };
        let names = t.names().ok().unwrap();
        (t, names)
    }

    fn fail(code: Exit) -> liblxcf::Error {
        match code {
            Exit::NotFound => liblxcf::Error::NotFound("x".into()),
            _ => liblxcf::Error::Busy("x".into()),
        }
    }

    /// Runs `f` on each name as the library would, in order.
    #[allow(clippy::type_complexity)]
    fn each_of<'a, T>(
        names: &'a [Name],
        f: impl Fn(&Name) -> liblxcf::Result<T> + 'a,
    ) -> impl FnOnce(usize, Each<T>) -> liblxcf::Result<Vec<(Name, liblxcf::Result<T>)>> + 'a {
        move |_, each| {
            Ok(names
                .iter()
                .map(|n| {
                    let r = f(n);
                    each(n, &r);
                    (n.clone(), r)
                })
                .collect())
        }
    }

    #[test]
    fn one_container_fails_with_its_own_error() {
        let (t, names) = targets(&["a"]);
        let e = run("start", &t, &names, each_of(&names, |_| Err::<(), _>(fail(Exit::NotFound))), |_| String::new()).err().unwrap();
        assert_eq!(
            (e.code, e.message.as_str(), e.hint.as_deref()),
            (Exit::NotFound, "no container named `x`", Some("`lxcf list` shows the containers"))
        );
    }

    #[test]
    fn failures_are_listed_with_their_common_code() {
        // Several names: the batch makes a progress::Quiet.
        let _guards = crate::progress::TEST_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        let (t, names) = targets(&["a", "b", "c"]);
        let e = run("start", &t, &names, each_of(&names, |n| if *n == "a" { Ok(()) } else { Err(fail(Exit::NotFound)) }), |_| "ok".into())
            .err()
            .unwrap();
        assert_eq!(e.code, Exit::NotFound);
        assert!(e.message.starts_with("start: 2 of 3 containers failed (") && e.message.ends_with("): b, c"), "{}", e.message);
        // Different causes: plain failure.
        let e = run(
            "start",
            &t,
            &names,
            each_of(&names, |n| Err::<(), _>(fail(if *n == "a" { Exit::Conflict } else { Exit::NotFound }))),
            |_| "".into(),
        )
        .err()
        .unwrap();
        assert_eq!(e.code, Exit::Failure);
        assert!(run("start", &t, &names, each_of(&names, |_| Ok(())), |_| "ok".into()).is_ok());
    }
}
