//! One byte stream (TCP, Unix or serial): frames in, messages to the assembly task, status
//! answers and subscribed results out. Every decode error is counted and the stream goes on;
//! token buckets (per connection, and for all socket clients together) reject input beyond the
//! configured frame rates.
//!
//! A peer speaking another protocol version (e.g. a v1 sensor) is told once per connection, with
//! a `Reject` frame (`UnknownVersion`) and one warning in the log naming both versions; its
//! frames are still counted, and the connection keeps serving frames of this version.
//!
//! A connection that sent `SubscribeNotices` is told about its own refused input (`Notice`, one
//! per reason with refusals, at most every `NOTICE_INTERVAL`, counts aggregated in its
//! `NoticeBox`); a request it sends is answered after the notices of the input it sent before.
//! A notice never disconnects: when the writer's queue is full it waits, counted, in the box.
//!
//! Output goes through one writer task per connection with a bounded queue and a write timeout:
//! a client that does not read fills only its own queue, is disconnected and loses only its own
//! results (counted); nothing the daemon does waits on it.
//!
//! Lifetime: reading ends at end of stream, a read error, eviction, the idle timeout (socket
//! clients that sent no valid frame), a client that does not read, or shutdown's input phase.
//! At shutdown a subscriber keeps receiving until the output phase, when the results published
//! meanwhile are queued and written (each write bounded by the timeout), then it closes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::inference::Published;
use super::limits::{Ticket, TokenBucket};
use super::notices::{NoticeBox, APPLY_WAIT, NOTICE_INTERVAL};
use super::shared::{stopped, Input, Phases, Shared};
use super::stats::{bump, Escaped};
use crate::protocol::{
    encode_frame, DecodeError, FrameDecoder, Message, RejectNotice, RejectReason, ScoredResult, PROTOCOL_VERSION,
};

/// Bytes read from a stream at a time. Frames longer than this (up to `MAX_FRAME_LEN`) are
/// assembled by the decoder across reads, so this bounds only the read buffer.
const READ_CHUNK: usize = 4096;

/// What one stream is given besides the shared state.
pub struct StreamCtx {
    pub source: Arc<str>,
    pub input: mpsc::Sender<Input>,
    /// Socket clients: their place under the connection limits. `None` for serial ports.
    pub ticket: Option<Ticket>,
    pub phases: Phases,
}

/// A frame queued for the writer task.
struct Outgoing {
    frame: Vec<u8>,
    is_result: bool,
}

/// Why the reading phase ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    SlowClient,
    Kicked,
    Idle,
    Shutdown,
}

struct Conn {
    source: Arc<str>,
    shared: Arc<Shared>,
    bucket: TokenBucket,
    ticket: Option<Ticket>,
    proven: bool,
    subscription: Option<broadcast::Receiver<Arc<Published>>>,
    /// The subscription is for `Scored` results (`SubscribeScored`), not `Result`.
    scored: bool,
    /// The peer was told (once) that its protocol version is not this daemon's.
    version_refused: bool,
    input: Option<mpsc::Sender<Input>>,
    out: mpsc::Sender<Outgoing>,
    notices: Notices,
}

/// The connection's side of its notices.
#[derive(Default)]
struct Notices {
    book: Arc<NoticeBox>,
    /// `SubscribeNotices` arrived.
    on: bool,
    /// Inputs handed to the assembly task.
    forwarded: u64,
    last_flush: Option<Instant>,
    /// When pending notices are sent next.
    flush_at: Option<Instant>,
}

/// Serves one stream until it ends or shutdown's output phase. Returns the input sender unless
/// the stream stopped for shutdown (then it is dropped before the output phase, so that the
/// assembly task can finish while subscribers wait for their last results): a serial port
/// reuses it for the reopened stream.
pub async fn serve_stream<S>(stream: S, shared: Arc<Shared>, ctx: StreamCtx) -> Option<mpsc::Sender<Input>>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let limits = shared.limits;
    let (out, out_rx) = mpsc::channel(limits.outgoing_queue.max(1));
    let writer = tokio::spawn(write_loop(writer, out_rx, Arc::clone(&ctx.source), Arc::clone(&shared)));
    let bucket = TokenBucket::new(shared.max_frames_per_second, shared.burst, Instant::now());
    let StreamCtx {
        source,
        input,
        ticket,
        mut phases,
    } = ctx;
    let mut conn = Conn {
        source,
        shared,
        bucket,
        ticket,
        proven: false,
        subscription: None,
        scored: false,
        version_refused: false,
        input: Some(input),
        out,
        notices: Notices::default(),
    };
    bump(&conn.shared.stats.clients);
    log::debug!("{}: connected", conn.source);
    let end = conn.read_phase(reader, &mut phases.input).await;
    let input = conn.input.take().filter(|_| end != End::Shutdown);
    match end {
        End::Shutdown => conn.output_phase(&mut phases.output).await,
        End::SlowClient => {
            bump(&conn.shared.stats.slow_clients_disconnected);
            log::warn!("{}: does not read what it is sent; disconnected", conn.source);
        }
        End::Idle => bump(&conn.shared.stats.connections_idle_closed),
        End::Kicked | End::Closed => {}
    }
    let grace = limits.write_timeout + std::time::Duration::from_millis(100);
    let Conn {
        out, source, shared, ..
    } = conn;
    drop(out);
    // The writer ends once its queue is drained or a write timed out.
    if tokio::time::timeout(grace, writer).await.is_err() {
        log::debug!("{source}: writer did not finish in {grace:?}");
    }
    shared.stats.clients.fetch_sub(1, Relaxed);
    log::debug!("{source}: closed ({end:?})");
    input
}

/// Writes queued frames in order; on a failed or timed-out write, counts the results it could
/// not deliver and stops (which the reading side sees as a slow client).
async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Outgoing>,
    source: Arc<str>,
    shared: Arc<Shared>,
) {
    let timeout = shared.limits.write_timeout;
    while let Some(o) = rx.recv().await {
        let write = async {
            w.write_all(&o.frame).await?;
            w.flush().await
        };
        let failed = match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => format!("write failed: {e}"),
            Err(_) => format!("write timed out after {timeout:?}"),
        };
        log::debug!("{source}: {failed}");
        rx.close();
        let mut lost = u64::from(o.is_result);
        while let Ok(o) = rx.try_recv() {
            lost += u64::from(o.is_result);
        }
        shared.stats.results_lost.fetch_add(lost, Relaxed);
        return;
    }
    let _ = w.shutdown().await;
}

async fn next_result(
    sub: &mut Option<broadcast::Receiver<Arc<Published>>>,
) -> Result<Arc<Published>, broadcast::error::RecvError> {
    match sub {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Conn {
    async fn read_phase<R: AsyncRead + Unpin>(&mut self, mut reader: R, stop: &mut watch::Receiver<bool>) -> End {
        let mut decoder = FrameDecoder::default();
        let mut buf = vec![0u8; READ_CHUNK];
        let idle_deadline = Instant::now() + self.shared.limits.idle_timeout;
        let kick = self.ticket.as_ref().map(|t| Arc::clone(&t.kick));
        loop {
            let idle = self.ticket.is_some() && !self.proven;
            tokio::select! {
                read = reader.read(&mut buf) => {
                    let n = read.unwrap_or_else(|e| {
                        log::debug!("{}: read error: {e}", self.source);
                        0
                    });
                    if n == 0 {
                        if decoder.pending() > 0 {
                            let detail = format!("stream ended {} bytes into a frame", decoder.pending());
                            self.shared.stats.reject(RejectReason::Truncated, &self.source, &detail);
                        }
                        return End::Closed;
                    }
                    let frames: Vec<_> = decoder.feed(&buf[..n]).collect();
                    if let Some(end) = self.on_frames(frames).await {
                        return end;
                    }
                }
                result = next_result(&mut self.subscription) => {
                    if let Some(end) = self.on_result(result) {
                        return end;
                    }
                }
                _ = self.out.closed() => return End::SlowClient,
                _ = self.notices.book.wake.notified(), if self.notices.on && self.notices.flush_at.is_none() => self.schedule_notices(),
                _ = sleep_until_opt(self.notices.flush_at) => {
                    if let Some(end) = self.flush_notices() {
                        return end;
                    }
                }
                _ = wait_kick(&kick) => {
                    log::debug!("{}: evicted to make room for a new connection", self.source);
                    return End::Kicked;
                }
                _ = tokio::time::sleep_until(idle_deadline), if idle => {
                    log::debug!("{}: no valid frame in {:?}; closed", self.source, self.shared.limits.idle_timeout);
                    return End::Idle;
                }
                _ = stopped(stop) => return End::Shutdown,
            }
        }
    }

    /// Subscribers only: results published until the output phase, then those still buffered.
    async fn output_phase(&mut self, stop: &mut watch::Receiver<bool>) {
        if self.subscription.is_none() {
            return;
        }
        loop {
            tokio::select! {
                result = next_result(&mut self.subscription) => {
                    if self.on_result(result).is_some() {
                        return;
                    }
                }
                _ = self.out.closed() => return,
                _ = stopped(stop) => break,
            }
        }
        while let Some(rx) = &mut self.subscription {
            let r = match rx.try_recv() {
                Ok(r) => Ok(r),
                Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                Err(_) => return,
            };
            if self.on_result(r).is_some() {
                return;
            }
        }
    }

    /// Handles decoded frames; `Some` when the reading phase must end.
    async fn on_frames(&mut self, frames: Vec<Result<Message, DecodeError>>) -> Option<End> {
        for frame in frames {
            let msg = match frame {
                Ok(msg) => msg,
                Err(e) => {
                    if let Some(end) = self.on_bad_frame(&e) {
                        return Some(end);
                    }
                    continue;
                }
            };
            if !self.proven {
                self.proven = true;
                if let Some(t) = &self.ticket {
                    t.prove();
                }
            }
            if !self.admit_rate() {
                self.shared
                    .stats
                    .reject(RejectReason::Flood, &self.source, &"frame rate exceeded");
                self.notices.book.record(
                    RejectReason::Flood,
                    msg.conversation(),
                    msg.utterance(),
                    &format_args!("{} over the frame rate", msg.kind()),
                );
                continue;
            }
            if let Some(end) = self.on_message(msg).await {
                return Some(end);
            }
        }
        None
    }

    /// Counts a frame that did not decode. The first of another protocol version is logged at
    /// warn and answered with a `Reject` (the peer may not read it, but it is a frame of this
    /// version, never garbage); later ones are only counted.
    fn on_bad_frame(&mut self, e: &DecodeError) -> Option<End> {
        let DecodeError::UnknownVersion(v) = e else {
            self.shared.stats.reject(e.reason(), &self.source, e);
            self.notices.book.record(e.reason(), None, None, e);
            return None;
        };
        self.shared
            .stats
            .reject_quietly(RejectReason::UnknownVersion, &self.source, e);
        if self.version_refused {
            return None;
        }
        self.version_refused = true;
        log::warn!(
            "{}: peer speaks protocol version {v}, this daemon speaks version {PROTOCOL_VERSION}: its frames are refused (UnknownVersion)",
            self.source
        );
        let detail = format!("protocol version {v} is not supported: this daemon speaks version {PROTOCOL_VERSION}");
        self.offer(
            &Message::Reject(RejectNotice::new(RejectReason::UnknownVersion, &detail)),
            false,
        )
    }

    /// The connection's bucket, then (socket clients) the bucket of all socket clients.
    fn admit_rate(&mut self) -> bool {
        let now = Instant::now();
        if !self.bucket.take(now) {
            return false;
        }
        if self.ticket.is_none() {
            return true;
        }
        let mut total = self.shared.total_bucket.lock().unwrap_or_else(|e| e.into_inner());
        total.take(now)
    }

    async fn on_message(&mut self, msg: Message) -> Option<End> {
        match msg {
            Message::Subscribe | Message::SubscribeScored => {
                self.scored = matches!(msg, Message::SubscribeScored);
                self.subscription = Some(self.shared.results.subscribe());
                None
            }
            Message::SubscribeNotices => {
                self.notices.on = true;
                self.schedule_notices();
                None
            }
            Message::StatusRequest | Message::HealthRequest | Message::ModelInfoRequest | Message::LimitsRequest => {
                if let Some(end) = self.settle_notices().await {
                    return Some(end);
                }
                let answer = self.answer(&msg);
                self.offer(&answer, false)
            }
            msg if msg.is_daemon_only() => {
                let detail = format!("{} is a daemon-only message", msg.kind());
                self.shared
                    .stats
                    .reject(RejectReason::Unexpected, &self.source, &detail);
                self.notices
                    .book
                    .record(RejectReason::Unexpected, msg.conversation(), msg.utterance(), &detail);
                None
            }
            msg => {
                let input = Input {
                    msg,
                    source: Arc::clone(&self.source),
                    notices: Arc::clone(&self.notices.book),
                };
                // Waiting here applies back-pressure to this stream only; the assembly task keeps
                // receiving until every sender is gone, so this always completes.
                match &self.input {
                    Some(tx) if tx.send(input).await.is_ok() => {
                        self.notices.forwarded += 1;
                        None
                    }
                    _ => Some(End::Shutdown),
                }
            }
        }
    }

    /// The answer to a request (`Status`, `Health`, `ModelInfo` or `Limits`).
    fn answer(&self, request: &Message) -> Message {
        match request {
            Message::StatusRequest => Message::Status(self.shared.status_report()),
            Message::HealthRequest => {
                let mut report = self.shared.stats.health();
                report.connections_open = u32::try_from(self.shared.registry.len()).unwrap_or(u32::MAX);
                Message::Health(report)
            }
            Message::ModelInfoRequest => Message::ModelInfo(self.shared.model_info.clone()),
            _ => Message::Limits(self.shared.limits_report.clone()),
        }
    }

    /// Subscribed connections: waits (bounded) until the assembly task applied this
    /// connection's earlier input, then sends the notices pending, so an answer comes after them.
    async fn settle_notices(&mut self) -> Option<End> {
        if !self.notices.on {
            return None;
        }
        if !self.notices.book.wait_applied(self.notices.forwarded, APPLY_WAIT).await {
            log::debug!(
                "{}: input not applied within {APPLY_WAIT:?}; answering anyway",
                self.source
            );
        }
        self.flush_notices()
    }

    /// Sets when the pending notices go out: now, or `NOTICE_INTERVAL` after the last flush.
    fn schedule_notices(&mut self) {
        let n = &mut self.notices;
        if n.on && n.flush_at.is_none() && n.book.is_pending() {
            let now = Instant::now();
            n.flush_at = Some(n.last_flush.map_or(now, |t| (t + NOTICE_INTERVAL).max(now)));
        }
    }

    /// Queues one `Notice` per reason with refusals. One that does not fit in the writer's
    /// queue goes back into the box (counted) for the next flush; `Some` when the writer is gone.
    fn flush_notices(&mut self) -> Option<End> {
        let now = Instant::now();
        self.notices.flush_at = None;
        self.notices.last_flush = Some(now);
        for n in self.notices.book.take() {
            match self.out.try_send(Outgoing {
                frame: encode_frame(&Message::Notice(Box::new(n.clone()))),
                is_result: false,
            }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => self.notices.book.put_back(n),
                Err(mpsc::error::TrySendError::Closed(_)) => return Some(End::SlowClient),
            }
        }
        self.schedule_notices();
        None
    }

    fn on_result(&mut self, result: Result<Arc<Published>, broadcast::error::RecvError>) -> Option<End> {
        match result {
            Ok(r) if self.scored => self.offer(
                &Message::Scored(ScoredResult::from_result(&r, self.shared.abstain_below)),
                true,
            ),
            Ok(r) => self.offer(&Message::Result(r.result.clone()), true),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                log::warn!("{}: subscriber too slow, {n} results skipped", Escaped(&self.source));
                self.shared.stats.results_lagged.fetch_add(n, Relaxed);
                self.shared.stats.results_lost.fetch_add(n, Relaxed);
                None
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.subscription = None;
                None
            }
        }
    }

    /// Queues a frame for the writer without waiting; a full queue means the client does not read.
    fn offer(&mut self, msg: &Message, is_result: bool) -> Option<End> {
        match self.out.try_send(Outgoing {
            frame: encode_frame(msg),
            is_result,
        }) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o)) => {
                self.shared
                    .stats
                    .results_lost
                    .fetch_add(u64::from(o.is_result), Relaxed);
                Some(End::SlowClient)
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn wait_kick(kick: &Option<Arc<tokio::sync::Notify>>) {
    match kick {
        Some(k) => k.notified().await,
        None => std::future::pending().await,
    }
}
