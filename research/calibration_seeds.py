"""Calibration and selective prediction across training seeds, GSDNet vs mean fill vs the
BiLSTM peer, on val/ only (issue 14 item 4; docs/results/history.md "Calibration across training seeds
and the BiLSTM peer (val)").

For every training seed: GSDNet S = 1 and mean fill from an exported model folder (logits by
calibrate.collect: the ONNX reference, the masks and sampler noise of `gsdnet eval`), and the
BiLSTM peer (with and without its conversation prior) from research/peer_calibration.py's .npz
pools (same masks). Each pool is scored exactly as calibrate.calibrate scores one completion:
T = 1, the scalar T (fitted, rounded to 3 decimals), the scalar T fitted leaving the scored
video out (`lovo`), one T with text and one without (`text`, in-sample) and the same pair
fitted leaving the video out (`text-lovo`), by calibrate.fit_temperature / fit_groups /
per_rate and gsdnet_ref.metrics. Per rate: mean over mask seeds (per_rate), then mean (and
sample std) over training seeds; pooled NLL / Brier over every rate x mask seed, then the mean
over training seeds.
    python3 research/calibration_seeds.py --models 0=models/gsdnet-mosi 1=/tmp/gsdnet-seed1 \
        2=/tmp/gsdnet-seed2 --peer 0=/tmp/calseeds/peer-0.npz 1=... 2=... \
        --json research/results/calibration_seeds_val.json [--cache /tmp/calseeds]
Refuses a split named test.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gsdnet_torch import calibrate as cal
from gsdnet_ref import data as gdata
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.evaluate import RATES
from gsdnet_ref.pipeline import OnnxModel

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("ece", "nll", "brier", "acc_cov80", "acc_cov50", "aurc")


def analyse(pool: dict) -> dict:
    """calibrate.calibrate's scoring of one pool (without the ECE floor)."""
    logits, y = pool["logits"], pool["y"]
    t_fit = cal.fit_temperature(logits, y)
    one = np.zeros(len(y), np.int64)
    text = pool["text"].astype(np.int64)
    temps = {"T=1": 1.0, "T": round(t_fit, cal.DECIMALS), "lovo": cal.fit_groups(pool, one, True),
             "text": cal.fit_groups(pool, text, False),
             "text-lovo": cal.fit_groups(pool, text, True)}
    pooled = {v: {"nll": gmetrics.nll(cal.softmax_rows(logits, tv), y),
                  "brier": gmetrics.brier(cal.softmax_rows(logits, tv), y)}
              for v, tv in temps.items()}
    text_t = {name: float(temps["text"][pool["text"] == flag][0])
              for name, flag in (("text_observed", True), ("text_missing", False))
              if np.any(pool["text"] == flag)}
    lovo_text = {name: [float(temps["text-lovo"][(pool["conv"] == v) & (pool["text"] == flag)][0])
                        for v in np.unique(pool["conv"])
                        if np.any((pool["conv"] == v) & (pool["text"] == flag))]
                 for name, flag in (("text_observed", True), ("text_missing", False))}
    acc = {}
    for ci, (rate, _) in enumerate(pool["cells"]):
        sel = pool["cell"] == ci
        acc.setdefault(rate, []).append(float((logits[sel].argmax(-1) == y[sel]).mean()))
    return dict(temperature=temps["T"], temperature_unrounded=t_fit, text_temperatures=text_t,
                text_lovo_range={k: [min(v), max(v)] for k, v in lovo_text.items() if v},
                pooled=pooled, acc2={r: float(np.mean(v)) for r, v in acc.items()},
                per_rate={v: cal.per_rate(pool, tv) for v, tv in temps.items()})


def load_npz_pool(path: Path, prefix: str = "") -> dict:
    z = np.load(path)
    pool = {k: z[prefix + k] for k in ("logits", "y", "conv", "text", "cell")}
    pool["cells"] = [(float(r), int(s)) for r, s in z[prefix + "cells"]]
    return pool


def save_pool(path: Path, pool: dict) -> None:
    np.savez_compressed(path, cells=np.asarray(pool["cells"]),
                        **{k: pool[k] for k in ("logits", "y", "conv", "text", "cell")})


def onnx_pool(model_dir, convs, completion, seeds, rates, cache: Path | None, tag: str) -> dict:
    f = cache / f"pool-{tag}-{completion}.npz" if cache else None
    if f and f.exists():
        return load_npz_pool(f)
    pool = cal.collect(OnnxModel(model_dir), convs, completion, seeds, rates)
    if f:
        save_pool(f, pool)
    return pool


def aggregate(per_seed: dict) -> dict:
    """training seed -> analyse() result  =>  mean / std over training seeds."""
    res = list(per_seed.values())
    variants = list(res[0]["per_rate"])
    rates = list(res[0]["per_rate"]["T=1"])
    agg = {"per_rate": {}, "per_rate_std": {}, "pooled": {}, "pooled_std": {}}
    for v in variants:
        agg["per_rate"][v] = {r: {k: float(np.mean([x["per_rate"][v][r][k] for x in res]))
                                  for k in KEYS} for r in rates}
        agg["per_rate_std"][v] = {r: {k: float(np.std([x["per_rate"][v][r][k] for x in res],
                                                      ddof=1)) if len(res) > 1 else 0.0
                                      for k in KEYS} for r in rates}
        agg["pooled"][v] = {k: float(np.mean([x["pooled"][v][k] for x in res]))
                            for k in ("nll", "brier")}
        agg["pooled_std"][v] = {k: float(np.std([x["pooled"][v][k] for x in res], ddof=1))
                                if len(res) > 1 else 0.0 for k in ("nll", "brier")}
    agg["acc2"] = {r: float(np.mean([x["acc2"][r] for x in res])) for r in rates}
    agg["training_seeds"] = list(per_seed)
    return agg


def kv(items):
    out = []
    for s in items:
        k, _, v = s.partition("=")
        out.append((int(k), v))
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="*", default=[], help="SEED=MODEL_DIR (exported GSDNet)")
    p.add_argument("--peer", nargs="*", default=[], help="SEED=peer_calibration.py .npz")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cmu-mosi" / "val"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="mask seeds")
    p.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    p.add_argument("--cache", default=None, help="folder for the ONNX logits pools")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if Path(a.data).resolve().name == "test":
        raise SystemExit("val only; refusing a split named test")
    convs = gdata.load_split(a.data)
    cache = Path(a.cache) if a.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    per = {}
    for seed, d in kv(a.models):
        for comp, name in (("gsdnet", "gsdnet_s1"), ("meanfill", "meanfill")):
            pool = onnx_pool(d, convs, comp, a.seeds, a.rates, cache, f"seed{seed}")
            per.setdefault(name, {})[seed] = analyse(pool)
            print(f"{name} seed {seed}: T {per[name][seed]['temperature']} text "
                  f"{per[name][seed]['text_temperatures']} pooled "
                  + ", ".join(f"{v} {x['nll']:.4f}/{x['brier']:.4f}"
                              for v, x in per[name][seed]["pooled"].items()), flush=True)
    for seed, f in kv(a.peer):
        for name in ("bilstm_peer", "bilstm_peer_prior"):
            pool = load_npz_pool(Path(f), name + "/")
            if [tuple(c) for c in pool["cells"]] != [(r, s) for r in a.rates for s in a.seeds]:
                raise SystemExit(f"{f}: cells differ from rates x seeds")
            per.setdefault(name, {})[seed] = analyse(pool)
            print(f"{name} seed {seed}: T {per[name][seed]['temperature']} text "
                  f"{per[name][seed]['text_temperatures']} pooled "
                  + ", ".join(f"{v} {x['nll']:.4f}/{x['brier']:.4f}"
                              for v, x in per[name][seed]["pooled"].items()), flush=True)
    out = dict(split=Path(a.data).name, mask_seeds=a.seeds, rates=a.rates,
               models={str(k): v for k, v in kv(a.models)}, peer={str(k): v for k, v in kv(a.peer)},
               per_seed={m: {str(s): r for s, r in d.items()} for m, d in per.items()},
               mean_over_training_seeds={m: aggregate(d) for m, d in per.items()})
    for m, agg in out["mean_over_training_seeds"].items():
        print(f"\n{m} (training seeds {agg['training_seeds']}) pooled NLL/Brier: " + "; ".join(
            f"{v} {x['nll']:.4f}/{x['brier']:.4f}" for v, x in agg["pooled"].items()))
        for k in ("ece", "nll", "acc_cov80", "aurc"):
            for v in agg["per_rate"]:
                print(f"  {k:9s} {v:9s} " + " ".join(
                    f"{agg['per_rate'][v][r][k]:.3f}" for r in a.rates))
        print("  acc2              " + " ".join(f"{agg['acc2'][r]:.3f}" for r in a.rates))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
