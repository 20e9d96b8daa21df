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

use crate::util::replay::{
    eval_mask_steps, eval_row, mosi_val, replay_options, sent_masks, sent_window, serial_replay, unix_replay, Finals,
    Masks,
};
use crate::util::{repo, tract_pipeline};
use gsdnet_edge::client::replay::{self, DropSpan, ReplayOptions};
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::server::ServeOptions;
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::eval::Scenario;
use gsdnet_edge::pipeline::{Completion, Pipeline, PipelineOptions};
use gsdnet_edge::protocol::{Modality, Probs, UtteranceResult};
use gsdnet_edge::recording::{Conversation, Recording};

const STEPS: Option<usize> = Some(5);
const SEED: u64 = 0;

fn pipeline() -> Pipeline {
    let opts = PipelineOptions {
        steps: STEPS,
        ..Default::default()
    };
    tract_pipeline(&repo().join("models/gsdnet-mosi"), &opts)
}

fn options(window: usize, deadline_ms: u64) -> ServeOptions {
    replay_options(
        ServedModel::from_manifest(&pipeline().model().manifest).unwrap(),
        window,
        deadline_ms,
    )
}

/// The key of a conversation's final window: its id and its last utterance.
fn final_key(c: &Conversation) -> (String, u32) {
    (c.id.clone(), c.utterances.last().unwrap().position)
}

/// What the evaluation computes: one window per conversation (keyed by its last utterance), the
/// sampler stream of (SEED, scenario, conversation, window 0).
fn expected(rec: &Recording, masks: &Masks, scenario: u64) -> Finals {
    let mut pipe = pipeline();
    let model = ServedModel::from_manifest(&pipe.model().manifest).unwrap();
    let mut out = HashMap::new();
    for c in &rec.conversations {
        let (avail, window) = sent_window(&c.id, &c.utterances, masks);
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
        out.insert(final_key(c), utts);
    }
    out
}

fn assert_same(got: &Finals, want: &Finals) {
    assert_eq!(got.len(), want.len());
    for (key, w) in want {
        let (conv, g) = (&key.0, &got[key]);
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

fn accuracy(rec: &Recording, got: &Finals) -> f64 {
    let (mut ok, mut n) = (0usize, 0usize);
    for c in &rec.conversations {
        for (u, r) in c.utterances.iter().zip(&got[&final_key(c)]) {
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
    let rec = mosi_val();
    let w = pipeline().model().manifest.dims.window;
    assert!(
        rec.conversations.iter().all(|c| c.utterances.len() <= w),
        "each val video fits one window"
    );
    let rate = 0.3;
    let scenario = Scenario::Rate(rate);
    let mods = pipeline().model().manifest.modalities;
    let steps = eval_mask_steps(&rec, rate, SEED, mods);
    let masks = sent_masks(&steps);
    let want = expected(&rec, &masks, scenario.key());

    let got = unix_replay(pipeline(), SEED, scenario.key(), options(w, 1_000), steps, &want).await;
    assert_same(&got, &want);

    let row = eval_row(&rec, SEED, scenario, &pipeline);
    assert_eq!(
        accuracy(&rec, &got),
        row.accuracy,
        "daemon accuracy equals gsdnet eval's"
    );
}

#[tokio::test]
async fn serial_replay_with_camera_and_mic_outages_equals_pipeline() {
    let rec = mosi_val();
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

    let got = serial_replay(pipeline(), SEED, options(w, 60_000), steps, &want).await;
    assert_same(&got, &want);
}
