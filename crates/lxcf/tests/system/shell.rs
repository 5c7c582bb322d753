//! The LXCF shell, on a terminal and on piped input; completions and man pages
//! generated from the command definition.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::pty::Pty;

const PROMPT: &str = "LXCF # ";
const T: Duration = Duration::from_secs(30);

#[test]
fn shell_on_a_terminal() {
    let Some(env) = Env::new() else { return };
    let home = tempfile::tempdir().unwrap();
    let mut t =
        Pty::spawn(Command::new(LXCF).env("LXCF_CONFIG", &env.config).env("HOME", home.path()).env("TERM", "xterm").env_remove("LXCF_LOG"));
    t.expect(PROMPT, T);
    // Each step waits for the command's output, then for the next prompt: rustyline
    // redraws the prompt while a line is edited (completion), so a prompt alone
    // does not mean the command ran.
    t.send("help\r");
    let help = t.expect("Leave the shell", T);
    for w in ["sysgen", "list", "exec", "console", "help COMMAND", "exit"] {
        assert!(help.contains(w), "{w} in help:\n{help}");
    }
    t.expect(PROMPT, T);
    // A real command, typed with a mistake mended by backspace.
    let c = env.name("sh");
    t.send(&format!("sysgenn\x7f {c}\r"));
    t.expect(&format!("{c}: created (joint model"), Duration::from_secs(120));
    t.expect(PROMPT, T);
    assert_eq!(env.domains(), vec![c.clone()]);
    // Tab completes a command's name.
    t.send(&format!("sysst\t-d {c}\r"));
    t.expect(&format!("{c}: no longer starts when the host boots"), T);
    t.expect(PROMPT, T);
    // A failure is reported and the shell stays.
    t.send("start nosuch\r");
    t.expect("lxcf: error: no container named `nosuch`", T);
    t.expect(PROMPT, T);
    // Up arrow: the previous line again.
    t.send("\x1b[A\r");
    t.expect("lxcf: error: no container named `nosuch`", T);
    t.expect(PROMPT, T);
    // Ctrl-U drops what was typed.
    t.send("erase nosuch\x15list --json\r");
    t.expect(&format!("\"name\": \"{c}\""), T);
    t.expect(PROMPT, T);
    t.send(&format!("erase {c}\r"));
    t.expect(&format!("{c}: erased"), Duration::from_secs(60));
    t.expect(PROMPT, T);
    assert!(env.domains().is_empty());
    assert!(!t.all().contains("nosuch: erased") && !t.all().contains("error: no container named `nosuchlist"));
    // Ctrl-D leaves, with status 0; the history stays for next time.
    t.send("\x04");
    assert_eq!(t.wait(T), 0);
    let hist = std::fs::read_to_string(home.path().join(".lxcf_history")).unwrap();
    assert!(hist.contains(&format!("sysgen {c}")) && hist.contains("start nosuch"), "{hist}");
}

#[test]
fn shell_reads_piped_commands() {
    let Some(env) = Env::new() else { return };
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(LXCF)
        .env("LXCF_CONFIG", &env.config)
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Quotes split as in a shell; `exit` ends it before the last line.
    child.stdin.take().unwrap().write_all(b"list --json\nstart 'no such'\n\nlist\nexit\nlist\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("[]\n"), "{stdout}");
    assert_eq!(stdout.matches("NAME").count(), 1, "nothing runs after exit: {stdout}");
    assert!(stderr.contains("name `no such` may only contain"), "{stderr}");
}

/// `sudo -E lxcf` keeps the user's HOME; the user may have planted
/// `~/.lxcf_history -> /etc/shadow`. The shell warns once and keeps its history in
/// memory; the link's target is neither read nor written.
#[test]
fn shell_history_is_not_written_through_a_link() {
    let Some(env) = Env::new() else { return };
    let home = tempfile::tempdir().unwrap();
    let target = home.path().join("shadow");
    std::fs::write(&target, "root:secret:19000::::::\n").unwrap();
    std::os::unix::fs::symlink(&target, home.path().join(".lxcf_history")).unwrap();
    let mut child = Command::new(LXCF)
        .env("LXCF_CONFIG", &env.config)
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"list --json\nlist\nexit\n").unwrap();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("warning: not using the shell's history file").count(), 1, "{stderr}");
    assert!(stderr.contains("it is a symbolic link; history is kept in memory only"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:secret:19000::::::\n");
    assert!(std::fs::symlink_metadata(home.path().join(".lxcf_history")).unwrap().file_type().is_symlink());
}

#[test]
fn completions_and_man_pages() {
    let tmp = tempfile::tempdir().unwrap();
    // bash: what the completion function offers after `lxcf sys`.
    let script = tmp.path().join("lxcf.bash");
    std::fs::write(&script, run(Command::new(LXCF).args(["completions", "bash"])).ok("completions bash").stdout).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(lxcf sys); COMP_CWORD=1; COMP_LINE='lxcf sys'; COMP_POINT=8; _lxcf lxcf sys lxcf; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let o = run(Command::new("bash").args(["-c", &probe])).ok("bash completion");
    assert_eq!(o.stdout, "sysgen\nsysstart\n");
    for shell in ["zsh", "fish"] {
        let o = run(Command::new(LXCF).args(["completions", shell])).ok("completions");
        assert!(o.stdout.contains("sysgen") && o.stdout.contains("console"), "{shell}");
    }
    assert_eq!(run(Command::new(LXCF).args(["completions", "tcsh"])).code, 2);

    // Man pages: one for lxcf, one per command; man(1) renders them.
    let man = tmp.path().join("man");
    run(Command::new(LXCF).arg("manpages").arg(&man)).ok("manpages");
    for page in ["lxcf.1", "lxcf-sysgen.1", "lxcf-exec.1", "lxcf-list.1"] {
        assert!(man.join(page).is_file(), "{page}");
    }
    let o = run(Command::new("man").env("MANWIDTH", "100").args(["-P", "cat", "-l"]).arg(man.join("lxcf-sysgen.1")));
    let text = o.ok("man -l").stdout;
    assert!(text.contains("lxcf-sysgen") && text.contains("PREFIX0001"), "{text}");
}
