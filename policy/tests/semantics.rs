//! Calico's policy semantics, one sentence per test: compile YAML, then ask the
//! simulator what the ruleset does to packets (the kernel test checks that the
//! kernel agrees on real traffic).

mod common;

use std::net::IpAddr;

use common::{cases, compile_case, compile_yaml, model_yaml_error};
use policy::ir::{CtState, Hook};
use policy::simulate::{Outcome, Packet, simulate};
use policy::{Config, Model, ModelError, Ruleset};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A workload endpoint document on node1, namespace `ns`.
fn wl(name: &str, ns: &str, iface: &str, addrs: &[&str], labels: &str, extra: &str) -> String {
    let addrs: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  orchestrator: k8s\n  node: node1\n  interfaceName: {iface}\n  ipNetworks: [{}]\n{extra}",
        addrs.join(", ")
    )
}

/// Two workloads in namespace `shop`: a (10.65.0.1, fd00::1, app=a) and
/// b (10.65.0.2, fd00::2, app=b), after `policy`.
fn two(policy: &str) -> Ruleset {
    let yaml = format!(
        "{policy}\n{}{}",
        wl(
            "a",
            "shop",
            "calia",
            &["10.65.0.1/32", "fd00::1/128"],
            "app: a",
            ""
        ),
        wl(
            "b",
            "shop",
            "calib",
            &["10.65.0.2/32", "fd00::2/128"],
            "app: b",
            ""
        )
    );
    compile_yaml(&yaml)
}

/// What the forward hook does to a new packet between two workloads.
fn fwd(rs: &Ruleset, from: &str, to: &str, src: &str, dst: &str, proto: u8, dport: u16) -> Outcome {
    let p = Packet::new(Hook::Forward, ip(src), ip(dst), proto, dport)
        .from_iface(from)
        .to_iface(to);
    simulate(rs, &p).expect("ruleset is consistent").outcome
}

/// a → b, IPv4.
fn a_to_b(rs: &Ruleset, proto: u8, dport: u16) -> Outcome {
    fwd(rs, "calia", "calib", "10.65.0.1", "10.65.0.2", proto, dport)
}

const ALLOW_ALL_PROFILE: &str = "
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
";

#[test]
fn endpoint_without_policy_or_profile_drops() {
    let rs = two("");
    assert_eq!(a_to_b(&rs, TCP, 80), Outcome::Drop);
    assert_eq!(
        fwd(&rs, "calia", "eth0", "10.65.0.1", "192.0.2.1", TCP, 80),
        Outcome::Drop
    );
}

#[test]
fn traffic_between_interfaces_we_do_not_own_is_left_alone() {
    let rs = two("");
    assert_eq!(
        fwd(&rs, "eth0", "eth1", "192.0.2.1", "198.51.100.1", TCP, 80),
        Outcome::Accept
    );
}

#[test]
fn a_workload_interface_no_endpoint_claims_drops() {
    let rs = two(ALLOW_ALL_PROFILE);
    assert_eq!(
        fwd(&rs, "calizzz", "eth0", "10.65.0.9", "192.0.2.1", TCP, 80),
        Outcome::Drop
    );
    assert_eq!(
        fwd(&rs, "eth0", "calizzz", "192.0.2.1", "10.65.0.9", TCP, 80),
        Outcome::Drop
    );
}

#[test]
fn established_traffic_is_accepted_before_any_policy() {
    let rs = two("");
    let mut p = Packet::new(Hook::Forward, ip("10.65.0.1"), ip("10.65.0.2"), TCP, 80)
        .from_iface("calia")
        .to_iface("calib");
    p.ct = CtState::Established;
    assert_eq!(simulate(&rs, &p).unwrap().outcome, Outcome::Accept);
    p.ct = CtState::Invalid;
    assert_eq!(simulate(&rs, &p).unwrap().outcome, Outcome::Drop);
}

#[test]
fn workload_with_policies_only_gets_what_they_allow() {
    let rs = two("
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow}
spec:
  selector: all()
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
  egress: [{action: Allow}]
");
    assert_eq!(a_to_b(&rs, TCP, 80), Outcome::Accept);
    assert_eq!(a_to_b(&rs, TCP, 81), Outcome::Drop);
    assert_eq!(a_to_b(&rs, UDP, 80), Outcome::Drop);
}

#[test]
fn both_ends_of_a_workload_to_workload_packet_must_allow_it() {
    // b allows everything in; a may send nothing out.
    let rs = two("
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: b-in}
spec:
  selector: app == 'b'
  ingress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a-out}
spec:
  selector: app == 'a'
  types: [Egress]
");
    assert_eq!(a_to_b(&rs, TCP, 80), Outcome::Drop);
}

#[test]
fn selected_endpoint_gets_the_tier_default_deny_even_with_a_profile() {
    let rs = two(&format!(
        "{ALLOW_ALL_PROFILE}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: nothing}}
spec:
  selector: app == 'b'
  ingress: [{{action: Allow, protocol: UDP}}]
"
    ));
    // The profile is not listed by the endpoints here; list it and check again.
    assert_eq!(a_to_b(&rs, TCP, 80), Outcome::Drop);
    let with_profile = compile_yaml(&format!(
        "{ALLOW_ALL_PROFILE}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: nothing}}
spec:
  selector: app == 'b'
  ingress: [{{action: Allow, protocol: UDP}}]
{}{}",
        wl(
            "a",
            "shop",
            "calia",
            &["10.65.0.1/32"],
            "app: a",
            "  profiles: [open]\n"
        ),
        wl(
            "b",
            "shop",
            "calib",
            &["10.65.0.2/32"],
            "app: b",
            "  profiles: [open]\n"
        ),
    ));
    assert_eq!(
        a_to_b(&with_profile, TCP, 80),
        Outcome::Drop,
        "tier default deny"
    );
    assert_eq!(a_to_b(&with_profile, UDP, 53), Outcome::Accept);
}

#[test]
fn profiles_apply_when_no_policy_selects_the_endpoint() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("profiles-fallback"))
        .unwrap();
    let rs = compile_case(&case);
    // cache: no policy; profiles kns.shop (ingress from shop) and open.
    assert_eq!(
        fwd(
            &rs,
            "eth0",
            "calicache",
            "10.65.0.2",
            "10.65.0.3",
            TCP,
            6379
        ),
        Outcome::Accept,
        "from a shop address (api's), by the kns.shop profile"
    );
    assert_eq!(
        fwd(
            &rs,
            "eth0",
            "calicache",
            "192.0.2.1",
            "10.65.0.3",
            TCP,
            6379
        ),
        Outcome::Accept,
        "the second profile, open, allows what the first does not"
    );
    // api: ingress has no policy (its policy is egress only), so its profile applies.
    assert_eq!(
        fwd(&rs, "eth0", "caliapi", "192.0.2.1", "10.65.0.2", TCP, 80),
        Outcome::Drop
    );
    // api egress: the policy allows DNS only; the profile is not reached.
    assert_eq!(
        fwd(&rs, "caliapi", "eth0", "10.65.0.2", "192.0.2.53", UDP, 53),
        Outcome::Accept
    );
    assert_eq!(
        fwd(&rs, "caliapi", "eth0", "10.65.0.2", "192.0.2.80", TCP, 80),
        Outcome::Drop
    );
    // lonely: neither.
    assert_eq!(
        fwd(
            &rs,
            "calicache",
            "calilonely",
            "10.65.0.3",
            "10.65.0.4",
            TCP,
            80
        ),
        Outcome::Drop
    );
}

#[test]
fn pass_action_skips_to_the_next_tier() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("tiers-pass"))
        .unwrap();
    let rs = compile_case(&case);
    let to_backend = |src: &str, port| fwd(&rs, "eth0", "caliback", src, "10.65.0.3", TCP, port);
    assert_eq!(
        to_backend("203.0.113.9", 80),
        Outcome::Drop,
        "security tier denies"
    );
    assert_eq!(
        to_backend("192.0.2.1", 80),
        Outcome::Accept,
        "passed on, default tier allows"
    );
    assert_eq!(
        to_backend("192.0.2.1", 81),
        Outcome::Drop,
        "default tier default deny"
    );
}

#[test]
fn a_tier_with_default_action_pass_hands_undecided_traffic_on() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("tiers-pass"))
        .unwrap();
    let rs = compile_case(&case);
    // platform.observe logs port 22 and decides nothing; its tier passes.
    let p = Packet::new(Hook::Forward, ip("192.0.2.1"), ip("10.65.0.3"), TCP, 22)
        .from_iface("eth0")
        .to_iface("caliback");
    let trace = simulate(&rs, &p).unwrap();
    assert_eq!(trace.outcome, Outcome::Drop, "the default tier denies 22");
    assert_eq!(trace.logged, ["platform.observe ingress[0]"]);
}

#[test]
fn log_logs_and_goes_on() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("log-then-allow"))
        .unwrap();
    let rs = compile_case(&case);
    for (port, outcome) in [(443, Outcome::Accept), (25, Outcome::Drop)] {
        let p = Packet::new(Hook::Forward, ip("192.0.2.1"), ip("10.65.0.2"), TCP, port)
            .from_iface("eth0")
            .to_iface("caliweb");
        let trace = simulate(&rs, &p).unwrap();
        assert_eq!(trace.outcome, outcome, "port {port}");
        assert_eq!(trace.logged, ["web ingress[0]"], "port {port}");
    }
}

#[test]
fn policies_in_a_tier_run_by_order_then_name_with_unset_order_last() {
    let policy = |name: &str, order: &str, action: &str| {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  {order}\n  selector: app == 'b'\n  ingress: [{{action: {action}}}]\n"
        )
    };
    // Unset order sorts after 100; between equal orders, "a-deny" < "b-allow".
    let rs = two(&[
        policy("z-unset", "", "Allow"),
        policy("b-allow", "order: 100", "Allow"),
        policy("a-deny", "order: 100", "Deny"),
    ]
    .concat());
    assert_eq!(a_to_b(&rs, TCP, 80), Outcome::Drop);
    let rs = two(&[
        policy("z-unset", "", "Deny"),
        policy("b-allow", "order: 100", "Allow"),
    ]
    .concat());
    assert_eq!(
        a_to_b(&rs, TCP, 80),
        Outcome::Drop,
        "a's egress has no policy or profile"
    );
    let rs = two(&[
        policy("z-unset", "", "Deny"),
        policy("b-allow", "order: 100", "Allow"),
    ]
    .concat());
    assert_eq!(
        fwd(&rs, "eth0", "calib", "192.0.2.1", "10.65.0.2", TCP, 80),
        Outcome::Accept,
        "order 100 allows before the unset-order deny"
    );
}

#[test]
fn policy_types_are_inferred_from_the_rules_when_absent() {
    // Egress rules only: the policy does not select b for ingress, so b's
    // ingress falls to its (absent) profiles and drops, while a egress is allowed.
    let rs = two("
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: out}
spec:
  selector: all()
  egress: [{action: Allow}]
");
    assert_eq!(
        fwd(&rs, "calia", "eth0", "10.65.0.1", "192.0.2.1", TCP, 80),
        Outcome::Accept
    );
    assert_eq!(a_to_b(&rs, TCP, 80), Outcome::Drop);
}

#[test]
fn named_ports_resolve_per_endpoint() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("named-ports"))
        .unwrap();
    let rs = compile_case(&case);
    let to = |iface: &str, dst: &str, src: &str, port| fwd(&rs, "eth0", iface, src, dst, TCP, port);
    assert_eq!(
        to("calia", "10.65.0.2", "192.0.2.1", 8080),
        Outcome::Accept,
        "a's http"
    );
    assert_eq!(
        to("calib", "10.65.0.3", "192.0.2.1", 9090),
        Outcome::Accept,
        "b's http"
    );
    assert_eq!(
        to("calia", "10.65.0.2", "192.0.2.1", 9100),
        Outcome::Drop,
        "a's metrics, not from the monitor"
    );
    assert_eq!(
        to("calia", "10.65.0.2", "10.65.0.9", 9100),
        Outcome::Drop,
        "monitor: not denied, but notPorts excludes metrics"
    );
    assert_eq!(
        to("calia", "10.65.0.2", "192.0.2.1", 22),
        Outcome::Drop,
        "notPorts 22"
    );
    assert_eq!(
        to("calib", "10.65.0.3", "192.0.2.1", 9100),
        Outcome::Accept,
        "9100 is not b's metrics port"
    );
    let v6 = fwd(&rs, "eth0", "calia", "fd00::9", "fd00:65::2", TCP, 8080);
    assert_eq!(v6, Outcome::Accept, "a's http over IPv6");
}

#[test]
fn namespaced_policy_selectors_stay_in_their_namespace() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("namespace-scoping"))
        .unwrap();
    let rs = compile_case(&case);
    let to_db = |src: &str, port| fwd(&rs, "eth0", "calidb", src, "10.65.0.10", TCP, port);
    assert_eq!(to_db("10.65.0.11", 5432), Outcome::Accept, "api in shop");
    assert_eq!(
        to_db("10.65.1.20", 5432),
        Outcome::Accept,
        "backup in ops, by namespaceSelector"
    );
    assert_eq!(
        to_db("192.0.2.7", 5432),
        Outcome::Accept,
        "nets are not scoped"
    );
    assert_eq!(
        to_db("198.51.100.1", 5432),
        Outcome::Drop,
        "the untrusted network set"
    );
    assert_eq!(
        to_db("203.0.113.1", 5432),
        Outcome::Drop,
        "not an endpoint at all"
    );
    // api in "other" is an endpoint in some namespace, so rule 2 (all namespaces
    // but untrusted) admits it, though rule 0 (api in shop) does not.
    assert_eq!(to_db("10.65.1.11", 5432), Outcome::Accept);
}

#[test]
fn not_nets_exclude_addresses_and_nets_select_them() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("nets-notnets"))
        .unwrap();
    let rs = compile_case(&case);
    let out = |dst: &str| {
        let src = if dst.contains(':') {
            "fd00:65::2"
        } else {
            "10.65.0.2"
        };
        fwd(&rs, "caliweb", "eth0", src, dst, TCP, 443)
    };
    assert_eq!(out("10.10.5.5"), Outcome::Accept, "partner network set");
    assert_eq!(out("10.20.0.1"), Outcome::Drop, "private range");
    assert_eq!(out("8.8.8.8"), Outcome::Accept, "internet");
    assert_eq!(out("169.254.169.254"), Outcome::Drop, "notNets link-local");
    assert_eq!(out("2001:db8::1"), Outcome::Accept, "internet over IPv6");
    assert_eq!(out("fe80::1"), Outcome::Drop, "IPv6 link-local");
    assert_eq!(out("fd00:10::5"), Outcome::Accept, "partner IPv6");
}

#[test]
fn icmp_type_and_code_match_in_each_family() {
    let case = cases().into_iter().find(|c| c.ends_with("icmp")).unwrap();
    let rs = compile_case(&case);
    let ping = |src: &str, dst: &str, proto, t, c| {
        let mut p = Packet::new(Hook::Forward, ip(src), ip(dst), proto, 0)
            .from_iface("eth0")
            .to_iface("caliweb");
        p.icmp_type = t;
        p.icmp_code = c;
        simulate(&rs, &p).unwrap().outcome
    };
    assert_eq!(ping("192.0.2.1", "10.65.0.2", ICMP, 8, 0), Outcome::Accept);
    assert_eq!(
        ping("fd00::9", "fd00:65::2", ICMPV6, 128, 0),
        Outcome::Accept
    );
    assert_eq!(
        ping("192.0.2.1", "10.65.0.2", ICMP, 3, 4),
        Outcome::Accept,
        "notICMP 3/4 escapes the deny; allowed as not 5"
    );
    assert_eq!(
        ping("192.0.2.1", "10.65.0.2", ICMP, 3, 1),
        Outcome::Drop,
        "denied: not 3/4"
    );
    assert_eq!(
        ping("192.0.2.1", "10.65.0.2", ICMP, 8, 1),
        Outcome::Drop,
        "echo with code 1"
    );
}

#[test]
fn ip_version_restricts_a_rule_to_one_family() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("ip-version"))
        .unwrap();
    let rs = compile_case(&case);
    let to_b = |src: &str, dst: &str, proto, port| {
        fwd(&rs, "califront", "caliback", src, dst, proto, port)
    };
    // The frontend endpoints have no egress policy; look at b's ingress only
    // from outside.
    let from_out =
        |src: &str, dst: &str, proto, port| fwd(&rs, "eth0", "caliback", src, dst, proto, port);
    assert_eq!(
        from_out("fd00::9", "fd00:65::3", UDP, 5353),
        Outcome::Accept,
        "v6 mDNS"
    );
    assert_eq!(
        from_out("192.0.2.1", "10.65.0.3", UDP, 5353),
        Outcome::Drop,
        "v4 mDNS: the rule is v6 only, then notProtocol TCP denies"
    );
    assert_eq!(
        from_out("192.0.2.1", "10.65.0.3", 132, 9),
        Outcome::Accept,
        "protocol by number"
    );
    assert_eq!(
        from_out("192.0.2.1", "10.65.0.3", TCP, 9),
        Outcome::Drop,
        "TCP from outside: tier default"
    );
    assert_eq!(
        to_b("10.65.0.2", "10.65.0.3", TCP, 9),
        Outcome::Drop,
        "frontend has no egress rules"
    );
}

#[test]
fn kubernetes_policy_maps_ipblock_except_end_port_and_empty_egress() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("k8s-ipblock-endport"))
        .unwrap();
    let rs = compile_case(&case);
    let to_api =
        |src: &str, proto, port| fwd(&rs, "eth0", "caliapi", src, "10.65.0.2", proto, port);
    assert_eq!(
        to_api("172.17.2.1", TCP, 8050),
        Outcome::Accept,
        "ipBlock, endPort range"
    );
    assert_eq!(to_api("172.17.1.1", TCP, 8050), Outcome::Drop, "except");
    assert_eq!(
        to_api("172.17.2.1", TCP, 8101),
        Outcome::Drop,
        "past endPort"
    );
    assert_eq!(to_api("172.17.2.1", UDP, 53), Outcome::Accept, "UDP port");
    assert_eq!(
        to_api("172.17.2.1", TCP, 53),
        Outcome::Drop,
        "ports default to TCP only where no protocol is given"
    );
    assert_eq!(
        to_api("10.65.0.3", TCP, 8000),
        Outcome::Accept,
        "frontend pod in the team=web namespace"
    );
    assert_eq!(
        to_api("10.65.0.4", UDP, 9999),
        Outcome::Accept,
        "any pod of the namespace, any port"
    );
    assert_eq!(
        fwd(&rs, "caliapi", "eth0", "10.65.0.2", "192.0.2.1", TCP, 80),
        Outcome::Drop,
        "egress listed with no rules"
    );
}

#[test]
fn service_accounts_match_by_name_and_by_label() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("service-accounts"))
        .unwrap();
    let rs = compile_case(&case);
    let to_db = |src: &str| fwd(&rs, "eth0", "calidb", src, "10.65.0.2", TCP, 5432);
    assert_eq!(to_db("10.65.0.3"), Outcome::Accept, "service account api");
    assert_eq!(
        to_db("10.65.0.4"),
        Outcome::Accept,
        "reports: pcsa.role == reporting"
    );
    assert_eq!(to_db("10.65.0.2"), Outcome::Drop, "db itself");
}

#[test]
fn global_policy_applies_to_a_host_endpoint_on_input_and_output() {
    let case = cases()
        .into_iter()
        .find(|c| c.ends_with("host-endpoint-gnp"))
        .unwrap();
    let rs = compile_case(&case);
    let input = |src: &str, port| {
        let p = Packet::new(Hook::Input, ip(src), ip("192.168.1.1"), TCP, port).from_iface("eth0");
        simulate(&rs, &p).unwrap().outcome
    };
    assert_eq!(
        input("192.168.100.5", 22),
        Outcome::Accept,
        "SSH from management"
    );
    assert_eq!(input("192.0.2.1", 22), Outcome::Drop);
    assert_eq!(
        input("192.168.1.2", 179),
        Outcome::Accept,
        "BGP from the other uplink"
    );
    assert_eq!(input("192.0.2.1", 179), Outcome::Drop);
    let out =
        Packet::new(Hook::Output, ip("192.168.1.1"), ip("192.0.2.1"), TCP, 443).to_iface("eth0");
    assert_eq!(simulate(&rs, &out).unwrap().outcome, Outcome::Accept);
    let other =
        Packet::new(Hook::Input, ip("192.0.2.1"), ip("192.168.1.1"), TCP, 22).from_iface("eth1");
    assert_eq!(
        simulate(&rs, &other).unwrap().outcome,
        Outcome::Accept,
        "no host endpoint on eth1"
    );
    assert!(!rs.maps["hep-from"].elements.contains_key("node2-eth0"));
    assert_eq!(
        rs.maps["hep-from"].elements.len(),
        1,
        "only node1's endpoint gets chains"
    );
}

#[test]
fn workloads_reach_the_host_only_for_dhcp_unless_configured() {
    let yaml = format!(
        "{ALLOW_ALL_PROFILE}{}",
        wl(
            "a",
            "shop",
            "calia",
            &["10.65.0.1/32"],
            "app: a",
            "  profiles: [open]\n"
        )
    );
    let resources = api::parse_documents("inline", &yaml).unwrap();
    let to_host = |config: Config, proto, sport, dport| {
        let rs = policy::compile(&Model::from_resources(&resources, config).unwrap());
        let mut p = Packet::new(
            Hook::Input,
            ip("10.65.0.1"),
            ip("10.65.0.254"),
            proto,
            dport,
        )
        .from_iface("calia");
        p.sport = sport;
        simulate(&rs, &p).unwrap().outcome
    };
    assert_eq!(
        to_host(Config::default(), UDP, 68, 67),
        Outcome::Accept,
        "DHCP"
    );
    assert_eq!(
        to_host(Config::default(), TCP, 40000, 22),
        Outcome::Drop,
        "endpoint-to-host drop"
    );
    let accept = Config {
        endpoint_to_host: policy::model::EndpointToHost::Accept,
        ..Config::default()
    };
    assert_eq!(to_host(accept, TCP, 40000, 22), Outcome::Accept);
    let rs = compile_yaml(&yaml);
    let mut nd = Packet::new(Hook::Input, ip("fe80::1"), ip("ff02::1:ff00:1"), ICMPV6, 0)
        .from_iface("calia");
    nd.icmp_type = 135;
    assert_eq!(
        simulate(&rs, &nd).unwrap().outcome,
        Outcome::Accept,
        "neighbour solicitation"
    );
}

#[test]
fn one_set_per_selector_is_shared_by_every_rule_and_policy_using_it() {
    let rs = two("
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: one}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: app == 'a'}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: two}
spec:
  selector: all()
  egress: [{action: Allow, destination: {selector: \"app == \\\"a\\\"\"}}]
");
    let selector_sets: Vec<&String> = rs.sets.keys().filter(|k| k.starts_with("sel")).collect();
    assert_eq!(
        selector_sets.len(),
        2,
        "one v4 and one v6 set: {selector_sets:?}"
    );
}

#[test]
fn relabelling_an_endpoint_changes_set_elements_only() {
    let policy = "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: one}
spec:
  selector: all()
  ingress: [{action: Allow, source: {selector: role == 'client'}}]
";
    let before = compile_yaml(&format!(
        "{policy}{}{}",
        wl("a", "shop", "calia", &["10.65.0.1/32"], "role: client", ""),
        wl("b", "shop", "calib", &["10.65.0.2/32"], "role: server", "")
    ));
    let after = compile_yaml(&format!(
        "{policy}{}{}",
        wl("a", "shop", "calia", &["10.65.0.1/32"], "role: client", ""),
        wl("b", "shop", "calib", &["10.65.0.2/32"], "role: client", "")
    ));
    assert_eq!(before.chains, after.chains);
    assert_eq!(before.maps, after.maps);
    assert_ne!(before.sets, after.sets);
    assert_eq!(
        before.sets.keys().collect::<Vec<_>>(),
        after.sets.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_policy_in_a_missing_tier_is_an_error_naming_both() {
    let err = model_yaml_error(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.x}
spec:
  tier: security
  selector: all()
",
    );
    assert_eq!(
        err,
        ModelError::MissingTier {
            policy: "security.x".into(),
            tier: "security".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "policy security.x: tier \"security\" does not exist"
    );
}

#[test]
fn two_endpoints_claiming_one_interface_is_an_error() {
    let yaml = format!(
        "{}{}",
        wl("a", "shop", "calia", &["10.65.0.1/32"], "", ""),
        wl("b", "shop", "calia", &["10.65.0.2/32"], "", "")
    );
    let resources = api::parse_documents("inline", &yaml).unwrap();
    assert!(matches!(
        Model::from_resources(&resources, Config::default()),
        Err(ModelError::DuplicateInterface { .. })
    ));
}
