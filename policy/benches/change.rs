//! One change until the kernel has it, at several table sizes: 1,000, 3,000,
//! 10,000 and 30,000 policies over 1,000 endpoints, each programmed into a
//! fresh network namespace through the default driver [`policy::Netlink`]
//! (and, at 10,000, also through [`policy::Nft`], one `nft -f -` script per
//! update). Then 100 single-policy edits and 100 endpoint relabels, each
//! recompiled by the incremental [`Compiler`], diffed against the previous
//! ruleset and applied; the kernel is checked to hold each edit (untimed).
//!
//! Reports, per size, p50/p99 of the recompile, the diff, the apply and the
//! total (recompile + diff + apply through netlink: goals at 10,000 policies,
//! p99 under 20 ms for a policy edit and under 10 ms for a relabel), and the kernel's validation floor: the time to commit a
//! batch adding one unreferenced chain whose one rule has a verdict (the kernel
//! then re-validates every path of the table) against the same chain with a
//! counter-only rule (no validation).
//!
//! `cargo bench -p policy --bench change` (root, `nft`, `ip`)

mod common;
#[path = "../tests/common/lab.rs"]
mod lab;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::Port;
use common::{cluster, model, ms, percentile, resources};
use policy::ir::{Chain, Rule, Verdict};
use policy::{Changes, Compiler, Dataplane, Model, Netlink, Nft, Ruleset, converge, diff};
use testkit::Netns;

const ENDPOINTS: usize = 1_000;
/// Table sizes, in policies (`CHANGE_SIZES=1000,3000` for fewer).
const SIZES: [usize; 4] = [1_000, 3_000, 10_000, 30_000];
/// The size the goals are for, which also runs through `nft -f -`.
const GOAL_SIZE: usize = 10_000;
const CHANGES: usize = 100;
const PROBES: usize = 10;
/// p99 goals at [`GOAL_SIZE`]: a policy edit, an endpoint relabel.
const GOAL: Duration = Duration::from_millis(20);
const RELABEL_GOAL: Duration = Duration::from_millis(10);

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

    /// Recompile + diff + apply through netlink.
    fn total(&self) -> Vec<Duration> {
        self.sum(&[&self.compile, &self.diff, &self.netlink])
    }

    fn rows(&self, what: &str) {
        row(&format!("{what}: incremental recompile"), &self.compile);
        row(&format!("{what}: diff"), &self.diff);
        row(&format!("{what}: apply, netlink"), &self.netlink);
        row(
            &format!("{what}: **recompile + diff + apply, netlink**"),
            &self.total(),
        );
        if !self.nft.is_empty() {
            row(&format!("{what}: apply, `nft -f -`"), &self.nft);
            row(
                &format!("{what}: recompile + diff + apply, `nft -f -`"),
                &self.sum(&[&self.compile, &self.diff, &self.nft]),
            );
        }
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

/// The namespaces and drivers of one size: netlink always, `nft -f` optionally.
struct Kernels {
    netlink_ns: Netns,
    netlink: Netlink,
    nft: Option<(Netns, Nft)>,
}

impl Kernels {
    fn namespaces(&self) -> impl Iterator<Item = &Netns> {
        std::iter::once(&self.netlink_ns).chain(self.nft.as_ref().map(|(ns, _)| ns))
    }
}

/// Everything the bench keeps while it edits one model.
struct Run {
    kernels: Kernels,
    model: Model,
    compiler: Compiler,
    current: Ruleset,
}

impl Run {
    /// Edits with `edit`, then recompiles, diffs against the current ruleset
    /// and applies through each driver; returns the changes and records the times.
    fn change(&mut self, samples: &mut Samples, edit: impl FnOnce(&mut Model)) -> Changes {
        edit(&mut self.model);
        let t = Instant::now();
        // As felix does: the compiler lends its ruleset, the caller keeps
        // its own copy up to date with the changes (as a driver does).
        let desired = self.compiler.compile_ref(&self.model);
        samples.compile.push(t.elapsed());
        let t = Instant::now();
        let changes = diff(&self.current, desired);
        changes.apply_to(&mut self.current);
        samples.diff.push(t.elapsed());
        let t = Instant::now();
        self.kernels.netlink.apply(&changes).unwrap();
        samples.netlink.push(t.elapsed());
        if let Some((_, nft)) = &self.kernels.nft {
            let t = Instant::now();
            nft.apply(&changes).unwrap();
            samples.nft.push(t.elapsed());
        }
        changes
    }
}

/// What one size measured.
struct Figures {
    policies: usize,
    chains: usize,
    rules: usize,
    edits: Samples,
    relabels: Samples,
    /// Commit of one new chain: with a verdict rule, with a counter-only rule.
    probe_verdict: Vec<Duration>,
    probe_counter: Vec<Duration>,
}

/// Adds one unreferenced chain with one rule (a `return`, or a bare counter)
/// and removes it again; returns the time of the add.
fn probe(netlink: &Netlink, verdict: bool) -> Duration {
    let rule = Rule {
        verdict: verdict.then_some(Verdict::Return),
        ..Rule::default()
    };
    let chain = Chain {
        base: None,
        rules: vec![rule],
    };
    let add = Changes {
        add_chains: BTreeMap::from([("bench-probe".to_string(), Arc::new(chain))]),
        ..Changes::default()
    };
    let t = Instant::now();
    netlink.apply(&add).unwrap();
    let took = t.elapsed();
    let remove = Changes {
        remove_chains: ["bench-probe".to_string()].into(),
        ..Changes::default()
    };
    netlink.apply(&remove).unwrap();
    took
}

fn measure(policies: usize, with_nft: bool) -> Figures {
    let res = resources(&cluster(ENDPOINTS, policies, &[]));
    let model = model(&res);
    let mut compiler = Compiler::new();
    let t = Instant::now();
    let current = compiler.compile(&model);
    let first_compile = t.elapsed();
    let netlink_ns = Netns::new("polbnl").unwrap();
    let kernels = Kernels {
        netlink: Netlink::in_netns(netlink_ns.path()).unwrap(),
        netlink_ns,
        nft: with_nft.then(|| {
            let ns = Netns::new("polbnf").unwrap();
            let nft = lab::nft_in(&ns);
            (ns, nft)
        }),
    };
    let t = Instant::now();
    converge(&kernels.netlink, &current).unwrap();
    let initial_netlink = t.elapsed();
    let initial_nft = kernels.nft.as_ref().map(|(_, nft)| {
        let t = Instant::now();
        converge(nft, &current).unwrap();
        t.elapsed()
    });
    let chains = current.chains.len();
    let rules: usize = current.chains.values().map(|c| c.rules.len()).sum();
    println!(
        "\n{policies} policies: first compile {}; initial load ({chains} chains, {rules} rules, \
         {} sets): netlink {}{}.",
        ms(first_compile),
        current.sets.len(),
        ms(initial_netlink),
        initial_nft.map_or_else(String::new, |d| format!(", `nft -f` {}", ms(d))),
    );
    let mut run = Run {
        kernels,
        model,
        compiler,
        current,
    };

    let mut edits = Samples::default();
    for i in 0..CHANGES {
        // A NetworkPolicy (not a multiple of 10) spread over the range.
        let k = ((i * 487 + 1) % policies) | 1;
        let port = 20_000 + i as u16;
        let changes = run.change(&mut edits, |m| {
            let p = m
                .tiers
                .iter_mut()
                .flat_map(|t| t.policies.iter_mut())
                .find(|p| p.name == format!("p{k}"))
                .map(Arc::make_mut)
                .unwrap_or_else(|| panic!("policy p{k}"));
            p.ingress[0].destination.ports = vec![Port::Number(port)];
        });
        assert_eq!(changes.replace_chains.len(), 1, "one policy chain replaced");
        assert!(changes.add_chains.is_empty() && changes.remove_chains.is_empty());
        let chain = changes.replace_chains.keys().next().unwrap();
        for ns in run.kernels.namespaces() {
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
        let role = |labels: &BTreeMap<String, String>| -> usize {
            labels["role"].trim_start_matches("r-").parse().unwrap()
        };
        let candidates: Vec<usize> = (0..run.model.endpoints.len())
            .filter(|&j| role(&run.model.endpoints[j].labels) % 10 != 0)
            .collect();
        let e = candidates[i * 47 % candidates.len()];
        let changes = run.change(&mut relabels, |m| {
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
    let mut kernels = vec![run.kernels.netlink.read_kernel().unwrap()];
    if let Some((_, nft)) = &run.kernels.nft {
        kernels.push(nft.read_kernel().unwrap());
    }
    for kernel in kernels {
        let left = diff(&kernel, &run.current);
        assert!(
            left.replace_chains.len() == run.current.chains.len()
                && left.set_elements.is_empty()
                && left.map_elements.is_empty()
                && left.add_sets.is_empty()
                && left.remove_sets.is_empty(),
            "the kernel's sets and maps are what was compiled"
        );
    }
    assert_eq!(
        run.current,
        policy::compile(&run.model),
        "incremental = full"
    );

    let (mut probe_verdict, mut probe_counter) = (Vec::new(), Vec::new());
    for _ in 0..PROBES {
        probe_verdict.push(probe(&run.kernels.netlink, true));
        probe_counter.push(probe(&run.kernels.netlink, false));
    }
    Figures {
        policies,
        chains,
        rules,
        edits,
        relabels,
        probe_verdict,
        probe_counter,
    }
}

fn main() {
    if !common::ready(&["nft", "ip"]) {
        println!("change bench skipped: needs root, nft and ip");
        return;
    }
    let chosen: Vec<usize> = std::env::var("CHANGE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec());
    let sizes: Vec<Figures> = chosen.iter().map(|&p| measure(p, p == GOAL_SIZE)).collect();
    for f in &sizes {
        println!(
            "\n### One change at {} policies, {ENDPOINTS} endpoints ({} chains, {} rules)\n",
            f.policies, f.chains, f.rules
        );
        println!("| {CHANGES} changes each | p50 | p99 | max |");
        println!("|---|---|---|---|");
        f.edits.rows("policy edit");
        f.relabels.rows("endpoint relabel");
        row(
            "kernel floor: commit one new chain, `return` rule (validates the table)",
            &f.probe_verdict,
        );
        row(
            "kernel floor: commit one new chain, counter-only rule",
            &f.probe_counter,
        );
    }
    println!(
        "\n### Sweep: policy edit until the kernel has it (recompile + diff + apply, netlink)\n"
    );
    println!(
        "| policies | chains | rules | edit p50 | edit p99 | relabel p99 | validation p50 (`return` − counter-only) | edit under {} ms at p99 |",
        GOAL.as_millis()
    );
    println!("|---|---|---|---|---|---|---|---|");
    for f in &sizes {
        let total = f.edits.total();
        let p99 = percentile(&total, 99.0);
        let floor =
            percentile(&f.probe_verdict, 50.0).saturating_sub(percentile(&f.probe_counter, 50.0));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.policies,
            f.chains,
            f.rules,
            ms(percentile(&total, 50.0)),
            ms(p99),
            ms(percentile(&f.relabels.total(), 99.0)),
            ms(floor),
            if p99 < GOAL { "yes" } else { "no" }
        );
    }
    let Some(at) = sizes.iter().find(|f| f.policies == GOAL_SIZE) else {
        return;
    };
    let edit = percentile(&at.edits.total(), 99.0);
    let relabel = percentile(&at.relabels.total(), 99.0);
    let verdict = |p99: Duration, goal: Duration| if p99 < goal { "met" } else { "NOT met" };
    println!(
        "\nGoals at {GOAL_SIZE} policies (recompile + diff + apply through netlink): \
         policy edit p99 < {} ms: {} ({}); relabel p99 < {} ms: {} ({}).",
        GOAL.as_millis(),
        verdict(edit, GOAL),
        ms(edit),
        RELABEL_GOAL.as_millis(),
        verdict(relabel, RELABEL_GOAL),
        ms(relabel),
    );
}
