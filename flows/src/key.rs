//! [`FlowKey`]: what makes connections the same flow, as Goldmane keys
//! them (both ends' kind, namespace and name, the destination port and
//! service, the protocol, the reporter, the action and the policy trace),
//! and [`Labels`], the labels every contributing endpoint shared.

use std::sync::Arc;

use crate::log::{Action, EndpointKind, FlowLog, PolicyTrace, Reporter};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub source: Peer,
    pub dest: Peer,
    pub dest_port: u16,
    pub dest_service: Option<crate::log::Service>,
    /// "tcp", "udp", "icmp", "icmp6", "sctp", … or the protocol number.
    pub protocol: String,
    pub reporter: Reporter,
    pub action: Action,
    pub policies: PolicyTrace,
}

/// One end of a flow, without its labels (they are not part of the key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    pub kind: EndpointKind,
    pub namespace: String,
    pub name: String,
}

impl FlowKey {
    pub fn of(log: &FlowLog) -> FlowKey {
        let peer = |e: &crate::log::Endpoint| Peer {
            kind: e.kind,
            namespace: e.namespace.clone(),
            name: e.name.clone(),
        };
        FlowKey {
            source: peer(&log.source),
            dest: peer(&log.dest),
            dest_port: log.tuple.dest_port,
            dest_service: log.dest_service.clone(),
            protocol: protocol_name(log.tuple.protocol),
            reporter: log.reporter,
            action: log.action,
            policies: log.policies.clone(),
        }
    }
}

/// The protocol's name as Calico's felix writes it, else its number.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".to_owned(),
        4 => "ipip".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        50 => "esp".to_owned(),
        58 => "icmp6".to_owned(),
        132 => "sctp".to_owned(),
        n => n.to_string(),
    }
}

/// Sorted, distinct `key=value` strings, shared between the buckets of a
/// flow while they agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(Arc<[String]>);

impl Labels {
    pub fn of(labels: &std::collections::BTreeMap<String, String>) -> Labels {
        // A BTreeMap iterates in key order, so `k=v` strings come sorted
        // unless a key is a prefix of another followed by a byte below '='.
        let mut flat: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        flat.sort();
        Labels(flat.into())
    }

    pub fn from_sorted(mut flat: Vec<String>) -> Labels {
        flat.sort();
        flat.dedup();
        Labels(flat.into())
    }

    /// The labels both have.
    pub fn intersect(&self, other: &Labels) -> Labels {
        if Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0 {
            return self.clone();
        }
        let common: Vec<String> = self
            .0
            .iter()
            .filter(|l| other.0.binary_search(l).is_ok())
            .cloned()
            .collect();
        Labels(common.into())
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Labels::of(&map)
    }

    #[test]
    fn labels_are_key_equals_value_sorted() {
        let l = labels(&[("app", "web"), ("app-tier", "a"), ("a", "1")]);
        assert_eq!(l.as_slice(), ["a=1", "app-tier=a", "app=web"]);
    }

    #[test]
    fn intersection_keeps_the_labels_both_have() {
        let a = labels(&[("app", "web"), ("env", "prod"), ("v", "1")]);
        let b = labels(&[("app", "web"), ("v", "2")]);
        assert_eq!(a.intersect(&b).as_slice(), ["app=web"]);
        assert_eq!(
            a.intersect(&Labels::default()).as_slice(),
            [] as [String; 0]
        );
    }

    #[test]
    fn known_protocols_have_felixs_names_others_their_number() {
        assert_eq!(protocol_name(6), "tcp");
        assert_eq!(protocol_name(58), "icmp6");
        assert_eq!(protocol_name(47), "47");
    }
}
