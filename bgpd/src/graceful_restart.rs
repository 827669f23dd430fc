//! Graceful Restart (RFC 4724), pure: the capability we advertise and, per
//! peer, the helper ("Receiving Speaker", §4.2) that decides which of a
//! restarting peer's routes are kept as stale and when they go. It is fed
//! events (session down and up, prefixes refreshed, End-of-RIB, timer
//! expiry) and returns [`Action`]s on the peer's Adj-RIB-In for the
//! speaker to carry out; it reads no clock and holds no RIB.
//!
//! Helper mode, for a peer whose last OPEN carried the capability with a
//! non-zero restart time:
//! - the TCP connection is lost without a NOTIFICATION: the peer's routes
//!   of the families listed in its capability (and negotiated) are kept and
//!   marked stale, the others removed, and the restart timer (the peer's
//!   restart time) starts. Stale routes stay in the Loc-RIB, the kernel and
//!   the exports to other peers exactly as before. Routes still stale from
//!   an earlier restart are removed ("to deal with possible consecutive
//!   restarts"). A NOTIFICATION sent or received, our hold timer expiring
//!   (we send 4/0) and a manual stop end the session the ordinary way: all
//!   routes go. RFC 8538 (graceful NOTIFICATION, the N bit) is decoded but
//!   not implemented, so we never set N.
//! - the session comes back: the stale routes of each family the new OPEN
//!   does not list with the F bit set (or that was not negotiated) go at
//!   once; the rest wait for the family's End-of-RIB, with the stale timer
//!   ([`GrConfig::stale_time`]) as a bound. Every prefix the peer announces
//!   or withdraws is no longer stale.
//! - End-of-RIB for a family: its prefixes still stale go.
//! - the restart timer (session still down): everything goes; the stale
//!   timer (session back, End-of-RIB missing): what is still stale goes.
//!
//! Restarting speaker (§4.1): we advertise the capability with
//! [`GrConfig::restart_time`] for IPv4 and IPv6 unicast; after a restart
//! ([`GrConfig::restarting`]), with the R bit and the F bit of each family
//! set: our forwarding state is the kernel routes of our protocol, which
//! are left in place at start. The speaker then defers its initial table
//! and End-of-RIB to every peer until the peers it waits for
//! ([`waits_for`]) have sent End-of-RIB, or until the deferral timer.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::capability::{Capability, GrFamily, GracefulRestart};
use crate::fsm::DownReason;
use crate::prefix::{AfiSafi, Prefix};

/// Calico's default `maxRestartTime` for a BGP peer (and BIRD's and FRR's
/// default restart time).
pub const DEFAULT_RESTART_TIME: u16 = 120;

/// The stale-path time BIRD (`long lived stale time` aside) and FRR
/// (`bgp graceful-restart stalepath-time`) default to.
pub const DEFAULT_STALE_TIME: Duration = Duration::from_secs(360);

/// The largest restart time the capability can carry (12 bits).
pub const MAX_RESTART_TIME: u16 = 0x0fff;

/// Graceful Restart settings of the speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrConfig {
    /// Advertise the capability and act as helper. Off: neither.
    pub enabled: bool,
    /// Seconds we ask peers to keep our routes after losing us (at most
    /// [`MAX_RESTART_TIME`]).
    pub restart_time: u16,
    /// How long a returning peer's stale routes are kept, at most, while
    /// waiting for its End-of-RIB.
    pub stale_time: Duration,
    /// We have restarted with our forwarding state preserved: the R bit
    /// and every family's F bit are set, and our initial tables wait for
    /// the peers' End-of-RIB.
    pub restarting: bool,
}

impl Default for GrConfig {
    fn default() -> Self {
        GrConfig {
            enabled: true,
            restart_time: DEFAULT_RESTART_TIME,
            stale_time: DEFAULT_STALE_TIME,
            restarting: false,
        }
    }
}

impl GrConfig {
    /// The capability we send, listing `families`; `None` when disabled.
    pub fn capability(&self, families: &[AfiSafi]) -> Option<Capability> {
        self.enabled.then(|| {
            Capability::GracefulRestart(GracefulRestart {
                restarting: self.restarting,
                notification: false,
                restart_time: self.restart_time.min(MAX_RESTART_TIME),
                families: families
                    .iter()
                    .map(|&family| GrFamily {
                        family,
                        forwarding_preserved: self.restarting,
                    })
                    .collect(),
            })
        })
    }
}

/// Whether, while we are restarting, our initial tables wait for this
/// peer's End-of-RIB: not when the peer is restarting too (its R bit is
/// set: it waits for ours, RFC 4724 §4.1).
pub fn waits_for(peer_gr: Option<&GracefulRestart>) -> bool {
    !peer_gr.is_some_and(|gr| gr.restarting)
}

/// What the speaker does with one peer's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drop the peer's whole Adj-RIB-In: the ordinary end of a session.
    Flush,
    /// Remove these prefixes from the peer's Adj-RIB-In.
    Remove(Vec<Prefix>),
    /// (Re)start the peer's timer; [`Helper::timer_expired`] when it fires.
    StartTimer(Duration),
    StopTimer,
}

/// Where a peer is in a restart, as its helper sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// No restart: routes are the peer's current ones.
    #[default]
    Idle,
    /// The session is down; stale routes wait for it (restart timer).
    Restarting,
    /// The session is back; stale routes wait for End-of-RIB (stale timer).
    Refreshing,
}

/// The helper for one peer: which of its routes are stale.
#[derive(Debug, Clone, Default)]
pub struct Helper {
    phase: Phase,
    stale: BTreeMap<AfiSafi, HashSet<Prefix>>,
}

impl Helper {
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How many of the peer's routes are stale.
    pub fn stale_count(&self) -> usize {
        self.stale.values().map(HashSet::len).sum()
    }

    /// Ends the restart: nothing stale, timer stopped.
    fn finish(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Idle;
        self.stale.clear();
        out.push(Action::StopTimer);
    }

    /// The peer's established session ended for `reason`. `peer_gr` is the
    /// capability of that session's OPEN, `families` the ones negotiated,
    /// `routes` the peer's Adj-RIB-In.
    pub fn session_down(
        &mut self,
        enabled: bool,
        reason: &DownReason,
        peer_gr: Option<&GracefulRestart>,
        families: &[AfiSafi],
        routes: impl IntoIterator<Item = Prefix>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let gr = peer_gr
            .filter(|gr| enabled && *reason == DownReason::ConnectionLost && gr.restart_time > 0);
        let retained: Vec<AfiSafi> = gr
            .map(|gr| {
                gr.families
                    .iter()
                    .map(|f| f.family)
                    .filter(|f| families.contains(f))
                    .collect()
            })
            .unwrap_or_default();
        let previous = std::mem::take(&mut self.stale);
        let (Some(gr), false) = (gr, retained.is_empty()) else {
            out.push(Action::Flush);
            self.finish(&mut out);
            return out;
        };
        let mut remove = Vec::new();
        for prefix in routes {
            let family = AfiSafi::of(&prefix);
            let still_stale = previous.get(&family).is_some_and(|s| s.contains(&prefix));
            if retained.contains(&family) && !still_stale {
                self.stale.entry(family).or_default().insert(prefix);
            } else {
                remove.push(prefix);
            }
        }
        if self.stale.is_empty() {
            out.push(Action::Flush);
            self.finish(&mut out);
            return out;
        }
        if !remove.is_empty() {
            remove.sort();
            out.push(Action::Remove(remove));
        }
        self.phase = Phase::Restarting;
        out.push(Action::StartTimer(Duration::from_secs(u64::from(
            gr.restart_time,
        ))));
        out
    }

    /// The session is established again with `peer_gr` in the peer's OPEN
    /// and `families` negotiated.
    pub fn session_up(
        &mut self,
        peer_gr: Option<&GracefulRestart>,
        families: &[AfiSafi],
        stale_time: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase == Phase::Idle {
            return out;
        }
        let preserved = |family: &AfiSafi| {
            families.contains(family)
                && peer_gr.is_some_and(|gr| {
                    gr.families
                        .iter()
                        .any(|f| f.family == *family && f.forwarding_preserved)
                })
        };
        let mut remove: Vec<Prefix> = Vec::new();
        self.stale.retain(|family, prefixes| {
            let keep = preserved(family);
            if !keep {
                remove.extend(prefixes.drain());
            }
            keep
        });
        if !remove.is_empty() {
            remove.sort();
            out.push(Action::Remove(remove));
        }
        if self.stale.is_empty() {
            self.finish(&mut out);
        } else {
            self.phase = Phase::Refreshing;
            out.push(Action::StartTimer(stale_time));
        }
        out
    }

    /// The peer announced or withdrew `prefixes`: they are current again.
    pub fn refreshed<'a>(&mut self, prefixes: impl IntoIterator<Item = &'a Prefix>) {
        if self.stale.is_empty() {
            return;
        }
        for p in prefixes {
            if let Some(set) = self.stale.get_mut(&AfiSafi::of(p)) {
                set.remove(p);
            }
        }
    }

    /// The peer sent End-of-RIB for `family`.
    pub fn end_of_rib(&mut self, family: AfiSafi) -> Vec<Action> {
        let mut out = Vec::new();
        if self.phase != Phase::Refreshing {
            return out;
        }
        if let Some(set) = self.stale.remove(&family) {
            let mut remove: Vec<Prefix> = set.into_iter().collect();
            if !remove.is_empty() {
                remove.sort();
                out.push(Action::Remove(remove));
            }
        }
        if self.stale.is_empty() {
            self.finish(&mut out);
        }
        out
    }

    /// The timer last started has fired.
    pub fn timer_expired(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        match self.phase {
            Phase::Idle => {}
            Phase::Restarting => {
                out.push(Action::Flush);
                self.finish(&mut out);
            }
            Phase::Refreshing => {
                let mut remove: Vec<Prefix> = self.stale.values().flatten().copied().collect();
                remove.sort();
                if !remove.is_empty() {
                    out.push(Action::Remove(remove));
                }
                self.finish(&mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Notification;

    const V4: AfiSafi = AfiSafi::IPV4_UNICAST;
    const V6: AfiSafi = AfiSafi::IPV6_UNICAST;
    const BOTH: &[AfiSafi] = &[V4, V6];

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn gr(restarting: bool, time: u16, families: &[(AfiSafi, bool)]) -> GracefulRestart {
        GracefulRestart {
            restarting,
            notification: false,
            restart_time: time,
            families: families
                .iter()
                .map(|&(family, forwarding_preserved)| GrFamily {
                    family,
                    forwarding_preserved,
                })
                .collect(),
        }
    }

    fn routes() -> Vec<Prefix> {
        vec![p("10.1.0.0/24"), p("10.2.0.0/24"), p("2001:db8:1::/48")]
    }

    /// A helper whose peer (GR for both families, 120 s) just lost TCP.
    fn restarting() -> Helper {
        let mut h = Helper::default();
        let out = h.session_down(
            true,
            &DownReason::ConnectionLost,
            Some(&gr(false, 120, &[(V4, false), (V6, false)])),
            BOTH,
            routes(),
        );
        assert_eq!(out, [Action::StartTimer(Duration::from_secs(120))]);
        h
    }

    #[test]
    fn our_capability_has_the_restart_time_and_sets_r_and_f_only_after_a_restart() {
        let fresh = GrConfig::default().capability(BOTH).unwrap();
        assert_eq!(
            fresh,
            Capability::GracefulRestart(gr(false, 120, &[(V4, false), (V6, false)]))
        );
        let restarted = GrConfig {
            restarting: true,
            restart_time: 30,
            ..GrConfig::default()
        };
        let mut bytes = Vec::new();
        restarted.capability(&[V4]).unwrap().encode(&mut bytes);
        // Code 64, length 6, R bit + 30 s, IPv4 unicast with F.
        assert_eq!(bytes, [64, 6, 0x80, 30, 0, 1, 1, 0x80]);
        let off = GrConfig {
            enabled: false,
            ..GrConfig::default()
        };
        assert_eq!(off.capability(BOTH), None);
    }

    #[test]
    fn a_restarting_peer_is_not_waited_for_and_others_are() {
        assert!(waits_for(None));
        assert!(waits_for(Some(&gr(false, 120, &[]))));
        assert!(!waits_for(Some(&gr(true, 120, &[]))));
    }

    #[test]
    fn tcp_loss_of_a_gr_peer_keeps_its_routes_stale_for_its_restart_time() {
        let h = restarting();
        assert_eq!(h.phase(), Phase::Restarting);
        assert_eq!(h.stale_count(), 3);
    }

    #[test]
    fn a_notification_hold_expiry_or_stop_flushes_even_with_gr() {
        let cap = gr(false, 120, &[(V4, true)]);
        for reason in [
            DownReason::NotificationReceived(Notification::new(6, 2, [])),
            DownReason::NotificationSent(Notification::new(4, 0, [])),
            DownReason::HoldTimerExpired,
            DownReason::ManualStop,
        ] {
            let mut h = Helper::default();
            let out = h.session_down(true, &reason, Some(&cap), BOTH, routes());
            assert_eq!(out, [Action::Flush, Action::StopTimer], "{reason:?}");
            assert_eq!(h.phase(), Phase::Idle);
        }
    }

    #[test]
    fn without_gr_from_the_peer_or_with_restart_time_zero_or_disabled_routes_go() {
        let zero = gr(false, 0, &[(V4, true)]);
        let fine = gr(false, 120, &[(V4, true)]);
        // Capability without families: BIRD's and FRR's helper-only mode.
        let helper_only = gr(false, 120, &[]);
        for (enabled, cap) in [
            (true, None),
            (true, Some(&zero)),
            (false, Some(&fine)),
            (true, Some(&helper_only)),
        ] {
            let mut h = Helper::default();
            let out = h.session_down(enabled, &DownReason::ConnectionLost, cap, BOTH, routes());
            assert_eq!(out, [Action::Flush, Action::StopTimer]);
        }
    }

    #[test]
    fn routes_of_families_outside_the_capability_go_at_once() {
        let mut h = Helper::default();
        let out = h.session_down(
            true,
            &DownReason::ConnectionLost,
            Some(&gr(false, 10, &[(V4, false)])),
            BOTH,
            routes(),
        );
        assert_eq!(
            out,
            [
                Action::Remove(vec![p("2001:db8:1::/48")]),
                Action::StartTimer(Duration::from_secs(10))
            ]
        );
        assert_eq!(h.stale_count(), 2);
    }

    #[test]
    fn restart_timer_expiry_while_down_flushes_the_peer() {
        let mut h = restarting();
        assert_eq!(h.timer_expired(), [Action::Flush, Action::StopTimer]);
        assert_eq!(h.phase(), Phase::Idle);
        assert_eq!(h.timer_expired(), []);
    }

    #[test]
    fn return_with_f_bits_keeps_stale_routes_until_end_of_rib_per_family() {
        let mut h = restarting();
        let out = h.session_up(
            Some(&gr(true, 120, &[(V4, true), (V6, true)])),
            BOTH,
            Duration::from_secs(360),
        );
        assert_eq!(out, [Action::StartTimer(Duration::from_secs(360))]);
        assert_eq!(h.phase(), Phase::Refreshing);
        // 10.1.0.0/24 is announced again; 10.2.0.0/24 is not.
        h.refreshed(&[p("10.1.0.0/24")]);
        assert_eq!(
            h.end_of_rib(V4),
            [Action::Remove(vec![p("10.2.0.0/24")])],
            "IPv4 End-of-RIB removes only IPv4's stale routes"
        );
        assert_eq!(h.phase(), Phase::Refreshing);
        assert_eq!(
            h.end_of_rib(V6),
            [
                Action::Remove(vec![p("2001:db8:1::/48")]),
                Action::StopTimer
            ]
        );
        assert_eq!(h.phase(), Phase::Idle);
        assert_eq!(h.end_of_rib(V4), [], "a later End-of-RIB does nothing");
    }

    #[test]
    fn return_without_the_f_bit_or_the_capability_removes_that_familys_stale_routes() {
        let mut h = restarting();
        let out = h.session_up(
            Some(&gr(true, 120, &[(V4, false), (V6, true)])),
            BOTH,
            Duration::from_secs(360),
        );
        assert_eq!(
            out,
            [
                Action::Remove(vec![p("10.1.0.0/24"), p("10.2.0.0/24")]),
                Action::StartTimer(Duration::from_secs(360))
            ]
        );
        let mut h = restarting();
        let out = h.session_up(None, BOTH, Duration::from_secs(360));
        assert_eq!(
            out,
            [
                Action::Remove(vec![
                    p("10.1.0.0/24"),
                    p("10.2.0.0/24"),
                    p("2001:db8:1::/48")
                ]),
                Action::StopTimer
            ]
        );
        assert_eq!(h.phase(), Phase::Idle);
        // A family no longer negotiated is not waited for either.
        let mut h = restarting();
        let out = h.session_up(
            Some(&gr(true, 120, &[(V4, true), (V6, true)])),
            &[V4],
            Duration::from_secs(360),
        );
        assert_eq!(out[0], Action::Remove(vec![p("2001:db8:1::/48")]));
    }

    #[test]
    fn stale_timer_expiry_removes_what_end_of_rib_did_not_refresh() {
        let mut h = restarting();
        h.session_up(
            Some(&gr(true, 120, &[(V4, true), (V6, true)])),
            BOTH,
            Duration::from_secs(5),
        );
        h.refreshed(&[p("10.2.0.0/24"), p("2001:db8:1::/48")]);
        assert_eq!(
            h.timer_expired(),
            [Action::Remove(vec![p("10.1.0.0/24")]), Action::StopTimer]
        );
        assert_eq!(h.stale_count(), 0);
    }

    #[test]
    fn a_second_loss_before_end_of_rib_removes_routes_still_stale_and_keeps_fresh_ones() {
        let mut h = restarting();
        let cap = gr(true, 30, &[(V4, true), (V6, true)]);
        h.session_up(Some(&cap), BOTH, Duration::from_secs(360));
        h.refreshed(&[p("10.1.0.0/24")]);
        // The peer also announced something new before dropping again.
        let mut now = routes();
        now.push(p("10.3.0.0/24"));
        let out = h.session_down(true, &DownReason::ConnectionLost, Some(&cap), BOTH, now);
        assert_eq!(
            out,
            [
                Action::Remove(vec![p("10.2.0.0/24"), p("2001:db8:1::/48")]),
                Action::StartTimer(Duration::from_secs(30))
            ]
        );
        assert_eq!(h.stale_count(), 2);
        assert_eq!(h.phase(), Phase::Restarting);
    }

    #[test]
    fn an_ordinary_session_sees_no_actions_on_up_end_of_rib_or_timer() {
        let mut h = Helper::default();
        assert_eq!(
            h.session_up(Some(&gr(false, 120, &[])), BOTH, Duration::from_secs(1)),
            []
        );
        h.refreshed(&[p("10.1.0.0/24")]);
        assert_eq!(h.end_of_rib(V4), []);
        assert_eq!(h.timer_expired(), []);
    }
}
