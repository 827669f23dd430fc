//! Flow logs: every connection through a local endpoint, the policies that
//! decided it, and its counters, as Goldmane's flows (the `flows` crate).
//! The ruleset logs each new connection's deciding rules to an NFLOG group
//! (`policy::flowlog`); conntrack counts the connections it let through.
//!
//! ```text
//! NFLOG group ─► Logged ─► Index::resolve ─┐
//! conntrack events, dumps ─────────────────┼─► Correlator ─flush─► flows::Flows ─► gRPC API
//! Desired (model) ─► Identities, Index ────┘
//! ```
//!
//! - [`identity`] (pure): who an address is.
//! - [`correlate`] (pure): decisions and counters joined per connection.
//! - [`pending`]: the staged policies' would-be verdicts, traced.
//! - [`run`]: the driver handing models over, and the reader.

pub mod correlate;
pub mod identity;
pub mod pending;
pub mod run;
