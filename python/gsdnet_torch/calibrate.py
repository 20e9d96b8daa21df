"""Fits the calibration temperature T of a model folder on val/ (docs/DESIGN.md "Calibration").

T minimises the pooled negative log-likelihood of softmax(logits / T) over the scenarios of
`gsdnet eval` (missing rates 0.0 up to the model's maximum, 0.7 with three modalities and 0.5
with two, x mask seeds: the same masks and sampler noise keys,
gsdnet_ref.evaluate) for one completion, by a golden-section search over log T in [1/20, 20]
(the NLL of temperature scaling is convex in 1/T, hence unimodal in log T). The fusion logits do
not depend on T, so they are computed once with the ONNX reference and re-scored per T through
the runtime's own f32 softmax (pipeline.softmax_t) and metric definitions (metrics.py).

Printed per missing rate (each the mean over mask seeds, as eval): ECE / NLL / Brier / acc@80 /
AURC for
- `T=1`: the uncalibrated softmax;
- `T`: the fitted T rounded to 3 decimals (what --write stores, what the runtime would apply);
- `lovo`: T fitted on the other val conversations, scored on the one left out (how much of
  the gain survives leaving the scored conversation out of the fit);
- `text`, `text-lovo`: one T for utterances whose text is observed, one for those without text
  (in-sample, and leave-one-conversation-out); the runtime applies it as
  `[calibration.patterns]` (every pattern with T gets the first, every other pattern the
  second);
- `pattern`, `pattern-lovo`: one T per availability pattern of the model's modalities (T, A,
  TA for a text + audio model), written as `[calibration.patterns]` by `--method pattern`.
    python3 -m gsdnet_torch.calibrate [--model models/gsdnet-mosi]
        [--data ../shared/data/cmu-mosi/val]
        [--seeds 0 1 2] [--completions gsdnet meanfill] [--json FILE] [--write MANIFEST]
`--write` stores the first completion's calibration as the `[calibration]` table of that
manifest.toml: `--method temperature` (default) the scalar T, `--method text` the two text
temperatures, `--method pattern` one T per pattern, as `[calibration.patterns]` (nothing hashes
the manifest itself; the parts' sha256 are unchanged). Refuses a split named `test`: T is
chosen on val only.
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

from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.evaluate import scenario_outputs
from gsdnet_ref.paths import ROOT, SHARED_DATA
from gsdnet_ref.pipeline import OnnxModel, softmax_t

T_RANGE = (1.0 / 20.0, 20.0)
DECIMALS = 3
SHOWN = ("ece", "nll", "brier", "acc_cov80", "aurc")
VARIANTS = ("T=1", "T", "lovo", "text", "text-lovo", "pattern", "pattern-lovo")
HEADER = re.compile(r"^\[[A-Za-z0-9_.\-]+\]\s*$")


def collect(model, convs, completion: str, seeds, rates) -> dict:
    """Every (rate, seed) cell pooled: logits [n, K], y, conv (conversation index), text
    (observed; all False for a model without text), bits (availability pattern, T=1 A=2 V=4),
    cell (index into `cells`, a list of (rate, seed))."""
    cols = {k: [] for k in ("logits", "y", "conv", "text", "bits", "cell")}
    cells = []
    man = model.man
    for rate in rates:
        for seed in seeds:
            o = scenario_outputs(model, convs, completion, seed, rate=rate)
            text = o["avail"][:, man.modalities.index("text")] if "text" in man.dims \
                else np.zeros(len(o["conv"]), bool)
            for k, v in (("logits", o["logits"]), ("y", o["label"]), ("conv", o["conv"]),
                         ("text", text), ("bits", o["avail"].astype(np.int64) @ man.bits),
                         ("cell", np.full(len(o["conv"]), len(cells)))):
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


def argmin_log_t(f, tol: float = 1e-6) -> float:
    """The T in T_RANGE minimising f(log T), by golden-section search over log T."""
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
    return math.exp((a + b) / 2.0)


def fit_temperature(logits: np.ndarray, y: np.ndarray, tol: float = 1e-6) -> float:
    """argmin_T NLL(softmax(logits / T), y) by golden-section search over log T."""
    t = argmin_log_t(lambda u: gmetrics.nll(softmax_t(logits, math.exp(u)), y), tol)
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
             "text-lovo": fit_groups(pool, pool["text"].astype(np.int64), True),
             "pattern": fit_groups(pool, pool["bits"], False),
             "pattern-lovo": fit_groups(pool, pool["bits"], True)}
    pooled = {v: {"nll": gmetrics.nll(softmax_rows(logits, tv), y),
                  "brier": gmetrics.brier(softmax_rows(logits, tv), y)} for v, tv in temps.items()}
    lovo_t = {convs[int(v)].conv_id: float(temps["lovo"][pool["conv"] == v][0])
              for v in np.unique(pool["conv"])}
    text_t = {name: float(temps["text"][pool["text"] == flag][0])
              for name, flag in (("text_observed", True), ("text_missing", False))
              if np.any(pool["text"] == flag)}
    letters = model.man.letters
    pattern_t = {p: float(temps["pattern"][pool["bits"] == gmasks.pattern_bits(p)][0])
                 for p in gmasks.patterns_for(letters)
                 if np.any(pool["bits"] == gmasks.pattern_bits(p))}
    return dict(completion=completion, temperature=t, temperature_unrounded=t_fit,
                lovo_temperatures=lovo_t, text_temperatures=text_t,
                pattern_temperatures=pattern_t, letters=letters, pooled=pooled,
                ece_floor={v: ece_floor(pool, temps[v]) for v in ("T=1", "T")},
                per_rate={v: per_rate(pool, tv) for v, tv in temps.items()})


def print_report(res: dict, rates) -> None:
    lo = res["lovo_temperatures"].values()
    by_text = ", ".join(f"{k} {v:.3f}" for k, v in res["text_temperatures"].items())
    by_pat = ", ".join(f"{k} {v:.3f}" for k, v in res["pattern_temperatures"].items())
    print(f"\n{res['completion']}: T = {res['temperature']} (unrounded "
          f"{res['temperature_unrounded']:.5f}), leave-one-conversation-out T "
          f"{min(lo):.3f}-{max(lo):.3f}; by text: {by_text}; by pattern: {by_pat}")
    print("pooled over rates and seeds: " + "; ".join(
        f"{v} NLL {p['nll']:.4f} Brier {p['brier']:.4f}" for v, p in res["pooled"].items()))
    print(f"each cell: {' / '.join(VARIANTS)}")
    print(f"{'rate':>4}  " + "  ".join(f"{k:>48}" for k in SHOWN))
    for r in rates:
        cols = ["/".join(f"{res['per_rate'][v][r][k]:.3f}" for v in VARIANTS) for k in SHOWN]
        print(f"{r:>4.1f}  " + "  ".join(f"{c:>48}" for c in cols))
    print("ECE of a perfectly calibrated model with the same probabilities (T=1 / T): " + ", ".join(
        f"{r:.1f} {res['ece_floor']['T=1'][r]:.3f}/{res['ece_floor']['T'][r]:.3f}" for r in rates))


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def write_calibration(manifest: Path, table: dict) -> None:
    """Replaces (or appends) the `[calibration]` table of `manifest` (write_table)."""
    write_table(manifest, "calibration", table)


def write_table(manifest: Path, name: str, table: dict) -> None:
    """Replaces (or appends) the top-level table `name` of `manifest` (its sub-tables
    included: one level of dict values); every other table is left byte for byte and checked
    unchanged after parsing."""
    text = manifest.read_text()
    before = tomllib.loads(text)
    kept, skipping = [], False
    for line in text.splitlines():
        if HEADER.match(line):
            head = line.strip()[1:-1]
            skipping = head == name or head.startswith(name + ".")
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    body = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, sub in ((k, v) for k, v in table.items() if isinstance(v, dict)):
        body += ["", f"[{name}.{k}]"] + [f"{p} = {_toml_value(t)}" for p, t in sub.items()]
    new = "\n".join(kept + ["", f"[{name}]"] + body) + "\n"
    after = tomllib.loads(new)
    before.pop(name, None)
    if after.pop(name) != table or after != before:
        raise SystemExit(f"{manifest}: rewriting [{name}] would change other tables")
    manifest.write_text(new)


def main(argv=None):
    p = argparse.ArgumentParser(description="Fit the calibration temperature on val/")
    p.add_argument("--model", default=str(ROOT / "models" / "gsdnet-mosi"))
    p.add_argument("--data", default=str(SHARED_DATA / "cmu-mosi" / "val"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rates", type=float, nargs="+", default=None,
                   help="missing rates (default: 0.0 .. the model's maximum)")
    p.add_argument("--completions", nargs="+", default=["gsdnet", "meanfill"])
    p.add_argument("--json", default=None, help="write every number to this file")
    p.add_argument("--write", default=None, help="manifest.toml to store the first calibration in")
    p.add_argument("--method", choices=["temperature", "text", "pattern"],
                   default="temperature", help="what --write stores: the scalar T, one T "
                   "with text and one without, or one T per availability pattern")
    a = p.parse_args(argv)
    if Path(a.data).resolve().name == "test":
        raise SystemExit("calibrate.py fits on val/ only; refusing a split named test")
    model = OnnxModel(a.model)
    convs = gdata.load_split(a.data, model.man.dims, model.man.files)
    if a.rates is None:
        a.rates = gmasks.protocol_rates(model.man.m)
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
        cmd = "python3 -m gsdnet_torch.calibrate" + "".join(f" {x}" for x in (argv or sys.argv[1:]))
        write_calibration(Path(a.write), calibration_table(best, a, out["split"], cmd))
        print(f"\nwrote [calibration] ({a.method}) to {a.write}")


def calibration_table(best: dict, a, split: str, cmd: str) -> dict:
    """The `[calibration]` table --write stores for `best` (one completion's results)."""
    method, variant, left_out = {
        "temperature": ("temperature", "T", "lovo"),
        "text": ("temperature by text availability", "text", "text-lovo"),
        "pattern": ("temperature by availability pattern", "pattern", "pattern-lovo")}[a.method]
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
                             for p in ("TAV", "TA", "TV", "T", "AV", "A", "V")
                             if set(p) <= set(best.get("letters", "TAV"))}
    if a.method == "pattern":   # the scalar stays the pooled T (patterns not seen in the fit)
        table["patterns"] = {p: round(t_p, DECIMALS)
                             for p, t_p in sorted(best["pattern_temperatures"].items(),
                                                  key=lambda kv: -gmasks.pattern_bits(kv[0]))}
    return table


if __name__ == "__main__":
    main()
