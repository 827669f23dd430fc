//! Kernel tests of incremental, atomic programming (root, `nft`, `ip`,
//! `python3`): rulesets converged one after another through the [`Nft`]
//! driver list back as compiled; an endpoint joining a selector touches set
//! elements only; traffic both rulesets allow flows on through ten updates;
//! a rejected update leaves the kernel exactly as it was.

mod common;

use std::time::{Duration, Instant};

use common::{cases, compile_case, compile_yaml, ready, scenario, server, tcp_connects, topology};
use policy::ir::{Match, Rule, Side, Verdict};
use policy::{Dataplane, Nft, Ruleset, converge};
use testkit::Netns;

/// A driver programming the namespace's `inet calico` table.
fn driver(ns: &Netns) -> Nft {
    let name = ns.name().to_string();
    Nft::with_command(move || {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &name, "nft"]);
        cmd
    })
}

/// Asserts the kernel holds `want`: the same sets and maps with the same
/// elements, the same chains with the same hooks and as many rules.
fn assert_kernel_holds(ns: &Netns, want: &Ruleset, what: &str) {
    let got = driver(ns).read_kernel().unwrap();
    assert_eq!(got.sets, want.sets, "{what}: sets");
    assert_eq!(got.maps, want.maps, "{what}: maps");
    let shape = |r: &Ruleset| -> Vec<(String, Option<policy::ir::BaseChain>, usize)> {
        r.chains
            .iter()
            .map(|(n, c)| (n.clone(), c.base, c.rules.len()))
            .collect()
    };
    assert_eq!(shape(&got), shape(want), "{what}: chains");
}

/// (chain name, chain handle, rule handles) of every chain, from `nft -j`.
fn handles(ns: &Netns) -> Vec<(String, u64, Vec<u64>)> {
    let out = ns
        .exec("nft", ["-j", "list", "table", "inet", "calico"])
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut chains: Vec<(String, u64, Vec<u64>)> = Vec::new();
    for o in doc["nftables"].as_array().unwrap() {
        if let Some(c) = o.get("chain") {
            chains.push((
                c["name"].as_str().unwrap().into(),
                c["handle"].as_u64().unwrap(),
                Vec::new(),
            ));
        } else if let Some(r) = o.get("rule") {
            let chain = r["chain"].as_str().unwrap();
            let entry = chains.iter_mut().find(|c| c.0 == chain).unwrap();
            entry.2.push(r["handle"].as_u64().unwrap());
        }
    }
    chains.sort();
    chains
}

fn listing(ns: &Netns) -> String {
    let out = ns.exec("nft", ["list", "table", "inet", "calico"]).unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn converging_through_every_golden_ruleset_leaves_exactly_the_last_in_the_kernel() {
    if !ready() {
        return;
    }
    let ns = Netns::new("pold").unwrap();
    let nft = driver(&ns);
    let mut all: Vec<_> = cases()
        .iter()
        .map(|c| (c.clone(), compile_case(c)))
        .collect();
    all.push(all[0].clone());
    for (case, ruleset) in &all {
        converge(&nft, ruleset).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        assert_kernel_holds(&ns, ruleset, &case.display().to_string());
        assert!(
            policy::diff(&nft.read().unwrap(), ruleset).is_empty(),
            "the driver knows what it programmed"
        );
    }

    // A second driver starting on the programmed table converges without
    // removing anything: sets and maps are already right, chains are refilled.
    let restarted = driver(&ns);
    let last = &all.last().unwrap().1;
    let changes = converge(&restarted, last).unwrap();
    assert!(changes.set_elements.is_empty() && changes.map_elements.is_empty());
    assert!(changes.add_sets.is_empty() && changes.remove_chains.is_empty());
    assert_kernel_holds(&ns, last, "after restart");
    assert!(converge(&restarted, last).unwrap().is_empty());
}

#[test]
fn an_endpoint_joining_a_selector_changes_only_set_elements_in_the_kernel() {
    if !ready() {
        return;
    }
    let ns = Netns::new("pold").unwrap();
    let nft = driver(&ns);
    converge(&nft, &compile_yaml(&scenario("none", 80))).unwrap();
    let before = handles(&ns);

    let joined = compile_yaml(&scenario("client", 80));
    let start = Instant::now();
    let changes = converge(&nft, &joined).unwrap();
    let took = start.elapsed();
    eprintln!("element-only update applied in {took:?}");
    assert!(changes.elements_only(), "{changes:#?}");
    assert_eq!(changes.set_elements.len(), 1);
    assert_eq!(handles(&ns), before, "no chain or rule was replaced");
    assert_kernel_holds(&ns, &joined, "joined");

    let edited = compile_yaml(&scenario("client", 81));
    let start = Instant::now();
    converge(&nft, &edited).unwrap();
    eprintln!("one-chain replacement applied in {:?}", start.elapsed());
    let after = handles(&ns);
    let changed: Vec<&String> = after
        .iter()
        .zip(&before)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| &a.0)
        .collect();
    assert_eq!(changed, ["np-in-shop/b"], "only the edited policy's chain");
    assert_kernel_holds(&ns, &edited, "edited");
}

#[test]
fn traffic_both_rulesets_allow_survives_ten_updates() {
    if !ready() || !testkit::require_programs(&["ping", "seq"]) {
        return;
    }
    let t = topology();
    let _web = server(&t.a, 8080);
    let nft = driver(&t.host);
    converge(&nft, &compile_yaml(&scenario("none", 80))).unwrap();
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
        let changes = converge(&nft, &compile_yaml(&scenario(role, 81 + i))).unwrap();
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

#[test]
fn a_rejected_update_leaves_the_kernel_exactly_as_it_was() {
    if !ready() {
        return;
    }
    let ns = Netns::new("pold").unwrap();
    let nft = driver(&ns);
    let first = compile_yaml(&scenario("none", 80));
    converge(&nft, &first).unwrap();
    let before = listing(&ns);
    let handles_before = handles(&ns);

    // A real change (c joins) plus a rule using a set that does not exist.
    let mut bad = policy::diff(&first, &compile_yaml(&scenario("client", 81)));
    assert!(!bad.set_elements.is_empty() && !bad.replace_chains.is_empty());
    let chain = bad.replace_chains.get_mut("np-in-shop/b").unwrap();
    chain.rules.push(Rule::new(
        vec![Match::Addr {
            family: policy::ir::Family::V4,
            side: Side::Source,
            set: "no-such-set".into(),
            negate: false,
        }],
        Verdict::Accept,
    ));
    let err = nft.apply(&bad).unwrap_err();
    assert!(err.to_string().contains("no-such-set"), "{err}");
    assert_eq!(listing(&ns), before, "nothing changed");
    assert_eq!(handles(&ns), handles_before);
    assert!(
        policy::diff(&nft.read().unwrap(), &first).is_empty(),
        "the driver still knows the kernel holds the first ruleset"
    );
}
