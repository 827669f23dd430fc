//! The policy model for this host: `policy::Model::from_resources` over the
//! snapshot's resources, with this node and the merged FelixConfiguration.
//!
//! Bad content must not leave the host unprotected, nor leave it without any
//! policy at all. Before the model is built, local workload endpoints felix
//! will not program are removed and bad addresses dropped (see
//! [`workloads`](super::workloads)). If the model still fails, the resource
//! the error names is skipped and the model built again, until it builds:
//!
//! - a policy in a missing tier or with a bad selector, or a profile with a
//!   bad selector, is skipped: its tier cannot be ordered or its selector
//!   matched, and every other policy still applies (an endpoint it would have
//!   selected falls through to the policies after it, and to default deny);
//!   a staged policy so broken is skipped alone (never the enforced policy
//!   of its name);
//! - a second host endpoint for all interfaces of a node, or the second of
//!   two endpoints claiming one interface, is skipped: the first still
//!   protects the interface;
//! - a workload endpoint skipped this way loses its interface and routes too
//!   (the caller keeps only workloads the model has), so its veth, claimed
//!   by no endpoint, drops everything.
//!
//! Each skip removes at least one resource, so this ends. Should an error
//! name nothing found (which the model's errors do not do today), the
//! fallback is a model with no endpoints and no policies: every workload
//! interface then drops everything, which still protects.

use std::borrow::Cow;

use api::{Kind, Resource};
use policy::{Model, ModelError};

use super::problems::{ProblemKind, Problems, subject};
use super::workloads::Workloads;
use crate::state::Snapshot;

/// The model of `snapshot`'s resources for `config`, skipping what breaks it.
pub(super) fn build(
    snapshot: &Snapshot,
    workloads: &Workloads,
    config: policy::Config,
    problems: &mut Problems,
) -> Model {
    // Borrowed from the snapshot but for the workloads whose addresses were
    // cleaned: no copy of every resource at every calculation.
    let mut resources: Vec<Cow<'_, Resource>> = snapshot
        .resources
        .iter()
        .filter(|(key, _)| !workloads.skipped.contains(*key))
        .map(|(key, r)| match (r, workloads.cleaned.get(key)) {
            (Resource::WorkloadEndpoint(w), Some(addrs)) => {
                let mut w = w.clone();
                w.spec.ip_networks.clone_from(addrs);
                Cow::Owned(Resource::WorkloadEndpoint(w))
            }
            _ => Cow::Borrowed(r),
        })
        .collect();
    loop {
        let error = match Model::from_resources(&resources, config.clone()) {
            Ok(model) => return model,
            Err(e) => e,
        };
        let culprits: Vec<usize> = (0..resources.len())
            .filter(|i| is_culprit(&error, &resources[*i]))
            .collect();
        if culprits.is_empty() {
            problems.add(
                ProblemKind::Disabled,
                "policy",
                "",
                format!("{error}; programming no endpoints and no policies"),
            );
            return Model {
                config,
                ..Model::default()
            };
        }
        for i in culprits.into_iter().rev() {
            let r = resources.remove(i);
            problems.add(
                ProblemKind::Skipped,
                subject(r.kind(), r.metadata()),
                "",
                format!("{error}; skipped"),
            );
        }
    }
}

/// Whether `r` is the resource `error` names.
fn is_culprit(error: &ModelError, r: &Resource) -> bool {
    let name = r.metadata().display_name();
    match error {
        ModelError::MissingTier { policy, .. } => {
            matches!(r.kind(), Kind::GlobalNetworkPolicy | Kind::NetworkPolicy) && name == *policy
        }
        ModelError::Selector { resource, .. } => match r {
            Resource::Profile(_)
            | Resource::GlobalNetworkPolicy(_)
            | Resource::NetworkPolicy(_) => name == *resource,
            Resource::KubernetesNetworkPolicy(p) => {
                name == *resource || policy::k8s::convert(p).metadata.display_name() == *resource
            }
            _ => false,
        },
        ModelError::Staged {
            kind, name: staged, ..
        } => r.kind() == *kind && name == *staged,
        ModelError::DuplicateInterface { second, .. } => {
            matches!(r.kind(), Kind::WorkloadEndpoint | Kind::HostEndpoint) && name == *second
        }
        ModelError::WorkloadPrefix { endpoint, .. } => {
            r.kind() == Kind::WorkloadEndpoint && name == *endpoint
        }
        ModelError::WildcardHostEndpoint { endpoint, .. } => {
            r.kind() == Kind::HostEndpoint && name == *endpoint
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::fixtures::{snapshot_unvalidated, workload};
    use crate::calc::inputs::Inputs;

    fn build_for(snap: &Snapshot) -> (Model, Vec<String>) {
        let mut problems = Problems::default();
        let w = Workloads::read(&Inputs::read(snap), "host-a", "cali", &mut problems);
        let config = policy::Config {
            node: Some("host-a".into()),
            ..policy::Config::default()
        };
        let model = build(snap, &w, config, &mut problems);
        (model, problems.into_lines())
    }

    fn policy_names(model: &Model) -> Vec<String> {
        model
            .tiers
            .iter()
            .flat_map(|t| t.policies.iter().map(|p| p.display_name()))
            .collect()
    }

    fn gnp(name: &str, extra: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  selector: all()\n  ingress: [{{action: Deny}}]\n{extra}---\n"
        )
    }

    fn host_endpoint(name: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: {name}}}\n\
             spec: {{node: host-a, interfaceName: \"*\"}}\n---\n"
        )
    }

    #[test]
    fn resources_that_break_the_model_are_skipped_and_the_rest_still_applies() {
        // (case, extra documents, the skipped resource, the problem's text)
        let cases: [(&str, String, &str, &str); 4] = [
            (
                "policy in a missing tier",
                gnp("nowhere.lost", "  tier: nowhere\n"),
                "GlobalNetworkPolicy nowhere.lost",
                "tier \"nowhere\" does not exist",
            ),
            (
                "bad selector",
                gnp("broken", "").replace("all()", "\"a ==\""),
                "GlobalNetworkPolicy broken",
                "selector",
            ),
            (
                "staged policy of the same name with a bad selector",
                gnp("kept", "")
                    .replace("GlobalNetworkPolicy", "StagedGlobalNetworkPolicy")
                    .replace("all()", "\"a ==\""),
                "StagedGlobalNetworkPolicy kept",
                "selector",
            ),
            (
                "second wildcard host endpoint",
                [host_endpoint("all-1"), host_endpoint("all-2")].concat(),
                "HostEndpoint all-2",
                "already has an interfaceName \"*\" host endpoint",
            ),
        ];
        for (case, extra, skipped, text) in cases {
            let yaml = [
                gnp("kept", ""),
                extra,
                workload("w", "host-a", "cali1", &["10.0.0.1"]),
            ]
            .concat();
            let (model, problems) = build_for(&snapshot_unvalidated(&yaml));
            assert!(policy_names(&model).contains(&"kept".to_string()), "{case}");
            assert!(
                model.endpoints.iter().any(|e| e.name == "default/w"),
                "{case}"
            );
            assert_eq!(problems.len(), 1, "{case}: {problems:?}");
            assert!(
                problems[0].starts_with(skipped) && problems[0].contains(text),
                "{case}: {problems:?}"
            );
        }
    }

    #[test]
    fn skipped_workloads_are_not_in_the_model_and_bad_addresses_are_dropped() {
        let snap = snapshot_unvalidated(
            &[
                workload("bad", "host-a", "eth0", &["10.0.0.1"]),
                workload("good", "host-a", "cali1", &["10.0.0.2", "10.1.0.0/16"]),
            ]
            .concat(),
        );
        let (model, _) = build_for(&snap);
        let names: Vec<_> = model.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["default/good"]);
        assert_eq!(model.endpoints[0].addrs, ["10.0.0.2/32".parse().unwrap()]);
    }
}
