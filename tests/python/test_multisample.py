"""Multi-sample completion (docs/DESIGN.md "Multi-sample completion"): the sample keys, S = 1
identical to the single-sample path, the mean of the samples by hand, determinism, and S
ignored where nothing is sampled. On the tiny fixture model (random weights, W = 8)."""
import numpy as np
import pytest
from conftest import ROOT

from gsdnet_ref import rng
from gsdnet_ref.multisample import (check_samples, manifest_samples, run_window_samples,
                                    sample_key)
from gsdnet_ref.pipeline import OnnxModel, run_window

TINY = ROOT / "tests" / "fixtures" / "tiny-model"
AVAIL = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 1]], bool)


@pytest.fixture(scope="module")
def model():
    return OnnxModel(TINY)


def window(n=6):
    r = np.random.default_rng(3)
    feats = {m: r.normal(size=(n, d)).astype(np.float32)
             for m, d in (("text", 100), ("audio", 73), ("visual", 100))}
    return feats, np.arange(n) % 2


def test_sample_keys():
    k = 0x123456789ABCDEF0
    assert sample_key(k, 0) == k
    assert sample_key(k, 3) == rng.derive(k, 64, 3)
    assert len({sample_key(k, s) for s in range(64)}) == 64
    for bad in (0, 65, True, 2.0):
        with pytest.raises(ValueError):
            check_samples(bad)


def test_one_sample_is_the_single_sample_path(model):
    feats, spk = window()
    assert manifest_samples(model.man) == 1
    for completion in ("gsdnet", "meanfill", "zero"):
        a = run_window(model, feats, AVAIL, spk, completion, noise_key=9)
        b = run_window_samples(model, feats, AVAIL, spk, completion, noise_key=9, samples=1)
        for k in ("logits", "probs", "reg"):
            np.testing.assert_array_equal(a[k], b[k])


def test_mean_of_samples_by_hand(model):
    feats, spk = window()
    out = run_window_samples(model, feats, AVAIL, spk, "gsdnet", noise_key=9, samples=3)
    runs = [run_window(model, feats, AVAIL, spk, "gsdnet", noise_key=sample_key(9, s))
            for s in range(3)]
    assert not np.array_equal(runs[0]["probs"], runs[1]["probs"])
    want = ((runs[0]["probs"].astype(np.float64) + runs[1]["probs"] + runs[2]["probs"]) / 3)
    np.testing.assert_array_equal(out["probs"], want.astype(np.float32))
    reg = (runs[0]["reg"].astype(np.float64) + runs[1]["reg"] + runs[2]["reg"]) / 3
    np.testing.assert_array_equal(out["reg"], reg.astype(np.float32))
    np.testing.assert_array_equal(out["logits_samples"][0], runs[0]["logits"])
    again = run_window_samples(model, feats, AVAIL, spk, "gsdnet", noise_key=9, samples=3)
    np.testing.assert_array_equal(out["probs"], again["probs"])


def test_samples_ignored_without_noise(model):
    feats, spk = window()
    for completion, avail in (("meanfill", AVAIL), ("zero", AVAIL), ("gsdnet", np.ones_like(AVAIL))):
        a = run_window(model, feats, avail, spk, completion, noise_key=4)
        b = run_window_samples(model, feats, avail, spk, completion, noise_key=4, samples=5)
        np.testing.assert_array_equal(a["probs"], b["probs"])
        assert b["logits_samples"].shape == (5, 6, 2)
