//! The production `WindowRunner`: the core `Pipeline` (completion + classification) on an
//! assembled window, with the seeded sampler streams of DESIGN.md.
//!
//! Sampler key of a window: `SeededNoise::for_window(seed, noise_scenario, conversation,
//! first_position / W)`. With `noise_scenario` set to an evaluation scenario's key, a window that
//! holds a whole conversation gets exactly the noise `gsdnet eval` uses for it. Completion
//! samples (`engine.samples`, else the manifest's) draw from `sample_key(K, s)` as in eval, so
//! such a window gets eval's averaged probabilities too.
//!
//! Results carry the model's K probabilities, the label index and its class name (manifest
//! order), and the regression only when the model has a regression head. Speakers go from the
//! assembled utterances (the wire's `speaker`) into the pipeline's graph unchanged.

use crate::daemon::assembly::WindowJob;
use crate::daemon::inference::{RunError, WindowRunner};
use crate::daemon::model_info::{ServedModel, ServedModelError};
use crate::diffusion::SeededNoise;
use crate::pipeline::{Completion, Pipeline, Utterance, UtteranceOutput, Window};
use crate::protocol::{Probs, UtteranceResult};

pub struct PipelineRunner {
    pipeline: Pipeline,
    completion: Completion,
    seed: u64,
    noise_scenario: u64,
    model: ServedModel,
}

impl PipelineRunner {
    /// Fails only for a manifest whose classes the protocol cannot carry (a `Manifest` is
    /// already checked the same way).
    pub fn new(pipeline: Pipeline, completion: Completion, seed: u64, noise_scenario: u64) -> Result<Self, ServedModelError> {
        let model = ServedModel::from_manifest(&pipeline.model().manifest)?;
        Ok(PipelineRunner { pipeline, completion, seed, noise_scenario, model })
    }

    /// What this runner serves (for `ServeOptions::model`).
    pub fn served_model(&self) -> &ServedModel {
        &self.model
    }

    /// The wire form of one pipeline output.
    fn result(&self, utterance: u32, avail: u8, o: UtteranceOutput) -> Result<UtteranceResult, RunError> {
        let label = u16::try_from(o.label).map_err(|_| format!("label {} does not fit the protocol", o.label))?;
        Ok(UtteranceResult {
            utterance,
            avail,
            label,
            label_name: self.model.class_name(o.label),
            probs: Probs::from_vec(o.probs)?,
            reg: o.regression,
        })
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
        job.utterances.iter().zip(out.utterances).map(|(u, o)| self.result(u.utterance, u.avail_bits(), o)).collect()
    }
}
