//! Kernel tests of incremental, atomic programming (root, `nft`, `ip`,
//! `python3`), each run through both drivers, [`Nft`](policy::Nft) and
//! [`Netlink`](policy::Netlink), in fresh namespaces: rulesets converged one
//! after another list exactly as each loaded fresh, and a driver of the other
//! kind takes over the programmed table; an endpoint joining a selector
//! touches set elements only, and so does a change of natOutgoing pools;
//! traffic both rulesets allow flows on through ten updates; a rejected update
//! leaves the kernel and the driver exactly as they were.

mod common;

use std::time::{Duration, Instant};

use common::kernel::{
    Driver, fresh_listing, handles, listing, listing_diff, sorted_listing, through_both_drivers,
};
use common::{
    cases, compile_case, compile_yaml, compile_yaml_with, ready, scenario, server, tcp_connects,
    topology,
};
use policy::ir::{Match, Rule, Side, Verdict};
use policy::{Config, NatOutgoing, Ruleset, converge};
use testkit::Netns;

/// Asserts the kernel's table lists as `want` loaded fresh with `nft -f`.
fn assert_lists_as_loaded_fresh(ns: &Netns, want: &Ruleset, what: &str) {
    let want = fresh_listing(want);
    let got = sorted_listing(ns);
    assert!(
        want.contains("\tchain "),
        "{what}: the reference lists a table: {want}"
    );
    assert!(want == got, "{what}:\n{}", listing_diff(&want, &got));
}

fn converging_through_every_golden_ruleset_lists_as_each_loaded_fresh(driver: Driver) {
    if !ready() {
        return;
    }
    let ns = Netns::new("pold").unwrap();
    let dp = driver.make(&ns);
    let mut all: Vec<_> = cases()
        .iter()
        .map(|c| (c.display().to_string(), compile_case(c)))
        .collect();
    assert_eq!(all.len(), 18);
    all.push(all[0].clone());
    for (case, ruleset) in &all {
        let changes = converge(&*dp, ruleset).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(!changes.is_empty(), "{case}: consecutive cases differ");
        assert_lists_as_loaded_fresh(&ns, ruleset, case);
        assert!(
            dp.changes_to(ruleset).unwrap().is_empty(),
            "{case}: the driver knows what it programmed"
        );
    }

    // A driver of the other kind starting on the programmed table changes
    // nothing: sets and maps are already right (read back with `nft -j`),
    // chains are adopted by their stamps.
    let restarted = driver.other().make(&ns);
    let (_, last) = all.last().unwrap();
    let changes = converge(&*restarted, last).unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert_lists_as_loaded_fresh(&ns, last, "after restart");
    assert!(converge(&*restarted, last).unwrap().is_empty());
    // ... and goes on incrementally from there.
    let (case, next) = &all[1];
    converge(&*restarted, next).unwrap();
    assert_lists_as_loaded_fresh(&ns, next, &format!("{case} after restart"));
}

fn an_endpoint_joining_a_selector_changes_only_set_elements_in_the_kernel(driver: Driver) {
    if !ready() {
        return;
    }
    let ns = Netns::new("pold").unwrap();
    let dp = driver.make(&ns);
    converge(&*dp, &compile_yaml(&scenario("none", 80))).unwrap();
    let before = handles(&ns);

    let joined = compile_yaml(&scenario("client", 80));
    let start = Instant::now();
    let changes = converge(&*dp, &joined).unwrap();
    eprintln!("{driver:?}: element-only update in {:?}", start.elapsed());
    assert!(changes.elements_only(), "{changes:#?}");
    assert_eq!(changes.set_elements.len(), 1);
    assert_eq!(handles(&ns), before, "no chain or rule was replaced");
    assert_lists_as_loaded_fresh(&ns, &joined, "joined");

    let edited = compile_yaml(&scenario("client", 81));
    let start = Instant::now();
    converge(&*dp, &edited).unwrap();
    eprintln!("{driver:?}: one-chain replacement in {:?}", start.elapsed());
    let after = handles(&ns);
    let changed: Vec<&String> = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| &a.0)
        .collect();
    assert_eq!(changed, ["np-in-shop/b"], "only the edited policy's chain");
    assert_lists_as_loaded_fresh(&ns, &edited, "edited");

    // c leaves the selector again: elements removed, no chain touched.
    let before = handles(&ns);
    let left = compile_yaml(&scenario("none", 81));
    let changes = converge(&*dp, &left).unwrap();
    assert!(changes.elements_only(), "{changes:#?}");
    assert!(changes.set_elements.values().all(|c| c.add.is_empty()));
    assert_eq!(handles(&ns), before, "no chain or rule was replaced");
    assert_lists_as_loaded_fresh(&ns, &left, "left");
}

fn a_pool_change_changes_only_the_nat_sets_in_the_kernel(driver: Driver) {
    if !ready() {
        return;
    }
    let nets = |list: &[&str]| list.iter().map(|n| n.parse().unwrap()).collect();
    let with_pools = |masquerade: &[&str], pools: &[&str]| {
        let config = Config {
            nat_outgoing: NatOutgoing {
                masquerade: nets(masquerade),
                pools: nets(pools),
                hosts: Vec::new(),
            },
            ..Config::default()
        };
        compile_yaml_with(&scenario("client", 80), config)
    };
    let ns = Netns::new("pold").unwrap();
    let dp = driver.make(&ns);
    let first = with_pools(&["10.200.0.0/16"], &["10.200.0.0/16", "10.210.0.0/16"]);
    converge(&*dp, &first).unwrap();
    assert_lists_as_loaded_fresh(&ns, &first, "natOutgoing");
    let before = handles(&ns);

    let second = with_pools(&["10.200.0.0/16", "10.201.0.0/16"], &["10.200.0.0/16"]);
    let changes = converge(&*dp, &second).unwrap();
    assert!(changes.elements_only(), "{changes:#?}");
    assert_eq!(
        changes.set_elements.keys().collect::<Vec<_>>(),
        ["all-pools4", "masq-pools4"]
    );
    assert_eq!(handles(&ns), before, "no chain or rule was replaced");
    assert_lists_as_loaded_fresh(&ns, &second, "another pool");

    let none = with_pools(&[], &["10.200.0.0/16"]);
    converge(&*dp, &none).unwrap();
    assert_lists_as_loaded_fresh(&ns, &none, "natOutgoing off");
    assert!(!listing(&ns).contains("nat"), "no NAT object is left");
}

/// A ruleset with one v4 set, one v6 set and one v4 `addr . port` set of
/// these members, each used by a rule.
fn sets_of(v4: &[&str], v6: &[&str], ports: &[(&str, u16)]) -> Ruleset {
    use policy::ir::{Chain, Family, Set, SetElement, SetKey};
    let set = |key, elements: Vec<SetElement>| Set {
        key,
        comment: "members".into(),
        elements: elements.into_iter().collect(),
    };
    let net = |n: &&str| SetElement::Net(n.parse().unwrap());
    let mut r = Ruleset::default();
    r.sets.insert(
        "v4".into(),
        set(SetKey::Net(Family::V4), v4.iter().map(net).collect()),
    );
    r.sets.insert(
        "v6".into(),
        set(SetKey::Net(Family::V6), v6.iter().map(net).collect()),
    );
    r.sets.insert(
        "port4".into(),
        set(
            SetKey::NetPort(Family::V4),
            ports
                .iter()
                .map(|(n, p)| SetElement::NetPort(n.parse().unwrap(), *p))
                .collect(),
        ),
    );
    let lookup = |family, set: &str, port: bool| {
        let (side, set, negate) = (Side::Source, set.to_string(), false);
        if port {
            Match::AddrPort {
                family,
                side,
                set,
                negate,
            }
        } else {
            Match::Addr {
                family,
                side,
                set,
                negate,
            }
        }
    };
    let rules = vec![
        Rule::new(vec![lookup(Family::V4, "v4", false)], Verdict::Accept),
        Rule::new(vec![lookup(Family::V6, "v6", false)], Verdict::Accept),
        Rule::new(vec![lookup(Family::V4, "port4", true)], Verdict::Accept),
    ];
    r.chains
        .insert("members".into(), Chain { base: None, rules }.into());
    r
}

fn set_elements_that_touch_start_at_zero_or_reach_the_top_come_and_go(driver: Driver) {
    if !ready() {
        return;
    }
    let ns = Netns::new("pold").unwrap();
    let dp = driver.make(&ns);
    let steps = [
        sets_of(&["10.0.0.1/32"], &["fd00::1/128"], &[("10.0.0.1/32", 80)]),
        // Touching intervals (one's end is the next one's start).
        sets_of(
            &["10.0.0.1/32", "10.0.0.2/32", "10.0.0.4/30"],
            &["fd00::1/128", "fd00::2/127"],
            &[
                ("10.0.0.1/32", 80),
                ("10.0.0.2/32", 80),
                ("10.0.0.1/32", 81),
            ],
        ),
        // From the bottom of the key space, and one interval removed between two.
        sets_of(
            &["0.0.0.0/8", "10.0.0.1/32", "10.0.0.4/30"],
            &["::/16", "fd00::2/127"],
            &[("0.0.0.0/8", 80), ("10.0.0.2/32", 80)],
        ),
        // To the top of the key space; the bottom one gone.
        sets_of(
            &["10.0.0.2/32", "255.255.255.255/32"],
            &["ffff::/16"],
            &[("255.255.255.0/24", 65535)],
        ),
        // Empty, then back.
        sets_of(&[], &[], &[]),
        sets_of(
            &["10.0.0.0/31", "10.0.0.2/31"],
            &["fd00::/127"],
            &[("10.0.0.0/31", 1)],
        ),
    ];
    converge(&*dp, &steps[0]).unwrap();
    for (i, step) in steps.iter().enumerate().skip(1) {
        let changes = converge(&*dp, step).unwrap();
        assert!(
            changes.elements_only() && !changes.is_empty(),
            "step {i}: {changes:#?}"
        );
        assert_lists_as_loaded_fresh(&ns, step, &format!("step {i}"));
    }
}

fn traffic_both_rulesets_allow_survives_ten_updates(driver: Driver) {
    if !ready() || !testkit::require_programs(&["ping", "seq"]) {
        return;
    }
    let t = topology();
    let _web = server(&t.a, 8080);
    let dp = driver.make(&t.host);
    converge(&*dp, &compile_yaml(&scenario("none", 80))).unwrap();
    assert!(
        tcp_connects(&t.b, "10.200.1.1", 8080),
        "b -> a:8080 allowed"
    );

    let ping =
        t.b.cmd("ping")
            .args(["-q", "-c", "300", "-i", "0.01", "-W", "1", "10.200.1.1"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    // New TCP connections, each through the whole ruleset.
    let connects =
        t.b.cmd("bash")
            .args([
                "-c",
                "for i in $(seq 60); do timeout 1 bash -c 'echo > /dev/tcp/10.200.1.1/8080' \
             || echo FAIL; sleep 0.02; done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    for i in 0..10u16 {
        let role = if i % 2 == 0 { "client" } else { "none" };
        let changes = converge(&*dp, &compile_yaml(&scenario(role, 81 + i))).unwrap();
        assert!(!changes.is_empty());
        std::thread::sleep(Duration::from_millis(150));
    }
    let connects = connects.wait_with_output().unwrap();
    let ping = ping.wait_with_output().unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping_out.contains("300 received"),
        "no ping lost:\n{ping_out}"
    );
    let connect_out = String::from_utf8_lossy(&connects.stdout);
    assert!(!connect_out.contains("FAIL"), "every connect succeeded");
}

fn a_rejected_update_leaves_the_kernel_and_the_driver_exactly_as_they_were(driver: Driver) {
    if !ready() {
        return;
    }
    let ns = Netns::new("pold").unwrap();
    let dp = driver.make(&ns);
    let first = compile_yaml(&scenario("none", 80));
    converge(&*dp, &first).unwrap();
    let before = listing(&ns);
    let handles_before = handles(&ns);

    // A real change (c joins) plus, as the very last message of the batch, a
    // rule using a set that does not exist.
    let good = compile_yaml(&scenario("client", 81));
    let mut bad = policy::diff(&first, &good);
    assert!(!bad.set_elements.is_empty() && bad.add_chains.is_empty());
    let (name, chain) = bad.replace_chains.last_key_value().unwrap();
    assert_eq!(name, "np-in-shop/b", "the last chain of the batch");
    let last = chain.rules.len();
    let chain = std::sync::Arc::make_mut(bad.replace_chains.get_mut("np-in-shop/b").unwrap());
    chain.rules.push(Rule::new(
        vec![Match::Addr {
            family: policy::ir::Family::V4,
            side: Side::Source,
            set: "no-such-set".into(),
            negate: false,
        }],
        Verdict::Accept,
    ));
    let err = dp.apply(&bad).unwrap_err().to_string();
    assert!(err.contains("no-such-set"), "{err}");
    if driver == Driver::Netlink {
        assert!(
            err.contains(&format!("rule {last} of chain np-in-shop/b")),
            "{err}"
        );
    }
    assert_eq!(listing(&ns), before, "nothing changed");
    assert_eq!(handles(&ns), handles_before);
    assert!(
        dp.changes_to(&first).unwrap().is_empty(),
        "the driver still knows the kernel holds the first ruleset"
    );

    // The same update without the bad rule goes through.
    converge(&*dp, &good).unwrap();
    assert_lists_as_loaded_fresh(&ns, &good, "after the good update");
}

through_both_drivers!(
    converging_through_every_golden_ruleset_lists_as_each_loaded_fresh,
    an_endpoint_joining_a_selector_changes_only_set_elements_in_the_kernel,
    set_elements_that_touch_start_at_zero_or_reach_the_top_come_and_go,
    traffic_both_rulesets_allow_survives_ten_updates,
    a_rejected_update_leaves_the_kernel_and_the_driver_exactly_as_they_were,
    a_pool_change_changes_only_the_nat_sets_in_the_kernel,
);
