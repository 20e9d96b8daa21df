"""Temperature calibration: the manifest's [calibration] temperature (validation, absent = 1),
softmax(logits / T) in the reference pipeline, and gsdnet_torch.calibrate (the fit recovers a
known temperature; --write touches only [calibration]; a test split is refused)."""
import shutil
import tomllib

import numpy as np
import pytest
from conftest import ROOT
from test_golden import load

from gsdnet_ref import data as gdata
from gsdnet_ref.pipeline import OnnxModel, load_manifest, load_temperature, run_window, softmax_t

from gsdnet_torch import calibrate

MODEL = ROOT / "models" / "gsdnet-mosi"


def test_temperature_is_validated():
    assert load_temperature({}) == 1.0
    assert load_temperature({"calibration": {"temperature": 2}}) == 2.0
    assert load_temperature({"calibration": {"temperature": 0.01}}) == 0.01
    for bad in (0.0, -1.0, float("inf"), float("nan"), 1e-300, 100.5, "1", True):
        with pytest.raises(ValueError):
            load_temperature({"calibration": {"temperature": bad}})


def test_tempered_softmax():
    logits = np.array([[0.5, -1.5], [1000.0, -1000.0]], np.float32)
    z = logits - logits.max(-1, keepdims=True)
    plain = (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)
    np.testing.assert_array_equal(softmax_t(logits, 1.0), plain)   # T = 1: bit for bit
    p = softmax_t(logits, 2.0)
    assert p[0, 1] / p[0, 0] == pytest.approx(np.exp(-1.0), rel=1e-6)
    q = softmax_t(np.array([[1000.0, 999.0, -1000.0]], np.float32), 0.5)   # K = 3
    assert q.sum() == pytest.approx(1.0) and q[0, 1] / q[0, 0] == pytest.approx(np.exp(-2.0))


def test_run_window_applies_the_temperature():
    _, t = load("rate05_s5")
    n = 13
    feats = {m: t[m] for m in gdata.MODALITIES}
    avail, spk = t["avail"][:n] > 0, np.zeros(n, np.int64)
    model = OnnxModel(MODEL)
    model.man.temperature, model.man.by_avail = 1.0, (1.0,) * 8
    a = run_window(model, feats, avail, spk, "meanfill")
    model.man.temperature, model.man.by_avail = 2.0, (2.0,) * 8
    b = run_window(model, feats, avail, spk, "meanfill")
    np.testing.assert_array_equal(a["logits"], b["logits"])
    np.testing.assert_array_equal(b["probs"], softmax_t(a["logits"], 2.0))
    np.testing.assert_array_equal(a["probs"].argmax(-1), b["probs"].argmax(-1))


def test_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = (rng.normal(0.0, 3.0, (20000, 3))).astype(np.float32)
    p = softmax_t(logits, 1.7).astype(np.float64)
    y = (rng.random(len(p))[:, None] > np.cumsum(p, 1)[:, :-1]).sum(1)
    assert calibrate.fit_temperature(logits, y) == pytest.approx(1.7, rel=0.03)


def test_write_touches_only_the_calibration_table(tmp_path):
    for f in MODEL.iterdir():
        if f.suffix in (".toml", ".onnx"):
            shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "manifest.toml"
    before = tomllib.loads(path.read_text())
    before.pop("calibration", None)
    calibrate.write_calibration(path, {"temperature": 1.25, "fitted_on": "val"})
    calibrate.write_calibration(path, {"temperature": 1.5, "fitted_on": "val", "seeds": [0, 1]})
    after = tomllib.loads(path.read_text())
    assert after.pop("calibration") == {"temperature": 1.5, "fitted_on": "val", "seeds": [0, 1]}
    assert after == before
    assert load_manifest(tmp_path).temperature == 1.5


def test_refuses_the_test_split(tmp_path):
    with pytest.raises(SystemExit, match="val/ only"):
        calibrate.main(["--data", str(tmp_path / "test")])


def test_pattern_temperatures_by_availability():
    from gsdnet_ref.pipeline import load_by_avail, pattern_bits, row_temperatures
    assert [pattern_bits(p) for p in ("T", "AT", "TAV", "V")] == [1, 3, 7, 4]
    for bad in ("", "X", "TT"):
        with pytest.raises(ValueError):
            pattern_bits(bad)
    raw = {"calibration": {"temperature": 3.0, "patterns": {"TV": 2.0, "AV": 0.5}}}
    by = load_by_avail(raw)
    assert by[5] == 2.0 and by[6] == 0.5 and by[7] == 3.0 and by[1] == 3.0 and by[0] == 3.0
    assert load_by_avail({}) == (1.0,) * 8
    with pytest.raises(ValueError):
        load_by_avail({"calibration": {"patterns": {"T": 0.0}}})
    avail = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 0]], np.float32)
    np.testing.assert_array_equal(row_temperatures(by, avail)[:, 0], [2.0, 0.5, 3.0, 3.0])


def test_write_by_text_round_trips(tmp_path):
    man = tmp_path / "manifest.toml"
    shutil.copy(MODEL / "manifest.toml", man)
    before = tomllib.loads(man.read_text())
    before.pop("calibration", None)
    best = {"temperature": 1.239, "completion": "gsdnet", "text_temperatures": {"text_observed": 1.0512, "text_missing": 1.7274},
            "pooled": {k: {"nll": 0.44} for k in ("T=1", "T", "lovo", "text", "text-lovo")}}

    class A:
        method, seeds, rates = "text", [0, 1, 2], [0.0, 0.5]
    table = calibrate.calibration_table(best, A, "val", "cmd")
    calibrate.write_calibration(man, table)
    calibrate.write_calibration(man, table)   # idempotent: the old tables are replaced
    after = tomllib.loads(man.read_text())
    assert after["calibration"]["patterns"] == {p: (1.051 if "T" in p else 1.727) for p in ("TAV", "TA", "TV", "T", "AV", "A", "V")}
    assert after["calibration"]["temperature"] == 1.727
    after.pop("calibration")
    assert after == before


def test_write_by_pattern_lists_the_models_patterns(tmp_path):
    """--method pattern stores one temperature per availability pattern of the model (a text +
    audio model: T, A, TA), the scalar as the pooled T."""
    man = tmp_path / "manifest.toml"
    shutil.copy(MODEL / "manifest.toml", man)
    best = {"temperature": 1.045, "completion": "gsdnet", "letters": "TA",
            "pattern_temperatures": {"T": 1.0421, "A": 0.8966, "TA": 1.1224},
            "pooled": {k: {"nll": 0.94} for k in calibrate.VARIANTS}}

    class A:
        method, seeds, rates = "pattern", [0, 1, 2], [0.0, 0.5]
    table = calibrate.calibration_table(best, A, "val", "cmd")
    assert table["patterns"] == {"TA": 1.122, "A": 0.897, "T": 1.042}
    assert table["temperature"] == 1.045
    assert table["method"] == "temperature by availability pattern"
    calibrate.write_calibration(man, table)
    by = load_manifest(tmp_path).by_avail
    assert by[1] == 1.042 and by[2] == 0.897 and by[3] == 1.122 and by[7] == 1.045


def test_fit_groups_by_pattern_bits():
    rng = np.random.default_rng(1)
    n = 6000
    logits = rng.normal(0.0, 3.0, (n, 4)).astype(np.float32)
    bits = np.where(np.arange(n) % 2 == 0, 1, 3)
    temps = np.where(bits == 1, 0.7, 2.0)
    p = calibrate.softmax_rows(logits, temps).astype(np.float64)
    y = (rng.random(n)[:, None] > np.cumsum(p, 1)[:, :-1]).sum(1)
    pool = {"logits": logits, "y": y, "conv": np.arange(n) % 5, "bits": bits}
    got = calibrate.fit_groups(pool, bits, False)
    assert got[bits == 1][0] == pytest.approx(0.7, rel=0.08)
    assert got[bits == 3][0] == pytest.approx(2.0, rel=0.08)
