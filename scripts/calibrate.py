"""Fits the calibration temperature T of a model folder on val/ (docs/DESIGN.md "Calibration").

T minimises the pooled negative log-likelihood of softmax(logits / T) over the scenarios of
`gsdnet eval` (missing rates 0.0-0.7 x mask seeds: the same masks and sampler noise keys,
gsdnet_ref.evaluate) for one completion, by a golden-section search over log T in [1/20, 20]
(the NLL of temperature scaling is convex in 1/T, hence unimodal in log T). The fusion logits do
not depend on T, so they are computed once with the ONNX reference and re-scored per T through
the runtime's own f32 softmax (pipeline.softmax_t) and metric definitions (metrics.py).

Printed per missing rate (each the mean over mask seeds, as eval): ECE / NLL / Brier / acc@80 /
AURC for
- `T=1`: the uncalibrated softmax;
- `T`: the fitted T rounded to 3 decimals (what --write stores, what the runtime would apply);
- `lovo`: T fitted on the other 9 val videos, scored on the video left out (how much of the
  gain survives leaving the scored video out of the fit);
- `text`, `text-lovo`: one T for utterances whose text is observed, one for those without text
  (in-sample, and leave-one-video-out); the runtime applies it as `[calibration.patterns]`
  (every pattern with T gets the first, every other pattern the second).
    python3 scripts/calibrate.py [--model models/gsdnet-mosi] [--data ../shared/data/cmu-mosi/val]
        [--seeds 0 1 2] [--completions gsdnet meanfill] [--json FILE] [--write MANIFEST]
`--write` stores the first completion's calibration as the `[calibration]` table of that
manifest.toml: `--method temperature` (default) the scalar T, `--method text` the two text
temperatures as `[calibration.patterns]` (nothing hashes the manifest itself; the parts' sha256
are unchanged). Refuses a split named `test`: T is chosen on val only.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gsdnet_ref import data as gdata  # noqa: E402
from gsdnet_ref import metrics as gmetrics  # noqa: E402
from gsdnet_ref.evaluate import RATES, scenario_outputs  # noqa: E402
from gsdnet_ref.pipeline import OnnxModel, softmax_t  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T_RANGE = (1.0 / 20.0, 20.0)
DECIMALS = 3
SHOWN = ("ece", "nll", "brier", "acc_cov80", "aurc")
VARIANTS = ("T=1", "T", "lovo", "text", "text-lovo")
HEADER = re.compile(r"^\[[A-Za-z0-9_.\-]+\]\s*$")


def collect(model, convs, completion: str, seeds, rates) -> dict:
    """Every (rate, seed) cell pooled: logits [n, K], y, conv (video index), text (observed),
    cell (index into `cells`, a list of (rate, seed))."""
    cols = {k: [] for k in ("logits", "y", "conv", "text", "cell")}
    cells = []
    for rate in rates:
        for seed in seeds:
            o = scenario_outputs(model, convs, completion, seed, rate=rate)
            for k, v in (("logits", o["logits"]), ("y", o["label_bin"]), ("conv", o["conv"]),
                         ("text", o["avail"][:, 0]), ("cell", np.full(len(o["conv"]), len(cells)))):
                cols[k].append(v)
            cells.append((rate, seed))
    return dict({k: np.concatenate(v) for k, v in cols.items()}, cells=cells)


def softmax_rows(logits: np.ndarray, t) -> np.ndarray:
    """softmax(logits / T) with T a scalar (exactly pipeline.softmax_t) or one T per row."""
    t = np.asarray(t, np.float64)
    if t.ndim == 0:
        return softmax_t(logits, float(t))
    z = np.asarray(logits, np.float32) / t.astype(np.float32)[:, None]
    z = z - z.max(-1, keepdims=True)
    return (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)


def fit_temperature(logits: np.ndarray, y: np.ndarray, tol: float = 1e-6) -> float:
    """argmin_T NLL(softmax(logits / T), y) by golden-section search over log T."""
    f = lambda u: gmetrics.nll(softmax_t(logits, math.exp(u)), y)  # noqa: E731
    a, b = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    t = math.exp((a + b) / 2.0)
    if not (T_RANGE[0] * 1.01 < t < T_RANGE[1] / 1.01):
        raise SystemExit(f"fitted T = {t:.4g} is at the search bound {T_RANGE}: check the logits")
    return t


def fit_groups(pool: dict, group: np.ndarray, held_out: bool) -> np.ndarray:
    """One T per utterance: fitted on the utterances of its group (and, when `held_out`, of
    the other videos only)."""
    temps = np.empty(len(group))
    videos = np.unique(pool["conv"]) if held_out else [None]
    for v in videos:
        rows = np.ones(len(group), bool) if v is None else pool["conv"] == v
        for g in np.unique(group):
            fit = (group == g) & (~rows if v is not None else True)
            temps[rows & (group == g)] = fit_temperature(pool["logits"][fit], pool["y"][fit])
    return temps


def per_rate(pool: dict, temps) -> dict:
    """rate -> mean over seeds of the confidence metrics of softmax(logits / temps)."""
    probs = softmax_rows(pool["logits"], temps)
    by_rate = {}
    for ci, (rate, _) in enumerate(pool["cells"]):
        sel = pool["cell"] == ci
        by_rate.setdefault(rate, []).append(gmetrics.confidence_metrics(probs[sel], pool["y"][sel]))
    return {r: {k: float(np.mean([m[k] for m in ms])) for k in gmetrics.KEYS}
            for r, ms in by_rate.items()}


def ece_floor(pool: dict, temps, draws: int = 200, seed: int = 0) -> dict:
    """rate -> mean over seeds of the expected ECE of a perfectly calibrated model with these
    probabilities (labels drawn from them, `draws` times): the finite-sample floor of ECE."""
    probs = softmax_rows(pool["logits"], temps).astype(np.float64)
    rng = np.random.default_rng(seed)
    cum = np.cumsum(probs, axis=1)
    by_rate = {}
    for ci, (rate, _) in enumerate(pool["cells"]):
        sel = pool["cell"] == ci
        u = rng.random((draws, int(sel.sum())))
        ys = (u[:, :, None] > cum[sel][None, :, :-1]).sum(-1)
        by_rate.setdefault(rate, []).append(np.mean([gmetrics.ece(probs[sel], y) for y in ys]))
    return {r: float(np.mean(v)) for r, v in by_rate.items()}


def calibrate(model, convs, completion: str, seeds, rates) -> dict:
    pool = collect(model, convs, completion, seeds, rates)
    logits, y = pool["logits"], pool["y"]
    t_fit = fit_temperature(logits, y)
    t = round(t_fit, DECIMALS)
    one = np.zeros(len(y), np.int64)
    temps = {"T=1": 1.0, "T": t, "lovo": fit_groups(pool, one, True),
             "text": fit_groups(pool, pool["text"].astype(np.int64), False),
             "text-lovo": fit_groups(pool, pool["text"].astype(np.int64), True)}
    pooled = {v: {"nll": gmetrics.nll(softmax_rows(logits, tv), y),
                  "brier": gmetrics.brier(softmax_rows(logits, tv), y)} for v, tv in temps.items()}
    lovo_t = {convs[int(v)].conv_id: float(temps["lovo"][pool["conv"] == v][0])
              for v in np.unique(pool["conv"])}
    text_t = {name: float(temps["text"][pool["text"] == flag][0])
              for name, flag in (("text_observed", True), ("text_missing", False))
              if np.any(pool["text"] == flag)}
    return dict(completion=completion, temperature=t, temperature_unrounded=t_fit,
                lovo_temperatures=lovo_t, text_temperatures=text_t, pooled=pooled,
                ece_floor={v: ece_floor(pool, temps[v]) for v in ("T=1", "T")},
                per_rate={v: per_rate(pool, tv) for v, tv in temps.items()})


def print_report(res: dict, rates) -> None:
    lo = res["lovo_temperatures"].values()
    by_text = ", ".join(f"{k} {v:.3f}" for k, v in res["text_temperatures"].items())
    print(f"\n{res['completion']}: T = {res['temperature']} (unrounded "
          f"{res['temperature_unrounded']:.5f}), leave-one-video-out T {min(lo):.3f}-{max(lo):.3f};"
          f" diagnostic by text: {by_text}")
    print("pooled over rates and seeds: " + "; ".join(
        f"{v} NLL {p['nll']:.4f} Brier {p['brier']:.4f}" for v, p in res["pooled"].items()))
    print(f"each cell: {' / '.join(VARIANTS)}")
    print(f"{'rate':>4}  " + "  ".join(f"{k:>34}" for k in SHOWN))
    for r in rates:
        cols = ["/".join(f"{res['per_rate'][v][r][k]:.3f}" for v in VARIANTS) for k in SHOWN]
        print(f"{r:>4.1f}  " + "  ".join(f"{c:>34}" for c in cols))
    print("ECE of a perfectly calibrated model with the same probabilities (T=1 / T): " + ", ".join(
        f"{r:.1f} {res['ece_floor']['T=1'][r]:.3f}/{res['ece_floor']['T'][r]:.3f}" for r in rates))


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def write_calibration(manifest: Path, table: dict) -> None:
    """Replaces (or appends) the `[calibration]` table of `manifest`; every other table is
    left byte for byte and checked unchanged after parsing."""
    text = manifest.read_text()
    before = tomllib.loads(text)
    kept, skipping = [], False
    for line in text.splitlines():
        if HEADER.match(line):
            skipping = line.strip() in ("[calibration]", "[calibration.patterns]")
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    body = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, sub in ((k, v) for k, v in table.items() if isinstance(v, dict)):
        body += ["", f"[calibration.{k}]"] + [f"{p} = {_toml_value(t)}" for p, t in sub.items()]
    new = "\n".join(kept + ["", "[calibration]"] + body) + "\n"
    after = tomllib.loads(new)
    before.pop("calibration", None)
    if after.pop("calibration") != table or after != before:
        raise SystemExit(f"{manifest}: rewriting [calibration] would change other tables")
    manifest.write_text(new)


def main(argv=None):
    p = argparse.ArgumentParser(description="Fit the calibration temperature on val/")
    p.add_argument("--model", default=str(ROOT / "models" / "gsdnet-mosi"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cmu-mosi" / "val"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    p.add_argument("--completions", nargs="+", default=["gsdnet", "meanfill"])
    p.add_argument("--json", default=None, help="write every number to this file")
    p.add_argument("--write", default=None, help="manifest.toml to store the first calibration in")
    p.add_argument("--method", choices=["temperature", "text"], default="temperature",
                   help="what --write stores: the scalar T, or one T with text and one without")
    a = p.parse_args(argv)
    if Path(a.data).resolve().name == "test":
        raise SystemExit("calibrate.py fits on val/ only; refusing a split named test")
    model = OnnxModel(a.model)
    convs = gdata.load_split(a.data)
    out = dict(model=model.man.raw["model"]["name"], split=Path(a.data).name, seeds=a.seeds,
               rates=a.rates, steps=model.man.sde.steps, sampler=model.man.sde.sampler,
               manifest_temperature=model.man.temperature, results=[])
    for completion in a.completions:
        res = calibrate(model, convs, completion, a.seeds, a.rates)
        print_report(res, a.rates)
        out["results"].append(res)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    if a.write:
        best = out["results"][0]
        cmd = "python3 scripts/calibrate.py" + "".join(f" {x}" for x in (argv or sys.argv[1:]))
        write_calibration(Path(a.write), calibration_table(best, a, out["split"], cmd))
        print(f"\nwrote [calibration] ({a.method}) to {a.write}")


def calibration_table(best: dict, a, split: str, cmd: str) -> dict:
    """The `[calibration]` table --write stores for `best` (one completion's results)."""
    method = "temperature" if a.method == "temperature" else "temperature by text availability"
    variant, left_out = ("T", "lovo") if a.method == "temperature" else ("text", "text-lovo")
    table = dict(temperature=best["temperature"], method=method, fitted_on=split,
                 completion=best["completion"], seeds=a.seeds, rates=a.rates,
                 val_nll_before=round(best["pooled"]["T=1"]["nll"], 4),
                 val_nll_after=round(best["pooled"][variant]["nll"], 4),
                 val_nll_after_video_left_out=round(best["pooled"][left_out]["nll"], 4),
                 command=cmd)
    if a.method == "text":
        t_obs = round(best["text_temperatures"]["text_observed"], DECIMALS)
        t_mis = round(best["text_temperatures"]["text_missing"], DECIMALS)
        table["temperature"] = t_mis
        table["patterns"] = {p: (t_obs if "T" in p else t_mis)
                             for p in ("TAV", "TA", "TV", "T", "AV", "A", "V")}
    return table


if __name__ == "__main__":
    main()
