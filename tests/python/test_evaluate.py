"""Evaluator: metric definitions, windowing of long conversations, and (when the shared val
split is present) reproduction of tests/golden/eval_val_reference.json (every key, the
confidence metrics included)."""
import json
import tomllib

import numpy as np
import pytest
from conftest import ROOT
from test_golden import load

from gsdnet_ref import data as gdata
from gsdnet_ref import evaluate as ev
from gsdnet_ref import metrics as gmetrics
from gsdnet_ref.pipeline import OnnxModel

VAL = ROOT.parent / "shared" / "data" / "cmu-mosi" / "val"
MODEL = ROOT / "models" / "gsdnet-mosi"


def test_metrics_by_hand():
    pred = np.array([1, 1, 0, 0, 1])
    y = np.array([1, 0, 0, 0, 1])
    m = ev.metrics(pred, y, np.array([1.0, 0, 0, 0, 2]), np.array([0.0, 0, 0, 0, 1]))
    assert m["acc2"] == pytest.approx(0.8)
    f1_pos, f1_neg = 2 * 2 / (2 * 2 + 1), 2 * 2 / (2 * 2 + 1)
    assert m["f1_weighted"] == pytest.approx((3 * f1_neg + 2 * f1_pos) / 5)
    assert m["mae"] == pytest.approx(0.4) and m["n"] == 5


def test_long_conversation_is_windowed():
    """A 78-utterance conversation (real features of a golden case, tiled) runs as 2 windows."""
    _, t = load("complete")
    n0 = t["text"].shape[0]
    reps = 64 // n0 + 1
    feats = {m: np.tile(t[m], (reps, 1)) for m in gdata.MODALITIES}
    n = feats["text"].shape[0]
    assert n > 64
    conv = gdata.Conversation("long", [str(i) for i in range(n)], feats,
                              np.zeros(n, np.float32), np.zeros(n, np.int64))
    model = OnnxModel(MODEL)
    avail = np.ones((n, 3), bool)
    avail[::2, 0] = False
    probs, regs = ev.run_conversation(model, conv, avail, "gsdnet", 0, 500)
    assert probs.shape == (n, 2) and regs.shape == (n,)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.skipif(not (VAL / "utterances.csv").exists(), reason="shared val split absent")
def test_reproduces_reference_json():
    ref = json.loads((ROOT / "tests" / "golden" / "eval_val_reference.json").read_text())
    want = [r for r in ref["results"] if r["completion"] == "gsdnet" and r["missing_rate"] == 0.5]
    got = ev.evaluate(MODEL, VAL, seeds=tuple(ref["seeds"]), completions=("gsdnet",),
                      rates=(0.5,), patterns=())["results"]
    assert len(want) == 1 and len(got) == 1
    for k in ("acc2", "f1_weighted", "mae") + gmetrics.KEYS:
        assert got[0][k] == pytest.approx(want[0][k], abs=1e-9), k


IEMOCAP_VAL = ROOT.parent / "shared" / "data" / "iemocap" / "6way" / "val"
IEMOCAP_MODEL = ROOT / "models" / "gsdnet-iemocap6"
IEMOCAP_REF = ROOT / "tests" / "golden" / "eval_iemocap6_val_reference.json"


def test_iemocap_reference_json_is_k_class():
    """The committed IEMOCAP reference holds K-class rows without regression keys, made with the
    committed model's calibration."""
    ref = json.loads(IEMOCAP_REF.read_text())
    assert ref["model"] == "gsdnet-iemocap6" and ref["modalities"] == ["text", "audio"]
    man = tomllib.loads((IEMOCAP_MODEL / "manifest.toml").read_text())
    assert ref["temperature"] == man["calibration"]["temperature"]
    assert len(ref["classes"]) == 6
    for r in ref["results"]:
        assert "acc2" not in r and "mae" not in r
        assert len(r["f1_per_class"]) == 6 and len(r["confusion"]) == 6
        assert sum(map(sum, r["confusion"])) == pytest.approx(r["n"])
        assert r["missing_rate"] is None or r["missing_rate"] <= 0.5
        assert r["pattern"] in (None, "T", "A", "TA")


def test_iemocap_model_reads_text_through_the_minilm_frontend():
    """The bundled IEMOCAP model's text is the all-MiniLM-L6-v2 sentence embedding of the
    transcript: 384 values computed by the text frontend at run time, trained and evaluated on
    the split's text_minilm.f32 (the same embedding by sentence-transformers), never the LSA
    text.f32 of 300 values."""
    man = tomllib.loads((IEMOCAP_MODEL / "manifest.toml").read_text())
    assert man["modalities"] == {"text": 384, "audio": 47}
    assert man["frontends"]["text"] == {"kind": "sentence-encoder",
                                        "dir": "../frontends/all-minilm-l6-v2"}
    assert (IEMOCAP_MODEL / man["frontends"]["text"]["dir"] / "frontend.toml").is_file()
    assert man["training"]["feature_files"] == {"text": "text_minilm.f32"}
    model = OnnxModel(IEMOCAP_MODEL)
    assert model.man.dims == {"text": 384, "audio": 47}


@pytest.mark.skipif(not (IEMOCAP_VAL / "utterances.csv").exists(),
                    reason="shared IEMOCAP data absent")
def test_reproduces_iemocap_reference_json():
    """gsdnet_ref.evaluate on IEMOCAP 6-way val/ (windows of W, two modalities, K = 6)
    reproduces one row of the committed reference exactly."""
    ref = json.loads(IEMOCAP_REF.read_text())
    want = [r for r in ref["results"] if r["completion"] == "gsdnet" and r["missing_rate"] == 0.3]
    got = ev.evaluate(IEMOCAP_MODEL, IEMOCAP_VAL, seeds=tuple(ref["seeds"]),
                      completions=("gsdnet",), rates=(0.3,), patterns=())["results"]
    assert len(want) == 1 and len(got) == 1
    for k in ("accuracy", "f1_weighted") + gmetrics.KEYS:
        assert got[0][k] == pytest.approx(want[0][k], abs=1e-9), k
    assert got[0]["confusion"] == want[0]["confusion"]
    assert got[0]["f1_per_class"] == pytest.approx(want[0]["f1_per_class"], abs=1e-12)
