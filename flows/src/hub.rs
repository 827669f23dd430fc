//! [`Hub`]: the live streams. Each has its filter and a bounded channel;
//! publishing never waits: a stream whose channel is full loses the flow
//! and the loss is counted (for the stream and in total), a stream whose
//! client went away is removed.
//!
//! ```text
//! Aggregator::roll ─▶ Hub::publish ─try_send─▶ [stream 1 channel] ─▶ gRPC Stream task
//!                                  └─try_send─▶ [stream 2 channel] ─▶ …
//! ```

use tokio::sync::mpsc;

use crate::filter::Filter;
use crate::proto;
use crate::store::Flow;
use crate::wire;

/// Flows a stream's channel holds before it loses them.
pub const STREAM_CAPACITY: usize = 4096;

/// Streams served at once (Goldmane's limit).
pub const MAX_STREAMS: usize = 100;

#[derive(Debug)]
struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<proto::FlowResult>,
}

#[derive(Debug, Default)]
pub struct Hub {
    streams: Vec<Subscriber>,
    /// Flows lost to full channels, all streams together.
    dropped: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_STREAMS} streams are served already")]
pub struct TooManyStreams;

impl Hub {
    /// A new stream of the flows that pass `filter`.
    pub fn subscribe(
        &mut self,
        filter: Filter,
        capacity: usize,
    ) -> Result<mpsc::Receiver<proto::FlowResult>, TooManyStreams> {
        self.streams.retain(|s| !s.tx.is_closed());
        if self.streams.len() >= MAX_STREAMS {
            return Err(TooManyStreams);
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.streams.push(Subscriber { filter, tx });
        Ok(rx)
    }

    /// Offers each flow to each stream whose filter it passes.
    pub fn publish(&mut self, flows: &[Flow]) {
        let mut dropped = 0;
        self.streams.retain(|s| {
            for flow in flows.iter().filter(|f| s.filter.matches(&f.key)) {
                match s.tx.try_send(wire::to_result(flow)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        self.dropped += dropped;
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn streams(&self) -> usize {
        self.streams.iter().filter(|s| !s.tx.is_closed()).count()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::key::{FlowKey, Labels};
    use crate::log::{Action, Counters, Endpoint, FiveTuple, FlowLog, PolicyTrace, Reporter};

    fn flow(action: Action) -> Flow {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let log = FlowLog {
            tuple: FiveTuple {
                source: ip,
                dest: ip,
                protocol: 17,
                source_port: 1,
                dest_port: 53,
            },
            source: Endpoint::workload("a", "b", &[]),
            dest: Endpoint::network(true),
            dest_service: None,
            reporter: Reporter::Dst,
            action,
            policies: PolicyTrace::default(),
            counters: Counters::default(),
            start: 0,
            end: 1,
        };
        Flow {
            id: 1,
            key: Arc::new(FlowKey::of(&log)),
            start: 0,
            end: 15,
            source_labels: Labels::default(),
            dest_labels: Labels::default(),
            counters: Counters::default(),
        }
    }

    #[test]
    fn a_stream_gets_what_passes_its_filter_and_a_full_one_loses_the_rest() {
        let mut hub = Hub::default();
        let deny_only = Filter {
            actions: Some(vec![Action::Deny]),
            ..Filter::default()
        };
        let mut rx = hub.subscribe(deny_only, 1).expect("room");
        hub.publish(&[flow(Action::Allow), flow(Action::Deny), flow(Action::Deny)]);
        let got = rx.try_recv().expect("one flow");
        let action = got.flow.and_then(|f| f.key).map(|k| k.action);
        assert_eq!(action, Some(proto::Action::Deny.into()));
        assert!(rx.try_recv().is_err());
        assert_eq!(
            hub.dropped(),
            1,
            "the second denied flow: the channel held one"
        );
    }

    #[test]
    fn a_stream_whose_client_left_is_removed_and_the_number_is_bounded() {
        let mut hub = Hub::default();
        let rx = hub.subscribe(Filter::default(), 1).expect("room");
        drop(rx);
        hub.publish(&[flow(Action::Allow)]);
        assert_eq!((hub.streams(), hub.dropped()), (0, 0));
        let kept: Vec<_> = (0..MAX_STREAMS)
            .map(|_| hub.subscribe(Filter::default(), 1).expect("room"))
            .collect();
        assert_eq!(
            hub.subscribe(Filter::default(), 1).err(),
            Some(TooManyStreams)
        );
        drop(kept);
        assert!(
            hub.subscribe(Filter::default(), 1).is_ok(),
            "closed streams make room"
        );
    }
}
