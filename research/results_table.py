"""Markdown tables for docs/results/history.md from a folder of evaluation JSONs (run_all.sh output).

Owns: the aggregation over training seeds (mean and std of the per-run mask-seed means) per
method, missing rate and pattern, and the summary JSON committed next to the tables.
    python3 research/results_table.py RUN_DIR [--json research/results/val_summary.json]
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
from pathlib import Path

import numpy as np

RATES = [round(0.1 * i, 1) for i in range(8)]
PATTERNS = ["T", "A", "V", "TA", "TV", "AV", "TAV"]
METHODS = [  # (family file prefix, completion, label)
    ("gsdnet", "gsdnet", "GSDNet (spectral diffusion)"),
    ("adj", "gsdnet", "(b) adjacency-space diffusion"),
    ("gsdnet", "meanfill", "(c) no diffusion: mean fill, same fusion"),
    ("det", "gsdnet", "(d) deterministic completion net"),
    ("gsdnet", "zero", "zero fill, same fusion"),
    ("baselines", "floor_logistic", "floor: mean-fill logistic"),
    ("baselines", "bilstm_peer", "BiLSTM peer (rerun, our masks)"),
    ("baselines", "bilstm_peer_prior", "BiLSTM peer + conversation prior (chosen on val as for GSDNet)"),  # noqa: E501
]


def collect(run_dir):
    rows = collections.defaultdict(list)
    for f in sorted(glob.glob(str(Path(run_dir) / "eval-*.json"))):
        fam = Path(f).stem[len("eval-"):].rsplit("-", 1)[0]
        for r in json.loads(Path(f).read_text())["results"]:
            key = (fam, r["completion"], r["missing_rate"], r["pattern"])
            rows[key].append((r["acc2"], r["f1_weighted"], r["mae"]))
    return rows


def table(rows, scenarios, metric=0, with_std=True):
    head = "| method | " + " | ".join(str(s) for s in scenarios) + " |"
    out = [head, "|---" * (len(scenarios) + 1) + "|"]
    for fam, comp, label in METHODS:
        cells = []
        for s in scenarios:
            key = (fam, comp, None if isinstance(s, str) else s, s if isinstance(s, str) else None)
            v = [x[metric] for x in rows.get(key, [])]
            if not v:
                cells.append("-")
                continue
            cell = f"{np.mean(v):.3f}"
            if with_std and len(v) > 1:
                cell += f" ±{np.std(v):.3f}"
            cells.append(cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rows = collect(a.run_dir)
    for name, m in (("acc2", 0), ("weighted F1", 1), ("MAE", 2)):
        print(f"### {name} by missing rate\n\n{table(rows, RATES, m, m == 0)}\n")
        print(f"### {name} by fixed pattern (available modalities)\n\n"
              f"{table(rows, PATTERNS, m, m == 0)}\n")
    if a.json:
        summ = [dict(family=k[0], completion=k[1], missing_rate=k[2], pattern=k[3],
                     runs=len(v), acc2=float(np.mean([x[0] for x in v])),
                     acc2_std=float(np.std([x[0] for x in v])),
                     f1_weighted=float(np.mean([x[1] for x in v])),
                     mae=float(np.mean([x[2] for x in v]))) for k, v in sorted(
                         rows.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(dict(source="research/run_all.sh, 3 training seeds x "
                                                "3 mask seeds, val", results=summ), indent=1))


if __name__ == "__main__":
    main()
