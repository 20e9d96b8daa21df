"""Reverse VE-SDE samplers with inpainting (docs/DESIGN.md, "Sampler"), numpy, float32 state.

Owns: std(t), g(t), the step times, the sampler noise drawn from rng.py stream keys, and the two
integrators: Euler-Maruyama on the reverse SDE (`euler_maruyama_inpaint`) and Heun on the
probability-flow ODE (`pf_ode_heun_inpaint`, two score calls per step, noise only at t = 1);
and Tweedie's posterior mean from one call at t = 1 (`tweedie_posterior_mean`, issue 23: a
reference-only candidate, not implemented by the Rust runtime, so no manifest may name it).
Score functions and noise are injected, so the loops are testable with an analytic score.
Invariants: observed entries of x0 equal h exactly; lam0 of a fully observed modality equals
lam_obs; padded rows of x0 are 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import rng


EM, HEUN = "euler_maruyama_inpaint", "pf_ode_heun_inpaint"
TWEEDIE = "tweedie_posterior_mean"
SAMPLERS = (EM, HEUN, TWEEDIE)


@dataclass(frozen=True)
class Sde:
    sigma_x: float
    sigma_lambda: float
    eps: float
    steps: int
    sampler: str = EM

    def __post_init__(self):
        if self.sigma_x <= 1.0 or self.sigma_lambda <= 1.0:
            raise ValueError("sigma_x and sigma_lambda must exceed 1")
        if not 0.0 < self.eps < 1.0 or self.steps < 1:
            raise ValueError("need 0 < eps < 1 and steps >= 1")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}, expected one of {SAMPLERS}")

    @property
    def noise_steps(self) -> int:
        """Per-step noise tensors the sampler draws (the ODE draws only the initial ones)."""
        return self.steps if self.sampler == EM else 0

    @property
    def score_calls(self) -> int:
        """Calls of each score network per window."""
        return {EM: self.steps, HEUN: 2 * self.steps, TWEEDIE: 1}[self.sampler]

    def times(self) -> np.ndarray:
        dt = (1.0 - self.eps) / self.steps
        return np.array([1.0 - i * dt for i in range(self.steps)], dtype=np.float64)

    @property
    def dt(self) -> float:
        return (1.0 - self.eps) / self.steps


def marginal_std(t: float, sigma: float) -> float:
    return math.sqrt((sigma ** (2.0 * t) - 1.0) / (2.0 * math.log(sigma)))


def diffusion_g(t: float, sigma: float) -> float:
    return sigma ** t


@dataclass
class Noise:
    """All noise of one sampler run: zx_init [M,W,d], zl_init [M,k], zx [S,M,W,d], zl [S,M,k]
    (M modalities; M = 3 for CMU-MOSI)."""

    zx_init: np.ndarray
    zl_init: np.ndarray
    zx: np.ndarray
    zl: np.ndarray


def stream_key(seed: int, scenario: int, conv_id: str, window_index: int) -> int:
    return rng.derive(seed, 2, scenario, rng.fnv1a64(conv_id), window_index)


def draw_noise(key: int, steps: int, width: int, d: int, k: int, m: int = 3) -> Noise:
    """Noise of the stream `key` exactly as docs/DESIGN.md's key table (M = m modalities)."""
    xs, ls = (m, width, d), (m, k)
    return Noise(
        zx_init=rng.normals_f32(rng.derive(key, 1), xs),
        zl_init=rng.normals_f32(rng.derive(key, 2), ls),
        zx=np.stack([rng.normals_f32(rng.derive(key, 16, i), xs) for i in range(steps)])
        if steps else np.zeros((0,) + xs, np.float32),
        zl=np.stack([rng.normals_f32(rng.derive(key, 32, i), ls) for i in range(steps)])
        if steps else np.zeros((0,) + ls, np.float32),
    )


def _masks(avail, node_mask):
    """obs [M,W,1] (entry observed on a valid node), full [M,1] (modality on every valid node)."""
    obs = (avail.T * node_mask[None, :]).astype(bool)[:, :, None]
    n = node_mask.sum()
    return obs, ((avail * node_mask[:, None]).sum(0) >= n)[:, None]


def sample(sde: Sde, h, cond, avail, node_mask, u, lam_obs, s_theta, s_phi, noise: Noise,
           trace=None):
    """Returns (x0 [M,W,d], lam0 [M,k]) as float32, with the integrator `sde.sampler`.

    s_theta(x, t, adj_t) -> score [M,W,d]; s_phi(lam, t) -> score [M,k] (conditioning bound by
    the caller). `trace`, a dict, receives the inputs/outputs of the first call of both nets.
    """
    if sde.sampler == HEUN:
        return sample_heun(sde, h, avail, node_mask, u, lam_obs, s_theta, s_phi, noise, trace)
    if sde.sampler == TWEEDIE:
        return sample_tweedie(sde, h, avail, node_mask, u, lam_obs, s_theta, s_phi, noise, trace)
    obs, full = _masks(avail, node_mask)
    f32 = np.float32
    dt = f32(sde.dt)
    u32 = u.astype(f32)
    x = f32(marginal_std(1.0, sde.sigma_x)) * noise.zx_init
    lam = f32(marginal_std(1.0, sde.sigma_lambda)) * noise.zl_init
    x_mean, lam_mean = x, lam
    for i, t in enumerate(sde.times()):
        sx_t, sl_t = f32(marginal_std(t, sde.sigma_x)), f32(marginal_std(t, sde.sigma_lambda))
        gx, gl = f32(diffusion_g(t, sde.sigma_x)), f32(diffusion_g(t, sde.sigma_lambda))
        x = np.where(obs, h + sx_t * noise.zx[i], x).astype(f32)
        lam = np.where(full, lam_obs + sl_t * noise.zl[i], lam).astype(f32)
        adj_t = np.einsum("wk,mk,vk->mwv", u32, lam, u32).astype(f32)
        sx = s_theta(x, f32(t), adj_t)
        sl = s_phi(lam, f32(t))
        if trace is not None and i == 0:
            trace.update(x_t=x.copy(), lam_t=lam.copy(), adj_t=adj_t, t=f32(t),
                         score_x=np.asarray(sx).copy(), score_lam=np.asarray(sl).copy())
        x_mean = (x + gx * gx * sx * dt).astype(f32)
        lam_mean = (lam + gl * gl * sl * dt).astype(f32)
        x = (x_mean + gx * f32(math.sqrt(dt)) * noise.zx[i]).astype(f32)
        lam = (lam_mean + gl * f32(math.sqrt(dt)) * noise.zl[i]).astype(f32)
    x0 = (np.where(obs, h, x_mean) * node_mask[None, :, None]).astype(f32)
    lam0 = np.where(full, lam_obs, lam_mean).astype(f32)
    return x0, lam0


RHO = 7.0


def inverse_std(std: float, sigma: float) -> float:
    """The t with marginal_std(t, sigma) == std."""
    ln2 = 2.0 * math.log(sigma)
    return math.log1p(ln2 * std * std) / ln2


def heun_times(sde: Sde) -> list:
    """t_0 = 1 > t_1 > ... > t_S = eps: std_x(t_i) on the rho = 7 schedule of Karras et al. 2022
    between std_x(1) and std_x(eps) (dense where the std is small)."""
    hi, lo = marginal_std(1.0, sde.sigma_x) ** (1.0 / RHO), marginal_std(sde.eps, sde.sigma_x) ** (1.0 / RHO)
    ts = [inverse_std((hi + i / sde.steps * (lo - hi)) ** RHO, sde.sigma_x)
          for i in range(sde.steps + 1)]
    ts[0], ts[-1] = 1.0, sde.eps
    return ts


def sample_heun(sde: Sde, h, avail, node_mask, u, lam_obs, s_theta, s_phi, noise: Noise,
                trace=None):
    """Heun (2nd order) on the probability-flow ODE, integrated in each stream's own std:
    dx/dstd_x = -std_x score_x(x, t), dlam/dstd_l = -std_l score_l(lam, t), from t = 1 to eps on
    `heun_times` (Karras et al. 2022, Algorithm 1, deterministic).

    Inpainting follows the ODE's own path of a known value: at time t an observed entry is
    h + std_x(t) Zx_init (a fully observed modality lam_obs + std_l(t) Zl_init), the exact
    solution for a point mass started from the same initial noise. Per step (a = std(t_i),
    b = std(t_{i+1}), per stream): dv = -a score(x, t_i); x' = inpaint(x + (b - a) dv, t_{i+1});
    dv' = -b score(x', t_{i+1}); x = x + ((b - a) / 2)(dv + dv'). f32 arithmetic in that order,
    coefficients computed in f64 and rounded once.
    """
    obs, full = _masks(avail, node_mask)
    f32 = np.float32
    u32 = u.astype(f32)
    zx, zl = noise.zx_init, noise.zl_init
    ts = heun_times(sde)
    stds = [(marginal_std(t, sde.sigma_x), marginal_std(t, sde.sigma_lambda)) for t in ts]

    def inpaint(x, lam, i):
        sx_t, sl_t = f32(stds[i][0]), f32(stds[i][1])
        return (np.where(obs, h + sx_t * zx, x).astype(f32),
                np.where(full, lam_obs + sl_t * zl, lam).astype(f32))

    def slope(x, lam, i):
        adj_t = np.einsum("wk,mk,vk->mwv", u32, lam, u32).astype(f32)
        sx, sl = s_theta(x, f32(ts[i]), adj_t), s_phi(lam, f32(ts[i]))
        if trace is not None and i == 0:
            trace.update(x_t=x.copy(), lam_t=lam.copy(), adj_t=adj_t, t=f32(ts[i]),
                         score_x=np.asarray(sx).copy(), score_lam=np.asarray(sl).copy())
        return (f32(-stds[i][0]) * sx).astype(f32), (f32(-stds[i][1]) * sl).astype(f32)

    x = f32(stds[0][0]) * zx
    lam = f32(stds[0][1]) * zl
    for i in range(sde.steps):
        hx, hl = stds[i + 1][0] - stds[i][0], stds[i + 1][1] - stds[i][1]
        x, lam = inpaint(x, lam, i)
        dx, dl = slope(x, lam, i)
        xe, le = inpaint((x + f32(hx) * dx).astype(f32), (lam + f32(hl) * dl).astype(f32), i + 1)
        dx2, dl2 = slope(xe, le, i + 1)
        x = (x + f32(0.5 * hx) * (dx + dx2)).astype(f32)
        lam = (lam + f32(0.5 * hl) * (dl + dl2)).astype(f32)
    x0 = (np.where(obs, h, x) * node_mask[None, :, None]).astype(f32)
    lam0 = np.where(full, lam_obs, lam).astype(f32)
    return x0, lam0


def sample_tweedie(sde: Sde, h, avail, node_mask, u, lam_obs, s_theta, s_phi, noise: Noise,
                   trace=None):
    """Tweedie's estimate of the clean latents from the state at t = 1 (one call of each score
    network; `steps` is ignored): x_1 = std_x(1) Zx_init, observed entries h + std_x(1) Zx_init
    (likewise lam), then x0 = x_1 + std_x(1)^2 s_theta(x_1, 1), lam0 = lam_1 + std_l(1)^2
    s_phi(lam_1, 1) (the posterior mean E[x0 | x_1, condition], i.e. one Euler step of the
    probability-flow ODE down to std 0); observed entries exact. f32 arithmetic, coefficients
    computed in f64 and rounded once."""
    obs, full = _masks(avail, node_mask)
    f32 = np.float32
    sx, sl = marginal_std(1.0, sde.sigma_x), marginal_std(1.0, sde.sigma_lambda)
    x = np.where(obs, h + f32(sx) * noise.zx_init, f32(sx) * noise.zx_init).astype(f32)
    lam = np.where(full, lam_obs + f32(sl) * noise.zl_init, f32(sl) * noise.zl_init).astype(f32)
    adj_t = np.einsum("wk,mk,vk->mwv", u.astype(f32), lam, u.astype(f32)).astype(f32)
    scx, scl = s_theta(x, f32(1.0), adj_t), s_phi(lam, f32(1.0))
    if trace is not None:
        trace.update(x_t=x.copy(), lam_t=lam.copy(), adj_t=adj_t, t=f32(1.0),
                     score_x=np.asarray(scx).copy(), score_lam=np.asarray(scl).copy())
    x_mean = (x + f32(sx * sx) * scx).astype(f32)
    lam_mean = (lam + f32(sl * sl) * scl).astype(f32)
    x0 = (np.where(obs, h, x_mean) * node_mask[None, :, None]).astype(f32)
    lam0 = np.where(full, lam_obs, lam_mean).astype(f32)
    return x0, lam0
