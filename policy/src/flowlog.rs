//! Flow-log prefixes: with [`FlowLogs`] on, every rule that decides a new
//! connection logs it to an NFLOG group first, its `log prefix` a
//! [`Decider`] that names the rule compactly; [`Index`] turns that back
//! into the policy, tier and rule a flow log shows.
//!
//! ```text
//! R A 2 np-in-shop/web     rule 2 of a policy (or profile) chain, Allow (A, D, P)
//! T i default              the end of tier `default` denied, ingress (i) or egress (o)
//! N o                      no policy or profile allowed (the endpoint chain fails closed)
//! ```
//!
//! Only packets the base chains do not accept as established reach these
//! rules, so an established connection logs nothing; untracked
//! (`doNotTrack`) policy, which sees every packet, logs nothing either.

use std::collections::BTreeMap;

use api::resources::policy::PolicyType;

use crate::compile::{policy_chain_names, profile_chain_names};
use crate::ir::Statement;
use crate::model::{Model, PolicyScope, Stage};
use crate::sets::name;

/// Where flow logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowLogs {
    /// The NFLOG group the deciding rules log to.
    pub group: u16,
}

/// How an endpoint chain logs its own decisions (a tier's default deny,
/// failing closed): to this group, for this direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainLog {
    pub group: u16,
    pub ingress: bool,
}

/// What a rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision {
    Allow,
    Deny,
    Pass,
}

impl Decision {
    fn letter(self) -> char {
        match self {
            Decision::Allow => 'A',
            Decision::Deny => 'D',
            Decision::Pass => 'P',
        }
    }

    fn from_letter(c: &str) -> Option<Decision> {
        match c {
            "A" => Some(Decision::Allow),
            "D" => Some(Decision::Deny),
            "P" => Some(Decision::Pass),
            _ => None,
        }
    }
}

/// The rule that decided a connection, as its log prefix names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decider {
    /// Rule `index` of a policy or profile chain.
    Rule {
        chain: String,
        index: usize,
        decision: Decision,
    },
    /// The end of a tier whose default action is Deny (the tier's name as
    /// [`tier_key`] gives it).
    TierEnd { ingress: bool, tier: String },
    /// No policy or profile allowed.
    NoMatch { ingress: bool },
}

fn direction_letter(ingress: bool) -> &'static str {
    if ingress { "i" } else { "o" }
}

/// A tier's name in a prefix: short enough for the kernel's 127 bytes.
pub fn tier_key(tier: &str) -> String {
    let key = name("t", tier);
    key.strip_prefix("t-").unwrap_or(&key).to_string()
}

impl Decider {
    /// The `log prefix` (at most 127 bytes: chain and tier keys are short).
    pub fn prefix(&self) -> String {
        match self {
            Decider::Rule {
                chain,
                index,
                decision,
            } => format!("R {} {index} {chain}", decision.letter()),
            Decider::TierEnd { ingress, tier } => {
                format!("T {} {tier}", direction_letter(*ingress))
            }
            Decider::NoMatch { ingress } => format!("N {}", direction_letter(*ingress)),
        }
    }

    /// The statement that logs this decider to `group`.
    pub fn log(&self, group: u16) -> Statement {
        Statement::Log {
            prefix: self.prefix(),
            group: Some(group),
        }
    }

    /// The decider a prefix names, if it is one of ours.
    pub fn parse(prefix: &str) -> Option<Decider> {
        let mut words = prefix.split(' ');
        let ingress = |w: Option<&str>| match w {
            Some("i") => Some(true),
            Some("o") => Some(false),
            _ => None,
        };
        let decider = match words.next()? {
            "R" => Decider::Rule {
                decision: Decision::from_letter(words.next()?)?,
                index: words.next()?.parse().ok()?,
                chain: words.next()?.to_string(),
            },
            "T" => Decider::TierEnd {
                ingress: ingress(words.next())?,
                tier: words.next()?.to_string(),
            },
            "N" => Decider::NoMatch {
                ingress: ingress(words.next())?,
            },
            _ => return None,
        };
        words.next().is_none().then_some(decider)
    }
}

/// What kind of resource a chain's rules come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A Calico NetworkPolicy.
    NetworkPolicy,
    /// A Kubernetes NetworkPolicy (mapped to `knp.default.<name>`).
    KubernetesNetworkPolicy,
    GlobalNetworkPolicy,
    Profile,
}

/// A policy or profile, as flow logs name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub source: Source,
    /// Empty for global policies and profiles.
    pub namespace: String,
    /// As the user named it (a Kubernetes policy without `knp.default.`).
    pub name: String,
    /// Empty for profiles.
    pub tier: String,
    /// Its place in its tier's order (0 first); 0 for profiles.
    pub index: usize,
    pub ingress: bool,
}

/// A logged decision, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// A rule of a policy or profile.
    Rule {
        origin: Origin,
        rule: usize,
        decision: Decision,
    },
    /// A tier's end denied.
    TierEnd { tier: String, ingress: bool },
    /// No policy or profile allowed.
    NoMatch { ingress: bool },
}

impl Hit {
    pub fn decision(&self) -> Decision {
        match self {
            Hit::Rule { decision, .. } => *decision,
            Hit::TierEnd { .. } | Hit::NoMatch { .. } => Decision::Deny,
        }
    }

    pub fn ingress(&self) -> bool {
        match self {
            Hit::Rule { origin, .. } => origin.ingress,
            Hit::TierEnd { ingress, .. } | Hit::NoMatch { ingress } => *ingress,
        }
    }
}

/// The prefix of Kubernetes NetworkPolicies' names in the model.
const KNP_PREFIX: &str = "knp.default.";

/// Chain and tier names of one model, to resolve its prefixes.
#[derive(Debug, Clone, Default)]
pub struct Index {
    chains: BTreeMap<String, Origin>,
    tiers: BTreeMap<String, String>,
}

impl Index {
    pub fn new(model: &Model) -> Index {
        let mut index = Index::default();
        for tier in &model.tiers {
            index.tiers.insert(tier_key(&tier.name), tier.name.clone());
            for (i, policy) in tier.policies.iter().enumerate() {
                let (source, namespace, name) = match &policy.scope {
                    PolicyScope::Global => (
                        Source::GlobalNetworkPolicy,
                        String::new(),
                        policy.name.clone(),
                    ),
                    PolicyScope::Namespace(ns) => match policy.name.strip_prefix(KNP_PREFIX) {
                        Some(k8s) => (Source::KubernetesNetworkPolicy, ns.clone(), k8s.to_string()),
                        None => (Source::NetworkPolicy, ns.clone(), policy.name.clone()),
                    },
                };
                for (chain, ingress) in policy_chain_names(policy).into_iter().zip([true, false]) {
                    index.chains.insert(
                        chain,
                        Origin {
                            source,
                            namespace: namespace.clone(),
                            name: name.clone(),
                            tier: tier.name.clone(),
                            index: i,
                            ingress,
                        },
                    );
                }
            }
        }
        for profile in model.profiles.keys() {
            for (chain, ingress) in profile_chain_names(profile).into_iter().zip([true, false]) {
                index.chains.insert(
                    chain,
                    Origin {
                        source: Source::Profile,
                        namespace: String::new(),
                        name: profile.clone(),
                        tier: String::new(),
                        index: 0,
                        ingress,
                    },
                );
            }
        }
        index
    }

    /// The policy or profile (and direction) a chain holds the rules of.
    pub fn origin(&self, chain: &str) -> Option<&Origin> {
        self.chains.get(chain)
    }

    /// What a logged prefix says, if it names something of this model.
    pub fn resolve(&self, prefix: &str) -> Option<Hit> {
        Some(match Decider::parse(prefix)? {
            Decider::Rule {
                chain,
                index,
                decision,
            } => Hit::Rule {
                origin: self.chains.get(&chain)?.clone(),
                rule: index,
                decision,
            },
            Decider::TierEnd { ingress, tier } => Hit::TierEnd {
                tier: self.tiers.get(&tier)?.clone(),
                ingress,
            },
            Decider::NoMatch { ingress } => Hit::NoMatch { ingress },
        })
    }
}

/// Whether rules of a policy of this stage log their decisions.
pub(crate) fn logs(stage: Stage) -> bool {
    stage != Stage::Untracked
}

/// Whether `direction` is ingress.
pub(crate) fn is_ingress(direction: PolicyType) -> bool {
    direction == PolicyType::Ingress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_read_back_as_what_they_name() {
        let all = [
            Decider::Rule {
                chain: "np-in-shop/web".into(),
                index: 2,
                decision: Decision::Allow,
            },
            Decider::Rule {
                chain: "gnp-out-deny-all".into(),
                index: 0,
                decision: Decision::Deny,
            },
            Decider::TierEnd {
                ingress: true,
                tier: tier_key("security"),
            },
            Decider::NoMatch { ingress: false },
        ];
        for d in all {
            assert_eq!(
                Decider::parse(&d.prefix()),
                Some(d.clone()),
                "{}",
                d.prefix()
            );
        }
        assert_eq!(Decider::NoMatch { ingress: false }.prefix(), "N o");
        for junk in [
            "",
            "R",
            "R A x c",
            "R X 1 c",
            "T x t",
            "N i extra",
            "calico-packet: ",
        ] {
            assert_eq!(Decider::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_long_tier_name_stays_within_the_prefix_limit() {
        let long = "t".repeat(250);
        let d = Decider::TierEnd {
            ingress: true,
            tier: tier_key(&long),
        };
        assert!(d.prefix().len() <= 127, "{}", d.prefix());
    }
}
