//! `lxcf`: the command line. Parsing, privilege check and output only; the work is
//! in `liblxcf`. Without a command it opens the LXCF shell ([`shell`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use liblxcf::resources::Throttle;

mod cmd;
mod exit;
mod progress;
mod shell;

use exit::Exit;

#[derive(Parser)]
#[command(
    name = "lxcf",
    version,
    about = "Divide one Linux host into long-lived system containers on libvirt-LXC",
    after_help = "Without a command, lxcf opens the LXCF shell (prompt `LXCF # `)."
)]
struct Cli {
    /// Configuration file (INI).
    #[arg(long, global = true, env = "LXCF_CONFIG", default_value = liblxcf::config::DEFAULT_PATH)]
    config: PathBuf,
    /// More messages on stderr (-v: steps, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create containers from the host and start them (-n 15 m: m0001 to m0015).
    Sysgen(Box<cmd::sysgen::Args>),
    /// Stop containers and remove them: domain, root directory, hosts line.
    Erase(cmd::erase::Args),
    /// Start stopped containers.
    Start(cmd::start::Args),
    /// Shut containers down (init first, then hard after a timeout).
    Stop(cmd::stop::Args),
    /// Start containers when the host boots, or no longer (-d).
    Sysstart(cmd::sysstart::Args),
    /// List the containers: name, state, model, IP, autostart, storage, CPU % and memory.
    List(cmd::list::Args),
    /// Make a new container from a stopped one and start it.
    Clone(cmd::clone::Args),
    /// Set the CPUs a container may run on.
    Cpun(cmd::tune::Cpun),
    /// Set a container's share of the host's CPU time, in percent.
    Cpurate(cmd::tune::Cpurate),
    /// Set the NUMA nodes a container takes memory from.
    Numa(cmd::tune::Numa),
    /// Set a container's memory limit.
    Memlimit(cmd::tune::Memlimit),
    /// Set a container's memory+swap limit.
    Memswlimit(cmd::tune::Memswlimit),
    /// Limit a container's reads from a disk, in bytes per second.
    #[command(name = "blkio_r")]
    BlkioR(cmd::tune::Blkio),
    /// Limit a container's writes to a disk, in bytes per second.
    #[command(name = "blkio_w")]
    BlkioW(cmd::tune::Blkio),
    /// Limit a container's reads from a disk, in operations per second.
    #[command(name = "blkioops_r")]
    BlkioopsR(cmd::tune::Blkioops),
    /// Limit a container's writes to a disk, in operations per second.
    #[command(name = "blkioops_w")]
    BlkioopsW(cmd::tune::Blkioops),
    /// Limit the network traffic into a container, in bytes per second.
    #[command(name = "net_in")]
    NetIn(cmd::tune::Net),
    /// Limit the network traffic out of a container, in bytes per second.
    #[command(name = "net_out")]
    NetOut(cmd::tune::Net),
    /// Show a container's resource settings: configured, and in effect.
    Show(cmd::show::Args),
    /// Check lxcf's invariants (roots, domains, hosts lines, leftovers); --repair fixes what is safe.
    Check(cmd::check::Args),
    /// Run a package command for every container and the host, all or nothing.
    Update(cmd::update::Args),
    /// Copy a host file or directory to the same path in every container.
    Deploy(cmd::deploy::Args),
    /// Give a stopped privileged container a user namespace of its own.
    Unprivilege(cmd::unprivilege::Args),
    /// Bind lxcfs's files into running containers (after lxcfs was down or restarted).
    Lxcfs(cmd::lxcfs::Args),
    /// Run a command inside a running container: lxcf exec NAME -- CMD [ARG]...
    Exec(cmd::exec::Args),
    /// Attach to a running container's console (leave with Ctrl-]).
    Console(cmd::console::Args),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions(cmd::completions::Args),
    /// Write the man pages into a directory.
    #[command(hide = true)]
    Manpages(cmd::completions::ManArgs),
    /// Run by lxcf's libvirt hook before an unprivileged container starts (domain XML
    /// on stdin): mounts its trees with its owners mapped.
    #[command(hide = true, name = "hook-prepare")]
    HookPrepare { name: String },
    /// Run by lxcf's libvirt hook once a container's init runs: binds lxcfs's files
    /// into it (a warning, not a failure, when lxcfs is not running).
    #[command(hide = true, name = "hook-started")]
    HookStarted { name: String, init: u32 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LXCF_LOG").unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();

    let code = match cli.command {
        Some(command) => report(run(&cli.config, command)),
        None => report(shell::run(&cli.config)),
    };
    ExitCode::from(code)
}

/// Prints a failure (one line, and a hint) and gives the exit status.
fn report(result: Result<u8, exit::Failure>) -> u8 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lxcf: error: {}", e.message);
            if let Some(h) = &e.hint {
                eprintln!("hint: {h}");
            }
            e.code as u8
        }
    }
}

/// The talk: "Only root user can execute lxcf commands on host". libvirt's
/// privileged socket and the files lxcf writes need it anyway; say so up front.
fn require_root() -> Result<(), exit::Failure> {
    if !rustix::process::geteuid().is_root() {
        return Err(exit::Failure {
            code: Exit::Permission,
            message: "lxcf must be run as root".into(),
            hint: Some("run it with sudo, or as root".into()),
        });
    }
    Ok(())
}

/// Runs one command; its exit status (`exec` and `console` pass the command's through).
fn run(config: &std::path::Path, command: Command) -> Result<u8, exit::Failure> {
    // Generated from the CLI definition alone: no root, no configuration needed.
    match command {
        Command::Completions(a) => return cmd::completions::run(a).map(|()| 0),
        Command::Manpages(a) => return cmd::completions::man(a).map(|()| 0),
        _ => {}
    }
    require_root()?;
    // Neither the configuration nor libvirt: libvirtd runs this and waits for it.
    if let Command::HookPrepare { name } = &command {
        let mut xml = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut xml).map_err(|e| exit::Failure {
            code: Exit::Failure,
            message: format!("cannot read the domain XML: {e}"),
            hint: None,
        })?;
        return liblxcf::hook_prepare(name, &xml).map(|()| 0).map_err(Into::into);
    }
    if let Command::HookStarted { name, init } = &command {
        // libvirt logs what a hook prints; the container starts either way, and
        // `lxcf show` tells that it has no view.
        if let Err(e) = liblxcf::hook_started(*init) {
            eprintln!("lxcf hook: {name}: no lxcfs view: {e}");
        }
        return Ok(0);
    }
    let ctx = cmd::Ctx { cfg: liblxcf::Config::load(config)? };
    let ctx = &ctx;
    let done = match command {
        Command::Sysgen(a) => cmd::sysgen::run(ctx, *a),
        Command::Erase(a) => cmd::erase::run(ctx, a),
        Command::Start(a) => cmd::start::run(ctx, a),
        Command::Stop(a) => cmd::stop::run(ctx, a),
        Command::Sysstart(a) => cmd::sysstart::run(ctx, a),
        Command::List(a) => cmd::list::run(ctx, a),
        Command::Clone(a) => cmd::clone::run(ctx, a),
        Command::Cpun(a) => cmd::tune::cpun(ctx, a),
        Command::Cpurate(a) => cmd::tune::cpurate(ctx, a),
        Command::Numa(a) => cmd::tune::numa(ctx, a),
        Command::Memlimit(a) => cmd::tune::memlimit(ctx, a),
        Command::Memswlimit(a) => cmd::tune::memswlimit(ctx, a),
        Command::BlkioR(a) => cmd::tune::blkio(ctx, Throttle::ReadBps, a),
        Command::BlkioW(a) => cmd::tune::blkio(ctx, Throttle::WriteBps, a),
        Command::BlkioopsR(a) => cmd::tune::blkioops(ctx, Throttle::ReadIops, a),
        Command::BlkioopsW(a) => cmd::tune::blkioops(ctx, Throttle::WriteIops, a),
        Command::NetIn(a) => cmd::tune::net_in(ctx, a),
        Command::NetOut(a) => cmd::tune::net_out(ctx, a),
        Command::Show(a) => cmd::show::run(ctx, a),
        Command::Check(a) => cmd::check::run(ctx, a),
        Command::Update(a) => cmd::update::run(ctx, a),
        Command::Deploy(a) => cmd::deploy::run(ctx, a),
        Command::Unprivilege(a) => cmd::unprivilege::run(ctx, a),
        Command::Lxcfs(a) => cmd::lxcfs::run(ctx, a),
        Command::Exec(a) => return cmd::exec::run(ctx, a),
        Command::Console(a) => return cmd::console::run(ctx, a),
        Command::Completions(_) | Command::Manpages(_) | Command::HookPrepare { .. } | Command::HookStarted { .. } => {
            unreachable!("handled above")
        }
    };
    done.map(|()| 0)
}
