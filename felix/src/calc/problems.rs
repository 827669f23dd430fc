//! [`Problems`]: what the calculation could not use, each line naming the
//! resource (`Kind name`) and the field at fault.

use std::fmt::Display;

use api::{Kind, ObjectMeta};

/// The problems found so far, in the order found (the calculation walks
/// ordered maps, so the order is deterministic).
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    /// `<subject>: <field>: <message>`.
    pub(super) fn add(&mut self, subject: impl Display, field: &str, message: impl Display) {
        if field.is_empty() {
            self.0.push(format!("{subject}: {message}"));
        } else {
            self.0.push(format!("{subject}: {field}: {message}"));
        }
    }

    pub(super) fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// How a resource is named in problems: `WorkloadEndpoint default/pod-a`.
pub(super) fn subject(kind: Kind, meta: &ObjectMeta) -> String {
    format!("{kind} {}", meta.display_name())
}
