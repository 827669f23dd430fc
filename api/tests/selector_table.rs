//! Table-driven tests for the selector language: parsing to canonical form,
//! round-tripping, exact error columns and messages, and evaluation.
//!
//! Each table row is one case; a failing row is reported with its input, and
//! every row is checked before the test fails so one run shows all mismatches.

use std::collections::{BTreeMap, HashMap};

use api::selector::{
    CompareOp, Expr, ExprError, Labels, LabelsWithParent, MAX_NESTING, Selector, SelectorError,
    ValueSet, is_valid_label_key,
};

/// `(input, canonical printing)`.
const PARSES: &[(&str, &str)] = &[
    ("", "all()"),
    ("   ", "all()"),
    ("\t\n", "all()"),
    ("all()", "all()"),
    ("all ( )", "all()"),
    ("global()", "global()"),
    ("global( )", "global()"),
    ("a == 'b'", r#"a == "b""#),
    (r#"a=="b""#, r#"a == "b""#),
    ("a != 'b'", r#"a != "b""#),
    ("a!='b'", r#"a != "b""#),
    ("a contains 'x'", r#"a contains "x""#),
    ("a starts with 'x'", r#"a starts with "x""#),
    ("a ends with 'x'", r#"a ends with "x""#),
    ("a startswith 'x'", r#"a starts with "x""#),
    ("a endswith 'x'", r#"a ends with "x""#),
    ("a   starts   with\t'x'", r#"a starts with "x""#),
    ("a in {'x','y'}", r#"a in {"x", "y"}"#),
    ("a in {'y', 'x', 'y'}", r#"a in {"x", "y"}"#),
    ("a in {}", "a in {}"),
    ("a in { }", "a in {}"),
    ("a in{'x'}", r#"a in {"x"}"#),
    ("a not in {'x'}", r#"a not in {"x"}"#),
    ("a notin {'x'}", r#"a not in {"x"}"#),
    ("a not  in {'x'}", r#"a not in {"x"}"#),
    ("a not in {}", "a not in {}"),
    ("a in {'x',}", r#"a in {"x"}"#),
    (r#"a in {"x" , 'y'}"#, r#"a in {"x", "y"}"#),
    ("has(a)", "has(a)"),
    ("has( a )", "has(a)"),
    ("has (a)", "has(a)"),
    ("!has(a)", "!has(a)"),
    ("! has(a)", "!has(a)"),
    ("!!has(a)", "has(a)"),
    ("!!!has(a)", "!has(a)"),
    ("!(!has(a))", "has(a)"),
    ("!global()", "!global()"),
    ("a == 'b' && has(c)", r#"a == "b" && has(c)"#),
    ("a == 'b'&&has(c)", r#"a == "b" && has(c)"#),
    ("a == 'b' || has(c)", r#"a == "b" || has(c)"#),
    (
        "a == 'x' || b == 'y' && c == 'z'",
        r#"a == "x" || b == "y" && c == "z""#,
    ),
    (
        "(a == 'x' || b == 'y') && c == 'z'",
        r#"(a == "x" || b == "y") && c == "z""#,
    ),
    (
        "(a == 'x' && b == 'y') || c == 'z'",
        r#"a == "x" && b == "y" || c == "z""#,
    ),
    (
        "a == 'x' && (b == 'y' && c == 'z')",
        r#"a == "x" && b == "y" && c == "z""#,
    ),
    (
        "(a == 'x' || (b == 'y' || c == 'z'))",
        r#"a == "x" || b == "y" || c == "z""#,
    ),
    (
        "a == 'x' || (b == 'y' || (c == 'z' && (d == 'w' && e == 'v')))",
        r#"a == "x" || b == "y" || c == "z" && d == "w" && e == "v""#,
    ),
    (
        "(a == 'x' || b == 'y') && (c == 'z' || d == 'w')",
        r#"(a == "x" || b == "y") && (c == "z" || d == "w")"#,
    ),
    ("((((has(a)))))", "has(a)"),
    ("!(a == 'x' && b == 'y')", r#"!(a == "x" && b == "y")"#),
    ("!(a == 'x' || b == 'y')", r#"!(a == "x" || b == "y")"#),
    (
        "!(a == 'x' || b == 'y') && c == 'z'",
        r#"!(a == "x" || b == "y") && c == "z""#,
    ),
    (
        "a == 'x' && !(b == 'y' && !has(c))",
        r#"a == "x" && !(b == "y" && !has(c))"#,
    ),
    ("!(!(a == 'x' && b == 'y'))", r#"a == "x" && b == "y""#),
    ("!a == 'x'", r#"!a == "x""#),
    ("!(a == 'x')", r#"!a == "x""#),
    ("!a == 'x' && b == 'y'", r#"!a == "x" && b == "y""#),
    (r#"a == 'say "hi"'"#, r#"a == 'say "hi"'"#),
    (r#"a == "it's""#, r#"a == "it's""#),
    (r#"a in {'"q"', 'p'}"#, r#"a in {'"q"', "p"}"#),
    ("a == ''", r#"a == """#),
    ("a contains ' '", r#"a contains " ""#),
    ("a == 'é€'", r#"a == "é€""#),
    (
        "projectcalico.org/namespace == 'default'",
        r#"projectcalico.org/namespace == "default""#,
    ),
    (
        "app.kubernetes.io/name in {'web'}",
        r#"app.kubernetes.io/name in {"web"}"#,
    ),
    (
        "has(projectcalico.org/orchestrator)",
        "has(projectcalico.org/orchestrator)",
    ),
    ("a/b == 'x'", r#"a/b == "x""#),
    ("A_b-c.D == 'x'", r#"A_b-c.D == "x""#),
    ("1 == 'x'", r#"1 == "x""#),
    ("a\n==\n'b'\n&&\r\nhas(c)", r#"a == "b" && has(c)"#),
    ("  has(a)  ", "has(a)"),
    ("all == 'x'", r#"all == "x""#),
    ("has == 'x'", r#"has == "x""#),
    ("has(has)", "has(has)"),
    ("in in {'in'}", r#"in in {"in"}"#),
    ("not not in {'x'}", r#"not not in {"x"}"#),
    ("global() && has(a)", "global() && has(a)"),
    ("all() || !all()", "all() || !all()"),
    (
        "role == 'db' && env in {'prod','staging'} && !has(quarantine)",
        r#"role == "db" && env in {"prod", "staging"} && !has(quarantine)"#,
    ),
];

/// `(input, column, expected)`: the exact error.
const REJECTS: &[(&str, usize, &str)] = &[
    ("a = 'b'", 3, "'==' (a single '=' is not an operator)"),
    ("a =! 'b'", 3, "'==' (a single '=' is not an operator)"),
    ("a == b", 6, "a quoted string after '=='"),
    ("a == ", 6, "a quoted string after '=='"),
    ("a\t==", 5, "a quoted string after '=='"),
    ("a != ", 6, "a quoted string after '!='"),
    ("a contains x", 12, "a quoted string after 'contains'"),
    ("a starts with", 14, "a quoted string after 'starts with'"),
    ("a == 'b", 6, r#"a closing "'" for the string opened here"#),
    (
        r#"a == "b"#,
        6,
        r#"a closing '"' for the string opened here"#,
    ),
    (
        r#"a in {"x', 'y'}"#,
        7,
        r#"a closing '"' for the string opened here"#,
    ),
    (
        "a",
        2,
        "an operator after label key 'a' (==, !=, in, not in, contains, starts with, ends with)",
    ),
    (
        "a foo 'b'",
        3,
        "an operator after label key 'a' (==, !=, in, not in, contains, starts with, ends with)",
    ),
    (
        "a containsx 'b'",
        3,
        "an operator after label key 'a' (==, !=, in, not in, contains, starts with, ends with)",
    ),
    (
        "a ! 'b'",
        3,
        "an operator after label key 'a' (==, !=, in, not in, contains, starts with, ends with)",
    ),
    (
        "a == 'é' && b",
        14,
        "an operator after label key 'b' (==, !=, in, not in, contains, starts with, ends with)",
    ),
    ("a == 'b' c", 10, "'&&', '||' or the end of the selector"),
    ("a == 'b')", 9, "'&&', '||' or the end of the selector"),
    ("a in {'x'}}", 11, "'&&', '||' or the end of the selector"),
    (
        "a in {'x'} extra",
        12,
        "'&&', '||' or the end of the selector",
    ),
    ("a == 'x' ,", 10, "'&&', '||' or the end of the selector"),
    ("a == 'b' & c", 10, "'&&'"),
    ("a == 'b' | c", 10, "'||'"),
    (
        "a == 'b' &&",
        12,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "a == 'b' &&& c",
        12,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "a == 'x' || || b == 'y'",
        13,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "&& a == 'b'",
        1,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "()",
        2,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "!",
        2,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "a == 'x' && !",
        14,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "a == 'x' && é == 'y'",
        13,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "{'x'}",
        1,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "'a' == 'b'",
        1,
        "a label key, 'has(', 'all()', 'global()', '!' or '('",
    ),
    (
        "(a == 'b'",
        10,
        "'&&', '||' or ')' to close the '(' at column 1",
    ),
    (
        "has(a) && (b == 'c' || (d == 'e')",
        34,
        "'&&', '||' or ')' to close the '(' at column 11",
    ),
    ("has(a", 6, "')' to close 'has('"),
    ("has(a b)", 7, "')' to close 'has('"),
    ("has()", 5, "a label key after 'has('"),
    ("has('a')", 5, "a label key after 'has('"),
    ("all(a)", 5, "')' after 'all('"),
    ("all(", 5, "')' after 'all('"),
    ("global(x)", 8, "')' after 'global('"),
    ("a in 'x'", 6, "'{' after 'in'"),
    ("a in", 5, "'{' after 'in'"),
    ("a not in 'x'", 10, "'{' after 'not in'"),
    ("a in {'x'", 10, "',' or '}' in the set"),
    ("a in {'x' 'y'}", 11, "',' or '}' in the set"),
    ("a in {x}", 7, "a quoted string or '}' in the set"),
    ("a in {,}", 7, "a quoted string or '}' in the set"),
    ("a in {'x',,}", 11, "a quoted string or '}' in the set"),
    ("a not {'x'}", 7, "'in' after 'not'"),
    ("a starts 'x'", 10, "'with' after 'starts'"),
    ("a ends 'x'", 8, "'with' after 'ends'"),
    ("a ends within 'x'", 8, "'with' after 'ends'"),
    ("-a == 'x'", 1, "a letter or digit to begin the label name"),
    ("a- == 'x'", 2, "a letter or digit to end the label name"),
    (
        "a/-b == 'x'",
        3,
        "a letter or digit to begin the label name",
    ),
    ("has(-a)", 5, "a letter or digit to begin the label name"),
    ("has(a.)", 6, "a letter or digit to end the label name"),
    ("a/b/c == 'x'", 4, "at most one '/' in a label key"),
    ("/a == 'x'", 1, "a DNS subdomain prefix before '/'"),
    ("a/ == 'x'", 3, "a label name after '/'"),
    (
        "Example.com/a == 'x'",
        1,
        "a lowercase letter, digit, '-' or '.' in the key prefix",
    ),
    (
        "ex_ample.com/a == 'x'",
        3,
        "a lowercase letter, digit, '-' or '.' in the key prefix",
    ),
    (
        "a..b/c == 'x'",
        3,
        "a letter or digit to begin each part of the key prefix",
    ),
    (
        "a-.b/c == 'x'",
        2,
        "a letter or digit to end each part of the key prefix",
    ),
];

/// `(selector, labels as "key=value key=value", expected match)`.
const EVALUATES: &[(&str, &str, bool)] = &[
    ("", "", true),
    ("all()", "a=b", true),
    ("global()", "", true),
    ("!all()", "a=b", false),
    ("a == 'b'", "a=b", true),
    ("a == 'b'", "a=c", false),
    ("a == 'b'", "", false),
    ("a == 'b'", "b=b", false),
    ("a == ''", "a=", true),
    ("a == ''", "", false),
    ("a == 'B'", "a=b", false),
    ("A == 'b'", "a=b", false),
    ("a == 'é'", "a=é", true),
    ("a != 'b'", "a=b", false),
    ("a != 'b'", "a=c", true),
    ("a != 'b'", "", true),
    ("a != ''", "", true),
    ("a != ''", "a=", false),
    ("has(a)", "a=", true),
    ("has(a)", "b=a", false),
    ("!has(a)", "", true),
    ("!has(a)", "a=x", false),
    ("a in {'x','y'}", "a=y", true),
    ("a in {'x','y'}", "a=z", false),
    ("a in {'x','y'}", "", false),
    ("a in {'x',}", "a=x", true),
    ("a in {}", "a=x", false),
    ("a not in {'x','y'}", "a=x", false),
    ("a not in {'x','y'}", "a=z", true),
    ("a not in {'x','y'}", "", true),
    ("a not in {}", "", true),
    ("a not in {}", "a=x", true),
    ("a contains 'ell'", "a=hello", true),
    ("a contains 'ell'", "a=help", false),
    ("a contains ''", "a=x", true),
    ("a contains ''", "", false),
    ("a starts with 'he'", "a=hello", true),
    ("a starts with 'lo'", "a=hello", false),
    ("a ends with 'lo'", "a=hello", true),
    ("a ends with 'he'", "a=hello", false),
    ("a starts with 'x'", "", false),
    ("a ends with 'x'", "", false),
    ("!a == 'b'", "", true),
    ("!a == 'b'", "a=b", false),
    ("!a != 'b'", "", false),
    ("!a in {'x'}", "", true),
    ("!a not in {'x'}", "a=x", true),
    ("!!has(a)", "a=1", true),
    ("a == 'x' && b == 'y'", "a=x b=y", true),
    ("a == 'x' && b == 'y'", "a=x b=z", false),
    ("a == 'x' && b == 'y'", "b=y", false),
    ("a == 'x' || b == 'y'", "a=z b=y", true),
    ("a == 'x' || b == 'y'", "a=z b=z", false),
    ("a == 'x' || b == 'y' && c == 'z'", "a=x", true),
    ("a == 'x' || b == 'y' && c == 'z'", "b=y", false),
    ("a == 'x' || b == 'y' && c == 'z'", "b=y c=z", true),
    ("(a == 'x' || b == 'y') && c == 'z'", "a=x", false),
    ("(a == 'x' || b == 'y') && c == 'z'", "b=y c=z", true),
    ("!(a == 'x' && b == 'y')", "a=x b=y", false),
    ("!(a == 'x' && b == 'y')", "a=x", true),
    ("!(a == 'x' || b == 'y')", "c=z", true),
    ("!has(a) || a == 'x'", "", true),
    ("!has(a) || a == 'x'", "a=y", false),
    ("has(a) && !has(a)", "a=1", false),
    ("has(a) || !has(a)", "", true),
    ("global() && a == 'x'", "a=y", false),
    (
        "projectcalico.org/namespace == 'default'",
        "projectcalico.org/namespace=default",
        true,
    ),
    (
        "projectcalico.org/namespace == 'default'",
        "namespace=default",
        false,
    ),
    (
        "role == 'db' && env in {'prod','staging'} && !has(quarantine)",
        "role=db env=staging app=pg",
        true,
    ),
    (
        "role == 'db' && env in {'prod','staging'} && !has(quarantine)",
        "role=db env=staging quarantine=",
        false,
    ),
    (
        "role == 'db' && env in {'prod','staging'} && !has(quarantine)",
        "role=db env=dev",
        false,
    ),
    (
        "role == 'db' && env in {'prod','staging'} && !has(quarantine)",
        "role=web env=prod",
        false,
    ),
];

fn labels(spec: &str) -> BTreeMap<String, String> {
    spec.split_whitespace()
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("label spec is key=value");
            (key.to_string(), value.to_string())
        })
        .collect()
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_tables_hold_at_least_150_cases() {
    let total = PARSES.len() + REJECTS.len() + EVALUATES.len();
    assert!(total >= 150, "only {total} cases");
}

#[test]
fn every_accepted_input_prints_canonically_and_round_trips() {
    let mut failures = Vec::new();
    for &(input, canonical) in PARSES {
        let selector = match Selector::parse(input) {
            Ok(selector) => selector,
            Err(err) => {
                failures.push(format!("{input:?}: {err}"));
                continue;
            }
        };
        let printed = selector.to_string();
        if printed != canonical {
            failures.push(format!(
                "{input:?}: printed {printed:?}, want {canonical:?}"
            ));
        }
        match Selector::parse(&printed) {
            Ok(reparsed) if reparsed == selector => {}
            other => failures.push(format!("{input:?}: reparse of {printed:?} gave {other:?}")),
        }
    }
    report(failures);
}

#[test]
fn every_rejected_input_names_its_column_and_what_was_expected() {
    let mut failures = Vec::new();
    for &(input, column, expected) in REJECTS {
        let want = SelectorError {
            column,
            expected: expected.to_string(),
        };
        match Selector::parse(input) {
            Err(err) if err == want => {}
            other => failures.push(format!("{input:?}: got {other:?}, want Err({want:?})")),
        }
    }
    report(failures);
}

#[test]
fn every_evaluation_row_matches_as_calico_would() {
    let mut failures = Vec::new();
    for &(source, spec, expected) in EVALUATES {
        let selector = match Selector::parse(source) {
            Ok(selector) => selector,
            Err(err) => {
                failures.push(format!("{source:?}: {err}"));
                continue;
            }
        };
        let labels = labels(spec);
        if selector.matches(&labels) != expected {
            failures.push(format!("{source:?} on {{{spec}}}: want {expected}"));
        }
        // The canonical form must select exactly the same.
        let reparsed = Selector::parse(&selector.to_string()).expect("canonical form parses");
        if reparsed.matches(&labels) != expected {
            failures.push(format!(
                "canonical {selector} on {{{spec}}}: want {expected}"
            ));
        }
    }
    report(failures);
}

#[test]
fn error_display_names_the_column_first() {
    let err = Selector::parse("a == b").unwrap_err();
    assert_eq!(
        err.to_string(),
        "column 6: expected a quoted string after '=='"
    );
}

#[test]
fn parentheses_nest_up_to_the_limit_and_no_further() {
    let nested = |depth: usize| format!("{}has(a){}", "(".repeat(depth), ")".repeat(depth));
    let deepest = Selector::parse(&nested(MAX_NESTING)).expect("limit itself is accepted");
    assert_eq!(deepest.to_string(), "has(a)");
    let err = Selector::parse(&nested(MAX_NESTING + 1)).unwrap_err();
    assert_eq!(err.column, MAX_NESTING + 1);
    assert_eq!(
        err.expected,
        format!("at most {MAX_NESTING} nested parentheses")
    );
}

#[test]
fn long_runs_of_negation_fold_without_recursion() {
    let even = format!("{}has(a)", "!".repeat(100_000));
    assert_eq!(Selector::parse(&even).unwrap().to_string(), "has(a)");
    let odd = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(Selector::parse(&odd).unwrap().to_string(), "!has(a)");
}

#[test]
fn label_names_longer_than_63_characters_are_refused_at_the_64th() {
    let ok = format!("{} == 'x'", "a".repeat(63));
    assert!(Selector::parse(&ok).is_ok());
    let too_long = format!("{} == 'x'", "a".repeat(64));
    let err = Selector::parse(&too_long).unwrap_err();
    assert_eq!(err.column, 64);
    assert_eq!(err.expected, "a label name of at most 63 characters");
}

#[test]
fn key_prefixes_longer_than_253_characters_are_refused() {
    // 4 labels of 63 characters joined by dots: 255 characters.
    let part = "p".repeat(63);
    let prefix = [part.as_str(); 4].join(".");
    let err = Selector::parse(&format!("{prefix}/a == 'x'")).unwrap_err();
    assert_eq!(err.column, 254);
    assert_eq!(err.expected, "a key prefix of at most 253 characters");
    let fits = [part.as_str(), part.as_str(), part.as_str(), "abc"].join(".");
    assert!(Selector::parse(&format!("{fits}/a == 'x'")).is_ok());
}

#[test]
fn label_key_rules_are_exposed_for_resource_validation() {
    for good in [
        "a",
        "app.kubernetes.io/name",
        "projectcalico.org/namespace",
        "A_1-b.c",
    ] {
        assert!(is_valid_label_key(good), "{good}");
    }
    for bad in [
        "",
        "-a",
        "a-",
        "a/b/c",
        "/a",
        "a/",
        "Example.com/a",
        "a b",
        "a..b/c",
    ] {
        assert!(!is_valid_label_key(bad), "{bad}");
    }
}

#[test]
fn the_empty_selector_is_all() {
    let empty = Selector::parse("").unwrap();
    assert!(empty.is_all());
    assert_eq!(empty, Selector::all());
    assert_eq!(Selector::default(), Selector::all());
    assert!(!Selector::parse("global()").unwrap().is_all());
    assert!(!Selector::parse("has(a)").unwrap().is_all());
}

#[test]
fn from_str_parses_like_parse() {
    let selector: Selector = "a == 'b'".parse().unwrap();
    assert_eq!(selector, Selector::parse(r#"a == "b""#).unwrap());
    assert!("a ==".parse::<Selector>().is_err());
}

#[test]
fn serde_uses_the_canonical_string() {
    let selector = Selector::parse("env in {'prod','dev'} && !has(x)").unwrap();
    let json = serde_json::to_string(&selector).unwrap();
    assert_eq!(json, r#""env in {\"dev\", \"prod\"} && !has(x)""#);
    let back: Selector = serde_json::from_str(&json).unwrap();
    assert_eq!(back, selector);
    let err = serde_json::from_str::<Selector>(r#""a = 'b'""#).unwrap_err();
    assert!(err.to_string().contains("column 3: expected '=='"), "{err}");
    let empty: Selector = serde_json::from_str(r#""""#).unwrap();
    assert!(empty.is_all());
}

#[test]
fn serde_yaml_reads_a_selector_field() {
    #[derive(serde::Deserialize)]
    struct Spec {
        selector: Selector,
    }
    let spec: Spec = serde_yaml::from_str("selector: role == 'db'\n").unwrap();
    assert_eq!(spec.selector.to_string(), r#"role == "db""#);
}

#[test]
fn the_ast_is_open_to_inspection() {
    let selector = Selector::parse("role == 'db' && env in {'prod'} && !has(q)").unwrap();
    let Expr::And(operands) = selector.expr() else {
        panic!("expected a conjunction, got {:?}", selector.expr());
    };
    assert_eq!(
        operands,
        &vec![
            Expr::compare("role", CompareOp::Eq, "db"),
            Expr::In {
                key: "env".into(),
                values: ["prod"].into_iter().collect(),
            },
            Expr::has("q").negate(),
        ]
    );
}

#[test]
fn value_sets_are_sorted_and_deduplicated() {
    let set: ValueSet = ["b", "a", "b", "c"].into_iter().collect();
    assert_eq!(set.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(set.len(), 3);
    assert!(set.contains("a") && set.contains("c") && !set.contains("d"));
    assert!(ValueSet::default().is_empty());
}

#[test]
fn from_expr_normalises_nested_connectives() {
    let expr = Expr::And(vec![
        Expr::And(vec![Expr::has("a"), Expr::has("b")]),
        Expr::Not(Box::new(Expr::Not(Box::new(Expr::has("c"))))),
        Expr::Or(vec![Expr::Or(vec![Expr::has("d")]), Expr::has("e")]),
    ]);
    let selector = Selector::from_expr(expr).unwrap();
    assert_eq!(
        selector.to_string(),
        "has(a) && has(b) && has(c) && (has(d) || has(e))"
    );
    assert_eq!(
        Selector::from_expr(Expr::And(vec![])).unwrap(),
        Selector::all()
    );
    assert_eq!(
        Selector::from_expr(Expr::Or(vec![])).unwrap().to_string(),
        "!all()"
    );
}

#[test]
fn from_expr_refuses_what_would_not_parse_back() {
    assert_eq!(
        Selector::from_expr(Expr::has("-a")),
        Err(ExprError::InvalidKey {
            key: "-a".into(),
            expected: "a letter or digit to begin the label name".into(),
        })
    );
    assert_eq!(
        Selector::from_expr(Expr::compare("a", CompareOp::Eq, r#"'""#)),
        Err(ExprError::UnquotableValue {
            value: r#"'""#.into()
        })
    );
    assert!(matches!(
        Selector::from_expr(Expr::In {
            key: "a".into(),
            values: ["ok", r#"x'y"z"#].into_iter().collect(),
        }),
        Err(ExprError::UnquotableValue { .. })
    ));
    // Alternating || and && needs one more pair of parentheses per level.
    let mut deep = Expr::has("a");
    for level in 0..=MAX_NESTING {
        deep = Expr::And(vec![
            Expr::Or(vec![deep, Expr::has(format!("o{level}"))]),
            Expr::has("x"),
        ]);
    }
    assert_eq!(
        Selector::from_expr(deep),
        Err(ExprError::TooDeep {
            depth: MAX_NESTING + 1
        })
    );
}

#[test]
fn own_labels_override_inherited_ones() {
    let own = labels("role=db env=dev");
    let parent = labels("env=prod team=storage");
    let layered = LabelsWithParent::new(&own, &parent);
    assert_eq!(layered.get("role"), Some("db"));
    assert_eq!(layered.get("env"), Some("dev"));
    assert_eq!(layered.get("team"), Some("storage"));
    assert_eq!(layered.get("missing"), None);
    let selector = Selector::parse("env == 'dev' && team == 'storage'").unwrap();
    assert!(selector.matches(&layered));
    assert!(!Selector::parse("env == 'prod'").unwrap().matches(&layered));
}

#[test]
fn hash_maps_and_borrowed_maps_are_labels_too() {
    let selector = Selector::parse("a == 'x' && !has(b)").unwrap();
    let hashed: HashMap<String, String> = [("a".to_string(), "x".to_string())].into();
    assert!(selector.matches(&hashed));
    let borrowed: BTreeMap<&str, &str> = [("a", "x"), ("b", "")].into();
    assert!(!selector.matches(&borrowed));
    // Layers may mix map types.
    let empty: HashMap<&str, &str> = HashMap::new();
    assert!(selector.matches(&LabelsWithParent::new(&empty, &hashed)));
}
