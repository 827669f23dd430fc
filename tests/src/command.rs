//! Running an external command to completion and turning a failure into an
//! [`Error`] that names the command line and what it printed.

use std::process::{Command, Output};

use crate::Error;

/// The command line of `cmd` as one string, for error messages.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion with captured output; returns the output if it
/// exited successfully, and [`Error::Command`] (or [`Error::Io`] when it could
/// not be started) otherwise.
pub fn run_checked(cmd: &mut Command) -> Result<Output, Error> {
    let output = cmd
        .output()
        .map_err(|e| Error::io(format!("could not run `{}`", display(cmd)), e))?;
    if output.status.success() {
        return Ok(output);
    }
    Err(Error::Command {
        command: display(cmd),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successful_command_returns_its_output() {
        let out = run_checked(Command::new("sh").args(["-c", "echo hi"])).unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn a_failing_command_is_an_error_with_its_command_line_and_stderr() {
        let err =
            run_checked(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        match err {
            Error::Command {
                command,
                status,
                stderr,
                ..
            } => {
                assert_eq!(command, "sh -c echo oops >&2; exit 3");
                assert_eq!(status, "exit status: 3");
                assert_eq!(stderr, "oops");
            }
            other => panic!("expected a command error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_program_is_an_io_error_naming_it() {
        let err = run_checked(&mut Command::new("/nonexistent/testkit-prog")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/testkit-prog"),
            "{err}"
        );
    }
}
