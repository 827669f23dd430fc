//! One change at scale until the kernel has it: 10,000 policies over 1,000
//! endpoints programmed into a fresh network namespace through [`policy::Nft`],
//! then 20 single-policy edits (and 20 endpoint relabels), each recompiled,
//! diffed against what is programmed and applied as one `nft -f -`
//! transaction; the kernel is checked to hold each edit (untimed). Reports
//! p50/p99 of diff + apply (goal: p99 under 50 ms) and of the recompile.
//!
//! `cargo bench -p policy --bench change` (root, `nft`, `ip`)

mod common;
#[path = "../tests/common/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use api::Port;
use common::{cluster, model, ms, percentile, resources};
use policy::{Dataplane, Model, converge, diff};
use testkit::Netns;

const ENDPOINTS: usize = 1_000;
const POLICIES: usize = 10_000;
const CHANGES: usize = 20;

#[derive(Default)]
struct Samples {
    compile: Vec<Duration>,
    diff: Vec<Duration>,
    apply: Vec<Duration>,
    total: Vec<Duration>,
}

fn row(what: &str, d: &[Duration]) {
    println!(
        "| {what} | {} | {} | {} |",
        ms(percentile(d, 50.0)),
        ms(percentile(d, 99.0)),
        ms(*d.iter().max().unwrap())
    );
}

/// Edits with `edit`, then compiles, diffs against `current` and applies;
/// returns the new ruleset and records the times.
fn change(
    nft: &policy::Nft,
    model: &mut Model,
    current: &mut policy::Ruleset,
    samples: &mut Samples,
    edit: impl FnOnce(&mut Model),
) -> policy::Changes {
    edit(model);
    let t = Instant::now();
    let desired = policy::compile(model);
    let compiled = t.elapsed();
    let t = Instant::now();
    let changes = diff(current, &desired);
    let diffed = t.elapsed();
    let t = Instant::now();
    nft.apply(&changes).unwrap();
    let applied = t.elapsed();
    *current = desired;
    samples.compile.push(compiled);
    samples.diff.push(diffed);
    samples.apply.push(applied);
    samples.total.push(diffed + applied);
    changes
}

fn main() {
    if !common::ready(&["nft", "ip"]) {
        println!("change bench skipped: needs root, nft and ip");
        return;
    }
    let res = resources(&cluster(ENDPOINTS, POLICIES, &[]));
    let mut model = model(&res);
    let t = Instant::now();
    let mut current = policy::compile(&model);
    let first_compile = t.elapsed();
    let ns = Netns::new("polbench").unwrap();
    let nft = lab::nft_in(&ns);
    let t = Instant::now();
    converge(&nft, &current).unwrap();
    let initial = t.elapsed();
    let rules: usize = current.chains.values().map(|c| c.rules.len()).sum();

    let mut edits = Samples::default();
    for i in 0..CHANGES {
        // A NetworkPolicy (not a multiple of 10) spread over the range.
        let k = ((i * 487 + 1) % POLICIES) | 1;
        let port = 20_000 + i as u16;
        let changes = change(&nft, &mut model, &mut current, &mut edits, |m| {
            let p = m
                .tiers
                .iter_mut()
                .flat_map(|t| t.policies.iter_mut())
                .find(|p| p.name == format!("p{k}"))
                .unwrap_or_else(|| panic!("policy p{k}"));
            p.ingress[0].destination.ports = vec![Port::Number(port)];
        });
        assert_eq!(changes.replace_chains.len(), 1, "one policy chain replaced");
        let chain = changes.replace_chains.keys().next().unwrap();
        let out = ns
            .exec("nft", ["list", "chain", "inet", "calico", chain])
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("dport {port}")),
            "the kernel holds edit {i}"
        );
    }

    let mut relabels = Samples::default();
    for i in 0..CHANGES {
        // An endpoint moves to another role of its namespace; both roles are
        // sources of NetworkPolicies there (roles not a multiple of 10), so it
        // leaves one set and joins another.
        let role = |labels: &std::collections::BTreeMap<String, String>| -> usize {
            labels["role"].trim_start_matches("r-").parse().unwrap()
        };
        let candidates: Vec<usize> = (0..model.endpoints.len())
            .filter(|&j| role(&model.endpoints[j].labels) % 10 != 0)
            .collect();
        let e = candidates[i * 47 % candidates.len()];
        let changes = change(&nft, &mut model, &mut current, &mut relabels, |m| {
            let now = role(&m.endpoints[e].labels);
            m.endpoints[e]
                .labels
                .insert("role".into(), format!("r-{}", (now + 10) % common::ROLES));
        });
        assert!(
            changes.elements_only() && !changes.is_empty(),
            "{changes:?}"
        );
    }
    assert!(
        diff(&nft.read_kernel().unwrap(), &current)
            .replace_chains
            .len()
            == current.chains.len()
            && diff(&nft.read_kernel().unwrap(), &current)
                .set_elements
                .is_empty(),
        "the kernel's sets and maps are what was compiled"
    );

    println!("\n### One change at scale: {POLICIES} policies, {ENDPOINTS} endpoints\n");
    println!(
        "Initial compile {}; initial load into a fresh namespace ({} chains, {} rules, {} sets) {}.\n",
        ms(first_compile),
        current.chains.len(),
        rules,
        current.sets.len(),
        ms(initial)
    );
    println!("| {CHANGES} changes each | p50 | p99 | max |");
    println!("|---|---|---|---|");
    row(
        "policy edit: diff + apply (`nft -f -`) **until the kernel has it**",
        &edits.total,
    );
    row("policy edit: of which diff", &edits.diff);
    row("policy edit: of which apply", &edits.apply);
    row("policy edit: full recompile before it", &edits.compile);
    row(
        "endpoint relabel: diff + apply (set elements only)",
        &relabels.total,
    );
    row(
        "endpoint relabel: full recompile before it",
        &relabels.compile,
    );
    let p99 = percentile(&edits.total, 99.0);
    println!(
        "\nGoal p99 < 50 ms for a policy edit (diff + apply): {} ({}).",
        if p99 < Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        },
        ms(p99)
    );
}
