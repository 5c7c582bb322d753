use std::ffi::OsString;
use std::time::Duration;

use liblxcf::maint::update::{Event, Outcome, Recovered, Report, Request, DEFAULT_TIMEOUT};

use super::Ctx;
use crate::exit::{Exit, Failure};

#[derive(clap::Args)]
pub struct Args {
    /// Only these containers, and not the host; end the list with `--`.
    #[arg(long, num_args = 1.., value_name = "NAME")]
    pub to: Vec<String>,
    /// On stdout, JSON: each target's status, exit code and output.
    #[arg(long)]
    pub json: bool,
    /// Kill the command in a container or on the host when that run lasts longer
    /// than SECS seconds; the update then rolls back. 0: no limit.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    pub timeout: u64,
    /// The command and its arguments, passed through untouched (dpkg, apt-get, rpm, dnf...).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub fn print_recovered(r: &Recovered) {
    let cmd = r.command.join(" ");
    let names = r.containers.join(", ");
    if r.committed {
        eprintln!("lxcf: an interrupted `lxcf update {cmd}` was finished: committed in {names}");
    } else {
        eprintln!("lxcf: an interrupted `lxcf update {cmd}` was rolled back: {names} as before");
        if r.host_started {
            eprintln!("lxcf: warning: the command had started on the host, which may be changed; run the update again");
        }
    }
}

/// The command's output, indented under its target's line.
fn print_output(o: &Outcome) {
    for l in o.stdout.lines().chain(o.stderr.lines()) {
        eprintln!("  | {l}");
    }
}

pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let to = a.to.iter().map(|n| super::name(n)).collect::<Result<Vec<_>, _>>()?;
    let to = (!to.is_empty()).then_some(to.as_slice());
    let lx = ctx.open()?;
    let mut progress = |ev: Event| match ev {
        Event::Recovered(r) => print_recovered(r),
        _ if a.json => {}
        Event::Stopping(n) => eprintln!("{n}: stopping"),
        Event::Running(n) => eprintln!("{n}: running the command"),
        Event::Ran(n, o) if o.success() => {
            eprintln!("{n}: ok ({:.2} s)", o.seconds);
            // With -v, what the command printed, everywhere.
            if tracing::enabled!(tracing::Level::INFO) {
                print_output(o);
            }
        }
        Event::Ran(n, o) => {
            eprintln!("{n}: FAILED ({}, after {:.2} s)", o.describe(), o.seconds);
            print_output(o);
        }
        Event::Committed(n) => eprintln!("{n}: committed"),
        Event::Started(n) => eprintln!("{n}: started"),
    };
    let timeout = (a.timeout > 0).then(|| Duration::from_secs(a.timeout));
    let report = lx.update(&Request { command: &a.command, to, timeout }, &mut progress)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json(&report)).expect("plain values"));
    }
    if let Some(f) = report.failed() {
        let o = f.outcome.as_ref().map(|o| o.describe()).unwrap_or_default();
        let timed_out = f.outcome.as_ref().is_some_and(|o| o.timed_out.is_some());
        let message = if f.model.is_none() {
            format!("the command failed on the host ({o}); no container was changed, the host is as the command left it")
        } else {
            format!("the command failed in {} ({o}); nothing was changed, in any container or on the host", f.name)
        };
        let hint = timed_out.then(|| "give it more time with --timeout SECS (0: no limit); a command waiting for input never ends".into());
        return Err(Failure { code: Exit::Failure, message, hint });
    }
    let containers: Vec<&str> = report.targets.iter().filter(|t| t.model.is_some()).map(|t| t.name.as_str()).collect();
    let host = report.targets.iter().any(|t| t.model.is_none());
    if !a.json {
        let down = report.targets.iter().filter_map(|t| t.downtime).fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.max(d))));
        let what = match (containers.is_empty(), host) {
            (true, _) => "the host (there are no containers)".to_string(),
            (false, true) => format!("{} and the host", containers.join(", ")),
            (false, false) => containers.join(", "),
        };
        match down {
            Some(d) => eprintln!("updated: {what}; containers down {d:.2} s at most"),
            None => eprintln!("updated: {what}"),
        }
    }
    if let Some(t) = report.targets.iter().find(|t| t.restart_error.is_some()) {
        return Err(Failure {
            code: Exit::Failure,
            message: format!("updated, but `{}` could not be started again: {}", t.name, t.restart_error.as_deref().unwrap_or("")),
            hint: Some(format!("see why with `lxcf start {}`", t.name)),
        });
    }
    Ok(())
}

fn json(r: &Report) -> serde_json::Value {
    let targets: Vec<_> = r
        .targets
        .iter()
        .map(|t| {
            let o = t.outcome.as_ref();
            serde_json::json!({
                "name": t.name,
                "kind": if t.model.is_some() { "container" } else { "host" },
                "model": t.model.map(|m| m.as_str()),
                "status": t.status.as_str(),
                "exit_code": o.and_then(|o| o.code),
                "signal": o.and_then(|o| o.signal),
                "error": o.and_then(|o| o.error.clone()),
                "timed_out": o.is_some_and(|o| o.timed_out.is_some()),
                "seconds": o.map(|o| o.seconds),
                "downtime_seconds": t.downtime,
                "restart_error": t.restart_error,
                "stdout": o.map(|o| o.stdout.as_str()),
                "stderr": o.map(|o| o.stderr.as_str()),
            })
        })
        .collect();
    serde_json::json!({
        "committed": r.committed,
        "failed": r.failed().map(|t| t.name.as_str()),
        "phase_seconds": r.phases.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "recovered": r.recovered.as_ref().map(|x| serde_json::json!({
            "command": x.command,
            "committed": x.committed,
            "containers": x.containers,
            "host_started": x.host_started,
        })),
        "targets": targets,
    })
}
