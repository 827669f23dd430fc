//! Environment variables in a topology file ([`expand`], pure): containerlab
//! expands `$VAR` and `${VAR…}` in the file's text before parsing it, with
//! the shell's default forms, and so does `calico-lab`, with containerlab's
//! choices:
//!
//! | written | gives |
//! |---|---|
//! | `$VAR`, `${VAR}` | VAR's value; **left as written** when VAR is unset (so `$HOME`-like words meant for a node's shell survive) |
//! | `${VAR-D}`, `${VAR=D}` | VAR's value if set (even empty), else D |
//! | `${VAR:-D}`, `${VAR:=D}` | VAR's value if set and not empty, else D |
//! | `${VAR+O}`, `${VAR:+O}` | O if VAR is set, else nothing |
//! | `$$` | `$` |
//!
//! D and O may themselves hold `$VAR` and `${…}`. Names are letters, digits
//! and `_`, not starting with a digit (`$1` is left alone). Nothing is assigned
//! (`=` is `-`).
//!
//! Line numbers stay those of the file: every `${…}` must close on its own
//! line, and a value holding a line break is refused, naming the line and the
//! variable, so errors found after expansion name the file's own lines.

use crate::error::TopologyError;

/// Expands the variables of `text`, each looked up with `lookup` (`None`:
/// unset). Errors name the line.
pub fn expand(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, TopologyError> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let expander = Expander {
            lookup: &lookup,
            line: i + 1,
        };
        let (expanded, _) = expander.word(line, 0, false)?;
        out.push_str(&expanded);
    }
    Ok(out)
}

/// Expands one line.
struct Expander<'a, F> {
    lookup: &'a F,
    line: usize,
}

impl<F: Fn(&str) -> Option<String>> Expander<'_, F> {
    /// Expands `s` from byte `i` to its end or, when `nested`, to the first
    /// `}` not closing an inner `${`; returns the text and where it stopped
    /// (at that `}`).
    fn word(&self, s: &str, mut i: usize, nested: bool) -> Result<(String, usize), TopologyError> {
        let bytes = s.as_bytes();
        let mut out = String::new();
        let mut literal = i;
        while i < bytes.len() {
            match bytes[i] {
                b'}' if nested => {
                    out.push_str(&s[literal..i]);
                    return Ok((out, i));
                }
                b'$' => {
                    out.push_str(&s[literal..i]);
                    let (text, next) = self.dollar(s, i)?;
                    out.push_str(&text);
                    i = next;
                    literal = i;
                }
                _ => i += 1,
            }
        }
        if nested {
            return Err(self.error(
                "`${` is not closed on its line (a `${…}` must end on the line it starts)".into(),
            ));
        }
        out.push_str(&s[literal..]);
        Ok((out, i))
    }

    /// The expansion of the `$` at byte `i` and the byte after it.
    fn dollar(&self, s: &str, i: usize) -> Result<(String, usize), TopologyError> {
        let bytes = s.as_bytes();
        match bytes.get(i + 1) {
            Some(b'$') => Ok(("$".into(), i + 2)),
            Some(b'{') => self.braced(s, i),
            _ => {
                let end = name_end(s, i + 1);
                let name = &s[i + 1..end];
                if !is_name(name) {
                    return Ok(("$".into(), i + 1));
                }
                let value = self.value(name)?.unwrap_or_else(|| s[i..end].to_string());
                Ok((value, end))
            }
        }
    }

    /// `${…}` starting at byte `i` (the `$`).
    fn braced(&self, s: &str, i: usize) -> Result<(String, usize), TopologyError> {
        let bytes = s.as_bytes();
        let start = i + 2;
        let end = name_end(s, start);
        let name = &s[start..end];
        if !is_name(name) {
            // `${1}`, `${_}`: not a variable, kept as written.
            return Ok(("$".into(), i + 1));
        }
        let (colon, op) = match (bytes.get(end), bytes.get(end + 1)) {
            (Some(b'}'), _) => {
                let value = self.value(name)?.unwrap_or_else(|| s[i..=end].to_string());
                return Ok((value, end + 1));
            }
            (Some(b':'), Some(op @ (b'-' | b'=' | b'+'))) => (true, *op),
            (Some(op @ (b'-' | b'=' | b'+')), _) => (false, *op),
            (None | Some(b'\n' | b'\r'), _) => {
                return Err(self.error(format!("`${{{name}` is not closed on its line")));
            }
            _ => {
                return Err(self.error(format!(
                    "`{}`: only ${{VAR}}, ${{VAR-D}}, ${{VAR:-D}}, ${{VAR=D}}, ${{VAR:=D}}, ${{VAR+O}} and ${{VAR:+O}} are expanded",
                    s[i..].trim_end()
                )));
            }
        };
        let word_start = end + 1 + usize::from(colon);
        let (word, close) = self.word(s, word_start, true)?;
        let value = self.value(name)?;
        let text = match op {
            b'+' => {
                if value.is_some() {
                    word
                } else {
                    String::new()
                }
            }
            _ => match value {
                Some(v) if !(colon && v.is_empty()) => v,
                _ => word,
            },
        };
        Ok((text, close + 1))
    }

    /// `name`'s value; a value holding a line break is refused.
    fn value(&self, name: &str) -> Result<Option<String>, TopologyError> {
        let value = (self.lookup)(name);
        if value.as_deref().is_some_and(|v| v.contains(['\n', '\r'])) {
            return Err(self.error(format!(
                "${name}'s value holds a line break; a variable's value must fit on its line"
            )));
        }
        Ok(value)
    }

    fn error(&self, message: String) -> TopologyError {
        TopologyError {
            line: Some(self.line),
            path: String::new(),
            message,
        }
    }
}

/// The end of the run of name characters starting at byte `start`.
fn name_end(s: &str, start: usize) -> usize {
    s[start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(s.len(), |n| start + n)
}

/// A variable name: not empty, not `_` alone, not starting with a digit.
fn is_name(name: &str) -> bool {
    name != "_" && name.chars().next().is_some_and(|c| !c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BAR" => Some("bar".into()),
            "FOO" => Some("foo".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\nb".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> String {
        expand(text, env).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn set_variables_are_replaced_in_both_forms() {
        assert_eq!(ok("$BAR baz"), "bar baz");
        assert_eq!(ok("${BAR}baz"), "barbaz");
        assert_eq!(ok("$BAR$FOO-${FOO}"), "barfoo-foo");
        assert_eq!(ok("image: alpine:${BAR}\n"), "image: alpine:bar\n");
    }

    #[test]
    fn unset_variables_without_a_default_are_left_as_written() {
        assert_eq!(ok("echo $NOTSET ${NOTSET} x"), "echo $NOTSET ${NOTSET} x");
    }

    #[test]
    fn defaults_apply_to_unset_and_with_a_colon_to_empty_variables() {
        assert_eq!(ok("${NOTSET:=3}"), "3");
        assert_eq!(ok("${NOTSET=3}"), "3");
        assert_eq!(ok("${NOTSET-3}"), "3");
        assert_eq!(ok("${NOTSET:-3}"), "3");
        assert_eq!(ok("[${EMPTY-3}]"), "[]");
        assert_eq!(ok("[${EMPTY=3}]"), "[]");
        assert_eq!(ok("${EMPTY:-3}"), "3");
        assert_eq!(ok("${EMPTY:=3}"), "3");
        assert_eq!(ok("${BAR:=3}"), "bar");
        assert_eq!(ok("${NOTSET:=a b:c/d}"), "a b:c/d");
        assert_eq!(ok("${NOTSET:=}x"), "x");
    }

    #[test]
    fn defaults_may_hold_variables() {
        assert_eq!(ok("${NOTSET:-$BAR}"), "bar");
        assert_eq!(ok("${NOTSET:-x${FOO}y}"), "xfooy");
        assert_eq!(ok("${NOTSET:-${ALSO:-deep}}"), "deep");
        assert_eq!(ok("${NOTSET:-$ALSO}"), "$ALSO");
    }

    #[test]
    fn the_plus_forms_give_their_word_only_when_the_variable_is_set() {
        assert_eq!(ok("[${BAR+yes}]"), "[yes]");
        assert_eq!(ok("[${EMPTY:+yes}]"), "[yes]");
        assert_eq!(ok("[${NOTSET+yes}]"), "[]");
        assert_eq!(ok("[${NOTSET:+yes}]"), "[]");
    }

    #[test]
    fn dollar_dollar_escapes_and_non_names_stay() {
        assert_eq!(ok("FOO $$BAR BAZ"), "FOO $BAR BAZ");
        assert_eq!(ok("$${BAR}"), "${BAR}");
        assert_eq!(ok("$$$BAR"), "$bar");
        assert_eq!(ok("$1 ${2} $_ ${_} $ 5$ $/"), "$1 ${2} $_ ${_} $ 5$ $/");
    }

    #[test]
    fn expansion_keeps_the_lines_of_the_file() {
        let text = "a: $BAR\nb: ${NOTSET:=x}\n\nc: 1\n";
        let out = ok(text);
        assert_eq!(out, "a: bar\nb: x\n\nc: 1\n");
        assert_eq!(out.lines().count(), text.lines().count());
    }

    #[test]
    fn a_value_holding_a_line_break_is_refused_naming_the_line_and_variable() {
        let e = expand("a: 1\nb: ${MULTI}\n", env).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("$MULTI"), "{e}");
        assert!(e.message.contains("line break"), "{e}");
        // Even when it is only a default's variable.
        assert!(expand("x: ${NOTSET:-$MULTI}", env).is_err());
    }

    #[test]
    fn an_unclosed_or_unsupported_expansion_is_refused_naming_its_line() {
        let e = expand("a: 1\n\nb: ${NOTSET:-x\nc: }\n", env).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("not closed"), "{e}");
        let e = expand("b: ${BAR\n", env).unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        let e = expand("a: 1\nb: ${BAR:?unset}\n", env).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("only ${VAR}"), "{e}");
    }

    #[test]
    fn non_ascii_text_passes_through() {
        assert_eq!(ok("# ünïcödé $BAR → ${NOTSET:-ß}"), "# ünïcödé bar → ß");
    }
}
