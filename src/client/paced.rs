//! A paced sender (docs/PROTOCOL.md, "Pacing"): sends a planned message sequence to the daemon
//! within the limits the daemon states (`LimitsRequest`), with backpressure by results, and
//! accounts for every utterance (`Ledger`): covered by a result, or refused (from the
//! connection's notices), or neither. `gsdnet replay` runs it.
//!
//! Order on the connection: `LimitsRequest` (answered before anything is sent), then
//! `SubscribeNotices` and `Subscribe`; the plan, paced by a token bucket at the daemon's rates
//! and holding back an utterance while `queue_capacity` utterances wait for a result (each is
//! recorded as due before its first frame is written: its result may come back before its
//! `UtteranceEnd` is sent, and a result for an utterance not yet due would not count); a wait for
//! the last results; a second `LimitsRequest`, whose answer the daemon sends after every notice
//! of the input before it. A reader task decodes what the daemon sends throughout, so the
//! sender never counts as a slow client.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::ledger::Ledger;
use super::replay::Step;
use crate::protocol::{encode_frame, FrameDecoder, LimitsReport, Message};

/// Share of the daemon's frame rates a sender uses (the rest absorbs clock differences).
const RATE_SHARE: f64 = 0.9;

#[derive(Debug, Error)]
pub enum SendError {
    #[error("sending: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon did not answer LimitsRequest within {0:?} (does it speak protocol notices?)")]
    NoLimits(Duration),
    #[error("the daemon closed the connection")]
    Closed,
}

/// How to send.
#[derive(Debug, Clone, Copy)]
pub struct PacedOptions {
    /// Wait for each step's time on the plan's timeline (else as fast as the limits allow).
    pub realtime: bool,
    /// Longest wait without any result before the sender gives up on one (holding back an
    /// utterance, or at the end for the last results): what is still uncovered is reported.
    pub stall: Duration,
    /// Longest wait for an answer to `LimitsRequest`.
    pub answer_timeout: Duration,
}

impl Default for PacedOptions {
    fn default() -> Self {
        PacedOptions {
            realtime: false,
            stall: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(5),
        }
    }
}

/// What the reader task shares with the sender.
#[derive(Debug, Default)]
struct State {
    ledger: Ledger,
    limits: Option<LimitsReport>,
    /// `Limits` answers received.
    answers: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done` holds or `timeout` passed without a change; the final `done`.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.lock()) {
                return true;
            }
            if tokio::time::timeout(timeout, changed).await.is_err() {
                return done(&self.lock());
            }
        }
    }
}

/// Token bucket of the sender's own (`RATE_SHARE` of the daemon's per-connection and total
/// rates, half their bursts).
struct Pacer {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    fn new(l: &LimitsReport) -> Self {
        let rate = f64::from(l.max_frames_per_second.min(l.total_frames_per_second)).max(1.0) * RATE_SHARE;
        let burst = (f64::from(l.burst.min(l.total_burst)) / 2.0).max(1.0);
        Pacer {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    async fn take(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            tokio::time::sleep(Duration::from_secs_f64((1.0 - self.tokens) / self.rate)).await;
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// Sends `steps` over `stream` as described in the module docs; returns the account of it.
pub async fn send_paced<S>(stream: S, steps: &[Step], opts: PacedOptions) -> Result<Ledger, SendError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let shared = Arc::new(Shared::default());
    let reading = tokio::spawn(read_loop(reader, Arc::clone(&shared)));
    writer.write_all(&encode_frame(&Message::LimitsRequest)).await?;
    if !shared
        .wait_until(opts.answer_timeout, |s| s.answers >= 1 || s.closed)
        .await
    {
        return Err(SendError::NoLimits(opts.answer_timeout));
    }
    let limits = shared.lock().limits.clone().ok_or(SendError::Closed)?;
    log::info!(
        "daemon limits: {} frames/s (burst {}), {} conversations, {} windows queued",
        limits.max_frames_per_second,
        limits.burst,
        limits.max_conversations,
        limits.queue_capacity
    );
    let mut pacer = Pacer::new(&limits);
    for msg in [Message::SubscribeNotices, Message::Subscribe] {
        pacer.take().await;
        writer.write_all(&encode_frame(&msg)).await?;
    }
    send_steps(&mut writer, steps, &shared, &mut pacer, limits.queue_capacity, opts).await?;
    if !shared
        .wait_until(opts.stall, |s| s.ledger.in_flight() == 0 || s.closed)
        .await
    {
        log::warn!(
            "no result for {:?}: {} utterances left uncovered",
            opts.stall,
            shared.lock().ledger.in_flight()
        );
    }
    pacer.take().await;
    writer.write_all(&encode_frame(&Message::LimitsRequest)).await?;
    writer.flush().await?;
    if !shared
        .wait_until(opts.answer_timeout, |s| s.answers >= 2 || s.closed)
        .await
    {
        log::warn!("the daemon did not answer the closing LimitsRequest: notices may be missing");
    }
    reading.abort();
    let state = std::mem::take(&mut *shared.lock());
    Ok(state.ledger)
}

/// The plan's frames, paced. Each utterance is recorded in the ledger (with whether it carries
/// data) before any of its frames is written: the daemon closes an utterance as soon as no
/// modality is awaited, so its result may come back before its `UtteranceEnd` is even sent, and
/// the ledger only counts results for utterances it knows are due.
async fn send_steps<W: AsyncWrite + Unpin>(
    writer: &mut W,
    steps: &[Step],
    shared: &Shared,
    pacer: &mut Pacer,
    queue_capacity: u32,
    opts: PacedOptions,
) -> Result<(), SendError> {
    let start = Instant::now();
    let cap = u64::from(queue_capacity.max(1));
    for (i, s) in steps.iter().enumerate() {
        if opts.realtime {
            tokio::time::sleep_until(start + Duration::from_millis(s.at_ms)).await;
        }
        if let Message::UtteranceStart(b) = &s.msg {
            if !shared
                .wait_until(opts.stall, |st| st.ledger.in_flight() < cap || st.closed)
                .await
            {
                log::warn!(
                    "no result for {:?} with {cap} utterances waiting: sending on",
                    opts.stall
                );
                shared.lock().ledger.write_off();
            }
            let with_data = carries_data(&steps[i + 1..]);
            shared.lock().ledger.sent(&b.conversation, b.utterance, with_data);
        }
        if shared.lock().closed {
            return Err(SendError::Closed);
        }
        pacer.take().await;
        writer.write_all(&encode_frame(&s.msg)).await?;
    }
    writer.flush().await?;
    Ok(())
}

/// Whether the utterance that starts before `rest` carries data: a `Features` or `Transcript`
/// among `rest` up to the next utterance boundary (a plan sends each utterance's frames between
/// its start and its end, `replay::plan`).
fn carries_data(rest: &[Step]) -> bool {
    rest.iter()
        .map(|s| &s.msg)
        .take_while(|m| !matches!(m, Message::UtteranceStart(_) | Message::UtteranceEnd(_)))
        .any(|m| matches!(m, Message::Features(_) | Message::Transcript(_)))
}

/// Decodes what the daemon sends into the shared state until the stream ends.
async fn read_loop<R: AsyncRead + Unpin>(mut reader: R, shared: Arc<Shared>) {
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = reader.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            shared.lock().closed = true;
            shared.changed.notify_waiters();
            return;
        }
        let mut changed = false;
        for frame in decoder.feed(&buf[..n]) {
            let msg = match frame {
                Ok(msg) => msg,
                Err(e) => {
                    log::warn!("bad frame from the daemon: {e}");
                    continue;
                }
            };
            let mut st = shared.lock();
            if let Message::Limits(l) = msg {
                st.limits = Some(l);
                st.answers += 1;
                changed = true;
            } else {
                changed |= st.ledger.on_message(&msg);
            }
        }
        if changed {
            shared.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;
    use crate::client::replay::{plan, ReplayOptions};
    use crate::protocol::{class_name, UtteranceResult, WindowResult};
    use crate::recording::{Conversation, Recording, UtteranceRecord};

    /// A daemon that answers before the sender writes its next frame: each `Features` closes its
    /// utterance and the result reaches the sender's ledger while the frame is written, as when
    /// the sender is descheduled between two frames and the daemon runs meanwhile.
    struct InstantDaemon {
        shared: Arc<Shared>,
        decoder: FrameDecoder,
    }

    fn result_for(f: &crate::protocol::Features) -> Message {
        Message::Result(WindowResult {
            conversation: f.conversation.clone(),
            closed_utterance: f.utterance,
            completion: "gsdnet".into(),
            latency_us: 1,
            utterances: vec![UtteranceResult {
                utterance: f.utterance,
                avail: 1,
                label: 0,
                label_name: class_name("neg").unwrap(),
                probs: Default::default(),
                reg: None,
            }],
        })
    }

    impl AsyncWrite for InstantDaemon {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let InstantDaemon { shared, decoder } = self.get_mut();
            for msg in decoder.feed(buf).flatten() {
                if let Message::Features(f) = &msg {
                    shared.lock().ledger.on_message(&result_for(f));
                }
            }
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Two conversations of three utterances; utterance 1 of the first has no modality at all.
    fn recording() -> Recording {
        let conversations = ["a", "b"]
            .into_iter()
            .map(|id| Conversation {
                id: id.to_string(),
                utterances: (0..3)
                    .map(|u| UtteranceRecord {
                        conversation: id.to_string(),
                        id: format!("{id}_{u}"),
                        speaker: u % 2,
                        position: u,
                        timestamp_ms: None,
                        label: None,
                        label_cont: None,
                        features: if id == "a" && u == 1 {
                            [None, None, None]
                        } else {
                            [Some(vec![0.5; 4]), Some(vec![0.5; 3]), Some(vec![0.5; 2])]
                        },
                    })
                    .collect(),
            })
            .collect();
        Recording { conversations }
    }

    #[tokio::test]
    async fn a_result_that_comes_before_the_utterance_end_covers_it() {
        let steps = plan(&recording(), &ReplayOptions::default()).unwrap();
        let shared = Arc::new(Shared::default());
        let mut daemon = InstantDaemon {
            shared: Arc::clone(&shared),
            decoder: FrameDecoder::default(),
        };
        let mut pacer = Pacer {
            rate: 1e9,
            burst: 1e9,
            tokens: 1e9,
            last: Instant::now(),
        };
        send_steps(&mut daemon, &steps, &shared, &mut pacer, 8, PacedOptions::default())
            .await
            .unwrap();
        let s = shared.lock().ledger.summary();
        assert_eq!((s.sent, s.due, s.empty), (6, 5, 1), "{s}");
        assert_eq!(
            s.covered, 5,
            "results sent back before each UtteranceEnd must count: {s}"
        );
        assert!(s.is_complete(), "{s}");
    }
}
