//! Stages of one pipeline window and the observer told as each ends (benchmarks and the
//! allocation test time and count per stage with it).

/// Stages of one window in the order `Pipeline::run_observed` finishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Input checks, standardisation and masking.
    Prepare = 0,
    /// The encoders part.
    Encoders = 1,
    /// Conditioning latents, graph, eigendecomposition and observed spectra.
    Graph = 2,
    /// The whole sampler (all steps), or the exact copy when nothing is sampled. With S > 1
    /// samples it also holds samples 1..S-1's recovered graph and fusion (sample 0 runs last,
    /// through the stages below).
    Sampler = 3,
    /// Recovered graph and the reconstruction part.
    Recon = 4,
    /// The fusion part, output checks and the per-utterance outputs.
    Fusion = 5,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Prepare,
        Stage::Encoders,
        Stage::Graph,
        Stage::Sampler,
        Stage::Recon,
        Stage::Fusion,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Encoders => "encoders",
            Stage::Graph => "graph+eigen",
            Stage::Sampler => "sampler",
            Stage::Recon => "recon",
            Stage::Fusion => "fusion",
        }
    }
}

/// Told when each stage of a window ends (benchmarks time stages with it; the clock is theirs).
pub trait StageObserver {
    fn finished(&mut self, stage: Stage);
}

/// Observes nothing: what `Pipeline::run` uses.
pub struct NoObserver;

impl StageObserver for NoObserver {
    fn finished(&mut self, _stage: Stage) {}
}
