//! Checks shared by `batching` (tract) and `ort::batching` (ONNX Runtime): a
//! window's outputs are the same whether it runs at its bucket or padded to W, alone or batched
//! with other conversations' windows, in any order, with one or several completion samples.
//! Bundled models; features drawn from each model's training statistics (no accuracy is
//! claimed here, only equality).
#![allow(dead_code)]

use gsdnet_edge::backend::BackendKind;
use gsdnet_edge::backend::BackendOptions;
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::manifest::Manifest;
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{BatchItem, Completion, Pipeline, Utterance, Window, WindowOutput};
use gsdnet_edge::rng;

use super::repo;

/// Probabilities agree to this (absolute); labels and `sampled` exactly.
const PROB_TOL: f32 = 2e-5;
/// Reconstructed raw features (relative to their scale).
const FEAT_TOL: f32 = 1e-4;

struct Conv {
    speakers: Vec<u32>,
    feats: Vec<[Option<Vec<f32>>; 3]>,
}

/// `n` utterances of two speakers with features `mean + std * N(0,1)`, each modality missing
/// with probability `rate` (never all of an utterance).
fn conversation(man: &Manifest, n: usize, rate: f64, key: u64) -> Conv {
    let mods = man.modalities;
    let mut u = vec![0.0f64; n * 3];
    rng::fill_uniforms(rng::derive(key, &[1]), &mut u);
    let feats = (0..n)
        .map(|i| {
            let mut f: [Option<Vec<f32>>; 3] = Default::default();
            for m in mods.iter() {
                let size = mods.sizes()[m.index()];
                let mut z = vec![0.0f32; size];
                rng::fill_normals(rng::derive(key, &[2, i as u64, m.index() as u64]), &mut z);
                let (mean, std) = (&man.norm.mean[m.index()], &man.norm.std[m.index()]);
                let first = mods.iter().next() == Some(m);
                if first || u[i * 3 + m.index()] >= rate {
                    f[m.index()] = Some((0..size).map(|c| mean[c] + std[c] * z[c]).collect());
                }
            }
            f
        })
        .collect();
    Conv {
        speakers: (0..n).map(|i| (i % 3 == 1) as u32).collect(),
        feats,
    }
}

fn window(c: &Conv) -> Window<'_> {
    let utterances = c
        .feats
        .iter()
        .zip(&c.speakers)
        .map(|(f, &speaker)| Utterance {
            speaker,
            features: std::array::from_fn(|m| f[m].as_deref()),
        })
        .collect();
    Window { utterances }
}

/// The engine the checks load models with.
#[derive(Clone)]
pub struct Engine {
    pub kind: BackendKind,
    pub opts: BackendOptions,
}

fn pipeline_on(e: &Engine, model: &str, buckets: Option<Vec<usize>>, samples: usize, max_batch: usize) -> Pipeline {
    let mut man = Manifest::load(&repo().join("models").join(model)).expect("manifest");
    if let Some(b) = buckets {
        man.buckets = b;
    }
    let model = Model::from_manifest(man, e.kind, &e.opts).expect("model");
    let opts = gsdnet_edge::pipeline::PipelineOptions {
        samples: Some(samples),
        max_batch,
        ..Default::default()
    };
    Pipeline::new(model, &opts).expect("pipeline")
}

fn alone(p: &mut Pipeline, convs: &[Conv]) -> Vec<WindowOutput> {
    convs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            p.run(
                &window(c),
                Completion::Gsdnet,
                &mut SeededNoise::from_key(100 + i as u64),
            )
            .expect("runs")
        })
        .collect()
}

/// Runs `order` (indices into `convs`) as one `run_batch` call; outputs back in `convs` order.
fn batched(p: &mut Pipeline, convs: &[Conv], order: &[usize]) -> Vec<WindowOutput> {
    let windows: Vec<Window> = order.iter().map(|&i| window(&convs[i])).collect();
    let mut noises: Vec<SeededNoise> = order.iter().map(|&i| SeededNoise::from_key(100 + i as u64)).collect();
    let mut items: Vec<BatchItem> = windows
        .iter()
        .zip(noises.iter_mut())
        .map(|(window, noise)| BatchItem { window, noise })
        .collect();
    let mut outs = Vec::new();
    p.run_batch(&mut items, Completion::Gsdnet, &mut outs)
        .expect("batch runs");
    let mut back = vec![WindowOutput::default(); convs.len()];
    for (o, &i) in outs.into_iter().zip(order) {
        back[i] = o;
    }
    back
}

/// Largest probability difference; panics on any label, flag or feature-size difference.
fn compare(a: &[WindowOutput], b: &[WindowOutput], what: &str) -> f32 {
    let mut worst = 0.0f32;
    for (w, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.sampled, y.sampled, "{what}: window {w} sampled");
        assert_eq!(x.utterances.len(), y.utterances.len());
        for (i, (u, v)) in x.utterances.iter().zip(&y.utterances).enumerate() {
            for (p, q) in u.probs.iter().zip(&v.probs) {
                worst = worst.max((p - q).abs());
            }
            assert_eq!(
                u.label, v.label,
                "{what}: window {w} utterance {i} label ({:?} vs {:?})",
                u.probs, v.probs
            );
            assert_eq!(u.imputed, v.imputed);
            for (f, g) in u.features.iter().zip(&v.features) {
                assert_eq!(f.len(), g.len());
                for (a, b) in f.iter().zip(g) {
                    assert!(
                        (a - b).abs() <= FEAT_TOL * (1.0 + a.abs()),
                        "{what}: window {w} utterance {i} feature {a} vs {b}"
                    );
                }
            }
        }
    }
    assert!(worst <= PROB_TOL, "{what}: probabilities differ by {worst}");
    worst
}

fn conversations(model: &str, sizes: &[usize]) -> Vec<Conv> {
    let man = Manifest::load(&repo().join("models").join(model)).expect("manifest");
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| conversation(&man, n, 0.4, 7 + i as u64))
        .collect()
}

pub fn buckets_give_the_padded_windows_numbers(e: &Engine) {
    let pipeline = |m: &str, b, s, mb| pipeline_on(e, m, b, s, mb);
    for model in ["gsdnet-mosi", "gsdnet-iemocap6"] {
        let convs = conversations(model, &[3, 8, 9, 16, 17, 31, 33, 64]);
        let mut bucketed = pipeline(model, None, 1, 1);
        let mut padded = pipeline(model, Some(vec![64]), 1, 1);
        assert_eq!(bucketed.bucket(9), 16);
        let got = alone(&mut bucketed, &convs);
        let want = alone(&mut padded, &convs);
        let worst = compare(&got, &want, &format!("{model} bucket vs W"));
        eprintln!("{model}: bucket vs padded to W: worst probability difference {worst:e}");
    }
}

pub fn a_window_does_not_depend_on_its_batch_mates(e: &Engine) {
    let pipeline = |m: &str, b, s, mb| pipeline_on(e, m, b, s, mb);
    let model = "gsdnet-mosi";
    let convs = conversations(model, &[12, 5, 24, 40, 7, 16, 64, 30, 2, 19]);
    let mut one = pipeline(model, None, 1, 1);
    let mut many = pipeline(model, None, 1, 8);
    let want = alone(&mut one, &convs);
    let forward: Vec<usize> = (0..convs.len()).collect();
    let reverse: Vec<usize> = forward.iter().rev().copied().collect();
    let shuffled = [3, 9, 1, 6, 0, 8, 2, 5, 7, 4];
    let mut worst = 0.0f32;
    for order in [&forward[..], &reverse[..], &shuffled[..], &[1, 4, 8]] {
        let got = batched(&mut many, &convs, order);
        let sub: Vec<WindowOutput> = order.iter().map(|&i| got[i].clone()).collect();
        let ref_sub: Vec<WindowOutput> = order.iter().map(|&i| want[i].clone()).collect();
        worst = worst.max(compare(&sub, &ref_sub, &format!("batched {order:?}")));
    }
    eprintln!("batched vs alone: worst probability difference {worst:e}");
}

pub fn completion_samples_batch_like_windows(e: &Engine) {
    let pipeline = |m: &str, b, s, mb| pipeline_on(e, m, b, s, mb);
    let model = "gsdnet-iemocap6";
    let convs = conversations(model, &[10, 20, 33]);
    let mut one = pipeline(model, None, 4, 1);
    let mut many = pipeline(model, None, 4, 8);
    let mut padded = pipeline(model, Some(vec![64]), 4, 1);
    let want = alone(&mut padded, &convs);
    compare(&alone(&mut one, &convs), &want, "S = 4 bucket vs W");
    compare(&batched(&mut many, &convs, &[2, 0, 1]), &want, "S = 4 batched vs W");
}
