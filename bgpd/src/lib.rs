//! bgpd: the BGP speaker's library. This slice is the pure protocol core:
//! wire codec, OPEN and capability negotiation, UPDATE validation per
//! RFC 7606, and the RFC 4271 §8 state machine. Nothing here touches a
//! socket, a clock or a logger; sessions, RIBs and the FIB come later.
//!
//! Every decoder is `fn(&[u8]) -> Result<_, Notification>`, panic-free on any
//! input, and owned by this crate: zettabgp 0.6.0 is not used (see README.md).
//!
//! # Layout
//! - [`wire`]: framing and header checks (RFC 4271 §4.1, §6.1; RFC 8654),
//!   KEEPALIVE and ROUTE-REFRESH.
//! - [`notification`]: the NOTIFICATION message and names of codes/subcodes.
//! - [`prefix`]: AFI/SAFI and the NLRI prefix codec.
//! - [`capability`]: OPEN capabilities (RFC 5492 and friends).
//! - [`open`]: the OPEN message and session parameter negotiation.
//! - [`attr`]: path attributes: decoding with RFC 7606 error classes, encoding.
//! - [`update`]: the UPDATE message: validation, End-of-RIB, encoding, packing.
//! - [`fsm`]: the RFC 4271 §8 finite state machine and collision detection.

pub mod attr;
pub mod capability;
pub mod fsm;
pub mod notification;
pub mod open;
pub mod prefix;
pub mod update;
pub mod wire;

pub use notification::Notification;
