//! Shared by the benchmarks: a synthetic cluster at scale (endpoints,
//! namespaces, tiers, policies) as Calico YAML, and small measuring helpers
//! (peak memory, percentiles, markdown rows).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

use policy::{Config, Model};

/// Endpoints are spread over this many namespaces.
pub const NAMESPACES: usize = 10;
/// Distinct `app` labels; each policy selects one.
pub const APPS: usize = 500;
/// Distinct `role` labels; each ingress rule allows one.
pub const ROLES: usize = 50;

/// The YAML of a cluster of `endpoints` workloads and `policies` policies:
///
/// - endpoint `e` lives in namespace `ns-{e % 10}` with labels
///   `app: app-{e % 500}`, `role: r-{e % 50}`, interface `calie{e}` and
///   addresses `10.202.x.y/32`, `fd00:202::x:y/128` (`x`, `y` from `e`);
///   endpoints listed in `fixed` replace the first ones (interface, v4, v6);
/// - policy `k` selects `app == 'app-{k % 500}'` (every 10th a
///   GlobalNetworkPolicy in tier `security` that denies one role and passes
///   the rest, the others NetworkPolicies in the matching namespace); it allows
///   TCP port `1000 + k % 1000` in from `role == 'r-{k % 50}'` and UDP 53 out
///   to `10.{k % 200}.0.0/16`;
/// - every endpoint has the allow-all profile of its namespace.
///
/// So each endpoint is selected by `policies / 500` policies.
pub fn cluster(endpoints: usize, policies: usize, fixed: &[(&str, &str, &str)]) -> String {
    let mut y = String::with_capacity(policies * 400 + endpoints * 300);
    y.push_str(
        "---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
",
    );
    for n in 0..NAMESPACES {
        let _ = write!(
            y,
            "---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: kns.ns-{n}}}
spec:
  labelsToApply: {{pcns.name: ns-{n}}}
  ingress: [{{action: Allow}}]
  egress: [{{action: Allow}}]
"
        );
    }
    for e in 0..endpoints {
        let (hi, lo) = (e / 250, e % 250 + 1);
        let (iface, v4, v6) = match fixed.get(e) {
            Some(&(i, a, b)) => (i.to_string(), a.to_string(), b.to_string()),
            None => (
                format!("calie{e}"),
                format!("10.202.{hi}.{lo}"),
                format!("fd00:202::{hi}:{lo}"),
            ),
        };
        let _ = write!(
            y,
            "---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: wl-{e}, namespace: ns-{ns}, labels: {{app: app-{app}, role: r-{role}}}}}
spec:
  node: host
  interfaceName: {iface}
  ipNetworks: [{v4}/32, \"{v6}/128\"]
  profiles: [kns.ns-{ns}]
",
            ns = e % NAMESPACES,
            app = e % APPS,
            role = e % ROLES,
        );
    }
    for k in 0..policies {
        y.push_str(&policy(k, 1000 + (k % 1000) as u16));
    }
    y
}

/// NetworkPolicy `name` letting endpoint 0 of [`cluster`] (role r-0) reach
/// endpoint 1 (app-1 in ns-1) on TCP `port`, ordered after every generated
/// policy: the measured flow's.
pub fn admit_first_to_second(name: &str, port: u16) -> String {
    format!(
        "---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: ns-1}}
spec:
  order: 100000
  selector: app == 'app-1'
  ingress:
    - action: Allow
      protocol: TCP
      source: {{namespaceSelector: all(), selector: role == 'r-0'}}
      destination: {{ports: [{port}]}}
"
    )
}

/// Policy `k` of [`cluster`], allowing TCP `port` in.
pub fn policy(k: usize, port: u16) -> String {
    let app = k % APPS;
    let role = k % ROLES;
    let net = k % 200;
    let rules = format!(
        "  ingress:
    - action: Allow
      protocol: TCP
      source: {{selector: role == 'r-{role}'}}
      destination: {{ports: [{port}]}}
  egress:
    - action: Allow
      protocol: UDP
      destination: {{nets: [10.{net}.0.0/16], ports: [53]}}
"
    );
    if k.is_multiple_of(10) {
        format!(
            "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: security.p{k}}}
spec:
  tier: security
  order: {k}
  selector: app == 'app-{app}'
  ingress:
    - action: Deny
      source: {{selector: role == 'r-{deny}'}}
    - action: Pass
  egress: [{{action: Pass}}]
",
            deny = (role + 1) % ROLES
        )
    } else {
        format!(
            "---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: p{k}, namespace: ns-{ns}}}
spec:
  order: {k}
  selector: app == 'app-{app}'
{rules}",
            ns = app % NAMESPACES
        )
    }
}

/// Parses YAML into resources, panicking with every error.
pub fn resources(yaml: &str) -> Vec<api::Resource> {
    api::parse_documents("bench", yaml).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    })
}

/// The model of resources, panicking on error.
pub fn model(resources: &[api::Resource]) -> Model {
    Model::from_resources(resources, Config::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in MiB.
pub fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The `p`-th percentile (0..=100, nearest rank) of `samples`.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Whether the privileged benchmarks can run (root and the programs).
pub fn ready(programs: &[&str]) -> bool {
    testkit::require_root() && testkit::require_programs(programs)
}
