//! The production `WindowRunner`: the core `Pipeline` (completion + classification) on an
//! assembled window, with the seeded sampler streams of DESIGN.md.
//!
//! Sampler key of a window: `SeededNoise::for_window(seed, noise_scenario, conversation,
//! first_position / W)`. With `noise_scenario` set to an evaluation scenario's key, a window that
//! holds a whole conversation gets exactly the noise `gsdnet eval` uses for it. Completion
//! samples (`engine.samples`, else the manifest's) draw from `sample_key(K, s)` as in eval, so
//! such a window gets eval's averaged probabilities too.

use crate::daemon::assembly::WindowJob;
use crate::daemon::inference::{RunError, WindowRunner};
use crate::diffusion::SeededNoise;
use crate::pipeline::{Completion, Pipeline, Utterance, Window};
use crate::protocol::UtteranceResult;

pub struct PipelineRunner {
    pipeline: Pipeline,
    completion: Completion,
    seed: u64,
    noise_scenario: u64,
}

impl PipelineRunner {
    pub fn new(pipeline: Pipeline, completion: Completion, seed: u64, noise_scenario: u64) -> Self {
        PipelineRunner { pipeline, completion, seed, noise_scenario }
    }

    /// The model's window length W.
    pub fn model_window(&self) -> usize {
        self.pipeline.model().manifest.dims.window
    }
}

impl WindowRunner for PipelineRunner {
    fn describe(&self) -> String {
        let p = &self.pipeline;
        let samples = if p.samples() > 1 && self.completion == Completion::Gsdnet { format!(" x {} samples", p.samples()) } else { String::new() };
        format!("{} | completion {} | {} {} steps{samples}", p.model().provider(), self.completion, p.sde().kind, p.sde().steps)
    }

    fn completion(&self) -> String {
        self.completion.name().to_string()
    }

    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        let window = Window {
            utterances: job
                .utterances
                .iter()
                .map(|u| Utterance { speaker: u32::from(u.speaker), features: std::array::from_fn(|m| u.features[m].as_deref()) })
                .collect(),
        };
        let w = self.model_window().max(1) as u64;
        let mut noise = SeededNoise::for_window(self.seed, self.noise_scenario, &job.conversation, job.first_position / w);
        let out = self.pipeline.run(&window, self.completion, &mut noise)?;
        Ok(job
            .utterances
            .iter()
            .zip(out.utterances)
            .map(|(u, o)| UtteranceResult {
                utterance: u.utterance,
                avail: u.avail_bits(),
                label: u8::try_from(o.label).unwrap_or(u8::MAX),
                probs: o.probs,
                reg: o.regression.unwrap_or(f32::NAN),
            })
            .collect())
    }
}
