//! Reverse VE samplers with inpainting (DESIGN.md "Sampler") over node latents `x [R,M,N,d]`
//! and eigenvalues `lam [R,M,k]` (R rows: windows or completion samples of windows, each with
//! its own graph and noise; N the window size the batch runs at; M modality slots): Euler-Maruyama on the reverse SDE (here) or Heun on the
//! probability-flow ODE (`heun`). Observed entries follow their noised true values at every
//! evaluation; `A_t = U diag(lam_t) U^T` is fed to the feature score network.
//!
//! Noise comes from a `NoiseSource` the caller injects (`noise`). All buffers live in `Sampler`
//! and are reused across steps and windows; a step allocates nothing of its own.

mod heun;
mod noise;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use thiserror::Error;

use crate::backend::rows::RowCaller;
use crate::backend::{Backend, BackendError};
use crate::spectral::Spectral;
use crate::tensor::Tensor;

pub use heun::heun_time;
pub use noise::{sample_key, Draw, NoiseError, NoiseSource, RecordedNoise, SeededNoise, SAMPLE_LABEL};

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

/// The integrator, named as in the manifest's `[sde] sampler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SamplerKind {
    /// Euler-Maruyama on the reverse SDE: one call of each score network per step.
    #[serde(rename = "euler_maruyama_inpaint")]
    EulerMaruyama,
    /// Heun on the probability-flow ODE: two calls per step, noise only at t = 1.
    #[serde(rename = "pf_ode_heun_inpaint")]
    PfOdeHeun,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 2] = [SamplerKind::EulerMaruyama, SamplerKind::PfOdeHeun];

    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::EulerMaruyama => "euler_maruyama_inpaint",
            SamplerKind::PfOdeHeun => "pf_ode_heun_inpaint",
        }
    }

    /// Calls of each score network per window of `steps` steps.
    pub fn score_calls(self, steps: usize) -> usize {
        match self {
            SamplerKind::EulerMaruyama => steps,
            SamplerKind::PfOdeHeun => 2 * steps,
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SamplerKind {
    type Err = String;

    /// Accepts the manifest names and the short forms `em` and `heun`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "euler_maruyama_inpaint" | "em" => Ok(SamplerKind::EulerMaruyama),
            "pf_ode_heun_inpaint" | "heun" => Ok(SamplerKind::PfOdeHeun),
            _ => Err(format!(
                "unknown sampler `{s}`: expected euler_maruyama_inpaint (em) or pf_ode_heun_inpaint (heun)"
            )),
        }
    }
}

/// Sampler settings: both SDEs, the end time, the number of steps and the integrator.
#[derive(Debug, Clone, Copy)]
pub struct SdeParams {
    pub x: Ve,
    pub lam: Ve,
    pub eps: f64,
    pub steps: usize,
    pub kind: SamplerKind,
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

/// Everything the sampler conditions on, for a batch of R rows (windows or completion samples
/// of windows) at window size N: `h`, `cond [R,M,N,d]`, `avail [R,N,M]`, `node_mask [R,N]`,
/// `u [R,N,k]`, `lam_obs [R,M,k]`, and each row's graph `spectra[graph_of[r]]` (built at the
/// model's W).
pub struct Condition<'a> {
    pub h: &'a Tensor,
    pub cond: &'a Tensor,
    pub avail: &'a Tensor,
    pub node_mask: &'a Tensor,
    pub u: &'a Tensor,
    pub lam_obs: &'a Tensor,
    pub spectra: &'a [Spectral],
    pub graph_of: &'a [usize],
}

impl Condition<'_> {
    /// (rows R, window N) of the batch.
    fn rows(&self) -> (usize, usize) {
        let s = self.node_mask.shape();
        (s.first().copied().unwrap_or(0), s.get(1).copied().unwrap_or(0))
    }
}

/// The noise of each row of a batch: row r's draws are those of its window and completion
/// sample, at the model's W layout (`[M, W, d]` / `[M, k]`), whatever N the batch runs at.
pub trait BatchNoise {
    fn fill_row(&mut self, row: usize, draw: Draw, out: &mut [f32]) -> Result<(), NoiseError>;
}

/// One window: every row is that source's current sample.
impl<T: NoiseSource + ?Sized> BatchNoise for T {
    fn fill_row(&mut self, _row: usize, draw: Draw, out: &mut [f32]) -> Result<(), NoiseError> {
        self.fill(draw, out)
    }
}

/// Inputs and outputs of one call of both score networks.
struct ScoreCalls {
    adj_t: Tensor,
    t: Tensor,
    sx: [Tensor; 1],
    sl: [Tensor; 1],
    /// Row-count adaptation of s_theta and s_phi calls.
    callers: [RowCaller; 2],
}

impl ScoreCalls {
    /// Shapes for R rows at window N.
    fn shape(&mut self, (m, r, n, d, k): (usize, usize, usize, usize, usize)) {
        self.adj_t.set_shape(&[r, m, n, n]);
        self.t.set_shape(&[r]);
        self.sx[0].set_shape(&[r, m, n, d]);
        self.sl[0].set_shape(&[r, m, k]);
    }

    /// Both score networks at `t` on `state = (x, lam)`, results in `sx`, `sl`.
    fn scores(
        &mut self,
        c: &Condition,
        state: (&Tensor, &Tensor),
        t: f64,
        nets: [&mut dyn Backend; 2],
        step: usize,
    ) -> Result<(), SamplerError> {
        let [s_theta, s_phi] = nets;
        let (rows, n) = c.rows();
        let (lam, adj) = (state.1.data(), self.adj_t.data_mut());
        let (per_lam, per_adj) = (lam.len() / rows.max(1), adj.len() / rows.max(1));
        for (r, &g) in c.graph_of.iter().enumerate().take(rows) {
            let out = &mut adj[r * per_adj..(r + 1) * per_adj];
            c.spectra[g].low_rank_all(&lam[r * per_lam..(r + 1) * per_lam], n, out);
        }
        self.t.data_mut().fill(t as f32);
        let [ct, cp] = &mut self.callers;
        ct.run(
            s_theta,
            &[state.0, &self.t, c.cond, c.avail, &self.adj_t, c.node_mask],
            &mut self.sx,
        )?;
        cp.run(
            s_phi,
            &[state.1, &self.t, c.lam_obs, c.u, c.cond, c.avail, c.node_mask],
            &mut self.sl,
        )?;
        if !self.sx[0].all_finite() || !self.sl[0].all_finite() {
            return Err(SamplerError::NonFinite { what: "score", step });
        }
        Ok(())
    }
}

/// Reusable sampler state for M modality slots, the model's window W, latent d and k
/// eigenpairs; buffers take each call's R rows and window N and keep their largest size.
pub struct Sampler {
    m: usize,
    w: usize,
    d: usize,
    k: usize,
    /// Rows and window of the current call.
    r: usize,
    n: usize,
    x: Tensor,
    lam: Tensor,
    x_mean: Vec<f32>,
    lam_mean: Vec<f32>,
    calls: ScoreCalls,
    zx: Vec<f32>,
    zl: Vec<f32>,
    /// One row's `[M, W, d]` draw before it is cut to N.
    zx_full: Vec<f32>,
    /// `obs[(r * M + m) * N + i]`: entry observed on a valid node.
    obs: Vec<bool>,
    /// `full[r * M + m]`: modality slot m of row r observed on every valid node.
    full: Vec<bool>,
    /// Heun only: the predictor state and the first slopes.
    heun: heun::Buffers,
}

impl Sampler {
    pub fn new(m: usize, w: usize, d: usize, k: usize) -> Self {
        Sampler {
            m,
            w,
            d,
            k,
            r: 1,
            n: w,
            x: Tensor::zeros(&[1, m, w, d]),
            lam: Tensor::zeros(&[1, m, k]),
            x_mean: vec![0.0; m * w * d],
            lam_mean: vec![0.0; m * k],
            calls: ScoreCalls {
                adj_t: Tensor::zeros(&[1, m, w, w]),
                t: Tensor::zeros(&[1]),
                sx: [Tensor::zeros(&[1, m, w, d])],
                sl: [Tensor::zeros(&[1, m, k])],
                callers: Default::default(),
            },
            zx: vec![0.0; m * w * d],
            zl: vec![0.0; m * k],
            zx_full: vec![0.0; m * w * d],
            obs: vec![false; m * w],
            full: vec![false; m],
            heun: heun::Buffers::new(m, w, d, k),
        }
    }

    /// Sizes every buffer for `r` rows at window `n`.
    fn shape(&mut self, r: usize, n: usize) {
        let (m, d, k) = (self.m, self.d, self.k);
        (self.r, self.n) = (r, n);
        self.x.set_shape(&[r, m, n, d]);
        self.lam.set_shape(&[r, m, k]);
        self.x_mean.resize(r * m * n * d, 0.0);
        self.lam_mean.resize(r * m * k, 0.0);
        self.zx.resize(r * m * n * d, 0.0);
        self.zl.resize(r * m * k, 0.0);
        self.obs.resize(r * m * n, false);
        self.full.resize(r * m, false);
        self.calls.shape((m, r, n, d, k));
        self.heun.shape((m, r, n, d, k));
    }

    /// Observation masks from `avail [R,N,M]` and `node_mask [R,N]`.
    fn set_masks(&mut self, avail: &[f32], node_mask: &[f32]) {
        let (mm, n) = (self.m, self.n);
        for r in 0..self.r {
            for m in 0..mm {
                let mut full = true;
                for i in 0..n {
                    let valid = node_mask[r * n + i] > 0.5;
                    let seen = avail[(r * n + i) * mm + m] > 0.5;
                    self.obs[(r * mm + m) * n + i] = valid && seen;
                    full &= !valid || seen;
                }
                self.full[r * mm + m] = full;
            }
        }
    }

    /// Each row's draws into `zx`, `zl`: the `[M, W, d]` draw cut to the rows' first N nodes.
    fn draw(&mut self, noise: &mut dyn BatchNoise, dx: Draw, dl: Draw) -> Result<(), SamplerError> {
        let (m, w, n, d, k) = (self.m, self.w, self.n, self.d, self.k);
        for r in 0..self.r {
            noise.fill_row(r, dx, &mut self.zx_full)?;
            let row = &mut self.zx[r * m * n * d..(r + 1) * m * n * d];
            for s in 0..m {
                row[s * n * d..(s + 1) * n * d].copy_from_slice(&self.zx_full[s * w * d..(s * w + n) * d]);
            }
            noise.fill_row(r, dl, &mut self.zl[r * m * k..(r + 1) * m * k])?;
        }
        Ok(())
    }

    /// Inpainting of the state (`x`, `lam`): observed entries take `h + std_x * zx`, fully
    /// observed modalities `lam_obs + std_l * zl` (`zx`, `zl`: the noise buffers).
    fn inpaint(&mut self, c: &Condition, std_x: f32, std_l: f32) {
        let (x, lam) = (self.x.data_mut(), self.lam.data_mut());
        inpaint(&self.obs, &self.full, c, (&self.zx, &self.zl), (x, lam), (std_x, std_l));
    }

    /// One Euler-Maruyama step at step index `i`.
    fn step(
        &mut self,
        p: &SdeParams,
        i: usize,
        c: &Condition,
        nets: [&mut dyn Backend; 2],
        noise: &mut dyn BatchNoise,
    ) -> Result<(), SamplerError> {
        let (t, dt) = (p.time(i), p.dt());
        self.draw(noise, Draw::X(i), Draw::Lam(i))?;
        self.inpaint(c, p.x.std(t) as f32, p.lam.std(t) as f32);
        self.calls.scores(c, (&self.x, &self.lam), t, nets, i)?;
        // f32 coefficients in the reference's order: x + ((g*g)*s)*dt, then x_mean + (g*sqrt(dt))*z.
        let dt32 = dt as f32;
        let sqrt_dt = f64::from(dt32).sqrt() as f32;
        let (gx, gl) = (p.x.g(t) as f32, p.lam.g(t) as f32);
        euler(
            self.x.data_mut(),
            &mut self.x_mean,
            self.calls.sx[0].data(),
            &self.zx,
            gx,
            dt32,
            sqrt_dt,
        );
        euler(
            self.lam.data_mut(),
            &mut self.lam_mean,
            self.calls.sl[0].data(),
            &self.zl,
            gl,
            dt32,
            sqrt_dt,
        );
        Ok(())
    }

    /// Runs the full reverse SDE over the rows of `c` with `nets = [s_theta, s_phi]` and writes
    /// `out = [x0 [R,M,N,d], lam0 [R,M,k]]` (reshaped to the batch). A row's result depends only
    /// on that row's condition and noise, never on the other rows.
    pub fn run(
        &mut self,
        p: &SdeParams,
        c: &Condition,
        nets: [&mut dyn Backend; 2],
        noise: &mut dyn BatchNoise,
        out: [&mut Tensor; 2],
    ) -> Result<(), SamplerError> {
        let ([s_theta, s_phi], [x0, lam0]) = (nets, out);
        let (r, n) = c.rows();
        self.shape(r, n);
        self.set_masks(c.avail.data(), c.node_mask.data());
        // x = std_x(1) Zx_init; the ODE keeps Zx_init in `zx` for its inpainting.
        self.draw(noise, Draw::XInit, Draw::LamInit)?;
        let (sx1, sl1) = (p.x.std(1.0) as f32, p.lam.std(1.0) as f32);
        scale(self.x.data_mut(), &self.zx, sx1);
        scale(self.lam.data_mut(), &self.zl, sl1);
        match p.kind {
            SamplerKind::EulerMaruyama => {
                for i in 0..p.steps {
                    self.step(p, i, c, [&mut *s_theta, &mut *s_phi], noise)?;
                }
            }
            SamplerKind::PfOdeHeun => {
                for i in 0..p.steps {
                    self.heun_step(p, i, c, [&mut *s_theta, &mut *s_phi])?;
                }
                // The ODE's result is its state, not an Euler mean.
                self.x_mean.copy_from_slice(self.x.data());
                self.lam_mean.copy_from_slice(self.lam.data());
            }
        }
        x0.set_shape(self.x.shape());
        lam0.set_shape(self.lam.shape());
        self.finish(c, p.steps, [x0, lam0])
    }

    /// `x0 = where(obs, h, x_mean) * node_mask`, `lam0 = where(full, lam_obs, lam_mean)`.
    fn finish(&self, c: &Condition, steps: usize, out: [&mut Tensor; 2]) -> Result<(), SamplerError> {
        let [x0, lam0] = out;
        let (mm, n, d, k) = (self.m, self.n, self.d, self.k);
        let (h, mask, out) = (c.h.data(), c.node_mask.data(), x0.data_mut());
        for (node, &seen) in self.obs.iter().enumerate() {
            // node = (r * M + m) * N + i
            let keep = mask[(node / (mm * n)) * n + node % n];
            let row = node * d;
            let src = if seen {
                &h[row..row + d]
            } else {
                &self.x_mean[row..row + d]
            };
            for (o, s) in out[row..row + d].iter_mut().zip(src) {
                *o = s * keep;
            }
        }
        let (lo, out) = (c.lam_obs.data(), lam0.data_mut());
        for (slot, &full) in self.full.iter().enumerate() {
            let src = if full {
                &lo[slot * k..(slot + 1) * k]
            } else {
                &self.lam_mean[slot * k..(slot + 1) * k]
            };
            out[slot * k..(slot + 1) * k].copy_from_slice(src);
        }
        if !x0.all_finite() || !lam0.all_finite() {
            return Err(SamplerError::NonFinite {
                what: "sample",
                step: steps,
            });
        }
        Ok(())
    }
}

/// `out = z * std`.
fn scale(out: &mut [f32], z: &[f32], std: f32) {
    for (o, &v) in out.iter_mut().zip(z) {
        *o = v * std;
    }
}

/// Observed rows of `x` take `h + std_x * zx`; the `lam` rows of fully observed modalities
/// `lam_obs + std_l * zl`. `obs[m * W + i]` and `full[m]` as in `Sampler`.
fn inpaint(
    obs: &[bool],
    full: &[bool],
    c: &Condition,
    z: (&[f32], &[f32]),
    state: (&mut [f32], &mut [f32]),
    std: (f32, f32),
) {
    let (h, lo) = (c.h.data(), c.lam_obs.data());
    let d = h.len() / obs.len().max(1);
    let k = lo.len() / full.len().max(1);
    let ((zx, zl), (x, lam), (std_x, std_l)) = (z, state, std);
    for (row, _) in obs.iter().enumerate().filter(|(_, &seen)| seen) {
        for j in row * d..(row + 1) * d {
            x[j] = h[j] + std_x * zx[j];
        }
    }
    for m in (0..full.len()).filter(|&m| full[m]) {
        for j in m * k..(m + 1) * k {
            lam[j] = lo[j] + std_l * zl[j];
        }
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
