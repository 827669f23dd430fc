//! The compiler's input: tiers holding their policies, profiles, endpoints and
//! network sets, each with Calico's defaults applied, selectors scoped and
//! labels resolved, built from `api` resources by [`Model::from_resources`].
//!
//! # Labels
//!
//! Selectors are evaluated over an endpoint's (or network set's) *effective
//! labels*, built once here, each layer overriding the one before:
//!
//! 1. `pcns.projectcalico.org/name: <ns>` for namespaced resources, and the
//!    `labelsToApply` of the profile `kns.<ns>` if it exists (Calico's
//!    kube-controllers write a namespace's labels there, prefixed `pcns.`);
//! 2. for workloads with a service account, `labelsToApply` of the profile
//!    `ksa.<ns>.<sa>` if it exists (`pcsa.`-prefixed service-account labels);
//! 3. `labelsToApply` of each profile the endpoint lists, earlier profiles winning;
//! 4. `projectcalico.org/namespace`, `projectcalico.org/orchestrator` and
//!    `projectcalico.org/serviceaccount` where known;
//! 5. the resource's own labels.
//!
//! # Selector scoping (as libcalico-go's rule conversion)
//!
//! - A NetworkPolicy selects `projectcalico.org/namespace == "<ns>" && (selector)`.
//!   A GlobalNetworkPolicy's `namespaceSelector` is `pcns.`-prefixed and ANDed
//!   in (`all()` there meaning "any namespaced endpoint", `global()` "any
//!   non-namespaced one"). A `serviceAccountSelector` is `pcsa.`-prefixed and ANDed.
//! - In a rule, the entity's selector is `(serviceAccounts) && (selector)`; its
//!   namespace part is the prefixed `namespaceSelector` if given, else (in a
//!   NetworkPolicy) `projectcalico.org/namespace == "<ns>"`. The namespace part
//!   is ANDed in only when the entity has a selector, a notSelector, service
//!   accounts or a namespaceSelector, so a namespaced rule with only `nets`
//!   matches any address. `notSelector` is never scoped.
//!
//! # Host endpoint stages
//!
//! A GlobalNetworkPolicy's `doNotTrack`, `preDNAT` and `applyOnForward` are
//! kept as [`Policy::stage`] and [`Policy::apply_on_forward`]; the compiler
//! enforces untracked and pre-DNAT policies, and the forwarded-traffic part
//! of `applyOnForward` ones, on host endpoints only (see
//! [`compile`](crate::compile())). On workloads only [`Stage::Normal`] policies
//! apply. A host endpoint with `interfaceName: "*"` ([`ALL_INTERFACES`])
//! stands for every host interface without an endpoint of its own; one per
//! node ([`ModelError::WildcardHostEndpoint`] otherwise).
//!
//! # Staged policies
//!
//! Staged kinds are converted as their enforced kinds are, but kept in
//! [`Model::staged`], outside the tiers the compiler reads (see
//! [`staged`](crate::staged)).
//!
//! # Left to later slices
//!
//! `services` matches and `http` rules are ignored.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use api::{
    Protocol, Resource,
    resources::{
        endpoints::EndpointPort,
        felix::{EndpointToHostAction, FelixConfigurationSpec, ProtoPort},
        policy::{Action, DEFAULT_TIER, EntityRule, IcmpFields, PolicyType, TierDefaultAction},
    },
    selector::{Expr, Selector},
};
use ipnet::IpNet;

use crate::failsafe;
use crate::k8s;
use crate::nat::NatOutgoing;
use crate::staged::StagedPolicy;

/// The label every namespaced endpoint carries with its namespace.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// The label carrying a workload's orchestrator (`k8s`, ...).
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
/// The label carrying a workload's service account.
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// The label (before prefixing) naming a namespace or service account.
pub const LABEL_NAME: &str = "projectcalico.org/name";
/// Prefix of namespace labels as endpoints inherit them.
pub const NAMESPACE_PREFIX: &str = "pcns.";
/// Prefix of service-account labels as endpoints inherit them.
pub const SERVICE_ACCOUNT_PREFIX: &str = "pcsa.";
/// Order of the `default` tier when no Tier resource names it (Calico's `DefaultTierOrder`).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// Why resources cannot become a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A policy is in a tier no Tier resource defines.
    #[error("policy {policy}: tier {tier:?} does not exist")]
    MissingTier { policy: String, tier: String },
    /// A selector in a resource does not parse (resources from `parse_documents`
    /// are validated, so this means a hand-built resource).
    #[error("{resource}: {field}: selector {selector:?}: {error}")]
    Selector {
        resource: String,
        field: String,
        selector: String,
        error: String,
    },
    /// Two local endpoints claim one interface.
    #[error("endpoints {first} and {second} both claim interface {interface:?}")]
    DuplicateInterface {
        interface: String,
        first: String,
        second: String,
    },
    /// A local workload's interface does not start with the workload prefix, so
    /// the dispatch chains would never see its traffic.
    #[error("workload {endpoint}: interface {interface:?} does not start with {prefix:?}")]
    WorkloadPrefix {
        endpoint: String,
        interface: String,
        prefix: String,
    },
    /// A staged policy cannot become a model's, for `error` (its tier is
    /// missing, a selector does not parse).
    #[error("{kind} {name}: {error}")]
    Staged {
        kind: api::Kind,
        name: String,
        error: Box<ModelError>,
    },
    /// A second host endpoint for all interfaces (`*`) on one node.
    #[error(
        "host endpoint {endpoint}: node {node} already has an interfaceName \"*\" host endpoint, {first}"
    )]
    WildcardHostEndpoint {
        endpoint: String,
        node: String,
        first: String,
    },
}

/// What happens to traffic from a workload to the host itself once the
/// workload's egress policy allowed it (Felix's `DefaultEndpointToHostAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointToHost {
    /// Drop it (Calico's default).
    #[default]
    Drop,
    /// Accept it.
    Accept,
}

/// Settings of the host the ruleset is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The node whose endpoints get chains; `None`: every endpoint. Endpoints
    /// of other nodes still populate selector sets.
    pub node: Option<String>,
    /// Workload interfaces start with this (Felix's `InterfacePrefix`).
    pub workload_prefix: String,
    pub endpoint_to_host: EndpointToHost,
    /// Prefix of log lines written by `Log` rules (Felix's `LogPrefix`).
    pub log_prefix: String,
    /// Traffic to the host on these ports (from `net` if given) is always
    /// allowed on host endpoints (Felix's `FailsafeInboundHostPorts`); see
    /// the `failsafe` module. Calico's defaults unless configured; empty: none.
    pub failsafe_inbound: Vec<ProtoPort>,
    /// Traffic from the host to these ports (to `net` if given) is always
    /// allowed on host endpoints (Felix's `FailsafeOutboundHostPorts`).
    pub failsafe_outbound: Vec<ProtoPort>,
    /// `natOutgoing` pools: what leaves them for outside every pool is
    /// masqueraded (see the [`nat`](crate::nat) module). Default: none, and no
    /// NAT objects in the ruleset.
    pub nat_outgoing: NatOutgoing,
    /// Source NAT to this address rather than masquerade, for its family
    /// (Felix's `NATOutgoingAddress`).
    pub nat_outgoing_address: Option<IpAddr>,
    /// Rules that decide new connections log them to this NFLOG group
    /// (the [`flowlog`](crate::flowlog) module); `None`: no flow logs.
    pub flow_logs: Option<crate::flowlog::FlowLogs>,
}

impl Config {
    /// This config with the FelixConfiguration settings the compiler reads
    /// (`failsafeInboundHostPorts`, `failsafeOutboundHostPorts`,
    /// `defaultEndpointToHostAction`, `natOutgoingAddress`) taken from `spec`
    /// where it sets them.
    /// `Return` (hand the packet to the host's own rules) is [`EndpointToHost::Accept`]
    /// here: accepting in our table leaves the packet to the host's other
    /// tables, which is what `Return` means in Calico's iptables.
    pub fn with_felix(mut self, spec: &FelixConfigurationSpec) -> Config {
        if let Some(action) = &spec.default_endpoint_to_host_action {
            self.endpoint_to_host = match action {
                EndpointToHostAction::Drop => EndpointToHost::Drop,
                EndpointToHostAction::Accept | EndpointToHostAction::Return => {
                    EndpointToHost::Accept
                }
            };
        }
        if let Some(ports) = &spec.failsafe_inbound_host_ports {
            self.failsafe_inbound.clone_from(ports);
        }
        if let Some(ports) = &spec.failsafe_outbound_host_ports {
            self.failsafe_outbound.clone_from(ports);
        }
        if let Some(addr) = spec.nat_outgoing_address {
            self.nat_outgoing_address = Some(addr);
        }
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: None,
            workload_prefix: "cali".to_string(),
            endpoint_to_host: EndpointToHost::Drop,
            log_prefix: "calico-packet".to_string(),
            failsafe_inbound: failsafe::DEFAULT_INBOUND
                .iter()
                .map(|&(protocol, port)| failsafe::proto_port(protocol, port))
                .collect(),
            failsafe_outbound: failsafe::DEFAULT_OUTBOUND
                .iter()
                .map(|&(protocol, port)| failsafe::proto_port(protocol, port))
                .collect(),
            nat_outgoing: NatOutgoing::default(),
            nat_outgoing_address: None,
            flow_logs: None,
        }
    }
}

/// A tier and its policies.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    /// `None` sorts last.
    pub order: Option<f64>,
    pub default_action: TierDefaultAction,
    /// Shared, so that a [`Compiler`](crate::compile::Compiler) tells an
    /// unchanged policy by identity; edit one with `Arc::make_mut`.
    pub policies: Vec<Arc<Policy>>,
}

/// Which resource a policy came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyScope {
    /// A GlobalNetworkPolicy.
    Global,
    /// A NetworkPolicy (or a mapped Kubernetes NetworkPolicy) in this namespace.
    Namespace(String),
}

/// Where a policy is enforced: Calico's `doNotTrack` and `preDNAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stage {
    /// After conntrack and DNAT, in the filter hooks.
    #[default]
    Normal,
    /// `preDNAT`: ingress of host endpoints, new flows, before DNAT.
    PreDnat,
    /// `doNotTrack`: host endpoints, before conntrack; an allowed packet is
    /// left untracked and skips the later stages.
    Untracked,
}

/// A policy with its selector scoped and its rules normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub scope: PolicyScope,
    /// `None` sorts last.
    pub order: Option<f64>,
    /// Which endpoints the policy applies to.
    pub selector: Expr,
    pub types: Vec<PolicyType>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// Always [`Stage::Normal`] for namespaced policies.
    pub stage: Stage,
    /// `applyOnForward`: a normal policy also applies to traffic forwarded
    /// through the host endpoints it selects.
    pub apply_on_forward: bool,
}

impl Policy {
    /// `ns/name` for namespaced policies, else `name`.
    pub fn display_name(&self) -> String {
        match &self.scope {
            PolicyScope::Global => self.name.clone(),
            PolicyScope::Namespace(ns) => format!("{ns}/{}", self.name),
        }
    }

    /// The rules for one direction, if the policy applies in it.
    pub fn rules(&self, direction: PolicyType) -> Option<&[Rule]> {
        self.types.contains(&direction).then_some(match direction {
            PolicyType::Ingress => self.ingress.as_slice(),
            PolicyType::Egress => self.egress.as_slice(),
        })
    }
}

/// A profile: rules endpoints fall back on. (Its labels are already in endpoints'
/// effective labels.)
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

/// A rule with its selectors scoped.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub action: Action,
    pub ip_version: Option<u8>,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub icmp: Option<IcmpFields>,
    pub not_icmp: Option<IcmpFields>,
    pub source: Entity,
    pub destination: Entity,
}

/// One side of a rule. Every field given must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// Scoped: already ANDed with the namespace and service-account parts.
    pub selector: Option<Expr>,
    pub not_selector: Option<Expr>,
    pub ports: Vec<api::Port>,
    pub not_ports: Vec<api::Port>,
}

/// Workload or host endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointKind {
    Workload,
    Host,
}

/// An endpoint with its effective labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub kind: EndpointKind,
    /// `ns/name` for workloads, `name` for host endpoints.
    pub name: String,
    /// What flow logs call it, as Goldmane does: a workload's pod
    /// (`spec.pod`, else `spec.workload`), else its endpoint name (without
    /// the namespace).
    pub display: String,
    pub node: String,
    /// The interface policy is enforced on; `None` for a host endpoint known
    /// only by its addresses (it still populates selector sets).
    pub interface: Option<String>,
    pub addrs: Vec<IpNet>,
    pub labels: BTreeMap<String, String>,
    pub profiles: Vec<String>,
    pub ports: Vec<EndpointPort>,
    /// A workload's packet-rate and connection limits (`qosControls`).
    pub limits: Limits,
}

/// A workload's limits that the ruleset enforces, per direction: ingress
/// is traffic to it, egress traffic from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Limits {
    pub ingress: DirectionLimits,
    pub egress: DirectionLimits,
    /// The DSCP value its traffic leaving the cluster carries.
    pub dscp: Option<u8>,
}

/// The limits of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectionLimits {
    /// Packets per second, and the burst in packets.
    pub packet_rate: Option<(u64, u32)>,
    /// Connections alive at once.
    pub max_connections: Option<u32>,
}

/// Calico's packet burst when a packet rate is set without one.
pub const DEFAULT_PACKET_BURST: u32 = 5;

impl Limits {
    /// The limits of a workload's `qosControls`.
    pub fn of(q: &api::resources::qos::QosControls) -> Limits {
        let dir = |rate: u64, burst: u64, conns: u64| DirectionLimits {
            packet_rate: (rate != 0).then(|| {
                let burst = u32::try_from(burst).unwrap_or(u32::MAX);
                (
                    rate,
                    if burst == 0 {
                        DEFAULT_PACKET_BURST
                    } else {
                        burst
                    },
                )
            }),
            max_connections: (conns != 0).then(|| u32::try_from(conns).unwrap_or(u32::MAX)),
        };
        Limits {
            ingress: dir(
                q.ingress_packet_rate,
                q.ingress_packet_burst,
                q.ingress_max_connections,
            ),
            egress: dir(
                q.egress_packet_rate,
                q.egress_packet_burst,
                q.egress_max_connections,
            ),
            dscp: q.dscp_value(),
        }
    }
}

/// The `interfaceName` of a host endpoint for all of a host's interfaces
/// but workload ones (and `lo`); a host endpoint for one named interface
/// takes precedence over it on that interface.
pub const ALL_INTERFACES: &str = "*";

/// A network set with its effective labels.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSet {
    /// `ns/name` or `name`.
    pub name: String,
    pub nets: Vec<IpNet>,
    pub labels: BTreeMap<String, String>,
}

/// Everything the compiler reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    pub config: Config,
    pub tiers: Vec<Tier>,
    pub profiles: BTreeMap<String, Profile>,
    pub endpoints: Vec<Endpoint>,
    pub network_sets: Vec<NetworkSet>,
    /// Staged policies: never compiled, kept for evaluation (see the
    /// [`staged`](crate::staged) module and [`Model::with_staged_enforced`]).
    pub staged: Vec<StagedPolicy>,
}

impl Model {
    /// Whether the endpoint gets chains on this host.
    pub fn is_local(&self, endpoint: &Endpoint) -> bool {
        self.config
            .node
            .as_ref()
            .is_none_or(|node| *node == endpoint.node)
    }

    /// Builds the model from resources (kinds the compiler does not read are
    /// ignored). Resources should have their defaults applied
    /// (`parse_documents` does); policy types are inferred here too when absent.
    pub fn from_resources<R: std::borrow::Borrow<Resource>>(
        resources: &[R],
        config: Config,
    ) -> Result<Model, ModelError> {
        let mut tiers: BTreeMap<String, Tier> = BTreeMap::new();
        let mut profile_labels: ProfileLabels<'_> = BTreeMap::new();
        let mut profiles = BTreeMap::new();
        for r in resources.iter().map(R::borrow) {
            match r {
                Resource::Tier(t) => {
                    tiers.insert(
                        t.metadata.name.clone(),
                        Tier {
                            name: t.metadata.name.clone(),
                            order: t.spec.order,
                            default_action: t
                                .spec
                                .default_action
                                .unwrap_or(TierDefaultAction::Deny),
                            policies: Vec::new(),
                        },
                    );
                }
                Resource::Profile(p) => {
                    let name = &p.metadata.name;
                    profile_labels.insert(name, &p.spec.labels_to_apply);
                    profiles.insert(
                        name.clone(),
                        Profile {
                            ingress: convert_rules(name, "spec.ingress", &p.spec.ingress, None)?,
                            egress: convert_rules(name, "spec.egress", &p.spec.egress, None)?,
                        },
                    );
                }
                _ => {}
            }
        }
        tiers
            .entry(DEFAULT_TIER.to_string())
            .or_insert_with(|| Tier {
                name: DEFAULT_TIER.to_string(),
                order: Some(DEFAULT_TIER_ORDER),
                default_action: TierDefaultAction::Deny,
                policies: Vec::new(),
            });

        let mut model = Model {
            config,
            profiles,
            ..Model::default()
        };
        for r in resources.iter().map(R::borrow) {
            if let Some((tier, policy)) = enforced_policy(r)? {
                tier_named(&mut tiers, tier, &policy.display_name())?
                    .policies
                    .push(Arc::new(policy));
            } else if let Some(staged) = StagedPolicy::of(r)? {
                tier_named(
                    &mut tiers,
                    staged.tier.clone(),
                    &staged.policy.display_name(),
                )
                .map_err(|error| ModelError::Staged {
                    kind: staged.kind,
                    name: r.metadata().display_name(),
                    error: Box::new(error),
                })?;
                model.staged.push(staged);
            } else {
                match r {
                    Resource::WorkloadEndpoint(w) => {
                        model.endpoints.push(workload_endpoint(w, &profile_labels))
                    }
                    Resource::HostEndpoint(h) => {
                        let endpoint = host_endpoint(h, &profile_labels, &model.endpoints)?;
                        model.endpoints.push(endpoint);
                    }
                    Resource::NetworkSet(n) => {
                        let ns = n.metadata.namespace.as_deref().unwrap_or_default();
                        let implicit =
                            BTreeMap::from([(LABEL_NAMESPACE.to_string(), ns.to_string())]);
                        let inherited = namespace_labels(ns, &profile_labels);
                        model.network_sets.push(NetworkSet {
                            name: n.metadata.display_name(),
                            nets: n.spec.nets.iter().map(|c| c.network()).collect(),
                            labels: effective_labels(
                                inherited,
                                &[],
                                &profile_labels,
                                implicit,
                                &n.metadata.labels,
                            ),
                        });
                    }
                    Resource::GlobalNetworkSet(n) => model.network_sets.push(NetworkSet {
                        name: n.metadata.name.clone(),
                        nets: n.spec.nets.iter().map(|c| c.network()).collect(),
                        labels: n.metadata.labels.clone(),
                    }),
                    _ => {}
                }
            }
        }
        model.tiers = tiers.into_values().collect();
        model.sort();
        model.check_interfaces()?;
        Ok(model)
    }

    /// Puts tiers and policies in evaluation order (order, `None` last, then
    /// name) and endpoints and network sets by name.
    pub fn sort(&mut self) {
        fn key(order: Option<f64>) -> f64 {
            order.unwrap_or(f64::INFINITY)
        }
        self.tiers.sort_by(|a, b| {
            key(a.order)
                .total_cmp(&key(b.order))
                .then_with(|| a.name.cmp(&b.name))
        });
        for tier in &mut self.tiers {
            tier.policies.sort_by(|a, b| {
                key(a.order)
                    .total_cmp(&key(b.order))
                    .then_with(|| a.display_name().cmp(&b.display_name()))
            });
        }
        self.endpoints
            .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        self.network_sets.sort_by(|a, b| a.name.cmp(&b.name));
        self.staged.sort_by(|a, b| {
            (a.kind, a.policy.display_name()).cmp(&(b.kind, b.policy.display_name()))
        });
    }

    fn check_interfaces(&self) -> Result<(), ModelError> {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for ep in self.endpoints.iter().filter(|e| self.is_local(e)) {
            let Some(interface) = ep.interface.as_deref() else {
                continue;
            };
            if ep.kind == EndpointKind::Workload
                && !interface.starts_with(&self.config.workload_prefix)
            {
                return Err(ModelError::WorkloadPrefix {
                    endpoint: ep.name.clone(),
                    interface: interface.to_string(),
                    prefix: self.config.workload_prefix.clone(),
                });
            }
            if let Some(first) = seen.insert(interface, &ep.name) {
                return Err(ModelError::DuplicateInterface {
                    interface: interface.to_string(),
                    first: first.to_string(),
                    second: ep.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Effective labels of resources by profile name, as profiles apply them.
type ProfileLabels<'a> = BTreeMap<&'a str, &'a BTreeMap<String, String>>;

/// The tier a policy goes in; [`ModelError::MissingTier`] if none is defined.
fn tier_named<'t>(
    tiers: &'t mut BTreeMap<String, Tier>,
    tier: String,
    policy: &str,
) -> Result<&'t mut Tier, ModelError> {
    match tiers.get_mut(&tier) {
        Some(t) => Ok(t),
        None => Err(ModelError::MissingTier {
            policy: policy.to_string(),
            tier,
        }),
    }
}

/// The tier and policy of an enforced policy resource (GlobalNetworkPolicy,
/// NetworkPolicy, Kubernetes NetworkPolicy); `None` for other kinds.
pub(crate) fn enforced_policy(r: &Resource) -> Result<Option<(String, Policy)>, ModelError> {
    Ok(Some(match r {
        Resource::GlobalNetworkPolicy(p) => global_policy(p)?,
        Resource::NetworkPolicy(p) => namespaced_policy(p)?,
        Resource::KubernetesNetworkPolicy(p) => namespaced_policy(&k8s::convert(p))?,
        _ => return Ok(None),
    }))
}

/// A workload endpoint with its effective labels.
fn workload_endpoint(w: &api::WorkloadEndpoint, profile_labels: &ProfileLabels<'_>) -> Endpoint {
    let s = &w.spec;
    let ns = w.metadata.namespace.as_deref().unwrap_or_default();
    let mut implicit = BTreeMap::new();
    implicit.insert(LABEL_NAMESPACE.to_string(), ns.to_string());
    if !s.orchestrator.is_empty() {
        implicit.insert(LABEL_ORCHESTRATOR.to_string(), s.orchestrator.clone());
    }
    let mut inherited = namespace_labels(ns, profile_labels);
    if !s.service_account_name.is_empty() {
        implicit.insert(
            LABEL_SERVICE_ACCOUNT.to_string(),
            s.service_account_name.clone(),
        );
        let sa_profile = format!("ksa.{ns}.{}", s.service_account_name);
        if let Some(labels) = profile_labels.get(sa_profile.as_str()) {
            inherited.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let labels = effective_labels(
        inherited,
        &s.profiles,
        profile_labels,
        implicit,
        &w.metadata.labels,
    );
    let display = [&s.pod, &s.workload, &w.metadata.name]
        .into_iter()
        .find(|n| !n.is_empty())
        .cloned()
        .unwrap_or_default();
    Endpoint {
        kind: EndpointKind::Workload,
        name: w.metadata.display_name(),
        display,
        node: s.node.clone(),
        interface: Some(s.interface_name.clone()),
        addrs: s.ip_networks.iter().map(|c| c.0).collect(),
        labels,
        profiles: s.profiles.clone(),
        ports: s.ports.clone(),
        limits: s.qos_controls.as_ref().map(Limits::of).unwrap_or_default(),
    }
}

/// A host endpoint with its labels; a second one for all interfaces of a
/// node (among `endpoints`, those so far) is an error.
fn host_endpoint(
    h: &api::HostEndpoint,
    profile_labels: &ProfileLabels<'_>,
    endpoints: &[Endpoint],
) -> Result<Endpoint, ModelError> {
    let s = &h.spec;
    if s.interface_name == ALL_INTERFACES
        && let Some(first) = endpoints.iter().find(|e| {
            e.kind == EndpointKind::Host
                && e.node == s.node
                && e.interface.as_deref() == Some(ALL_INTERFACES)
        })
    {
        return Err(ModelError::WildcardHostEndpoint {
            endpoint: h.metadata.name.clone(),
            node: s.node.clone(),
            first: first.name.clone(),
        });
    }
    Ok(Endpoint {
        kind: EndpointKind::Host,
        name: h.metadata.name.clone(),
        display: h.metadata.name.clone(),
        node: s.node.clone(),
        interface: Some(s.interface_name.clone()).filter(|i| !i.is_empty()),
        addrs: s.expected_ips.iter().map(|ip| IpNet::from(*ip)).collect(),
        labels: effective_labels(
            BTreeMap::new(),
            &s.profiles,
            profile_labels,
            BTreeMap::new(),
            &h.metadata.labels,
        ),
        profiles: s.profiles.clone(),
        ports: s.ports.clone(),
        limits: Limits::default(),
    })
}

/// A GlobalNetworkPolicy's tier and its policy, its namespace and service
/// account selectors ANDed into its selector.
pub(crate) fn global_policy(p: &api::GlobalNetworkPolicy) -> Result<(String, Policy), ModelError> {
    let name = &p.metadata.name;
    let s = &p.spec;
    let mut selector = vec![parse(name, "spec.selector", &s.selector)?];
    if !s.namespace_selector.is_empty() {
        selector.push(namespace_part(parse(
            name,
            "spec.namespaceSelector",
            &s.namespace_selector,
        )?));
    }
    if !s.service_account_selector.is_empty() {
        let sa = parse(
            name,
            "spec.serviceAccountSelector",
            &s.service_account_selector,
        )?;
        selector.push(prefix_keys(sa, SERVICE_ACCOUNT_PREFIX));
    }
    let policy = Policy {
        name: name.clone(),
        scope: PolicyScope::Global,
        order: s.order,
        selector: conjunction(selector),
        types: types_or_inferred(&s.types, &s.ingress, &s.egress),
        ingress: convert_rules(name, "spec.ingress", &s.ingress, None)?,
        egress: convert_rules(name, "spec.egress", &s.egress, None)?,
        stage: if s.do_not_track {
            Stage::Untracked
        } else if s.pre_dnat {
            Stage::PreDnat
        } else {
            Stage::Normal
        },
        apply_on_forward: s.apply_on_forward,
    };
    Ok((tier_name(&s.tier), policy))
}

/// A NetworkPolicy's tier and its policy, selectors scoped to its namespace.
pub(crate) fn namespaced_policy(p: &api::NetworkPolicy) -> Result<(String, Policy), ModelError> {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = p.metadata.display_name();
    let s = &p.spec;
    let mut selector = vec![
        namespace_is(&ns),
        parse(&name, "spec.selector", &s.selector)?,
    ];
    if !s.service_account_selector.is_empty() {
        let sa = parse(
            &name,
            "spec.serviceAccountSelector",
            &s.service_account_selector,
        )?;
        selector.push(prefix_keys(sa, SERVICE_ACCOUNT_PREFIX));
    }
    let policy = Policy {
        name: p.metadata.name.clone(),
        scope: PolicyScope::Namespace(ns.clone()),
        order: s.order,
        selector: conjunction(selector),
        types: types_or_inferred(&s.types, &s.ingress, &s.egress),
        ingress: convert_rules(&name, "spec.ingress", &s.ingress, Some(&ns))?,
        egress: convert_rules(&name, "spec.egress", &s.egress, Some(&ns))?,
        stage: Stage::Normal,
        apply_on_forward: false,
    };
    Ok((tier_name(&s.tier), policy))
}

/// The conjunction of the parts, leaving out `all()` ones.
fn conjunction(parts: impl IntoIterator<Item = Expr>) -> Expr {
    Expr::and(parts.into_iter().filter(|e| *e != Expr::All))
}

fn tier_name(tier: &str) -> String {
    if tier.is_empty() { DEFAULT_TIER } else { tier }.to_string()
}

fn types_or_inferred(
    types: &[PolicyType],
    ingress: &[api::Rule],
    egress: &[api::Rule],
) -> Vec<PolicyType> {
    if types.is_empty() {
        api::resources::policy::infer_types(ingress, egress)
    } else {
        types.to_vec()
    }
}

/// The inherited namespace labels of a resource in `ns`.
fn namespace_labels(ns: &str, profile_labels: &ProfileLabels<'_>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(format!("{NAMESPACE_PREFIX}{LABEL_NAME}"), ns.to_string())]);
    if let Some(ns_labels) = profile_labels.get(format!("kns.{ns}").as_str()) {
        labels.extend(ns_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    labels
}

/// Layers labels as the module documentation describes.
fn effective_labels(
    mut labels: BTreeMap<String, String>,
    profiles: &[String],
    profile_labels: &ProfileLabels<'_>,
    implicit: BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for profile in profiles.iter().rev() {
        if let Some(l) = profile_labels.get(profile.as_str()) {
            labels.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    labels.extend(implicit);
    labels.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

fn parse(resource: &str, field: &str, source: &str) -> Result<Expr, ModelError> {
    Selector::parse(source)
        .map(Selector::into_expr)
        .map_err(|e| ModelError::Selector {
            resource: resource.to_string(),
            field: field.to_string(),
            selector: source.to_string(),
            error: e.to_string(),
        })
}

/// `projectcalico.org/namespace == "<ns>"`.
pub fn namespace_is(ns: &str) -> Expr {
    Expr::compare(LABEL_NAMESPACE, api::selector::CompareOp::Eq, ns)
}

/// A namespaceSelector as a selector over endpoints: keys `pcns.`-prefixed,
/// `all()` meaning any namespaced resource, `global()` any non-namespaced one.
pub fn namespace_part(expr: Expr) -> Expr {
    map_expr(expr, &|e| match e {
        Expr::All => Expr::has(LABEL_NAMESPACE),
        Expr::Global => Expr::Not(Box::new(Expr::has(LABEL_NAMESPACE))),
        other => prefix_key(other, NAMESPACE_PREFIX),
    })
}

/// Every label key in `expr` with `prefix` in front.
pub fn prefix_keys(expr: Expr, prefix: &str) -> Expr {
    map_expr(expr, &|e| prefix_key(e, prefix))
}

fn prefix_key(e: Expr, prefix: &str) -> Expr {
    match e {
        Expr::Has(key) => Expr::Has(format!("{prefix}{key}")),
        Expr::Compare { key, op, value } => Expr::Compare {
            key: format!("{prefix}{key}"),
            op,
            value,
        },
        Expr::In { key, values } => Expr::In {
            key: format!("{prefix}{key}"),
            values,
        },
        Expr::NotIn { key, values } => Expr::NotIn {
            key: format!("{prefix}{key}"),
            values,
        },
        other => other,
    }
}

/// Applies `leaf` to every leaf of the tree.
fn map_expr(expr: Expr, leaf: &dyn Fn(Expr) -> Expr) -> Expr {
    match expr {
        Expr::Not(inner) => Expr::Not(Box::new(map_expr(*inner, leaf))),
        Expr::And(ops) => Expr::and(ops.into_iter().map(|e| map_expr(e, leaf))),
        Expr::Or(ops) => Expr::or(ops.into_iter().map(|e| map_expr(e, leaf))),
        other => leaf(other),
    }
}

fn convert_rules(
    resource: &str,
    field: &str,
    rules: &[api::Rule],
    ns: Option<&str>,
) -> Result<Vec<Rule>, ModelError> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = format!("{field}[{i}]");
            Ok(Rule {
                action: r.action,
                ip_version: r.ip_version,
                protocol: r.protocol,
                not_protocol: r.not_protocol,
                icmp: r.icmp,
                not_icmp: r.not_icmp,
                source: convert_entity(resource, &format!("{path}.source"), &r.source, ns)?,
                destination: convert_entity(
                    resource,
                    &format!("{path}.destination"),
                    &r.destination,
                    ns,
                )?,
            })
        })
        .collect()
}

fn convert_entity(
    resource: &str,
    path: &str,
    e: &EntityRule,
    ns: Option<&str>,
) -> Result<Entity, ModelError> {
    let field = |f: &str| format!("{path}.{f}");
    let namespace = if !e.namespace_selector.is_empty() {
        Some(namespace_part(parse(
            resource,
            &field("namespaceSelector"),
            &e.namespace_selector,
        )?))
    } else {
        ns.map(namespace_is)
    };
    let mut parts = Vec::new();
    if let Some(sa) = &e.service_accounts {
        if !sa.selector.is_empty() {
            let sel = parse(resource, &field("serviceAccounts.selector"), &sa.selector)?;
            parts.push(prefix_keys(sel, SERVICE_ACCOUNT_PREFIX));
        }
        if !sa.names.is_empty() {
            parts.push(Expr::In {
                key: LABEL_SERVICE_ACCOUNT.to_string(),
                values: sa.names.iter().cloned().collect(),
            });
        }
    }
    if !e.selector.is_empty() {
        parts.push(parse(resource, &field("selector"), &e.selector)?);
    }
    let scoped =
        !parts.is_empty() || !e.not_selector.is_empty() || !e.namespace_selector.is_empty();
    let selector = match namespace {
        Some(ns_part) if scoped => Some(conjunction(std::iter::once(ns_part).chain(parts))),
        _ if parts.is_empty() => None,
        _ => Some(conjunction(parts)),
    };
    let not_selector = if e.not_selector.is_empty() {
        None
    } else {
        Some(parse(resource, &field("notSelector"), &e.not_selector)?)
    };
    Ok(Entity {
        nets: e.nets.iter().map(|c| c.network()).collect(),
        not_nets: e.not_nets.iter().map(|c| c.network()).collect(),
        selector,
        not_selector,
        ports: e.ports.clone(),
        not_ports: e.not_ports.clone(),
    })
}
