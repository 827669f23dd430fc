//! `completion` and `man`: shell completion scripts and man pages generated
//! from the clap definition in `cli`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, Shell};

/// Writes the completion script for `shell` to `out`.
pub fn completion(shell: Shell, out: &mut dyn Write) {
    let mut command = Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut command, "calicoctl", out);
}

/// Writes `calicoctl.1` and `calicoctl-<sub>.1` for each subcommand into
/// `dir`, or the main page to `out` when there is no directory. Returns the
/// files written.
pub fn man(dir: Option<&Path>, out: &mut dyn Write) -> Result<Vec<std::path::PathBuf>> {
    let command = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(command)
            .render(out)
            .context("writing the man page")?;
        return Ok(Vec::new());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut written: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_scripts_mention_every_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completion(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in [
                "apply", "create", "replace", "delete", "get", "patch", "label", "version",
            ] {
                assert!(text.contains(sub), "{shell:?} script lacks {sub}");
            }
        }
    }

    #[test]
    fn man_writes_one_page_per_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let pages = man(Some(dir.path()), &mut std::io::sink()).unwrap();
        let names: Vec<_> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"calicoctl.1".to_string()), "{names:?}");
        assert!(
            names.contains(&"calicoctl-apply.1".to_string()),
            "{names:?}"
        );
        let main = std::fs::read_to_string(dir.path().join("calicoctl.1")).unwrap();
        assert!(
            main.contains("Exit status"),
            "the exit codes are documented in the man page"
        );
    }
}
