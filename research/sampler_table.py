"""Steps versus accuracy of the two integrators on val/ (issue #6), and the default they imply.

Owns: the grid (Euler-Maruyama at 100 reference steps and fewer; PF-ODE Heun at few steps), the
paired evaluation (same masks and initial noise for every row, missing rates 0.3 and 0.7, mask
seeds 0..N-1), the rule "fewest Heun steps whose acc2 stays within 0.5 points of 100 EM steps at
both rates", and the markdown table for docs/results/history.md. Runs the ONNX reference
(gsdnet_ref.evaluate), which `gsdnet eval --sampler ... --steps ...` reproduces exactly.
    python3 research/sampler_table.py [MODEL_DIR] [--seeds 10] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gsdnet_ref.evaluate import evaluate
from gsdnet_ref.sampler import EM, HEUN

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared" / "data" / "cmu-mosi" / "val"
RATES = (0.3, 0.7)
GRID = [(EM, 100), (EM, 50), (EM, 25), (EM, 10), (EM, 5), (EM, 2),
        (HEUN, 1), (HEUN, 2), (HEUN, 3), (HEUN, 4), (HEUN, 5), (HEUN, 8), (HEUN, 10)]
TOLERANCE = 0.005


def run(model_dir, seeds) -> list:
    rows = []
    for sampler, steps in GRID:
        t0 = time.time()
        res = evaluate(model_dir, VAL, seeds=tuple(range(seeds)), completions=("gsdnet",),
                       rates=RATES, patterns=(), steps=steps, sampler=sampler)
        acc = {r["missing_rate"]: r["acc2"] for r in res["results"]}
        f1 = {r["missing_rate"]: r["f1_weighted"] for r in res["results"]}
        nfe = steps if sampler == EM else 2 * steps
        rows.append(dict(sampler=sampler, steps=steps, score_calls=nfe,
                         acc2={str(r): acc[r] for r in RATES}, f1={str(r): f1[r] for r in RATES}))
        print(f"{sampler:24s} {steps:4d} {[round(acc[r], 4) for r in RATES]} "
              f"({time.time() - t0:.1f} s)", file=sys.stderr)
    return rows


def choose(rows) -> dict:
    """Fewest Heun steps within TOLERANCE of EM 100 at every rate (None if none is)."""
    ref = next(r for r in rows if r["sampler"] == EM and r["steps"] == 100)
    ok = [r for r in rows if r["sampler"] == HEUN and
          all(abs(r["acc2"][k] - ref["acc2"][k]) <= TOLERANCE + 1e-12 for k in ref["acc2"])]
    return min(ok, key=lambda r: r["steps"]) if ok else None


def markdown(rows, default, seeds) -> str:
    ref = next(r for r in rows if r["sampler"] == EM and r["steps"] == 100)
    head = ("| integrator | steps | score-net calls | acc2 @0.3 | Δ vs EM-100 | acc2 @0.7 | "
            "Δ vs EM-100 |\n|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        name = "Euler-Maruyama (SDE)" if r["sampler"] == EM else "Heun (PF-ODE)"
        mark = " **default**" if default is not None and \
            (r["sampler"], r["steps"]) == (default["sampler"], default["steps"]) else ""
        cells = []
        for k in ref["acc2"]:
            cells += [f"{r['acc2'][k]:.3f}", f"{100 * (r['acc2'][k] - ref['acc2'][k]):+.1f}"]
        lines.append(f"| {name}{mark} | {r['steps']} | {r['score_calls']} | " +
                     " | ".join(cells) + " |")
    note = (f"\nMask seeds 0-{seeds - 1} (paired: every row sees the same masks and initial "
            f"noise), val/, 191 utterances. Rule: the default is the fewest Heun steps whose "
            f"acc2 is within {100 * TOLERANCE:.1f} points of EM-100 at both rates.\n")
    return head + "\n".join(lines) + "\n" + note


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir", nargs="?", default=str(ROOT / "models" / "gsdnet-mosi"))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--json", default=None)
    p.add_argument("--from-json", default=None, help="print the table of an earlier --json run")
    a = p.parse_args(argv)
    if a.from_json:
        doc = json.loads(Path(a.from_json).read_text())
        print(markdown(doc["rows"], doc["default"], doc["seeds"]))
        return
    rows = run(a.model_dir, a.seeds)
    default = choose(rows)
    print(markdown(rows, default, a.seeds))
    print("default:", None if default is None else f"{default['sampler']} {default['steps']}")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(seeds=a.seeds, rates=list(RATES),
                                                tolerance=TOLERANCE, rows=rows,
                                                default=default), indent=1) + "\n")


if __name__ == "__main__":
    main()
