//! The kernel drivers (`felix::dataplane`) against real namespaces: each
//! test makes a "host" namespace (two for VXLAN) with workload namespaces
//! behind `cali…` veths, as the CNI plugin leaves them, and runs the drivers
//! inside the host namespace. Needs root, `ip`, `ping`, `nft` and
//! `conntrack`.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use felix::dataplane::{
    ConntrackDriver, LinksDriver, Namespace, RoutesDriver, VxlanDriver, links, open_all,
};
use felix::state::{
    Desired, Driver, Route, RouteTarget, VXLAN_DEVICE, VxlanDesired, VxlanRemote, WorkloadIface,
};
use ipnet::IpNet;
use testkit::{Netns, poll_until, require_programs, require_root, veth_pair};

fn required() -> bool {
    require_root() && require_programs(&["ip", "bridge", "ping", "nft", "conntrack"])
}

fn namespace(ns: &Netns) -> Namespace {
    Namespace::at(ns.path())
}

/// A workload namespace behind `host` as the CNI plugin makes it: host side
/// `ifname` with Calico's MAC, `eth0` with `addr`/32 and a default route
/// via 169.254.1.1 onlink, that gateway a permanent neighbour.
fn workload(host: &Netns, ifname: &str, addr: &str) -> Netns {
    let w = Netns::new("dpwl").unwrap();
    veth_pair(host, ifname, &w, "eth0").unwrap();
    host.ip(["link", "set", ifname, "address", "ee:ee:ee:ee:ee:ee"])
        .unwrap();
    w.add_addr("eth0", &format!("{addr}/32")).unwrap();
    w.ip([
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
        "onlink",
    ])
    .unwrap();
    w.ip([
        "neigh",
        "add",
        "169.254.1.1",
        "lladdr",
        "ee:ee:ee:ee:ee:ee",
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])
    .unwrap();
    w
}

fn iface(name: &str, addrs: &[&str]) -> WorkloadIface {
    WorkloadIface {
        name: name.to_owned(),
        endpoint: format!("default/{name}"),
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        shaping: Default::default(),
    }
}

fn route(dst: &str, target: RouteTarget) -> Route {
    Route {
        dst: dst.parse().unwrap(),
        target,
    }
}

fn dev(name: &str) -> RouteTarget {
    RouteTarget::Interface(name.to_owned())
}

/// The workloads in `ifaces` with a route to each address.
fn with_workloads(ifaces: &[WorkloadIface]) -> Desired {
    let mut d = Desired::default();
    for w in ifaces {
        for a in &w.addrs {
            d.routes.insert(Route {
                dst: IpNet::from(a.addr()),
                target: dev(&w.name),
            });
        }
        d.workloads.insert(w.name.clone(), w.clone());
    }
    d
}

/// `ip [-6] route show proto P` in `ns`, one route a line.
fn routes_of(ns: &Netns, protocol: &str) -> Vec<String> {
    let mut out = Vec::new();
    for family in ["-4", "-6"] {
        let text = ns.ip([family, "route", "show", "proto", protocol]).unwrap();
        out.extend(text.lines().map(|l| l.trim().to_owned()));
    }
    out
}

fn has(lines: &[String], wanted: &str) -> bool {
    lines.iter().any(|l| l.starts_with(wanted))
}

fn ping(from: &Netns, to: &str) -> bool {
    from.exec("ping", ["-c", "1", "-W", "1", to]).is_ok()
}

async fn apply_all(drivers: &mut [Box<dyn Driver>], desired: &Desired) {
    for d in drivers {
        if let Err(e) = d.apply(desired).await {
            panic!("{} driver: {e}", d.name());
        }
    }
}

#[tokio::test]
async fn routes_of_our_protocol_follow_desired_as_diffs_and_others_survive() {
    if !required() {
        return;
    }
    let host = Netns::new("dprt").unwrap();
    let _w1 = workload(&host, "cali00000000001", "10.65.0.5");
    veth_pair(&host, "uplink", &host, "uplinkpeer").unwrap();
    // bgpd's route, one of ours left over from before, and bgpd's route to
    // a destination we are about to want.
    host.ip([
        "route",
        "add",
        "10.77.0.0/24",
        "dev",
        "uplink",
        "proto",
        "200",
    ])
    .unwrap();
    host.ip(["route", "add", "blackhole", "10.66.0.0/24", "proto", "80"])
        .unwrap();
    host.ip(["route", "add", "blackhole", "10.88.0.0/26", "proto", "200"])
        .unwrap();

    let mut desired = with_workloads(&[iface(
        "cali00000000001",
        &["10.65.0.5/32", "fd00:65::5/128"],
    )]);
    let pending = route("10.65.0.6/32", dev("cali00000000002"));
    desired.routes.extend([
        route("10.65.3.0/26", RouteTarget::Blackhole),
        route("fd00:65:3::/122", RouteTarget::Blackhole),
        route(
            "10.65.4.0/26",
            RouteTarget::Via {
                gateway: "10.99.0.2".parse().unwrap(),
                dev: "uplink".into(),
            },
        ),
        route("10.88.0.0/26", RouteTarget::Blackhole),
        pending.clone(),
    ]);
    let mut driver = RoutesDriver::open(namespace(&host)).await.unwrap();
    let report = driver.reconcile(&desired).await.unwrap();
    assert_eq!((report.added, report.deleted), (5, 1), "{report:?}");
    assert_eq!(report.pending, vec![pending.clone()]);
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(
        report.failed[0].to_string().contains("protocol 200"),
        "{report:?}"
    );

    let ours = routes_of(&host, "80");
    for wanted in [
        "10.65.0.5 dev cali00000000001 scope link",
        "blackhole 10.65.3.0/26",
        "10.65.4.0/26 via 10.99.0.2 dev uplink onlink",
        "fd00:65::5 dev cali00000000001",
        "blackhole fd00:65:3::/122",
    ] {
        assert!(has(&ours, wanted), "{wanted} missing from {ours:?}");
    }
    assert_eq!(ours.len(), 5, "{ours:?}");
    let bgpd = routes_of(&host, "200");
    assert!(has(&bgpd, "10.77.0.0/24 dev uplink"), "{bgpd:?}");
    assert!(has(&bgpd, "blackhole 10.88.0.0/26"), "{bgpd:?}");

    // The same desired state again changes nothing.
    let again = driver.reconcile(&desired).await.unwrap();
    assert_eq!(again.changes(), 0, "{again:?}");
    assert_eq!(routes_of(&host, "80"), ours);

    // Nor does a new driver finding them there (felix restarted).
    let mut restarted = RoutesDriver::open(namespace(&host)).await.unwrap();
    let again = restarted.reconcile(&desired).await.unwrap();
    assert_eq!(again.changes(), 0, "{again:?}");

    // The pending route's interface appears: the next apply programs it.
    let _w2 = workload(&host, "cali00000000002", "10.65.0.6");
    let report = driver.reconcile(&desired).await.unwrap();
    assert_eq!((report.added, report.changes()), (1, 1), "{report:?}");
    assert!(driver.pending().is_empty());
    assert!(has(
        &routes_of(&host, "80"),
        "10.65.0.6 dev cali00000000002 scope link"
    ));

    // A changed gateway is replaced in place; a dropped route deleted.
    desired
        .routes
        .retain(|r| r.dst.to_string() != "10.65.4.0/26" && r.dst.to_string() != "fd00:65:3::/122");
    desired.routes.insert(route(
        "10.65.4.0/26",
        RouteTarget::Via {
            gateway: "10.99.0.3".parse().unwrap(),
            dev: "uplink".into(),
        },
    ));
    let report = driver.reconcile(&desired).await.unwrap();
    assert_eq!(
        (report.replaced, report.deleted, report.added),
        (1, 1, 0),
        "{report:?}"
    );
    let ours = routes_of(&host, "80");
    assert!(
        has(&ours, "10.65.4.0/26 via 10.99.0.3 dev uplink onlink"),
        "{ours:?}"
    );
    assert!(!ours.iter().any(|l| l.contains("fd00:65:3::")), "{ours:?}");

    // The workload's veth is made again under the same name (a new index,
    // its routes gone with the old link): the route comes back through
    // the new link, though the driver knew the old one.
    host.ip(["link", "del", "cali00000000002"]).unwrap();
    let _w2 = workload(&host, "cali00000000002", "10.65.0.6");
    let report = driver.reconcile(&desired).await.unwrap();
    // Only bgpd's destination, as on every apply.
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].to_string().contains("protocol 200"));
    assert_eq!((report.added, report.changes()), (1, 1), "{report:?}");
    assert!(has(
        &routes_of(&host, "80"),
        "10.65.0.6 dev cali00000000002 scope link"
    ));

    // Nothing desired: all of ours go, bgpd's stay.
    driver.reconcile(&Desired::default()).await.unwrap();
    assert!(routes_of(&host, "80").is_empty());
    assert_eq!(routes_of(&host, "200"), bgpd);
}

fn sysctl(ns: &Netns, key: &str) -> String {
    let out = ns
        .exec("cat", [format!("/proc/sys/{}", key.replace('.', "/"))])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn workload_interfaces_come_up_with_calicos_sysctls_and_missing_ones_are_pending() {
    if !required() {
        return;
    }
    let host = Netns::new("dplk").unwrap();
    let name = "cali00000000011";
    let _w = workload(&host, name, "10.65.0.5");
    host.ip(["link", "set", name, "down"]).unwrap();
    let w = iface(name, &["10.65.0.5/32", "fd00:65::5/128"]);
    let desired = with_workloads(&[w.clone(), iface("cali00000000012", &["10.65.0.6/32"])]);

    let mut driver = LinksDriver::open(namespace(&host)).await.unwrap();
    let report = driver.reconcile(&desired).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.set_up, vec![name.to_owned()]);
    assert_eq!(driver.pending(), ["cali00000000012".to_owned()]);
    assert!(host.ip(["link", "show", name]).unwrap().contains(",UP"));
    for (key, value) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv4.conf.cali00000000011.proxy_arp", "1"),
        ("net.ipv4.neigh.cali00000000011.proxy_delay", "0"),
        ("net.ipv4.conf.cali00000000011.forwarding", "1"),
        ("net.ipv4.conf.cali00000000011.rp_filter", "1"),
        ("net.ipv4.conf.cali00000000011.route_localnet", "1"),
        ("net.ipv6.conf.cali00000000011.proxy_ndp", "1"),
        ("net.ipv6.conf.cali00000000011.accept_ra", "0"),
        ("net.ipv6.conf.cali00000000011.forwarding", "1"),
    ] {
        assert_eq!(sysctl(&host, key), value, "{key}");
    }
    let every = links::interface_sysctls(&w).len() + links::global_sysctls(&desired).len();
    assert!(
        report.sysctls_written > 0 && report.sysctls_written <= every,
        "{report:?}"
    );

    let again = driver.reconcile(&desired).await.unwrap();
    assert_eq!(
        (again.sysctls_written, again.set_up.len()),
        (0, 0),
        "{again:?}"
    );

    // The pending interface appears: the next apply sets it up and leaves
    // the one it verified alone (a setting changed behind its back stays)
    // until the next check of every interface.
    let proxy_arp = "net.ipv4.conf.cali00000000011.proxy_arp";
    let path = format!("/proc/sys/{}", proxy_arp.replace('.', "/"));
    host.exec("sh", ["-c".to_owned(), format!("echo 0 > {path}")])
        .unwrap();
    let _w2 = workload(&host, "cali00000000012", "10.65.0.6");
    let third = driver.reconcile(&desired).await.unwrap();
    assert!(third.failed.is_empty(), "{third:?}");
    assert!(driver.pending().is_empty(), "{third:?}");
    assert_eq!(
        sysctl(&host, "net.ipv4.conf.cali00000000012.proxy_arp"),
        "1"
    );
    assert_eq!(sysctl(&host, proxy_arp), "0");
    tokio::time::pause();
    tokio::time::advance(felix::dataplane::CHECK_ALL_EVERY).await;
    let checked = driver.reconcile(&desired).await.unwrap();
    assert_eq!(checked.sysctls_written, 1, "{checked:?}");
    assert_eq!(sysctl(&host, proxy_arp), "1");
}

fn conntrack_list(ns: &Netns) -> String {
    let out = ns.cmd("conntrack").arg("-L").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_flows_of_a_removed_workload_are_deleted_and_the_others_kept() {
    if !required() {
        return;
    }
    let host = Netns::new("dpct").unwrap();
    host.add_addr("lo", "10.99.9.1/32").unwrap();
    // Any rule using conntrack makes the namespace track flows.
    host.exec("nft", ["add table inet dpct"]).unwrap();
    host.exec(
        "nft",
        ["add chain inet dpct pre { type filter hook prerouting priority 0; ct state new counter; }"],
    )
    .unwrap();
    let w1 = workload(&host, "cali00000000021", "10.65.0.5");
    let w2 = workload(&host, "cali00000000022", "10.65.0.6");
    let both = with_workloads(&[
        iface("cali00000000021", &["10.65.0.5/32"]),
        iface("cali00000000022", &["10.65.0.6/32"]),
    ]);
    let mut drivers = open_all(&namespace(&host)).await.unwrap();
    apply_all(&mut drivers, &both).await;
    for w in [&w1, &w2] {
        assert!(
            poll_until(
                Duration::from_secs(10),
                Duration::from_millis(200),
                || ping(w, "10.99.9.1")
            ),
            "a workload cannot reach the host"
        );
    }
    // And a TCP connection from each to a listener on the host.
    let listener = host
        .run(|| TcpListener::bind("10.99.9.1:0"))
        .unwrap()
        .unwrap();
    let server = listener.local_addr().unwrap();
    let _connections: Vec<(TcpStream, TcpStream)> = [&w1, &w2]
        .into_iter()
        .map(|w| {
            let client = w.run(|| TcpStream::connect(server)).unwrap().unwrap();
            (client, listener.accept().unwrap().0)
        })
        .collect();
    let flows = conntrack_list(&host);
    assert!(flows.contains("tcp"), "{flows}");
    assert!(
        flows.contains("src=10.65.0.5") && flows.contains("src=10.65.0.6"),
        "{flows}"
    );

    let mut conntrack = ConntrackDriver::new(namespace(&host));
    conntrack.reconcile(&both).await.unwrap();
    let only_w2 = with_workloads(&[iface("cali00000000022", &["10.65.0.6/32"])]);
    let report = conntrack.reconcile(&only_w2).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        report.flushed,
        vec!["10.65.0.5".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(report.entries >= 1, "{report:?}");
    let flows = conntrack_list(&host);
    assert!(!flows.contains("10.65.0.5"), "{flows}");
    assert!(flows.contains("src=10.65.0.6"), "{flows}");
    assert!(
        flows
            .lines()
            .any(|l| l.starts_with("tcp") && l.contains("src=10.65.0.6")),
        "{flows}"
    );
    // Nothing more was removed: nothing more to do.
    let again = conntrack.reconcile(&only_w2).await.unwrap();
    assert!(again.flushed.is_empty());
}

/// One VXLAN "host": its namespace, its workload and its drivers.
struct VxlanHost {
    ns: Netns,
    workload: Netns,
    drivers: Vec<Box<dyn Driver>>,
    desired: Desired,
}

fn vxlan_desired(n: u8, remotes: Vec<VxlanRemote>) -> VxlanDesired {
    VxlanDesired {
        vni: 4096,
        port: 4789,
        mtu: 1450,
        vtep: format!("10.65.{n}.0").parse().unwrap(),
        mac: [0x66, 0xaa, 0, 0, 0, n],
        underlay: format!("10.99.0.{n}").parse().unwrap(),
        remotes,
    }
}

fn remote(n: u8) -> VxlanRemote {
    let d = vxlan_desired(n, Vec::new());
    VxlanRemote {
        node: format!("host{n}"),
        vtep: d.vtep,
        mac: d.mac,
        underlay: d.underlay,
    }
}

/// Host `n` (1 or 2) with workload 10.65.n.5 and the other host as remote.
async fn vxlan_host(n: u8, underlay: Netns) -> VxlanHost {
    let other = 3 - n;
    let name = format!("cali0000000003{n}");
    let workload = workload(&underlay, &name, &format!("10.65.{n}.5"));
    let mut desired = with_workloads(&[iface(&name, &[&format!("10.65.{n}.5/32")])]);
    desired.routes.insert(route(
        &format!("10.65.{other}.0/26"),
        RouteTarget::Via {
            gateway: format!("10.65.{other}.0").parse().unwrap(),
            dev: VXLAN_DEVICE.to_owned(),
        },
    ));
    desired.vxlan = Some(vxlan_desired(n, vec![remote(other)]));
    let drivers = open_all(&namespace(&underlay)).await.unwrap();
    VxlanHost {
        ns: underlay,
        workload,
        drivers,
        desired,
    }
}

#[tokio::test]
async fn workloads_on_two_hosts_reach_each_other_through_vxlan_calico() {
    if !required() {
        return;
    }
    let (ns1, ns2) = (Netns::new("dpvx").unwrap(), Netns::new("dpvx").unwrap());
    veth_pair(&ns1, "underlay", &ns2, "underlay").unwrap();
    ns1.add_addr("underlay", "10.99.0.1/24").unwrap();
    ns2.add_addr("underlay", "10.99.0.2/24").unwrap();
    let mut one = vxlan_host(1, ns1).await;
    let mut two = vxlan_host(2, ns2).await;
    apply_all(&mut one.drivers, &one.desired).await;
    apply_all(&mut two.drivers, &two.desired).await;
    assert!(
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || ping(&one.workload, "10.65.2.5")
        ),
        "workload 1 cannot reach workload 2 through the tunnel"
    );
    let h1 = &one.ns;
    let link = h1.ip(["-d", "link", "show", VXLAN_DEVICE]).unwrap();
    for wanted in [
        "mtu 1450",
        "66:aa:00:00:00:01",
        "vxlan id 4096",
        "local 10.99.0.1",
        "dstport 4789",
        "nolearning",
    ] {
        assert!(link.contains(wanted), "{wanted} missing from {link}");
    }
    assert!(
        h1.ip(["addr", "show", VXLAN_DEVICE])
            .unwrap()
            .contains("inet 10.65.1.0/32")
    );
    let neigh = h1.ip(["neigh", "show", "dev", VXLAN_DEVICE]).unwrap();
    assert!(
        neigh.contains("10.65.2.0 lladdr 66:aa:00:00:00:02 PERMANENT"),
        "{neigh}"
    );
    let fdb = || {
        let out = h1
            .cmd("bridge")
            .args(["fdb", "show", "dev", VXLAN_DEVICE])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        fdb().contains("66:aa:00:00:00:02 dst 10.99.0.2"),
        "{}",
        fdb()
    );

    // Again: nothing to do.
    let mut vxlan = VxlanDriver::open(namespace(h1)).await.unwrap();
    let again = vxlan.reconcile(&one.desired).await.unwrap();
    assert_eq!(again.changes(), 0, "{again:?}");

    // A new MTU is set in place (same device); a new VNI needs a new one.
    let index = |ns: &Netns| {
        ns.ip(["-o", "link", "show", VXLAN_DEVICE])
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let before = index(h1);
    let mut changed = one.desired.clone();
    changed.vxlan.as_mut().unwrap().mtu = 1400;
    let report = vxlan.reconcile(&changed).await.unwrap();
    assert!(
        report.link.as_deref().unwrap_or("").starts_with("updated"),
        "{report:?}"
    );
    assert_eq!(index(h1), before);
    assert!(
        h1.ip(["link", "show", VXLAN_DEVICE])
            .unwrap()
            .contains("mtu 1400")
    );
    changed.vxlan.as_mut().unwrap().vni = 4097;
    let report = vxlan.reconcile(&changed).await.unwrap();
    assert!(
        report
            .link
            .as_deref()
            .unwrap_or("")
            .starts_with("recreated"),
        "{report:?}"
    );
    assert_ne!(index(h1), before);
    assert!(
        h1.ip(["-d", "link", "show", VXLAN_DEVICE])
            .unwrap()
            .contains("vxlan id 4097")
    );

    // Back as it was, the tunnel works again (routes through the new
    // device come back with the routes driver).
    apply_all(&mut one.drivers, &one.desired).await;
    assert!(
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(200),
            || ping(&one.workload, "10.65.2.5")
        ),
        "the tunnel does not come back after the device was recreated"
    );

    // The remote goes: its ARP and FDB entries go with it.
    let mut alone = one.desired.clone();
    alone.vxlan.as_mut().unwrap().remotes.clear();
    let report = vxlan.reconcile(&alone).await.unwrap();
    assert_eq!(report.entries, 2, "{report:?}");
    assert!(
        !h1.ip(["neigh", "show", "dev", VXLAN_DEVICE])
            .unwrap()
            .contains("10.65.2.0")
    );
    assert!(!fdb().contains("66:aa:00:00:00:02"), "{}", fdb());

    // No VXLAN at all: no device.
    alone.vxlan = None;
    assert_eq!(
        vxlan.reconcile(&alone).await.unwrap().link.as_deref(),
        Some("deleted")
    );
    assert!(h1.ip(["link", "show", VXLAN_DEVICE]).is_err());
}

/// Receiver throughput of one iperf3 run from `client` to `server_addr`
/// (served once by `server`); `reverse`: the server sends.
fn iperf3_mbits(client: &Netns, server: &Netns, server_addr: &str, reverse: bool) -> f64 {
    let mut s = server
        .cmd("iperf3")
        .args(["-s", "-1", "-B", server_addr, "-p", "5301"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut args = vec!["-c", server_addr, "-p", "5301", "-t", "3", "-O", "1", "-J"];
    if reverse {
        args.push("-R");
    }
    // The server takes a moment to listen: retry while it refuses.
    let mut v = serde_json::Value::Null;
    poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let o = client.exec("iperf3", &args).unwrap();
        v = serde_json::from_slice(&o.stdout).unwrap_or_default();
        !v["error"]
            .as_str()
            .is_some_and(|e| e.contains("Connection refused"))
    });
    let _ = s.kill();
    let _ = s.wait();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 says: {v}"))
        / 1e6
}

#[tokio::test]
async fn bandwidth_limits_shape_traffic_to_and_from_a_workload_and_go_away_after() {
    if !(required() && require_programs(&["iperf3", "tc"])) {
        return;
    }
    let host = Netns::new("dpqos").unwrap();
    let w = workload(&host, "cali0000000qos1", "10.65.9.5");
    host.ip(["link", "set", "lo", "up"]).unwrap();
    host.add_addr("lo", "10.98.0.1/32").unwrap();
    host.ip(["route", "add", "10.65.9.5/32", "dev", "cali0000000qos1"])
        .unwrap();
    let mbit = |n: u64| api::resources::qos::Bandwidth {
        rate: n * 1_000_000,
        // A small bucket, so a few seconds show the rate, not the burst.
        burst: 1_000_000,
        peakrate: 0,
        minburst: 0,
    };
    let mut shaped = iface("cali0000000qos1", &["10.65.9.5/32"]);
    shaped.shaping = felix::state::Shaping {
        ingress: Some(mbit(100)),
        egress: Some(mbit(50)),
    };
    let mut driver = felix::dataplane::QosDriver::open(namespace(&host))
        .await
        .unwrap();
    let failed = driver
        .reconcile(&with_workloads(&[shaped.clone()]))
        .await
        .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
    let qdiscs = host.exec("tc", ["qdisc", "show"]).unwrap();
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout).into_owned();
    assert!(
        qdiscs.contains("qdisc tbf 1: dev cali0000000qos1 root"),
        "{qdiscs}"
    );
    assert!(
        qdiscs.contains("qdisc tbf 1: dev bwc0000000qos1 root"),
        "{qdiscs}"
    );
    assert!(
        qdiscs.contains("qdisc ingress ffff: dev cali0000000qos1"),
        "{qdiscs}"
    );
    // Applying the same again changes nothing (and fails nothing).
    assert!(
        driver
            .reconcile(&with_workloads(&[shaped.clone()]))
            .await
            .unwrap()
            .is_empty()
    );

    let to_workload = iperf3_mbits(&host, &w, "10.65.9.5", false);
    let from_workload = iperf3_mbits(&host, &w, "10.65.9.5", true);
    eprintln!("shaped: to the workload {to_workload:.1} Mbit/s, from it {from_workload:.1} Mbit/s");
    assert!(
        (90.0..=110.0).contains(&to_workload),
        "to the workload: {to_workload} Mbit/s"
    );
    assert!(
        (45.0..=55.0).contains(&from_workload),
        "from the workload: {from_workload} Mbit/s"
    );

    // No limits: the qdiscs and the ifb go; traffic runs free.
    driver
        .reconcile(&with_workloads(&[iface(
            "cali0000000qos1",
            &["10.65.9.5/32"],
        )]))
        .await
        .unwrap();
    let qdiscs = host.exec("tc", ["qdisc", "show"]).unwrap();
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout).into_owned();
    assert!(
        !qdiscs.contains("tbf") && !qdiscs.contains("ingress"),
        "{qdiscs}"
    );
    let links = host.exec("ip", ["link", "show"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("bwc"),
        "the ifb is left"
    );
    let free = iperf3_mbits(&host, &w, "10.65.9.5", false);
    assert!(free > 200.0, "unshaped: {free} Mbit/s");
}

/// The neighbour tables read from a fresh namespace are the machine's:
/// the same hard maximum as the host's sysctl, both families.
#[test]
fn the_neighbour_tables_read_from_any_namespace_are_the_machines() {
    if !require_root() {
        return;
    }
    let sysctl = |family: &str| -> u32 {
        std::fs::read_to_string(format!("/proc/sys/net/{family}/neigh/default/gc_thresh3"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let ns = Netns::new("neightbl").unwrap();
    let tables = ns
        .block_on(|| async {
            let (conn, mut handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            felix::neigh_table::read(&mut handle).await.unwrap()
        })
        .unwrap();
    let v4 = tables.iter().find(|t| !t.ipv6).expect("the ARP table");
    assert_eq!(v4.gc_thresh3, sysctl("ipv4"));
    if let Some(v6) = tables.iter().find(|t| t.ipv6) {
        assert_eq!(v6.gc_thresh3, sysctl("ipv6"));
    }
    // Nothing is wrong with them now, unless the machine's table is near full.
    let words = felix::neigh_table::problem(&tables, &tables);
    assert!(words.is_none() || words.unwrap().contains("nearly full"));
}
