"""PF-ODE Heun sampler in torch (the eager reference for benchmarks), batched like
common.sample_torch; same schedule and update as gsdnet_ref.sampler.sample_heun / DESIGN.md.

Owns nothing new: times and stds come from gsdnet_ref.sampler, so the two cannot drift.
"""
from __future__ import annotations

import torch

from gsdnet_ref.sampler import Sde, heun_times, marginal_std
from gsdnet_torch.model import adj_from_lam
from gsdnet_torch.observed import full_mask, obs_mask


@torch.no_grad()
def sample_heun_torch(model, h, cond, avail, nm, u, lam_obs, steps, eps, gen):
    """Returns (x0, lam0); noise only at t = 1 (torch generator)."""
    cfg = model.cfg
    sde = Sde(cfg["sigma_x"], cfg["sigma_l"], eps, steps, "pf_ode_heun_inpaint")
    ts = heun_times(sde)
    stds = [(marginal_std(t, sde.sigma_x), marginal_std(t, sde.sigma_lambda)) for t in ts]
    obs, full = obs_mask(avail, nm), full_mask(avail, nm)
    b = h.shape[0]
    zx, zl = torch.randn(h.shape, generator=gen), torch.randn(lam_obs.shape, generator=gen)

    def inpaint(x, lam, i):
        return (torch.where(obs > 0, h + stds[i][0] * zx, x),
                torch.where(full > 0, lam_obs + stds[i][1] * zl, lam))

    def slope(x, lam, i):
        tt = torch.full((b,), ts[i])
        sx = model.s_theta(x, tt, cond, avail, adj_from_lam(u, lam), nm)
        sl = model.s_phi(lam, tt, lam_obs, u, cond, avail, nm)
        return -stds[i][0] * sx, -stds[i][1] * sl

    x, lam = stds[0][0] * zx, stds[0][1] * zl
    for i in range(steps):
        hx, hl = stds[i + 1][0] - stds[i][0], stds[i + 1][1] - stds[i][1]
        x, lam = inpaint(x, lam, i)
        dx, dl = slope(x, lam, i)
        xe, le = inpaint(x + hx * dx, lam + hl * dl, i + 1)
        dx2, dl2 = slope(xe, le, i + 1)
        x, lam = x + 0.5 * hx * (dx + dx2), lam + 0.5 * hl * (dl + dl2)
    return torch.where(obs > 0, h, x) * nm[:, None, :, None], torch.where(full > 0, lam_obs, lam)
