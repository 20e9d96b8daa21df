//! Heap allocations of the pipeline's own code in steady state, with the engine replaced by a
//! mock that allocates nothing: the counting allocator is installed for this test binary, and
//! each stage's count is read through a `StageObserver`. Whatever `gsdnet bench` counts beyond
//! these numbers is inside the inference engine (tract allocates every node output per run).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use gsdnet_edge::backend::{Backend, BackendError, BackendKind, PartSpec};
use gsdnet_edge::bench::{allocation_count, allocations, masked_window, utterances, CountingAlloc};
use gsdnet_edge::dataset;
use gsdnet_edge::diffusion::{SamplerKind, SeededNoise};
use gsdnet_edge::manifest::Manifest;
use gsdnet_edge::model::Model;
use gsdnet_edge::pipeline::{Completion, Pipeline, Stage, StageObserver, WindowOutput};
use gsdnet_edge::tensor::Tensor;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Writes a small input-dependent value to every output; allocates nothing per run.
struct Quiet {
    spec: PartSpec,
}

impl Backend for Quiet {
    fn spec(&self) -> &PartSpec {
        &self.spec
    }
    fn provider(&self) -> String {
        "mock".into()
    }
    fn run(&mut self, inputs: &[&Tensor], outputs: &mut [Tensor]) -> Result<(), BackendError> {
        let s = inputs[0].data().iter().take(8).sum::<f32>() * 1e-3;
        for o in outputs.iter_mut() {
            for (j, v) in o.data_mut().iter_mut().enumerate() {
                *v = s + (j % 7) as f32 * 1e-2;
            }
        }
        Ok(())
    }
}

struct Counts {
    start: u64,
    at: [u64; 6],
}

impl StageObserver for Counts {
    fn finished(&mut self, stage: Stage) {
        self.at[stage as usize] = allocation_count();
    }
}

static ONE_AT_A_TIME: AtomicBool = AtomicBool::new(false);

fn per_stage(sampler: SamplerKind, samples: usize) -> [u64; 6] {
    // The counter is process-wide: the two tests must not overlap.
    while ONE_AT_A_TIME.swap(true, Ordering::Acquire) {
        std::thread::yield_now();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = Manifest::load(&root.join("models/gsdnet-mosi")).unwrap();
    let parts: Vec<Box<dyn Backend>> = manifest
        .parts
        .iter()
        .map(|s| Box::new(Quiet { spec: s.clone() }) as Box<dyn Backend>)
        .collect();
    let model = Model::from_parts(manifest, BackendKind::Tract, parts).unwrap();
    let opts = gsdnet_edge::pipeline::PipelineOptions {
        sampler: Some(sampler),
        samples: Some(samples),
        ..Default::default()
    };
    let mut pipe = Pipeline::new(model, &opts).unwrap();
    let rec = dataset::load(&root.join("data/mosi-val.gsdrec")).unwrap();
    let utts = utterances(&rec, 32).unwrap();
    let window = masked_window(
        &utts,
        0.5,
        3,
        &gsdnet_edge::modality::Modalities::new([100, 73, 100]).unwrap(),
    );
    let mut c = Counts { start: 0, at: [0; 6] };
    let mut out = WindowOutput::default();
    let mut run = |c: &mut Counts, out: &mut WindowOutput| {
        pipe.run_into(&window, Completion::Gsdnet, &mut SeededNoise::from_key(1), c, out)
            .unwrap()
    };
    for _ in 0..3 {
        run(&mut c, &mut out);
    }
    assert!(allocations().is_some(), "the counting allocator is installed");
    c.start = allocation_count();
    run(&mut c, &mut out);
    assert!(out.sampled);
    ONE_AT_A_TIME.store(false, Ordering::Release);
    let mut prev = c.start;
    c.at.map(|a| {
        let d = a - prev;
        prev = a;
        d
    })
}

#[test]
fn steady_state_window_allocates_only_in_the_eigensolver() {
    for (sampler, samples) in SamplerKind::ALL.into_iter().flat_map(|k| [(k, 1), (k, 4)]) {
        let [prepare, encoders, graph, sampling, recon, fusion] = per_stage(sampler, samples);
        // Buffers are sized once per pipeline (and the output once per caller): standardisation,
        // masking, every sampler step, the recovered graph and the results reuse them.
        // With S > 1 the extra samples' fusion and their per-sample results use fixed buffers.
        assert_eq!(
            (prepare, encoders, sampling, recon, fusion),
            (0, 0, 0, 0, 0),
            "{sampler} S={samples}"
        );
        // The structural graph and nalgebra's symmetric eigendecomposition build fresh matrices
        // (W x W and W, plus the solver's workspace) for every window.
        assert!(graph <= 16, "{sampler}: graph + eigen allocated {graph} times");
    }
}
