//! The daemon serves whatever the model defines (protocol v2): a v1 peer is told once that its
//! version is refused while the connection keeps working; a text + audio six-class model gets
//! its own sizes, `NoSuchModality` for visual, K probabilities with class names and no
//! regression; speakers arriving over the socket reach the pipeline unchanged, so a two-speaker
//! conversation gives over the socket exactly what the pipeline gives for the same window (the
//! CMU-MOSI model, and the text + audio three-class fixture with 1024 audio values).

use std::sync::Arc;
use std::time::Duration;

use crate::util::daemon::{
    connect, iemocap_like, options, rejected, unix_daemon, unix_daemon_with, ClassRunner, Client, Speakers,
};
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::daemon::pipeline_runner::PipelineRunner;
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline, Utterance, Window};
use gsdnet_edge::protocol::{
    conversation_id, values, Boundary, Dropout, Features, Message, Modality, RejectReason, WindowResult,
};

fn feat_n(conv: &str, utt: u32, speaker: u16, m: Modality, vals: &[f32]) -> Message {
    let conversation = conversation_id(conv).unwrap();
    Message::Features(Features {
        conversation,
        utterance: utt,
        speaker,
        modality: m,
        timestamp_us: 0,
        values: values(vals).unwrap(),
    })
}

fn dropout(conv: &str, utt: u32, m: Modality) -> Message {
    Message::Dropout(Dropout {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        modality: m,
        timestamp_us: 0,
    })
}

fn start(conv: &str, utt: u32, speaker: u16) -> Message {
    Message::UtteranceStart(Boundary {
        conversation: conversation_id(conv).unwrap(),
        utterance: utt,
        speaker,
        timestamp_us: 0,
    })
}

/// The StatusRequest frame of protocol version 1 (docs/PROTOCOL.md).
const V1_STATUS_REQUEST: [u8; 8] = [0x07, 0x01, 0x06, 0x8b, 0x86, 0xa1, 0xb1, 0x00];

#[tokio::test(start_paused = true)]
async fn a_version_1_peer_is_told_once_and_the_connection_keeps_working() {
    let (_dir, path, daemon) = unix_daemon(options()).await;
    let mut c = connect(&path).await;
    c.raw(&V1_STATUS_REQUEST).await;
    match c.next().await {
        Message::Reject(n) => {
            assert_eq!(n.reason, RejectReason::UnknownVersion);
            assert!(
                n.detail.contains("version 1") && n.detail.contains("version 2"),
                "{}",
                n.detail
            );
        }
        other => panic!("expected a Reject, got {other:?}"),
    }
    // A second v1 frame is counted, not answered again: the next frame is the v2 answer.
    c.raw(&V1_STATUS_REQUEST).await;
    c.send(&Message::StatusRequest).await;
    let s = match c.next().await {
        Message::Status(s) => s,
        other => panic!("expected the status, got {other:?}"),
    };
    assert_eq!(rejected(&s, RejectReason::UnknownVersion), 2);
    // The same connection subscribes and sends sensor input in v2.
    c.send(&Message::Subscribe).await;
    let _ = c.status().await;
    for m in Modality::ALL {
        c.send(&crate::util::daemon::feat("v", 0, m, 0.5)).await;
    }
    assert_eq!(c.result().await.utterances[0].avail, 7);
    daemon.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_text_audio_six_class_model_is_served_by_its_own_layout() {
    let mut opts = options();
    opts.model = iemocap_like();
    let seen = Speakers::default();
    let runner = ClassRunner::new(iemocap_like(), Arc::clone(&seen));
    let (_dir, path, daemon) = unix_daemon_with(Box::new(runner), opts).await;
    let mut c = connect(&path).await;
    c.send(&Message::ModelInfoRequest).await;
    let info = match c.next().await {
        Message::ModelInfo(i) => i,
        other => panic!("expected ModelInfo, got {other:?}"),
    };
    let mods: Vec<(Modality, u32)> = info.modalities.iter().map(|m| (m.modality, m.size)).collect();
    assert_eq!(mods, vec![(Modality::Text, 384), (Modality::Audio, 47)]);
    let names: Vec<&str> = info.classes.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, ["hap", "sad", "neu", "ang", "exc", "fru"]);
    assert_eq!(
        (info.has_regression, info.window, info.name.as_str()),
        (false, 4, "mock-iemocap")
    );
    c.send(&Message::Subscribe).await;
    let _ = c.status().await;
    let mut scored = connect(&path).await;
    scored.send(&Message::SubscribeScored).await;
    let _ = scored.status().await;

    let mut sensor = connect(&path).await;
    let before = tokio::time::Instant::now();
    for msg in [
        feat_n("s", 4, 1, Modality::Text, &[0.1; 384]),
        feat_n("s", 4, 1, Modality::Visual, &[0.1; 100]), // no such modality
        dropout("s", 4, Modality::Visual),                // no such modality either
        feat_n("s", 4, 1, Modality::Audio, &[0.1; 73]),   // CMU-MOSI's size, not this model's
        feat_n("s", 4, 1, Modality::Audio, &[0.1; 47]),
    ] {
        sensor.send(&msg).await;
    }
    let r = c.result().await;
    assert!(
        before.elapsed() < Duration::from_millis(300),
        "closed without waiting for a visual deadline"
    );
    let u = &r.utterances[0];
    assert_eq!(
        (u.avail, u.label, u.label_name.as_str(), u.probs.len(), u.reg),
        (3, 4, "exc", 6, None)
    );
    match scored.next().await {
        Message::Scored(s) => {
            let u = &s.utterances[0];
            assert_eq!(
                (u.label_name.as_str(), u.probs.len(), u.reg, u.confidence),
                ("exc", 6, None, 0.5)
            );
        }
        other => panic!("expected Scored, got {other:?}"),
    }
    let s = c.status().await;
    assert_eq!(
        (
            rejected(&s, RejectReason::NoSuchModality),
            rejected(&s, RejectReason::WrongLength)
        ),
        (2, 1),
        "{s:?}"
    );
    assert_eq!(seen.lock().unwrap().last().cloned(), Some(vec![(4, 1)]));
    daemon.shutdown().await;
}

/// Sends utterance `utt` of `conv` by `speaker`: a start, then each of the model's modalities
/// as features (`Some`) or a dropout.
async fn send_utterance<S>(
    c: &mut Client<S>,
    conv: &str,
    utt: u32,
    speaker: u16,
    feats: &[(Modality, Option<Vec<f32>>)],
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    c.send(&start(conv, utt, speaker)).await;
    for (m, f) in feats {
        match f {
            Some(v) => c.send(&feat_n(conv, utt, speaker, *m, v)).await,
            None => c.send(&dropout(conv, utt, *m)).await,
        }
    }
}

/// Results until the window closed by `utt`.
async fn final_window<S>(c: &mut Client<S>, utt: u32) -> WindowResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let r = c.result().await;
        if r.closed_utterance == utt {
            return r;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn speakers_from_the_wire_reach_the_runner() {
    let seen = Speakers::default();
    let runner = ClassRunner::new(crate::util::daemon::mosi_like(), Arc::clone(&seen));
    let (_dir, path, daemon) = unix_daemon_with(Box::new(runner), options()).await;
    let mut c = connect(&path).await;
    c.send(&Message::Subscribe).await;
    let _ = c.status().await;
    for (utt, speaker) in [(0u32, 0u16), (1, 1), (2, 1), (3, 0)] {
        let feats: Vec<(Modality, Option<Vec<f32>>)> = Modality::ALL
            .iter()
            .map(|&m| (m, Some(vec![0.5; [100, 73, 100][m.index()]])))
            .collect();
        send_utterance(&mut c, "talk", utt, speaker, &feats).await;
    }
    let _ = final_window(&mut c, 3).await;
    assert_eq!(
        seen.lock().unwrap().last().cloned(),
        Some(vec![(0, 0), (1, 1), (2, 1), (3, 0)])
    );
    daemon.shutdown().await;
}

/// A conversation of `speakers.len()` utterances with some entries missing (`holes`: utterance,
/// modality index), over the model's modalities, with deterministic features.
fn conversation(
    mods: &gsdnet_edge::modality::Modalities,
    n: usize,
    holes: &[(usize, usize)],
) -> Vec<[Option<Vec<f32>>; 3]> {
    (0..n)
        .map(|i| {
            std::array::from_fn(|m| {
                let size = mods.size(Modality::ALL[m])?;
                (!holes.contains(&(i, m))).then(|| {
                    (0..size)
                        .map(|j| ((i * 31 + j * 7 + m) % 17) as f32 / 8.0 - 1.0)
                        .collect()
                })
            })
        })
        .collect()
}

/// Serves `dir`'s model with the production runner; sends the conversation by `speakers` over
/// the socket; the final window must equal `Pipeline::run` on the same window (and differ from
/// the window with every speaker 0, so speakers do reach the graph).
async fn socket_equals_pipeline(dir: std::path::PathBuf, speakers: &[u32], holes: &[(usize, usize)]) -> WindowResult {
    let load = || {
        Pipeline::new(
            Model::load(&dir, BackendKind::Tract, &BackendOptions::default()).unwrap(),
            &gsdnet_edge::pipeline::PipelineOptions {
                steps: Some(3),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let mods = load().model().manifest.modalities;
    let feats = conversation(&mods, speakers.len(), holes);
    let run_direct = |spk: &[u32]| {
        let utterances = feats
            .iter()
            .zip(spk)
            .map(|(f, &speaker)| Utterance {
                speaker,
                features: std::array::from_fn(|m| f[m].as_deref()),
            })
            .collect();
        load()
            .run(
                &Window { utterances },
                Completion::Gsdnet,
                &mut SeededNoise::for_window(7, 0, "duo", 0),
            )
            .unwrap()
    };
    let (want, all_zero) = (run_direct(speakers), run_direct(&vec![0; speakers.len()]));
    let runner = PipelineRunner::new(load(), Completion::Gsdnet, 7, 0).unwrap();
    let mut opts = options();
    (opts.model, opts.assembly.window, opts.assembly.deadline_ms) =
        (runner.served_model().clone(), speakers.len(), [60_000; 3]);
    let (_dir, path, daemon) = unix_daemon_with(Box::new(runner), opts).await;
    let mut c = connect(&path).await;
    c.send(&Message::Subscribe).await;
    let _ = c.status().await;
    for (i, (f, &speaker)) in feats.iter().zip(speakers).enumerate() {
        let entries: Vec<(Modality, Option<Vec<f32>>)> = mods.iter().map(|m| (m, f[m.index()].clone())).collect();
        send_utterance(&mut c, "duo", i as u32, speaker as u16, &entries).await;
    }
    let got = final_window(&mut c, speakers.len() as u32 - 1).await;
    daemon.shutdown().await;
    assert_eq!(got.utterances.len(), want.utterances.len());
    for (g, w) in got.utterances.iter().zip(&want.utterances) {
        assert_eq!(
            (usize::from(g.label), g.reg),
            (w.label, w.regression),
            "utterance {}",
            g.utterance
        );
        assert_eq!(g.probs.as_slice(), &w.probs[..], "utterance {}", g.utterance);
    }
    let moved = want
        .utterances
        .iter()
        .zip(&all_zero.utterances)
        .any(|(a, b)| a.probs != b.probs);
    assert!(
        moved,
        "alternating speakers must change the graph, hence some probabilities"
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_speaker_conversation_over_the_socket_equals_the_pipeline_mosi() {
    let dir = crate::util::repo().join("models/gsdnet-mosi");
    let got = socket_equals_pipeline(dir, &[0, 1, 0, 0, 1, 1], &[(1, 2), (3, 0), (4, 1), (4, 2)]).await;
    let u = &got.utterances[0];
    assert!(
        u.reg.is_some() && u.probs.len() == 2 && ["negative", "positive"].contains(&u.label_name.as_str()),
        "{u:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_speaker_conversation_over_the_socket_equals_the_pipeline_text_audio_three_classes() {
    // Text 12 + audio 1024, no visual, calm / happy / angry, no regression head.
    let got = socket_equals_pipeline(crate::util::tiny_ta3(), &[1, 0, 1, 1, 0], &[(1, 1), (3, 0)]).await;
    for u in &got.utterances {
        assert!(u.reg.is_none() && u.probs.len() == 3, "{u:?}");
        assert_eq!(u.label_name.as_str(), ["calm", "happy", "angry"][usize::from(u.label)]);
    }
    assert_eq!(
        got.utterances.iter().map(|u| u.avail).collect::<Vec<_>>(),
        vec![3, 1, 3, 2, 3]
    );
}
