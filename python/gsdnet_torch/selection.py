"""Selection on val/ of gsdnet_torch.train: the selection rates and the conversation prior's
(gain, temp) grid search (docs/MODEL.md item 12). The fusion's logits do not depend on the
prior, so every val scenario is predicted once and re-scored per grid point; the metric is the
run's selection metric (acc2 for CMU-MOSI, weighted F1 for categorical labels).
"""
from __future__ import annotations

import numpy as np
import torch

from gsdnet_ref import masks as gmasks
from gsdnet_torch import common

SEL_RATES = (0.0, 0.3, 0.5, 0.7)

PRIOR_GAINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
PRIOR_TEMPS = (0.5, 1.0, 2.0, 4.0)
# K > 2 (softmax form): its context is a probability difference, at most 1 - 1/K, so the grid
# reaches larger gains and temperatures
PRIOR_GAINS_K = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
PRIOR_TEMPS_K = (0.5, 1.0, 2.0, 4.0, 8.0)


@torch.no_grad()
def select_prior(model, vb, args, log):
    """Chooses the conversation prior's (gain, temp) on val: the selection set's mean metric
    (--sel-rates x --prior-seeds mask seeds, the trained model's own completion) over the grid.
    The fusion's logits do not depend on the prior, so they are computed once per scenario."""
    model.eval()
    model.prior.gain.fill_(0.0)
    outs = []
    for s in range(args.prior_seeds):
        gen = torch.Generator().manual_seed(1000 + s)
        for r in sel_rates(args):
            outs.append(common.predict(model, vb, common.protocol_avail(vb, s, rate=r),
                                       "gsdnet", args.steps, args.eps, gen))
    best = fit_prior(model.prior, outs, vb, args.sel_metric)
    model.train()
    log(f"prior: gain {best['gain']} temp {best['temp']} val {best['val']:.4f} "
        f"(gain 0: {best['grid'][0][2]:.4f})")
    return best


@torch.no_grad()
def fit_prior(prior, outs, vb, metric="acc2") -> dict:
    """Sets `prior` to the grid point of best mean `metric` over the (logits, reg) pairs `outs`
    of val scenarios; ties go to the earlier entry (smaller gain). Returns the choice and grid."""
    best, table = (-1.0, 0.0, 1.0), []
    binary = prior.n_classes == 2
    for gain in PRIOR_GAINS if binary else PRIOR_GAINS_K:
        for temp in PRIOR_TEMPS if binary else PRIOR_TEMPS_K:
            prior.gain.fill_(gain)
            prior.temp.fill_(temp)
            acc = float(np.mean([common.metrics(*prior(lg, rg, vb.node_mask), vb)[metric]
                                 for lg, rg in outs]))
            table.append((gain, temp, round(acc, 4)))
            if acc > best[0]:
                best = (acc, gain, temp)
    prior.gain.fill_(best[1])
    prior.temp.fill_(best[2])
    return dict(gain=best[1], temp=best[2], val=round(best[0], 4), grid=table)


def sel_rates(args) -> tuple:
    """The selection rates of training args (an argparse namespace or its dict)."""
    a = args if isinstance(args, dict) else vars(args)
    return rates_for(a["sel_rates"], a.get("n_modalities", 3))


def rates_for(choice: int, m: int) -> tuple:
    """--sel-rates 4: 0/0.3/0.5/0.7 within the protocol of m modalities; 8: every protocol
    rate (0.0-0.7 with three, 0.0-0.5 with two)."""
    if choice == 4:
        return tuple(r for r in SEL_RATES if r <= gmasks.max_rate(m) + 1e-9)
    return tuple(gmasks.protocol_rates(m))
