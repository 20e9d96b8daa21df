"""Reverse VE-SDE sampler with inpainting (docs/DESIGN.md, "Sampler"), numpy, float32 state.

Owns: std(t), g(t), the step times, the sampler noise drawn from rng.py stream keys, and the
Euler-Maruyama loop. Score functions and noise are injected, so the loop is testable with an
analytic score. Invariants: observed entries of x0 equal h exactly; lam0 of a fully observed
modality equals lam_obs; padded rows of x0 are 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import rng


@dataclass(frozen=True)
class Sde:
    sigma_x: float
    sigma_lambda: float
    eps: float
    steps: int

    def __post_init__(self):
        if self.sigma_x <= 1.0 or self.sigma_lambda <= 1.0:
            raise ValueError("sigma_x and sigma_lambda must exceed 1")
        if not 0.0 < self.eps < 1.0 or self.steps < 1:
            raise ValueError("need 0 < eps < 1 and steps >= 1")

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
    """All noise of one sampler run: zx_init [3,W,d], zl_init [3,k], zx [S,3,W,d], zl [S,3,k]."""

    zx_init: np.ndarray
    zl_init: np.ndarray
    zx: np.ndarray
    zl: np.ndarray


def stream_key(seed: int, scenario: int, conv_id: str, window_index: int) -> int:
    return rng.derive(seed, 2, scenario, rng.fnv1a64(conv_id), window_index)


def draw_noise(key: int, steps: int, width: int, d: int, k: int) -> Noise:
    """Noise of the stream `key` exactly as docs/DESIGN.md's key table."""
    xs, ls = (3, width, d), (3, k)
    return Noise(
        zx_init=rng.normals_f32(rng.derive(key, 1), xs),
        zl_init=rng.normals_f32(rng.derive(key, 2), ls),
        zx=np.stack([rng.normals_f32(rng.derive(key, 16, i), xs) for i in range(steps)]),
        zl=np.stack([rng.normals_f32(rng.derive(key, 32, i), ls) for i in range(steps)]),
    )


def sample(sde: Sde, h, cond, avail, node_mask, u, lam_obs, s_theta, s_phi, noise: Noise,
           trace=None):
    """Returns (x0 [3,W,d], lam0 [3,k]) as float32.

    s_theta(x, t, adj_t) -> score [3,W,d]; s_phi(lam, t) -> score [3,k] (conditioning bound by
    the caller). `trace`, a dict, receives the step-0 inputs/outputs of both score calls.
    """
    obs = (avail.T * node_mask[None, :]).astype(bool)[:, :, None]        # [3, W, 1]
    n = node_mask.sum()
    full = ((avail * node_mask[:, None]).sum(0) >= n)[:, None]          # [3, 1]
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
