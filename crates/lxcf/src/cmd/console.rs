//! `lxcf console NAME` hands the terminal to `virsh console`: it already does what a
//! console needs (raw terminal mode and its restoration, the Ctrl-] escape, libvirt's
//! stream events both ways, taking over a console another client holds with
//! --force), and virsh comes with libvirt's client package, which lxcf needs anyway.
//! The virt crate's open_console gives only the stream; the rest would be ours to get right.

use std::os::unix::process::CommandExt;
use std::process::Command;

use liblxcf::config::Config;

use crate::exit::{Exit, Failure};

#[derive(clap::Args)]
pub struct Args {
    /// A running container.
    pub name: String,
    /// Take the console over from another client that holds it.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cfg: &Config, a: Args) -> Result<u8, Failure> {
    let rt = super::connect(cfg)?;
    super::running_init(cfg, &rt, &a.name)?;
    drop(rt);
    let mut virsh = Command::new("virsh");
    virsh.args(["-c", &cfg.uri, "console", &a.name]);
    // virsh starts polkit's pkttyagent whenever it has a controlling terminal; the
    // agent puts the terminal back in line mode when it exits, which raced with
    // virsh's raw mode here (Ctrl-] then stayed in the line buffer). root needs no
    // polkit for libvirt's socket: in a session of its own virsh has no controlling
    // terminal and starts no agent, and still uses the terminal on stdin/stdout.
    // SAFETY: setsid is a plain system call, safe between fork and exec.
    unsafe {
        virsh.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
    if a.force {
        virsh.arg("--force");
    }
    let status = virsh.status().map_err(|e| Failure {
        code: Exit::Failure,
        message: format!("cannot run virsh: {e}"),
        hint: Some("install libvirt's client (scripts/setup-host does)".into()),
    })?;
    Ok(status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(1))
}
