//! Utterance assembly: a pure state machine (no IO, no clock of its own) that turns sensor
//! messages into windows of closed utterances, one conversation at a time.
//!
//! Rules (docs/PROTOCOL.md, "Assembly"):
//! - an utterance opens at the first message naming it; its *base* time is when its
//!   `UtteranceEnd` arrived, or `opened + max_utterance_ms` while no end has arrived;
//! - modality m is missing when a `Dropout` names it or nothing arrived by `base + deadline[m]`;
//! - an utterance closes when no modality is still awaited; closed utterances are released in
//!   utterance-id order (a closed utterance waits for older open ones), each release appends to
//!   the conversation's sliding window of the last W utterances and yields one `WindowJob`;
//! - features or dropouts for the last released id whose modality did not arrive are `Late`; a
//!   start or end boundary for it is accepted and ignored;
//! - a message *behind* the released ids (an older id, or a repeat of a modality the last
//!   released utterance already has) is restart evidence: `RESTART_FRAMES` of them in a row, or
//!   one more than `max_open_utterances` ids behind, mean the sender restarted its ids without
//!   `Reset`: the conversation starts a new session and the held messages are applied to it;
//! - only accepted messages refresh a conversation's activity; a new conversation at
//!   `max_conversations` evicts one (`victim`) before it is refused;
//! - a conversation that is reset, evicted, restarted or shut down first releases its open
//!   utterances with what arrived (`flush`): accepted input is never dropped unseen;
//! - `ConversationEnd` ends every open utterance now and forgets the conversation as soon as
//!   none is open (at once when nothing was open), so its place is free without waiting for
//!   the idle expiry or eviction.
//!
//! The served model's `Modalities` decide what an utterance waits for: only the model's
//! modalities are awaited (the others are absent from the start), a `Features` must carry the
//! model's size for its modality (`WrongLength`), and `Features` or `Dropout` naming a modality
//! the model lacks is refused (`NoSuchModality`) before any other rule applies.
//!
//! Times are milliseconds of a monotonic clock supplied by the caller.

mod conversation;
#[cfg(test)]
mod end_tests;
mod lateness;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use conversation::{Conversation, Pending, Slot};
use lateness::Lateness;

use crate::daemon::stats::{is_loud, Escaped};
use crate::modality::Modalities;
use crate::protocol::{ConversationId, Features, Message, Modality, RejectReason};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// Consecutive messages behind the released ids that are taken for a sender restart.
pub const RESTART_FRAMES: usize = 3;

pub use crate::config::AssemblySettings;

/// One closed utterance; `features[m]` is `None` when modality m is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedUtterance {
    pub utterance: u32,
    pub speaker: u16,
    pub features: [Option<Vec<f32>>; 3],
}

impl ClosedUtterance {
    /// Availability bits, T = 1, A = 2, V = 4.
    pub fn avail_bits(&self) -> u8 {
        self.features
            .iter()
            .enumerate()
            .filter(|(_, f)| f.is_some())
            .map(|(m, _)| 1u8 << m)
            .sum()
    }
}

/// A window ready for inference: the last (at most W) released utterances in spoken order.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowJob {
    pub conversation: ConversationId,
    /// Incarnation of the conversation id (unique within a daemon run).
    pub session: u64,
    /// Position in the conversation (0-based count of released utterances) of `utterances[0]`.
    pub first_position: u64,
    pub utterances: Vec<ClosedUtterance>,
}

impl WindowJob {
    /// Id of the utterance whose release produced this window.
    pub fn closed_utterance(&self) -> u32 {
        self.utterances.last().map_or(0, |u| u.utterance)
    }
}

/// An input the assembler refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

fn reject(reason: RejectReason, detail: String) -> Rejection {
    Rejection { reason, detail }
}

/// What the assembler did besides releasing windows (mirrored into the daemon's counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Utterances closed with no modality at all (not inferable, skipped).
    pub empty_utterances: u64,
    pub restarts: u64,
    pub late_replayed: u64,
    pub evicted: u64,
    pub utterances_flushed: u64,
}

/// The assembly state of every open conversation.
#[derive(Debug)]
pub struct Assembler {
    settings: AssemblySettings,
    modalities: Modalities,
    conversations: HashMap<ConversationId, Conversation>,
    next_session: u64,
    counters: Counters,
    /// See `take_deferred`.
    deferred: Vec<WindowJob>,
}

impl Assembler {
    /// An assembler for a model with `modalities` (their sizes are what `Features` must carry).
    pub fn new(settings: AssemblySettings, modalities: Modalities) -> Self {
        Assembler {
            settings,
            modalities,
            conversations: HashMap::new(),
            next_session: 1,
            counters: Counters::default(),
            deferred: Vec::new(),
        }
    }

    pub fn settings(&self) -> &AssemblySettings {
        &self.settings
    }

    pub fn modalities(&self) -> &Modalities {
        &self.modalities
    }

    pub fn open_conversations(&self) -> usize {
        self.conversations.len()
    }

    /// Open (not yet released) utterances over all conversations.
    pub fn open_utterances(&self) -> usize {
        self.conversations.values().map(|c| c.open.len()).sum()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Applies one sensor message; returns the windows released by it. Messages only the
    /// daemon sends are `Unexpected`. Deadlines and idle expiry up to `now` apply first, so the
    /// result does not depend on how recently `poll` ran.
    pub fn handle(&mut self, msg: &Message, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        let mut jobs = self.poll(now);
        match self.handle_now(msg, now) {
            Ok(more) => {
                jobs.extend(more);
                Ok(jobs)
            }
            // Windows released before the refusal are not lost with it: the deadlines' first
            // (`poll` left nothing deferred), then any deferred while handling, in release order.
            Err(r) => {
                jobs.append(&mut self.deferred);
                self.deferred = jobs;
                Err(r)
            }
        }
    }

    /// Windows released while handling a message that was then rejected; `poll` returns them.
    fn take_deferred(&mut self) -> Vec<WindowJob> {
        std::mem::take(&mut self.deferred)
    }

    fn handle_now(&mut self, msg: &Message, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        let (conv, utt) = match msg {
            Message::Features(f) => {
                self.check_features(f)?;
                (&f.conversation, f.utterance)
            }
            Message::UtteranceStart(b) | Message::UtteranceEnd(b) => (&b.conversation, b.utterance),
            Message::Dropout(d) => {
                self.check_modality(d.modality)?;
                (&d.conversation, d.utterance)
            }
            Message::Reset { conversation } => return Ok(self.reset(conversation)),
            Message::ConversationEnd { conversation } => return Ok(self.end(conversation, now)),
            other => {
                return Err(reject(
                    RejectReason::Unexpected,
                    format!("{} is not sensor input", tag(other)),
                ))
            }
        };
        match self.lateness(conv, utt, msg) {
            Lateness::Fresh => self.apply(msg, now),
            Lateness::Ignored => Ok(Vec::new()),
            Lateness::Late => Err(reject(
                RejectReason::Late,
                format!("{conv} utterance {utt} {} came after it closed", tag(msg)),
            )),
            Lateness::Behind { far } => self.on_behind(conv, utt, msg, far, now),
        }
    }

    /// The model's size for `m`, or `NoSuchModality`.
    fn check_modality(&self, m: Modality) -> Result<usize, Rejection> {
        self.modalities.size(m).ok_or_else(|| {
            let detail = format!("the model has no {m} modality (it has {})", self.modalities.letters());
            reject(RejectReason::NoSuchModality, detail)
        })
    }

    fn check_features(&self, f: &Features) -> Result<(), Rejection> {
        let size = self.check_modality(f.modality)?;
        if f.values.len() != size {
            let detail = format!(
                "{} needs {size} values for this model, got {}",
                f.modality,
                f.values.len()
            );
            return Err(reject(RejectReason::WrongLength, detail));
        }
        if let Some(i) = f.values.iter().position(|v| !v.is_finite()) {
            let detail = format!("{} value {i} is {}", f.modality, f.values[i]);
            return Err(reject(RejectReason::NonFinite, detail));
        }
        Ok(())
    }

    /// Removes `conv` after releasing its open utterances with what arrived
    /// (`Conversation::flush`): the removed conversation and the windows released, or `None`
    /// when `conv` was not open. Reset, eviction and restart all end a session this way.
    fn remove_flushed(&mut self, conv: &ConversationId) -> Option<(Conversation, Vec<WindowJob>)> {
        let mut c = self.conversations.remove(conv)?;
        let jobs = c.flush(
            conv,
            (self.settings.window, self.settings.windowing),
            &mut self.counters,
        );
        Some((c, jobs))
    }

    fn new_session(&mut self) -> u64 {
        self.next_session += 1;
        self.next_session - 1
    }

    /// Forgets `conv` after releasing its open utterances.
    fn reset(&mut self, conv: &ConversationId) -> Vec<WindowJob> {
        self.remove_flushed(conv).map(|(_, jobs)| jobs).unwrap_or_default()
    }

    /// Ends `conv` (`Conversation::end`): what closes now is released; forgotten when done.
    fn end(&mut self, conv: &ConversationId, now: Millis) -> Vec<WindowJob> {
        let Some(c) = self.conversations.get_mut(conv) else {
            return Vec::new();
        };
        c.end(now);
        let jobs = c.release(
            conv,
            (self.settings.window, self.settings.windowing),
            &mut self.counters,
        );
        if c.is_done() {
            self.conversations.remove(conv);
        }
        jobs
    }

    /// The normal path of a message that is not late: admit, open, record, release.
    fn apply(&mut self, msg: &Message, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        let (conv, utt, speaker) = match msg {
            Message::Features(f) => (&f.conversation, f.utterance, Some(f.speaker)),
            Message::UtteranceStart(b) | Message::UtteranceEnd(b) => (&b.conversation, b.utterance, Some(b.speaker)),
            Message::Dropout(d) => (&d.conversation, d.utterance, None),
            other => {
                return Err(reject(
                    RejectReason::Unexpected,
                    format!("{} is not sensor input", tag(other)),
                ))
            }
        };
        let mut jobs = self.admit(conv, now)?;
        let p = self.pending(conv, utt, now)?;
        if let Some(s) = speaker {
            p.speaker.get_or_insert(s);
        }
        match msg {
            Message::Features(f) => {
                let m = f.modality.index();
                if let Slot::Arrived(_) = p.slots[m] {
                    let detail = format!("{conv} utterance {utt} {:?} already arrived", f.modality);
                    return Err(reject(RejectReason::Duplicate, detail));
                }
                // A late arrival after a dropout report still counts: data beats a missing mark.
                p.slots[m] = Slot::Arrived(f.values.to_vec());
            }
            Message::UtteranceEnd(_) => {
                p.ended.get_or_insert(now);
            }
            Message::Dropout(d) => {
                let slot = &mut p.slots[d.modality.index()];
                if *slot == Slot::Awaited {
                    *slot = Slot::Missing;
                }
            }
            _ => {}
        }
        if let Some(c) = self.conversations.get_mut(conv) {
            c.last_activity = now;
            c.behind.clear();
            jobs.extend(c.release(
                conv,
                (self.settings.window, self.settings.windowing),
                &mut self.counters,
            ));
            if c.is_done() {
                self.conversations.remove(conv);
            }
        }
        Ok(jobs)
    }

    /// Makes room for `conv` if it is new: evicts `victim` (its open utterances flushed) when
    /// `max_conversations` are open, refuses with `Capacity` when none may be evicted.
    fn admit(&mut self, conv: &ConversationId, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        if self.conversations.contains_key(conv) {
            return Ok(Vec::new());
        }
        let mut jobs = Vec::new();
        if self.conversations.len() >= self.settings.max_conversations {
            let Some(victim) = self.victim(now) else {
                let detail = format!(
                    "{} conversations open and active, {conv} refused",
                    self.conversations.len()
                );
                return Err(reject(RejectReason::Capacity, detail));
            };
            if let Some((_, flushed)) = self.remove_flushed(&victim) {
                jobs = flushed;
            }
            self.counters.evicted += 1;
            if is_loud(self.counters.evicted) {
                log::warn!(
                    "conversation {} evicted for {} ({} evictions so far)",
                    Escaped(&victim),
                    Escaped(conv),
                    self.counters.evicted
                );
            }
        }
        let session = self.new_session();
        self.conversations.insert(conv.clone(), Conversation::new(session, now));
        Ok(jobs)
    }

    /// The conversation to evict: one that released nothing and holds no data, then one that
    /// released nothing, then one idle for `evict_idle_ms`; least recently active first.
    fn victim(&self, now: Millis) -> Option<ConversationId> {
        let idle = self.settings.evict_idle_ms;
        self.conversations
            .iter()
            .filter(|(_, c)| c.eviction_rank() < 2 || now.saturating_sub(c.last_activity) >= idle)
            .min_by_key(|(_, c)| (c.eviction_rank(), c.last_activity, c.session))
            .map(|(id, _)| id.clone())
    }

    /// The pending utterance `utt` of the admitted `conv`, opened now if new.
    fn pending(&mut self, conv: &ConversationId, utt: u32, now: Millis) -> Result<&mut Pending, Rejection> {
        let max_open = self.settings.max_open_utterances;
        let Some(c) = self.conversations.get_mut(conv) else {
            return Err(reject(RejectReason::Capacity, format!("{conv} is not open")));
        };
        if !c.open.contains_key(&utt) && c.open.len() >= max_open {
            let detail = format!("{conv} has {} utterances open, {utt} refused", c.open.len());
            return Err(reject(RejectReason::Capacity, detail));
        }
        let mods = &self.modalities;
        Ok(c.open.entry(utt).or_insert_with(|| Pending::new(now, mods)))
    }

    /// Marks every modality whose deadline passed as missing, releases what closed and forgets
    /// idle conversations.
    pub fn poll(&mut self, now: Millis) -> Vec<WindowJob> {
        let mut jobs = self.take_deferred();
        let s = &self.settings;
        for (id, c) in &mut self.conversations {
            if c.expire_deadlines(now, s.max_utterance_ms, s.deadline_ms) {
                jobs.extend(c.release(id, (s.window, s.windowing), &mut self.counters));
            }
        }
        let idle = s.idle_conversation_ms;
        self.conversations
            .retain(|_, c| !c.is_done() && (!c.open.is_empty() || now.saturating_sub(c.last_activity) < idle));
        jobs
    }

    /// Releases every open utterance of every conversation with what has arrived (shutdown).
    pub fn flush_all(&mut self) -> Vec<WindowJob> {
        let mut jobs = self.take_deferred();
        let mut ids: Vec<(u64, ConversationId)> = self
            .conversations
            .iter()
            .map(|(id, c)| (c.session, id.clone()))
            .collect();
        ids.sort();
        for (_, id) in ids {
            if let Some(c) = self.conversations.get_mut(&id) {
                jobs.extend(c.flush(&id, (self.settings.window, self.settings.windowing), &mut self.counters));
            }
        }
        jobs
    }

    /// Earliest time at which `poll` has something to do: a modality deadline, or windows
    /// deferred by a rejected message (now). Idle expiry is not one: `handle` applies it first,
    /// so a conversation past it is new to the next message whenever `poll` last ran.
    pub fn next_deadline(&self) -> Option<Millis> {
        let s = &self.settings;
        if !self.deferred.is_empty() {
            return Some(0);
        }
        let deadlines = self.conversations.values().flat_map(|c| c.open.values()).flat_map(|p| {
            let base = p.base(s.max_utterance_ms);
            p.slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| **slot == Slot::Awaited)
                .map(move |(m, _)| base.saturating_add(s.deadline_ms[m]))
        });
        deadlines.min()
    }
}

/// Short name of a message kind for logs.
pub fn tag(msg: &Message) -> &'static str {
    msg.kind()
}
