"""Full-grid val evaluation of a torch checkpoint (ablations that are never exported).

Same protocol and JSON layout as gsdnet_ref.evaluate (masks from rng.py, rates 0.0 up to the
model's maximum, the patterns of its modalities, mask seeds; accuracy, weighted F1, and acc2 /
MAE where the model has a regression head), but the sampler noise is torch's (seeded per seed
and scenario), so numbers of exported models must come from gsdnet_ref.evaluate instead.
    python3 research/eval_torch.py CHECKPOINT.pt OUT.json [--completions gsdnet meanfill zero]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from gsdnet_ref import masks as gmasks
from gsdnet_torch import common


def grid(vb=None):
    """Rates and patterns of the batch's modalities (CMU-MOSI's three without a batch)."""
    m, letters = (3, "TAV") if vb is None else (len(vb.modalities), vb.letters)
    return [(r, None) for r in gmasks.protocol_rates(m)] + \
        [(None, p) for p in gmasks.patterns_for(letters)]


def evaluate_fn(predict_fn, vb, completions, seeds):
    """predict_fn(avail, completion, gen) -> (logits, reg); returns the results list."""
    out = []
    for comp in completions:
        for rate, pattern in grid(vb):
            per = []
            for s in seeds:
                gen = torch.Generator().manual_seed(
                    1_000_003 * s + gmasks.scenario_id(rate, pattern))
                avail = common.protocol_avail(vb, s, rate=rate, pattern=pattern)
                lg, rg = predict_fn(avail, comp, gen)
                per.append(common.metrics(lg, rg, vb))
            row = dict(missing_rate=rate, pattern=pattern, completion=comp)
            row.update({k: float(np.mean([p[k] for p in per]))
                        for k in ("accuracy", "acc2", "f1_weighted", "mae") if k in per[0]})
            row["n"] = per[0]["n"]
            out.append(row)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ckpt")
    p.add_argument("out")
    p.add_argument("--completions", nargs="+", default=["gsdnet", "meanfill", "zero"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, args, stats = common.load_checkpoint(a.ckpt)
    vb = common.val_batch(args, stats)
    fn = lambda av, comp, gen: common.predict(model, vb, av, comp, args["steps"],  # noqa: E731
                                              args["eps"], gen)
    res = evaluate_fn(fn, vb, a.completions, tuple(a.seeds))
    name = f"{model.cfg.get('variant', 'gsdnet')}-seed{args['seed']}"
    Path(a.out).write_text(json.dumps(dict(model=name, split="val", seeds=a.seeds,
                                           noise="torch", results=res), indent=1) + "\n")


if __name__ == "__main__":
    main()
