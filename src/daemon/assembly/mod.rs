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
//! - features or dropouts naming an utterance at or below the last released id are `Late`;
//!   a start or end boundary for it is accepted and ignored.
//! Times are milliseconds of a monotonic clock supplied by the caller.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::protocol::{ConversationId, Features, Message, RejectReason};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// Validated assembly parameters (from the board profile).
#[derive(Debug, Clone, PartialEq)]
pub struct AssemblySettings {
    /// Feature dimension per modality, T, A, V.
    pub dims: [usize; 3],
    /// Sliding window length W.
    pub window: usize,
    /// Per-modality wait after the utterance's base time.
    pub deadline_ms: [u64; 3],
    /// Fallback end of an utterance whose `UtteranceEnd` never came, counted from its opening.
    pub max_utterance_ms: u64,
    pub max_open_utterances: usize,
    pub max_conversations: usize,
    /// A conversation with nothing open and no message for this long is forgotten.
    pub idle_conversation_ms: u64,
}

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
        self.features.iter().enumerate().filter(|(_, f)| f.is_some()).map(|(m, _)| 1u8 << m).sum()
    }
}

/// A window ready for inference: the last (at most W) released utterances in spoken order.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowJob {
    pub conversation: ConversationId,
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

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Awaited,
    Arrived(Vec<f32>),
    Missing,
}

#[derive(Debug)]
struct Pending {
    speaker: Option<u16>,
    opened: Millis,
    ended: Option<Millis>,
    slots: [Slot; 3],
}

impl Pending {
    fn base(&self, max_utterance_ms: u64) -> Millis {
        self.ended.unwrap_or(self.opened.saturating_add(max_utterance_ms))
    }

    fn is_closed(&self) -> bool {
        self.slots.iter().all(|s| *s != Slot::Awaited)
    }
}

#[derive(Debug, Default)]
struct Conversation {
    open: BTreeMap<u32, Pending>,
    window: VecDeque<ClosedUtterance>,
    last_released: Option<u32>,
    released: u64,
    last_activity: Millis,
}

/// The assembly state of every open conversation.
#[derive(Debug)]
pub struct Assembler {
    settings: AssemblySettings,
    conversations: HashMap<ConversationId, Conversation>,
    /// Utterances closed with no modality at all (not inferable, skipped).
    pub empty_utterances: u64,
}

impl Assembler {
    pub fn new(settings: AssemblySettings) -> Self {
        Assembler { settings, conversations: HashMap::new(), empty_utterances: 0 }
    }

    pub fn settings(&self) -> &AssemblySettings {
        &self.settings
    }

    pub fn open_conversations(&self) -> usize {
        self.conversations.len()
    }

    /// Applies one sensor message; returns the windows released by it (all modalities of the
    /// oldest open utterances arrived). Messages only the daemon sends are `Unexpected`.
    pub fn handle(&mut self, msg: &Message, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        match msg {
            Message::Features(f) => self.on_features(f, now),
            Message::UtteranceStart(b) | Message::UtteranceEnd(b) if self.is_released(&b.conversation, b.utterance) => {
                // A boundary after every modality arrived is normal (features can beat the VAD).
                Ok(Vec::new())
            }
            Message::UtteranceStart(b) => {
                let p = self.pending(&b.conversation, b.utterance, now)?;
                p.speaker.get_or_insert(b.speaker);
                Ok(Vec::new())
            }
            Message::UtteranceEnd(b) => {
                let p = self.pending(&b.conversation, b.utterance, now)?;
                p.speaker.get_or_insert(b.speaker);
                p.ended.get_or_insert(now);
                Ok(Vec::new())
            }
            Message::Dropout(d) => {
                let p = self.pending(&d.conversation, d.utterance, now)?;
                let slot = &mut p.slots[d.modality.index()];
                if *slot == Slot::Awaited {
                    *slot = Slot::Missing;
                }
                Ok(self.release(&d.conversation))
            }
            Message::Reset { conversation } => {
                self.conversations.remove(conversation);
                Ok(Vec::new())
            }
            other => Err(reject(RejectReason::Unexpected, format!("{} is not sensor input", tag(other)))),
        }
    }

    fn on_features(&mut self, f: &Features, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        let m = f.modality.index();
        let dim = self.settings.dims[m];
        if f.values.len() != dim {
            let detail = format!("{:?} needs {dim} values, got {}", f.modality, f.values.len());
            return Err(reject(RejectReason::WrongLength, detail));
        }
        if let Some(i) = f.values.iter().position(|v| !v.is_finite()) {
            let detail = format!("{:?} value {i} is {}", f.modality, f.values[i]);
            return Err(reject(RejectReason::NonFinite, detail));
        }
        let p = self.pending(&f.conversation, f.utterance, now)?;
        p.speaker.get_or_insert(f.speaker);
        match p.slots[m] {
            Slot::Arrived(_) => {
                let detail = format!("{} utterance {} {:?} already arrived", f.conversation, f.utterance, f.modality);
                return Err(reject(RejectReason::Duplicate, detail));
            }
            // A late arrival after a dropout report still counts: data beats a missing mark.
            Slot::Awaited | Slot::Missing => p.slots[m] = Slot::Arrived(f.values.to_vec()),
        }
        Ok(self.release(&f.conversation))
    }

    fn is_released(&self, conv: &ConversationId, utt: u32) -> bool {
        self.conversations.get(conv).and_then(|c| c.last_released).is_some_and(|last| utt <= last)
    }

    /// The pending utterance `utt` of `conv`, opened now if new.
    fn pending(&mut self, conv: &ConversationId, utt: u32, now: Millis) -> Result<&mut Pending, Rejection> {
        if !self.conversations.contains_key(conv) && self.conversations.len() >= self.settings.max_conversations {
            let detail = format!("{} conversations open, {conv} refused", self.conversations.len());
            return Err(reject(RejectReason::Capacity, detail));
        }
        let max_open = self.settings.max_open_utterances;
        let c = self.conversations.entry(conv.clone()).or_default();
        c.last_activity = now;
        if c.last_released.is_some_and(|last| utt <= last) {
            let detail = format!("{conv} utterance {utt} is at or before the last closed one");
            return Err(reject(RejectReason::Late, detail));
        }
        if !c.open.contains_key(&utt) && c.open.len() >= max_open {
            let detail = format!("{conv} has {} utterances open, {utt} refused", c.open.len());
            return Err(reject(RejectReason::Capacity, detail));
        }
        Ok(c.open.entry(utt).or_insert_with(|| Pending {
            speaker: None,
            opened: now,
            ended: None,
            slots: [Slot::Awaited, Slot::Awaited, Slot::Awaited],
        }))
    }

    /// Marks every modality whose deadline passed as missing, releases what closed and forgets
    /// idle conversations.
    pub fn poll(&mut self, now: Millis) -> Vec<WindowJob> {
        let (max_utterance_ms, deadline_ms) = (self.settings.max_utterance_ms, self.settings.deadline_ms);
        let mut touched = Vec::new();
        for (id, c) in &mut self.conversations {
            for p in c.open.values_mut() {
                let base = p.base(max_utterance_ms);
                for (m, slot) in p.slots.iter_mut().enumerate() {
                    if *slot == Slot::Awaited && now >= base.saturating_add(deadline_ms[m]) {
                        *slot = Slot::Missing;
                    }
                }
            }
            if c.open.values().next().is_some_and(Pending::is_closed) {
                touched.push(id.clone());
            }
        }
        let mut jobs = Vec::new();
        for id in touched {
            jobs.extend(self.release(&id));
        }
        let idle = self.settings.idle_conversation_ms;
        self.conversations
            .retain(|_, c| !c.open.is_empty() || now.saturating_sub(c.last_activity) < idle);
        jobs
    }

    /// Earliest time at which `poll` has something to do (a modality deadline).
    pub fn next_deadline(&self) -> Option<Millis> {
        let s = &self.settings;
        let deadlines = self.conversations.values().flat_map(|c| c.open.values()).flat_map(|p| {
            let base = p.base(s.max_utterance_ms);
            p.slots.iter().enumerate().filter(|(_, slot)| **slot == Slot::Awaited).map(move |(m, _)| base.saturating_add(s.deadline_ms[m]))
        });
        deadlines.min()
    }

    /// Releases the closed utterances at the front of `conv`, one window per utterance.
    fn release(&mut self, conv: &ConversationId) -> Vec<WindowJob> {
        let window = self.settings.window;
        let mut jobs = Vec::new();
        let Some(c) = self.conversations.get_mut(conv) else { return jobs };
        while let Some(entry) = c.open.first_entry() {
            if !entry.get().is_closed() {
                break;
            }
            let (utt, p) = entry.remove_entry();
            c.last_released = Some(utt);
            let features = p.slots.map(|s| match s {
                Slot::Arrived(v) => Some(v),
                _ => None,
            });
            if features.iter().all(Option::is_none) {
                self.empty_utterances += 1;
                log::debug!("{conv} utterance {utt}: no modality arrived, skipped");
                continue;
            }
            c.window.push_back(ClosedUtterance { utterance: utt, speaker: p.speaker.unwrap_or(0), features });
            c.released += 1;
            while c.window.len() > window {
                c.window.pop_front();
            }
            jobs.push(WindowJob {
                conversation: conv.clone(),
                first_position: c.released - c.window.len() as u64,
                utterances: c.window.iter().cloned().collect(),
            });
        }
        jobs
    }
}

/// Short name of a message kind for logs.
pub fn tag(msg: &Message) -> &'static str {
    match msg {
        Message::Features(_) => "Features",
        Message::UtteranceStart(_) => "UtteranceStart",
        Message::UtteranceEnd(_) => "UtteranceEnd",
        Message::Dropout(_) => "Dropout",
        Message::Reset { .. } => "Reset",
        Message::Subscribe => "Subscribe",
        Message::StatusRequest => "StatusRequest",
        Message::Status(_) => "Status",
        Message::Result(_) => "Result",
    }
}
