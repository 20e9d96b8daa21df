//! One byte stream (TCP, Unix or serial): frames in, messages to the assembly task, status
//! answers and subscribed results out. Every decode error is counted and the stream goes on;
//! a token bucket (on the tokio clock) rejects input beyond the configured frame rate.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use super::server::{stopped, Shared};
use super::stats::bump;
use crate::protocol::{encode_frame, FrameDecoder, Message, RejectReason, WindowResult};

/// A message on its way to the assembly task, with the connection it came from.
#[derive(Debug)]
pub struct Input {
    pub msg: Message,
    pub source: Arc<str>,
}

/// Token bucket: `rate` frames per second, at most `burst` at once.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket { rate: f64::from(rate), burst: f64::from(burst), tokens: f64::from(burst), last: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Conn<W> {
    writer: W,
    source: Arc<str>,
    shared: Arc<Shared>,
    bucket: TokenBucket,
    subscription: Option<broadcast::Receiver<Arc<WindowResult>>>,
    input: mpsc::Sender<Input>,
}

/// Serves one stream until it ends or shutdown is signalled.
pub async fn serve_stream<S>(stream: S, source: Arc<str>, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let bucket = TokenBucket::new(shared.max_frames_per_second, shared.burst, Instant::now());
    let input = shared.input.clone();
    let mut conn = Conn { writer, source, shared, bucket, subscription: None, input };
    let mut decoder = FrameDecoder::default();
    let mut buf = vec![0u8; 4096];
    bump(&conn.shared.stats.clients);
    log::debug!("{}: connected", conn.source);
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(n) => n,
                    Err(e) => {
                        log::debug!("{}: read error: {e}", conn.source);
                        0
                    }
                };
                if n == 0 {
                    if decoder.pending() > 0 {
                        let detail = format!("stream ended {} bytes into a frame", decoder.pending());
                        conn.shared.stats.reject(RejectReason::Truncated, &conn.source, &detail);
                    }
                    break;
                }
                let frames: Vec<_> = decoder.feed(&buf[..n]).collect();
                if !conn.on_frames(frames).await {
                    break;
                }
            }
            result = next_result(&mut conn.subscription) => {
                if !conn.on_result(result).await {
                    break;
                }
            }
            _ = stopped(&mut shutdown) => break,
        }
    }
    conn.shared.stats.clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    log::debug!("{}: closed", conn.source);
}

async fn next_result(
    sub: &mut Option<broadcast::Receiver<Arc<WindowResult>>>,
) -> Result<Arc<WindowResult>, broadcast::error::RecvError> {
    match sub {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<W: AsyncWrite + Unpin> Conn<W> {
    /// Handles decoded frames; false when the connection must close (write failed).
    async fn on_frames(&mut self, frames: Vec<Result<Message, crate::protocol::DecodeError>>) -> bool {
        for frame in frames {
            let msg = match frame {
                Ok(msg) => msg,
                Err(e) => {
                    self.shared.stats.reject(e.reason(), &self.source, &e);
                    continue;
                }
            };
            if !self.bucket.take(Instant::now()) {
                self.shared.stats.reject(RejectReason::Flood, &self.source, &"frame rate exceeded");
                continue;
            }
            if !self.on_message(msg).await {
                return false;
            }
        }
        true
    }

    async fn on_message(&mut self, msg: Message) -> bool {
        match msg {
            Message::Subscribe => {
                self.subscription = Some(self.shared.results.subscribe());
                true
            }
            Message::StatusRequest => {
                let report = self.shared.status_report();
                self.write(&Message::Status(report)).await
            }
            Message::Status(_) | Message::Result(_) => {
                self.shared.stats.reject(RejectReason::Unexpected, &self.source, &"daemon-only message");
                true
            }
            msg => {
                let input = Input { msg, source: Arc::clone(&self.source) };
                // Waiting here applies back-pressure to this stream only; Err = shutting down.
                self.input.send(input).await.is_ok()
            }
        }
    }

    async fn on_result(&mut self, result: Result<Arc<WindowResult>, broadcast::error::RecvError>) -> bool {
        match result {
            Ok(r) => self.write(&Message::Result((*r).clone())).await,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                log::warn!("{}: subscriber too slow, {n} results skipped", self.source);
                self.shared.stats.results_lagged.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(broadcast::error::RecvError::Closed) => {
                self.subscription = None;
                true
            }
        }
    }

    async fn write(&mut self, msg: &Message) -> bool {
        let frame = encode_frame(msg);
        match self.writer.write_all(&frame).await {
            Ok(()) => self.writer.flush().await.is_ok(),
            Err(e) => {
                log::debug!("{}: write failed: {e}", self.source);
                false
            }
        }
    }
}
