//! Unique names. A namespace is named `PREFIX-PID-COUNTER-RAND` (the creating
//! process, a per-process counter, 16 random bits against pid reuse), so
//! names never collide between parallel tests or concurrent test binaries,
//! and a later run can tell from the pid whether the creator is still alive.
//! Interface names must fit the kernel's 15 bytes: `PREFIX` (at most 5) + the
//! pid in 5 base-36 digits + the counter in 5 base-36 digits; with both
//! numbers at fixed width, different prefixes can never produce equal names.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// Longest namespace prefix accepted.
pub const MAX_PREFIX_LEN: usize = 32;
/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;
/// Longest interface prefix kept by [`ifname`].
pub const MAX_IFNAME_PREFIX_LEN: usize = 5;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_count() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Checks that `prefix` can start a namespace name: 1 to 32 ASCII letters,
/// digits or `_` (no `-`, which separates the parts of the name).
pub fn validate_prefix(prefix: &str) -> Result<(), Error> {
    let reason = if prefix.is_empty() {
        "empty"
    } else if prefix.len() > MAX_PREFIX_LEN {
        "longer than 32 characters"
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        "only ASCII letters, digits and '_' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidPrefix {
        prefix: prefix.to_owned(),
        reason,
    })
}

/// The namespace name for these parts (pure).
pub fn netns_name(prefix: &str, pid: u32, count: u64, random: u16) -> String {
    format!("{prefix}-{pid}-{count}-{random:04x}")
}

/// A fresh namespace name for `prefix`, unique on this host.
pub fn unique_netns_name(prefix: &str) -> Result<String, Error> {
    validate_prefix(prefix)?;
    let random = RandomState::new().build_hasher().finish() as u16;
    Ok(netns_name(prefix, std::process::id(), next_count(), random))
}

/// The pid that created namespace `name`, if `name` is one of ours for
/// `prefix` (pure). Names of any other shape give `None`.
pub fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let _count: u64 = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    let ours = random.len() == 4
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.next().is_none();
    ours.then_some(pid)
}

/// `n` in base 36 with lowercase digits, left-padded with `0` to `width`.
fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.resize(out.len().max(width), b'0');
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// The interface name for these parts (pure): `prefix` stripped of anything
/// but ASCII letters, digits and `_` and cut to 5 characters, the pid in 5
/// base-36 digits, the counter in 5 (both modulo 36^5). Never longer than
/// 15 bytes.
pub fn ifname_for(prefix: &str, pid: u32, count: u64) -> String {
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(MAX_IFNAME_PREFIX_LEN)
        .collect();
    let modulus = 36u64.pow(5);
    format!(
        "{prefix}{}{}",
        base36(u64::from(pid) % modulus, 5),
        base36(count % modulus, 5)
    )
}

/// A fresh interface name starting with (at most 5 characters of) `prefix`,
/// unique on this host among names made by this function and at most 15
/// bytes long. Links made through this crate live only in test namespaces,
/// so plain names like `eth0` are fine there; use this for anything that
/// could meet the host namespace.
pub fn ifname(prefix: &str) -> String {
    ifname_for(prefix, std::process::id(), next_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_name_reads_back_its_owner_pid() {
        let name = netns_name("tk", 4242, 7, 0xbeef);
        assert_eq!(name, "tk-4242-7-beef");
        assert_eq!(owner_pid("tk", &name), Some(4242));
    }

    #[test]
    fn names_of_other_shapes_or_prefixes_have_no_owner() {
        for name in [
            "tk",
            "tk-",
            "tk-12",
            "tk-12-3",
            "tk-12-3-zzzz",
            "tk-12-3-beef-x",
            "tk-x-3-beef",
            "tkx-12-3-beef",
            "other-12-3-beef",
        ] {
            assert_eq!(owner_pid("tk", name), None, "{name}");
        }
        // A longer prefix sharing ours is not ours.
        assert_eq!(owner_pid("tk", "tk_a-12-3-beef"), None);
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_reason() {
        for (prefix, reason) in [
            ("", "empty"),
            ("a-b", "only ASCII letters, digits and '_' are allowed"),
            ("a/b", "only ASCII letters, digits and '_' are allowed"),
            (&"x".repeat(33), "longer than 32 characters"),
        ] {
            match validate_prefix(prefix) {
                Err(Error::InvalidPrefix {
                    prefix: p,
                    reason: r,
                }) => {
                    assert_eq!((p.as_str(), r), (prefix, reason));
                }
                other => panic!("{prefix:?}: {other:?}"),
            }
        }
        validate_prefix("felix_2").unwrap();
    }

    #[test]
    fn unique_namespace_names_differ_within_a_process() {
        let a = unique_netns_name("tk").unwrap();
        let b = unique_netns_name("tk").unwrap();
        assert_ne!(a, b);
        assert_eq!(owner_pid("tk", &a), Some(std::process::id()));
    }

    #[test]
    fn interface_names_fit_the_kernel_limit_even_at_the_extremes() {
        let name = ifname_for("verylongprefix", u32::MAX, u64::MAX);
        assert!(name.len() <= MAX_IFNAME_LEN, "{name}");
        assert!(name.starts_with("veryl"), "{name}");
        assert_eq!(ifname_for("v-e/t h", 1, 35), "veth000010000z");
    }

    #[test]
    fn interface_names_encode_numbers_at_fixed_width_so_they_cannot_collide() {
        assert_eq!(ifname_for("v", 1, 36), "v0000100010");
        assert_eq!(ifname_for("v", 36, 1), "v0001000001");
        // A longer prefix cannot be mistaken for a shorter one plus pid digits.
        assert_ne!(
            ifname_for("va", 1, 0),
            ifname_for("v", 0xa * 36u32.pow(4), 1)
        );
    }

    #[test]
    fn base36_pads_and_converts() {
        assert_eq!(base36(0, 3), "000");
        assert_eq!(base36(35, 1), "z");
        assert_eq!(base36(36 * 36, 1), "100");
    }
}
