//! Pure edits of a resource's JSON form: JSON merge patch (RFC 7396) and label
//! changes. `commands::patch` and `commands::label` read the resource, run
//! one of these, re-validate and write back with the read resourceVersion.

use serde_json::{Map, Value};

/// Applies `patch` to `target` as a JSON merge patch (RFC 7396, section 2):
/// objects merge recursively, `null` removes a member, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(members) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch_members {
        if value.is_null() {
            members.remove(key);
        } else {
            merge_patch(members.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Fields a patch may not change: they say which resource is being patched.
const IDENTITY: [(&str, &[&str]); 4] = [
    ("apiVersion", &["apiVersion"]),
    ("kind", &["kind"]),
    ("metadata.name", &["metadata", "name"]),
    ("metadata.namespace", &["metadata", "namespace"]),
];

/// Returns the field paths whose values differ between `before` and `after`
/// among those that identify a resource (apiVersion, kind, name, namespace).
pub fn changed_identity(before: &Value, after: &Value) -> Vec<&'static str> {
    IDENTITY
        .iter()
        .filter(|(_, path)| lookup(before, path) != lookup(after, path))
        .map(|(name, _)| *name)
        .collect()
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// One label edit from the `label` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelEdit {
    /// Set `key` to `value`; `overwrite` allows changing an existing value.
    Set {
        /// Label key.
        key: String,
        /// Label value.
        value: String,
        /// Whether an existing, different value may be replaced.
        overwrite: bool,
    },
    /// Remove `key`.
    Remove {
        /// Label key.
        key: String,
    },
}

/// Why a label edit cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelError {
    /// The argument is not `key=value` (or is empty).
    Syntax(String),
    /// The key is set to another value and `--overwrite` was not given.
    Exists {
        /// Label key.
        key: String,
        /// The value it has now.
        current: String,
    },
    /// `--remove` of a key the resource does not have.
    Missing(String),
}

impl std::fmt::Display for LabelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Syntax(arg) => write!(
                f,
                "label {arg:?}: expected key=value (or key with --remove)"
            ),
            Self::Exists { key, current } => write!(
                f,
                "metadata.labels.{key}: already set to {current:?}; use --overwrite to change it"
            ),
            Self::Missing(key) => write!(f, "metadata.labels.{key}: no such label"),
        }
    }
}

impl std::error::Error for LabelError {}

impl LabelEdit {
    /// Reads the command-line form: `key=value`, or `key` when removing.
    pub fn parse(arg: &str, overwrite: bool, remove: bool) -> Result<Self, LabelError> {
        let syntax = || LabelError::Syntax(arg.to_string());
        if remove {
            if arg.is_empty() || arg.contains('=') {
                return Err(syntax());
            }
            return Ok(Self::Remove {
                key: arg.to_string(),
            });
        }
        let (key, value) = arg.split_once('=').ok_or_else(syntax)?;
        if key.is_empty() {
            return Err(syntax());
        }
        Ok(Self::Set {
            key: key.to_string(),
            value: value.to_string(),
            overwrite,
        })
    }

    /// Applies the edit to `metadata.labels` of a resource's JSON form.
    /// Returns whether anything changed.
    pub fn apply(&self, resource: &mut Value) -> Result<bool, LabelError> {
        let labels = labels_mut(resource);
        match self {
            Self::Set {
                key,
                value,
                overwrite,
            } => match labels.get(key).and_then(Value::as_str) {
                Some(current) if current == value => Ok(false),
                Some(current) if !overwrite => Err(LabelError::Exists {
                    key: key.clone(),
                    current: current.to_string(),
                }),
                _ => {
                    labels.insert(key.clone(), Value::String(value.clone()));
                    Ok(true)
                }
            },
            Self::Remove { key } => match labels.remove(key) {
                Some(_) => Ok(true),
                None => Err(LabelError::Missing(key.clone())),
            },
        }
    }
}

fn labels_mut(resource: &mut Value) -> &mut Map<String, Value> {
    let root = ensure_object(resource);
    let metadata = ensure_object(root.entry("metadata").or_insert(Value::Null));
    ensure_object(metadata.entry("labels").or_insert(Value::Null))
}

fn ensure_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map,
        _ => unreachable!("made an object above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_the_rfc_7396_examples() {
        // RFC 7396, appendix A (a selection) and section 3's example.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            let original = target.clone();
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "target {original} patch {patch}");
        }
    }

    #[test]
    fn changed_identity_names_each_identifying_field_a_patch_touched() {
        let before =
            json!({"apiVersion":"v","kind":"K","metadata":{"name":"a","namespace":"n"},"spec":{}});
        let mut after = before.clone();
        merge_patch(&mut after, &json!({"spec":{"x":1}}));
        assert!(changed_identity(&before, &after).is_empty());
        merge_patch(
            &mut after,
            &json!({"kind":"Other","metadata":{"name":"b","namespace":null}}),
        );
        assert_eq!(
            changed_identity(&before, &after),
            ["kind", "metadata.name", "metadata.namespace"]
        );
    }

    #[test]
    fn label_parse_reads_key_value_and_bare_keys_for_removal() {
        assert_eq!(
            LabelEdit::parse("a=b=c", false, false),
            Ok(LabelEdit::Set {
                key: "a".into(),
                value: "b=c".into(),
                overwrite: false
            })
        );
        assert_eq!(
            LabelEdit::parse("empty=", true, false),
            Ok(LabelEdit::Set {
                key: "empty".into(),
                value: String::new(),
                overwrite: true
            })
        );
        assert_eq!(
            LabelEdit::parse("a", false, true),
            Ok(LabelEdit::Remove { key: "a".into() })
        );
        assert_eq!(
            LabelEdit::parse("a", false, false),
            Err(LabelError::Syntax("a".into()))
        );
        assert_eq!(
            LabelEdit::parse("=v", false, false),
            Err(LabelError::Syntax("=v".into()))
        );
        assert_eq!(
            LabelEdit::parse("a=b", false, true),
            Err(LabelError::Syntax("a=b".into()))
        );
    }

    #[test]
    fn setting_a_label_creates_the_labels_map_when_absent() {
        let mut r = json!({"metadata":{"name":"n"}});
        let edit = LabelEdit::parse("zone=a", false, false).unwrap();
        assert_eq!(edit.apply(&mut r), Ok(true));
        assert_eq!(r["metadata"]["labels"], json!({"zone":"a"}));
        assert_eq!(
            edit.apply(&mut r),
            Ok(false),
            "same value again changes nothing"
        );
    }

    #[test]
    fn changing_a_label_needs_overwrite() {
        let mut r = json!({"metadata":{"name":"n","labels":{"zone":"a"}}});
        let err = LabelEdit::parse("zone=b", false, false)
            .unwrap()
            .apply(&mut r)
            .unwrap_err();
        assert_eq!(
            err,
            LabelError::Exists {
                key: "zone".into(),
                current: "a".into()
            }
        );
        assert!(err.to_string().contains("--overwrite"));
        assert_eq!(r["metadata"]["labels"]["zone"], "a");
        assert_eq!(
            LabelEdit::parse("zone=b", true, false)
                .unwrap()
                .apply(&mut r),
            Ok(true)
        );
        assert_eq!(r["metadata"]["labels"]["zone"], "b");
    }

    #[test]
    fn removing_a_label_that_is_absent_is_an_error() {
        let mut r = json!({"metadata":{"name":"n","labels":{"zone":"a","rack":"1"}}});
        assert_eq!(
            LabelEdit::parse("zone", false, true).unwrap().apply(&mut r),
            Ok(true)
        );
        assert_eq!(r["metadata"]["labels"], json!({"rack":"1"}));
        assert_eq!(
            LabelEdit::parse("zone", false, true).unwrap().apply(&mut r),
            Err(LabelError::Missing("zone".into()))
        );
    }
}
