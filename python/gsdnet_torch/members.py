"""A model of K members: K single models trained apart (stage 1, seeds seed .. seed + K - 1,
each selected on val on its own) and merged into one GSDNet whose five parts keep the I/O of a
single model, so the runtime runs it unchanged (docs/MODEL.md "IEMOCAP" item 8).

The merge is exact for what the members learnt in stage 1:
- encoders: the K projections side by side (first layers stacked, second layers block-diagonal,
  positional embeddings concatenated), so the latent is the K member latents concatenated
  (d = K x the member's d) and an exported Gemm, Relu, Gemm as before;
- fusion: a sliced FusionEnsemble, member j reading its own d/K latent dims; fusion.onnx
  returns the mean of the members' logits;
- recon: the mean of the members' reconstructions (one Linear over the concatenated latent).
The one approximation: the recovered spectral graph the fusion reads is computed from the
concatenated latent, i.e. about the mean of the members' own graphs. The score networks act on
the whole latent and are trained after the merge (stage_scores), like the rest of the pipeline.
"""
from __future__ import annotations

import torch

from gsdnet_torch.model import GSDNet, HiddenProjection


def _merge_projection(dst, srcs) -> None:
    """dst <- the side-by-side projections of srcs (Linear or HiddenProjection)."""
    if isinstance(dst, HiddenProjection):
        dst.a.weight.copy_(torch.cat([s.a.weight for s in srcs], 0))
        dst.a.bias.copy_(torch.cat([s.a.bias for s in srcs], 0))
        dst.b.weight.copy_(torch.block_diag(*[s.b.weight for s in srcs]))
        dst.b.bias.copy_(torch.cat([s.b.bias for s in srcs], 0))
    else:
        dst.weight.copy_(torch.cat([s.weight for s in srcs], 0))
        dst.bias.copy_(torch.cat([s.bias for s in srcs], 0))


@torch.no_grad()
def merge(parts: list, into: GSDNet) -> GSDNet:
    """Copies the stage-1 weights of the single models `parts` into `into`, a GSDNet built with
    members = len(parts) (its score networks are left as built). Returns `into`."""
    k = len(parts)
    if into.cfg.get("members", 1) != k:
        raise ValueError(f"merge: {k} models into a model of {into.cfg.get('members', 1)} members")
    for j, lin in enumerate(into.encoders.lins):
        _merge_projection(lin, [p.encoders.lins[j] for p in parts])
    into.encoders.pos.copy_(torch.cat([p.encoders.pos for p in parts], dim=1))
    for j, lin in enumerate(into.recon.lins):
        lin.weight.copy_(torch.cat([p.recon.lins[j].weight for p in parts], dim=1) / k)
        lin.bias.copy_(torch.stack([p.recon.lins[j].bias for p in parts]).mean(0))
    for dst, p in zip(into.fusion.members, parts):
        dst.load_state_dict(p.fusion.state_dict())
    return into
