//! Helpers shared by the end-to-end replay tests (`daemon::e2e`, `daemon::e2e_iemocap`,
//! `daemon::batch`): the
//! availability a replay actually sends, a real-pipeline daemon started in-process, and a
//! subscription that cannot miss a result.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use gsdnet_edge::client::replay::Step;
use gsdnet_edge::config::Windowing;
use gsdnet_edge::daemon::assembly::AssemblySettings;
use gsdnet_edge::daemon::limits::ConnectionLimits;
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::notify::NoNotifier;
use gsdnet_edge::daemon::pipeline_runner::PipelineRunner;
use gsdnet_edge::daemon::server::{serve, Endpoints, ServeOptions};
use gsdnet_edge::daemon::stats::Stats;
use gsdnet_edge::io::serial::SerialInput;
use gsdnet_edge::pipeline::{Completion, Pipeline};
use gsdnet_edge::protocol::{encode_frame, FrameDecoder, Message};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Serve options of the in-process replay tests: windows of `window` (sliding), every
/// modality's deadline `deadline_ms`, flood limits lifted per client (a replay sends far faster
/// than people speak), 200 ms heartbeat, the default 250 ms batch budget. Tests override what
/// their scenario needs with `..replay_options(..)`.
pub fn replay_options(model: ServedModel, window: usize, deadline_ms: u64) -> ServeOptions {
    ServeOptions {
        model,
        assembly: AssemblySettings {
            window,
            windowing: Windowing::Sliding,
            deadline_ms: [deadline_ms; 3],
            max_utterance_ms: 10 * deadline_ms,
            max_open_utterances: 8,
            max_conversations: 16,
            idle_conversation_ms: 600_000,
            evict_idle_ms: 10_000,
        },
        queue_capacity: 64,
        max_frames_per_second: 1_000_000,
        burst: 1_000_000,
        heartbeat: std::time::Duration::from_millis(200),
        max_consecutive_errors: 5,
        batch_latency: std::time::Duration::from_millis(250),
        limits: ConnectionLimits::default(),
        abstain_below: 0.0,
        result_backlog: 4096,
        warm_up: true,
    }
}

/// Availability of every utterance as the replay sends it: `(conversation, utterance)` -> by
/// `Modality::index`.
pub fn sent_masks(steps: &[Step]) -> HashMap<(String, u32), [bool; 3]> {
    let mut out: HashMap<(String, u32), [bool; 3]> = HashMap::new();
    for s in steps {
        if let Message::Features(f) = &s.msg {
            out.entry((f.conversation.to_string(), f.utterance)).or_default()[f.modality.index()] = true;
        }
    }
    out
}

/// Serves `pipeline` (gsdnet completion, sampler streams of `seed` and `scenario`, batches of
/// up to the pipeline's `max_batch`) on `endpoints` until the returned sender fires; the handle
/// yields the daemon's final counters.
pub async fn start(
    pipeline: Pipeline,
    seed: u64,
    endpoints: Endpoints,
    scenario: u64,
    opts: ServeOptions,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<Arc<Stats>>) {
    let runner = PipelineRunner::new(pipeline, Completion::Gsdnet, seed, scenario).unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(async move {
        serve(endpoints, Box::new(runner), opts, Arc::new(NoNotifier), async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    (stop, h)
}

/// A daemon served by `start` on a Unix socket in a temporary directory, with one subscriber
/// that has seen the status answer (so it misses no result).
pub struct UnixDaemon {
    pub path: std::path::PathBuf,
    pub sub: tokio::net::UnixStream,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Arc<Stats>>,
    _dir: tempfile::TempDir,
}

/// `start` on a fresh Unix socket, then one subscriber.
pub async fn start_unix(pipeline: Pipeline, seed: u64, scenario: u64, opts: ServeOptions) -> UnixDaemon {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.sock");
    let listener = gsdnet_edge::io::listeners::bind_unix(&path).unwrap();
    let endpoints = Endpoints {
        unix: vec![listener],
        ..Default::default()
    };
    let (stop, handle) = start(pipeline, seed, endpoints, scenario, opts).await;
    let mut sub = tokio::net::UnixStream::connect(&path).await.unwrap();
    subscribe(&mut sub).await;
    UnixDaemon {
        path,
        sub,
        stop,
        handle,
        _dir: dir,
    }
}

impl UnixDaemon {
    /// A new connection, e.g. a sensor.
    pub async fn connect(&self) -> tokio::net::UnixStream {
        tokio::net::UnixStream::connect(&self.path).await.unwrap()
    }

    /// Shuts the daemon down; its final counters.
    pub async fn stop(self) -> Arc<Stats> {
        let _ = self.stop.send(());
        self.handle.await.unwrap()
    }
}

/// Subscribes and waits for the status answer, so no result can be missed afterwards.
pub async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(&encode_frame(&Message::Subscribe)).await.unwrap();
    s.write_all(&encode_frame(&Message::StatusRequest)).await.unwrap();
    let mut dec = FrameDecoder::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        if dec.feed(&buf[..n]).any(|m| matches!(m, Ok(Message::Status(_)))) {
            return;
        }
    }
}

/// A daemon input over a pseudo-terminal pair plus a Unix socket for subscribers: `endpoints`
/// to serve, the sensor's end of the pty, and the socket's path (inside `_dir`).
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub.sock");
    let listener = gsdnet_edge::io::listeners::bind_unix(&path).unwrap();
    let endpoints = Endpoints {
        unix: vec![listener],
        serial: vec![serial],
        ..Default::default()
    };
    SerialRig {
        endpoints,
        port,
        path,
        _dir: dir,
    }
}
