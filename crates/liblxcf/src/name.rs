//! Container names: one DNS label, because the name becomes the container's
//! hostname, its libvirt domain name, its directory and its hosts line.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name `{0}` is longer than 63 characters")]
    TooLong(String),
    #[error("name `{0}` may only contain lower-case letters, digits and `-`")]
    BadChar(String),
    #[error("name `{0}` must start with a letter or digit")]
    BadStart(String),
    #[error("name `{0}` must not end with `-`")]
    BadEnd(String),
}

/// A container name that passed [`validate`]: made once where a name enters lxcf
/// (the command line, the API), so that nothing further in needs to check it again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn new(name: impl Into<String>) -> Result<Name, NameError> {
        let name = name.into();
        validate(&name)?;
        Ok(Name(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for Name {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::new(s)
    }
}

/// Longest DNS label (RFC 1123); also well under libvirt's and the filesystem's limits.
pub const MAX_LEN: usize = 63;

/// Accepts an RFC 1123 hostname label in lower case. Upper case is refused rather
/// than folded: `Web1` and `web1` would otherwise be two directories but one host.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong(name.to_string()));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(NameError::BadChar(name.to_string()));
    }
    if name.starts_with('-') {
        return Err(NameError::BadStart(name.to_string()));
    }
    if name.ends_with('-') {
        return Err(NameError::BadEnd(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_names() {
        for n in ["web1", "a", "db-01", "0abc", &"x".repeat(63)] {
            assert_eq!(validate(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn bad_names() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert!(matches!(validate(&"x".repeat(64)), Err(NameError::TooLong(_))));
        for n in ["a/b", "..", ".", "a b", "Web1", "a_b", "a.b", "é", "a\nb", "/"] {
            assert!(matches!(validate(n), Err(NameError::BadChar(_))), "{n}");
        }
        assert!(matches!(validate("-web"), Err(NameError::BadStart(_))));
        assert!(matches!(validate("web-"), Err(NameError::BadEnd(_))));
    }
}
