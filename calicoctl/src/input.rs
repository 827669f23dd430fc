//! Reading `-f`: a file, every *.yaml/*.yml/*.json of a directory (sorted by
//! name, not recursive) or `-` for stdin. Returns the raw texts with the name
//! each error message should show; parsing is `api::parse_documents`' job.

use std::io::Read;
use std::path::{Path, PathBuf};

/// One input text and the name errors refer to it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The path as given (or `<stdin>`).
    pub name: String,
    /// The whole text.
    pub text: String,
}

/// Why `-f` could not be read.
#[derive(Debug)]
pub struct InputError {
    /// The path at fault.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for InputError {}

/// Extensions a directory's files must have to be read.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Reads the texts `-f PATH` designates; `stdin` is read when PATH is `-`.
pub fn read_sources(path: &Path, stdin: impl Read) -> Result<Vec<Source>, InputError> {
    if path == Path::new("-") {
        return read_all(Path::new("<stdin>"), stdin).map(|s| vec![s]);
    }
    let fail = |reason: String| InputError {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        return read_all(path, file).map(|s| vec![s]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| fail(e.to_string()))? {
        let entry_path = entry.map_err(|e| fail(e.to_string()))?.path();
        let wanted = entry_path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
        if wanted && entry_path.is_file() {
            files.push(entry_path);
        }
    }
    if files.is_empty() {
        return Err(fail(
            "directory holds no *.yaml, *.yml or *.json file".to_string(),
        ));
    }
    files.sort();
    files
        .iter()
        .map(|file| {
            let f = std::fs::File::open(file).map_err(|e| InputError {
                path: file.clone(),
                reason: e.to_string(),
            })?;
            read_all(file, f)
        })
        .collect()
}

fn read_all(path: &Path, mut reader: impl Read) -> Result<Source, InputError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|e| InputError {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| InputError {
        path: path.to_path_buf(),
        reason: format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })?;
    Ok(Source {
        name: path.display().to_string(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dash_reads_stdin() {
        let sources = read_sources(Path::new("-"), "kind: X\n".as_bytes()).unwrap();
        assert_eq!(
            sources,
            [Source {
                name: "<stdin>".into(),
                text: "kind: X\n".into()
            }]
        );
    }

    #[test]
    fn a_directory_yields_its_yaml_and_json_files_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("b.yml", "b"),
            ("a.yaml", "a"),
            ("c.JSON", "c"),
            ("notes.txt", "x"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        let texts: Vec<_> = read_sources(dir.path(), std::io::empty())
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(texts, ["a", "b", "c"]);
    }

    #[test]
    fn a_directory_without_resource_files_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_sources(dir.path(), std::io::empty()).unwrap_err();
        assert_eq!(err.path, dir.path());
        assert!(err.reason.contains("no *.yaml"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = read_sources(Path::new("/nonexistent/x.yaml"), std::io::empty()).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/x.yaml: "),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_input_names_the_byte() {
        let err = read_sources(Path::new("-"), &b"ab\xffc"[..]).unwrap_err();
        assert_eq!(err.to_string(), "<stdin>: not UTF-8 at byte 2");
    }
}
