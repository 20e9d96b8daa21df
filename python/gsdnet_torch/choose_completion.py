"""Chooses a model's default completion on val/ and writes it as the manifest's `[completion]`
table (docs/DESIGN.md "Default completion"; issue 23 item 3).

Every completion mode the runtime implements (gsdnet with the manifest's sampler and samples,
meanfill, zero) runs on val/ at every protocol rate and every pattern that misses a modality
(mask seeds 0-2 by default: the masks and sampler keys of `gsdnet eval`). Selection, by the
mean weighted F1 over mask seeds, moving away from mean fill (free, and never worse than
itself) only on a gain that the val split supports: P(gain > 0) >= `--confidence` (0.95) under
a paired bootstrap over val conversations (the same resampled conversations for both modes and
every seed and rate; `--draws` 1000):
- `default` (windows whose utterances do not all share one availability pattern, i.e. the rate
  scenarios): among the modes that score at least mean fill at every rate, the one with the
  highest mean over the rates whose rate-mean gain over mean fill is supported; else meanfill;
- `[completion.patterns]` (a window whose utterances all have the same pattern, e.g. text
  missing everywhere): meanfill where `default` scores below it at that pattern, else the best
  mode at that pattern when its gain over `default` is supported; written when it differs from
  `default`.
Then the policy itself is scored on every rate and pattern (each window completed as the
runtime would) and checked against mean fill: the choice is refused (exit 1) if it loses
anywhere, which the rules above exclude unless a window's pattern entry moves a rate scenario.
    python3 -m gsdnet_torch.choose_completion --model models/gsdnet-iemocap6 \
        --data ../shared/data/iemocap/6way/val [--json FILE] [--write]
Refuses a split named `test`: the choice is made on val only.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.completion import MODES, Policy, pattern_bits
from gsdnet_ref.evaluate import scenario_outputs
from gsdnet_ref.paths import recorded_command
from gsdnet_ref.pipeline import OnnxModel
from gsdnet_torch.calibrate import write_table

FLOOR = "meanfill"


def window_bits(man, convs, avail: np.ndarray) -> np.ndarray:
    """Per utterance (scenario order): the availability bits its window's utterances all
    share, or -1 when they differ."""
    out, start = [], 0
    for c in convs:
        for sl in gdata.window_slices(c.n, man.width):
            b = avail[start + sl.start:start + sl.stop].astype(np.int64) @ man.bits
            out.append(np.full(len(b), b[0] if np.all(b == b[0]) else -1))
        start += c.n
    return np.concatenate(out)


def scenarios(man) -> list:
    full = man.letters
    return [(r, None) for r in gmasks.protocol_rates(man.m)] + \
        [(None, p) for p in gmasks.patterns_for(full) if p != full]


def collect(model, convs, seeds) -> dict:
    """(scenario label, seed) -> dict(probs per mode, label, wbits)."""
    out = {}
    for rate, pattern in scenarios(model.man):
        label = pattern or f"{rate:.1f}"
        for seed in seeds:
            cell = {"probs": {}}
            for mode in MODES:
                o = scenario_outputs(model, convs, mode, seed, rate, pattern)
                cell["probs"][mode] = o["probs"]
                cell["label"] = o["label"]
                cell["conv"] = o["conv"]
                cell["wbits"] = window_bits(model.man, convs, o["avail"])
            out[(label, seed)] = cell
    return out


def policy_probs(policy: Policy, cell: dict) -> np.ndarray:
    modes = np.array([policy.by_bits[b] if b >= 0 and policy.by_bits[b] else policy.default
                      for b in cell["wbits"]])
    probs = np.empty_like(cell["probs"][FLOOR])
    for mode in set(modes):
        probs[modes == mode] = cell["probs"][mode][modes == mode]
    return probs


def f1(probs, y, k) -> float:
    return gmetrics.classification(probs.argmax(-1), y, k)["f1_weighted"]


def table(cells: dict, seeds, k: int, policy: Policy | None = None) -> dict:
    """scenario label -> mode (and "policy") -> mean wF1 over seeds."""
    out = {}
    for (label, seed), cell in cells.items():
        row = out.setdefault(label, {})
        probs = dict(cell["probs"])
        if policy is not None:
            probs["policy"] = policy_probs(policy, cell)
        for mode, p in probs.items():
            row.setdefault(mode, []).append(f1(p, cell["label"], k))
    return {lab: {m: float(np.mean(v)) for m, v in row.items()} for lab, row in out.items()}


def confusions(cell: dict, probs: np.ndarray, k: int) -> np.ndarray:
    """[conversations, K, K] confusion counts (truth, predicted) of one cell's predictions."""
    conf = np.zeros((int(cell["conv"].max()) + 1, k, k), np.int64)
    np.add.at(conf, (cell["conv"], cell["label"], probs.argmax(-1)), 1)
    return conf


def f1_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Weighted F1 of confusion matrices [..., K, K] (metrics.classification's definition)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1).astype(np.float64)
    support, predicted = conf.sum(-1), conf.sum(-2)
    den = support + predicted
    f1 = np.where(tp > 0, 2.0 * tp / np.maximum(den, 1), 0.0)
    return (f1 * support).sum(-1) / np.maximum(support.sum(-1), 1)


class Bootstrap:
    """Paired bootstrap over conversations of wF1 gains (mean over mask seeds, and over the
    scenarios asked for)."""

    def __init__(self, cells: dict, k: int, draws: int, seed: int = 0):
        self.conf = {}
        for (label, s), cell in cells.items():
            for mode, p in cell["probs"].items():
                self.conf.setdefault((label, mode), []).append(confusions(cell, p, k))
        n_conv = next(iter(self.conf.values()))[0].shape[0]
        rng = np.random.default_rng(seed)
        self.weights = rng.multinomial(n_conv, np.full(n_conv, 1.0 / n_conv), size=draws)

    def f1(self, label: str, mode: str) -> np.ndarray:
        """[draws] wF1, mean over seeds."""
        return np.mean([f1_from_confusion(np.tensordot(self.weights, c, axes=(1, 0)))
                        for c in self.conf[(label, mode)]], 0)

    def p_gain(self, labels: list, mode: str, base: str) -> float:
        """P(mean over `labels` of wF1(mode) - wF1(base) > 0) over the draws."""
        gain = np.mean([self.f1(lab, mode) - self.f1(lab, base) for lab in labels], 0)
        return float(np.mean(gain > 0))


def choose(scores: dict, rates: list, patterns: list, supported) -> Policy:
    """`supported(labels, mode, base)`: whether the gain of `mode` over `base` on `labels` is
    supported by val (choose_completion: the bootstrap)."""
    mean = lambda m: np.mean([scores[r][m] for r in rates])  # noqa: E731
    ok = [m for m in MODES if m != FLOOR and all(scores[r][m] >= scores[r][FLOOR] for r in rates)
          and mean(m) > mean(FLOOR) and supported(rates, m, FLOOR)]
    default = max(ok, key=mean) if ok else FLOOR
    by_bits = [None] * 8
    for p in patterns:
        if scores[p][default] < scores[p][FLOOR]:
            by_bits[pattern_bits(p)] = FLOOR
            continue
        best = max(MODES, key=lambda m: (scores[p][m], m == default))
        if best != default and supported([p], best, default):
            by_bits[pattern_bits(p)] = best
    return Policy(default, tuple(by_bits))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="the val split folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--confidence", type=float, default=0.95,
                   help="bootstrap P(gain > 0) a mode needs to replace mean fill")
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    p.add_argument("--cache", default=None, help="pickle of the val predictions, reused when "
                   "present (outside the repository: it holds per-utterance outputs)")
    p.add_argument("--json", default=None)
    p.add_argument("--write", action="store_true", help="store [completion] in the manifest")
    return p.parse_args(argv)


def cached_cells(model, convs, seeds, cache: Path | None):
    """`collect`'s val predictions, read from / written to the --cache pickle when given."""
    if cache and cache.exists():
        with open(cache, "rb") as f:
            return pickle.load(f)
    cells = collect(model, convs, seeds)
    if cache:
        with open(cache, "wb") as f:
            pickle.dump(cells, f)
    return cells


def print_choice(final: dict, support: dict, policy) -> None:
    print(f"{'scenario':>8} " + " ".join(f"{m:>9}" for m in MODES + ("policy",)))
    for lab, row in final.items():
        print(f"{lab:>8} " + " ".join(f"{row[m]:9.4f}" for m in MODES + ("policy",)))
    for what, q in support.items():
        print(f"bootstrap P(gain > 0) {what}: {q:.3f}")
    print(f"default {policy.default}, patterns {policy.patterns}")


def completion_table(policy, final: dict, a, cmd: str) -> dict:
    """The manifest's [completion]: the chosen policy, the rule, and the val wF1 of the policy
    and of mean fill at every scenario."""
    tab = dict(default=policy.default, chosen_on=Path(a.data).name,
               rule="meanfill unless another mode is >= meanfill at every rate (default) or"
                    " best at a pattern, with bootstrap P(gain > 0) >= "
                    f"{a.confidence} over val conversations", seeds=a.seeds,
               val_scenarios=list(final),
               val_f1_policy=[round(row["policy"], 4) for row in final.values()],
               val_f1_meanfill=[round(row[FLOOR], 4) for row in final.values()],
               command=cmd)
    if policy.patterns:
        tab["patterns"] = policy.patterns
    return tab


def main(argv=None):
    a = parse_args(argv)
    if Path(a.data).resolve().name == "test":
        raise SystemExit("choose_completion fits on val/ only; refusing a split named test")
    model = OnnxModel(a.model)
    man = model.man
    convs = gdata.load_split(a.data, man.dims, getattr(man, "files", None))
    cells = cached_cells(model, convs, a.seeds, Path(a.cache) if a.cache else None)
    k = len(man.classes)
    scores = table(cells, a.seeds, k)
    labels = list(scores)
    rates = [lab for lab in labels if lab[0].isdigit() and float(lab) > 0]
    patterns = [lab for lab in labels if not lab[0].isdigit()]
    boot = Bootstrap(cells, k, a.draws)
    support = {}

    def supported(labels, mode, base):
        q = boot.p_gain(labels, mode, base)
        support[f"{mode} over {base} at {'/'.join(labels)}"] = q
        return q >= a.confidence
    policy = choose(scores, rates, patterns, supported)
    final = table(cells, a.seeds, k, policy)
    losing = [lab for lab, row in final.items() if row["policy"] < row[FLOOR]]
    print_choice(final, support, policy)
    res = dict(model=man.raw["model"]["name"], split=Path(a.data).name, seeds=a.seeds,
               sampler=man.sde.sampler, steps=man.sde.steps,
               default=policy.default, patterns=policy.patterns, f1_weighted=final,
               confidence=a.confidence, draws=a.draws, p_gain=support,
               losing_to_meanfill=losing)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    if losing:
        raise SystemExit(f"the chosen policy loses to mean fill at {losing}: not written")
    if a.write:
        cmd = recorded_command("gsdnet_torch.choose_completion", list(argv if argv is not None else sys.argv[1:]))
        write_table(Path(a.model) / "manifest.toml", "completion", completion_table(policy, final, a, cmd))
        print(f"wrote [completion] to {Path(a.model) / 'manifest.toml'}")


if __name__ == "__main__":
    main()
