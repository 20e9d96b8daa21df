//! A paced sender (docs/PROTOCOL.md, "Pacing"): sends a planned message sequence to the daemon
//! within the limits the daemon states (`LimitsRequest`), with backpressure by results, and
//! accounts for every utterance (`Ledger`): covered by a result, or refused (from the
//! connection's notices), or neither. `gsdnet replay` runs it.
//!
//! Order on the connection: `LimitsRequest` (answered before anything is sent), then
//! `SubscribeNotices` and `Subscribe`; the plan, paced by a token bucket at the daemon's rates
//! and holding back an utterance while `queue_capacity` utterances wait for a result; a wait for
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
    send_steps(&mut writer, steps, &shared, &mut pacer, &limits, opts).await?;
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

/// The plan's frames, paced; records what each utterance carried.
async fn send_steps<W: AsyncWrite + Unpin>(
    writer: &mut W,
    steps: &[Step],
    shared: &Shared,
    pacer: &mut Pacer,
    limits: &LimitsReport,
    opts: PacedOptions,
) -> Result<(), SendError> {
    let start = Instant::now();
    let cap = u64::from(limits.queue_capacity.max(1));
    let mut with_data = false;
    for s in steps {
        if opts.realtime {
            tokio::time::sleep_until(start + Duration::from_millis(s.at_ms)).await;
        }
        match &s.msg {
            Message::UtteranceStart(_) => {
                with_data = false;
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
            }
            Message::Features(_) | Message::Transcript(_) => with_data = true,
            Message::UtteranceEnd(b) => shared.lock().ledger.sent(&b.conversation, b.utterance, with_data),
            _ => {}
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
