//! Test requirements: root, and programs from Debian packages. Locally a test
//! whose requirement is missing prints why it is skipped and returns early;
//! in CI (`CI` set to anything but empty, `0` or `false`) nothing may be
//! skipped, so it panics instead.

use std::io::Write;
use std::path::PathBuf;

/// What to do about a requirement (pure decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The requirement is met: run the test.
    Run,
    /// Not met, locally: skip with a message.
    Skip,
    /// Not met, in CI: fail.
    Fail,
}

/// Decides what to do given whether the requirement is met and whether this
/// is CI.
pub fn gate(met: bool, ci: bool) -> Gate {
    match (met, ci) {
        (true, _) => Gate::Run,
        (false, false) => Gate::Skip,
        (false, true) => Gate::Fail,
    }
}

/// Whether the `CI` environment variable value means "running in CI".
pub fn is_ci_value(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

fn in_ci() -> bool {
    is_ci_value(std::env::var("CI").ok().as_deref())
}

/// Applies [`gate`]: true to run; false after printing
/// `TEST: skipped: needs WHAT` (uncaptured) locally; panics in CI.
fn check(met: bool, what: &str) -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    match gate(met, in_ci()) {
        Gate::Run => true,
        Gate::Skip => {
            // Straight to stderr in one write: libtest captures `eprintln!`.
            let line = format!("{test}: skipped: needs {what}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            false
        }
        Gate::Fail => panic!("{test} needs {what}, and in CI nothing may be skipped"),
    }
}

/// True when running as root. Otherwise prints `skipped: needs root` and
/// returns false, or panics in CI. Use as `if !require_root() { return; }`.
pub fn require_root() -> bool {
    check(nix::unistd::geteuid().is_root(), "root")
}

/// True when every program is found on `PATH` (or exists, for a path).
/// Otherwise prints which are missing and returns false, or panics in CI.
pub fn require_programs(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    check(
        missing.is_empty(),
        &format!("programs not found: {}", missing.join(", ")),
    )
}

/// True when `python` (a path, e.g. Debian's `/usr/bin/python3`) imports
/// every module. Otherwise prints which do not import and returns false, or
/// panics in CI.
pub fn require_python_modules(python: &str, modules: &[&str]) -> bool {
    let imports = |module: &&str| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {module}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = modules.iter().copied().filter(|m| !imports(m)).collect();
    check(
        missing.is_empty(),
        &format!("{python} modules not found: {}", missing.join(", ")),
    )
}

fn on_path(program: &str) -> bool {
    find_program(program).is_some()
}

/// Where `program` is: on `PATH`, or the path itself when it has a `/`.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_requirement_skips_locally_and_fails_in_ci() {
        assert_eq!(gate(true, false), Gate::Run);
        assert_eq!(gate(true, true), Gate::Run);
        assert_eq!(gate(false, false), Gate::Skip);
        assert_eq!(gate(false, true), Gate::Fail);
    }

    #[test]
    fn ci_is_any_value_but_empty_zero_or_false() {
        assert!(is_ci_value(Some("true")));
        assert!(is_ci_value(Some("1")));
        for v in [None, Some(""), Some("0"), Some("false")] {
            assert!(!is_ci_value(v), "{v:?}");
        }
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        assert!(on_path("sh"));
        assert!(on_path("/bin/sh"));
        assert!(!on_path("testkit-no-such-program"));
        assert!(require_programs(&["sh", "ip"]));
    }
}
