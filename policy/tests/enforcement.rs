//! Enforcement tests (root, `nft`, `ip`, `python3`, `ping`): four workloads
//! behind `cali*` veths of one routing host namespace, the compiled ruleset
//! converged there through [`policy::Netlink`], and a reachability matrix (TCP
//! connect, UDP echo, ICMP echo; v4 and v6; every ordered pair) measured with
//! real traffic and compared with the matrix Calico's semantics give (the
//! scenarios in `common::scenarios`), and with what `policy::trace` says of
//! every cell.
//!
//! One lab serves every scenario: each scenario is converged over the last,
//! as Felix would, so the suite costs about one probe timeout per scenario.

mod common;

use common::lab::{Lab, Probe, Service};
use common::scenarios::{
    A, B, C, D, Expect, NAMES, SERVICES, Scenario, TCP, UDP, compile, endpoints, model, on_b,
    scenario_model, scenarios, trace,
};
use policy::ir::{Match, Rule, Side, Verdict};
use policy::{Dataplane, Model, ModelError, converge};

/// Measures the matrix of `lab` and returns a report of the mismatches.
fn check(lab: &Lab, name: &str, expect: Expect) -> Option<String> {
    let probes = lab.matrix(&SERVICES);
    let want: Vec<bool> = probes.iter().map(expect).collect();
    let got = lab.probe(&probes);
    (got != want).then(|| format!("scenario {name:?}:\n{}", lab.format(&probes, &got, &want)))
}

/// Measures the matrix of `lab` for a scenario; a report of the cells that
/// differ from its expected matrix, or where `policy::trace` of `model`
/// disagrees with the traffic.
fn check_traced(lab: &Lab, s: &Scenario, model: &Model) -> Option<String> {
    let probes = lab.matrix(&SERVICES);
    let want: Vec<bool> = probes.iter().map(s.expect).collect();
    let got = lab.probe(&probes);
    let traced: Vec<bool> = probes.iter().map(|p| trace(model, p).allowed()).collect();
    let mut report = String::new();
    if got != want {
        report += &format!(
            "scenario {:?}:\n{}",
            s.name,
            lab.format(&probes, &got, &want)
        );
    }
    if traced != got {
        report += &format!(
            "scenario {:?}, traffic/trace:\n{}",
            s.name,
            lab.format(&probes, &traced, &got)
        );
    }
    (!report.is_empty()).then_some(report)
}

fn ready() -> bool {
    common::ready() && testkit::require_programs(&["ping"])
}

fn lab() -> Lab {
    let mut lab = Lab::new(&NAMES);
    lab.serve(&TCP, &[UDP]);
    lab
}

#[test]
fn the_reachability_matrix_matches_calico_semantics_in_every_scenario() {
    if !ready() {
        return;
    }
    let lab = lab();
    let dp = lab.driver();
    let scenarios = scenarios();
    assert!(scenarios.len() >= 15);
    let mut failures = Vec::new();
    for s in &scenarios {
        let model = scenario_model(s.policies, "backend");
        converge(&dp, &policy::compile(&model)).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        failures.extend(check_traced(&lab, s, &model));
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios differ (cells: expected/actual, ! marks a mismatch):\n{}",
        failures.len(),
        scenarios.len(),
        failures.join("\n")
    );
}

const FROM_FRONTEND: &str = on_b!(
    "from-frontend",
    "    - action: Allow\n      source: {selector: role == 'frontend'}\n"
);

#[test]
fn relabeling_an_endpoint_flips_reachability_through_set_elements_alone() {
    if !ready() {
        return;
    }
    let lab = lab();
    let dp = lab.driver();
    converge(&dp, &compile(FROM_FRONTEND, "backend")).unwrap();
    let before = |p: &Probe| p.to != B || p.from == A;
    if let Some(report) = check(&lab, "c is a backend", before) {
        panic!("{report}");
    }

    let changes = converge(&dp, &compile(FROM_FRONTEND, "frontend")).unwrap();
    assert!(changes.elements_only(), "{changes:#?}");
    assert!(!changes.set_elements.is_empty());
    let after = |p: &Probe| p.to != B || p.from == A || p.from == C;
    if let Some(report) = check(&lab, "c relabeled frontend", after) {
        panic!("{report}");
    }

    let changes = converge(&dp, &compile(FROM_FRONTEND, "backend")).unwrap();
    assert!(changes.elements_only(), "{changes:#?}");
    if let Some(report) = check(&lab, "c relabeled backend again", before) {
        panic!("{report}");
    }
}

#[test]
fn a_policy_in_a_missing_tier_is_a_model_error_naming_both() {
    let yaml = format!(
        "{}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: security.gate}}
spec:
  tier: security
  selector: all()
  ingress: [{{action: Deny}}]
",
        endpoints("backend")
    );
    let err = model(&yaml).unwrap_err();
    assert_eq!(
        err,
        ModelError::MissingTier {
            policy: "security.gate".into(),
            tier: "security".into()
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("security.gate") && text.contains("\"security\""),
        "{text}"
    );
}

#[test]
fn a_failed_transaction_leaves_the_previous_ruleset_enforcing() {
    if !ready() {
        return;
    }
    let lab = lab();
    let dp = lab.driver();
    let first = compile(FROM_FRONTEND, "backend");
    converge(&dp, &first).unwrap();
    let expect = |p: &Probe| p.to != B || p.from == A;
    if let Some(report) = check(&lab, "before the failed update", expect) {
        panic!("{report}");
    }

    // A real change (c joins the frontend set, a second policy lets UDP
    // into b) plus one rule using a set that does not exist: the kernel rejects the
    // whole batch.
    let open = compile(
        &format!(
            "{FROM_FRONTEND}{}",
            on_b!("udp-too", "    - action: Allow\n      protocol: UDP\n")
        ),
        "frontend",
    );
    let mut bad = policy::diff(&first, &open);
    assert!(!bad.set_elements.is_empty() && !bad.add_chains.is_empty());
    let chain = std::sync::Arc::make_mut(bad.add_chains.values_mut().next().unwrap());
    chain.rules.insert(
        0,
        Rule::new(
            vec![Match::Addr {
                family: policy::ir::Family::V4,
                side: Side::Source,
                set: "no-such-set".into(),
                negate: false,
            }],
            Verdict::Accept,
        ),
    );
    let err = dp.apply(&bad).unwrap_err();
    assert!(err.to_string().contains("no-such-set"), "{err}");
    if let Some(report) = check(&lab, "after the failed update", expect) {
        panic!("{report}");
    }
    assert!(policy::diff(&dp.read().unwrap(), &first).is_empty());

    // The same update without the bad rule goes through.
    converge(&dp, &open).unwrap();
    let opened = |p: &Probe| p.to != B || p.from != D || p.service == Service::Udp(UDP);
    if let Some(report) = check(&lab, "after the good update", opened) {
        panic!("{report}");
    }
}
