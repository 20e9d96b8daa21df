"""Per-utterance logits of the BiLSTM peer (research/baselines.py) on val/, for calibration.

Trains the peer exactly as baselines.py does (train_peer, same seed, same epoch selection on
val) and chooses its conversation prior as baselines.py does (peer_prior), then writes the
logits of every val utterance for missing rates 0.0-0.7 x mask seeds 0-2, with the masks of
`gsdnet eval` (gsdnet_ref.masks via common.protocol_avail, the same masks calibrate.py's GSDNet
pools use), as an .npz pool in calibrate.collect's layout (logits, y, conv, text, cell, and
the cells' (rate, seed)), for the peer alone ("bilstm_peer") and with the prior
("bilstm_peer_prior"). baselines.py itself is unchanged; it only reports acc2 / F1 / MAE.
    python3 research/peer_calibration.py OUT.npz [--seed 0] [--threads 1]
Refuses a data folder whose val split is named test (val only).
"""
from __future__ import annotations

import numpy as np
import torch

from baselines import arg_parser, batches, peer_logits, peer_prior, train_peer
from gsdnet_ref.evaluate import RATES
from gsdnet_torch import common


def pool_of(fn, vb, seeds, rates) -> dict:
    """calibrate.collect's layout: every (rate, seed) cell, utterances in conversation order."""
    cols = {k: [] for k in ("logits", "y", "conv", "text", "cell")}
    cells = []
    for rate in rates:
        for seed in seeds:
            avail = common.protocol_avail(vb, seed, rate=rate)
            with torch.no_grad():
                lg, _ = fn(avail)
            for i, n in enumerate(vb.n):
                cols["logits"].append(lg[i, :n].numpy().astype(np.float32))
                cols["y"].append(vb.y[i, :n].numpy().astype(np.int64))
                cols["conv"].append(np.full(n, i))
                cols["text"].append(avail[i, :n, 0].numpy() > 0.5)
                cols["cell"].append(np.full(n, len(cells)))
            cells.append((rate, seed))
    return dict({k: np.concatenate(v) for k, v in cols.items()}, cells=np.asarray(cells))


def main():
    p = arg_parser()
    p.add_argument("--mask-seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    _, val, tb, vb = batches(a.data)
    if [c.conv_id for c in val] != list(vb.conv_ids):
        raise SystemExit("val batch order differs from load_split order")
    peer_fn = peer_logits(train_peer(tb, vb, a.seed), vb)
    prior = peer_prior(peer_fn, vb)

    def prior_fn(avail):
        with torch.no_grad():
            return prior(*peer_fn(avail), vb.node_mask)
    out = {}
    for name, fn in (("bilstm_peer", peer_fn), ("bilstm_peer_prior", prior_fn)):
        pool = pool_of(fn, vb, a.mask_seeds, list(RATES))
        out.update({f"{name}/{k}": v for k, v in pool.items()})
        acc = {r: float(np.mean([(pool["logits"][pool["cell"] == ci].argmax(-1)
                                  == pool["y"][pool["cell"] == ci]).mean()
                                 for ci, (rr, _) in enumerate(pool["cells"]) if rr == r]))
               for r in RATES}
        print(name, "acc2 by rate", {r: round(v, 4) for r, v in acc.items()}, flush=True)
    out["conv_ids"] = np.asarray(vb.conv_ids)
    np.savez_compressed(a.out, **out)


if __name__ == "__main__":
    main()
