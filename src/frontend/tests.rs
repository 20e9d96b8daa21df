//! The text frontend's batching on the real encoder (skipped before the set-up): rows never mix,
//! padding changes a row only in its last bits, and `warm` prepares every shape `embed` runs.

use std::sync::{Arc, Mutex};

use super::*;
use crate::backend::{Backend, Input, PartSpec, Shape};
use crate::tensor::Tensor;

fn texts() -> Vec<String> {
    let mut t: Vec<String> = [
        "",
        "Hello.",
        "   ",
        "I can't believe you did that, it's wonderful!",
        "Well, I don't know what to say. Maybe we should just go home and talk about it tomorrow?",
        "Ça va? 🙂 Très bien, merci.",
        "No.",
        "What do you mean by that? Say it again, slowly, and look at me when you say it.",
        "tab\tand\u{7}bell",
        "Okay okay okay.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    t.push("word ".repeat(40));
    t.push("a much longer sentence with many words in it ".repeat(20));
    t.extend((0..8).map(|i| format!("utterance number {i} of the dialogue, {}", "yes ".repeat(3 * i))));
    t
}

/// A row's embedding never depends on the rows it is batched with: at one seq bucket it is
/// the same bits alone, first, last, among other rows or next to filler rows (the power-of-two
/// padding repeats the first row).
#[test]
fn other_rows_and_filler_rows_never_reach_a_row() {
    let Some(config) = test_config() else {
        return;
    };
    let mut f = TextFrontend::load(&config.dir, BackendKind::Tract, &BackendOptions::default()).expect("load");
    let rows: Vec<Vec<u32>> = texts().iter().map(|t| f.token_ids(t).expect("ids")).collect();
    let (hidden, pad) = (f.hidden(), f.tokenizer.pad_id());
    for (target, seq) in [(3, 24), (1, 8), (11, 128), (5, 16)] {
        let row = &rows[target];
        let others: Vec<Vec<u32>> = rows.iter().filter(|r| r.len() <= seq && *r != row).cloned().collect();
        let mut alone = vec![0f32; hidden];
        f.encoder
            .embed(&TokenBatch::pad(std::slice::from_ref(row), seq, 1, pad), &mut alone)
            .expect("alone");
        for k in [1, 2, 4, 6] {
            for first in [true, false] {
                let mut batch: Vec<Vec<u32>> = others.iter().take(k).cloned().collect();
                let at = if first { 0 } else { batch.len() };
                batch.insert(at, row.clone());
                let call = batch.len().next_power_of_two();
                let mut out = vec![0f32; batch.len() * hidden];
                f.encoder
                    .embed(&TokenBatch::pad(&batch, seq, call, pad), &mut out)
                    .expect("batch");
                let got = &out[at * hidden..(at + 1) * hidden];
                assert!(
                    got.iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "text {target} at seq {seq} with {k} others (first: {first}) differs from alone"
                );
            }
        }
    }
}

/// `embed` of many texts (sorted, chunked, each chunk padded to its longest row's bucket and
/// to a power-of-two row count) against each text alone (its own bucket): the same up to
/// `BATCHED_VS_ALONE` (a row padded to another seq bucket than alone can move in the last
/// bits: tract's kernels sum in another order at 24 tokens), in the caller's order.
#[test]
fn embedding_texts_together_equals_each_alone() {
    const BATCHED_VS_ALONE: f32 = 1e-6;
    let Some(config) = test_config() else {
        return;
    };
    let mut f = TextFrontend::load(&config.dir, BackendKind::Tract, &BackendOptions::default()).expect("load");
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let alone: Vec<Vec<f32>> = refs.iter().map(|t| f.embed(&[t]).expect("alone").remove(0)).collect();
    for (n, max_batch) in [(2, 16), (3, 16), (5, 16), (13, 16), (20, 16), (20, 3)] {
        f.set_max_batch(max_batch);
        let together = f.embed(&refs[..n]).expect("together");
        assert_eq!(together.len(), n);
        for (i, (got, want)) in together.iter().zip(&alone).enumerate() {
            let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(
                diff <= BATCHED_VS_ALONE,
                "{n} texts (max batch {max_batch}): text {i} differs from alone by {diff:e}"
            );
        }
    }
}

/// (rows, seq) shapes the engine was prepared for, and run at.
type Seen = Arc<Mutex<(Vec<(usize, usize)>, Vec<(usize, usize)>)>>;

/// An engine that records the shapes it is prepared for and run at.
struct Recording {
    inner: Box<dyn Backend>,
    seen: Seen,
}

impl Backend for Recording {
    fn spec(&self) -> &PartSpec {
        self.inner.spec()
    }
    fn provider(&self) -> String {
        self.inner.provider()
    }
    fn prepare(&mut self, at: Shape) -> Result<(), BackendError> {
        self.seen.lock().expect("lock").0.push((at.batch, at.seq));
        self.inner.prepare(at)
    }
    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        self.inner.run(inputs, outputs)
    }
    fn run_typed(&mut self, inputs: &[Input<'_>], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let s = inputs[0].shape();
        self.seen.lock().expect("lock").1.push((s[0], s[1]));
        self.inner.run_typed(inputs, outputs)
    }
}

/// After `warm(max_batch)` every shape `embed` runs the encoder at was prepared first, for
/// any number of texts of any length.
#[test]
fn warm_prepares_every_shape_embed_runs() {
    let Some(config) = test_config() else {
        return;
    };
    let mut f = TextFrontend::load(&config.dir, BackendKind::Tract, &BackendOptions::default()).expect("load");
    let seen = Arc::default();
    f.encoder = f.encoder.wrap_part(|inner| {
        Box::new(Recording {
            inner,
            seen: Arc::clone(&seen),
        })
    });
    f.set_max_batch(8);
    assert_eq!(f.warm(8).expect("warm"), 4 * 8, "1, 2, 4, 8 rows x 8 seq buckets");
    let words: Vec<String> = [0, 1, 5, 9, 14, 21, 30, 45, 60, 90, 126, 200]
        .iter()
        .map(|&n| "ok ".repeat(n))
        .collect();
    for n in 1..=20 {
        let texts: Vec<&str> = words.iter().cycle().skip(n).take(n).map(String::as_str).collect();
        f.embed(&texts).expect("embed");
    }
    let (prepared, ran) = &*seen.lock().expect("lock");
    let missing: Vec<_> = ran.iter().filter(|s| !prepared.contains(s)).collect();
    assert!(missing.is_empty(), "run before being prepared: {missing:?}");
    assert!(ran.iter().any(|&(b, _)| b == 8) && ran.iter().any(|&(_, s)| s == 128));
}
