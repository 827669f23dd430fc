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
