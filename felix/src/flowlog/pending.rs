//! Pending verdicts: what a new connection would meet if the staged
//! policies were enforced (`Model::with_staged_enforced`), traced through
//! that would-be ruleset (`policy::trace`, compiled once per model), as the
//! `pending_policies` of its flow logs. A staged policy's hits carry its
//! staged kind.

use flows::log::{Action, PolicyHit, PolicyKind};
use nfevents::Tuple;
use policy::flowlog::Source;
use policy::trace::{Decision, Direction, End, Query, StepResult, Tracer};
use policy::{Model, StagedPolicy};

use super::correlate::PROFILE_TIER;

/// The would-be ruleset of one model with staged policies.
#[derive(Debug)]
pub struct Pending {
    tracer: Tracer,
    staged: Vec<StagedPolicy>,
}

fn protocol(number: u8) -> api::Protocol {
    match number {
        6 => api::Protocol::Tcp,
        17 => api::Protocol::Udp,
        1 => api::Protocol::Icmp,
        58 => api::Protocol::IcmpV6,
        132 => api::Protocol::Sctp,
        136 => api::Protocol::UdpLite,
        n => api::Protocol::Number(n),
    }
}

impl Pending {
    /// `None` when the model stages nothing: no pending verdicts.
    pub fn new(model: &Model) -> Option<Pending> {
        (!model.staged.is_empty()).then(|| Pending {
            tracer: Tracer::new(model.with_staged_enforced()),
            staged: model.staged.clone(),
        })
    }

    /// The pending hits of a connection's egress (its source's) and ingress
    /// (its destination's); empty where the trace has nothing to say.
    pub fn hits(&self, tuple: &Tuple) -> [Vec<PolicyHit>; 2] {
        let query = Query {
            src: End::Addr(tuple.src),
            dst: End::Addr(tuple.dst),
            protocol: protocol(tuple.proto),
            port: tuple.dport,
            family: None,
        };
        let Ok(trace) = self.tracer.trace(&query) else {
            return [Vec::new(), Vec::new()];
        };
        let of = |i: usize| {
            trace
                .directions
                .get(i)
                .map(|d| self.direction(d))
                .unwrap_or_default()
        };
        [of(0), of(1)]
    }

    fn direction(&self, d: &Direction) -> Vec<PolicyHit> {
        let mut hits = Vec::new();
        for step in &d.policies {
            let action = match step.result {
                StepResult::Allow => Action::Allow,
                StepResult::Deny => Action::Deny,
                StepResult::Pass => Action::Pass,
                StepResult::NoMatch | StepResult::Skipped => continue,
            };
            let Some(origin) = self.tracer.index().origin(step.chain()) else {
                continue;
            };
            let staged = self.staged.iter().find(|s| {
                s.policy.name == policy_name(origin)
                    && s.tier == origin.tier
                    && origin.source != Source::Profile
            });
            let kind = match (staged.map(|s| s.kind), origin.source) {
                (Some(api::Kind::StagedNetworkPolicy), _) => PolicyKind::StagedNetworkPolicy,
                (Some(api::Kind::StagedGlobalNetworkPolicy), _) => {
                    PolicyKind::StagedGlobalNetworkPolicy
                }
                (Some(api::Kind::StagedKubernetesNetworkPolicy), _) => {
                    PolicyKind::StagedKubernetesNetworkPolicy
                }
                (_, Source::NetworkPolicy) => PolicyKind::CalicoNetworkPolicy,
                (_, Source::KubernetesNetworkPolicy) => PolicyKind::NetworkPolicy,
                (_, Source::GlobalNetworkPolicy) => PolicyKind::GlobalNetworkPolicy,
                (_, Source::Profile) => PolicyKind::Profile,
            };
            let rule = step
                .rules
                .iter()
                .rev()
                .find(|r| r.matched)
                .map_or(-1, |r| r.index as i64);
            hits.push(PolicyHit {
                kind,
                namespace: origin.namespace.clone(),
                name: staged.map_or_else(|| origin.name.clone(), |s| s.name.clone()),
                tier: match origin.source {
                    Source::Profile => PROFILE_TIER.to_string(),
                    _ => origin.tier.clone(),
                },
                action,
                policy_index: origin.index as i64,
                rule_index: rule,
                trigger: None,
            });
        }
        // Denied, by no policy's rule: a tier's end, or no profile.
        if d.verdict == Some(Decision::Deny) && hits.last().is_none_or(|h| h.action != Action::Deny)
        {
            let tier = d.policies.last().and_then(|s| s.tier.clone());
            hits.push(PolicyHit {
                kind: PolicyKind::EndOfTier,
                namespace: String::new(),
                name: String::new(),
                tier: tier.unwrap_or_else(|| PROFILE_TIER.to_string()),
                action: Action::Deny,
                policy_index: 0,
                rule_index: -1,
                trigger: None,
            });
        }
        hits
    }
}

/// The model's name of an origin's policy (`knp.default.` again for a
/// Kubernetes policy).
fn policy_name(origin: &policy::flowlog::Origin) -> String {
    match origin.source {
        Source::KubernetesNetworkPolicy => format!("knp.default.{}", origin.name),
        _ => origin.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = "
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: caliweb, ipNetworks: [10.65.0.2/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {node: n1, interfaceName: calidb, ipNetworks: [10.65.0.3/32], profiles: [kns.shop]}
";

    fn model(yaml: &str) -> Model {
        let resources = api::parse_documents("test", yaml).unwrap();
        Model::from_resources(&resources, policy::Config::default()).unwrap()
    }

    fn tuple() -> Tuple {
        Tuple {
            proto: 6,
            src: "10.65.0.2".parse().unwrap(),
            dst: "10.65.0.3".parse().unwrap(),
            sport: 40000,
            dport: 5432,
        }
    }

    #[test]
    fn a_staged_deny_all_is_the_pending_verdict_of_a_connection_the_profiles_allow() {
        assert!(Pending::new(&model(SHOP)).is_none(), "nothing staged");
        let staged = format!(
            "{SHOP}---\napiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {{name: default-deny, namespace: shop}}\nspec:\n  selector: all()\n  types: [Ingress]\n"
        );
        let pending = Pending::new(&model(&staged)).expect("a staged policy");
        let [egress, ingress] = pending.hits(&tuple());
        assert_eq!(egress.len(), 1, "{egress:?}");
        assert_eq!(
            (egress[0].kind, egress[0].action),
            (PolicyKind::Profile, Action::Allow)
        );
        // The staged policy selects db and allows nothing: the tier's end
        // would deny, after it.
        let last = ingress.last().expect("an ingress verdict");
        assert_eq!(
            (last.kind, last.action, last.tier.as_str()),
            (PolicyKind::EndOfTier, Action::Deny, "default")
        );
    }

    #[test]
    fn a_staged_policy_that_decides_is_named_by_its_staged_kind() {
        let staged = format!(
            "{SHOP}---\napiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {{name: block-db}}\nspec:\n  selector: app == 'db'\n  ingress: [{{action: Deny, protocol: TCP, destination: {{ports: [5432]}}}}]\n"
        );
        let pending = Pending::new(&model(&staged)).unwrap();
        let [_, ingress] = pending.hits(&tuple());
        let hit = ingress
            .iter()
            .find(|h| h.action == Action::Deny)
            .expect("a deny");
        assert_eq!(
            (hit.kind, hit.name.as_str(), hit.rule_index),
            (PolicyKind::StagedGlobalNetworkPolicy, "block-db", 0)
        );
    }
}
