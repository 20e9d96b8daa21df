"""Markdown tables for docs/results/history.md's IEMOCAP section from a run_iemocap.sh folder and the
baselines JSON of research/baselines_iemocap.py.

Owns: the aggregation over training seeds (mean and population std of each run's mask-seed
mean) per method and scenario (rates 0.0-0.5, patterns T, A, TA), the margin of GSDNet over the
README's BiLSTM peer, and the summary JSON committed next to the tables.
    python3 research/results_iemocap.py RUN_DIR BASELINES.json [--json OUT] [--metric f1_weighted]
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
from pathlib import Path

import numpy as np

SCENARIOS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, "T", "A", "TA"]
METHODS = [  # (run family, completion, label)
    ("gsdnet", "gsdnet", "GSDNet (spectral diffusion, speaker graph)"),
    ("gsdnet", "meanfill", "(c) no diffusion: mean fill, same fusion"),
    ("det", "gsdnet", "(d) deterministic completion net"),
    ("nospk", "gsdnet", "no speaker edges (window 8 whatever the speaker)"),
    ("gsdnet", "zero", "zero fill, same fusion"),
    ("baselines", "logistic", "floor: mean-fill logistic"),
    ("baselines", "bilstm_peer", "BiLSTM peer (rerun, our masks)"),
]


def key_of(s):
    return (None, s) if isinstance(s, str) else (s, None)


def collect(run_dir, metric):
    """{(family, completion, rate, pattern): [value per training seed]}."""
    rows = collections.defaultdict(list)
    for f in sorted(glob.glob(str(Path(run_dir) / "eval-*.json"))):
        fam = Path(f).stem[len("eval-"):].rsplit("-", 1)[0]
        for r in json.loads(Path(f).read_text())["results"]:
            rows[(fam, r["completion"], r["missing_rate"], r["pattern"])].append(r[metric])
    return rows


def add_baselines(rows, path, metric):
    doc = json.loads(Path(path).read_text())
    for method, per in doc["results"].items():
        for sc, v in per.items():
            rate, pat = (None, sc) if sc in ("T", "A", "TA") else (float(sc), None)
            seeds = v.get("per_training_seed", {})
            rows[("baselines", method, rate, pat)] = [s[metric] for s in seeds.values()] or \
                [v[metric]["mean"]]
    return doc.get("readme_reference_wf1", {})


def cell(v, with_std):
    if not v:
        return "-"
    out = f"{np.mean(v):.3f}"
    if with_std and len(v) > 1:
        out += f" ±{np.std(v):.3f}"
    return out


def table(rows, with_std=True):
    out = ["| method | " + " | ".join(str(s) for s in SCENARIOS) + " |",
           "|---" * (len(SCENARIOS) + 1) + "|"]
    for fam, comp, label in METHODS:
        cells = [cell(rows.get((fam, comp) + key_of(s), []), with_std) for s in SCENARIOS]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def margins(rows, readme):
    """GSDNet minus the README's BiLSTM peer, in points, per rate 0.0-0.5."""
    peer = dict(zip(readme.get("keys", []), readme.get("bilstm_peer", [])))
    out = {}
    for r in SCENARIOS[:6]:
        v = rows.get(("gsdnet", "gsdnet", r, None), [])
        if v and str(r) in peer:
            out[str(r)] = round(100 * (float(np.mean(v)) - peer[str(r)]), 1)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("baselines")
    p.add_argument("--metric", default="f1_weighted", choices=["f1_weighted", "accuracy"])
    p.add_argument("--json", default=None)
    a = p.parse_args()
    rows = collect(a.run_dir, a.metric)
    readme = add_baselines(rows, a.baselines, a.metric)
    print(table(rows))
    m = margins(rows, readme) if a.metric == "f1_weighted" else {}
    if m:
        print("\nGSDNet - README BiLSTM peer (points):", m)
    if a.json:
        summary = {"metric": a.metric, "margin_vs_readme_peer_points": m,
                   "rows": {f"{k[0]}/{k[1]}/{k[3] or k[2]}": {"mean": float(np.mean(v)),
                                                             "std": float(np.std(v)),
                                                             "runs": len(v)}
                            for k, v in sorted(rows.items(), key=str) if v}}
        Path(a.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
