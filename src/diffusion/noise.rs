//! Where the sampler's Gaussian noise comes from: the seeded evaluation streams of DESIGN.md
//! (`SeededNoise`) or tensors recorded in a golden case (`RecordedNoise`). Both hand out the same
//! draws by name (`Draw`), so a sampler never knows which one it reads.

use thiserror::Error;

use crate::rng;

/// One noise tensor of the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// `Zx_init`, M*W*d values.
    XInit,
    /// `Zl_init`, M*k values.
    LamInit,
    /// `Zx[i]` of step i.
    X(usize),
    /// `Zl[i]` of step i.
    Lam(usize),
}

#[derive(Debug, Error, PartialEq)]
pub enum NoiseError {
    #[error("recorded noise has no {draw:?}: it holds {steps} steps")]
    NoSuchStep { draw: Draw, steps: usize },
    #[error("recorded noise {draw:?} holds {have} values, the sampler needs {want}")]
    Size { draw: Draw, have: usize, want: usize },
    #[error("this noise source holds one completion sample; sample {sample} was asked for")]
    NoSuchSample { sample: usize },
}

/// Where the sampler's Gaussian noise comes from.
pub trait NoiseSource {
    /// Fills `out` with the standard normals of `draw`.
    fn fill(&mut self, draw: Draw, out: &mut [f32]) -> Result<(), NoiseError>;

    /// Makes later draws those of completion sample `s` of the window (DESIGN.md "Multi-sample
    /// completion"). Sample 0 is the source's own stream, so a source that never sees this call
    /// draws exactly sample 0. Sources holding one sample (recorded noise) refuse `s > 0`.
    fn select_sample(&mut self, s: usize) -> Result<(), NoiseError> {
        if s == 0 {
            Ok(())
        } else {
            Err(NoiseError::NoSuchSample { sample: s })
        }
    }
}

/// Label of the sample derivation under a window key: `K_s = derive(K, SAMPLE_LABEL, s)` for
/// s > 0 (distinct from the draw labels 1, 2, 16, 32 used under a key).
pub const SAMPLE_LABEL: u64 = 64;

/// The stream key of completion sample `s` under window key `key`: `key` itself for s = 0
/// (today's single-sample stream, bit for bit), `derive(key, 64, s)` otherwise.
pub fn sample_key(key: u64, s: usize) -> u64 {
    if s == 0 {
        key
    } else {
        rng::derive(key, &[SAMPLE_LABEL, s as u64])
    }
}

/// The seeded streams of DESIGN.md, under a window's sampler key K. Invariant: `key` is the
/// stream of the selected sample, `sample_key(window, sample)`.
#[derive(Debug, Clone, Copy)]
pub struct SeededNoise {
    window: u64,
    key: u64,
}

impl SeededNoise {
    /// The streams of window key `key`, sample 0 selected.
    pub fn from_key(key: u64) -> Self {
        SeededNoise { window: key, key }
    }

    /// `K = derive(seed, 2, scenario, fnv1a64(conv_id), window_index)`.
    pub fn for_window(seed: u64, scenario: u64, conv_id: &str, window_index: u64) -> Self {
        Self::from_key(rng::derive(seed, &[2, scenario, rng::fnv1a64(conv_id), window_index]))
    }
}

impl NoiseSource for SeededNoise {
    fn fill(&mut self, draw: Draw, out: &mut [f32]) -> Result<(), NoiseError> {
        let key = match draw {
            Draw::XInit => rng::derive(self.key, &[1]),
            Draw::LamInit => rng::derive(self.key, &[2]),
            Draw::X(i) => rng::derive(self.key, &[16, i as u64]),
            Draw::Lam(i) => rng::derive(self.key, &[32, i as u64]),
        };
        rng::fill_normals(key, out);
        Ok(())
    }

    fn select_sample(&mut self, s: usize) -> Result<(), NoiseError> {
        self.key = sample_key(self.window, s);
        Ok(())
    }
}

/// Noise replayed from recorded tensors: `zx [S, M*W*d]` and `zl [S, M*k]` flattened per step.
#[derive(Debug, Clone)]
pub struct RecordedNoise {
    pub zx_init: Vec<f32>,
    pub zl_init: Vec<f32>,
    pub zx: Vec<f32>,
    pub zl: Vec<f32>,
    pub steps: usize,
}

impl NoiseSource for RecordedNoise {
    fn fill(&mut self, draw: Draw, out: &mut [f32]) -> Result<(), NoiseError> {
        let n = out.len();
        let src: &[f32] = match draw {
            Draw::XInit => &self.zx_init,
            Draw::LamInit => &self.zl_init,
            Draw::X(i) | Draw::Lam(i) if i >= self.steps => {
                return Err(NoiseError::NoSuchStep {
                    draw,
                    steps: self.steps,
                })
            }
            Draw::X(i) => self.zx.get(i * n..(i + 1) * n).unwrap_or(&[]),
            Draw::Lam(i) => self.zl.get(i * n..(i + 1) * n).unwrap_or(&[]),
        };
        if src.len() != n {
            let have = match draw {
                Draw::X(_) => self.zx.len() / self.steps.max(1),
                Draw::Lam(_) => self.zl.len() / self.steps.max(1),
                _ => src.len(),
            };
            return Err(NoiseError::Size { draw, have, want: n });
        }
        out.copy_from_slice(src);
        Ok(())
    }
}
