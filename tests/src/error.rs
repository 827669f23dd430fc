//! The crate's error type: a failed command (with its command line and
//! output), an I/O failure (with what was being done), or a bad name prefix.

use std::io;

/// What went wrong in a testkit operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {}", detail(.stderr, .stdout))]
    Command {
        /// The command line, e.g. `ip -n tk-1-0-ab12 link set eth0 up`.
        command: String,
        /// How it exited, e.g. `exit status: 2`.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
        /// Its standard output, trimmed.
        stdout: String,
    },
    /// A system call or command spawn failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the namespace, path or command.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A namespace name prefix that cannot be used.
    #[error("invalid namespace prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// Why it is refused.
        reason: &'static str,
    },
}

/// The most useful part of a failed command's output: stderr, or stdout when
/// stderr is empty (ping reports loss on stdout).
fn detail<'a>(stderr: &'a str, stdout: &'a str) -> &'a str {
    match (stderr.is_empty(), stdout.is_empty()) {
        (false, _) => stderr,
        (true, false) => stdout,
        (true, true) => "no output",
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stderr: &str, stdout: &str) -> Error {
        Error::Command {
            command: "ip link".into(),
            status: "exit status: 1".into(),
            stderr: stderr.into(),
            stdout: stdout.into(),
        }
    }

    #[test]
    fn command_error_names_the_command_and_its_stderr() {
        assert_eq!(
            failed("RTNETLINK answers: File exists", "ignored").to_string(),
            "`ip link` failed (exit status: 1): RTNETLINK answers: File exists"
        );
    }

    #[test]
    fn command_error_falls_back_to_stdout_when_stderr_is_empty() {
        assert_eq!(
            failed("", "1 packets transmitted, 0 received").to_string(),
            "`ip link` failed (exit status: 1): 1 packets transmitted, 0 received"
        );
        assert!(failed("", "").to_string().ends_with(": no output"));
    }
}
