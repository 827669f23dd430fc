//! Reading `-f`: a file, every *.yaml/*.yml/*.json of a directory (sorted by
//! name, not recursive) or `-` for stdin. Returns the raw texts with the name
//! each error message should show; parsing is `api::parse_documents`' job.
//! [`with_default_namespace`] fills in the namespace of namespaced documents
//! that name none, as calicoctl does, before they are parsed.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

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

/// Returns `text` with `metadata.namespace: <namespace>` added to every
/// document (or `kind: List` item) of a namespaced kind that has none, or
/// `None` when nothing needs adding or the text does not parse (the parser
/// then reports it). YAML stays YAML and JSON stays JSON, with the same
/// document numbering, so error messages still point at the right document.
pub fn with_default_namespace(text: &str, namespace: &str) -> Option<String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut values = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let changed = values
            .iter_mut()
            .fold(false, |c, v| inject(v, namespace) | c);
        changed.then(|| {
            values
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        })
    } else {
        let mut values = Vec::new();
        for document in serde_yaml::Deserializer::from_str(text) {
            values.push(Value::deserialize(document).ok()?);
        }
        let changed = values
            .iter_mut()
            .fold(false, |c, v| inject(v, namespace) | c);
        let documents: Vec<String> = values
            .iter()
            .map(|v| serde_yaml::to_string(v).expect("JSON values always serialise"))
            .collect();
        changed.then(|| documents.join("---\n"))
    }
}

/// Adds the namespace where it is missing; returns whether it added any.
fn inject(value: &mut Value, namespace: &str) -> bool {
    match value {
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, v| inject(v, namespace) | c),
        Value::Object(doc) => {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind == "List" {
                return doc
                    .get_mut("items")
                    .is_some_and(|items| inject(items, namespace));
            }
            if !api::Kind::from_name(kind).is_some_and(api::Kind::namespaced) {
                return false;
            }
            match doc.get_mut("metadata") {
                Some(Value::Object(meta)) if meta.get("namespace").is_none_or(Value::is_null) => {
                    meta.insert("namespace".into(), Value::String(namespace.to_string()));
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
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

    #[test]
    fn namespaced_yaml_documents_without_a_namespace_get_the_default() {
        let text = "kind: NetworkPolicy\nmetadata:\n  name: a\n---\n---\nkind: IPPool\nmetadata:\n  name: p\n---\n\
                    kind: List\nitems:\n- kind: NetworkSet\n  metadata:\n    name: s\n- kind: NetworkSet\n  metadata:\n    name: t\n    namespace: keep\n";
        let out = with_default_namespace(text, "prod").unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&out)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(
            docs.len(),
            4,
            "document numbering is kept, empty one included: {out}"
        );
        assert_eq!(docs[0]["metadata"]["namespace"], "prod");
        assert!(docs[1].is_null());
        assert!(
            docs[2]["metadata"].get("namespace").is_none(),
            "IPPool is cluster-wide"
        );
        assert_eq!(docs[3]["items"][0]["metadata"]["namespace"], "prod");
        assert_eq!(docs[3]["items"][1]["metadata"]["namespace"], "keep");
    }

    #[test]
    fn json_stays_json_and_untouched_text_is_left_alone() {
        let json = r#"[{"kind":"WorkloadEndpoint","metadata":{"name":"w"}}]"#;
        let out = with_default_namespace(json, "default").unwrap();
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value[0]["metadata"]["namespace"], "default");
        assert_eq!(
            with_default_namespace("kind: IPPool\nmetadata:\n  name: p\n", "x"),
            None
        );
        assert_eq!(
            with_default_namespace("kind: [", "x"),
            None,
            "syntax errors are the parser's to report"
        );
    }
}
