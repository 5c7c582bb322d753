//! `lxcf check [--repair] [--json]`: lxcf's invariants against what exists.

use super::Ctx;
use crate::exit::{Exit, Failure};

#[derive(clap::Args)]
pub struct Args {
    /// Fix what can be fixed without losing anything; say what is left.
    #[arg(long)]
    pub repair: bool,
    /// On stdout, JSON: every finding, and whether it was repaired.
    #[arg(long)]
    pub json: bool,
}

/// Exit status 0 when nothing is (left) wrong, 1 otherwise.
pub fn run(ctx: &Ctx, a: Args) -> Result<(), Failure> {
    let r = ctx.open()?.check(a.repair)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).expect("plain values"));
    } else {
        for f in &r.findings {
            let who = if f.name.is_empty() { String::new() } else { format!("{}: ", f.name) };
            let state = match (&f.repaired, &f.hint) {
                (true, _) => " (repaired)".to_string(),
                (false, Some(h)) => format!(" (left; {h})"),
                (false, None) if a.repair => " (left)".to_string(),
                (false, None) => " (lxcf check --repair fixes it)".to_string(),
            };
            println!("{who}{} [{}]{state}", f.detail, f.check);
        }
    }
    let left = r.left().count();
    if left == 0 {
        if !a.json {
            let n = r.findings.len();
            eprintln!("{}", if n == 0 { "check: everything holds".to_string() } else { format!("check: {n} repaired, nothing left") });
        }
        return Ok(());
    }
    Err(Failure {
        code: Exit::Failure,
        message: format!("check: {left} problem(s) left"),
        hint: (!a.repair).then(|| "`lxcf check --repair` fixes what it safely can".into()),
    })
}
