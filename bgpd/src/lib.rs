//! bgpd: the BGP speaker, as a library that felix runs in-process and as
//! the `bgpd` daemon (src/main.rs).
//!
//! The protocol core is pure: wire codec, OPEN and capability negotiation,
//! UPDATE validation per RFC 7606, the RFC 4271 §8 state machine, and the
//! RIBs with best-path selection and export rules, and what the speaker
//! and each peer's connections decide (`speaker::core`, `peer_fsm`). None
//! of it touches a socket or a clock: time is an argument. Around it sit
//! thin tokio tasks that only carry out: one session task per peer, the
//! owner task of the speaker, and the FIB task that talks rtnetlink.
//!
//! Every decoder is `fn(&[u8]) -> Result<_, Notification>`, panic-free on any
//! input, and owned by this crate: zettabgp 0.6.0 is only a dev-dependency,
//! a reference decoder in tests (see README.md).
//!
//! # Layout
//! What felix, calicoctl and the daemon use is public: [`speaker`],
//! [`status`], [`fib`], [`config`], [`filter`], [`graceful_restart`],
//! [`prefix`] and the path attributes re-exported here. The rest is
//! crate-private; the `testing` feature makes it public for the
//! integration tests, benchmarks and fuzz targets.
//! - [`wire`]: framing and header checks (RFC 4271 §4.1, §6.1; RFC 8654),
//!   KEEPALIVE and ROUTE-REFRESH.
//! - [`notification`]: the NOTIFICATION message and names of codes/subcodes.
//! - [`prefix`]: AFI/SAFI and the NLRI prefix codec.
//! - [`capability`]: OPEN capabilities (RFC 5492 and friends).
//! - [`open`]: the OPEN message and session parameter negotiation.
//! - [`attr`]: path attributes: decoding with RFC 7606 error classes, encoding.
//! - [`update`]: the UPDATE message: validation, End-of-RIB, encoding, packing.
//! - [`fsm`]: the RFC 4271 §8 finite state machine and collision detection.
//! - [`rib`] (pure): Adj-RIBs-In, Loc-RIB with best-path selection, Adj-RIB-Out
//!   export rules (split horizon, route reflection, next-hop-self), ECMP.
//! - [`filter`] (pure): import/export filters per peer (prefix, community,
//!   AS path matches; accept/reject with modifications), communities as
//!   text, and the well-known communities' export rules (RFC 1997).
//! - [`graceful_restart`] (pure): Graceful Restart (RFC 4724): our capability,
//!   and per peer the helper deciding which routes stay stale and when they go.
//! - `peer_fsm` (pure): one peer's up to two connections, each with its
//!   [`fsm`], and their collision (RFC 4271 §6.8).
//! - [`session`]: the tokio task per peer that carries out `peer_fsm` over
//!   TCP: connecting, accepting, timers, message I/O.
//! - [`tcp_md5`]: TCP-MD5 keys (RFC 2385) on sockets, per peer address.
//! - [`speaker`]: the speaker's handle (`announce`, `withdraw`, `peers`,
//!   `routes`); its pure core `speaker::core` decides what the RIB's changes
//!   mean for the sessions and the FIB, its owner task carries that out.
//! - `replay` (tests): recorded runs of the pure cores, replayed
//!   (`tests/replay/`).
//! - [`fib`]: Loc-RIB best routes into a kernel table via rtnetlink, with a
//!   pure `diff`/`merge` and a thin apply.
//! - [`config`] (pure): the daemon's YAML configuration.
//! - [`status`]: the status socket (text and JSON answers), its client, and
//!   the tables it answers with (`birdc show protocols` / `show route` style).

// What felix, calicoctl and the daemon use.
pub mod config;
pub mod fib;
pub mod filter;
pub mod graceful_restart;
pub mod prefix;
pub mod speaker;
pub mod status;

/// Declares modules that are crate-private, and public only with the
/// `testing` feature, through which the crate's integration tests,
/// benchmarks and fuzz targets reach the codec and the FSM.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "testing")]
        pub mod $name;
        #[cfg(not(feature = "testing"))]
        pub(crate) mod $name;
    )*};
}

internal!(
    attr,
    capability,
    fsm,
    notification,
    open,
    rib,
    session,
    tcp_md5,
    update,
    wire
);
pub(crate) mod peer_fsm;
#[cfg(test)]
mod replay;

pub use attr::{Aggregator, AsPath, LargeCommunity, Origin, PathAttrs, RawAttr};
pub use fsm::State;
pub use notification::Notification;
pub use tcp_md5::Key;
