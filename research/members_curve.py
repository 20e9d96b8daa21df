"""How many members (train --members K, docs/MODEL.md "IEMOCAP" item 8): val weighted F1 of
the mean of K stage-1 models' log-probabilities, K consecutive training seeds (what `--members K
--seed s` merges; the merge is exact but for the spectral graph, which moved the 5-member mean
by 0.0001 here), mean fill, protocol rates 0.0-0.5 x mask seeds 0-2, for every K up to N and
every start seed s (mean over starts, and s = 0). Stage 1 only, the recipe of the shipped
manifests (`[training] command` without --members / --export / --sel-patterns, score and
fine-tune stages off, no prior): the stage the members differ in.
    python3 research/members_curve.py --task 4way --seeds 10 --work /tmp/members4 \
        --json research/results/members_curve_iemocap4.json
Checkpoints go to --work (outside the repository: they are trained on IEMOCAP); an existing
checkpoint is reused. The JSON holds metrics only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from gsdnet_ref import data as gdata
from gsdnet_ref.paths import ROOT, SHARED_DATA
from gsdnet_torch import common, folds
from gsdnet_torch.export import load_model

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
# options of the shipped command the curve leaves out or sets itself
DROP = {"--members", "--export", "--sel-patterns", "--data", "--seed", "--threads"}


def stage1_command(task: str, seed: int, out: Path) -> list:
    """The shipped manifest's `[training] command` for one stage-1 model of `seed`: without
    --members, --export and --sel-patterns, score and fine-tune stages off, no prior."""
    args = folds.training_command(ROOT / "models" / f"gsdnet-iemocap{task[0]}" / "manifest.toml")
    keep, drop = [], False
    for a in args:
        if a.startswith("--"):
            drop = a.split("=")[0] in DROP
        if not drop:
            keep.append(a)
    return [sys.executable, "-m", "gsdnet_torch.train", *keep, "--data",
            str(SHARED_DATA / "iemocap" / task), "--seed", str(seed), "--threads", "1",
            "--score-epochs", "0", "--ft-epochs", "0", "--no-prior", "--save", str(out)]


def checkpoint(task: str, seed: int, work: Path) -> Path:
    out = work / f"s{seed}.pt"
    if not out.exists():
        with open(work / f"s{seed}.log", "w") as f:
            subprocess.run(stage1_command(task, seed, out), stdout=f, stderr=subprocess.STDOUT,
                           check=True, cwd=ROOT)
    return out


def log_probs(paths: list, task: str) -> tuple:
    """{(mask seed, rate index): [log-softmax of each model]} on val, and the val batch."""
    loaded = [load_model(p) for p in paths]
    models, a = [m for m, _ in loaded], loaded[0][1]["info"]["args"]
    files = gdata.view_files("minilm")
    data = SHARED_DATA / "iemocap" / task
    dims = gdata.split_info(data / "train", files).dims
    stats = gdata.feature_stats(gdata.load_split(data / "train", dims, files))
    vb = common.make_batch(gdata.load_split(data / "val", dims, files), stats, a["width"],
                           a["k"], a["window_same"], a["window_other"])
    out = {}
    with torch.no_grad():
        for s in range(3):
            for ri, r in enumerate(RATES):
                avail = common.protocol_avail(vb, s, rate=r)
                out[(s, ri)] = [torch.log_softmax(common.predict(m, vb, avail, "meanfill", 10,
                                                                 1e-3, None)[0], -1)
                                for m in models]
    return out, vb


def curve(lp: dict, vb, n: int) -> dict:
    def score(idx):
        f = np.zeros((len(RATES), 3))
        for (s, ri), ps in lp.items():
            f[ri, s] = common.metrics(torch.stack([ps[i] for i in idx]).mean(0), None,
                                      vb)["f1_weighted"]
        return f.mean(1)
    table = {}
    for k in range(1, n + 1):
        res = np.array([score(range(s, s + k)) for s in range(n - k + 1)])
        table[str(k)] = dict(mean_over_starts=np.round(res.mean(0), 4).tolist(),
                             mean=round(float(res.mean()), 4),
                             start0=np.round(res[0], 4).tolist())
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("4way", "6way"), required=True)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    paths = [checkpoint(a.task, s, a.work) for s in range(a.seeds)]
    lp, vb = log_probs(paths, a.task)
    table = curve(lp, vb, a.seeds)
    for k, row in table.items():
        print(k, row["mean_over_starts"], row["mean"], "start 0:", row["start0"])
    if a.json:
        a.json.write_text(json.dumps(dict(about=__doc__, rates=RATES, members=table),
                                     indent=1) + "\n")


if __name__ == "__main__":
    main()
