//! Property tests for the selector language: random trees survive
//! print-then-parse unchanged, normalisation keeps meaning, the parser neither
//! panics nor points outside its input, and layered labels act like a merged map.

use std::collections::BTreeMap;

use api::selector::{CompareOp, Expr, LabelsWithParent, Selector, ValueSet};
use proptest::prelude::*;

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Contains),
        Just(CompareOp::StartsWith),
        Just(CompareOp::EndsWith),
    ]
}

/// Valid label keys, including words that are keywords elsewhere in the grammar.
fn wide_key() -> BoxedStrategy<String> {
    let name = "[A-Za-z0-9]([A-Za-z0-9._-]{0,6}[A-Za-z0-9])?";
    let prefix = "[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?){0,2}";
    prop_oneof![
        name.prop_map(String::from),
        (prefix, name).prop_map(|(p, n)| format!("{p}/{n}")),
        prop::sample::select(vec![
            "all", "has", "global", "in", "not", "notin", "contains", "starts", "with", "ends",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// Any value the language can quote: no `"`, or no `'`.
fn wide_value() -> BoxedStrategy<String> {
    prop_oneof!["[^\"]{0,8}", "[^']{0,8}", "[ab ]{0,3}"].boxed()
}

/// Few keys and values, so that trees and label sets meet often.
fn small_key() -> BoxedStrategy<String> {
    prop::sample::select(vec!["a", "b", "c", "x.io/d"])
        .prop_map(String::from)
        .boxed()
}

fn small_value() -> BoxedStrategy<String> {
    prop::sample::select(vec!["", "v", "w", "vw", "wv"])
        .prop_map(String::from)
        .boxed()
}

/// Random trees, deliberately not normalised (nested connectives, `!!`, empty lists).
fn expr(key: BoxedStrategy<String>, value: BoxedStrategy<String>) -> impl Strategy<Value = Expr> {
    let set = prop::collection::vec(value.clone(), 0..4).prop_map(ValueSet::from_iter);
    let leaf = prop_oneof![
        Just(Expr::All),
        Just(Expr::Global),
        key.clone().prop_map(Expr::Has),
        (key.clone(), compare_op(), value).prop_map(|(key, op, value)| Expr::Compare {
            key,
            op,
            value
        }),
        (key.clone(), set.clone()).prop_map(|(key, values)| Expr::In { key, values }),
        (key, set).prop_map(|(key, values)| Expr::NotIn { key, values }),
    ];
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::And),
            prop::collection::vec(inner, 0..4).prop_map(Expr::Or),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(small_key(), small_value(), 0..4)
}

proptest! {
    #[test]
    fn printed_random_trees_parse_back_to_themselves(e in expr(wide_key(), wide_value())) {
        let selector = Selector::from_expr(e).expect("generated trees are printable");
        let printed = selector.to_string();
        let reparsed = Selector::parse(&printed)
            .map_err(|err| TestCaseError::fail(format!("{printed:?}: {err}")))?;
        prop_assert_eq!(&reparsed, &selector, "printed as {:?}", printed);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn normalising_and_printing_keep_the_meaning(
        e in expr(small_key(), small_value()),
        labels in label_map(),
    ) {
        let direct = e.matches(&labels);
        let selector = Selector::from_expr(e).expect("generated trees are printable");
        prop_assert_eq!(selector.matches(&labels), direct);
        let reparsed = Selector::parse(&selector.to_string()).expect("canonical form parses");
        prop_assert_eq!(reparsed.matches(&labels), direct);
    }

    #[test]
    fn layered_labels_select_like_the_merged_map(
        e in expr(small_key(), small_value()),
        own in label_map(),
        parent in label_map(),
    ) {
        let mut merged = parent.clone();
        merged.extend(own.clone());
        let layered = LabelsWithParent::new(&own, &parent);
        prop_assert_eq!(e.matches(&layered), e.matches(&merged));
    }

    #[test]
    fn the_parser_never_panics_and_points_inside_the_input(
        source in prop_oneof![
            "[a-z/.()!&|=' \"{},-]{0,40}",
            "(has|all|global|in|not|contains|starts|ends|with|[ab]|[()!{},'\"]|==|!=|&&|\\|\\|| ){0,16}",
            any::<String>(),
        ]
    ) {
        match Selector::parse(&source) {
            Ok(selector) => {
                let printed = selector.to_string();
                prop_assert_eq!(Selector::parse(&printed), Ok(selector), "printed as {:?}", printed);
            }
            Err(err) => {
                let last = source.chars().count() + 1;
                prop_assert!(
                    (1..=last).contains(&err.column),
                    "column {} outside 1..={} for {:?}", err.column, last, source
                );
                prop_assert!(!err.expected.is_empty());
            }
        }
    }
}
