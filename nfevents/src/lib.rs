//! nfevents: what netfilter tells userspace about connections, decoded.
//! felix's flow logs read it: the packets `log group N` rules log when a
//! policy decides a new connection (NFLOG), and the connections conntrack
//! tracks, with counters (ctnetlink).
//!
//! ```text
//! kernel ──NFLOG group──► NflogSocket ──► nflog::decode ──► Logged (prefix, tuple, ifaces, seq)
//!        ──ctnetlink────► ConntrackSocket / dump ──► conntrack::decode ──► Conn (id, tuples, counters)
//! ```
//!
//! # Layout
//! - [`wire`] (pure): netlink messages and attributes, both ways.
//! - [`packet`] (pure): a packet's 5-tuple from its first bytes.
//! - [`nflog`] (pure): NFLOG group requests and logged packets.
//! - [`conntrack`] (pure): conntrack events, dumps and their requests.
//! - [`socket`]: the netlink sockets, read in batches, losses counted.
//!
//! Every decoder is panic-free on any bytes; what does not decode is an
//! error naming the byte, which the sockets count and skip.

pub mod conntrack;
pub mod nflog;
pub mod packet;
pub mod socket;
pub mod wire;

pub use conntrack::Conn;
pub use nflog::{GroupConfig, Logged};
pub use packet::Tuple;
pub use socket::{ConntrackSocket, NflogSocket, Stats};
