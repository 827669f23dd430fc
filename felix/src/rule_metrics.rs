//! Per-policy, per-rule packet and byte counters in `/metrics`: every
//! `period` the kernel's table is listed (`nft -j list table inet calico`),
//! its policy and profile rules' counters summed per model rule
//! (`policy::counters`), named by the current model's chains, and exported
//! as `felix_policy_rule_{packets,bytes}_total{tier,kind,namespace,policy,
//! rule,direction}`. A cardinality guard keeps the [`MAX_SERIES`] busiest
//! rules and reports how many it left out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use policy::counters::{self, Count};
use policy::flowlog::{Index, Source};
use task::Task;

use crate::flowlog::run::SharedLookup;
use crate::metrics::Metrics;

/// The most rules exported (each is two series).
pub const MAX_SERIES: usize = 1_000;

/// One exported rule's labels: tier, kind, namespace, policy, rule, direction.
type RuleLabels = [String; 6];

/// The labels of each counted rule this model names, the busiest
/// [`MAX_SERIES`] of them, and how many were left out.
pub fn series(
    counts: &BTreeMap<(String, usize), Count>,
    index: &Index,
    max: usize,
) -> (Vec<(RuleLabels, Count)>, usize) {
    let mut named: Vec<(RuleLabels, Count)> = counts
        .iter()
        .filter_map(|((chain, rule), count)| {
            let o = index.origin(chain)?;
            let kind = match o.source {
                Source::NetworkPolicy => "NetworkPolicy",
                Source::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
                Source::GlobalNetworkPolicy => "GlobalNetworkPolicy",
                Source::Profile => "Profile",
            };
            let direction = if o.ingress { "ingress" } else { "egress" };
            let labels = [
                o.tier.clone(),
                kind.to_string(),
                o.namespace.clone(),
                o.name.clone(),
                rule.to_string(),
                direction.to_string(),
            ];
            Some((labels, *count))
        })
        .collect();
    named.sort_by(|a, b| b.1.packets.cmp(&a.1.packets).then_with(|| a.0.cmp(&b.0)));
    let left_out = named.len().saturating_sub(max);
    named.truncate(max);
    (named, left_out)
}

/// Lists the table and updates the metrics, every `period`.
pub fn spawn(lookup: SharedLookup, metrics: Arc<Metrics>, period: Duration) -> Task<()> {
    Task::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let listed = tokio::process::Command::new("nft")
                .args(["-j", "list", "table", "inet", policy::ir::TABLE])
                .output()
                .await;
            let json = match listed {
                Ok(out) if out.status.success() => {
                    String::from_utf8_lossy(&out.stdout).into_owned()
                }
                // No table yet, or no nft: nothing to count.
                _ => continue,
            };
            let counts = match counters::rule_counts(&json) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "rule counters not read");
                    continue;
                }
            };
            let (rules, left_out) = {
                let lookup = lookup.lock().unwrap_or_else(|e| e.into_inner());
                series(&counts, lookup.index(), MAX_SERIES)
            };
            metrics
                .rule_packets
                .replace_all(rules.iter().map(|(l, c)| (l.to_vec(), c.packets)));
            metrics
                .rule_bytes
                .replace_all(rules.iter().map(|(l, c)| (l.to_vec(), c.bytes)));
            metrics.rule_series_left_out.set(&[], left_out as f64);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_are_named_by_the_model_and_only_the_busiest_are_kept() {
        let yaml = "
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  selector: app == 'db'
  ingress: [{action: Allow}, {action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec: {egress: [{action: Allow}]}
";
        let resources = api::parse_documents("test", yaml).unwrap();
        let model = policy::Model::from_resources(&resources, policy::Config::default()).unwrap();
        let index = Index::new(&model);
        let count = |packets| Count {
            packets,
            bytes: packets * 60,
        };
        let counts = BTreeMap::from([
            (("np-in-shop/db".to_string(), 0), count(5)),
            (("np-in-shop/db".to_string(), 1), count(9)),
            (("pro-out-kns.shop".to_string(), 0), count(1)),
            (("np-in-gone/old".to_string(), 0), count(100)),
        ]);
        let (rules, left_out) = series(&counts, &index, 2);
        assert_eq!(left_out, 1, "three named rules, two kept");
        let labels: Vec<String> = rules.iter().map(|(l, _)| l.join(",")).collect();
        assert_eq!(
            labels,
            [
                "default,NetworkPolicy,shop,db,1,ingress",
                "default,NetworkPolicy,shop,db,0,ingress"
            ]
        );
        let (all, none) = series(&counts, &index, MAX_SERIES);
        assert_eq!((all.len(), none), (3, 0));
        assert!(
            all.iter()
                .any(|(l, _)| l[1] == "Profile" && l[5] == "egress")
        );
    }
}
