//! The LXCF shell: `lxcf` without a command reads commands at the prompt `LXCF # `,
//! as LXCF's shell did. A line is split like a POSIX shell splits words (quotes and
//! backslashes; no variables or globs) and parsed by the same clap definition as the
//! command line, so every command and option works the same in both. Line editing,
//! history (~/.lxcf_history, see [`HistoryFile`]) and completion of command names
//! come from rustyline.
//! `help` lists the commands, `help COMMAND` shows one; `exit`, `quit` or Ctrl-D
//! leave; Ctrl-C drops the line being typed.

use std::borrow::Cow;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::{DefaultHistory, History};
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

/// Why the history file is left alone.
#[derive(Debug)]
enum Refused {
    Symlink,
    NotRegular,
    Owner(u32),
    Links(u64),
    DirWritable(u32),
    Io(&'static str, std::io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Symlink => write!(f, "it is a symbolic link"),
            Refused::NotRegular => write!(f, "it is not a regular file"),
            Refused::Owner(uid) => write!(f, "it belongs to uid {uid}, not to this user"),
            Refused::Links(n) => write!(f, "it has {n} hard links"),
            Refused::DirWritable(mode) => write!(f, "its directory is writable by others (mode {mode:o})"),
            Refused::Io(op, e) => write!(f, "cannot {op}: {e}"),
        }
    }
}

/// The shell's history file, used only when lxcf (root) cannot be made to write
/// somewhere else through it. With `sudo -E`, HOME is the calling user's, who can
/// plant `~/.lxcf_history -> /etc/shadow`, or a hard link to it. So the file is
/// opened without following a symbolic link (`O_PATH | O_NOFOLLOW`, which opens
/// nothing for reading or writing: a FIFO or device has no effect) and used only if
/// it is a regular file owned by the effective user with one link, in a directory
/// that others cannot write to (unless sticky, like /tmp); or it is created anew
/// (`O_CREAT | O_EXCL | O_NOFOLLOW`). rustyline then reads and writes the checked
/// inode through /proc/self/fd/N, never the name again, so the name being swapped
/// in the meantime changes nothing. Otherwise the shell warns once and keeps its
/// history in memory.
struct HistoryFile {
    path: PathBuf,
    /// The checked file (O_PATH), once there is one.
    fd: Option<OwnedFd>,
    /// Set when the file is not to be used.
    refused: bool,
}

impl HistoryFile {
    fn new(path: Option<PathBuf>) -> HistoryFile {
        let refused = path.is_none();
        HistoryFile { path: path.unwrap_or_default(), fd: None, refused }
    }

    /// The directory, checked, and the file's name in it.
    fn dir(&self) -> Result<(OwnedFd, &std::ffi::OsStr), Refused> {
        use rustix::fs::{Mode, OFlags};
        let name = self.path.file_name().ok_or(Refused::NotRegular)?;
        let parent = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // HOME itself may be a symbolic link (/home -> /data/home): the user's own choice.
        let dir = rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Refused::Io("open its directory", e.into()))?;
        let st = rustix::fs::fstat(&dir).map_err(|e| Refused::Io("inspect its directory", e.into()))?;
        if st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0 {
            return Err(Refused::DirWritable(st.st_mode & 0o7777));
        }
        Ok((dir, name))
    }

    /// The existing file, checked, or None when there is none.
    fn open_existing(&self) -> Result<Option<OwnedFd>, Refused> {
        use rustix::fs::{FileType, Mode, OFlags};
        let (dir, name) = self.dir()?;
        let fd = match rustix::fs::openat(&dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(Refused::Io("open it", e.into())),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| Refused::Io("inspect it", e.into()))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Symlink => return Err(Refused::Symlink),
            _ => return Err(Refused::NotRegular),
        }
        let me = rustix::process::geteuid().as_raw();
        if st.st_uid != me {
            return Err(Refused::Owner(st.st_uid));
        }
        if st.st_nlink != 1 {
            return Err(Refused::Links(st.st_nlink as u64));
        }
        Ok(Some(fd))
    }

    /// A new, empty file (mode 0600), or the one someone made meanwhile, checked.
    fn create(&self) -> Result<OwnedFd, Refused> {
        use rustix::fs::{Mode, OFlags};
        let (dir, name) = self.dir()?;
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC;
        match rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(fd),
            Err(rustix::io::Errno::EXIST) => self.open_existing()?.ok_or(Refused::Io("create it", std::io::ErrorKind::NotFound.into())),
            Err(e) => Err(Refused::Io("create it", e.into())),
        }
    }

    /// The checked inode, by a name that cannot be redirected.
    fn by_fd(fd: &OwnedFd) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    fn refuse(&mut self, why: Refused) {
        if !self.refused {
            eprintln!("lxcf: warning: not using the shell's history file {}: {why}; history is kept in memory only", self.path.display());
        }
        self.refused = true;
    }

    /// Reads the file into `h`, if there is one to use.
    fn load(&mut self, h: &mut impl History) {
        if self.refused {
            return;
        }
        match self.open_existing() {
            Ok(Some(fd)) => {
                if let Err(e) = h.load(&Self::by_fd(&fd)) {
                    self.refuse(Refused::Io("read it", std::io::Error::other(e)));
                    return;
                }
                self.fd = Some(fd);
            }
            Ok(None) => {}
            Err(why) => self.refuse(why),
        }
    }

    /// Writes `h` to the file (created if there was none), if it is one to use.
    fn save(&mut self, h: &mut impl History) {
        if self.refused || h.is_empty() {
            return;
        }
        if self.fd.is_none() {
            match self.open_existing().and_then(|fd| fd.map_or_else(|| self.create(), Ok)) {
                Ok(fd) => self.fd = Some(fd),
                Err(why) => return self.refuse(why),
            }
        }
        let fd = self.fd.as_ref().expect("opened above");
        if let Err(e) = h.save(&Self::by_fd(fd)) {
            self.refuse(Refused::Io("write it", std::io::Error::other(e)));
        }
    }
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
    let mut history = HistoryFile::new(history_file());
    history.load(ed.history_mut());
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
    history.save(ed.history_mut());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

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

    /// A temporary HOME (mode 0700, ours) and the history file in it.
    fn home() -> (tempfile::TempDir, PathBuf) {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".lxcf_history");
        (home, file)
    }

    fn entries(lines: &[&str]) -> DefaultHistory {
        let mut h = DefaultHistory::new();
        for l in lines {
            h.add(l).unwrap();
        }
        h
    }

    fn loaded(path: &Path) -> (Vec<String>, bool) {
        let mut f = HistoryFile::new(Some(path.to_path_buf()));
        let mut h = DefaultHistory::new();
        f.load(&mut h);
        (h.iter().cloned().collect(), f.refused)
    }

    /// `sudo -E` keeps the user's HOME, whose `~/.lxcf_history` the user controls:
    /// root must not write through a link planted there.
    #[test]
    fn history_never_goes_through_a_link() {
        use std::os::unix::fs::symlink;
        let (home, path) = home();
        // A file of ours: absent, nothing to load, created at the end, private.
        assert_eq!(loaded(&path), (vec![], false));
        let mut f = HistoryFile::new(Some(path.clone()));
        f.save(&mut entries(&["list", "sysgen web1"]));
        assert!(!f.refused);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.is_file() && meta.permissions().mode() & 0o777 == 0o600, "{meta:?}");
        // Read back next time, and written again with more.
        let mut f = HistoryFile::new(Some(path.clone()));
        let mut h = DefaultHistory::new();
        f.load(&mut h);
        assert_eq!(h.iter().cloned().collect::<Vec<_>>(), ["list", "sysgen web1"]);
        h.add("erase web1").unwrap();
        f.save(&mut h);
        assert_eq!(loaded(&path).0, ["list", "sysgen web1", "erase web1"]);
        std::fs::remove_file(&path).unwrap();

        // The user's link to a file of root's.
        let target = home.path().join("shadow");
        std::fs::write(&target, "root:secret:19000::::::\n").unwrap();
        symlink(&target, &path).unwrap();
        // Neither read nor written; the link stays a link, its target as it was.
        assert_eq!(loaded(&path), (vec![], true));
        let mut f = HistoryFile::new(Some(path.clone()));
        f.load(&mut DefaultHistory::new());
        f.save(&mut entries(&["sysgen web1"]));
        assert!(f.refused);
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:secret:19000::::::\n");
        // Planted after the shell started (absent at load): still refused at save.
        std::fs::remove_file(&path).unwrap();
        let mut f = HistoryFile::new(Some(path.clone()));
        f.load(&mut DefaultHistory::new());
        assert!(!f.refused);
        symlink(&target, &path).unwrap();
        f.save(&mut entries(&["sysgen web1"]));
        assert!(f.refused);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:secret:19000::::::\n");
        // A dangling link is not followed to create its target either.
        std::fs::remove_file(&path).unwrap();
        let nowhere = home.path().join("created-through-the-link");
        symlink(&nowhere, &path).unwrap();
        let mut f = HistoryFile::new(Some(path.clone()));
        f.save(&mut entries(&["list"]));
        assert!(f.refused && !nowhere.exists());
        // A hard link to a file of ours (as /etc/shadow is root's).
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&target, &path).unwrap();
        let mut f = HistoryFile::new(Some(path.clone()));
        f.save(&mut entries(&["list"]));
        assert!(f.refused);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root:secret:19000::::::\n");
    }

    #[test]
    fn history_only_in_a_safe_place() {
        let (home, path) = home();
        // No HOME: nothing is read or written.
        let mut none = HistoryFile::new(None);
        none.save(&mut entries(&["list"]));
        assert!(none.refused);
        // A FIFO is not opened (it would block), a directory not written.
        rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).unwrap();
        assert_eq!(loaded(&path), (vec![], true));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(loaded(&path), (vec![], true));
        std::fs::remove_dir(&path).unwrap();
        // A directory others may write to: they could swap the file.
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut f = HistoryFile::new(Some(path.clone()));
        f.save(&mut entries(&["list"]));
        assert!(f.refused && !path.exists());
        // Sticky, as /tmp: others cannot rename or remove what is ours.
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let mut f = HistoryFile::new(Some(path.clone()));
        f.save(&mut entries(&["list"]));
        assert!(!f.refused && path.is_file());
        // Someone else's file (needs root to make one).
        if rustix::process::geteuid().is_root() {
            std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            let before = std::fs::read(&path).unwrap();
            let mut f = HistoryFile::new(Some(path.clone()));
            f.load(&mut DefaultHistory::new());
            f.save(&mut entries(&["erase web1"]));
            assert!(f.refused);
            assert_eq!(std::fs::read(&path).unwrap(), before);
        }
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
