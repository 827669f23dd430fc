//! [`Problems`]: what the calculation could not use as written, each a
//! [`Problem`] naming its kind, the resource (`Kind name`) and the field at
//! fault.

use std::fmt::Display;

use api::{Kind, ObjectMeta};

pub use crate::state::{Problem, ProblemKind};

/// The problems found so far, in the order found (the calculation walks
/// ordered maps, so the order is deterministic).
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem of `kind` with `subject`'s `field` (may be empty).
    pub(super) fn add(
        &mut self,
        kind: ProblemKind,
        subject: impl Display,
        field: &str,
        message: impl Display,
    ) {
        self.0.push(Problem {
            kind,
            resource: subject.to_string(),
            field: field.to_owned(),
            message: message.to_string(),
        });
    }

    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    /// The problems as their lines, for tests that compare text.
    #[cfg(test)]
    pub(super) fn into_lines(self) -> Vec<String> {
        self.0.iter().map(Problem::to_string).collect()
    }
}

/// How a resource is named in problems: `WorkloadEndpoint default/pod-a`.
pub(super) fn subject(kind: Kind, meta: &ObjectMeta) -> String {
    format!("{kind} {}", meta.display_name())
}
