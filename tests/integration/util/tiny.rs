//! Pipeline checks shared by `tiny_model` and `tiny_model_ta3` (the fixture models, any number of
//! modalities): what a completion must leave of a window's observed entries, that the
//! completions differ where entries are missing, and that a complete window skips the sampler.

use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::pipeline::{Completion, Pipeline, Window, WindowOutput};

/// Each modality `m` of an utterance with `avail[m]` (the model's modalities, in order) comes back
/// exactly as `sent`; each completed one is finite.
pub fn assert_observed_unchanged(got: &[Vec<f32>; 3], sent: &[Vec<f32>; 3], avail: &[bool]) {
    for (m, &observed) in avail.iter().enumerate() {
        if observed {
            assert_eq!(got[m], sent[m], "observed features must come back unchanged");
        } else {
            assert!(got[m].iter().all(|v| v.is_finite()));
        }
    }
}

/// `outs` are the outputs of `Completion::ALL` (gsdnet, meanfill, zero) on one window with
/// missing entries: no two neighbours agree.
pub fn assert_completions_differ(outs: &[WindowOutput]) {
    assert_ne!(
        outs[0], outs[1],
        "gsdnet and meanfill agree on a window with missing entries"
    );
    assert_ne!(
        outs[1], outs[2],
        "meanfill and zero agree on a window with missing entries"
    );
}

/// `win` misses nothing: gsdnet (sampler key 1) does not sample, and meanfill (`meanfill_key`)
/// gives the same utterances. Returns gsdnet's output.
pub fn assert_complete_window_skips_the_sampler(p: &mut Pipeline, win: &Window, meanfill_key: u64) -> WindowOutput {
    let a = p.run(win, Completion::Gsdnet, &mut SeededNoise::from_key(1)).unwrap();
    assert!(!a.sampled);
    let b = p
        .run(win, Completion::Meanfill, &mut SeededNoise::from_key(meanfill_key))
        .unwrap();
    assert_eq!(a.utterances, b.utterances);
    a
}
