"""The contract's part shapes for a model other than CMU-MOSI's (docs/DESIGN.md "ONNX parts"):
a small random text + audio, 6-class model without regression is exported by gsdnet_torch.export
and its five parts have the named inputs / outputs of M = 2, K = 6 (no `reg`), run in
onnxruntime as in torch, and load through gsdnet_ref.pipeline from the manifest's
`[modalities]`. The CMU-MOSI defaults build the same parameter shapes as before. Needs torch
and onnx (python/requirements-train.txt): skipped without them."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
from gsdnet_torch import export  # noqa: E402
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
    b, w = "batch", "window"
    assert io("encoders", "inputs") == [("text", [b, w, 12]), ("audio", [b, w, 5])]
    assert io("encoders", "outputs") == [("h", [b, 2, w, D])]
    assert ("avail", [b, w, 2]) in io("s_theta", "inputs") and ("t", [b]) in io("s_phi", "inputs")
    assert ("adj_t", [b, 2, w, w]) in io("s_theta", "inputs")
    assert io("s_phi", "outputs") == [("score", [b, 2, K_EIG])]
    assert io("recon", "outputs") == [("text", [b, w, 12]), ("audio", [b, w, 5])]
    assert io("fusion", "outputs") == [("logits", [b, w, 6])]          # no reg
    assert man.raw["modalities"] == DIMS and "text" not in man.raw["dims"]
    assert man.raw["dims"] == dict(window=W, latent=D, k=K_EIG, buckets=[W])
    assert man.buckets == (W,)
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


def test_window_buckets():
    assert export.window_buckets(64) == [8, 16, 32, 64]
    assert export.window_buckets(8) == [8] and export.window_buckets(4) == [4]
    assert export.window_buckets(24) == [8, 16, 24] and export.window_buckets(32) == [8, 16, 32]


def test_reexport_rewrites_only_parts_and_dims(exported, tmp_path):
    """`export.py --reexport`: same parts from model.pt, every other table's text unchanged
    (here an extra table and key the exporter never writes), old numeric [dims] upgraded."""
    import shutil
    import tomllib
    _, folder = exported
    dst = tmp_path / folder.name
    shutil.copytree(folder, dst)
    text = (dst / "manifest.toml").read_text()
    head, rest = text.split("[dims]\n", 1)
    _, rest = rest.split("\n\n", 1)
    text = head + "[dims]\nwindow = 8\nlatent = 4\nk = 4\n\n" + rest + \
        '[calibration]\ntemperature = 1.5   # kept\n\n[calibration.patterns]\nT = 1.25\n'
    text = text.replace('[sde]\n', '[sde]\nsamples = 4\n')
    (dst / "manifest.toml").write_text(text)
    export.reexport(dst)
    new = (dst / "manifest.toml").read_text()
    old_secs, new_secs = dict(export._sections(text)), dict(export._sections(new))
    assert list(old_secs) == list(new_secs)
    for name, body in old_secs.items():
        if name != "dims" and not str(name).startswith("parts."):
            assert new_secs[name] == body, name
    man = tomllib.loads(new)
    assert man["dims"] == dict(window=W, latent=D, k=K_EIG, buckets=[W])
    assert man["parts"] == tomllib.loads((folder / "manifest.toml").read_text())["parts"]
    for p in man["parts"].values():
        assert (dst / p["file"]).read_bytes() == (folder / p["file"]).read_bytes()
