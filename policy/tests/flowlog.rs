//! Flow logs against the real kernel (root, `nft`, `ip`, `python3`): the
//! ruleset compiled with flow logs on, converged into a routing host
//! namespace through [`policy::Netlink`], logs each new connection to its
//! NFLOG group with the prefix of the rule that decided it; read back with
//! `nfevents` and resolved with [`Index`], an allowed connection names the
//! policy rule that let it in, a denied one the tier end that dropped it.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::lab::{Family, Lab, Probe, Service};
use nfevents::{GroupConfig, Logged, NflogSocket};
use policy::flowlog::{Decision, FlowLogs, Hit, Index, Source};
use policy::{Config, Model, converge};
use tokio::time::timeout;

const GROUP: u16 = 21;

/// a (app web) and b (app db) in namespace shop, each with its namespace
/// profile (allow all); NetworkPolicy shop/db lets web in to TCP 80 only.
const RESOURCES: &str = "
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: a, namespace: shop, labels: {app: web}}
spec: {node: host, interfaceName: calia, ipNetworks: [10.201.1.1/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: b, namespace: shop, labels: {app: db}}
spec: {node: host, interfaceName: calib, ipNetworks: [10.201.2.1/32], profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  selector: app == 'db'
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: app == 'web'}
      destination: {ports: [80]}
";

fn model() -> Model {
    let resources = api::parse_documents("flowlog", RESOURCES).unwrap();
    let config = Config {
        flow_logs: Some(FlowLogs { group: GROUP }),
        ..Config::default()
    };
    Model::from_resources(&resources, config).unwrap()
}

/// Reads the group in the host namespace until `done` says the packets
/// logged so far are enough, or 20 s pass; `bound` is told once the group
/// listens.
fn collect(
    lab: &Lab,
    bound: mpsc::Sender<()>,
    done: impl Fn(&[Logged]) -> bool + Send,
) -> Vec<Logged> {
    lab.host
        .block_on(|| async move {
            let mut socket = NflogSocket::bind(GroupConfig {
                qthreshold: 1,
                ..GroupConfig::new(GROUP)
            })
            .await
            .unwrap();
            bound.send(()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut all = Vec::new();
            while !done(&all) && Instant::now() < deadline {
                if let Ok(batch) = timeout(Duration::from_millis(200), socket.next_batch()).await {
                    all.extend(batch.unwrap());
                }
            }
            all
        })
        .unwrap()
}

#[test]
fn each_new_connection_logs_the_rule_that_decided_it_to_the_nflog_group() {
    if !common::ready() {
        return;
    }
    let mut lab = Lab::new(&["a", "b"]);
    lab.serve(&[80, 8080], &[]);
    let model = model();
    let dp = lab.driver();
    converge(&dp, &policy::compile(&model)).unwrap();
    let index = Index::new(&model);
    let to_b = |port| Probe {
        from: 0,
        to: 1,
        service: Service::Tcp(port),
        family: Family::V4,
    };

    let (bound_tx, bound) = mpsc::channel();
    // Both connections' decisions: the web's egress (its profile) and the
    // db's ingress (the policy, or the tier's end), by destination port.
    let decided = |port: u16| {
        move |logged: &[Logged]| {
            let ports: Vec<(u16, String)> = logged
                .iter()
                .map(|l| (l.headers.tuple.dport, l.prefix.clone()))
                .collect();
            ports
                .iter()
                .any(|(p, pre)| *p == port && pre.starts_with("R A 0 pro-out-"))
                && ports.iter().any(|(p, pre)| {
                    *p == port && (pre.starts_with("R A 0 np-in-") || pre.starts_with("T i"))
                })
        }
    };
    let logged = std::thread::scope(|scope| {
        let reader =
            scope.spawn(|| collect(&lab, bound_tx, move |l| decided(80)(l) && decided(8080)(l)));
        bound
            .recv_timeout(Duration::from_secs(10))
            .expect("the group listens");
        assert_eq!(lab.probe(&[to_b(80), to_b(8080)]), [true, false]);
        reader.join().unwrap()
    });

    let hits = |port: u16| -> Vec<Hit> {
        let mut hits: Vec<Hit> = logged
            .iter()
            .filter(|l| l.headers.tuple.dport == port)
            .map(|l| {
                assert_eq!(l.headers.tuple.src.to_string(), "10.201.1.1", "{l:?}");
                index
                    .resolve(&l.prefix)
                    .unwrap_or_else(|| panic!("{:?} does not resolve", l.prefix))
            })
            .collect();
        hits.dedup();
        hits
    };
    let allowed = hits(80);
    assert_eq!(allowed.len(), 2, "{allowed:?}");
    let Hit::Rule {
        origin,
        rule,
        decision,
    } = &allowed[1]
    else {
        panic!("{allowed:?}")
    };
    assert_eq!(
        (
            origin.source,
            origin.namespace.as_str(),
            origin.name.as_str(),
            origin.ingress,
            *rule,
            *decision
        ),
        (
            Source::NetworkPolicy,
            "shop",
            "db",
            true,
            0,
            Decision::Allow
        )
    );
    assert!(
        matches!(&allowed[0], Hit::Rule { origin, .. } if origin.source == Source::Profile && !origin.ingress)
    );

    // The denied connection retries its SYN: every attempt is logged, each
    // time the profile then the default tier's end.
    let denied = hits(8080);
    assert!(
        denied.contains(&Hit::TierEnd {
            tier: "default".into(),
            ingress: true
        }),
        "{denied:?}"
    );
}
