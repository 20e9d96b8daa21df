//! Input behind what a conversation released: whether a message naming an utterance at or
//! before the last released id is fresh, a boundary to ignore, late, or restart evidence
//! (`Lateness`); holding that evidence, and the restart it leads to: the old session flushed,
//! a new one opened, the held messages replayed to it (rules in the parent module's docs).

use super::conversation::Conversation;
use super::{reject, tag, Assembler, Millis, Rejection, WindowJob, RESTART_FRAMES};
use crate::daemon::stats::{is_loud, Escaped};
use crate::protocol::{ConversationId, Message, Modality, RejectReason};

/// How a message naming `(conversation, utterance)` relates to what was released.
pub(super) enum Lateness {
    Fresh,
    /// A boundary for the last released utterance: accepted, nothing to do.
    Ignored,
    Late,
    Behind {
        far: bool,
    },
}

impl Assembler {
    pub(super) fn lateness(&self, conv: &ConversationId, utt: u32, msg: &Message) -> Lateness {
        let Some(c) = self.conversations.get(conv) else {
            return Lateness::Fresh;
        };
        let Some(last) = c.last_released else {
            return Lateness::Fresh;
        };
        if utt > last {
            return Lateness::Fresh;
        }
        if utt < last {
            return Lateness::Behind {
                far: last - utt > self.settings.max_open_utterances as u32,
            };
        }
        let repeats = |m: Modality| c.last_avail & (1 << m.index()) != 0;
        match msg {
            Message::Features(f) if repeats(f.modality) => Lateness::Behind { far: false },
            Message::Dropout(d) if repeats(d.modality) => Lateness::Behind { far: false },
            Message::Features(_) | Message::Dropout(_) => Lateness::Late,
            _ => Lateness::Ignored,
        }
    }

    /// Holds a message behind the released ids; restarts the conversation once the evidence
    /// suffices, else refuses it like late input (boundaries are ignored, as before a restart).
    pub(super) fn on_behind(
        &mut self,
        conv: &ConversationId,
        utt: u32,
        msg: &Message,
        far: bool,
        now: Millis,
    ) -> Result<Vec<WindowJob>, Rejection> {
        let Some(c) = self.conversations.get_mut(conv) else {
            return self.apply(msg, now);
        };
        c.behind.push(msg.clone());
        if far || c.behind.len() >= RESTART_FRAMES {
            return self.restart(conv, now);
        }
        match msg {
            Message::UtteranceStart(_) | Message::UtteranceEnd(_) => Ok(Vec::new()),
            _ => {
                let last = c.last_released.unwrap_or(0);
                Err(reject(
                    RejectReason::Late,
                    format!("{conv} utterance {utt} is behind the last closed one ({last})"),
                ))
            }
        }
    }

    /// A new session for `conv`: the old one's open utterances are flushed, then every held
    /// message is applied to the new session, the last one being the current message: its own
    /// refusal (e.g. `Duplicate` of a held one) is the answer, the windows are then deferred.
    fn restart(&mut self, conv: &ConversationId, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        let Some((old, mut jobs)) = self.remove_flushed(conv) else {
            return Ok(Vec::new());
        };
        self.counters.restarts += 1;
        if is_loud(self.counters.restarts) {
            log::warn!(
                "{}: sender restarted its utterance ids without Reset (last closed {:?}); new session ({} restarts so far)",
                Escaped(conv),
                old.last_released,
                self.counters.restarts
            );
        }
        let session = self.new_session();
        self.conversations.insert(conv.clone(), Conversation::new(session, now));
        let Some((current, held)) = old.behind.split_last() else {
            return Ok(jobs);
        };
        for earlier in held {
            // Refused at arrival (or ignored, for boundaries); a second refusal changes nothing.
            match self.replay(conv, earlier, now) {
                Ok(j) => {
                    if !matches!(earlier, Message::UtteranceStart(_) | Message::UtteranceEnd(_)) {
                        self.counters.late_replayed += 1;
                    }
                    jobs.extend(j);
                }
                Err(r) => log::debug!(
                    "{}: held {} not applied after restart: {:?}: {}",
                    Escaped(conv),
                    tag(earlier),
                    r.reason,
                    Escaped(&r.detail)
                ),
            }
        }
        match self.replay(conv, current, now) {
            Ok(j) => {
                jobs.extend(j);
                Ok(jobs)
            }
            Err(r) => {
                self.deferred.extend(jobs);
                Err(r)
            }
        }
    }

    /// A held message applied to the new session under its own lateness rules, except that one
    /// behind what the new session released is refused (`Late`; a boundary ignored) instead of
    /// held again: a replay never starts another restart, nor reopens a released utterance
    /// (two held messages can close an utterance of a two-modality model).
    fn replay(&mut self, conv: &ConversationId, msg: &Message, now: Millis) -> Result<Vec<WindowJob>, Rejection> {
        let boundary = matches!(msg, Message::UtteranceStart(_) | Message::UtteranceEnd(_));
        let utt = match msg {
            Message::Features(f) => f.utterance,
            Message::Dropout(d) => d.utterance,
            Message::UtteranceStart(b) | Message::UtteranceEnd(b) => b.utterance,
            _ => return self.apply(msg, now),
        };
        match self.lateness(conv, utt, msg) {
            Lateness::Fresh => self.apply(msg, now),
            Lateness::Ignored => Ok(Vec::new()),
            Lateness::Behind { .. } if boundary => Ok(Vec::new()),
            Lateness::Late | Lateness::Behind { .. } => Err(reject(
                RejectReason::Late,
                format!(
                    "{conv} utterance {utt} {} came after it closed (replayed after a restart)",
                    tag(msg)
                ),
            )),
        }
    }
}
