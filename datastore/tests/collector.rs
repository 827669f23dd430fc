//! The leak collector on a real SQLite store: what it releases and when,
//! who leads, what it leaves alone (a locked store, a collector turned
//! off), and both orders of its race with a workload appearing, each
//! decided by the handle's revision.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api::{Cidr, IPPool, IPPoolSpec, Node, ObjectMeta, Resource};
use datastore::ipam::collector::{Collector, DEFAULT_GRACE, LEASE_DURATION};
use datastore::ipam::{AutoAssignArgs, Ipam, IpamError, LeakReason};
use datastore::{KvStore, ResourceStore, SqliteStore};

struct Fixture {
    _dir: tempfile::TempDir,
    kv: Arc<dyn KvStore>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kv: Arc<dyn KvStore> = Arc::new(SqliteStore::open(dir.path().join("calico.db")).unwrap());
    let store = ResourceStore::new(kv.clone());
    let pool = IPPoolSpec::new("10.30.0.0/16".parse::<Cidr>().unwrap());
    store
        .apply(IPPool::new(ObjectMeta::named("pods"), pool).into())
        .await
        .unwrap();
    store
        .apply(Node::new(ObjectMeta::named("host-a"), Default::default()).into())
        .await
        .unwrap();
    Fixture { _dir: dir, kv }
}

impl Fixture {
    /// An address for pod `shop/<pod>` on host-a, as the CNI plugin asks.
    async fn allocate(&self, pod: &str) -> IpAddr {
        let args = AutoAssignArgs {
            handle: format!("k8s-pod-network.{pod}"),
            host: "host-a".into(),
            num_v4: 1,
            attrs: BTreeMap::from([
                ("namespace".into(), "shop".into()),
                ("pod".into(), pod.into()),
            ]),
            ..AutoAssignArgs::default()
        };
        Ipam::new(self.kv.clone())
            .auto_assign(&args)
            .await
            .unwrap()
            .v4[0]
            .ip
    }

    /// The pod's WorkloadEndpoint, written as the CNI plugin writes it.
    async fn endpoint(&self, pod: &str, ip: IpAddr) -> Result<(), IpamError> {
        let wep: Resource = serde_json::from_value(serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {"name": format!("host--a-k8s-{pod}-eth0"), "namespace": "shop"},
            "spec": {
                "orchestrator": "k8s", "node": "host-a", "pod": pod, "endpoint": "eth0",
                "interfaceName": "cali0123456789a", "ipNetworks": [format!("{ip}/32")],
            },
        }))
        .unwrap();
        let (key, value) = datastore::resources::encode(wep).unwrap();
        Ipam::new(self.kv.clone())
            .create_holding(&format!("k8s-pod-network.{pod}"), &[ip], &key, value)
            .await
    }

    async fn allocated(&self, ip: IpAddr) -> bool {
        let status = Ipam::new(self.kv.clone()).ip_status(ip).await.unwrap();
        status.handle.is_some()
    }

    async fn kube_controllers(&self, node: serde_json::Value) {
        let config: Resource = serde_json::from_value(serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "KubeControllersConfiguration",
            "metadata": {"name": "default"},
            "spec": {"controllers": node},
        }))
        .unwrap();
        ResourceStore::new(self.kv.clone())
            .apply(config)
            .await
            .unwrap();
    }
}

fn min(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

#[tokio::test]
async fn a_pod_address_without_its_endpoint_is_released_after_the_grace_period() {
    let f = fixture().await;
    let leaked = f.allocate("gone").await;
    let kept_ip = f.allocate("running").await;
    f.endpoint("running", kept_ip).await.unwrap();
    let mut c = Collector::new(f.kv.clone(), "host-a");

    let first = c.round(min(0)).await.unwrap();
    assert!(first.leader && first.scanned, "{first:?}");
    assert_eq!(first.seen, 1);
    assert!(first.released.is_empty());
    // The next scan is a period away; the grace period not over at 10 min.
    assert!(!c.round(min(1)).await.unwrap().scanned);
    assert!(c.round(min(10)).await.unwrap().released.is_empty());
    let due = c.round(DEFAULT_GRACE).await.unwrap();
    assert_eq!(due.released.len(), 1, "{due:?}");
    let released = &due.released[0];
    assert_eq!(released.leak.ip, leaked);
    assert_eq!(released.leak.reason, LeakReason::WorkloadEndpointMissing);
    assert_eq!(released.leaked_for, DEFAULT_GRACE);
    assert!(!f.allocated(leaked).await);
    assert!(f.allocated(kept_ip).await, "the running pod's address");
    assert!(Ipam::new(f.kv.clone()).check().await.unwrap().is_clean());
}

#[tokio::test]
async fn only_the_lease_holder_collects_and_another_takes_over_when_it_stops() {
    let f = fixture().await;
    f.kube_controllers(serde_json::json!({"node": {"leakGracePeriod": "0s"}}))
        .await;
    f.kube_controllers(
        serde_json::json!({"node": {"leakGracePeriod": "1m", "reconcilerPeriod": "10s"}}),
    )
    .await;
    let ip = f.allocate("gone").await;
    let mut a = Collector::new(f.kv.clone(), "host-a");
    let mut b = Collector::new(f.kv.clone(), "host-b");
    let s = Duration::from_secs;
    assert!(a.round(s(0)).await.unwrap().leader);
    let waiting = b.round(s(0)).await.unwrap();
    assert!(!waiting.leader && !waiting.scanned, "{waiting:?}");
    // a renews; b sees the lease move and starts its clock over.
    assert!(a.round(s(10)).await.unwrap().leader);
    assert!(!b.round(s(20)).await.unwrap().leader);
    // a stops; b waits out the lease on its own clock, then leads.
    assert!(!b.round(s(40)).await.unwrap().leader);
    let took = b.round(s(20) + LEASE_DURATION + s(1)).await.unwrap();
    assert!(took.leader && took.scanned, "{took:?}");
    assert!(took.released.is_empty(), "b's own grace period starts now");
    let done = b.round(s(20) + LEASE_DURATION + min(2)).await.unwrap();
    assert_eq!(done.released.len(), 1, "{done:?}");
    assert!(!f.allocated(ip).await);
    // a comes back: b holds the lease now.
    assert!(!a.round(min(3)).await.unwrap().leader);
}

#[tokio::test]
async fn nothing_is_released_while_locked_or_turned_off() {
    let f = fixture().await;
    let ip = f.allocate("gone").await;
    let store = ResourceStore::new(f.kv.clone());
    let mut c = Collector::new(f.kv.clone(), "host-a");
    c.round(min(0)).await.unwrap();
    datastore::migrate::set_ready(&store, false).await.unwrap();
    let locked = c.round(min(20)).await.unwrap();
    assert!(locked.locked && !locked.scanned, "{locked:?}");
    datastore::migrate::set_ready(&store, true).await.unwrap();
    // Without a node controller, Calico's GC is off, and so is this one.
    f.kube_controllers(serde_json::json!({})).await;
    let off = c.round(min(40)).await.unwrap();
    assert!(
        off.leader && off.settings.is_none() && !off.scanned,
        "{off:?}"
    );
    assert!(f.allocated(ip).await);
}

#[tokio::test]
async fn a_workload_written_after_the_scan_keeps_its_address() {
    let f = fixture().await;
    f.kube_controllers(serde_json::json!({"node": {"leakGracePeriod": "1m"}}))
        .await;
    let ip = f.allocate("slow").await;
    let ipam = Ipam::new(f.kv.clone());
    let mut scan = ipam.scan().await.unwrap();
    assert_eq!(scan.report.leaked.len(), 1);
    // The CNI ADD finishes between the scan and the release.
    f.endpoint("slow", ip).await.unwrap();
    let freed = ipam
        .release_leaked_guarded(&scan.report.leaked, &mut scan.guard)
        .await
        .unwrap();
    assert!(freed.is_empty(), "released {freed:?} from a workload");
    assert!(f.allocated(ip).await);
    assert!(ipam.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn a_workload_written_after_the_release_is_refused_not_given_a_freed_address() {
    let f = fixture().await;
    let ip = f.allocate("slower").await;
    let ipam = Ipam::new(f.kv.clone());
    let mut scan = ipam.scan().await.unwrap();
    let freed = ipam
        .release_leaked_guarded(&scan.report.leaked, &mut scan.guard)
        .await
        .unwrap();
    assert_eq!(freed, [ip]);
    let err = f.endpoint("slower", ip).await.unwrap_err();
    assert!(matches!(err, IpamError::HandleMoved { .. }), "{err}");
    let store = ResourceStore::new(f.kv.clone());
    let weps = store.list(api::Kind::WorkloadEndpoint, None).await.unwrap();
    assert!(weps.is_empty(), "{weps:?}");
}
