//! Model to ruleset. [`compile()`] runs the pure pass (`lower`; the shape of
//! the ruleset is in `lower::base`) on a [`Model`]: deterministic, the same
//! model gives an identical ruleset. A [`Compiler`] gives the same ruleset
//! for one model after another, faster: it patches the previous ruleset when
//! an edit allows ([`Outcome::Patched`]), else runs the pass again with what
//! its memo kept ([`Outcome::Full`], with the [`Fallback`] that stopped the patch).
//!
//! ```text
//! Model ─compile()──────────────────────▶ lower (an empty Memo) ────┐
//! Model ─Compiler::compile─┬─ patch: the previous ruleset, edited ──┼─▶ Ruleset
//!                          └─ Fallback ─▶ lower (the kept Memo) ────┘   + NAT objects
//! ```

mod incremental;
mod lower;
#[cfg(test)]
mod testing;

pub use incremental::{Compiler, Fallback, Outcome};
pub(crate) use lower::{
    CompiledChain, Lowering, Step, endpoint_chain, endpoint_chain_of, policy_chain_names,
    profile_chain_names,
};
pub use lower::{MAP_HEP_FROM, MAP_HEP_TO, MAP_WL_FROM, MAP_WL_TO};

use crate::ir::Ruleset;
use crate::memo::Memo;
use crate::model::Model;
use crate::nat;
use crate::sets::SetRegistry;

/// Compiles the model into the ruleset for table [`TABLE`](crate::ir::TABLE).
/// Deterministic: the same model gives an identical ruleset.
pub fn compile(model: &Model) -> Ruleset {
    let lowering = Lowering::new(model, SetRegistry::new(model));
    let mut ruleset = lowering.lower(&mut Memo::default()).ruleset;
    let config = &model.config;
    nat::objects(&config.nat_outgoing, config.nat_outgoing_address).add_to(&mut ruleset);
    crate::dscp::add_to(model, &mut ruleset);
    ruleset
}
