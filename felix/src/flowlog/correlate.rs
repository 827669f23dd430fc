//! The pure core of felix's flow logs: logged decisions (NFLOG, one per
//! deciding rule a new connection's packet meets) and conntrack's view of
//! the same connections, joined by their original tuple into one record
//! per connection, and each [`Correlator::flush`] into [`FlowLog`]s: one per
//! side this host decided (its source's egress: reporter `Src`; its
//! destination's ingress: `Dst`), with that interval's counters.
//!
//! ```text
//! Logged(tuple, hit) ──┐                    ┌─ egress trace ─► FlowLog(Src)
//! conntrack(conn) ─────┼─► Tracked by tuple ─┤
//! dump(all conns) ─────┘   (bounded)        └─ ingress trace ► FlowLog(Dst)
//! ```
//!
//! A denied connection's counters are its logged packets (each retried
//! SYN); an allowed one's are conntrack's, both ways. Time is an argument
//! (seconds since the epoch).

use std::collections::HashMap;

use flows::log::{
    Action, Counters, Endpoint, FiveTuple, FlowLog, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};
use nfevents::Tuple;
use nfevents::conntrack::{self, Conn};
use policy::flowlog::{Decision, Hit, Source};

use super::identity::Identities;

/// The tier Calico names in profile hits.
pub const PROFILE_TIER: &str = "__PROFILE__";

/// How long an allowed connection conntrack never reported counts as live.
const UNTRACKED_TIMEOUT: i64 = 300;

/// What the correlator counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections dropped because the table was full (oldest first).
    pub evicted: u64,
    /// Logged packets whose prefix named nothing of the model.
    pub unresolved: u64,
}

/// One connection.
#[derive(Debug, Clone)]
struct Tracked {
    source: Endpoint,
    dest: Endpoint,
    /// The decisions its packets met leaving the source and entering the
    /// destination, the latest packet's.
    egress: Vec<Hit>,
    ingress: Vec<Hit>,
    denied: bool,
    /// What egress and ingress would meet with the staged policies.
    pending: [Vec<PolicyHit>; 2],
    start: i64,
    /// Last logged packet or conntrack report.
    seen: i64,
    /// Cumulative counters: original direction, reply direction.
    orig: (u64, u64),
    reply: (u64, u64),
    /// What earlier flushes reported of them.
    reported_orig: (u64, u64),
    reported_reply: (u64, u64),
    started_reported: bool,
    end_reported: bool,
    /// Conntrack has reported it.
    tracked: bool,
    ended: bool,
}

/// The correlator: see the module doc.
#[derive(Debug)]
pub struct Correlator {
    conns: HashMap<Tuple, Tracked>,
    max: usize,
    /// A denied or ended connection stays this long after its last packet,
    /// so that retries count as the same connection.
    linger: i64,
    stats: Stats,
}

/// Whether a trace ended in a decision (not a Pass to the next tier).
fn decided(trace: &[Hit]) -> bool {
    trace.last().is_some_and(|h| h.decision() != Decision::Pass)
}

impl Correlator {
    /// A correlator tracking at most `max` connections; `linger` seconds
    /// as above.
    pub fn new(max: usize, linger: i64) -> Self {
        Correlator {
            conns: HashMap::new(),
            max,
            linger,
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// A logged packet of `len` bytes: `hit` is the decision its prefix
    /// names (`None`: unresolved, counted). Whether it is a connection not
    /// seen before (see [`Correlator::set_pending`]).
    pub fn logged(
        &mut self,
        now: i64,
        tuple: Tuple,
        len: u32,
        hit: Option<Hit>,
        ids: &Identities,
    ) -> bool {
        let Some(hit) = hit else {
            self.stats.unresolved += 1;
            return false;
        };
        let new = !self.conns.contains_key(&tuple);
        if !self.conns.contains_key(&tuple) && self.conns.len() >= self.max {
            self.evict_oldest();
        }
        let conn = self.conns.entry(tuple).or_insert_with(|| Tracked {
            source: ids.of(tuple.src),
            dest: ids.of(tuple.dst),
            egress: Vec::new(),
            ingress: Vec::new(),
            denied: false,
            pending: [Vec::new(), Vec::new()],
            start: now,
            seen: now,
            orig: (0, 0),
            reply: (0, 0),
            reported_orig: (0, 0),
            reported_reply: (0, 0),
            started_reported: false,
            end_reported: false,
            tracked: false,
            ended: false,
        });
        conn.seen = now;
        let trace = if hit.ingress() {
            &mut conn.ingress
        } else {
            &mut conn.egress
        };
        // A packet's trace starts over at each new packet (a retried SYN
        // meets the same rules again).
        if decided(trace) {
            trace.clear();
        }
        let deny = hit.decision() == Decision::Deny;
        trace.push(hit);
        if deny {
            conn.denied = true;
            // A dropped packet never reaches conntrack: count it here.
            conn.orig.0 += 1;
            conn.orig.1 += u64::from(len);
        }
        new
    }

    /// What a connection's egress and ingress would meet with the staged
    /// policies enforced: its flow logs' pending policies.
    pub fn set_pending(&mut self, tuple: &Tuple, pending: [Vec<PolicyHit>; 2]) {
        if let Some(t) = self.conns.get_mut(tuple) {
            t.pending = pending;
        }
    }

    /// Conntrack's report of a connection (an event, or a dump's entry).
    /// Found by its original tuple, or, for a connection whose destination
    /// was translated (a service), by its reply tuple reversed: what the
    /// logged packet showed after DNAT.
    pub fn conntrack(&mut self, now: i64, conn: &Conn) {
        let key = match conn.reply.map(|r| r.reversed()) {
            Some(translated) if !self.conns.contains_key(&conn.orig) => translated,
            _ => conn.orig,
        };
        let Some(t) = self.conns.get_mut(&key) else {
            return;
        };
        t.seen = now;
        t.tracked = true;
        let get = |c: Option<conntrack::Counters>| c.map(|c| (c.packets, c.bytes));
        if let Some(orig) = get(conn.orig_counters) {
            t.orig = t.orig.max(orig);
        }
        if let Some(reply) = get(conn.reply_counters) {
            t.reply = t.reply.max(reply);
        }
        if conn.event == conntrack::Event::Destroy {
            t.ended = true;
        }
    }

    /// A whole dump of the conntrack table: tracked connections missing
    /// from it have ended.
    pub fn dumped(&mut self, now: i64, conns: &[Conn]) {
        let present: std::collections::HashSet<Tuple> = (conns.iter())
            .flat_map(|c| [Some(c.orig), c.reply.map(|r| r.reversed())])
            .flatten()
            .collect();
        for c in conns {
            self.conntrack(now, c);
        }
        for (tuple, t) in &mut self.conns {
            if t.tracked && !present.contains(tuple) {
                t.ended = true;
            }
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(oldest) = (self.conns.iter())
            .min_by_key(|(_, t)| (t.seen, t.start))
            .map(|(k, _)| *k)
        {
            self.conns.remove(&oldest);
            self.stats.evicted += 1;
        }
    }

    /// The flow logs of the interval ending at `now` (`start`: its start),
    /// and forgets connections that are over.
    pub fn flush(&mut self, start: i64, now: i64) -> Vec<FlowLog> {
        let mut out = Vec::new();
        for (tuple, t) in &mut self.conns {
            // An allowed connection conntrack never reported (its socket
            // failed) is taken as over after a while.
            if !t.denied && !t.tracked && now - t.seen >= UNTRACKED_TIMEOUT {
                t.ended = true;
            }
            let delta = |now: (u64, u64), before: (u64, u64)| {
                (now.0 - before.0.min(now.0), now.1 - before.1.min(now.1))
            };
            let (orig, reply) = (
                delta(t.orig, t.reported_orig),
                delta(t.reply, t.reported_reply),
            );
            let started = !t.started_reported;
            let allowed = !t.denied;
            let fresh = orig != (0, 0) || reply != (0, 0);
            // Report a connection when it starts, when it has new counts,
            // while it lives, and once when it ends.
            let report = started || fresh || (allowed && !t.end_reported);
            if !report {
                continue;
            }
            let counters = |reporter: Reporter| {
                let (out, r#in) = match reporter {
                    Reporter::Src => (orig, reply),
                    Reporter::Dst => (reply, orig),
                };
                Counters {
                    packets_out: out.0,
                    bytes_out: out.1,
                    packets_in: r#in.0,
                    bytes_in: r#in.1,
                    connections_started: u64::from(started),
                    connections_completed: u64::from(allowed && t.ended),
                    connections_live: u64::from(allowed && !t.ended),
                }
            };
            for (reporter, trace, pending) in [
                (Reporter::Src, &t.egress, &t.pending[0]),
                (Reporter::Dst, &t.ingress, &t.pending[1]),
            ] {
                let Some(last) = trace.last() else { continue };
                out.push(FlowLog {
                    tuple: FiveTuple {
                        source: tuple.src,
                        dest: tuple.dst,
                        protocol: tuple.proto,
                        source_port: tuple.sport,
                        dest_port: tuple.dport,
                    },
                    source: t.source.clone(),
                    dest: t.dest.clone(),
                    dest_service: None,
                    reporter,
                    action: match last.decision() {
                        Decision::Deny => Action::Deny,
                        Decision::Allow | Decision::Pass => Action::Allow,
                    },
                    policies: PolicyTrace {
                        enforced: trace.iter().map(policy_hit).collect(),
                        pending: pending.clone(),
                    },
                    counters: counters(reporter),
                    start,
                    end: now,
                });
            }
            t.started_reported = true;
            t.end_reported = t.ended;
            t.reported_orig = t.orig;
            t.reported_reply = t.reply;
        }
        let linger = self.linger;
        self.conns
            .retain(|_, t| !((t.ended || t.denied) && now - t.seen >= linger));
        out
    }
}

/// A resolved decision as Goldmane names it.
pub fn policy_hit(hit: &Hit) -> PolicyHit {
    let action = |d: Decision| match d {
        Decision::Allow => Action::Allow,
        Decision::Deny => Action::Deny,
        Decision::Pass => Action::Pass,
    };
    match hit {
        Hit::Rule {
            origin,
            rule,
            decision,
        } => PolicyHit {
            kind: match origin.source {
                Source::NetworkPolicy => PolicyKind::CalicoNetworkPolicy,
                Source::KubernetesNetworkPolicy => PolicyKind::NetworkPolicy,
                Source::GlobalNetworkPolicy => PolicyKind::GlobalNetworkPolicy,
                Source::Profile => PolicyKind::Profile,
            },
            namespace: origin.namespace.clone(),
            name: origin.name.clone(),
            tier: match origin.source {
                Source::Profile => PROFILE_TIER.to_string(),
                _ => origin.tier.clone(),
            },
            action: action(*decision),
            policy_index: origin.index as i64,
            rule_index: *rule as i64,
            trigger: None,
        },
        Hit::TierEnd { tier, .. } => PolicyHit {
            kind: PolicyKind::EndOfTier,
            namespace: String::new(),
            name: String::new(),
            tier: tier.clone(),
            action: Action::Deny,
            policy_index: 0,
            rule_index: -1,
            trigger: None,
        },
        Hit::NoMatch { .. } => PolicyHit {
            kind: PolicyKind::EndOfTier,
            namespace: String::new(),
            name: String::new(),
            tier: PROFILE_TIER.to_string(),
            action: Action::Deny,
            policy_index: 0,
            rule_index: -1,
            trigger: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfevents::conntrack::Event;
    use policy::flowlog::Origin;

    const WEB: &str = "10.65.0.2";
    const DB: &str = "10.65.0.3";

    fn tuple(sport: u16, dport: u16) -> Tuple {
        Tuple {
            proto: nfevents::packet::TCP,
            src: WEB.parse().unwrap(),
            dst: DB.parse().unwrap(),
            sport,
            dport,
        }
    }

    fn rule(source: Source, name: &str, ingress: bool, decision: Decision) -> Hit {
        Hit::Rule {
            origin: Origin {
                source,
                namespace: "shop".into(),
                name: name.into(),
                tier: "default".into(),
                index: 0,
                ingress,
            },
            rule: 0,
            decision,
        }
    }

    fn profile_out() -> Hit {
        rule(Source::Profile, "kns.shop", false, Decision::Allow)
    }

    fn ids() -> Identities {
        let yaml = format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: web, namespace: shop}}\nspec: {{node: n1, interfaceName: caliweb, ipNetworks: [{WEB}/32]}}\n---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {{name: db, namespace: shop}}\nspec: {{node: n1, interfaceName: calidb, ipNetworks: [{DB}/32]}}\n"
        );
        let resources = api::parse_documents("test", &yaml).unwrap();
        let model = policy::Model::from_resources(&resources, policy::Config::default()).unwrap();
        Identities::new(&model, None, 0)
    }

    fn conn(t: Tuple, event: Event, orig: (u64, u64), reply: (u64, u64)) -> Conn {
        let c = |(packets, bytes)| Some(conntrack::Counters { packets, bytes });
        Conn {
            event,
            id: Some(1),
            orig: t,
            reply: Some(t.reversed()),
            orig_counters: c(orig),
            reply_counters: c(reply),
            start_ns: None,
            stop_ns: None,
            mark: None,
            status: None,
        }
    }

    fn by(logs: &[FlowLog], reporter: Reporter) -> &FlowLog {
        logs.iter().find(|l| l.reporter == reporter).unwrap()
    }

    #[test]
    fn an_allowed_connection_is_reported_by_both_sides_while_it_lives_and_once_when_it_ends() {
        let ids = ids();
        let mut c = Correlator::new(100, 15);
        let t = tuple(40000, 80);
        c.logged(1, t, 60, Some(profile_out()), &ids);
        c.logged(
            1,
            t,
            60,
            Some(rule(Source::NetworkPolicy, "db", true, Decision::Allow)),
            &ids,
        );
        c.conntrack(2, &conn(t, Event::New, (3, 180), (2, 120)));
        let would_deny = policy_hit(&Hit::TierEnd {
            tier: "default".into(),
            ingress: true,
        });
        c.set_pending(&t, [Vec::new(), vec![would_deny.clone()]]);
        let logs = c.flush(0, 15);
        assert_eq!(logs.len(), 2);
        assert_eq!(by(&logs, Reporter::Dst).policies.pending, [would_deny]);
        assert!(by(&logs, Reporter::Src).policies.pending.is_empty());
        let (src, dst) = (by(&logs, Reporter::Src), by(&logs, Reporter::Dst));
        assert_eq!((src.action, dst.action), (Action::Allow, Action::Allow));
        assert_eq!(
            (src.source.name.as_str(), src.dest.name.as_str()),
            ("web", "db")
        );
        assert_eq!(src.policies.enforced[0].kind, PolicyKind::Profile);
        assert_eq!(src.policies.enforced[0].tier, PROFILE_TIER);
        assert_eq!(
            dst.policies.enforced[0].kind,
            PolicyKind::CalicoNetworkPolicy
        );
        assert_eq!((src.counters.packets_out, src.counters.bytes_in), (3, 120));
        assert_eq!((dst.counters.packets_in, dst.counters.bytes_out), (3, 120));
        assert_eq!(
            (
                src.counters.connections_started,
                src.counters.connections_live
            ),
            (1, 1)
        );

        // The next interval: only what is new; still live.
        c.conntrack(20, &conn(t, Event::Update, (5, 300), (4, 9000)));
        let logs = c.flush(15, 30);
        let src = by(&logs, Reporter::Src);
        assert_eq!((src.counters.packets_out, src.counters.bytes_in), (2, 8880));
        assert_eq!(
            (
                src.counters.connections_started,
                src.counters.connections_live
            ),
            (0, 1)
        );

        // Quiet but open: still reported, live.
        assert_eq!(c.flush(30, 45).len(), 2);
        c.conntrack(50, &conn(t, Event::Destroy, (6, 340), (4, 9000)));
        let logs = c.flush(45, 60);
        let src = by(&logs, Reporter::Src);
        assert_eq!(
            (
                src.counters.packets_out,
                src.counters.connections_completed,
                src.counters.connections_live
            ),
            (1, 1, 0)
        );
        assert!(
            c.flush(60, 75).is_empty(),
            "over, and forgotten after lingering"
        );
        assert!(c.is_empty());
    }

    #[test]
    fn a_denied_connection_counts_its_retries_as_one_connection() {
        let ids = ids();
        let mut c = Correlator::new(100, 15);
        let t = tuple(40001, 8080);
        let end = Hit::TierEnd {
            tier: "default".into(),
            ingress: true,
        };
        for at in [1, 2, 4] {
            c.logged(at, t, 60, Some(profile_out()), &ids);
            c.logged(at, t, 60, Some(end.clone()), &ids);
        }
        let logs = c.flush(0, 15);
        let (src, dst) = (by(&logs, Reporter::Src), by(&logs, Reporter::Dst));
        assert_eq!((src.action, dst.action), (Action::Allow, Action::Deny));
        assert_eq!(dst.policies.enforced.len(), 1, "the latest packet's trace");
        assert_eq!(dst.policies.enforced[0].kind, PolicyKind::EndOfTier);
        assert_eq!((dst.counters.packets_in, dst.counters.bytes_in), (3, 180));
        assert_eq!(
            (
                dst.counters.connections_started,
                dst.counters.connections_live,
                dst.counters.connections_completed
            ),
            (1, 0, 0)
        );
        // One more retry within the linger: the same connection.
        c.logged(16, t, 60, Some(end.clone()), &ids);
        let logs = c.flush(15, 30);
        let dst = by(&logs, Reporter::Dst);
        assert_eq!(
            (dst.counters.packets_in, dst.counters.connections_started),
            (1, 0)
        );
        assert!(c.flush(30, 45).is_empty());
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_table_drops_its_oldest_connection_and_unresolved_prefixes_are_counted() {
        let ids = ids();
        let mut c = Correlator::new(2, 15);
        for (at, port) in [(1, 1), (2, 2), (3, 3)] {
            c.logged(at, tuple(port, 80), 60, Some(profile_out()), &ids);
        }
        c.logged(4, tuple(9, 80), 60, None, &ids);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.stats(),
            Stats {
                evicted: 1,
                unresolved: 1
            }
        );
        let ports: Vec<u16> = c.flush(0, 15).iter().map(|l| l.tuple.source_port).collect();
        assert!(!ports.contains(&1), "{ports:?}");
    }

    #[test]
    fn a_dump_without_a_tracked_connection_ends_it() {
        let ids = ids();
        let mut c = Correlator::new(100, 0);
        let t = tuple(40002, 80);
        c.logged(1, t, 60, Some(profile_out()), &ids);
        c.dumped(2, &[conn(t, Event::Update, (1, 60), (1, 60))]);
        assert_eq!(c.flush(0, 15)[0].counters.connections_live, 1);
        c.dumped(20, &[]);
        assert_eq!(c.flush(15, 30)[0].counters.connections_completed, 1);
        assert!(c.is_empty());
    }
}
