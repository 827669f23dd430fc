//! Golden files: each case under `tests/data/<case>/` (policy.yaml,
//! endpoints.yaml) compiles and renders to exactly `expected.nft`. Run with
//! `UPDATE_GOLDEN=1` to rewrite the files, then review the diff.

mod common;

use common::{cases, compile_case, load};

#[test]
fn every_case_renders_to_its_golden_file_byte_for_byte() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 12, "only {} golden cases", cases.len());
    let mut mismatched = Vec::new();
    for case in &cases {
        let text = policy::render(&compile_case(case));
        let path = case.join("expected.nft");
        if update {
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
        if expected != text {
            let line = expected
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(text.lines().count()));
            mismatched.push(format!(
                "{}: first difference at line {}:\n  expected: {:?}\n  got:      {:?}",
                path.display(),
                line + 1,
                expected.lines().nth(line).unwrap_or("<end>"),
                text.lines().nth(line).unwrap_or("<end>"),
            ));
        }
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

#[test]
fn compiling_is_deterministic_whatever_the_order_of_the_resources() {
    for case in cases() {
        let (mut resources, config) = load(&case);
        let first = policy::Model::from_resources(&resources, config.clone()).unwrap();
        resources.reverse();
        let reversed = policy::Model::from_resources(&resources, config).unwrap();
        let a = policy::compile(&first);
        assert_eq!(a, policy::compile(&first), "{}: twice", case.display());
        assert_eq!(
            policy::render(&a),
            policy::render(&policy::compile(&reversed)),
            "{}: reversed input",
            case.display()
        );
    }
}

#[test]
fn every_jump_goto_and_set_in_every_case_refers_to_something_defined() {
    for case in cases() {
        let ruleset = compile_case(&case);
        for (name, chain) in &ruleset.chains {
            for target in ruleset.targets(chain) {
                assert!(
                    ruleset.chains.contains_key(target),
                    "{}: {name} -> {target}",
                    case.display()
                );
            }
            for rule in &chain.rules {
                for m in &rule.matches {
                    if let policy::ir::Match::Addr { set, .. }
                    | policy::ir::Match::AddrPort { set, .. } = m
                    {
                        assert!(
                            ruleset.sets.contains_key(set),
                            "{}: {name} uses {set}",
                            case.display()
                        );
                    }
                }
            }
        }
        let sets = ruleset.sets.keys().map(String::as_str);
        for name in sets.chain(ruleset.chains.keys().map(|c| &**c)) {
            assert!(name.len() <= policy::sets::MAX_NAME, "{name}");
        }
    }
}
