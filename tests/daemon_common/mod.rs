//! Serve-loop test harness shared by the daemon test binaries: a mock runner deterministic from
//! its input, a frame client, and a daemon started in-process on a Unix socket.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use gsdnet_edge::daemon::assembly::{AssemblySettings, WindowJob};
use gsdnet_edge::daemon::inference::{RunError, WindowRunner};
use gsdnet_edge::daemon::notify::{MemoryNotifier, Notifier};
use gsdnet_edge::daemon::server::{serve, Endpoints, ServeOptions};
use gsdnet_edge::protocol::{
    conversation_id, encode_frame, values, Boundary, Features, FrameDecoder, HealthReport, Message, Modality, RejectReason,
    StatusReport, UtteranceResult, WindowResult,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// label = text present, reg = first text value (or -1), probs from avail bits.
pub struct MockRunner;

impl WindowRunner for MockRunner {
    fn describe(&self) -> String {
        "mock".into()
    }
    fn completion(&self) -> String {
        "mock".into()
    }
    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        Ok(job
            .utterances
            .iter()
            .map(|u| UtteranceResult {
                utterance: u.utterance,
                avail: u.avail_bits(),
                label: u8::from(u.features[0].is_some()),
                probs: [f32::from(u.avail_bits()), 0.0],
                reg: u.features[0].as_ref().map_or(-1.0, |t| t[0]),
            })
            .collect())
    }
}

pub fn options() -> ServeOptions {
    ServeOptions {
        assembly: AssemblySettings {
            dims: [100, 73, 100],
            window: 4,
            deadline_ms: [500, 300, 300],
            max_utterance_ms: 10_000,
            max_open_utterances: 8,
            max_conversations: 4,
            idle_conversation_ms: 600_000,
            evict_idle_ms: 10_000,
        },
        queue_capacity: 4,
        max_frames_per_second: 1000,
        burst: 1000,
        heartbeat: Duration::from_millis(50),
        max_consecutive_errors: 5,
        limits: gsdnet_edge::daemon::limits::ConnectionLimits::default(),
        abstain_below: 0.0,
        result_backlog: 256,
        warm_up: true,
    }
}

pub fn feat(conv: &str, utt: u32, m: Modality, v: f32) -> Message {
    let dim = [100, 73, 100][m.index()];
    Message::Features(Features {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: 0,
        modality: m,
        timestamp_us: u64::from(utt) * 1000,
        values: values(&vec![v; dim]).unwrap(),
    })
}

pub fn end(conv: &str, utt: u32) -> Message {
    Message::UtteranceEnd(Boundary { conversation: conversation_id(conv).unwrap(), utterance: utt, speaker: 0, timestamp_us: 0 })
}

pub struct Client<S> {
    pub stream: S,
    dec: FrameDecoder,
    pending: Vec<Message>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client { stream, dec: FrameDecoder::default(), pending: Vec::new() }
    }
    pub async fn send(&mut self, msg: &Message) {
        self.stream.write_all(&encode_frame(msg)).await.unwrap();
    }
    pub async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
    pub async fn next(&mut self) -> Message {
        let mut buf = [0u8; 4096];
        while self.pending.is_empty() {
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "daemon closed the stream");
            for m in self.dec.feed(&buf[..n]) {
                self.pending.push(m.unwrap());
            }
        }
        self.pending.remove(0)
    }
    pub async fn result(&mut self) -> WindowResult {
        match self.next().await {
            Message::Result(r) => r,
            other => panic!("expected a result, got {other:?}"),
        }
    }
    pub async fn health(&mut self) -> HealthReport {
        self.send(&Message::HealthRequest).await;
        loop {
            if let Message::Health(h) = self.next().await {
                return h;
            }
        }
    }
    pub async fn status(&mut self) -> StatusReport {
        self.send(&Message::StatusRequest).await;
        loop {
            if let Message::Status(s) = self.next().await {
                return s;
            }
        }
    }
}

pub fn rejected(s: &StatusReport, reason: RejectReason) -> u64 {
    s.rejected.iter().find(|c| c.reason == reason).map_or(0, |c| c.count)
}

pub struct Daemon {
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub handle: tokio::task::JoinHandle<()>,
    pub notifier: Arc<MemoryNotifier>,
}

pub async fn start(endpoints: Endpoints, opts: ServeOptions) -> Daemon {
    let notifier = Arc::new(MemoryNotifier::default());
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = Box::new(MockRunner);
    let n: Arc<dyn Notifier> = notifier.clone();
    let handle = tokio::spawn(async move {
        serve(endpoints, runner, opts, n, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    Daemon { stop, handle, notifier }
}

/// A daemon serving one Unix socket in a fresh temporary directory (kept alive by the caller).
pub async fn unix_daemon(opts: ServeOptions) -> (tempfile::TempDir, std::path::PathBuf, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let listener = gsdnet_edge::io::listeners::bind_unix(&path).unwrap();
    let daemon = start(Endpoints { unix: vec![listener], ..Default::default() }, opts).await;
    (dir, path, daemon)
}

pub async fn connect(path: &std::path::Path) -> Client<tokio::net::UnixStream> {
    Client::new(tokio::net::UnixStream::connect(path).await.unwrap())
}

impl Daemon {
    pub async fn shutdown(self) -> Vec<String> {
        self.stop.send(()).unwrap();
        self.handle.await.unwrap();
        self.notifier.events()
    }
}

