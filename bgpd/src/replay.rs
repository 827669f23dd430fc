//! Replay tests of the pure cores, in holo's style: a script under
//! `tests/replay/<core>/` is a recorded run, the core's settings on its
//! first line, then inputs at their time, each followed by the outputs
//! expected, indented. The test feeds the inputs and writes the transcript
//! it gets in the same form; it must equal the script. `BLESS=1` rewrites
//! the scripts from what the core does (then read the diff).
//!
//! ```text
//! # what this run shows                    -- comments and blank lines stay
//! speaker as 65001 id 1.1.1.1 fib          -- the settings
//! at 0 add-peer 10.0.0.2 as 65002          -- an input, at 0 s
//!     start 10.0.0.2:179 as 65002          -- an output it must give
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A core under replay.
pub(crate) trait Replay: Sized {
    /// The core with the settings of a script's first line.
    fn start(at: &At<'_>, line: &str) -> Self;
    /// Feeds one input (the line after `at SECONDS`) at `now` since the
    /// start, writing the outputs as indented lines.
    fn step(&mut self, at: &At<'_>, now: Duration, line: &str, out: &mut String);
}

/// Where a script is, for errors.
pub(crate) struct At<'a> {
    pub(crate) file: &'a Path,
    pub(crate) line: usize,
}

impl At<'_> {
    pub(crate) fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!("{}:{}: {what}", self.file.display(), self.line)
    }

    /// Parses a script's word, failing with what was expected.
    pub(crate) fn parse<T: std::str::FromStr>(&self, what: &str, word: Option<&str>) -> T
    where
        T::Err: std::fmt::Display,
    {
        let word = word.unwrap_or_else(|| self.fail(format!("{what} expected")));
        word.parse()
            .unwrap_or_else(|e| self.fail(format!("{what} {word:?}: {e}")))
    }

    /// Fails if a line has words left over.
    pub(crate) fn done(&self, mut words: impl Iterator<Item = impl std::fmt::Debug>) {
        if let Some(extra) = words.next() {
            self.fail(format!("unexpected {extra:?}"));
        }
    }
}

/// Runs one script, returning its transcript.
fn transcript<R: Replay>(file: &Path, script: &str) -> String {
    let mut out = String::new();
    let mut core: Option<R> = None;
    for (i, line) in script.lines().enumerate() {
        let at = At { file, line: i + 1 };
        if line.starts_with("    ") {
            continue; // an expected output: the transcript has the real ones
        }
        out.push_str(line);
        out.push('\n');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(core) = core.as_mut() else {
            core = Some(R::start(&at, line));
            continue;
        };
        let Some(rest) = line.strip_prefix("at ") else {
            at.fail("an input line starts with `at SECONDS`");
        };
        let (secs, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let now = Duration::from_secs(at.parse("seconds", Some(secs)));
        core.step(&at, now, rest, &mut out);
    }
    out
}

/// Replays every script of `tests/replay/<dir>` (at least `min` of them).
pub(crate) fn check<R: Replay>(dir: &str, min: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/replay")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "replay"))
        .collect();
    files.sort();
    assert!(files.len() >= min, "scripts missing: {files:?}");
    let bless = std::env::var_os("BLESS").is_some();
    let mut failed = Vec::new();
    for file in files {
        let script = std::fs::read_to_string(&file).unwrap();
        let got = transcript::<R>(&file, &script);
        if got == script {
            continue;
        }
        if bless {
            std::fs::write(&file, &got).unwrap();
        } else {
            failed.push(format!("{}:\n{got}", file.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "transcripts differ from the scripts (BLESS=1 rewrites them):\n{}",
        failed.join("\n")
    );
}

/// `[a b c]`.
pub(crate) fn list<T: std::fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(T::to_string).collect();
    format!("[{}]", items.join(" "))
}
