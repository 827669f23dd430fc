//! Compile 10,000 policies over 1,000 endpoints: time of each stage (YAML
//! parse, model, compile, render, chain stamps) and peak memory. Goal: compile under 1 s.
//! Then the incremental [`policy::Compiler`]: a recompile with nothing changed,
//! after one policy edit and after one endpoint relabel.
//!
//! `cargo bench -p policy --bench compile`

mod common;

use std::time::{Duration, Instant};

use common::{cluster, memory_mib, model, resources};

const ENDPOINTS: usize = 1_000;
const POLICIES: usize = 10_000;
const RUNS: usize = 5;

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn main() {
    let (hwm_start, _) = memory_mib();
    let t = Instant::now();
    let yaml = cluster(ENDPOINTS, POLICIES, &[]);
    let generate = t.elapsed();
    let t = Instant::now();
    let res = resources(&yaml);
    let parse = t.elapsed();
    let (hwm_parsed, rss_parsed) = memory_mib();

    let (mut models, mut compiles, mut renders) = (Vec::new(), Vec::new(), Vec::new());
    let mut stamps = Vec::new();
    let mut stats = (0, 0, 0, 0, 0);
    for _ in 0..RUNS {
        let t = Instant::now();
        let m = model(&res);
        models.push(t.elapsed());
        let t = Instant::now();
        let ruleset = policy::compile(&m);
        compiles.push(t.elapsed());
        let t = Instant::now();
        let text = policy::render(&ruleset);
        renders.push(t.elapsed());
        // What a restarted driver computes to adopt every chain.
        let t = Instant::now();
        let comments: usize = ruleset
            .chains
            .values()
            .map(|c| policy::stamp::written_comments(c).len())
            .sum();
        stamps.push(t.elapsed());
        assert_eq!(
            comments,
            ruleset
                .chains
                .values()
                .map(|c| c.rules.len())
                .sum::<usize>()
        );
        stats = (
            ruleset.sets.len(),
            ruleset
                .sets
                .values()
                .map(|s| s.elements.len())
                .sum::<usize>(),
            ruleset.chains.len(),
            ruleset
                .chains
                .values()
                .map(|c| c.rules.len())
                .sum::<usize>(),
            text.len(),
        );
    }
    let (hwm_end, rss_end) = memory_mib();
    let (model_t, compile_t) = (median(models.clone()), median(compiles.clone()));
    let incremental = incremental(&res);

    println!("\n### Compile: {POLICIES} policies over {ENDPOINTS} endpoints\n");
    println!(
        "Ruleset: {} sets ({} elements), {} chains, {} rules; nft text {:.1} MiB.\n",
        stats.0,
        stats.1,
        stats.2,
        stats.3,
        stats.4 as f64 / 1048576.0
    );
    println!("| stage | time (median of {RUNS}) | min |");
    println!("|---|---|---|");
    println!(
        "| generate YAML ({:.1} MiB) | {} | |",
        yaml.len() as f64 / 1048576.0,
        common::ms(generate)
    );
    println!(
        "| parse + validate ({} resources) | {} | |",
        res.len(),
        common::ms(parse)
    );
    for (stage, d) in [
        ("Model::from_resources", models),
        ("compile", compiles),
        ("render (nft text)", renders),
        ("chain stamps (a restart's adoption)", stamps),
    ] {
        let min = *d.iter().min().unwrap();
        println!(
            "| {stage} | {} | {} |",
            common::ms(median(d)),
            common::ms(min)
        );
    }
    println!(
        "| **model + compile** | **{}** | goal < 1 s: {} |",
        common::ms(model_t + compile_t),
        if model_t + compile_t < Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("\n| incremental recompile ({EDITS} each) | median | max |");
    println!("|---|---|---|");
    for (what, d) in incremental {
        let max = *d.iter().max().unwrap();
        println!(
            "| {what} | {} | {} |",
            common::ms(median(d)),
            common::ms(max)
        );
    }
    println!("\n| memory | MiB |");
    println!("|---|---|");
    println!("| peak RSS (VmHWM) at start | {hwm_start:.1} |");
    println!(
        "| peak RSS after parse (YAML text + resources) | {hwm_parsed:.1} (RSS {rss_parsed:.1}) |"
    );
    println!("| peak RSS after model + compile + render | {hwm_end:.1} (RSS {rss_end:.1}) |");
    println!(
        "| peak added by model + compile + render | {:.1} |",
        hwm_end - hwm_parsed
    );
}

const EDITS: usize = 20;

/// Times of the incremental compiler: unchanged model, one policy edit, one
/// endpoint relabel.
fn incremental(res: &[api::Resource]) -> [(&'static str, Vec<Duration>); 3] {
    let mut m = model(res);
    let mut compiler = policy::Compiler::new();
    let mut ruleset = compiler.compile(&m);
    let mut timed = |m: &policy::Model, out: &mut Vec<Duration>| {
        let t = Instant::now();
        let next = compiler.compile(m);
        out.push(t.elapsed());
        ruleset = next;
    };
    let (mut same, mut edits, mut relabels) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..EDITS {
        timed(&m, &mut same);
        let k = ((i * 487 + 1) % POLICIES) | 1;
        let policy = (m.tiers.iter_mut())
            .flat_map(|t| t.policies.iter_mut())
            .find(|p| p.name == format!("p{k}"))
            .map(std::sync::Arc::make_mut)
            .unwrap_or_else(|| panic!("policy p{k}"));
        policy.ingress[0].destination.ports = vec![api::Port::Number(20_000 + i as u16)];
        timed(&m, &mut edits);
        let e = i * 47 % m.endpoints.len();
        let role = format!("r-{}", (i * 7 + 1) % common::ROLES);
        m.endpoints[e].labels.insert("role".into(), role);
        timed(&m, &mut relabels);
    }
    assert_eq!(ruleset, policy::compile(&m), "incremental = full");
    [
        ("nothing changed", same),
        ("one policy edited", edits),
        ("one endpoint relabelled", relabels),
    ]
}
