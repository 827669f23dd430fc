//! Validation plumbing shared by every resource: an error collector that knows field
//! paths, and checks for the field types that recur across kinds (names, selectors,
//! CIDRs, ports).

pub(crate) mod names;

use std::fmt::Display;

use crate::{
    error::FieldError,
    selector::Selector,
    types::{Cidr, Port},
};

/// Collects every [`FieldError`] found in one resource.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    /// Records a problem at `path`.
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// Records the error of `result`, if any, at `path`.
    pub(crate) fn check(&mut self, path: impl Into<String>, result: Result<(), impl Display>) {
        if let Err(e) = result {
            self.add(path, e.to_string());
        }
    }

    /// A non-empty selector must parse.
    pub(crate) fn selector(&mut self, path: impl Into<String>, source: &str) {
        if let Err(e) = Selector::parse(source) {
            self.add(path, format!("invalid selector {source:?}: {e}"));
        }
    }

    /// Each CIDR must be a network (no host bits); when `family` is given, of that family.
    pub(crate) fn networks(&mut self, path: &str, nets: &[Cidr], family: Option<u8>) {
        for (i, net) in nets.iter().enumerate() {
            let path = format!("{path}[{i}]");
            match family {
                Some(f) if net.family() != f => {
                    self.add(path, format!("{net} is not an IPv{f} network"));
                }
                _ => self.check(path, net.check_network()),
            }
        }
    }

    /// Each port must be a valid number, ordered range or port name.
    pub(crate) fn ports(&mut self, path: &str, ports: &[Port]) {
        for (i, port) in ports.iter().enumerate() {
            self.check(format!("{path}[{i}]"), port.check());
        }
    }

    /// Each name must be a DNS-1123 subdomain.
    pub(crate) fn names(&mut self, path: &str, list: &[String]) {
        for (i, name) in list.iter().enumerate() {
            self.check(format!("{path}[{i}]"), names::dns1123_subdomain(name));
        }
    }

    pub(crate) fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// `path.field`.
pub(crate) fn at(path: &str, field: &str) -> String {
    format!("{path}.{field}")
}

/// A MAC address written `aa:bb:cc:dd:ee:ff`.
pub(crate) fn mac(s: &str) -> Result<(), String> {
    let parts: Vec<_> = s.split(':').collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
    {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a MAC address like \"ee:ee:ee:ee:ee:ee\""
        ))
    }
}
