//! [`parse_documents`]: reads a file of resources (multi-document YAML, JSON objects,
//! a JSON array, or a `kind: List`), then reads and validates every one, collecting
//! every error with the document it belongs to.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::{error::FieldError, kind::Kind, resource::Resource};

/// A problem with one document of a file.
///
/// Displays as `policy.yaml: document 3 (default/allow-db): spec.ingress[2].destination.ports[0]: range 90:80 is reversed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// The file name (or other label) given to [`parse_documents`].
    pub file: String,
    /// 1-based position of the document in the file.
    pub document: usize,
    /// 1-based position within a `kind: List` document's `items`.
    pub item: Option<usize>,
    /// `namespace/name` or `name`, when the document has one.
    pub name: Option<String>,
    /// The line, where the parser reported one.
    pub line: Option<usize>,
    pub error: FieldError,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        write!(f, ": {}", self.error)
    }
}

impl std::error::Error for DocumentError {}

/// One resource-shaped value and where it sits in the file.
struct Entry {
    document: usize,
    item: Option<usize>,
    value: Value,
}

/// A syntax error: where it is and what it says.
struct SyntaxError {
    document: usize,
    line: Option<usize>,
    message: String,
}

/// Splits the text into top-level values, numbered from 1. Stops at the first syntax
/// error, since nothing after it can be trusted.
fn read_values(text: &str) -> (Vec<(usize, Value)>, Option<SyntaxError>) {
    let mut values = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        for (i, v) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            match v {
                Ok(Value::Array(items)) if i == 0 => {
                    values.extend(items.into_iter().enumerate().map(|(j, v)| (j + 1, v)));
                }
                Ok(v) => values.push((values.len() + 1, v)),
                Err(e) => {
                    let line = Some(e.line()).filter(|l| *l > 0);
                    return (
                        values,
                        Some(SyntaxError {
                            document: i + 1,
                            line,
                            message: e.to_string(),
                        }),
                    );
                }
            }
        }
    } else {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            match Value::deserialize(doc) {
                Ok(Value::Null) => {}
                Ok(v) => values.push((i + 1, v)),
                Err(e) => {
                    let line = e.location().map(|l| l.line());
                    return (
                        values,
                        Some(SyntaxError {
                            document: i + 1,
                            line,
                            message: e.to_string(),
                        }),
                    );
                }
            }
        }
    }
    (values, None)
}

/// Whether a document is a list: `kind: List`, or a typed list such as
/// `kind: IPPoolList` (what Calico's `get -o yaml` and `datastore migrate
/// export` print), whose items carry their own `kind`.
fn is_list(obj: &serde_json::Map<String, Value>) -> bool {
    let Some(kind) = obj.get("kind").and_then(Value::as_str) else {
        return false;
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    match kind.strip_suffix("List") {
        Some("") => true,
        Some(item) => api_version.is_some_and(|v| Kind::from_document(v, item).is_some()),
        None => false,
    }
}

/// Expands list documents and YAML sequences into their items.
fn entries(values: Vec<(usize, Value)>) -> Vec<Entry> {
    let mut out = Vec::new();
    for (document, value) in values {
        let items = match value {
            Value::Array(items) => items,
            Value::Object(mut obj) if is_list(&obj) => match obj.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            value => {
                out.push(Entry {
                    document,
                    item: None,
                    value,
                });
                continue;
            }
        };
        let items = items.into_iter().enumerate();
        out.extend(items.map(|(i, value)| Entry {
            document,
            item: Some(i + 1),
            value,
        }));
    }
    out
}

/// `namespace/name` or `name` of a document, as far as it can be read.
/// Sets `metadata.namespace` on a document of a namespaced kind that has none.
fn fill_namespace(value: &mut Value, namespace: &str) {
    let kind = match (
        value.get("apiVersion").and_then(Value::as_str),
        value.get("kind").and_then(Value::as_str),
    ) {
        (Some(api_version), Some(kind)) => Kind::from_document(api_version, kind),
        _ => None,
    };
    if !kind.is_some_and(Kind::namespaced) {
        return;
    }
    if let Some(Value::Object(meta)) = value.get_mut("metadata")
        && meta.get("namespace").is_none_or(Value::is_null)
    {
        meta.insert("namespace".into(), Value::String(namespace.to_string()));
    }
}

fn name_of(value: &Value) -> Option<String> {
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    Some(match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    })
}

/// Reads every resource in `text` and validates each. `source` names the file in
/// messages. Returns every resource, or every error found in every document.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Resource>, Vec<DocumentError>> {
    parse_documents_in(source, text, None)
}

/// Like [`parse_documents`], but a document of a namespaced kind that names no
/// namespace is placed in `default_namespace` (as `calicoctl -n NS` does).
pub fn parse_documents_in(
    source: &str,
    text: &str,
    default_namespace: Option<&str>,
) -> Result<Vec<Resource>, Vec<DocumentError>> {
    let (values, syntax) = read_values(text);
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for Entry {
        document,
        item,
        value,
    } in entries(values)
    {
        let mut value = value;
        if let Some(namespace) = default_namespace {
            fill_namespace(&mut value, namespace);
        }
        let name = name_of(&value);
        let error = |error: FieldError| DocumentError {
            file: source.to_string(),
            document,
            item,
            name: name.clone(),
            line: None,
            error,
        };
        match Resource::from_value(value) {
            Ok(resource) => match resource.validate() {
                Ok(()) => resources.push(resource),
                Err(found) => errors.extend(found.into_iter().map(error)),
            },
            Err(e) => errors.push(error(e)),
        }
    }
    if let Some(SyntaxError {
        document,
        line,
        message,
    }) = syntax
    {
        errors.push(DocumentError {
            file: source.to_string(),
            document,
            item: None,
            name: None,
            line,
            error: FieldError::new("", message),
        });
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(errors)
    }
}
