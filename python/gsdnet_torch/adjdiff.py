"""Ablation (b): diffusion in adjacency space instead of on the eigenvalues (torch only).

Owns: the DSM losses and the joint sampler; the per-entry adjacency score network (AdjScore)
is a part of the model, in model.py. The diffused
object per modality is the cosine-similarity matrix C_m of the latents (entries in [-1, 1]) with
symmetric entry-wise VE noise (sigma_lambda); s_theta sees A_t = C_t / N, the same scale as the
spectral u diag(lam_t) u^T it gets in GSDNet. Never exported: the device runs GSDNet only.
"""
from __future__ import annotations

import math

import torch

from gsdnet_torch.model import ve_std
from gsdnet_torch.observed import full_mask, obs_mask


def cosine_graph(h, nm):
    """C [B,3,W,W] of latents h [B,3,W,d] (zero rows stay zero; padded nodes 0)."""
    hn = h / torch.clamp(torch.linalg.vector_norm(h, dim=-1, keepdim=True), min=1e-6)
    hn = hn * nm[:, None, :, None]
    return hn @ hn.transpose(-1, -2)


def sym_noise(shape, nm, gen):
    z = torch.randn(shape, generator=gen)
    z = (z + z.transpose(-1, -2)) / math.sqrt(2.0)
    return z * (nm[:, None, :, None] * nm[:, None, None, :])


def _n(nm):
    return torch.clamp(nm.sum(1), min=1.0)[:, None, None, None]


def adj_losses(model, hd, cd, avail, nm, u, args, gen):
    """DSM losses of s_theta (conditioned on the noisy dense graph) and of the adjacency score."""
    obs = obs_mask(avail, nm)
    miss = (1 - obs) * nm[:, None, :, None]
    full = full_mask(avail, nm)[..., None]                         # [B,3,1,1]
    c_true, c_obs = cosine_graph(hd, nm), cosine_graph(cd, nm)
    b = hd.shape[0]
    t = args.eps + (1 - args.eps) * torch.rand(b, generator=gen)
    std_x, std_l = ve_std(t, args.sigma_x), ve_std(t, args.sigma_l)
    z = torch.randn(hd.shape, generator=gen)
    zc = sym_noise(c_true.shape, nm, gen)
    x_t = hd + std_x[:, None, None, None] * z
    c_t = torch.where(full > 0, c_obs, c_true) + std_l[:, None, None, None] * zc
    net, _ = model.s_theta.net(x_t, t, cd, avail, c_t / _n(nm), nm)
    l_th = ((net + z) ** 2 * miss).sum() / torch.clamp(miss.sum() * args.d, min=1.0)
    netc, _ = model.s_adj.net(c_t, t, c_obs, avail, nm)
    pair = (1 - full) * nm[:, None, :, None] * nm[:, None, None, :]
    l_c = ((netc + zc) ** 2 * pair).sum() / torch.clamp(pair.sum(), min=1.0)
    return l_th, l_c


@torch.no_grad()
def sample_adj(model, h, cond, avail, nm, u, steps, eps, gen):
    """Joint reverse SDE of latents and dense graphs; returns (x0, A0 [B,3,W,W] = C0 / N)."""
    sx, sl = model.cfg["sigma_x"], model.cfg["sigma_l"]
    obs = obs_mask(avail, nm)
    full = full_mask(avail, nm)[..., None]
    c_obs = cosine_graph(cond, nm)
    b = h.shape[0]
    dt = (1.0 - eps) / steps
    one = torch.tensor(1.0)
    x = float(ve_std(one, sx)) * torch.randn(h.shape, generator=gen)
    c = float(ve_std(one, sl)) * sym_noise(c_obs.shape, nm, gen)
    x_mean, c_mean = x, c
    for i in range(steps):
        t = 1.0 - i * dt
        tt = torch.full((b,), t)
        zx, zc = torch.randn(h.shape, generator=gen), sym_noise(c_obs.shape, nm, gen)
        x = torch.where(obs > 0, h + float(ve_std(tt[0], sx)) * zx, x)
        c = torch.where(full > 0, c_obs + float(ve_std(tt[0], sl)) * zc, c)
        s_x = model.s_theta(x, tt, cond, avail, c / _n(nm), nm)
        netc, std_c = model.s_adj.net(c, tt, c_obs, avail, nm)
        gx2, gl2 = sx ** (2 * t), sl ** (2 * t)
        x_mean = x + gx2 * s_x * dt
        c_mean = c + gl2 * netc / std_c[:, None, None, None] * dt
        x = x_mean + math.sqrt(gx2 * dt) * zx
        c = c_mean + math.sqrt(gl2 * dt) * zc
    x0 = torch.where(obs > 0, h, x_mean) * nm[:, None, :, None]
    return x0, torch.where(full > 0, c_obs, c_mean) / _n(nm)
