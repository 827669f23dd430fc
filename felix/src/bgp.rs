//! The BGP driver: felix's in-process [`bgpd::speaker::Speaker`], kept in
//! line with [`Desired::bgp`](crate::state::Desired::bgp).
//!
//! ```text
//! Desired::bgp ─apply─▶ BgpDriver ──add/remove/update_peer, announce/withdraw──▶ Speaker ──▶ peers
//!                          │                                                       │
//!                          └─ watch<SpeakerHandle> ─▶ status socket (bgpd::status) └─▶ kernel (FIB)
//! ```
//!
//! - The first `Some` starts the speaker: listening on `listen_port`
//!   (every address), best routes into the kernel ([`BgpOptions::fib`]:
//!   the main table, bgpd's own protocol number), graceful restart with
//!   `restart_time`. Routes of that protocol already in the table mean
//!   felix restarted: the speaker restarts gracefully (R and F bits set,
//!   the routes kept until the peers have sent theirs again).
//! - Every apply reconciles peers by address ([`plan_peers`]: added,
//!   removed, updated; an unchanged peer is never touched, and a change of
//!   policy or description alone does not reset its session) and the
//!   originated prefixes ([`plan_announce`], ORIGIN IGP).
//! - A changed AS, router ID, cluster ID, listen port or restart time
//!   ([`Settings`]) restarts the speaker.
//! - `None` stops it (Cease to every peer) and removes its routes from
//!   the kernel. Dropping the driver (felix exiting) abandons the speaker:
//!   its sessions close without a NOTIFICATION, so the peers keep our
//!   routes for the graceful restart that follows, and so do we.
//!
//! What the speaker has been told is recorded one operation at a time, so
//! an apply that fails half-way is finished by the next one.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bgpd::fib::{self, Fib, FibConfig, FibError, FibTable};
use bgpd::graceful_restart::MAX_RESTART_TIME;
use bgpd::speaker::{PeerConfig, Speaker, SpeakerConfig, SpeakerError, SpeakerHandle};
use bgpd::status;
use bgpd::{Origin, PathAttrs};
use ipnet::IpNet;
use task::Task;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::state::{BgpDesired, Desired, Driver, DriverError, PrefixTags};

/// How the driver runs the speaker, besides what [`BgpDesired`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpOptions {
    /// Where to serve the status socket (`calicoctl node status` reads
    /// `/run/calico/bgp.sock`); none if `None`.
    pub status_socket: Option<PathBuf>,
    /// The kernel table and protocol number of learned routes.
    pub fib: FibConfig,
    /// Reconcile the kernel table at the latest this long after start.
    pub fib_sync_after: Duration,
}

impl Default for BgpOptions {
    fn default() -> Self {
        BgpOptions {
            status_socket: None,
            fib: FibConfig::default(),
            fib_sync_after: Duration::from_secs(30),
        }
    }
}

/// What stopped an apply.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    #[error("binding the BGP status socket {path}: {source}")]
    StatusSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listening for BGP on port {port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("kernel routes of the BGP speaker: {0}")]
    Fib(#[from] FibError),
    #[error("BGP speaker: {0}")]
    Speaker(#[from] SpeakerError),
}

/// The speaker-wide settings of [`BgpDesired`]: any change restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub cluster_id: Option<Ipv4Addr>,
    pub listen_port: u16,
    pub restart_time: Duration,
}

impl Settings {
    pub fn of(d: &BgpDesired) -> Settings {
        Settings {
            asn: d.asn,
            router_id: d.router_id,
            cluster_id: d.cluster_id,
            listen_port: d.listen_port,
            restart_time: d.restart_time,
        }
    }
}

/// What to tell the speaker about its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerChanges {
    pub remove: Vec<IpAddr>,
    pub add: Vec<PeerConfig>,
    /// Peers whose configuration changed (the speaker decides whether that
    /// needs a new session).
    pub update: Vec<PeerConfig>,
}

/// The peer changes from `current` to `desired`, by address; equal peers
/// are left out.
pub fn plan_peers(
    current: &BTreeMap<IpAddr, PeerConfig>,
    desired: &BTreeMap<IpAddr, PeerConfig>,
) -> PeerChanges {
    let mut out = PeerChanges::default();
    for addr in current.keys().filter(|a| !desired.contains_key(a)) {
        out.remove.push(*addr);
    }
    for (addr, peer) in desired {
        match current.get(addr) {
            None => out.add.push(peer.clone()),
            Some(c) if c != peer => out.update.push(peer.clone()),
            Some(_) => {}
        }
    }
    out
}

/// The prefixes to announce (new, or with other communities) and to
/// withdraw to go from `current` to `desired`.
pub fn plan_announce(
    current: &BTreeMap<IpNet, PrefixTags>,
    desired: &BTreeMap<IpNet, PrefixTags>,
) -> (Vec<(IpNet, PrefixTags)>, Vec<IpNet>) {
    (
        desired
            .iter()
            .filter(|(p, t)| current.get(p) != Some(t))
            .map(|(p, t)| (*p, t.clone()))
            .collect(),
        current
            .keys()
            .filter(|p| !desired.contains_key(p))
            .copied()
            .collect(),
    )
}

/// What `d` originates: each prefix with its communities.
fn originated(d: &BgpDesired) -> BTreeMap<IpNet, PrefixTags> {
    d.announce
        .iter()
        .map(|p| (*p, d.tags.get(p).cloned().unwrap_or_default()))
        .collect()
}

/// A running speaker and what it has been told.
struct Running {
    settings: Settings,
    speaker: Speaker,
    /// Ends by itself once the speaker lets go of the FIB's queue.
    fib_task: JoinHandle<()>,
    peers: BTreeMap<IpAddr, PeerConfig>,
    announced: BTreeMap<IpNet, PrefixTags>,
}

/// The [`Driver`] of [`Desired::bgp`].
pub struct BgpDriver {
    options: BgpOptions,
    running: Option<Running>,
    status: watch::Sender<Option<SpeakerHandle>>,
    /// Serves the status socket; aborted with the driver.
    status_task: Option<Task<()>>,
}

impl std::fmt::Debug for BgpDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BgpDriver")
            .field("options", &self.options)
            .field("settings", &self.running.as_ref().map(|r| r.settings))
            .finish()
    }
}

impl Drop for BgpDriver {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.speaker.abandon();
        }
        self.status_task.take();
        if let Some(path) = &self.options.status_socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl BgpDriver {
    /// A driver with no speaker yet; it serves the status socket at once
    /// (answering "BGP is not running" until the first `Some`). Must be
    /// called inside a tokio runtime.
    pub fn new(options: BgpOptions) -> Result<BgpDriver, BgpError> {
        let (status, source) = watch::channel(None);
        let status_task = match &options.status_socket {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let listener = status::bind(path).map_err(|source| BgpError::StatusSocket {
                    path: path.clone(),
                    source,
                })?;
                Some(Task::spawn(status::serve(listener, source)))
            }
            None => None,
        };
        Ok(BgpDriver {
            options,
            running: None,
            status,
            status_task,
        })
    }

    /// The running speaker, for status and metrics; follows restarts.
    pub fn status_source(&self) -> status::Source {
        self.status.subscribe()
    }

    async fn start(&mut self, d: &BgpDesired) -> Result<(), BgpError> {
        let settings = Settings::of(d);
        let fib = Fib::open(self.options.fib).await?;
        let mut config = SpeakerConfig::new(d.asn, d.router_id);
        config.cluster_id = d.cluster_id;
        config.fib_sync_after = self.options.fib_sync_after;
        let gr = &mut config.graceful_restart;
        gr.restart_time = u16::try_from(d.restart_time.as_secs())
            .unwrap_or(u16::MAX)
            .min(MAX_RESTART_TIME);
        // Our routes still in the kernel: felix restarted, and they still
        // forward.
        gr.restarting = gr.enabled && fib.installed_len() > 0;
        let listener = listen(d.listen_port).await?;
        info!(asn = d.asn, router_id = %d.router_id, port = d.listen_port,
              restarting = gr.restarting, "starting the BGP speaker");
        let (fib, fib_task) = fib::spawn(fib);
        let speaker = Speaker::start(config, Some(listener), Some(fib));
        self.status.send_replace(Some(speaker.handle()));
        self.running = Some(Running {
            settings,
            speaker,
            fib_task,
            peers: BTreeMap::new(),
            announced: BTreeMap::new(),
        });
        Ok(())
    }

    /// Stops the speaker; with `flush`, its routes leave the kernel.
    async fn stop(&mut self, flush: bool) -> Result<(), BgpError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        info!(flush, "stopping the BGP speaker");
        self.status.send_replace(None);
        drop(running.speaker);
        // The FIB task ends once the speaker's owner has let go of it,
        // after the last queued change.
        if tokio::time::timeout(Duration::from_secs(5), running.fib_task)
            .await
            .is_err()
        {
            warn!("the BGP speaker's kernel routes task did not end in time");
        }
        if flush {
            Fib::open(self.options.fib)
                .await?
                .reconcile(&FibTable::new())
                .await?;
        }
        Ok(())
    }

    async fn reconcile(&mut self, d: &BgpDesired) -> Result<(), BgpError> {
        let Some(running) = self.running.as_mut() else {
            return Ok(());
        };
        let changes = plan_peers(&running.peers, &d.peers);
        for addr in changes.remove {
            running.speaker.remove_peer(addr).await?;
            running.peers.remove(&addr);
        }
        for peer in changes.add {
            running.speaker.add_peer(peer.clone()).await?;
            running.peers.insert(peer.addr, peer);
        }
        for peer in changes.update {
            let reset = running.speaker.update_peer(peer.clone()).await?;
            info!(peer = %peer.addr, reset, "BGP peer updated");
            running.peers.insert(peer.addr, peer);
        }
        let (announce, withdraw) = plan_announce(&running.announced, &originated(d));
        for prefix in withdraw {
            running.speaker.withdraw(prefix).await?;
            running.announced.remove(&prefix);
        }
        for (prefix, tags) in announce {
            let attrs = PathAttrs {
                origin: Some(Origin::Igp),
                communities: tags.communities.clone(),
                large_communities: tags.large_communities.clone(),
                ..PathAttrs::default()
            };
            running.speaker.announce(prefix, attrs).await?;
            running.announced.insert(prefix, tags);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Driver for BgpDriver {
    fn name(&self) -> &'static str {
        "bgp"
    }
    fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::Bgp
    }

    async fn apply(&mut self, desired: &Desired) -> Result<(), DriverError> {
        let Some(d) = &desired.bgp else {
            return Ok(self.stop(true).await?);
        };
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.settings != Settings::of(d))
        {
            self.stop(false).await?;
        }
        if self.running.is_none() {
            self.start(d).await?;
        }
        Ok(self.reconcile(d).await?)
    }
}

/// A listener on `port` of every address (IPv6 and, mapped, IPv4; IPv4
/// only where IPv6 is off). A speaker just stopped may still hold the
/// port for a moment: binding is retried for up to 2 s.
async fn listen(port: u16) -> Result<TcpListener, BgpError> {
    let mut tries = 0;
    loop {
        match bind(port) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(source) => return Err(BgpError::Listen { port, source }),
        }
    }
}

fn bind(port: u16) -> std::io::Result<TcpListener> {
    let v6 = TcpSocket::new_v6().and_then(|s| {
        s.set_reuseaddr(true)?;
        s.bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;
        Ok(s)
    });
    let socket = match v6 {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
        Err(_) => {
            let s = TcpSocket::new_v4()?;
            s.set_reuseaddr(true)?;
            s.bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?;
            s
        }
    };
    socket.listen(128)
}

/// The speaker's peers as the metrics show them, refreshed by a task
/// from the driver's [`status_source`](BgpDriver::status_source) (a scrape
/// never waits for the speaker).
#[derive(Debug, Default)]
pub struct PeerMetrics(std::sync::Mutex<Vec<crate::metrics::PeerStatus>>);

impl crate::metrics::BgpStatus for PeerMetrics {
    fn peers(&self) -> Vec<crate::metrics::PeerStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PeerMetrics {
    /// Refreshes from `source` every `period` until the task is dropped.
    pub fn spawn(
        source: status::Source,
        period: Duration,
    ) -> (std::sync::Arc<PeerMetrics>, Task<()>) {
        let cache = std::sync::Arc::new(PeerMetrics::default());
        let out = cache.clone();
        let task = Task::spawn(async move {
            loop {
                let handle = source.borrow().clone();
                let peers = match handle {
                    Some(h) => h.peers().await.unwrap_or_default(),
                    None => Vec::new(),
                };
                let peers = peers
                    .into_iter()
                    .map(|p| crate::metrics::PeerStatus {
                        address: p.addr,
                        state: p.state.to_string(),
                        prefixes: p.accepted as u64,
                        advertised: p.advertised as u64,
                        flaps: p.flaps,
                        last_error: p.last_error,
                    })
                    .collect();
                *out.0.lock().unwrap_or_else(|e| e.into_inner()) = peers;
                tokio::time::sleep(period).await;
            }
        });
        (cache, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, asn: u32) -> PeerConfig {
        PeerConfig::new(addr.parse().unwrap(), asn)
    }

    fn by_addr(peers: &[PeerConfig]) -> BTreeMap<IpAddr, PeerConfig> {
        peers.iter().map(|p| (p.addr, p.clone())).collect()
    }

    #[test]
    fn peers_are_added_removed_and_updated_by_address_leaving_equal_ones_alone() {
        let a = peer("10.0.0.1", 65001);
        let b = peer("10.0.0.2", 65002);
        let c = peer("10.0.0.3", 65003);
        let b2 = PeerConfig {
            hold_time: 30,
            ..b.clone()
        };
        let changes = plan_peers(
            &by_addr(&[a.clone(), b]),
            &by_addr(&[b2.clone(), c.clone()]),
        );
        assert_eq!(
            changes,
            PeerChanges {
                remove: vec![a.addr],
                add: vec![c.clone()],
                update: vec![b2.clone()],
            }
        );
        let same = by_addr(&[b2, c]);
        assert_eq!(plan_peers(&same, &same), PeerChanges::default());
    }

    #[test]
    fn announcements_differ_by_what_is_new_retagged_or_gone() {
        let tagged = PrefixTags {
            communities: vec![7],
            ..PrefixTags::default()
        };
        let map = |v: &[(&str, &PrefixTags)]| -> BTreeMap<IpNet, PrefixTags> {
            v.iter()
                .map(|(p, t)| (p.parse().unwrap(), (*t).clone()))
                .collect()
        };
        let plain = PrefixTags::default();
        let (announce, withdraw) = plan_announce(
            &map(&[
                ("10.0.0.0/26", &plain),
                ("10.0.1.5/32", &plain),
                ("10.0.3.0/26", &plain),
            ]),
            &map(&[
                ("10.0.0.0/26", &plain),
                ("10.0.2.0/26", &plain),
                ("10.0.3.0/26", &tagged),
            ]),
        );
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(
            announce,
            vec![(net("10.0.2.0/26"), plain), (net("10.0.3.0/26"), tagged)]
        );
        assert_eq!(withdraw, vec![net("10.0.1.5/32")]);
    }

    #[test]
    fn any_speaker_wide_setting_is_a_restart() {
        let d = BgpDesired {
            asn: 64512,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: None,
            listen_port: 179,
            restart_time: Duration::from_secs(120),
            peers: BTreeMap::new(),
            announce: std::collections::BTreeSet::new(),
            tags: BTreeMap::new(),
        };
        let base = Settings::of(&d);
        let with_peer = BgpDesired {
            peers: by_addr(&[peer("10.0.0.2", 64512)]),
            ..d.clone()
        };
        assert_eq!(Settings::of(&with_peer), base, "peers are not settings");
        for changed in [
            BgpDesired {
                asn: 64513,
                ..d.clone()
            },
            BgpDesired {
                cluster_id: Some(Ipv4Addr::new(1, 1, 1, 1)),
                ..d.clone()
            },
            BgpDesired {
                listen_port: 1179,
                ..d.clone()
            },
            BgpDesired {
                restart_time: Duration::from_secs(30),
                ..d.clone()
            },
        ] {
            assert_ne!(Settings::of(&changed), base, "{changed:?}");
        }
    }
}
