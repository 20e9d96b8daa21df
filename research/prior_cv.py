"""How much of the conversation prior's val gain survives its own selection (MODEL.md item 12).

The prior's (gain, temp) are chosen on val/, the split they are then reported on. This script
re-chooses them leave-one-video-out: for each of the 10 val videos, the grid point best on the
other 9 (mean acc2 over rates 0.0-0.7 and mask seeds 0-2) scores the held-out video. It prints,
per checkpoint and averaged, acc2 by rate without the prior, with the in-sample choice, and
leave-one-video-out. Torch sampler noise (`eval_torch.py`), so the no-prior row differs from
the ONNX reference's by sampler noise only.
    python3 research/prior_cv.py CKPT.pt [CKPT.pt ...] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from gsdnet_ref.evaluate import RATES
from gsdnet_torch import common
from gsdnet_torch.selection import PRIOR_GAINS, PRIOR_TEMPS

GRID = [(g, t) for g in PRIOR_GAINS for t in PRIOR_TEMPS]


@torch.no_grad()
def counts(path, seeds=(0, 1, 2)) -> np.ndarray:
    """[grid, rate, video, (correct, n)] summed over mask seeds, for the fusion's logits with
    every (gain, temp) of the grid applied."""
    model, a, stats = common.load_checkpoint(path)
    vb = common.val_batch(a, stats)
    model.prior.gain.fill_(0.0)
    logits = []
    for s in seeds:
        gen = torch.Generator().manual_seed(1000 + s)
        logits.append([common.predict(model, vb, common.protocol_avail(vb, s, rate=r), "gsdnet",
                                      a["steps"], a["eps"], gen) for r in RATES])
    nm = vb.node_mask
    out = np.zeros((len(GRID), len(RATES), len(vb.n), 2))
    for gi, (gain, temp) in enumerate(GRID):
        model.prior.gain.fill_(gain)
        model.prior.temp.fill_(temp)
        for per_rate in logits:
            for ri, (lg, rg) in enumerate(per_rate):
                pred = model.prior(lg, rg, nm)[0].argmax(-1)
                ok = ((pred == vb.y).float() * nm).sum(1).numpy()
                out[gi, ri, :, 0] += ok
                out[gi, ri, :, 1] += nm.sum(1).numpy()
    return out


def acc(c, videos) -> np.ndarray:
    """acc2 by rate over `videos` of one grid point's counts [rate, video, 2]."""
    return c[:, videos, 0].sum(1) / c[:, videos, 1].sum(1)


def analyse(c: np.ndarray) -> dict:
    v = c.shape[2]
    every = list(range(v))
    score = lambda gi, vids: float(acc(c[gi], vids).mean())  # noqa: E731
    best = max(range(len(GRID)), key=lambda gi: score(gi, every))
    lovo, picks = np.zeros((c.shape[1], 2)), []
    for held in range(v):
        rest = [i for i in every if i != held]
        gi = max(range(len(GRID)), key=lambda g: score(g, rest))
        picks.append(GRID[gi])
        lovo += c[gi, :, held, :]
    none = GRID.index((0.0, PRIOR_TEMPS[0]))
    return dict(no_prior=acc(c[none], every).tolist(), in_sample=acc(c[best], every).tolist(),
                in_sample_choice=GRID[best], lovo=(lovo[:, 0] / lovo[:, 1]).tolist(),
                lovo_choices=picks)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ckpts", nargs="+")
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    res = {ck: analyse(counts(ck)) for ck in a.ckpts}
    rows = ("no_prior", "in_sample", "lovo")
    print("| checkpoint | selection | " + " | ".join(f"{r:.1f}" for r in RATES) + " | mean |")
    print("|---" * (len(RATES) + 3) + "|")
    for ck, r in list(res.items()) + [("mean", {k: np.mean([x[k] for x in res.values()], 0)
                                                for k in rows})]:
        for k in rows:
            print(f"| {Path(ck).parent.name or ck} | {k} | "
                  + " | ".join(f"{x:.3f}" for x in r[k]) + f" | {np.mean(r[k]):.4f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
