"""The contract's part shapes for a model other than CMU-MOSI's (docs/DESIGN.md "ONNX parts"):
a small random text + audio, 6-class model without regression is exported by scripts/export.py
and its five parts have the named inputs / outputs of M = 2, K = 6 (no `reg`), run in
onnxruntime as in torch, and load through gsdnet_ref.pipeline from the manifest's
`[modalities]`. The CMU-MOSI defaults build the same parameter shapes as before. Needs torch
and onnx (scripts/requirements-train.txt): skipped without them."""
import sys

import numpy as np
import pytest
from conftest import ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
sys.path.insert(0, str(ROOT / "scripts"))
import export  # noqa: E402
from gsdnet_torch.model import GSDNet  # noqa: E402

from gsdnet_ref.pipeline import OnnxModel, run_window  # noqa: E402

W, D, K_EIG = 8, 4, 4
DIMS = {"text": 12, "audio": 5}


def tiny_model():
    torch.manual_seed(0)
    model = GSDNet(d=D, k=K_EIG, width=W, hid=8, dims=tuple(DIMS.values()),
                   modalities=tuple(DIMS), n_classes=6, regression=False)
    model.prior.gain.fill_(1.5)
    return model.eval()


def info_for(model):
    stats = {m: [np.zeros(d).tolist(), np.ones(d).tolist()] for m, d in DIMS.items()}
    args = dict(window_same=2, window_other=1, eps=1e-3, seed=0, epochs=1, ft_epochs=0, steps=2,
                sel_metric="f1_weighted", sel_rates=8, n_modalities=2, data="unused")
    return dict(args=args, stats=stats, best_epoch=0, ft_best_epoch=None, data_sha256="0" * 64,
                prior=dict(gain=1.5, temp=1.0), layout="iemocap",
                classes=["hap", "sad", "neu", "ang", "exc", "fru"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny2") / "tiny-iemocap"
    model = tiny_model()
    orig, export.onnx_val_metrics = export.onnx_val_metrics, \
        lambda folder, val: {"protocol": "none (test: no split)"}
    try:
        export.export_model(model, info_for(model), folder, ["--test"])
    finally:
        export.onnx_val_metrics = orig
    return model, folder


def test_parts_have_the_contract_shapes(exported):
    _, folder = exported
    man = OnnxModel(folder).man
    parts = man.raw["parts"]
    io = lambda p, k: [(x["name"], x["shape"]) for x in parts[p][k]]  # noqa: E731
    assert io("encoders", "inputs") == [("text", [1, W, 12]), ("audio", [1, W, 5])]
    assert io("encoders", "outputs") == [("h", [1, 2, W, D])]
    assert ("avail", [1, W, 2]) in io("s_theta", "inputs")
    assert io("s_phi", "outputs") == [("score", [1, 2, K_EIG])]
    assert io("recon", "outputs") == [("text", [1, W, 12]), ("audio", [1, W, 5])]
    assert io("fusion", "outputs") == [("logits", [1, W, 6])]          # no reg
    assert man.raw["modalities"] == DIMS and "text" not in man.raw["dims"]
    assert set(man.raw["normalisation"]) == {"text_mean", "text_std", "audio_mean", "audio_std"}
    assert man.raw["model"]["has_regression"] is False and len(man.classes) == 6
    assert man.letters == "TA" and man.bits.tolist() == [1, 2]


def test_onnx_matches_torch_and_runs_a_window(exported):
    model, folder = exported
    onnx_model = OnnxModel(folder)
    rs = np.random.default_rng(1)
    n = 6
    feats = {m: rs.normal(size=(n, d)).astype(np.float32) for m, d in DIMS.items()}
    avail = np.array([[1, 1], [1, 0], [0, 1], [1, 1], [0, 1], [1, 0]], bool)
    rec = {}
    out = run_window(onnx_model, feats, avail, np.array([0, 1, 0, 1, 1, 0]), "gsdnet",
                     noise_key=7, rec=rec)
    assert out["logits"].shape == (n, 6) and out["reg"] is None
    np.testing.assert_allclose(out["probs"].sum(-1), 1.0, atol=1e-5)
    t = lambda x: torch.from_numpy(np.asarray(x, np.float32))[None]  # noqa: E731
    with torch.no_grad():
        h = model.encoders(t(rec["std"]["text"]), t(rec["std"]["audio"]))[0].numpy()
        lg, rg = model.fuse(t(rec["x0"]), t(rec["avail"]), t(rec["adj_fusion"]),
                            t(rec["node_mask"]))
    assert rg is None
    np.testing.assert_allclose(h, rec["h"], atol=1e-5)
    np.testing.assert_allclose(lg[0].numpy(), rec["logits"], atol=1e-4)


def test_mosi_defaults_keep_the_parameter_shapes():
    shapes = {k: tuple(v.shape) for k, v in GSDNet(d=16, k=16).state_dict().items()}
    assert shapes["encoders.lins.0.weight"] == (16, 100)
    assert shapes["encoders.lins.1.weight"] == (16, 73)
    assert shapes["s_theta.inp.weight"] == (64, 6 * 16 + 3)
    assert shapes["s_phi.inp.weight"] == (64, 9 * 16 + 3 * 16 + 3)
    assert shapes["fusion.inp.weight"] == (64, 3 * 16 + 3)
    assert shapes["fusion.cls.weight"] == (2, 64) and shapes["fusion.reg.weight"] == (1, 64)
