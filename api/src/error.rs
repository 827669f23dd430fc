//! [`FieldError`]: one problem with one field of one resource, named by its path.

use std::fmt;

/// A problem with one field, e.g. `spec.ingress[2].destination.ports[0]: range 90:80 is reversed`.
///
/// `path` is empty when the problem is with the document as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Dotted field path with `[i]` for list items, as in `spec.egress[0].source.nets[1]`.
    pub path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
