//! The policy reachability scenarios: four workloads (a, b, c in namespace
//! `shop`, d in `lab`), policies over them, and the matrix Calico's
//! semantics give for each. The enforcement tests measure it with real
//! traffic; the trace tests check `policy::trace` against it.

#![allow(dead_code)]

use policy::{Config, Model, ModelError, Ruleset};

use policy::ir::Family;
use policy::trace::{End, Query, Trace};

use super::lab::{self, Probe, Service};

pub const TCP: [u16; 3] = [80, 8080, 9090];
pub const UDP: u16 = 5300;
pub const SERVICES: [Service; 5] = [
    Service::Tcp(80),
    Service::Tcp(8080),
    Service::Tcp(9090),
    Service::Udp(UDP),
    Service::Icmp,
];

/// Workloads, in lab order: a, b, c in namespace `shop`, d in namespace `lab`.
pub const NAMES: [&str; 4] = ["a", "b", "c", "d"];
pub const A: usize = 0;
pub const B: usize = 1;
pub const C: usize = 2;
pub const D: usize = 3;

/// a (web frontend), b (db backend, named port `alt` = TCP 8080), c (cache
/// backend, `alt` = TCP 9090) in `shop`; d (web tool) in `lab`; each with
/// its namespace profile, which allows everything (as Calico's `kns.*`).
pub fn endpoints(c_role: &str) -> String {
    let wl = |name: &str, i: u8, ns: &str, labels: &str, ports: &str| {
        format!(
            "---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  orchestrator: k8s
  node: host
  interfaceName: cali{name}
  ipNetworks: [10.201.{i}.1/32, \"fd00:201:{i}::1/128\"]
  profiles: [kns.{ns}]
  ports: [{ports}]
"
        )
    };
    let profile = |ns: &str| {
        format!(
            "---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: kns.{ns}}}
spec:
  labelsToApply: {{pcns.team: {ns}}}
  ingress: [{{action: Allow}}]
  egress: [{{action: Allow}}]
"
        )
    };
    [
        profile("shop"),
        profile("lab"),
        wl("a", 1, "shop", "app: web, role: frontend", ""),
        wl(
            "b",
            2,
            "shop",
            "app: db, role: backend",
            "{name: alt, protocol: TCP, port: 8080}",
        ),
        wl(
            "c",
            3,
            "shop",
            &format!("app: cache, role: {c_role}"),
            "{name: alt, protocol: TCP, port: 9090}",
        ),
        wl("d", 4, "lab", "app: web, role: tool", ""),
    ]
    .concat()
}

pub fn model(yaml: &str) -> Result<Model, ModelError> {
    let resources = api::parse_documents("scenario", yaml).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}\n{yaml}", lines.join("\n"))
    });
    Model::from_resources(&resources, Config::default())
}

pub fn compile(policies: &str, c_role: &str) -> Ruleset {
    policy::compile(&scenario_model(policies, c_role))
}

pub type Expect = fn(&Probe) -> bool;

/// A scenario: policies over the base endpoints and the matrix they give.
pub struct Scenario {
    pub name: &'static str,
    pub policies: &'static str,
    pub expect: Expect,
}

/// A GlobalNetworkPolicy selecting b with these ingress rules.
macro_rules! on_b {
    ($name:literal, $rules:literal) => {
        concat!(
            "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: ",
            $name,
            "}
spec:
  selector: app == 'db'
  types: [Ingress]
  ingress:
",
            $rules
        )
    };
}
#[allow(unused_imports)] // not every test file uses it
pub(crate) use on_b;

pub fn v6(p: &Probe) -> bool {
    p.family == super::lab::Family::V6
}

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "no policy: every endpoint falls back to its profile, which allows",
            policies: "",
            expect: |_| true,
        },
        Scenario {
            name: "a policy selecting nobody changes nothing",
            policies: "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: nobody}
spec:
  selector: app == 'nothing'
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
",
            expect: |_| true,
        },
        Scenario {
            name: "default deny once selected",
            policies: on_b!("isolate-db", "    []\n"),
            expect: |p| p.to != B,
        },
        Scenario {
            name: "allow by selector",
            policies: on_b!(
                "from-frontend",
                "    - action: Allow\n      source: {selector: role == 'frontend'}\n"
            ),
            expect: |p| p.to != B || p.from == A,
        },
        Scenario {
            name: "tiers: security denies c and passes the rest; default allows TCP 80 to b",
            policies: "---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.gate}
spec:
  tier: security
  selector: all()
  ingress:
    - action: Deny
      source: {selector: app == 'cache'}
    - action: Pass
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: http-to-db}
spec:
  selector: app == 'db'
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [80]}
",
            expect: |p| p.from != C && (p.to != B || p.service == Service::Tcp(80)),
        },
        Scenario {
            name: "a tier whose every policy passes hands the endpoint to its profile",
            policies: "---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.observe}
spec:
  tier: platform
  selector: all()
  ingress: [{action: Pass, protocol: TCP}]
  egress: [{action: Pass}]
",
            expect: |_| true,
        },
        Scenario {
            name: "log then allow",
            policies: on_b!(
                "log-then-allow",
                "    - action: Log
    - action: Allow
      protocol: TCP
      destination: {ports: [80, 8080]}
"
            ),
            expect: |p| p.to != B || matches!(p.service, Service::Tcp(80) | Service::Tcp(8080)),
        },
        Scenario {
            name: "notNets: everyone but a's addresses",
            policies: on_b!(
                "not-a",
                "    - action: Allow
      source: {notNets: [10.201.1.0/24, \"fd00:201:1::/64\"]}
"
            ),
            expect: |p| p.to != B || p.from != A,
        },
        Scenario {
            name: "port ranges, TCP and UDP",
            policies: on_b!(
                "ranges",
                "    - action: Allow
      protocol: TCP
      destination: {ports: [\"8000:9999\"]}
    - action: Allow
      protocol: UDP
      destination: {ports: [\"5000:5400\"]}
"
            ),
            expect: |p| {
                p.to != B
                    || matches!(
                        p.service,
                        Service::Tcp(8080) | Service::Tcp(9090) | Service::Udp(_)
                    )
            },
        },
        Scenario {
            name: "named ports resolve per endpoint",
            policies: "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: alt}
spec:
  selector: role == 'backend'
  ingress:
    - action: Allow
      protocol: TCP
      destination: {ports: [alt]}
",
            expect: |p| match p.to {
                B => p.service == Service::Tcp(8080),
                C => p.service == Service::Tcp(9090),
                _ => true,
            },
        },
        Scenario {
            name: "a named port no endpoint has matches nothing (Calico's behaviour)",
            policies: on_b!(
                "ghost-port",
                "    - action: Allow
      protocol: TCP
      destination: {ports: [no-such-port]}
    - action: Allow
      protocol: UDP
"
            ),
            expect: |p| p.to != B || p.service == Service::Udp(UDP),
        },
        Scenario {
            name: "egress to nets only",
            policies: "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: a-to-b-only}
spec:
  selector: role == 'frontend'
  types: [Egress]
  egress:
    - action: Allow
      destination: {nets: [10.201.2.0/24, \"fd00:201:2::/64\"]}
",
            expect: |p| p.from != A || p.to == B,
        },
        Scenario {
            name: "a policy with only egress rules is an egress policy (ingress untouched)",
            policies: "---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: cache-out, namespace: shop}
spec:
  selector: app == 'cache'
  egress:
    - action: Allow
      protocol: TCP
      destination: {selector: role == 'backend'}
",
            expect: |p| p.from != C || (p.to == B && matches!(p.service, Service::Tcp(_))),
        },
        Scenario {
            name: "network sets: a GlobalNetworkSet's nets as a selector",
            policies: "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: trusted, labels: {trust: 'yes'}}
spec:
  nets: [10.201.1.1/32, \"fd00:201:1::1/128\", 10.201.4.0/24, \"fd00:201:4::/64\"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: trusted-to-db}
spec:
  selector: app == 'db'
  ingress:
    - action: Allow
      source: {selector: trust == 'yes'}
",
            expect: |p| p.to != B || p.from == A || p.from == D,
        },
        Scenario {
            name: "namespace scoping: a NetworkPolicy's selector stays in its namespace",
            policies: "---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-to-db, namespace: shop}
spec:
  selector: app == 'db'
  ingress:
    - action: Allow
      source: {selector: app == 'web'}
",
            expect: |p| p.to != B || p.from == A,
        },
        Scenario {
            name: "namespace scoping: a namespaceSelector reaches into another namespace",
            policies: "---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: lab-web-to-db, namespace: shop}
spec:
  selector: app == 'db'
  ingress:
    - action: Allow
      source: {namespaceSelector: team == 'lab', selector: app == 'web'}
",
            expect: |p| p.to != B || p.from == D,
        },
        Scenario {
            name: "Kubernetes NetworkPolicy with ipBlock except, TCP 80",
            policies: "---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: db}
  ingress:
    - from:
        - ipBlock: {cidr: 10.201.0.0/16, except: [10.201.3.0/24]}
        - ipBlock: {cidr: \"fd00:201::/32\", except: [\"fd00:201:3::/48\"]}
      ports:
        - port: 80
",
            expect: |p| p.to != B || (p.from != C && p.service == Service::Tcp(80)),
        },
        Scenario {
            name: "ipVersion 6 only",
            policies: on_b!("v6-only", "    - action: Allow\n      ipVersion: 6\n"),
            expect: |p| p.to != B || v6(p),
        },
        Scenario {
            name: "ICMP echo requests of both families only",
            policies: on_b!(
                "ping-only",
                "    - action: Allow
      protocol: ICMP
      icmp: {type: 8}
    - action: Allow
      protocol: ICMPv6
      icmp: {type: 128}
"
            ),
            expect: |p| p.to != B || p.service == Service::Icmp,
        },
        Scenario {
            name: "notProtocol TCP",
            policies: on_b!("not-tcp", "    - action: Allow\n      notProtocol: TCP\n"),
            expect: |p| p.to != B || !matches!(p.service, Service::Tcp(_)),
        },
        Scenario {
            name: "policy order: an earlier Deny of c wins over a later Allow",
            policies: "---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-cache}
spec:
  order: 10
  selector: app == 'db'
  ingress:
    - action: Deny
      source: {selector: app == 'cache'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-all}
spec:
  order: 20
  selector: app == 'db'
  ingress: [{action: Allow}]
",
            expect: |p| p.to != B || p.from != C,
        },
    ]
}

/// Every cell of a scenario's matrix.
pub fn cells() -> Vec<Probe> {
    lab::matrix(NAMES.len(), &SERVICES)
}

/// The trace of one cell's packet: workload to workload by name.
pub fn trace(model: &Model, p: &Probe) -> Trace {
    let name = |i: usize| format!("{}/{}", if i == D { "lab" } else { "shop" }, NAMES[i]);
    let (protocol, port) = match p.service {
        Service::Tcp(port) => ("TCP", port),
        Service::Udp(port) => ("UDP", port),
        Service::Icmp if p.family == lab::Family::V6 => ("ICMPv6", 0),
        Service::Icmp => ("ICMP", 0),
    };
    let query = Query {
        src: End::Endpoint(name(p.from)),
        dst: End::Endpoint(name(p.to)),
        protocol: protocol.parse().expect("a protocol name"),
        port,
        family: Some(match p.family {
            lab::Family::V4 => Family::V4,
            lab::Family::V6 => Family::V6,
        }),
    };
    policy::trace(model, &query).unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

/// The base endpoints and a scenario's policies as a model.
pub fn scenario_model(policies: &str, c_role: &str) -> Model {
    let yaml = format!("{}{policies}", endpoints(c_role));
    model(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}
