//! Helpers shared by the end-to-end replay tests (`daemon::e2e`, `daemon::e2e_iemocap`,
//! `daemon::batch`): the CMU-MOSI val recording, the availability a replay actually sends and
//! the window it makes for the evaluation, a real-pipeline daemon started in-process, a
//! subscription that cannot miss a result, and a whole replay through a Unix socket or a serial
//! pty (`daemon::serial_rig`) collecting the windows a test expects.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use super::daemon::{serial_rig, unix_endpoints};
use super::repo;
use gsdnet_edge::client::replay::{self, ReplayOptions, Step};
use gsdnet_edge::config::Windowing;
use gsdnet_edge::daemon::assembly::AssemblySettings;
use gsdnet_edge::daemon::limits::ConnectionLimits;
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::notify::NoNotifier;
use gsdnet_edge::daemon::pipeline_runner::PipelineRunner;
use gsdnet_edge::daemon::server::{serve, Endpoints, ServeOptions};
use gsdnet_edge::daemon::stats::Stats;
use gsdnet_edge::eval::{self, EvalConfig, ResultRow, Scenario};
use gsdnet_edge::modality::Modalities;
use gsdnet_edge::pipeline::{Completion, Pipeline, Utterance, Window};
use gsdnet_edge::protocol::{encode_frame, FrameDecoder, Message, UtteranceResult};
use gsdnet_edge::recording::{Recording, UtteranceRecord};
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

/// The CMU-MOSI val recording: the bundled `data/mosi-val.gsdrec`, else the shared split.
pub fn mosi_val() -> Recording {
    let file = repo().join("data/mosi-val.gsdrec");
    let path = if file.is_file() {
        file
    } else {
        repo().join("../shared/data/cmu-mosi/val")
    };
    gsdnet_edge::dataset::load(&path).unwrap_or_else(|e| panic!("val data at {}: {e}", path.display()))
}

/// `(conversation, utterance)` -> availability by `Modality::index`.
pub type Masks = HashMap<(String, u32), [bool; 3]>;

/// Windows by (conversation, the utterance whose closing published them) -> their results.
pub type Finals = HashMap<(String, u32), Vec<UtteranceResult>>;

/// Availability of every utterance as the replay sends it.
pub fn sent_masks(steps: &[Step]) -> Masks {
    let mut out = Masks::new();
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
    let (dir, path, endpoints) = unix_endpoints();
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

/// The replay of `rec` with `gsdnet eval`'s random mask at `rate` (sampler seed `seed`) over the
/// model's modalities `mods`, one utterance a second: the entries the mask hides are dropouts.
pub fn eval_mask_steps(rec: &Recording, rate: f64, seed: u64, mods: Modalities) -> Vec<Step> {
    let opts = ReplayOptions {
        interval_ms: 1000,
        drops: Vec::new(),
        mask: Some((rate, seed, mods)),
        modalities: Some(mods),
    };
    replay::plan(rec, &opts).unwrap()
}

/// The row `gsdnet eval` reports for `rec` with the gsdnet completion, `seed` and `scenario`, on
/// pipelines made by `pipeline`.
pub fn eval_row(rec: &Recording, seed: u64, scenario: Scenario, pipeline: &(dyn Fn() -> Pipeline + Sync)) -> ResultRow {
    let cfg = EvalConfig {
        completions: vec![Completion::Gsdnet.into()],
        seeds: vec![seed],
        scenarios: vec![scenario],
        threads: 1,
    };
    let rows = eval::evaluate(rec, &cfg, &|| Ok(pipeline()), &|_| {}).unwrap();
    rows.into_iter()
        .next()
        .expect("one completion, one seed, one scenario: one row")
}

/// The window the evaluation runs over `utterances` of conversation `conv` with what the replay
/// sent of each (`masks`, nothing for an utterance it sent nothing of), and that availability.
pub fn sent_window<'a>(conv: &str, utterances: &'a [UtteranceRecord], masks: &Masks) -> (Vec<[bool; 3]>, Window<'a>) {
    let avail: Vec<[bool; 3]> = utterances
        .iter()
        .map(|u| masks.get(&(conv.to_string(), u.position)).copied().unwrap_or_default())
        .collect();
    let utterances = utterances
        .iter()
        .zip(&avail)
        .map(|(u, a)| Utterance {
            speaker: u.speaker,
            features: std::array::from_fn(|m| u.features[m].as_deref().filter(|_| a[m])),
        })
        .collect();
    (avail, Window { utterances })
}

/// Replays `steps` into `sensor` while reading results from `sub` until a window of every key
/// of `want` arrived; returns those windows.
pub async fn replay_and_collect<S, R>(want: &Finals, steps: Vec<Step>, mut sensor: S, sub: &mut R) -> Finals
where
    S: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin,
{
    let writer = tokio::spawn(async move {
        replay::send(&mut sensor, &steps, false).await.unwrap();
        sensor
    });
    let mut dec = FrameDecoder::default();
    let mut got = HashMap::new();
    let mut buf = vec![0u8; 1 << 16];
    while got.len() < want.len() {
        let n = sub.read(&mut buf).await.unwrap();
        assert!(n > 0, "daemon closed the subscriber stream");
        for m in dec.feed(&buf[..n]) {
            if let Message::Result(r) = m.unwrap() {
                let key = (r.conversation.to_string(), r.closed_utterance);
                if want.contains_key(&key) {
                    got.insert(key, r.utterances);
                }
            }
        }
    }
    let _sensor = writer.await.unwrap();
    got
}

/// `start_unix`, then `steps` replayed through a second connection: the windows of `want`.
pub async fn unix_replay(
    pipeline: Pipeline,
    seed: u64,
    scenario: u64,
    opts: ServeOptions,
    steps: Vec<Step>,
    want: &Finals,
) -> Finals {
    let mut d = start_unix(pipeline, seed, scenario, opts).await;
    let sensor = d.connect().await;
    let got = replay_and_collect(want, steps, sensor, &mut d.sub).await;
    d.stop().await;
    got
}

/// `start` (scenario 0) on a `serial_rig`, a subscriber on its socket, then `steps` replayed
/// into the pty: the windows of `want`.
pub async fn serial_replay(
    pipeline: Pipeline,
    seed: u64,
    opts: ServeOptions,
    steps: Vec<Step>,
    want: &Finals,
) -> Finals {
    let mut rig = serial_rig();
    let (stop, h) = start(pipeline, seed, rig.endpoints, 0, opts).await;
    let mut sub = tokio::net::UnixStream::connect(&rig.path).await.unwrap();
    subscribe(&mut sub).await;
    rig.port.write_all(&[0]).await.unwrap();
    let got = replay_and_collect(want, steps, rig.port, &mut sub).await;
    let _ = stop.send(());
    h.await.unwrap();
    got
}
