//! Serve-loop test harness shared by the daemon tests: mock runners deterministic from their
//! input, a frame client, a daemon started in-process on a Unix socket, and the serial rig (a
//! pty pair next to a Unix socket) that the mock and the real-pipeline tests serve on.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use gsdnet_edge::daemon::assembly::{AssemblySettings, WindowJob};
use gsdnet_edge::daemon::inference::{RunError, WindowRunner};
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::notify::{MemoryNotifier, Notifier};
use gsdnet_edge::daemon::server::{serve, Endpoints, ServeOptions};
use gsdnet_edge::io::serial::SerialInput;
use gsdnet_edge::modality::Modalities;
use gsdnet_edge::protocol::{
    class_name, conversation_id, encode_frame, values, Boundary, Features, FrameDecoder, HealthReport, Message,
    Modality, Probs, RejectReason, StatusReport, UtteranceResult, WindowResult,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The CMU-MOSI layout: text 100, audio 73, visual 100; negative / positive; regression.
pub fn mosi_like() -> ServedModel {
    ServedModel::new(
        "mock-mosi",
        Modalities::new([100, 73, 100]).unwrap(),
        &["negative", "positive"],
        true,
    )
    .unwrap()
}

/// The IEMOCAP layout: text 384 (the MiniLM frontend's width), audio 47, no visual; six classes;
/// no regression.
pub fn iemocap_like() -> ServedModel {
    ServedModel::new(
        "mock-iemocap",
        Modalities::new([384, 47, 0]).unwrap(),
        &["hap", "sad", "neu", "ang", "exc", "fru"],
        false,
    )
    .unwrap()
}

/// A result with `label` of a model with `names`: probabilities `probs`, regression `reg`.
pub fn result(
    utterance: u32,
    avail: u8,
    label: u16,
    names: &[&str],
    probs: &[f32],
    reg: Option<f32>,
) -> UtteranceResult {
    let label_name = class_name(names[usize::from(label)]).unwrap();
    UtteranceResult {
        utterance,
        avail,
        label,
        label_name,
        probs: Probs::from_slice(probs).unwrap(),
        reg,
    }
}

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
            .map(|u| {
                let label = u16::from(u.features[0].is_some());
                let reg = u.features[0].as_ref().map_or(-1.0, |t| t[0]);
                result(
                    u.utterance,
                    u.avail_bits(),
                    label,
                    &["negative", "positive"],
                    &[f32::from(u.avail_bits()), 0.0],
                    Some(reg),
                )
            })
            .collect())
    }
}

/// (utterance, speaker) of every window a `ClassRunner` ran.
pub type Speakers = Arc<std::sync::Mutex<Vec<Vec<(u32, u16)>>>>;

/// label = utterance id mod K (probability 0.5, the rest shared), regression only when the
/// model has one; records the (utterance, speaker) pairs of every window it runs.
pub struct ClassRunner {
    model: ServedModel,
    seen: Speakers,
}

impl ClassRunner {
    pub fn new(model: ServedModel, seen: Speakers) -> Self {
        ClassRunner { model, seen }
    }
}

impl WindowRunner for ClassRunner {
    fn describe(&self) -> String {
        "class-mock".into()
    }
    fn completion(&self) -> String {
        "mock".into()
    }
    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(job.utterances.iter().map(|u| (u.utterance, u.speaker)).collect());
        }
        let k = self.model.classes().len();
        let out = job.utterances.iter().map(|u| {
            let label = u.utterance as usize % k;
            let probs: Vec<f32> = (0..k)
                .map(|c| if c == label { 0.5 } else { 0.5 / (k - 1) as f32 })
                .collect();
            let (label_name, probs) = (self.model.class_name(label), Probs::from_vec(probs).unwrap());
            UtteranceResult {
                utterance: u.utterance,
                avail: u.avail_bits(),
                label: label as u16,
                label_name,
                probs,
                reg: self.model.has_regression.then_some(0.25),
            }
        });
        Ok(out.collect())
    }
}

pub fn options() -> ServeOptions {
    ServeOptions {
        assembly: AssemblySettings {
            window: 4,
            windowing: gsdnet_edge::config::Windowing::Sliding,
            deadline_ms: [500, 300, 300],
            max_utterance_ms: 10_000,
            max_open_utterances: 8,
            max_conversations: 4,
            idle_conversation_ms: 600_000,
            evict_idle_ms: 10_000,
        },
        model: mosi_like(),
        queue_capacity: 4,
        max_frames_per_second: 1000,
        burst: 1000,
        heartbeat: Duration::from_millis(50),
        max_consecutive_errors: 5,
        batch_latency: Duration::from_millis(250),
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
    Message::UtteranceEnd(Boundary {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker: 0,
        timestamp_us: 0,
    })
}

pub struct Client<S> {
    pub stream: S,
    dec: FrameDecoder,
    pending: Vec<Message>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            dec: FrameDecoder::default(),
            pending: Vec::new(),
        }
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
    start_runner(endpoints, Box::new(MockRunner), opts).await
}

/// A daemon running `runner`.
pub async fn start_runner(endpoints: Endpoints, runner: Box<dyn WindowRunner>, opts: ServeOptions) -> Daemon {
    let notifier = Arc::new(MemoryNotifier::default());
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
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

/// A fresh temporary directory (kept alive by the caller), the socket `d.sock` in it, and
/// endpoints listening there.
pub fn unix_endpoints() -> (tempfile::TempDir, std::path::PathBuf, Endpoints) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.sock");
    let listener = gsdnet_edge::io::listeners::bind_unix(&path).unwrap();
    let endpoints = Endpoints {
        unix: vec![listener],
        ..Default::default()
    };
    (dir, path, endpoints)
}

/// A daemon serving one Unix socket in a fresh temporary directory (kept alive by the caller).
pub async fn unix_daemon(opts: ServeOptions) -> (tempfile::TempDir, std::path::PathBuf, Daemon) {
    unix_daemon_with(Box::new(MockRunner), opts).await
}

/// `unix_daemon` with another runner.
pub async fn unix_daemon_with(
    runner: Box<dyn WindowRunner>,
    opts: ServeOptions,
) -> (tempfile::TempDir, std::path::PathBuf, Daemon) {
    let (dir, path, endpoints) = unix_endpoints();
    let daemon = start_runner(endpoints, runner, opts).await;
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

/// A daemon input over a pseudo-terminal pair plus a Unix socket for subscribers: `endpoints`
/// to serve, the sensor's (test's) end of the pty, and the socket's path (inside `_dir`).
pub struct SerialRig {
    pub endpoints: Endpoints,
    pub port: tokio_serial::SerialStream,
    pub path: std::path::PathBuf,
    pub _dir: tempfile::TempDir,
}

pub fn serial_rig() -> SerialRig {
    let (daemon_end, port) = tokio_serial::SerialStream::pair().expect("pty pair");
    let serial = SerialInput {
        name: "serial:pty".into(),
        stream: Some(daemon_end),
        reopen: None,
    };
    let (dir, path, unix) = unix_endpoints();
    SerialRig {
        endpoints: Endpoints {
            serial: vec![serial],
            ..unix
        },
        port,
        path,
        _dir: dir,
    }
}
