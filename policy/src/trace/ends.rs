//! The two ends of a traced packet: which endpoint each is (by name, or by
//! the address an endpoint holds), where the packet enters and leaves the
//! host, and so the packet the ruleset sees.
//!
//! ```text
//! workload  -> workload   forward  iif cali-src  oif cali-dst
//! workload  -> outside    forward  iif cali-src  oif outside
//! outside   -> workload   forward  iif outside   oif cali-dst
//! workload  -> host       input    iif cali-src
//! outside   -> host       input    iif <host endpoint's interface>
//! host      -> anywhere   output   oif <the workload's, or the host endpoint's, interface>
//! ```

use std::net::IpAddr;

use super::{End, Query, TraceError};
use crate::ir::{Family, Hook};
use crate::model::{ALL_INTERFACES, Endpoint, EndpointKind, Model};
use crate::simulate::Packet;

/// The interface traffic from or to outside the host's endpoints uses.
pub const OUTSIDE: &str = "outside";

/// One end, resolved against the model.
#[derive(Debug, Clone)]
pub struct Resolved<'m> {
    /// The endpoint it is, if any.
    pub endpoint: Option<&'m Endpoint>,
    pub addr: IpAddr,
    /// Whether its policy is enforced on this host (it gets chains here).
    pub local: bool,
}

impl Resolved<'_> {
    /// The interface its traffic uses here: its own, or [`OUTSIDE`].
    fn iface(&self) -> &str {
        match self.endpoint.and_then(|e| e.interface.as_deref()) {
            Some(i) if self.local && i != ALL_INTERFACES => i,
            _ => OUTSIDE,
        }
    }

    fn kind(&self) -> Option<EndpointKind> {
        self.endpoint.filter(|_| self.local).map(|e| e.kind)
    }
}

/// Both ends and the packet from one to the other.
#[derive(Debug, Clone)]
pub struct Plan<'m> {
    pub src: Resolved<'m>,
    pub dst: Resolved<'m>,
    pub packet: Packet,
}

/// Resolves the query's ends and makes its packet.
pub fn plan<'m>(model: &'m Model, query: &Query) -> Result<Plan<'m>, TraceError> {
    let family = family(model, query)?;
    let src = resolve(model, &query.src, family, Role::Source)?;
    let dst = resolve(model, &query.dst, family, Role::Destination)?;
    let packet = packet(&src, &dst, query);
    Ok(Plan { src, dst, packet })
}

/// The plan's packet as if its source were outside the host: what the
/// destination's ingress decides on its own.
pub fn packet_alone(plan: &Plan<'_>, query: &Query) -> Packet {
    let outside = Resolved {
        local: false,
        ..plan.src.clone()
    };
    packet(&outside, &plan.dst, query)
}

fn packet(src: &Resolved<'_>, dst: &Resolved<'_>, query: &Query) -> Packet {
    let (hook, iif, oif) = match (src.kind(), dst.kind()) {
        (Some(EndpointKind::Host), _) => (Hook::Output, None, Some(dst_or_src_iface(src, dst))),
        (_, Some(EndpointKind::Host)) => (Hook::Input, Some(src_or_dst_iface(src, dst)), None),
        _ => (Hook::Forward, Some(src.iface()), Some(dst.iface())),
    };
    let mut packet = Packet::new(
        hook,
        src.addr,
        dst.addr,
        query.protocol.number(),
        query.port,
    );
    packet.iif = iif.map(str::to_string);
    packet.oif = oif.map(str::to_string);
    packet
}

/// Traffic the host sends leaves by the destination workload's interface,
/// else by the source host endpoint's.
fn dst_or_src_iface<'a>(src: &'a Resolved<'_>, dst: &'a Resolved<'_>) -> &'a str {
    match dst.kind() {
        Some(EndpointKind::Workload) => dst.iface(),
        _ => src.iface(),
    }
}

/// Traffic for the host comes in by the source workload's interface, else
/// by the destination host endpoint's.
fn src_or_dst_iface<'a>(src: &'a Resolved<'_>, dst: &'a Resolved<'_>) -> &'a str {
    match src.kind() {
        Some(EndpointKind::Workload) => src.iface(),
        _ => dst.iface(),
    }
}

/// The query's family: given, else that of an address end, else IPv4 when
/// both ends have an IPv4 address, else IPv6.
fn family(model: &Model, query: &Query) -> Result<Family, TraceError> {
    let fixed = [&query.src, &query.dst].into_iter().find_map(|e| match e {
        End::Addr(a) => Some(Family::of_addr(*a)),
        End::Endpoint(_) => None,
    });
    if let (Some(want), Some(fixed)) = (query.family, fixed)
        && want != fixed
    {
        return Err(TraceError::Family(format!(
            "an IPv{} address in an IPv{} trace",
            fixed.number(),
            want.number()
        )));
    }
    if let Some(f) = query.family.or(fixed) {
        return Ok(f);
    }
    let has_v4 = |end: &End| match end {
        End::Endpoint(name) => {
            find(model, name).is_some_and(|e| e.addrs.iter().any(|a| Family::of(a) == Family::V4))
        }
        End::Addr(_) => true,
    };
    Ok(if has_v4(&query.src) && has_v4(&query.dst) {
        Family::V4
    } else {
        Family::V6
    })
}

/// The endpoint named `name`: by its endpoint name, else a workload by
/// `ns/pod` (the name flow logs show), if only one has it.
fn find<'m>(model: &'m Model, name: &str) -> Option<&'m Endpoint> {
    if let Some(e) = model.endpoints.iter().find(|e| e.name == name) {
        return Some(e);
    }
    let (ns, pod) = name.split_once('/')?;
    let mut pods = model.endpoints.iter().filter(|e| {
        e.kind == crate::model::EndpointKind::Workload
            && e.display == pod
            && e.name.split_once('/').is_some_and(|(n, _)| n == ns)
    });
    let first = pods.next()?;
    pods.next().is_none().then_some(first)
}

fn resolve<'m>(
    model: &'m Model,
    which: &End,
    family: Family,
    end: Role,
) -> Result<Resolved<'m>, TraceError> {
    let (endpoint, addr) = match which {
        End::Endpoint(name) => {
            let ep = find(model, name).ok_or_else(|| TraceError::UnknownEndpoint {
                end,
                name: name.clone(),
            })?;
            let addr = (ep.addrs.iter())
                .find(|a| Family::of(a) == family)
                .map(|a| a.addr())
                .ok_or_else(|| TraceError::NoAddress {
                    end,
                    name: name.clone(),
                    family: family.number(),
                })?;
            (Some(ep), addr)
        }
        End::Addr(addr) => {
            let ep = (model.endpoints.iter()).find(|e| e.addrs.iter().any(|n| n.contains(addr)));
            (ep, *addr)
        }
    };
    let local = endpoint.is_some_and(|e| model.is_local(e) && e.interface.is_some());
    Ok(Resolved {
        endpoint,
        addr,
        local,
    })
}

/// Which end a hypothetical endpoint stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Destination,
}

/// A workload endpoint that stands for "a pod with these labels in this
/// namespace" (a label set given for an end): named `trace-src` or
/// `trace-dst` in `namespace`, at a documentation address (192.0.2.1/.2,
/// 2001:db8::1/::2), on `node`, with the namespace's profile `kns.<ns>` when
/// `resources` hold one (as Calico gives every pod). Add it to the resources
/// the model is built from; trace it as [`End::Endpoint`] of the name returned.
pub fn hypothetical(
    resources: &[api::Resource],
    role: Role,
    namespace: &str,
    labels: &[(String, String)],
    node: Option<&str>,
) -> Result<(api::Resource, String), String> {
    let (name, i) = match role {
        Role::Source => ("trace-src", 1),
        Role::Destination => ("trace-dst", 2),
    };
    let profile = format!("kns.{namespace}");
    let has_profile = resources
        .iter()
        .any(|r| matches!(r, api::Resource::Profile(p) if p.metadata.name == profile));
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}: {}", json(k), json(v)))
        .collect();
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n\
         metadata: {{name: {name}, namespace: {}, labels: {{{}}}}}\n\
         spec:\n  orchestrator: k8s\n  node: {}\n  interfaceName: cali{name}\n  \
         ipNetworks: [192.0.2.{i}/32, \"2001:db8::{i}/128\"]\n  profiles: [{}]\n",
        json(namespace),
        labels.join(", "),
        json(node.unwrap_or("trace")),
        if has_profile {
            json(&profile)
        } else {
            String::new()
        },
    );
    let mut parsed = api::parse_documents("label set", &yaml).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        lines.join("; ")
    })?;
    let resource = parsed.pop().ok_or("no endpoint made of the label set")?;
    Ok((resource, format!("{namespace}/{name}")))
}

/// A YAML scalar (JSON is YAML).
fn json(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The protocol's name for people (`tcp`, `icmp`, `47`).
pub fn protocol_name(number: u8) -> String {
    match number {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        n => n.to_string(),
    }
}
