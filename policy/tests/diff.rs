//! The diff between two rulesets, and the incremental nft script it renders to.

mod common;

use common::{cases, compile_case, compile_yaml, scenario};
use policy::ir::SetElement;
use policy::{Changes, diff, render_changes};

/// The name of the v4 set standing for `role == 'client'`.
fn client_set(ruleset: &policy::Ruleset) -> String {
    let names: Vec<&String> = ruleset
        .sets
        .iter()
        .filter(|(n, s)| n.starts_with("sel4-") && s.comment.contains("role == 'client'"))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names.len(), 1, "{:?}", ruleset.sets.keys());
    names[0].clone()
}

#[test]
fn identical_rulesets_give_no_changes() {
    for case in cases() {
        let ruleset = compile_case(&case);
        let changes = diff(&ruleset, &ruleset);
        assert!(changes.is_empty(), "{}: {changes:?}", case.display());
        assert_eq!(render_changes(&changes), "add table inet calico\n");
    }
}

#[test]
fn an_endpoint_joining_a_selector_changes_set_elements_only() {
    let before = compile_yaml(&scenario("x", 80));
    let after = compile_yaml(&scenario("client", 80));
    let changes = diff(&before, &after);
    assert!(changes.elements_only(), "{changes:#?}");
    assert!(changes.map_elements.is_empty());
    let joined: Vec<(&String, &Vec<SetElement>)> = changes
        .set_elements
        .iter()
        .map(|(name, c)| {
            assert!(c.remove.is_empty(), "{name} loses nothing");
            (name, &c.add)
        })
        .collect();
    assert_eq!(joined.len(), 1, "one set gains c: {joined:?}");
    assert_eq!(*joined[0].0, client_set(&after));
    assert_eq!(
        joined[0].1,
        &vec![SetElement::Net("10.200.3.1/32".parse().unwrap())]
    );
    // And leaving is the reverse.
    let back = diff(&after, &before);
    assert!(back.elements_only());
    assert_eq!(back.set_elements[joined[0].0].remove, *joined[0].1);
}

#[test]
fn editing_one_policy_replaces_only_the_chains_that_depend_on_it() {
    let before = compile_yaml(&scenario("x", 80));
    let after = compile_yaml(&scenario("x", 81));
    let changes = diff(&before, &after);
    let replaced: Vec<&String> = changes.replace_chains.keys().collect();
    assert_eq!(replaced, ["np-in-shop/b"], "{changes:#?}");
    assert!(changes.add_chains.is_empty() && changes.remove_chains.is_empty());
    assert!(changes.set_elements.is_empty() && changes.map_elements.is_empty());
    let script = render_changes(&changes);
    assert!(
        script.contains("flush chain inet calico np-in-shop/b\n"),
        "{script}"
    );
    assert!(script.contains(" th dport 81 "), "{script}");
}

#[test]
fn applying_the_diff_to_the_current_ruleset_gives_the_desired_one() {
    let all: Vec<_> = cases().iter().map(|c| compile_case(c)).collect();
    for current in &all {
        for desired in &all {
            let changes = diff(current, desired);
            let mut got = current.clone();
            changes.apply_to(&mut got);
            assert_eq!(&got, desired);
            assert!(diff(&got, desired).is_empty());
        }
    }
}

#[test]
fn an_empty_table_gets_every_object_in_dependency_order() {
    let desired = compile_yaml(&scenario("x", 80));
    let script = render_changes(&diff(&Default::default(), &desired));
    let first = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in\n{script}"))
    };
    // Chains exist before the maps that go to them; sets before the rules.
    let Some(policy::ir::Verdict::Goto(calib)) = desired.maps["wl-to"].elements.get("calib") else {
        panic!("wl-to has no chain for calib")
    };
    assert!(first(&format!("add chain inet calico {calib}")) < first("map wl-to {"));
    assert!(first(&format!("set {} {{", client_set(&desired))) < first("add rule "));
    assert!(first("map wl-to {") < first("add rule "));
    let rules: usize = desired.chains.values().map(|c| c.rules.len()).sum();
    assert_eq!(script.matches("add rule ").count(), rules);
}

#[test]
fn removed_objects_are_unreferenced_before_they_are_deleted() {
    let current = compile_yaml(&scenario("x", 80));
    let changes: Changes = diff(&current, &Default::default());
    let script = render_changes(&changes);
    let last_flush = script.rfind("flush chain").unwrap();
    let first_delete = script.find("delete ").unwrap();
    assert!(last_flush < first_delete, "{script}");
    let maps = script.rfind("delete map").unwrap();
    let chains = script.find("delete chain").unwrap();
    let sets = script.find("delete set").unwrap();
    assert!(maps < chains && chains < sets, "{script}");
}

#[test]
fn a_changed_set_definition_recreates_it_and_replaces_its_users() {
    let current = compile_yaml(&scenario("x", 80));
    let mut desired = current.clone();
    let name = client_set(&current);
    desired.sets.get_mut(&name).unwrap().comment = "renamed".into();
    let changes = diff(&current, &desired);
    assert!(changes.remove_sets.contains(&name) && changes.add_sets.contains_key(&name));
    assert_eq!(
        changes.replace_chains.keys().collect::<Vec<_>>(),
        ["np-in-shop/b"]
    );
    let script = render_changes(&changes);
    let flush = script.find("flush chain").unwrap();
    let delete = script.find("delete set").unwrap();
    let add = script.find(&format!("set {name} {{")).unwrap();
    let rule = script.find("add rule").unwrap();
    assert!(flush < delete && delete < add && add < rule, "{script}");
}
