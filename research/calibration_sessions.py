"""Why no fixed temperature carries from one IEMOCAP session to another (issue 23 item 4).

Reads the out-of-session predictions that `gsdnet_torch.crossfit` caches (`--work DIR`, file
`pool.npz`: one model per held-out session, every protocol rate x mask seed) and prints:
- per session at T = 1: accuracy, mean confidence, ECE per rate, and the ECE floor, i.e. the
  mean ECE of labels drawn from the model's own probabilities (perfect calibration) at the same
  sizes (the sampling noise of ECE with 15 bins);
- each session's own per-pattern temperatures (fitted on that session alone);
- on the val session, with temperatures fitted on the other sessions: the median of their
  per-session fits, their pooled-NLL fit, the geometric mean, and as bounds
  the in-sample fit per pattern and per (pattern, rate);
- left-one-session-out for every session: median rule against pooled fit and T = 1.
    python3 research/calibration_sessions.py ../crossfit-iemocap6/pool.npz --json OUT
(The pool holds IEMOCAP labels: keep it outside the repository; the JSON holds metrics only.)
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from gsdnet_torch.crossfit import fit_patterns, mixture, per_rate_ece, report, row_temps

VAL_SESSION = 4


def ece_by_rate(pool: dict, rows: np.ndarray, temps, labels=None) -> list:
    """`crossfit.per_rate_ece` as a list over the rates."""
    return list(per_rate_ece(pool, rows, temps, labels).values())


def floor(pool: dict, rows: np.ndarray, draws: int = 5, seed: int = 0) -> float:
    """Mean ECE of labels drawn from the uncalibrated probabilities themselves."""
    rng = np.random.default_rng(seed)
    cdf = mixture(pool["logits"][rows], 1.0).cumsum(1)
    drawn = pool["y"].copy()
    out = []
    for _ in range(draws):
        drawn[rows] = (cdf > rng.random((len(cdf), 1))).argmax(1)
        out.append(np.mean(ece_by_rate(pool, rows, 1.0, drawn)))
    return float(np.mean(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pool", help="crossfit's pool.npz")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    pool = dict(np.load(a.pool))
    sess, bits = pool["session"], pool["bits"]
    rep = report(pool, VAL_SESSION)       # per-session fits, both rules cross-fitted
    out = {"sessions": {}, "val": {}, "leave_one_session_out": {}}
    for s, temps in rep["temps_per_session"].items():
        rows = sess == s
        probs = mixture(pool["logits"][rows], 1.0)
        out["sessions"][s] = dict(
            accuracy=float((probs.argmax(1) == pool["y"][rows]).mean()),
            confidence=float(probs.max(1).mean()), ece_t1=ece_by_rate(pool, rows, 1.0),
            ece_floor=floor(pool, rows), temps=temps)
    val = sess == VAL_SESSION
    per = [t for s, t in rep["temps_per_session"].items() if s != VAL_SESSION]
    geo = {k: float(np.exp(np.mean([np.log(t[k]) for t in per]))) for k in per[0]}
    rate_key = bits * 10 + np.round(pool["rate"] * 10).astype(np.int64)
    rate_t = fit_patterns(dict(pool, bits=rate_key), val)
    cf = rep["ece_val"]
    out["val"] = {
        "T=1": list(cf["T=1"].values()),
        "median of sessions 1-3": list(cf["cross-fitted median"].values()),
        "pooled fit on sessions 1-3": list(cf["cross-fitted pooled"].values()),
        "geometric mean of sessions 1-3": ece_by_rate(pool, val, row_temps(geo, bits)),
        "in-sample per pattern (bound)": list(cf["in-sample"].values()),
        "in-sample per pattern x rate (bound)": ece_by_rate(pool, val, row_temps(rate_t, rate_key)),
    }
    by_rule = rep["ece_leave_one_session_out_by_rule"]
    for s in rep["temps_per_session"]:
        out["leave_one_session_out"][s] = {
            "median": list(by_rule["median"][s].values()),
            "pooled": list(by_rule["pooled"][s].values()),
            "T=1": ece_by_rate(pool, sess == s, 1.0)}
    for s, r in out["sessions"].items():
        print(f"session {s}: accuracy {r['accuracy']:.3f} confidence {r['confidence']:.3f} "
              f"ECE(T=1) {np.round(r['ece_t1'], 3).tolist()} floor {r['ece_floor']:.3f} "
              f"T {r['temps']}")
    for name, row in out["val"].items():
        print(f"val {name:>40}: {np.round(row, 3).tolist()}")
    for s, r in out["leave_one_session_out"].items():
        print(f"session {s} held out, mean ECE: "
              + " ".join(f"{k} {np.mean(v):.3f}" for k, v in r.items()))
    for k in ("median", "pooled", "T=1"):
        print(f"mean over the four held-out sessions, {k}: "
              f"{np.mean([np.mean(r[k]) for r in out['leave_one_session_out'].values()]):.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
