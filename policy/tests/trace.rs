//! `policy::trace`: its verdict for every cell of every reachability
//! scenario (the matrix the enforcement tests prove with real traffic), and
//! the explanations it gives: which rule decided, why earlier ones did not
//! match, tiers' ends, passes, ends outside the host.

mod common;

use common::lab::{Family, Probe, Service};
use common::scenarios::{B, C, cells, endpoints, model, scenario_model, scenarios, trace};
use policy::trace::{Decision, End, Query, Role, StepResult, TraceError, hypothetical};

#[test]
fn the_trace_verdict_matches_the_expected_matrix_in_every_cell_of_every_scenario() {
    let scenarios = scenarios();
    assert!(scenarios.len() >= 15);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for s in &scenarios {
        let model = scenario_model(s.policies, "backend");
        for p in cells() {
            let t = trace(&model, &p);
            checked += 1;
            if t.allowed() != (s.expect)(&p) {
                wrong.push(format!("{}: {p:?}: {}", s.name, t.reason));
            }
        }
    }
    assert_eq!(checked, scenarios.len() * 12 * 5 * 2);
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

fn scenario(name: &str) -> policy::Model {
    let s = scenarios().into_iter().find(|s| s.name.starts_with(name));
    scenario_model(s.expect("a scenario of that name").policies, "backend")
}

fn probe(from: usize, to: usize, service: Service) -> Probe {
    Probe {
        from,
        to,
        service,
        family: Family::V4,
    }
}

#[test]
fn a_denied_packet_names_the_tier_policy_and_rule_and_why_earlier_rules_did_not_match() {
    let model = scenario("tiers: security denies c");
    // c -> b: the security tier's first rule denies the cache.
    let t = trace(&model, &probe(C, B, Service::Tcp(80)));
    assert_eq!(t.verdict, Decision::Deny);
    assert!(
        t.reason.contains("security.gate rule 0 (deny)"),
        "{}",
        t.reason
    );
    let egress = &t.directions[0];
    assert_eq!(egress.verdict, Some(Decision::Allow), "{egress:#?}");
    assert!(
        egress.decided_by.contains("Profile kns.shop"),
        "{egress:#?}"
    );

    // a -> b on 8080: security passes, http-to-db's only rule wants port 80.
    let t = trace(&model, &probe(0, B, Service::Tcp(8080)));
    assert_eq!(t.verdict, Decision::Deny);
    let ingress = &t.directions[1];
    let names: Vec<(&str, StepResult)> = (ingress.policies.iter())
        .map(|p| (p.name.as_str(), p.result))
        .collect();
    assert_eq!(
        names,
        [
            ("security.gate", StepResult::Pass),
            ("http-to-db", StepResult::NoMatch)
        ]
    );
    let gate = &ingress.policies[0].rules;
    assert!(!gate[0].matched && gate[1].matched, "{gate:#?}");
    let why = gate[0].reason.as_deref().unwrap_or_default();
    assert!(
        why.contains("does not match source.selector") && why.contains("cache"),
        "{why}"
    );
    let http = &ingress.policies[1].rules[0];
    assert_eq!(
        http.reason.as_deref(),
        Some("port 8080 is not in destination.ports [80]")
    );
    assert!(
        ingress.decided_by.contains("the end of tier default"),
        "{ingress:#?}"
    );
}

#[test]
fn an_allowed_packet_names_the_rule_that_allowed_it_in_each_direction() {
    let model = scenario("port ranges");
    let t = trace(&model, &probe(0, B, Service::Udp(5300)));
    assert!(t.allowed(), "{t:#?}");
    let ingress = &t.directions[1];
    assert_eq!(ingress.verdict, Some(Decision::Allow));
    assert!(
        ingress.decided_by.ends_with("ranges rule 1 (allow)"),
        "{ingress:#?}"
    );
    let first = &ingress.policies[0].rules[0];
    assert_eq!(
        first.reason.as_deref(),
        Some("protocol tcp: the packet is udp")
    );
}

#[test]
fn a_rule_for_the_other_family_says_so_and_icmp_types_are_explained() {
    let model = scenario("ICMP echo requests");
    let t = trace(&model, &probe(0, B, Service::Tcp(80)));
    let rules = &t.directions[1].policies[0].rules;
    assert_eq!(rules.len(), 2, "{rules:#?}");
    assert!(
        rules.iter().all(|r| !r.matched && r.reason.is_some()),
        "{rules:#?}"
    );
    let model = scenario("ipVersion 6 only");
    let t = trace(&model, &probe(0, B, Service::Tcp(80)));
    let why = t.directions[1].policies[0].rules[0].reason.clone();
    assert!(why.is_some_and(|w| w.contains("ipVersion 6")), "{t:#?}");
}

#[test]
fn an_end_outside_the_host_is_not_enforced_here() {
    let model = scenario("default deny once selected");
    let query = |src: End, dst: End| Query {
        src,
        dst,
        protocol: "TCP".parse().expect("tcp"),
        port: 80,
        family: None,
    };
    let outside = End::Addr("198.51.100.7".parse().expect("an address"));
    let t = policy::trace(
        &model,
        &query(outside.clone(), End::Endpoint("shop/a".into())),
    )
    .expect("a trace");
    assert!(t.allowed());
    assert_eq!(t.directions[0].verdict, None);
    assert!(
        t.directions[0].decided_by.starts_with("not enforced here"),
        "{t:#?}"
    );
    let t =
        policy::trace(&model, &query(outside, End::Endpoint("shop/b".into()))).expect("a trace");
    assert!(!t.allowed());
    assert!(t.reason.contains("the end of tier default"), "{}", t.reason);
    // b's address is b.
    let t = policy::trace(
        &model,
        &query(
            End::Endpoint("shop/a".into()),
            End::Addr("10.201.2.1".parse().expect("an address")),
        ),
    )
    .expect("a trace");
    assert_eq!(t.dst.endpoint.as_deref(), Some("shop/b"));
    assert!(!t.allowed());
}

#[test]
fn an_ingress_the_egress_denied_is_shown_as_not_reached() {
    let model = scenario("egress to nets only");
    let t = trace(&model, &probe(0, C, Service::Tcp(80)));
    assert!(!t.allowed());
    assert_eq!(t.directions[0].verdict, Some(Decision::Deny));
    assert!(!t.directions[1].reached);
    assert_eq!(t.directions[1].verdict, Some(Decision::Allow));
}

#[test]
fn a_label_set_is_traced_as_a_pod_with_those_labels_in_its_namespace() {
    let yaml = format!(
        "{}---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: web-to-db, namespace: shop}}
spec:
  selector: app == 'db'
  ingress:
    - action: Allow
      source: {{selector: app == 'web'}}
",
        endpoints("backend")
    );
    let mut resources = api::parse_documents("test", &yaml).expect("resources");
    let labels = [("app".to_string(), "web".to_string())];
    let (pod, name) =
        hypothetical(&resources, Role::Source, "shop", &labels, None).expect("an endpoint");
    resources.push(pod);
    let model =
        policy::Model::from_resources(&resources, policy::Config::default()).expect("a model");
    let query = Query {
        src: End::Endpoint(name),
        dst: End::Endpoint("shop/b".into()),
        protocol: "TCP".parse().expect("tcp"),
        port: 80,
        family: None,
    };
    let t = policy::trace(&model, &query).expect("a trace");
    assert!(t.allowed(), "{t:#?}");
    assert!(t.reason.contains("shop/web-to-db rule 0"), "{}", t.reason);
}

#[test]
fn an_unknown_endpoint_is_an_error_naming_its_end() {
    let model = model(&endpoints("backend")).expect("a model");
    let query = Query {
        src: End::Endpoint("shop/a".into()),
        dst: End::Endpoint("shop/nope".into()),
        protocol: "TCP".parse().expect("tcp"),
        port: 80,
        family: None,
    };
    let err = policy::trace(&model, &query).unwrap_err();
    assert_eq!(err.end(), Some(Role::Destination));
    assert!(matches!(err, TraceError::UnknownEndpoint { .. }));
}
