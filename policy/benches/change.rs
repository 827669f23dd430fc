//! One change at scale until the kernel has it: 10,000 policies over 1,000
//! endpoints programmed into two fresh network namespaces, one through the
//! default driver [`policy::Netlink`] (one libnftnl batch per update) and one
//! through [`policy::Nft`] (one `nft -f -` script per update); then 20
//! single-policy edits (and 20 endpoint relabels), each recompiled, diffed
//! against what is programmed and applied through both drivers; both kernels
//! are checked to hold each edit (untimed). Reports p50/p99 of the recompile,
//! the diff, each driver's apply, diff + apply (goal: p99 under 50 ms through
//! netlink) and the whole (recompile + diff + apply), and the nft/netlink
//! ratio.
//!
//! `cargo bench -p policy --bench change` (root, `nft`, `ip`)

mod common;
#[path = "../tests/common/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use api::Port;
use common::{cluster, model, ms, percentile, resources};
use policy::{Dataplane, Model, Netlink, Nft, Ruleset, converge, diff};
use testkit::Netns;

const ENDPOINTS: usize = 1_000;
const POLICIES: usize = 10_000;
const CHANGES: usize = 20;

#[derive(Default)]
struct Samples {
    compile: Vec<Duration>,
    diff: Vec<Duration>,
    netlink: Vec<Duration>,
    nft: Vec<Duration>,
}

impl Samples {
    fn sum(&self, parts: &[&Vec<Duration>]) -> Vec<Duration> {
        (0..self.diff.len())
            .map(|i| parts.iter().map(|p| p[i]).sum())
            .collect()
    }

    fn rows(&self, what: &str) {
        row(&format!("{what}: full recompile"), &self.compile);
        row(&format!("{what}: diff"), &self.diff);
        row(&format!("{what}: apply, netlink"), &self.netlink);
        row(&format!("{what}: apply, `nft -f -`"), &self.nft);
        let by_netlink = self.sum(&[&self.diff, &self.netlink]);
        let by_nft = self.sum(&[&self.diff, &self.nft]);
        row(
            &format!("{what}: **diff + apply, netlink** (compiled → in the kernel)"),
            &by_netlink,
        );
        row(&format!("{what}: diff + apply, `nft -f -`"), &by_nft);
        row(
            &format!("{what}: recompile + diff + apply, netlink"),
            &self.sum(&[&self.compile, &self.diff, &self.netlink]),
        );
        let ratio =
            |p| percentile(&by_nft, p).as_secs_f64() / percentile(&by_netlink, p).as_secs_f64();
        println!(
            "| {what}: diff + apply, `nft -f -` / netlink | {:.1}× | {:.1}× | |",
            ratio(50.0),
            ratio(99.0)
        );
    }
}

fn row(what: &str, d: &[Duration]) {
    println!(
        "| {what} | {} | {} | {} |",
        ms(percentile(d, 50.0)),
        ms(percentile(d, 99.0)),
        ms(*d.iter().max().unwrap())
    );
}

/// Two namespaces, one per driver.
struct Kernels {
    netlink_ns: Netns,
    netlink: Netlink,
    nft_ns: Netns,
    nft: Nft,
}

/// Edits with `edit`, then compiles, diffs against `current` and applies
/// through both drivers; returns the changes and records the times.
fn change(
    k: &Kernels,
    model: &mut Model,
    current: &mut Ruleset,
    samples: &mut Samples,
    edit: impl FnOnce(&mut Model),
) -> policy::Changes {
    edit(model);
    let t = Instant::now();
    let desired = policy::compile(model);
    samples.compile.push(t.elapsed());
    let t = Instant::now();
    let changes = diff(current, &desired);
    samples.diff.push(t.elapsed());
    let t = Instant::now();
    k.netlink.apply(&changes).unwrap();
    samples.netlink.push(t.elapsed());
    let t = Instant::now();
    k.nft.apply(&changes).unwrap();
    samples.nft.push(t.elapsed());
    *current = desired;
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
    let netlink_ns = Netns::new("polbnl").unwrap();
    let nft_ns = Netns::new("polbnf").unwrap();
    let kernels = Kernels {
        netlink: Netlink::in_netns(netlink_ns.path()).unwrap(),
        nft: lab::nft_in(&nft_ns),
        netlink_ns,
        nft_ns,
    };
    let t = Instant::now();
    converge(&kernels.netlink, &current).unwrap();
    let initial_netlink = t.elapsed();
    let t = Instant::now();
    converge(&kernels.nft, &current).unwrap();
    let initial_nft = t.elapsed();
    let rules: usize = current.chains.values().map(|c| c.rules.len()).sum();

    let mut edits = Samples::default();
    for i in 0..CHANGES {
        // A NetworkPolicy (not a multiple of 10) spread over the range.
        let k = ((i * 487 + 1) % POLICIES) | 1;
        let port = 20_000 + i as u16;
        let changes = change(&kernels, &mut model, &mut current, &mut edits, |m| {
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
        for ns in [&kernels.netlink_ns, &kernels.nft_ns] {
            let out = ns
                .exec("nft", ["list", "chain", "inet", "calico", chain])
                .unwrap();
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(&format!("dport {port}")),
                "the kernel in {} holds edit {i}",
                ns.name()
            );
        }
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
        let changes = change(&kernels, &mut model, &mut current, &mut relabels, |m| {
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
    for kernel in [
        kernels.netlink.read_kernel().unwrap(),
        kernels.nft.read_kernel().unwrap(),
    ] {
        let left = diff(&kernel, &current);
        assert!(
            left.replace_chains.len() == current.chains.len()
                && left.set_elements.is_empty()
                && left.map_elements.is_empty()
                && left.add_sets.is_empty()
                && left.remove_sets.is_empty(),
            "the kernel's sets and maps are what was compiled"
        );
    }

    println!("\n### One change at scale: {POLICIES} policies, {ENDPOINTS} endpoints\n");
    println!(
        "Initial compile {}; initial load into a fresh namespace ({} chains, {} rules, {} sets): \
         netlink {}, `nft -f` {}.\n",
        ms(first_compile),
        current.chains.len(),
        rules,
        current.sets.len(),
        ms(initial_netlink),
        ms(initial_nft),
    );
    println!("| {CHANGES} changes each | p50 | p99 | max |");
    println!("|---|---|---|---|");
    edits.rows("policy edit");
    relabels.rows("endpoint relabel");
    let p99 = percentile(&edits.sum(&[&edits.diff, &edits.netlink]), 99.0);
    println!(
        "\nGoal p99 < 50 ms for a policy edit (diff + apply through netlink): {} ({}).",
        if p99 < Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        },
        ms(p99)
    );
}
