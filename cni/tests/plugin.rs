//! The plugins called as a runtime calls them, chained after the reference
//! `loopback` and before the reference `portmap` as Calico's conflist chains
//! them, on real namespaces and a real (temporary) SQLite datastore. Needs
//! root and Debian's containernetworking-plugins.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use api::meta::ObjectMeta;
use api::resources::policy::{Action, Profile, ProfileSpec, Rule};
use api::{Kind, Resource};
use common::{Container, Host, HostVeth, NODE, Runtime, block_on, ip_json};
use serde_json::{Value, json};
use testkit::{require_programs, require_root};

const POOL: (&str, u8) = ("10.77.0.0/24", 28);

fn ready() -> bool {
    require_root()
        && require_programs(&[
            "ip",
            "iptables",
            "/usr/lib/cni/loopback",
            "/usr/lib/cni/portmap",
        ])
}

fn no_ports() -> Value {
    json!({})
}

/// Calico's chain, in spec `version`.
fn conflist_in(host: &Host, version: &str) -> Value {
    let mut list = host.conflist();
    list["cniVersion"] = json!(version);
    list
}

/// The container side holds `ip` as a /32 on eth0 (MTU 1450), the gateway
/// routes via 169.254.1.1 and its permanent neighbour entry.
#[track_caller]
fn assert_ipv4_plumbing(c: &Container, ip: &str) {
    let addrs = ip_json(c.ns(), &["addr", "show", "dev", "eth0"]);
    let info = &addrs[0]["addr_info"];
    assert!(
        info.as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == ip && a["prefixlen"] == 32),
        "{addrs}"
    );
    assert_eq!(addrs[0]["mtu"], 1450);
    let routes = ip_json(c.ns(), &["route", "show", "dev", "eth0"]);
    let default = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == "default")
        .expect("default route");
    assert_eq!(default["gateway"], "169.254.1.1");
    assert!(
        default["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "onlink"),
        "{routes}"
    );
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "169.254.1.1" && r["scope"] == "link"),
        "{routes}"
    );
    let neigh = ip_json(c.ns(), &["neigh", "show", "dev", "eth0"]);
    assert!(
        neigh
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["dst"] == "169.254.1.1"
                && n["lladdr"] == "ee:ee:ee:ee:ee:ee"
                && n["state"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s == "PERMANENT")),
        "{neigh}"
    );
}

/// The `ips` of `result` on interface `index` (our eth0 after loopback's lo
/// and our host veth is 2).
fn ips_on(result: &Value, index: u64) -> Vec<&Value> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["interface"] == index)
        .collect()
}

/// In 0.x results every IP names its family; in 1.x none does.
#[track_caller]
fn assert_ip_versions(result: &Value, spec: &str) {
    for ip in result["ips"].as_array().unwrap() {
        let address = ip["address"].as_str().unwrap();
        let family = if address.contains(':') { "6" } else { "4" };
        if spec.starts_with("0.") {
            assert_eq!(ip["version"], family, "{result}");
        } else {
            assert!(ip.get("version").is_none(), "{result}");
        }
    }
}

#[test]
fn add_through_the_chain_plumbs_the_container_and_writes_the_endpoint() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    // kube-controllers' profile for "prod" exists already: it must stay as is.
    let existing = Profile::new(
        ObjectMeta::named("kns.prod"),
        ProfileSpec {
            ingress: vec![Rule::new(Action::Deny)],
            ..ProfileSpec::default()
        },
    );
    common::block_on(async { host.resources().await.create(existing.into()).await }).unwrap();
    let c = Container::new("4f2a9c01d3e5b7a8", Some(("prod", "web-1")));
    let mut list = host.conflist();
    list["plugins"][1]["args"] = json!({"cni": {"labels": [{"key": "app", "value": "web"}]}});
    let result = host
        .add_chain(&list, &c, &no_ports())
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));

    // The result: loopback's interface, then ours; the IP names eth0 by index.
    let veth = c.host_veth();
    assert_eq!(veth, cni::workload::veth_name_for_pod("prod", "web-1"));
    let interfaces = result["interfaces"].as_array().unwrap();
    let names: Vec<&str> = interfaces
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lo", veth.as_str(), "eth0"], "{result}");
    assert_eq!(interfaces[2]["sandbox"], c.netns());
    let ip_entry = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == 2)
        .expect("an IP on eth0");
    let address = ip_entry["address"].as_str().unwrap().to_string();
    assert!(
        address.starts_with("10.77.0.") && address.ends_with("/32"),
        "{address}"
    );
    let ip = address.trim_end_matches("/32").to_string();
    assert_eq!(result["routes"], json!([{"dst": "0.0.0.0/0"}]));
    assert_eq!(result["cniVersion"], "1.0.0");

    assert_ipv4_plumbing(&c, &ip);
    // The host side: the fixed MAC, up.
    let link = ip_json(&host.ns, &["link", "show", "dev", &veth]);
    assert_eq!(link[0]["address"], "ee:ee:ee:ee:ee:ee");
    assert!(
        link[0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "UP"),
        "{link}"
    );

    // The endpoint, the profiles and the IPAM handle.
    let weps = host.endpoints();
    assert_eq!(weps.len(), 1);
    let wep = &weps[0];
    assert_eq!(wep.metadata.name, "cni--test--node-k8s-web--1-eth0");
    assert_eq!(wep.metadata.namespace.as_deref(), Some("prod"));
    assert_eq!(wep.metadata.labels["app"], "web");
    assert_eq!(wep.metadata.labels["projectcalico.org/orchestrator"], "k8s");
    assert_eq!(wep.spec.node, NODE);
    assert_eq!(wep.spec.interface_name, veth);
    assert_eq!(wep.spec.container_id, c.id);
    assert_eq!(wep.spec.ip_networks[0].0.to_string(), address);
    assert_eq!(wep.spec.profiles, ["kns.prod"]);
    assert_eq!(wep.spec.mac.as_deref(), interfaces[2]["mac"].as_str());
    let profile = common::block_on(async {
        host.resources()
            .await
            .get(Kind::Profile, None, "kns.prod")
            .await
    })
    .unwrap();
    let Resource::Profile(profile) = profile else {
        panic!("not a profile")
    };
    assert_eq!(
        profile.spec.ingress[0].action,
        Action::Deny,
        "an existing profile is never overwritten"
    );
    assert_eq!(
        host.handle_ips(&c),
        [ip.parse::<std::net::IpAddr>().unwrap()]
    );

    // CHECK passes, then fails once the neighbour is gone, naming it.
    host.chain("CHECK", &list, &c, &result, &no_ports())
        .unwrap_or_else(|o| panic!("CHECK failed: {o:?}"));
    c.ns()
        .ip(["neigh", "del", "169.254.1.1", "dev", "eth0"])
        .unwrap();
    let failed = host
        .chain("CHECK", &list, &c, &result, &no_ports())
        .unwrap_err();
    assert_eq!(failed.code(), 104);
    assert!(
        failed.msg().contains("neighbour 169.254.1.1"),
        "{}",
        failed.msg()
    );

    // DEL removes it all; a second DEL succeeds.
    host.chain("DEL", &list, &c, &result, &no_ports())
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&c);
    assert!(
        ip_json(c.ns(), &["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "eth0")
    );
    host.chain("DEL", &list, &c, &result, &no_ports())
        .unwrap_or_else(|o| panic!("second DEL failed: {o:?}"));
}

#[test]
fn host_port_mapped_by_portmap_reaches_a_server_in_the_workload() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let c = Container::new("b0c1d2e3f4a5", None);
    let ports =
        json!({"portMappings": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]});
    let list = host.conflist();
    let result = host
        .add_chain(&list, &c, &ports)
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    let ip = result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == 2)
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    // Felix does this in the agent: the /32 route to the workload's veth.
    host.ns
        .ip(["route", "add", &format!("{ip}/32"), "dev", &c.host_veth()])
        .unwrap();
    // The host's own address, in the test's host namespace.
    host.ns.add_addr("lo", "10.78.0.1/32").unwrap();

    let listener = c
        .ns()
        .run(|| TcpListener::bind("0.0.0.0:8080"))
        .unwrap()
        .expect("listen in the workload");
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    s.write_all(b"hello from the workload").unwrap();
                    return Some(peer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        None
    });
    let target: SocketAddr = "10.78.0.1:18080".parse().unwrap();
    let reply = host
        .ns
        .run(|| {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(10))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok::<_, std::io::Error>(text)
        })
        .unwrap()
        .expect("connect to the host port");
    assert_eq!(reply, "hello from the workload");
    let peer = server
        .join()
        .unwrap()
        .expect("the workload accepted a connection");
    assert_eq!(
        peer.ip().to_string(),
        "10.78.0.1",
        "DNAT kept the client address"
    );

    host.chain("DEL", &list, &c, &result, &ports)
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&c);
}

#[test]
fn bad_config_fails_with_code_7_naming_the_field_and_leaves_nothing() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let c = Container::new("c0ffee000001", None);
    for (field, value, named) in [
        ("assign_ipv9", json!(true), "ipam.assign_ipv9"),
        (
            "ipv4_pools",
            json!(["10.77.0.0/24", "fd00::/64"]),
            "ipam.ipv4_pools[1]",
        ),
    ] {
        let mut list = host.conflist();
        list["plugins"][1]["ipam"][field] = value;
        let failed = host
            .add_chain(&list, &c, &no_ports())
            .expect_err("bad config refused");
        assert_eq!(failed.code(), 7, "{:?}", failed.stdout);
        assert!(failed.msg().starts_with(named), "{}", failed.msg());
        assert_eq!(failed.stdout["cniVersion"], "1.0.0");
        host.assert_nothing_left(&c);
    }
    let mut list = host.conflist();
    list["plugins"][1]["etcd_endpoint"] = json!("http://127.0.0.1:2379");
    let failed = host
        .add_chain(&list, &c, &no_ports())
        .expect_err("unknown field refused");
    assert_eq!(failed.code(), 7);
    assert!(failed.msg().contains("etcd_endpoint"), "{}", failed.msg());
    host.assert_nothing_left(&c);
}

#[test]
fn ipam_exhaustion_fails_the_add_and_leaves_nothing() {
    if !ready() {
        return;
    }
    // One address in all.
    let host = Host::new(&[("10.77.1.0/32", 32)]);
    let first = Container::new("e1e1e1e1e1e1", None);
    let second = Container::new("e2e2e2e2e2e2", None);
    let list = host.conflist();
    let result = host
        .add_chain(&list, &first, &no_ports())
        .unwrap_or_else(|o| panic!("first ADD failed: {o:?}"));
    let failed = host
        .add_chain(&list, &second, &no_ports())
        .expect_err("no address left");
    assert_eq!(failed.code(), 102, "{:?}", failed.stdout);
    assert!(
        failed.msg().contains("no free IPv4 address"),
        "{}",
        failed.msg()
    );
    host.assert_nothing_left(&second);
    assert!(
        ip_json(second.ns(), &["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "eth0")
    );
    // The first is untouched.
    assert_eq!(host.endpoints().len(), 1);
    assert_eq!(host.cali_links(), [first.host_veth()]);
    host.chain("DEL", &list, &first, &result, &no_ports())
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&first);
}

#[test]
fn failure_after_ipam_releases_the_addresses_again() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let c = Container::new("dead0000beef", None);
    // The container already has an eth0: the veth cannot be made.
    c.ns()
        .ip([
            "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
        ])
        .unwrap();
    let failed = host
        .add_chain(&host.conflist(), &c, &no_ports())
        .expect_err("veth clash");
    assert_eq!(failed.code(), 100, "{:?}", failed.stdout);
    assert!(failed.msg().contains("creating veth"), "{}", failed.msg());
    assert!(
        failed.stderr.contains("rolling back"),
        "the addresses were assigned first: {}",
        failed.stderr
    );
    host.assert_nothing_left(&c);
}

#[test]
fn stale_host_veth_of_an_earlier_sandbox_is_replaced() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let c = Container::new("5a1e5a1e5a1e", Some(("prod", "api-0")));
    // Left behind by a sandbox of the same pod whose DEL never came.
    host.ns
        .ip([
            "link",
            "add",
            &c.host_veth(),
            "type",
            "veth",
            "peer",
            "name",
            "old0",
        ])
        .unwrap();
    let list = host.conflist();
    let result = host
        .add_chain(&list, &c, &no_ports())
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    let link = ip_json(&host.ns, &["link", "show", "dev", &c.host_veth()]);
    assert_eq!(link[0]["address"], "ee:ee:ee:ee:ee:ee");
    assert!(
        ip_json(&host.ns, &["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "old0")
    );
    host.chain("DEL", &list, &c, &result, &no_ports())
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&c);
}

#[test]
fn late_del_of_an_old_sandbox_leaves_the_pods_new_endpoint_alone() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let new = Container::new("0e0e0e0e0e02", Some(("prod", "db-0")));
    let old = Container::new("0e0e0e0e0e01", Some(("prod", "db-0")));
    let list = host.conflist();
    let result = host
        .add_chain(&list, &new, &no_ports())
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    host.chain("DEL", &list, &old, &result, &no_ports())
        .unwrap_or_else(|o| panic!("late DEL failed: {o:?}"));
    assert_eq!(
        host.cali_links(),
        [new.host_veth()],
        "the new sandbox's veth stays"
    );
    assert_eq!(host.endpoints()[0].spec.container_id, new.id);
    assert_eq!(host.handle_ips(&new).len(), 1);
    host.chain("DEL", &list, &new, &result, &no_ports())
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&new);
}

#[test]
fn del_succeeds_when_the_namespace_is_already_gone() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let mut c = Container::new("aaaa1111bbbb", None);
    let list = host.conflist();
    let result = host
        .add_chain(&list, &c, &no_ports())
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    c.remove_netns();
    assert!(!std::path::Path::new(&c.netns()).exists());
    host.chain("DEL", &list, &c, &result, &no_ports())
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&c);
}

#[test]
fn dual_stack_add_gives_a_128_and_the_link_local_gateway_in_old_and_new_formats() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL, ("fd00:77::/120", 122)]);
    for (spec, id) in [("1.0.0", "d5a1d5a1d5a1"), ("0.3.1", "d5a10031d5a1")] {
        let c = Container::new(id, None);
        let mut list = conflist_in(&host, spec);
        list["plugins"][1]["ipam"]["assign_ipv6"] = json!("true");
        let result = host
            .add_chain(&list, &c, &no_ports())
            .unwrap_or_else(|o| panic!("{spec} ADD failed: {o:?}"));
        assert_eq!(result["cniVersion"], spec);
        assert_ip_versions(&result, spec);
        let ours = ips_on(&result, 2);
        assert_eq!(ours.len(), 2, "{result}");
        let v6 = ours
            .iter()
            .find(|i| i["address"].as_str().unwrap().contains(':'))
            .expect("an IPv6 address");
        if spec == "0.3.1" {
            assert_eq!(v6["version"], "6", "{result}");
        }
        let v6 = v6["address"].as_str().unwrap();
        assert!(v6.starts_with("fd00:77::") && v6.ends_with("/128"), "{v6}");
        assert_eq!(
            result["routes"],
            json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
        );
        let routes = ip_json(c.ns(), &["-6", "route", "show", "dev", "eth0"]);
        let default = routes
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dst"] == "default")
            .expect("IPv6 default route");
        assert_eq!(default["gateway"], "fe80::ecee:eeff:feee:eeee");
        let addrs = ip_json(c.ns(), &["-6", "addr", "show", "dev", "eth0"]);
        let local = v6.trim_end_matches("/128");
        assert!(
            addrs[0]["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["local"] == local && a["prefixlen"] == 128),
            "{addrs}"
        );
        assert_eq!(host.endpoints()[0].spec.ip_networks.len(), 2);
        if spec != "0.3.1" {
            host.chain("CHECK", &list, &c, &result, &no_ports())
                .unwrap_or_else(|o| panic!("CHECK failed: {o:?}"));
        }
        host.chain("DEL", &list, &c, &result, &no_ports())
            .unwrap_or_else(|o| panic!("{spec} DEL failed: {o:?}"));
        host.assert_nothing_left(&c);
    }
}

#[test]
fn calicos_0_3_1_conflist_runs_through_loopback_calico_and_portmap_and_del_cleans_up() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let c = Container::new("0031c0ffee31", Some(("prod", "legacy-0")));
    let list = conflist_in(&host, "0.3.1");
    let ports =
        json!({"portMappings": [{"hostPort": 18081, "containerPort": 8080, "protocol": "tcp"}]});
    let results = host
        .runtime()
        .add_chain_each(&list, &c, &ports)
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    let [_, calico, portmap] = &results[..] else {
        panic!("three results: {results:?}")
    };
    for result in &results {
        assert_eq!(result["cniVersion"], "0.3.1", "{result}");
    }
    // Debian's loopback leaves `version` out of its 0.3.1 IPs; we read
    // that and write it in.
    assert_ip_versions(calico, "0.3.1");
    assert_ip_versions(portmap, "0.3.1");

    // Ours: loopback's interface, then ours; eth0's IPv4 address as "4".
    let names: Vec<&str> = calico["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lo", c.host_veth().as_str(), "eth0"], "{calico}");
    assert!(
        calico["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("mtu").is_none()),
        "0.3.1 interfaces have no mtu: {calico}"
    );
    let [ours] = ips_on(calico, 2)[..] else {
        panic!("one IP on eth0: {calico}")
    };
    assert_eq!(ours["version"], "4");
    let address = ours["address"].as_str().unwrap();
    assert!(
        address.starts_with("10.77.0.") && address.ends_with("/32"),
        "{address}"
    );
    let ip = address.trim_end_matches("/32");
    assert_eq!(calico["routes"], json!([{"dst": "0.0.0.0/0"}]));
    assert_ipv4_plumbing(&c, ip);
    assert_eq!(
        host.endpoints()[0].spec.ip_networks[0].0.to_string(),
        address
    );
    assert_eq!(
        host.handle_ips(&c),
        [ip.parse::<std::net::IpAddr>().unwrap()]
    );

    // portmap read our result: it passes it on and forwards the port to it.
    assert_eq!(portmap["ips"], calico["ips"]);
    assert_eq!(portmap["interfaces"], calico["interfaces"]);
    let nat = || {
        let out = host.ns.exec("iptables", ["-t", "nat", "-S"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dnat = format!("--to-destination {ip}:8080");
    assert!(nat().contains(&dnat), "no DNAT to {ip}: {}", nat());

    // DEL (without prevResult, as libcni before 0.4.0) removes it all.
    host.chain("DEL", &list, &c, portmap, &ports)
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&c);
    assert!(!nat().contains(&dnat), "DNAT left: {}", nat());
    assert!(
        ip_json(c.ns(), &["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "eth0")
    );
}

#[test]
fn check_runs_under_0_4_0_and_is_refused_under_0_3_1_as_the_reference_plugins_refuse_it() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let c = Container::new("0040c4ec0040", Some(("prod", "checked-0")));
    let list = conflist_in(&host, "0.4.0");
    let result = host
        .add_chain(&list, &c, &no_ports())
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    assert_eq!(result["cniVersion"], "0.4.0");
    assert_ip_versions(&result, "0.4.0");
    host.chain("CHECK", &list, &c, &result, &no_ports())
        .unwrap_or_else(|o| panic!("CHECK failed: {o:?}"));

    // 0.3.1 has no CHECK: ours refuse it as loopback does, with code 1.
    let old = conflist_in(&host, "0.3.1");
    for (i, plugin) in [(0, "loopback"), (1, "calico"), (1, "calico-ipam")] {
        let stdin = Runtime::plugin_stdin(&old, &old["plugins"][i], Some(&result), &no_ports());
        let refused = host.invoke(plugin, "CHECK", &c, &stdin);
        assert_eq!(refused.code(), 1, "{plugin}: {:?}", refused.stdout);
        if plugin != "loopback" {
            assert_eq!(
                refused.msg(),
                "cniVersion: 0.3.1 does not allow CHECK (it exists from CNI 0.4.0 on)"
            );
            assert_eq!(refused.stdout["cniVersion"], "0.3.1");
        }
    }

    // Under 0.4.0 CHECK does look: a lost neighbour is found.
    c.ns()
        .ip(["neigh", "del", "169.254.1.1", "dev", "eth0"])
        .unwrap();
    let failed = host
        .chain("CHECK", &list, &c, &result, &no_ports())
        .unwrap_err();
    assert_eq!(failed.code(), 104, "{:?}", failed.stdout);
    assert_eq!(failed.stdout["cniVersion"], "0.4.0");
    host.chain("DEL", &list, &c, &result, &no_ports())
        .unwrap_or_else(|o| panic!("DEL failed: {o:?}"));
    host.assert_nothing_left(&c);
}

/// This host's Node (so only workload leaks count) and the leak
/// collector's settings.
fn collector_settings(host: &Host, grace: &str, period: &str) {
    block_on(async {
        let resources = host.resources().await;
        resources
            .apply(api::Node::new(ObjectMeta::named(NODE), Default::default()).into())
            .await
            .unwrap();
        let config: Resource = serde_json::from_value(json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "KubeControllersConfiguration",
            "metadata": {"name": "default"},
            "spec": {"controllers": {"node": {"leakGracePeriod": grace, "reconcilerPeriod": period}}},
        }))
        .unwrap();
        resources.apply(config).await.unwrap();
    });
}

/// The leak collector at its most eager (a grace of one second on a
/// clock that jumps two per round, scanning back to back) racing real
/// ADDs: each ADD either ends with its endpoint's addresses allocated to
/// it, or fails saying they were released meanwhile and leaves nothing;
/// no address is ever held by an endpoint and free in IPAM.
#[test]
fn the_leak_collector_racing_adds_never_takes_an_address_a_workload_holds() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    collector_settings(&host, "1s", "1s");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (stop, db) = (stop.clone(), host.db.clone());
        std::thread::spawn(move || {
            block_on(async {
                let kv = common::open(&db).await;
                let mut c = datastore::ipam::collector::Collector::new(kv, "collector");
                let (mut now, mut released) = (Duration::ZERO, 0);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    now += Duration::from_secs(2);
                    released += c.round(now).await.unwrap().released.len();
                }
                released
            })
        })
    };
    let list = host.conflist();
    let (mut added, mut refused) = (Vec::new(), 0);
    for i in 0..12 {
        let pod = format!("pod-{i}");
        let c = Container::new(&format!("race{i:08}"), Some(("shop", &pod)));
        match host.add_chain(&list, &c, &no_ports()) {
            Ok(_) => added.push(c),
            Err(o) => {
                assert!(o.msg().contains("released meanwhile"), "{o:?}");
                host.assert_nothing_left(&c);
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let released = collector.join().unwrap();
    eprintln!(
        "{} ADDs succeeded, {refused} refused; the collector released {released}",
        added.len()
    );
    let report = block_on(async {
        datastore::ipam::Ipam::new(host.kv().await)
            .check()
            .await
            .unwrap()
    });
    assert!(report.unallocated.is_empty(), "{:?}", report.unallocated);
    assert!(
        report.handle_problems.is_empty(),
        "{:?}",
        report.handle_problems
    );
    let endpoints = host.endpoints();
    assert_eq!(endpoints.len(), added.len());
    let mut seen = std::collections::BTreeSet::new();
    for w in &endpoints {
        for net in &w.spec.ip_networks {
            assert!(seen.insert(net.0.addr()), "{} given twice", net.0);
        }
    }
    for c in &added {
        let holds = host.handle_ips(c);
        assert_eq!(holds.len(), 1, "{}: {holds:?}", c.id);
    }
}

/// An ADD slower than every scan of an hour (on the collector's clock,
/// with the default 15-minute grace out of the way: an hour's) keeps the
/// address IPAM gave it first.
#[test]
fn a_workload_slow_to_appear_keeps_its_address_through_the_grace_period() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let c = Container::new("slow00000001", Some(("shop", "slow")));
    collector_settings(&host, "1h", "1m");
    // IPAM has answered; the rest of the ADD is slow.
    let mut ipam_conf = host.calico_conf();
    ipam_conf["name"] = json!("k8s-pod-network");
    ipam_conf["cniVersion"] = json!("1.0.0");
    let first = host.invoke("calico-ipam", "ADD", &c, &ipam_conf).ok();
    let address = first["ips"][0]["address"].as_str().unwrap().to_string();
    block_on(async {
        let mut collector =
            datastore::ipam::collector::Collector::new(host.kv().await, "collector");
        for minute in 0..60 {
            let round = collector
                .round(Duration::from_secs(60 * minute))
                .await
                .unwrap();
            assert!(round.released.is_empty(), "minute {minute}: {round:?}");
        }
    });
    host.add_chain(&host.conflist(), &c, &no_ports())
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    let endpoints = host.endpoints();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].spec.ip_networks[0].0.to_string(), address);
    assert_eq!(host.handle_ips(&c).len(), 1);
}

/// The pod's QoS annotations (containerd's `io.kubernetes.cri.pod-annotations`
/// capability) and kubelet's `bandwidth` capability reach the
/// WorkloadEndpoint's `qosControls`; a bad one fails the ADD with code 7
/// naming it, leaving nothing.
#[test]
fn pod_qos_annotations_become_the_endpoints_qos_controls() {
    if !ready() {
        return;
    }
    let host = Host::new(&[POOL]);
    let mut list = host.conflist();
    list["plugins"][1]["capabilities"] =
        json!({"bandwidth": true, "io.kubernetes.cri.pod-annotations": true});
    let c = Container::new("q0s000000001", Some(("shop", "limited")));
    let runtime = json!({
        "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 1_000_000},
        "io.kubernetes.cri.pod-annotations": {
            "qos.projectcalico.org/egressBandwidth": "50M",
            "qos.projectcalico.org/egressBurst": "1Mi",
        },
    });
    host.add_chain(&list, &c, &runtime)
        .unwrap_or_else(|o| panic!("ADD failed: {o:?}"));
    let endpoints = host.endpoints();
    let q = endpoints[0].spec.qos_controls.clone().expect("qosControls");
    assert_eq!(
        (q.ingress_bandwidth, q.ingress_burst),
        (10_000_000, 1_000_000)
    );
    assert_eq!((q.egress_bandwidth, q.egress_burst), (50_000_000, 1 << 20));

    let refused = Container::new("q0s000000002", Some(("shop", "counted")));
    let runtime = json!({
        "io.kubernetes.cri.pod-annotations": {"qos.projectcalico.org/dscp": "EX"},
    });
    let failed = host
        .add_chain(&list, &refused, &runtime)
        .expect_err("not a DSCP value");
    assert_eq!(failed.code(), 7, "{:?}", failed.stdout);
    assert!(failed.msg().contains("dscp"), "{}", failed.msg());
    host.assert_nothing_left(&refused);
}
