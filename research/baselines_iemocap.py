"""The IEMOCAP README's two reference points, rerun with this project's masks on val/ (Session 4).

Owns: a small local loader of the IEMOCAP split layout (utterances.csv + text.f32 + audio.f32),
its standardisation (train mean/std, population; z = 0 where std < 1e-6; |z| <= 40), the
support-weighted F1, and the two baselines:
(1) the mean-fill floor: multinomial L2 logistic regression on single-utterance early-fusion
    features text(300) + audio(47), trained on complete train/, missing entries = training mean
    (z = 0); convex and fitted by L-BFGS from zero, so it has one "training seed";
(2) the contextual BiLSTM peer (bc-LSTM style): a bidirectional LSTM over each whole
    conversation, inputs the mean-filled z plus 2 availability bits, trained with random
    keep-one masks at a rate drawn per batch from 0.0-0.5, epoch selected on val by mean wF1
    over rates 0.0-0.5 with mask seed 0; training seeds 0, 1, 2.
Evaluation masks: gsdnet_ref.masks.mask_for_rate(seed, rate, conv_id, n, m=2) for mask seeds
0, 1, 2 and rates protocol_rates(2), and mask_for_pattern(p, n, "TA") for T, A, TA (slots: text,
audio). Each scenario reports mean and std (population) over training seeds x mask seeds of
f1_weighted and accuracy, and the per-training-seed mean over mask seeds.
    python3 research/baselines_iemocap.py --task 6way --out research/results/baselines_iemocap6.json
Writes metrics only (never IEMOCAP data).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gsdnet_ref import masks as gmasks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "iemocap"
DIMS = (("text", 300), ("audio", 47))   # slot order: text, audio
FILES = {"text": "text.f32", "audio": "audio.f32"}
# --text-view: the text slot's file and size (minilm: the sentence encoder of the text frontend)
TEXT_VIEWS = {"lsa": ("text.f32", 300), "minilm": ("text_minilm.f32", 384),
              "spacy": ("text_spacy.f32", 300)}
STD_CONSTANT, Z_CLIP = 1e-6, 40.0
RATES = gmasks.protocol_rates(2)        # 0.0 .. 0.5
PATTERNS = gmasks.patterns_for("TA")    # T, A, TA
MASK_SEEDS = (0, 1, 2)
TRAIN_SEEDS = (0, 1, 2)
README = {  # the README's published wF1 on val (its own masks, 10 per rate)
    "6way": {"logistic": [0.523, 0.495, 0.472, 0.444, 0.417, 0.384, 0.414, 0.353],
             "bilstm_peer": [0.633, 0.621, 0.610, 0.598, 0.586, 0.567, 0.532, 0.434]},
    "4way": {"logistic": [0.704, 0.667, 0.631, 0.593, 0.557, 0.515, 0.555, 0.475],
             "bilstm_peer": [0.801, 0.793, 0.779, 0.769, 0.753, 0.734, 0.710, 0.614]},
}
README_MINILM = {  # the README's peer with text_minilm.f32 (same recipe, 3 seeds, val)
    "6way": {"bilstm_peer": [0.634, 0.626, 0.616, 0.605, 0.596, 0.581, 0.568, 0.371]},
    "4way": {"bilstm_peer": [0.817, 0.807, 0.798, 0.784, 0.770, 0.753, 0.754, 0.511]},
}
README_KEYS = [f"{r:.1f}" for r in RATES] + ["T", "A"]


def set_text_view(view: str) -> None:
    """Read the text slot from the view's file (TEXT_VIEWS) in every split loaded after this."""
    global DIMS, FILES
    file, dim = TEXT_VIEWS[view]
    DIMS = (("text", dim), ("audio", 47))
    FILES = {"text": file, "audio": "audio.f32"}


# ---------------------------------------------------------------- data
def load_split(folder) -> dict:
    """Rows of utterances.csv in file order with their features: conv (conversation ids, in
    order of first appearance), bounds [(start, end)] per conversation, labels int64 [n],
    names (class names by label), and raw float32 features per modality [n, dim]."""
    folder = Path(folder)
    with open(folder / "utterances.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    n = len(rows)
    conv, bounds = [], []
    for i, r in enumerate(rows):
        if not conv or r["conversation_id"] != conv[-1]:
            if r["conversation_id"] in conv:
                raise ValueError(f"{folder}: conversation {r['conversation_id']} not contiguous")
            conv.append(r["conversation_id"])
            bounds.append([i, i])
        bounds[-1][1] = i + 1
    labels = np.array([int(r["label"]) for r in rows], np.int64)
    names = {int(r["label"]): r["label_name"] for r in rows}
    feats = {}
    for name, dim in DIMS:
        x = np.fromfile(folder / FILES[name], dtype="<f4")
        if x.size != n * dim:
            raise ValueError(f"{folder}/{FILES[name]}: {x.size} values, expected {n} x {dim}")
        feats[name] = x.reshape(n, dim)
    return dict(conv=conv, bounds=[tuple(b) for b in bounds], y=labels, names=names,
                feats=feats, n=n)


def standardise(split: dict, stats: dict) -> np.ndarray:
    """Early-fusion z [n, 347]: per modality (x - mean) / std, 0 where std < 1e-6, |z| <= 40."""
    out = []
    for name, _ in DIMS:
        mean, std = stats[name]
        const = std < STD_CONSTANT
        with np.errstate(over="ignore", invalid="ignore"):
            z = (split["feats"][name] - mean) / np.where(const, np.float32(1), std)
        out.append(np.clip(np.where(const, np.float32(0), z), -Z_CLIP, Z_CLIP))
    return np.concatenate(out, axis=1).astype(np.float32)


def train_stats(train: dict) -> dict:
    return {name: (train["feats"][name].mean(0), train["feats"][name].std(0))
            for name, _ in DIMS}


def expand(avail: np.ndarray) -> np.ndarray:
    """Availability [n, 2] -> per-feature multiplier [n, 347] (slot 0 text, slot 1 audio)."""
    return np.repeat(avail.astype(np.float32), [d for _, d in DIMS], axis=1)


def protocol_avail(split: dict, seed=None, rate=None, pattern=None) -> np.ndarray:
    """Availability [n, 2] of the whole split: a rate mask per conversation or a pattern."""
    if pattern is not None:
        return gmasks.mask_for_pattern(pattern, split["n"], letters="TA")
    out = np.zeros((split["n"], 2), bool)
    for cid, (s, e) in zip(split["conv"], split["bounds"]):
        out[s:e] = gmasks.mask_for_rate(seed, rate, cid, e - s, m=2)
    return out


# ---------------------------------------------------------------- metrics
def f1_weighted(y, pred, k: int) -> float:
    """Support-weighted F1 over the classes present in the truth (F1 = 0 where the class is
    never predicted correctly)."""
    y, pred = np.asarray(y), np.asarray(pred)
    total = 0.0
    for c in range(k):
        support = int(np.sum(y == c))
        if support == 0:
            continue
        tp = int(np.sum((y == c) & (pred == c)))
        denom = support + int(np.sum(pred == c))
        total += support * (2.0 * tp / denom if denom else 0.0)
    return total / len(y)


def scores(y, pred, k: int) -> dict:
    return dict(f1_weighted=f1_weighted(y, pred, k), accuracy=float(np.mean(y == pred)))


# ---------------------------------------------------------------- (1) logistic floor
def train_logistic(z: np.ndarray, y: np.ndarray, k: int, l2: float = 1e-3) -> nn.Linear:
    """Multinomial logistic regression, loss = mean CE + l2 * ||W||^2 (bias free), L-BFGS from
    zero on complete training features."""
    x, t = torch.from_numpy(z), torch.from_numpy(y)
    lin = nn.Linear(z.shape[1], k)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500, tolerance_grad=1e-6,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(x), t) + l2 * (lin.weight ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return lin


def logistic_predict(lin: nn.Linear, z: np.ndarray, avail: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return lin(torch.from_numpy(z * expand(avail))).argmax(-1).numpy()


# ---------------------------------------------------------------- (2) BiLSTM peer
class Peer(nn.Module):
    """Input dropout -> BiLSTM over the conversation -> dropout -> linear classifier."""

    def __init__(self, k: int, hid: int = 96, dropout: float = 0.3, din: int = 349):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(din, hid, batch_first=True, bidirectional=True)
        self.cls = nn.Linear(2 * hid, k)

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(x), lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return self.cls(self.drop(h))


def pad_split(split: dict, z: np.ndarray) -> dict:
    """Conversation batch: z [C, L, 347], y [C, L] (-1 padding), lengths [C], node mask."""
    c, lmax = len(split["bounds"]), max(e - s for s, e in split["bounds"])
    zp = np.zeros((c, lmax, z.shape[1]), np.float32)
    yp = np.full((c, lmax), -1, np.int64)
    for i, (s, e) in enumerate(split["bounds"]):
        zp[i, :e - s], yp[i, :e - s] = z[s:e], split["y"][s:e]
    lengths = torch.tensor([e - s for s, e in split["bounds"]])
    return dict(z=torch.from_numpy(zp), y=torch.from_numpy(yp), lengths=lengths,
                nm=torch.from_numpy(yp >= 0), bounds=split["bounds"])


def peer_inputs(zb: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """[.., 347] z times availability per slot, then the 2 availability bits: [.., 349]."""
    mult = torch.repeat_interleave(avail, torch.tensor([d for _, d in DIMS]), dim=-1)
    return torch.cat([zb * mult, avail], dim=-1)


def random_avail(nm: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Training masks [C, L, 2]: one rate from 0.0-0.5 per batch, keep-one rule (one slot kept
    uniformly, the other observed with probability 1 - 2r)."""
    rate = RATES[int(torch.randint(len(RATES), (1,), generator=gen))]
    keep = torch.randint(2, nm.shape, generator=gen)
    avail = torch.rand(*nm.shape, 2, generator=gen) < (1.0 - 2.0 * rate)
    avail[..., 0] |= keep == 0
    avail[..., 1] |= keep == 1
    return avail.float()


def to_padded(pb: dict, avail: np.ndarray) -> torch.Tensor:
    """Split-level availability [n, 2] -> padded [C, L, 2] (padding: 0)."""
    out = torch.zeros(*pb["nm"].shape, 2)
    for i, (s, e) in enumerate(pb["bounds"]):
        out[i, :e - s] = torch.from_numpy(avail[s:e].astype(np.float32))
    return out


def peer_predict(net: Peer, pb: dict, avail: np.ndarray) -> np.ndarray:
    """Predicted label per utterance [n] in split order."""
    net.eval()
    with torch.no_grad():
        pred = net(peer_inputs(pb["z"], to_padded(pb, avail)), pb["lengths"]).argmax(-1)
    return pred[pb["nm"]].numpy()


def train_step(net, opt, tb: dict, idx, gen) -> float:
    net.train()
    nm = tb["nm"][idx]
    avail = random_avail(nm, gen) * nm[..., None]
    logits = net(peer_inputs(tb["z"][idx], avail), tb["lengths"][idx])
    loss = F.cross_entropy(logits[nm], tb["y"][idx][nm])
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()
    return loss.item()


def train_peer(tb: dict, vb: dict, val: dict, k: int, seed: int, cfg: dict) -> tuple:
    """Train from `seed`; keep the epoch with the best mean val wF1 over rates 0.0-0.5 with
    mask seed 0."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = Peer(k, hid=cfg["hid"], dropout=cfg["dropout"], din=sum(d for _, d in DIMS) + 2)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["wd"])
    sel_masks = [protocol_avail(val, 0, rate=r) for r in RATES]
    best, c = (-1.0, -1, None), len(tb["bounds"])
    for ep in range(cfg["epochs"]):
        for _ in range(cfg["reps"]):
            perm = torch.randperm(c, generator=gen)
            for s in range(0, c, cfg["batch"]):
                train_step(net, opt, tb, perm[s:s + cfg["batch"]], gen)
        sel = [f1_weighted(val["y"], peer_predict(net, vb, a), k) for a in sel_masks]
        if np.mean(sel) > best[0]:
            best = (float(np.mean(sel)), ep, copy.deepcopy(net.state_dict()))
        if cfg["verbose"]:
            print(f"  seed {seed} ep {ep:2d} val wF1 {np.round(sel, 3).tolist()}", flush=True)
    print(f"peer seed {seed}: best epoch {best[1]} (mean val wF1 {best[0]:.4f})", flush=True)
    net.load_state_dict(best[2])
    net.eval()
    return net, best[1]


# ---------------------------------------------------------------- evaluation
def scenarios():
    """(key, rate, pattern) for rates 0.0-0.5 then patterns T, A, TA."""
    return [(f"{r:.1f}", r, None) for r in RATES] + [(p, None, p) for p in PATTERNS]


def evaluate(predict_fns: dict, val: dict, k: int) -> dict:
    """predict_fns: training seed -> fn(avail [n, 2]) -> labels [n]. Per scenario: mean/std
    over training seeds x mask seeds (patterns: mask seeds are identical draws) and per seed."""
    out = {}
    for key, rate, pattern in scenarios():
        avails = [protocol_avail(val, s, rate=rate, pattern=pattern) for s in MASK_SEEDS]
        per_seed, flat = {}, []
        for ts, fn in predict_fns.items():
            rows = [scores(val["y"], fn(a), k) for a in avails]
            flat += rows
            per_seed[str(ts)] = {m: float(np.mean([r[m] for r in rows]))
                                 for m in ("f1_weighted", "accuracy")}
        out[key] = {m: dict(mean=float(np.mean([r[m] for r in flat])),
                            std=float(np.std([r[m] for r in flat])))
                    for m in ("f1_weighted", "accuracy")}
        out[key]["per_training_seed"] = per_seed
    return out


def table(task: str, methods: dict, readme: dict = README) -> str:
    keys = [s[0] for s in scenarios()]
    lines = [f"### IEMOCAP {task}, val (Session 4), this project's masks",
             "", "| method | metric | " + " | ".join(keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for name, res in methods.items():
        for m in ("f1_weighted", "accuracy"):
            cells = [f"{res[k][m]['mean']:.3f}" for k in keys]
            lines.append(f"| {name} | {m} | " + " | ".join(cells) + " |")
        ref = readme[task].get(name)
        if ref is None:
            continue
        cells = [f"{ref[README_KEYS.index(k)]:.3f}" if k in README_KEYS else "-" for k in keys]
        lines.append(f"| {name} (README) | f1_weighted | " + " | ".join(cells) + " |")
        diff = [f"{res[k]['f1_weighted']['mean'] - ref[README_KEYS.index(k)]:+.3f}"
                if k in README_KEYS else "-" for k in keys]
        lines.append(f"| {name} (ours - README) | f1_weighted | " + " | ".join(diff) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("6way", "4way"), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--hid", type=int, default=96)
    p.add_argument("--text-view", choices=tuple(TEXT_VIEWS), default="lsa",
                   help="text slot: lsa (text.f32), minilm (text_minilm.f32), spacy")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    set_text_view(a.text_view)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    root = Path(a.data) / a.task
    train, val = load_split(root / "train"), load_split(root / "val")
    k = max(train["names"]) + 1
    stats = train_stats(train)
    zt, zv = standardise(train, stats), standardise(val, stats)
    cfg = dict(hid=a.hid, dropout=a.dropout, lr=1e-3, wd=1e-4, epochs=a.epochs, reps=2, batch=8,
               verbose=a.verbose, logistic_l2=1e-3)
    lin = train_logistic(zt, train["y"], k, cfg["logistic_l2"])
    methods = {"logistic": evaluate({0: lambda av: logistic_predict(lin, zv, av)}, val, k)}
    t_log = time.time() - t0
    tb, vb = pad_split(train, zt), pad_split(val, zv)
    nets, best_epochs = {}, {}
    for s in TRAIN_SEEDS:
        nets[s], best_epochs[str(s)] = train_peer(tb, vb, val, k, s, cfg)
    fns = {s: (lambda av, net=net: peer_predict(net, vb, av)) for s, net in nets.items()}
    methods["bilstm_peer"] = evaluate(fns, val, k)
    runtime = time.time() - t0
    doc = dict(task=a.task, split="val (Session 4)",
               classes=[train["names"][c] for c in range(k)],
               n_train=train["n"], n_val=val["n"], mask_seeds=list(MASK_SEEDS),
               training_seeds=dict(logistic=[0], bilstm_peer=list(TRAIN_SEEDS)),
               std="population std over training seeds x mask seeds",
               config=cfg, bilstm_best_epochs=best_epochs,
               runtime_s=dict(logistic=round(t_log, 1), total=round(runtime, 1)),
               text_view=a.text_view, text_file=FILES["text"],
               readme_reference_wf1=dict(keys=README_KEYS, **(README_MINILM if a.text_view ==
                                                              "minilm" else README)[a.task]),
               results=methods)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(table(a.task, methods, README_MINILM if a.text_view == "minilm" else README))
    print(f"\nruntime {runtime:.0f} s (logistic {t_log:.0f} s); wrote {a.out}")


if __name__ == "__main__":
    main()
