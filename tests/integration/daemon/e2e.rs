//! End-to-end: the CMU-MOSI val recording is replayed into the daemon running the real model,
//! once through a Unix socket with `gsdnet eval`'s random mask at rate 0.3 (the entries it hides
//! are sent as sensor dropouts), once through a pseudo-terminal serial pair with a camera outage
//! and a microphone outage over spans of the replay timeline. For each conversation, the window
//! published when its last utterance closes must equal what the evaluation computes for the
//! same masks: labels and probabilities per utterance, and the accuracy `eval::evaluate` reports.
//! No sleeps: each utterance closes on its own messages. The Unix run uses a paused tokio clock.
//! The pty run uses the real clock with long deadlines: a pty hands bytes over through a kernel
//! work queue, and a paused clock auto-advances to the next assembly deadline whenever the
//! runtime looks idle, i.e. possibly while a frame is still inside the pty.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::util::replay::{replay_options, sent_masks, serial_rig, start, start_unix, subscribe, SerialRig};
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::client::replay::{self, DropSpan, ReplayOptions, Step};
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::server::ServeOptions;
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::eval::{self, EvalConfig, Scenario};
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline, Utterance, Window};
use gsdnet_edge::protocol::{FrameDecoder, Message, Modality, Probs, UtteranceResult};
use gsdnet_edge::recording::Recording;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const STEPS: Option<usize> = Some(5);
const SEED: u64 = 0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn val_recording() -> Recording {
    let file = repo().join("data/mosi-val.gsdrec");
    let path = if file.is_file() {
        file
    } else {
        repo().join("../shared/data/cmu-mosi/val")
    };
    gsdnet_edge::dataset::load(&path).unwrap_or_else(|e| panic!("val data at {}: {e}", path.display()))
}

fn pipeline() -> Pipeline {
    let model = Model::load(
        &repo().join("models/gsdnet-mosi"),
        BackendKind::Tract,
        &BackendOptions::default(),
    )
    .unwrap();
    Pipeline::new(
        model,
        &gsdnet_edge::pipeline::PipelineOptions {
            steps: STEPS,
            ..Default::default()
        },
    )
    .unwrap()
}

fn options(window: usize, deadline_ms: u64) -> ServeOptions {
    replay_options(
        ServedModel::from_manifest(&pipeline().model().manifest).unwrap(),
        window,
        deadline_ms,
    )
}

/// What the evaluation computes: one window per conversation, the sampler stream of
/// (SEED, scenario, conversation, window 0).
fn expected(
    rec: &Recording,
    masks: &HashMap<(String, u32), [bool; 3]>,
    scenario: u64,
) -> HashMap<String, Vec<UtteranceResult>> {
    let mut pipe = pipeline();
    let model = ServedModel::from_manifest(&pipe.model().manifest).unwrap();
    let mut out = HashMap::new();
    for c in &rec.conversations {
        let avail: Vec<[bool; 3]> = c
            .utterances
            .iter()
            .map(|u| masks.get(&(c.id.clone(), u.position)).copied().unwrap_or_default())
            .collect();
        let window = Window {
            utterances: c
                .utterances
                .iter()
                .zip(&avail)
                .map(|(u, a)| Utterance {
                    speaker: u.speaker,
                    features: std::array::from_fn(|m| u.features[m].as_deref().filter(|_| a[m])),
                })
                .collect(),
        };
        let mut noise = SeededNoise::for_window(SEED, scenario, &c.id, 0);
        let res = pipe.run(&window, Completion::Gsdnet, &mut noise).unwrap();
        let utts = c
            .utterances
            .iter()
            .zip(&avail)
            .zip(res.utterances)
            .map(|((u, a), r)| UtteranceResult {
                utterance: u.position,
                avail: a.iter().enumerate().map(|(m, &x)| u8::from(x) << m).sum(),
                label: r.label as u16,
                label_name: model.class_name(r.label),
                probs: Probs::from_vec(r.probs).unwrap(),
                reg: r.regression,
            })
            .collect();
        out.insert(c.id.clone(), utts);
    }
    out
}

/// Replays `steps` into `sensor` while reading results from `sub` until every conversation's
/// final window arrived; returns those windows.
async fn replay_and_collect<S, R>(
    rec: &Recording,
    steps: Vec<Step>,
    mut sensor: S,
    sub: &mut R,
) -> HashMap<String, Vec<UtteranceResult>>
where
    S: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin,
{
    let last: HashMap<String, u32> = rec
        .conversations
        .iter()
        .map(|c| (c.id.clone(), c.utterances.last().unwrap().position))
        .collect();
    let writer = tokio::spawn(async move {
        replay::send(&mut sensor, &steps, false).await.unwrap();
        sensor
    });
    let mut dec = FrameDecoder::default();
    let mut finals = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while finals.len() < last.len() {
        let n = sub.read(&mut buf).await.unwrap();
        assert!(n > 0, "daemon closed the subscriber stream");
        for m in dec.feed(&buf[..n]) {
            if let Message::Result(r) = m.unwrap() {
                if last.get(r.conversation.as_str()) == Some(&r.closed_utterance) {
                    finals.insert(r.conversation.to_string(), r.utterances);
                }
            }
        }
    }
    let _sensor = writer.await.unwrap();
    finals
}

fn assert_same(got: &HashMap<String, Vec<UtteranceResult>>, want: &HashMap<String, Vec<UtteranceResult>>) {
    assert_eq!(got.len(), want.len());
    for (conv, w) in want {
        let g = &got[conv];
        assert_eq!(g.len(), w.len(), "{conv}");
        for (a, b) in g.iter().zip(w) {
            assert_eq!(
                (a.utterance, a.avail, a.label, &a.label_name),
                (b.utterance, b.avail, b.label, &b.label_name),
                "{conv}"
            );
            assert_eq!(a.probs.len(), 2, "{conv}: K = 2 probabilities");
            assert!(
                a.reg.is_some() && b.reg.is_some(),
                "{conv}: the MOSI model has a regression head"
            );
            for (x, y) in a.probs.iter().zip(&b.probs) {
                assert!(
                    (x - y).abs() <= 1e-6,
                    "{conv} utterance {}: probs {:?} vs {:?}",
                    a.utterance,
                    a.probs,
                    b.probs
                );
            }
        }
    }
}

fn accuracy(rec: &Recording, got: &HashMap<String, Vec<UtteranceResult>>) -> f64 {
    let (mut ok, mut n) = (0usize, 0usize);
    for c in &rec.conversations {
        for (u, r) in c.utterances.iter().zip(&got[&c.id]) {
            if let Some(bin) = u.label {
                n += 1;
                ok += usize::from(bin == u32::from(r.label));
            }
        }
    }
    ok as f64 / n as f64
}

#[tokio::test(start_paused = true)]
async fn unix_replay_with_eval_mask_equals_eval() {
    let rec = val_recording();
    let w = pipeline().model().manifest.dims.window;
    assert!(
        rec.conversations.iter().all(|c| c.utterances.len() <= w),
        "each val video fits one window"
    );
    let rate = 0.3;
    let scenario = Scenario::Rate(rate);
    let mods = pipeline().model().manifest.modalities;
    let opts = ReplayOptions {
        interval_ms: 1000,
        drops: Vec::new(),
        mask: Some((rate, SEED, mods)),
        modalities: Some(mods),
    };
    let steps = replay::plan(&rec, &opts).unwrap();
    let masks = sent_masks(&steps);
    let want = expected(&rec, &masks, scenario.key());

    let mut d = start_unix(pipeline(), SEED, scenario.key(), options(w, 1_000)).await;
    let sensor = d.connect().await;
    let got = replay_and_collect(&rec, steps, sensor, &mut d.sub).await;
    d.stop().await;
    assert_same(&got, &want);

    let cfg = EvalConfig {
        completions: vec![Completion::Gsdnet.into()],
        seeds: vec![SEED],
        scenarios: vec![scenario],
        threads: 1,
    };
    let rows = eval::evaluate(&rec, &cfg, &|| Ok(pipeline()), &|_| {}).unwrap();
    assert_eq!(
        accuracy(&rec, &got),
        rows[0].accuracy,
        "daemon accuracy equals gsdnet eval's"
    );
}

#[tokio::test]
async fn serial_replay_with_camera_and_mic_outages_equals_pipeline() {
    let rec = val_recording();
    let w = pipeline().model().manifest.dims.window;
    // Timeline: one utterance per second; camera out 20-70 s, microphone out 50-120 s.
    let drops = vec![
        DropSpan {
            modality: Modality::Visual,
            from_s: 20.0,
            to_s: 70.0,
        },
        DropSpan {
            modality: Modality::Audio,
            from_s: 50.0,
            to_s: 120.0,
        },
    ];
    let opts = ReplayOptions {
        interval_ms: 1000,
        drops,
        mask: None,
        modalities: None,
    };
    let steps = replay::plan(&rec, &opts).unwrap();
    let masks = sent_masks(&steps);
    assert!(
        masks.values().any(|a| *a == [true, false, false]),
        "both outages overlap somewhere"
    );
    let want = expected(&rec, &masks, 0);

    let SerialRig {
        endpoints,
        mut port,
        path,
        _dir,
    } = serial_rig();
    let (stop, h) = start(pipeline(), SEED, endpoints, 0, options(w, 60_000)).await;
    let mut sub = tokio::net::UnixStream::connect(&path).await.unwrap();
    subscribe(&mut sub).await;
    port.write_all(&[0]).await.unwrap();
    let got = replay_and_collect(&rec, steps, port, &mut sub).await;
    let _ = stop.send(());
    h.await.unwrap();
    assert_same(&got, &want);
}
