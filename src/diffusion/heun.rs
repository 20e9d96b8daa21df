//! Heun (2nd order) on the probability-flow ODE of both VE streams, integrated in each stream's
//! own std: `dx/dstd_x = -std_x s_theta(x, t)`, `dlam/dstd_l = -std_l s_phi(lam, t)`, from t = 1
//! to eps on the rho = 7 schedule of Karras et al. 2022 (DESIGN.md "Sampler", PF-ODE).
//!
//! Invariants: no noise is drawn after t = 1 (`zx`, `zl` keep `Zx_init`, `Zl_init`, and the
//! inpainting at time t is `h + std_x(t) Zx_init`); f32 arithmetic in the reference's order with
//! coefficients computed in f64 and rounded once, so Rust and Python agree bit for bit.

use super::{inpaint, Condition, Sampler, SamplerError, SdeParams};
use crate::backend::Backend;
use crate::tensor::Tensor;

/// The schedule's rho.
const RHO: f64 = 7.0;

/// `t_i` for i = 0..=S: `std_x(t_i) = (a + i/S (b - a))^rho` with `a = std_x(1)^(1/rho)`,
/// `b = std_x(eps)^(1/rho)`; `t_0 = 1` and `t_S = eps` exactly.
pub fn heun_time(p: &SdeParams, i: usize) -> f64 {
    if i == 0 {
        return 1.0;
    }
    if i >= p.steps {
        return p.eps;
    }
    let (hi, lo) = (p.x.std(1.0).powf(1.0 / RHO), p.x.std(p.eps).powf(1.0 / RHO));
    let s = (hi + i as f64 / p.steps as f64 * (lo - hi)).powf(RHO);
    let ln2 = 2.0 * p.x.sigma.ln();
    (ln2 * s * s).ln_1p() / ln2
}

/// Predictor state and first slopes of a Heun step.
pub(super) struct Buffers {
    x: Tensor,
    lam: Tensor,
    dx: Vec<f32>,
    dl: Vec<f32>,
}

impl Buffers {
    pub(super) fn new(m: usize, w: usize, d: usize, k: usize) -> Self {
        Buffers {
            x: Tensor::zeros(&[1, m, w, d]),
            lam: Tensor::zeros(&[1, m, k]),
            dx: vec![0.0; m * w * d],
            dl: vec![0.0; m * k],
        }
    }

    /// Sizes for R rows at window N.
    pub(super) fn shape(&mut self, (m, r, n, d, k): (usize, usize, usize, usize, usize)) {
        self.x.set_shape(&[r, m, n, d]);
        self.lam.set_shape(&[r, m, k]);
        self.dx.resize(r * m * n * d, 0.0);
        self.dl.resize(r * m * k, 0.0);
    }
}

impl Sampler {
    /// Step i from `t_i` to `t_{i+1}`: slope `v = -a s(x, t_i)`, predictor
    /// `x' = inpaint(x + (b - a) v, t_{i+1})`, `v' = -b s(x', t_{i+1})`,
    /// `x = x + ((b - a) / 2)(v + v')` (a, b: the stream's std at t_i, t_{i+1}).
    pub(super) fn heun_step(
        &mut self,
        p: &SdeParams,
        i: usize,
        c: &Condition,
        nets: [&mut dyn Backend; 2],
    ) -> Result<(), SamplerError> {
        let [s_theta, s_phi] = nets;
        let (t0, t1) = (heun_time(p, i), heun_time(p, i + 1));
        let (ax, bx, al, bl) = (p.x.std(t0), p.x.std(t1), p.lam.std(t0), p.lam.std(t1));
        self.inpaint(c, ax as f32, al as f32);
        self.calls
            .scores(c, (&self.x, &self.lam), t0, [&mut *s_theta, &mut *s_phi], i)?;
        let hb = &mut self.heun;
        slope(&mut hb.dx, self.calls.sx[0].data(), -ax as f32);
        slope(&mut hb.dl, self.calls.sl[0].data(), -al as f32);
        predict(hb.x.data_mut(), self.x.data(), &hb.dx, (bx - ax) as f32);
        predict(hb.lam.data_mut(), self.lam.data(), &hb.dl, (bl - al) as f32);
        let state = (hb.x.data_mut(), hb.lam.data_mut());
        inpaint(
            &self.obs,
            &self.full,
            c,
            (&self.zx, &self.zl),
            state,
            (bx as f32, bl as f32),
        );
        self.calls.scores(c, (&hb.x, &hb.lam), t1, [s_theta, s_phi], i)?;
        correct(
            self.x.data_mut(),
            &hb.dx,
            self.calls.sx[0].data(),
            -bx as f32,
            (0.5 * (bx - ax)) as f32,
        );
        correct(
            self.lam.data_mut(),
            &hb.dl,
            self.calls.sl[0].data(),
            -bl as f32,
            (0.5 * (bl - al)) as f32,
        );
        Ok(())
    }
}

/// `v = coef * score`.
fn slope(v: &mut [f32], score: &[f32], coef: f32) {
    for (o, &s) in v.iter_mut().zip(score) {
        *o = coef * s;
    }
}

/// `out = x + h * v`.
fn predict(out: &mut [f32], x: &[f32], v: &[f32], h: f32) {
    for ((o, &x), &v) in out.iter_mut().zip(x).zip(v) {
        *o = x + h * v;
    }
}

/// `x = x + half_h * (v + coef * score)`, the second slope formed as in `slope`.
fn correct(x: &mut [f32], v: &[f32], score: &[f32], coef: f32, half_h: f32) {
    for ((x, &v), &s) in x.iter_mut().zip(v).zip(score) {
        *x += half_h * (v + coef * s);
    }
}
