//! Staged policies: never in the ruleset, and compiled as if enforced only
//! through `Model::with_staged_enforced`, the would-be ruleset a pending
//! verdict is read from.

mod common;

use std::net::IpAddr;

use api::{Kind, StagedAction};
use common::{cases, load, model_yaml, model_yaml_error};
use policy::ir::Hook;
use policy::model::PolicyScope;
use policy::simulate::{Outcome, Packet, simulate};
use policy::{Config, Model, ModelError, Ruleset};

/// The shipped example: staged policies of every kind and both actions.
fn staged() -> Vec<api::Resource> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/staged-policy.yaml"
    );
    common::resources(std::path::Path::new(path))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A `kind` (NetworkPolicy or StagedNetworkPolicy) `shop/allow-b` letting
/// clients reach every endpoint on TCP `port`, and letting all out.
fn allow_b(kind: &str, port: u16) -> String {
    format!(
        "
---
apiVersion: projectcalico.org/v3
kind: {kind}
metadata: {{name: allow-b, namespace: shop}}
spec:
  selector: all()
  ingress: [{{action: Allow, protocol: TCP, source: {{selector: role == 'client'}}, destination: {{ports: [{port}]}}}}]
  egress: [{{action: Allow}}]
"
    )
}

/// Workloads a (10.65.0.1, role client) and b (10.65.0.2) in namespace
/// shop, with the policy `allow-b` letting clients reach b on TCP 80, then
/// `extra`.
fn shop(extra: &str) -> Model {
    let yaml = format!(
        "
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: a, namespace: shop, labels: {{role: client}}}}
spec: {{node: node1, interfaceName: calia, ipNetworks: [10.65.0.1/32]}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: b, namespace: shop, labels: {{app: b}}}}
spec: {{node: node1, interfaceName: calib, ipNetworks: [10.65.0.2/32]}}
{}{extra}",
        allow_b("NetworkPolicy", 80)
    );
    model_yaml(&yaml, Config::default())
}

/// What the ruleset does to a new TCP connection from a to b on `port`.
fn a_to_b(rs: &Ruleset, port: u16) -> Outcome {
    let packet = Packet::new(Hook::Forward, ip("10.65.0.1"), ip("10.65.0.2"), 6, port)
        .from_iface("calia")
        .to_iface("calib");
    simulate(rs, &packet)
        .expect("ruleset is consistent")
        .outcome
}

const STAGED_DENY_ALL: &str = "
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: deny-all}
spec: {order: 1, selector: all(), ingress: [{action: Deny}], egress: [{action: Deny}]}
";

#[test]
fn staged_policies_leave_every_golden_ruleset_byte_for_byte_unchanged() {
    for case in cases() {
        let (resources, config) = load(&case);
        let without = Model::from_resources(&resources, config.clone()).unwrap();
        let with_staged = [resources, staged()].concat();
        let with = Model::from_resources(&with_staged, config).unwrap();
        assert_eq!(with.staged.len(), 4, "{}", case.display());
        assert_eq!(with.tiers, without.tiers, "{}", case.display());
        let text = policy::render(&policy::compile(&with));
        assert_eq!(
            text,
            policy::render(&policy::compile(&without)),
            "{}",
            case.display()
        );
        let golden = std::fs::read_to_string(case.join("expected.nft")).unwrap();
        assert_eq!(text, golden, "{}", case.display());
    }
}

#[test]
fn a_staged_deny_all_denies_only_in_the_would_be_ruleset() {
    let model = shop(STAGED_DENY_ALL);
    let enforced = policy::compile(&model);
    assert_eq!(
        enforced,
        policy::compile(&shop("")),
        "the staged policy is not enforced"
    );
    assert_eq!(a_to_b(&enforced, 80), Outcome::Accept);

    let would_be = policy::compile(&model.with_staged_enforced());
    assert_eq!(a_to_b(&would_be, 80), Outcome::Drop);
    assert_eq!(
        a_to_b(&policy::compile(&model), 80),
        Outcome::Accept,
        "enforcing it in a copy leaves the model as it was"
    );
}

#[test]
fn a_staged_set_replaces_the_enforced_policy_of_its_name() {
    let model = shop(&allow_b("StagedNetworkPolicy", 8080));
    let would_be = model.with_staged_enforced();
    let names: Vec<String> = would_be.tiers[0]
        .policies
        .iter()
        .map(|p| p.display_name())
        .collect();
    assert_eq!(names, ["shop/allow-b"], "replaced, not added");
    let rs = policy::compile(&would_be);
    assert_eq!(a_to_b(&rs, 80), Outcome::Drop);
    assert_eq!(a_to_b(&rs, 8080), Outcome::Accept);
    let from_staged = model.staged_for(&would_be.tiers[0].policies[0]).unwrap();
    assert_eq!(
        (from_staged.kind, from_staged.action),
        (Kind::StagedNetworkPolicy, StagedAction::Set)
    );
    assert!(would_be.staged.is_empty());
}

#[test]
fn a_staged_delete_removes_the_enforced_policy_of_its_name() {
    let model = shop(
        "
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: allow-b, namespace: shop}
spec: {stagedAction: Delete}
---
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: allow-b, namespace: elsewhere}
spec: {stagedAction: Delete}
",
    );
    assert_eq!(a_to_b(&policy::compile(&model), 80), Outcome::Accept);
    let would_be = model.with_staged_enforced();
    assert!(
        would_be.tiers.iter().all(|t| t.policies.is_empty()),
        "{:?}",
        would_be.tiers
    );
    assert_eq!(
        a_to_b(&policy::compile(&would_be), 80),
        Outcome::Drop,
        "no policy and no profile: dropped"
    );
}

#[test]
fn a_staged_policy_is_converted_exactly_as_its_enforced_kind() {
    let enforced = shop("");
    let staged = shop(&format!(
        "{}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {{name: api, namespace: shop}}
spec: {{podSelector: {{matchLabels: {{app: b}}}}}}
",
        allow_b("StagedNetworkPolicy", 80)
    ));
    assert_eq!(staged.staged.len(), 2);
    let snp = &staged.staged[0];
    assert_eq!(snp.kind, Kind::StagedNetworkPolicy);
    assert_eq!(
        *snp.policy, *enforced.tiers[0].policies[0],
        "scoped and normalised as the NetworkPolicy"
    );
    let sknp = &staged.staged[1];
    assert_eq!(
        (
            sknp.name.as_str(),
            sknp.policy.name.as_str(),
            sknp.tier.as_str()
        ),
        ("api", "knp.default.api", "default")
    );
    assert_eq!(sknp.policy.scope, PolicyScope::Namespace("shop".into()));
    assert_eq!(sknp.policy.order, Some(1000.0), "as a Kubernetes policy");
}

#[test]
fn a_staged_policy_in_a_missing_tier_is_an_error_naming_it() {
    let err = model_yaml_error(
        "
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: gone.p}
spec: {tier: gone, selector: all()}
",
    );
    assert!(
        matches!(
            &err,
            ModelError::Staged { kind: Kind::StagedGlobalNetworkPolicy, name, error }
                if name == "gone.p" && matches!(**error, ModelError::MissingTier { .. })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "StagedGlobalNetworkPolicy gone.p: policy gone.p: tier \"gone\" does not exist"
    );
}
