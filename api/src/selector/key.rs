//! Kubernetes label-key rules, as selectors (and resource labels) use them.
//!
//! A key is `[prefix "/"] name`: the optional prefix is a DNS subdomain (at most
//! 253 characters of dot-separated lowercase labels, each at most 63 characters,
//! beginning and ending with a letter or digit); the name is 1 to 63 characters of
//! `[A-Za-z0-9._-]` beginning and ending with a letter or digit. libcalico-go
//! itself accepts any run of `[A-Za-z0-9._/-]`; this crate is stricter so that a
//! selector cannot name a label Kubernetes would refuse to store.

const MAX_PREFIX: usize = 253;
const MAX_DNS_LABEL: usize = 63;
const MAX_NAME: usize = 63;

/// Where a key breaks the rules: byte offset within the key, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyFault {
    pub offset: usize,
    pub expected: String,
}

/// Whether `key` is a valid Kubernetes label key.
pub fn is_valid_label_key(key: &str) -> bool {
    check(key).is_ok()
}

/// Characters a selector key token may contain (the tokenizer's notion of a key).
pub(super) fn is_key_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'/')
}

/// Checks `key` and names the first offending byte.
pub(super) fn check(key: &str) -> Result<(), KeyFault> {
    let fault = |offset: usize, expected: &str| {
        Err(KeyFault {
            offset,
            expected: expected.to_string(),
        })
    };
    let bytes = key.as_bytes();
    if bytes.is_empty() {
        return fault(0, "a label key");
    }
    let (name_start, prefix) = match key.find('/') {
        Some(slash) => {
            if let Some(second) = key[slash + 1..].find('/') {
                return fault(slash + 1 + second, "at most one '/' in a label key");
            }
            (slash + 1, Some(&key[..slash]))
        }
        None => (0, None),
    };
    if let Some(prefix) = prefix {
        check_prefix(prefix)?;
    }
    let name = &bytes[name_start..];
    if name.is_empty() {
        return fault(name_start, "a label name after '/'");
    }
    if let Some(bad) = name
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    {
        return fault(
            name_start + bad,
            "a letter, digit, '-', '_' or '.' in the label name",
        );
    }
    if name.len() > MAX_NAME {
        return fault(
            name_start + MAX_NAME,
            "a label name of at most 63 characters",
        );
    }
    if !name[0].is_ascii_alphanumeric() {
        return fault(name_start, "a letter or digit to begin the label name");
    }
    if !name[name.len() - 1].is_ascii_alphanumeric() {
        return fault(
            name_start + name.len() - 1,
            "a letter or digit to end the label name",
        );
    }
    Ok(())
}

/// Checks the DNS-subdomain prefix (the part before `/`), which starts at offset 0.
fn check_prefix(prefix: &str) -> Result<(), KeyFault> {
    let fault = |offset: usize, expected: &str| {
        Err(KeyFault {
            offset,
            expected: expected.to_string(),
        })
    };
    let bytes = prefix.as_bytes();
    if bytes.is_empty() {
        return fault(0, "a DNS subdomain prefix before '/'");
    }
    if let Some(bad) = bytes
        .iter()
        .position(|&b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.')))
    {
        return fault(
            bad,
            "a lowercase letter, digit, '-' or '.' in the key prefix",
        );
    }
    if bytes.len() > MAX_PREFIX {
        return fault(MAX_PREFIX, "a key prefix of at most 253 characters");
    }
    let mut start = 0;
    for label in prefix.split('.') {
        let end = start + label.len();
        let label = label.as_bytes();
        if label.first().is_none_or(|b| !b.is_ascii_alphanumeric()) {
            return fault(
                start,
                "a letter or digit to begin each part of the key prefix",
            );
        }
        if label.len() > MAX_DNS_LABEL {
            return fault(
                start + MAX_DNS_LABEL,
                "at most 63 characters between dots in the key prefix",
            );
        }
        if !label[label.len() - 1].is_ascii_alphanumeric() {
            return fault(
                end - 1,
                "a letter or digit to end each part of the key prefix",
            );
        }
        start = end + 1;
    }
    Ok(())
}
