//! `calicoctl policy trace` run as a binary on a resource file (and on the
//! same resources applied to a datastore): the tiers, policies and rules an
//! allowed and a denied packet meet, why earlier rules did not match, the
//! verdict; `-o json`; `--staged`, the pending verdict; ends by pod name;
//! errors naming the flag at fault.

mod common;

use common::Ctl;

fn shop() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/trace-shop.yaml");
    path.to_str().expect("a UTF-8 path").to_string()
}

fn trace(ctl: &Ctl, args: &[&str]) -> String {
    let file = shop();
    let run = ctl.run(&[&["policy", "trace", "-f", &file][..], args].concat());
    run.ok().stdout
}

#[test]
fn an_allowed_packet_shows_each_tier_policy_and_rule_and_why_earlier_rules_did_not_match() {
    let ctl = Ctl::new();
    let out = trace(
        &ctl,
        &["--src", "shop/web", "--dst", "shop/db", "--port", "5432"],
    );
    for line in [
        "shop/web (10.0.0.1) -> shop/db (10.0.0.2): tcp port 5432, IPv4",
        "egress of shop/web",
        "  => allow: Profile kns.shop rule 0 (allow)",
        "ingress of shop/db",
        "  tier security",
        "    GlobalNetworkPolicy security.gate: pass (to the next tier)",
        "      rule 0 (deny): no match: 10.0.0.1 does not match source.selector `app == \"cache\"`",
        "      rule 1 (pass): matched",
        "  tier default",
        "    NetworkPolicy shop/db: allow",
        "      rule 0 (allow): no match: protocol udp: the packet is tcp",
        "      rule 1 (allow): matched",
        "  => allow: NetworkPolicy shop/db rule 1 (allow)",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "{line:?} missing from:\n{out}"
        );
    }
    assert!(out.contains("\nverdict: ALLOW ("), "{out}");
}

#[test]
fn a_denied_packet_names_what_denied_it_and_why_the_rules_before_did_not_match() {
    let ctl = Ctl::new();
    let out = trace(
        &ctl,
        &["--src", "shop/web", "--dst", "shop/db", "--port", "80"],
    );
    for line in [
        "    NetworkPolicy shop/db: no rule matched",
        "      rule 1 (allow): no match: port 80 is not in destination.ports [5432]",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "{line:?} missing from:\n{out}"
        );
    }
    assert!(
        out.contains("verdict: DENY (ingress of shop/db: the end of tier default"),
        "{out}"
    );

    let out = trace(
        &ctl,
        &["--src", "shop/cache", "--dst", "shop/db", "-o", "json"],
    );
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["verdict"], "deny");
    let ingress = &json["directions"][1];
    assert_eq!(ingress["policies"][0]["name"], "security.gate");
    assert_eq!(ingress["policies"][0]["rules"][0]["matched"], true);
    assert_eq!(
        ingress["decidedBy"],
        "GlobalNetworkPolicy security.gate rule 0 (deny)"
    );
}

#[test]
fn label_sets_addresses_and_the_datastore_are_ends_and_sources_too() {
    let ctl = Ctl::new();
    let out = trace(
        &ctl,
        &[
            "--src",
            "shop:app=web",
            "--dst",
            "shop/db",
            "--port",
            "5432",
        ],
    );
    assert!(out.contains("verdict: ALLOW"), "{out}");
    let out = trace(
        &ctl,
        &[
            "--src",
            "203.0.113.9",
            "--dst",
            "10.0.0.2",
            "--protocol",
            "udp",
        ],
    );
    assert!(
        out.contains("  => -: not enforced here: 203.0.113.9 is no endpoint of this host"),
        "{out}"
    );
    assert!(
        out.contains("NetworkPolicy shop/db rule 0 (allow)"),
        "{out}"
    );

    ctl.run(&["apply", "-f", &shop()]).ok();
    let stored = ctl
        .run(&[
            "policy", "trace", "--src", "shop/web", "--dst", "shop/db", "--port", "80",
        ])
        .ok()
        .stdout;
    assert_eq!(
        stored,
        trace(
            &ctl,
            &["--src", "shop/web", "--dst", "shop/db", "--port", "80"]
        )
    );
}

#[test]
fn bad_ends_ports_and_protocols_are_errors_naming_the_flag() {
    let ctl = Ctl::new();
    let file = shop();
    for (args, flag) in [
        (["--src", "shop/nope", "--dst", "shop/db"], "--src"),
        (["--src", "shop/web", "--dst", "a=b,c"], "--dst"),
        (["--src", "shop/web", "--port", "http"], "--port"),
        (["--src", "shop/web", "--protocol", "tcpx"], "--protocol"),
        (["--src", "shop/web", "--ip-version", "5"], "--ip-version"),
    ] {
        let mut all = vec!["policy", "trace", "-f", &file];
        all.extend(args);
        if !all.contains(&"--dst") {
            all.extend(["--dst", "shop/db"]);
        }
        let run = ctl.run(&all).fails_with(2);
        assert!(run.stderr.contains(flag), "{flag}: {run:?}");
    }
}

#[test]
fn staged_traces_the_pending_verdict_with_the_staged_policies_enforced() {
    let ctl = Ctl::new();
    let dir = tempfile::tempdir().expect("a directory");
    std::fs::copy(shop(), dir.path().join("shop.yaml")).expect("a copy");
    std::fs::write(
        dir.path().join("staged.yaml"),
        "apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: lock-db, namespace: shop}
spec:
  order: 1
  selector: app == 'db'
  types: [Ingress]
  ingress: [{action: Deny}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: host-k8s-queue--7-eth0, namespace: shop, labels: {app: queue}}
spec: {node: host, orchestrator: k8s, pod: queue-7, endpoint: eth0, interfaceName: caliqueue, ipNetworks: [10.0.0.7/32], profiles: [kns.shop]}
",
    )
    .expect("a file");
    let dir = dir.path().to_str().expect("UTF-8");
    let args = [
        "policy", "trace", "-f", dir, "--src", "shop/web", "--dst", "shop/db",
    ];
    let args = [&args[..], &["--port", "5432"]].concat();
    // Enforced: the staged policy changes nothing.
    let out = ctl.run(&args).ok().stdout;
    assert!(out.contains("\nverdict: ALLOW ("), "{out}");
    assert!(!out.contains("lock-db"), "{out}");
    let out = ctl.run(&[&args[..], &["--staged"]].concat()).ok().stdout;
    assert!(
        out.starts_with("(staged policies enforced: the pending verdict)\n"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == "    NetworkPolicy shop/lock-db: deny"),
        "{out}"
    );
    assert!(out.contains("\nverdict: DENY ("), "{out}");

    // A workload is also its pod's name, as flow logs show it.
    let by_pod = [
        "policy",
        "trace",
        "-f",
        dir,
        "--src",
        "shop/queue-7",
        "--dst",
        "shop/web",
    ];
    let out = ctl.run(&by_pod).ok().stdout;
    assert!(
        out.starts_with("shop/host-k8s-queue--7-eth0 (10.0.0.7) -> shop/web (10.0.0.1)"),
        "{out}"
    );
}
