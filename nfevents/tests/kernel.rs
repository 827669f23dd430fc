//! The sockets against the real kernel (root, `nft`): in a namespace of
//! its own, an nftables rule logs new TCP connections to port 8080 to an
//! NFLOG group; a real connection over the namespace's loopback is logged
//! (prefix, tuple, sequence), dumped by conntrack with its counters, and
//! deleted, which conntrack reports as its destruction.

use std::time::Duration;

use nfevents::conntrack::{self, Event};
use nfevents::{ConntrackSocket, GroupConfig, NflogSocket, socket};
use testkit::{Netns, require_programs, require_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const GROUP: u16 = 7;
const RULES: &str = "table inet nfevents {
  chain out {
    type filter hook output priority 0;
    ct state new tcp dport 8080 log prefix \"test:A:1\" group 7
  }
}";

fn namespace() -> Netns {
    let ns = Netns::new("nfev").unwrap();
    ns.exec("ip", ["link", "set", "lo", "up"]).unwrap();
    let mut nft = ns.cmd("nft");
    nft.args(["-f", "/dev/stdin"])
        .stdin(std::process::Stdio::piped());
    let mut child = nft.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(RULES.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft refused the rules");
    // Per namespace: counters on every connection.
    ns.exec("sysctl", ["-qw", "net.netfilter.nf_conntrack_acct=1"])
        .unwrap();
    ns
}

/// One TCP connection to port 8080 that sends `hello` and reads `world`.
async fn connection() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:8080").await.unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"world").await.unwrap();
    });
    let mut c = TcpStream::connect("127.0.0.1:8080").await.unwrap();
    let local = c.local_addr().unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).await.unwrap();
    server.await.unwrap();
    local
}

#[test]
fn a_logged_connection_is_read_from_nflog_and_conntrack() {
    if !require_root() || !require_programs(&["nft", "sysctl"]) {
        return;
    }
    let ns = namespace();
    ns.block_on(|| async {
        let mut log = NflogSocket::bind(GroupConfig {
            qthreshold: 1,
            ..GroupConfig::new(GROUP)
        })
        .await
        .unwrap();
        // A second listener for the group is refused.
        let busy = NflogSocket::bind(GroupConfig::new(GROUP))
            .await
            .unwrap_err();
        assert!(
            busy.to_string().contains("binding the NFLOG group 7"),
            "{busy}"
        );
        let mut events = ConntrackSocket::subscribe(&[conntrack::GROUP_DESTROY]).unwrap();

        let client = connection().await;

        let logged = timeout(Duration::from_secs(10), log.next_batch())
            .await
            .expect("no NFLOG packet within 10 s")
            .unwrap();
        assert_eq!(logged.len(), 1, "only the SYN is new: {logged:?}");
        let l = &logged[0];
        assert_eq!((l.group, l.prefix.as_str(), l.hook), (GROUP, "test:A:1", 3));
        let t = l.headers.tuple;
        assert_eq!(
            (t.src, t.sport, t.dport),
            (client.ip(), client.port(), 8080)
        );
        assert_eq!(l.headers.tcp_flags.map(|f| f & 0x02), Some(0x02), "a SYN");
        assert!(l.seq.is_some());
        assert_eq!(log.stats().lost, 0);

        // The table has it, counters both ways (5 bytes of data each way
        // on top of the handshake).
        let conns = socket::dump().await.unwrap();
        let c = conns
            .iter()
            .find(|c| c.orig == t)
            .unwrap_or_else(|| panic!("{t:?} not in {conns:?}"));
        let (orig, reply) = (c.orig_counters.unwrap(), c.reply_counters.unwrap());
        assert!(orig.packets >= 3 && orig.bytes > 5, "{orig:?}");
        assert!(reply.packets >= 2 && reply.bytes > 5, "{reply:?}");
        assert_eq!(c.reply, Some(t.reversed()));

        // Deleted, it is reported destroyed, with its ID and counters.
        socket::delete(&t).await.unwrap();
        let destroyed = timeout(Duration::from_secs(10), async {
            loop {
                let batch = events.next_batch().await.unwrap();
                if let Some(d) = batch.into_iter().find(|d| d.orig == t) {
                    return d;
                }
            }
        })
        .await
        .expect("no destroy event within 10 s");
        assert_eq!(destroyed.event, Event::Destroy);
        assert_eq!(destroyed.id, c.id);
        assert!(destroyed.orig_counters.unwrap().packets >= orig.packets);
        let again = socket::delete(&t).await.unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::NotFound, "{again}");
    })
    .unwrap();
}
