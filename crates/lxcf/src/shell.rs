//! The LXCF shell: `lxcf` without a command reads commands at the prompt `LXCF # `,
//! as LXCF's shell did. A line is split like a POSIX shell splits words (quotes and
//! backslashes; no variables or globs) and parsed by the same clap definition as the
//! command line, so every command and option works the same in both. Line editing,
//! history (~/.lxcf_history) and completion of command names come from rustyline.
//! `help` lists the commands, `help COMMAND` shows one; `exit`, `quit` or Ctrl-D
//! leave; Ctrl-C drops the line being typed.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use crate::exit::{Exit, Failure};
use crate::Cli;

pub const PROMPT: &str = "LXCF # ";

/// Words of the shell itself, besides lxcf's commands.
const BUILTINS: [&str; 3] = ["help", "exit", "quit"];

/// The names a line can start with: lxcf's visible commands and the builtins.
fn command_names() -> Vec<String> {
    let mut v: Vec<String> = Cli::command().get_subcommands().filter(|c| !c.is_hide_set()).map(|c| c.get_name().to_string()).collect();
    v.extend(BUILTINS.iter().map(|s| s.to_string()));
    v.sort();
    v
}

struct Complete {
    names: Vec<String>,
}

impl Completer for Complete {
    type Candidate = Pair;

    /// Completes the first word of the line: a command name.
    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        if before.trim_start().contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let start = before.len() - before.trim_start().len();
        let word = &before[start..];
        let found =
            self.names.iter().filter(|n| n.starts_with(word)).map(|n| Pair { display: n.clone(), replacement: format!("{n} ") }).collect();
        Ok((start, found))
    }
}

impl Hinter for Complete {
    type Hint = String;
}
impl Highlighter for Complete {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(&'s self, prompt: &'p str, _default: bool) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}
impl Validator for Complete {}
impl Helper for Complete {}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".lxcf_history"))
}

fn help() {
    println!("Commands (type them without `lxcf`):");
    let cmd = Cli::command();
    let subs: Vec<_> = cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    let w = subs.iter().map(|c| c.get_name().len()).max().unwrap_or(0).max(12);
    for c in subs {
        println!("  {:w$}  {}", c.get_name(), c.get_about().map(|a| a.to_string()).unwrap_or_default());
    }
    println!("  {:w$}  Show a command's arguments and options", "help COMMAND");
    println!("  {:w$}  Leave the shell (also `quit` or Ctrl-D)", "exit");
}

/// What a line asks the shell to do next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Leave,
}

/// Runs one line: a builtin, or an lxcf command whose failure is reported and
/// leaves the shell running.
fn line(config: &Path, text: &str) -> Next {
    let Some(mut words) = shlex::split(text) else {
        eprintln!("lxcf: error: unbalanced quotes in the line");
        return Next::Continue;
    };
    match words.first().map(String::as_str) {
        None => return Next::Continue,
        Some("exit" | "quit") => return Next::Leave,
        Some("help") if words.len() == 1 => {
            help();
            return Next::Continue;
        }
        // `help sysgen` is `sysgen --help`.
        Some("help") => {
            words.remove(0);
            words.push("--help".into());
        }
        Some(_) => {}
    }
    let argv = std::iter::once("lxcf".to_string()).chain(words);
    match Cli::try_parse_from(argv) {
        Ok(Cli { command: Some(command), config: line_config, .. }) => {
            // `--config` on the line wins over the shell's.
            let config = if line_config.as_os_str() == liblxcf::config::DEFAULT_PATH { config } else { &line_config };
            let code = crate::report(crate::run(config, command));
            if code != 0 {
                tracing::debug!("exit status {code}");
            }
        }
        Ok(Cli { command: None, .. }) => eprintln!("lxcf: error: no command; `help` lists them"),
        // Help and version requests print the same way, to stdout.
        Err(e) => {
            let _ = e.print();
        }
    }
    Next::Continue
}

/// The interactive shell; its exit status.
pub fn run(config: &Path) -> Result<u8, Failure> {
    crate::require_root()?;
    let failure = |e: ReadlineError| Failure { code: Exit::Failure, message: format!("shell: {e}"), hint: None };
    let mut ed: Editor<Complete, DefaultHistory> = Editor::with_config(
        rustyline::Config::builder()
            .auto_add_history(true)
            .history_ignore_dups(true)
            .map_err(failure)?
            .max_history_size(1000)
            .map_err(failure)?
            .build(),
    )
    .map_err(failure)?;
    ed.set_helper(Some(Complete { names: command_names() }));
    let history = history_file();
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    loop {
        match ed.readline(PROMPT) {
            Ok(text) => {
                if line(config, &text) == Next::Leave {
                    break;
                }
            }
            // Ctrl-C: drop the line, stay.
            Err(ReadlineError::Interrupted) => continue,
            // Ctrl-D on an empty line, or the end of piped input.
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(failure(e)),
        }
    }
    if let Some(h) = &history {
        if let Err(e) = ed.save_history(h) {
            tracing::warn!("cannot save the shell's history to {}: {e}", h.display());
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_to_complete() {
        let n = command_names();
        for c in ["sysgen", "list", "exec", "console", "help", "exit"] {
            assert!(n.iter().any(|x| x == c), "{c} in {n:?}");
        }
        assert!(!n.iter().any(|x| x == "manpages"), "hidden commands are not offered");
    }

    #[test]
    fn completes_the_first_word_only() {
        let c = Complete { names: command_names() };
        let hist = DefaultHistory::new();
        let ctx = Context::new(&hist);
        let (start, found) = c.complete("  sys", 5, &ctx).unwrap();
        assert_eq!(start, 2);
        assert_eq!(found.iter().map(|p| p.display.as_str()).collect::<Vec<_>>(), ["sysgen", "sysstart"]);
        assert!(c.complete("list --j", 8, &ctx).unwrap().1.is_empty());
    }

    #[test]
    fn builtins() {
        let cfg = Path::new("/nonexistent/lxcf.conf");
        assert_eq!(line(cfg, "exit"), Next::Leave);
        assert_eq!(line(cfg, "  quit  "), Next::Leave);
        assert_eq!(line(cfg, ""), Next::Continue);
        assert_eq!(line(cfg, "'unbalanced"), Next::Continue);
        assert_eq!(line(cfg, "nosuchcommand"), Next::Continue);
    }
}
