//! A client that is not ours: Python grpcio (Debian's python3-grpcio) with
//! code generated at test time by grpc_tools (python3-grpc-tools) from
//! Goldmane's own api.proto, vendored in tests/goldmane, not from ours.
//! It calls List, FilterHints and Stream on the real server and prints what
//! it got; this test checks it against the flows it fed.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, T0, TestClock, allowed, denied};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_goldmanes_proto_lists_hints_and_streams() {
    let Some(client) = testkit::goldmane::PythonClient::generate() else {
        return;
    };
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");

    // Two flows in the bucket of T0; at T0 + 30 it has gone to the streams,
    // so a stream from T0 starts with both.
    let clock = TestClock::at(T0 + 5);
    let flows = clock.flows();
    flows.add_all(&[allowed(T0), allowed(T0 + 1), denied(T0 + 2)]);
    clock.set(T0 + 30);
    flows.roll();
    let server = Server::start(flows).await;

    let run = tokio::process::Command::from(client.command())
        .arg(here.join("python").join("goldmane_client.py"))
        .arg(server.addr.to_string())
        .arg(T0.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client ends within a minute")
        .expect("the Python client runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "goldmane_client.py: {}\n{stderr}",
        output.status
    );
    let got: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");

    assert_eq!(got["total"], 2);
    let db = got["list"]
        .as_array()
        .and_then(|l| l.iter().find(|f| f["dest"] == json!(["data", "db-*"])))
        .expect("the allowed flow");
    assert_eq!(db["source"], json!(["shop", "web-*"]));
    assert_eq!(db["dest_type"], "WorkloadEndpoint");
    assert_eq!(
        (&db["dest_port"], &db["proto"], &db["action"]),
        (&json!(5432), &json!("tcp"), &json!("Allow"))
    );
    assert_eq!(db["reporter"], "Src");
    assert_eq!(db["enforced"], json!([["default", "allow-db", 0, "Allow"]]));
    assert_eq!((&db["start"], &db["end"]), (&json!(T0), &json!(T0 + 15)));
    assert_eq!(
        (&db["packets_out"], &db["bytes_out"], &db["started"]),
        (&json!(24), &json!(2400), &json!(2))
    );
    assert_eq!(db["source_labels"], json!(["app=web"]));

    let denied = got["denied"].as_array().expect("a list");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["dest"], json!(["", "pub"]));
    assert_eq!(denied[0]["dest_type"], "Network");
    assert_eq!(
        denied[0]["enforced"],
        json!([["security", "deny-egress", 1, "Deny"]])
    );
    assert_eq!(
        denied[0]["pending"],
        json!([["security", "deny-all", "StagedGlobalNetworkPolicy"]])
    );

    assert_eq!(
        got["policy_names"],
        json!(["allow-db", "deny-all", "deny-egress"])
    );

    let mut streamed: Vec<&Value> = got["stream"].as_array().expect("a list").iter().collect();
    streamed.sort_by_key(|f| f["dest_port"].as_i64());
    assert_eq!(streamed.len(), 2);
    assert_eq!(
        (&streamed[0]["dest_port"], &streamed[1]["dest_port"]),
        (&json!(443), &json!(5432))
    );
    assert_eq!(
        streamed[1]["id"], db["id"],
        "one id per key, in List and Stream"
    );

    assert_eq!(got["negative_page_size"], "INVALID_ARGUMENT");
}
