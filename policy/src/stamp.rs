//! Chain stamps: how a driver that starts on a table programmed before (by an
//! earlier run, or the other driver) recognises the chains that already hold
//! what it would program, and leaves them alone, so that a restart with an
//! unchanged model changes nothing in the kernel (every rule handle and
//! counter kept).
//!
//! Whatever writes a chain's rules ([`render`](crate::render()),
//! [`render_changes`](crate::render_changes), the [`Netlink`](crate::Netlink)
//! driver) writes the comment of the chain's first rule *stamped*: followed by
//! `#` and 16 hex digits, the 64-bit FNV-1a [`hash`] of the chain's rules as
//! [`render_rule`] writes them, in order, comments included. The hash is of
//! the IR's text, not of what `nft list` prints back (nft rewrites matches),
//! so it is the same whichever driver wrote the chain and stable across runs;
//! a change in rendering changes stamps, which replaces each chain once.
//! Stamps live in rule comments because the kernel ignores a new comment on
//! an existing chain and nft 1.0.6 does not list chain comments in JSON.
//!
//! A driver reads the table back with the comment of every rule ([`Listed`])
//! and, before each diff, [`Programmed::changes_to`] *adopts* every listed
//! chain whose rules are the desired chain's: same base chain, same number of
//! rules, the first rule's comment the desired stamped one and every other
//! rule's comment the desired one. An adopted chain is taken to hold the
//! desired rules, so the diff leaves it alone. Anything else stays an opaque
//! placeholder (see [`dataplane`](crate::dataplane)) and is replaced: a chain
//! of a version without stamps, a chain whose policy changed (another stamp),
//! a chain with a rule added, deleted or re-commented by hand (another count
//! or comment). A rule edited in place by hand that keeps its position and
//! comment is not detected: the kernel's rules are not parsed back.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diff::{Changes, diff};
use crate::ir::{Chain, Rule, Ruleset};
use crate::render::render_rule;
use crate::sets::{MAX_COMMENT, comment, comment_within, fnv1a};

/// `#` and 16 hex digits.
const STAMP_LEN: usize = 17;

/// The comment of every rule of every chain of a kernel table, in order.
pub type Listed = BTreeMap<String, Vec<Option<String>>>;

/// The stamp hash of rules rendered by [`render_rule`].
pub fn hash_rendered(rules: &[String]) -> u64 {
    fnv1a(rules.join("\n").as_bytes())
}

/// The stamp hash of a chain's rules.
pub fn hash(chain: &Chain) -> u64 {
    let rendered: Vec<String> = chain.rules.iter().map(render_rule).collect();
    hash_rendered(&rendered)
}

/// The comment a chain's first rule is written with: its own comment
/// (shortened to leave room), a space and the stamp; the stamp alone when
/// the rule has no comment.
pub fn stamped_comment(first: &Rule, hash: u64) -> String {
    match &first.comment {
        Some(c) => format!(
            "{} #{hash:016x}",
            comment_within(c, MAX_COMMENT - STAMP_LEN - 1)
        ),
        None => format!("#{hash:016x}"),
    }
}

/// The stamp hash at the end of a listed comment, if it has one.
pub fn read_stamp(comment: &str) -> Option<u64> {
    let at = comment.len().checked_sub(STAMP_LEN)?;
    let hex = comment.get(at..)?.strip_prefix('#')?;
    if !hex
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The comments the chain's rules are written with, in order: the first
/// stamped, the others as [`comment`] makes them.
pub fn written_comments(chain: &Chain) -> Vec<Option<String>> {
    written_comments_with(chain, hash(chain))
}

/// [`written_comments`] with the chain's [`hash`] already known.
pub fn written_comments_with(chain: &Chain, hash: u64) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = chain
        .rules
        .iter()
        .map(|r| r.comment.as_deref().map(comment))
        .collect();
    if let (Some(first), Some(slot)) = (chain.rules.first(), out.first_mut()) {
        *slot = Some(stamped_comment(first, hash));
    }
    out
}

/// What a driver knows its table holds: the IR (listed chains not adopted
/// are placeholders), and what is left to adopt from the listing.
#[derive(Debug, Clone, Default)]
pub struct Programmed {
    pub ruleset: Ruleset,
    /// Listed chains neither adopted nor written since the table was read.
    unadopted: Listed,
}

impl Programmed {
    /// A table as read from the kernel: its IR with placeholder rules, and
    /// the comments of those rules.
    pub fn read(ruleset: Ruleset, listed: Listed) -> Self {
        Programmed {
            ruleset,
            unadopted: listed,
        }
    }

    /// Adopts what already holds `desired`'s chains, then diffs.
    pub fn changes_to(&mut self, desired: &Ruleset) -> Changes {
        self.adopt(desired);
        diff(&self.ruleset, desired)
    }

    /// Takes every listed chain whose rules are `desired`'s (see the module
    /// docs) as holding them; returns how many it adopted.
    pub fn adopt(&mut self, desired: &Ruleset) -> usize {
        let mut adopted = Vec::new();
        for (name, listed) in &self.unadopted {
            let (Some(want), Some(have)) = (
                desired.chains.get(name.as_str()),
                self.ruleset.chains.get(name.as_str()),
            ) else {
                continue;
            };
            if want.base == have.base
                && listed.len() == want.rules.len()
                && *listed == written_comments(want)
            {
                adopted.push((name.clone(), Arc::clone(want)));
            }
        }
        let count = adopted.len();
        for (name, chain) in adopted {
            self.unadopted.remove(&name);
            self.ruleset.chains.insert(name.into(), chain);
        }
        count
    }

    /// Records `changes` as committed.
    pub fn applied(&mut self, changes: &Changes) {
        changes.apply_to(&mut self.ruleset);
        for name in changes
            .add_chains
            .keys()
            .chain(changes.replace_chains.keys())
            .chain(&changes.remove_chains)
        {
            self.unadopted.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Hook, Priority, Verdict};

    fn chain(comments: &[Option<&str>]) -> Arc<Chain> {
        Arc::new(Chain {
            base: None,
            rules: comments
                .iter()
                .map(|c| Rule {
                    comment: c.map(str::to_string),
                    ..Rule::new(Vec::new(), Verdict::Accept)
                })
                .collect(),
        })
    }

    fn ruleset(chains: &[(&str, Arc<Chain>)]) -> Ruleset {
        Ruleset {
            chains: chains
                .iter()
                .map(|(n, c)| ((*n).into(), c.clone()))
                .collect(),
            ..Ruleset::default()
        }
    }

    /// What a driver reads back from a kernel holding `written`'s chains.
    fn listed_as(written: &Ruleset) -> Programmed {
        let placeholders = Ruleset {
            chains: written
                .chains
                .iter()
                .map(|(n, c)| {
                    let rules = vec![Rule::default(); c.rules.len()];
                    (
                        n.clone(),
                        Arc::new(Chain {
                            base: c.base,
                            rules,
                        }),
                    )
                })
                .collect(),
            ..Ruleset::default()
        };
        let listed = written
            .chains
            .iter()
            .map(|(n, c)| (n.to_string(), written_comments(c)))
            .collect();
        Programmed::read(placeholders, listed)
    }

    #[test]
    fn a_stamp_reads_back_from_the_comment_it_was_written_into() {
        let c = chain(&[Some("a.b ingress[0]"), None]);
        let h = hash(&c);
        let stamped = stamped_comment(&c.rules[0], h);
        assert_eq!(read_stamp(&stamped), Some(h));
        assert!(stamped.starts_with("a.b ingress[0] #"), "{stamped}");
        assert_eq!(read_stamp(&stamped_comment(&c.rules[1], 7)), Some(7));
        assert_eq!(read_stamp("a.b ingress[0]"), None);
    }

    #[test]
    fn a_long_comment_is_shortened_so_that_the_stamp_fits() {
        let long = "x".repeat(300);
        let c = chain(&[Some(&long)]);
        let stamped = stamped_comment(&c.rules[0], hash(&c));
        assert!(stamped.len() <= MAX_COMMENT, "{}", stamped.len());
        assert_eq!(read_stamp(&stamped), Some(hash(&c)));
    }

    #[test]
    fn the_hash_changes_with_any_rule_and_not_with_the_chain_being_rebuilt() {
        let a = chain(&[Some("x"), Some("y")]);
        assert_eq!(hash(&a), hash(&chain(&[Some("x"), Some("y")])));
        assert_ne!(hash(&a), hash(&chain(&[Some("x"), Some("z")])));
        assert_ne!(hash(&a), hash(&chain(&[Some("x")])));
    }

    #[test]
    fn an_unchanged_table_read_back_diffs_to_nothing() {
        let desired = ruleset(&[
            ("a", chain(&[Some("1"), Some("2")])),
            ("b", chain(&[None, None, Some("3")])),
            ("empty", chain(&[])),
        ]);
        let mut programmed = listed_as(&desired);
        assert!(!diff(&programmed.ruleset, &desired).is_empty());
        assert!(programmed.changes_to(&desired).is_empty());
    }

    #[test]
    fn only_the_chain_that_differs_is_replaced() {
        let old = ruleset(&[("a", chain(&[Some("1")])), ("b", chain(&[Some("2")]))]);
        let new = ruleset(&[("a", chain(&[Some("1")])), ("b", chain(&[Some("3")]))]);
        let changes = listed_as(&old).changes_to(&new);
        assert_eq!(
            changes.replace_chains.keys().collect::<Vec<_>>(),
            ["b"],
            "{changes:?}"
        );
    }

    #[test]
    fn a_rule_added_by_hand_or_a_missing_stamp_gets_the_chain_replaced() {
        let desired = ruleset(&[("a", chain(&[Some("1"), Some("2")]))]);
        let mut tampered = listed_as(&desired);
        tampered.unadopted.get_mut("a").unwrap().push(None);
        Arc::make_mut(tampered.ruleset.chains.get_mut("a").unwrap())
            .rules
            .push(Rule::default());
        assert_eq!(tampered.adopt(&desired), 0);
        assert!(
            tampered
                .changes_to(&desired)
                .replace_chains
                .contains_key("a")
        );

        let mut unstamped = listed_as(&desired);
        unstamped.unadopted.get_mut("a").unwrap()[0] = Some("1".into());
        assert_eq!(unstamped.adopt(&desired), 0);
    }

    #[test]
    fn a_chain_with_another_base_is_not_adopted() {
        let mut based = (*chain(&[Some("1")])).clone();
        based.base = Some(crate::ir::BaseChain::filter(Hook::Input, Priority::Filter));
        let old = ruleset(&[("a", Arc::new(based))]);
        let new = ruleset(&[("a", chain(&[Some("1")]))]);
        let mut programmed = listed_as(&old);
        assert_eq!(programmed.adopt(&new), 0);
    }

    #[test]
    fn a_written_chain_is_no_longer_adoptable() {
        let old = ruleset(&[("a", chain(&[Some("1")]))]);
        let new = ruleset(&[("a", chain(&[Some("2")]))]);
        let mut programmed = listed_as(&old);
        let changes = programmed.changes_to(&new);
        programmed.applied(&changes);
        assert!(programmed.unadopted.is_empty());
        assert_eq!(programmed.ruleset, new);
    }
}
