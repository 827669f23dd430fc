//! Calico's label-selector language: parsing, canonical printing and
//! allocation-free evaluation against label sets.
//!
//! A selector such as `role == "db" && env in {"prod", "staging"} && !has(quarantine)`
//! picks endpoints (or namespaces, service accounts, network sets) by their labels.
//! The language follows libcalico-go's selector parser; where this crate differs
//! (label keys are checked against Kubernetes' rules, newlines count as
//! whitespace, `has (k)` may have a space before the parenthesis, nesting is
//! bounded) the difference is stated below.
//!
//! # Layout
//!
//! - `mod.rs` (this file): [`Selector`], [`SelectorError`], [`ExprError`], the
//!   string conversions (`Display`, `FromStr`, serde as a string) and the grammar.
//! - `ast`: the expression tree ([`Expr`], [`CompareOp`],
//!   [`ValueSet`]) and its normalisation (flattening, double-negation removal).
//! - `key`: Kubernetes label-key rules ([`is_valid_label_key`]).
//! - `parse`: the recursive-descent parser that turns text into a normalised
//!   [`Expr`], reporting the 1-based column of the first error.
//! - `print`: the canonical printer (`Display` for [`Expr`]) and the parenthesis
//!   depth it would need.
//! - `eval`: the [`Labels`] trait, its implementations (maps and
//!   [`LabelsWithParent`]) and evaluation.
//!
//! # Grammar
//!
//! ```text
//! selector  := ws* [ or_expr ] ws* EOF           // empty (or blank) means all()
//! or_expr   := and_expr ( "||" and_expr )*
//! and_expr  := unary ( "&&" unary )*
//! unary     := "!" unary | primary                // "!" binds tightest
//! primary   := "(" or_expr ")"
//!            | "has" "(" key ")" | "all" "(" ")" | "global" "(" ")"
//!            | key operation
//! operation := "==" string | "!=" string
//!            | "contains" string | "starts" "with" string | "ends" "with" string
//!            | "in" set | "not" "in" set          // also "notin", "startswith", "endswith"
//! set       := "{" [ string ( "," string )* [ "," ] ] "}"   // "{}" is the empty set
//! string    := '"' (any char but '"')* '"' | "'" (any char but "'")* "'"   // no escapes
//! key       := [ prefix "/" ] name                // Kubernetes label key
//! prefix    := DNS subdomain: dot-separated [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 253 chars
//! name      := [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, at most 63 chars
//! ws        := ' ' | '\t' | '\n' | '\r'           // allowed between any two tokens
//! ```
//!
//! Parentheses may nest at most [`MAX_NESTING`] deep. Keywords are only keywords
//! where the grammar expects them: `all == "x"` compares the label `all`.
//!
//! # Semantics
//!
//! - `k == "v"`, `contains`, `starts with`, `ends with` and `k in {..}` need the
//!   label to be present; `k != "v"` and `k not in {..}` also match when it is absent.
//! - `all()` matches everything. `global()` matches everything when evaluated
//!   against labels; in a namespaceSelector the policy compiler reads it as
//!   "non-namespaced resources only", which is why it is kept apart in [`Expr`].
//!
//! # Canonical form
//!
//! Parsing normalises: `&&`/`||` chains are flattened, `!!x` becomes `x`, sets are
//! sorted and deduplicated. Printing is deterministic: single spaces around
//! operators, `", "` between set members, double quotes unless the value holds
//! a `"`, and only the parentheses the precedence needs. For every selector `s`,
//! `Selector::parse(&s.to_string()) == Ok(s)`.

mod ast;
mod eval;
mod key;
mod parse;
mod print;

use std::fmt;
use std::str::FromStr;

pub use ast::{CompareOp, Expr, ValueSet};
pub use eval::{Labels, LabelsWithParent};
pub use key::is_valid_label_key;

/// The deepest nesting of parentheses a selector may have.
pub const MAX_NESTING: usize = 128;

/// A parsed, normalised selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    expr: Expr,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: expected {expected}")]
pub struct SelectorError {
    /// 1-based column (in characters) of the offending character; one past the
    /// last character when the selector ended too early.
    pub column: usize,
    /// What the parser expected there.
    pub expected: String,
}

/// An expression tree that cannot become a [`Selector`] because it could not be
/// printed in a form that parses back to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// A label key breaks the Kubernetes label-key rules.
    #[error("label key {key:?}: expected {expected}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// What the key should have been.
        expected: String,
    },
    /// A value holds both `"` and `'`; the language has no escapes.
    #[error("value {value:?} holds both ' and \" and cannot be quoted")]
    UnquotableValue {
        /// The offending value.
        value: String,
    },
    /// Printing the expression would need more nested parentheses than a parse allows.
    #[error("expression needs {depth} nested parentheses; at most {MAX_NESTING} are allowed")]
    TooDeep {
        /// The parenthesis depth the expression would print with.
        depth: usize,
    },
}

impl Selector {
    /// Parses a selector expression; the empty (or blank) string is `all()`.
    pub fn parse(source: &str) -> Result<Self, SelectorError> {
        parse::parse(source).map(|expr| Self { expr })
    }

    /// The selector that matches everything.
    pub fn all() -> Self {
        Self { expr: Expr::All }
    }

    /// Whether this is exactly `all()` (an empty selector parses to it).
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// The normalised expression tree, for callers that inspect selectors.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Consumes the selector, returning its expression tree.
    pub fn into_expr(self) -> Expr {
        self.expr
    }

    /// Builds a selector from an expression tree, normalising it. Fails if the
    /// tree could not round-trip through text: a bad label key, a value holding
    /// both quote characters, or nesting deeper than [`MAX_NESTING`].
    pub fn from_expr(expr: Expr) -> Result<Self, ExprError> {
        let expr = expr.normalise();
        check_printable(&expr)?;
        let depth = print::paren_depth(&expr);
        if depth > MAX_NESTING {
            return Err(ExprError::TooDeep { depth });
        }
        Ok(Self { expr })
    }

    /// Whether the labels satisfy this selector. Allocation-free.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.expr.matches(labels)
    }
}

/// Checks every key and value in a (normalised) tree.
fn check_printable(expr: &Expr) -> Result<(), ExprError> {
    let check_key = |key: &str| {
        key::check(key).map_err(|fault| ExprError::InvalidKey {
            key: key.to_string(),
            expected: fault.expected,
        })
    };
    let check_value = |value: &str| {
        if value.contains('"') && value.contains('\'') {
            Err(ExprError::UnquotableValue {
                value: value.to_string(),
            })
        } else {
            Ok(())
        }
    };
    match expr {
        Expr::All | Expr::Global => Ok(()),
        Expr::Has(key) => check_key(key),
        Expr::Compare { key, value, .. } => {
            check_key(key)?;
            check_value(value)
        }
        Expr::In { key, values } | Expr::NotIn { key, values } => {
            check_key(key)?;
            values.iter().try_for_each(check_value)
        }
        Expr::Not(inner) => check_printable(inner),
        Expr::And(operands) | Expr::Or(operands) => operands.iter().try_for_each(check_printable),
    }
}

impl Default for Selector {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.expr, f)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        Self::parse(source)
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Selector;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label selector string")
            }

            fn visit_str<E: serde::de::Error>(self, source: &str) -> Result<Selector, E> {
                Selector::parse(source)
                    .map_err(|err| E::custom(format_args!("selector {source:?}: {err}")))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}
