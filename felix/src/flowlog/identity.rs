//! Who an address is, for flow logs: a workload or host endpoint of the
//! policy model by its addresses, else the network set with the longest
//! matching net, else the public or private network. An endpoint that
//! leaves the model is remembered for [`REMEMBER`], so that its last
//! connections are still logged under its name.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use flows::log::{Endpoint, EndpointKind};
use ipnet::IpNet;

/// How long a removed endpoint's identity is kept.
pub const REMEMBER: Duration = Duration::from_secs(120);

/// The identities of one model's addresses.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    endpoints: BTreeMap<IpAddr, Endpoint>,
    /// Network sets' nets, longest first.
    nets: Vec<(IpNet, Endpoint)>,
    /// Endpoints no longer in the model, with when they left (seconds).
    gone: BTreeMap<IpAddr, (Endpoint, u64)>,
}

/// `ns/name` split, for workloads; host endpoints and global sets have no
/// namespace.
fn split(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("", name))
}

impl Identities {
    /// The identities of `model`'s endpoints and network sets; `previous`
    /// hands over the endpoints that left, as of `now` (seconds).
    pub fn new(model: &policy::Model, previous: Option<&Identities>, now: u64) -> Identities {
        let mut endpoints = BTreeMap::new();
        for e in &model.endpoints {
            let (namespace, _) = split(&e.name);
            let name = &e.display;
            let kind = match e.kind {
                policy::model::EndpointKind::Workload => EndpointKind::Workload,
                policy::model::EndpointKind::Host => EndpointKind::HostEndpoint,
            };
            let identity = Endpoint {
                kind,
                namespace: namespace.to_string(),
                name: name.clone(),
                labels: e.labels.clone(),
            };
            for net in &e.addrs {
                endpoints.insert(net.addr(), identity.clone());
            }
        }
        let mut nets: Vec<(IpNet, Endpoint)> = model
            .network_sets
            .iter()
            .flat_map(|s| {
                let (namespace, name) = split(&s.name);
                let identity = Endpoint {
                    kind: EndpointKind::NetworkSet,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    labels: s.labels.clone(),
                };
                s.nets.iter().map(move |n| (*n, identity.clone()))
            })
            .collect();
        nets.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        let mut gone = BTreeMap::new();
        if let Some(previous) = previous {
            let forget_before = now.saturating_sub(REMEMBER.as_secs());
            gone.extend(
                (previous.gone.iter())
                    .filter(|(a, (_, at))| *at >= forget_before && !endpoints.contains_key(*a))
                    .map(|(a, e)| (*a, e.clone())),
            );
            for (addr, e) in &previous.endpoints {
                if !endpoints.contains_key(addr) {
                    gone.entry(*addr).or_insert((e.clone(), now));
                }
            }
        }
        Identities {
            endpoints,
            nets,
            gone,
        }
    }

    /// Who `addr` is.
    pub fn of(&self, addr: IpAddr) -> Endpoint {
        if let Some(e) = self
            .endpoints
            .get(&addr)
            .or(self.gone.get(&addr).map(|(e, _)| e))
        {
            return e.clone();
        }
        if let Some((_, set)) = self.nets.iter().find(|(n, _)| n.contains(&addr)) {
            return set.clone();
        }
        Endpoint::network(is_private(addr))
    }
}

/// Private, loopback and link-local ranges (RFC 1918, 6598, 4193, ...).
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(a) => {
            let s = a.segments()[0];
            a.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> policy::Model {
        let resources = api::parse_documents("test", yaml).unwrap();
        policy::Model::from_resources(&resources, policy::Config::default()).unwrap()
    }

    const SHOP: &str = "
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: caliweb, ipNetworks: [10.65.0.2/32]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [198.51.100.0/24, 198.51.0.0/16]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: office, namespace: shop}
spec: {nets: [198.51.100.128/25]}
";

    #[test]
    fn addresses_are_endpoints_then_the_closest_network_set_then_a_network() {
        let ids = Identities::new(&model(SHOP), None, 0);
        let web = ids.of("10.65.0.2".parse().unwrap());
        assert_eq!(
            (web.kind, web.namespace.as_str(), web.name.as_str()),
            (EndpointKind::Workload, "shop", "web")
        );
        assert_eq!(web.labels.get("app").map(String::as_str), Some("web"));
        let office = ids.of("198.51.100.200".parse().unwrap());
        assert_eq!(
            (office.kind, office.namespace.as_str(), office.name.as_str()),
            (EndpointKind::NetworkSet, "shop", "office")
        );
        assert_eq!(ids.of("198.51.7.1".parse().unwrap()).name, "partners");
        assert_eq!(ids.of("10.9.9.9".parse().unwrap()), Endpoint::network(true));
        assert_eq!(ids.of("8.8.8.8".parse().unwrap()), Endpoint::network(false));
        assert_eq!(ids.of("fd00::1".parse().unwrap()).name, "pvt");
    }

    #[test]
    fn a_removed_endpoint_keeps_its_name_for_a_while() {
        let before = Identities::new(&model(SHOP), None, 0);
        let empty = model("");
        let after = Identities::new(&empty, Some(&before), 100);
        assert_eq!(after.of("10.65.0.2".parse().unwrap()).name, "web");
        let later = Identities::new(&empty, Some(&after), 100 + REMEMBER.as_secs() + 1);
        assert_eq!(later.of("10.65.0.2".parse().unwrap()).name, "pvt");
    }
}
