//! `felix run` end to end in a network namespace of the test's own (root,
//! `nft`, `ip`, `nsenter`), on a SQLite store, with the policy driver and a
//! small calculation that builds the policy model from the snapshot: the
//! Node is registered, the table programmed, `/readiness` turns 200 and
//! `/metrics` counts the endpoints; the IPAM leak collector releases a
//! leaked address and counts it; a datastore change reaches the kernel;
//! after a stop the table stays, and a restarted agent takes it over
//! without recreating any object.

mod common;

use std::path::Path;
use std::time::Duration;

use api::{Kind, Resource};
use common::{apply, nft_handles, nft_listing, until};
use datastore::ResourceStore;
use felix::cli;
use felix::config::{RunArgs, Settings};
use felix::state::{Calculated, Desired, HostSettings, Problem, ProblemKind, Snapshot};
use policy::{Config, Model};
use testkit::Netns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The policy model of this host from every resource in the snapshot.
fn calculate(snapshot: &Snapshot, host: &HostSettings) -> Calculated {
    let resources: Vec<Resource> = snapshot.resources.values().cloned().collect();
    let config = Config {
        node: Some(host.node.clone()),
        ..Config::default()
    };
    match Model::from_resources(&resources, config) {
        Ok(policy) => Calculated {
            desired: Desired {
                policy,
                ..Desired::default()
            },
            problems: Vec::new(),
        },
        Err(e) => Calculated {
            problems: vec![Problem {
                kind: ProblemKind::Disabled,
                resource: "policy".into(),
                field: String::new(),
                message: e.to_string(),
            }],
            ..Calculated::default()
        },
    }
}

/// `GET path` on the agent's health/metrics address: status line and body.
async fn get(path: &str) -> Option<(String, String)> {
    let mut s = tokio::net::TcpStream::connect("127.0.0.1:9099")
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

async fn ready() -> bool {
    get("/readiness")
        .await
        .is_some_and(|(status, _)| status.contains(" 200 "))
}

fn settings(db: &Path) -> Settings {
    let flags = RunArgs {
        datastore_type: Some("sqlite".into()),
        datastore_path: Some(db.display().to_string()),
        node_name: Some("node1".into()),
        ip: Some("10.0.0.1/24".into()),
        backend: Some("none".into()),
        ..RunArgs::default()
    };
    Settings::resolve(&flags, &|_| None, None, &|| "unused".into()).unwrap()
}

#[test]
fn felix_run_programs_the_host_and_a_restart_takes_over_without_flushing() {
    if !(testkit::require_root() && testkit::require_programs(&["nft", "ip", "nsenter"])) {
        return;
    }
    let ns = Netns::new("flxagent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("calico.db");
    let settings = settings(&db);

    ns.block_on(|| async {
            let kv = datastore::connect(&settings.datastore).await.unwrap();
            for r in api::parse_documents("test", common::POLICY_RESOURCES).unwrap() {
                apply(&kv, r).await;
            }
            // A leaked address (its pod's endpoint never written), and the
            // leak collector made eager.
            let collector = "apiVersion: projectcalico.org/v3\nkind: KubeControllersConfiguration\n\
                metadata: {name: default}\n\
                spec: {controllers: {node: {leakGracePeriod: 1s, reconcilerPeriod: 1s}}}\n---\n\
                apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: pods}\n\
                spec: {cidr: 10.66.0.0/24, blockSize: 28}\n---\n\
                apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node1}\n";
            for r in api::parse_documents("test", collector).unwrap() {
                apply(&kv, r).await;
            }
            let ipam = datastore::ipam::Ipam::new(kv.clone());
            let leaked = ipam
                .auto_assign(&datastore::ipam::AutoAssignArgs {
                    handle: "k8s-pod-network.gone".into(),
                    host: "node1".into(),
                    num_v4: 1,
                    attrs: [("namespace", "shop"), ("pod", "gone")]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .v4[0]
                .ip;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let agent = tokio::spawn(cli::run(settings.clone(), calculate, async {
                let _ = stopped.await;
            }));
            until_async("readiness", ready).await;

            let node = ResourceStore::new(kv.clone())
                .get(Kind::Node, None, "node1")
                .await
                .unwrap();
            let Resource::Node(node) = node else {
                panic!("{node:?}")
            };
            assert_eq!(node.spec.bgp.unwrap().ipv4_address.unwrap().to_string(), "10.0.0.1/24");
            let (_, metrics) = get("/metrics").await.unwrap();
            assert!(
                metrics.contains("felix_active_local_endpoints{kind=\"workload\"} 0\n")
                    && metrics.contains("felix_active_policies 1\n"),
                "{metrics}"
            );
            assert!(get("/liveness").await.unwrap().0.contains(" 200 "));

            // The collector (this felix holds its lease) released the leak.
            until_async("the leak collector's release", || async {
                get("/metrics").await.is_some_and(|(_, m)| {
                    m.contains("felix_ipam_leaked_addresses_released_total{reason=\"workloadEndpointMissing\"} 1\n")
                })
            })
            .await;
            let (_, metrics) = get("/metrics").await.unwrap();
            assert!(metrics.contains("felix_ipam_gc_leader 1\n"), "{metrics}");
            assert!(!ipam.ip_status(leaked).await.unwrap().allocated);

            // A new policy reaches the kernel.
            let extra = api::parse_documents(
                "test",
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n\
                 metadata: {name: front, namespace: shop}\n\
                 spec: {selector: app == \"front\", ingress: [{action: Allow, protocol: UDP, destination: {ports: [5353]}}]}\n",
            )
            .unwrap();
            apply(&kv, extra.into_iter().next().unwrap()).await;
            let listing = || String::from_utf8(std::process::Command::new("nft")
                .args(["list", "table", "inet", "calico"])
                .output()
                .unwrap()
                .stdout)
            .unwrap();
            until("the new policy in the kernel", || listing().contains("5353")).await;

            stop.send(()).unwrap();
            agent.await.unwrap().unwrap();
            assert!(get("/readiness").await.is_none(), "the servers stopped");
        })
        .unwrap();

    // The table outlives the agent.
    let listed = nft_listing(&ns);
    assert!(
        listed.contains("5353") && listed.contains("caliback"),
        "{listed}"
    );
    let (handles, _) = nft_handles(&ns);

    // A restarted agent converges onto it without recreating anything.
    ns.block_on(|| async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(cli::run(settings.clone(), calculate, async {
            let _ = stopped.await;
        }));
        until_async("readiness after the restart", ready).await;
        stop.send(()).unwrap();
        agent.await.unwrap().unwrap();
    })
    .unwrap();
    assert_eq!(nft_handles(&ns).0, handles);
    assert_eq!(nft_listing(&ns), listed);
}

/// Polls an async check every 50 ms for up to 20 s.
async fn until_async<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 20 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
