"""Batched tensors of a split and the torch sampler/evaluation used for model selection.

Owns: cutting conversations into consecutive windows of W (docs/DESIGN.md: `chunks(W)`, as
evaluation does) and padding each window to W with its graph (from gsdnet_ref.graph, speakers
included), protocol masks as tensors (drawn per whole conversation, then sliced per window, as
gsdnet_ref.evaluate does), the batched torch reverse-SDE sampler (same equations as
docs/DESIGN.md, torch noise), completion modes, the val metrics (K-class accuracy, weighted F1;
MAE where the labels are continuous) and loading a saved checkpoint. M modalities: those of
the normalisation stats (canonical order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gsdnet_ref import data as gdata
from gsdnet_ref import graph as ggraph
from gsdnet_ref import masks as gmasks
from gsdnet_ref import metrics as gmetrics
from gsdnet_torch.adjdiff import sample_adj
from gsdnet_torch.model import GSDNet, adj_from_lam, spectrum, ve_std
from gsdnet_torch.observed import full_mask, obs_mask


@dataclass
class Batch:
    """One row per window; `conv_ids`, `starts`, `conv_n` locate it in its conversation."""

    x: list           # M x [V,W,dim] standardised, full
    zero: list        # M x [V,W,dim] the standardised encoding of raw zeros
    node_mask: torch.Tensor
    u: torch.Tensor
    adj: torch.Tensor
    y: torch.Tensor         # [V,W] class labels
    y_cont: torch.Tensor    # [V,W] continuous targets (0 without regression)
    conv_ids: list
    n: list
    starts: list = field(default_factory=list)
    conv_n: list = field(default_factory=list)
    modalities: tuple = gdata.MODALITIES
    regression: bool = True

    @property
    def letters(self) -> str:
        return "".join(gdata.LETTERS[m] for m in self.modalities)


def make_batch(convs, stats, width, k, window_same, window_other) -> Batch:
    """Every window of every conversation (consecutive chunks of `width`), padded to W."""
    mods = tuple(m for m in gdata.MODALITIES if m in stats)
    wins = [(c, sl) for c in convs for sl in gdata.window_slices(c.n, width)]
    v = len(wins)
    xs = [np.zeros((v, width, len(stats[m][0])), np.float32) for m in mods]
    zs = [np.zeros((v, width, len(stats[m][0])), np.float32) for m in mods]
    nm = np.zeros((v, width), np.float32)
    us = np.zeros((v, width, k), np.float32)
    adj = np.zeros((v, width, width), np.float32)
    yb = np.zeros((v, width), np.int64)
    yc = np.zeros((v, width), np.float32)
    for i, (conv, sl) in enumerate(wins):
        c = conv.part(sl)
        ones = np.ones(c.n, bool)
        for j, m in enumerate(mods):
            mean, std = stats[m]
            xs[j][i] = gdata.standardise(c.feats[m], mean, std, ones, width)
            zs[j][i] = gdata.zero_fill(c.feats[m], mean, std, ~ones, width)
        nm[i, :c.n] = 1
        a, u, _ = ggraph.build_graph(c.speaker, width, k, window_same, window_other)
        us[i], adj[i] = u, a
        yb[i, :c.n] = c.label
        if c.label_cont is not None:
            yc[i, :c.n] = c.label_cont
    t = torch.from_numpy
    return Batch([t(x) for x in xs], [t(z) for z in zs], t(nm), t(us), t(adj), t(yb), t(yc),
                 [c.conv_id for c, _ in wins], [sl.stop - sl.start for _, sl in wins],
                 [sl.start for _, sl in wins], [c.n for c, _ in wins], mods,
                 all(c.label_cont is not None for c in convs))


def protocol_avail(batch: Batch, seed: int, rate=None, pattern=None) -> torch.Tensor:
    """[V,W,M] availability from gsdnet_ref.masks (padded rows 0): the mask of the whole
    conversation, sliced to each window."""
    v, w = batch.node_mask.shape
    m = len(batch.modalities)
    out = np.zeros((v, w, m), np.float32)
    starts = batch.starts or [0] * v
    conv_n = batch.conv_n or batch.n
    for i, (cid, n, s0, total) in enumerate(zip(batch.conv_ids, batch.n, starts, conv_n)):
        a = gmasks.mask_for_pattern(pattern, total, batch.letters) if pattern else \
            gmasks.mask_for_rate(seed, rate, cid, total, m)
        out[i, :n] = a[s0:s0 + n]
    return torch.from_numpy(out)


@torch.no_grad()
def sample_torch(model, h, cond, avail, nm, u, lam_obs, steps, eps, gen):
    """Batched DESIGN.md sampler with torch noise; returns (x0, lam0)."""
    sx, sl = model.cfg["sigma_x"], model.cfg["sigma_l"]
    obs, full = obs_mask(avail, nm), full_mask(avail, nm)
    b = h.shape[0]
    dt = (1.0 - eps) / steps
    x = float(ve_std(torch.tensor(1.0), sx)) * torch.randn(h.shape, generator=gen)
    lam = float(ve_std(torch.tensor(1.0), sl)) * torch.randn(lam_obs.shape, generator=gen)
    x_mean, lam_mean = x, lam
    for i in range(steps):
        t = 1.0 - i * dt
        tt = torch.full((b,), t)
        zx = torch.randn(h.shape, generator=gen)
        zl = torch.randn(lam_obs.shape, generator=gen)
        x = torch.where(obs > 0, h + float(ve_std(tt[0], sx)) * zx, x)
        lam = torch.where(full > 0, lam_obs + float(ve_std(tt[0], sl)) * zl, lam)
        s_x = model.s_theta(x, tt, cond, avail, adj_from_lam(u, lam), nm)
        s_l = model.s_phi(lam, tt, lam_obs, u, cond, avail, nm)
        gx2, gl2 = sx ** (2 * t), sl ** (2 * t)
        x_mean, lam_mean = x + gx2 * s_x * dt, lam + gl2 * s_l * dt
        x = x_mean + math.sqrt(gx2 * dt) * zx
        lam = lam_mean + math.sqrt(gl2 * dt) * zl
    x0 = torch.where(obs > 0, h, x_mean) * nm[:, None, :, None]
    return x0, torch.where(full > 0, lam_obs, lam_mean)


def det_complete(model, h, cond, avail, nm, u, lam_obs):
    """Ablation (d): the s_theta / s_phi networks used as one-shot regressors (x_t = 0, t = 0.5)."""
    b = h.shape[0]
    t = torch.full((b,), 0.5)
    pred, _ = model.s_theta.net(torch.zeros_like(h), t, cond, avail, adj_from_lam(u, lam_obs), nm)
    lam_pred, _ = model.s_phi.net(torch.zeros_like(lam_obs), t, lam_obs, u, cond, avail, nm)
    obs, full = obs_mask(avail, nm), full_mask(avail, nm)
    return (torch.where(obs > 0, h, pred) * nm[:, None, :, None],
            torch.where(full > 0, lam_obs, lam_pred))


def complete(model, h, cond, avail, nm, u, lam_obs, steps, eps, gen):
    """The model's own completion of missing latents: sampler, or the det/adj ablations."""
    variant = model.cfg.get("variant", "gsdnet")
    if variant == "det":
        return det_complete(model, h, cond, avail, nm, u, lam_obs)
    if variant == "adj":
        return sample_adj(model, h, cond, avail, nm, u, steps, eps, gen)
    return sample_torch(model, h, cond, avail, nm, u, lam_obs, steps, eps, gen)


def encode_inputs(model, batch, idx, avail, completion):
    """(h, cond): h encodes mean-filled (or zero-filled) inputs; cond masks missing entries."""
    xs = []
    for j in range(len(batch.x)):
        a = avail[:, :, j:j + 1]
        x = batch.x[j][idx] * a
        if completion == "zero":
            x = x + batch.zero[j][idx] * (1 - a) * batch.node_mask[idx][:, :, None]
        xs.append(x)
    h = model.encoders(*xs)
    cond = h * obs_mask(avail, batch.node_mask[idx])
    return h, cond


@torch.no_grad()
def predict(model, batch, avail, completion, steps, eps, gen):
    """Logits [V,W,K], reg [V,W,1] (None without a regression head) for a completion mode
    (gsdnet | meanfill | zero); `gsdnet` means the model's own completion (sampler, or an
    ablation's completer)."""
    idx = torch.arange(len(batch.n))
    nm, u = batch.node_mask, batch.u
    h, cond = encode_inputs(model, batch, idx, avail, completion)
    lam_obs = spectrum(cond, u, nm)
    if completion == "gsdnet" and (obs_mask(avail, nm).sum() < len(batch.x) * nm.sum()):
        x0, lam0 = complete(model, h, cond, avail, nm, u, lam_obs, steps, eps, gen)
    else:
        x0, lam0 = h * nm[:, None, :, None], lam_obs
    return model.fuse(x0, avail, fusion_adj(batch.adj, u, lam0), nm)


def fusion_adj(adj_struct, u, lam0):
    """[B,2,W,W]: structural graph and the recovered graph (dense [B,M,W,W] lam0 for `adj`)."""
    rec = lam0.mean(1) if lam0.dim() == 4 else adj_from_lam(u, lam0.mean(1, keepdim=True))[:, 0]
    return torch.stack([adj_struct, rec], dim=1)


def metrics(logits, reg, batch) -> dict:
    """accuracy and weighted F1 over the K classes of `logits`, and where `reg` is given acc2
    (= the accuracy, CMU-MOSI's binary label) and MAE, over the valid nodes."""
    m = batch.node_mask.bool()
    pred = logits.argmax(-1)[m].numpy()
    y = batch.y[m].numpy()
    out = gmetrics.classification(pred, y, logits.shape[-1])
    out = dict(accuracy=out["accuracy"], f1_weighted=out["f1_weighted"], n=int(m.sum()))
    if reg is not None:
        out["acc2"] = out["accuracy"]
        out["mae"] = float(np.mean(np.abs(reg[..., 0][m].numpy() - batch.y_cont[m].numpy())))
    return out


def load_checkpoint(path):
    """(model in eval mode, training args dict, normalisation stats) of a train.py checkpoint
    (`--save`, or `model.pt` of an exported folder)."""
    ck = torch.load(path, weights_only=False)
    model = GSDNet(**ck["cfg"])
    model.load_state_dict(ck["state"])
    model.eval()
    stats = {m: tuple(np.asarray(v, np.float32) for v in ck["info"]["stats"][m])
             for m in gdata.MODALITIES if m in ck["info"]["stats"]}
    return model, ck["info"]["args"], stats


def val_batch(args: dict, stats) -> Batch:
    """The val split of a checkpoint's data folder (its modalities), batched with its graph
    settings."""
    val = gdata.load_split(Path(args["data"]) / "val", {m: len(s[0]) for m, s in stats.items()},
                           gdata.view_files(args.get("text_view")))
    return make_batch(val, stats, args["width"], args["k"], args["window_same"],
                      args["window_other"])
