"""Evaluation of an ONNX model folder on a split (docs/DESIGN.md protocol), JSON output.

Owns: the scenario grid (rates 0.0..0.7 step 0.1, fixed patterns), windowing of conversations
into consecutive windows of W, the per-seed metrics (acc2 on label_bin, weighted F1, MAE of the
regression head vs label_cont, and the confidence metrics of metrics.py on the probabilities:
nll, brier, ece, acc_cov50, acc_cov80, aurc) and their mean over mask seeds. Probabilities carry
the manifest's calibration temperature (pipeline.py). With S completion samples (`--samples`,
default the manifest's `[sde] samples`) the gsdnet probabilities and regression are the sample
means (multisample.py); `logits_samples` [n, S, K] holds every sample's logits, and `logits`
is returned only for S = 1 (one logit vector no longer stands for a prediction).
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
from .multisample import check_samples, manifest_samples, run_window_samples
from .pipeline import COMPLETIONS, OnnxModel
from .sampler import stream_key

RATES = tuple(round(0.1 * i, 1) for i in range(8))


def metrics(pred: np.ndarray, y: np.ndarray, reg: np.ndarray, y_cont: np.ndarray) -> dict:
    """acc2, weighted F1 (classes weighted by support), MAE."""
    f1s, ws = [], []
    for c in (0, 1):
        tp = np.sum((pred == c) & (y == c))
        fp, fn = np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        f1s.append(0.0 if tp == 0 else 2.0 * tp / (2 * tp + fp + fn))
        ws.append(np.sum(y == c))
    return dict(acc2=float(np.mean(pred == y)),
                f1_weighted=float(np.dot(f1s, ws) / max(sum(ws), 1)),
                mae=float(np.mean(np.abs(reg - y_cont))), n=int(len(y)))


def conversation_outputs(model, conv, avail, completion, seed, scenario, samples=None) -> dict:
    """logits (S = 1 only), logits_samples [N, S, K], probs [N, K] and reg [N] of all
    utterances of `conv`, window by window; `samples` None = the manifest's."""
    w, s = model.man.width, samples or manifest_samples(model.man)
    outs = {"logits_samples": [], "probs": [], "reg": []}
    for wi, start in enumerate(range(0, conv.n, w)):
        sl = slice(start, min(start + w, conv.n))
        feats = {m: conv.feats[m][sl] for m in gdata.MODALITIES}
        key = stream_key(seed, scenario, conv.conv_id, wi)
        out = run_window_samples(model, feats, avail[sl], conv.speaker[sl], completion,
                                 noise_key=key, samples=s)
        out["logits_samples"] = np.swapaxes(out["logits_samples"], 0, 1)
        for k, v in outs.items():
            v.append(out[k])
    res = {k: np.concatenate(v) for k, v in outs.items()}
    if s == 1:
        res["logits"] = res["logits_samples"][:, 0]
    return res


def run_conversation(model, conv, avail, completion, seed, scenario, samples=None):
    """(probs, reg) for all utterances of `conv`, window by window."""
    out = conversation_outputs(model, conv, avail, completion, seed, scenario, samples)
    return out["probs"], out["reg"]


def scenario_outputs(model, convs, completion, seed, rate=None, pattern=None,
                     samples=None) -> dict:
    """logits (S = 1 only), logits_samples [n, S, K], probs [n, K], reg, label_bin,
    label_cont, avail [n, 3] and `conv` (index per utterance) of one (scenario, seed,
    completion), utterances in conversation order."""
    scenario = gmasks.scenario_id(rate, pattern)
    out = {k: [] for k in ("logits_samples", "probs", "reg", "label_bin", "label_cont", "avail",
                           "conv")}
    for ci, c in enumerate(convs):
        avail = gmasks.mask_for_pattern(pattern, c.n) if pattern else \
            gmasks.mask_for_rate(seed, rate, c.conv_id, c.n)
        conv_out = conversation_outputs(model, c, avail, completion, seed, scenario, samples)
        if "logits" in conv_out:
            out.setdefault("logits", []).append(conv_out.pop("logits"))
        for k, v in conv_out.items():
            out[k].append(v)
        out["avail"].append(np.asarray(avail, bool))
        out["label_bin"].append(c.label_bin)
        out["label_cont"].append(c.label_cont)
        out["conv"].append(np.full(c.n, ci))
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_scenario(model, convs, completion, seed, rate=None, pattern=None,
                      samples=None) -> dict:
    o = scenario_outputs(model, convs, completion, seed, rate, pattern, samples)
    m = metrics(o["probs"].argmax(-1), o["label_bin"], o["reg"], o["label_cont"])
    return {**m, **gmetrics.confidence_metrics(o["probs"], o["label_bin"])}


def evaluate(model_dir, split_dir, seeds=(0, 1, 2), completions=COMPLETIONS,
             rates=RATES, patterns=gmasks.PATTERNS, steps=None, sampler=None,
             samples=None) -> dict:
    """`steps` / `sampler` / `samples` override the manifest's [sde] settings."""
    model = OnnxModel(model_dir)
    samples = check_samples(samples) if samples is not None else manifest_samples(model.man)
    sde = model.man.sde
    model.man.sde = replace(sde, steps=steps or sde.steps, sampler=sampler or sde.sampler)
    convs = gdata.load_split(split_dir)
    results = []
    grid = [(r, None) for r in rates] + [(None, p) for p in patterns]
    for completion in completions:
        for rate, pattern in grid:
            per = [evaluate_scenario(model, convs, completion, s, rate, pattern, samples)
                   for s in seeds]
            row = dict(missing_rate=rate, pattern=pattern, completion=completion)
            for k in ("acc2", "f1_weighted", "mae") + gmetrics.KEYS:
                row[k] = float(np.mean([p[k] for p in per]))
            row["n"] = per[0]["n"]
            results.append(row)
    return dict(model=model.man.raw["model"]["name"], split=Path(split_dir).name,
                seeds=list(seeds), steps=model.man.sde.steps, sampler=model.man.sde.sampler,
                samples=samples,
                temperature=model.man.temperature, results=results)


def main(argv=None):
    p = argparse.ArgumentParser(description="Evaluate an ONNX GSDNet folder on a split")
    p.add_argument("model_dir")
    p.add_argument("split_dir")
    p.add_argument("--out", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--completions", nargs="+", default=list(COMPLETIONS))
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: manifest)")
    p.add_argument("--sampler", default=None, help="sampler name (default: manifest)")
    p.add_argument("--samples", type=int, default=None,
                   help="completion samples per window (default: manifest [sde] samples, else 1)")
    p.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    p.add_argument("--no-patterns", action="store_true", help="missing rates only")
    a = p.parse_args(argv)
    res = evaluate(a.model_dir, a.split_dir, tuple(a.seeds), tuple(a.completions),
                   tuple(a.rates), () if a.no_patterns else gmasks.PATTERNS, a.steps, a.sampler,
                   a.samples)
    text = json.dumps(res, indent=1) + "\n"
    if a.out:
        Path(a.out).write_text(text)
    for r in res["results"]:
        sc = r["pattern"] if r["pattern"] else f"{r['missing_rate']:.1f}"
        print(f"{r['completion']:9s} {sc:4s} acc2 {r['acc2']:.4f} f1 {r['f1_weighted']:.4f} "
              f"mae {r['mae']:.4f} nll {r['nll']:.4f} ece {r['ece']:.4f} "
              f"acc@80 {r['acc_cov80']:.4f} aurc {r['aurc']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
