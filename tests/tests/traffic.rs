//! Probes and echo connections between two namespaces (root).

use std::time::Duration;

use testkit::traffic::{EchoServer, connect, echo, pings, tcp_connects};
use testkit::{Netns, require_root, veth_pair};

#[test]
fn an_echo_connection_opened_in_one_namespace_works_from_the_test_thread() {
    if !require_root() {
        return;
    }
    let a = Netns::new("tfa").unwrap();
    let b = Netns::new("tfb").unwrap();
    veth_pair(&a, "eth0", &b, "eth0").unwrap();
    a.add_addr("eth0", "10.201.0.1/30").unwrap();
    b.add_addr("eth0", "10.201.0.2/30").unwrap();
    for ns in [&a, &b] {
        ns.link_up("eth0").unwrap();
        ns.link_up("lo").unwrap();
    }
    let addr = "10.201.0.2:7000".parse().unwrap();
    assert!(pings(&a, "10.201.0.2"));
    assert!(!tcp_connects(&a, addr), "nothing listens yet");

    let server = EchoServer::start(&b, 7000, false).unwrap();
    assert_eq!(server.addr().port(), 7000);
    let mut stream = connect(&a, addr, Duration::from_secs(2)).unwrap();
    assert_eq!(echo(&mut stream, b"hello").unwrap(), b"hello");
    assert_eq!(echo(&mut stream, b"again").unwrap(), b"again");
    drop(server);
    assert!(!tcp_connects(&a, addr), "the server stopped listening");
}
