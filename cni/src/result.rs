//! The CNI result as the plugins hold it (the shape of spec 1.0.0, unchanged
//! in 1.1.0): interfaces, IPs with the index of their interface, routes and
//! DNS; read from `prevResult` and from a delegated IPAM plugin, written on
//! ADD (pure). Its `cniVersion` and the other versions' formats are
//! [`version`](crate::version)'s.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A plugin's result. Unknown fields of other plugins' results are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
}

/// An interface the plugins created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The network namespace path, for interfaces inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1 fields (mtu, priority, table, scope, ...), kept as given.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

impl CniResult {
    /// `prev` (the chain's result so far) followed by `self`: interfaces
    /// appended, our IPs' interface indices shifted to match, routes
    /// appended, DNS kept from `prev` unless we have some.
    pub fn after(mut self, prev: Option<&CniResult>) -> CniResult {
        let Some(prev) = prev else { return self };
        let offset = prev.interfaces.len();
        for ip in &mut self.ips {
            ip.interface = ip.interface.map(|i| i + offset);
        }
        let mut out = prev.clone();
        out.interfaces.extend(self.interfaces);
        out.ips.extend(self.ips);
        out.routes.extend(self.routes);
        if self.dns.is_some() {
            out.dns = self.dns;
        }
        out
    }

    /// The IPs that belong to the container interface `ifname` in `netns`.
    pub fn container_ips(&self, ifname: &str) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| {
                ip.interface
                    .and_then(|i| self.interfaces.get(i))
                    .is_some_and(|i| i.name == ifname && i.sandbox.is_some())
            })
            .map(|ip| ip.address)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn our_result_after_the_loopback_result_shifts_interface_indices() {
        let lo: CniResult = serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": "/run/netns/c"}],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}],
            "dns": {}
        }))
        .unwrap();
        let ours: CniResult = serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"}, {"name": "eth0", "sandbox": "/run/netns/c"}],
            "ips": [{"interface": 1, "address": "10.65.0.1/32"}],
            "routes": [{"dst": "0.0.0.0/0"}]
        }))
        .unwrap();
        let merged = ours.after(Some(&lo));
        assert_eq!(merged.interfaces.len(), 3);
        assert_eq!(merged.ips[1].interface, Some(2));
        assert_eq!(
            merged.container_ips("eth0"),
            ["10.65.0.1/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(merged.dns, Some(json!({})));
        let text = serde_json::to_value(&merged).unwrap();
        assert_eq!(text["routes"], json!([{"dst": "0.0.0.0/0"}]));
    }
}
