//! What the container side of a workload's veth must hold, and the check of
//! what the kernel holds against it (pure).
//!
//! As Calico sets it up: each address as a host route (`/32`, `/128`); for
//! IPv4 a link-scope route to 169.254.1.1, a default route via 169.254.1.1
//! `onlink` and a permanent neighbour 169.254.1.1 → `ee:ee:ee:ee:ee:ee`; for
//! IPv6 a default route via `fe80::ecee:eeff:feee:eeee` (the host side's
//! link-local address, from its fixed MAC). Felix, not the plugin, sets the
//! host side's sysctls and the route to the workload.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::workload::host_route;

/// The MAC of every host-side veth.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The IPv4 gateway every workload uses.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The IPv6 gateway: the link-local address of [`HOST_MAC`].
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// `aa:bb:...` text of a MAC.
pub fn mac_text(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A route in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlannedRoute {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// `onlink` (the gateway is not in any of the interface's subnets).
    pub onlink: bool,
}

/// The container side of the veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub addresses: Vec<IpNet>,
    pub routes: Vec<PlannedRoute>,
    /// Permanent neighbour entries, all to [`HOST_MAC`].
    pub neighbours: Vec<IpAddr>,
}

/// What the container side was found to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerObserved {
    pub up: bool,
    pub mac: String,
    pub addresses: Vec<IpNet>,
    pub routes: Vec<PlannedRoute>,
    /// Permanent entries with their MAC.
    pub neighbours: Vec<(IpAddr, String)>,
}

/// What the host side was found to hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostObserved {
    pub up: bool,
    pub mac: String,
}

impl ContainerPlan {
    /// The plan for the workload's addresses.
    pub fn new(addresses: &[IpNet]) -> ContainerPlan {
        let addresses: Vec<IpNet> = addresses.iter().map(|a| host_route(*a)).collect();
        let mut routes = Vec::new();
        let mut neighbours = Vec::new();
        if addresses.iter().any(|a| matches!(a, IpNet::V4(_))) {
            routes.push(PlannedRoute {
                dst: IpNet::from(IpAddr::V4(GATEWAY_V4)),
                gateway: None,
                onlink: false,
            });
            routes.push(PlannedRoute {
                dst: "0.0.0.0/0".parse().expect("valid"),
                gateway: Some(GATEWAY_V4.into()),
                onlink: true,
            });
            neighbours.push(GATEWAY_V4.into());
        }
        if addresses.iter().any(|a| matches!(a, IpNet::V6(_))) {
            routes.push(PlannedRoute {
                dst: "::/0".parse().expect("valid"),
                gateway: Some(GATEWAY_V6.into()),
                onlink: false,
            });
        }
        ContainerPlan {
            addresses,
            routes,
            neighbours,
        }
    }

    /// Every difference between the plan and what was found, in words;
    /// empty when all is in place. Extra addresses and routes the kernel
    /// adds by itself (IPv6 link-local) are not differences.
    pub fn check(
        &self,
        ifname: &str,
        host: &str,
        found: &ContainerObserved,
        host_found: &HostObserved,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        if !found.up {
            problems.push(format!("{ifname} in the container is down"));
        }
        if !host_found.up {
            problems.push(format!("host veth {host} is down"));
        }
        if host_found.mac != mac_text(&HOST_MAC) {
            problems.push(format!(
                "host veth {host} has MAC {}, expected {}",
                host_found.mac,
                mac_text(&HOST_MAC)
            ));
        }
        for a in &self.addresses {
            if !found.addresses.contains(a) {
                problems.push(format!("{ifname} lacks address {a}"));
            }
        }
        for a in &found.addresses {
            let link_local =
                matches!(a, IpNet::V6(v6) if v6.addr().segments()[0] & 0xffc0 == 0xfe80);
            if !link_local && !self.addresses.contains(a) {
                problems.push(format!("{ifname} has unexpected address {a}"));
            }
        }
        for r in &self.routes {
            if !found.routes.contains(r) {
                let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                problems.push(format!("route {}{via} on {ifname} is missing", r.dst));
            }
        }
        for n in &self.neighbours {
            let want = mac_text(&HOST_MAC);
            if !found
                .neighbours
                .iter()
                .any(|(ip, mac)| ip == n && *mac == want)
            {
                problems.push(format!(
                    "permanent neighbour {n} -> {want} on {ifname} is missing"
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(plan: &ContainerPlan) -> (ContainerObserved, HostObserved) {
        (
            ContainerObserved {
                up: true,
                mac: "aa:bb:cc:dd:ee:ff".into(),
                addresses: plan.addresses.clone(),
                routes: plan.routes.clone(),
                neighbours: plan
                    .neighbours
                    .iter()
                    .map(|n| (*n, mac_text(&HOST_MAC)))
                    .collect(),
            },
            HostObserved {
                up: true,
                mac: "ee:ee:ee:ee:ee:ee".into(),
            },
        )
    }

    #[test]
    fn ipv4_plan_has_host_address_gateway_routes_and_neighbour() {
        let plan = ContainerPlan::new(&["10.65.0.7/26".parse().unwrap()]);
        assert_eq!(plan.addresses, ["10.65.0.7/32".parse::<IpNet>().unwrap()]);
        assert_eq!(plan.routes.len(), 2);
        assert!(plan.routes[1].onlink);
        assert_eq!(plan.neighbours, [IpAddr::from(GATEWAY_V4)]);
    }

    #[test]
    fn gateway_v6_is_the_link_local_address_of_the_host_mac() {
        assert_eq!(GATEWAY_V6.to_string(), "fe80::ecee:eeff:feee:eeee");
        let plan = ContainerPlan::new(&["fd00::5/122".parse().unwrap()]);
        assert_eq!(plan.addresses[0].to_string(), "fd00::5/128");
        assert_eq!(plan.routes[0].gateway, Some(GATEWAY_V6.into()));
    }

    #[test]
    fn check_passes_what_the_plan_describes_and_names_each_difference() {
        let plan = ContainerPlan::new(&[
            "10.65.0.7/32".parse().unwrap(),
            "fd00::5/128".parse().unwrap(),
        ]);
        let (mut c, mut h) = good(&plan);
        c.addresses.push("fe80::1/64".parse().unwrap());
        assert!(plan.check("eth0", "caliX", &c, &h).is_empty());
        c.routes.remove(1);
        c.neighbours.clear();
        h.mac = "02:00:00:00:00:01".into();
        let problems = plan.check("eth0", "caliX", &c, &h);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[1].contains("0.0.0.0/0 via 169.254.1.1"),
            "{problems:?}"
        );
    }
}
