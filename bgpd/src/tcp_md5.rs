//! TCP-MD5 signatures (RFC 2385) through Linux's `TCP_MD5SIG` socket
//! option: a key per peer address, set on the connecting socket before
//! `connect` and on the listening socket (accepted connections inherit
//! it). With a key set, the kernel drops every segment from that address
//! that is unsigned or signed with another key, so a peer with the wrong
//! password never gets past the SYN.
//!
//! The option's `struct tcp_md5sig` is laid out here by a pure function
//! ([`encode`]); only the `setsockopt` call itself is unsafe.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `TCP_MD5SIG_MAXKEYLEN`.
pub const MAX_KEY_LEN: usize = 80;

/// Size of `struct tcp_md5sig`: a 128-byte `sockaddr_storage`, flags,
/// prefix length, key length, interface index, and the key.
const OPT_LEN: usize = 128 + 1 + 1 + 2 + 4 + MAX_KEY_LEN;

/// A TCP-MD5 key: 1 to 80 bytes. Its `Debug` output hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

/// Why a password cannot be a TCP-MD5 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is empty (the kernel would read that as deleting the key)")]
    Empty,
    #[error("is {0} bytes long; TCP-MD5 keys are at most 80")]
    TooLong(usize),
}

impl Key {
    pub fn new(password: &str) -> Result<Key, KeyError> {
        match password.len() {
            0 => Err(KeyError::Empty),
            n if n > MAX_KEY_LEN => Err(KeyError::TooLong(n)),
            _ => Ok(Key(password.as_bytes().to_vec())),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The `struct tcp_md5sig` bytes that give `peer` the key `key` on a
/// socket of family IPv6 (`socket_is_v6`) or IPv4. An IPv4 peer of an
/// IPv6 socket is written as a v4-mapped address, as the kernel expects.
pub fn encode(socket_is_v6: bool, peer: IpAddr, key: &Key) -> [u8; OPT_LEN] {
    let mut buf = [0u8; OPT_LEN];
    match (socket_is_v6, peer) {
        (false, IpAddr::V4(a)) => {
            buf[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            buf[4..8].copy_from_slice(&a.octets());
        }
        (true, _) | (false, IpAddr::V6(_)) => {
            let a = match peer {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            buf[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            buf[8..24].copy_from_slice(&a.octets());
        }
    }
    let k = key.as_bytes();
    buf[130..132].copy_from_slice(&(k.len() as u16).to_ne_bytes());
    buf[136..136 + k.len()].copy_from_slice(k);
    buf
}

/// Sets the key for `peer` on `socket` (listening or not yet connected).
pub fn set_key(
    socket: BorrowedFd<'_>,
    socket_is_v6: bool,
    peer: IpAddr,
    key: &Key,
) -> io::Result<()> {
    let opt = encode(socket_is_v6, peer, key);
    setsockopt_md5(socket, &opt)
}

/// Removes the key for `peer` from `socket` (a zero-length key is how the
/// kernel is told to delete one). A peer without a key is not an error.
pub fn delete_key(socket: BorrowedFd<'_>, socket_is_v6: bool, peer: IpAddr) -> io::Result<()> {
    let opt = encode(socket_is_v6, peer, &Key(Vec::new()));
    match setsockopt_md5(socket, &opt) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

#[allow(unsafe_code)]
fn setsockopt_md5(socket: BorrowedFd<'_>, opt: &[u8; OPT_LEN]) -> io::Result<()> {
    // SAFETY: `socket` is a live descriptor for the duration of the call
    // (it is borrowed), and the kernel reads exactly `OPT_LEN` bytes from
    // `opt`, which is that long; it keeps no pointer to it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            opt.as_ptr().cast(),
            OPT_LEN as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::os::fd::AsFd;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpSocket};

    #[test]
    fn key_length_is_checked() {
        assert_eq!(Key::new(""), Err(KeyError::Empty));
        assert_eq!(Key::new(&"x".repeat(81)), Err(KeyError::TooLong(81)));
        assert!(Key::new(&"x".repeat(80)).is_ok());
        assert_eq!(format!("{:?}", Key::new("secret").unwrap()), "Key(..)");
    }

    #[test]
    fn option_layout_matches_struct_tcp_md5sig() {
        let key = Key::new("abc").unwrap();
        let v4 = encode(false, "10.0.0.2".parse().unwrap(), &key);
        assert_eq!(v4.len(), 216);
        assert_eq!(u16::from_ne_bytes([v4[0], v4[1]]), libc::AF_INET as u16);
        assert_eq!(&v4[4..8], &[10, 0, 0, 2]);
        assert_eq!(u16::from_ne_bytes([v4[130], v4[131]]), 3);
        assert_eq!(&v4[136..140], b"abc\0");
        let mapped = encode(true, "10.0.0.2".parse().unwrap(), &key);
        assert_eq!(
            u16::from_ne_bytes([mapped[0], mapped[1]]),
            libc::AF_INET6 as u16
        );
        assert_eq!(
            &mapped[8..24],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2]
        );
    }

    async fn connect(listen: SocketAddr, key: Option<&str>) -> io::Result<tokio::net::TcpStream> {
        let s = TcpSocket::new_v4()?;
        if let Some(k) = key {
            set_key(s.as_fd(), false, listen.ip(), &Key::new(k).unwrap())?;
        }
        tokio::time::timeout(Duration::from_millis(1500), s.connect(listen))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }

    /// Sets "right" for 127.0.0.1 on a listener bound to `bind`, then
    /// connects from 127.0.0.1 unsigned, with a wrong key and the right one.
    async fn only_the_right_key_gets_through(bind: &str) {
        let listener = TcpListener::bind(bind).await.unwrap();
        let v6 = listener.local_addr().unwrap().is_ipv6();
        let port = listener.local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let key = Key::new("right").unwrap();
        set_key(listener.as_fd(), v6, addr.ip(), &key).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"ok").await.unwrap();
        });
        // Unsigned and wrongly signed SYNs are dropped by the kernel.
        let unsigned = connect(addr, None).await.unwrap_err();
        assert_eq!(unsigned.kind(), io::ErrorKind::TimedOut);
        let wrong = connect(addr, Some("wrong")).await.unwrap_err();
        assert_eq!(wrong.kind(), io::ErrorKind::TimedOut);
        let mut s = connect(addr, Some("right")).await.unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn kernel_lets_only_the_right_key_through_an_ipv4_listener() {
        only_the_right_key_gets_through("127.0.0.1:0").await;
    }

    #[tokio::test]
    async fn ipv4_peer_key_on_an_ipv6_listener_is_set_v4_mapped() {
        only_the_right_key_gets_through("[::ffff:127.0.0.1]:0").await;
    }
}
