//! The text frontend in the daemon: `Transcript` messages are encoded on a thread of their own,
//! never in the async IO tasks, and come back to the assembly task as the utterance's text
//! `Features` (with the sender's source and notice box, so a refusal of them still reaches the
//! sender). Transcripts that arrive together (several conversations, a burst) are encoded in one
//! batch, up to the frontend's batch size.
//!
//! Warm-up: `FrontendSide::start` readies the encoder for every shape a batch can take
//! (`TextFrontend::warm`: 1, 2, 4, 8 rows x every seq bucket) before it returns, which the
//! daemon does before READY, so no transcript pays for an engine's first use of a shape.
//!
//! Shutdown: the assembly task owns the only `FrontendLink` sender; once input has stopped it
//! drops it (`FrontendLink::close`), the worker encodes what was queued, and the encoded channel
//! closes when the worker ends, so the assembly applies every transcript it accepted before it
//! releases the open utterances.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use std::sync::Arc;

use super::shared::Input;
use super::stats::Stats;
use crate::frontend::TextFrontend;
use crate::protocol::{values, Features, Message, Modality, RejectReason, Transcript};

/// Transcripts waiting for the worker before a new one is refused (`Capacity`).
pub const TRANSCRIPT_QUEUE: usize = 256;

/// The assembly task's handle on the worker.
pub struct FrontendLink {
    tx: Option<SyncSender<Input>>,
    handle: Option<JoinHandle<()>>,
}

/// Why a transcript was not handed to the worker.
pub struct Refusal {
    pub reason: RejectReason,
    pub detail: String,
}

impl FrontendLink {
    /// Starts the worker; encoded transcripts come out of the returned receiver as `Features`.
    pub fn spawn(frontend: TextFrontend, stats: Arc<Stats>) -> std::io::Result<(FrontendLink, mpsc::Receiver<Input>)> {
        let (tx, rx) = sync_channel(TRANSCRIPT_QUEUE);
        let (out_tx, out_rx) = mpsc::channel(TRANSCRIPT_QUEUE);
        let handle = std::thread::Builder::new()
            .name("gsdnet-frontend".into())
            .spawn(move || worker(frontend, rx, out_tx, &stats))?;
        Ok((
            FrontendLink {
                tx: Some(tx),
                handle: Some(handle),
            },
            out_rx,
        ))
    }

    /// Queues a `Transcript` input for encoding.
    pub fn submit(&self, input: Input) -> Result<(), Refusal> {
        let Some(tx) = &self.tx else {
            return Err(Refusal {
                reason: RejectReason::TranscriptRefused,
                detail: "the text frontend has stopped".into(),
            });
        };
        match tx.try_send(input) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Refusal {
                reason: RejectReason::Capacity,
                detail: format!("{TRANSCRIPT_QUEUE} transcripts are waiting for the text frontend"),
            }),
            Err(TrySendError::Disconnected(_)) => Err(Refusal {
                reason: RejectReason::TranscriptRefused,
                detail: "the text frontend has stopped".into(),
            }),
        }
    }

    /// No more transcripts: the worker finishes the queued ones and ends.
    pub fn close(&mut self) {
        self.tx = None;
    }
}

impl Drop for FrontendLink {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                log::error!("text frontend thread panicked");
            }
        }
    }
}

/// The assembly task's side of the frontend: the link to the worker (none when the served
/// model's text is not a frontend) and the channel its encoded transcripts come back on.
#[derive(Default)]
pub struct FrontendSide {
    link: Option<FrontendLink>,
    encoded: Option<mpsc::Receiver<Input>>,
    warmed: usize,
}

impl FrontendSide {
    /// Warms `frontend` for every batch shape (logged once at info) and starts its worker, or
    /// returns a side that refuses every transcript. A warm-up failure is an `io::Error` naming
    /// the frontend.
    pub fn start(frontend: Option<TextFrontend>, stats: Arc<Stats>) -> std::io::Result<FrontendSide> {
        let Some(mut frontend) = frontend else {
            return Ok(FrontendSide::default());
        };
        let started = std::time::Instant::now();
        let warmed = frontend
            .warm(frontend.max_batch())
            .map_err(|e| std::io::Error::other(format!("the text frontend's warm-up failed: {e}")))?;
        let b = frontend.buckets();
        log::info!(
            "text frontend on {} ready for {warmed} shapes (1-{} rows x seq {:?}) in {:.3} s",
            frontend.provider(),
            b.call_shape(b.max_batch(), 1).0,
            b.seq(),
            started.elapsed().as_secs_f64()
        );
        let (link, encoded) = FrontendLink::spawn(frontend, stats)?;
        Ok(FrontendSide {
            link: Some(link),
            encoded: Some(encoded),
            warmed,
        })
    }

    /// How many encoder shapes `start` warmed (0 without a frontend).
    pub fn warmed(&self) -> usize {
        self.warmed
    }

    /// Hands a `Transcript` input to the worker, or refuses it (counted, the sender told);
    /// returns whether `input` was a transcript (and so is taken care of).
    pub fn divert(&self, input: &Input, stats: &Stats) -> bool {
        if !matches!(input.msg, Message::Transcript(_)) {
            return false;
        }
        let refused = match &self.link {
            Some(link) => link.submit(Input {
                msg: input.msg.clone(),
                source: Arc::clone(&input.source),
                notices: Arc::clone(&input.notices),
            }),
            None => Err(Refusal {
                reason: RejectReason::TranscriptRefused,
                detail: "the served model's text modality is not a frontend: send its text Features".into(),
            }),
        };
        if let Err(r) = refused {
            stats.reject(r.reason, &input.source, &r.detail);
            input
                .notices
                .record(r.reason, input.msg.conversation(), input.msg.utterance(), &r.detail);
            input.notices.applied_one();
        }
        true
    }

    /// The next encoded transcript (as text `Features`); never resolves without a frontend or
    /// once the worker has ended.
    pub async fn next(&mut self) -> Input {
        if let Some(rx) = self.encoded.as_mut() {
            if let Some(input) = rx.recv().await {
                return input;
            }
            self.encoded = None;
        }
        std::future::pending().await
    }

    /// Input has stopped: the worker encodes what it holds and ends; returns those inputs.
    pub async fn finish(&mut self) -> Vec<Input> {
        if let Some(link) = self.link.as_mut() {
            link.close();
        }
        let mut rest = Vec::new();
        if let Some(rx) = self.encoded.as_mut() {
            while let Some(input) = rx.recv().await {
                rest.push(input);
            }
        }
        self.encoded = None;
        self.link = None;
        rest
    }
}

/// Encodes batches until the link closes.
fn worker(mut frontend: TextFrontend, rx: Receiver<Input>, out: mpsc::Sender<Input>, stats: &Stats) {
    let max_batch = frontend.max_batch();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(input) => batch.push(input),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        for input in encode(&mut frontend, batch, stats) {
            if out.blocking_send(input).is_err() {
                return;
            }
        }
    }
}

/// The text `Features` of each transcript of `batch`; a batch the encoder fails on is refused
/// (counted, each sender told) and logged once.
fn encode(frontend: &mut TextFrontend, batch: Vec<Input>, stats: &Stats) -> Vec<Input> {
    let texts: Vec<&str> = batch
        .iter()
        .map(|i| match &i.msg {
            Message::Transcript(t) => t.text.as_str(),
            _ => "",
        })
        .collect();
    let embedded = frontend.embed(&texts);
    let vectors = match embedded {
        Ok(v) => v,
        Err(e) => {
            log::error!("text frontend failed on {} transcripts: {e}", batch.len());
            let detail = format!("the text frontend failed: {e}");
            for i in &batch {
                stats.reject(RejectReason::TranscriptRefused, &i.source, &detail);
                i.notices.record(
                    RejectReason::TranscriptRefused,
                    i.msg.conversation(),
                    i.msg.utterance(),
                    &detail,
                );
                i.notices.applied_one();
            }
            return Vec::new();
        }
    };
    batch
        .into_iter()
        .zip(vectors)
        .filter_map(|(input, v)| {
            let Message::Transcript(t) = &input.msg else {
                return None;
            };
            let msg = Message::Features(features_of(t, &v)?);
            Some(Input {
                msg,
                source: input.source,
                notices: input.notices,
            })
        })
        .collect()
}

/// The text `Features` a transcript stands for.
pub fn features_of(t: &Transcript, v: &[f32]) -> Option<Features> {
    Some(Features {
        conversation: t.conversation.clone(),
        utterance: t.utterance,
        speaker: t.speaker,
        modality: Modality::Text,
        timestamp_us: t.timestamp_us,
        values: values(v)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendKind, BackendOptions};
    use crate::frontend::test_config;

    #[test]
    fn start_warms_every_batch_shape_first() {
        let stats = Arc::new(Stats::default());
        assert_eq!(FrontendSide::start(None, Arc::clone(&stats)).expect("side").warmed(), 0);
        let Some(config) = test_config() else {
            return;
        };
        let mut front = TextFrontend::load(&config.dir, BackendKind::Tract, &BackendOptions::default()).expect("load");
        let all = front.buckets().shapes(front.max_batch()).len();
        assert_eq!(all, 4 * 8, "1, 2, 4, 8 rows x 8 seq buckets");
        front.set_max_batch(4);
        let side = FrontendSide::start(Some(front), stats).expect("side");
        assert_eq!(side.warmed(), 3 * 8, "1, 2, 4 rows x 8 seq buckets");
    }
}
