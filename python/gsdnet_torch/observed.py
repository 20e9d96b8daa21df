"""Which latent entries and which spectra are observed, as tensors (a leaf: torch only).

Owns: the observed-entry mask of the latents and the fully-observed mask of a modality's
spectrum, from the availability [B,W,M] and the node mask [B,W]; the sampler (common), the
adjacency ablation (adjdiff), Heun (heun) and training use them.
"""
from __future__ import annotations


def obs_mask(avail, node_mask):
    """[B,M,W,1] observed entries."""
    return (avail.permute(0, 2, 1) * node_mask[:, None, :])[..., None]


def full_mask(avail, node_mask):
    """[B,M,1]: modality observed on every valid node."""
    miss = ((1 - avail.permute(0, 2, 1)) * node_mask[:, None, :]).sum(-1)
    return (miss == 0).float()[..., None]
