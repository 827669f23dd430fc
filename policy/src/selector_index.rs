//! [`SelectorIndex`]: which of many selectors may answer differently for an
//! endpoint whose labels changed, found from the labels that changed rather
//! than by evaluating every selector (10,000 policies, one relabel).
//!
//! A selector's answer is a function of its leaves, and a leaf on key `k`
//! can change only when the endpoint's value of `k` does (appears, goes or
//! becomes another), and then only:
//!
//! | leaf | changes when |
//! |---|---|
//! | `has(k)` | `k` appears or goes |
//! | `k == v`, `k != v`, `k in {..}`, `k not in {..}` | the old or the new value is one it names (absent counts as no value) |
//! | `k contains v`, `starts with`, `ends with` | the value changes at all |
//!
//! So the index keeps, per key, the selectors with a presence leaf, those
//! with a pattern leaf, and those naming each value. `all()` and `global()`
//! never change. The answer is a superset: a selector it names may still
//! answer as before (`a == 'x' || b == 'y'` when `b` already matched).

use std::collections::BTreeMap;

use api::selector::{CompareOp, Expr};

use crate::memo::FastMap;

/// Selectors (by their position in the list the index was made from),
/// by what in an endpoint's labels could change their answer.
#[derive(Debug, Default)]
pub struct SelectorIndex {
    keys: FastMap<String, KeyLeaves>,
}

/// The selectors with a leaf on one key.
#[derive(Debug, Default)]
struct KeyLeaves {
    /// `has(k)`.
    presence: Vec<usize>,
    /// `contains`, `starts with`, `ends with`.
    pattern: Vec<usize>,
    /// `==`, `!=`, `in`, `not in`, by each value named.
    values: FastMap<String, Vec<usize>>,
}

impl SelectorIndex {
    /// Indexes `selectors` by their position.
    pub fn new<'a>(selectors: impl IntoIterator<Item = &'a Expr>) -> Self {
        let mut index = SelectorIndex::default();
        for (i, selector) in selectors.into_iter().enumerate() {
            index.add(i, selector);
        }
        index
    }

    fn key(&mut self, key: &str) -> &mut KeyLeaves {
        entry(&mut self.keys, key)
    }

    fn add(&mut self, i: usize, e: &Expr) {
        let push = |list: &mut Vec<usize>| {
            if list.last() != Some(&i) {
                list.push(i);
            }
        };
        match e {
            Expr::All | Expr::Global => {}
            Expr::Has(key) => push(&mut self.key(key).presence),
            Expr::Compare { key, op, value } => {
                let leaves = self.key(key);
                match op {
                    CompareOp::Eq | CompareOp::Ne => push(entry(&mut leaves.values, value)),
                    CompareOp::Contains | CompareOp::StartsWith | CompareOp::EndsWith => {
                        push(&mut leaves.pattern);
                    }
                }
            }
            Expr::In { key, values } | Expr::NotIn { key, values } => {
                let leaves = self.key(key);
                for value in values.iter() {
                    push(entry(&mut leaves.values, value));
                }
            }
            Expr::Not(inner) => self.add(i, inner),
            Expr::And(operands) | Expr::Or(operands) => {
                for operand in operands {
                    self.add(i, operand);
                }
            }
        }
    }

    /// The selectors (positions, ascending, each once) whose answer for an
    /// endpoint may differ between labels `old` and `new`; any other
    /// selector answers both alike.
    pub fn affected(
        &self,
        old: &BTreeMap<String, String>,
        new: &BTreeMap<String, String>,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for (key, before, after) in changed(old, new) {
            let Some(leaves) = self.keys.get(key) else {
                continue;
            };
            if before.is_none() || after.is_none() {
                out.extend_from_slice(&leaves.presence);
            }
            out.extend_from_slice(&leaves.pattern);
            for value in [before, after].into_iter().flatten() {
                if let Some(named) = leaves.values.get(value) {
                    out.extend_from_slice(named);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The entry of `key`, made empty when missing (the key copied only then).
fn entry<'m, V: Default>(map: &'m mut FastMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted above when missing")
}

/// The keys whose values differ between two label maps, with the value on
/// each side.
fn changed<'a>(
    old: &'a BTreeMap<String, String>,
    new: &'a BTreeMap<String, String>,
) -> Vec<(&'a str, Option<&'a str>, Option<&'a str>)> {
    let mut out = Vec::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        match next {
            std::cmp::Ordering::Less => {
                let (k, v) = a.next().expect("peeked");
                out.push((k.as_str(), Some(v.as_str()), None));
            }
            std::cmp::Ordering::Greater => {
                let (k, v) = b.next().expect("peeked");
                out.push((k.as_str(), None, Some(v.as_str())));
            }
            std::cmp::Ordering::Equal => {
                let ((k, va), (_, vb)) = (a.next().expect("peeked"), b.next().expect("peeked"));
                if va != vb {
                    out.push((k.as_str(), Some(va.as_str()), Some(vb.as_str())));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::selector::Selector;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(source: &str) -> Expr {
        Selector::parse(source).unwrap().into_expr()
    }

    #[test]
    fn a_relabel_names_only_the_selectors_whose_leaves_it_touches() {
        let selectors = [
            "app == 'a'",
            "app == 'b'",
            "app in {'c', 'a'}",
            "has(app)",
            "app contains 'x'",
            "role == 'r'",
            "all()",
            "!(app != 'a') && role == 'r'",
        ]
        .map(parse);
        let index = SelectorIndex::new(&selectors);
        let a = labels(&[("app", "a"), ("role", "r")]);
        // a → d: the selectors naming `a`, the pattern; not `has`, not `b`.
        let d = labels(&[("app", "d"), ("role", "r")]);
        assert_eq!(index.affected(&a, &d), [0, 2, 4, 7]);
        // app goes: presence too.
        let gone = labels(&[("role", "r")]);
        assert_eq!(index.affected(&a, &gone), [0, 2, 3, 4, 7]);
        // Nothing changed, or a key no selector names.
        assert!(index.affected(&a, &a).is_empty());
        let more = labels(&[("app", "a"), ("role", "r"), ("tier", "t")]);
        assert!(index.affected(&a, &more).is_empty());
        assert_eq!(index.affected(&a, &labels(&[("app", "a")])), [5, 7]);
    }

    fn small_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        let key = prop::sample::select(vec!["a", "b", "c"]);
        let value = prop::sample::select(vec!["", "v", "w", "vw"]);
        prop::collection::btree_map(
            key.prop_map(String::from),
            value.prop_map(String::from),
            0..3,
        )
    }

    fn selector() -> impl Strategy<Value = Expr> {
        let key = || prop::sample::select(vec!["a", "b", "c"]);
        let value = || prop::sample::select(vec!["", "v", "w", "x"]);
        let leaf = prop_oneof![
            Just("all()".to_string()),
            key().prop_map(|k| format!("has({k})")),
            (key(), value()).prop_map(|(k, v)| format!("{k} == '{v}'")),
            (key(), value()).prop_map(|(k, v)| format!("{k} != '{v}'")),
            (key(), value(), value()).prop_map(|(k, v, w)| format!("{k} in {{'{v}', '{w}'}}")),
            (key(), value()).prop_map(|(k, v)| format!("{k} not in {{'{v}'}}")),
            (key(), value()).prop_map(|(k, v)| format!("{k} contains '{v}'")),
            (key(), value()).prop_map(|(k, v)| format!("{k} starts with '{v}'")),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| format!("!({e})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
                (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) || ({b})")),
            ]
        })
        .prop_map(|s| parse(&s))
    }

    proptest! {
        #[test]
        fn a_selector_left_out_answers_old_and_new_labels_alike(
            selectors in prop::collection::vec(selector(), 1..8),
            old in small_labels(),
            new in small_labels(),
        ) {
            let index = SelectorIndex::new(&selectors);
            let affected = index.affected(&old, &new);
            for (i, s) in selectors.iter().enumerate() {
                if affected.binary_search(&i).is_err() {
                    prop_assert_eq!(s.matches(&old), s.matches(&new), "selector {} {:?}", i, s);
                }
            }
        }
    }
}
