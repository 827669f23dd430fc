//! A BGP peer played by the test byte by byte over TCP: it reads what bgpd
//! sends message by message, and writes whatever bytes the test gives it,
//! well-formed or not.

use std::net::Ipv4Addr;
use std::time::Duration;

use bgpd::Notification;
use bgpd::attr::DecodeContext;
use bgpd::capability::Capability;
use bgpd::open::Open;
use bgpd::prefix::AfiSafi;
use bgpd::update::Update;
use bgpd::wire::{self, Framer, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The remote end of a session with bgpd.
pub struct Peer {
    pub stream: TcpStream,
    pub framer: Framer,
}

impl Peer {
    pub fn new(stream: TcpStream) -> Peer {
        Peer {
            stream,
            framer: Framer::new(),
        }
    }

    /// The next whole message; `None` once bgpd closed the connection.
    pub async fn recv(&mut self) -> Option<(MessageType, Vec<u8>)> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self.framer.next_message().unwrap() {
                return Some(m);
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("bgpd sent nothing for 10 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.framer.push(&buf[..n]);
        }
    }

    /// Skips keepalives; returns the next other message.
    pub async fn recv_skipping_keepalives(&mut self) -> Option<(MessageType, Vec<u8>)> {
        loop {
            match self.recv().await? {
                (MessageType::Keepalive, _) => continue,
                m => return Some(m),
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next UPDATE, decoded for an eBGP IPv4 session with 4-octet ASes.
    pub async fn recv_update(&mut self) -> Update {
        let (kind, body) = self.recv_skipping_keepalives().await.unwrap();
        assert_eq!(kind, MessageType::Update);
        let ctx = DecodeContext {
            four_octet_as: true,
            ibgp: false,
            families: vec![AfiSafi::IPV4_UNICAST],
        };
        Update::decode(&body, &ctx).unwrap()
    }

    /// The NOTIFICATION bgpd sends, skipping KEEPALIVEs and UPDATEs before it.
    pub async fn expect_notification(&mut self) -> Notification {
        loop {
            match self.recv().await.expect("closed without a NOTIFICATION") {
                (MessageType::Notification, body) => return Notification::decode(&body).unwrap(),
                (MessageType::Keepalive | MessageType::Update, _) => continue,
                (other, _) => panic!("expected a NOTIFICATION, got {other:?}"),
            }
        }
    }

    /// Waits for bgpd to close the connection, sending at most KEEPALIVEs.
    pub async fn expect_closed(&mut self) {
        while let Some((kind, _)) = self.recv().await {
            assert!(
                matches!(kind, MessageType::Keepalive),
                "unexpected {kind:?} after the NOTIFICATION"
            );
        }
    }

    /// Plays the OPEN exchange on a connection bgpd opened: reads bgpd's
    /// OPEN, answers with an OPEN as AS `asn` (IPv4 and IPv6 unicast,
    /// route refresh, 4-octet AS) and a KEEPALIVE, and waits for bgpd's
    /// KEEPALIVE. Returns bgpd's OPEN.
    pub async fn handshake(&mut self, asn: u32, id: Ipv4Addr, hold: u16) -> Open {
        let (kind, body) = self.recv().await.expect("closed before its OPEN");
        assert_eq!(kind, MessageType::Open);
        let theirs = Open::decode(&body).unwrap();
        let ours = Open::new(
            asn,
            hold,
            id,
            vec![
                Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                Capability::Multiprotocol(AfiSafi::IPV6_UNICAST),
                Capability::RouteRefresh,
            ],
        );
        self.send(&ours.encode()).await;
        self.send(&wire::keepalive()).await;
        assert_eq!(self.recv().await.map(|m| m.0), Some(MessageType::Keepalive));
        theirs
    }
}
