//! Exit codes and the one-line error report. The codes are the library's error
//! kinds ([`liblxcf::Kind`]), so the CLI and the API say the same thing.

pub use liblxcf::Kind as Exit;

/// A failed command: its exit status, one line of message, and a hint.
pub struct Failure {
    pub code: Exit,
    pub message: String,
    pub hint: Option<String>,
}

impl From<liblxcf::Error> for Failure {
    fn from(e: liblxcf::Error) -> Failure {
        Failure { code: e.kind(), hint: e.hint(), message: liblxcf::error::chain(&e) }
    }
}

impl From<liblxcf::config::ConfigError> for Failure {
    fn from(e: liblxcf::config::ConfigError) -> Failure {
        liblxcf::Error::from(e).into()
    }
}
