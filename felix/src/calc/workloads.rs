//! Local workloads: each WorkloadEndpoint on this node becomes a
//! [`WorkloadIface`] (its host-side veth) and a `/32` (`/128`) route per
//! address out of that veth.
//!
//! A local endpoint felix cannot program safely is left out entirely (no
//! interface, no route, not in the policy model), so its veth, claimed by no
//! endpoint, drops everything: no interface name, a name without the
//! workload prefix (the ruleset would never see its traffic), an invalid
//! name, or a name another local endpoint also claims (both are left out:
//! which one owns the veth is unknown). Addresses that are not host
//! addresses (`/32`, `/128`) are dropped from any endpoint, local or not,
//! before the policy model sees them.

use std::collections::{BTreeMap, BTreeSet};

use api::{Cidr, Kind};
use ipnet::IpNet;

use super::inputs::Inputs;
use super::problems::{ProblemKind, Problems, subject};
use super::settings::MAX_INTERFACE_NAME;
use crate::state::{Route, RouteTarget, WorkloadIface};

/// What the calculation makes of the WorkloadEndpoints.
#[derive(Debug, Default)]
pub(super) struct Workloads {
    /// This node's workloads, by interface name.
    pub local: BTreeMap<String, WorkloadIface>,
    /// Datastore keys of local endpoints left out of everything.
    pub skipped: BTreeSet<String>,
    /// Datastore keys of endpoints (any node) with bad addresses, and the
    /// addresses to keep.
    pub cleaned: BTreeMap<String, Vec<Cidr>>,
}

impl Workloads {
    pub(super) fn read(
        inputs: &Inputs<'_>,
        node: &str,
        prefix: &str,
        problems: &mut Problems,
    ) -> Workloads {
        let mut out = Workloads::default();
        let mut by_iface: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for &(key, w) in &inputs.workloads {
            let local = w.spec.node == node;
            let who = subject(Kind::WorkloadEndpoint, &w.metadata);
            let mut addrs = Vec::new();
            for (i, c) in w.spec.ip_networks.iter().enumerate() {
                if c.0.prefix_len() == c.0.max_prefix_len() {
                    addrs.push(c.0);
                } else {
                    problems.add(
                        ProblemKind::Skipped,
                        &who,
                        &format!("spec.ipNetworks[{i}]"),
                        format!("{c} is not a host address (/32 or /128); ignored"),
                    );
                }
            }
            if addrs.len() != w.spec.ip_networks.len() {
                out.cleaned
                    .insert(key.to_string(), addrs.iter().map(|a| Cidr(*a)).collect());
            }
            if !local {
                continue;
            }
            let iface = w.spec.interface_name.as_str();
            let bad_name = if iface.is_empty() {
                Some("is empty".to_string())
            } else if !iface.starts_with(prefix) {
                Some(format!(
                    "{iface:?} does not start with the workload prefix {prefix:?}"
                ))
            } else if iface.len() > MAX_INTERFACE_NAME
                || !iface
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                Some(format!("{iface:?} is not a valid interface name"))
            } else {
                None
            };
            if let Some(why) = bad_name {
                problems.add(
                    ProblemKind::Skipped,
                    &who,
                    "spec.interfaceName",
                    format!("{why}; endpoint not programmed"),
                );
                out.skipped.insert(key.to_string());
                continue;
            }
            by_iface.entry(iface).or_default().push(key);
            out.local.insert(
                iface.to_string(),
                WorkloadIface {
                    name: iface.to_string(),
                    endpoint: w.metadata.display_name(),
                    addrs,
                    shaping: w
                        .spec
                        .qos_controls
                        .as_ref()
                        .map_or_else(Default::default, |q| crate::state::Shaping {
                            ingress: q.ingress(),
                            egress: q.egress(),
                        }),
                },
            );
        }
        for (iface, keys) in by_iface.into_iter().filter(|(_, k)| k.len() > 1) {
            problems.add(
                ProblemKind::Skipped,
                format!("WorkloadEndpoints {}", keys.join(", ")),
                "spec.interfaceName",
                format!("all claim interface {iface:?}; none is programmed"),
            );
            out.local.remove(iface);
            out.skipped.extend(keys.iter().map(|k| k.to_string()));
        }
        out
    }
}

/// One route per local workload address out of its veth. An address two
/// local workloads claim goes to the first (by interface name).
pub(super) fn routes(
    local: &BTreeMap<String, WorkloadIface>,
    problems: &mut Problems,
) -> BTreeSet<Route> {
    let mut owner: BTreeMap<IpNet, &WorkloadIface> = BTreeMap::new();
    for w in local.values() {
        for addr in &w.addrs {
            if let Some(first) = owner.get(addr) {
                problems.add(
                    ProblemKind::Skipped,
                    format!("WorkloadEndpoint {}", w.endpoint),
                    "spec.ipNetworks",
                    format!(
                        "{addr} is also workload {}'s; routed to that one",
                        first.endpoint
                    ),
                );
            } else {
                owner.insert(*addr, w);
            }
        }
    }
    owner
        .into_iter()
        .map(|(dst, w)| Route {
            dst,
            target: RouteTarget::Interface(w.name.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calc::fixtures::{snapshot_unvalidated, workload};

    fn read(yaml: &str) -> (Workloads, BTreeSet<Route>, Vec<String>) {
        let snap = snapshot_unvalidated(yaml);
        let mut problems = Problems::default();
        let w = Workloads::read(&Inputs::read(&snap), "host-a", "cali", &mut problems);
        let routes = routes(&w.local, &mut problems);
        (w, routes, problems.into_lines())
    }

    fn route(dst: &str, iface: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            target: RouteTarget::Interface(iface.into()),
        }
    }

    #[test]
    fn local_workloads_get_an_interface_and_a_host_route_per_address() {
        let yaml = [
            workload("a", "host-a", "cali1111", &["10.0.0.1/32", "fd00::1/128"]),
            workload("b", "host-a", "cali2222", &["10.0.0.2"]),
            workload("remote", "host-b", "cali3333", &["10.0.1.1/32"]),
        ]
        .concat();
        let (w, routes, problems) = read(&yaml);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(w.local.keys().collect::<Vec<_>>(), ["cali1111", "cali2222"]);
        assert_eq!(w.local["cali1111"].endpoint, "default/a");
        assert_eq!(
            routes,
            BTreeSet::from([
                route("10.0.0.1/32", "cali1111"),
                route("fd00::1/128", "cali1111"),
                route("10.0.0.2/32", "cali2222"),
            ])
        );
    }

    #[test]
    fn endpoints_felix_cannot_program_are_left_out_with_a_problem() {
        // (interface name, expected problem text)
        let cases = [
            ("eth0", "does not start with the workload prefix"),
            ("cali0123456789abcdef", "is not a valid interface name"),
            ("\"\"", "is empty"),
        ];
        for (iface, expected) in cases {
            let (w, routes, problems) = read(&workload("a", "host-a", iface, &["10.0.0.1"]));
            assert!(w.local.is_empty() && routes.is_empty(), "{iface}");
            assert_eq!(w.skipped.len(), 1, "{iface}");
            assert!(
                problems.len() == 1 && problems[0].contains(expected),
                "{iface}: {problems:?}"
            );
            assert!(problems[0].starts_with("WorkloadEndpoint default/a: spec.interfaceName"));
        }
    }

    #[test]
    fn two_endpoints_claiming_one_interface_are_both_left_out() {
        let yaml = [
            workload("a", "host-a", "cali1", &["10.0.0.1"]),
            workload("b", "host-a", "cali1", &["10.0.0.2"]),
            workload("c", "host-a", "cali2", &["10.0.0.3"]),
        ]
        .concat();
        let (w, routes, problems) = read(&yaml);
        assert_eq!(w.local.keys().collect::<Vec<_>>(), ["cali2"]);
        assert_eq!(routes, BTreeSet::from([route("10.0.0.3/32", "cali2")]));
        assert_eq!(w.skipped.len(), 2);
        assert!(
            problems[0].contains("all claim interface \"cali1\""),
            "{problems:?}"
        );
    }

    #[test]
    fn an_address_two_workloads_claim_is_routed_to_the_first() {
        let yaml = [
            workload("a", "host-a", "cali1", &["10.0.0.1"]),
            workload("b", "host-a", "cali2", &["10.0.0.1", "10.0.0.2"]),
        ]
        .concat();
        let (_, routes, problems) = read(&yaml);
        assert_eq!(
            routes,
            BTreeSet::from([route("10.0.0.1/32", "cali1"), route("10.0.0.2/32", "cali2")])
        );
        assert!(problems[0].contains("default/b") && problems[0].contains("default/a"));
    }

    #[test]
    fn addresses_that_are_not_host_addresses_are_dropped_from_any_endpoint() {
        let snap = snapshot_unvalidated(
            &[
                workload("a", "host-a", "cali1", &["10.0.0.1", "10.9.0.0/24"]),
                workload("r", "host-b", "cali9", &["10.0.1.1", "10.9.0.0/24"]),
            ]
            .concat(),
        );
        let mut problems = Problems::default();
        let w = Workloads::read(&Inputs::read(&snap), "host-a", "cali", &mut problems);
        assert_eq!(
            w.local["cali1"].addrs,
            ["10.0.0.1/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(w.cleaned.len(), 2);
        assert!(w.cleaned.values().all(|c| c.len() == 1));
        let problems = problems.into_lines();
        assert!(problems[0].contains("spec.ipNetworks[1]: 10.9.0.0/24 is not a host address"));
    }
}
