//! Policy: [`NetworkPolicy`], [`GlobalNetworkPolicy`], [`Tier`], [`Profile`] and the
//! [`Rule`]/[`EntityRule`] model they share, with Calico's rule validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    meta::ObjectMeta,
    types::{Cidr, Port, Protocol},
    validate::{Errors, at, names},
};

use super::Spec;

/// The tier a policy is in when it names none.
pub const DEFAULT_TIER: &str = "default";

/// What a rule does with a packet it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
    Log,
    Pass,
}

/// The direction a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// An ICMP type and, optionally, code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpFields {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// Service accounts an entity must run as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

/// A Kubernetes service an entity must be an endpoint of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The source or destination of a rule. Every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<Cidr>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
}

impl EntityRule {
    /// Whether the entity matches everything.
    pub fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }

    fn validate(&self, path: &str, rule: &Rule, errs: &mut Errors) {
        let family = rule.ip_version;
        errs.networks(&at(path, "nets"), &self.nets, family);
        errs.networks(&at(path, "notNets"), &self.not_nets, family);
        for (field, sel) in [
            ("selector", &self.selector),
            ("notSelector", &self.not_selector),
            ("namespaceSelector", &self.namespace_selector),
        ] {
            errs.selector(at(path, field), sel);
        }
        if let Some(sa) = &self.service_accounts {
            let path = at(path, "serviceAccounts");
            errs.names(&at(&path, "names"), &sa.names);
            errs.selector(at(&path, "selector"), &sa.selector);
        }
        if let Some(svc) = &self.services {
            let path = at(path, "services");
            errs.check(at(&path, "name"), names::dns1123_subdomain(&svc.name));
            if !svc.namespace.is_empty() {
                errs.check(at(&path, "namespace"), names::dns1123_label(&svc.namespace));
            }
        }
        for (field, ports) in [("ports", &self.ports), ("notPorts", &self.not_ports)] {
            let path = at(path, field);
            if !ports.is_empty() && !rule.protocol.is_some_and(Protocol::has_ports) {
                errs.add(&path, "ports need protocol TCP, UDP, SCTP or UDPLite");
            }
            errs.ports(&path, ports);
        }
    }
}

/// HTTP match criteria (accepted and kept; enforced by an application-layer proxy, not here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HttpPath>,
}

/// One HTTP path match: exact or by prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Free-form data attached to a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One policy rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    /// 4 or 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    /// A rule with this action that matches everything.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            ip_version: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            http: None,
            metadata: None,
        }
    }

    fn validate(&self, path: &str, errs: &mut Errors) {
        if let Some(v) = self.ip_version.filter(|v| !matches!(v, 4 | 6)) {
            errs.add(
                at(path, "ipVersion"),
                format!("ipVersion {v} is not 4 or 6"),
            );
        }
        for (field, icmp) in [("icmp", &self.icmp), ("notICMP", &self.not_icmp)] {
            let Some(icmp) = icmp else { continue };
            let path = at(path, field);
            match (
                self.protocol,
                self.protocol.and_then(Protocol::icmp_version),
            ) {
                (Some(protocol), Some(v)) => {
                    if let Some(iv) = self.ip_version.filter(|iv| *iv != v) {
                        errs.add(
                            &path,
                            format!("protocol {protocol} does not match ipVersion {iv}"),
                        );
                    }
                }
                _ => errs.add(&path, "ICMP matches need protocol ICMP or ICMPv6"),
            }
            match (icmp.icmp_type, icmp.code) {
                (Some(255), _) => errs.add(at(&path, "type"), "ICMP type 255 is not valid (0-254)"),
                (None, Some(_)) => errs.add(at(&path, "code"), "an ICMP code needs an ICMP type"),
                _ => {}
            }
        }
        self.source.validate(&at(path, "source"), self, errs);
        self.destination
            .validate(&at(path, "destination"), self, errs);
    }
}

fn validate_rules(path: &str, field: &str, rules: &[Rule], errs: &mut Errors) {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate(&format!("{}[{i}]", at(path, field)), errs);
    }
}

/// Calico's rule for absent `types`: egress only → `[Egress]`, both → both, else `[Ingress]`.
pub fn infer_types(ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    match (ingress.is_empty(), egress.is_empty()) {
        (true, false) => vec![PolicyType::Egress],
        (false, false) => vec![PolicyType::Ingress, PolicyType::Egress],
        _ => vec![PolicyType::Ingress],
    }
}

/// Writes a whole-number order as an integer (`100`, not `100.0`), as Calico does.
fn serialize_order<S: serde::Serializer>(order: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    const EXACT: f64 = (1u64 << 53) as f64;
    match *order {
        Some(o) if o.fract() == 0.0 && o.abs() < EXACT => s.serialize_i64(o as i64),
        Some(o) => s.serialize_f64(o),
        None => s.serialize_none(),
    }
}

/// The fields NetworkPolicy and GlobalNetworkPolicy share, borrowed for validation.
struct PolicyView<'a> {
    tier: &'a str,
    order: Option<f64>,
    selector: &'a str,
    service_account_selector: &'a str,
    types: &'a [PolicyType],
    ingress: &'a [Rule],
    egress: &'a [Rule],
}

impl PolicyView<'_> {
    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        let tier = if self.tier.is_empty() {
            DEFAULT_TIER
        } else {
            self.tier
        };
        errs.check("spec.tier", names::dns1123_label(tier));
        match meta.name.split_once('.') {
            Some((prefix, _)) if prefix != tier => errs.add(
                "metadata.name",
                format!(
                    "policy {:?} is named for tier {prefix:?} but is in tier {tier:?}",
                    meta.name
                ),
            ),
            None if tier != DEFAULT_TIER => errs.add(
                "metadata.name",
                format!(
                    "a policy in tier {tier:?} must be named \"{tier}.<name>\", not {:?}",
                    meta.name
                ),
            ),
            _ => {}
        }
        if let Some(order) = self.order.filter(|o| !o.is_finite()) {
            errs.add(
                "spec.order",
                format!("order {order} is not a finite number"),
            );
        }
        errs.selector("spec.selector", self.selector);
        errs.selector("spec.serviceAccountSelector", self.service_account_selector);
        for (i, t) in self.types.iter().enumerate() {
            if self.types[..i].contains(t) {
                errs.add(format!("spec.types[{i}]"), format!("{t:?} is listed twice"));
            }
        }
        for (t, field, rules) in [
            (PolicyType::Ingress, "ingress", self.ingress),
            (PolicyType::Egress, "egress", self.egress),
        ] {
            if !rules.is_empty() && !self.types.is_empty() && !self.types.contains(&t) {
                errs.add(
                    format!("spec.{field}"),
                    format!("{field} rules are given but types does not include {t:?}"),
                );
            }
            validate_rules("spec", field, rules, errs);
        }
    }
}

/// Defines a policy spec: the fields NetworkPolicy and GlobalNetworkPolicy share,
/// with Calico's serde names and defaults, followed by the kind's own fields, as
/// one plain struct. (serde's `flatten` would share them too, but cannot be
/// combined with `deny_unknown_fields`: unknown fields must stay errors naming
/// their path.) Also gives the spec `view` and `default_policy`.
macro_rules! policy_spec {
    (
        $(#[$doc:meta])*
        $name:ident {
            $($(#[$field_attr:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub tier: String,
            #[serde(
                default,
                skip_serializing_if = "Option::is_none",
                serialize_with = "serialize_order"
            )]
            pub order: Option<f64>,
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub selector: String,
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub types: Vec<PolicyType>,
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub ingress: Vec<Rule>,
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub egress: Vec<Rule>,
            #[serde(default, skip_serializing_if = "String::is_empty")]
            pub service_account_selector: String,
            $($(#[$field_attr])* pub $field: $ty,)*
        }

        impl $name {
            /// The shared fields, borrowed for validation.
            fn view(&self) -> PolicyView<'_> {
                PolicyView {
                    tier: &self.tier,
                    order: self.order,
                    selector: &self.selector,
                    service_account_selector: &self.service_account_selector,
                    types: &self.types,
                    ingress: &self.ingress,
                    egress: &self.egress,
                }
            }

            /// Calico's defaults: the default tier, `types` inferred from the rules.
            fn default_policy(&mut self) {
                if self.tier.is_empty() {
                    self.tier = DEFAULT_TIER.to_string();
                }
                if self.types.is_empty() {
                    self.types = infer_types(&self.ingress, &self.egress);
                }
            }
        }

        /// A policy is identified by its name and tier.
        impl super::staged::Stageable for $name {
            fn identity(&self) -> Self {
                let mut identity = Self {
                    tier: self.tier.clone(),
                    ..Self::default()
                };
                identity.default_identity();
                identity
            }

            fn default_identity(&mut self) {
                if self.tier.is_empty() {
                    self.tier = DEFAULT_TIER.to_string();
                }
            }
        }
    };
}

policy_spec!(
    /// `spec` of a namespaced [`NetworkPolicy`].
    NetworkPolicySpec {}
);

impl Spec for NetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        self.default_policy();
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        self.view().validate(meta, errs);
    }
}

resource!(
    /// Calico NetworkPolicy: ordered rules for the endpoints of one namespace.
    NetworkPolicy,
    NetworkPolicySpec
);

policy_spec!(
    /// `spec` of a [`GlobalNetworkPolicy`].
    GlobalNetworkPolicySpec {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        pub namespace_selector: String,
        #[serde(
            default,
            rename = "doNotTrack",
            skip_serializing_if = "std::ops::Not::not"
        )]
        pub do_not_track: bool,
        #[serde(
            default,
            rename = "preDNAT",
            skip_serializing_if = "std::ops::Not::not"
        )]
        pub pre_dnat: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub apply_on_forward: bool,
    }
);

impl Spec for GlobalNetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        self.default_policy();
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut Errors) {
        self.view().validate(meta, errs);
        errs.selector("spec.namespaceSelector", &self.namespace_selector);
        if self.do_not_track && self.pre_dnat {
            errs.add("spec.preDNAT", "preDNAT and doNotTrack cannot both be true");
        }
        if (self.do_not_track || self.pre_dnat) && !self.apply_on_forward {
            let field = if self.pre_dnat {
                "preDNAT"
            } else {
                "doNotTrack"
            };
            errs.add(
                "spec.applyOnForward",
                format!("must be true when {field} is true"),
            );
        }
        if self.pre_dnat && (!self.egress.is_empty() || self.types.contains(&PolicyType::Egress)) {
            errs.add(
                "spec.egress",
                "a preDNAT policy cannot have egress rules or the Egress type",
            );
        }
    }
}

resource!(
    /// Calico GlobalNetworkPolicy: ordered rules for endpoints in every namespace and hosts.
    GlobalNetworkPolicy,
    GlobalNetworkPolicySpec
);

/// What happens to traffic that no policy in a tier decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TierDefaultAction {
    Deny,
    Pass,
}

/// `spec` of a [`Tier`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_order"
    )]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<TierDefaultAction>,
}

impl Spec for TierSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        if let Some(order) = self.order.filter(|o| !o.is_finite()) {
            errs.add(
                "spec.order",
                format!("order {order} is not a finite number"),
            );
        }
    }
}

resource!(
    /// A policy tier: policies are evaluated tier by tier, in `order`.
    Tier,
    TierSpec
);

/// `spec` of a [`Profile`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

impl Spec for ProfileSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut Errors) {
        validate_rules("spec", "ingress", &self.ingress, errs);
        validate_rules("spec", "egress", &self.egress, errs);
        crate::resource::validate_labels("spec.labelsToApply", &self.labels_to_apply, errs);
    }
}

resource!(
    /// A profile: rules and labels endpoints inherit by naming it.
    Profile,
    ProfileSpec
);
