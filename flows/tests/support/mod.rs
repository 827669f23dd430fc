//! What the tests share: flow logs to feed, a clock the test moves, and the
//! server on a loopback port of its own.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use flows::log::{
    Action, Counters, Endpoint, FiveTuple, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};
use flows::{Config, FlowLog, Flows};
use tokio::sync::oneshot;

/// A bucket boundary (a multiple of 15).
pub const T0: i64 = 1_800_000_000;

/// web (ns shop) to db (ns data) on TCP 5432, allowed by shop/allow-db.
pub fn allowed(start: i64) -> FlowLog {
    FlowLog {
        tuple: FiveTuple {
            source: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dest: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            protocol: 6,
            source_port: 40000,
            dest_port: 5432,
        },
        source: Endpoint::workload("shop", "web-*", &[("app", "web")]),
        dest: Endpoint::workload("data", "db-*", &[("app", "db")]),
        dest_service: None,
        reporter: Reporter::Src,
        action: Action::Allow,
        policies: PolicyTrace {
            enforced: vec![PolicyHit {
                kind: PolicyKind::CalicoNetworkPolicy,
                namespace: "shop".into(),
                name: "allow-db".into(),
                tier: "default".into(),
                action: Action::Allow,
                policy_index: 0,
                rule_index: 0,
                trigger: None,
            }],
            pending: vec![],
        },
        counters: Counters {
            packets_in: 10,
            packets_out: 12,
            bytes_in: 1000,
            bytes_out: 1200,
            connections_started: 1,
            connections_completed: 1,
            connections_live: 0,
        },
        start,
        end: start + 2,
    }
}

/// web to the public network on TCP 443, denied by rule 1 of the global
/// security/deny-egress; a staged deny-all would deny it too.
pub fn denied(start: i64) -> FlowLog {
    let mut log = allowed(start);
    log.tuple.dest = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    log.tuple.dest_port = 443;
    log.dest = Endpoint::network(false);
    log.action = Action::Deny;
    log.counters = Counters {
        packets_out: 1,
        bytes_out: 60,
        connections_started: 1,
        ..Counters::default()
    };
    log.policies = PolicyTrace {
        enforced: vec![PolicyHit {
            kind: PolicyKind::GlobalNetworkPolicy,
            namespace: String::new(),
            name: "deny-egress".into(),
            tier: "security".into(),
            action: Action::Deny,
            policy_index: 0,
            rule_index: 1,
            trigger: None,
        }],
        pending: vec![PolicyHit {
            kind: PolicyKind::StagedGlobalNetworkPolicy,
            namespace: String::new(),
            name: "deny-all".into(),
            tier: "security".into(),
            action: Action::Deny,
            policy_index: 0,
            rule_index: 0,
            trigger: None,
        }],
    };
    log
}

/// A clock the test sets.
#[derive(Clone, Debug)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    pub fn at(t: i64) -> TestClock {
        TestClock(Arc::new(AtomicI64::new(t)))
    }

    pub fn set(&self, t: i64) {
        self.0.store(t, Ordering::SeqCst);
    }

    pub fn flows(&self) -> Flows {
        let clock = Arc::clone(&self.0);
        Flows::with_clock(
            Config::default(),
            Arc::new(move || clock.load(Ordering::SeqCst)),
        )
        .expect("the default configuration is valid")
    }
}

/// The server on 127.0.0.1, a port of its own; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    pub async fn start(flows: Flows) -> Server {
        Server::start_at(flows, "127.0.0.1:0".parse().expect("an address")).await
    }

    /// The server on `addr` (a port a test reserved and let go).
    pub async fn start_at(flows: Flows, addr: SocketAddr) -> Server {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(err) = flows::serve_aggregator(listener, flows, shutdown).await {
                panic!("{err}");
            }
        });
        Server {
            addr,
            stop: Some(stop),
        }
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("a URL")
            .connect()
            .await
            .expect("the server accepts")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `check` until it holds, or panics after `timeout` naming `what`.
pub async fn poll_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
