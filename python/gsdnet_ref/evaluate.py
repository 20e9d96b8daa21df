"""Evaluation of an ONNX model folder on a split (docs/DESIGN.md protocol), JSON output.

Owns: the scenario grid (rates 0.0, 0.1, ... up to the model's maximum: 0.7 with three
modalities, 0.5 with two; fixed patterns over the model's modalities), windowing of
conversations into consecutive windows of W, the per-seed metrics (K-class accuracy, weighted
F1, per-class F1 and confusion matrix of metrics.classification; acc2 (= accuracy of the binary
label) and MAE of the regression head vs label_cont only where the model has one; the
confidence metrics of metrics.py on the probabilities: nll, brier, ece, acc_cov50, acc_cov80,
aurc) and their mean over mask seeds (element-wise for the per-class lists). Probabilities
carry the manifest's calibration temperature (pipeline.py). With S completion samples
(`--samples`, default the manifest's `[sde] samples`) the gsdnet probabilities and regression
are the sample means (multisample.py); `logits_samples` [n, S, K] holds every sample's logits,
and `logits` is returned only for S = 1 (one logit vector no longer stands for a prediction).
    python3 -m gsdnet_ref.evaluate MODEL_DIR SPLIT_DIR [--out FILE] [--seeds 0 1 2]
        [--steps S] [--sampler NAME] [--samples S] [--rates 0.3 0.7] [--no-patterns]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import data as gdata
from . import masks as gmasks
from . import metrics as gmetrics
from .completion import DEFAULT, load_policy
from .multisample import check_samples, manifest_samples, run_window_samples
from .pipeline import COMPLETIONS, OnnxModel
from .sampler import stream_key

RATES = tuple(gmasks.protocol_rates(3))   # CMU-MOSI's grid; other models: protocol_rates(M)
MEAN_KEYS = ("accuracy", "f1_weighted", "acc2", "mae") + gmetrics.KEYS
LIST_KEYS = ("f1_per_class", "confusion")


def metrics(pred: np.ndarray, y: np.ndarray, reg=None, y_cont=None, k: int | None = None) -> dict:
    """K-class label metrics (metrics.classification) and n; with a regression output also
    acc2 (the accuracy, on the binary label) and MAE of reg vs y_cont. k: default the largest
    label or prediction + 1, at least 2."""
    k = max(2, int(max(np.max(pred), np.max(y))) + 1) if k is None else k
    out = gmetrics.classification(pred, y, k)
    if reg is not None:
        out.update(acc2=out["accuracy"], mae=float(np.mean(np.abs(reg - y_cont))))
    out["n"] = int(len(y))
    return out


def conversation_outputs(model, conv, avail, completion, seed, scenario, samples=None) -> dict:
    """logits (S = 1 only), logits_samples [N, S, K], probs [N, K] and reg [N] (regression
    models only) of all utterances of `conv`, window by window; `samples` None = the
    manifest's. `completion` "default": each window's mode from the manifest's `[completion]`
    policy (completion.py)."""
    man = model.man
    s = samples or manifest_samples(man)
    policy = load_policy(man.raw) if completion == DEFAULT else None
    outs = {"logits_samples": [], "probs": []}
    if man.has_regression:
        outs["reg"] = []
    for wi, sl in enumerate(gdata.window_slices(conv.n, man.width)):
        feats = {m: conv.feats[m][sl] for m in man.modalities}
        key = stream_key(seed, scenario, conv.conv_id, wi)
        mode = policy.resolve(avail[sl], man.bits) if policy else completion
        out = run_window_samples(model, feats, avail[sl], conv.speaker[sl], mode,
                                 noise_key=key, samples=s)
        out["logits_samples"] = np.swapaxes(out["logits_samples"], 0, 1)
        for k, v in outs.items():
            v.append(out[k])
    res = {k: np.concatenate(v) for k, v in outs.items()}
    if s == 1:
        res["logits"] = res["logits_samples"][:, 0]
    return res


def run_conversation(model, conv, avail, completion, seed, scenario, samples=None):
    """(probs, reg) for all utterances of `conv`, window by window (reg None without a
    regression head)."""
    out = conversation_outputs(model, conv, avail, completion, seed, scenario, samples)
    return out["probs"], out.get("reg")


def conversation_avail(man, conv, seed, rate=None, pattern=None) -> np.ndarray:
    """[N, M] protocol availability of a whole conversation (masks.py, the model's M)."""
    if pattern:
        return gmasks.mask_for_pattern(pattern, conv.n, man.letters)
    return gmasks.mask_for_rate(seed, rate, conv.conv_id, conv.n, man.m)


def scenario_outputs(model, convs, completion, seed, rate=None, pattern=None,
                     samples=None) -> dict:
    """logits (S = 1 only), logits_samples [n, S, K], probs [n, K], label, avail [n, M] and
    `conv` (index per utterance), plus reg and label_cont for regression models, of one
    (scenario, seed, completion), utterances in conversation order."""
    scenario = gmasks.scenario_id(rate, pattern)
    keys = ["logits_samples", "probs", "label", "avail", "conv"]
    if model.man.has_regression:
        keys += ["reg", "label_cont"]
    out = {k: [] for k in keys}
    for ci, c in enumerate(convs):
        avail = conversation_avail(model.man, c, seed, rate, pattern)
        conv_out = conversation_outputs(model, c, avail, completion, seed, scenario, samples)
        if "logits" in conv_out:
            out.setdefault("logits", []).append(conv_out.pop("logits"))
        for k, v in conv_out.items():
            out[k].append(v)
        out["avail"].append(np.asarray(avail, bool))
        out["label"].append(c.label)
        if model.man.has_regression:
            out["label_cont"].append(c.label_cont)
        out["conv"].append(np.full(c.n, ci))
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_scenario(model, convs, completion, seed, rate=None, pattern=None,
                      samples=None) -> dict:
    o = scenario_outputs(model, convs, completion, seed, rate, pattern, samples)
    m = metrics(o["probs"].argmax(-1), o["label"], o.get("reg"), o.get("label_cont"),
                k=len(model.man.classes))
    return {**m, **gmetrics.confidence_metrics(o["probs"], o["label"])}


def mean_row(per: list) -> dict:
    """Mean over mask seeds of each per-seed value (element-wise for lists)."""
    row = {k: float(np.mean([p[k] for p in per])) for k in MEAN_KEYS if k in per[0]}
    for k in LIST_KEYS:
        row[k] = np.mean([p[k] for p in per], axis=0).tolist()
    row["n"] = per[0]["n"]
    return row


def evaluate(model_dir, split_dir, seeds=(0, 1, 2), completions=COMPLETIONS,
             rates=None, patterns=None, steps=None, sampler=None, samples=None) -> dict:
    """`rates` / `patterns` None = the model's protocol grid; `steps` / `sampler` / `samples`
    override the manifest's [sde] settings."""
    model = OnnxModel(model_dir)
    man = model.man
    rates = gmasks.protocol_rates(man.m) if rates is None else rates
    patterns = gmasks.patterns_for(man.letters) if patterns is None else patterns
    samples = check_samples(samples) if samples is not None else manifest_samples(man)
    sde = man.sde
    man.sde = replace(sde, steps=steps or sde.steps, sampler=sampler or sde.sampler)
    convs = gdata.load_split(split_dir, man.dims, man.files)
    results = []
    grid = [(r, None) for r in rates] + [(None, p) for p in patterns]
    for completion in completions:
        for rate, pattern in grid:
            per = [evaluate_scenario(model, convs, completion, s, rate, pattern, samples)
                   for s in seeds]
            results.append(dict(missing_rate=rate, pattern=pattern, completion=completion,
                                **mean_row(per)))
    return dict(model=man.raw["model"]["name"], split=Path(split_dir).name,
                modalities=list(man.modalities), classes=list(man.classes),
                seeds=list(seeds), steps=man.sde.steps, sampler=man.sde.sampler,
                samples=samples, temperature=man.temperature, results=results)


def main(argv=None):
    p = argparse.ArgumentParser(description="Evaluate an ONNX GSDNet folder on a split")
    p.add_argument("model_dir")
    p.add_argument("split_dir")
    p.add_argument("--out", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--completions", nargs="+", default=list(COMPLETIONS),
                   help="modes, and `default` for the manifest's [completion] policy")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: manifest)")
    p.add_argument("--sampler", default=None, help="sampler name (default: manifest)")
    p.add_argument("--samples", type=int, default=None,
                   help="completion samples per window (default: manifest [sde] samples, else 1)")
    p.add_argument("--rates", type=float, nargs="+", default=None,
                   help="missing rates (default: 0.0 .. the model's maximum)")
    p.add_argument("--patterns", nargs="+", default=None,
                   help="fixed patterns (default: every pattern of the model's modalities)")
    p.add_argument("--no-patterns", action="store_true", help="missing rates only")
    a = p.parse_args(argv)
    res = evaluate(a.model_dir, a.split_dir, tuple(a.seeds), tuple(a.completions),
                   None if a.rates is None else tuple(a.rates),
                   () if a.no_patterns else (None if a.patterns is None else tuple(a.patterns)),
                   a.steps, a.sampler, a.samples)
    res["command"] = "python3 -m gsdnet_ref.evaluate " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = json.dumps(res, indent=1) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    for r in res["results"]:
        sc = r["pattern"] if r["pattern"] else f"{r['missing_rate']:.1f}"
        mae = f" mae {r['mae']:.4f}" if "mae" in r else ""
        print(f"{r['completion']:9s} {sc:4s} acc {r['accuracy']:.4f} f1 {r['f1_weighted']:.4f}"
              f"{mae} nll {r['nll']:.4f} ece {r['ece']:.4f} "
              f"acc@80 {r['acc_cov80']:.4f} aurc {r['aurc']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
