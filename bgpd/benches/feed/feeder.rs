//! The feeder: a small BGP speaker of the benchmark's own. [`Table`]
//! pre-encodes the UPDATEs with bgpd's encoder; [`Feeder::start`] opens an
//! eBGP session on a connected socket (OPEN, KEEPALIVE), streams the whole
//! table and End-of-RIB as fast as the speaker under test reads, then keeps
//! the session up with KEEPALIVEs until it is dropped.
//!
//! Plain threads and blocking sockets: a writer thread owns the session, a
//! reader thread frames what the speaker sends (its OPEN, KEEPALIVEs, a
//! NOTIFICATION) and passes it on.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bgpd::Notification;
use bgpd::attr::{AsPath, EncodeContext, NextHop, Origin, PathAttrs};
use bgpd::capability::Capability;
use bgpd::open::Open;
use bgpd::prefix::{AfiSafi, Prefix};
use bgpd::update::{end_of_rib, pack_announcements};
use bgpd::wire::{self, MessageType};

/// Transit ASes the generated paths go through.
const TRANSIT: [u32; 12] = [
    3356, 174, 1299, 2914, 6939, 6453, 3257, 6762, 5511, 7018, 3491, 1273,
];

/// A deterministic generator (xorshift64*), so every speaker gets the very
/// same table.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }
}

/// The pre-encoded UPDATEs of the benchmark table.
pub struct Table {
    /// Every UPDATE message, back to back, then End-of-RIB.
    pub bytes: Vec<u8>,
    pub prefixes: u32,
    pub updates: usize,
    pub attr_sets: usize,
}

/// The `n`th prefix of the table: consecutive /24s from 1.0.0.0.
pub fn nth_prefix(n: u32) -> Prefix {
    Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0100_0000 + (n << 8))), 24)
        .expect("a /24 without host bits")
}

impl Table {
    /// `prefixes` IPv4 /24s from `asn` with next hop `next_hop`, in groups
    /// of 100 to 1,000 prefixes that share one attribute set each: an
    /// AS_PATH of 2 to 9 ASes (`asn`, transit ASes, an origin AS), 0 to 4
    /// communities, a MED on a third of them, ORIGIN IGP or INCOMPLETE.
    /// Each group goes out in as few 4,096-byte UPDATEs as fit.
    pub fn new(prefixes: u32, asn: u32, next_hop: Ipv4Addr) -> Table {
        let ctx = EncodeContext {
            four_octet_as: true,
            max_message_len: wire::MAX_MESSAGE_LEN,
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut bytes = Vec::with_capacity(prefixes as usize * 9 / 2);
        let (mut n, mut updates, mut attr_sets) = (0, 0, 0);
        while n < prefixes {
            let size = rng.range(100, 1000).min(prefixes - n);
            let mut path = vec![asn];
            for _ in 0..rng.range(0, 7) {
                path.push(TRANSIT[rng.range(0, TRANSIT.len() as u32 - 1) as usize]);
            }
            path.push(rng.range(1, 64_000));
            let attrs = PathAttrs {
                origin: Some(if rng.range(0, 9) == 0 {
                    Origin::Incomplete
                } else {
                    Origin::Igp
                }),
                as_path: Some(AsPath::sequence(path)),
                med: (rng.range(0, 2) == 0).then(|| rng.range(0, 1000)),
                communities: (0..rng.range(0, 4))
                    .map(|_| (asn << 16) | rng.range(0, 999))
                    .collect(),
                ..PathAttrs::default()
            };
            let group: Vec<Prefix> = (n..n + size).map(nth_prefix).collect();
            let messages = pack_announcements(&attrs, NextHop::V4(next_hop), &group, &ctx)
                .expect("the generated attributes fit an UPDATE");
            updates += messages.len();
            messages.iter().for_each(|m| bytes.extend_from_slice(m));
            attr_sets += 1;
            n += size;
        }
        bytes.extend_from_slice(&end_of_rib(AfiSafi::IPV4_UNICAST));
        Table {
            bytes,
            prefixes,
            updates,
            attr_sets,
        }
    }
}

/// When the feed got where.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// The speaker's KEEPALIVE arrived: Established. The first UPDATE is
    /// written at once.
    pub established: Option<Instant>,
    /// The last byte of the table (and End-of-RIB) went into the socket.
    pub written: Option<Instant>,
}

enum Progress {
    Established(Instant),
    Written(Instant),
}

/// What the reader thread passes on.
enum Heard {
    Open(Box<Open>),
    Keepalive,
    Notification(Notification),
    Closed(String),
}

/// A running feed; dropping it closes the session.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    stream: TcpStream,
    writer: Option<JoinHandle<Result<(), String>>>,
    progress: Receiver<Progress>,
    timings: Timings,
}

fn read_loop(mut stream: TcpStream, tx: mpsc::Sender<Heard>) {
    let mut framer = wire::Framer::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return drop(tx.send(Heard::Closed("connection closed".into()))),
            Err(e) => return drop(tx.send(Heard::Closed(e.to_string()))),
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            let heard = match framer.next_message() {
                Ok(None) => break,
                Err(n) => Heard::Closed(format!("framing: {n}")),
                Ok(Some((MessageType::Open, body))) => match Open::decode(&body) {
                    Ok(open) => Heard::Open(Box::new(open)),
                    Err(n) => Heard::Closed(format!("their OPEN: {n}")),
                },
                Ok(Some((MessageType::Keepalive, _))) => Heard::Keepalive,
                Ok(Some((MessageType::Notification, body))) => match Notification::decode(&body) {
                    Ok(n) => Heard::Notification(n),
                    Err(n) => Heard::Closed(format!("their NOTIFICATION: {n}")),
                },
                // UPDATEs and ROUTE-REFRESH: nothing to do.
                Ok(Some(_)) => continue,
            };
            if tx.send(heard).is_err() {
                return;
            }
        }
    }
}

/// Waits up to `timeout` for `want` to match what the speaker sends.
fn expect<T>(
    rx: &Receiver<Heard>,
    timeout: Duration,
    what: &str,
    mut want: impl FnMut(Heard) -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Heard::Notification(n)) => return Err(format!("waiting for {what}: got {n}")),
            Ok(Heard::Closed(e)) => return Err(format!("waiting for {what}: {e}")),
            Ok(h) => {
                if let Some(v) = want(h) {
                    return Ok(v);
                }
            }
            Err(_) => return Err(format!("timed out waiting for {what}")),
        }
    }
}

impl Feeder {
    /// Runs the session on `stream` (already connected to the speaker)
    /// as `asn`/`router_id`, feeding it `table`.
    pub fn start(stream: TcpStream, asn: u32, router_id: Ipv4Addr, table: Arc<Table>) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let (heard_tx, heard_rx) = mpsc::channel();
        let (progress_tx, progress) = mpsc::channel();
        let reader = stream.try_clone().expect("cloning the feeder's socket");
        std::thread::spawn(move || read_loop(reader, heard_tx));
        let mut out = stream.try_clone().expect("cloning the feeder's socket");
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let io = |e: std::io::Error| format!("writing to the speaker: {e}");
                let open = Open::new(
                    asn,
                    90,
                    router_id,
                    vec![
                        Capability::Multiprotocol(AfiSafi::IPV4_UNICAST),
                        Capability::RouteRefresh,
                    ],
                );
                out.write_all(&open.encode()).map_err(io)?;
                let theirs = expect(&heard_rx, Duration::from_secs(30), "OPEN", |h| match h {
                    Heard::Open(o) => Some(o),
                    _ => None,
                })?;
                out.write_all(&wire::keepalive()).map_err(io)?;
                expect(&heard_rx, Duration::from_secs(30), "KEEPALIVE", |h| {
                    matches!(h, Heard::Keepalive).then_some(())
                })?;
                let _ = progress_tx.send(Progress::Established(Instant::now()));
                out.write_all(&table.bytes).map_err(io)?;
                let _ = progress_tx.send(Progress::Written(Instant::now()));
                // KEEPALIVE every few seconds (a busy speaker may take a
                // while to read one), checking for a NOTIFICATION or a
                // closed session meanwhile.
                let hold = theirs.hold_time.min(90);
                let every = Duration::from_secs(u64::from(hold.max(3) / 3).min(5));
                while !stop.load(Ordering::Relaxed) {
                    match heard_rx.recv_timeout(every) {
                        Ok(Heard::Notification(n)) => return Err(format!("after the feed: {n}")),
                        Ok(Heard::Closed(e)) => return Err(format!("after the feed: {e}")),
                        Ok(_) => {}
                        Err(RecvTimeoutError::Timeout) => {
                            out.write_all(&wire::keepalive()).map_err(io)?
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                Ok(())
            })
        };
        Feeder {
            stop,
            stream,
            writer: Some(writer),
            progress,
            timings: Timings::default(),
        }
    }

    /// How far the feed got; `Err` if the session failed.
    pub fn timings(&mut self) -> Result<Timings, String> {
        while let Ok(p) = self.progress.try_recv() {
            match p {
                Progress::Established(t) => self.timings.established = Some(t),
                Progress::Written(t) => self.timings.written = Some(t),
            }
        }
        if self.writer.as_ref().is_some_and(|w| w.is_finished())
            && let Some(w) = self.writer.take()
        {
            match w.join() {
                Ok(Err(e)) => return Err(e),
                Ok(Ok(_)) => {}
                Err(_) => return Err("the feeder's writer panicked".into()),
            }
        }
        Ok(self.timings)
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
