//! A tonic client against the real server on a loopback port: List,
//! FilterHints and Stream answer what was fed, FlowCollector takes pushed
//! flows, and bad requests get InvalidArgument.

mod support;

use std::time::Duration;

use flows::proto::{self, flow_collector_client::FlowCollectorClient, flows_client::FlowsClient};
use support::{Server, T0, TestClock, allowed, denied};
use tonic::Code;

#[tokio::test]
async fn list_and_filter_hints_answer_the_flows_fed() {
    let clock = TestClock::at(T0 + 5);
    let flows = clock.flows();
    flows.add_all(&[allowed(T0), allowed(T0 + 3), denied(T0 + 4)]);
    let server = Server::start(flows).await;
    let mut client = FlowsClient::new(server.channel().await);

    let all = client
        .list(proto::FlowListRequest::default())
        .await
        .expect("List")
        .into_inner();
    assert_eq!(all.meta.map(|m| m.total_results), Some(2));
    let deny = proto::Filter {
        actions: vec![proto::Action::Deny.into()],
        ..Default::default()
    };
    let req = proto::FlowListRequest {
        filter: Some(deny.clone()),
        ..Default::default()
    };
    let denied = client.list(req).await.expect("List").into_inner().flows;
    assert_eq!(denied.len(), 1);
    let flow = denied[0].flow.as_ref().expect("a flow");
    let key = flow.key.as_ref().expect("a key");
    assert_eq!(
        (key.dest_name.as_str(), key.dest_port, key.proto.as_str()),
        ("pub", 443, "tcp")
    );
    let hit = &key.policies.as_ref().expect("a trace").enforced_policies[0];
    assert_eq!(
        (hit.name.as_str(), hit.tier.as_str(), hit.rule_index),
        ("deny-egress", "security", 1)
    );
    assert_eq!((flow.start_time, flow.end_time), (T0, T0 + 15));

    let hints = |t: proto::FilterType, filter: Option<proto::Filter>| proto::FilterHintsRequest {
        r#type: t.into(),
        filter,
        ..Default::default()
    };
    let values =
        |r: proto::FilterHintsResult| r.hints.into_iter().map(|h| h.value).collect::<Vec<_>>();
    let names = client
        .filter_hints(hints(proto::FilterType::DestName, None))
        .await
        .expect("hints");
    assert_eq!(values(names.into_inner()), ["db-*", "pub"]);
    let policies = client
        .filter_hints(hints(proto::FilterType::PolicyName, Some(deny)))
        .await
        .expect("hints");
    assert_eq!(values(policies.into_inner()), ["deny-all", "deny-egress"]);
}

#[tokio::test]
async fn a_stream_sends_its_history_then_each_bucket_an_interval_after_it_closed() {
    let clock = TestClock::at(T0 + 5);
    let flows = clock.flows();
    flows.add(&allowed(T0)).expect("in history");
    clock.set(T0 + 30);
    flows.roll(); // T0's bucket goes out (to no stream yet)
    flows.add(&denied(T0 + 31)).expect("in history");
    let server = Server::start(flows.clone()).await;
    let mut client = FlowsClient::new(server.channel().await);

    let req = proto::FlowStreamRequest {
        start_time_gte: -60,
        ..Default::default()
    };
    let mut stream = client.stream(req).await.expect("Stream").into_inner();
    let first = stream.message().await.expect("a message").expect("history");
    let key = |r: &proto::FlowResult| r.flow.as_ref().and_then(|f| f.key.clone()).expect("a key");
    assert_eq!(key(&first).dest_name, "db-*");

    clock.set(T0 + 60);
    flows.roll();
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the bucket of T0 + 30 within the deadline")
        .expect("a message")
        .expect("not the end");
    assert_eq!(key(&next).dest_name, "pub");
    assert_eq!(next.flow.as_ref().map(|f| f.start_time), Some(T0 + 30));

    // A filtered live stream sees only what passes.
    let only_allowed = proto::Filter {
        actions: vec![proto::Action::Allow.into()],
        ..Default::default()
    };
    let req = proto::FlowStreamRequest {
        filter: Some(only_allowed),
        ..Default::default()
    };
    let mut allowed_only = client.stream(req).await.expect("Stream").into_inner();
    support::poll_until("the second stream", Duration::from_secs(10), || {
        flows.stats().streams == 2
    })
    .await;
    flows.add_all(&[denied(T0 + 61), allowed(T0 + 62)]);
    clock.set(T0 + 90);
    flows.roll();
    let got = allowed_only
        .message()
        .await
        .expect("a message")
        .expect("not the end");
    assert_eq!(key(&got).dest_name, "db-*");
}

#[tokio::test]
async fn a_client_that_does_not_read_loses_flows_and_never_blocks_the_aggregator() {
    let clock = TestClock::at(T0);
    let flows = clock.flows();
    let req = proto::FlowStreamRequest::default();
    let unread = flows.subscribe(&req).expect("a stream");
    let many = flows::hub::STREAM_CAPACITY + 10;
    let logs: Vec<_> = (0..many)
        .map(|i| {
            let mut log = allowed(T0);
            log.tuple.dest_port = u16::try_from(i % 60_000).expect("a port");
            log.dest.name = format!("db-{i}");
            log
        })
        .collect();
    flows.add_all(&logs);
    clock.set(T0 + 30);
    flows.roll(); // returns although nobody reads
    let stats = flows.stats();
    assert_eq!(stats.stream_dropped, 10);
    assert_eq!(unread.live.len(), flows::hub::STREAM_CAPACITY);
}

#[tokio::test]
async fn bad_requests_get_invalid_argument() {
    let clock = TestClock::at(T0);
    let server = Server::start(clock.flows()).await;
    let mut client = FlowsClient::new(server.channel().await);
    let code = |r: Result<tonic::Response<proto::FlowListResult>, tonic::Status>| {
        r.map(|_| ()).map_err(|s| s.code())
    };

    let unknown_sort = proto::FlowListRequest {
        sort_by: vec![proto::SortOption { sort_by: 77 }],
        ..Default::default()
    };
    assert_eq!(
        code(client.list(unknown_sort).await),
        Err(Code::InvalidArgument)
    );
    let huge = proto::FlowListRequest {
        page_size: 1 << 40,
        ..Default::default()
    };
    assert_eq!(code(client.list(huge).await), Err(Code::InvalidArgument));
    let empty = proto::FlowListRequest {
        start_time_gte: -10,
        start_time_lt: -20,
        ..Default::default()
    };
    assert_eq!(code(client.list(empty).await), Err(Code::InvalidArgument));
    let match_type = proto::Filter {
        dest_names: vec![proto::StringMatch {
            value: "x".into(),
            r#type: 5,
        }],
        ..Default::default()
    };
    let req = proto::FlowListRequest {
        filter: Some(match_type),
        ..Default::default()
    };
    assert_eq!(code(client.list(req).await), Err(Code::InvalidArgument));
    let hints = client
        .filter_hints(proto::FilterHintsRequest::default())
        .await;
    assert_eq!(
        hints.map(|_| ()).map_err(|s| s.code()),
        Err(Code::InvalidArgument)
    );
    let stream = client
        .stream(proto::FlowStreamRequest {
            filter: Some(proto::Filter {
                reporter: 9,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(
        stream.map(|_| ()).map_err(|s| s.code()),
        Err(Code::InvalidArgument)
    );

    // Bytes that are no FlowListRequest: page_size (field 4, a varint) sent
    // as a string.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Junk {
        #[prost(string, tag = "4")]
        page_size: String,
    }
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.expect("ready");
    let junk = grpc
        .unary(
            tonic::Request::new(Junk {
                page_size: "lots".into(),
            }),
            tonic::codegen::http::uri::PathAndQuery::from_static("/goldmane.Flows/List"),
            tonic_prost::ProstCodec::<Junk, proto::FlowListResult>::default(),
        )
        .await;
    assert_eq!(
        junk.map(|_| ()).map_err(|s| s.code()),
        Err(Code::InvalidArgument)
    );

    // The server is still there.
    assert!(client.list(proto::FlowListRequest::default()).await.is_ok());
}

#[tokio::test]
async fn the_collector_sums_pushed_flows_and_refuses_flows_of_no_kind() {
    let clock = TestClock::at(T0 + 5);
    let flows = clock.flows();
    let server = Server::start(flows.clone()).await;
    let mut collector = FlowCollectorClient::new(server.channel().await);

    // A host pushes what its own aggregator made of its logs.
    let host = TestClock::at(T0 + 5).flows();
    host.add_all(&[allowed(T0), denied(T0 + 1)]);
    let pushed = host
        .list(&proto::FlowListRequest::default())
        .expect("valid")
        .flows;
    let updates: Vec<_> = pushed
        .iter()
        .map(|r| proto::FlowUpdate {
            flow: r.flow.clone(),
        })
        .collect();
    let mut receipts = collector
        .connect(tokio_stream::iter(updates))
        .await
        .expect("Connect")
        .into_inner();
    assert!(receipts.message().await.expect("a receipt").is_some());
    assert!(receipts.message().await.expect("a receipt").is_some());
    let listed = flows
        .list(&proto::FlowListRequest::default())
        .expect("valid");
    assert_eq!(listed.flows.len(), 2);
    assert_eq!(flows.stats().aggregator.received, 2);

    let mut no_kind = pushed[0].flow.clone().expect("a flow");
    if let Some(key) = no_kind.key.as_mut() {
        key.source_type = proto::EndpointType::Unspecified.into();
    }
    let mut receipts = collector
        .connect(tokio_stream::iter([proto::FlowUpdate {
            flow: Some(no_kind),
        }]))
        .await
        .expect("Connect")
        .into_inner();
    let refused = receipts.message().await;
    assert_eq!(
        refused.map(|_| ()).map_err(|s| s.code()),
        Err(Code::InvalidArgument)
    );
}

#[tokio::test]
async fn statistics_is_declared_but_unimplemented() {
    let server = Server::start(TestClock::at(T0).flows()).await;
    let mut client = proto::statistics_client::StatisticsClient::new(server.channel().await);
    let answer = client.list(proto::StatisticsRequest::default()).await;
    assert_eq!(
        answer.map(|_| ()).map_err(|s| s.code()),
        Err(Code::Unimplemented)
    );
}
