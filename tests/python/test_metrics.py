"""Confidence metrics (gsdnet_ref.metrics) on hand-computed examples: the same cases as the unit
tests of src/metrics.rs (ties of probabilities and of confidences, exact bin edges, a perfectly
calibrated case, the probability floor, K = 3)."""
import math

import numpy as np
import pytest

from gsdnet_ref import metrics as gm

# K = 2: row 3 is a probability tie (predicted 0), rows 1 and 4 a confidence tie (row 1 first).
P2 = np.array([[0.875, 0.125], [0.25, 0.75], [0.375, 0.625], [0.5, 0.5], [0.25, 0.75]], np.float32)
Y2 = np.array([0, 0, 1, 1, 1])


def test_k2_with_ties():
    nll = -(math.log(0.875) + math.log(0.25) + math.log(0.625) + math.log(0.5) + math.log(0.75)) / 5
    assert gm.nll(P2, Y2) == pytest.approx(nll, abs=1e-12)
    assert gm.brier(P2, Y2) == pytest.approx(2.0625 / 5, abs=1e-12)
    assert gm.ece(P2, Y2) == pytest.approx((0.125 + 2 * 0.25 + 0.375 + 0.5) / 5, abs=1e-12)
    # 4 bins have exact edges: right-closed, 0.75 joins 0.625 in (0.5, 0.75], 0.5 is in (0.25, 0.5].
    mid = abs(2 / 3 - (0.75 + 0.625 + 0.75) / 3) * 3 / 5
    assert gm.ece(P2, Y2, bins=4) == pytest.approx(0.125 / 5 + mid + 0.5 / 5, abs=1e-12)
    assert gm.acc_at_coverage(P2, Y2, 40) == pytest.approx(0.5)        # the tie: row 1 first
    assert gm.acc_at_coverage(P2, Y2, 50) == pytest.approx(2 / 3)      # ceil(2.5) = 3 kept
    assert gm.acc_at_coverage(P2, Y2, 80) == pytest.approx(0.75)
    assert gm.acc_at_coverage(P2, Y2, 100) == pytest.approx(0.6)
    assert gm.aurc(P2, Y2) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5, abs=1e-12)
    m = gm.confidence_metrics(P2, Y2)
    assert tuple(m) == gm.KEYS and m["acc_cov80"] == pytest.approx(0.75)


def test_perfectly_calibrated_and_floored():
    p = np.array([[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.25]], np.float32)
    assert gm.ece(p, np.array([0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    certain = np.array([[1.0, 0.0]], np.float32)
    right, wrong = np.array([0]), np.array([1])
    assert gm.nll(certain, right) == 0 and gm.brier(certain, right) == 0
    assert gm.ece(certain, right) == 0 and gm.aurc(certain, right) == 0
    assert gm.nll(certain, wrong) == pytest.approx(-math.log(gm.P_FLOOR))
    assert gm.brier(certain, wrong) == pytest.approx(2.0)
    assert gm.ece(certain, wrong) == pytest.approx(1.0)


def test_k3():
    p = np.array([[0.5, 0.25, 0.25], [0.125, 0.25, 0.625], [0.25, 0.5, 0.25]], np.float32)
    y = np.array([0, 1, 1])
    assert gm.nll(p, y) == pytest.approx(-(2 * math.log(0.5) + math.log(0.25)) / 3, abs=1e-12)
    assert gm.brier(p, y) == pytest.approx((0.375 + 0.96875 + 0.375) / 3, abs=1e-12)
    assert gm.ece(p, y) == pytest.approx((2 * 0.5 + 0.625) / 3, abs=1e-12)
    assert gm.acc_at_coverage(p, y, 50) == pytest.approx(0.5)
    assert gm.acc_at_coverage(p, y, 80) == pytest.approx(2 / 3)
    assert gm.aurc(p, y) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, abs=1e-12)


def test_bad_inputs_and_kept():
    with pytest.raises(ValueError):
        gm.nll(np.zeros((0, 2), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError):
        gm.nll(np.array([[0.5, 0.5]], np.float32), np.array([0, 1]))
    with pytest.raises(ValueError):
        gm.nll(np.array([[0.5, 0.5]], np.float32), np.array([2]))
    with pytest.raises(ValueError):
        gm.nll(np.array([0.5, 0.5], np.float32), np.array([0]))
    assert (gm.kept(191, 50), gm.kept(191, 80), gm.kept(5, 80), gm.kept(1, 1)) == (96, 153, 4, 1)


# ---- K-class label metrics (metrics.classification) ------------------------------------------

def test_k_class_labels_by_hand():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    pred = np.array([0, 1, 1, 1, 2, 2, 0, 0])   # class 3 never predicted; class 4 never true
    m = gm.classification(pred, y, 5)
    assert m["accuracy"] == pytest.approx(4 / 8)
    # per class: tp, fp, fn -> F1 = 2 tp / (2 tp + fp + fn)
    f1 = [2 * 1 / (2 + 2 + 1), 2 * 2 / (4 + 1 + 1), 2 * 1 / (2 + 1 + 1), 0.0, 0.0]
    assert m["f1_per_class"] == pytest.approx(f1)
    support = [2, 3, 2, 1, 0]                    # class 4 absent from the truth: weight 0
    assert m["f1_weighted"] == pytest.approx(np.dot(f1, support) / 8)
    assert m["confusion"] == [[1, 1, 0, 0, 0], [0, 2, 1, 0, 0], [1, 0, 1, 0, 0],
                              [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]   # rows truth, columns predicted


def test_k2_weighted_f1_is_the_binary_one():
    rs = np.random.default_rng(5)
    y, pred = rs.integers(0, 2, 191), rs.integers(0, 2, 191)
    f1s, ws = [], []
    for c in (0, 1):          # the binary formula used before the K-class generalisation
        tp = np.sum((pred == c) & (y == c))
        fp, fn = np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
        f1s.append(0.0 if tp == 0 else 2.0 * tp / (2 * tp + fp + fn))
        ws.append(np.sum(y == c))
    m = gm.classification(pred, y, 2)
    assert m["f1_weighted"] == float(np.dot(f1s, ws) / sum(ws))     # bit for bit
    assert m["accuracy"] == float(np.mean(pred == y))


def test_classification_rejects_bad_labels():
    with pytest.raises(ValueError):
        gm.classification(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        gm.classification(np.array([0]), np.array([0, 1]), 2)


def test_evaluate_metrics_regression_keys_only_with_a_head():
    from gsdnet_ref import evaluate as ev
    y, pred = np.array([0, 2, 1, 2]), np.array([0, 2, 2, 2])
    m = ev.metrics(pred, y, k=3)
    assert "acc2" not in m and "mae" not in m and m["accuracy"] == 0.75 and m["n"] == 4
    m = ev.metrics(pred, y, np.zeros(4), np.ones(4), k=3)
    assert m["acc2"] == m["accuracy"] and m["mae"] == 1.0
