//! Selector evaluation cost: one realistic policy selector against 100k
//! endpoints' label sets (5 to 10 labels each, in `BTreeMap<String, String>`),
//! plus the same over 256 cache-resident sets, and the cost of parsing it. Per-evaluation time is the reported time per
//! iteration divided by 100k (criterion also prints it as a throughput).
//!
//! Run: `cargo bench -p api --bench selector -- --measurement-time 5`

use std::collections::BTreeMap;
use std::hint::black_box;

use api::selector::{LabelsWithParent, Selector};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SELECTOR: &str = r#"role == "db" && env in {"prod", "staging"} && !has(quarantine)"#;
const ENDPOINTS: usize = 100_000;
/// Label sets in the cache-resident variant (a few hundred KiB).
const HOT: usize = 256;

/// A small deterministic generator (xorshift64*), so every run sees the same labels.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }
}

/// Label sets shaped like a cluster's pods: role and env usually set, a few
/// Kubernetes-style keys, a rare quarantine label.
fn label_sets() -> Vec<BTreeMap<String, String>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let optional = [
        (
            "app.kubernetes.io/name",
            &["postgres", "nginx", "redis", "api"][..],
        ),
        ("app.kubernetes.io/version", &["1.0", "1.1", "2.0"][..]),
        (
            "projectcalico.org/namespace",
            &["default", "payments", "web"][..],
        ),
        ("team", &["storage", "edge", "core"][..]),
        ("tier", &["frontend", "backend"][..]),
        ("zone", &["a", "b", "c"][..]),
        ("pod-template-hash", &["5d8f9", "7c6b4", "9a1e2"][..]),
        ("version", &["v1", "v2"][..]),
    ];
    (0..ENDPOINTS)
        .map(|_| {
            let mut labels = BTreeMap::new();
            labels.insert(
                "role".into(),
                rng.pick(&["db", "web", "cache", "api"]).into(),
            );
            labels.insert(
                "env".into(),
                rng.pick(&["prod", "staging", "dev", "test"]).into(),
            );
            if rng.next().is_multiple_of(10) {
                labels.insert("quarantine".into(), "true".into());
            }
            let wanted = 5 + (rng.next() % 6) as usize; // 5..=10 labels in all
            for (key, values) in optional {
                if labels.len() >= wanted {
                    break;
                }
                if !rng.next().is_multiple_of(4) {
                    labels.insert(key.into(), rng.pick(values).into());
                }
            }
            while labels.len() < wanted {
                let n = labels.len();
                labels.insert(format!("extra-{n}"), "x".into());
            }
            labels
        })
        .collect()
}

fn evaluation(c: &mut Criterion) {
    let selector = Selector::parse(SELECTOR).expect("benchmark selector parses");
    let sets = label_sets();
    let matching = sets
        .iter()
        .filter(|labels| selector.matches(*labels))
        .count();
    eprintln!("{SELECTOR}: {matching} of {ENDPOINTS} label sets match");
    let parent: BTreeMap<String, String> =
        [("projectcalico.org/name".to_string(), "payments".to_string())].into();

    let mut group = c.benchmark_group("selector");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ENDPOINTS as u64));
    group.bench_function("matches_100k_label_sets", |b| {
        b.iter(|| {
            sets.iter()
                .filter(|labels| selector.matches(black_box(*labels)))
                .count()
        })
    });
    group.bench_function("matches_100k_label_sets_over_parent", |b| {
        b.iter(|| {
            sets.iter()
                .filter(|labels| {
                    selector.matches(&LabelsWithParent::new(black_box(*labels), &parent))
                })
                .count()
        })
    });
    group.finish();

    // The same evaluation over a slice that stays in cache: the cost of the
    // evaluation itself, without the DRAM misses of walking 100k maps.
    let hot = &sets[..HOT];
    let mut group = c.benchmark_group("selector");
    group.throughput(Throughput::Elements(HOT as u64));
    group.bench_function("matches_256_cached_label_sets", |b| {
        b.iter(|| {
            hot.iter()
                .filter(|labels| selector.matches(black_box(*labels)))
                .count()
        })
    });
    group.finish();

    c.bench_function("selector/parse", |b| {
        b.iter(|| Selector::parse(black_box(SELECTOR)))
    });
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
