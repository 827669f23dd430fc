//! The policy compiler: Calico v3 policy (tiers, NetworkPolicy,
//! GlobalNetworkPolicy, profiles) and Kubernetes NetworkPolicy, over workload
//! endpoints, host endpoints and network sets, compiled by a pure function into
//! one nftables ruleset for the `inet calico` table, and rendered as nft text.
//!
//! ```text
//! api resources ──Model::from_resources──▶ Model ──compile──▶ Ruleset ──render──▶ nft text
//! ```
//!
//! The ruleset dispatches by interface through verdict maps to one chain per
//! endpoint and direction, which jumps to one shared chain per policy and
//! direction; selectors, `nets` lists and named ports are named interval sets.
//! [`diff()`] turns one ruleset into another by element changes where it can
//! and chain replacement where it must; a [`Dataplane`] applies those changes in
//! one kernel transaction. The default driver, [`Netlink`], sends each update as
//! one libnftnl batch in one `sendmsg`; [`Nft`] sends the same update as one
//! `nft -f -` script (the text path, for debugging and `calicoctl policy
//! compile --diff`). Both commit all or nothing.
//!
//! ```text
//! Ruleset (programmed) ─┐                  ┌─changes_batch──▶ one netlink batch (Netlink, default)
//!                       ├─diff──▶ Changes ─┤
//! Ruleset (desired) ────┘                  └─render_changes─▶ nft -f - (Nft)
//! ```
//!
//! # Layout
//!
//! - [`model`]: the input model ([`Model`]) built from `api` resources:
//!   tiers with their ordered policies, profiles, endpoints and network sets
//!   with effective labels, selectors scoped as Calico scopes them.
//! - [`staged`]: staged policies in the model ([`Model::staged`]), never
//!   compiled, and the model as if they were enforced
//!   ([`Model::with_staged_enforced`]), for pending verdicts.
//! - [`k8s`]: Kubernetes NetworkPolicy mapped to a Calico NetworkPolicy.
//! - [`sets`]: one named set per selector, `nets` list and named port; set
//!   and chain naming (readable, or slug plus content hash); set members.
//! - [`ir`]: the ruleset IR ([`Ruleset`]): sets, verdict maps, chains, rules.
//! - [`compile`](mod@compile): [`compile()`], model to ruleset by the pure
//!   pass (`compile::lower`; the shape of the ruleset is in `lower::base`).
//!   [`Compiler`] compiles a model after an edit, patching the previous
//!   ruleset or reusing the chains and sets the edit did not touch, and says
//!   which ([`compile::Outcome`], [`compile::Fallback`]).
//! - `stages` (private): untracked, pre-DNAT and forwarded host endpoint
//!   policy: their base chains, maps and endpoint-chain shapes.
//! - `failsafe` (private): Felix's failsafe ports, always allowed to and
//!   from the host on host endpoints, ahead of host endpoint policy.
//! - [`nat`]: `natOutgoing` pools ([`NatOutgoing`]): their sets and the
//!   nat chain in postrouting that masquerades what leaves them for outside
//!   every pool, as Calico's `cali-nat-outgoing`.
//! - `memo` (private): what the compiler keeps so as not to make anything
//!   twice (within a compilation, and a [`Compiler`] between compilations),
//!   keyed by full inputs, and how a new model invalidates it.
//! - [`render`](mod@render): [`render()`], ruleset to nft text, and
//!   [`render_changes`], changes to one incremental nft script.
//! - [`diff`](mod@diff): [`diff()`], two rulesets to [`Changes`].
//! - [`dataplane`]: the [`Dataplane`] trait, [`converge`], and the [`Nft`]
//!   driver, which also reads our table back from the kernel (`nft -j`).
//! - [`netlink`]: the [`Netlink`] driver on libnftnl: one batch per update in
//!   one `sendmsg`, every acknowledgement read; sets, maps and rules nftnl 0.9
//!   lacks; exact element deltas of interval sets.
//! - [`stamp`]: chain stamps (a hash of each chain's rules in its first
//!   rule's comment), by which a restarted driver adopts the chains that
//!   already hold what it would program and leaves them alone.
//! - [`simulate`]: evaluates a packet against a ruleset as netfilter would, for
//!   tests and for asking "what happens to this packet".
//! - [`trace`](mod@trace): [`trace()`], would this packet pass and why: the
//!   compiled ruleset walked, read back as tiers, policies and rules, with
//!   the reason each earlier rule did not match (`calicoctl policy trace`).

pub mod compile;
pub mod counters;
pub mod dataplane;
pub mod diff;
pub mod dscp;
mod failsafe;
pub mod flowlog;
pub mod ir;
pub mod k8s;
mod memo;
pub mod model;
pub mod nat;
pub mod netlink;
pub mod render;
mod selector_index;
pub mod sets;
pub mod simulate;
pub mod staged;
mod stages;
pub mod stamp;
pub mod trace;

pub use compile::{Compiler, compile};
pub use dataplane::{Dataplane, DataplaneError, Nft, converge};
pub use diff::{Changes, diff};
pub use ir::Ruleset;
pub use model::{Config, Model, ModelError};
pub use nat::NatOutgoing;
pub use netlink::Netlink;
pub use render::{render, render_changes};
pub use staged::StagedPolicy;
pub use trace::trace;
