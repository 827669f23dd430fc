//! Kernel-level tests of the testkit itself: real namespaces, a real veth and
//! a real ping, all inside namespaces these tests create. Need root.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use testkit::{Background, Error, Netns, poll_until, remove_stale, require_root, veth_pair};

/// Names in `ip netns list` (which may append ` (id: N)`).
fn listed_namespaces() -> HashSet<String> {
    let out = testkit::run_checked(Command::new("ip").args(["netns", "list"])).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_gone(name: &str) {
    assert!(
        !Path::new("/run/netns").join(name).exists(),
        "{name} still in /run/netns"
    );
    assert!(!listed_namespaces().contains(name), "{name} still listed");
}

/// Interface names visible to the calling thread: /proc/thread-self/net
/// follows the thread's namespace (unlike /sys/class/net, which follows the
/// namespace sysfs was mounted in).
fn thread_interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn ping_crosses_a_veth_between_two_namespaces() {
    if !require_root() {
        return;
    }
    let a = Netns::new("tk").unwrap();
    let b = Netns::new("tk").unwrap();
    veth_pair(&a, "eth0", &b, "eth0").unwrap();
    a.add_addr("eth0", "10.200.0.1/30").unwrap();
    b.add_addr("eth0", "10.200.0.2/30").unwrap();

    let out = a
        .exec("ping", ["-c", "1", "-W", "2", "10.200.0.2"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 received"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // An address nobody has is unreachable: the ping above proved something.
    let err = a
        .exec("ping", ["-c", "1", "-W", "1", "10.200.0.3"])
        .unwrap_err();
    assert!(matches!(err, Error::Command { .. }), "{err:?}");
    assert!(
        err.to_string().contains("ping -c 1 -W 1 10.200.0.3"),
        "{err}"
    );

    let names = [a.name().to_owned(), b.name().to_owned()];
    assert!(listed_namespaces().is_superset(&names.iter().cloned().collect()));
    drop(a);
    drop(b);
    names.iter().for_each(|n| assert_gone(n));
}

#[test]
fn a_new_namespace_has_only_loopback_and_it_is_up() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tk").unwrap();
    let links = ns.ip(["-o", "link", "show"]).unwrap();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    ns.exec("ping", ["-c", "1", "-W", "2", "127.0.0.1"])
        .unwrap();
}

#[test]
fn a_namespace_is_removed_when_its_scope_panics() {
    if !require_root() {
        return;
    }
    let name = Mutex::new(String::new());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let ns = Netns::new("tk").unwrap();
        *name.lock().unwrap() = ns.name().to_owned();
        assert!(ns.path().exists());
        panic!("test failure inside the scope");
    }));
    assert!(result.is_err());
    let name = name.into_inner().unwrap();
    assert!(!name.is_empty());
    assert_gone(&name);
}

#[test]
fn a_closure_run_in_a_namespace_sees_only_its_interfaces() {
    if !require_root() {
        return;
    }
    let a = Netns::new("tk").unwrap();
    let b = Netns::new("tk").unwrap();
    let veth = testkit::ifname("tkv");
    veth_pair(&a, &veth, &b, "peer0").unwrap();

    let mut inside = a.run(thread_interfaces).unwrap();
    inside.sort();
    let mut expected = vec!["lo".to_owned(), veth.clone()];
    expected.sort();
    assert_eq!(inside, expected);
    assert_eq!(b.run(thread_interfaces).unwrap().len(), 2);

    // The caller's thread never changed namespace.
    assert!(!thread_interfaces().contains(&veth));
    // And a closure may borrow from the caller.
    let wanted = &veth;
    assert!(a.run(|| thread_interfaces().contains(wanted)).unwrap());
}

#[test]
fn a_panic_in_a_namespace_closure_reaches_the_caller() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tk").unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| ns.run(|| panic!("inside"))));
    let payload = result.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
}

#[test]
fn dropping_a_namespace_kills_processes_still_inside_it() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tk").unwrap();
    let mut leftover = ns
        .cmd("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = leftover.id().to_string();
    assert!(poll_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            String::from_utf8_lossy(
                &testkit::run_checked(Command::new("ip").args(["netns", "pids", ns.name()]))
                    .unwrap()
                    .stdout,
            )
            .split_whitespace()
            .any(|p| p == pid)
        }
    ));
    ns.remove().unwrap();
    let status = leftover.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
}

/// Pids inside namespace `ns`, as `ip netns pids` reports them.
fn pids_in(ns: &Netns) -> Vec<u32> {
    let out = testkit::run_checked(Command::new("ip").args(["netns", "pids", ns.name()])).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn a_background_process_runs_inside_its_namespace_until_dropped() {
    if !require_root() {
        return;
    }
    let ns = Netns::new("tk").unwrap();
    let daemon = Background::spawn(ns.cmd("sleep").arg("30")).unwrap();
    assert!(
        daemon.command().starts_with("ip netns exec tk-"),
        "{}",
        daemon.command()
    );
    let pid = daemon.id();
    // `ip netns exec` execs the program, so the child itself is inside.
    assert!(poll_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || { pids_in(&ns).contains(&pid) }
    ));
    drop(daemon);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(pids_in(&ns).is_empty());
}

#[test]
fn sockets_opened_in_a_namespace_closure_stay_in_that_namespace() {
    if !require_root() {
        return;
    }
    let a = Netns::new("tk").unwrap();
    let b = Netns::new("tk").unwrap();
    veth_pair(&a, "eth0", &b, "eth0").unwrap();
    a.add_addr("eth0", "10.200.0.5/30").unwrap();
    b.add_addr("eth0", "10.200.0.6/30").unwrap();

    // Bound in `b` by a closure; the socket stays in `b` after the thread exits.
    let listener = b
        .run(|| std::net::TcpListener::bind("10.200.0.6:0"))
        .unwrap()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let to = ([10, 200, 0, 6], port).into();
    let connect = |ns: &Netns| {
        ns.run(|| std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)))
            .unwrap()
    };
    let stream = connect(&a).unwrap();
    let (accepted, from) = listener.accept().unwrap();
    assert_eq!(from, stream.local_addr().unwrap());
    assert_eq!(from.ip().to_string(), "10.200.0.5");
    drop(accepted);
    // A third namespace has no route there.
    let c = Netns::new("tk").unwrap();
    assert!(connect(&c).is_err());
}

/// A pid that is certainly dead: a child we reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn add_raw_netns(name: &str) {
    testkit::run_checked(Command::new("ip").args(["netns", "add", name])).unwrap();
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed_and_live_ones_kept() {
    if !require_root() {
        return;
    }
    let live = Netns::new("tkstale").unwrap();
    let stale = format!("tkstale-{}-0-abcd", dead_pid());
    add_raw_netns(&stale);
    // Names with our prefix but not our shape are not ours.
    let foreign = format!("tkstale-x{}-0-abcd", dead_pid());
    add_raw_netns(&foreign);

    let removed = remove_stale("tkstale");
    testkit::run_checked(Command::new("ip").args(["netns", "del", &foreign])).unwrap();
    assert_eq!(removed.unwrap(), vec![stale.clone()]);
    assert_gone(&stale);
    assert!(live.path().exists());
}

#[test]
fn the_first_namespace_of_a_prefix_sweeps_stale_ones() {
    if !require_root() {
        return;
    }
    let stale = format!("tksweep-{}-3-0f0f", dead_pid());
    add_raw_netns(&stale);
    let _ns = Netns::new("tksweep").unwrap();
    assert_gone(&stale);
}

#[test]
fn namespaces_made_in_parallel_have_distinct_names() {
    if !require_root() {
        return;
    }
    let namespaces: Vec<Netns> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| Netns::new("tk").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let names: HashSet<String> = namespaces.iter().map(|ns| ns.name().to_owned()).collect();
    assert_eq!(names.len(), namespaces.len());
    assert!(listed_namespaces().is_superset(&names));
    drop(namespaces);
    names.iter().for_each(|n| assert_gone(n));
}

#[test]
fn a_bad_prefix_is_refused_before_anything_is_made() {
    let err = Netns::new("bad-prefix").unwrap_err();
    assert!(
        matches!(err, Error::InvalidPrefix { ref prefix, .. } if prefix == "bad-prefix"),
        "{err:?}"
    );
}
