"""The data README's two reference points, rerun with this project's masks on val/.

Owns: (1) the mean-fill floor, an early-fusion logistic regression trained on complete train
features; (2) the contextual BiLSTM peer (bc-LSTM idea): a bidirectional LSTM over each video's
utterances, inputs mean-filled plus availability bits, trained with random masks at rates
0.0-0.7, epoch selected on val (mean acc2 over rates 0/0.3/0.5/0.7, mask seed 0).
    python3 research/baselines.py OUT.json [--seed 0]
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eval_torch import evaluate_fn
from gsdnet_ref import data as gdata
from gsdnet_torch import common
from gsdnet_torch.model import ConversationPrior
from gsdnet_torch.augment import draw_train_avail
from gsdnet_torch.selection import fit_prior
from gsdnet_torch.train import DATA


def inputs(b, idx, avail):
    x = torch.cat([b.x[j][idx] * avail[:, :, j:j + 1] for j in range(3)], dim=-1)
    return torch.cat([x, avail], dim=-1)


class Peer(nn.Module):
    def __init__(self, hid=64, dropout=0.5):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(276, hid, batch_first=True, bidirectional=True)
        self.cls = nn.Linear(2 * hid, 2)
        self.reg = nn.Linear(2 * hid, 1)

    def forward(self, x):
        z, _ = self.lstm(self.drop(x))
        z = self.drop(z)
        return self.cls(z), self.reg(z)


def loss_fn(logits, reg, yb, yc, nm):
    ce = F.cross_entropy(logits.reshape(-1, 2), yb.reshape(-1), reduction="none")
    mse = ((reg[..., 0] - yc) ** 2).reshape(-1)
    m = nm.reshape(-1)
    return ((ce + 0.5 * mse) * m).sum() / m.sum()


def train_peer(tb, vb, seed, epochs=20, reps=4):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = Peer()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    best = (-1.0, None)
    v = len(tb.n)
    vi = torch.arange(len(vb.n))
    for ep in range(epochs):
        net.train()
        for _ in range(reps):
            perm = torch.randperm(v, generator=gen)
            for s in range(0, v, 8):
                idx = perm[s:s + 8]
                nm = tb.node_mask[idx]
                avail = draw_train_avail(nm, gen)
                lg, rg = net(inputs(tb, idx, avail))
                loss = loss_fn(lg, rg, tb.y[idx], tb.y_cont[idx], nm)
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            accs = [common.metrics(*net(inputs(vb, vi, common.protocol_avail(vb, 0, rate=r))),
                                   vb)["acc2"] for r in (0.0, 0.3, 0.5, 0.7)]
        print(f"peer ep {ep} {np.round(accs, 3).tolist()}", flush=True)
        if np.mean(accs) > best[0]:
            best = (float(np.mean(accs)), copy.deepcopy(net.state_dict()))
    net.load_state_dict(best[1])
    net.eval()
    return net


def train_floor(tb):
    """L2 logistic regression (and a linear regressor for MAE) on complete train features."""
    m = tb.node_mask.bool()
    x = torch.cat([b[m] for b in tb.x], dim=-1)
    lin = nn.Linear(x.shape[1], 3)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)
    yb, yc = tb.y[m], tb.y_cont[m]

    def closure():
        opt.zero_grad()
        out = lin(x)
        loss = F.cross_entropy(out[:, :2], yb) + 0.1 * ((out[:, 2] - yc) ** 2).mean() \
            + 1e-2 * (lin.weight ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return lin


def peer_prior(peer_fn, vb, seeds=4):
    """GSDNet's conversation prior on the peer's logits, chosen on val exactly as train.py
    chooses GSDNet's (same grid, rates 0.0-0.7, mask seeds 0-3): the fair comparison."""
    outs = [peer_fn(common.protocol_avail(vb, s, rate=round(0.1 * r, 1)), None, None)
            for s in range(seeds) for r in range(8)]
    prior = ConversationPrior()
    best = fit_prior(prior, outs, vb)
    print(f"peer prior: gain {best['gain']} temp {best['temp']} val {best['val']}", flush=True)
    return prior


def batches(data):
    """(train, val, train batch, val batch) of a CMU-MOSI data folder, standardised with the
    training statistics, W = 64, k = 16, the committed graph windows 1 / 3."""
    train = gdata.load_split(Path(data) / "train")
    val = gdata.load_split(Path(data) / "val")
    stats = gdata.feature_stats(train)
    return (train, val, common.make_batch(train, stats, 64, 16, 1, 3),
            common.make_batch(val, stats, 64, 16, 1, 3))


def arg_parser() -> argparse.ArgumentParser:
    """OUT and the peer's training options (seed, threads, data folder); peer_calibration.py
    adds its own to these."""
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=str(DATA))
    return p


def peer_logits(peer, vb):
    """`fn(avail, comp=None, gen=None) -> (logits, reg)` of the trained peer on batch `vb`, in the
    form evaluate_fn and peer_prior call (the completion and generator are unused)."""
    vi = torch.arange(len(vb.n))

    def fn(avail, comp=None, gen=None):
        with torch.no_grad():
            return peer(inputs(vb, vi, avail))
    return fn


def main():
    a = arg_parser().parse_args()
    torch.set_num_threads(a.threads)
    _, _, tb, vb = batches(a.data)
    lin = train_floor(tb)

    def floor_fn(avail, comp, gen):
        x = torch.cat([vb.x[j] * avail[:, :, j:j + 1] for j in range(3)], dim=-1)
        with torch.no_grad():
            out = lin(x)
        return out[..., :2], out[..., 2:]
    peer_fn = peer_logits(train_peer(tb, vb, a.seed), vb)
    prior = peer_prior(peer_fn, vb)

    def peer_prior_fn(avail, comp, gen):
        return prior(*peer_fn(avail, comp, gen), vb.node_mask)
    res = evaluate_fn(floor_fn, vb, ["floor_logistic"], (0, 1, 2)) + \
        evaluate_fn(peer_fn, vb, ["bilstm_peer"], (0, 1, 2)) + \
        evaluate_fn(peer_prior_fn, vb, ["bilstm_peer_prior"], (0, 1, 2))
    Path(a.out).write_text(json.dumps(dict(model=f"baselines-seed{a.seed}", split="val",
                                           seeds=[0, 1, 2], results=res), indent=1) + "\n")
    for r in res:
        if r["pattern"] is None:
            print(r["completion"], r["missing_rate"], round(r["acc2"], 4))


if __name__ == "__main__":
    main()
