//! Evaluating selectors against labels.
//!
//! Owns the [`Labels`] trait (label lookup by key), its implementations for
//! ordered and hashed maps and for [`LabelsWithParent`] (an endpoint's own
//! labels over those it inherits), and [`Expr::matches`]. Evaluation borrows
//! only: no allocation, string comparisons on `&str`, set membership by binary
//! search.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use super::ast::{CompareOp, Expr};

/// Something that maps label keys to values.
pub trait Labels {
    /// The value of label `key`, if present.
    fn get(&self, key: &str) -> Option<&str>;
}

impl<T: Labels + ?Sized> Labels for &T {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

impl<K, V> Labels for BTreeMap<K, V>
where
    K: Borrow<str> + Ord,
    V: AsRef<str>,
{
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(AsRef::as_ref)
    }
}

impl<K, V, S> Labels for HashMap<K, V, S>
where
    K: Borrow<str> + Hash + Eq,
    V: AsRef<str>,
    S: BuildHasher,
{
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(AsRef::as_ref)
    }
}

/// Two label maps layered: `own` wins, `parent` fills in. Calico evaluates an
/// endpoint's selectors over its own labels on top of those it inherits from its
/// profiles (a namespace's or service account's labels).
#[derive(Debug, Clone, Copy)]
pub struct LabelsWithParent<'a, O: ?Sized, P: ?Sized> {
    /// The endpoint's own labels.
    pub own: &'a O,
    /// The inherited labels.
    pub parent: &'a P,
}

impl<'a, O: Labels + ?Sized, P: Labels + ?Sized> LabelsWithParent<'a, O, P> {
    /// Layers `own` over `parent`.
    pub fn new(own: &'a O, parent: &'a P) -> Self {
        Self { own, parent }
    }
}

impl<O: Labels + ?Sized, P: Labels + ?Sized> Labels for LabelsWithParent<'_, O, P> {
    fn get(&self, key: &str) -> Option<&str> {
        self.own.get(key).or_else(|| self.parent.get(key))
    }
}

impl Expr {
    /// Whether the labels satisfy this expression. Allocation-free.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(key) => labels.get(key).is_some(),
            Expr::Compare { key, op, value } => match labels.get(key) {
                Some(label_value) => op.test(label_value, value),
                None => *op == CompareOp::Ne,
            },
            Expr::In { key, values } => labels.get(key).is_some_and(|v| values.contains(v)),
            Expr::NotIn { key, values } => labels.get(key).is_none_or(|v| !values.contains(v)),
            Expr::Not(inner) => !inner.matches(labels),
            Expr::And(operands) => operands.iter().all(|operand| operand.matches(labels)),
            Expr::Or(operands) => operands.iter().any(|operand| operand.matches(labels)),
        }
    }
}
