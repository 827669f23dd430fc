//! End-to-end tests of the real `calicoctl` binary against a fresh embedded
//! (SQLite) store in a temporary directory per test.

use serde_json::Value;

mod common;

use common::Ctl;

fn pool(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\n\
         spec:\n  cidr: {cidr}\n  natOutgoing: true\n  vxlanMode: Always\n  nodeSelector: all()\n"
    )
}

fn policy(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  selector: app == 'web'\n  ingress:\n  - action: Allow\n    protocol: TCP\n\
         \x20   destination:\n      ports: [80]\n"
    )
}

fn two_pools() -> String {
    format!(
        "{}---\n{}",
        pool("pool-a", "10.10.0.0/16"),
        pool("pool-b", "10.20.0.0/16")
    )
}

#[test]
fn applied_multi_document_yaml_reads_back_as_yaml_json_and_a_table() {
    let ctl = Ctl::new();
    let file = ctl.write("pools.yaml", &two_pools());
    let applied = ctl.run(&["apply", "-f", file.to_str().unwrap()]).ok();
    assert!(
        applied
            .stdout
            .contains("Successfully applied 2 'IPPool' resource(s)"),
        "{applied:?}"
    );

    let one = ctl.run(&["get", "ippool", "pool-a", "-o", "yaml"]).ok();
    assert!(
        one.stdout
            .starts_with("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n"),
        "{}",
        one.stdout
    );
    let doc: Value = serde_yaml::from_str(&one.stdout).unwrap();
    assert_eq!(doc["spec"]["cidr"], "10.10.0.0/16");
    assert!(doc["metadata"]["resourceVersion"].is_string(), "{doc}");

    let list = ctl.run(&["get", "ippools", "-o", "json"]).ok().json();
    assert_eq!(list["kind"], "List");
    let cidrs: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["spec"]["cidr"].as_str().unwrap())
        .collect();
    assert_eq!(cidrs, ["10.10.0.0/16", "10.20.0.0/16"]);

    let table = ctl.run(&["get", "ippools"]).ok().stdout;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["NAME", "CIDR", "SELECTOR"],
            vec!["pool-a", "10.10.0.0/16", "all()"],
            vec!["pool-b", "10.20.0.0/16", "all()"]
        ]
    );
    let wide = ctl.run(&["get", "ippools", "-o", "wide"]).ok().stdout;
    assert!(wide.lines().next().unwrap().contains("VXLANMODE"), "{wide}");
    assert!(wide.contains("Always"), "{wide}");
}

#[test]
fn get_output_can_be_applied_again() {
    let ctl = Ctl::new();
    ctl.run_with_stdin(&["apply", "-f", "-"], &two_pools()).ok();
    let yaml = ctl.run(&["get", "ippools", "-o", "yaml"]).ok().stdout;
    let other = Ctl::new();
    other.run_with_stdin(&["create", "-f", "-"], &yaml).ok();
    assert_eq!(other.names(&["ippools"]), ["pool-a", "pool-b"]);
}

#[test]
fn creating_an_existing_resource_fails_unless_skip_exists() {
    let ctl = Ctl::new();
    let file = ctl.write("pool.yaml", &pool("pool-a", "10.10.0.0/16"));
    let file = file.to_str().unwrap();
    ctl.run(&["create", "-f", file]).ok();
    let again = ctl.run(&["create", "-f", file]).fails_with(1);
    assert!(
        again.stderr.contains("already exist") && again.stderr.contains("IPPool pool-a"),
        "{again:?}"
    );

    // With one new and one existing resource, nothing is written...
    let both = ctl.write("both.yaml", &two_pools());
    let both = both.to_str().unwrap();
    ctl.run(&["create", "-f", both]).fails_with(1);
    assert_eq!(ctl.names(&["ippools"]), ["pool-a"]);
    // ...unless --skip-exists, which creates the new one and leaves the other.
    let skipped = ctl.run(&["create", "-f", both, "--skip-exists"]).ok();
    assert!(skipped.stdout.contains("Skipped 1 resource"), "{skipped:?}");
    assert_eq!(ctl.names(&["ippools"]), ["pool-a", "pool-b"]);
}

#[test]
fn create_and_replace_name_every_resource_at_fault() {
    let ctl = Ctl::new();
    let ac = [pool("a", "10.1.0.0/16"), pool("c", "10.3.0.0/16")].join("---\n");
    ctl.apply(&ac);
    let abc = [
        pool("a", "10.1.0.0/16"),
        pool("b", "10.2.0.0/16"),
        pool("c", "10.3.0.0/16"),
    ]
    .join("---\n");
    let created = ctl
        .run_with_stdin(&["create", "-f", "-"], &abc)
        .fails_with(1);
    assert!(
        created
            .stderr
            .contains("already exists: IPPool a, IPPool c; nothing was written"),
        "{created:?}"
    );
    let replaced = ctl
        .run_with_stdin(
            &["replace", "-f", "-"],
            &[
                pool("x", "10.4.0.0/16"),
                pool("a", "10.1.0.0/16"),
                pool("y", "10.5.0.0/16"),
            ]
            .join("---\n"),
        )
        .fails_with(1);
    assert!(
        replaced
            .stderr
            .contains("2 resources not found, nothing was written: IPPool x, IPPool y"),
        "{replaced:?}"
    );
    assert_eq!(ctl.names(&["ippools"]), ["a", "c"]);
    // Everything existing: --skip-exists creates nothing and says so.
    let skipped = ctl
        .run_with_stdin(&["create", "-f", "-", "--skip-exists"], &ac)
        .ok();
    assert!(
        skipped
            .stdout
            .contains("Successfully created 0 resource(s)")
            && skipped.stdout.contains("Skipped 2 resources"),
        "{skipped:?}"
    );
}

#[test]
fn replace_with_a_stale_resource_version_fails_and_changes_nothing() {
    let ctl = Ctl::new();
    ctl.run_with_stdin(&["apply", "-f", "-"], &pool("pool-a", "10.10.0.0/16"))
        .ok();
    let read = ctl
        .run(&["get", "ippool", "pool-a", "-o", "yaml"])
        .ok()
        .stdout;
    assert!(read.contains("natOutgoing: true"), "{read}");

    let first = read.replace("natOutgoing: true", "natOutgoing: false");
    ctl.run_with_stdin(&["replace", "-f", "-"], &first).ok();
    // `read` still carries the old resourceVersion.
    let stale = read.replace("vxlanMode: Always", "vxlanMode: Never");
    let failed = ctl
        .run_with_stdin(&["replace", "-f", "-"], &stale)
        .fails_with(1);
    assert!(
        failed.stderr.to_lowercase().contains("conflict"),
        "{failed:?}"
    );
    let now = ctl
        .run(&["get", "ippool", "pool-a", "-o", "json"])
        .ok()
        .json();
    assert_eq!(now["spec"]["natOutgoing"], false);
    assert_eq!(now["spec"]["vxlanMode"], "Always");

    let missing = ctl
        .run_with_stdin(&["replace", "-f", "-"], &pool("nope", "10.30.0.0/16"))
        .fails_with(1);
    assert!(
        missing.stderr.contains("not found") && missing.stderr.contains("IPPool nope"),
        "{missing:?}"
    );
}

#[test]
fn replacing_several_resources_is_all_or_nothing() {
    let ctl = Ctl::new();
    ctl.run_with_stdin(&["apply", "-f", "-"], &two_pools()).ok();
    let read = ctl.run(&["get", "ippools", "-o", "yaml"]).ok().stdout;
    // pool-b changes under us: its version in `read` goes stale.
    ctl.run(&["label", "ippool", "pool-b", "touched=yes"]).ok();
    let both = read.replace("natOutgoing: true", "natOutgoing: false");
    ctl.run_with_stdin(&["replace", "-f", "-"], &both)
        .fails_with(1);
    let pools = ctl.run(&["get", "ippools", "-o", "json"]).ok().json();
    assert_eq!(
        pools["items"][0]["spec"]["natOutgoing"], true,
        "pool-a was not written either"
    );
}

#[test]
fn patch_merges_into_the_resource_and_rejects_invalid_results() {
    let ctl = Ctl::new();
    ctl.run_with_stdin(&["apply", "-f", "-"], &pool("pool-a", "10.10.0.0/16"))
        .ok();
    let before = ctl
        .run(&["get", "ippool", "pool-a", "-o", "json"])
        .ok()
        .json();

    ctl.run(&[
        "patch",
        "ippool",
        "pool-a",
        "-p",
        r#"{"spec":{"natOutgoing":false,"nodeSelector":null}}"#,
    ])
    .ok();
    let after = ctl
        .run(&["get", "ippool", "pool-a", "-o", "json"])
        .ok()
        .json();
    assert_eq!(after["spec"]["natOutgoing"], false);
    assert_eq!(after["spec"]["cidr"], "10.10.0.0/16");
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );

    let bad = ctl
        .run(&[
            "patch",
            "ippool",
            "pool-a",
            "-p",
            r#"{"spec":{"cidr":"10.10.0.300/16"}}"#,
        ])
        .fails_with(2);
    assert!(bad.stderr.contains("spec.cidr"), "{bad:?}");
    let renamed = ctl
        .run(&[
            "patch",
            "ippool",
            "pool-a",
            "-p",
            r#"{"metadata":{"name":"x"}}"#,
        ])
        .fails_with(2);
    assert!(renamed.stderr.contains("metadata.name"), "{renamed:?}");
    ctl.run(&["patch", "ippool", "pool-a", "-p", "not json"])
        .fails_with(2);
    ctl.run(&["patch", "ippool", "missing", "-p", "{}"])
        .fails_with(1);
    let unchanged = ctl
        .run(&["get", "ippool", "pool-a", "-o", "json"])
        .ok()
        .json();
    assert_eq!(unchanged, after);
}

#[test]
fn label_adds_overwrites_only_when_asked_and_removes() {
    let ctl = Ctl::new();
    ctl.run_with_stdin(&["apply", "-f", "-"], &pool("pool-a", "10.10.0.0/16"))
        .ok();
    let labels = |ctl: &Ctl| {
        ctl.run(&["get", "ippool", "pool-a", "-o", "json"])
            .ok()
            .json()["metadata"]["labels"]
            .clone()
    };

    ctl.run(&["label", "ippool", "pool-a", "zone=east"]).ok();
    assert_eq!(labels(&ctl), serde_json::json!({"zone": "east"}));
    let refused = ctl
        .run(&["label", "ippool", "pool-a", "zone=west"])
        .fails_with(1);
    assert!(refused.stderr.contains("--overwrite"), "{refused:?}");
    ctl.run(&["label", "ippool", "pool-a", "zone=west", "--overwrite"])
        .ok();
    assert_eq!(labels(&ctl), serde_json::json!({"zone": "west"}));
    ctl.run(&["label", "ippool", "pool-a", "zone", "--remove"])
        .ok();
    assert!(
        labels(&ctl).as_object().is_none_or(|m| m.is_empty()),
        "{}",
        labels(&ctl)
    );
    ctl.run(&["label", "ippool", "pool-a", "zone", "--remove"])
        .fails_with(1);
    ctl.run(&["label", "ippool", "pool-a", "novalue"])
        .fails_with(2);
}

#[test]
fn delete_works_by_name_and_by_file() {
    let ctl = Ctl::new();
    let file = ctl.write("pools.yaml", &two_pools());
    let file = file.to_str().unwrap();
    ctl.run(&["apply", "-f", file]).ok();
    ctl.run(&["delete", "ippool", "pool-a"]).ok();
    assert_eq!(ctl.names(&["ippools"]), ["pool-b"]);
    let missing = ctl.run(&["delete", "ippool", "pool-a"]).fails_with(1);
    assert!(
        missing.stderr.contains("IPPool pool-a: not found"),
        "{missing:?}"
    );
    // By file, one of the two is already gone.
    ctl.run(&["delete", "-f", file]).fails_with(1);
    assert!(ctl.names(&["ippools"]).is_empty());
    ctl.run(&["apply", "-f", file]).ok();
    ctl.run(&["delete", "ippool", "pool-a"]).ok();
    ctl.run(&["delete", "-f", file, "--skip-not-exists"]).ok();
    assert!(ctl.names(&["ippools"]).is_empty());
}

#[test]
fn an_invalid_document_writes_nothing_and_every_error_is_listed() {
    let ctl = Ctl::new();
    let text = format!(
        "{}---\n{}---\n{}",
        pool("good", "10.10.0.0/16"),
        pool("bad-cidr", "10.10.0.300/16"),
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: bad-selector\nspec:\n  selector: app ==\n"
    );
    let file = ctl.write("mixed.yaml", &text);
    let run = ctl
        .run(&["apply", "-f", file.to_str().unwrap()])
        .fails_with(2);
    for expected in [
        "mixed.yaml",
        "bad-cidr",
        "spec.cidr",
        "bad-selector",
        "spec.selector",
        "nothing was written",
    ] {
        assert!(
            run.stderr.contains(expected),
            "stderr lacks {expected:?}: {}",
            run.stderr
        );
    }
    assert!(
        ctl.names(&["ippools"]).is_empty(),
        "the valid document was not written either"
    );
    ctl.run(&["create", "-f", file.to_str().unwrap()])
        .fails_with(2);
    assert!(ctl.names(&["ippools"]).is_empty());
}

#[test]
fn a_directory_applies_its_yaml_and_json_files() {
    let ctl = Ctl::new();
    ctl.write("in/a.yaml", &pool("from-yaml", "10.1.0.0/16"));
    ctl.write(
        "in/b.json",
        r#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"from-json"},"spec":{"cidr":"10.2.0.0/16"}}"#,
    );
    ctl.write("in/c.yml", &pool("from-yml", "10.3.0.0/16"));
    ctl.write("in/readme.txt", "not a resource");
    let dir = ctl.dir.path().join("in");
    ctl.run(&["apply", "-f", dir.to_str().unwrap()]).ok();
    assert_eq!(
        ctl.names(&["ippools"]),
        ["from-json", "from-yaml", "from-yml"]
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    let ctl = Ctl::new();
    ctl.run_with_stdin(&["create", "-f", "-"], &two_pools())
        .ok();
    assert_eq!(ctl.names(&["ippools"]), ["pool-a", "pool-b"]);
    let broken = ctl
        .run_with_stdin(&["apply", "-f", "-"], "kind: [")
        .fails_with(2);
    assert!(broken.stderr.contains("<stdin>"), "{broken:?}");
}

#[test]
fn kind_names_accept_case_plurals_and_short_forms() {
    let ctl = Ctl::new();
    ctl.run_with_stdin(&["apply", "-f", "-"], &pool("pool-a", "10.10.0.0/16"))
        .ok();
    for kind in ["ippool", "IPPool", "ippools", "IPPOOLS", "ipp", "pools"] {
        assert_eq!(ctl.names(&[kind]), ["pool-a"], "{kind}");
    }
    let unknown = ctl.run(&["get", "frobnicators"]).fails_with(2);
    assert!(unknown.stderr.contains("frobnicators"), "{unknown:?}");
}

#[test]
fn namespaces_default_select_with_n_and_span_with_a() {
    let ctl = Ctl::new();
    let unnamespaced = policy("in-default", "x").replace("  namespace: x\n", "");
    let text = format!(
        "{}---\n{}---\n{unnamespaced}",
        policy("web", "prod"),
        policy("web", "dev")
    );
    ctl.run_with_stdin(&["apply", "-f", "-"], &text).ok();
    assert_eq!(ctl.names(&["networkpolicy"]), ["in-default"]);
    assert_eq!(ctl.names(&["np", "-n", "prod"]), ["web"]);
    let all = ctl.run(&["get", "policies", "-A"]).ok().stdout;
    let rows: Vec<Vec<&str>> = all
        .lines()
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "NAME"],
            vec!["default", "in-default"],
            vec!["dev", "web"],
            vec!["prod", "web"]
        ]
    );
    ctl.run(&["delete", "np", "web", "-n", "dev"]).ok();
    // `-n` on apply names the namespace of documents that name none.
    let staged = policy("staged", "x").replace("  namespace: x\n", "");
    ctl.run_with_stdin(&["apply", "-n", "staging", "-f", "-"], &staged)
        .ok();
    assert_eq!(ctl.names(&["np", "-n", "staging"]), ["staged"]);
    assert_eq!(
        ctl.run(&["get", "np", "-A", "-o", "json"]).ok().json()["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn get_by_a_missing_name_fails_with_1() {
    let ctl = Ctl::new();
    let run = ctl.run(&["get", "ippool", "nope"]).fails_with(1);
    assert!(run.stderr.contains("IPPool nope"), "{run:?}");
}

#[test]
fn usage_errors_exit_2() {
    let ctl = Ctl::new();
    ctl.run(&["get"]).fails_with(2);
    ctl.run(&["apply"]).fails_with(2);
    ctl.run(&["apply", "-f", "/nonexistent/file.yaml"])
        .fails_with(2);
}

#[test]
fn version_names_the_client_and_the_datastore() {
    let ctl = Ctl::new();
    let out = ctl.run(&["version"]).ok().stdout;
    assert!(
        out.contains(concat!("v", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains("sqlite") && out.contains("calico.db"), "{out}");
}

#[test]
fn a_config_file_selects_the_datastore() {
    let ctl = Ctl::new();
    let db = ctl.dir.path().join("from-config.db");
    let cfg = ctl.write(
        "calicoctl.cfg",
        &format!(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {{}}\nspec:\n  datastoreType: sqlite\n  datastorePath: {}\n",
            db.display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    ctl.run_with_stdin(
        &["apply", "-c", cfg, "-f", "-"],
        &pool("pool-a", "10.10.0.0/16"),
    )
    .ok();
    assert!(db.exists());
    assert_eq!(ctl.names(&["ippools", "--config", cfg]), ["pool-a"]);
    assert!(
        ctl.names(&["ippools"]).is_empty(),
        "the environment's store is another one"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let out = Ctl::new().run(&["--help"]).ok().stdout;
    assert!(
        out.contains("Exit status") && out.contains("2  usage error or invalid input"),
        "{out}"
    );
}

#[test]
fn completion_and_man_produce_output() {
    let ctl = Ctl::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = ctl.run(&["completion", shell]).ok().stdout;
        assert!(
            script.contains("calicoctl") && script.contains("apply"),
            "{shell}"
        );
    }
    let page = ctl.run(&["man"]).ok().stdout;
    assert!(
        page.starts_with(".ie") || page.contains(".TH calicoctl"),
        "{page}"
    );
    let dir = ctl.dir.path().join("man1");
    let listed = ctl.run(&["man", dir.to_str().unwrap()]).ok().stdout;
    assert!(
        dir.join("calicoctl.1").exists() && dir.join("calicoctl-get.1").exists(),
        "{listed}"
    );
}

#[test]
fn the_examples_directory_applies_and_every_resource_reads_back() {
    let ctl = Ctl::new();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let expected = api_resources_in(examples);
    ctl.run(&["apply", "-f", examples]).ok();
    for kind in [
        "ippools",
        "bgpconfigurations",
        "bgppeers",
        "tiers",
        "globalnetworkpolicies",
        "globalnetworksets",
        "felixconfigurations",
        "stagedglobalnetworkpolicies",
    ] {
        let listed = ctl.run(&["get", kind, "-o", "json"]).ok().json();
        let names = items(&listed);
        for (k, name) in &expected {
            if api::Kind::from_name(kind) == Some(*k) {
                assert!(
                    names.contains(name),
                    "{kind}: {name} missing from {names:?}"
                );
            }
        }
    }
    let listed = ctl
        .run(&["get", "networkpolicies", "-A", "-o", "json"])
        .ok()
        .json();
    assert!(!items(&listed).is_empty(), "namespaced policies read back");
    for kind in ["stagednetworkpolicies", "stagedkubernetesnetworkpolicies"] {
        let listed = ctl.run(&["get", kind, "-A", "-o", "json"]).ok().json();
        assert!(!items(&listed).is_empty(), "{kind} read back");
    }
    // Applying the same files again changes nothing and still succeeds.
    ctl.run(&["apply", "-f", examples]).ok();
}

/// Every (kind, name) the example files declare, read with the api crate.
fn api_resources_in(dir: &str) -> Vec<(api::Kind, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = api::parse_documents(&path.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            out.extend(parsed.iter().map(|r| (r.kind(), r.metadata().name.clone())));
        }
    }
    assert!(out.len() >= 10, "examples hold realistic resources");
    out
}

/// The names in a `get -o json` answer: a single resource or a `List`.
fn items(listed: &Value) -> Vec<String> {
    let one = |v: &Value| {
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    match listed.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().map(one).collect(),
        None => vec![one(listed)],
    }
}

/// A golden case of the policy compiler: input files and the expected nft text.
fn golden_case(name: &str) -> (std::path::PathBuf, String) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policy/tests/data")
        .join(name);
    let expected = std::fs::read_to_string(dir.join("expected.nft")).unwrap();
    (dir, expected)
}

#[test]
fn policy_compile_prints_the_ruleset_for_files_and_for_the_datastore_alike() {
    let ctl = Ctl::new();
    // host-endpoint-failsafe takes its failsafe ports from a
    // FelixConfiguration, and its host endpoints from its node; the
    // nat-outgoing cases take their NAT from IPPools (and natOutgoingAddress
    // from a FelixConfiguration).
    for case in [
        "allow-by-selector",
        "tiers-pass",
        "k8s-ipblock-endport",
        "host-endpoint-failsafe",
        "nat-outgoing",
        "nat-outgoing-address",
    ] {
        let (dir, expected) = golden_case(case);
        let node = std::fs::read_to_string(dir.join("node")).ok();
        let node_args: Vec<&str> = match &node {
            Some(n) => vec!["--node", n.trim()],
            None => vec![],
        };
        let dir = dir.to_str().unwrap();
        let from_files = ctl
            .run(&[&["policy", "compile", "-f", dir][..], &node_args].concat())
            .ok();
        assert_eq!(from_files.stdout, expected, "{case} from files");

        let ctl = Ctl::new();
        ctl.run(&["apply", "-f", dir]).ok();
        let from_store = ctl
            .run(&[&["policy", "compile"][..], &node_args].concat())
            .ok();
        assert_eq!(from_store.stdout, expected, "{case} from the datastore");
    }
}

#[test]
fn policy_compile_names_a_missing_tier_and_exits_2() {
    let ctl = Ctl::new();
    let path = ctl.write(
        "gnp.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: ghost.p\n\
         spec:\n  tier: ghost\n  selector: all()\n  ingress:\n  - action: Allow\n",
    );
    let run = ctl
        .run(&["policy", "compile", "-f", path.to_str().unwrap()])
        .fails_with(2);
    assert!(run.stderr.contains("ghost"), "{run:#?}");
}

#[test]
fn policy_compile_diff_programs_an_empty_namespace_then_changes_no_set_elements() {
    if !testkit::require_root() || !testkit::require_programs(&["nft"]) {
        return;
    }
    let ns = testkit::Netns::new("ctlpol").unwrap();
    let ctl = Ctl::new();
    let (dir, _) = golden_case("allow-by-selector");
    let diff = || {
        let out = ns
            .cmd(env!("CARGO_BIN_EXE_calicoctl"))
            .args(["policy", "compile", "--diff", "-f", dir.to_str().unwrap()])
            .env("DATASTORE_PATH", ctl.db())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let first = diff();
    assert!(first.starts_with("add table inet calico"), "{first}");
    let script = ctl.write("first.nft", &first);
    ns.exec("nft", ["-f", script.to_str().unwrap()]).unwrap();
    ns.exec("nft", ["list", "table", "inet", "calico"]).unwrap();

    // Programmed now: sets and maps already hold every element.
    let second = diff();
    assert!(
        !second.contains(" element "),
        "no element changes expected:\n{second}"
    );
}

#[test]
fn validate_checks_offline_with_applys_messages_and_writes_nothing() {
    let ctl = Ctl::new();
    let good = ctl.write(
        "good.yaml",
        &(two_pools() + "---\n" + &policy("web", "shop")),
    );
    let run = ctl.run(&["validate", "-f", good.to_str().unwrap()]).ok();
    assert!(
        run.stdout.contains("good.yaml: 3 resources valid"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  NetworkPolicy shop/web"),
        "{}",
        run.stdout
    );

    let bad = ctl.write(
        "bad.yaml",
        &(two_pools() + "---\n" + &pool("pool-c", "10.30.0.0/33")),
    );
    let validate = ctl
        .run(&["validate", "-f", bad.to_str().unwrap()])
        .fails_with(2);
    let apply = ctl
        .run(&["apply", "-f", bad.to_str().unwrap()])
        .fails_with(2);
    assert!(
        validate.stderr.contains("document 3 (pool-c): spec.cidr"),
        "{}",
        validate.stderr
    );
    assert_eq!(validate.stderr, apply.stderr, "the same messages as apply");
    // Nothing was written, and no store was needed.
    assert!(!ctl.db().exists());
}
