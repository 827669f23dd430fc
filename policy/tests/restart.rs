//! Kernel tests of a driver restarting on the table it programmed (root,
//! `nft`, `ping`), each run through both drivers in fresh namespaces: with
//! the same model nothing is sent and every rule keeps its handle and its
//! counter; with one policy changed only that policy's chain is replaced; a
//! chain with a rule added by hand is replaced; a table programmed without
//! chain stamps (an older version) is replaced once, then left alone.

mod common;

use common::kernel::{
    Driver, fresh_listing, handles, listing_diff, rule_counters, sorted_listing,
    through_both_drivers,
};
use common::{compile_yaml, pings, ready, scenario};
use policy::{Ruleset, converge, diff, render};
use testkit::Netns;

/// A listing with `counter packets N bytes M` as `counter`: kept rules keep
/// what they counted.
fn without_counts(listing: &str) -> String {
    listing
        .lines()
        .map(|line| match line.split_once("counter packets ") {
            Some((head, rest)) => {
                let tail = rest.splitn(4, ' ').nth(3).unwrap_or_default();
                format!("{head}counter {tail}").trim_end().to_string()
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the kernel's table lists as `want` loaded fresh with `nft -f`,
/// counts aside.
fn assert_lists_as_loaded_fresh(ns: &Netns, want: &Ruleset, what: &str) {
    let want = without_counts(&fresh_listing(want));
    let got = without_counts(&sorted_listing(ns));
    assert!(
        want.contains("counter accept") && !want.contains("packets"),
        "{want}"
    );
    assert!(want == got, "{what}:\n{}", listing_diff(&want, &got));
}

/// A namespace whose table `driver` programmed with `ruleset`, the driver
/// dropped since, and some packets counted by its rules.
fn programmed(driver: Driver, ruleset: &Ruleset) -> Netns {
    let ns = Netns::new("polr").unwrap();
    converge(&*driver.make(&ns), ruleset).unwrap();
    assert!(pings(&ns, "127.0.0.1"), "the host pings itself");
    ns
}

/// The handles of the rules of every chain but `except`.
fn handles_but(ns: &Netns, except: &[&str]) -> Vec<(String, u64, Vec<u64>)> {
    handles(ns)
        .into_iter()
        .filter(|(chain, _, _)| !except.contains(&chain.as_str()))
        .collect()
}

fn a_restart_with_the_same_model_sends_nothing_and_keeps_every_handle_and_counter(driver: Driver) {
    if !ready() {
        return;
    }
    let ruleset = compile_yaml(&scenario("none", 80));
    let ns = programmed(driver, &ruleset);
    let before = rule_counters(&ns);
    assert!(before.len() > 20, "{} rules", before.len());
    assert!(
        before.iter().any(|(_, _, packets)| *packets > 0),
        "the ping was counted: {before:?}"
    );
    for restarted in [driver, driver.other()] {
        let dp = restarted.make(&ns);
        let changes = converge(&*dp, &ruleset).unwrap();
        assert!(changes.is_empty(), "{restarted:?}: {changes:?}");
        assert_eq!(rule_counters(&ns), before, "{restarted:?}");
    }
}

fn a_restart_with_one_policy_changed_replaces_only_its_chain(driver: Driver) {
    if !ready() {
        return;
    }
    let old = compile_yaml(&scenario("none", 80));
    let new = compile_yaml(&scenario("none", 81));
    let ns = programmed(driver, &old);
    let kept = handles_but(&ns, &["np-in-shop/b"]);
    let counted = rule_counters(&ns);

    let dp = driver.make(&ns);
    let changes = converge(&*dp, &new).unwrap();
    assert_eq!(
        changes,
        diff(&old, &new),
        "the same changes as a driver that never stopped"
    );
    assert_eq!(
        changes.replace_chains.keys().collect::<Vec<_>>(),
        ["np-in-shop/b"]
    );
    assert_lists_as_loaded_fresh(&ns, &new, "after the restart");
    assert_eq!(handles_but(&ns, &["np-in-shop/b"]), kept);
    let others = |c: &[(String, u64, u64)]| -> Vec<(String, u64, u64)> {
        c.iter()
            .filter(|r| r.0 != "np-in-shop/b")
            .cloned()
            .collect()
    };
    assert_eq!(others(&rule_counters(&ns)), others(&counted));
}

fn a_rule_added_by_hand_gets_its_chain_replaced_on_restart(driver: Driver) {
    if !ready() {
        return;
    }
    let ruleset = compile_yaml(&scenario("none", 80));
    let ns = programmed(driver, &ruleset);
    ns.exec(
        "nft",
        [
            "add",
            "rule",
            "inet",
            "calico",
            "np-in-shop/a",
            "counter",
            "accept",
        ],
    )
    .unwrap();
    let kept = handles_but(&ns, &["np-in-shop/a"]);

    let dp = driver.make(&ns);
    let changes = converge(&*dp, &ruleset).unwrap();
    assert_eq!(
        changes.replace_chains.keys().collect::<Vec<_>>(),
        ["np-in-shop/a"],
        "{changes:?}"
    );
    assert!(changes.set_elements.is_empty() && changes.map_elements.is_empty());
    assert_lists_as_loaded_fresh(&ns, &ruleset, "after the restart");
    assert_eq!(handles_but(&ns, &["np-in-shop/a"]), kept);
    assert!(converge(&*dp, &ruleset).unwrap().is_empty());
}

/// `text` as a version without chain stamps rendered it.
fn unstamped(text: &str) -> String {
    let stamp = |s: &str| {
        s.len() == 17 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    text.lines()
        .map(|line| {
            let Some((head, comment)) = line.split_once(" comment \"") else {
                return line.to_string();
            };
            let comment = comment.trim_end_matches('"');
            match comment.rsplit_once(' ') {
                Some((own, s)) if stamp(s) => format!("{head} comment \"{own}\""),
                None if stamp(comment) => head.to_string(),
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn a_table_without_stamps_is_replaced_once_then_left_alone(driver: Driver) {
    if !ready() {
        return;
    }
    let ruleset = compile_yaml(&scenario("none", 80));
    let ns = Netns::new("polr").unwrap();
    let old = unstamped(&render(&ruleset));
    assert_ne!(old, render(&ruleset));
    common::kernel::load_nft(&ns, &old);

    let dp = driver.make(&ns);
    let changes = converge(&*dp, &ruleset).unwrap();
    let with_rules: Vec<&str> = ruleset
        .chains
        .iter()
        .filter(|(_, c)| !c.rules.is_empty())
        .map(|(name, _)| &**name)
        .collect();
    assert_eq!(
        changes
            .replace_chains
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        with_rules,
        "every chain with rules replaced once"
    );
    assert!(changes.set_elements.is_empty() && changes.add_sets.is_empty());
    assert_lists_as_loaded_fresh(&ns, &ruleset, "after the take-over");
    let after = handles(&ns);
    drop(dp);
    for restarted in [driver, driver.other()] {
        let changes = converge(&*restarted.make(&ns), &ruleset).unwrap();
        assert!(changes.is_empty(), "{restarted:?}: {changes:?}");
    }
    assert_eq!(handles(&ns), after);
}

through_both_drivers!(
    a_restart_with_the_same_model_sends_nothing_and_keeps_every_handle_and_counter,
    a_restart_with_one_policy_changed_replaces_only_its_chain,
    a_rule_added_by_hand_gets_its_chain_replaced_on_restart,
    a_table_without_stamps_is_replaced_once_then_left_alone,
);
