//! A sender's account of its own input (docs/PROTOCOL.md, "Notices and limits"): the
//! utterances it sent with at least one modality (a result is due), those a result covered, and
//! what the daemon refused, by reason, from the `Notice`s of its connection. Pure bookkeeping,
//! fed the messages the sender receives; `Summary` is the report a sender gives at exit.
//!
//! Invariant: `covered` only ever counts utterances that are due (sent with data), once each.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::protocol::{ConversationId, Message, NoticeReport, RejectNotice, RejectReason};

/// Notices kept verbatim for the report (all of them are counted in `refused`).
const KEPT_NOTICES: usize = 8;

#[derive(Debug, Default)]
pub struct Ledger {
    due: HashMap<ConversationId, BTreeSet<u32>>,
    covered: HashMap<ConversationId, BTreeSet<u32>>,
    n_due: u64,
    n_covered: u64,
    /// Uncovered utterances the sender stopped waiting for (`write_off`).
    written_off: u64,
    /// Utterances sent with every modality missing: the daemon skips them, no result is due.
    empty: u64,
    refused: BTreeMap<RejectReason, u64>,
    notices: Vec<NoticeReport>,
    rejects: Vec<RejectNotice>,
}

/// What a sender reports at exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sent: u64,
    pub due: u64,
    pub covered: u64,
    pub empty: u64,
    pub refused: Vec<(RejectReason, u64)>,
}

impl Summary {
    /// Nothing refused and every utterance due a result got one.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty() && self.covered == self.due
    }

    pub fn total_refused(&self) -> u64 {
        self.refused.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "utterances sent: {}", self.sent)?;
        if self.empty > 0 {
            write!(f, " ({} without any modality, no result due)", self.empty)?;
        }
        writeln!(f)?;
        writeln!(f, "covered by a result: {} of {}", self.covered, self.due)?;
        write!(f, "refused by the daemon: ")?;
        if self.refused.is_empty() {
            return write!(f, "none");
        }
        let parts: Vec<String> = self.refused.iter().map(|(r, n)| format!("{r:?} {n}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

impl Ledger {
    /// Records an utterance sent; `with_data` false: every modality was missing. Call it before
    /// the utterance's first frame is written: a result naming an utterance not recorded yet does
    /// not cover it, and the daemon may answer before the utterance's last frame is sent.
    pub fn sent(&mut self, conversation: &ConversationId, utterance: u32, with_data: bool) {
        if !with_data {
            self.empty += 1;
        } else if self.due.entry(conversation.clone()).or_default().insert(utterance) {
            self.n_due += 1;
        }
    }

    /// Takes a message the sender received; true when it changed the account.
    pub fn on_message(&mut self, msg: &Message) -> bool {
        match msg {
            Message::Result(r) => self.cover(&r.conversation, r.utterances.iter().map(|u| u.utterance)),
            Message::Scored(r) => self.cover(&r.conversation, r.utterances.iter().map(|u| u.utterance)),
            Message::Notice(n) => {
                *self.refused.entry(n.reason).or_default() += n.count;
                if self.notices.len() < KEPT_NOTICES {
                    self.notices.push((**n).clone());
                }
            }
            Message::Reject(r) => self.rejects.push(r.clone()),
            _ => return false,
        }
        true
    }

    fn cover(&mut self, conversation: &ConversationId, ids: impl Iterator<Item = u32>) {
        let Some(due) = self.due.get(conversation) else { return };
        let got = self.covered.entry(conversation.clone()).or_default();
        for id in ids.filter(|id| due.contains(id)) {
            if got.insert(id) {
                self.n_covered += 1;
            }
        }
    }

    /// Utterances due a result that none covered yet, less those written off.
    pub fn in_flight(&self) -> u64 {
        (self.n_due - self.n_covered).saturating_sub(self.written_off)
    }

    /// Stops waiting for the utterances in flight now (no result came for a long time): they
    /// stay uncovered in the summary unless a result still names them.
    pub fn write_off(&mut self) {
        self.written_off = self.n_due - self.n_covered;
    }

    pub fn summary(&self) -> Summary {
        Summary {
            sent: self.n_due + self.empty,
            due: self.n_due,
            covered: self.n_covered,
            empty: self.empty,
            refused: self.refused.iter().map(|(&r, &n)| (r, n)).collect(),
        }
    }

    /// The first notices received, for the report.
    pub fn notices(&self) -> &[NoticeReport] {
        &self.notices
    }

    /// `Reject`s received (the daemon cannot read this sender's frames at all).
    pub fn rejects(&self) -> &[RejectNotice] {
        &self.rejects
    }

    /// Up to `n` (conversation, utterance) due a result and not covered, for the report.
    pub fn uncovered(&self, n: usize) -> Vec<(ConversationId, u32)> {
        let mut out: Vec<(ConversationId, u32)> = Vec::new();
        for (c, ids) in &self.due {
            let got = self.covered.get(c);
            out.extend(
                ids.iter()
                    .filter(|u| !got.is_some_and(|g| g.contains(u)))
                    .map(|&u| (c.clone(), u)),
            );
        }
        out.sort();
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{class_name, conversation_id, UtteranceResult, WindowResult};

    fn result(conv: &str, ids: &[u32]) -> Message {
        let utterances = ids
            .iter()
            .map(|&u| UtteranceResult {
                utterance: u,
                avail: 3,
                label: 0,
                label_name: class_name("hap").unwrap(),
                probs: Default::default(),
                reg: None,
            })
            .collect();
        Message::Result(WindowResult {
            conversation: conversation_id(conv).unwrap(),
            closed_utterance: 0,
            completion: "gsdnet".into(),
            latency_us: 1,
            utterances,
        })
    }

    #[test]
    fn counts_due_covered_and_refused() {
        let (a, b) = (conversation_id("a").unwrap(), conversation_id("b").unwrap());
        let mut l = Ledger::default();
        for u in 0..4 {
            l.sent(&a, u, true);
        }
        l.sent(&a, 4, false);
        l.sent(&b, 0, true);
        assert_eq!(l.in_flight(), 5);
        assert!(l.on_message(&result("a", &[0, 1, 2])));
        l.on_message(&result("a", &[1, 2, 3, 9]));
        l.on_message(&result("zzz", &[0]));
        assert_eq!(l.in_flight(), 1);
        assert_eq!(l.uncovered(10), vec![(b.clone(), 0)]);
        let s = l.summary();
        assert_eq!((s.sent, s.due, s.covered, s.empty), (6, 5, 4, 1));
        assert!(!s.is_complete());
        l.on_message(&result("b", &[0]));
        assert!(l.summary().is_complete());
        let n = NoticeReport::new(RejectReason::Flood, a.clone(), Some(3), 40, "x");
        l.on_message(&Message::Notice(Box::new(n.clone())));
        l.on_message(&Message::Notice(Box::new(NoticeReport { count: 2, ..n })));
        let s = l.summary();
        assert_eq!(
            (s.refused.clone(), s.total_refused()),
            (vec![(RejectReason::Flood, 42)], 42)
        );
        assert!(!s.is_complete());
        assert!(s.to_string().contains("refused by the daemon: Flood 42"), "{s}");
        assert!(!l.on_message(&Message::StatusRequest));
    }
}
