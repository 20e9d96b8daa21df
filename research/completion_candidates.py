"""Candidate completions against mean fill on IEMOCAP val, with the bootstrap that
`gsdnet_torch.choose_completion` uses (issue 23 item 2).

Candidates (each through the model's fusion, the masks and stream keys of `gsdnet eval`):
heun3 (the deployed sampler), tweedie (Tweedie's posterior mean from one score call at t = 1,
`gsdnet_ref.sampler.sample_tweedie`), tweedie_s8 (8 such estimates, probabilities averaged),
zero, and meanfill. Reported per rate and pattern: mean wF1 over mask seeds and the bootstrap
P(gain over mean fill > 0) over val conversations.
    python3 research/completion_candidates.py MODEL_DIR SPLIT_DIR --json OUT
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref.evaluate import scenario_outputs
from gsdnet_ref.pipeline import OnnxModel
from gsdnet_ref.sampler import HEUN, TWEEDIE
from gsdnet_torch.choose_completion import Bootstrap, f1

CANDIDATES = {"heun3": ("gsdnet", HEUN, 1), "tweedie": ("gsdnet", TWEEDIE, 1),
              "tweedie_s8": ("gsdnet", TWEEDIE, 8), "zero": ("zero", None, 1),
              "meanfill": ("meanfill", None, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("split_dir")
    p.add_argument("--json", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--draws", type=int, default=1000)
    a = p.parse_args(argv)
    model = OnnxModel(a.model_dir)
    man = model.man
    base = man.sde
    convs = gdata.load_split(a.split_dir, man.dims, getattr(man, "files", None))
    grid = [(r, None) for r in gmasks.protocol_rates(man.m) if r > 0] + \
        [(None, q) for q in gmasks.patterns_for(man.letters) if q != man.letters]
    cells = {}
    for rate, pattern in grid:
        label = pattern or f"{rate:.1f}"
        for seed in a.seeds:
            cell = {"probs": {}}
            for name, (mode, sampler, samples) in CANDIDATES.items():
                man.sde = replace(base, sampler=sampler or base.sampler)
                o = scenario_outputs(model, convs, mode, seed, rate, pattern, samples)
                cell["probs"][name] = o["probs"]
                cell["label"], cell["conv"] = o["label"], o["conv"]
            cells[(label, seed)] = cell
    man.sde = base
    boot = Bootstrap(cells, len(man.classes), a.draws)
    rows = {}
    for label in dict.fromkeys(lab for lab, _ in cells):
        row = {}
        for name in CANDIDATES:
            score = float(np.mean([f1(cells[(label, s)]["probs"][name], cells[(label, s)]["label"],
                                      len(man.classes)) for s in a.seeds]))
            row[name] = {"f1_weighted": score}
            if name != "meanfill":
                row[name]["p_gain_over_meanfill"] = boot.p_gain([label], name, "meanfill")
        rows[label] = row
        print(f"{label:>4} " + "  ".join(
            f"{n} {v['f1_weighted']:.4f}" + (f" (P {v['p_gain_over_meanfill']:.2f})"
                                             if "p_gain_over_meanfill" in v else "")
            for n, v in row.items()), flush=True)
    Path(a.json).write_text(json.dumps(dict(model=man.raw["model"]["name"], seeds=a.seeds,
                                            draws=a.draws, rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
