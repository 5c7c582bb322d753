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
