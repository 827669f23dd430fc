//! The README's quickstart end to end (root, BIRD 2): `scripts/quickstart.sh`
//! with the binaries this test built, under a lab name and state root of its
//! own, brings up `examples/lab/quickstart`, adds two workloads per host
//! through the CNI plugin and prints the reachability matrices (ping and TCP
//! 8080), which must follow the policy of its `resources.yaml` cell by cell
//! (the two differ where a rule names the port), and every host's
//! BGP session to the ToR must be Established. The cluster's flows, pushed
//! by every felix to goldmane, show the matrix's denied TCP connects with
//! what denied them; a staged deny-all shows what it would cut while
//! traffic still flows; `policy trace` explains both; a Python client
//! generated from Goldmane's `.proto` lists the same flows. `--down` then
//! leaves none of the lab's namespaces.

mod topology;

use std::time::{Duration, Instant};

use serde_json::Value;
use topology::{Example, Report};

/// The workload's `app` label: its name without the host suffix.
fn app(workload: &str) -> &str {
    workload.split('-').next().unwrap()
}

#[test]
fn the_quickstart_routes_polices_reports_bgp_and_tears_down() {
    if !topology::can_run() {
        return;
    }
    let qs = Example::quickstart();
    let report = qs.up();

    // `web` admits only clients, `db` only webs on TCP 8080, clients
    // everyone.
    let allowed = |tcp: bool| {
        move |from: &str, to: &str| match app(to) {
            "web" => app(from) == "client",
            "db" => tcp && app(from) == "web",
            _ => true,
        }
    };
    let ping = report.check_matrix("IPv4 ping", allowed(false));
    assert_eq!(ping, (14, 16), "{}", report.text());
    let tcp = report.check_matrix("IPv4 TCP 8080", allowed(true));
    assert_eq!(tcp, (18, 12), "{}", report.text());

    // Every host's status: the ToR, Established.
    for host in ["h1", "h2", "h3"] {
        let peers = report.peers(host);
        assert_eq!(
            peers,
            [("10.0.0.1".into(), "global".into(), "Established".into())],
            "{host}\n{}",
            report.text()
        );
    }

    // And all three from the datastore, as each felix reported them.
    let all = report.all_peers();
    let expected: Vec<_> = ["h1", "h2", "h3"]
        .map(|h| {
            (
                h.to_string(),
                "10.0.0.1".to_string(),
                "GlobalPeer".to_string(),
                "Established".to_string(),
            )
        })
        .into();
    assert_eq!(all, expected, "{}", report.text());

    flows_staged_and_traced(&qs, &report);

    // A second run refuses while the lab is up.
    let again = topology::Report::of(&qs.run(&[]));
    assert!(!again.success);
    assert!(again.stderr.contains("is up already"), "{}", again.stderr);

    qs.down();
}

/// Two flush intervals (15 s) and the push: a flow logged at the deadline's
/// start is listed well before it.
const FLOWS_PATIENCE: Duration = Duration::from_secs(60);

/// `calicoctl flows -o json` on the lab's goldmane, with `filter` flags.
fn cluster_flows(qs: &Example, filter: &[&str]) -> Vec<Value> {
    let server = format!("unix:{}", qs.goldmane_socket("flows").display());
    let args = [
        &["flows", "--server", &server, "--last", "500", "-o", "json"][..],
        filter,
    ]
    .concat();
    serde_json::from_str(&qs.calicoctl_ok(&args)).expect("JSON")
}

/// Polls `calicoctl flows` until a flow satisfies `wanted`; panics with the
/// last list at the deadline.
fn wait_for_flow(
    qs: &Example,
    what: &str,
    filter: &[&str],
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + FLOWS_PATIENCE;
    loop {
        let flows = cluster_flows(qs, filter);
        if let Some(flow) = flows.iter().find(|f| wanted(f)) {
            return flow.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no flow: {what}\n{}",
            serde_json::to_string_pretty(&flows).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ends(flow: &Value) -> (&str, &str) {
    (
        flow["source"]["name"].as_str().unwrap_or_default(),
        flow["destination"]["name"].as_str().unwrap_or_default(),
    )
}

fn trace(qs: &Example, extra: &[&str]) -> String {
    let args = [
        &[
            "policy",
            "trace",
            "--src",
            "default/client-1",
            "--protocol",
            "tcp",
            "--port",
            "8080",
        ][..],
        extra,
    ]
    .concat();
    qs.calicoctl_ok(&args)
}

/// The "done when" on the quickstart: denied, staged, traced, and
/// read by a client that is not ours.
fn flows_staged_and_traced(qs: &Example, report: &Report) {
    // The matrix's TCP connect from client-1 to db-2 was denied by db's
    // host; goldmane has it from h2 within an interval, with what denied it.
    let denied = wait_for_flow(
        qs,
        "client-1 to db-2 on TCP 8080, denied",
        &[
            "--action",
            "deny",
            "--port",
            "8080",
            "--endpoint",
            "default/db-2",
        ],
        |f| ends(f) == ("client-1", "db-2") && f["protocol"] == "tcp",
    );
    assert_eq!(denied["reporter"], "dst", "{denied}");
    assert_eq!(denied["decidedBy"], "default: end of tier", "{denied}");
    let table = qs.calicoctl(&[
        "flows",
        "--server",
        &format!("unix:{}", qs.goldmane_socket("flows").display()),
        "--action",
        "deny",
        "--endpoint",
        "default/db-2",
    ]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().any(|l| l.contains("client-1")
            && l.contains("db-2")
            && l.contains("default: end of tier")),
        "{table}"
    );
    // policy trace says why: db's only rule admits webs.
    let why = trace(qs, &["--dst", "default/db-2"]);
    assert!(why.contains("\nverdict: DENY ("), "{why}");
    assert!(
        why.lines()
            .any(|l| l.contains("rule 0 (allow): no match") && l.contains("app == \"web\"")),
        "{why}"
    );

    // A staged deny-all: client-1 still reaches web-1, and the flow says
    // the staged policy would deny it.
    let dir = tempfile::tempdir().expect("a directory");
    let staged = dir.path().join("deny-all.yaml");
    std::fs::write(
        &staged,
        "apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: deny-all}
spec:
  order: 1
  selector: all()
  types: [Ingress, Egress]
  ingress: [{action: Deny}]
  egress: [{action: Deny}]
",
    )
    .expect("a file");
    let out = qs.calicoctl(&["apply", "-f", &staged.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = report.addresses("web-1")[0].clone();
    let deadline = Instant::now() + FLOWS_PATIENCE;
    let would_cut = loop {
        // Each connect is a new connection, traced with the staged policy
        // once felix has the model that has it.
        let connect = format!("exec 3<>/dev/tcp/{web}/8080");
        let out = qs.in_workload("client-1", &["timeout", "2", "bash", "-c", &connect]);
        assert!(
            out.status.success(),
            "client-1 no longer reaches web-1: the staged policy is enforced"
        );
        let flows = cluster_flows(qs, &["--action", "allow", "--policy", "deny-all"]);
        let found = flows.iter().find(|f| {
            ends(f) == ("client-1", "web-1")
                && f["pendingPolicies"].as_array().is_some_and(|p| {
                    p.iter().any(|h| {
                        h["name"] == "deny-all"
                            && h["action"] == "deny"
                            && h["kind"] == "StagedGlobalNetworkPolicy"
                    })
                })
        });
        if let Some(flow) = found {
            break flow.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no pending denial of client-1 to web-1:\n{flows:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(would_cut["action"], "allow", "{would_cut}");
    // policy trace: enforced, allowed by web's rule; staged, denied.
    let now = trace(qs, &["--dst", "default/web-1"]);
    assert!(now.contains("\nverdict: ALLOW ("), "{now}");
    let pending = trace(qs, &["--dst", "default/web-1", "--staged"]);
    assert!(
        pending.contains("GlobalNetworkPolicy deny-all: deny"),
        "{pending}"
    );
    assert!(pending.contains("\nverdict: DENY ("), "{pending}");

    // A client that is not ours, generated from Goldmane's .proto, lists
    // the same denied flow over goldmane's socket.
    let listed = python_list(qs);
    assert!(
        listed.lines().any(|l| l == "client-1 db-2 8080 Deny"),
        "no denied client-1 flow in the Python client's list:\n{listed}"
    );
}

/// The Python grpcio client generated from Goldmane's api.proto
/// (`testkit::goldmane`) listing goldmane's flows: `source dest port
/// action` lines.
fn python_list(qs: &Example) -> String {
    let client = testkit::goldmane::PythonClient::generate()
        .expect("python3-grpcio and python3-grpc-tools are needed");
    let script = format!(
        "import grpc, api_pb2 as pb, api_pb2_grpc as rpc
stub = rpc.FlowsStub(grpc.insecure_channel('unix:{socket}'))
for r in stub.List(pb.FlowListRequest(), timeout=10).flows:
    k = r.flow.Key
    print(k.source_name, k.dest_name, k.dest_port, pb.Action.Name(k.action))
",
        socket = qs.goldmane_socket("flows").display()
    );
    let out = client
        .command()
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
