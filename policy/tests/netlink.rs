//! The netlink path against `nft` (root, `nft`): every golden ruleset loaded
//! through netlink in one namespace and through `nft -f` of its rendered text
//! in another lists identically; a batch whose last message is bad commits
//! nothing; a large batch goes through in one call (timed against `nft -f`).

mod common;

use std::time::Instant;

use common::kernel::{listing, load_nft};
use common::{cases, compile_case, ready};
use policy::diff::diff;
use policy::ir::{Chain, Family, Match, Rule, Ruleset, Set, SetElement, SetKey, Side, Verdict};
use policy::netlink::Netlink;
use policy::{Dataplane, render};
use testkit::Netns;

fn load_netlink(ns: &Netns, ruleset: &Ruleset) -> Result<(), String> {
    Netlink::in_netns(ns.path())
        .unwrap()
        .send(&Ruleset::default(), &diff(&Ruleset::default(), ruleset))
        .map_err(|e| e.to_string())
}

#[test]
fn every_golden_ruleset_lists_the_same_through_netlink_as_through_nft() {
    if !ready() {
        return;
    }
    let all = cases();
    assert!(!all.is_empty());
    for case in all {
        let ruleset = compile_case(&case);
        let by_nft = Netns::new("plnf").unwrap();
        let by_netlink = Netns::new("plnl").unwrap();
        load_nft(&by_nft, &render(&ruleset));
        load_netlink(&by_netlink, &ruleset).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let want = listing(&by_nft);
        let got = listing(&by_netlink);
        assert!(
            want.contains("chain forward {"),
            "{}: {want}",
            case.display()
        );
        if want != got {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .filter(|(a, b)| a != b)
                .take(8)
                .map(|(a, b)| format!("nft:     {a}\nnetlink: {b}"))
                .collect();
            panic!("{}: listings differ:\n{}", case.display(), diff.join("\n"));
        }
    }
}

fn net_set(comment: &str, nets: impl IntoIterator<Item = String>) -> Set {
    Set {
        key: SetKey::Net(Family::V4),
        comment: comment.into(),
        elements: nets
            .into_iter()
            .map(|n| SetElement::Net(n.parse().unwrap()))
            .collect(),
    }
}

#[test]
fn a_batch_whose_last_message_is_refused_commits_nothing_and_names_it() {
    if !ready() {
        return;
    }
    let ns = Netns::new("plnp").unwrap();
    let mut ruleset = Ruleset::default();
    ruleset
        .sets
        .insert("good".into(), net_set("good", ["10.0.0.0/8".to_string()]));
    ruleset.chains.insert(
        "z-last".into(),
        Chain {
            base: None,
            rules: vec![Rule::new(vec![], Verdict::Jump("missing-chain".into()))],
        }
        .into(),
    );
    let err = load_netlink(&ns, &ruleset).unwrap_err();
    assert!(err.contains("rule 0 of chain z-last"), "{err}");
    let out = ns.exec("nft", ["list", "ruleset"]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "nothing committed"
    );
}

#[test]
fn ten_thousand_rules_and_a_hundred_thousand_elements_go_in_one_batch() {
    if !ready() {
        return;
    }
    let mut ruleset = Ruleset::default();
    let nets = (0..100_000u32).map(|i| {
        let a = 0x0a00_0000 + i * 2;
        format!("{}/32", std::net::Ipv4Addr::from(a))
    });
    ruleset.sets.insert("big".into(), net_set("big", nets));
    let rules = (0..10_000u16)
        .map(|i| {
            Rule::new(
                vec![
                    Match::Addr {
                        family: Family::V4,
                        side: Side::Source,
                        set: "big".into(),
                        negate: false,
                    },
                    Match::Ports {
                        side: Side::Destination,
                        ranges: vec![(i, i)],
                        negate: false,
                    },
                ],
                Verdict::Accept,
            )
        })
        .collect();
    ruleset
        .chains
        .insert("many".into(), Chain { base: None, rules }.into());

    let by_netlink = Netns::new("plnb").unwrap();
    let started = Instant::now();
    load_netlink(&by_netlink, &ruleset).unwrap();
    let netlink = started.elapsed();
    let by_nft = Netns::new("plnc").unwrap();
    let text = render(&ruleset);
    let started = Instant::now();
    load_nft(&by_nft, &text);
    let nft = started.elapsed();
    eprintln!("10k rules + 100k elements: netlink {netlink:?}, nft -f {nft:?}");
    let read = Netlink::in_netns(by_netlink.path())
        .unwrap()
        .read()
        .unwrap();
    assert_eq!(read.sets["big"].elements.len(), 100_000);
    assert_eq!(read.chains["many"].rules.len(), 10_000);
}
