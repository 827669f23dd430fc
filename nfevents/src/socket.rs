//! The thin I/O: netlink sockets that bind an NFLOG group ([`NflogSocket`])
//! or subscribe to conntrack events and dump the table
//! ([`ConntrackSocket`]), each read in batches. Nothing here blocks the
//! kernel: when a socket's buffer is full the kernel drops, and the loss is
//! counted ([`Stats`]): NFLOG by its sequence numbers, both by `ENOBUFS`.

use std::io;

use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols};

use crate::conntrack::{self, Conn};
use crate::nflog::{self, GroupConfig, Logged};
use crate::wire::{self, Message, NLMSG_DONE, NLMSG_ERROR};

/// The receive buffer asked for (forced past `rmem_max`, as root): room
/// for bursts of new connections.
const RECEIVE_BUFFER: usize = 8 << 20;
/// The most one `recv` reads.
const READ_SIZE: usize = 1 << 20;

/// What a socket has seen, cumulatively.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages decoded.
    pub received: u64,
    /// Messages that did not decode: counted and skipped.
    pub malformed: u64,
    /// Times the kernel said the socket overflowed (`ENOBUFS`).
    pub overruns: u64,
    /// NFLOG packets missing from the group's sequence.
    pub lost: u64,
}

fn socket() -> io::Result<TokioSocket> {
    let mut socket = TokioSocket::new(protocols::NETLINK_NETFILTER)?;
    socket.socket_mut().bind(&SocketAddr::new(0, 0))?;
    let fd = std::os::fd::AsFd::as_fd(socket.socket_ref());
    // Best effort: without the capability the default buffer stays.
    let _ =
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::RcvBufForce, &RECEIVE_BUFFER);
    Ok(socket)
}

/// Sends a request and waits for its acknowledgement, skipping anything
/// else (multicast messages arriving meanwhile).
async fn request(socket: &TokioSocket, bytes: &[u8], what: &str) -> io::Result<()> {
    socket.send(bytes).await?;
    let seq = wire::messages(bytes)
        .next()
        .and_then(Result::ok)
        .map(|m| m.seq);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        socket.recv(&mut buf).await?;
        for m in wire::messages(&buf).flatten() {
            if m.kind == NLMSG_ERROR && Some(m.seq) == seq {
                return match m.error_code() {
                    Some(0) => Ok(()),
                    Some(errno) => Err(io::Error::new(
                        io::Error::from_raw_os_error(errno).kind(),
                        format!("{what}: {}", io::Error::from_raw_os_error(errno)),
                    )),
                    None => Err(io::Error::other(format!("{what}: short acknowledgement"))),
                };
            }
        }
    }
}

/// Reads one batch into `buf`, counting an overrun as such (the read is
/// retried: the socket is usable again after `ENOBUFS`).
async fn read(socket: &TokioSocket, buf: &mut Vec<u8>, stats: &mut Stats) -> io::Result<()> {
    loop {
        buf.clear();
        match socket.recv(buf).await {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => stats.overruns += 1,
            Err(e) => return Err(e),
        }
    }
}

/// A socket bound to one NFLOG group.
pub struct NflogSocket {
    socket: TokioSocket,
    group: u16,
    buf: Vec<u8>,
    stats: Stats,
    last_seq: Option<u32>,
}

impl NflogSocket {
    /// Binds the group in this network namespace (EBUSY if another
    /// socket has it).
    pub async fn bind(config: GroupConfig) -> io::Result<Self> {
        let socket = socket()?;
        for (i, req) in nflog::bind_requests(&config, 1).iter().enumerate() {
            let what = if i == 0 {
                "binding the NFLOG group"
            } else {
                "configuring the NFLOG group"
            };
            request(&socket, req, &format!("{what} {}", config.group)).await?;
        }
        Ok(NflogSocket {
            socket,
            group: config.group,
            buf: Vec::with_capacity(READ_SIZE),
            stats: Stats::default(),
            last_seq: None,
        })
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The next batch of logged packets (at least one message's worth).
    pub async fn next_batch(&mut self) -> io::Result<Vec<Logged>> {
        loop {
            read(&self.socket, &mut self.buf, &mut self.stats).await?;
            let mut out = Vec::new();
            for m in wire::messages(&self.buf) {
                let Ok(m) = m else {
                    self.stats.malformed += 1;
                    continue;
                };
                if !nflog::is_packet(&m) {
                    continue;
                }
                match nflog::decode(&m) {
                    Ok(logged) => {
                        count_seq(&mut self.last_seq, &mut self.stats, logged.seq);
                        self.stats.received += 1;
                        out.push(logged);
                    }
                    Err(e) => {
                        self.stats.malformed += 1;
                        tracing::debug!(error = %e, "malformed NFLOG message skipped");
                    }
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// Counts the packets missing between the last sequence number and `seq`.
fn count_seq(last_seq: &mut Option<u32>, stats: &mut Stats, seq: Option<u32>) {
    let Some(seq) = seq else { return };
    if let Some(last) = *last_seq {
        let gap = seq.wrapping_sub(last).wrapping_sub(1);
        // A restart of the instance's numbering is no loss.
        if gap < u32::MAX / 2 {
            stats.lost += u64::from(gap);
        }
    }
    *last_seq = Some(seq);
}

impl std::fmt::Debug for NflogSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NflogSocket")
            .field("group", &self.group)
            .field("stats", &self.stats)
            .finish()
    }
}

impl std::fmt::Debug for ConntrackSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConntrackSocket")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Drop for NflogSocket {
    fn drop(&mut self) {
        // The kernel unbinds the group when the socket closes; saying so
        // first frees it at once for the next listener.
        let _ = self
            .socket
            .socket_ref()
            .send(&nflog::unbind_request(self.group, 0), 0);
    }
}

/// A socket subscribed to conntrack events.
pub struct ConntrackSocket {
    socket: TokioSocket,
    buf: Vec<u8>,
    stats: Stats,
}

/// Decodes the connections of one buffer, counting what does not decode.
fn conns(buf: &[u8], stats: &mut Stats, out: &mut Vec<Conn>) -> bool {
    let mut done = false;
    for m in wire::messages(buf) {
        let Ok(m): Result<Message<'_>, _> = m else {
            stats.malformed += 1;
            continue;
        };
        if m.kind == NLMSG_DONE {
            done = true;
            continue;
        }
        if !conntrack::is_conn(&m) {
            continue;
        }
        match conntrack::decode(&m) {
            Ok(c) => {
                stats.received += 1;
                out.push(c);
            }
            Err(e) => {
                stats.malformed += 1;
                tracing::debug!(error = %e, "malformed conntrack message skipped");
            }
        }
    }
    done
}

impl ConntrackSocket {
    /// Subscribes to the given event groups ([`conntrack::GROUP_NEW`],
    /// [`conntrack::GROUP_DESTROY`], ...).
    pub fn subscribe(groups: &[u32]) -> io::Result<Self> {
        let socket = socket()?;
        for &g in groups {
            socket.socket_ref().add_membership(g)?;
        }
        Ok(ConntrackSocket {
            socket,
            buf: Vec::with_capacity(READ_SIZE),
            stats: Stats::default(),
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The next batch of connection events.
    pub async fn next_batch(&mut self) -> io::Result<Vec<Conn>> {
        loop {
            read(&self.socket, &mut self.buf, &mut self.stats).await?;
            let mut out = Vec::new();
            conns(&self.buf, &mut self.stats, &mut out);
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// Deletes the connection whose original tuple is `orig` (ENOENT if
/// there is none).
pub async fn delete(orig: &crate::Tuple) -> io::Result<()> {
    let socket = socket()?;
    request(
        &socket,
        &conntrack::delete_request(1, orig),
        "deleting a connection",
    )
    .await
}

/// Every connection in this network namespace's table, with counters.
pub async fn dump() -> io::Result<Vec<Conn>> {
    let socket = socket()?;
    socket.send(&conntrack::dump_request(1)).await?;
    let mut buf = Vec::with_capacity(READ_SIZE);
    let mut stats = Stats::default();
    let mut out = Vec::new();
    loop {
        read(&socket, &mut buf, &mut stats).await?;
        if let Some(Ok(m)) = wire::messages(&buf).next()
            && m.kind == NLMSG_ERROR
            && let Some(errno) = m.error_code().filter(|&e| e != 0)
        {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if conns(&buf, &mut stats, &mut out) {
            return Ok(out);
        }
    }
}
