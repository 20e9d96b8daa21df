//! Replay: turning a recording (the core's format, `recording.rs`) into the timed message
//! sequence a set of sensors would send, with modalities dropped over time spans or by an
//! evaluation mask (`plan`), and sending it (`send`). The reverse, assembled utterances to a
//! recording, is the daemon's `daemon::recorder`.
//!
//! Only the served model's modalities are sent (`ReplayOptions::modalities`, else the
//! recording's): an entry the recording lacks, or a drop span or the mask hides, is a `Dropout`.
//!
//! Each conversation starts with `Reset` (its ids start again whatever a previous run left) and
//! ends with `ConversationEnd` (its place at the daemon is free at once).
//!
//! Timeline: utterance k of the replay sits at its recorded timestamp relative to the first one
//! when every utterance has one, else at `k * interval_ms`. Drop spans refer to this timeline
//! whatever the pacing, so a replay at maximum speed drops the same entries as one in real time.

use std::str::FromStr;

use thiserror::Error;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::masks;
use crate::modality::Modalities;
use crate::protocol::{self, encode_frame, Boundary, ConversationId, Dropout, Features, Message, Modality};
use crate::recording::{Recording, UtteranceRecord};

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error("conversation id `{0}` is longer than {max} bytes", max = protocol::MAX_CONVERSATION_ID)]
    ConversationId(String),
    #[error("utterance `{id}`: speaker {speaker} does not fit the protocol's u16")]
    Speaker { id: String, speaker: u32 },
    #[error("utterance `{id}`: {modality:?} has {len} values, more than the protocol's {max}", max = crate::capacity::MAX_FEATURE_SIZE)]
    TooManyValues { id: String, modality: Modality, len: usize },
    #[error("bad drop span `{0}`: expected MODALITY:FROM-TO in seconds, e.g. visual:10-25")]
    DropSpan(String),
    #[error(transparent)]
    Mask(#[from] masks::MaskError),
}

/// A modality dropped over `[from_s, to_s)` of the replay timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropSpan {
    pub modality: Modality,
    pub from_s: f64,
    pub to_s: f64,
}

impl FromStr for DropSpan {
    type Err = ReplayError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ReplayError::DropSpan(s.to_string());
        let (m, span) = s.split_once(':').ok_or_else(bad)?;
        let modality = match m.trim().to_ascii_lowercase().as_str() {
            "t" | "text" => Modality::Text,
            "a" | "audio" | "mic" => Modality::Audio,
            "v" | "visual" | "camera" => Modality::Visual,
            _ => return Err(bad()),
        };
        let (a, b) = span.split_once('-').ok_or_else(bad)?;
        let from_s: f64 = a.trim().parse().map_err(|_| bad())?;
        let to_s: f64 = b.trim().parse().map_err(|_| bad())?;
        if !(from_s.is_finite() && to_s.is_finite() && from_s <= to_s) {
            return Err(bad());
        }
        Ok(DropSpan { modality, from_s, to_s })
    }
}

/// How to turn a recording into messages.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Spacing of utterances without recorded timestamps.
    pub interval_ms: u64,
    pub drops: Vec<DropSpan>,
    /// Evaluation mask (rate, seed, the model's modalities): entries it hides are sent as
    /// dropouts.
    pub mask: Option<(f64, u64, Modalities)>,
    /// The served model's modalities: only these are sent (an entry the recording lacks as a
    /// dropout), so a model without a modality never sees it. `None`: the recording's.
    pub modalities: Option<Modalities>,
}

/// One message at its time on the replay timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at_ms: u64,
    pub msg: Message,
}

/// Sizes of the modalities a recording holds (the longest vector of each, 0 when none has it).
fn sizes_of(rec: &Recording) -> [usize; 3] {
    let mut sizes = [0usize; 3];
    for u in rec.conversations.iter().flat_map(|c| &c.utterances) {
        for (s, f) in sizes.iter_mut().zip(&u.features) {
            if let Some(f) = f {
                *s = (*s).max(f.len());
            }
        }
    }
    sizes
}

/// The modalities a recording holds (with their sizes), as a model trained on it would have
/// them; `None` when it holds fewer than two. `--mask-rate` masks over these, as `gsdnet eval`
/// does over the model's, unless the model is named.
pub fn modalities_of(rec: &Recording) -> Option<Modalities> {
    Modalities::new(sizes_of(rec))
}

/// Where an utterance sits on the replay timeline, and which of its entries are hidden.
struct Slot<'a> {
    cid: &'a ConversationId,
    at_ms: u64,
    hidden: [bool; 3],
}

/// The message sequence of a whole recording.
pub fn plan(rec: &Recording, opts: &ReplayOptions) -> Result<Vec<Step>, ReplayError> {
    let all: Vec<&UtteranceRecord> = rec.conversations.iter().flat_map(|c| &c.utterances).collect();
    let recorded = all.iter().all(|u| u.timestamp_ms.is_some());
    let t0 = all.iter().filter_map(|u| u.timestamp_ms).min().unwrap_or(0);
    let sent = match opts.modalities {
        Some(m) => Modality::ALL.map(|x| m.has(x)),
        None => sizes_of(rec).map(|s| s > 0),
    };
    let mut steps = Vec::new();
    let mut k = 0u64;
    for conv in &rec.conversations {
        let cid = protocol::conversation_id(&conv.id).ok_or_else(|| ReplayError::ConversationId(conv.id.clone()))?;
        let mask = conversation_mask(opts, &conv.id, conv.utterances.len())?;
        let first = if recorded {
            conv.utterances
                .first()
                .and_then(|u| u.timestamp_ms)
                .map_or(0, |t| t - t0)
        } else {
            k * opts.interval_ms
        };
        steps.push(Step {
            at_ms: first,
            msg: Message::Reset {
                conversation: cid.clone(),
            },
        });
        let mut last = first;
        for (i, u) in conv.utterances.iter().enumerate() {
            let at_ms = if recorded {
                u.timestamp_ms.map_or(0, |t| t - t0)
            } else {
                k * opts.interval_ms
            };
            k += 1;
            let hidden = held_back(opts, mask.as_ref().map(|mk| &mk[i]), at_ms);
            utterance_steps(
                u,
                &Slot {
                    cid: &cid,
                    at_ms,
                    hidden,
                },
                sent,
                &mut steps,
            )?;
            last = at_ms;
        }
        steps.push(Step {
            at_ms: last,
            msg: Message::ConversationEnd {
                conversation: cid.clone(),
            },
        });
    }
    Ok(steps)
}

/// The protocol mask of a conversation of `n` utterances, when `opts.mask` asks for one.
fn conversation_mask(opts: &ReplayOptions, conv_id: &str, n: usize) -> Result<Option<Vec<masks::Avail>>, ReplayError> {
    let Some((rate, seed, mods)) = opts.mask else {
        return Ok(None);
    };
    Ok(Some(masks::random_mask(
        seed,
        masks::check_rate(rate)?,
        conv_id,
        n,
        &mods,
    )))
}

/// The modalities an utterance sent at `at_ms` holds back: those under a drop span covering
/// `at_ms`, and those its mask row (if any) marks missing.
fn held_back(opts: &ReplayOptions, mask_row: Option<&masks::Avail>, at_ms: u64) -> [bool; 3] {
    Modality::ALL.map(|m| {
        let dropped = opts
            .drops
            .iter()
            .any(|d| d.modality == m && (d.from_s * 1000.0) <= at_ms as f64 && (at_ms as f64) < d.to_s * 1000.0);
        dropped || mask_row.is_some_and(|row| !row[m.index()])
    })
}

/// Start, one `Features` or `Dropout` per sent modality, end.
fn utterance_steps(
    u: &UtteranceRecord,
    slot: &Slot<'_>,
    sent: [bool; 3],
    steps: &mut Vec<Step>,
) -> Result<(), ReplayError> {
    let (conversation, at_ms, timestamp_us) = (slot.cid.clone(), slot.at_ms, slot.at_ms * 1000);
    let speaker = u16::try_from(u.speaker).map_err(|_| ReplayError::Speaker {
        id: u.id.clone(),
        speaker: u.speaker,
    })?;
    let utterance = u.position;
    let b = Boundary {
        conversation: conversation.clone(),
        utterance,
        speaker,
        timestamp_us,
    };
    steps.push(Step {
        at_ms,
        msg: Message::UtteranceStart(b.clone()),
    });
    for m in Modality::ALL.into_iter().filter(|m| sent[m.index()]) {
        let msg = match (&u.features[m.index()], slot.hidden[m.index()]) {
            (Some(v), false) => {
                let values = protocol::values(v).ok_or(ReplayError::TooManyValues {
                    id: u.id.clone(),
                    modality: m,
                    len: v.len(),
                })?;
                Message::Features(Features {
                    conversation: conversation.clone(),
                    utterance,
                    speaker,
                    modality: m,
                    timestamp_us,
                    values,
                })
            }
            _ => Message::Dropout(Dropout {
                conversation: conversation.clone(),
                utterance,
                modality: m,
                timestamp_us,
            }),
        };
        steps.push(Step { at_ms, msg });
    }
    steps.push(Step {
        at_ms,
        msg: Message::UtteranceEnd(b),
    });
    Ok(())
}

/// Writes the plan to a stream, pacing on the tokio clock when `realtime`.
pub async fn send<W: AsyncWrite + Unpin>(out: &mut W, steps: &[Step], realtime: bool) -> std::io::Result<()> {
    let start = tokio::time::Instant::now();
    for s in steps {
        if realtime {
            tokio::time::sleep_until(start + std::time::Duration::from_millis(s.at_ms)).await;
        }
        out.write_all(&encode_frame(&s.msg)).await?;
    }
    out.flush().await
}
