"""Training-time input perturbations of gsdnet_torch.train: the per-window missing masks drawn
during training (keep-one rule for M modalities, rate r ~ U(0, rmax)), swaps of inputs with
random training utterances, and Gaussian noise on inputs / latents (docs/MODEL.md sweeps).
Owns no state; every draw comes from the caller's torch generator.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def draw_train_avail(nm: torch.Tensor, gen, rmax: float = 0.7, m: int = 3,
                     pattern_prob: float = 0.0) -> torch.Tensor:
    """Per window rate r ~ U(0, rmax); keep-one rule per utterance for m modalities (DESIGN.md
    protocol: q = 1 - m / (m - 1) r). With `pattern_prob` > 0, each window instead gets, with
    that probability, one fixed pattern on all its utterances, drawn uniformly among the
    patterns that miss something (a modality lost for the whole conversation, as the fixed
    patterns of evaluation); 0 draws nothing more (the earlier stream)."""
    b, w = nm.shape
    r = torch.rand(b, 1, 1, generator=gen) * rmax
    q = torch.clamp(1.0 - m / (m - 1) * r, 0.0, 1.0)
    avail = (torch.rand(b, w, m, generator=gen) < q).float()
    keep = F.one_hot(torch.randint(0, m, (b, w), generator=gen), m).float()
    avail = torch.clamp(avail + keep, max=1.0)
    if pattern_prob > 0:
        bits = torch.randint(1, 2 ** m - 1, (b,), generator=gen)          # proper subsets
        rows = ((bits[:, None] >> torch.arange(m)[None, :]) & 1).float()   # [B, m]
        use = torch.rand(b, generator=gen) < pattern_prob
        avail = torch.where(use[:, None, None], rows[:, None, :].expand(b, w, m), avail)
    return avail * nm[:, :, None]


def swapped_inputs(xs, pools, args, gen):
    """Training inputs where each valid node's modality m is, with probability swap_prob[m],
    the input of a random training utterance (padded rows stay 0). Text and visual features
    leak the labels on train/ (0.98 separable) but not on unseen videos (0.77 / 0.60), so a
    fusion trained on them learns to ignore everything else; a swapped input is a real
    utterance's features that is wrong about this utterance about half the time, which brings
    the modality's training-time reliability down to what it carries on unseen videos."""
    out = []
    for x, pool, q in zip(xs, pools, args.swap_prob):
        if q > 0:
            valid = x.abs().sum(-1, keepdim=True) > 0
            swap = (torch.rand(x.shape[:-1] + (1,), generator=gen) < q) & valid
            pick = pool[torch.randint(0, len(pool), x.shape[:-1], generator=gen)]
            x = torch.where(swap, pick, x)
        out.append(x)
    return out


def noisy_inputs(xs, args, gen, pools=None):
    """Training inputs with per-modality Gaussian noise (standardised space, valid rows only:
    padded rows stay 0) after the swaps of `swapped_inputs`. Text and visual features leak the
    labels on train/, so noise lowers their training-time reliability towards what they carry
    on unseen videos."""
    if pools is not None:
        xs = swapped_inputs(xs, pools, args, gen)
    out = []
    for x, s in zip(xs, args.train_noise):
        if s > 0:
            valid = (x.abs().sum(-1, keepdim=True) > 0).float()
            x = x + s * torch.randn(x.shape, generator=gen) * valid
        out.append(x)
    return out


def noisy_latents(x, nm, args, gen):
    """Fusion input [B,M,W,d] with per-modality Gaussian noise on valid nodes. The encoders end
    in tanh, so the noise bounds how much label information a modality's latent can carry at
    training time: text and visual are nearly separable on train/ (extractor leak) but not on
    unseen videos, and without it the fusion trusts them over the conversational context."""
    std = torch.tensor(args.latent_noise, dtype=x.dtype)
    if float(std.max()) <= 0:
        return x
    z = torch.randn(x.shape, generator=gen)
    return x + z * std[None, :, None, None] * nm[:, None, :, None]
