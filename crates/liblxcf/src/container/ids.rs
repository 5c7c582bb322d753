//! The host IDs of unprivileged containers: each gets 65536 user and group IDs of
//! the host (its root is the first), a range no other container, no user or group
//! of the host (/etc/passwd, /etc/group) and no range given to users for their own
//! namespaces (/etc/subuid, /etc/subgid) has. Allocated under the host-wide lock and
//! written into the container's root record at once (see `reserve`), so that two
//! sysgens at the same moment never get the same one.
//!
//! IDs belong to the host, not to one configuration: lxcf runs with other roots on
//! the same host (a second configuration, the test suite, a bench) take from the
//! same space. So the lock is host-wide ([`HOST_LOCK`]), and a range taken before
//! its domain exists is also written to [`RESERVED`]`/FIRST`, naming the root record
//! that holds it: valid as long as that record says so (a record removed by an
//! erase or an undo frees it), which any lxcf, whatever its root, can read.

use std::path::{Path, PathBuf};

use crate::host::idmap::COUNT;

/// The lowest first ID lxcf gives (as LXD and Incus start at 1,000,000): far above
/// the IDs distributions hand to users and system accounts.
pub const FIRST: u32 = 1_000_000;
/// The highest usable ID is 2^32 - 2 (-1 is "no ID").
const LAST: u64 = u32::MAX as u64 - 1;

#[derive(Debug, thiserror::Error)]
#[error("no range of {COUNT} host IDs is free from {FIRST} on (all are given to containers, users or /etc/subuid)")]
pub struct Exhausted;

/// A range of IDs, `[start, end)`.
pub type Range = (u64, u64);

/// The lowest `FIRST + k * COUNT` whose range meets none of `used`.
pub fn allocate(used: &[Range]) -> Result<u32, Exhausted> {
    let mut base = FIRST as u64;
    while base + COUNT as u64 - 1 <= LAST {
        let end = base + COUNT as u64;
        match used.iter().filter(|&&(s, e)| s < end && base < e).map(|&(_, e)| e).max() {
            None => return Ok(base as u32),
            // Past the last range in the way, to the next multiple of COUNT from FIRST.
            Some(e) => base = FIRST as u64 + (e - FIRST as u64).div_ceil(COUNT as u64) * COUNT as u64,
        }
    }
    Err(Exhausted)
}

/// The host-wide lock around allocating a range.
pub const HOST_LOCK: &str = "/run/lxcf/ids.lock";
/// Ranges taken by any lxcf on this host before their domains exist.
pub const RESERVED: &str = "/run/lxcf/ids";

/// Writes the reservation of the range from `first` by the root record `record`.
pub fn reserve(first: u32, record: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(RESERVED)?;
    std::fs::write(Path::new(RESERVED).join(first.to_string()), record.as_os_str().as_encoded_bytes())
}

/// The ranges reserved and still held by the records that reserved them; stale
/// reservations are removed.
pub fn reserved() -> Vec<Range> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(RESERVED).into_iter().flatten().flatten() {
        let Some(first) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let record = std::fs::read(e.path()).ok().map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()));
        let held = record
            .and_then(|r| std::fs::read_to_string(r).ok())
            .is_some_and(|t| t.lines().any(|l| l.strip_prefix("ids=").is_some_and(|b| b.trim() == first.to_string())));
        if held {
            out.push(range(first));
        } else {
            let _ = std::fs::remove_file(e.path());
        }
    }
    out
}

/// The host's own users' and groups' IDs and its subordinate ranges, under `etc`.
/// Missing files hold nothing; lines that are not `name:x:ID:...` or
/// `name:START:COUNT` are skipped as the tools that read them do.
pub fn host_ranges(etc: &Path) -> Vec<Range> {
    let read = |f: &str| std::fs::read_to_string(etc.join(f)).unwrap_or_default();
    let mut out = Vec::new();
    for f in ["passwd", "group"] {
        for l in read(f).lines() {
            if let Some(id) = l.split(':').nth(2).and_then(|x| x.parse::<u64>().ok()) {
                out.push((id, id + 1));
            }
        }
    }
    for f in ["subuid", "subgid"] {
        for l in read(f).lines() {
            let mut p = l.split(':').skip(1);
            if let (Some(Ok(s)), Some(Ok(n))) = (p.next().map(str::parse::<u64>), p.next().map(str::parse::<u64>)) {
                out.push((s, s + n));
            }
        }
    }
    out
}

/// The range of a container whose first ID is `base`.
pub fn range(base: u32) -> Range {
    (base as u64, base as u64 + COUNT as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_range_past_everything_in_the_way() {
        assert_eq!(allocate(&[]).unwrap(), FIRST);
        assert_eq!(allocate(&[range(FIRST)]).unwrap(), FIRST + COUNT);
        // A user's subordinate range across two slots pushes past both.
        assert_eq!(allocate(&[(FIRST as u64 + 10, FIRST as u64 + COUNT as u64 + 1)]).unwrap(), FIRST + 2 * COUNT);
        // A single user ID inside the first slot.
        assert_eq!(allocate(&[(FIRST as u64 + 5, FIRST as u64 + 6)]).unwrap(), FIRST + COUNT);
        // A hole left by an erased container is used again.
        assert_eq!(allocate(&[range(FIRST + COUNT)]).unwrap(), FIRST);
        // Below FIRST does not matter.
        assert_eq!(allocate(&[(0, 65536), (100_000, 165_536)]).unwrap(), FIRST);
    }

    #[test]
    fn an_exhausted_space_is_an_error() {
        assert!(allocate(&[(FIRST as u64, LAST + 1)]).is_err());
        let last = ((LAST + 1 - FIRST as u64) / COUNT as u64 - 1) * COUNT as u64 + FIRST as u64;
        assert_eq!(allocate(&[(FIRST as u64, last)]).unwrap() as u64, last);
    }

    #[test]
    fn host_files_are_read_as_the_tools_read_them() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("passwd"), "root:x:0:0::/root:/bin/sh\nbig:x:1000007:100::/:/bin/sh\nbad line\n").unwrap();
        std::fs::write(t.path().join("subuid"), "alice:1065536:65536\n#comment\n").unwrap();
        let r = host_ranges(t.path());
        assert!(r.contains(&(0, 1)) && r.contains(&(1_000_007, 1_000_008)) && r.contains(&(1_065_536, 1_131_072)), "{r:?}");
        assert_eq!(allocate(&r).unwrap(), FIRST + 2 * COUNT);
    }
}
