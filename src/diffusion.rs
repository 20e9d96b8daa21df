//! Reverse VE SDE sampler with inpainting (DESIGN.md "Sampler"): Euler-Maruyama over node
//! latents `x [1,3,W,d]` and eigenvalues `lam [1,3,k]`, observed entries replaced by their
//! noised true values at every step, `A_t = U diag(lam_t) U^T` fed to the feature score network.
//!
//! Noise comes from a `NoiseSource` the caller injects: `SeededNoise` (the evaluation streams of
//! DESIGN.md) or `RecordedNoise` (tensors of a golden case). All buffers live in `Sampler` and
//! are reused across steps and windows; a step allocates nothing of its own.

use thiserror::Error;

use crate::backend::{Backend, BackendError};
use crate::rng;
use crate::spectral::Spectral;
use crate::tensor::Tensor;

/// One noise tensor of the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// `Zx_init`, 3*W*d values.
    XInit,
    /// `Zl_init`, 3*k values.
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
}

/// Where the sampler's Gaussian noise comes from.
pub trait NoiseSource {
    /// Fills `out` with the standard normals of `draw`.
    fn fill(&mut self, draw: Draw, out: &mut [f32]) -> Result<(), NoiseError>;
}

/// The seeded streams of DESIGN.md, under a window's sampler key K.
#[derive(Debug, Clone, Copy)]
pub struct SeededNoise {
    key: u64,
}

impl SeededNoise {
    pub fn from_key(key: u64) -> Self {
        SeededNoise { key }
    }

    /// `K = derive(seed, 2, scenario, fnv1a64(conv_id), window_index)`.
    pub fn for_window(seed: u64, scenario: u64, conv_id: &str, window_index: u64) -> Self {
        Self::from_key(rng::derive(
            seed,
            &[2, scenario, rng::fnv1a64(conv_id), window_index],
        ))
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
}

/// Noise replayed from recorded tensors: `zx [S, 3*W*d]` and `zl [S, 3*k]` flattened per step.
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

#[derive(Debug, Error)]
pub enum SamplerError {
    #[error(transparent)]
    Noise(#[from] NoiseError),
    #[error("sampler: {0}")]
    Backend(#[from] BackendError),
    #[error("sampler: {what} became non-finite at step {step}")]
    NonFinite { what: &'static str, step: usize },
}

/// VE SDE constants of one modality stream.
#[derive(Debug, Clone, Copy)]
pub struct Ve {
    pub sigma: f64,
}

impl Ve {
    /// Marginal std `sqrt((sigma^(2t) - 1) / (2 ln sigma))`.
    pub fn std(self, t: f64) -> f64 {
        ((self.sigma.powf(2.0 * t) - 1.0) / (2.0 * self.sigma.ln())).sqrt()
    }

    /// Diffusion coefficient `sigma^t`.
    pub fn g(self, t: f64) -> f64 {
        self.sigma.powf(t)
    }
}

/// Sampler settings: both SDEs, the end time and the number of steps.
#[derive(Debug, Clone, Copy)]
pub struct SdeParams {
    pub x: Ve,
    pub lam: Ve,
    pub eps: f64,
    pub steps: usize,
}

impl SdeParams {
    /// `t_i = 1 - i dt`, `dt = (1 - eps) / S`.
    pub fn time(&self, i: usize) -> f64 {
        1.0 - i as f64 * self.dt()
    }

    pub fn dt(&self) -> f64 {
        (1.0 - self.eps) / self.steps as f64
    }
}

/// Everything the sampler conditions on, for one window (shapes of DESIGN.md, batch 1).
pub struct Condition<'a> {
    pub h: &'a Tensor,
    pub cond: &'a Tensor,
    pub avail: &'a Tensor,
    pub node_mask: &'a Tensor,
    pub u: &'a Tensor,
    pub lam_obs: &'a Tensor,
    pub spectral: &'a Spectral,
}

/// Reusable sampler state for windows of width W, latent d and k eigenpairs.
pub struct Sampler {
    w: usize,
    d: usize,
    k: usize,
    x: Tensor,
    lam: Tensor,
    x_mean: Vec<f32>,
    lam_mean: Vec<f32>,
    adj_t: Tensor,
    t: Tensor,
    sx: [Tensor; 1],
    sl: [Tensor; 1],
    zx: Vec<f32>,
    zl: Vec<f32>,
    /// `obs[m * W + i]`: entry observed on a valid node.
    obs: Vec<bool>,
    /// `full[m]`: modality observed on every valid node.
    full: [bool; 3],
}

impl Sampler {
    pub fn new(w: usize, d: usize, k: usize) -> Self {
        Sampler {
            w,
            d,
            k,
            x: Tensor::zeros(&[1, 3, w, d]),
            lam: Tensor::zeros(&[1, 3, k]),
            x_mean: vec![0.0; 3 * w * d],
            lam_mean: vec![0.0; 3 * k],
            adj_t: Tensor::zeros(&[1, 3, w, w]),
            t: Tensor::zeros(&[1]),
            sx: [Tensor::zeros(&[1, 3, w, d])],
            sl: [Tensor::zeros(&[1, 3, k])],
            zx: vec![0.0; 3 * w * d],
            zl: vec![0.0; 3 * k],
            obs: vec![false; 3 * w],
            full: [false; 3],
        }
    }

    /// Observation masks from `avail [1,W,3]` and `node_mask [1,W]`.
    fn set_masks(&mut self, avail: &[f32], node_mask: &[f32]) {
        let w = self.w;
        for m in 0..3 {
            let mut full = true;
            for i in 0..w {
                let valid = node_mask[i] > 0.5;
                let seen = avail[i * 3 + m] > 0.5;
                self.obs[m * w + i] = valid && seen;
                full &= !valid || seen;
            }
            self.full[m] = full;
        }
    }

    /// Inpainting: observed entries take `h + std * z`, full modalities `lam_obs + std * z`.
    fn inpaint(&mut self, c: &Condition, std_x: f32, std_l: f32) {
        let (w, d, k) = (self.w, self.d, self.k);
        let (h, x) = (c.h.data(), self.x.data_mut());
        for (row, &seen) in self.obs.iter().enumerate() {
            if seen {
                for j in row * d..(row + 1) * d {
                    x[j] = h[j] + std_x * self.zx[j];
                }
            }
        }
        debug_assert_eq!(self.obs.len(), 3 * w);
        let (lo, lam) = (c.lam_obs.data(), self.lam.data_mut());
        for m in (0..3).filter(|&m| self.full[m]) {
            for j in m * k..(m + 1) * k {
                lam[j] = lo[j] + std_l * self.zl[j];
            }
        }
    }

    /// One Euler-Maruyama step at step index `i`.
    fn step(
        &mut self,
        p: &SdeParams,
        i: usize,
        c: &Condition,
        nets: [&mut dyn Backend; 2],
        noise: &mut dyn NoiseSource,
    ) -> Result<(), SamplerError> {
        let [s_theta, s_phi] = nets;
        let (t, dt) = (p.time(i), p.dt());
        noise.fill(Draw::X(i), &mut self.zx)?;
        noise.fill(Draw::Lam(i), &mut self.zl)?;
        self.inpaint(c, p.x.std(t) as f32, p.lam.std(t) as f32);
        c.spectral.low_rank_all(self.lam.data(), self.adj_t.data_mut());
        self.t.data_mut()[0] = t as f32;
        s_theta.run(
            &[&self.x, &self.t, c.cond, c.avail, &self.adj_t, c.node_mask],
            &mut self.sx,
        )?;
        s_phi.run(
            &[&self.lam, &self.t, c.lam_obs, c.u, c.cond, c.avail, c.node_mask],
            &mut self.sl,
        )?;
        if !self.sx[0].all_finite() || !self.sl[0].all_finite() {
            return Err(SamplerError::NonFinite {
                what: "score",
                step: i,
            });
        }
        // f32 coefficients in the reference's order: x + ((g*g)*s)*dt, then x_mean + (g*sqrt(dt))*z.
        let dt32 = dt as f32;
        let sqrt_dt = f64::from(dt32).sqrt() as f32;
        let (gx, gl) = (p.x.g(t) as f32, p.lam.g(t) as f32);
        euler(
            self.x.data_mut(),
            &mut self.x_mean,
            self.sx[0].data(),
            &self.zx,
            gx,
            dt32,
            sqrt_dt,
        );
        euler(
            self.lam.data_mut(),
            &mut self.lam_mean,
            self.sl[0].data(),
            &self.zl,
            gl,
            dt32,
            sqrt_dt,
        );
        Ok(())
    }

    /// Runs the full reverse SDE with `nets = [s_theta, s_phi]` and writes
    /// `out = [x0 [1,3,W,d], lam0 [1,3,k]]`.
    pub fn run(
        &mut self,
        p: &SdeParams,
        c: &Condition,
        nets: [&mut dyn Backend; 2],
        noise: &mut dyn NoiseSource,
        out: [&mut Tensor; 2],
    ) -> Result<(), SamplerError> {
        let ([s_theta, s_phi], [x0, lam0]) = (nets, out);
        let (w, d, k) = (self.w, self.d, self.k);
        self.set_masks(c.avail.data(), c.node_mask.data());
        noise.fill(Draw::XInit, self.x.data_mut())?;
        noise.fill(Draw::LamInit, self.lam.data_mut())?;
        let (sx1, sl1) = (p.x.std(1.0) as f32, p.lam.std(1.0) as f32);
        self.x.data_mut().iter_mut().for_each(|v| *v *= sx1);
        self.lam.data_mut().iter_mut().for_each(|v| *v *= sl1);
        for i in 0..p.steps {
            self.step(p, i, c, [&mut *s_theta, &mut *s_phi], noise)?;
        }
        let (h, mask, out) = (c.h.data(), c.node_mask.data(), x0.data_mut());
        for m in 0..3 {
            for i in 0..w {
                let row = (m * w + i) * d;
                let src = if self.obs[m * w + i] {
                    &h[row..row + d]
                } else {
                    &self.x_mean[row..row + d]
                };
                for (o, s) in out[row..row + d].iter_mut().zip(src) {
                    *o = s * mask[i];
                }
            }
        }
        let (lo, out) = (c.lam_obs.data(), lam0.data_mut());
        for m in 0..3 {
            let src = if self.full[m] {
                &lo[m * k..(m + 1) * k]
            } else {
                &self.lam_mean[m * k..(m + 1) * k]
            };
            out[m * k..(m + 1) * k].copy_from_slice(src);
        }
        if !x0.all_finite() || !lam0.all_finite() {
            return Err(SamplerError::NonFinite {
                what: "sample",
                step: p.steps,
            });
        }
        Ok(())
    }
}

/// `mean = x + g^2 score dt; x = mean + g sqrt(dt) z`, in f32.
fn euler(x: &mut [f32], mean: &mut [f32], score: &[f32], z: &[f32], g: f32, dt: f32, sqrt_dt: f32) {
    let (g2, n) = (g * g, g * sqrt_dt);
    for j in 0..x.len() {
        mean[j] = x[j] + g2 * score[j] * dt;
        x[j] = mean[j] + n * z[j];
    }
}
