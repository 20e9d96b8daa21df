"""Markdown tables of docs/results/history.md "Multi-sample completion (val)" from the JSON files of
research/multisample_val.py (and, for accuracy, `gsdnet eval --json` files).
    python3 research/multisample_table.py DIR
DIR holds {gsdnet_s1,gsdnet_s4,gsdnet_s8,gsdnet_s16,meanfill_s1}.json and eval_s{1,4,8,16}.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

RATES = [f"{0.1 * i:.1f}" for i in range(8)]
PATTERNS = ["T", "A", "V", "TA", "TV", "AV", "TAV"]
SETTINGS = [("meanfill", 1), ("gsdnet", 1), ("gsdnet", 4), ("gsdnet", 8), ("gsdnet", 16)]
VARIANTS = {"T=1": "T = 1", "T": "T fitted (in-sample)", "lovo": "T video left out"}


def name(c, s):
    return "mean fill" if c == "meanfill" else f"GSDNet S = {s}"


def table(rows, cols, head):
    out = ["| | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    out += ["| " + label + " | " + " | ".join(vals) + " |" for label, vals in rows]
    return "\n".join(out)


def main(d):
    d = Path(d)
    res = {(c, s): json.loads((d / f"{c}_s{s}.json").read_text()) for c, s in SETTINGS}
    print("temperatures: " + "; ".join(
        f"{name(c, s)} T = {r['temperature']} (video left out "
        f"{min(r['lovo_temperatures'].values()):.3f}-{max(r['lovo_temperatures'].values()):.3f})"
        for (c, s), r in res.items()))
    print("pooled NLL T=1 / T / lovo: " + "; ".join(
        f"{name(c, s)} " + "/".join(f"{r['pooled'][v]['nll']:.4f}" for v in VARIANTS)
        for (c, s), r in res.items()))
    for key, variants in (("ece", VARIANTS), ("nll", VARIANTS), ("brier", VARIANTS),
                          ("acc_cov50", ("T=1", "lovo")), ("acc_cov80", ("T=1", "lovo")),
                          ("aurc", ("T=1", "lovo"))):
        rows = [(f"{name(c, s)}, {VARIANTS[v]}",
                 [f"{res[(c, s)]['per_rate'][v][r][key]:.3f}" for r in RATES])
                for c, s in SETTINGS for v in variants]
        print(f"\n{key} by missing rate\n")
        print(table(rows, RATES, RATES))
    evals = {s: json.loads((d / f"eval_s{s}.json").read_text())["results"] for s in (1, 4, 8, 16)}
    acc = []
    for c, s in SETTINGS:
        rows = {(r["missing_rate"], r["pattern"]): r for r in evals[s] if r["completion"] == c}
        acc.append((name(c, s), [f"{rows[(float(r), None)]['acc2']:.3f}" for r in RATES]))
    print("\nacc2 by missing rate (gsdnet eval)\n")
    print(table(acc, RATES, RATES))
    for key, variants in (("ece", ("T=1", "lovo")), ("aurc", ("T=1", "lovo"))):
        rows = [(f"{name(c, s)}, {VARIANTS[v]}",
                 [f"{res[(c, s)]['patterns'][v][p][key]:.3f}" for p in PATTERNS])
                for c, s in SETTINGS for v in variants]
        print(f"\n{key} by fixed pattern\n")
        print(table(rows, PATTERNS, PATTERNS))


if __name__ == "__main__":
    main(sys.argv[1])
