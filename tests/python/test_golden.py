"""Golden cases through onnxruntime: every component on its stored inputs, and the whole
pipeline (graph, spectrum, sampler with the stored noise, parts) against the stored outputs.

Cases store only the N valid nodes of each window axis (docs/DESIGN.md, "Golden cases"):
`load` zero-pads every tensor to its `full_shape` and `check` compares the stored region only.
The last tests show why that is exact for the inputs whose padded rows are not zero. Each case
runs on the model its `meta.model` names (models/<name>; the IEMOCAP case on the text + audio,
6-class gsdnet-iemocap6, whose windows have no `reg`)."""
import shutil
import tomllib
from dataclasses import replace

import numpy as np
import pytest
from conftest import ROOT

from gsdnet_ref import data as gdata
from gsdnet_ref import graph
from gsdnet_ref.pipeline import OnnxModel, run_window
from gsdnet_ref.sampler import Noise, draw_noise, stream_key

GOLDEN = ROOT / "tests" / "golden"
MODEL = ROOT / "models" / "gsdnet-mosi"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/case.toml"))
_MODELS = {}


def model_for(case) -> OnnxModel:
    """The OnnxModel of the case's meta.model (models/<name>), one per name."""
    name = case["meta"]["model"]
    if name not in _MODELS:
        _MODELS[name] = OnnxModel(ROOT / "models" / name)
    return _MODELS[name]


def pad(a, full_shape):
    """`a` zero-padded at the end of each axis to `full_shape`."""
    if any(s > f for s, f in zip(a.shape, full_shape)) or a.ndim != len(full_shape):
        raise ValueError(f"stored shape {a.shape} does not fit in full_shape {full_shape}")
    return np.pad(a, [(0, f - s) for s, f in zip(a.shape, full_shape)])


def load(name, root=GOLDEN):
    """(case.toml, tensors as the pipeline sees them: cropped ones zero-padded to full_shape)."""
    d = root / name
    case = tomllib.loads((d / "case.toml").read_text())
    t = {k: pad(np.fromfile(d / v["file"], "<f4").reshape(v["shape"]),
                v.get("full_shape", v["shape"]))
         for k, v in case["tensors"].items()}
    return case, t


def stored(case, name, a):
    """The region of full-shape `a` that the case stores for tensor `name`."""
    v = case["tensors"][name]
    assert list(np.shape(a)) == v.get("full_shape", v["shape"]), (name, np.shape(a))
    return np.asarray(a)[tuple(slice(0, s) for s in v["shape"])]


def check(case, name, got, want):
    tol = case["tolerances"][name]
    np.testing.assert_allclose(stored(case, name, got), stored(case, name, want),
                               atol=tol["atol"], rtol=tol["rtol"], err_msg=name)


@pytest.fixture(scope="module")
def model():
    return OnnxModel(MODEL)


def test_cases_present():
    assert {"rate05_s5", "pattern_t", "complete", "speakers", "dyadic6_synthetic",
            "dyadic4_synthetic"} <= set(CASES)


def test_every_bundled_model_has_a_golden_case():
    """`gsdnet check --model models/<name>` fails without a case recorded with that model."""
    bundled = {p.parent.name for p in (ROOT / "models").glob("*/manifest.toml")}
    covered = {tomllib.loads((GOLDEN / c / "case.toml").read_text())["meta"]["model"]
               for c in CASES}
    assert bundled and bundled <= covered, sorted(bundled - covered)


@pytest.mark.parametrize("k", [6, 4])
def test_iemocap_case_names_its_model(k):
    case, t = load(f"dyadic{k}_synthetic")
    meta, n = case["meta"], case["meta"]["n_nodes"]
    name = f"gsdnet-iemocap{k}"
    assert meta["model"] == name and meta["model_dir"] == f"models/{name}"
    assert meta["modalities"] == ["text", "audio"] and len(meta["classes"]) == k
    assert "visual" not in t and "reg" not in t and t["logits"].shape == (64, k)
    # the sizes of the bundled model: text 384 (the MiniLM frontend's), audio 47
    assert t["text"].shape == (n, 384) and t["std_text"].shape == (64, 384)
    assert t["audio"].shape == (n, 47) and t["std_audio"].shape == (64, 47)
    assert model_for(case).man.dims == {"text": 384, "audio": 47}
    assert t["avail"].shape == (64, 2) and t["h"].shape[0] == 2
    spk = t["speaker"][:n]
    assert set(spk.tolist()) == {0.0, 1.0} and spk[0] == 0.0
    assert not t["avail"][:n].all() and t["avail"][:n].any(axis=1).all()   # something missing


@pytest.mark.parametrize("name", CASES)
def test_components(name):
    case, t = load(name)
    components(model_for(case), case, t)


def components(model, case, t):
    b = lambda x: x[None]  # noqa: E731
    n, w = case["meta"]["n_nodes"], model.man.width
    avail_n = t["avail"][:n] > 0
    for j, m in enumerate(model.man.modalities):
        mean, std = model.man.stats[m]
        check(case, f"std_{m}", gdata.standardise(t[m], mean, std, avail_n[:, j], w), t[f"std_{m}"])
    h = model.run("encoders", **{m: b(t[f"std_{m}"]) for m in model.man.modalities})["h"][0]
    check(case, "h", h, t["h"])
    spk = t["speaker"][:n].astype(np.int64)
    a, u, eig = graph.build_graph(spk, model.man.width, model.man.k, model.man.window_same,
                                  model.man.window_other)
    check(case, "adj_struct", a, t["adj_struct"])
    check(case, "u", u, t["u"])
    check(case, "eig", eig, t["eig"])
    check(case, "lam_obs", graph.spectrum(t["cond"], t["u"], t["node_mask"]), t["lam_obs"])
    common = dict(cond=b(t["cond"]), avail=b(t["avail"]), node_mask=b(t["node_mask"]))
    if "s_theta_score" in t:
        s = model.run("s_theta", x_t=b(t["s_theta_x_t"]), t=t["s_theta_t"],
                      adj_t=b(t["s_theta_adj_t"]), **common)["score"][0]
        check(case, "s_theta_score", s, t["s_theta_score"])
        s = model.run("s_phi", lam_t=b(t["s_phi_lam_t"]), t=t["s_phi_t"],
                      lam_obs=b(t["lam_obs"]), u=b(t["u"]), **common)["score"][0]
        check(case, "s_phi_score", s, t["s_phi_score"])
        key = stream_key(case["meta"]["seed"], case["meta"]["scenario"], case["meta"]["conv_id"], 0)
        nz = draw_noise(key, case["meta"]["steps"], w, model.man.d, model.man.k, model.man.m)
        if "zx" in t:      # ODE cases hold only the initial noise
            check(case, "zx", nz.zx, t["zx"])
        check(case, "zx_init", nz.zx_init, t["zx_init"])
        check(case, "zl_init", nz.zl_init, t["zl_init"])
    rec = model.run("recon", x=b(t["x0"]))
    for m in model.man.modalities:
        check(case, f"recon_{m}", rec[m][0], t[f"recon_{m}"])
    out = model.run("fusion", x=b(t["x0"]), avail=b(t["avail"]), adj=b(t["adj_fusion"]),
                    node_mask=b(t["node_mask"]))
    check(case, "logits", out["logits"][0], t["logits"])
    assert ("reg" in out) == ("reg" in t) == model.man.has_regression
    if "reg" in t:
        check(case, "reg", out["reg"][0], t["reg"])


@pytest.mark.parametrize("name", CASES)
def test_pipeline(name):
    case, t = load(name)
    model = model_for(case)
    meta = case["meta"]
    n = meta["n_nodes"]
    feats = {m: t[m] for m in model.man.modalities}
    empty = np.zeros((0,) + t["zx_init"].shape, np.float32) if "zx_init" in t else None
    noise = Noise(t["zx_init"], t["zl_init"], t.get("zx", empty),
                  t.get("zl", empty[:, :, 0] if empty is not None else None)) \
        if "zx_init" in t else None
    base = model.man.sde
    if meta["steps"]:
        model.man.sde = replace(base, steps=meta["steps"],
                                sampler=meta.get("sampler") or "euler_maruyama_inpaint")
    try:
        rec = {}
        run_window(model, feats, t["avail"][:n] > 0, t["speaker"][:n].astype(np.int64),
                   meta["completion"], noise=noise, rec=rec)
    finally:
        model.man.sde = base
    assert ("noise" not in rec) == meta["sampler_skipped"]
    for k in ("h", "cond", "x0", "lam0", "adj_fusion", "logits", "probs", "reg"):
        if k in t:
            check(case, k, rec[k], t[k])
    np.testing.assert_allclose(t["probs"].sum(-1)[:n], 1.0, atol=1e-5)
    obs = (t["avail"].T > 0) & (t["node_mask"][None] > 0)
    np.testing.assert_array_equal(t["x0"][obs], t["h"][obs])   # observed entries exact


def test_rejects_bad_window(model):
    _, t = load("complete")
    n = 5
    feats = {m: t[m][:n] for m in gdata.MODALITIES}
    with pytest.raises(ValueError):
        run_window(model, feats, np.zeros((n, 3), bool), np.zeros(n, np.int64))
    with pytest.raises(ValueError):
        run_window(model, feats, np.ones((n, 3), bool), np.zeros(n, np.int64), "bogus")
    bad = dict(feats, text=np.full_like(feats["text"], np.nan))
    with pytest.raises(ValueError):
        run_window(model, bad, np.ones((n, 3), bool), np.zeros(n, np.int64))


def test_missing_rows_are_not_read(model):
    """A missing modality may carry anything (NaN) in its raw rows: the result is unchanged."""
    _, t = load("rate05_s5")
    n = 13
    avail = t["avail"][:n] > 0
    feats = {m: t[m].copy() for m in gdata.MODALITIES}
    spk = np.zeros(n, np.int64)
    a = run_window(model, feats, avail, spk, "meanfill")
    for j, m in enumerate(gdata.MODALITIES):
        feats[m][~avail[:, j]] = np.nan
    b = run_window(model, feats, avail, spk, "meanfill")
    np.testing.assert_array_equal(a["logits"], b["logits"])


def test_corrupted_value_in_a_cropped_tensor_fails(model, tmp_path):
    """One stored value changed (the last valid row of a cropped output, then of a cropped
    input) must fail the component check, naming the first tensor it spoils."""
    for tensor, hit in (("s_theta_score", "s_theta_score"), ("cond", "lam_obs"),
                        ("recon_audio", "recon_audio")):
        shutil.rmtree(tmp_path / "rate05_s5", ignore_errors=True)
        shutil.copytree(GOLDEN / "rate05_s5", tmp_path / "rate05_s5")
        f = tmp_path / "rate05_s5" / f"{tensor}.f32"
        a = np.fromfile(f, "<f4")
        a[-1] += 1.0
        a.astype("<f4").tofile(f)
        with pytest.raises(AssertionError, match=hit):
            components(model, *load("rate05_s5", tmp_path))


@pytest.mark.parametrize("name", [c for c in CASES if "s_theta_x_t" in load(c)[0]["tensors"]])
def test_padded_rows_are_not_read(name):
    """Valid outputs do not depend on the padded rows of x_t or of the noise (node_mask keeps
    them out), so cropping those rows and zero-filling them back is exact."""
    case, t = load(name)
    model = model_for(case)
    meta, n = case["meta"], case["meta"]["n_nodes"]
    rng = np.random.default_rng(7)

    def scramble(a, axis):
        a = a.copy()
        idx = [slice(None)] * a.ndim
        idx[axis] = slice(n, None)
        a[tuple(idx)] = rng.normal(0.0, 30.0, a[tuple(idx)].shape)
        return a

    b = lambda x: x[None]  # noqa: E731
    common = dict(t=t["s_theta_t"], cond=b(t["cond"]), avail=b(t["avail"]),
                  adj_t=b(t["s_theta_adj_t"]), node_mask=b(t["node_mask"]))
    s0 = model.run("s_theta", x_t=b(t["s_theta_x_t"]), **common)["score"][0]
    s1 = model.run("s_theta", x_t=b(scramble(t["s_theta_x_t"], 1)), **common)["score"][0]
    np.testing.assert_array_equal(s0[:, :n], s1[:, :n])
    zx = t.get("zx", np.zeros((0,) + t["zx_init"].shape, np.float32))
    zl = t.get("zl", np.zeros((0,) + t["zl_init"].shape, np.float32))
    noises = [Noise(t["zx_init"], t["zl_init"], zx, zl),
              Noise(scramble(t["zx_init"], 1), t["zl_init"], scramble(zx, 2), zl)]
    base = model.man.sde
    model.man.sde = replace(base, steps=meta["steps"], sampler=meta["sampler"])
    try:
        feats = {m: t[m] for m in model.man.modalities}
        outs = [run_window(model, feats, t["avail"][:n] > 0, t["speaker"][:n].astype(np.int64),
                           "gsdnet", noise=nz) for nz in noises]
    finally:
        model.man.sde = base
    for k in ("logits", "probs", "reg"):
        if outs[0][k] is not None:
            np.testing.assert_array_equal(outs[0][k], outs[1][k], err_msg=k)
