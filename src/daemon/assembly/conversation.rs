//! The state of one conversation: its open utterances, its sliding window of released ones and
//! the evidence of a sender restart. Releasing and flushing live here; admission, lateness and
//! eviction decisions live in the parent module.

use std::collections::{BTreeMap, VecDeque};

use super::{ClosedUtterance, Counters, Millis, WindowJob};
use crate::config::Windowing;
use crate::daemon::stats::Escaped;
use crate::modality::{Modalities, Modality};
use crate::protocol::{ConversationId, Message};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Slot {
    Awaited,
    Arrived(Vec<f32>),
    Missing,
    /// A modality the model does not have: never awaited, never available.
    Absent,
}

#[derive(Debug)]
pub(super) struct Pending {
    pub speaker: Option<u16>,
    pub opened: Millis,
    pub ended: Option<Millis>,
    pub slots: [Slot; 3],
}

impl Pending {
    /// Opened at `now`, awaiting every modality of the model.
    pub fn new(now: Millis, mods: &Modalities) -> Self {
        let slots = Modality::ALL.map(|m| if mods.has(m) { Slot::Awaited } else { Slot::Absent });
        Pending {
            speaker: None,
            opened: now,
            ended: None,
            slots,
        }
    }

    pub fn base(&self, max_utterance_ms: u64) -> Millis {
        self.ended.unwrap_or(self.opened.saturating_add(max_utterance_ms))
    }

    pub fn is_closed(&self) -> bool {
        self.slots.iter().all(|s| *s != Slot::Awaited)
    }

    fn has_data(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Arrived(_)))
    }
}

/// Invariants: every key of `open` is above `last_released`; `window` holds at most W
/// utterances, in release order; `behind` holds fewer than `RESTART_FRAMES` messages, all
/// naming ids at or below `last_released`, none older than the last accepted message.
#[derive(Debug)]
pub(super) struct Conversation {
    /// Unique per incarnation of a conversation id (new after `Reset`, expiry, eviction or a
    /// recognised restart), so consumers never merge two sessions that share an id.
    pub session: u64,
    pub open: BTreeMap<u32, Pending>,
    pub window: VecDeque<ClosedUtterance>,
    pub last_released: Option<u32>,
    /// Availability bits of the utterance `last_released` (0 when it was empty).
    pub last_avail: u8,
    /// Non-empty utterances released so far.
    pub released: u64,
    /// Clock of the last accepted message (rejected input never refreshes it).
    pub last_activity: Millis,
    /// Messages behind the released ids since the last accepted one: restart evidence.
    pub behind: Vec<Message>,
    /// `ConversationEnd` arrived: forgotten as soon as nothing is open.
    pub ending: bool,
}

impl Conversation {
    pub fn new(session: u64, now: Millis) -> Self {
        Conversation {
            session,
            open: BTreeMap::new(),
            window: VecDeque::new(),
            last_released: None,
            last_avail: 0,
            released: 0,
            last_activity: now,
            behind: Vec::new(),
            ending: false,
        }
    }

    /// `ConversationEnd`: every open utterance ends now (one already ended keeps its end), so
    /// each closes on its modalities' deadlines at the latest; the caller forgets the
    /// conversation once nothing is open (`is_done`).
    pub fn end(&mut self, now: Millis) {
        self.ending = true;
        for p in self.open.values_mut() {
            p.ended.get_or_insert(now);
        }
    }

    /// Ended and nothing open: its place is free.
    pub fn is_done(&self) -> bool {
        self.ending && self.open.is_empty()
    }

    /// Eviction rank: 0 = released nothing and holds no data, 1 = released nothing, 2 = the rest.
    pub fn eviction_rank(&self) -> u8 {
        match (self.released, self.open.values().any(Pending::has_data)) {
            (0, false) => 0,
            (0, true) => 1,
            _ => 2,
        }
    }

    /// Releases the closed utterances at the front, one window per non-empty utterance; `rule`
    /// is W and how windows follow the conversation.
    pub fn release(
        &mut self,
        id: &ConversationId,
        rule: (usize, Windowing),
        counters: &mut Counters,
    ) -> Vec<WindowJob> {
        let (w, windowing) = rule;
        let mut jobs = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if !entry.get().is_closed() {
                break;
            }
            let (utt, p) = entry.remove_entry();
            self.last_released = Some(utt);
            let features = p.slots.map(|s| match s {
                Slot::Arrived(v) => Some(v),
                _ => None,
            });
            let closed = ClosedUtterance {
                utterance: utt,
                speaker: p.speaker.unwrap_or(0),
                features,
            };
            self.last_avail = closed.avail_bits();
            if self.last_avail == 0 {
                counters.empty_utterances += 1;
                log::debug!("{} utterance {utt}: no modality arrived, skipped", Escaped(id));
                continue;
            }
            if windowing == Windowing::Chunked && self.window.len() >= w {
                self.window.clear();
            }
            self.window.push_back(closed);
            self.released += 1;
            while self.window.len() > w {
                self.window.pop_front();
            }
            jobs.push(WindowJob {
                conversation: id.clone(),
                session: self.session,
                first_position: self.released - self.window.len() as u64,
                utterances: self.window.iter().cloned().collect(),
            });
        }
        jobs
    }

    /// Closes every open utterance with what has arrived (the rest missing) and releases all.
    pub fn flush(&mut self, id: &ConversationId, rule: (usize, Windowing), counters: &mut Counters) -> Vec<WindowJob> {
        for p in self.open.values_mut() {
            for slot in &mut p.slots {
                if *slot == Slot::Awaited {
                    *slot = Slot::Missing;
                }
            }
        }
        counters.utterances_flushed += self.open.len() as u64;
        self.release(id, rule, counters)
    }

    /// Marks modalities whose deadline passed at `now` as missing; true if the front closed.
    pub fn expire_deadlines(&mut self, now: Millis, max_utterance_ms: u64, deadline_ms: [u64; 3]) -> bool {
        for p in self.open.values_mut() {
            let base = p.base(max_utterance_ms);
            for (m, slot) in p.slots.iter_mut().enumerate() {
                if *slot == Slot::Awaited && now >= base.saturating_add(deadline_ms[m]) {
                    *slot = Slot::Missing;
                }
            }
        }
        self.open.values().next().is_some_and(Pending::is_closed)
    }
}
