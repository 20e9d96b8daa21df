"""Calibration that carries to a new session: temperatures per availability pattern fitted on
out-of-session predictions, cross-fitted over the training and val sessions (issue 23 item 4;
docs/DESIGN.md "Calibration").

One model per held-out session (folds.py: the shipped model for its own val session, a model
trained by the shipped `[training] command` on the other sessions for each other session)
predicts its held-out session under the shipped model's default completion (`[completion]`,
copied into each fold manifest; with `[sde] samples` S > 1 the fit is of the sample mixture
mean_s softmax(logits_s / T), so S > 1 defaults get their own fit). Scenarios: the protocol
rates x mask seeds of `gsdnet eval`. T minimises the pooled NLL by golden-section search over
log T, one T per utterance availability pattern (T, A, TA, ...) and one pooled T, by one of two
rules: the median of per-session fits (`fit_median`; one unusual session cannot set every T)
or one fit on the sessions pooled (`fit_patterns`). Which one: the lower mean ECE over the
sessions other than val, each held out and fitted on the remaining non-val sessions (`report`),
so val takes no part in the choice; both are reported (docs/results/completion.md).
Reported on the val session (the shipped model's own predictions), ECE per rate (mean over mask
seeds):
- `T=1`: no calibration;
- `in-sample`: T per pattern fitted on the val session itself (what calibrate.py did);
- `cross-fitted`: T per pattern fitted on the other sessions' out-of-session predictions only,
  by the chosen rule; `cross-fitted median` / `cross-fitted pooled`: each rule;
and the same leave-one-session-out score for every session, with its mean over the sessions
other than val next to T = 1 and to the val-session fit applied there (today's practice; all
three out of sample). `--write` stores the temperatures
fitted on all sessions' out-of-session predictions as the manifest's `[calibration]`.
    python3 -m gsdnet_torch.crossfit --model models/gsdnet-iemocap6 \
        --data ../shared/data/iemocap/6way --work /tmp/crossfit6 [--json FILE] [--write]
(`--work` must be outside the repository: fold splits hold IEMOCAP rows.)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path

import numpy as np

from gsdnet_ref import data as gdata
from gsdnet_ref import masks as gmasks
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.completion import DEFAULT
from gsdnet_ref.evaluate import scenario_outputs
from gsdnet_ref.multisample import manifest_samples
from gsdnet_ref.paths import ROOT, recorded_command
from gsdnet_ref.pipeline import OnnxModel
from gsdnet_torch.calibrate import DECIMALS, argmin_log_t, write_table
from gsdnet_torch.folds import fold_models, val_session


def mixture(logits_s: np.ndarray, t) -> np.ndarray:
    """mean_s softmax(logits_s / T) in f64; logits_s [n, S, K], t a scalar or [n]."""
    t = np.asarray(t, np.float64)
    z = logits_s.astype(np.float64) / (t[:, None, None] if t.ndim else t)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(-1, keepdims=True)).mean(1)


def fit_t(logits_s: np.ndarray, y: np.ndarray, tol: float = 1e-5) -> float:
    """argmin_T NLL(mixture(logits_s, T), y): golden-section search over log T."""
    rows = np.arange(len(y))

    def f(u):
        return float(-np.log(np.maximum(mixture(logits_s, math.exp(u))[rows, y], 1e-12)).mean())
    return round(argmin_log_t(f, tol), DECIMALS)


def fit_patterns(pool: dict, rows: np.ndarray) -> dict:
    """Pattern bits -> T fitted on `rows` of the pool; key -1 = every pattern pooled."""
    out = {-1: fit_t(pool["logits"][rows], pool["y"][rows])}
    for b in np.unique(pool["bits"][rows]):
        sel = rows & (pool["bits"] == b)
        out[int(b)] = fit_t(pool["logits"][sel], pool["y"][sel])
    return out


def median_of(per: list) -> dict:
    """Pattern bits -> the median of the per-session fits `per` (a pattern absent from a
    session takes no part in its median)."""
    keys = sorted({k for t in per for k in t})
    return {k: round(float(np.median([t[k] for t in per if k in t])), DECIMALS) for k in keys}


def fit_median(pool: dict, rows: np.ndarray) -> dict:
    """Pattern bits -> the median over the sessions in `rows` of T fitted on each session alone."""
    sessions = np.unique(pool["session"][rows])
    return median_of([fit_patterns(pool, rows & (pool["session"] == s)) for s in sessions])


def row_temps(temps: dict, bits: np.ndarray) -> np.ndarray:
    return np.array([temps.get(int(b), temps[-1]) for b in bits])


def collect(model_dir: Path, split: Path, seeds, session: int, completion_table) -> dict:
    """Out-of-session predictions of one fold model on its held-out session."""
    if completion_table is not None:
        man = model_dir / "manifest.toml"
        if tomllib.loads(man.read_text()).get("completion") != completion_table:
            write_table(man, "completion", completion_table)
    model = OnnxModel(model_dir)
    man = model.man
    convs = gdata.load_split(split, man.dims, getattr(man, "files", None))
    cols = {k: [] for k in ("logits", "y", "bits", "rate", "seed")}
    for rate in gmasks.protocol_rates(man.m):
        for seed in seeds:
            o = scenario_outputs(model, convs, DEFAULT, seed, rate=rate)
            cols["logits"].append(o["logits_samples"])
            cols["y"].append(o["label"])
            cols["bits"].append(o["avail"].astype(np.int64) @ man.bits)
            cols["rate"].append(np.full(len(o["label"]), rate))
            cols["seed"].append(np.full(len(o["label"]), seed))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["session"] = np.full(len(out["y"]), session)
    return out


def per_rate_ece(pool: dict, rows: np.ndarray, temps, labels: np.ndarray | None = None) -> dict:
    """ECE of `rows` per protocol rate (mean over mask seeds) at `temps` (a scalar or one T per
    pool row); `labels` (one per pool row) replaces the true labels."""
    probs = mixture(pool["logits"], temps).astype(np.float32)
    y = pool["y"] if labels is None else labels
    out = {}
    for rate in np.unique(pool["rate"][rows]):
        at_rate = rows & (pool["rate"] == rate)
        cells = [at_rate & (pool["seed"] == s) for s in np.unique(pool["seed"][rows])]
        out[f"{rate:.1f}"] = float(np.mean([gmetrics.ece(probs[c], y[c]) for c in cells]))
    return out


def pattern_names(temps: dict, letters: str) -> dict:
    names = {gmasks.pattern_bits(p): p for p in gmasks.patterns_for(letters)}
    return {names[b]: t for b, t in temps.items() if b in names}


RULES = ("median", "pooled")


def report(pool: dict, shipped: int) -> dict:
    """ECE tables and temperatures. The rule (`median` of per-session fits or one `pooled` fit)
    is the one with the lower mean ECE over the sessions other than val, each held out in turn
    and fitted on the remaining non-val sessions, so the val session takes no part in the
    choice (`rule_scores`); the reported left-one-session-out tables fit on all other three.
    Each session's own fit is computed once (`temps_per_session`); every rows set below is a
    union of whole sessions, so the median rule is the median of those."""
    sess = pool["session"]
    sessions = [int(s) for s in np.unique(sess)]
    per = {s: fit_patterns(pool, sess == s) for s in sessions}

    def fit(rule: str, fitted: list) -> dict:      # temperatures of `rule` fitted on `fitted`
        if rule == "median":
            return median_of([per[s] for s in fitted])
        return fit_patterns(pool, np.isin(sess, fitted))

    def ece(held: int, temps) -> dict:
        t = row_temps(temps, pool["bits"]) if isinstance(temps, dict) else temps
        return per_rate_ece(pool, sess == held, t)
    others = [s for s in sessions if s != shipped]
    lofo = {r: {s: ece(s, fit(r, [o for o in sessions if o != s])) for s in sessions}
            for r in RULES}
    t1 = {s: ece(s, 1.0) for s in sessions}
    single = {s: ece(s, per[shipped]) for s in sessions}
    # the choice: each session other than val held out, fitted on the remaining non-val ones
    score = {r: float(np.mean([np.mean(list(ece(s, fit(r, [o for o in others if o != s])).values()))
                               for s in others])) for r in RULES}
    rule = min(RULES, key=lambda r: (score[r], r != "median"))

    def mean(by):   # over the sessions other than the val session (out of sample for all three)
        return {r: float(np.mean([by[s][r] for s in others])) for r in by[others[0]]}
    res = {"T=1": t1[shipped], "in-sample": single[shipped], "cross-fitted": lofo[rule][shipped]}
    res |= {f"cross-fitted {r}": lofo[r][shipped] for r in RULES}
    return dict(ece_val=res, temps_in_sample=per[shipped], temps_cross_fitted=fit(rule, others),
                rule=rule, rule_scores=score, ece_leave_one_session_out=lofo[rule],
                ece_leave_one_session_out_by_rule=lofo, temps_all=fit(rule, sessions),
                temps_per_session=per,
                ece_mean_over_other_sessions={"T=1": mean(t1), "val session fit": mean(single)}
                | {f"cross-fitted {r}": mean(lofo[r]) for r in RULES})


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="task folder holding train/ and val/")
    p.add_argument("--work", required=True, help="fold folders (outside the repository)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads of fold training")
    p.add_argument("--reuse-pool", action="store_true",
                   help="reuse the out-of-session predictions of the last run (--work/pool.npz)")
    p.add_argument("--json", default=None)
    p.add_argument("--write", action="store_true", help="store [calibration] in the manifest")
    return p.parse_args(argv)


def out_of_session_pool(folds, work: Path, seeds, table, reuse: bool) -> dict:
    """The pooled out-of-session predictions of the fold models, cached in --work/pool.npz."""
    cache = work / "pool.npz"
    if reuse and cache.exists():
        return dict(np.load(cache))
    pools = [collect(m, split, seeds, s, table) for s, (m, split) in folds.items()]
    pool = {k: np.concatenate([q[k] for q in pools]) for k in pools[0]}
    np.savez(cache, **pool)
    return pool


def print_report(res: dict, temps: dict) -> None:
    for name, row in res["ece_val"].items():
        print(f"val ECE {name:>12}: " + " ".join(f"{r} {v:.3f}" for r, v in row.items()))
    print(f"rule: {res['rule']} (mean ECE over the other sessions held out: "
          + ", ".join(f"{k} {v:.4f}" for k, v in res["rule_scores"].items()) + ")")
    for s, row in res["ece_leave_one_session_out"].items():
        print(f"session {s} left out: " + " ".join(f"{r} {v:.3f}" for r, v in row.items()))
    for name, row in res["ece_mean_over_other_sessions"].items():
        print(f"mean over the other held-out sessions, {name:>15}: "
              + " ".join(f"{r} {v:.3f}" for r, v in row.items()))
    print(f"temperatures: {temps}")


def temperatures(res: dict, letters: str) -> dict:
    """Every fitted temperature set, by pattern name (T, A, TA, ...) plus the pooled one."""
    temps = {k: pattern_names(v, letters) | {"pooled": v[-1]}
             for k, v in res.items() if k.startswith("temps") and k != "temps_per_session"}
    temps["per_session"] = {s: pattern_names(v, letters) | {"pooled": v[-1]}
                            for s, v in res["temps_per_session"].items()}
    return temps


def calibration_table(res: dict, out: dict, cmd: str) -> dict:
    """The manifest's [calibration]: the temperatures fitted on every session's out-of-session
    predictions, how, and the val ECE before, in sample and cross-fitted."""
    t_all = out["temperatures"]["temps_all"]
    cal = dict(temperature=t_all["pooled"],
               method="temperature by availability pattern, cross-fitted over sessions, "
                      + ("median of the per-session fits" if res["rule"] == "median"
                         else "one fit on the pooled sessions"),
               fitted_on="out-of-session predictions of sessions "
                         + ", ".join(str(s) for s in out["sessions"])
                         + " (one model per held-out session)",
               completion="default", samples=out["samples"], seeds=out["seeds"],
               rates=[float(r) for r in out["ece_val"]["T=1"]],
               val_ece_t1=list(res["ece_val"]["T=1"].values()),
               val_ece_in_sample=list(res["ece_val"]["in-sample"].values()),
               val_ece_cross_fitted=list(res["ece_val"]["cross-fitted"].values()),
               command=cmd,
               patterns={k: v for k, v in t_all.items() if k != "pooled"})
    return {k: ([round(x, 4) for x in v] if k.startswith("val_ece") else v) for k, v in cal.items()}


def main(argv=None):
    a = parse_args(argv)
    work, model, data = Path(a.work).resolve(), Path(a.model), Path(a.data)
    if ROOT.resolve() in work.parents or work == ROOT.resolve():
        raise SystemExit("--work must be outside the repository (IEMOCAP rows)")
    raw = tomllib.loads((model / "manifest.toml").read_text())
    table = raw.get("completion")
    folds = fold_models(model, data, work, a.threads)
    shipped = val_session(data)
    res = report(out_of_session_pool(folds, work, a.seeds, table, a.reuse_pool), shipped)
    letters = "".join(gdata.LETTERS[m] for m in gdata.MODALITIES if m in raw["modalities"])
    temps = temperatures(res, letters)
    print_report(res, temps)
    out = dict(model=raw["model"]["name"], shipped_session=shipped,
               sessions=[int(s) for s in sorted(folds)],
               seeds=a.seeds, completion=table, samples=manifest_samples(OnnxModel(model).man),
               ece_val=res["ece_val"], ece_leave_one_session_out=res["ece_leave_one_session_out"],
               rule=res["rule"], rule_scores=res["rule_scores"],
               ece_leave_one_session_out_by_rule=res["ece_leave_one_session_out_by_rule"],
               ece_mean_over_other_sessions=res["ece_mean_over_other_sessions"],
               temperatures=temps)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    if a.write:
        args = [x for x in (argv if argv is not None else sys.argv[1:]) if x != "--reuse-pool"]
        cmd = recorded_command("gsdnet_torch.crossfit", args)   # a cache flag reproduces nothing
        write_table(model / "manifest.toml", "calibration", calibration_table(res, out, cmd))
        print(f"wrote [calibration] to {model / 'manifest.toml'}")


if __name__ == "__main__":
    main()
