"""Chooses a model's default completion on val/ and writes it as the manifest's `[completion]`
table (docs/DESIGN.md "Default completion"; issue 23 item 3).

Every completion mode the runtime implements (gsdnet with the manifest's sampler and samples,
meanfill, zero) runs on val/ at every protocol rate and every pattern that misses a modality
(mask seeds 0-2 by default: the masks and sampler keys of `gsdnet eval`). Selection, by the
mean weighted F1 over mask seeds:
- `default` (windows whose utterances do not all share one availability pattern, i.e. the rate
  scenarios): among the modes that score at least mean fill at every rate, the one with the
  highest mean over the rates; ties go to meanfill (it costs nothing);
- `[completion.patterns]` (a window whose utterances all have the same pattern, e.g. text
  missing everywhere): per pattern the best mode at that pattern, written when it differs from
  `default` (ties go to `default`, then meanfill).
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
import sys
from pathlib import Path

import numpy as np

from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.completion import MODES, Policy, pattern_bits
from gsdnet_ref.evaluate import scenario_outputs
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


def choose(scores: dict, rates: list, patterns: list) -> Policy:
    ok = [m for m in MODES if all(scores[r][m] >= scores[r][FLOOR] for r in rates)]
    order = [FLOOR] + [m for m in ok if m != FLOOR]
    default = max(order, key=lambda m: (np.mean([scores[r][m] for r in rates]), m == FLOOR))
    by_bits = [None] * 8
    for p in patterns:
        prefs = [default, FLOOR] + [m for m in MODES if m not in (default, FLOOR)]
        best = max(prefs, key=lambda m: (scores[p][m], -prefs.index(m)))
        if best != default:
            by_bits[pattern_bits(p)] = best
    return Policy(default, tuple(by_bits))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="the val split folder")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--json", default=None)
    p.add_argument("--write", action="store_true", help="store [completion] in the manifest")
    a = p.parse_args(argv)
    if Path(a.data).resolve().name == "test":
        raise SystemExit("choose_completion fits on val/ only; refusing a split named test")
    model = OnnxModel(a.model)
    man = model.man
    convs = gdata.load_split(a.data, man.dims, getattr(man, "files", None))
    cells = collect(model, convs, a.seeds)
    k = len(man.classes)
    scores = table(cells, a.seeds, k)
    labels = list(scores)
    rates = [lab for lab in labels if lab[0].isdigit() and float(lab) > 0]
    patterns = [lab for lab in labels if not lab[0].isdigit()]
    policy = choose(scores, rates, patterns)
    final = table(cells, a.seeds, k, policy)
    print(f"{'scenario':>8} " + " ".join(f"{m:>9}" for m in MODES + ("policy",)))
    for lab, row in final.items():
        print(f"{lab:>8} " + " ".join(f"{row[m]:9.4f}" for m in MODES + ("policy",)))
    losing = [lab for lab, row in final.items() if row["policy"] < row[FLOOR]]
    print(f"default {policy.default}, patterns {policy.patterns}")
    res = dict(model=man.raw["model"]["name"], split=Path(a.data).name, seeds=a.seeds,
               sampler=man.sde.sampler, steps=man.sde.steps,
               default=policy.default, patterns=policy.patterns, f1_weighted=final,
               losing_to_meanfill=losing)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    if losing:
        raise SystemExit(f"the chosen policy loses to mean fill at {losing}: not written")
    if a.write:
        cmd = "python3 -m gsdnet_torch.choose_completion" + "".join(
            f" {x}" for x in (argv if argv is not None else sys.argv[1:]))
        tab = dict(default=policy.default, chosen_on=Path(a.data).name,
                   rule="highest mean val wF1 over rates among modes >= meanfill at every rate;"
                        " per pattern the best mode", seeds=a.seeds,
                   val_scenarios=list(final),
                   val_f1_policy=[round(row["policy"], 4) for row in final.values()],
                   val_f1_meanfill=[round(row[FLOOR], 4) for row in final.values()],
                   command=cmd)
        if policy.patterns:
            tab["patterns"] = policy.patterns
        write_table(Path(a.model) / "manifest.toml", "completion", tab)
        print(f"wrote [completion] to {Path(a.model) / 'manifest.toml'}")


if __name__ == "__main__":
    main()
