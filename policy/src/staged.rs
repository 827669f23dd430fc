//! Staged policies in the model ([`Model::staged`]): never compiled, kept for
//! evaluation.
//!
//! [`Model::from_resources`] turns each StagedNetworkPolicy,
//! StagedGlobalNetworkPolicy and StagedKubernetesNetworkPolicy into a
//! [`StagedPolicy`] by the same conversion as its enforced kind (so its
//! selector is scoped and its rules normalised exactly as the enforced
//! policy's would be) and keeps it apart from the tiers, which are all the
//! compiler reads: the ruleset is the same with or without staged policies.
//!
//! [`Model::with_staged_enforced`] is the model as if every staged policy were
//! enforced, Calico's "pending" view: a staged `Set` replaces the enforced
//! policy of the same name and scope (or adds itself to its tier), a staged
//! `Delete` removes it. Compiling that model gives the would-be ruleset.

use std::sync::Arc;

use api::{Kind, Resource, StagedAction};

use crate::model::{Model, ModelError, Policy, enforced_policy};

/// A staged policy with the policy enforcing it would make.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedPolicy {
    /// The staged resource's kind (`StagedNetworkPolicy`, ...).
    pub kind: Kind,
    /// The staged resource's `metadata.name` (a StagedKubernetesNetworkPolicy's
    /// own name, not its policy's `knp.default.` one).
    pub name: String,
    /// The tier the policy goes in (for a `Delete`, the tier it names).
    pub tier: String,
    pub action: StagedAction,
    /// The policy as enforced, named and scoped as the enforced policy it
    /// stages; for a `Delete` only its name and scope count.
    pub policy: Arc<Policy>,
}

impl StagedPolicy {
    /// The staged policy of a staged resource; `None` for other kinds. Errors
    /// are the enforced conversion's, wrapped in [`ModelError::Staged`].
    pub(crate) fn of(resource: &Resource) -> Result<Option<StagedPolicy>, ModelError> {
        let Some((action, enforced)) = resource.to_enforced() else {
            return Ok(None);
        };
        let staged_error = |error| ModelError::Staged {
            kind: resource.kind(),
            name: resource.metadata().display_name(),
            error: Box::new(error),
        };
        let Some((tier, policy)) = enforced_policy(&enforced).map_err(staged_error)? else {
            return Ok(None);
        };
        Ok(Some(StagedPolicy {
            kind: resource.kind(),
            name: resource.metadata().name.clone(),
            tier,
            action,
            policy: Arc::new(policy),
        }))
    }

    /// Whether `policy` is the enforced policy this one stages: the same
    /// name and scope.
    pub fn stages(&self, policy: &Policy) -> bool {
        policy.name == self.policy.name && policy.scope == self.policy.scope
    }
}

impl Model {
    /// This model as if its staged policies were enforced, in the order of
    /// [`Model::staged`]: each staged policy first removes the enforced policy
    /// it stages from whatever tier holds it; a `Set` then adds its policy to
    /// its tier (a tier the model lacks, possible only in a model built by
    /// hand, leaves it out). The result has no staged policies; its tiers are
    /// in evaluation order again.
    pub fn with_staged_enforced(&self) -> Model {
        let mut model = Model {
            staged: Vec::new(),
            ..self.clone()
        };
        for staged in &self.staged {
            for tier in &mut model.tiers {
                tier.policies.retain(|p| !staged.stages(p));
            }
            if staged.action == StagedAction::Set
                && let Some(tier) = model.tiers.iter_mut().find(|t| t.name == staged.tier)
            {
                tier.policies.push(Arc::clone(&staged.policy));
            }
        }
        model.sort();
        model
    }

    /// The staged policy that stages `policy` (the same name and scope), if
    /// any: in a model from [`Model::with_staged_enforced`], the policies
    /// that came from staged ones are those of the original model's
    /// `staged_for` with [`StagedAction::Set`].
    pub fn staged_for(&self, policy: &Policy) -> Option<&StagedPolicy> {
        self.staged.iter().find(|s| s.stages(policy))
    }
}
