//! The selector expression tree and its normalisation.
//!
//! Owns [`Expr`], [`CompareOp`] and [`ValueSet`]. The fields are public so the
//! policy compiler can inspect (and build) trees; [`Expr::normalise`] is the one
//! place that defines the canonical shape the parser produces.

/// A selector expression.
///
/// A tree produced by the parser (or by [`Selector::from_expr`](super::Selector::from_expr))
/// is normalised: no `And` directly inside an `And`, no `Or` directly inside an
/// `Or`, no `Not` directly inside a `Not`, and every `And`/`Or` has at least two
/// operands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: matches everything when evaluated; in a namespaceSelector it
    /// means "non-namespaced resources".
    Global,
    /// `has(key)`: the label is present.
    Has(String),
    /// `key <op> "value"`.
    Compare {
        /// Label key.
        key: String,
        /// The comparison.
        op: CompareOp,
        /// The literal on the right.
        value: String,
    },
    /// `key in {..}`: the label is present and its value is in the set.
    In {
        /// Label key.
        key: String,
        /// The allowed values.
        values: ValueSet,
    },
    /// `key not in {..}`: the label is absent or its value is not in the set.
    NotIn {
        /// Label key.
        key: String,
        /// The excluded values.
        values: ValueSet,
    },
    /// `!expr`.
    Not(Box<Expr>),
    /// `a && b && ..`.
    And(Vec<Expr>),
    /// `a || b || ..`.
    Or(Vec<Expr>),
}

/// The comparison in an [`Expr::Compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CompareOp {
    /// `==`: present and equal.
    Eq,
    /// `!=`: absent, or present and different.
    Ne,
    /// `contains`: present and holding the literal as a substring.
    Contains,
    /// `starts with`: present and beginning with the literal.
    StartsWith,
    /// `ends with`: present and ending with the literal.
    EndsWith,
}

impl CompareOp {
    /// The operator as printed, e.g. `"starts with"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Contains => "contains",
            Self::StartsWith => "starts with",
            Self::EndsWith => "ends with",
        }
    }

    /// Applies the comparison to a present label value.
    pub fn test(self, label_value: &str, literal: &str) -> bool {
        match self {
            Self::Eq => label_value == literal,
            Self::Ne => label_value != literal,
            Self::Contains => label_value.contains(literal),
            Self::StartsWith => label_value.starts_with(literal),
            Self::EndsWith => label_value.ends_with(literal),
        }
    }
}

/// The literal set of an `in`/`not in` expression: sorted and deduplicated, so
/// equal sets compare equal and membership is a binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueSet(Vec<String>);

impl ValueSet {
    /// Whether `value` is a member. Allocation-free.
    pub fn contains(&self, value: &str) -> bool {
        self.0
            .binary_search_by(|member| member.as_str().cmp(value))
            .is_ok()
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(String::as_str)
    }

    /// Number of distinct members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is `{}`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S: Into<String>> FromIterator<S> for ValueSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut members: Vec<String> = iter.into_iter().map(Into::into).collect();
        members.sort_unstable();
        members.dedup();
        Self(members)
    }
}

impl Expr {
    /// `key <op> "value"`.
    pub fn compare(key: impl Into<String>, op: CompareOp, value: impl Into<String>) -> Self {
        Self::Compare {
            key: key.into(),
            op,
            value: value.into(),
        }
    }

    /// `has(key)`.
    pub fn has(key: impl Into<String>) -> Self {
        Self::Has(key.into())
    }

    /// The conjunction of `operands`, normalised: nested conjunctions are
    /// flattened, a single operand stands alone, none at all is `all()`.
    pub fn and(operands: impl IntoIterator<Item = Expr>) -> Self {
        let operands = flatten(operands, |e| match e {
            Expr::And(inner) => Ok(inner),
            other => Err(other),
        });
        collapse(operands, Expr::And, Expr::All)
    }

    /// The disjunction of `operands`, normalised like [`Expr::and`]; none at all
    /// is `!all()` (matches nothing).
    pub fn or(operands: impl IntoIterator<Item = Expr>) -> Self {
        let operands = flatten(operands, |e| match e {
            Expr::Or(inner) => Ok(inner),
            other => Err(other),
        });
        collapse(operands, Expr::Or, Expr::Not(Box::new(Expr::All)))
    }

    /// The negation of `self`; `!!x` becomes `x`.
    pub fn negate(self) -> Self {
        match self {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// Rebuilds the whole tree in normal form (see [`Expr`]). Idempotent.
    pub fn normalise(self) -> Self {
        match self {
            Expr::Not(inner) => inner.normalise().negate(),
            Expr::And(operands) => Expr::and(operands.into_iter().map(Expr::normalise)),
            Expr::Or(operands) => Expr::or(operands.into_iter().map(Expr::normalise)),
            leaf => leaf,
        }
    }
}

/// Splices operands that `split` recognises as the same connective into one list.
fn flatten(
    operands: impl IntoIterator<Item = Expr>,
    split: impl Fn(Expr) -> Result<Vec<Expr>, Expr> + Copy,
) -> Vec<Expr> {
    let mut out = Vec::new();
    for operand in operands {
        match split(operand) {
            Ok(inner) => out.extend(flatten(inner, split)),
            Err(other) => out.push(other),
        }
    }
    out
}

/// Wraps a flattened operand list, unwrapping a single operand.
fn collapse(mut operands: Vec<Expr>, wrap: fn(Vec<Expr>) -> Expr, empty: Expr) -> Expr {
    match operands.len() {
        0 => empty,
        1 => operands.pop().unwrap_or(empty),
        _ => wrap(operands),
    }
}
