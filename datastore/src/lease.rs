//! A leader lease in the store, as Kubernetes' Lease elects its leaders:
//! one key, `/calico/leases/<name>`, naming its holder. The holder renews
//! it by rewriting it; a candidate takes it over once it has seen the key
//! unchanged for longer than the lease lasts, by its own clock (no clock is
//! compared across hosts), with a compare-and-swap on the revision it saw.
//!
//! ```text
//! absent ──create──▶ held by A ──A renews every duration/3──▶ held by A
//!                        │ unchanged for > duration, seen by B
//!                        ▼
//!                    B's CAS on the revision it saw ──▶ held by B
//! ```
//!
//! Leases are not data: a migration leaves them out. [`decide`] is the
//! pure step; [`Lease::tick`] does its I/O.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kv::{Compare, KeyValue, KvStore, Op, Revision, Txn};

/// Where leases live.
pub const LEASES_PREFIX: &str = "/calico/leases/";

/// A lease's stored value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub holder: String,
    pub lease_duration_seconds: u64,
    /// Bumped by every renewal and takeover.
    pub renewals: u64,
}

/// What a candidate does this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nobody holds it: create it.
    Create,
    /// We hold it: rewrite it (CAS on its revision).
    Renew(Revision),
    /// Its holder let it lapse: take it (CAS on its revision).
    TakeOver(Revision),
    /// Someone else holds it.
    Wait,
}

/// What a candidate remembers between rounds: the revision it last saw
/// and since when (its clock) it has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub revision: Revision,
    pub since: Duration,
}

/// The pure step: given the key as read now, what `me` does.
pub fn decide(
    current: Option<(&Record, Revision)>,
    observed: &mut Option<Observed>,
    me: &str,
    now: Duration,
    duration: Duration,
) -> Action {
    let Some((record, revision)) = current else {
        *observed = None;
        return Action::Create;
    };
    if record.holder == me {
        return Action::Renew(revision);
    }
    let since = match observed {
        Some(o) if o.revision == revision => o.since,
        _ => {
            *observed = Some(Observed {
                revision,
                since: now,
            });
            now
        }
    };
    let lasts = Duration::from_secs(record.lease_duration_seconds).max(duration);
    if now.saturating_sub(since) > lasts {
        Action::TakeOver(revision)
    } else {
        Action::Wait
    }
}

/// One candidate for one lease.
#[derive(Debug)]
pub struct Lease {
    key: String,
    me: String,
    duration: Duration,
    observed: Option<Observed>,
    /// When (our clock) we last wrote it, while we hold it.
    held_since_write: Option<Duration>,
}

impl Lease {
    /// A candidate `me` for lease `name`, which lasts `duration` unrenewed.
    pub fn new(name: &str, me: &str, duration: Duration) -> Self {
        Self {
            key: format!("{LEASES_PREFIX}{name}"),
            me: me.to_owned(),
            duration,
            observed: None,
            held_since_write: None,
        }
    }

    /// How often to call [`tick`](Self::tick) to keep a lease held.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// One round at `now` (a monotonic clock): creates, renews or takes
    /// over the lease as [`decide`] says. `true` while we hold it. A
    /// failed renewal keeps us the holder only until the lease would
    /// lapse, so two holders never act at once on a clock that runs true.
    pub async fn tick(&mut self, kv: &Arc<dyn KvStore>, now: Duration) -> Result<bool> {
        let read = kv.get(&self.key).await;
        let outcome = match read {
            Ok(current) => self.step(kv, current, now).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(true) => {
                self.held_since_write = Some(now);
                Ok(true)
            }
            Ok(false) => {
                self.held_since_write = None;
                Ok(false)
            }
            Err(e) => {
                let still = self
                    .held_since_write
                    .is_some_and(|at| now.saturating_sub(at) < self.duration);
                if !still {
                    self.held_since_write = None;
                }
                Err(e)
            }
        }
    }

    async fn step(
        &mut self,
        kv: &Arc<dyn KvStore>,
        current: Option<KeyValue>,
        now: Duration,
    ) -> Result<bool> {
        let record = current
            .as_ref()
            .map(|kv| {
                serde_json::from_slice::<Record>(&kv.value).map_err(|e| Error::InvalidValue {
                    key: kv.key.clone(),
                    message: e.to_string(),
                })
            })
            .transpose()?;
        let pair = record
            .as_ref()
            .zip(current.as_ref().map(|c| c.mod_revision));
        let action = decide(pair, &mut self.observed, &self.me, now, self.duration);
        let renewals = record.as_ref().map_or(0, |r| r.renewals + 1);
        let compare = match action {
            Action::Wait => return Ok(false),
            Action::Create => Compare::absent(&self.key),
            Action::Renew(rev) | Action::TakeOver(rev) => Compare::mod_revision(&self.key, rev),
        };
        let value = serde_json::to_vec(&Record {
            holder: self.me.clone(),
            lease_duration_seconds: self.duration.as_secs().max(1),
            renewals,
        })
        .expect("a lease record serialises");
        let txn = Txn::new()
            .when([compare])
            .and_then([Op::put(&self.key, value)]);
        let won = kv.txn(txn).await?.succeeded;
        if !won {
            // Someone else wrote it first: watch the new value from now.
            self.observed = None;
        }
        Ok(won)
    }

    /// Whether we held the lease at our last round.
    pub fn held(&self) -> bool {
        self.held_since_write.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str) -> Record {
        Record {
            holder: holder.into(),
            lease_duration_seconds: 30,
            renewals: 0,
        }
    }

    const D: Duration = Duration::from_secs(30);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn an_absent_lease_is_created_and_ours_is_renewed() {
        let mut o = None;
        assert_eq!(decide(None, &mut o, "a", s(0), D), Action::Create);
        let r = record("a");
        assert_eq!(
            decide(Some((&r, 5)), &mut o, "a", s(1), D),
            Action::Renew(5)
        );
    }

    #[test]
    fn another_s_lease_is_taken_only_after_it_stood_still_longer_than_it_lasts() {
        let mut o = None;
        let r = record("a");
        assert_eq!(decide(Some((&r, 5)), &mut o, "b", s(100), D), Action::Wait);
        assert_eq!(decide(Some((&r, 5)), &mut o, "b", s(130), D), Action::Wait);
        // Renewed meanwhile: the clock starts over.
        assert_eq!(decide(Some((&r, 6)), &mut o, "b", s(131), D), Action::Wait);
        assert_eq!(decide(Some((&r, 6)), &mut o, "b", s(161), D), Action::Wait);
        assert_eq!(
            decide(Some((&r, 6)), &mut o, "b", s(162), D),
            Action::TakeOver(6)
        );
    }

    #[test]
    fn a_longer_lease_than_ours_is_waited_out_in_full() {
        let mut o = None;
        let mut r = record("a");
        r.lease_duration_seconds = 120;
        decide(Some((&r, 5)), &mut o, "b", s(0), D);
        assert_eq!(decide(Some((&r, 5)), &mut o, "b", s(100), D), Action::Wait);
        assert_eq!(
            decide(Some((&r, 5)), &mut o, "b", s(121), D),
            Action::TakeOver(5)
        );
    }
}
