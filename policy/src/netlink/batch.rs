//! One nf_tables transaction: [`Batch`] collects netlink messages between
//! `NFNL_MSG_BATCH_BEGIN` and `NFNL_MSG_BATCH_END` and remembers which object
//! each sequence number stands for; [`send`] writes the whole batch in ONE
//! `sendmsg` on a `NETLINK_NETFILTER` socket whose buffers it enlarges to fit,
//! then reads an acknowledgement for every message. The kernel commits a batch
//! whole or not at all, so an error anywhere means nothing changed; the error
//! names the object of the message the kernel refused.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::ffi::{self, MAX_MESSAGE, Payload};

/// `NFNL_SUBSYS_NFTABLES`, the high byte of every nf_tables message type.
const SUBSYS_NFTABLES: u16 = 10;
/// `NLMSG_ERROR`: an acknowledgement (error 0) or an error.
const NLMSG_ERROR: u16 = 2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
/// `NFPROTO_INET`.
pub const FAMILY_INET: u16 = 1;

/// nf_tables message kinds (`enum nf_tables_msg_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    NewTable = 0,
    NewChain = 3,
    DelChain = 5,
    NewRule = 6,
    DelRule = 8,
    NewSet = 9,
    DelSet = 11,
    NewSetElem = 12,
    DelSetElem = 14,
}

impl Msg {
    fn flags(self) -> u16 {
        let _ = (NLM_F_REPLACE, NLM_F_EXCL);
        NLM_F_ACK
            | match self {
                Msg::NewRule => NLM_F_CREATE | NLM_F_APPEND,
                Msg::NewTable | Msg::NewChain | Msg::NewSet | Msg::NewSetElem => NLM_F_CREATE,
                _ => 0,
            }
    }
}

/// Why a batch did not go through. Nothing was committed in any case.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("the kernel refused {what} (message {seq}): {source}")]
    Refused {
        what: String,
        seq: u32,
        source: io::Error,
    },
    #[error("the kernel acknowledged {acked} of {sent} messages")]
    MissingAcks { acked: usize, sent: usize },
}

/// A transaction being built.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    used: usize,
    first_seq: u32,
    /// What the message with sequence number `first_seq + 1 + i` changes.
    what: Vec<String>,
}

impl Batch {
    /// An empty batch whose messages are numbered from `first_seq`.
    pub fn new(first_seq: u32) -> Self {
        let mut batch = Batch {
            buf: Vec::new(),
            used: 0,
            first_seq,
            what: Vec::new(),
        };
        let room = batch.room();
        batch.used += ffi::write_batch_marker(room, first_seq, false);
        batch
    }

    /// The free tail of the buffer, at least [`MAX_MESSAGE`] long.
    fn room(&mut self) -> &mut [u8] {
        if self.buf.len() < self.used + MAX_MESSAGE {
            let grow = (self.buf.len() / 2).max(4 * MAX_MESSAGE);
            self.buf.resize(self.used + MAX_MESSAGE + grow, 0);
        }
        &mut self.buf[self.used..]
    }

    /// Appends one message about `what` (a name for error reports).
    pub fn push(&mut self, msg: Msg, payload: Payload<'_>, what: impl Into<String>) {
        let seq = self.next_seq();
        let ty = (SUBSYS_NFTABLES << 8) | msg as u16;
        let room = self.room();
        let len = ffi::write_message(room, ty, FAMILY_INET, msg.flags(), seq, &payload);
        self.used += len;
        self.what.push(what.into());
    }

    fn next_seq(&self) -> u32 {
        self.first_seq
            .wrapping_add(1)
            .wrapping_add(self.what.len() as u32)
    }

    /// How many messages (besides begin and end) the batch holds.
    pub fn len(&self) -> usize {
        self.what.len()
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.what.is_empty()
    }

    /// Closes the batch: its bytes, ready for [`send`].
    pub fn finish(mut self) -> Finished {
        let seq = self.next_seq();
        let room = self.room();
        let len = ffi::write_batch_marker(room, seq, true);
        self.used += len;
        self.buf.truncate(self.used);
        Finished {
            bytes: self.buf,
            first_seq: self.first_seq,
            what: self.what,
        }
    }
}

/// A closed batch.
#[derive(Debug)]
pub struct Finished {
    bytes: Vec<u8>,
    first_seq: u32,
    what: Vec<String>,
}

impl Finished {
    /// The netlink bytes, begin to end.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What the message numbered `seq` changes.
    pub fn what(&self, seq: u32) -> Option<&str> {
        let i = seq.wrapping_sub(self.first_seq).wrapping_sub(1) as usize;
        self.what.get(i).map(String::as_str)
    }
}

/// One `NLMSG_ERROR` reply: the sequence number it answers and its errno (0
/// for an acknowledgement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub seq: u32,
    pub errno: i32,
}

/// The acknowledgements in a buffer of netlink replies; other messages are skipped.
pub fn parse_acks(mut buf: &[u8]) -> Vec<Ack> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let len = u32_at(buf, 0) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32_at(buf, 8);
        if ty == NLMSG_ERROR && len >= 20 {
            let error = u32_at(buf, 16) as i32;
            out.push(Ack { seq, errno: -error });
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// A `NETLINK_NETFILTER` socket in the calling thread's network namespace.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Socket {
    /// Opens and binds a socket.
    #[allow(unsafe_code)]
    pub fn open() -> io::Result<Socket> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = check(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        })?;
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Socket { fd })
    }

    /// Opens a socket in the network namespace `netns` (a `/run/netns/NAME`
    /// or `/proc/PID/ns/net` file): a short-lived thread enters the namespace
    /// and opens it there. A socket stays in the namespace it was opened in,
    /// whichever thread uses it later.
    pub fn open_in(netns: &File) -> io::Result<Socket> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    enter(netns)?;
                    Socket::open()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Sets a socket option to an int, forcing it past the sysctl limits
    /// (`force`, needs CAP_NET_ADMIN) or else asking politely (`plain`).
    #[allow(unsafe_code)]
    fn set_int(&self, force: libc::c_int, plain: libc::c_int, value: usize) -> io::Result<()> {
        let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
        let set = |opt| {
            // SAFETY: `value` is a live c_int and its size is passed.
            check(unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&raw const value).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            })
        };
        set(force).or_else(|_| set(plain)).map(|_| ())
    }

    /// Enlarges the send and receive buffers.
    pub fn set_buffers(&self, send: usize, receive: usize) -> io::Result<()> {
        self.set_int(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, send)?;
        self.set_int(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, receive)
    }

    /// Sends `bytes` to the kernel in one `sendmsg`.
    #[allow(unsafe_code)]
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_nl is the kernel's address (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        // SAFETY: zeroed msghdr is valid; fields set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut addr).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        // SAFETY: every pointer in `msg` refers to a live local or to `bytes`,
        // which the kernel only reads.
        let sent = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &raw const msg, 0) };
        let sent = usize::try_from(sent).map_err(|_| io::Error::last_os_error())?;
        if sent != bytes.len() {
            return Err(io::Error::other(format!(
                "sendmsg wrote {sent} of {} bytes",
                bytes.len()
            )));
        }
        Ok(())
    }

    /// Receives one datagram into `buf`; `wait == false` returns WouldBlock
    /// when nothing is queued.
    #[allow(unsafe_code)]
    pub fn recv(&self, buf: &mut [u8], wait: bool) -> io::Result<usize> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// Moves the calling thread into the network namespace `netns`.
#[allow(unsafe_code)]
fn enter(netns: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor `netns` keeps open; it only
    // changes the calling thread's namespace, checked below.
    check(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) }).map(|_| ())
}

/// Receive-buffer bytes per expected acknowledgement (an ack's skb truesize
/// is well below this).
const RCVBUF_PER_ACK: usize = 1024;

/// Sends the batch in one `sendmsg` on `socket` and reads every
/// acknowledgement; leaves no reply queued behind.
pub fn send(socket: &Socket, batch: &Finished) -> Result<(), BatchError> {
    let bytes = batch.bytes();
    socket
        .set_buffers(
            bytes.len() + (1 << 20),
            batch.what.len() * RCVBUF_PER_ACK + (1 << 20),
        )
        .map_err(BatchError::Socket)?;
    socket.send(bytes).map_err(BatchError::Socket)?;
    // nfnetlink processes the batch inside sendmsg, so every reply is queued
    // by now; a blocking read covers a kernel that answers later.
    let sent = batch.what.len();
    let mut acked = 0;
    let mut first_error: Option<Ack> = None;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let done = acked == sent;
        let wait = !done && first_error.is_none();
        let n = match socket.recv(&mut buf, wait) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(BatchError::Socket(e)),
        };
        for ack in parse_acks(&buf[..n]) {
            if ack.errno == 0 {
                acked += 1;
            } else if first_error.is_none() {
                first_error = Some(ack);
            }
        }
        if acked == sent && first_error.is_none() {
            break;
        }
    }
    if let Some(Ack { seq, errno }) = first_error {
        return Err(BatchError::Refused {
            what: batch.what(seq).unwrap_or("an unknown message").to_string(),
            seq,
            source: io::Error::from_raw_os_error(errno),
        });
    }
    if acked != sent {
        return Err(BatchError::MissingAcks { acked, sent });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::ffi::Table;

    fn table(name: &str) -> Table {
        let mut t = Table::new();
        t.set_str(nftnl_sys::NFTNL_TABLE_NAME, name)
            .set_u32(nftnl_sys::NFTNL_TABLE_FAMILY, u32::from(FAMILY_INET));
        t
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_and_numbers_its_messages() {
        let mut b = Batch::new(100);
        b.push(
            Msg::NewTable,
            Payload::Table(&table("calico")),
            "table calico",
        );
        b.push(
            Msg::NewTable,
            Payload::Table(&table("other")),
            "table other",
        );
        assert_eq!(b.len(), 2);
        let f = b.finish();
        let mut seqs = Vec::new();
        let mut types = Vec::new();
        let mut rest = f.bytes();
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            types.push(u16::from_ne_bytes([rest[4], rest[5]]));
            seqs.push(u32::from_ne_bytes(rest[8..12].try_into().unwrap()));
            rest = &rest[len.next_multiple_of(4)..];
        }
        assert_eq!(types, [0x10, 0x0a00, 0x0a00, 0x11]);
        assert_eq!(seqs, [100, 101, 102, 103]);
        assert_eq!(f.what(102), Some("table other"));
        assert_eq!(f.what(103), None);
    }

    #[test]
    fn acks_and_errors_are_read_from_a_reply_buffer() {
        let mut buf = Vec::new();
        for (seq, err) in [(5u32, 0i32), (6, -2)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&err.to_ne_bytes());
            buf.extend_from_slice(&[0u8; 16]);
        }
        assert_eq!(
            parse_acks(&buf),
            [Ack { seq: 5, errno: 0 }, Ack { seq: 6, errno: 2 }]
        );
    }
}
