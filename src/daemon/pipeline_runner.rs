//! The production `WindowRunner`: the core `Pipeline` (completion + classification) on assembled
//! windows, one at a time (`run`) or several of any conversations at once (`run_batch`), with
//! the seeded sampler streams of DESIGN.md.
//!
//! Sampler key of a window: `SeededNoise::for_window(seed, noise_scenario, conversation,
//! first_position / W)`. With `noise_scenario` set to an evaluation scenario's key, a window that
//! holds a whole conversation gets exactly the noise `gsdnet eval` uses for it. Completion
//! samples (`engine.samples`, else the manifest's) draw from `sample_key(K, s)` as in eval, so
//! such a window gets eval's averaged probabilities too.
//!
//! Completion: one mode, or `CompletionChoice::Default`, the manifest's `[completion]` policy
//! resolved per window from its utterances' availability (DESIGN.md "Default completion").
//!
//! Batches: every window is checked first (`Pipeline::check`): an invalid one fails alone; the
//! valid ones run in one `Pipeline::run_batch` per resolved mode, each with its own sampler
//! stream (the key above),
//! so a window's result does not depend on its batch-mates. An engine error fails the valid
//! windows of that batch only. `max_batch` is the pipeline's (`[engine] max_batch`).
//!
//! Results carry the model's K probabilities, the label index and its class name (manifest
//! order), and the regression only when the model has a regression head. Speakers go from the
//! assembled utterances (the wire's `speaker`) into the pipeline's graph unchanged.

use std::sync::Arc;

use thiserror::Error;

use crate::daemon::assembly::WindowJob;
use crate::daemon::inference::{RunError, WindowRunner};
use crate::daemon::model_info::{ServedModel, ServedModelError};
use crate::diffusion::SeededNoise;
use crate::frontend::TextFrontend;
use crate::manifest::{avail_bits, CompletionChoice};
use crate::pipeline::{BatchItem, Completion, Pipeline, PipelineError, Utterance, Window, WindowOutput};
use crate::protocol::{CapacityError, Probs, UtteranceResult};

/// Why the runner failed a window.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The window itself (invalid), or the engine on this window alone (boxed: the engine's
    /// errors are large and this travels in every result).
    #[error(transparent)]
    Pipeline(Box<PipelineError>),
    /// The engine failed the batch holding this window: every valid window of it gets this.
    #[error("batch of {windows} windows failed: {source}")]
    Batch { windows: usize, source: Arc<PipelineError> },
    #[error("label {0} does not fit the protocol")]
    Label(usize),
    #[error("probabilities: {0}")]
    Probs(#[from] CapacityError),
    #[error("the pipeline returned {got} outputs for {want} windows")]
    Outputs { got: usize, want: usize },
}

impl From<PipelineError> for RunnerError {
    fn from(e: PipelineError) -> Self {
        RunnerError::Pipeline(Box::new(e))
    }
}

pub struct PipelineRunner {
    pipeline: Pipeline,
    completion: CompletionChoice,
    seed: u64,
    noise_scenario: u64,
    model: ServedModel,
    /// Outputs of the last batch, reused (their vectors grow to the largest window once).
    outs: Vec<WindowOutput>,
    /// The model's text frontend until the daemon takes it (`take_text_frontend`).
    text_frontend: Option<TextFrontend>,
}

impl PipelineRunner {
    /// Fails only for a manifest whose classes the protocol cannot carry (a `Manifest` is
    /// already checked the same way).
    pub fn new(
        pipeline: Pipeline,
        completion: impl Into<CompletionChoice>,
        seed: u64,
        noise_scenario: u64,
    ) -> Result<Self, ServedModelError> {
        let completion = completion.into();
        let model = ServedModel::from_manifest(&pipeline.model().manifest)?;
        Ok(PipelineRunner {
            pipeline,
            completion,
            seed,
            noise_scenario,
            model,
            outs: Vec::new(),
            text_frontend: None,
        })
    }

    /// Gives the runner its model's text frontend (`TextFrontend::for_manifest`).
    pub fn set_text_frontend(&mut self, frontend: Option<TextFrontend>) {
        self.text_frontend = frontend;
    }

    /// What this runner serves (for `ServeOptions::model`).
    pub fn served_model(&self) -> &ServedModel {
        &self.model
    }

    /// The model's window length W.
    pub fn model_window(&self) -> usize {
        self.pipeline.model().manifest.dims.window
    }

    /// Sets the pipeline's `max_batch` (at least 1): the most windows `run_batch` is given.
    pub fn set_max_batch(&mut self, b: usize) {
        self.pipeline.set_max_batch(b);
    }

    /// The mode `window` runs (module doc).
    fn mode(&self, window: &Window) -> Completion {
        let bits = window.utterances.iter().map(|u| avail_bits(&u.features));
        self.completion
            .resolve(&self.pipeline.model().manifest.completion, bits)
    }

    /// The sampler stream of `job` (module doc).
    fn noise(&self, job: &WindowJob) -> SeededNoise {
        let w = self.model_window().max(1) as u64;
        SeededNoise::for_window(
            self.seed,
            self.noise_scenario,
            &job.conversation,
            job.first_position / w,
        )
    }

    /// The wire form of one window's pipeline output.
    fn results(&self, job: &WindowJob, out: &WindowOutput) -> Result<Vec<UtteranceResult>, RunnerError> {
        let one = |(u, o): (
            &crate::daemon::assembly::ClosedUtterance,
            &crate::pipeline::UtteranceOutput,
        )| {
            Ok(UtteranceResult {
                utterance: u.utterance,
                avail: u.avail_bits(),
                label: u16::try_from(o.label).map_err(|_| RunnerError::Label(o.label))?,
                label_name: self.model.class_name(o.label),
                probs: Probs::from_slice(&o.probs)?,
                reg: o.regression,
            })
        };
        job.utterances.iter().zip(&out.utterances).map(one).collect()
    }
}

/// The pipeline's view of a job's utterances (borrowed).
fn window(job: &WindowJob) -> Window<'_> {
    Window {
        utterances: job
            .utterances
            .iter()
            .map(|u| Utterance {
                speaker: u32::from(u.speaker),
                features: std::array::from_fn(|m| u.features[m].as_deref()),
            })
            .collect(),
    }
}

impl WindowRunner for PipelineRunner {
    fn take_text_frontend(&mut self) -> Option<TextFrontend> {
        self.text_frontend.take()
    }

    fn describe(&self) -> String {
        let p = &self.pipeline;
        let policy = &p.model().manifest.completion;
        let gsdnet = match self.completion {
            CompletionChoice::Mode(m) => m == Completion::Gsdnet,
            CompletionChoice::Default => {
                policy.default == Completion::Gsdnet || policy.patterns().iter().any(|(_, m)| *m == Completion::Gsdnet)
            }
        };
        let samples = if p.samples() > 1 && gsdnet {
            format!(" x {} samples", p.samples())
        } else {
            String::new()
        };
        let batch = if p.max_batch() > 1 {
            format!(" | batches of up to {}", p.max_batch())
        } else {
            String::new()
        };
        let mode = match self.completion {
            CompletionChoice::Default => format!("default ({policy})"),
            CompletionChoice::Mode(m) => m.to_string(),
        };
        format!(
            "{} | completion {mode} | {} {} steps{samples}{batch}",
            p.model().provider(),
            p.sde().kind,
            p.sde().steps
        )
    }

    fn completion(&self) -> String {
        self.completion
            .published(&self.pipeline.model().manifest.completion)
            .to_string()
    }

    fn run(&mut self, job: &WindowJob) -> Result<Vec<UtteranceResult>, RunError> {
        let mut noise = self.noise(job);
        let w = window(job);
        let mode = self.mode(&w);
        let out = self.pipeline.run(&w, mode, &mut noise)?;
        Ok(self.results(job, &out)?)
    }

    fn max_batch(&self) -> usize {
        self.pipeline.max_batch()
    }

    fn run_batch(&mut self, jobs: &[WindowJob]) -> Vec<Result<Vec<UtteranceResult>, RunError>> {
        let windows: Vec<Window> = jobs.iter().map(window).collect();
        let mut answers: Vec<Result<Vec<UtteranceResult>, RunnerError>> = Vec::with_capacity(jobs.len());
        let mut valid = Vec::with_capacity(jobs.len());
        for (i, w) in windows.iter().enumerate() {
            match self.pipeline.check(w) {
                Ok(()) => {
                    valid.push(i);
                    // Replaced by `run_valid`.
                    answers.push(Err(RunnerError::Outputs { got: 0, want: 1 }));
                }
                Err(e) => answers.push(Err(e.into())),
            }
        }
        // One pipeline batch per resolved mode, modes in order of first appearance.
        let modes: Vec<Completion> = valid.iter().map(|&i| self.mode(&windows[i])).collect();
        let mut seen: Vec<Completion> = Vec::new();
        for &m in &modes {
            if !seen.contains(&m) {
                seen.push(m);
                let group: Vec<usize> = valid
                    .iter()
                    .zip(&modes)
                    .filter(|(_, &g)| g == m)
                    .map(|(&i, _)| i)
                    .collect();
                self.run_valid(jobs, &windows, &group, m, &mut answers);
            }
        }
        answers.into_iter().map(|a| a.map_err(RunError::from)).collect()
    }
}

impl PipelineRunner {
    /// Runs the windows `valid` (indices into `jobs`, all checked) as one pipeline batch in
    /// `mode`, each with its own sampler stream, and writes their answers.
    fn run_valid(
        &mut self,
        jobs: &[WindowJob],
        windows: &[Window],
        valid: &[usize],
        mode: Completion,
        answers: &mut [Result<Vec<UtteranceResult>, RunnerError>],
    ) {
        let mut noises: Vec<SeededNoise> = valid.iter().map(|&i| self.noise(&jobs[i])).collect();
        let mut items: Vec<BatchItem> = valid
            .iter()
            .zip(noises.iter_mut())
            .map(|(&i, noise)| BatchItem {
                window: &windows[i],
                noise,
            })
            .collect();
        let mut outs = std::mem::take(&mut self.outs);
        match self.pipeline.run_batch(&mut items, mode, &mut outs) {
            Ok(()) if outs.len() == valid.len() => {
                for (&i, out) in valid.iter().zip(&outs) {
                    answers[i] = self.results(&jobs[i], out);
                }
            }
            Ok(()) => {
                for &i in valid {
                    answers[i] = Err(RunnerError::Outputs {
                        got: outs.len(),
                        want: valid.len(),
                    });
                }
            }
            Err(e) => {
                let source = Arc::new(e);
                for &i in valid {
                    answers[i] = Err(RunnerError::Batch {
                        windows: valid.len(),
                        source: Arc::clone(&source),
                    });
                }
            }
        }
        self.outs = outs;
    }
}
