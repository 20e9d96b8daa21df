//! End-to-end on IEMOCAP 6-way Session 4 (val): two speakers per dialogue, text + audio, six
//! emotions, dialogues of up to 110 utterances (longer than W = 64). The recording is replayed
//! into the daemon serving `models/gsdnet-iemocap6` with `[assembly] windowing = "chunked"`,
//! once through a Unix socket with `gsdnet eval`'s random mask at rate 0.3 (hidden entries sent
//! as sensor dropouts), once through a pseudo-terminal serial pair with a microphone outage and
//! a text (ASR) outage over spans of the replay timeline. The last window of every block of W
//! must equal what the evaluation runs for that block: label, label name, the six probabilities
//! per utterance, and over the Unix run the accuracy and weighted F1 `eval::evaluate` reports.
//! The model's text is its frontend's (all-MiniLM-L6-v2): every utterance's text vector is the
//! runtime's embedding of its transcript (`util::iemocap`), which the replay sends as features.
//! Skipped where `../shared/data/iemocap` is absent (academic licence: never in the repository)
//! or before the frontend set-up.

use std::collections::HashMap;

use crate::util::iemocap;
use crate::util::replay::{
    eval_mask_steps, eval_row, replay_options, sent_masks, sent_window, serial_replay, unix_replay, Finals, Masks,
};
use crate::util::{repo, tract_pipeline};
use gsdnet_edge::client::replay::{self, DropSpan, ReplayOptions};
use gsdnet_edge::config::Windowing;
use gsdnet_edge::daemon::assembly::AssemblySettings;
use gsdnet_edge::daemon::model_info::ServedModel;
use gsdnet_edge::daemon::server::ServeOptions;
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::eval::Scenario;
use gsdnet_edge::metrics;
use gsdnet_edge::pipeline::{Completion, Pipeline, PipelineOptions};
use gsdnet_edge::protocol::{Modality, UtteranceResult};
use gsdnet_edge::recording::Recording;

const SEED: u64 = 0;

/// Session 4 with the model's text view (every transcript through the model's own text
/// frontend, as `gsdnet eval` does); with `longest`, only that many of the longest dialogues.
/// None where ../shared or the frontend set-up is absent.
fn val(longest: Option<usize>) -> Option<Recording> {
    let mut rec = iemocap::for_model("6way", "val", "gsdnet-iemocap6")?;
    if let Some(n) = longest {
        rec.conversations.sort_by_key(|c| std::cmp::Reverse(c.utterances.len()));
        rec.conversations.truncate(n);
    }
    Some(rec)
}

fn pipeline() -> Pipeline {
    tract_pipeline(&repo().join("models/gsdnet-iemocap6"), &PipelineOptions::default())
}

fn options(window: usize, deadline_ms: u64) -> ServeOptions {
    let base = replay_options(
        ServedModel::from_manifest(&pipeline().model().manifest).unwrap(),
        window,
        deadline_ms,
    );
    ServeOptions {
        assembly: AssemblySettings {
            windowing: Windowing::Chunked,
            max_conversations: 40,
            idle_conversation_ms: 6_000_000,
            evict_idle_ms: 6_000_000,
            ..base.assembly
        },
        queue_capacity: 4096,
        // The replay sends ~6000 frames at once (no real time passes under the paused clock):
        // above the default shared bucket of 2000 frames.
        limits: gsdnet_edge::daemon::limits::ConnectionLimits {
            total_frames_per_second: 1_000_000,
            total_burst: 1_000_000,
            ..Default::default()
        },
        result_backlog: 1 << 16,
        ..base
    }
}

/// What the evaluation runs: block `b` of W utterances of each conversation with the sampler
/// stream of (SEED, scenario, conversation, b); keyed by the block's last utterance.
fn expected(rec: &Recording, masks: &Masks, scenario: u64) -> Finals {
    let mut pipe = pipeline();
    let w = pipe.model().manifest.dims.window;
    let model = ServedModel::from_manifest(&pipe.model().manifest).unwrap();
    let mut out = HashMap::new();
    for c in &rec.conversations {
        for (b, block) in c.utterances.chunks(w).enumerate() {
            let (_, window) = sent_window(&c.id, block, masks);
            let mut noise = SeededNoise::for_window(SEED, scenario, &c.id, b as u64);
            let res = pipe.run(&window, Completion::Gsdnet, &mut noise).unwrap();
            let utts = block
                .iter()
                .zip(res.utterances)
                .map(|(u, r)| (u.position, r.label as u16, model.class_name(r.label), r.probs))
                .map(|(utterance, label, label_name, probs)| UtteranceResult {
                    utterance,
                    avail: 0,
                    label,
                    label_name,
                    probs: gsdnet_edge::protocol::Probs::from_vec(probs).unwrap(),
                    reg: None,
                })
                .collect();
            out.insert((c.id.clone(), block.last().unwrap().position), utts);
        }
    }
    out
}

fn assert_same(got: &Finals, want: &Finals) {
    assert_eq!(got.len(), want.len());
    for (key, w) in want {
        let g = &got[key];
        let ids = |v: &[UtteranceResult]| v.iter().map(|u| u.utterance).collect::<Vec<_>>();
        assert_eq!(ids(g), ids(w), "{key:?}: the block's utterances");
        for (a, b) in g.iter().zip(w) {
            assert_eq!(
                (a.label, &a.label_name),
                (b.label, &b.label_name),
                "{key:?} utterance {}",
                a.utterance
            );
            assert_eq!(a.probs.len(), 6, "{key:?}: six emotions");
            assert!(a.reg.is_none(), "the IEMOCAP model has no regression head");
            for (x, y) in a.probs.iter().zip(&b.probs) {
                assert!(
                    (x - y).abs() <= 1e-6,
                    "{key:?} utterance {}: {:?} vs {:?}",
                    a.utterance,
                    a.probs,
                    b.probs
                );
            }
        }
    }
}

/// Accuracy and weighted F1 of the daemon's labels against the recording's.
fn scores(rec: &Recording, got: &Finals) -> (f64, f64) {
    let label: HashMap<(String, u32), u32> = rec
        .conversations
        .iter()
        .flat_map(|c| {
            c.utterances
                .iter()
                .map(move |u| ((c.id.clone(), u.position), u.label.unwrap()))
        })
        .collect();
    let (mut pred, mut truth) = (Vec::new(), Vec::new());
    for ((conv, _), utts) in got {
        for u in utts {
            pred.push(u.label as u8);
            truth.push(label[&(conv.clone(), u.utterance)] as u8);
        }
    }
    (metrics::accuracy(&pred, &truth), metrics::f1_weighted(&pred, &truth))
}

#[tokio::test(start_paused = true)]
async fn unix_replay_of_session_4_with_eval_mask_equals_eval() {
    let Some(rec) = val(None) else { return };
    let w = pipeline().model().manifest.dims.window;
    assert!(
        rec.conversations.iter().any(|c| c.utterances.len() > w),
        "some dialogues span several blocks"
    );
    assert!(
        rec.conversations
            .iter()
            .all(|c| c.utterances.iter().any(|u| u.speaker == 1)),
        "dyadic: two speakers each"
    );
    let (rate, mods) = (0.3, pipeline().model().manifest.modalities);
    let scenario = Scenario::Rate(rate);
    let steps = eval_mask_steps(&rec, rate, SEED, mods);
    let want = expected(&rec, &sent_masks(&steps), scenario.key());

    let got = unix_replay(pipeline(), SEED, scenario.key(), options(w, 1_000), steps, &want).await;
    assert_same(&got, &want);

    let row = eval_row(&rec, SEED, scenario, &pipeline);
    let (acc, f1) = scores(&rec, &got);
    assert_eq!(row.n, rec.n_utterances());
    assert!(
        (acc - row.accuracy).abs() < 1e-12,
        "accuracy {acc} vs eval {}",
        row.accuracy
    );
    assert!(
        (f1 - row.f1_weighted).abs() < 1e-12,
        "weighted F1 {f1} vs eval {}",
        row.f1_weighted
    );
}

#[tokio::test]
async fn serial_replay_with_mic_and_text_outages_equals_the_pipeline() {
    // The six longest dialogues (several blocks each) keep the real-clock run short.
    let Some(rec) = val(Some(6)) else { return };
    let (w, mods) = (
        pipeline().model().manifest.dims.window,
        pipeline().model().manifest.modalities,
    );
    // One utterance per second: microphone out 30-200 s, transcripts (ASR) out 240-400 s. The
    // spans do not overlap: with two modalities an utterance in both would carry nothing, and
    // the daemon skips such an utterance (counted `empty_utterances`) where eval's masks never
    // make one.
    let drops = vec![
        DropSpan {
            modality: Modality::Audio,
            from_s: 30.0,
            to_s: 200.0,
        },
        DropSpan {
            modality: Modality::Text,
            from_s: 240.0,
            to_s: 400.0,
        },
    ];
    let opts = ReplayOptions {
        interval_ms: 1000,
        drops,
        mask: None,
        modalities: Some(mods),
    };
    let steps = replay::plan(&rec, &opts).unwrap();
    let masks = sent_masks(&steps);
    assert!(masks.values().any(|a| *a == [true, false, false]) && masks.values().any(|a| *a == [false, true, false]));
    assert_eq!(masks.len(), rec.n_utterances(), "every utterance keeps a modality");
    let want = expected(&rec, &masks, 0);

    let got = serial_replay(pipeline(), SEED, options(w, 60_000), steps, &want).await;
    assert_same(&got, &want);
}
