//! Criterion benches of one window's stages on the bundled model and the first N val utterances
//! (missing rate 0.3, seed 0; the same inputs as `gsdnet bench`), tract backend, one thread:
//! the whole window, the encoders, graph + eigendecomposition, one sampler step's two score
//! network calls, reconstruction and fusion, for N = 16, 32, 64.
//!
//!     cargo bench --bench stages [-- FILTER]
//!
//! `gsdnet-bench` (`gsdnet bench` with allocations counted) remains the tool for p50/p99,
//! allocations and memory; these give criterion's confidence intervals and change detection
//! between runs.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gsdnet_edge::backend::{BackendKind, BackendOptions};
use gsdnet_edge::bench::{masked_window, utterances};
use gsdnet_edge::dataset;
use gsdnet_edge::diffusion::SeededNoise;
use gsdnet_edge::model::{Model, Part};
use gsdnet_edge::pipeline::{Completion, Pipeline};
use gsdnet_edge::spectral::Spectral;
use gsdnet_edge::tensor::Tensor;

const SIZES: [usize; 3] = [16, 32, 64];

fn model() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gsdnet-mosi");
    let opts = BackendOptions {
        threads: 1,
        ..BackendOptions::default()
    };
    Model::load(&dir, BackendKind::Tract, &opts).expect("bundled model")
}

/// Tensors of one window after a full pipeline run, to feed the parts one by one.
struct Stage {
    inputs: Vec<Tensor>,
    scores: Vec<Tensor>,
    s_phi: Vec<Tensor>,
    fusion: Vec<Tensor>,
    x0: Tensor,
    speakers: Vec<u32>,
}

fn stage_inputs(pipe: &mut Pipeline, window: &gsdnet_edge::pipeline::Window) -> Stage {
    pipe.run(window, Completion::Gsdnet, &mut SeededNoise::from_key(0))
        .expect("window runs");
    let it = pipe.intermediates();
    let (w, k) = (it.node_mask.shape()[1], it.lam0.shape()[2]);
    let t = Tensor::from_vec(&[1], vec![0.5]).expect("t");
    let mut adj_t = Tensor::zeros(&[1, it.lam0.shape()[1], w, w]);
    it.spectral.low_rank_all(it.lam0.data(), w, adj_t.data_mut());
    let u = Tensor::from_vec(&[1, w, k], it.spectral.u.clone()).expect("u");
    let speakers = window.utterances.iter().map(|u| u.speaker).collect();
    Stage {
        inputs: it.inputs.to_vec(),
        scores: vec![
            it.x0.clone(),
            t.clone(),
            it.cond.clone(),
            it.avail.clone(),
            adj_t,
            it.node_mask.clone(),
        ],
        s_phi: vec![
            it.lam0.clone(),
            t,
            it.lam_obs.clone(),
            u,
            it.cond.clone(),
            it.avail.clone(),
            it.node_mask.clone(),
        ],
        fusion: vec![
            it.x0.clone(),
            it.avail.clone(),
            it.adj_fusion.clone(),
            it.node_mask.clone(),
        ],
        x0: it.x0.clone(),
        speakers,
    }
}

fn run_part(m: &mut Model, p: Part, inputs: &[&Tensor], out: &mut [Tensor]) {
    m.part(p).run(inputs, out).expect("part runs");
}

fn outputs(m: &mut Model, p: Part) -> Vec<Tensor> {
    m.part(p)
        .spec()
        .outputs
        .iter()
        .map(|o| Tensor::zeros(&o.shape))
        .collect()
}

fn stages(c: &mut Criterion) {
    let rec = dataset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mosi-val.gsdrec")).expect("bundled data");
    let mut pipe = Pipeline::new(model(), &gsdnet_edge::pipeline::PipelineOptions::default()).expect("pipeline");
    let mut parts = model();
    let graph = pipe.model().manifest.graph;
    let (w, k) = (pipe.model().manifest.dims.window, pipe.model().manifest.dims.k);
    let mut g = c.benchmark_group("stages");
    for n in SIZES {
        let utts = utterances(&rec, n).expect("enough utterances");
        let window = masked_window(
            &utts,
            0.3,
            0,
            &gsdnet_edge::modality::Modalities::new([100, 73, 100]).unwrap(),
        );
        let st = stage_inputs(&mut pipe, &window);
        g.bench_with_input(BenchmarkId::new("window", n), &n, |b, _| {
            b.iter(|| {
                pipe.run(black_box(&window), Completion::Gsdnet, &mut SeededNoise::from_key(0))
                    .expect("runs")
            })
        });
        let mut spectral = Spectral::new(w, k);
        g.bench_with_input(BenchmarkId::new("graph+eigen", n), &n, |b, _| {
            b.iter(|| spectral.rebuild(black_box(&st.speakers), &graph).expect("eigen"))
        });
        let mut out = outputs(&mut parts, Part::Encoders);
        let enc_in: Vec<&Tensor> = st.inputs.iter().collect();
        g.bench_with_input(BenchmarkId::new("encoders", n), &n, |b, _| {
            b.iter(|| run_part(&mut parts, Part::Encoders, &enc_in, &mut out))
        });
        let (mut sx, mut sl) = (outputs(&mut parts, Part::STheta), outputs(&mut parts, Part::SPhi));
        let (th_in, ph_in): (Vec<&Tensor>, Vec<&Tensor>) = (st.scores.iter().collect(), st.s_phi.iter().collect());
        g.bench_with_input(BenchmarkId::new("score_nets_one_call", n), &n, |b, _| {
            b.iter(|| {
                run_part(&mut parts, Part::STheta, &th_in, &mut sx);
                run_part(&mut parts, Part::SPhi, &ph_in, &mut sl);
            })
        });
        let mut rec_out = outputs(&mut parts, Part::Recon);
        g.bench_with_input(BenchmarkId::new("recon", n), &n, |b, _| {
            b.iter(|| run_part(&mut parts, Part::Recon, &[&st.x0], &mut rec_out))
        });
        let mut fu_out = outputs(&mut parts, Part::Fusion);
        let fu_in: Vec<&Tensor> = st.fusion.iter().collect();
        g.bench_with_input(BenchmarkId::new("fusion", n), &n, |b, _| {
            b.iter(|| run_part(&mut parts, Part::Fusion, &fu_in, &mut fu_out))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = stages
}
criterion_main!(benches);
