//! A host's pusher (`flows::push`) against the real aggregator server on
//! loopback: what one flush makes arrives summed per key, what is sent
//! again after a reconnection is not counted twice, a pusher started
//! before its aggregator delivers once it is up, and the aggregator's Unix
//! socket serves the same API.

mod support;

use std::time::Duration;

use flows::proto::{self, flows_client::FlowsClient};
use flows::push::{self, Pusher};
use support::{Server, T0, TestClock, allowed, denied, poll_until};

const PATIENCE: Duration = Duration::from_secs(20);

fn listed(flows: &flows::Flows) -> Vec<proto::Flow> {
    flows
        .list(&proto::FlowListRequest::default())
        .expect("valid")
        .flows
        .into_iter()
        .filter_map(|r| r.flow)
        .collect()
}

#[tokio::test]
async fn a_flush_arrives_summed_per_key_and_what_is_sent_again_counts_once() {
    let clock = TestClock::at(T0 + 5);
    let flows = clock.flows();
    let server = Server::start(flows.clone()).await;
    let mut second = allowed(T0 + 1);
    second.tuple.source_port = 40001;
    let batch = push::batch(&[allowed(T0), second, denied(T0 + 2)], T0, T0 + 5);
    assert_eq!(batch.len(), 2, "two keys: {batch:?}");
    assert_eq!(batch[0].num_connections_started, 2);

    let pusher = Pusher::spawn(&server.addr.to_string(), 100).expect("an address");
    pusher.push(batch.clone());
    poll_until("two receipts", PATIENCE, || pusher.stats().sent == 2).await;
    let got = listed(&flows);
    assert_eq!(got.len(), 2);
    let allow = got
        .iter()
        .find(|f| f.key.as_ref().is_some_and(|k| k.dest_port == 5432))
        .expect("the allowed flow");
    assert_eq!((allow.packets_in, allow.bytes_out), (20, 2400));
    let s = pusher.stats();
    assert!(s.connected && s.connections == 1 && s.held == 0, "{s:?}");

    // After a reconnection a host sends again what had no receipt.
    let again = Pusher::spawn(&server.addr.to_string(), 100).expect("an address");
    again.push(batch);
    poll_until("the resent receipts", PATIENCE, || again.stats().sent == 2).await;
    assert_eq!(flows.stats().aggregator.duplicates, 2);
    assert_eq!(flows.stats().aggregator.received, 2);
    assert_eq!(listed(&flows), got);
}

#[tokio::test]
async fn a_pusher_started_before_its_aggregator_delivers_once_it_is_up() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = reserved.local_addr().expect("its address");
    drop(reserved);
    let pusher = Pusher::spawn(&addr.to_string(), 100).expect("an address");
    pusher.push(push::batch(&[denied(T0)], T0, T0 + 5));
    // Nothing listens: the flow waits in the outbox.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = pusher.stats();
    assert_eq!((s.sent, s.held, s.connected), (0, 1, false));

    let flows = TestClock::at(T0 + 5).flows();
    let _server = Server::start_at(flows.clone(), addr).await;
    poll_until("the receipt", PATIENCE, || pusher.stats().sent == 1).await;
    assert_eq!(listed(&flows).len(), 1);
}

#[tokio::test]
async fn the_aggregator_serves_the_same_api_on_a_unix_socket() {
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("goldmane.sock");
    let flows = TestClock::at(T0 + 5).flows();
    flows.add_all(&[allowed(T0)]);
    let listener = tokio::net::UnixListener::bind(&path).expect("a socket");
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flows::serve_aggregator_unix(listener, flows, async {
        let _ = stopped.await;
    }));
    let address = format!("unix:{}", path.display());
    let channel = push::endpoint(&address)
        .expect("an address")
        .connect()
        .await
        .expect("the socket accepts");
    let list = FlowsClient::new(channel)
        .list(proto::FlowListRequest::default())
        .await
        .expect("List")
        .into_inner();
    assert_eq!(list.flows.len(), 1);

    // A host can push over it too.
    let pusher = Pusher::spawn(&address, 10).expect("an address");
    pusher.push(push::batch(&[denied(T0 + 1)], T0, T0 + 5));
    poll_until("the receipt", PATIENCE, || pusher.stats().sent == 1).await;
}
