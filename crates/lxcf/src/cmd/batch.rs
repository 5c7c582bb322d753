//! What the commands that take NAME share: several names or `-n COUNT PREFIX`, run
//! in parallel with a line per container and a summary (liblxcf::batch).

use std::time::Instant;

use liblxcf::batch;

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
    pub fn names(&self) -> Result<Vec<String>, Failure> {
        batch::targets(&self.names, self.count).map_err(|e| Failure { code: Exit::Usage, hint: e.hint(), message: e.to_string() })
    }

    fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(batch::default_jobs)
    }
}

/// Runs `work` for each name; `done` says in a few words what happened to one
/// container. One container: its error is the command's error, as before batches
/// existed. Several: a line for each as it finishes, a summary, and an error that
/// lists the failures.
pub fn run<T: Send>(
    verb: &str,
    t: &Targets,
    names: &[String],
    work: impl Fn(&str) -> Result<T, Failure> + Sync,
    done: impl Fn(&T) -> String + Sync,
) -> Result<(), Failure> {
    if let [name] = names {
        let r = work(name)?;
        eprintln!("{name}: {}", done(&r));
        return Ok(());
    }
    // A line per container as it finishes; copy progress bars would garble them.
    let _quiet = liblxcf::progress::Quiet::new();
    let start = Instant::now();
    let results = batch::run(names, t.jobs(), work, |name, r| match r {
        Ok(x) => eprintln!("{name}: {}", done(x)),
        Err(f) => eprintln!("{name}: error: {}", f.message),
    });
    let secs = start.elapsed().as_secs_f64();
    let failed = batch::failed(&results);
    if failed.is_empty() {
        eprintln!("{verb}: {} containers in {secs:.1} s", names.len());
        return Ok(());
    }
    // The failures' common exit code, if they share one (all `not found`, say).
    let codes: Vec<Exit> = results.iter().filter_map(|(_, r)| r.as_ref().err()).map(|f| f.code).collect();
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

    fn targets(names: &[&str]) -> (Targets, Vec<String>) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        (Targets { names: names.clone(), count: None, jobs: Some(2) }, names)
    }

    fn fail(code: Exit) -> Failure {
        Failure { code, message: "no".into(), hint: Some("try this".into()) }
    }

    #[test]
    fn one_container_fails_with_its_own_error() {
        let (t, names) = targets(&["a"]);
        let e = run("start", &t, &names, |_| Err::<(), _>(fail(Exit::NotFound)), |_| String::new()).unwrap_err();
        assert_eq!((e.code, e.message.as_str(), e.hint.as_deref()), (Exit::NotFound, "no", Some("try this")));
    }

    #[test]
    fn failures_are_listed_with_their_common_code() {
        let (t, names) = targets(&["a", "b", "c"]);
        let e = run("start", &t, &names, |n| if n == "a" { Ok(()) } else { Err(fail(Exit::NotFound)) }, |_| "ok".into()).unwrap_err();
        assert_eq!(e.code, Exit::NotFound);
        assert!(e.message.starts_with("start: 2 of 3 containers failed (") && e.message.ends_with("): b, c"), "{}", e.message);
        // Different causes: plain failure.
        let e = run("start", &t, &names, |n| Err::<(), _>(fail(if n == "a" { Exit::Conflict } else { Exit::NotFound })), |_| "".into())
            .unwrap_err();
        assert_eq!(e.code, Exit::Failure);
        assert!(run("start", &t, &names, |_| Ok(()), |_| "ok".into()).is_ok());
    }
}
