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
//! Programming the kernel incrementally through netlink (and the diff between
//! two rulesets it needs) is the next slice; the IR is shaped for it: sets with
//! elements, maps with elements and chains with rule lists, all keyed by name.
//!
//! # Layout
//!
//! - [`model`]: the input model ([`Model`]) built from `api` resources:
//!   tiers with their ordered policies, profiles, endpoints and network sets
//!   with effective labels, selectors scoped as Calico scopes them.
//! - [`k8s`]: Kubernetes NetworkPolicy mapped to a Calico NetworkPolicy.
//! - [`sets`]: one named set per selector, `nets` list and named port; set
//!   and chain naming (readable, or slug plus content hash); set members.
//! - [`ir`]: the ruleset IR ([`Ruleset`]): sets, verdict maps, chains, rules.
//! - [`compile`](mod@compile): [`compile()`], model to ruleset; the shape of the
//!   ruleset is documented there.
//! - [`render`](mod@render): [`render()`], ruleset to nft text.
//! - [`simulate`]: evaluates a packet against a ruleset as netfilter would, for
//!   tests and for asking "what happens to this packet".

pub mod compile;
pub mod ir;
pub mod k8s;
pub mod model;
pub mod render;
pub mod sets;
pub mod simulate;

pub use compile::compile;
pub use ir::Ruleset;
pub use model::{Config, Model, ModelError};
pub use render::render;
