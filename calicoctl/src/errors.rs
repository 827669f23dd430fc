//! How failures map to exit statuses (documented in `cli::EXIT_CODES_HELP`
//! and the README): input the user must fix is [`Invalid`] (exit 2);
//! everything else that fails is exit 1.

use std::fmt;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The operation failed: datastore, not found, already exists, conflict.
pub const EXIT_FAILURE: u8 = 1;
/// Usage error or invalid input; nothing was written. (clap uses 2 as well.)
pub const EXIT_INVALID: u8 = 2;

/// Input the user must fix: an unknown kind, a file that does not parse or
/// validate, a malformed patch or label. Lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// One line saying what was rejected.
    pub summary: String,
    /// Each problem, e.g. `pools.yaml: document 2 (ippool "p"): spec.cidr: ...`.
    pub problems: Vec<String>,
}

impl Invalid {
    /// A single problem.
    pub fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            problems: Vec::new(),
        }
    }

    /// A summary and every problem behind it.
    pub fn with_problems(summary: impl Into<String>, problems: Vec<String>) -> Self {
        Self {
            summary: summary.into(),
            problems,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// The exit status for an error that ended a command.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let invalid = err.chain().any(|e| {
        e.is::<Invalid>()
            || e.is::<crate::input::InputError>()
            || matches!(
                e.downcast_ref::<datastore::Error>(),
                Some(datastore::Error::InvalidResource { .. } | datastore::Error::Config { .. })
            )
    });
    if invalid { EXIT_INVALID } else { EXIT_FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_anywhere_in_the_chain_exits_2() {
        let err = anyhow::Error::new(Invalid::new("bad")).context("while applying");
        assert_eq!(exit_code(&err), EXIT_INVALID);
    }

    #[test]
    fn datastore_failures_exit_1() {
        let err = anyhow::Error::new(datastore::Error::NotFound { key: "k".into() });
        assert_eq!(exit_code(&err), EXIT_FAILURE);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), EXIT_FAILURE);
    }

    #[test]
    fn invalid_lists_every_problem_on_its_own_line() {
        let err =
            Invalid::with_problems("f.yaml: 2 invalid documents", vec!["a".into(), "b".into()]);
        assert_eq!(err.to_string(), "f.yaml: 2 invalid documents\n  - a\n  - b");
    }
}
