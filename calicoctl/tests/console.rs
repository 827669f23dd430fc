//! `calicoctl console`'s API as the binary serves it (no root, no browser;
//! `tests/tests/console.rs` has the browser): the page and its assets, the
//! views' JSON from a datastore holding a pool, a policy, an endpoint and
//! two nodes' statuses, 400 for malformed queries naming the parameter,
//! 503 naming the datastore or the flow API when either is out of reach,
//! and a refused non-loopback address.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Stdio};

use common::Ctl;
use serde_json::Value;
use testkit::webdriver::{http, spawn_announcing};

struct Console {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The console on a free port, reading `ctl`'s store (or `store`, a path
/// to put in DATASTORE_PATH instead) and flows from `flows`.
fn console(ctl: &Ctl, store: Option<&str>, flows: &str) -> Console {
    let mut cmd = ctl.command(&[
        "console",
        "--listen",
        "127.0.0.1:0",
        "--flows-server",
        flows,
    ]);
    if let Some(path) = store {
        cmd.env("DATASTORE_PATH", path);
    }
    let (child, addr) = spawn_announcing(cmd.stderr(Stdio::null()));
    Console { child, addr }
}

fn get(c: &Console, path: &str) -> (u16, Value) {
    let answer = http(c.addr, "GET", path, None).expect("the console answers");
    let json = serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body));
    (answer.status, json)
}

/// A loopback port nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

const RESOURCES: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.65.0.0/16, blockSize: 26}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  selector: app == 'db'
  ingress: [{action: Allow, source: {selector: app == 'web'}}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: h1-k8s-db--1-eth0, namespace: shop, labels: {app: db}}
spec: {node: h1, orchestrator: k8s, pod: db-1, endpoint: eth0, interfaceName: calidb1, ipNetworks: [10.65.0.2/32]}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: h2}
spec: {}
";

fn status(node: &str, state: &str, reason: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!(
        "---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata: {{name: {node}}}
spec: {{node: {node}, classes: [BGP], updatePeriodSeconds: 10}}
status:
  lastUpdated: {}
  bgp:
    peersV4: [{{peerIP: 10.0.0.9, type: NodeMesh, state: {state}, reason: '{reason}'}}]
",
        api::resources::status::rfc3339(now)
    )
}

#[test]
fn the_api_answers_each_view_and_refuses_bad_queries_by_name() {
    let ctl = Ctl::new();
    let file = ctl.write(
        "r.yaml",
        &(RESOURCES.to_string()
            + &status(
                "h1",
                "Active",
                "TCP 179 refused: nothing listens for BGP at the peer",
            )),
    );
    ctl.run(&["apply", "-f", file.to_str().unwrap()]).ok();
    let flows = closed_port();
    let c = console(&ctl, None, &flows);

    let page = http(c.addr, "GET", "/", None).unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("<title>Calico console</title>"),
        "{}",
        page.body
    );
    for asset in ["/console.js", "/console.css"] {
        assert_eq!(
            http(c.addr, "GET", asset, None).unwrap().status,
            200,
            "{asset}"
        );
    }

    let (code, bgp) = get(&c, "/api/bgp");
    assert_eq!(code, 200, "{bgp}");
    assert_eq!(
        (
            bgp["sessions"].as_u64(),
            bgp["down"].as_u64(),
            bgp["silent"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{bgp}"
    );
    assert_eq!(
        bgp["nodes"][0]["sessions"][0]["reason"],
        "TCP 179 refused: nothing listens for BGP at the peer"
    );
    // h2 has a Node but never reported.
    assert_eq!(
        (
            bgp["nodes"][1]["node"].as_str(),
            bgp["nodes"][1]["stale"].as_bool()
        ),
        (Some("h2"), Some(true))
    );

    let (code, policies) = get(&c, "/api/policies");
    assert_eq!(code, 200, "{policies}");
    let db = &policies["tiers"][0]["policies"][0];
    assert_eq!(
        (db["name"].as_str(), db["kind"].as_str()),
        (Some("db"), Some("NetworkPolicy"))
    );
    assert_eq!(db["endpoints"], serde_json::json!(["shop/db-1"]));
    // No flow API: no hits, and why.
    assert!(db["hits"].is_null(), "{db}");
    assert!(
        policies["flowsError"]
            .as_str()
            .is_some_and(|e| e.contains(&flows)),
        "{policies}"
    );

    let (code, ipam) = get(&c, "/api/ipam");
    assert_eq!(code, 200, "{ipam}");
    assert_eq!(ipam["usage"]["pools"][0]["cidr"], "10.65.0.0/16");

    let (code, trace) = get(&c, "/api/trace?src=10.65.9.9&dst=shop/db-1&port=5432");
    assert_eq!(code, 200, "{trace}");
    assert_eq!(trace["enforced"]["verdict"], "deny", "{trace}");
    assert_eq!(trace["staged"], false);

    // Bad queries: 400, naming the parameter.
    for (path, words) in [
        ("/api/flows?port=http", "port"),
        ("/api/flows?action=maybe", "action"),
        ("/api/flows?colour=red", "colour"),
        ("/api/trace?src=shop/db-1", "dst"),
        ("/api/trace?src=shop/nope&dst=shop/db-1", "no endpoint"),
        ("/api/bgp?x=1", "takes no parameters"),
    ] {
        let (code, body) = get(&c, path);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(words)),
            "{path}: {body}"
        );
    }

    // The flow API out of reach: 503, naming it.
    let (code, body) = get(&c, "/api/flows");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["source"], "flows");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(&flows)),
        "{body}"
    );
}

#[test]
fn a_datastore_out_of_reach_is_a_503_naming_it_and_other_addresses_are_refused() {
    let ctl = Ctl::new();
    // A SQLite file under a file cannot be opened.
    let blocker = ctl.write("blocker", "not a directory");
    let store = blocker.join("calico.db");
    let c = console(&ctl, Some(store.to_str().unwrap()), &closed_port());
    let (code, body) = get(&c, "/api/bgp");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["source"], "datastore", "{body}");
    // The page itself is still served, to show the banner.
    assert_eq!(http(c.addr, "GET", "/", None).unwrap().status, 200);

    let run = ctl.run(&["console", "--listen", "0.0.0.0:0"]).fails_with(1);
    assert!(
        run.stderr.contains("not a loopback address"),
        "{}",
        run.stderr
    );
}
