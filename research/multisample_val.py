"""Multi-sample completion on val/ (docs/results/history.md "Multi-sample completion (val)"): for one
completion and S samples, the confidence metrics per missing rate and per fixed pattern before
and after a temperature fitted on val for that S, in-sample and leave-one-video-out.

The fit is gsdnet_torch.calibrate's own (`calibrate.calibrate`: golden-section search of the
pooled NLL over log T on rates 0.0-0.7 x mask seeds, T rounded to 3 decimals, leave-one-video-
out refits), with its softmax replaced by the runtime's multi-sample mixture: with S samples the
published probability is mean_s softmax(logits_s / T) (DESIGN.md "Multi-sample completion"), so
T is fitted on that mean; for S = 1 the mixture is calibrate.py's softmax exactly. Patterns are
scored with the T fitted on the rates (in-sample) and with each video's leave-one-video-out T.
    python3 research/multisample_val.py --samples 4 [--completion gsdnet] [--model DIR]
        [--data ../shared/data/cmu-mosi/val] [--seeds 0 1 2] --json FILE
Refuses a split named test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from gsdnet_torch import calibrate as cal
from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref.evaluate import RATES, scenario_outputs
from gsdnet_ref.multisample import mean_f64
from gsdnet_ref.pipeline import OnnxModel, softmax_t

ROOT = Path(__file__).resolve().parents[1]


def mixture(logits: np.ndarray, t) -> np.ndarray:
    """mean_s softmax(logits[:, s] / T) for logits [n, S, K]; T a scalar or one per row. The
    per-sample softmax is pipeline.softmax_t, the mean multisample.mean_f64 (sample order)."""
    t = np.asarray(t, np.float64)
    tt = float(t) if t.ndim == 0 else t.astype(np.float32)[:, None]
    return mean_f64([softmax_t(logits[:, s], tt) for s in range(logits.shape[1])])


def collect(samples: int, scenarios):
    """calibrate.collect with `logits` = every sample's logits [n, S, K]; scenarios are
    (rate, pattern) pairs, cells (scenario, seed)."""
    def run(model, convs, completion, seeds, rates=None):
        cols = {k: [] for k in ("logits", "y", "conv", "text", "cell")}
        cells = []
        for rate, pattern in scenarios:
            for seed in seeds:
                o = scenario_outputs(model, convs, completion, seed, rate=rate, pattern=pattern,
                                     samples=samples)
                for k, v in (("logits", o["logits_samples"]), ("y", o["label"]),
                             ("conv", o["conv"]), ("text", o["avail"][:, 0]),
                             ("cell", np.full(len(o["conv"]), len(cells)))):
                    cols[k].append(v)
                cells.append((rate if pattern is None else pattern, seed))
        return dict({k: np.concatenate(v) for k, v in cols.items()}, cells=cells)
    return run


def patterns_scored(model, convs, completion, seeds, samples, res) -> dict:
    """pattern -> {"T=1", "T", "lovo"} -> mean over seeds of the confidence metrics."""
    pool = collect(samples, [(None, p) for p in gmasks.PATTERNS])(model, convs, completion, seeds)
    lovo = np.array([res["lovo_temperatures"][convs[int(c)].conv_id] for c in pool["conv"]])
    return {v: cal.per_rate(pool, t) for v, t in (("T=1", 1.0), ("T", res["temperature"]),
                                                   ("lovo", lovo))}


def main(argv=None):
    p = argparse.ArgumentParser(description="Multi-sample completion with temperatures on val/")
    p.add_argument("--model", default=str(ROOT / "models" / "gsdnet-mosi"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cmu-mosi" / "val"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--completion", default="gsdnet")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    if Path(a.data).resolve().name == "test":
        raise SystemExit("multisample_val.py works on val/ only; refusing a split named test")
    model, convs = OnnxModel(a.model), gdata.load_split(a.data)
    if model.man.by_avail != (model.man.temperature,) * 8 or model.man.temperature != 1.0:
        raise SystemExit("use a model folder without [calibration]: T is fitted here")
    # calibrate.py's fit, on the mixture of the samples' tempered softmaxes.
    cal.softmax_t, cal.softmax_rows = mixture, mixture
    cal.collect = collect(a.samples, [(r, None) for r in RATES])
    res = cal.calibrate(model, convs, a.completion, a.seeds, RATES)
    cal.print_report(res, RATES)
    res["patterns"] = patterns_scored(model, convs, a.completion, a.seeds, a.samples, res)
    res.update(samples=a.samples, seeds=a.seeds, split=Path(a.data).name,
               command="python3 research/multisample_val.py" + "".join(
                   f" {x}" for x in (argv or sys.argv[1:])))
    Path(a.json).write_text(json.dumps(res, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
