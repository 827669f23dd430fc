//! Parsing and planning topology files (pure, no root): defaults and kinds
//! merged under nodes, links as veth pairs, roles from images and labels,
//! daemons' command lines, mount namespaces' steps, and errors naming the
//! line at fault.

use std::path::{Path, PathBuf};

use lab::mounts::{self, FileKind, Mount, Step};
use lab::plan::{Plan, Role};
use lab::run::{NodeStatus, table};
use lab::{Settings, TopologyError};

fn settings() -> Settings {
    Settings {
        state_root: PathBuf::from("/run/calico-lab"),
        file_dir: PathBuf::from("/labs"),
        name: None,
        felix: PathBuf::from("/usr/bin/felix"),
    }
}

fn plan(text: &str) -> Result<Plan, TopologyError> {
    let topology = lab::parse(text)?;
    lab::plan(&topology, text, &settings())
}

fn error(text: &str) -> TopologyError {
    plan(text).expect_err("the file is refused")
}

const TWO_NODES: &str = "\
name: t
topology:
  defaults:
    env:
      A: from-defaults
      B: from-defaults
  kinds:
    linux:
      image: alpine:3
      exec: [echo kind]
      env:
        B: from-kind
        C: from-kind
  nodes:
    n1:
      kind: linux
      env:
        C: from-node
    n2:
      exec: [echo own]
  links:
    - endpoints: [\"n1:eth1\", \"n2:e2\"]
";

#[test]
fn node_settings_override_kinds_which_override_defaults() {
    let plan = plan(TWO_NODES).unwrap();
    let n1 = &plan.nodes[0];
    assert_eq!(n1.name, "n1");
    let env: Vec<(&str, &str)> = n1
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("A", "from-defaults"),
            ("B", "from-kind"),
            ("C", "from-node")
        ]
    );
    assert_eq!(n1.exec, ["echo kind"]);
    // A node without `kind` is `linux` and takes that kind's settings.
    assert_eq!(plan.nodes[1].exec, ["echo own"]);
    assert_eq!(plan.nodes[1].role, Role::Linux);
    assert!(n1.daemons.is_empty());
}

#[test]
fn nodes_become_namespaces_named_after_lab_and_node_and_links_veth_pairs() {
    let plan = plan(TWO_NODES).unwrap();
    assert_eq!(plan.lab, "t");
    assert_eq!(plan.state_dir, Path::new("/run/calico-lab/t"));
    assert_eq!(plan.nodes[0].netns, "clab-t-n1");
    let link = &plan.links[0];
    assert_eq!(
        (link.a.netns.as_str(), link.a.ifname.as_str()),
        ("clab-t-n1", "eth1")
    );
    assert_eq!(
        (link.b.netns.as_str(), link.b.ifname.as_str()),
        ("clab-t-n2", "e2")
    );
    assert_eq!(link.a.bridge, None);
}

#[test]
fn the_name_flag_replaces_the_files_name() {
    let topology = lab::parse(TWO_NODES).unwrap();
    let mut s = settings();
    s.name = Some("other".into());
    let plan = lab::plan(&topology, TWO_NODES, &s).unwrap();
    assert_eq!(plan.nodes[0].netns, "clab-other-n1");
    assert_eq!(plan.state_dir, Path::new("/run/calico-lab/other"));
}

#[test]
fn routers_run_their_daemon_on_the_bound_files_host_path() {
    let plan = plan(
        "name: r
topology:
  nodes:
    b:
      kind: linux
      image: ghcr.io/x/bird:2.0
      binds: [confs/b.conf:/etc/bird/bird.conf:ro]
    g:
      kind: linux
      image: debian:12
      labels: {calico-rs.role: gobgp}
      binds: [/abs/g.yaml:/etc/gobgp/gobgpd.yaml]
",
    )
    .unwrap();
    let bird = &plan.nodes[0].daemons[0];
    assert_eq!(plan.nodes[0].role, Role::Bird);
    assert_eq!(bird.program, Path::new("bird"));
    assert_eq!(
        bird.args,
        [
            "-f",
            "-c",
            "/labs/confs/b.conf",
            "-s",
            "/run/calico-lab/r/b/bird.ctl"
        ]
    );
    assert_eq!(bird.log, Path::new("/run/calico-lab/r/b/bird.log"));
    assert_eq!(
        bird.ready.as_deref(),
        Some(Path::new("/run/calico-lab/r/b/bird.ctl"))
    );
    let gobgp = &plan.nodes[1].daemons[0];
    assert_eq!(plan.nodes[1].role, Role::Gobgp);
    assert_eq!(gobgp.program, Path::new("gobgpd"));
    assert_eq!(&gobgp.args[..4], ["-f", "/abs/g.yaml", "-t", "yaml"]);
}

#[test]
fn felix_hosts_share_the_labs_datastore_unless_their_env_names_one() {
    let plan = plan(
        "name: f
topology:
  nodes:
    h1:
      kind: linux
      image: calico-rs/felix:dev
      env: {IP: 10.0.0.11/24, AS: \"64601\"}
    h2:
      kind: linux
      labels: {calico-rs.role: felix}
      env: {DATASTORE_TYPE: etcdv3, ETCD_ENDPOINTS: \"http://10.0.0.1:2379\"}
",
    )
    .unwrap();
    let h1 = &plan.nodes[0].daemons[0];
    assert_eq!(h1.program, Path::new("/usr/bin/felix"));
    assert_eq!(
        h1.args,
        [
            "run",
            "--node-name",
            "h1",
            "--bgp-socket",
            "/run/calico-lab/f/h1/bgp.sock"
        ]
    );
    assert_eq!(h1.env["DATASTORE_TYPE"], "sqlite");
    assert_eq!(h1.env["DATASTORE_PATH"], "/run/calico-lab/f/datastore.db");
    assert_eq!(h1.env["IP"], "10.0.0.11/24");
    // Started one after the other: the next once this one's socket is up.
    assert_eq!(
        h1.ready.as_deref(),
        Some(Path::new("/run/calico-lab/f/h1/bgp.sock"))
    );
    let h2 = &plan.nodes[1].daemons[0];
    assert_eq!(h2.env["DATASTORE_TYPE"], "etcdv3");
    assert!(!h2.env.contains_key("DATASTORE_PATH"));
}

#[test]
fn link_ends_on_a_bridge_node_join_its_bridge() {
    let plan = plan(
        "name: b
topology:
  nodes:
    sw: {kind: bridge}
    h: {kind: linux}
  links:
    - endpoints: [\"h:eth1\", \"sw:port1\"]
",
    )
    .unwrap();
    assert_eq!(plan.nodes[1].role, Role::Bridge);
    assert_eq!(plan.links[0].b.bridge.as_deref(), Some("sw"));
    assert_eq!(plan.links[0].a.bridge, None);
}

#[test]
fn the_end_to_end_topology_plans() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/e2e.clab.yml"),
    )
    .unwrap();
    let plan = plan(&text).unwrap();
    assert_eq!(plan.nodes.len(), 9);
    assert_eq!(plan.links.len(), 6);
    let roles: Vec<(&str, Role)> = plan
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.role))
        .collect();
    for want in [
        ("r1", Role::Bird),
        ("r2", Role::Bird),
        ("g1", Role::Gobgp),
        ("f1", Role::Frr),
        ("sw", Role::Bridge),
    ] {
        assert!(roles.contains(&want), "{want:?} in {roles:?}");
    }
}

#[test]
fn every_example_topology_plans_with_felix_hosts_and_its_resources_beside_it() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let file = dir.join(format!("{name}.clab.yml"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let topology = lab::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let settings = Settings {
            file_dir: dir.clone(),
            ..settings()
        };
        let plan = lab::plan(&topology, &text, &settings).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plan.lab, name, "the lab is named as its directory");
        assert!(
            plan.nodes.iter().any(|n| n.role == Role::Felix),
            "{name}: felix hosts"
        );
        // The files the daemons are given (bound configs) are there.
        let bound = plan
            .nodes
            .iter()
            .flat_map(|n| &n.daemons)
            .flat_map(|d| &d.args)
            .map(Path::new)
            .filter(|a| a.starts_with(&dir));
        for path in bound {
            assert!(
                path.exists(),
                "{name}: {} is bound but missing",
                path.display()
            );
        }
        for beside in ["resources.yaml", "example.sh"] {
            assert!(dir.join(beside).exists(), "{name}: {beside}");
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["dual-stack", "quickstart", "route-reflectors"]);
}

#[test]
fn an_unknown_kind_is_refused_naming_its_line() {
    let e = error("name: t\ntopology:\n  nodes:\n    n1:\n      kind: nokia_srlinux\n");
    assert_eq!(e.line, Some(5), "{e}");
    assert_eq!(e.path, "topology.nodes.n1.kind");
    assert!(e.message.contains("unknown variant `nokia_srlinux`"), "{e}");
    assert_eq!(
        e.to_string(),
        "line 5: topology.nodes.n1.kind: unknown variant `nokia_srlinux`, expected `linux` or `bridge`"
    );
}

#[test]
fn an_unsupported_node_field_is_refused_naming_its_line() {
    let e =
        error("name: t\ntopology:\n  nodes:\n    n1:\n      kind: linux\n      ports: [80:80]\n");
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("unknown field `ports`"), "{e}");
}

#[test]
fn an_unknown_top_level_field_is_refused_naming_its_line() {
    let e = error("name: t\nmgmt:\n  network: x\ntopology: {}\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("unknown field `mgmt`"), "{e}");
}

#[test]
fn a_missing_name_is_refused() {
    let e = error("topology: {}\n");
    assert!(e.message.contains("missing field `name`"), "{e}");
}

#[test]
fn an_unknown_role_label_is_refused_naming_its_line() {
    let e = error(
        "name: t\ntopology:\n  nodes:\n    n1:\n      kind: linux\n      labels:\n        calico-rs.role: quagga\n",
    );
    assert_eq!(e.line, Some(7), "{e}");
    assert!(
        e.message.contains("unknown calico-rs.role \"quagga\""),
        "{e}"
    );
}

#[test]
fn goldmane_runs_beside_felix_with_its_socket_in_the_nodes_state() {
    let plan = plan(
        "name: g
topology:
  nodes:
    flows:
      kind: linux
      image: ghcr.io/calico-rs/goldmane:dev
      env: {GOLDMANE_LISTEN: \"10.0.0.2:7443\"}
    same:
      kind: linux
      labels: {calico-rs.role: goldmane}
",
    )
    .unwrap();
    let g = &plan.nodes[0];
    assert_eq!(
        (g.role, plan.nodes[1].role),
        (Role::Goldmane, Role::Goldmane)
    );
    let d = &g.daemons[0];
    assert_eq!(d.program, Path::new("/usr/bin/goldmane"));
    let socket = "/run/calico-lab/g/flows/goldmane.sock";
    assert_eq!(d.args, ["--socket", socket]);
    assert_eq!(d.ready.as_deref(), Some(Path::new(socket)));
    assert_eq!(
        d.env.get("GOLDMANE_LISTEN").map(String::as_str),
        Some("10.0.0.2:7443")
    );
}

#[test]
fn frr_runs_zebra_then_bgpd_as_frr_on_the_bound_config() {
    let plan = plan(
        "name: f
topology:
  nodes:
    r:
      kind: linux
      image: quay.io/frrouting/frr:9
      binds: [r/frr.conf:/etc/frr/frr.conf]
",
    )
    .unwrap();
    let r = &plan.nodes[0];
    assert_eq!(r.role, Role::Frr);
    assert_eq!(r.owner.as_deref(), Some("frr"));
    let programs: Vec<&Path> = r.daemons.iter().map(|d| d.program.as_path()).collect();
    assert_eq!(
        programs,
        [
            Path::new("/usr/lib/frr/zebra"),
            Path::new("/usr/lib/frr/bgpd")
        ]
    );
    let zebra = &r.daemons[0];
    // At its container path: `frr` may not pass through the host path.
    assert_eq!(&zebra.args[..2], ["-f", "/etc/frr/frr.conf"]);
    assert!(
        zebra
            .args
            .windows(2)
            .any(|w| w == ["-z", "/run/calico-lab/f/r/zserv.api"])
    );
    assert!(
        zebra
            .args
            .windows(2)
            .any(|w| w == ["--vty_socket", "/run/calico-lab/f/r"])
    );
    // bgpd starts once zebra's zserv socket is there.
    assert_eq!(
        zebra.ready.as_deref(),
        Some(Path::new("/run/calico-lab/f/r/zserv.api"))
    );
    let e = error(
        "name: t\ntopology:\n  nodes:\n    n1:\n      kind: linux\n      labels: {calico-rs.role: frr}\n",
    );
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("/etc/frr/frr.conf"), "{e}");
}

#[test]
fn a_bird_node_without_a_config_bind_is_refused_naming_the_node() {
    let e = error("name: t\ntopology:\n  nodes:\n    r:\n      kind: linux\n      image: bird:2\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("/etc/bird/bird.conf"), "{e}");
}

#[test]
fn a_malformed_bind_is_refused_naming_its_line() {
    let e = error(
        "name: t\ntopology:\n  nodes:\n    r:\n      kind: linux\n      binds: [\"nocolon\"]\n",
    );
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(e.path, "topology.nodes.r.binds");
}

const LINKED: &str =
    "name: t\ntopology:\n  nodes:\n    a: {kind: linux}\n    b: {kind: linux}\n  links:\n";

#[test]
fn a_link_to_a_missing_node_is_refused_naming_its_line() {
    let e = error(&format!(
        "{LINKED}    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"a:eth2\", \"zz:eth1\"]\n"
    ));
    assert_eq!(e.line, Some(8), "{e}");
    assert_eq!(e.path, "topology.links[1].endpoints");
    assert!(e.message.contains("no node \"zz\""), "{e}");
}

#[test]
fn an_interface_used_twice_is_refused() {
    let e = error(&format!(
        "{LINKED}    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"a:eth1\", \"b:eth2\"]\n"
    ));
    assert!(e.message.contains("used twice"), "{e}");
}

#[test]
fn bad_endpoints_are_refused() {
    for (links, want) in [
        ("    - endpoints: [\"a:eth1\"]\n", "two endpoints"),
        ("    - endpoints: [\"a\", \"b:eth1\"]\n", "not NODE:IFNAME"),
        (
            "    - endpoints: [\"a:averyveryverylongname\", \"b:eth1\"]\n",
            "1 to 15 bytes",
        ),
    ] {
        let e = error(&format!("{LINKED}{links}"));
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains(want), "{links}: {e}");
    }
}

#[test]
fn a_link_with_an_unknown_field_is_refused_naming_its_line() {
    let e = error(&format!(
        "{LINKED}    - endpoints: [\"a:eth1\", \"b:eth1\"]\n      speed: 9000\n"
    ));
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("unknown field `speed`"), "{e}");
}

#[test]
fn the_inspect_table_lines_up_its_columns() {
    let row = |node: &str, role, ifs: &[&str]| NodeStatus {
        lab: "t".into(),
        node: node.into(),
        kind: "linux".into(),
        role,
        netns: format!("clab-t-{node}"),
        interfaces: ifs.iter().map(|s| s.to_string()).collect(),
        state: "running",
    };
    let out = table(&[
        row("a", Role::Linux, &["eth1 10.0.0.1/30"]),
        row("router", Role::Bird, &["eth1 10.0.0.2/30", "eth2"]),
    ]);
    assert_eq!(
        out,
        "\
LAB  NODE    KIND/ROLE    NAMESPACE      STATE    INTERFACES
t    a       linux/linux  clab-t-a       running  eth1 10.0.0.1/30
t    router  linux/bird   clab-t-router  running  eth1 10.0.0.2/30; eth2
"
    );
}

/// Plans `text` as `up` reads it: `${VAR}` expanded from `env` first.
fn plan_with(text: &str, env: &[(&str, &str)]) -> Result<Plan, TopologyError> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let text = lab::expand(text, lookup)?;
    let topology = lab::parse(&text)?;
    lab::plan(&topology, &text, &settings())
}

#[test]
fn variables_are_expanded_before_parsing_with_their_defaults() {
    let text = "\
name: ${LAB_NAME:=envlab}
topology:
  nodes:
    r:
      image: ${ROUTER_IMAGE}
      binds: [r.conf:/etc/bird/bird.conf]
      exec: [\"echo $HOME_IN_NODE\"]
    h: {kind: linux}
  links:
    - endpoints: [\"r:eth1\", \"h:eth1\"]
      mtu: ${LINK_MTU:-1400}
";
    let plan = plan_with(text, &[("ROUTER_IMAGE", "ghcr.io/x/bird:2")]).unwrap();
    assert_eq!(plan.lab, "envlab");
    assert_eq!(plan.nodes[1].name, "r");
    assert_eq!(
        plan.nodes[1].role,
        Role::Bird,
        "the image came from the environment"
    );
    // An unset variable without a default is left for the node's shell.
    assert_eq!(plan.nodes[1].exec, ["echo $HOME_IN_NODE"]);
    assert_eq!(plan.links[0].mtu, Some(1400));
    let plan = plan_with(
        text,
        &[
            ("LAB_NAME", "other"),
            ("ROUTER_IMAGE", "debian:12"),
            ("LINK_MTU", "9000"),
        ],
    )
    .unwrap();
    assert_eq!(plan.lab, "other");
    assert_eq!(plan.nodes[1].role, Role::Linux);
    assert_eq!(plan.links[0].mtu, Some(9000));
}

#[test]
fn errors_after_expansion_name_the_files_own_lines() {
    let text = "\
name: t
topology:
  nodes:
    a: {kind: linux}
    r:
      kind: ${R_KIND:=ceos}
  links:
    - endpoints: [\"a:eth1\", \"${PEER:=zz}:eth1\"]
";
    let e = plan_with(text, &[]).unwrap_err();
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("unknown variant `ceos`"), "{e}");
    let e = plan_with(text, &[("R_KIND", "linux")]).unwrap_err();
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("no node \"zz\""), "{e}");
    assert!(plan_with(text, &[("R_KIND", "linux"), ("PEER", "r")]).is_ok());
    // A value that would add a line is refused on the line that uses it.
    let e = plan_with(text, &[("PEER", "r\nx: 1")]).unwrap_err();
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("$PEER"), "{e}");
}

#[test]
fn a_long_form_veth_link_sets_mac_and_mtu_and_mixes_with_brief_links_and_dummies() {
    let plan = plan(&format!(
        "{LINKED}    - endpoints: [\"a:eth1\", \"b:eth1\"]
    - type: veth
      endpoints:
        - node: a
          interface: eth2
          mac: 02:AA:bb:00:00:01
        - {{node: b, interface: eth2, mac: \"02-aa-bb-00-00-02\"}}
      mtu: 9000
      vars: {{ip: 10.0.0.1}}
      labels: {{role: core}}
    - type: dummy
      endpoint: {{node: a, interface: dummy0, mac: \"02:aa:bb:00:00:03\"}}
      mtu: 1280
"
    ))
    .unwrap();
    assert_eq!(plan.links.len(), 2);
    let brief = &plan.links[0];
    assert_eq!(
        (brief.mtu, &brief.a.mac, &brief.b.mac),
        (None, &None, &None)
    );
    let long = &plan.links[1];
    assert_eq!(long.mtu, Some(9000));
    assert_eq!(
        (long.a.netns.as_str(), long.a.ifname.as_str()),
        ("clab-t-a", "eth2")
    );
    assert_eq!(long.a.mac.as_deref(), Some("02:aa:bb:00:00:01"));
    assert_eq!(long.b.mac.as_deref(), Some("02:aa:bb:00:00:02"));
    let [dummy] = plan.dummies.as_slice() else {
        panic!("{:?}", plan.dummies)
    };
    assert_eq!(
        (dummy.end.netns.as_str(), dummy.end.ifname.as_str()),
        ("clab-t-a", "dummy0")
    );
    assert_eq!(dummy.end.mac.as_deref(), Some("02:aa:bb:00:00:03"));
    assert_eq!(dummy.mtu, Some(1280));
}

#[test]
fn link_types_not_made_here_are_refused_naming_their_line() {
    for (link, kind) in [
        (
            "    - type: macvlan\n      endpoint: {node: a, interface: eth1}\n      host-interface: enp0s3\n      mode: bridge\n",
            "macvlan",
        ),
        (
            "    - type: host\n      endpoint: {node: a, interface: eth1}\n      host-interface: a-eth1\n",
            "host",
        ),
        (
            "    - type: mgmt-net\n      endpoint: {node: a, interface: eth1}\n      host-interface: a-eth1\n",
            "mgmt-net",
        ),
        (
            "    - type: vxlan\n      endpoint: {node: a, interface: eth1}\n      remote: 10.0.0.9\n      vni: 100\n      udp-port: 4789\n",
            "vxlan",
        ),
    ] {
        let text = format!("{LINKED}    - endpoints: [\"a:eth2\", \"b:eth2\"]\n{link}");
        let e = error(&text);
        assert_eq!(e.line, Some(8), "{kind}: {e}");
        assert_eq!(e.path, "topology.links[1].type", "{kind}");
        assert!(
            e.message
                .contains(&format!("link type `{kind}` is not made here")),
            "{e}"
        );
    }
    let e = error(&format!(
        "{LINKED}    - type: wormhole\n      endpoints: [{{node: a, interface: eth1}}]\n"
    ));
    assert_eq!(e.line, Some(7), "{e}");
    assert!(e.message.contains("unknown variant `wormhole`"), "{e}");
}

#[test]
fn bad_long_form_links_are_refused_naming_their_line() {
    for (links, line, want) in [
        (
            "    - type: veth\n      endpoints:\n        - {node: a, interface: eth1, mac: \"01:00:5e:00:00:01\"}\n        - {node: b, interface: eth1}\n",
            9,
            "not a unicast MAC",
        ),
        (
            "    - type: veth\n      endpoints:\n        - {node: a, interface: eth1}\n        - {node: b, interface: eth1, mac: \"02:00:00:00:01\"}\n",
            10,
            "not a unicast MAC",
        ),
        (
            "    - type: veth\n      endpoints:\n        - {node: a, interface: eth1}\n        - {node: zz, interface: eth1}\n",
            10,
            "no node \"zz\"",
        ),
        (
            "    - type: veth\n      endpoints:\n        - {node: a, interface: eth1}\n        - {node: b, interface: eth1}\n      mtu: 20\n",
            11,
            "mtu 20 is not 68 to 65535",
        ),
        (
            "    - type: veth\n      endpoints:\n        - {node: a, interface: eth1}\n        - {node: b, ifname: eth1}\n",
            10,
            "unknown field `ifname`",
        ),
        (
            "    - type: veth\n      endpoints:\n        - {node: a, interface: eth1}\n",
            8,
            "two endpoints, not 1",
        ),
        (
            "    - type: veth\n      endpoints: [\"a:eth1\", \"b:eth1\"]\n",
            8,
            "endpoints are mappings",
        ),
        (
            "    - endpoints:\n        - {node: a, interface: eth1}\n        - {node: b, interface: eth1}\n",
            8,
            "need `type: veth`",
        ),
        (
            "    - type: veth\n      endpoint: {node: a, interface: eth1}\n",
            8,
            "`endpoint` is not a field of veth link",
        ),
        (
            "    - type: dummy\n      mtu: 1500\n",
            7,
            "needs its `endpoint",
        ),
    ] {
        let e = error(&format!("{LINKED}{links}"));
        assert_eq!(e.line, Some(line), "{links}: {e}");
        assert!(e.message.contains(want), "{links}: {e}");
    }
}

#[test]
fn a_startup_config_is_the_routers_config_file_and_linux_nodes_ignore_it() {
    let plan = plan(
        "name: s
topology:
  defaults:
    startup-config: ignored/by-linux-nodes.cfg
  kinds:
    linux:
      image: alpine:3
  nodes:
    b:
      image: ghcr.io/x/bird:2
      startup-config: configs/b.conf
    g:
      labels: {calico-rs.role: gobgp}
      startup-config: /abs/g.yaml
    f:
      image: quay.io/frrouting/frr:9
      startup-config: f/frr.conf
    h: {}
    e:
      labels: {calico-rs.role: bird}
      startup-config: |
        router id 10.0.0.9;
        protocol device { }
",
    )
    .unwrap();
    let node = |name: &str| plan.nodes.iter().find(|n| n.name == name).unwrap();
    assert_eq!(
        &node("b").daemons[0].args[..3],
        ["-f", "-c", "/labs/configs/b.conf"]
    );
    assert_eq!(
        &node("g").daemons[0].args[..4],
        ["-f", "/abs/g.yaml", "-t", "yaml"]
    );
    // FRR reads it where its startup-config is bound, /etc/frr/frr.conf.
    assert_eq!(&node("f").daemons[0].args[..2], ["-f", "/etc/frr/frr.conf"]);
    assert_eq!(&node("f").daemons[1].args[..2], ["-f", "/etc/frr/frr.conf"]);
    assert!(
        node("f")
            .mounts
            .iter()
            .any(|m| m.source == Path::new("/labs/f/frr.conf")
                && m.target == Path::new("/etc/frr/frr.conf"))
    );
    // Containerlab's kind linux ignores a startup-config, and so do plain nodes.
    assert!(node("h").daemons.is_empty() && node("h").files.is_empty());
    // A config of several lines is the config itself, written in the node's directory.
    let e = node("e");
    let written = Path::new("/run/calico-lab/s/e/bird.conf");
    assert_eq!(
        &e.daemons[0].args[..3],
        ["-f", "-c", written.to_str().unwrap()]
    );
    assert_eq!(
        e.files,
        [(
            written.to_path_buf(),
            "router id 10.0.0.9;\nprotocol device { }\n".to_string()
        )]
    );
    assert!(node("b").files.is_empty());
}

#[test]
fn a_startup_config_beside_a_bind_or_from_a_url_is_refused_naming_its_line() {
    let e = error(
        "name: t\ntopology:\n  nodes:\n    r:\n      image: bird:2\n      binds: [r.conf:/etc/bird/bird.conf]\n      startup-config: r2.conf\n",
    );
    assert_eq!(e.line, Some(7), "{e}");
    assert_eq!(e.path, "topology.nodes.r.startup-config");
    assert!(e.message.contains("keep one"), "{e}");
    let e = error(
        "name: t\ntopology:\n  kinds:\n    linux:\n      startup-config: https://example.com/r.conf\n  nodes:\n    r:\n      image: frr:9\n",
    );
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("not fetched"), "{e}");
}

/// `(source, target, read_only)` of each of a node's mounts.
fn mounts_of(plan: &Plan, node: &str) -> Vec<(String, String, bool)> {
    let node = plan.nodes.iter().find(|n| n.name == node).unwrap();
    node.mounts
        .iter()
        .map(|m| {
            (
                m.source.display().to_string(),
                m.target.display().to_string(),
                m.read_only,
            )
        })
        .collect()
}

#[test]
fn nodes_with_binds_or_a_router_get_a_mount_namespace_with_their_runtime_dirs_binds_and_startup_config()
 {
    let plan = plan(
        "name: m
topology:
  nodes:
    b:
      image: ghcr.io/x/bird:2
      binds: [b/bird.conf:/etc/bird/bird.conf:ro, /srv/data:/data:rw]
    e:
      labels: {calico-rs.role: bird}
      startup-config: |
        router id 10.0.0.9;
    g:
      labels: {calico-rs.role: gobgp}
      startup-config: g/gobgpd.yaml
    f:
      image: quay.io/frrouting/frr:9
      binds: [f/frr.conf:/etc/frr/frr.conf]
    l:
      binds: [notes:/opt/notes:ro]
    h: {}
    x:
      image: calico-rs/felix
    sw:
      kind: bridge
",
    )
    .unwrap();
    let own = |s: &str, t: &str, ro: bool| (s.to_string(), t.to_string(), ro);
    assert_eq!(
        mounts_of(&plan, "b"),
        [
            own("/run/calico-lab/m/b", "/run/bird", false),
            own("/labs/b/bird.conf", "/etc/bird/bird.conf", true),
            own("/srv/data", "/data", false),
        ]
    );
    // A startup-config, written or named, is bound read-only at the config's path.
    assert_eq!(
        mounts_of(&plan, "e"),
        [
            own("/run/calico-lab/m/e", "/run/bird", false),
            own("/run/calico-lab/m/e/bird.conf", "/etc/bird/bird.conf", true),
        ]
    );
    assert_eq!(
        mounts_of(&plan, "g"),
        [own("/labs/g/gobgpd.yaml", "/etc/gobgp/gobgpd.yaml", true)]
    );
    assert_eq!(
        mounts_of(&plan, "f"),
        [
            own("/run/calico-lab/m/f", "/run/frr", false),
            own("/labs/f/frr.conf", "/etc/frr/frr.conf", false),
        ]
    );
    assert_eq!(
        mounts_of(&plan, "l"),
        [own("/labs/notes", "/opt/notes", true)]
    );
    let mntns = |n: &str| {
        plan.nodes
            .iter()
            .find(|p| p.name == n)
            .unwrap()
            .mntns
            .clone()
    };
    assert_eq!(mntns("b"), Some(PathBuf::from("/run/calico-lab/m/b/mnt")));
    assert_eq!(mntns("l"), Some(PathBuf::from("/run/calico-lab/m/l/mnt")));
    // Plain nodes without binds, felix hosts and bridges keep the host's mounts.
    for n in ["h", "x", "sw"] {
        assert_eq!(mounts_of(&plan, n), [], "{n}");
        assert_eq!(mntns(n), None, "{n}");
    }
}

/// A host holding `/etc`, `/etc/bird`, `/run`, `/srv/conf` (a file) and
/// `/srv/dir`.
fn host(path: &Path) -> Option<FileKind> {
    match path.to_str()? {
        "/" | "/etc" | "/etc/bird" | "/run" | "/srv" | "/srv/dir" => Some(FileKind::Dir),
        "/srv/conf" => Some(FileKind::File),
        _ => None,
    }
}

fn mount(source: &str, target: &str, read_only: bool) -> Mount {
    Mount {
        source: source.into(),
        target: target.into(),
        read_only,
    }
}

#[test]
fn a_target_the_host_has_is_bound_in_place() {
    let steps = mounts::steps(
        &[mount("/srv/conf", "/etc/bird", true)],
        Path::new("/s/.mnt"),
        host,
    )
    .unwrap();
    assert_eq!(
        steps,
        [Step::Bind {
            source: "/srv/conf".into(),
            target: "/etc/bird".into(),
            read_only: true
        }]
    );
}

#[test]
fn missing_targets_are_made_on_one_overlay_of_their_nearest_existing_ancestor() {
    let steps = mounts::steps(
        &[
            mount("/srv/dir", "/run/bird", false),
            mount("/srv/conf", "/etc/gobgp/conf.d/gobgpd.toml", true),
            mount("/srv/conf", "/etc/gobgp/other.toml", false),
            mount("/srv/dir", "/run/frr", false),
        ],
        Path::new("/s/.mnt"),
        host,
    )
    .unwrap();
    let overlay = |at: &str, n: &str| Step::Overlay {
        at: at.into(),
        upper: format!("/s/.mnt/{n}/upper").into(),
        work: format!("/s/.mnt/{n}/work").into(),
        merged: format!("/s/.mnt/{n}/merged").into(),
    };
    let create = |path: &str, kind| Step::Create {
        path: path.into(),
        kind,
    };
    let bind = |source: &str, target: &str, read_only| Step::Bind {
        source: source.into(),
        target: target.into(),
        read_only,
    };
    assert_eq!(
        steps,
        [
            Step::Scratch {
                at: "/s/.mnt".into()
            },
            overlay("/run", "0"),
            create("/run/bird", FileKind::Dir),
            bind("/srv/dir", "/run/bird", false),
            overlay("/etc", "1"),
            create("/etc/gobgp", FileKind::Dir),
            create("/etc/gobgp/conf.d", FileKind::Dir),
            create("/etc/gobgp/conf.d/gobgpd.toml", FileKind::File),
            bind("/srv/conf", "/etc/gobgp/conf.d/gobgpd.toml", true),
            // /etc/gobgp was made on the overlay: no second one.
            create("/etc/gobgp/other.toml", FileKind::File),
            bind("/srv/conf", "/etc/gobgp/other.toml", false),
            create("/run/frr", FileKind::Dir),
            bind("/srv/dir", "/run/frr", false),
        ]
    );
}

#[test]
fn a_bind_whose_source_is_missing_is_refused_naming_it() {
    let e = mounts::steps(
        &[mount("/srv/gone", "/etc/x", true)],
        Path::new("/s/.mnt"),
        host,
    )
    .unwrap_err();
    assert!(e.contains("/srv/gone") && e.contains("/etc/x"), "{e}");
}

const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:5 / /run/netns rw shared:5 - tmpfs tmpfs rw
31 30 0:4 net:[4026532300] /run/netns/a rw shared:5 - nsfs nsfs rw
32 22 0:40 / /run/user/0 rw - tmpfs tmpfs rw
33 22 254:0 /tmp/st /tmp/st rw - ext4 /dev/vda rw
34 33 0:4 mnt:[4026532400] /tmp/st/r1/mnt rw - nsfs nsfs rw
35 33 0:4 mnt:[4026532401] /tmp/st/with\\040space/mnt rw - nsfs nsfs rw
36 22 0:41 / /runner rw - tmpfs tmpfs rw
";

#[test]
fn an_overlay_carries_the_top_mounts_below_its_directory() {
    assert_eq!(
        mounts::submounts(MOUNTINFO, Path::new("/run")),
        [PathBuf::from("/run/netns"), PathBuf::from("/run/user/0")]
    );
    assert_eq!(
        mounts::submounts(MOUNTINFO, Path::new("/etc")),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn down_unmounts_what_is_under_the_state_dir_last_first_and_finds_persisted_namespaces() {
    assert_eq!(
        mounts::mounts_under(MOUNTINFO, Path::new("/tmp/st")),
        [
            PathBuf::from("/tmp/st/with space/mnt"),
            PathBuf::from("/tmp/st/r1/mnt"),
            PathBuf::from("/tmp/st"),
        ]
    );
    assert_eq!(
        mounts::mount_namespace_files(MOUNTINFO),
        [
            PathBuf::from("/tmp/st/r1/mnt"),
            PathBuf::from("/tmp/st/with space/mnt")
        ]
    );
}

#[test]
fn what_a_bind_covers_is_its_sources_and_a_missing_target_below_it_gets_its_own_overlay() {
    let steps = mounts::steps(
        &[
            mount("/srv", "/opt/srv", false),
            mount("/srv/conf", "/opt/srv/dir/conf", true),
            mount("/srv/conf", "/opt/srv/new/conf", true),
        ],
        Path::new("/s/.mnt"),
        host,
    )
    .unwrap();
    let targets: Vec<String> = steps
        .iter()
        .map(|s| match s {
            Step::Scratch { at } => format!("scratch {}", at.display()),
            Step::Overlay { at, upper, .. } => {
                format!("overlay {} {}", at.display(), upper.display())
            }
            Step::Create { path, .. } => format!("create {}", path.display()),
            Step::Bind { target, .. } => format!("bind {}", target.display()),
        })
        .collect();
    assert_eq!(
        targets,
        [
            "scratch /s/.mnt",
            "overlay / /s/.mnt/0/upper",
            "create /opt",
            "create /opt/srv",
            "bind /opt/srv",
            // /srv/dir/conf is absent on the host: made on an overlay of
            // /opt/srv (the host's /srv), never in /srv itself.
            "overlay /opt/srv/dir /s/.mnt/1/upper",
            "create /opt/srv/dir/conf",
            "bind /opt/srv/dir/conf",
            "overlay /opt/srv /s/.mnt/2/upper",
            "create /opt/srv/new",
            "create /opt/srv/new/conf",
            "bind /opt/srv/new/conf",
        ]
    );
}
