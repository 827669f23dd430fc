//! Name syntaxes from Kubernetes and IANA: DNS-1123 labels and subdomains, label
//! keys and values, service (port) names, interface names.

const LABEL_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A DNS-1123 label: at most 63 of `a-z0-9-`, starting and ending alphanumeric.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > LABEL_MAX {
        return Err(format!("{s:?} is longer than {LABEL_MAX} characters"));
    }
    if !b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        || !is_lower_alnum(b[0])
        || !is_lower_alnum(b[b.len() - 1])
    {
        return Err(format!(
            "{s:?} is not a valid DNS-1123 label (lowercase letters, digits and '-', \
             starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: dot-separated parts of `a-z0-9-`, each starting
/// and ending alphanumeric, at most 253 characters in all. As Kubernetes'
/// `IsDNS1123Subdomain` (and so Calico's names), a part may be longer than a
/// label's 63 characters: a CNI endpoint name holds a 64-character
/// container ID.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > SUBDOMAIN_MAX {
        return Err(format!("{s:?} is longer than {SUBDOMAIN_MAX} characters"));
    }
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
            && is_lower_alnum(b[0])
            && is_lower_alnum(b[b.len() - 1])
    };
    if !s.split('.').all(part_ok) {
        return Err(format!(
            "{s:?} is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// The name part of a label key or a label value: at most 63 of `A-Za-z0-9-_.`,
/// starting and ending alphanumeric.
fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !s.is_empty()
        && s.len() <= LABEL_MAX
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS-1123 subdomain.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        dns1123_subdomain(prefix).map_err(|e| format!("invalid key prefix: {e}"))?;
    }
    if !qualified_name_part(name) {
        return Err(format!(
            "invalid key {s:?}: the name must be 1-63 of letters, digits, '-', '_' and '.', \
             starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or like the name part of a key.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || qualified_name_part(s) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {s:?}: at most 63 of letters, digits, '-', '_' and '.', \
             starting and ending with a letter or digit"
        ))
    }
}

/// An IANA service name, as named ports use: 1-15 of `a-z0-9-`, at least one
/// letter, no hyphen at either end nor two in a row.
pub fn iana_service_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !s.is_empty()
        && s.len() <= 15
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        && b.iter().any(u8::is_ascii_lowercase)
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(
            "a port name is 1-15 of lowercase letters, digits and '-', with at least one letter \
             and no leading, trailing or double '-'"
                .into(),
        )
    }
}

/// A Linux interface name: 1-15 bytes, no '/', ':' or whitespace. `*` is allowed as
/// Calico's "all interfaces".
pub fn interface_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && !s
            .bytes()
            .any(|c| c == b'/' || c == b':' || c.is_ascii_whitespace() || c.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_accept_dotted_lowercase_names_only() {
        assert!(dns1123_subdomain("security.allow-dns").is_ok());
        for bad in [
            "",
            "Upper",
            "-lead",
            "trail-",
            "a..b",
            "under_score",
            &"a".repeat(254),
        ] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subdomain_parts_may_be_longer_than_a_label() {
        // `<node>-cni-<64 hex>-eth0`, the name of a podman container's endpoint.
        let name = format!("host1-cni-{}-eth0", "0123456789abcdef".repeat(4));
        assert!(dns1123_subdomain(&name).is_ok());
        assert!(dns1123_subdomain(&format!("{}.b", "a".repeat(200))).is_ok());
        assert!(dns1123_subdomain(&"a".repeat(253)).is_ok());
    }

    #[test]
    fn labels_reject_dots() {
        assert!(dns1123_label("platform").is_ok());
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
    }

    #[test]
    fn label_keys_take_an_optional_dns_prefix() {
        assert!(label_key("app").is_ok());
        assert!(label_key("projectcalico.org/namespace").is_ok());
        assert!(label_key("kubernetes.io/metadata.name").is_ok());
        assert!(label_key("Bad_Prefix/app").is_err());
        assert!(label_key("app/").is_err());
        assert!(label_key("-app").is_err());
    }

    #[test]
    fn label_values_may_be_empty() {
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_beta").is_ok());
        assert!(label_value("has space").is_err());
    }

    #[test]
    fn service_names_need_a_letter_and_clean_hyphens() {
        assert!(iana_service_name("http").is_ok());
        assert!(iana_service_name("h2-grpc").is_ok());
        for bad in [
            "8080x-",
            "1234",
            "a--b",
            "-http",
            "way-too-long-port-name",
            "HTTP",
        ] {
            assert!(iana_service_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interface_names_are_short_and_plain() {
        assert!(interface_name("eth0").is_ok());
        assert!(interface_name("*").is_ok());
        assert!(interface_name("a/b").is_err());
        assert!(interface_name("averyveryverylongname").is_err());
    }
}
