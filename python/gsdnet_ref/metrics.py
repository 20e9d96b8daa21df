"""Label and confidence metrics of K-class predictions (docs/DESIGN.md "Evaluation metrics"),
for any number of classes K. src/metrics.rs implements the same definitions; `gsdnet eval` and
gsdnet_ref.evaluate report them per (scenario, completion), each the mean over mask seeds of the
per-seed value.

Labels (`classification`): accuracy, support-weighted F1 (per-class F1 = 2 tp / (2 tp + fp +
fn), 0 when tp = 0, weighted by the class's count in the truth: classes absent from the truth
weigh nothing), per-class F1 and the confusion matrix [K][K] (rows truth, columns predicted).
For K = 2 f1_weighted is the binary weighted F1 reported since the first CMU-MOSI model.

Definitions over n utterances with probabilities p_i (length K, f32, summing to 1) and true
class y_i; everything is computed in f64 from the f32 probabilities:
- confidence c_i = max_k p_ik, prediction = argmax_k p_ik (the first maximum on ties: the label
  the runtime publishes);
- nll = mean_i -ln(max(p_i[y_i], P_FLOOR)), natural log, P_FLOOR = 1e-12;
- brier = mean_i sum_k (p_ik - [k == y_i])^2 (the multi-class form, in [0, 2]);
- ece: 15 equal-width bins of c, bin b = (b/15, (b+1)/15] (b = ceil(15 c) - 1, clamped to
  [0, 14], so c = 0 falls in bin 0); ece = sum_b |B_b|/n * |acc(B_b) - mean c over B_b|, empty
  bins skipped;
- selective prediction: utterances ranked by confidence descending, ties in utterance order (a
  stable sort); acc_cov{P} = accuracy of the first ceil(P n / 100) (at least 1); aurc = mean over
  k = 1..n of the error rate of the first k.
Invariant: probs is [n, K] with n >= 1, K >= 1, 0 <= y_i < K (checked: ValueError).
"""
from __future__ import annotations

import numpy as np

P_FLOOR = 1e-12
ECE_BINS = 15
COVERAGES = (50, 80)   # percent; keys acc_cov50, acc_cov80
KEYS = ("nll", "brier", "ece", "acc_cov50", "acc_cov80", "aurc")


def classification(pred, y, k: int) -> dict:
    """accuracy, f1_weighted, f1_per_class [k], confusion [k][k] of integer predictions."""
    pred, y = np.asarray(pred), np.asarray(y)
    if pred.shape != y.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"pred {pred.shape} and labels {y.shape} must be equal, non-empty 1-D")
    if min(pred.min(), y.min()) < 0 or max(pred.max(), y.max()) >= k:
        raise ValueError(f"labels and predictions must be in [0, {k})")
    f1s, ws = [], []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        fp, fn = np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        f1s.append(0.0 if tp == 0 else 2.0 * tp / (2 * tp + fp + fn))
        ws.append(np.sum(y == c))
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (y, pred), 1)
    return dict(accuracy=float(np.mean(pred == y)),
                f1_weighted=float(np.dot(f1s, ws) / max(sum(ws), 1)),
                f1_per_class=[float(f) for f in f1s], confusion=conf.tolist())


def _checked(probs, y) -> tuple:
    p = np.asarray(probs, np.float32).astype(np.float64)
    y = np.asarray(y)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"probs must be [n >= 1, K >= 1], got shape {p.shape}")
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {p.shape[0]} integers, got {y.shape} {y.dtype}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be in [0, {p.shape[1]}), got {y.min()}..{y.max()}")
    return p, y.astype(np.int64)


def _conf_correct(p: np.ndarray, y: np.ndarray) -> tuple:
    """(confidence, correct) per utterance; argmax takes the first maximum."""
    return p.max(axis=1), (p.argmax(axis=1) == y)


def nll(probs, y) -> float:
    p, y = _checked(probs, y)
    return float(np.mean(-np.log(np.maximum(p[np.arange(len(y)), y], P_FLOOR))))


def brier(probs, y) -> float:
    p, y = _checked(probs, y)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece(probs, y, bins: int = ECE_BINS) -> float:
    p, y = _checked(probs, y)
    conf, correct = _conf_correct(p, y)
    b = np.clip(np.ceil(conf * bins) - 1, 0, bins - 1).astype(np.int64)
    total = 0.0
    for k in range(bins):
        sel = b == k
        if sel.any():
            total += sel.sum() / len(y) * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def _ranked_correct(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correctness in order of confidence descending, ties in utterance order."""
    conf, correct = _conf_correct(p, y)
    return correct[np.argsort(-conf, kind="stable")]


def kept(n: int, percent: int) -> int:
    """ceil(percent * n / 100) in integers, at least 1."""
    return max(1, -(-percent * n // 100))


def acc_at_coverage(probs, y, percent: int) -> float:
    p, y = _checked(probs, y)
    return float(_ranked_correct(p, y)[:kept(len(y), percent)].mean())


def aurc(probs, y) -> float:
    p, y = _checked(probs, y)
    errors = np.cumsum(~_ranked_correct(p, y))
    return float(np.mean(errors / np.arange(1, len(y) + 1)))


def confidence_metrics(probs, y) -> dict:
    """All of KEYS for one (scenario, seed, completion)."""
    out = dict(nll=nll(probs, y), brier=brier(probs, y), ece=ece(probs, y))
    for c in COVERAGES:
        out[f"acc_cov{c}"] = acc_at_coverage(probs, y, c)
    out["aurc"] = aurc(probs, y)
    return out
