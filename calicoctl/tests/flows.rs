//! `calicoctl flows` against a real flow API (the `flows` crate's gRPC
//! server on loopback, fed flow logs, its clock moved by the test): the
//! table names the rule that decided each flow, filters narrow it, `-o
//! json` lists the same flows, and `--follow` prints flows as they are
//! aggregated.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use flows::log::{
    Action, Counters, Endpoint, FiveTuple, FlowLog, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};

/// A bucket's start (a multiple of 15), far from the test's real time.
const T0: i64 = 1_700_000_010;

fn log(from: &str, port: u16, action: Action, hit: PolicyHit, start: i64) -> FlowLog {
    FlowLog {
        tuple: FiveTuple {
            source: "10.65.0.2".parse().unwrap(),
            dest: "10.65.0.3".parse().unwrap(),
            protocol: 6,
            source_port: 40000,
            dest_port: port,
        },
        source: Endpoint::workload("shop", from, &[("app", from)]),
        dest: Endpoint::workload("shop", "web", &[("app", "web")]),
        dest_service: None,
        reporter: Reporter::Dst,
        action,
        policies: PolicyTrace {
            enforced: vec![hit],
            pending: Vec::new(),
        },
        counters: Counters {
            packets_in: 3,
            bytes_in: 180,
            connections_started: 1,
            ..Counters::default()
        },
        start,
        end: start + 15,
    }
}

fn policy_web() -> PolicyHit {
    PolicyHit {
        kind: PolicyKind::CalicoNetworkPolicy,
        namespace: "shop".into(),
        name: "web".into(),
        tier: "default".into(),
        action: Action::Allow,
        policy_index: 0,
        rule_index: 0,
        trigger: None,
    }
}

fn end_of_tier() -> PolicyHit {
    PolicyHit {
        kind: PolicyKind::EndOfTier,
        namespace: String::new(),
        name: String::new(),
        tier: "default".into(),
        action: Action::Deny,
        policy_index: 0,
        rule_index: -1,
        trigger: None,
    }
}

/// A flow API on loopback whose clock the test sets.
struct Api {
    addr: String,
    flows: flows::Flows,
    clock: Arc<AtomicI64>,
    _runtime: tokio::runtime::Runtime,
}

impl Api {
    fn start() -> Api {
        let clock = Arc::new(AtomicI64::new(T0 + 5));
        let read = clock.clone();
        let flows = flows::Flows::with_clock(
            flows::Config::default(),
            Arc::new(move || read.load(Ordering::SeqCst)),
        )
        .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        runtime.spawn(flows::serve(
            listener,
            flows.clone(),
            std::future::pending(),
        ));
        Api {
            addr,
            flows,
            clock,
            _runtime: runtime,
        }
    }

    fn set(&self, now: i64) {
        self.clock.store(now, Ordering::SeqCst);
    }
}

fn calicoctl(api: &Api, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_calicoctl"))
        .args(["flows", "--server", &api.addr])
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn flows_lists_filters_and_follows_with_the_rule_that_decided_each() {
    let api = Api::start();
    api.flows
        .add(&log("client", 8080, Action::Allow, policy_web(), T0))
        .unwrap();
    api.flows
        .add(&log("other", 8080, Action::Deny, end_of_tier(), T0))
        .unwrap();

    let (ok, table) = calicoctl(&api, &["--since", "0"]);
    assert!(ok, "{table}");
    let row = |who: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("shop/{who}")))
            .unwrap_or_else(|| panic!("no {who} row in\n{table}"))
            .to_string()
    };
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        row("client").contains("allow")
            && row("client").contains("default: NetworkPolicy shop/web rule 0"),
        "{table}"
    );
    assert!(
        row("other").contains("deny") && row("other").contains("default: end of tier"),
        "{table}"
    );
    assert!(
        row("other").contains("3/0") && row("other").contains("180/0"),
        "{table}"
    );

    let (_, denied) = calicoctl(&api, &["--since", "0", "--action", "deny"]);
    assert!(
        denied.contains("shop/other") && !denied.contains("shop/client"),
        "{denied}"
    );
    let (_, labelled) = calicoctl(&api, &["--since", "0", "-l", "app == 'client'"]);
    assert!(
        labelled.contains("shop/client") && !labelled.contains("shop/other"),
        "{labelled}"
    );
    let (_, elsewhere) = calicoctl(&api, &["--since", "0", "-n", "prod"]);
    assert_eq!(elsewhere.lines().count(), 1, "only the header: {elsewhere}");

    let (ok, json) = calicoctl(&api, &["--since", "0", "-o", "json"]);
    assert!(ok, "{json}");
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let decided: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["decidedBy"].as_str().unwrap())
        .collect();
    assert_eq!(decided.len(), 2, "{json}");
    assert!(decided.contains(&"default: end of tier"), "{json}");

    let (ok, bad) = calicoctl(&api, &["-l", "app ==="]);
    assert!(!ok && bad.contains("--selector"), "{bad}");

    // --follow: a flow of the next bucket is printed once it is aggregated.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_calicoctl"))
        .args([
            "flows", "--server", &api.addr, "--follow", "--action", "deny",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let header = lines.next().unwrap().unwrap();
    assert!(header.starts_with("TIME"), "{header}");
    let deadline = Instant::now() + Duration::from_secs(20);
    api.set(T0 + 20);
    api.flows
        .add(&log("late", 9090, Action::Deny, end_of_tier(), T0 + 15))
        .unwrap();
    // The bucket goes out one interval after it closes; roll until the
    // stream (which may attach after the first roll) has printed it.
    let reader = std::thread::spawn(move || {
        for line in lines {
            let line = line.unwrap();
            if line.contains("shop/late") {
                return Some(line);
            }
        }
        None
    });
    let mut now = T0 + 45;
    while !reader.is_finished() && Instant::now() < deadline {
        api.set(now);
        api.flows.roll();
        now += 15;
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let line = reader
        .join()
        .unwrap()
        .expect("the followed flow is printed");
    assert!(line.contains("9090") && line.contains("deny"), "{line}");
}
