//! Shell completions and man pages, generated from the clap definition so that they
//! never disagree with the commands (install.sh installs them).

use std::path::PathBuf;

use clap::CommandFactory;

use crate::exit::{Exit, Failure};

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

pub fn run(a: Args) -> Result<(), Failure> {
    clap_complete::generate(a.shell, &mut crate::Cli::command(), "lxcf", &mut std::io::stdout());
    Ok(())
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write lxcf.1 and lxcf-COMMAND.1 into.
    pub dir: PathBuf,
}

pub fn man(a: ManArgs) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure {
        code: Exit::Failure,
        message: format!("cannot write man pages to {}: {e}", a.dir.display()),
        hint: None,
    };
    std::fs::create_dir_all(&a.dir).map_err(fail)?;
    let cmd = crate::Cli::command();
    clap_mangen::generate_to(cmd, &a.dir).map_err(fail)
}
