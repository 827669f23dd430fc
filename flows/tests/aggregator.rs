//! The aggregator with time as an argument: buckets, keys, the bound and
//! its drop count, filters, sorting, paging, hints, what rolls out to
//! streams.

use std::net::{IpAddr, Ipv4Addr};

use flows::FlowLog;
use flows::log::{Action, Counters, Endpoint, PolicyHit, PolicyKind};
use flows::proto;
use flows::query::{HintsQuery, ListQuery};
use flows::store::{Aggregator, Config, Refused};

mod support;

use support::T0;

fn hit(
    kind: PolicyKind,
    namespace: &str,
    name: &str,
    tier: &str,
    action: Action,
    index: i64,
) -> PolicyHit {
    PolicyHit {
        kind,
        namespace: namespace.into(),
        name: name.into(),
        tier: tier.into(),
        action,
        policy_index: index,
        rule_index: 0,
        trigger: None,
    }
}

/// support's allowed flow (web to db, shop/allow-db) to `port`, with its
/// own labels and counters.
fn log(start: i64, port: u16) -> FlowLog {
    let mut l = support::allowed(start);
    l.tuple.dest_port = port;
    l.source = Endpoint::workload("shop", "web-*", &[("app", "web"), ("pod", "1")]);
    l.counters = Counters {
        packets_in: 1,
        packets_out: 2,
        bytes_in: 100,
        bytes_out: 200,
        connections_started: 1,
        connections_completed: 0,
        connections_live: 1,
    };
    l
}

fn denied(start: i64, port: u16) -> FlowLog {
    let mut l = log(start, port);
    l.action = Action::Deny;
    l.dest = Endpoint::network(false);
    l.policies.enforced = vec![hit(
        PolicyKind::GlobalNetworkPolicy,
        "",
        "deny-out",
        "security",
        Action::Deny,
        0,
    )];
    l.policies.pending = vec![hit(
        PolicyKind::StagedGlobalNetworkPolicy,
        "",
        "staged-deny",
        "security",
        Action::Deny,
        0,
    )];
    l
}

fn aggregator() -> Aggregator {
    Aggregator::new(Config::default()).expect("the default configuration is valid")
}

fn list(
    a: &Aggregator,
    now: i64,
    req: proto::FlowListRequest,
) -> (Vec<flows::store::Flow>, proto::ListMetadata) {
    a.list(&ListQuery::from_proto(now, &req).expect("a valid request"))
}

fn all(a: &Aggregator, now: i64) -> Vec<flows::store::Flow> {
    list(a, now, proto::FlowListRequest::default()).0
}

#[test]
fn logs_of_one_key_in_one_bucket_are_summed_into_one_flow() {
    let mut a = aggregator();
    a.add(T0 + 5, &log(T0 + 1, 5432)).expect("in history");
    a.add(T0 + 5, &log(T0 + 14, 5432)).expect("in history");
    let flows = all(&a, T0 + 5);
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!((f.start, f.end), (T0, T0 + 15));
    assert_eq!(f.counters.packets_out, 4);
    assert_eq!(f.counters.bytes_in, 200);
    assert_eq!(f.counters.connections_started, 2);
    assert_eq!(f.key.protocol, "tcp");
    assert_eq!(f.key.dest_port, 5432);
}

#[test]
fn the_key_ignores_addresses_and_source_port_but_not_the_destination_port() {
    let mut a = aggregator();
    let mut other_pod = log(T0, 5432);
    other_pod.tuple.source = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
    other_pod.tuple.source_port = 41000;
    a.add(T0, &log(T0, 5432)).expect("in history");
    a.add(T0, &other_pod).expect("in history");
    a.add(T0, &log(T0, 5433)).expect("in history");
    a.add(T0, &denied(T0, 5432)).expect("in history");
    assert_eq!(all(&a, T0).len(), 3);
    assert_eq!(a.stats().keys, 3);
}

#[test]
fn labels_are_those_every_contributing_endpoint_had() {
    let mut a = aggregator();
    let mut second = log(T0 + 15, 5432);
    second.source = Endpoint::workload("shop", "web-*", &[("app", "web"), ("pod", "2")]);
    a.add(T0 + 15, &log(T0, 5432)).expect("in history");
    a.add(T0 + 15, &second).expect("in history");
    let flows = all(&a, T0 + 15);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].source_labels.as_slice(), ["app=web"]);
    assert_eq!(flows[0].dest_labels.as_slice(), ["app=db"]);
    assert_eq!((flows[0].start, flows[0].end), (T0, T0 + 30));
}

#[test]
fn a_range_sums_only_the_buckets_that_start_in_it() {
    let mut a = aggregator();
    for bucket in 0..4 {
        a.add(T0 + 60, &log(T0 + 15 * bucket, 80))
            .expect("in history");
    }
    let (flows, _) = list(
        &a,
        T0 + 60,
        proto::FlowListRequest {
            start_time_gte: T0 + 15,
            start_time_lt: T0 + 45,
            ..Default::default()
        },
    );
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].counters.connections_started, 2);
    assert_eq!((flows[0].start, flows[0].end), (T0 + 15, T0 + 45));
    // Relative: the last 30 seconds before now = T0 + 60.
    let (flows, _) = list(
        &a,
        T0 + 60,
        proto::FlowListRequest {
            start_time_gte: -30,
            ..Default::default()
        },
    );
    assert_eq!(
        flows[0].counters.connections_started, 2,
        "the buckets at T0 + 30 and T0 + 45"
    );
}

#[test]
fn logs_outside_the_history_are_refused_and_counted() {
    let config = Config {
        history: 4,
        ..Config::default()
    };
    let mut a = Aggregator::new(config).expect("valid");
    let now = T0 + 60;
    assert!(
        matches!(
            a.add(now, &log(T0, 80)),
            Err(Refused::OutsideHistory { .. })
        ),
        "5 buckets back"
    );
    a.add(now, &log(T0 + 15, 80))
        .expect("the oldest bucket kept");
    a.add(now, &log(now + 15, 80))
        .expect("one bucket ahead, for clock skew");
    assert!(a.add(now, &log(now + 30, 80)).is_err());
    assert_eq!(a.stats().refused, 2);
    assert_eq!(a.stats().received, 2);
}

#[test]
fn rolling_forgets_buckets_older_than_the_history_and_their_keys() {
    let config = Config {
        history: 4,
        ..Config::default()
    };
    let mut a = Aggregator::new(config).expect("valid");
    a.add(T0, &log(T0, 80)).expect("in history");
    a.add(T0 + 45, &log(T0 + 45, 81)).expect("in history");
    a.roll(T0 + 45);
    assert_eq!(a.stats().flows, 2);
    a.roll(T0 + 60);
    assert_eq!((a.stats().flows, a.stats().keys), (1, 1));
    assert_eq!(all(&a, T0 + 60)[0].key.dest_port, 81);
}

#[test]
fn at_the_bound_the_oldest_flow_goes_and_is_counted() {
    let config = Config {
        max_flows: 3,
        ..Config::default()
    };
    let mut a = Aggregator::new(config).expect("valid");
    let now = T0 + 60;
    a.add(now, &log(T0 + 15, 1)).expect("room");
    a.add(now, &log(T0, 2)).expect("room");
    a.add(now, &log(T0, 3)).expect("room");
    a.add(now, &log(T0 + 30, 4)).expect("the oldest makes room");
    let ports: Vec<u16> = {
        let mut p: Vec<u16> = all(&a, now).iter().map(|f| f.key.dest_port).collect();
        p.sort();
        p
    };
    assert_eq!(ports, [1, 3, 4], "port 2: the oldest bucket's first key");
    assert_eq!(a.stats().dropped, 1);
    assert_eq!(a.stats().flows, 3);
    // Adding to a window held takes no room.
    a.add(now, &log(T0 + 30, 4)).expect("summed in");
    assert_eq!(a.stats().dropped, 1);
    // A log older than everything held is the one dropped.
    assert_eq!(a.add(now, &log(T0 - 15, 5)), Err(Refused::Full));
    assert_eq!(a.stats().dropped, 2);
    assert_eq!(a.stats().keys, 3);
}

#[test]
fn filters_select_by_names_namespaces_ports_protocols_actions_and_policies() {
    let mut a = aggregator();
    a.add(T0, &log(T0, 5432)).expect("in history");
    a.add(T0, &denied(T0, 443)).expect("in history");
    let exact = |v: &str| proto::StringMatch {
        value: v.into(),
        r#type: proto::MatchType::Exact.into(),
    };
    let fuzzy = |v: &str| proto::StringMatch {
        value: v.into(),
        r#type: proto::MatchType::Fuzzy.into(),
    };
    let count = |filter: proto::Filter| {
        list(
            &a,
            T0,
            proto::FlowListRequest {
                filter: Some(filter),
                ..Default::default()
            },
        )
        .0
        .len()
    };
    assert_eq!(
        count(proto::Filter {
            dest_names: vec![exact("db-*")],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(proto::Filter {
            dest_names: vec![exact("db")],
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        count(proto::Filter {
            dest_names: vec![fuzzy("db")],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(proto::Filter {
            dest_names: vec![exact("PUBLIC NETWORK")],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(proto::Filter {
            source_namespaces: vec![exact("shop")],
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        count(proto::Filter {
            dest_ports: vec![proto::PortMatch { port: 443 }],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(proto::Filter {
            protocols: vec![exact("udp")],
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        count(proto::Filter {
            actions: vec![proto::Action::Deny.into()],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(proto::Filter {
            actions: vec![proto::Action::Unspecified.into()],
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        count(proto::Filter {
            pending_actions: vec![proto::Action::Deny.into()],
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        count(proto::Filter {
            reporter: proto::Reporter::Dst.into(),
            ..Default::default()
        }),
        0
    );
    let policy = |m: proto::PolicyMatch| {
        count(proto::Filter {
            policies: vec![m],
            ..Default::default()
        })
    };
    assert_eq!(
        policy(proto::PolicyMatch {
            name: Some(exact("allow-db")),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        policy(proto::PolicyMatch {
            tier: Some(exact("security")),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        policy(proto::PolicyMatch {
            name: Some(exact("staged-deny")),
            ..Default::default()
        }),
        1,
        "pending hits too"
    );
    assert_eq!(
        policy(proto::PolicyMatch {
            kind: proto::PolicyKind::GlobalNetworkPolicy.into(),
            action: proto::Action::Allow.into(),
            ..Default::default()
        }),
        0
    );
}

#[test]
fn time_sorts_newest_first_and_names_ascending() {
    let mut a = aggregator();
    let mut other = log(T0 + 15, 80);
    other.dest = Endpoint::workload("aaa", "api-*", &[]);
    a.add(T0 + 15, &log(T0, 80)).expect("in history");
    a.add(T0 + 15, &other).expect("in history");
    let sorted = |by: proto::SortBy| -> Vec<String> {
        let req = proto::FlowListRequest {
            sort_by: vec![proto::SortOption { sort_by: by.into() }],
            ..Default::default()
        };
        list(&a, T0 + 15, req)
            .0
            .iter()
            .map(|f| f.key.dest.name.clone())
            .collect()
    };
    assert_eq!(sorted(proto::SortBy::Time), ["api-*", "db-*"]);
    assert_eq!(sorted(proto::SortBy::DestName), ["api-*", "db-*"]);
    assert_eq!(sorted(proto::SortBy::DestNamespace), ["api-*", "db-*"]);
    assert_eq!(sorted(proto::SortBy::SourceName).len(), 2);
}

#[test]
fn pages_split_the_sorted_list_and_the_metadata_counts_all() {
    let mut a = aggregator();
    for port in 1..=5 {
        a.add(T0, &log(T0, port)).expect("in history");
    }
    let page = |page, size| {
        list(
            &a,
            T0,
            proto::FlowListRequest {
                page,
                page_size: size,
                ..Default::default()
            },
        )
    };
    let (flows, meta) = page(1, 2);
    assert_eq!(
        flows.iter().map(|f| f.key.dest_port).collect::<Vec<_>>(),
        [3, 4],
        "ties by first seen"
    );
    assert_eq!((meta.total_pages, meta.total_results), (3, 5));
    assert_eq!(page(2, 2).0.len(), 1);
    assert!(page(3, 2).0.is_empty());
}

#[test]
fn hints_are_the_distinct_values_of_a_field_filtered_and_sorted() {
    let mut a = aggregator();
    a.add(T0, &log(T0, 5432)).expect("in history");
    a.add(T0, &log(T0, 5433)).expect("in history");
    a.add(T0, &denied(T0, 443)).expect("in history");
    let hints = |t: proto::FilterType, filter: Option<proto::Filter>| -> Vec<String> {
        let req = proto::FilterHintsRequest {
            r#type: t.into(),
            filter,
            ..Default::default()
        };
        a.hints(&HintsQuery::from_proto(T0, &req).expect("valid")).0
    };
    assert_eq!(hints(proto::FilterType::DestName, None), ["db-*", "pub"]);
    assert_eq!(hints(proto::FilterType::SourceNamespace, None), ["shop"]);
    assert_eq!(
        hints(proto::FilterType::PolicyName, None),
        ["allow-db", "deny-out", "staged-deny"]
    );
    assert_eq!(
        hints(proto::FilterType::PolicyTier, None),
        ["default", "security"]
    );
    assert_eq!(
        hints(proto::FilterType::PolicyKind, None),
        [
            "CalicoNetworkPolicy",
            "GlobalNetworkPolicy",
            "StagedGlobalNetworkPolicy"
        ]
    );
    let deny = proto::Filter {
        actions: vec![proto::Action::Deny.into()],
        ..Default::default()
    };
    assert_eq!(hints(proto::FilterType::DestName, Some(deny)), ["pub"]);
}

#[test]
fn a_bucket_rolls_out_to_streams_one_interval_after_it_closed() {
    let mut a = aggregator();
    a.add(T0, &log(T0, 80)).expect("in history");
    a.add(T0, &log(T0 + 5, 80)).expect("in history");
    assert!(
        a.roll(T0 + 29).is_empty(),
        "closed at T0 + 15, not yet one interval ago"
    );
    let out = a.roll(T0 + 30);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (
            out[0].start,
            out[0].end,
            out[0].counters.connections_started
        ),
        (T0, T0 + 15, 2)
    );
    assert!(a.roll(T0 + 31).is_empty(), "once only");
    assert_eq!(a.streamed_since(T0).len(), 1, "a new stream's history");
    assert!(a.streamed_since(T0 + 1).is_empty());
}

#[test]
fn a_bad_configuration_is_refused() {
    assert!(
        Aggregator::new(Config {
            interval: 0,
            ..Config::default()
        })
        .is_err()
    );
    assert!(
        Aggregator::new(Config {
            history: 1,
            ..Config::default()
        })
        .is_err()
    );
    assert!(
        Aggregator::new(Config {
            max_flows: 0,
            ..Config::default()
        })
        .is_err()
    );
}
